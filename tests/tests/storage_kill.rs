//! SIGKILL under HTTP load with tiny segments and snapshot intervals, so rotation,
//! snapshots and archiving happen many times: after every restart each accepted reading is
//! there (read through the archive and the hot log), the gateway starts from a snapshot, and
//! `verify` finds the log, snapshots and archive clean.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridlog_tests::server::{get, post, rfc3339, Server};
use serde_json::json;

const ENV: &[(&str, &str)] = &[
    ("GRIDLOG_WAL__SEGMENT_BYTES", "65536"),
    ("GRIDLOG_STORAGE__SNAPSHOT_EVERY_EVENTS", "300"),
    ("GRIDLOG_STORAGE__SNAPSHOTS_KEEP", "2"),
];

#[test]
fn kills_while_snapshots_and_archiving_run_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_with_env(&dir, "serve", &[], ENV);
    for m in 0..4 {
        assert_eq!(
            post(
                &server.url("/api/v1/meters"),
                &json!({"id": format!("m{m}"), "kind": "submeter"})
            )
            .0,
            201
        );
    }
    let accepted: Arc<Mutex<BTreeMap<u64, (String, f64)>>> = Arc::default();
    for cycle in 0..5u64 {
        let writers: Vec<_> = (0..4)
            .map(|m| {
                let (url, accepted) = (server.url("/api/v1/readings"), accepted.clone());
                std::thread::spawn(move || {
                    for i in 0..100_000u64 {
                        let k = cycle * 1_000_000 + i;
                        let readings: Vec<_> = (0..5)
                            .map(|j| json!({"meter": format!("m{m}"), "time": rfc3339(1_500_000_000 + (k * 5 + j) as i64), "import_wh": (k * 5 + j) as f64, "export_wh": 0.0, "power_w": 1.0}))
                            .collect();
                        let Ok(response) = ureq::post(&url).send_json(json!({"readings": readings})) else { return };
                        let Ok(body) = response.into_json::<serde_json::Value>() else { return };
                        for (j, r) in body["results"].as_array().unwrap().iter().enumerate() {
                            if r["status"] == "accepted" {
                                let import = readings[j]["import_wh"].as_f64().unwrap();
                                accepted.lock().unwrap().insert(r["offset"].as_u64().unwrap(), (format!("m{m}"), import));
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500 + cycle * 250));
        server.kill();
        for w in writers {
            w.join().unwrap();
        }
        server = Server::start_with_env(&dir, "serve", &[], ENV);
        let (_, status) = get(&server.url("/api/v1/status"));
        assert!(
            status["snapshots"]["started_from"]
                .as_str()
                .unwrap()
                .starts_with("snapshot at offset"),
            "cycle {cycle}: {status}"
        );
        let accepted = accepted.lock().unwrap();
        let mut found = 0;
        let mut after = 0;
        loop {
            let (s, page) = get(&server.url(&format!("/api/v1/events?after={after}&limit=10000")));
            assert_eq!(s, 200, "{page}");
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                break;
            }
            for e in events {
                if let Some((meter, import)) = accepted.get(&e["offset"].as_u64().unwrap()) {
                    assert_eq!(e["entity"].as_str(), Some(meter.as_str()));
                    assert_eq!(e["data"]["import_wh"].as_f64(), Some(*import));
                    found += 1;
                }
            }
            after = page["last_offset"].as_u64().unwrap();
        }
        assert_eq!(
            found,
            accepted.len(),
            "cycle {cycle}: accepted readings missing"
        );
    }
    let (_, status) = get(&server.url("/api/v1/status"));
    server.stop();
    let archive = std::fs::read_dir(dir.join("archive"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert!(
        archive >= 3,
        "expected archiving to have run, archive has {archive} files; {status}"
    );
    let verify =
        gridlog_tests::run_gridlog(["verify".as_ref(), "--data-dir".as_ref(), dir.as_os_str()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // dump reads the archive, then the hot log: every offset once, in order.
    let dump =
        gridlog_tests::run_gridlog(["dump".as_ref(), "--data-dir".as_ref(), dir.as_os_str()]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let offsets: Vec<u64> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let last = status["last_offset"].as_u64().unwrap();
    assert!(
        offsets.len() as u64 >= last,
        "dump printed {} records, the log had {last}",
        offsets.len()
    );
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "dump has gaps or repeats"
    );
    // From an offset only the archive still holds: printed from there, with no note that
    // it is missing.
    let from_2 = gridlog_tests::run_gridlog([
        "dump".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--from".as_ref(),
        "2".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&from_2.stderr);
    assert!(from_2.status.success(), "{stderr}");
    assert!(!stderr.contains("no longer in the hot log"), "{stderr}");
    let first = String::from_utf8_lossy(&from_2.stdout)
        .lines()
        .next()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"].as_u64());
    assert_eq!(first, Some(Some(2)));
}
