//! A table of bad requests: each is answered 4xx with a JSON error naming the field, and
//! nothing is stored (the committed offset does not move).

use gridlog_tests::server::{get, post, post_raw, Server};
use serde_json::json;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    field: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: &'static str,
) -> Case {
    Case {
        name,
        method: "POST",
        path,
        content_type: "application/json",
        headers: vec![],
        body: body.into(),
        status,
        field,
    }
}

fn get_case(name: &'static str, path: &'static str, status: u16, field: &'static str) -> Case {
    Case {
        name,
        method: "GET",
        path,
        content_type: "",
        headers: vec![],
        body: vec![],
        status,
        field,
    }
}

fn reading(extra: &str) -> String {
    format!(
        r#"{{"readings":[{{"meter":"m1","time":"2026-01-01T00:00:00Z","import_wh":1.0,"export_wh":0.0,"power_w":1.0{extra}}}]}}"#
    )
}

#[test]
fn bad_requests_are_refused_with_the_field_named_and_nothing_stored() {
    let server = Server::start(&[]);
    assert_eq!(
        post(
            &server.url("/api/v1/meters"),
            &json!({"id": "m1", "kind": "grid"})
        )
        .0,
        201
    );
    assert_eq!(
        post(
            &server.url("/api/v1/assets"),
            &json!({"id": "bat1", "kind": "battery", "rated_power_w": 5000})
        )
        .0,
        201
    );
    let before = get(&server.url("/api/v1/status")).1["last_offset"].clone();

    let long_id = "x".repeat(65);
    let too_many: Vec<String> = (0..5001).map(|i| format!(r#"{{"meter":"m1","time":"2026-01-01T00:00:{:02}Z","import_wh":{i},"export_wh":0,"power_w":1}}"#, i % 60)).collect();
    let too_many = format!(r#"{{"readings":[{}]}}"#, too_many.join(","));
    let cases = vec![
        case(
            "malformed JSON",
            "/api/v1/readings",
            r#"{"readings": ["#,
            400,
            "readings",
        ),
        case("not JSON at all", "/api/v1/readings", "hello", 400, "body"),
        case(
            "a second document after the first",
            "/api/v1/meters",
            r#"{"id":"m2","kind":"grid"}{"id":"m3","kind":"grid"}"#,
            400,
            "body",
        ),
        case(
            "two readings documents",
            "/api/v1/readings",
            format!("{} {}", reading(""), reading("")),
            400,
            "body",
        ),
        case(
            "trailing garbage",
            "/api/v1/readings",
            format!("{}x", reading("")),
            400,
            "body",
        ),
        case("top-level array", "/api/v1/readings", "[]", 400, "body"),
        case(
            "readings not an array",
            "/api/v1/readings",
            r#"{"readings": 5}"#,
            400,
            "readings",
        ),
        case(
            "readings null",
            "/api/v1/readings",
            r#"{"readings": null}"#,
            400,
            "readings",
        ),
        case(
            "missing readings",
            "/api/v1/readings",
            r#"{}"#,
            400,
            "readings",
        ),
        case(
            "missing import_wh",
            "/api/v1/readings",
            r#"{"readings":[{"meter":"m1","time":"2026-01-01T00:00:00Z","export_wh":0,"power_w":1}]}"#,
            400,
            "readings[0].import_wh",
        ),
        case(
            "NaN as string",
            "/api/v1/readings",
            reading("").replace(r#""power_w":1.0"#, r#""power_w":"NaN""#),
            400,
            "readings[0].power_w",
        ),
        case(
            "number too large",
            "/api/v1/readings",
            reading("").replace(r#""import_wh":1.0"#, r#""import_wh":1e999"#),
            400,
            "readings[0].import_wh",
        ),
        case(
            "energy as string",
            "/api/v1/readings",
            reading("").replace(r#""import_wh":1.0"#, r#""import_wh":"1""#),
            400,
            "readings[0].import_wh",
        ),
        case(
            "time not RFC 3339",
            "/api/v1/readings",
            reading("").replace("2026-01-01T00:00:00Z", "yesterday"),
            400,
            "readings[0].time",
        ),
        case(
            "time as number",
            "/api/v1/readings",
            reading("").replace(r#""2026-01-01T00:00:00Z""#, "1700000000"),
            400,
            "readings[0].time",
        ),
        case(
            "meter id too long",
            "/api/v1/readings",
            reading("").replace(r#""m1""#, &format!("\"{long_id}\"")),
            400,
            "readings[0].meter",
        ),
        case(
            "meter id bad characters",
            "/api/v1/readings",
            reading("").replace(r#""m1""#, r#""m 1/x""#),
            400,
            "readings[0].meter",
        ),
        case(
            "meter id empty",
            "/api/v1/readings",
            reading("").replace(r#""m1""#, r#""""#),
            400,
            "readings[0].meter",
        ),
        case(
            "voltage as bool",
            "/api/v1/readings",
            reading(r#","voltage_v":true"#),
            400,
            "readings[0].voltage_v",
        ),
        case(
            "unknown field in reading",
            "/api/v1/readings",
            reading(r#","colour":"red""#),
            400,
            "readings[0].colour",
        ),
        case(
            "duplicate field in reading",
            "/api/v1/readings",
            reading(r#","power_w":2"#),
            400,
            "readings[0].power_w",
        ),
        case(
            "unknown top-level field",
            "/api/v1/readings",
            r#"{"readings":[],"extra":1}"#,
            400,
            "extra",
        ),
        case(
            "command_id bad characters",
            "/api/v1/readings",
            r#"{"readings":[],"command_id":"a b"}"#,
            400,
            "command_id",
        ),
        case(
            "empty readings",
            "/api/v1/readings",
            r#"{"readings":[]}"#,
            422,
            "readings",
        ),
        case(
            "too many readings",
            "/api/v1/readings",
            too_many,
            413,
            "readings",
        ),
        Case {
            content_type: "text/plain",
            ..case(
                "wrong content type",
                "/api/v1/readings",
                reading(""),
                415,
                "Content-Type",
            )
        },
        Case {
            content_type: "",
            ..case(
                "no content type",
                "/api/v1/readings",
                reading(""),
                415,
                "Content-Type",
            )
        },
        case(
            "meter kind unknown",
            "/api/v1/meters",
            r#"{"id":"m2","kind":"nuclear"}"#,
            400,
            "kind",
        ),
        case(
            "meter kind missing",
            "/api/v1/meters",
            r#"{"id":"m2"}"#,
            400,
            "kind",
        ),
        case(
            "register_bits wrong type",
            "/api/v1/meters",
            r#"{"id":"m2","kind":"grid","register_bits":"32"}"#,
            400,
            "register_bits",
        ),
        case(
            "register_bits out of range",
            "/api/v1/meters",
            r#"{"id":"m2","kind":"grid","register_bits":300}"#,
            400,
            "register_bits",
        ),
        case(
            "meter id too long",
            "/api/v1/meters",
            format!(r#"{{"id":"{long_id}","kind":"grid"}}"#),
            400,
            "id",
        ),
        case(
            "asset rated power as string",
            "/api/v1/assets",
            r#"{"id":"a2","kind":"battery","rated_power_w":"5kW"}"#,
            400,
            "rated_power_w",
        ),
        case(
            "asset kind unknown",
            "/api/v1/assets",
            r#"{"id":"a2","kind":"reactor","rated_power_w":5}"#,
            400,
            "kind",
        ),
        case(
            "asset rated power negative",
            "/api/v1/assets",
            r#"{"id":"a2","kind":"battery","rated_power_w":-5}"#,
            422,
            "rated_power_w",
        ),
        case(
            "telemetry soc above 100",
            "/api/v1/assets/bat1/telemetry",
            r#"{"time":"2026-01-01T00:00:00Z","power_w":1,"soc_pct":150}"#,
            422,
            "soc_pct",
        ),
        case(
            "telemetry status too long",
            "/api/v1/assets/bat1/telemetry",
            format!(
                r#"{{"time":"2026-01-01T00:00:00Z","power_w":1,"status":"{}"}}"#,
                "s".repeat(40)
            ),
            400,
            "status",
        ),
        case(
            "setpoint power missing",
            "/api/v1/assets/bat1/setpoint",
            r#"{}"#,
            400,
            "power_w",
        ),
        case(
            "setpoint expected_seq negative",
            "/api/v1/assets/bat1/setpoint",
            r#"{"power_w":1,"expected_seq":-1}"#,
            400,
            "expected_seq",
        ),
        case(
            "setpoint above rated",
            "/api/v1/assets/bat1/setpoint",
            r#"{"power_w":99999}"#,
            422,
            "power_w",
        ),
        case(
            "asset id in path bad",
            "/api/v1/assets/bad%20id/setpoint",
            r#"{"power_w":1}"#,
            400,
            "id",
        ),
        get_case(
            "events after not a number",
            "/api/v1/events?after=abc",
            400,
            "after",
        ),
        get_case(
            "events limit too large",
            "/api/v1/events?limit=99999",
            400,
            "limit",
        ),
        get_case(
            "events unknown parameter",
            "/api/v1/events?bogus=1",
            400,
            "bogus",
        ),
        get_case(
            "rollups unknown step",
            "/api/v1/meters/m1/rollups?step=2h",
            400,
            "step",
        ),
        get_case(
            "rollups from not a time",
            "/api/v1/meters/m1/rollups?from=monday",
            400,
            "from",
        ),
        get_case(
            "entity events from_seq negative",
            "/api/v1/entities/m1/events?from_seq=-1",
            400,
            "from_seq",
        ),
        get_case(
            "state as_of not a time",
            "/api/v1/entities/m1/state?as_of=noon",
            400,
            "as_of",
        ),
        get_case(
            "stream after not a number",
            "/api/v1/stream?after=xyz",
            400,
            "after",
        ),
        get_case("meter id not UTF-8", "/api/v1/meters/%FF", 400, "id"),
        case(
            "asset id not UTF-8",
            "/api/v1/assets/%FF/setpoint",
            r#"{"power_w": 1}"#,
            400,
            "id",
        ),
        Case {
            headers: vec![("Last-Event-ID", "abc")],
            ..get_case(
                "stream Last-Event-ID not a number",
                "/api/v1/stream",
                400,
                "Last-Event-ID",
            )
        },
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases {
        let url = server.url(c.path);
        let (status, body) = if c.method == "GET" {
            let mut request = ureq::get(&url);
            for (k, v) in &c.headers {
                request = request.set(k, v);
            }
            match request.call() {
                Ok(r) | Err(ureq::Error::Status(_, r)) => {
                    let status = r.status();
                    (
                        status,
                        serde_json::from_str(&r.into_string().unwrap_or_default())
                            .unwrap_or(serde_json::Value::Null),
                    )
                }
                Err(e) => panic!("{}: {e}", c.name),
            }
        } else {
            post_raw(&url, c.content_type, &c.headers, &c.body)
        };
        let field = body["error"]["field"].as_str().unwrap_or("<none>");
        let message = body["error"]["message"].as_str().unwrap_or("<none>");
        if status != c.status || field != c.field || message.is_empty() {
            failures.push(format!(
                "{}: got {status} field {field:?} ({message}); want {} field {:?}",
                c.name, c.status, c.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // A route asked with a method it does not take answers JSON too.
    let response = match ureq::put(&server.url("/api/v1/meters")).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("PUT /api/v1/meters: {e}"),
    };
    assert_eq!(response.status(), 405);
    let body: serde_json::Value =
        serde_json::from_str(&response.into_string().unwrap_or_default()).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let after = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    assert_eq!(before, after, "a bad request stored something");
}

#[test]
fn a_meter_beyond_engine_entities_max_is_refused_naming_the_id_and_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(
        &tmp.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_ENGINE__ENTITIES_MAX", "1")],
    );
    let meters = server.url("/api/v1/meters");
    assert_eq!(post(&meters, &json!({"id": "m1", "kind": "grid"})).0, 201);
    let before = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    let (status, body) = post(&meters, &json!({"id": "m2", "kind": "pv"}));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "too_many_entities", "{body}");
    assert_eq!(body["error"]["field"], "id", "{body}");
    assert_eq!(get(&server.url("/api/v1/meters/m2")).0, 404);
    let after = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    assert_eq!(before, after, "the refused registration stored something");
    server.stop();
}
