//! Huge finite numbers (1e39 beyond f32, 1.7e308 near f64::MAX) are refused by the engine's
//! physical ranges, naming the field, and nothing is stored: no rollup or site answer ever
//! holds `null` where the API promises a number.

use gridlog_tests::server::{get, post, rfc3339, unix_now, Server};
use serde_json::{json, Value};

/// Every `null` in `value`, by JSON path.
fn nulls(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Null => out.push(path.to_string()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            for (k, v) in fields {
                nulls(v, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn huge_numbers_are_refused_naming_the_field_and_answers_hold_no_null() {
    let server = Server::start(&[]);
    for (id, kind) in [("grid", "grid"), ("pv", "pv")] {
        assert_eq!(
            post(
                &server.url("/api/v1/meters"),
                &json!({"id": id, "kind": kind})
            )
            .0,
            201
        );
    }
    let now = unix_now();
    // One sane reading per meter, so rollups and site totals exist.
    for (i, id) in ["grid", "pv"].iter().enumerate() {
        let (status, body) = post(
            &server.url("/api/v1/readings"),
            &json!({"readings": [{"meter": id, "time": rfc3339(now - 120 + i as i64),
                "import_wh": 1000.0, "export_wh": 10.0, "power_w": 500.0}]}),
        );
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (200, Some(1)),
            "{body}"
        );
    }
    let before = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    let baseline = answer_nulls(&server);
    let cases = [
        ("power_w", json!(1e39)),
        ("power_w", json!(-1e39)),
        ("power_w", json!(1.7e308)),
        ("import_wh", json!(1.7e308)),
        ("export_wh", json!(1e39)),
        ("voltage_v", json!(1e7)),
        ("current_a", json!(-1e7)),
        ("reactive_power_var", json!(1e38)),
    ];
    for (field, value) in &cases {
        for id in ["grid", "pv"] {
            let mut reading = json!({"meter": id, "time": rfc3339(now - 60),
                "import_wh": 2000.0, "export_wh": 20.0, "power_w": 600.0});
            reading[*field] = value.clone();
            let (status, body) = post(
                &server.url("/api/v1/readings"),
                &json!({ "readings": [reading] }),
            );
            assert_eq!(status, 200, "{body}");
            let result = &body["results"][0];
            assert_eq!(result["status"], "rejected", "{field}={value}: {body}");
            assert_eq!(
                result["error"]["code"], "value_out_of_range",
                "{field}={value}: {body}"
            );
            assert_eq!(
                result["error"]["field"],
                format!("readings[0].{field}"),
                "{body}"
            );
        }
    }
    // Assets: registration, telemetry, setpoints.
    let (status, body) = post(
        &server.url("/api/v1/assets"),
        &json!({"id": "bat", "kind": "battery", "rated_power_w": 1.7e308}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "value_out_of_range", "{body}");
    assert_eq!(body["error"]["field"], "rated_power_w", "{body}");
    let after = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    assert_eq!(before, after, "a refused value was stored");

    // Only the nulls the sane data gave (a site without a battery has no state of charge),
    // none from the refused values (before ranges, 1e39 made rollups' avg/max `null`).
    assert_eq!(answer_nulls(&server), baseline);
    assert_eq!(baseline, vec!["site.battery_soc_pct".to_string()]);
}

/// The nulls in the site's answer and every meter's rollups.
fn answer_nulls(server: &Server) -> Vec<String> {
    let mut found = Vec::new();
    let (_, site) = get(&server.url("/api/v1/site"));
    nulls(&site, "site", &mut found);
    for id in ["grid", "pv"] {
        for step in ["15m", "1h", "1d"] {
            let (status, rollups) =
                get(&server.url(&format!("/api/v1/meters/{id}/rollups?step={step}")));
            assert_eq!(status, 200, "{rollups}");
            nulls(&rollups, &format!("{id}/{step}"), &mut found);
        }
    }
    found
}
