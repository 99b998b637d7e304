//! Kills during tail shipping: a gateway ships its log's tail as chunks through a fault
//! proxy that stalls one request, and is killed (SIGKILL) while it waits — once during a
//! chunk's upload, once after a chunk was uploaded and verified but before the manifest
//! naming it was written. Restarted against the store directly, it catches up: the recovery
//! point passes every acknowledged reading, the chunk the crash left unnamed is removed
//! after the grace (by the shipper's periodic look, not the one at start), the audit finds nothing missing, extra or tampered, and a
//! restore holds every acknowledged reading exactly once.

#[allow(dead_code)]
mod ship_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gridlog_common::domain::Event;
use ship_support::*;

const METER: &str = "meter-tail";
/// Long enough that the gateway is killed while the proxy still holds the request.
const STALL: Duration = Duration::from_secs(120);
/// `ship.orphan_grace_s` of the test's gateways.
const ORPHAN_GRACE_S: u64 = 8;

/// A gateway shipping through `proxy_endpoint` with a short bound, the default (large)
/// segments, so everything goes up as chunks, and a grace for orphans longer than a restart
/// takes: the orphan is still young at the restart's first look, so the later, periodic look
/// must remove it.
fn env(endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    let mut env = ship_env(endpoint, prefix);
    env.retain(|(k, _)| k != "GRIDLOG_WAL__SEGMENT_BYTES");
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), "2".into()));
    env.push((
        "GRIDLOG_SHIP__ORPHAN_GRACE_S".into(),
        ORPHAN_GRACE_S.to_string(),
    ));
    env
}

/// Posts `count` readings from `k` on, one per request; their offsets and registers.
fn ingest(gateway: &Gateway, k: &mut i64, count: usize, acked: &mut BTreeMap<u64, f64>) {
    let t0_ms = 1_767_225_600_000i64;
    for _ in 0..count {
        *k += 1;
        let wh = *k as f64 * 3.0;
        let response = gateway.post(
            "/api/v1/readings",
            serde_json::json!({"readings": [{
                "meter": METER,
                "time": gridlog_tests::server::rfc3339_ms(t0_ms + *k * 1000),
                "import_wh": wh, "export_wh": 0.0, "power_w": 100.0,
            }]}),
        );
        let result = &response["results"][0];
        assert_eq!(result["status"], "accepted", "{response}");
        acked.insert(result["offset"].as_u64().unwrap(), wh);
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the gateway once the proxy holds a `PUT` whose path contains `stalled_path`, then
/// checks that a restarted gateway loses, doubles and leaves nothing.
fn kill_while_stalled(prefix: &str, stalled_path: &'static str) {
    let moto = Moto::start();
    let proxy = FaultProxy::start_with_paths(
        moto.port,
        vec![(Some("PUT"), stalled_path, Fault::Stall(STALL))],
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let mut gateway = Gateway::serve(&dir, &env(&proxy.endpoint(), prefix));
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": METER, "kind": "load"}),
    );
    let (mut k, mut acked) = (0, BTreeMap::new());
    ingest(&gateway, &mut k, 20, &mut acked);
    wait_until("the proxy holds the upload", || proxy.faults_left() == 0);
    // A few more while the upload hangs, then the gateway dies with it in flight.
    ingest(&gateway, &mut k, 5, &mut acked);
    gateway.kill();
    let seen = proxy.seen();
    if stalled_path == "/manifests/" {
        assert!(
            seen.iter()
                .any(|s| s.method == "PUT" && s.path.contains("/chunks/")),
            "a chunk must have been uploaded before its manifest: {seen:?}"
        );
    }

    // Restarted against the store directly: it catches up with everything acknowledged,
    // also after more readings.
    let direct = env(&moto.endpoint(), prefix);
    let gateway = Gateway::serve(&dir, &direct);
    ingest(&gateway, &mut k, 5, &mut acked);
    let last = *acked.keys().last().unwrap();
    wait_until(
        "the recovery point passes every acknowledged reading",
        || {
            gateway.shipping()["recovery_point"]["next_offset"]
                .as_u64()
                .is_some_and(|n| n > last)
        },
    );
    // The chunk the crash left unnamed goes after the grace; the audit then finds the store
    // exactly as the manifests say.
    let mut last_audit = String::new();
    wait_until("the audit is clean", || {
        let (code, out) = audit(&direct);
        last_audit = out;
        code == 0 && last_audit.contains("0 missing, 0 extra, 0 tampered")
    });
    drop(gateway);

    // A restore holds every acknowledged reading, each once.
    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut present: BTreeMap<u64, f64> = BTreeMap::new();
    let mut registers = Vec::new();
    for (offset, e) in events(&restored, 1) {
        if let (true, Event::ReadingRecorded(r)) = (e.entity.as_str() == METER, e.event) {
            present.insert(offset, r.import_wh);
            registers.push(r.import_wh);
        }
    }
    for (offset, wh) in &acked {
        assert_eq!(
            present.get(offset),
            Some(wh),
            "acknowledged reading at offset {offset} not restored"
        );
    }
    registers.dedup();
    assert_eq!(registers.len(), present.len(), "a reading is stored twice");
}

#[test]
fn a_kill_during_a_chunk_upload_loses_and_leaves_nothing() {
    kill_while_stalled("kill-chunk", "/chunks/");
}

#[test]
fn a_kill_between_a_chunk_and_its_manifest_loses_and_leaves_nothing() {
    kill_while_stalled("kill-manifest", "/manifests/");
}
