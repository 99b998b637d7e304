//! Recovery-point figures for docs/BENCHMARKS.md: a `gridlog serve` shipping to moto while
//! readings arrive over HTTP at a steady rate; the lag from each reading's acknowledgement
//! to the moment `/api/v1/status` shows central storage holding it (polled every 100 ms),
//! requests per hour, and bytes uploaded per byte of log; and the gateway's CPU time, with
//! shipping and (the same load again) without, so the difference is what shipping costs.
//!
//! By default (CI) one short run with a small `ship.max_lag_s` checks only that every
//! acknowledged reading reaches the store and the figures are computed. With
//! `GRIDLOG_SHIP_BENCH=1` it runs a quiet site (1 reading/s) and a busy one (1,000
//! readings/s, 100 per request) at the default `ship.max_lag_s` (60) and prints a table:
//!
//! ```text
//! GRIDLOG_SHIP_BENCH=1 cargo test -p gridlog-tests --test ship_recovery_bench -- --nocapture
//! ```
//!
//! Knobs: `GRIDLOG_SHIP_BENCH_QUIET_S` (default 300), `GRIDLOG_SHIP_BENCH_BUSY_S` (default
//! 120).

#[allow(dead_code)]
mod ship_support;

use std::time::{Duration, Instant};

use ship_support::*;

#[derive(Debug)]
struct Figures {
    readings: u64,
    p50_s: f64,
    p99_s: f64,
    max_s: f64,
    requests_per_hour: f64,
    bytes_per_log_byte: f64,
    /// The gateway's CPU time over the ingest, per second of it.
    cpu_ms_per_s: f64,
}

/// Ingests `per_second` readings a second (in requests of `per_request`) for `seconds`,
/// then (when shipping) waits until the store holds all of them.
fn run(max_lag_s: u64, per_second: u64, per_request: u64, seconds: u64, ship: bool) -> Figures {
    let moto = Moto::start();
    let mut env = ship_env(&moto.endpoint(), "bench");
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "GRIDLOG_SHIP__INTERVAL_S" | "GRIDLOG_WAL__SEGMENT_BYTES"
        ) && (ship || !k.starts_with("GRIDLOG_SHIP__"))
    });
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), max_lag_s.to_string()));
    let tmp = tempfile::tempdir().unwrap();
    let gateway = Gateway::serve(&tmp.path().join("gateway"), &env);
    let meters = per_request.clamp(1, 100);
    for m in 0..meters {
        gateway.post(
            "/api/v1/meters",
            serde_json::json!({"id": format!("m-{m}"), "kind": "load"}),
        );
    }
    let status = |g: &Gateway| g.get("/api/v1/status").1;
    let start_status = status(&gateway);
    let requests0 = start_status["shipping"]["requests"].as_u64().unwrap_or(0);
    let sent0 = start_status["shipping"]["bytes_sent"].as_u64().unwrap_or(0);
    let log0 = start_status["commit"]["bytes"].as_u64().unwrap_or(0);
    let cpu0_ns = gateway.cpu_ns();
    let started = Instant::now();
    let t0 = 1_700_000_000_000i64;
    let mut acked: Vec<(u64, Instant)> = Vec::new();
    let mut covered: Vec<(u64, Instant)> = Vec::new();
    let period = Duration::from_secs_f64(per_request as f64 / per_second as f64);
    let mut next_request = started;
    let mut next_poll = started;
    let mut k = 0i64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_request {
            k += 1;
            let readings: Vec<_> = (0..per_request)
                .map(|i| {
                    serde_json::json!({"meter": format!("m-{}", i % meters),
                        "time": gridlog_tests::server::rfc3339_ms(t0 + k * 1000 + (i / meters) as i64),
                        "import_wh": k as f64 + (i / meters) as f64 * 0.001,
                        "export_wh": 0.0, "power_w": 1000.0})
                })
                .collect();
            let response = gateway.post(
                "/api/v1/readings",
                serde_json::json!({ "readings": readings }),
            );
            let at = Instant::now();
            for r in response["results"].as_array().unwrap() {
                assert_eq!(r["status"], "accepted", "{r}");
                acked.push((r["offset"].as_u64().unwrap(), at));
            }
            next_request += period;
        }
        if ship && now >= next_poll {
            let next = status(&gateway)["shipping"]["recovery_point"]["next_offset"]
                .as_u64()
                .unwrap_or(0);
            covered.push((next, Instant::now()));
            next_poll += Duration::from_millis(100);
        }
        std::thread::sleep(
            next_request
                .min(next_poll)
                .saturating_duration_since(Instant::now()),
        );
    }
    let elapsed = started.elapsed();
    let cpu_ns = gateway.cpu_ns() - cpu0_ns;
    let end_status = status(&gateway);
    let cpu_ms_per_s = cpu_ns as f64 / 1e6 / elapsed.as_secs_f64();
    if !ship {
        return Figures {
            readings: acked.len() as u64,
            p50_s: 0.0,
            p99_s: 0.0,
            max_s: 0.0,
            requests_per_hour: 0.0,
            bytes_per_log_byte: 0.0,
            cpu_ms_per_s,
        };
    }
    let last = acked.last().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(max_lag_s * 3 + 30);
    loop {
        let next = status(&gateway)["shipping"]["recovery_point"]["next_offset"]
            .as_u64()
            .unwrap_or(0);
        covered.push((next, Instant::now()));
        if next > last {
            break;
        }
        assert!(Instant::now() < deadline, "the store never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lags: Vec<f64> = acked
        .iter()
        .map(|(offset, at)| {
            let (_, when) = covered
                .iter()
                .find(|(next, when)| next > offset && when >= at)
                .expect("covered");
            when.duration_since(*at).as_secs_f64()
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];
    let requests = end_status["shipping"]["requests"].as_u64().unwrap_or(0) - requests0;
    let sent = end_status["shipping"]["bytes_sent"].as_u64().unwrap_or(0) - sent0;
    let log = end_status["commit"]["bytes"].as_u64().unwrap_or(0) - log0;
    Figures {
        readings: acked.len() as u64,
        p50_s: pct(0.5),
        p99_s: pct(0.99),
        max_s: pct(1.0),
        requests_per_hour: requests as f64 * 3600.0 / elapsed.as_secs_f64(),
        bytes_per_log_byte: sent as f64 / log.max(1) as f64,
        cpu_ms_per_s,
    }
}

#[test]
fn recovery_point_lag_requests_and_bytes() {
    let full = std::env::var("GRIDLOG_SHIP_BENCH").is_ok_and(|v| v == "1");
    let runs: Vec<(&str, u64, u64, u64, u64)> = if full {
        vec![
            (
                "quiet (1 reading/s)",
                60,
                1,
                1,
                bench_knob("GRIDLOG_SHIP_BENCH_QUIET_S", 300, 0),
            ),
            (
                "busy (1,000 readings/s)",
                60,
                1000,
                100,
                bench_knob("GRIDLOG_SHIP_BENCH_BUSY_S", 120, 0),
            ),
        ]
    } else {
        vec![("ci", 2, 50, 5, 4)]
    };
    println!("| site | max_lag_s | readings | lag p50 | lag p99 | lag max | requests/hour | bytes uploaded per byte of log | gateway CPU, shipping | without | shipping's share of one core |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, max_lag_s, per_second, per_request, seconds) in runs {
        let f = run(max_lag_s, per_second, per_request, seconds, true);
        let without = run(max_lag_s, per_second, per_request, seconds, false);
        println!(
            "| {name} | {max_lag_s} | {} | {:.1} s | {:.1} s | {:.1} s | {:.0} | {:.3} | {:.1} ms/s | {:.1} ms/s | {:.2} % |",
            f.readings,
            f.p50_s,
            f.p99_s,
            f.max_s,
            f.requests_per_hour,
            f.bytes_per_log_byte,
            f.cpu_ms_per_s,
            without.cpu_ms_per_s,
            (f.cpu_ms_per_s - without.cpu_ms_per_s) / 10.0
        );
        assert!(f.readings > 0 && f.requests_per_hour > 0.0);
        assert!(f.cpu_ms_per_s > 0.0 && without.cpu_ms_per_s > 0.0);
    }
}
