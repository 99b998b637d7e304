#!/usr/bin/env python3
"""Resident memory of a whole `gridlog serve` process after METERS meters have reported every
15 minutes for DAYS days (back-dated, through POST /api/v1/readings in requests of 1,000,
auto-registered), against the same process empty. Prints one JSON line.

    python3 scripts/serve_rss.py BINARY METERS DAYS [whole-days]
    python3 scripts/serve_rss.py target/x86_64-unknown-linux-gnu/gateway/gridlog 10000 2

The readings end now, so the current UTC day holds as many quarter hours as the time of day;
with `whole-days` they end at the last quarter hour of yesterday (UTC): DAYS whole days, the
newest one full, the most a meter's current day holds in memory.

The data directory is a fresh temporary one, removed at the end (docs/BENCHMARKS.md,
"Rollup memory": the whole process, issue 18's targets)."""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request
BIN = sys.argv[1]; METERS = int(sys.argv[2]); DAYS = float(sys.argv[3])
WHOLE_DAYS = len(sys.argv) > 4 and sys.argv[4] == "whole-days"
data = tempfile.mkdtemp(prefix="rss-")
env = dict(os.environ, GRIDLOG_ENGINE__AUTO_REGISTER="grid", GRIDLOG_LOG="warn")
p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, env=env, text=True)
line = p.stdout.readline()
url = re.search(r"(http://[0-9.:]+)/", line).group(1)
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1]) * 1024
def post(path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r: return r.status
time.sleep(1)
empty = rss()
now = int(time.time()) // 86400 * 86400 if WHOLE_DAYS else int(time.time()) // 900 * 900
steps = int(DAYS * 96)
start = now - steps * 900
batch = []
n = 0
t0 = time.time()
for step in range(steps):
    ts = start + step * 900
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    for m in range(METERS):
        batch.append({"meter": f"m{m}", "time": iso, "import_wh": 1000.0 + step * 250.0, "export_wh": 0.0, "power_w": 1000.0})
        if len(batch) == 1000:
            assert post("/api/v1/readings", {"readings": batch}) == 200
            n += len(batch); batch = []
if batch:
    assert post("/api/v1/readings", {"readings": batch}) == 200; n += len(batch)
time.sleep(2)
after = rss()
print(json.dumps({"meters": METERS, "days": DAYS, "whole_days": WHOLE_DAYS, "readings": n, "rss_empty_mib": round(empty/2**20, 1), "rss_after_mib": round(after/2**20, 1), "per_meter_b": round((after-empty)/METERS), "secs": round(time.time()-t0, 1)}))
p.terminate(); p.wait()
shutil.rmtree(data, ignore_errors=True)
