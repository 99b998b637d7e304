//! A round that fails in a way the store client does not retry in place — here the store
//! refuses the DELETE of chunks that a shipped segment superseded, twice — starts the
//! shipper again after a backoff, as a restart would: shipping goes on, and the recovery
//! point reaches every reading acknowledged before and after the failures.

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use ship_support::*;

#[test]
fn a_refused_delete_does_not_stop_shipping() {
    let moto = Moto::start();
    // object_store deletes from S3 with DeleteObjects: a POST to `?delete`.
    let script = vec![
        (Some("POST"), Fault::Status(403)),
        (Some("POST"), Fault::Status(500)),
    ];
    let proxy = FaultProxy::start(moto.port, script);
    let mut env = ship_env(&proxy.endpoint(), "round-fails");
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), "1".into()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let gateway = Gateway::serve(&dir, &env);
    let meter = "meter-rf";
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": meter, "kind": "load"}),
    );
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    // Readings until the tail has gone up as chunks, segments sealed and shipped, and both
    // DELETEs of the chunks they superseded were refused.
    let mut k = 0i64;
    let post = |k: i64| {
        let response = gateway.post("/api/v1/readings", reading(meter, t0 + k * 100, k as f64));
        let result = &response["results"][0];
        assert_eq!(result["status"], "accepted", "{response}");
        result["offset"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while proxy.faults_left() > 0 {
        if Instant::now() > deadline {
            let seen: std::collections::BTreeMap<String, usize> =
                proxy.seen().iter().fold(Default::default(), |mut m, s| {
                    let kind = s.path.split('/').nth(5).unwrap_or("").to_string();
                    *m.entry(format!("{} {kind}", s.method)).or_default() += 1;
                    m
                });
            panic!(
                "no DELETE reached the store: {seen:?} {:#}",
                gateway.shipping()
            );
        }
        k += 1;
        post(k);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Shipping goes on: a reading acknowledged after the failures reaches the store.
    let last = post(k + 1);
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = gateway.shipping();
        let next = s["recovery_point"]["next_offset"].as_u64().unwrap_or(0);
        if next > last {
            assert!(s["retries"].as_u64().unwrap() >= 2, "{s:#}");
            break;
        }
        assert!(Instant::now() < deadline, "shipping stopped: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let settled = gateway.wait_shipped();
    assert_eq!(settled["backlog"]["objects"], 0);
    let (segments, _) = check_store(&moto.bucket(), "round-fails", &dir);
    assert!(segments > 0);
}
