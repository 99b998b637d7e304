//! The OpenAPI document lists every route the server answers, and every listed route
//! answers (not 404 "no such route").

use gridlog_tests::server::{get, Server};

const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/meters"),
    ("post", "/api/v1/meters"),
    ("get", "/api/v1/meters/{id}"),
    ("post", "/api/v1/meters/{id}/replace"),
    ("post", "/api/v1/meters/{id}/decommission"),
    ("get", "/api/v1/meters/{id}/rollups"),
    ("get", "/api/v1/today/meters"),
    ("post", "/api/v1/readings"),
    ("get", "/api/v1/assets"),
    ("post", "/api/v1/assets"),
    ("get", "/api/v1/assets/{id}"),
    ("post", "/api/v1/assets/{id}/telemetry"),
    ("post", "/api/v1/assets/{id}/setpoint"),
    ("post", "/api/v1/assets/{id}/availability"),
    ("post", "/api/v1/assets/{id}/faults"),
    ("get", "/api/v1/entities/{id}/events"),
    ("get", "/api/v1/entities/{id}/state"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/site"),
    ("get", "/api/v1/limits"),
    ("get", "/api/v1/stream"),
    ("post", "/api/v1/snapshot"),
    ("get", "/api/v1/status"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    // InfluxDB line protocol (README "Feeding gridlog").
    ("post", "/write"),
    ("post", "/api/v2/write"),
    ("get", "/ping"),
    ("post", "/query"),
];

#[test]
fn the_openapi_document_lists_every_route_and_only_routes() {
    let server = Server::start(&[]);
    let (status, doc) = get(&server.url("/api/v1/openapi.json"));
    assert_eq!(status, 200);
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            listed.push((method.clone(), path.clone()));
        }
    }
    listed.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Every documented GET route is served (not the fallback's "no such route").
    for (method, path) in ROUTES
        .iter()
        .filter(|(m, p)| *m == "get" && *p != "/api/v1/stream")
    {
        let (status, body) = get(&server.url(&path.replace("{id}", "x")));
        assert!(
            body["error"]["code"] != "not_found",
            "{method} {path} is documented but not routed ({status})"
        );
    }
    // The operations bodies are described field by field, not as a bare object.
    for path in ["/api/v1/status", "/readyz", "/healthz"] {
        let schema = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"];
        let name = schema
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("{path}: no named schema: {schema}"));
        let described = &doc["components"]["schemas"][name];
        assert!(
            described["properties"].is_object() || described["oneOf"].is_array(),
            "{path}: {described}"
        );
    }
    let status = &doc["components"]["schemas"]["StatusBody"]["properties"];
    for field in [
        "last_offset",
        "commit",
        "log",
        "replay",
        "shipping",
        "failed",
    ] {
        assert!(status[field].is_object(), "StatusBody.{field}: {status}");
    }
}
