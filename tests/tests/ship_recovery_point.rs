//! The recovery point: a gateway ingests steadily while it ships to central storage with a
//! small `ship.max_lag_s`; its data directory is destroyed at a random moment (the card
//! died). `gridlog restore` brings back every event acknowledged more than `max_lag_s` plus
//! one shipping interval before the destruction, and the restored gateway continues: new
//! readings are accepted against the restored registers.

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use gridlog_common::domain::Event;
use ship_support::*;

const MAX_LAG_S: u64 = 2;
const INTERVAL_S: u64 = 1;

#[test]
fn every_event_acknowledged_longer_than_the_bound_before_the_card_died_is_restored() {
    let moto = Moto::start();
    let prefix = "recovery-point";
    let mut env = ship_env(&moto.endpoint(), prefix);
    env.retain(|(k, _)| k != "GRIDLOG_SHIP__INTERVAL_S");
    env.push(("GRIDLOG_SHIP__INTERVAL_S".into(), INTERVAL_S.to_string()));
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), MAX_LAG_S.to_string()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let mut gateway = Gateway::serve(&dir, &env);
    let meter = "meter-rp";
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": meter, "kind": "load"}),
    );

    // A random moment: 3 to 7 s of steady ingest.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let run = Duration::from_millis(3000 + u64::from(seed % 4000));
    eprintln!("ingesting for {run:?} (seed {seed})");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let started = Instant::now();
    let mut acked: Vec<(u64, Instant, f64)> = Vec::new();
    let mut k = 0i64;
    while started.elapsed() < run {
        k += 1;
        let wh = k as f64 * 1.5;
        let response = gateway.post("/api/v1/readings", reading(meter, t0 + k * 1000, wh));
        let result = &response["results"][0];
        assert_eq!(result["status"], "accepted", "{response}");
        acked.push((result["offset"].as_u64().unwrap(), Instant::now(), wh));
        std::thread::sleep(Duration::from_millis(10));
    }
    // The card dies.
    gateway.kill();
    let destroyed = Instant::now();
    std::fs::remove_dir_all(&dir).unwrap();

    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let from = first_hot_offset(&restored);
    let present: std::collections::BTreeMap<u64, f64> = events(&restored, from)
        .into_iter()
        .filter_map(|(offset, e)| match e.event {
            Event::ReadingRecorded(r) if e.entity.as_str() == meter => Some((offset, r.import_wh)),
            _ => None,
        })
        .collect();
    let bound = Duration::from_secs(MAX_LAG_S + INTERVAL_S);
    let must: Vec<_> = acked
        .iter()
        .filter(|(_, at, _)| destroyed.duration_since(*at) > bound)
        .collect();
    assert!(
        !must.is_empty(),
        "the run must acknowledge events older than the bound"
    );
    for (offset, _, wh) in &must {
        assert_eq!(
            present.get(offset),
            Some(wh),
            "the reading at offset {offset}, acknowledged more than {bound:?} before the card died, is not restored ({} of {} acknowledged readings restored; {out})",
            present.len(),
            acked.len()
        );
    }

    // The restored gateway continues against the restored registers.
    let (&last_offset, &last_wh) = present.last_key_value().unwrap();
    let k_last = (last_wh / 1.5).round() as i64;
    let gateway = Gateway::serve(&restored, &env);
    let response = gateway.post(
        "/api/v1/readings",
        reading(meter, t0 + (k_last + 1) * 1000, last_wh + 1.5),
    );
    assert_eq!(response["results"][0]["status"], "accepted", "{response}");
    assert!(response["results"][0]["offset"].as_u64().unwrap() > last_offset);
    // A register that goes down against the restored one is refused.
    let response = gateway.post(
        "/api/v1/readings",
        reading(meter, t0 + (k_last + 2) * 1000, 0.5),
    );
    assert_eq!(response["results"][0]["status"], "rejected", "{response}");
    // Status shows the recovery point once the shipper has caught up with the new
    // reading (the shipper starts beside the server, so it may not be attached yet).
    let deadline = Instant::now() + SETTLE;
    loop {
        let shipping = gateway.shipping();
        let next = shipping["recovery_point"]["next_offset"].as_u64();
        if next.is_some_and(|n| n > last_offset + 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recovery point never moved past the new reading: {shipping}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
