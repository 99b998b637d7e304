//! The whole pipeline in `gridlog serve`: readings arrive over HTTP, the engine snapshots and
//! archives sealed segments as configured, and the shipper sends every archived segment to
//! the store while ingest goes on; status shows the shipping and archive side.

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use ship_support::*;

#[test]
fn readings_over_http_are_archived_and_shipped_while_ingest_runs() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut env = ship_env(&moto.endpoint(), "live");
    env.push((
        "GRIDLOG_STORAGE__SNAPSHOT_EVERY_BYTES".into(),
        (64 * 1024).to_string(),
    ));
    env.push(("GRIDLOG_STORAGE__SNAPSHOTS_KEEP".into(), "1".into()));
    let gateway = Gateway::serve(&dir, &env);
    let base = format!("http://{}", gateway.addr.unwrap());
    for m in 0..5 {
        ureq::post(&format!("{base}/api/v1/meters"))
            .send_json(serde_json::json!({"id": format!("m{m}"), "kind": "load"}))
            .unwrap();
    }
    let now = gridlog_tests::server::unix_now();
    let mut step = 0i64;
    let deadline = Instant::now() + SETTLE;
    // Ingest until several segments were archived and shipped meanwhile.
    loop {
        let readings: Vec<_> = (0..200)
            .map(|i| {
                step += 1;
                serde_json::json!({"meter": format!("m{}", i % 5), "time": gridlog_tests::server::rfc3339(now - 86_400 + step / 5), "import_wh": step as f64, "export_wh": 0.0, "power_w": 500.0})
            })
            .collect();
        let r: serde_json::Value = ureq::post(&format!("{base}/api/v1/readings"))
            .send_json(serde_json::json!({ "readings": readings }))
            .unwrap()
            .into_json()
            .unwrap();
        assert_eq!(r["accepted"], 200, "{r}");
        let s = gateway.shipping();
        if s["shipped"]["manifests"].as_u64().unwrap_or(0) >= 2
            && s["shipped"]["objects"].as_u64().unwrap_or(0) >= 8
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing shipped while ingesting: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = gateway.wait_shipped();
    assert_eq!(status["alarms_total"], 0, "{status:#}");
    let mut gateway = gateway;
    assert_eq!(gateway.stop(), 0);
    // Shipping writes events, which can trigger one more snapshot and archive after the
    // backlog looked empty: ship what that left, without the tiny snapshot threshold.
    let (code, out, err) = ship_once(&dir, &ship_env(&moto.endpoint(), "live"));
    assert_eq!(code, 0, "{out}{err}");
    let (segments, manifests) = check_store(&moto.bucket(), "live", &dir);
    assert!(
        segments >= 5 && manifests >= 2,
        "{segments} segments, {manifests} manifests"
    );
}
