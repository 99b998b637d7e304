//! No cross-site writes on a gateway without a token: a form post from another site's page,
//! a JSON post with a foreign `Origin`, and a DNS-rebinding request (a foreign `Host`) are
//! all refused with a JSON error, and nothing is stored.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gridlog_tests::server::{get, post, Server};
use serde_json::{json, Value};

/// Sends one raw HTTP/1.1 request and returns the status and JSON body.
fn raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn cross_site_writes_and_dns_rebinding_are_refused_without_a_token() {
    let server = Server::start(&[]);
    assert_eq!(
        post(
            &server.url("/api/v1/meters"),
            &json!({"id": "m1", "kind": "grid"})
        )
        .0,
        201
    );
    let host = server.addr.to_string();
    let before = get(&server.url("/api/v1/status")).1["last_offset"].clone();

    // A form post from any web page: refused for its content type.
    for path in ["/api/v1/meters/m1/decommission", "/api/v1/snapshot"] {
        let (status, body) = raw(
            &server,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", "http://evil.example"),
            ],
            "a=1",
        );
        assert_eq!(status, 415, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        assert_eq!(body["error"]["field"], "Content-Type", "{body}");
        // No content type at all (a bodiless fetch or form): refused too.
        let (status, body) = raw(&server, "POST", path, &[("Host", &host)], "");
        assert_eq!(status, 415, "{path}: {body}");
    }
    // JSON from a foreign origin (it could only come after a preflight the gateway never
    // grants, or from a page that lies about nothing): refused for its origin.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, body) = raw(
            &server,
            "POST",
            "/api/v1/meters/m1/decommission",
            &[
                ("Host", &host),
                ("Content-Type", "application/json"),
                ("Origin", origin),
            ],
            "{}",
        );
        assert_eq!(status, 403, "{origin}: {body}");
        assert_eq!(body["error"]["code"], "foreign_origin", "{body}");
    }
    // DNS rebinding: the page's own name in Host, on reads and writes.
    for (method, path, body) in [
        ("GET", "/api/v1/meters", ""),
        ("GET", "/api/v1/status", ""),
        ("POST", "/api/v1/meters/m1/decommission", "{}"),
    ] {
        let (status, answer) = raw(
            &server,
            method,
            path,
            &[
                ("Host", "rebind.evil.example:8080"),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        assert_eq!(status, 421, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "host_not_allowed", "{answer}");
        assert_eq!(answer["error"]["field"], "Host", "{answer}");
    }
    let after = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    assert_eq!(before, after, "a refused request stored something");
    assert_eq!(
        get(&server.url("/api/v1/meters/m1")).1["decommissioned"],
        false
    );

    // The gateway's own page (same origin), curl (no Origin) and a localhost name pass.
    let (status, body) = raw(
        &server,
        "POST",
        "/api/v1/meters/m1/decommission",
        &[
            ("Host", &format!("localhost:{}", server.addr.port())),
            ("Content-Type", "application/json"),
            (
                "Origin",
                &format!("http://localhost:{}", server.addr.port()),
            ),
        ],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(
        &server,
        "POST",
        "/api/v1/snapshot",
        &[("Host", &host), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_name_in_http_allowed_hosts_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &tmp.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_HTTP__ALLOWED_HOSTS", r#"["gateway.site.example"]"#)],
    );
    let (status, body) = raw(
        &server,
        "GET",
        "/api/v1/meters",
        &[("Host", "Gateway.Site.Example:8080")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = raw(
        &server,
        "GET",
        "/api/v1/meters",
        &[("Host", "other.site.example")],
        "",
    );
    assert_eq!(status, 421);
}
