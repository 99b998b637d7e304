//! Every endpoint of the API, against the real binary on a free loopback port.

use gridlog_tests::server::{get, post, rfc3339, unix_now, Server};
use serde_json::{json, Value};

fn now_rfc3339(offset_s: i64) -> String {
    rfc3339(unix_now() + offset_s)
}

#[test]
fn every_endpoint_answers_as_documented() {
    let server = Server::start(&[]);
    let u = |p: &str| server.url(p);

    // Health and readiness.
    assert_eq!(get(&u("/healthz")).0, 200);
    assert_eq!(get(&u("/readyz")).1["status"], "ready");

    // Register meters: 201 new, 200 identical, 409 different.
    let (s, b) = post(&u("/api/v1/meters"), &json!({"id": "m1", "kind": "grid"}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "accepted");
    assert_eq!(
        post(&u("/api/v1/meters"), &json!({"id": "m1", "kind": "grid"})).0,
        200
    );
    let (s, b) = post(&u("/api/v1/meters"), &json!({"id": "m1", "kind": "pv"}));
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "already_registered");
    assert_eq!(
        post(&u("/api/v1/meters"), &json!({"id": "pv1", "kind": "pv"})).0,
        201
    );

    // Readings: per-item results in order.
    let t0 = now_rfc3339(-120);
    let t1 = now_rfc3339(-60);
    let (s, b) = post(
        &u("/api/v1/readings"),
        &json!({"readings": [
            {"meter": "m1", "time": t0, "import_wh": 100.0, "export_wh": 0.0, "power_w": 2000.0},
            {"meter": "m1", "time": t1, "import_wh": 130.0, "export_wh": 0.0, "power_w": 1800.0, "voltage_v": 230.5, "current_a": 7.8},
            {"meter": "m1", "time": t1, "import_wh": 130.0, "export_wh": 0.0, "power_w": 1800.0, "voltage_v": 230.5, "current_a": 7.8},
            {"meter": "nope", "time": t1, "import_wh": 1.0, "export_wh": 0.0, "power_w": 1.0},
            {"meter": "pv1", "time": t1, "import_wh": 0.0, "export_wh": 55.0, "power_w": -3000.0}
        ], "command_id": "batch-1"}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (
            b["accepted"].clone(),
            b["duplicates"].clone(),
            b["rejected"].clone()
        ),
        (json!(3), json!(1), json!(1)),
        "{b}"
    );
    assert_eq!(b["results"][0]["status"], "accepted");
    assert_eq!(b["results"][0]["seq"], 2);
    assert_eq!(b["results"][2]["status"], "duplicate");
    assert_eq!(b["results"][3]["error"]["code"], "unknown_meter");
    assert_eq!(b["results"][3]["error"]["field"], "readings[3].meter");
    let offset_of_second = b["results"][1]["offset"].as_u64().unwrap();
    // The same command_id again stores nothing.
    let (s, again) = post(
        &u("/api/v1/readings"),
        &json!({"readings": [{"meter": "m1", "time": now_rfc3339(-30), "import_wh": 140.0, "export_wh": 0.0, "power_w": 1.0}], "command_id": "batch-1"}),
    );
    assert_eq!(s, 200);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["results"][0]["status"], "replayed");

    // Meters.
    let (s, meters) = get(&u("/api/v1/meters"));
    assert_eq!(s, 200);
    assert_eq!(meters.as_array().unwrap().len(), 2);
    let (s, m1) = get(&u("/api/v1/meters/m1"));
    assert_eq!(s, 200);
    assert_eq!(m1["seq"], 3);
    assert_eq!(m1["latest"]["import_wh"], 130.0);
    assert_eq!(get(&u("/api/v1/meters/nope")).0, 404);

    // Rollups.
    let (s, r) = get(&u("/api/v1/meters/m1/rollups?step=1h"));
    assert_eq!(s, 200, "{r}");
    let energy: f64 = r["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["import_wh"].as_f64().unwrap())
        .sum();
    assert_eq!(energy, 30.0, "{r}");
    assert_eq!(get(&u("/api/v1/meters/m1/rollups?step=1d")).0, 200);
    assert_eq!(get(&u("/api/v1/meters/m1/rollups?step=15m")).0, 200);

    // Assets, telemetry, setpoints with optimistic concurrency.
    let (s, b) = post(
        &u("/api/v1/assets"),
        &json!({"id": "bat1", "kind": "battery", "rated_power_w": 5000, "capacity_wh": 10000}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(
        &u("/api/v1/assets/bat1/telemetry"),
        &json!({"time": now_rfc3339(-10), "power_w": 1200.0, "soc_pct": 55.5, "status": "charging"}),
    );
    assert_eq!(s, 200, "{b}");
    let (s, asset) = get(&u("/api/v1/assets/bat1"));
    assert_eq!(s, 200);
    let seq = asset["seq"].as_u64().unwrap();
    assert_eq!(asset["telemetry"]["soc_pct"], 55.5);
    let (s, b) = post(
        &u("/api/v1/assets/bat1/setpoint"),
        &json!({"power_w": 2500.0, "expected_seq": seq}),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(
        &u("/api/v1/assets/bat1/setpoint"),
        &json!({"power_w": 2500.0, "expected_seq": seq}),
    );
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "seq_mismatch");
    assert_eq!(b["error"]["current_seq"], seq + 1);
    let (s, b) = post(
        &u("/api/v1/assets/bat1/setpoint"),
        &json!({"power_w": 9000.0}),
    );
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "setpoint_above_rated");
    assert_eq!(b["error"]["field"], "power_w");
    assert_eq!(
        post(
            &u("/api/v1/assets/bat1/faults"),
            &json!({"code": "overtemp", "active": true})
        )
        .0,
        200
    );
    assert_eq!(
        post(
            &u("/api/v1/assets/bat1/availability"),
            &json!({"available": false})
        )
        .0,
        200
    );
    let (s, b) = post(
        &u("/api/v1/assets/bat1/setpoint"),
        &json!({"power_w": 100.0}),
    );
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (422, json!("asset_unavailable"))
    );
    let (s, assets) = get(&u("/api/v1/assets"));
    assert_eq!(s, 200);
    assert_eq!(assets[0]["faults"], json!(["overtemp"]));
    assert_eq!(get(&u("/api/v1/assets/nope")).0, 404);

    // Events of an entity, by seq range; unknown = empty; limit 0 = highest seq only.
    let (s, e) = get(&u(
        "/api/v1/entities/m1/events?from_seq=2&to_seq=3&limit=10",
    ));
    assert_eq!(s, 200);
    assert_eq!(e["highest_seq"], 3);
    assert_eq!(
        e["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].clone())
            .collect::<Vec<_>>(),
        vec![json!(2), json!(3)]
    );
    assert_eq!(e["events"][1]["offset"].as_u64().unwrap(), offset_of_second);
    assert_eq!(e["events"][1]["type"], "reading_recorded");
    assert_eq!(e["events"][1]["data"]["voltage_v"], 230.5);
    let (_, unknown) = get(&u("/api/v1/entities/ghost/events"));
    assert_eq!(
        (unknown["highest_seq"].clone(), unknown["events"].clone()),
        (json!(0), json!([]))
    );
    let (_, zero) = get(&u("/api/v1/entities/m1/events?limit=0"));
    assert_eq!(
        (zero["highest_seq"].clone(), zero["events"].clone()),
        (json!(3), json!([]))
    );

    // Events from an offset, by tag; offsets exclusive on resume.
    let (s, page) = get(&u("/api/v1/events?after=0&limit=3"));
    assert_eq!(s, 200);
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    assert_eq!(page["last_offset"], 3);
    let (_, next) = get(&u("/api/v1/events?after=3&limit=1"));
    assert_eq!(next["events"][0]["offset"], 4);
    let (_, alarms) = get(&u("/api/v1/events?tag=alarm"));
    assert_eq!(alarms["events"].as_array().unwrap().len(), 1);
    assert_eq!(alarms["events"][0]["entity"], "bat1");
    assert!(alarms["events"][0]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("asset")));

    // Point-in-time state.
    let (s, st) = get(&u(&format!(
        "/api/v1/entities/m1/state?as_of={}",
        now_rfc3339(3600)
    )));
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["seq"], 3);
    let (s, _) = get(&u("/api/v1/entities/m1/state?as_of=2000-01-01T00:00:00Z"));
    assert_eq!(s, 404);

    // Site, status, metrics, OpenAPI.
    let (s, site) = get(&u("/api/v1/site"));
    assert_eq!(s, 200, "{site}");
    assert_eq!(site["power"]["grid"]["power_w"], 1800.0);
    let (s, status) = get(&u("/api/v1/status"));
    assert_eq!(s, 200);
    assert!(status["last_offset"].as_u64().unwrap() >= 8, "{status}");
    assert!(status["digest"].as_str().unwrap().len() == 16);
    assert!(status["commit"]["rounds"].as_u64().unwrap() > 0);
    assert!(status["disk_free_bytes"].as_u64().unwrap() > 0);
    let (s, metrics) = get(&u("/metrics"));
    assert_eq!(s, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("gridlog_commands_accepted_total"),
        "{metrics}"
    );
    assert!(metrics.contains("gridlog_last_offset"), "{metrics}");
    let (s, openapi) = get(&u("/api/v1/openapi.json"));
    assert_eq!(s, 200);
    assert!(openapi["paths"]["/api/v1/readings"]["post"].is_object());

    // A rejected reading of a known meter is counted for the dashboard's meter status.
    let (s, b) = post(
        &u("/api/v1/readings"),
        &json!({"readings": [{"meter": "m1", "time": now_rfc3339(-5), "import_wh": 1.0, "export_wh": 0.0, "power_w": 1.0}]}),
    );
    assert_eq!(
        (s, b["results"][0]["error"]["code"].clone()),
        (200, json!("register_decreased"))
    );
    // Two: this reading and the earlier re-registration of m1 as pv.
    assert_eq!(get(&u("/api/v1/meters/m1")).1["rejected_last_hour"], 2);

    // Unknown route: JSON 404.
    let (s, b) = get(&u("/api/v1/nothing"));
    assert_eq!((s, b["error"]["code"].clone()), (404, json!("not_found")));
    let _: Value = b;
}
