#!/usr/bin/env python3
"""RSS of `gridlog serve` while CLIENTS (default 150) clients that never read ask for a
10,000-event page (`GET /api/v1/events?after=0&limit=10000`, ~3 MB), each with a 4 KiB
receive buffer. Arguments are KEY=VALUE environment variables for the server, e.g.
GRIDLOG_HTTP__ANSWER_BYTES_MAX=100000000000 GRIDLOG_HTTP__SEND_TIMEOUT_S=3600 to lift the
limits. GRIDLOG_BIN names the binary (default target/debug/gridlog). See docs/BENCHMARKS.md."""
import json, os, socket, subprocess, sys, time, urllib.request, tempfile, datetime
from collections import Counter
BIN = os.environ.get("GRIDLOG_BIN", "target/debug/gridlog")
env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLOG_")}; env["GRIDLOG_LOG"] = "warn"
extra = sys.argv[1:]  # KEY=VALUE env pairs
for kv in extra:
    k, v = kv.split("=",1); env[k]=v
d = tempfile.mkdtemp()
p = subprocess.Popen([os.environ.get("GRIDLOG_BIN", "target/debug/gridlog"),"serve","--data-dir",d+"/data","--listen","127.0.0.1:0"], stdout=subprocess.PIPE, env=env, text=True)
line = p.stdout.readline(); addr = line.split("http://")[1].split("/")[0]
base = "http://"+addr
def req(method, path, body=None):
    r = urllib.request.Request(base+path, method=method, data=None if body is None else json.dumps(body).encode(), headers={"content-type":"application/json"})
    return urllib.request.urlopen(r, timeout=120).read()
for _ in range(100):
    try:
        if req("GET","/readyz"): break
    except Exception: pass
    time.sleep(0.1)
req("POST","/api/v1/meters",{"id":"m1","kind":"grid"})
start = int(time.time()) - 20000
def t(s): return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
for b in range(2):
    rs = [{"meter":"m1","time":t(start+b*5000+i),"import_wh":float(b*5000+i),"export_wh":0.0,"power_w":1234.5,"voltage_v":230.1,"current_a":5.4} for i in range(5000)]
    req("POST","/api/v1/readings",{"readings":rs})
page = req("GET","/api/v1/events?after=0&limit=10000")
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])//1024
b0 = rss()
n = int(os.environ.get("CLIENTS","150"))
socks=[]
for i in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(("127.0.0.1", int(addr.split(":")[1])))
    s.sendall(f"GET /api/v1/events?after=0&limit=10000 HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode())
    socks.append(s)
peak=b0
t0=time.time()
while time.time()-t0 < 40:
    peak=max(peak,rss()); time.sleep(0.2)
after_hold = rss()
c=Counter()
for s_ in socks:
    s_.settimeout(0.2)
    try: c[s_.recv(12, socket.MSG_PEEK)[9:12]]+=1
    except Exception as e: c['none']+=1
print('answers seen (status of the head):', dict(c))
for s in socks: s.close()
time.sleep(3)
print(f"clients={n} page={len(page)}B env={extra} rss_before={b0}MiB peak={peak}MiB after_close={rss()}MiB")
p.terminate(); p.wait()
