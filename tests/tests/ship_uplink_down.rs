//! The uplink goes down for two minutes while readings keep arriving: the recovery
//! point's lag grows past the bound (status shows it, one `recovery_point_lagging` alarm is
//! recorded), every reading is still acknowledged, and once the uplink is back the shipper
//! catches up by itself: the recovery point passes every acknowledged reading, and a restore
//! holds each of them once.

#[allow(dead_code)]
mod ship_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gridlog_common::domain::Event;
use ship_support::*;

const METER: &str = "meter-uplink";
const MAX_LAG_S: u64 = 3;
/// How long the uplink stays down: minutes, many times the bound.
const DOWN: Duration = Duration::from_secs(125);

#[test]
fn an_uplink_down_for_minutes_loses_nothing_and_catches_up() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port, vec![]);
    let prefix = "uplink";
    let mut env = ship_env(&proxy.endpoint(), prefix);
    env.retain(|(k, _)| k != "GRIDLOG_WAL__SEGMENT_BYTES");
    env.push((
        "GRIDLOG_WAL__SEGMENT_BYTES".into(),
        (256 * 1024).to_string(),
    ));
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), MAX_LAG_S.to_string()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let gateway = Gateway::serve(&dir, &env);
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": METER, "kind": "load"}),
    );
    let t0_ms = 1_767_225_600_000i64;
    let mut acked: BTreeMap<u64, ()> = BTreeMap::new();
    let mut k = 0i64;
    let mut post_batch = |gateway: &Gateway| {
        let readings: Vec<_> = (0..50)
            .map(|_| {
                k += 1;
                serde_json::json!({
                    "meter": METER,
                    "time": gridlog_tests::server::rfc3339_ms(t0_ms + k * 1000),
                    "import_wh": k as f64 * 4.0, "export_wh": 0.0, "power_w": 10.0,
                })
            })
            .collect();
        let response = gateway.post(
            "/api/v1/readings",
            serde_json::json!({ "readings": readings }),
        );
        for r in response["results"].as_array().unwrap() {
            assert_eq!(r["status"], "accepted", "{response}");
            acked.insert(r["offset"].as_u64().unwrap(), ());
        }
    };

    // Up: a few seconds of ingest, shipped.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        post_batch(&gateway);
        std::thread::sleep(Duration::from_millis(50));
    }

    // Down: ingest goes on and is acknowledged; the lag grows past the bound and alarms.
    proxy.set_down(true);
    let down_at = Instant::now();
    let mut worst_lag_s = 0;
    while down_at.elapsed() < DOWN {
        post_batch(&gateway);
        let lag = gateway.shipping()["recovery_point"]["lag_s"]
            .as_u64()
            .unwrap_or(0);
        worst_lag_s = worst_lag_s.max(lag);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        worst_lag_s >= 3 * MAX_LAG_S,
        "the lag never grew past the bound while the uplink was down: {worst_lag_s} s; {}",
        gateway.shipping()
    );
    let (_, alarms) = gateway.get("/api/v1/events?tag=alarm");
    assert!(
        alarms["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "recovery_point_lagging"),
        "no lagging alarm: {alarms}"
    );

    // Up again: it catches up with everything acknowledged, by itself.
    proxy.set_down(false);
    post_batch(&gateway);
    let last = *acked.keys().last().unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let shipping = gateway.shipping();
        if shipping["recovery_point"]["next_offset"]
            .as_u64()
            .is_some_and(|n| n > last)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {shipping}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(gateway);

    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut present: BTreeMap<u64, usize> = BTreeMap::new();
    let mut readings = 0;
    for (offset, e) in events(&restored, 1) {
        if e.entity.as_str() == METER && matches!(e.event, Event::ReadingRecorded(_)) {
            *present.entry(offset).or_default() += 1;
            readings += 1;
        }
    }
    let missing: Vec<_> = acked.keys().filter(|o| !present.contains_key(o)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings not restored, first {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    assert_eq!(readings, acked.len(), "a reading is restored twice");
}
