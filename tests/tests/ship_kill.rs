//! SIGKILL of the gateway while it uploads, several times, then a restart: no object in the
//! store is corrupt (every one equals the local archive file), every segment arrives, and
//! manifests list each once and chain.

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use ship_support::*;

#[test]
fn kill_during_uploads_then_restart_ships_everything_uncorrupted() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixture = grow(&dir, 10, 2000);
    assert!(fixture.archived.len() >= 50, "{}", fixture.archived.len());
    let mut env = ship_env(&moto.endpoint(), "kill");
    // Slow uploads down so the kills land in the middle of rounds.
    env.push(("GRIDLOG_SHIP__BANDWIDTH_BYTES_PER_S".into(), "20000".into()));
    env.push(("GRIDLOG_SHIP__CONCURRENCY".into(), "2".into()));
    let mut killed_mid_round = 0;
    for after in [700, 1500, 300, 2500] {
        let mut gateway = Gateway::serve(&dir, &env);
        let deadline = Instant::now() + SETTLE;
        // Wait until uploads are under way, then a bit longer, then kill.
        while gateway.shipping()["requests"].as_u64().unwrap_or(0) < 3
            && gateway.shipping()["state"] != "idle"
        {
            assert!(Instant::now() < deadline, "no uploads");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(after));
        if gateway.shipping()["backlog"]["objects"]
            .as_u64()
            .unwrap_or(0)
            > 0
        {
            killed_mid_round += 1;
        }
        gateway.kill();
    }
    assert!(
        killed_mid_round >= 2,
        "the kills came too late to test anything"
    );
    let gateway = Gateway::serve(&dir, &env);
    let status = gateway.wait_shipped();
    assert_eq!(status["alarms_total"], 0, "{status:#}");
    let (segments, _) = check_store(&moto.bucket(), "kill", &dir);
    assert_eq!(segments, fixture.archived.len() + sealed_in_hot_log(&dir));
}
