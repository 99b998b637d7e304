//! A fault proxy between the gateway and the store answers 500, 503 and 429, forwards a PUT
//! and then answers 500 (the store has it, the gateway does not know), resets connections in
//! the middle of a body, and stalls past the client timeout (before and after forwarding).
//! Once the faults stop, everything has arrived exactly once: every segment by key and hash,
//! and the store accepted exactly one PUT per key — every other PUT of a key was refused as
//! "already exists" and verified by reading back.

#[allow(dead_code)]
mod ship_support;

use std::collections::BTreeMap;
use std::time::Duration;

use ship_support::*;

#[test]
fn every_object_arrives_exactly_once_through_faults() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixture = grow(&dir, 5, 400);
    let stall = Duration::from_secs(4); // past the 3 s request timeout of ship_env
    let mut script = vec![
        (None, Fault::Status(503)),
        (Some("GET"), Fault::Status(500)),
    ];
    for _ in 0..3 {
        script.extend([
            (Some("PUT"), Fault::ForwardThenStatus(500)),
            (Some("PUT"), Fault::ResetMidBody),
            (Some("PUT"), Fault::Status(503)),
            (Some("PUT"), Fault::Stall(stall)),
            (Some("PUT"), Fault::Status(429)),
            (Some("PUT"), Fault::ForwardThenStall(stall)),
            (Some("GET"), Fault::Status(500)),
            (Some("PUT"), Fault::Status(500)),
            (Some("GET"), Fault::ForwardThenStall(stall)),
            (Some("PUT"), Fault::ForwardThenStatus(503)),
        ]);
    }
    let faults = script.len();
    let proxy = FaultProxy::start(moto.port, script);
    let (code, out, err) = ship_once(&dir, &ship_env(&proxy.endpoint(), "faults"));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.faults_left(), 0, "not every fault was used");

    // Every segment exactly once, with the local bytes; manifests chain and list each once.
    let (segments, _) = check_store(&moto.bucket(), "faults", &dir);
    assert_eq!(segments, fixture.archived.len() + sealed_in_hot_log(&dir));

    // The store accepted exactly one PUT per key; the retries of a key it already had were
    // refused (412), never written over.
    let seen = proxy.seen();
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.method == "PUT") {
        match s.store_status {
            Some(200) => *accepted.entry(s.path.clone()).or_default() += 1,
            Some(412) | None => {}
            Some(other) => panic!("the store answered {other} to PUT {}", s.path),
        }
    }
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    let keys = moto.bucket().keys("faults");
    assert_eq!(accepted.len(), keys.len(), "every object was PUT once");
    assert!(
        seen.iter()
            .any(|s| s.method == "PUT" && s.store_status == Some(412)),
        "no retry of a PUT the store already had"
    );
    assert!(seen.len() > faults);
}
