//! The issue-5 benchmark: a load generator against the real `gridlog serve` release binary
//! on loopback, client and server on the same machine.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench http
//! ```
//!
//! Env: `GRIDLOG_BIN` (default: the release build, built first if it is missing or stale,
//! through the test crate's `gridlog_bin`), `GRIDLOG_BENCH_SECS` (10) each
//! phase, `GRIDLOG_BENCH_CLIENTS` (16), `GRIDLOG_BENCH_BATCH` (500) readings per POST,
//! `GRIDLOG_BENCH_METERS` (10000), `GRIDLOG_BENCH_GET_RATE` (2000) GETs/s,
//! `GRIDLOG_BENCH_DIR` (`target/bench-data`) where the data lives,
//! `GRIDLOG_BENCH_SERVER_ENV` (`KEY=VALUE,…`) server configuration such as
//! `GRIDLOG_STORAGE__SNAPSHOT_EVERY_EVENTS=1000000000`. Progress to stderr, tables to stdout.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_benches::report::load_average as load;
use gridlog_benches::tables::{
    self, env_secs, env_u64, meter_id, ms, pass, pct, Clocks, HISTORY_START_MS,
};
use gridlog_firmware::engine::{Clock, SystemClock};
use gridlog_tests::server::{get, Server};

/// User + system CPU seconds of a process.
fn cpu_secs(pid: &str) -> f64 {
    tables::cpu_secs(Path::new(&format!("/proc/{pid}/stat")))
}

/// RFC 3339 of milliseconds since the epoch (UTC), e.g. `2026-11-23T12:00:00.123Z`.
fn rfc3339(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// The server's `/api/v1/status`.
fn status(server: &Server) -> serde_json::Value {
    get(&server.url("/api/v1/status")).1
}

/// Write rounds the server's log has made.
fn rounds(server: &Server) -> u64 {
    status(server)["commit"]["rounds"].as_u64().unwrap_or(0)
}

/// Snapshots the server has written.
fn snapshots(server: &Server) -> u64 {
    status(server)["snapshots"]["written"].as_u64().unwrap_or(0)
}

/// One POST body of `batch` readings over the client's own meters.
fn body(
    out: &mut String,
    mine: &[usize],
    next: &mut usize,
    batch: usize,
    clocks: &Clocks,
    base: i64,
) {
    out.clear();
    out.push_str("{\"readings\":[");
    for j in 0..batch {
        let m = mine[*next % mine.len()];
        *next += 1;
        let k = clocks.0[m].fetch_add(1, Ordering::Relaxed) as i64;
        if j > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"meter\":\"{}\",\"time\":\"", meter_id(m));
        rfc3339(out, base + k * 1000);
        let _ = write!(
            out,
            "\",\"import_wh\":{},\"export_wh\":0,\"power_w\":3600,\"voltage_v\":230}}",
            1000 + k
        );
    }
    out.push_str("]}");
}

struct Phase {
    readings: u64,
    secs: f64,
    lat: Vec<Duration>,
    errors: u64,
    server_cpu: f64,
    client_cpu: f64,
    rounds: u64,
}

/// `clients` threads, each with its own keep-alive agent, POST batches until `secs` pass;
/// with `rate` (readings/s, all clients together) paced, else closed loop.
fn post_phase(
    server: &Server,
    meters: usize,
    clients: usize,
    batch: usize,
    secs: f64,
    rate: Option<f64>,
    clocks: &Arc<Clocks>,
) -> Phase {
    let base = SystemClock.now_ms() - HISTORY_START_MS;
    let errors = AtomicU64::new(0);
    let readings = AtomicU64::new(0);
    let rounds0 = rounds(server);
    let pid = server.pid().to_string();
    let (scpu0, ccpu0) = (cpu_secs(&pid), cpu_secs("self"));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let url = server.url("/api/v1/readings");
    let mut lat = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (url, clocks, errors, readings) = (&url, clocks.clone(), &errors, &readings);
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(60))
                        .build();
                    let mine: Vec<usize> = (c..meters).step_by(clients).collect();
                    let mut next = 0;
                    let mut buf = String::with_capacity(batch * 160);
                    let mut lat = Vec::new();
                    let interval =
                        rate.map(|r| Duration::from_secs_f64(batch as f64 * clients as f64 / r));
                    let mut due = start + Duration::from_millis(c as u64 * 7);
                    while Instant::now() < deadline {
                        if let Some(interval) = interval {
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            due += interval;
                        }
                        body(&mut buf, &mine, &mut next, batch, &clocks, base);
                        let t = Instant::now();
                        match agent
                            .post(url)
                            .set("content-type", "application/json")
                            .send_string(&buf)
                        {
                            Ok(r) if r.status() == 200 => {
                                let text = r.into_string().unwrap_or_default();
                                if text.contains("\"rejected\":0") {
                                    readings.fetch_add(batch as u64, Ordering::Relaxed);
                                } else {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                                lat.push(t.elapsed());
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    lat
                })
            })
            .collect();
        for h in handles {
            lat.extend(h.join().expect("client"));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Phase {
        readings: readings.load(Ordering::Relaxed),
        secs,
        lat,
        errors: errors.load(Ordering::Relaxed),
        server_cpu: (cpu_secs(&pid) - scpu0) / secs,
        client_cpu: (cpu_secs("self") - ccpu0) / secs,
        rounds: rounds(server) - rounds0,
    }
}

/// Open-loop GETs of random meters at `rate` per second for `secs`; latency from the
/// scheduled send time (no coordinated omission) and from the actual send.
fn get_phase(
    server: &Server,
    meters: usize,
    rate: f64,
    secs: f64,
) -> (Vec<Duration>, Vec<Duration>, u64, f64) {
    let threads = 16usize;
    let errors = AtomicU64::new(0);
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs_f64(secs);
    let mut from_due = Vec::new();
    let mut from_send = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let errors = &errors;
                scope.spawn(move || {
                    let agent = ureq::Agent::new();
                    let interval = Duration::from_secs_f64(threads as f64 / rate);
                    let mut due = start + interval.mul_f64(t as f64 / threads as f64);
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    while due < deadline {
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let url = server.url(&format!(
                            "/api/v1/meters/{}",
                            meter_id((x % meters as u64) as usize)
                        ));
                        let sent = Instant::now();
                        match agent.get(&url).call() {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.into_string();
                                let end = Instant::now();
                                a.push(end - due);
                                b.push(end - sent);
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        due += interval;
                    }
                    (a, b)
                })
            })
            .collect();
        for h in handles {
            let (a, b) = h.join().expect("getter");
            from_due.extend(a);
            from_send.extend(b);
        }
    });
    let achieved = from_send.len() as f64 / secs;
    from_due.sort();
    from_send.sort();
    (
        from_due,
        from_send,
        errors.load(Ordering::Relaxed),
        achieved,
    )
}

/// One reading for every meter, in batches of `batch`.
fn one_each(server: &Server, meters: usize, batch: usize, clocks: &Clocks) {
    let base = SystemClock.now_ms() - HISTORY_START_MS;
    let agent = ureq::Agent::new();
    let all: Vec<usize> = (0..meters).collect();
    let mut buf = String::new();
    for chunk in all.chunks(batch) {
        body(&mut buf, chunk, &mut 0, chunk.len(), clocks, base);
        let r = agent
            .post(&server.url("/api/v1/readings"))
            .set("content-type", "application/json")
            .send_string(&buf)
            .expect("post");
        let text = r.into_string().unwrap_or_default();
        assert!(text.contains("\"rejected\":0"), "{text}");
    }
}

fn register_meters(server: &Server, meters: usize) -> f64 {
    let start = Instant::now();
    let url = server.url("/api/v1/meters");
    std::thread::scope(|scope| {
        for c in 0..16usize {
            let url = &url;
            scope.spawn(move || {
                let agent = ureq::Agent::new();
                for i in (c..meters).step_by(16) {
                    let r = agent
                        .post(url)
                        .set("content-type", "application/json")
                        .send_string(&format!("{{\"id\":\"{}\",\"kind\":\"load\"}}", meter_id(i)));
                    assert!(
                        matches!(&r, Ok(r) if r.status() == 201 || r.status() == 200),
                        "register {i}: {r:?}"
                    );
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn main() {
    if !gridlog_benches::tables::invoked_as_bench("http") {
        return;
    }
    // The release build (built if it is missing or stale), or `GRIDLOG_BIN`.
    let bin = gridlog_tests::gridlog_bin();
    let base = tables::bench_base_dir();
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let secs = env_secs("GRIDLOG_BENCH_SECS", 10.0);
    let clients = env_u64("GRIDLOG_BENCH_CLIENTS", 16) as usize;
    let batch = env_u64("GRIDLOG_BENCH_BATCH", 500) as usize;
    let meters = env_u64("GRIDLOG_BENCH_METERS", 10_000) as usize;
    let get_rate = env_u64("GRIDLOG_BENCH_GET_RATE", 2000) as f64;
    eprintln!(
        "http bench: {} in {} (load {})",
        bin.display(),
        tmp.path().display(),
        load()
    );
    let ticks_at_start = tables::steal_and_total_ticks();

    // Binary size: the release build as is and a stripped copy.
    let size = std::fs::metadata(bin).map_or(0, |m| m.len());
    let stripped_path = tmp.path().join("gridlog.stripped");
    std::fs::copy(bin, &stripped_path).expect("copy binary");
    let stripped = Command::new("strip")
        .arg(&stripped_path)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped_path).ok())
        .map_or(0, |m| m.len());

    // `GRIDLOG_BENCH_SERVER_ENV=KEY=VALUE,…` passes configuration to the server.
    let server_env = std::env::var("GRIDLOG_BENCH_SERVER_ENV").unwrap_or_default();
    let server_env: Vec<(&str, &str)> = server_env
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let mut server = Server::start_with_env(&tmp.path().join("data"), "serve", &[], &server_env);
    let pid = server.pid().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let rss_empty = tables::rss_bytes(&pid);
    eprintln!("registering {meters} meters");
    let register_secs = register_meters(&server, meters);
    std::thread::sleep(Duration::from_secs(2));
    let rss_registered = tables::rss_bytes(&pid);
    let clocks = Clocks::new(meters);
    // One reading each: every meter's rollup rings are allocated.
    one_each(&server, meters, batch, &clocks);
    std::thread::sleep(Duration::from_secs(2));
    let rss_one_each = tables::rss_bytes(&pid);

    eprintln!("max ingest: {clients} clients × {batch} readings, {secs} s");
    let snaps0 = snapshots(&server);
    let max = post_phase(&server, meters, clients, batch, secs, None, &clocks);
    let snaps_max = snapshots(&server) - snaps0;
    let max_rps = max.readings as f64 / max.secs;

    eprintln!(
        "half ingest ({:.0}/s) + GETs at {get_rate}/s",
        max_rps / 2.0
    );
    let (half, gets) = std::thread::scope(|scope| {
        let ingest = scope.spawn(|| {
            post_phase(
                &server,
                meters,
                clients,
                batch,
                secs,
                Some(max_rps / 2.0),
                &clocks,
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let gets = get_phase(&server, meters, get_rate, secs - 1.0);
        (ingest.join().expect("ingest"), gets)
    });
    let snaps_half = snapshots(&server) - snaps0 - snaps_max;
    let gets_alone = get_phase(&server, meters, get_rate, secs.min(5.0));
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = tables::rss_bytes(&pid);
    let status = status(&server);
    server.stop();

    let fsync_mean = status["commit"]["fsync_mean_us"].as_u64().unwrap_or(0);
    let snapshot_bytes = status["snapshots"]["last_bytes"].as_u64().unwrap_or(0);
    let snapshot_ms = status["snapshots"]["last_duration_ms"]
        .as_u64()
        .unwrap_or(0);
    println!("## HTTP appliance (issue 5)\n");
    println!(
        "`gridlog serve` (release) on 127.0.0.1, client in the same process tree on the same 2 cores; {clients} keep-alive clients (ureq 2, one agent each) × POST /api/v1/readings of {batch} readings over {meters} meters, each answered after its readings are durable; {secs:.0} s per phase. Load at start: see above; at end: {}. Mean fsync over the run: {fsync_mean} µs.\n",
        load()
    );
    println!("| measure | value | target | result |");
    println!("|---|---|---|---|");
    println!(
        "| ingest, readings/s durable (closed loop, {clients} clients) | {:.0} | ≥ 300,000 | {} |",
        max_rps,
        pass(max_rps >= 300_000.0)
    );
    println!(
        "| ingest ack p50 / p99 (per {batch}-reading POST) | {} / {} | reported | — |",
        ms(pct(&max.lat, 0.5)),
        ms(pct(&max.lat, 0.99))
    );
    println!(
        "| CPU during max ingest: server / client (of 2 cores = 200 %) | {:.0} % / {:.0} % | — | — |",
        max.server_cpu * 100.0,
        max.client_cpu * 100.0
    );
    println!(
        "| fsync rounds/s during max ingest; readings per round | {:.0}; {:.0} | — | — |",
        max.rounds as f64 / max.secs,
        max.readings as f64 / max.rounds.max(1) as f64
    );
    println!(
        "| errors / rejected batches (max, half) | {}, {} | 0 | {} |",
        max.errors,
        half.errors,
        pass(max.errors + half.errors == 0)
    );
    println!(
        "| half-rate ingest achieved | {:.0} readings/s (ack p99 {}) | {:.0} | — |",
        half.readings as f64 / half.secs,
        ms(pct(&half.lat, 0.99)),
        max_rps / 2.0
    );
    let (due, sent, get_errors, achieved) = &gets;
    println!(
        "| GET /api/v1/meters/{{id}} during half-rate ingest: p50 / p99 (from send) | {} / {} | reported | — |",
        ms(pct(sent, 0.5)),
        ms(pct(sent, 0.99))
    );
    println!(
        "| same, from scheduled time (open loop, no coordinated omission) | {} / {} | — | — |",
        ms(pct(due, 0.5)),
        ms(pct(due, 0.99))
    );
    println!(
        "| GET rate achieved / errors | {:.0}/s / {} | {get_rate:.0}/s | {} |",
        achieved,
        get_errors,
        pass(*achieved >= get_rate * 0.95 && *get_errors == 0)
    );
    println!(
        "| GET p50 / p99 with no ingest (baseline, same run) | {} / {} | — | — |",
        ms(pct(&gets_alone.1, 0.5)),
        ms(pct(&gets_alone.1, 0.99))
    );
    println!(
        "| idle RSS: empty / {meters} meters registered (no readings; took {:.1} s) | {:.1} MiB / {:.1} MiB | reported | — |",
        register_secs,
        rss_empty as f64 / 1048576.0,
        rss_registered as f64 / 1048576.0
    );
    println!(
        "| idle RSS: {meters} meters with one reading each (rollup slots are allocated when a first interval closes) / after the run | {:.1} MiB / {:.1} MiB | reported | — |",
        rss_one_each as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    println!(
        "| snapshots written during max / half phases; last snapshot size, write time | {snaps_max} / {snaps_half}; {:.1} MiB, {snapshot_ms} ms | — | — |",
        snapshot_bytes as f64 / 1048576.0
    );
    println!(
        "| binary size: release (debug = 1 line tables) / stripped | {:.1} MiB / {:.1} MiB | reported | — |",
        size as f64 / 1048576.0,
        stripped as f64 / 1048576.0
    );
    println!(
        "| CPU time taken by the host (steal) during the run | {} | reported | — |",
        tables::steal_share(ticks_at_start, tables::steal_and_total_ticks())
    );
    println!();
}
