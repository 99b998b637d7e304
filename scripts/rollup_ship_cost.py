#!/usr/bin/env python3
"""What shipping the rollup store costs, and what a restore of it costs: METERS meters report
every 15 minutes for DAYS days (back-dated, through `gridlog serve`, as scripts/serve_rss.py
does), a snapshot is taken (`POST /api/v1/snapshot`: the cycle spills the rollup queue
first), the gateway stops, then `gridlog ship --once` ships everything to a directory store (`file://`), and
`gridlog restore` brings it back. Prints one JSON line: the rollup store's files and bytes,
the rollup parts and their bytes in the store, wall time and peak RSS of `ship --once` and of
`restore` (each process alone).

    python3 scripts/rollup_ship_cost.py BINARY METERS DAYS
    python3 scripts/rollup_ship_cost.py target/x86_64-unknown-linux-gnu/gateway/gridlog 10000 2

Everything lives in a fresh temporary directory, removed at the end (docs/BENCHMARKS.md,
"Rollups shipped with snapshots")."""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

BIN = sys.argv[1]; METERS = int(sys.argv[2]); DAYS = float(sys.argv[3])
work = tempfile.mkdtemp(prefix="rollup-ship-")
data, store, restored = (os.path.join(work, n) for n in ("data", "store", "restored"))
env = dict(os.environ, GRIDLOG_ENGINE__AUTO_REGISTER="grid", GRIDLOG_LOG="warn",
           GRIDLOG_SITE_ID="bench", GRIDLOG_SHIP__STORE=f"file://{store}")
os.makedirs(store)


def serve_and_ingest():
    # Shipping off while ingesting: the figures are those of `ship --once` alone.
    serve_env = {k: v for k, v in env.items() if k != "GRIDLOG_SHIP__STORE"}
    p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, env=serve_env, text=True)
    url = re.search(r"(http://[0-9.:]+)/", p.stdout.readline()).group(1)
    time.sleep(1)  # ready once recovery is done (as serve_rss.py)
    now = int(time.time()) // 900 * 900
    steps = int(DAYS * 96)
    batch = []
    for step in range(steps):
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - (steps - step) * 900))
        for m in range(METERS):
            batch.append({"meter": f"m{m}", "time": iso, "import_wh": 1000.0 + step * 250.0,
                          "export_wh": 0.0, "power_w": 1000.0})
            if len(batch) == 1000 or (step == steps - 1 and m == METERS - 1):
                req = urllib.request.Request(url + "/api/v1/readings",
                                             data=json.dumps({"readings": batch}).encode(),
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=120) as r:
                    assert r.status == 200
                batch = []
    # The cycle spills what is queued, then snapshots: the set fits the snapshot.
    req = urllib.request.Request(url + "/api/v1/snapshot", data=b"{}", method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        assert r.status == 200
    p.terminate()
    assert p.wait() == 0


def ingest_then_stop():
    try:
        serve_and_ingest()
    except BaseException:
        subprocess.run(["pkill", "-f", data])  # no gateway left behind
        raise


def run(args):
    """Runs a gridlog command: its wall time (s), its own peak RSS (MiB) and its output."""
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen([BIN, *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        out.seek(0)
        text = out.read()
    assert os.waitstatus_to_exitcode(status) == 0, text
    return round(time.time() - t0, 1), round(usage.ru_maxrss / 1024, 1), text


def files(root, sub=""):
    found = []
    for d, _, names in os.walk(root):
        found += [os.path.join(d, n) for n in names if sub in os.path.join(d, n)]
    return found


ingest_then_stop()
spills = [f for f in files(os.path.join(data, "rollups")) if f.endswith(".rlp")]
ship_s, ship_rss_mib, _ = run(["ship", "--once", "--data-dir", data])
parts = files(store, "/rollups/")
restore_s, restore_rss_mib, said = run(["restore", "--from", f"file://{store}", "--site", "bench", "--data-dir", restored])
restored_spills = [f for f in files(os.path.join(restored, "rollups")) if f.endswith(".rlp")]
assert len(restored_spills) == len(spills), (said, len(spills))
print(json.dumps({
    "meters": METERS, "days": DAYS,
    "spills": len(spills), "spill_mib": round(sum(map(os.path.getsize, spills)) / 2**20, 1),
    "parts": len(parts), "parts_mib": round(sum(map(os.path.getsize, parts)) / 2**20, 1),
    "store_mib": round(sum(map(os.path.getsize, files(store))) / 2**20, 1),
    "ship_once_s": ship_s, "ship_once_peak_rss_mib": ship_rss_mib,
    "restore_s": restore_s, "restore_peak_rss_mib": restore_rss_mib,
    "restored_spills": len(restored_spills),
}))
shutil.rmtree(work, ignore_errors=True)
