//! The HTTP limits of README's "Limits" table that a client meets without a fault of its own,
//! tried as a client meets them: requests in flight (`http.concurrency_max`), live streams
//! (`http.streams_max`), a request head that never ends (`http.header_read_timeout_s`) and a
//! write the engine cannot make durable in time (`http.request_timeout_s`: 504
//! `outcome_unknown`, and the write is stored once the disk has room again). Each limit is
//! set small in the configuration; the rest of the table is tried in `http_protocol_errors`,
//! `http_bad_requests`, `http_unread_answers`, `http_file_handles` and `http_api`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gridlog_tests::server::{post, rfc3339_ms, unix_now, Server};
use gridlog_tests::tmpfs::Tmpfs;
use gridlog_tests::wait_until;
use serde_json::json;

/// Opens a live stream and reads its answer's status line; the connection stays open (the
/// reader holds it, with whatever of the answer followed the status line).
fn open_stream(server: &Server) -> (BufReader<TcpStream>, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
         Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    (reader, status)
}

fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with_env(&dir.path().join("data"), "serve", &[], env);
    (dir, server)
}

#[test]
fn requests_beyond_concurrency_max_are_503_overloaded_and_served_again_once_one_ends() {
    let (_dir, server) = start(&[("GRIDLOG_HTTP__CONCURRENCY_MAX", "2")]);
    // A live stream holds its request slot for as long as it runs.
    let (first, status) = open_stream(&server);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (_second, status) = open_stream(&server);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let (status, body) = server.get("/api/v1/status");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    drop(first);
    wait_until("the slot given back", Duration::from_secs(30), || {
        server.get("/api/v1/status").0 == 200
    });
}

#[test]
fn streams_beyond_streams_max_are_503_too_many_streams() {
    let (_dir, server) = start(&[("GRIDLOG_HTTP__STREAMS_MAX", "1")]);
    let (_first, status) = open_stream(&server);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (mut second, status) = open_stream(&server);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let mut rest = String::new();
    second
        .read_to_string(&mut rest)
        .expect("the rest of the 503");
    assert!(rest.contains("too_many_streams"), "{rest}");
    assert!(rest.to_ascii_lowercase().contains("retry-after"), "{rest}");
    // Other requests are served meanwhile.
    assert_eq!(server.get("/api/v1/status").0, 200);
}

#[test]
fn a_request_head_that_never_ends_is_closed_after_header_read_timeout_s() {
    let (_dir, server) = start(&[("GRIDLOG_HTTP__HEADER_READ_TIMEOUT_S", "1")]);
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("send");
    let started = Instant::now();
    let mut answer = Vec::new();
    // The server closes the connection (an answer before the close is allowed: 408).
    let read = slow.read_to_end(&mut answer);
    assert!(read.is_ok(), "not closed by the server: {read:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The gateway serves others as before.
    assert_eq!(server.get("/api/v1/status").0, 200);
}

#[test]
fn a_write_not_durable_within_request_timeout_s_is_504_outcome_unknown_and_stored_later() {
    let fs = Tmpfs::mount("16m");
    let server = Server::start_with_env(
        &fs.path().join("data"),
        "serve",
        &[],
        &[
            ("GRIDLOG_HTTP__REQUEST_TIMEOUT_S", "2"),
            ("GRIDLOG_WAL__SEGMENT_BYTES", "524288"),
        ],
    );
    let (status, body) = post(
        &server.url("/api/v1/meters"),
        &json!({"id": "m1", "kind": "grid"}),
    );
    assert_eq!(status, 201, "{body}");
    // No room for another segment.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; (fs.free_bytes() - 64 * 1024) as usize]).unwrap();

    // Fill the active segment until the log waits for space; the write waiting then is 504.
    let t0_ms = (unix_now() - 3_600) * 1_000;
    let mut n = 0_i64;
    let unknown = loop {
        let readings: Vec<_> = (0..1_000)
            .map(|_| {
                n += 1;
                json!({"meter": "m1", "time": rfc3339_ms(t0_ms + n), "import_wh": n as f64,
                       "export_wh": 0.0, "power_w": 1.0})
            })
            .collect();
        let (status, body) = post(
            &server.url("/api/v1/readings"),
            &json!({ "readings": readings }),
        );
        match status {
            200 => assert!(n < 200_000, "the disk never filled"),
            504 => break body,
            other => panic!("{other}: {body}"),
        }
    };
    assert_eq!(unknown["error"]["code"], "outcome_unknown", "{unknown}");
    assert_eq!(server.get("/api/v1/status").1["log"]["disk_full"], true);

    // Space comes back: the write whose outcome was unknown is stored (a client's retry would
    // meet the duplicate rule).
    std::fs::remove_file(&filler).unwrap();
    wait_until("the waiting write stored", Duration::from_secs(60), || {
        server.get("/api/v1/meters/m1").1["seq"].as_u64() == Some(n as u64 + 1)
    });
}
