//! Requests broken at the HTTP layer: a declared body beyond the limit is refused at once
//! (not after the timeout as `outcome_unknown`), a bad chunk size is a malformed body (not
//! "too large"), and a write whose body never arrives times out as a plain 408 — nothing can
//! have been stored.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gridlog_tests::server::{get, Server};
use serde_json::Value;

/// Sends `head_and_body` raw, then reads the answer until the server closes or `wait`.
fn exchange(server: &Server, head_and_body: &[u8], wait: Duration) -> (u16, Value) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(head_and_body).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn broken_bodies_are_answered_for_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &tmp.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_HTTP__REQUEST_TIMEOUT_S", "2")],
    );
    let host = server.addr;
    let before = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    // 99 GB declared, nothing sent: refused from the header alone.
    let (status, body) = exchange(
        &server,
        format!("POST /api/v1/meters HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 99000000000\r\n\r\n").as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // A chunked body just over the default `http.body_bytes_max` (4 MiB): the server reads
    // up to the limit and refuses (the few bytes it leaves unread fit in the socket buffers,
    // so this client has finished sending when the answer comes).
    let pad = "p".repeat(4 * 1024 * 1024);
    let chunk = format!(r#"{{"readings":[],"pad":"{pad}"}}"#);
    let (status, body) = exchange(
        &server,
        format!(
            "POST /api/v1/readings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // A chunk size that is not hex: the body is malformed, not too large.
    let (status, body) = exchange(
        &server,
        format!("POST /api/v1/meters HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "malformed_body", "{body}");
    // A body that stops half-way: the write never reached the engine, so a plain timeout.
    let (status, body) = exchange(
        &server,
        format!("POST /api/v1/meters HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":").as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    let after = get(&server.url("/api/v1/status")).1["last_offset"].clone();
    assert_eq!(before, after);
}

#[test]
fn the_protocol_layers_own_errors_are_json_with_a_code() {
    let server = Server::start(&[]);
    let host = server.addr;
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(70_000)
    );
    let huge_headers = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nX-Pad: {}\r\n\r\n",
        "b".repeat(1024 * 1024)
    );
    let two_lengths = format!(
        "POST /api/v1/meters HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
    );
    for (name, request, status, code) in [
        (
            "bad request line",
            "GARBAGE\r\n\r\n".to_string(),
            400,
            "bad_request",
        ),
        ("two Content-Lengths", two_lengths, 400, "bad_request"),
        ("URI too long", long_uri, 414, "uri_too_long"),
        ("headers too large", huge_headers, 431, "headers_too_large"),
    ] {
        let (got, body) = exchange(&server, request.as_bytes(), Duration::from_secs(60));
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
}
