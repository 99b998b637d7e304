//! A gateway restored from a snapshot in central storage answers every query without a
//! 5xx: history before its start is 410 `history_evicted` naming where it starts (and that
//! central storage holds it); entity queries whose index points below the start begin at
//! it, and events it holds are served whichever route asks for them.

#[allow(dead_code)]
mod ship_support;

use std::time::Duration;

use gridlog_common::domain::Event;
use ship_support::*;

/// Status of a GET, without reading a streamed body; the JSON body when there is one.
fn status(gateway: &Gateway, path: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}{}", gateway.addr.expect("serve"), path);
    let response = match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let code = response.status();
    if response.content_type() == "application/json" {
        (code, response.into_json().unwrap_or_default())
    } else {
        (code, serde_json::Value::Null)
    }
}

#[test]
fn a_restored_gateway_answers_every_query_route_before_at_and_after_its_start_without_5xx() {
    let moto = Moto::start();
    let prefix = "queries";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("original");
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let original = events(&dir, 1);
    std::fs::remove_dir_all(&dir).unwrap();

    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let start: u64 = std::fs::read_to_string(restored.join("HISTORY_START"))
        .expect("a snapshot restore says where its history starts")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(start, first_hot_offset(&restored));
    assert!(
        start > 1,
        "the test needs a restore that starts after offset 1"
    );

    // Serve it without shipping: only the queries matter here.
    let local_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("GRIDLOG_SHIP__"))
        .cloned()
        .collect();
    let gateway = Gateway::serve(&restored, &local_env);

    // The restored gateway continues: readings accepted against the restored registers.
    let meter = "meter-0";
    let restored_meter: Vec<_> = original
        .iter()
        .filter(|(o, e)| e.entity.as_str() == meter && *o < start)
        .collect();
    let Some(Event::ReadingRecorded(last_reading)) = restored_meter.last().map(|(_, e)| &e.event)
    else {
        panic!("meter-0's last event is a reading");
    };
    let new_readings = 20;
    for k in 1..=new_readings {
        let body = serde_json::json!({"readings": [{
            "meter": meter,
            "time": gridlog_tests::server::rfc3339_ms(last_reading.time_ms + k * 1000),
            "import_wh": last_reading.import_wh + k as f64,
            "export_wh": 0.0,
            "power_w": 100.0,
        }]});
        let url = format!("http://{}/api/v1/readings", gateway.addr.unwrap());
        let response: serde_json::Value = ureq::post(&url)
            .send_json(body)
            .expect("a reading after the restore")
            .into_json()
            .unwrap();
        assert_eq!(response["results"][0]["status"], "accepted", "{response}");
    }
    let (code, page) = status(&gateway, &format!("/api/v1/events?after={}", start - 1));
    assert_eq!(code, 200, "{page}");
    let held: Vec<(u64, u64)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entity"] == meter)
        .map(|e| (e["offset"].as_u64().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(held.len(), new_readings as usize, "{page}");
    // The restored log holds the original's events from `start` (chunks after the
    // snapshot), then the new ones.
    let original_end = original.last().unwrap().0 + 1;
    assert!(original_end >= start);
    assert_eq!(
        held[0].0, original_end,
        "the first new event follows the restored log"
    );
    let end = page["last_offset"].as_u64().unwrap() + 1;
    let last_before = restored_meter.last().unwrap().1.clone();
    assert_eq!(held[0].1, last_before.seq + 1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let offsets = [
        0,
        1,
        start - 2,
        start - 1,
        start,
        start + 1,
        end - 1,
        end + 5,
    ];
    let seqs = [
        1,
        last_before.seq,
        held[0].1,
        held[1].1,
        held[held.len() - 1].1,
    ];
    let times = [
        0,
        original[0].1.gateway_ms,
        last_before.gateway_ms,
        now_ms,
        now_ms + 3_600_000,
    ];

    let mut paths = vec![
        "/api/v1/meters".to_string(),
        format!("/api/v1/meters/{meter}"),
        "/api/v1/assets".into(),
        "/api/v1/assets/no-such-asset".into(),
        "/api/v1/site".into(),
        "/api/v1/limits".into(),
        "/api/v1/today/meters".into(),
        format!("/api/v1/today/meters?after={meter}&limit=1"),
        "/api/v1/status".into(),
        "/metrics".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/ping".into(),
        format!("/api/v1/meters/{meter}/rollups"),
        format!("/api/v1/meters/{meter}/rollups?step=1h"),
        format!("/api/v1/meters/{meter}/rollups?step=1d"),
        format!("/api/v1/entities/{meter}/events"),
        format!("/api/v1/entities/{meter}/state"),
        "/api/v1/events".into(),
    ];
    for after in offsets {
        paths.push(format!("/api/v1/events?after={after}"));
        paths.push(format!("/api/v1/events?after={after}&tag=meter"));
        paths.push(format!("/api/v1/stream?after={after}"));
        paths.push(format!("/api/v1/stream?after={after}&entity={meter}"));
    }
    for seq in seqs {
        paths.push(format!("/api/v1/entities/{meter}/events?from_seq={seq}"));
        paths.push(format!(
            "/api/v1/entities/{meter}/events?from_seq={seq}&to_seq={}",
            seq + 3
        ));
    }
    for ms in times {
        let t = gridlog_tests::server::rfc3339_ms(ms);
        paths.push(format!("/api/v1/entities/{meter}/state?as_of={t}"));
        paths.push(format!("/api/v1/entities/gateway:storage/state?as_of={t}"));
        paths.push(format!("/api/v1/meters/{meter}/rollups?from={t}"));
    }
    // Every GET route of the API is in the walk.
    let (_, openapi) = status(&gateway, "/api/v1/openapi.json");
    for (route, item) in openapi["paths"].as_object().unwrap() {
        if item.get("get").is_none() {
            continue;
        }
        let prefix = route.split('{').next().unwrap();
        assert!(
            paths.iter().any(|p| p.starts_with(prefix)),
            "the walk misses {route}"
        );
    }
    for path in &paths {
        let (code, body) = status(&gateway, path);
        assert!(code < 500, "GET {path} answered {code}: {body}");
    }

    // History before the start: 410 naming the start and central storage.
    for after in [0, 1, start - 2] {
        for path in [
            format!("/api/v1/events?after={after}"),
            format!("/api/v1/stream?after={after}"),
        ] {
            let (code, body) = status(&gateway, &path);
            assert_eq!(code, 410, "{path}: {body}");
            assert_eq!(body["error"]["code"], "history_evicted", "{path}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("offset {start}"))
                    && message.contains("central storage")
                    && message.contains(&format!("after={}", start - 1)),
                "{path}: {message}"
            );
        }
    }
    // From the start on, the events are the original's.
    let (code, body) = status(&gateway, &format!("/api/v1/events?after={}", start - 1));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["events"][0]["offset"], start, "{body}");

    // An entity query whose checkpoint lies below the start begins at the start; one for
    // events the gateway holds returns exactly them.
    let (code, body) = status(
        &gateway,
        &format!("/api/v1/entities/{meter}/events?from_seq=1"),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["history_start"], start, "{body}");
    assert_eq!(body["events"][0]["seq"], held[0].1, "{body}");
    assert_eq!(body["events"][0]["offset"], held[0].0, "{body}");
    let (code, body) = status(
        &gateway,
        &format!("/api/v1/entities/{meter}/events?from_seq={}", held[1].1),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["events"][0]["seq"], held[1].1, "{body}");
    assert_eq!(body["events"][0]["offset"], held[1].0, "{body}");
    assert!(body.get("history_start").is_none(), "{body}");

    // State as of a time before the start is not here; after the entity's last event it
    // is the current state.
    let (code, body) = status(
        &gateway,
        &format!(
            "/api/v1/entities/{meter}/state?as_of={}",
            gridlog_tests::server::rfc3339_ms(last_before.gateway_ms)
        ),
    );
    assert_eq!(code, 410, "{body}");
    assert_eq!(body["error"]["code"], "history_evicted", "{body}");
    let (code, body) = status(
        &gateway,
        &format!(
            "/api/v1/entities/{meter}/state?as_of={}",
            gridlog_tests::server::rfc3339_ms(now_ms + 3_600_000)
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["seq"], held[held.len() - 1].1, "{body}");
}
