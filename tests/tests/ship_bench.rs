//! Shipping figures for docs/BENCHMARKS.md, and a small sanity run of the same code in CI.
//!
//! By default (CI) it ships a few MiB of log and ingests for a few seconds, and checks only
//! what must hold at any size (every object arrives; at most two requests per object plus
//! the listing). With `GRIDLOG_SHIP_BENCH=1` it measures at the documented sizes and prints a
//! Markdown table; run it against a release binary:
//!
//! ```text
//! cargo build --release -p gridlog-host
//! GRIDLOG_BIN=target/release/gridlog GRIDLOG_SHIP_BENCH=1 \
//!   cargo test -p gridlog-tests --test ship_bench -- --nocapture
//! ```
//!
//! Knobs: `GRIDLOG_SHIP_BENCH_LOG_MB` (log to archive and ship, default 320),
//! `GRIDLOG_SHIP_BENCH_SEGMENT_MB` (default 64, the default segment size),
//! `GRIDLOG_SHIP_BENCH_INGEST_S` (seconds per ingest run, default 20).

#[allow(dead_code)]
mod ship_support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{Command as DomainCommand, MeterKind, Reading};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::{Engine, Request};
use gridlog_firmware::wal::WalOptions;
use ship_support::*;

/// A log of about `log_bytes` in segments of `segment_bytes`, all but the active segment
/// archived. Readings of 50 meters, a second apart, with slowly moving values.
fn archived_log(dir: &Path, segment_bytes: u64, log_bytes: u64) -> (u64, usize) {
    let options = engine_options().wal(WalOptions::default().segment_bytes(segment_bytes));
    let engine = Engine::open(dir, options).unwrap();
    let ids: Vec<EntityId> = (0..50)
        .map(|m| EntityId::new(&format!("meter-{m}")).unwrap())
        .collect();
    engine
        .submit(Request::of(ids.iter().map(|id| {
            DomainCommand::RegisterMeter {
                meter: id.clone(),
                kind: MeterKind::Load,
                register_bits: None,
            }
        })))
        .unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut step = 0i64;
    while engine.stats().wal.bytes < log_bytes {
        let commands = (0..20).flat_map(|_| {
            step += 1;
            let s = step;
            ids.iter()
                .enumerate()
                .map(move |(i, id)| DomainCommand::RecordReading {
                    meter: id.clone(),
                    reading: Reading {
                        time_ms: t0 + s * 1000,
                        import_wh: s as f64 * (1.0 + i as f64 / 10.0),
                        export_wh: 0.0,
                        power_w: 3600.0 + ((s * 7 + i as i64) % 400) as f64,
                        voltage_v: Some(229.0 + (s % 30) as f32 / 10.0),
                        current_a: Some(15.6),
                        reactive_power_var: None,
                    },
                })
        });
        let commands: Vec<_> = commands.collect();
        engine.submit(Request::of(commands)).unwrap();
    }
    engine.snapshot_now().unwrap();
    let log = engine.stats().wal.bytes;
    engine.shutdown();
    let (archives, _) = gridlog_firmware::archive::list(dir).unwrap();
    (log, archives.len())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Readings per second accepted over HTTP by `gridlog serve` for `seconds`.
fn ingest(dir: &Path, env: &[(String, String)], seconds: u64) -> (f64, serde_json::Value) {
    let gateway = Gateway::serve(dir, env);
    let base = format!("http://{}", gateway.addr.unwrap());
    for m in 0..20 {
        ureq::post(&format!("{base}/api/v1/meters"))
            .send_json(serde_json::json!({"id": format!("m{m}"), "kind": "load"}))
            .unwrap();
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 30 * 86_400_000;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (accepted, stop, base) = (accepted.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let mut step = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let readings: Vec<_> = (0..100)
                        .map(|i| {
                            step += 1;
                            let meter = format!("m{}", t * 5 + (i % 5));
                            let ms = start_ms + (step / 5) * 1000;
                            serde_json::json!({"meter": meter, "time": gridlog_tests::server::rfc3339_ms(ms), "import_wh": step as f64, "export_wh": 0.0, "power_w": 1000.0 + (step % 300) as f64})
                        })
                        .collect();
                    let r = ureq::post(&format!("{base}/api/v1/readings"))
                        .send_json(serde_json::json!({ "readings": readings }));
                    if let Ok(r) = r {
                        let body: serde_json::Value = r.into_json().unwrap();
                        accepted.fetch_add(body["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let rate = accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let status = gateway.get("/api/v1/status").1;
    (rate, status)
}

#[test]
fn shipping_throughput_requests_and_ingest_cost() {
    let log_mb = bench_knob("GRIDLOG_SHIP_BENCH_LOG_MB", 320, 6);
    let segment_mb = bench_knob("GRIDLOG_SHIP_BENCH_SEGMENT_MB", 64, 1);
    let ingest_s = bench_knob("GRIDLOG_SHIP_BENCH_INGEST_S", 20, 2);
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();

    // 1. Drain a backlog of archived segments with `gridlog ship --once`.
    let dir = tmp.path().join("backlog");
    let segment_bytes = segment_mb * 1024 * 1024;
    let (log_bytes, archives) = archived_log(&dir, segment_bytes, log_mb * 1024 * 1024);
    let (archived, _) = gridlog_firmware::archive::list(&dir).unwrap();
    let archived_log_bytes: u64 = archived.iter().map(|a| a.header.original_bytes).sum();
    let object_bytes: u64 = archived.iter().map(|a| a.file_bytes).sum();
    let mut env = ship_env(&moto.endpoint(), "bench");
    env.retain(|(k, _)| {
        k != "GRIDLOG_WAL__SEGMENT_BYTES" && k != "GRIDLOG_SHIP__REQUEST_TIMEOUT_MS"
    });
    env.push((
        "GRIDLOG_WAL__SEGMENT_BYTES".into(),
        segment_bytes.to_string(),
    ));
    let started = Instant::now();
    let (code, out, err) = ship_once(&dir, &env);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}{err}");
    let (segments, manifests) = check_store(&moto.bucket(), "bench", &dir);
    assert_eq!(segments, archives);
    let requests: u64 = out
        .split("; ")
        .find_map(|p| p.strip_suffix(" requests"))
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The active segment's records go up as chunks of the log's tail (their own round).
    let chunks = moto
        .bucket()
        .keys("bench")
        .iter()
        .filter(|k| k.contains("/chunks/"))
        .count() as u64;
    assert!(
        requests <= 2 * (segments as u64 + 1 + chunks + manifests as u64) + 1,
        "{requests} requests for {segments} segments and {chunks} chunks"
    );
    let gib = 1024.0 * 1024.0 * 1024.0;
    let per_gib_log = requests as f64 * gib / archived_log_bytes as f64;
    let per_gib_sent = requests as f64 * gib / object_bytes as f64;
    let log_rate = mb(archived_log_bytes) / seconds;
    println!("\n| measure | value |\n|---|---|");
    println!("| log written / archived | {:.0} MiB / {:.0} MiB in {archives} segments of {segment_mb} MiB |", mb(log_bytes), mb(archived_log_bytes));
    println!(
        "| objects shipped (compressed) | {:.1} MiB (ratio {:.1}) |",
        mb(object_bytes),
        archived_log_bytes as f64 / object_bytes as f64
    );
    println!("| `ship --once` wall time | {seconds:.2} s (start, listing, uploads with read-back, manifest, exit) |");
    println!(
        "| throughput, object bytes | {:.1} MiB/s |",
        mb(object_bytes) / seconds
    );
    println!("| throughput, log bytes | {log_rate:.1} MiB/s |");
    println!(
        "| 1 GiB of log, extrapolated | {:.0} s |",
        1024.0 / log_rate
    );
    println!("| requests | {requests} ({segments} segments + 1 snapshot + {manifests} manifests, 1 listing) |");
    println!("| requests per GiB of log | {per_gib_log:.1} |");
    println!("| requests per GiB sent | {per_gib_sent:.1} |");

    // 2. Ingest over HTTP with and without shipping (archiving on in both).
    let mut base_env = vec![
        (
            "GRIDLOG_WAL__SEGMENT_BYTES".to_string(),
            (1024 * 1024).to_string(),
        ),
        (
            "GRIDLOG_STORAGE__SNAPSHOT_EVERY_BYTES".into(),
            (4 * 1024 * 1024).to_string(),
        ),
        ("GRIDLOG_STORAGE__SNAPSHOTS_KEEP".into(), "1".into()),
        ("GRIDLOG_SITE_ID".into(), SITE.into()),
    ];
    let (without, _) = ingest(&tmp.path().join("ingest-off"), &base_env, ingest_s);
    let mut shipping = ship_env(&moto.endpoint(), "bench-ingest");
    shipping.retain(|(k, _)| k.starts_with("GRIDLOG_SHIP__"));
    base_env.extend(shipping);
    let (with, status) = ingest(&tmp.path().join("ingest-on"), &base_env, ingest_s);
    let shipped = &status["shipping"]["shipped"];
    println!("| ingest without shipping | {without:.0} readings/s |");
    println!("| ingest while shipping | {with:.0} readings/s ({:+.1} %), {} objects / {:.1} MiB shipped meanwhile |", (with / without - 1.0) * 100.0, shipped["objects"], mb(shipped["bytes"].as_u64().unwrap_or(0)));
    assert!(without > 0.0 && with > 0.0);
}
