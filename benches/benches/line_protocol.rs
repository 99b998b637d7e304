//! Line protocol ingest, gridlog against InfluxDB 1.6 side by side: 8 clients, each POSTing
//! Telegraf-sized batches (1,000 lines, gzip) to `/write` and waiting for the 204, against
//! the release `gridlog serve` and Debian's `influxd` (its default WAL fsync), both with
//! their data in the same directory on the same disk, one after the other in the same run.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench line_protocol
//! ```
//!
//! Env: `GRIDLOG_BIN` (default: the release build, built first if missing or stale),
//! `GRIDLOG_BENCH_CLIENTS` (8), `GRIDLOG_BENCH_LINES` (1000) lines per batch,
//! `GRIDLOG_BENCH_BATCHES` (300) batches per client, `GRIDLOG_BENCH_DIR`
//! (`target/bench-data`). The batches are built and gzipped before the clock starts, so
//! the clients' own CPU on the shared cores is only HTTP. Tables to stdout.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridlog_benches::report::{fmt_count, load_average};
use gridlog_benches::tables::{bench_base_dir, env_u64, invoked_as_bench, ms, pct};
use gridlog_tests::influxd::Influxd;
use gridlog_tests::server::{unix_now, Server};

fn main() -> ExitCode {
    if invoked_as_bench("line_protocol") {
        run();
    }
    ExitCode::SUCCESS
}

struct Load {
    clients: usize,
    lines: usize,
    batches: usize,
}

/// Every client's batches: client `c` owns meters `c*lines .. (c+1)*lines`, one line per
/// meter per batch, each batch a minute later than the one before.
fn batches(load: &Load) -> Vec<Vec<Vec<u8>>> {
    let t0 = unix_now() - 86_400 * 7;
    (0..load.clients)
        .map(|c| {
            (0..load.batches)
                .map(|b| {
                    let mut text = String::with_capacity(load.lines * 100);
                    for m in 0..load.lines {
                        let id = c * load.lines + m;
                        let time_s = t0 + b as i64 * 60;
                        text.push_str(&format!(
                            "meter,id=lp{id} import_wh={},export_wh=0,power_w=3600,voltage_v=230.1 {time_s}\n",
                            1_000 + b * 60
                        ));
                    }
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(text.as_bytes()).expect("gzip");
                    gz.finish().expect("gzip")
                })
                .collect()
        })
        .collect()
}

struct Measured {
    readings_per_s: f64,
    p50: Duration,
    p99: Duration,
    failures: u64,
}

/// Every client sends its batches in order, one at a time; a batch that is not 204 counts
/// as a failure (and its readings are not counted).
fn measure(url: &str, all: &[Vec<Vec<u8>>], lines: usize) -> Measured {
    let failures = AtomicU64::new(0);
    let stored = AtomicU64::new(0);
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .iter()
            .map(|mine| {
                let (failures, stored) = (&failures, &stored);
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(120))
                        .build();
                    let mut latencies = Vec::new();
                    for body in mine {
                        let t = Instant::now();
                        let answer = agent
                            .post(url)
                            .set("Content-Type", "text/plain; charset=utf-8")
                            .set("Content-Encoding", "gzip")
                            .send_bytes(body);
                        match answer {
                            Ok(r) if r.status() == 204 => {
                                stored.fetch_add(lines as u64, Ordering::Relaxed);
                                latencies.push(t.elapsed());
                            }
                            Ok(r) => {
                                eprintln!("unexpected {}", r.status());
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("{e}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    Measured {
        readings_per_s: stored.load(Ordering::Relaxed) as f64 / secs,
        p50: pct(&latencies, 0.50),
        p99: pct(&latencies, 0.99),
        failures: failures.load(Ordering::Relaxed),
    }
}

fn run() {
    let load = Load {
        clients: env_u64("GRIDLOG_BENCH_CLIENTS", 8) as usize,
        lines: env_u64("GRIDLOG_BENCH_LINES", 1000) as usize,
        batches: env_u64("GRIDLOG_BENCH_BATCHES", 300) as usize,
    };
    let base = bench_base_dir();
    std::fs::create_dir_all(&base).expect("bench dir");
    println!("Load average at start: {}", load_average());
    eprintln!(
        "[line_protocol] building {} batches",
        load.clients * load.batches
    );
    let all = batches(&load);
    let gz_bytes: usize = all.iter().flatten().map(Vec::len).sum();

    eprintln!("[line_protocol] gridlog");
    let dir = tempfile::Builder::new()
        .prefix("gridlog-lp-")
        .tempdir_in(&base)
        .expect("dir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_ENGINE__AUTO_REGISTER", "grid")],
    );
    let ours = measure(&server.url("/write?db=bench&precision=s"), &all, load.lines);
    drop(server);
    drop(dir);

    eprintln!("[line_protocol] influxd");
    let dir = tempfile::Builder::new()
        .prefix("influxd-lp-")
        .tempdir_in(&base)
        .expect("dir");
    let influxd = Influxd::start_in(dir);
    let create = ureq::post(&format!("{}/query?q=CREATE+DATABASE+bench", influxd.base)).call();
    assert!(create.is_ok(), "CREATE DATABASE: {create:?}");
    let theirs = measure(
        &format!("{}/write?db=bench&precision=s", influxd.base),
        &all,
        load.lines,
    );
    drop(influxd);

    println!(
        "\n{} clients × {} batches × {} lines (gzip, {} bytes per batch on average), {}",
        load.clients,
        load.batches,
        load.lines,
        gz_bytes / all.iter().map(Vec::len).sum::<usize>().max(1),
        base.display()
    );
    println!("\n| server | readings/s durable | batch p50 | batch p99 | failed batches |");
    println!("|---|---:|---:|---:|---:|");
    for (name, m) in [("gridlog", &ours), ("InfluxDB 1.6 (influxd)", &theirs)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt_count(m.readings_per_s),
            ms(m.p50),
            ms(m.p99),
            m.failures
        );
    }
    println!(
        "\ngridlog / InfluxDB: {:.2}×. Load average at end: {}",
        ours.readings_per_s / theirs.readings_per_s.max(1.0),
        load_average()
    );
}
