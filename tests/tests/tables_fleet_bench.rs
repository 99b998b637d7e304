//! Fleet tables figures for docs/BENCHMARKS.md ("Fleet tables"), and a small run of the same
//! code in CI.
//!
//! A simulated fleet: `SITES` sites, each one UTC day of 15-second readings of `METERS`
//! meters, ingested over HTTP by `gridlog serve`, shipped to the S3-compatible test server
//! (moto) by `gridlog ship --once`; then `gridlog export` of every site into the bucket, and
//! DuckDB's "energy per site per day" over all sites' `intervals`. Checks at any size: every
//! site's daily import from DuckDB equals what its meters' registers say, to the Wh. With
//! `GRIDLOG_TABLES_BENCH=1` it runs the documented size (100 sites × 50 meters) and prints
//! the figures; run it against a release binary:
//!
//! ```text
//! cargo build --release -p gridlog-host
//! GRIDLOG_BIN=target/release/gridlog GRIDLOG_TABLES_BENCH=1 \
//!   cargo test -p gridlog-tests --test tables_fleet_bench -- --nocapture
//! ```
//!
//! Knobs: `GRIDLOG_TABLES_BENCH_SITES` (100; CI 3), `GRIDLOG_TABLES_BENCH_METERS` (50; CI 4),
//! `GRIDLOG_TABLES_BENCH_SEGMENT_MB` (8; CI 1).

#[allow(dead_code)]
mod ship_support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use ship_support::*;

/// 2026-11-02 00:00 UTC: the day.
const DAY_START_S: i64 = 1_793_577_600;
const STEP_S: i64 = 15;
const READINGS_PER_DAY: i64 = 86_400 / STEP_S;
/// Readings per request.
const BATCH: usize = 5_000;

/// Meter `m`'s import register grows this much per reading.
fn rate_wh(m: usize) -> f64 {
    1.0 + m as f64 / 8.0
}

/// One site's day, then filler readings of another meter the next day until the day lies
/// in sealed segments (only sealed segments ship as segments and make tables).
fn ingest_site(dir: &Path, site: &str, meters: usize, segment_bytes: u64) {
    let env = [
        ("GRIDLOG_SITE_ID".to_string(), site.to_string()),
        (
            "GRIDLOG_WAL__SEGMENT_BYTES".to_string(),
            segment_bytes.to_string(),
        ),
    ];
    let mut gateway = Gateway::serve(dir, &env);
    let base = format!("http://{}", gateway.addr.unwrap());
    let post = |path: &str, body: Value| {
        let r: Value = ureq::post(&format!("{base}{path}"))
            .send_json(body)
            .unwrap()
            .into_json()
            .unwrap();
        r
    };
    for m in 0..meters {
        post(
            "/api/v1/meters",
            json!({"id": format!("m{m}"), "kind": "load"}),
        );
    }
    post(
        "/api/v1/meters",
        json!({"id": "filler", "kind": "submeter"}),
    );
    let mut batch = Vec::with_capacity(BATCH);
    let send = |batch: &mut Vec<Value>| {
        let n = batch.len() as u64;
        let r = post("/api/v1/readings", json!({ "readings": batch }));
        assert_eq!(r["accepted"].as_u64(), Some(n), "{}", r["results"][0]);
        batch.clear();
    };
    for i in 0..READINGS_PER_DAY {
        let time = gridlog_tests::server::rfc3339(DAY_START_S + i * STEP_S);
        for m in 0..meters {
            batch.push(json!({"meter": format!("m{m}"), "time": time, "import_wh": i as f64 * rate_wh(m), "export_wh": 0.0, "power_w": 240.0 * rate_wh(m)}));
            if batch.len() == BATCH {
                send(&mut batch);
            }
        }
    }
    send(&mut batch);
    // About 100 bytes of log a reading: a segment's worth of filler seals the day.
    for i in 0..(segment_bytes / 60) as i64 {
        let time = gridlog_tests::server::rfc3339(DAY_START_S + 86_400 + i);
        batch.push(json!({"meter": "filler", "time": time, "import_wh": i as f64, "export_wh": 0.0, "power_w": 1.0}));
        if batch.len() == BATCH {
            send(&mut batch);
        }
    }
    send(&mut batch);
    assert_eq!(gateway.stop(), 0);
}

/// Runs `command` under GNU time when measuring: (output, user + system CPU s, peak RSS KiB).
fn measured(mut command: Command, measure: bool) -> (std::process::Output, f64, u64) {
    if !measure {
        return (command.output().unwrap(), 0.0, 0);
    }
    let program = command.get_program().to_owned();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("TIME %U %S %M")
        .arg(program)
        .args(command.get_args());
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().expect("/usr/bin/time (Debian package time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .unwrap_or("TIME 0 0 0");
    let f: Vec<f64> = line[5..]
        .split(' ')
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (out, f[0] + f[1], f[2] as u64)
}

fn gridlog(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = gridlog_tests::gridlog_command();
    c.args(args).env("GRIDLOG_LOG", "error");
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

fn duckdb(moto: &Moto, sql: &str) -> (Vec<Value>, f64) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tables_support/query_s3.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            "--timing",
            "--endpoint",
            &format!("127.0.0.1:{}", moto.port),
        ])
        .args(["--bucket", BUCKET, "--sql", sql])
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "DuckDB failed: {stderr}");
    let secs = stderr
        .lines()
        .find_map(|l| l.strip_prefix("query_s: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, secs)
}

/// Shipping environment `env` for `site`'s gateway, with its segment size.
fn as_site(
    mut env: Vec<(String, String)>,
    site: &str,
    segment_bytes: u64,
) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != "GRIDLOG_SITE_ID" && k != "GRIDLOG_WAL__SEGMENT_BYTES");
    env.push(("GRIDLOG_SITE_ID".into(), site.to_string()));
    env.push((
        "GRIDLOG_WAL__SEGMENT_BYTES".into(),
        segment_bytes.to_string(),
    ));
    env
}

/// A setting: the variable `name` if set, else `bench` with `GRIDLOG_TABLES_BENCH=1` and
/// `ci` otherwise.
fn knob(name: &str, bench: u64, ci: u64) -> u64 {
    let full = std::env::var("GRIDLOG_TABLES_BENCH").is_ok_and(|v| v == "1");
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { bench } else { ci })
}

#[test]
fn a_fleet_of_sites_exports_and_duckdb_sums_each_sites_day() {
    let full = std::env::var("GRIDLOG_TABLES_BENCH").is_ok_and(|v| v == "1");
    let sites = knob("GRIDLOG_TABLES_BENCH_SITES", 100, 3) as usize;
    let meters = knob("GRIDLOG_TABLES_BENCH_METERS", 50, 4) as usize;
    let segment_bytes = knob("GRIDLOG_TABLES_BENCH_SEGMENT_MB", 8, 1) << 20;
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let names: Vec<String> = (0..sites).map(|s| format!("site-{s:03}")).collect();
    for site in &names {
        let dir = tmp.path().join(site);
        ingest_site(&dir, site, meters, segment_bytes);
        let env = as_site(ship_env(&moto.endpoint(), "fleet"), site, segment_bytes);
        let dir_s = dir.display().to_string();
        let (out, _, _) = measured(
            gridlog(&["ship", "--once", "--data-dir", &dir_s], &env),
            false,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shipped_s = started.elapsed().as_secs_f64();

    // The gateway's own cost, on the first site: `ship --once` again, with nothing left to
    // ship, once with the tables off (opening the log and reconciling) and once on.
    let dir0 = tmp.path().join(&names[0]).display().to_string();
    let env0 = as_site(
        ship_env_with_tables(&moto.endpoint(), "fleet"),
        &names[0],
        segment_bytes,
    );
    let mut env0_off = env0.clone();
    env0_off.push(("GRIDLOG_SHIP__TABLES".into(), "false".into()));
    let (_, _, rss_off_kib) = measured(
        gridlog(&["ship", "--once", "--data-dir", &dir0], &env0_off),
        full,
    );
    let (out, _, rss_on_kib) = measured(
        gridlog(&["ship", "--once", "--data-dir", &dir0], &env0),
        full,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables_line = text
        .lines()
        .find(|l| l.starts_with("tables: "))
        .expect("a tables line");

    // Central: every site exported, two at a time.
    let mut args: Vec<String> = vec![
        "export".into(),
        "--from".into(),
        format!("s3://{BUCKET}/fleet"),
    ];
    for site in &names {
        args.extend(["--site".into(), site.clone()]);
    }
    args.extend([
        "--to".into(),
        format!("s3://{BUCKET}/fleet"),
        "--jobs".into(),
        "2".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let export_started = Instant::now();
    let (out, export_cpu_s, _) =
        measured(gridlog(&args, &ship_env(&moto.endpoint(), "fleet")), full);
    let export_s = export_started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log_bytes: u64 = text
        .lines()
        .filter_map(|l| {
            l.split(" bytes of log")
                .next()?
                .rsplit('(')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(text.lines().count(), sites, "{text}");

    let bucket = moto.bucket();
    let intervals: Vec<(String, usize)> = bucket
        .objects("fleet/tables/intervals/")
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect();
    let sql = "SELECT site, date, sum(import_wh) AS import_wh, count(*) AS quarter_rows \
               FROM read_parquet('s3://{bucket}/fleet/tables/intervals/*/*/*.parquet', hive_partitioning = true, \
               union_by_name = true, hive_types = {'site': VARCHAR, 'date': DATE}) \
               GROUP BY ALL ORDER BY ALL";
    let (rows, query_s) = duckdb(&moto, sql);
    let expected_wh: f64 = (0..meters)
        .map(|m| (READINGS_PER_DAY - 1) as f64 * rate_wh(m))
        .sum();
    let days: Vec<&Value> = rows.iter().filter(|r| r["date"] == "2026-11-02").collect();
    assert_eq!(days.len(), sites, "{rows:?}");
    for r in days {
        let got = r["import_wh"].as_f64().unwrap();
        assert!(
            (got - expected_wh).abs() < 0.5,
            "{r}: expected {expected_wh} Wh"
        );
    }

    if !full {
        return;
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let object_bytes: usize = intervals.iter().map(|(_, n)| n).sum();
    println!("\n| figure | value |\n|---|---|");
    println!("| fleet | {sites} sites × {meters} meters × 1 day of 15 s readings ({} readings), {} MiB segments |", sites * meters * READINGS_PER_DAY as usize, segment_bytes >> 20);
    println!(
        "| log shipped | {:.1} MiB (ingest over HTTP and `ship --once`: {shipped_s:.0} s) |",
        mib(log_bytes)
    );
    println!("| export | {export_s:.1} s wall, {export_cpu_s:.1} s CPU: {:.1} MiB of log/s per CPU-second ({:.1} MiB/s wall, --jobs 2) |", mib(log_bytes) / export_cpu_s.max(1e-9), mib(log_bytes) / export_s);
    println!("| DuckDB energy per site per day | {query_s:.2} s over {} `intervals` objects, {:.1} MiB |", intervals.len(), object_bytes as f64 / (1 << 20) as f64);
    println!("| gateway, first site | {tables_line} |");
    println!(
        "| gateway peak RSS, `ship --once` | {} KiB with tables, {} KiB without |",
        rss_on_kib, rss_off_kib
    );
}
