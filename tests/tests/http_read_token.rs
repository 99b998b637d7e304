//! Read tokens: with `read_token` set, every route of the OpenAPI document the server
//! serves answers 401 (with `WWW-Authenticate: Bearer`) without a token and 403 with a wrong
//! one, except liveness and readiness; reads take the read or the write token, writes only
//! the write token. The routes come from the served document, so a route added later
//! without the check fails here. The dashboard's static files stay open; `/metrics` opens
//! with `metrics_public`; the live stream also takes the token as `?access_token=`, no
//! other route does; `/query` is a read and `/write` a write, in InfluxDB's ways.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use gridlog_tests::server::Server;
use serde_json::Value;

const READ: &str = "r3ad-token";
const WRITE: &str = "wr1te-token";
const WRONG: &str = "not-a-token";

/// Routes anyone may call: systemd's and load balancers' probes, InfluxDB's ping.
const OPEN: &[&str] = &["/healthz", "/readyz", "/ping"];

/// An answer: status, `WWW-Authenticate`, JSON body (or the text as a string).
#[derive(Debug)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

fn call(method: &str, url: &str, token: Option<&str>) -> Answer {
    let line_protocol = ["/write", "/api/v2/write", "/query"]
        .iter()
        .any(|p| url.contains(&format!("{p}?")) || url.ends_with(p));
    let (content_type, body): (&str, &[u8]) = if line_protocol {
        (
            "text/plain",
            b"meter,id=m9 import_wh=1 1700000000000000000\n",
        )
    } else {
        ("application/json", b"{}")
    };
    let mut request = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
        .request(method, url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match method {
        "POST" => request.set("Content-Type", content_type).send_bytes(body),
        _ => request.call(),
    };
    let response = match response {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let challenge = response.header("www-authenticate").map(str::to_string);
    let text = response.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        challenge,
        body,
    }
}

/// The routes the server documents, `{id}` filled in: (METHOD, path).
fn documented_routes(server: &Server) -> Vec<(String, String)> {
    let doc = call("GET", &server.url("/api/v1/openapi.json"), Some(READ));
    assert_eq!(doc.status, 200, "{:?}", doc.body);
    let mut routes = vec![("GET".to_string(), "/api/v1/openapi.json".to_string())];
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.replace("{id}", "m1")));
        }
    }
    assert!(routes.len() > 25, "{routes:?}");
    routes
}

/// The first line of a GET's answer, read from the socket (the stream never ends).
fn status_line(server: &Server, path_and_query: &str) -> String {
    let mut socket = TcpStream::connect(server.addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn every_documented_route_needs_its_token_and_only_probes_are_open() {
    let server = Server::start(&["--read-token", READ, "--write-token", WRITE]);
    let mut guarded = 0;
    for (method, path) in documented_routes(&server) {
        let url = server.url(&path);
        let route = format!("{method} {path}");
        let none = call(&method, &url, None);
        if OPEN.contains(&path.as_str()) {
            assert!(!matches!(none.status, 401 | 403), "{route}: {none:?}");
            continue;
        }
        guarded += 1;
        assert_eq!(none.status, 401, "{route}: {none:?}");
        if !path.starts_with("/write") && !path.starts_with("/api/v2/write") && path != "/query" {
            assert_eq!(none.body["error"]["code"], "unauthorized", "{route}");
            assert_eq!(none.challenge.as_deref(), Some("Bearer"), "{route}");
        }
        let wrong = call(&method, &url, Some(WRONG));
        assert_eq!(wrong.status, 403, "{route}: {wrong:?}");
        if path == "/api/v1/stream" {
            // An open stream never ends: the right tokens are checked below, by status line.
            continue;
        }
        let reads = method == "GET" || path == "/query";
        let by_reader = call(&method, &url, Some(READ));
        if reads {
            assert!(
                !matches!(by_reader.status, 401 | 403),
                "{route}: {by_reader:?}"
            );
        } else {
            assert_eq!(
                by_reader.status, 403,
                "{route}: a read token wrote: {by_reader:?}"
            );
        }
        let by_writer = call(&method, &url, Some(WRITE));
        assert!(
            !matches!(by_writer.status, 401 | 403),
            "{route}: {by_writer:?}"
        );
    }
    assert!(guarded > 20, "{guarded}");

    // The stream: the header or `access_token`; the parameter counts on no other route.
    assert!(status_line(&server, "/api/v1/stream").contains(" 401 "));
    let by_param = status_line(&server, &format!("/api/v1/stream?access_token={READ}"));
    assert!(by_param.contains(" 200 "), "{by_param}");
    let by_param = status_line(&server, &format!("/api/v1/stream?access_token={WRITE}"));
    assert!(by_param.contains(" 200 "), "{by_param}");
    let wrong = status_line(&server, &format!("/api/v1/stream?access_token={WRONG}"));
    assert!(wrong.contains(" 403 "), "{wrong}");
    let elsewhere = call(
        "GET",
        &server.url(&format!("/api/v1/meters?access_token={READ}")),
        None,
    );
    assert_eq!(elsewhere.status, 401, "{elsewhere:?}");

    // InfluxDB's ways: `p` and Basic carry the read token to /query, not to /write.
    let query = server.url(&format!("/query?q=CREATE+DATABASE+x&p={READ}"));
    assert_eq!(call("POST", &query, None).status, 200);
    let write = server.url(&format!("/write?db=x&p={READ}"));
    assert_eq!(call("POST", &write, None).status, 403);
    let write = server.url(&format!("/write?db=x&p={WRITE}"));
    let by_writer = call("POST", &write, None);
    // Past the token: the line names a meter that is not registered.
    assert_eq!(by_writer.status, 400, "{by_writer:?}");
    assert!(
        by_writer.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("partial write"),
        "{by_writer:?}"
    );
}

#[test]
fn the_dashboards_files_stay_open_and_metrics_open_only_when_public() {
    let server = Server::start(&["--read-token", READ]);
    let index = call("GET", &server.url("/"), None);
    assert_eq!(index.status, 200);
    let html = index.body.as_str().unwrap_or_default().to_string();
    assert!(html.contains("id=\"auth\""), "the page has the token form");
    for asset in [
        "/app.css",
        "/main.js",
        "/api.js",
        "/views/auth.js",
        "/index.html",
    ] {
        let answer = call("GET", &server.url(asset), None);
        assert_eq!(answer.status, 200, "{asset}: {answer:?}");
    }
    // A path that is no asset is a read like any other, not an open file.
    assert_eq!(call("GET", &server.url("/secret.js"), None).status, 401);
    assert_eq!(call("GET", &server.url("/metrics"), None).status, 401);
    assert_eq!(call("GET", &server.url("/metrics"), Some(READ)).status, 200);
    // No write token: writes stay open, as before, whatever the read token.
    let meter = r#"{"id":"m1","kind":"grid"}"#;
    let (status, _) = gridlog_tests::server::post_raw(
        &server.url("/api/v1/meters"),
        "application/json",
        &[],
        meter.as_bytes(),
    );
    assert_eq!(status, 201);

    let dir = tempfile::tempdir().unwrap();
    let public = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &["--read-token", READ],
        &[("GRIDLOG_METRICS_PUBLIC", "true")],
    );
    let metrics = call("GET", &public.url("/metrics"), None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .body
        .as_str()
        .unwrap_or_default()
        .contains("gridlog_last_offset"));
    assert_eq!(call("GET", &public.url("/api/v1/status"), None).status, 401);
}

#[test]
fn a_read_token_that_could_never_match_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = gridlog_tests::run_gridlog([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--read-token",
        "r3ad token",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("read_token") && stderr.contains("visible ASCII"),
        "{stderr}"
    );
    let file = dir.path().join("read-token");
    std::fs::write(&file, format!("{READ}\n")).unwrap();
    let server = Server::start(&["--read-token-file", file.to_str().unwrap()]);
    assert_eq!(server.get("/api/v1/meters").0, 401);
    let by_file = call("GET", &server.url("/api/v1/meters"), Some(READ));
    assert_eq!(by_file.status, 200, "{by_file:?}");
}
