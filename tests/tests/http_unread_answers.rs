//! Clients that ask for the largest event page and never read the answer cannot grow the
//! server's memory beyond its limits: the page's bytes count against
//! `http.answer_bytes_max` until sent, the concurrency slot is held until then, and the
//! send timeout closes a connection that reads nothing.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gridlog_tests::server::{get, post, rfc3339, unix_now, Server};
use serde_json::json;

/// Clients that never read.
const CLIENTS: usize = 150;
/// The RSS the server may grow by over its level after serving one page (the default
/// `http.answer_bytes_max`, 32 MiB, pages being built by the 4 log-query turns, and
/// allocator slack). Without the limits, 150 unread 10,000-event pages took +371 MiB
/// (docs/BENCHMARKS.md).
const GROWTH_BYTES_MAX: u64 = 128 * 1024 * 1024;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn clients_that_never_read_large_pages_cannot_grow_the_server_beyond_its_limits() {
    let server = Server::start(&[]);
    assert_eq!(
        post(
            &server.url("/api/v1/meters"),
            &json!({"id": "m1", "kind": "grid"})
        )
        .0,
        201
    );
    // 10,000 readings: the largest page (`limit=10000`) is a few MB of JSON.
    let start = unix_now() - 20_000;
    for batch in 0..2 {
        let readings: Vec<_> = (0..5000)
            .map(|i| {
                let n = batch * 5000 + i;
                json!({"meter": "m1", "time": rfc3339(start + n), "import_wh": n as f64,
                    "export_wh": 0.0, "power_w": 1234.5, "voltage_v": 230.1, "current_a": 5.4})
            })
            .collect();
        let (status, body) = post(
            &server.url("/api/v1/readings"),
            &json!({ "readings": readings }),
        );
        assert_eq!((status, body["accepted"].as_u64()), (200, Some(5000)));
    }
    let page_url = server.url("/api/v1/events?after=0&limit=10000");
    let page = ureq::get(&page_url).call().unwrap().into_string().unwrap();
    let page_bytes = page.len() as u64;
    assert!(page_bytes > 1024 * 1024, "{page_bytes}");
    drop(page);
    let baseline = rss_bytes(server.pid());

    let request = format!(
        "GET /api/v1/events?after=0&limit=10000 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            // A small receive buffer, as a slow or stalled client over a real network has:
            // the answer cannot all move into this side's kernel.
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            let mut stream: TcpStream = socket.into();
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    // Wait (bounded) until every client has the head of an answer (a page or a 503),
    // without reading it: peeking leaves it in the socket.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = baseline;
    for stream in &clients {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        while stream.peek(&mut byte).is_err() && Instant::now() < deadline {
            peak = peak.max(rss_bytes(server.pid()));
        }
        peak = peak.max(rss_bytes(server.pid()));
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes(server.pid()));
    }
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{CLIENTS} non-reading clients of a {page_bytes}-byte page: RSS {} MiB -> peak {} MiB (+{} MiB)",
        baseline >> 20,
        peak >> 20,
        growth >> 20
    );
    assert!(
        growth <= GROWTH_BYTES_MAX,
        "RSS grew by {} MiB (more than {} MiB) with {CLIENTS} non-reading clients",
        growth >> 20,
        GROWTH_BYTES_MAX >> 20
    );
    // The gateway still answers everyone else.
    assert_eq!(get(&server.url("/readyz")).0, 200);
    assert_eq!(get(&server.url("/api/v1/meters/m1")).0, 200);
    drop(clients);
}
