//! Telegraf's v1 and v2 InfluxDB outputs, reproduced by a client that behaves like them
//! (create database, gzip, retry the same body on 5xx, drop on 4xx), writing to gridlog
//! through a proxy that answers every third write 503 AFTER gridlog stored it, while
//! `http.writes_max = 1` makes gridlog itself answer 503 to concurrent writes. Every
//! reading is stored exactly once: retried lines come back `duplicate` (the engine's rule,
//! wherever the reading lies in its meter's history), and a dropped batch's good lines are
//! stored. A retried backfill far larger than a meter's newest 8 readings, after part of
//! it was stored, stores nothing twice and is answered 204.

mod ingest_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gridlog_tests::server::{get, unix_now, Server};
use ingest_support::{send, stored_readings, Delivery, Output, TelegrafLike};

const TOKEN: &str = "t0ken-for-telegraf";
const CLIENTS: usize = 4;
const METERS_PER_CLIENT: usize = 5;
const BATCHES: usize = 24;
/// The batch of each client that carries a malformed line (dropped by the client).
const BAD_BATCH: usize = 10;
/// Every this many writes, the proxy answers 503 after gridlog stored the batch.
const FAULT_EVERY: usize = 3;

/// Forwards each request to `upstream` (one request per connection); every
/// `FAULT_EVERY`-th write is forwarded and its answer replaced by 503.
fn fault_proxy(upstream: String, faults: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let writes = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, writes, faults) = (upstream.clone(), writes.clone(), faults.clone());
            std::thread::spawn(move || relay(stream, &upstream, &writes, &faults));
        }
    });
    format!("http://{addr}")
}

fn relay(stream: TcpStream, upstream: &str, writes: &AtomicUsize, faults: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            } else if !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("connection") {
                headers.push((k, v));
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let Ok(answer) = send(&method, &format!("{upstream}{target}"), &header_refs, &body) else {
        return;
    };
    let is_write = target.contains("write");
    let fault = is_write
        && answer.status == 204
        && writes.fetch_add(1, Ordering::Relaxed) % FAULT_EVERY == FAULT_EVERY - 1;
    let (status, text, extra) = if fault {
        faults.fetch_add(1, Ordering::Relaxed);
        (
            503,
            r#"{"error":"injected after storing"}"#.to_string(),
            "Retry-After: 0\r\n".to_string(),
        )
    } else {
        let text = if answer.body.is_null() {
            String::new()
        } else {
            answer.body.to_string()
        };
        let extra = answer
            .error_header
            .as_ref()
            .map(|e| format!("X-Influxdb-Error: {e}\r\n"))
            .unwrap_or_default();
        (answer.status, text, extra)
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}",
        text.len()
    );
    let _ = out.flush();
}

fn meter(client: usize, m: usize) -> String {
    format!("tg{client}-m{m}")
}

/// Batch `b` of `client`: one reading per meter, registers growing.
fn batch(client: usize, b: usize, t0: i64) -> String {
    let mut lines = String::new();
    for m in 0..METERS_PER_CLIENT {
        let time_s = t0 + b as i64 * 60;
        let import_wh = 10_000 + b * 100 + m;
        lines.push_str(&format!(
            "meter,id={},host=site import_wh={import_wh},export_wh=0u,power_w=1500i {time_s}\n",
            meter(client, m)
        ));
    }
    if b == BAD_BATCH {
        lines.push_str("meter,id=broken import_wh=\"not a number\n");
    }
    lines
}

#[test]
fn telegraf_retries_store_every_reading_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gridlog = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &["--write-token", TOKEN],
        &[
            ("GRIDLOG_ENGINE__AUTO_REGISTER", "grid"),
            ("GRIDLOG_HTTP__WRITES_MAX", "1"),
        ],
    );
    let base = gridlog.url("");
    // Without the token, or with a wrong one: InfluxDB's shapes.
    let anonymous = send("POST", &format!("{base}/write?db=x"), &[], b"m v=1").unwrap();
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(anonymous.body["error"].is_string(), "{anonymous:?}");
    let wrong = send(
        "POST",
        &format!("{base}/api/v2/write?bucket=x"),
        &[("Authorization", "Token nope")],
        b"m v=1",
    )
    .unwrap();
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert_eq!(wrong.body["code"], "forbidden", "{wrong:?}");
    let by_query = send(
        "POST",
        &format!("{base}/write?db=x&u=a&p={TOKEN}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(by_query.status, 204, "{by_query:?}");

    let faults = Arc::new(AtomicUsize::new(0));
    let proxy = fault_proxy(base.trim_end_matches('/').to_string(), faults.clone());
    let t0 = unix_now() - 86_400;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                let output = if client % 2 == 0 {
                    Output::V1
                } else {
                    Output::V2
                };
                let telegraf = TelegrafLike {
                    base: proxy,
                    output,
                    token: TOKEN.into(),
                };
                telegraf.connect();
                let mut retries = 0;
                for b in 0..BATCHES {
                    match telegraf.write(&batch(client, b, t0)) {
                        Delivery::Stored { retries: r } => {
                            assert_ne!(b, BAD_BATCH, "a malformed batch was answered 2xx");
                            retries += r;
                        }
                        Delivery::Dropped(answer) => {
                            assert_eq!(b, BAD_BATCH, "{answer:?}");
                            assert_eq!(answer.status, 400, "{answer:?}");
                            let text = answer.error_header.unwrap_or_default();
                            assert!(
                                text.contains(&format!("line {}", METERS_PER_CLIENT + 1)),
                                "{text}"
                            );
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
    assert!(faults.load(Ordering::Relaxed) > 0);
    assert!(retries >= faults.load(Ordering::Relaxed), "{retries}");

    for client in 0..CLIENTS {
        for m in 0..METERS_PER_CLIENT {
            let id = meter(client, m);
            let readings = stored_readings(&gridlog, &id);
            let times: Vec<&str> = readings
                .iter()
                .map(|r| r["time"].as_str().unwrap_or("?"))
                .collect();
            assert_eq!(times.len(), BATCHES, "{id}: {times:?}");
            let mut unique = times.clone();
            unique.dedup();
            assert_eq!(unique.len(), BATCHES, "{id}: {times:?}");
        }
    }
    let (_, status) = get(&gridlog.url("/api/v1/status"));
    let ingest = &status["ingest"];
    assert_eq!(
        ingest["lines_stored"],
        (CLIENTS * METERS_PER_CLIENT * BATCHES) as u64,
        "{ingest}"
    );
    assert!(
        ingest["lines_duplicate"].as_u64().unwrap() >= faults.load(Ordering::Relaxed) as u64,
        "{ingest}"
    );
    assert_eq!(ingest["lines_refused"], CLIENTS as u64, "{ingest}");
}

/// Lines in the backfill: far more than a meter's newest 8 readings.
const BACKFILL_LINES: usize = 1000;

/// Meter `bf`'s readings a minute apart from `t0` (seconds), import growing.
fn backfill(t0: i64, lines: std::ops::Range<usize>) -> String {
    lines
        .map(|i| {
            let time_s = t0 + i as i64 * 60;
            format!(
                "meter,id=bf import_wh={},export_wh=0,power_w=100 {time_s}\n",
                1000 + i
            )
        })
        .collect()
}

#[test]
fn a_retried_backfill_larger_than_a_meters_newest_readings_is_stored_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gridlog = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &["--write-token", TOKEN],
        &[("GRIDLOG_ENGINE__AUTO_REGISTER", "grid")],
    );
    let faults = Arc::new(AtomicUsize::new(0));
    let proxy = fault_proxy(
        gridlog.url("").trim_end_matches('/').to_string(),
        faults.clone(),
    );
    let telegraf = TelegrafLike {
        base: proxy,
        output: Output::V1,
        token: TOKEN.into(),
    };
    telegraf.connect();
    let now = unix_now();
    let t0 = now - 2 * 86_400;
    // The meter's live reading, newer than the whole backfill (write 1 through the proxy).
    let live = format!("meter,id=bf import_wh=1000000,export_wh=0,power_w=100 {now}\n");
    assert!(matches!(
        telegraf.write(&live),
        Delivery::Stored { retries: 0 }
    ));
    // A first try that stored part of the batch (write 2), then the whole batch (write 3):
    // the proxy answers it 503 after gridlog stored it, and the client sends it again.
    assert!(matches!(
        telegraf.write(&backfill(t0, 0..400)),
        Delivery::Stored { retries: 0 }
    ));
    match telegraf.write(&backfill(t0, 0..BACKFILL_LINES)) {
        Delivery::Stored { retries } => assert!(retries >= 1, "no retry was injected"),
        Delivery::Dropped(answer) => panic!("the retried backfill was refused: {answer:?}"),
    }
    assert_eq!(faults.load(Ordering::Relaxed), 1);

    let (status, meter) = get(&gridlog.url("/api/v1/meters/bf"));
    assert_eq!(status, 200, "{meter}");
    assert_eq!(meter["readings"], BACKFILL_LINES as u64 + 1, "{meter}");
    let mut times: Vec<String> = stored_readings(&gridlog, "bf")
        .iter()
        .map(|r| r["time"].to_string())
        .collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), BACKFILL_LINES + 1);
    let (_, status) = get(&gridlog.url("/api/v1/status"));
    let ingest = &status["ingest"];
    assert_eq!(
        ingest["lines_stored"],
        BACKFILL_LINES as u64 + 1,
        "{ingest}"
    );
    // 400 lines of the first try again in the whole batch, then the whole batch again.
    assert_eq!(
        ingest["lines_duplicate"],
        (400 + BACKFILL_LINES) as u64,
        "{ingest}"
    );
    assert_eq!(ingest["lines_refused"], 0, "{ingest}");
}
