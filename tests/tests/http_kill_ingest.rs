//! SIGKILL during concurrent HTTP ingest, then restart: every reading answered "accepted"
//! is present at the offset it was given, with its values.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridlog_tests::server::{get, post, rfc3339, Server};
use serde_json::json;

#[test]
fn every_accepted_reading_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, "serve", &["--log", "warn"]);
    for m in 0..8 {
        assert_eq!(
            post(
                &server.url("/api/v1/meters"),
                &json!({"id": format!("m{m}"), "kind": "submeter"})
            )
            .0,
            201
        );
    }
    // offset -> (meter, import_wh)
    let accepted: Arc<Mutex<BTreeMap<u64, (String, f64)>>> = Arc::default();
    for cycle in 0..4u64 {
        let url = server.url("/api/v1/readings");
        let writers: Vec<_> = (0..8)
            .map(|m| {
                let (url, accepted) = (url.clone(), accepted.clone());
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let n = cycle * 100_000 + i;
                        let readings: Vec<_> = (0..10)
                            .map(|j| {
                                let k = n * 10 + j;
                                json!({"meter": format!("m{m}"), "time": rfc3339(1_500_000_000 + k as i64),
                                       "import_wh": k as f64, "export_wh": 0.0, "power_w": 1.0})
                            })
                            .collect();
                        let response = ureq::post(&url).send_json(json!({"readings": readings}));
                        let Ok(response) = response else { return };
                        let Ok(body) = response.into_json::<serde_json::Value>() else { return };
                        for (j, r) in body["results"].as_array().unwrap().iter().enumerate() {
                            if r["status"] == "accepted" {
                                let offset = r["offset"].as_u64().unwrap();
                                accepted.lock().unwrap().insert(offset, (format!("m{m}"), readings[j]["import_wh"].as_f64().unwrap()));
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + cycle * 300));
        server.kill();
        for w in writers {
            w.join().unwrap();
        }
        server = Server::start_in(&dir, "serve", &[]);
        let accepted = accepted.lock().unwrap();
        assert!(
            !accepted.is_empty(),
            "cycle {cycle}: nothing was accepted before the kill"
        );
        let mut after = 0;
        let mut found = 0;
        loop {
            let (s, page) = get(&server.url(&format!("/api/v1/events?after={after}&limit=10000")));
            assert_eq!(s, 200);
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                break;
            }
            for e in events {
                let offset = e["offset"].as_u64().unwrap();
                if let Some((meter, import)) = accepted.get(&offset) {
                    assert_eq!(
                        e["entity"].as_str(),
                        Some(meter.as_str()),
                        "offset {offset}"
                    );
                    assert_eq!(
                        e["data"]["import_wh"].as_f64(),
                        Some(*import),
                        "offset {offset}"
                    );
                    found += 1;
                }
            }
            after = page["last_offset"].as_u64().unwrap();
        }
        assert_eq!(
            found,
            accepted.len(),
            "cycle {cycle}: accepted readings missing after restart"
        );
    }
}
