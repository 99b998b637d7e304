//! The store is down when the gateway starts: the backlog shows in status and metrics with
//! the last error, requests are retried with backoff, and once the store comes up the backlog
//! drains completely — every segment once, nothing missing, nothing listed twice.

#[allow(dead_code)]
mod ship_support;

use ship_support::*;

#[test]
fn backlog_drains_once_the_store_comes_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixture = grow(&dir, 5, 400);
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut env = ship_env(&endpoint, "down");
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), "1".into()));
    let gateway = Gateway::serve(&dir, &env);

    // Down: the whole archive is the backlog, the error is visible, nothing is confirmed.
    let deadline = std::time::Instant::now() + SETTLE;
    let status = loop {
        let s = gateway.shipping();
        if s["retries"].as_u64().unwrap_or(0) >= 3 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{s:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status["enabled"], true);
    assert_eq!(status["shipped"]["objects"], 0);
    assert!(status["last_error"]["message"].is_string(), "{status:#}");
    // The archive, the sealed segments of the hot log (the shipper's own intents fill the
    // small test segments) and the snapshot wait, oldest first.
    let waiting = status["backlog"]["objects"].as_u64().unwrap();
    assert!(waiting > fixture.archived.len() as u64, "{status:#}");
    assert!(status["backlog"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        status["backlog"]["oldest_first_offset"].as_u64(),
        Some(fixture.archived[0].0)
    );
    assert!(status["backlog"]["oldest_age_s"].is_u64(), "{status:#}");
    let text = ureq::get(&format!("http://{}/metrics", gateway.addr.unwrap()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("gridlog_ship_retries_total"), "{text}");
    let backlog_metric: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("gridlog_ship_backlog_objects "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backlog metric: {text}"));
    assert!(backlog_metric > fixture.archived.len() as u64, "{text}");
    assert!(
        ["retrying", "reconciling"].contains(&status["state"].as_str().unwrap()),
        "{status:#}"
    );

    // The recovery point falls behind several bounds over: one alarm event, and status
    // shows the lag.
    let deadline = std::time::Instant::now() + SETTLE;
    let alarm = loop {
        let (_, page) = gateway.get("/api/v1/events?tag=alarm");
        if let Some(e) = page["events"]
            .as_array()
            .and_then(|e| e.first())
            .filter(|e| e["type"] == "recovery_point_lagging")
        {
            break e.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no alarm: {page}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(alarm["data"]["lag_s"].as_u64().unwrap() >= 3, "{alarm}");
    assert_eq!(alarm["data"]["max_lag_s"], 1, "{alarm}");
    assert_eq!(gateway.shipping()["recovery_point"]["max_lag_s"], 1);
    assert!(
        gateway.shipping()["recovery_point"]["lag_s"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert!(gateway.shipping()["alarms"]
        .to_string()
        .contains("recovery point lagging"));

    // Up: everything arrives.
    let moto = Moto::start_on(port);
    let settled = gateway.wait_shipped();
    assert_eq!(settled["backlog"]["bytes"], 0);
    assert!(settled["last_success_age_s"].is_u64(), "{settled:#}");
    let (segments, _) = check_store(&moto.bucket(), "down", &dir);
    assert_eq!(segments, fixture.archived.len() + sealed_in_hot_log(&dir));
    let text = ureq::get(&format!("http://{}/metrics", gateway.addr.unwrap()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("gridlog_ship_backlog_objects 0"), "{text}");
    // Caught up: the lag is back to zero (the tail, the alarm event included, is held).
    let deadline = std::time::Instant::now() + SETTLE;
    while gateway.shipping()["recovery_point"]["lag_s"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#}",
            gateway.shipping()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = alarm;
}
