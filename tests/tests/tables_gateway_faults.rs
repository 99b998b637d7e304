//! The gateway's own fleet tables under faults: killed (SIGKILL) several times while it
//! writes them, then restarted with its saved energy baselines deleted and its archive
//! evicted, so the baselines of the next segments must be folded again from central
//! storage. In the end every file it wrote equals what `gridlog export` writes from the
//! shipped history, byte for byte, the two sets of files are the same, and no alarm was
//! raised.

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use ship_support::*;

fn wait_tables(gateway: &Gateway) -> serde_json::Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = gateway.shipping();
        if s["tables"]["waiting_segments"] == 0
            && s["backlog"]["objects"] == 0
            && s["state"] == "idle"
        {
            return s;
        }
        assert!(Instant::now() < deadline, "tables not written: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killed_and_with_its_baselines_lost_the_gateway_still_writes_what_export_writes() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixture = grow(&dir, 10, 1500);
    assert!(fixture.archived.len() >= 30, "{}", fixture.archived.len());
    let mut env = ship_env_with_tables(&moto.endpoint(), "faults");
    // Slow uploads down so the kills land while tables are written.
    env.push(("GRIDLOG_SHIP__BANDWIDTH_BYTES_PER_S".into(), "40000".into()));
    let mut killed_while_writing = 0;
    for after in [200, 700, 1300] {
        let mut gateway = Gateway::serve(&dir, &env);
        let deadline = Instant::now() + SETTLE;
        while gateway.shipping()["tables"]["files"].as_u64().unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "no tables written");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(after));
        if gateway.shipping()["tables"]["waiting_segments"]
            .as_u64()
            .unwrap_or(0)
            > 0
        {
            killed_while_writing += 1;
        }
        gateway.kill();
    }
    assert!(killed_while_writing >= 2, "the kills came too late");
    let mut gateway = Gateway::serve(&dir, &env);
    let status = wait_tables(&gateway);
    assert_eq!(status["alarms_total"], 0, "{status:#}");
    assert_eq!(gateway.stop(), 0);

    // The baselines are lost, and the local archive keeps nothing shipped (the gateway runs
    // with a one-byte budget, its tables off, while readings arrive); then the tables go on,
    // so the next segments' baselines must be folded from central storage.
    std::fs::remove_file(dir.join("ship/tables-carry")).expect("the baselines were saved");
    env.retain(|(k, _)| k != "GRIDLOG_SHIP__BANDWIDTH_BYTES_PER_S");
    env.push(("GRIDLOG_STORAGE__ARCHIVE_BUDGET_BYTES".into(), "1".into()));
    env.push((
        "GRIDLOG_STORAGE__SNAPSHOT_EVERY_BYTES".into(),
        (64 * 1024).to_string(),
    ));
    let mut off = env.clone();
    off.push(("GRIDLOG_SHIP__TABLES".into(), "false".into()));
    let mut gateway = Gateway::serve(&dir, &off);
    let base = format!("http://{}", gateway.addr.unwrap());
    ureq::post(&format!("{base}/api/v1/meters"))
        .send_json(serde_json::json!({"id": "late", "kind": "grid"}))
        .unwrap();
    // After the fixture's readings (a day back, a second apart).
    let t0 = gridlog_tests::server::unix_now() - 86_400 + 3_600;
    let mut step = 0;
    let deadline = Instant::now() + SETTLE;
    // (A listing can race with an eviction; it is then simply taken again.)
    let archived = || gridlog_firmware::archive::list(&dir).map_or(usize::MAX, |(a, _)| a.len());
    while archived() > fixture.archived.len() / 4 {
        let readings: Vec<_> = (0..200)
            .map(|_| {
                step += 1;
                // `meter-0` goes on from the fixture's registers: the first of its
                // readings in a new segment books energy only from the right baseline.
                let meter = if step % 2 == 0 { "late" } else { "meter-0" };
                serde_json::json!({"meter": meter, "time": gridlog_tests::server::rfc3339(t0 + step), "import_wh": 10_000.0 + step as f64, "export_wh": 0.0, "power_w": 5.0})
            })
            .collect();
        let r: serde_json::Value = ureq::post(&format!("{base}/api/v1/readings"))
            .send_json(serde_json::json!({ "readings": readings }))
            .unwrap()
            .into_json()
            .unwrap();
        assert_eq!(r["accepted"], 200, "{r}");
        assert!(Instant::now() < deadline, "the archive was not evicted");
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.wait_shipped();
    assert_eq!(gateway.stop(), 0);
    let mut gateway = Gateway::serve(&dir, &env);
    let status = wait_tables(&gateway);
    assert_eq!(status["alarms_total"], 0, "{status:#}");
    assert!(
        status["tables"]["history_fetched_segments"].as_u64() > Some(0),
        "the baselines were folded from central storage: {status:#}"
    );
    assert_eq!(gateway.stop(), 0);

    let (code, text) = export_tables(&moto.endpoint(), "faults", "exported", &[]);
    assert_eq!(code, 0, "{text}");
    let bucket = moto.bucket();
    let by_gateway = bucket.objects("faults/tables/");
    let exported = bucket.objects("exported/tables/");
    let strip = |prefix: &str, m: &std::collections::BTreeMap<String, Vec<u8>>| {
        m.iter()
            .map(|(k, v)| (k.strip_prefix(prefix).unwrap().to_string(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (by_gateway, exported) = (strip("faults/", &by_gateway), strip("exported/", &exported));
    assert!(by_gateway.len() > 30, "{}", by_gateway.len());
    assert_eq!(
        by_gateway.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &by_gateway {
        assert!(
            exported[key] == *bytes,
            "{key}: the gateway's file differs from export's"
        );
    }
}
