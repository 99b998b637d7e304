//! The issue-3 and issue-4 benchmarks: the engine's durable ingest against the log's own bulk
//! append (measured in the same run), replay, memory per meter, restart with and without a
//! snapshot, ingest while snapshots and archiving run, snapshot and archive figures.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench engine
//! ```
//!
//! Sizes (env): `GRIDLOG_BENCH_SECS` (5) each ingest window, `GRIDLOG_BENCH_SUBMITTERS` (16),
//! `GRIDLOG_BENCH_REQUEST` (100) readings per request, `GRIDLOG_BENCH_METERS` (`1000,10000`),
//! `GRIDLOG_BENCH_HISTORY` (`1000000,10000000`) events of the restart rows,
//! `GRIDLOG_BENCH_MEM_METERS` (10000), `GRIDLOG_BENCH_SNAPSHOT_EVERY` (100000) events between
//! snapshots in the stress row of the maintenance section (its other row uses the product
//! default), `GRIDLOG_BENCH_MAINT_SECS` (10) its window, `GRIDLOG_BENCH_DIR`
//! (`target/bench-data`) where the data lives, `GRIDLOG_BENCH_BASELINE=0` skips the log bulk
//! baseline (to profile the engine alone). `GRIDLOG_BENCH_ONLY` = `memory`, `ingest`,
//! `restart` or `maintenance` runs one section; `replay` runs only repeated full replays of
//! one kept directory (`GRIDLOG_BENCH_REPLAY_DIR`), for profiling start-up. Progress goes to
//! stderr, the tables to stdout.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{Command, MeterKind, Reading};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::{
    Clock, Engine, EngineOptions, ItemResult, Request, RollupOptions, StorageOptions, StorageStats,
    SystemClock,
};
use gridlog_firmware::wal::{Wal, WalOptions, SEGMENT_BYTES_DEFAULT};

use gridlog_benches::report::{load_average as load, CommitDelta};
use gridlog_benches::tables::{
    self, env_list, env_secs, env_u64, ms, pass, pct, Clocks, HISTORY_START_MS,
};
use gridlog_benches::{BULK_BATCH_RECORDS, BULK_THREADS, BULK_WINDOW_BATCHES, SETTLE_AFTER_OPEN};

/// The process's resident set (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    tables::rss_bytes("self")
}

/// `RssAnon` of this process: its heap and stacks, without the log's mapped file pages.
fn rss_anon_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// CPU seconds (user + system) of this process, or of its thread named `thread_name`.
fn cpu_secs(thread_name: Option<&str>) -> f64 {
    match thread_name {
        None => tables::cpu_secs(Path::new("/proc/self/stat")),
        Some(name) => tables::thread_dir(name).map_or(0.0, |t| tables::cpu_secs(&t.join("stat"))),
    }
}

/// Nanoseconds the processor thread spent runnable but waiting for a CPU
/// (`/proc/self/task/*/schedstat`, second field): other processes' share of the cores.
fn processor_run_delay_ns() -> f64 {
    tables::thread_dir("gridlog-process")
        .and_then(|t| std::fs::read_to_string(t.join("schedstat")).ok())
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Segments of the restart and maintenance sections: small enough that their histories
/// seal and archive many.
const SMALL_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Engine options of the benchmarks: a snapshot (and archiving) every `snapshot_every`
/// events, never if `None`; segments of `segment_bytes`.
fn options(snapshot_every: Option<u64>, segment_bytes: u64) -> EngineOptions {
    let mut storage = StorageOptions::default();
    match snapshot_every {
        Some(events) => storage.snapshot_every_events = events,
        None => {
            storage.snapshot_every_events = u64::MAX;
            storage.snapshot_every_bytes = u64::MAX;
        }
    }
    EngineOptions::default()
        .storage(storage)
        .wal(WalOptions::default().segment_bytes(segment_bytes))
}

/// One ingest window of the issue's shape (`ctx.submitters` × `ctx.per_request`) on a new
/// engine in `ctx.sub(name)` with `meters` registered meters, after a second to settle;
/// with the engine's storage statistics. The directory is removed afterwards.
fn fresh_ingest(
    ctx: &Ctx,
    name: &str,
    options: EngineOptions,
    meters: usize,
    secs: f64,
) -> (Ingest, StorageStats) {
    let dir = ctx.sub(name);
    let engine = Engine::open(&dir, options).expect("open");
    let ids = meter_ids(meters);
    register(&engine, &ids);
    let clocks = Clocks::new(meters);
    std::thread::sleep(Duration::from_secs(1));
    let r = ingest(
        &engine,
        &ids,
        &clocks,
        ctx.submitters,
        ctx.per_request,
        secs,
        u64::MAX,
    );
    let storage = engine.storage_stats();
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    (r, storage)
}

fn meter_ids(n: usize) -> Arc<Vec<EntityId>> {
    Arc::new(
        (0..n)
            .map(|i| EntityId::new(&tables::meter_id(i)).expect("id"))
            .collect(),
    )
}

fn register(engine: &Engine, ids: &[EntityId]) {
    for chunk in ids.chunks(1000) {
        let response = engine
            .submit(Request::of(chunk.iter().map(|id| Command::RegisterMeter {
                meter: id.clone(),
                kind: MeterKind::Load,
                register_bits: None,
            })))
            .expect("register");
        assert!(response
            .results
            .iter()
            .all(|r| !matches!(r, ItemResult::Rejected(_))));
    }
}

struct Ingest {
    readings: u64,
    secs: f64,
    lat: Vec<Duration>,
    /// The log's rounds, bytes and fsync time over the window.
    commit: CommitDelta,
    rejected: u64,
    /// CPU of the whole process and of the processor thread, in cores.
    cpu: (f64, f64),
    /// Share of the window the processor thread waited for a CPU while runnable.
    run_delay: f64,
}

/// `submitters` threads, each owning meters `i % submitters == s`, each submitting requests
/// of `per_request` readings and waiting for the durable answer, until `secs` pass or
/// `total` readings are sent.
fn ingest(
    engine: &Engine,
    ids: &Arc<Vec<EntityId>>,
    clocks: &Arc<Clocks>,
    submitters: usize,
    per_request: usize,
    secs: f64,
    total: u64,
) -> Ingest {
    let base = SystemClock.now_ms() - HISTORY_START_MS;
    let sent = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let before = engine.stats();
    let cpu0 = (cpu_secs(None), cpu_secs(Some("gridlog-process")));
    let delay0 = processor_run_delay_ns();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut lat = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..submitters)
            .map(|s| {
                let (ids, clocks, sent, stop) = (ids.clone(), clocks.clone(), &sent, &stop);
                scope.spawn(move || {
                    let mine: Vec<usize> = (s..ids.len()).step_by(submitters).collect();
                    let mut next = 0usize;
                    let mut lat = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        if sent.fetch_add(per_request as u64, Ordering::Relaxed) >= total
                            || Instant::now() >= deadline
                        {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        let mut build = || -> Vec<Command> {
                            (0..per_request)
                                .map(|_| {
                                    let m = mine[next % mine.len()];
                                    next += 1;
                                    let k = clocks.0[m].fetch_add(1, Ordering::Relaxed) as i64;
                                    Command::RecordReading {
                                        meter: ids[m].clone(),
                                        reading: Reading {
                                            time_ms: base + k * 1000,
                                            import_wh: 1000.0 + k as f64,
                                            export_wh: 0.0,
                                            power_w: 3600.0,
                                            voltage_v: Some(230.0),
                                            current_a: None,
                                            reactive_power_var: None,
                                        },
                                    }
                                })
                                .collect()
                        };
                        let t = Instant::now();
                        loop {
                            // Built anew for a retry after `Busy` (rare), never cloned.
                            match engine.submit(Request::of(build())) {
                                Ok(_) => break,
                                Err(gridlog_firmware::engine::SubmitError::Busy { .. }) => {
                                    std::thread::sleep(Duration::from_micros(200))
                                }
                                Err(e) => panic!("submit: {e}"),
                            }
                        }
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        for h in handles {
            lat.extend(h.join().expect("submitter"));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let after = engine.stats();
    lat.sort();
    Ingest {
        readings: (after.accepted - before.accepted),
        secs,
        lat,
        commit: CommitDelta::between(&before.wal, &after.wal),
        rejected: after.rejected - before.rejected,
        cpu: (
            (cpu_secs(None) - cpu0.0) / secs,
            (cpu_secs(Some("gridlog-process")) - cpu0.1) / secs,
        ),
        run_delay: (processor_run_delay_ns() - delay0) / 1e9 / secs,
    }
}

/// Records/s of the log's own bulk append of `record_bytes`-byte records, for `secs`: the
/// issue-2 bench's bulk shape ([`BULK_THREADS`] threads, each with [`BULK_WINDOW_BATCHES`]
/// frames of [`BULK_BATCH_RECORDS`] records in flight).
fn wal_bulk(dir: &Path, record_bytes: usize, secs: f64) -> f64 {
    wal_closed_loop(
        dir,
        record_bytes,
        BULK_THREADS,
        BULK_BATCH_RECORDS,
        BULK_WINDOW_BATCHES,
        secs,
    )
}

/// The log alone under the ingest benchmark's load: `submitters` threads, each appending a
/// frame of `per_frame` records and waiting until it is durable, again and again. What the
/// engine's ingest would reach if planning and applying cost nothing.
fn wal_same_load(
    dir: &Path,
    record_bytes: usize,
    submitters: usize,
    per_frame: usize,
    secs: f64,
) -> f64 {
    wal_closed_loop(dir, record_bytes, submitters, per_frame, 1, secs)
}

/// Records/s of a plain `Wal` (default options) for `secs`: `threads` threads, each keeping
/// `window` frames of `per_frame` records of `record_bytes` in flight (appending the next
/// once the oldest is durable).
fn wal_closed_loop(
    dir: &Path,
    record_bytes: usize,
    threads: usize,
    per_frame: usize,
    window: usize,
    secs: f64,
) -> f64 {
    let wal = Wal::open(dir, WalOptions::default()).expect("wal");
    std::thread::sleep(SETTLE_AFTER_OPEN);
    let record = vec![0x5au8; record_bytes];
    let frame: Vec<&[u8]> = (0..per_frame).map(|_| record.as_slice()).collect();
    let records = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let durable = |ticket: gridlog_firmware::wal::AppendTicket<'_>| {
        ticket.wait().expect("durable");
        records.fetch_add(per_frame as u64, Ordering::Relaxed);
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut in_flight = std::collections::VecDeque::new();
                while Instant::now() < deadline {
                    in_flight.push_back(wal.append_nowait(&frame).expect("append"));
                    if in_flight.len() >= window {
                        if let Some(ticket) = in_flight.pop_front() {
                            durable(ticket);
                        }
                    }
                }
                in_flight.into_iter().for_each(&durable);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let _ = wal.close();
    records.load(Ordering::Relaxed) as f64 / secs
}

struct Ctx {
    dir: tempfile::TempDir,
    secs: f64,
    submitters: usize,
    per_request: usize,
}

impl Ctx {
    fn sub(&self, name: &str) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    }
}

fn section_ingest(ctx: &Ctx) {
    println!("## Engine (issue 3): ingest\n");
    println!(
        "{} submitters × requests of {} readings, durable (each `submit` returns after the fsync), {:.0} s per row; load before: {}\n",
        ctx.submitters, ctx.per_request, ctx.secs, load()
    );
    println!("| meters | readings/s | ack p50 | ack p99 | fsync rounds/s | fsync mean | readings/round | log MB/s | rejected | CPU: process / processor thread (of 2 cores) | processor runnable, waiting for a CPU | log bulk baseline (records/s, same run) | ratio | log alone, same load (records/s) | engine ÷ log alone | target | result |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for meters in env_list("GRIDLOG_BENCH_METERS", &[1000, 10_000]) {
        let meters = meters as usize;
        eprintln!("ingest: {meters} meters");
        let (r, _) = fresh_ingest(
            ctx,
            &format!("ingest-{meters}"),
            options(None, SEGMENT_BYTES_DEFAULT),
            meters,
            ctx.secs,
        );
        let record_bytes = (r.commit.bytes / r.readings.max(1)).max(1) as usize;
        eprintln!("wal bulk baseline: {record_bytes}-byte records");
        let bulk_dir = ctx.sub("wal-bulk");
        let baselines = if env_u64("GRIDLOG_BENCH_BASELINE", 1) == 0 {
            None // skipped, e.g. to profile the engine alone
        } else {
            let bulk = wal_bulk(&bulk_dir, record_bytes, ctx.secs);
            let _ = std::fs::remove_dir_all(&bulk_dir);
            let same_load = wal_same_load(
                &bulk_dir,
                record_bytes,
                ctx.submitters,
                ctx.per_request,
                ctx.secs,
            );
            Some((bulk, same_load))
        };
        let _ = std::fs::remove_dir_all(&bulk_dir);
        let rps = r.readings as f64 / r.secs;
        let ok = rps >= 1_000_000.0 || baselines.is_some_and(|(bulk, _)| rps / bulk >= 0.5);
        let baseline_cells = match baselines {
            Some((bulk, same_load)) => format!(
                "{bulk:.0} ({record_bytes} B/record) | {:.0} % | {same_load:.0} | {:.0} %",
                rps / bulk * 100.0,
                rps / same_load * 100.0
            ),
            None => "not run | — | not run | —".to_string(),
        };
        println!(
            "| {meters} | {:.0} | {} | {} | {:.0} | {} | {:.0} | {:.1} | {} | {:.0} % / {:.0} % | {:.0} % | {baseline_cells} | ≥ 1,000,000/s or ≥ 50 % of bulk | {} |",
            rps,
            ms(pct(&r.lat, 0.5)),
            ms(pct(&r.lat, 0.99)),
            r.commit.rounds as f64 / r.secs,
            ms(Duration::from_nanos(
                r.commit.sync_nanos / r.commit.rounds.max(1)
            )),
            r.readings as f64 / r.commit.rounds.max(1) as f64,
            r.commit.bytes as f64 / r.secs / 1e6,
            r.rejected,
            r.cpu.0 * 100.0,
            r.cpu.1 * 100.0,
            r.run_delay * 100.0,
            pass(ok)
        );
    }
    println!();
}

fn section_memory(ctx: &Ctx) {
    let meters = env_u64("GRIDLOG_BENCH_MEM_METERS", 10_000) as usize;
    let rollups = RollupOptions::default();
    let dir = ctx.sub("memory");
    let ids = meter_ids(meters);
    let clocks = Clocks::new(meters);
    let rss0 = rss_bytes();
    let engine = Engine::open(&dir, options(None, SEGMENT_BYTES_DEFAULT)).expect("open");
    std::thread::sleep(Duration::from_millis(500));
    let rss_open = rss_bytes();
    register(&engine, &ids);
    let rss_registered = rss_bytes();
    // One reading each: allocates every meter's rollup rings and its latest reading.
    let r = ingest(&engine, &ids, &clocks, 1, 1000, 60.0, meters as u64);
    assert_eq!(r.readings, meters as u64);
    let rss_one = rss_bytes();
    // One more reading each, a day and a minute later: both rings close their first
    // interval, so every meter's rollup slots are allocated (the documented bound).
    for c in &clocks.0 {
        c.store(24 * 3600 + 60, Ordering::Relaxed);
    }
    let r = ingest(&engine, &ids, &clocks, 1, 1000, 60.0, meters as u64);
    assert_eq!(r.readings, meters as u64);
    let rss_full = rss_bytes();
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let rollup = rollups.bytes_per_meter() as f64;
    let per_registered = (rss_registered.saturating_sub(rss_open)) as f64 / meters as f64;
    let image_per_meter = (rss_one.saturating_sub(rss_open)) as f64 / meters as f64;
    let rollup_measured = (rss_full.saturating_sub(rss_one)) as f64 / meters as f64;
    println!("## Engine (issue 3): memory\n");
    println!(
        "{meters} meters, rollups {} days of 15-min + {} days of daily buckets (in memory: the current block of {} quarter hours, {} B a slot): rollup bound `RollupOptions::bytes_per_meter` = {:.0} B/meter, reached when a block's quarter hours have closed. RSS from `/proc/self/status` VmRSS (process before open {:.1} MiB, after open {:.1} MiB).\n",
        rollups.quarter_hour_days,
        rollups.day_days,
        gridlog_firmware::engine::rollup::BLOCK_QUARTERS,
        gridlog_firmware::engine::rollup::SLOT_BYTES,
        rollup,
        rss0 as f64 / 1048576.0,
        rss_open as f64 / 1048576.0
    );
    println!("| measure | value | target | result |");
    println!("|---|---|---|---|");
    println!(
        "| RSS delta per meter, registered (no reading, no rollups) | {:.0} B | < 2048 B | {} |",
        per_registered,
        pass(per_registered < 2048.0)
    );
    println!(
        "| RSS delta per meter, registered + 1 reading: the image (rollup slots not yet allocated; the newest buckets are inline) | {:.0} B | < 2048 B | {} |",
        image_per_meter,
        pass(image_per_meter < 2048.0)
    );
    println!(
        "| RSS added per meter when its rollup rings' first intervals close (a chunk of each ring allocated) | {:.0} B | bound {:.0} B | {} |",
        rollup_measured,
        rollup,
        pass(rollup_measured <= rollup * 1.05)
    );
    println!(
        "| process RSS, {meters} meters with 7-day 15-min horizon, first chunk of each ring allocated | {:.1} MiB | documented bound: {:.1} MiB of rollups + image | — |",
        rss_full as f64 / 1048576.0,
        rollup * meters as f64 / 1048576.0
    );
    println!();
}

/// `GRIDLOG_BENCH_ONLY=horizons`: bytes per meter with the rollup rings at 1 day, 2 days and
/// every horizon full, for `GRIDLOG_BENCH_HORIZON_METERS` (`100,10000`) meters, each read
/// every 15 minutes (the issue-18 baseline). The state is built through the engine API
/// with back-dated readings (a day of 10,000 meters is ~1 M readings), not in real time.
fn section_memory_horizons(ctx: &Ctx) {
    let rollups = RollupOptions::default();
    let full_days = i64::from(rollups.day_days.max(rollups.quarter_hour_days));
    println!("## Rollup memory by horizon (issue 18)\n");
    println!(
        "Each meter read every 15 minutes (one reading per quarter hour, 1 kW); full = {} days of one reading a day, then the last {} days every 15 minutes (both rings full). RSS from `/proc/self/status` VmRSS, per meter = (RSS − RSS after open) / meters.\n",
        full_days - i64::from(rollups.quarter_hour_days),
        rollups.quarter_hour_days
    );
    println!(
        "| meters | horizon | readings | process RSS | of it anonymous | RSS per meter | queued for the store | rollup store on disk (files) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut latencies = Vec::new();
    for meters in env_list("GRIDLOG_BENCH_HORIZON_METERS", &[100, 10_000]) {
        let meters = meters as usize;
        let dir = ctx.sub(&format!("horizons-{meters}"));
        let ids = meter_ids(meters);
        let engine = Engine::open(&dir, options(None, SEGMENT_BYTES_DEFAULT)).expect("open");
        std::thread::sleep(Duration::from_millis(500));
        let rss_open = rss_bytes();
        register(&engine, &ids);
        // Day 0 is `full_days + 1` UTC days ago, so the last reading is in the past.
        let day_ms = 24 * 3600 * 1000;
        let day0 = (SystemClock.now_ms() / day_ms - full_days - 1) * day_ms;
        let quarter = full_days - i64::from(rollups.quarter_hour_days);
        let stages: [(&str, std::ops::Range<i64>, std::ops::Range<i64>); 3] = [
            ("1 day", 0..0, 0..1),
            ("2 days", 0..0, 1..2),
            ("full horizons", 2..quarter, quarter..full_days),
        ];
        let mut readings = 0u64;
        for (name, daily, quarter_hourly) in stages {
            readings += fill_readings(&engine, &ids, day0, daily, 1);
            readings += fill_readings(&engine, &ids, day0, quarter_hourly, 96);
            let rss = rss_bytes();
            let (store_bytes, files) = dir_bytes(&dir.join("rollups"));
            println!(
                "| {meters} | {name} | {readings} | {:.1} MiB | {:.1} MiB | {:.0} B | {:.1} MiB | {:.1} MB ({files}) |",
                rss as f64 / 1048576.0,
                rss_anon_bytes() as f64 / 1048576.0,
                rss.saturating_sub(rss_open) as f64 / meters as f64,
                engine.storage_stats().rollup_queued_bytes as f64 / 1048576.0,
                store_bytes as f64 / 1e6,
            );
        }
        latencies.push((
            meters,
            rollup_query_latency(&engine, &ids, day0 + full_days * day_ms),
        ));
        engine.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!(
        "`Engine::rollups` at full horizons, 200 meters spread over the ids, warm page cache:\n"
    );
    println!("| meters | query | buckets | p50 | p99 | max |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (meters, rows) in latencies {
        for (name, buckets, lat) in rows {
            println!(
                "| {meters} | {name} | {buckets} | {} | {} | {} |",
                ms(pct(&lat, 0.5)),
                ms(pct(&lat, 0.99)),
                ms(lat[lat.len() - 1])
            );
        }
    }
    println!();
}

/// Bytes and files under `dir` (not recursive).
fn dir_bytes(dir: &std::path::Path) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let sizes: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .collect();
    (sizes.iter().sum(), sizes.len())
}

/// Latencies of the rollup queries a dashboard makes (a day of quarter hours, a week of
/// hours, 400 days of days) ending at `end_ms`, for 200 meters.
fn rollup_query_latency(
    engine: &Engine,
    ids: &[EntityId],
    end_ms: i64,
) -> Vec<(&'static str, usize, Vec<Duration>)> {
    use gridlog_firmware::engine::Step;
    const SAMPLES: usize = 200;
    let day_ms = 24 * 3600 * 1000;
    let queries = [
        ("15m, last day", Step::QuarterHour, day_ms),
        ("15m, 7 days ago", Step::QuarterHour, 7 * day_ms),
        ("1h, last 7 days", Step::Hour, 7 * day_ms),
        ("1d, last 400 days", Step::Day, 400 * day_ms),
    ];
    queries
        .into_iter()
        .map(|(name, step, span_ms)| {
            let (from, to) = if name.contains("ago") {
                (end_ms - span_ms, end_ms - span_ms + day_ms)
            } else {
                (end_ms - span_ms, end_ms)
            };
            let mut lat = Vec::with_capacity(SAMPLES);
            let mut buckets = 0;
            for i in 0..SAMPLES {
                let id = &ids[i * ids.len() / SAMPLES];
                let t = Instant::now();
                let got = engine.rollups(id.as_str(), step, from, to).expect("query");
                lat.push(t.elapsed());
                buckets = got.map_or(0, |b| b.len());
            }
            lat.sort_unstable();
            (name, buckets, lat)
        })
        .collect()
}

/// Submits `per_day` readings a day (evenly spaced, a minute into each interval) for every
/// meter and every day in `days` after `day0_ms`, from four submitters, each owning a
/// quarter of the meters so every meter's times rise. Returns the readings accepted.
fn fill_readings(
    engine: &Engine,
    ids: &Arc<Vec<EntityId>>,
    day0_ms: i64,
    days: std::ops::Range<i64>,
    per_day: i64,
) -> u64 {
    const SUBMITTERS: usize = 4;
    const REQUEST_READINGS: usize = 1000;
    let day_ms = 24 * 3600 * 1000;
    let accepted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for s in 0..SUBMITTERS {
            let (ids, days, accepted) = (ids.clone(), days.clone(), &accepted);
            scope.spawn(move || {
                let mine: Vec<&EntityId> = ids.iter().skip(s).step_by(SUBMITTERS).collect();
                for day in days {
                    for slot in 0..per_day {
                        let time_ms = day0_ms + day * day_ms + slot * (day_ms / per_day) + 60_000;
                        for chunk in mine.chunks(REQUEST_READINGS) {
                            let build = || {
                                Request::of(chunk.iter().map(|id| Command::RecordReading {
                                    meter: (*id).clone(),
                                    reading: Reading {
                                        time_ms,
                                        import_wh: (time_ms - day0_ms) as f64 / 3600.0,
                                        export_wh: 0.0,
                                        power_w: 1000.0,
                                        voltage_v: None,
                                        current_a: None,
                                        reactive_power_var: None,
                                    },
                                }))
                            };
                            let response = loop {
                                match engine.submit(build()) {
                                    Ok(response) => break response,
                                    Err(gridlog_firmware::engine::SubmitError::Busy { .. }) => {
                                        std::thread::sleep(Duration::from_micros(200))
                                    }
                                    Err(e) => panic!("submit: {e}"),
                                }
                            };
                            let ok = response
                                .results
                                .iter()
                                .filter(|r| !matches!(r, ItemResult::Rejected(_)))
                                .count();
                            accepted.fetch_add(ok as u64, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    accepted.load(Ordering::Relaxed)
}

/// `GRIDLOG_BENCH_ONLY=rollup-store`: the on-disk rollup store (`engine::rollup_store`) at
/// full horizons for `GRIDLOG_BENCH_MEM_METERS` (10,000) meters read every 15 minutes: one
/// spill per quarter-hourly day for the last 7 days and one with the 393 days before as day
/// buckets, built directly with the store's encoder (the engine's own spills and merges are
/// in `horizons`). Then
/// the latency of reading one meter's intervals back (warm page cache), as a rollup query
/// of an on-disk interval would.
fn section_rollup_store(ctx: &Ctx) {
    use gridlog_firmware::engine::rollup::Bucket;
    use gridlog_firmware::engine::rollup_store::{self, format};
    const SAMPLES: usize = 200;
    let meters = env_u64("GRIDLOG_BENCH_MEM_METERS", 10_000) as usize;
    let dir = ctx.sub("rollup-store");
    let ids = meter_ids(meters);
    let rollups = RollupOptions::default();
    let (quarter_days, all_days) = (
        i64::from(rollups.quarter_hour_days),
        i64::from(rollups.day_days),
    );
    let one = |index: i64, import_wh: f64, count: u32| Bucket {
        index,
        import_wh,
        export_wh: 0.0,
        min_w: 1000.0,
        max_w: 1000.0,
        mean_w: 1000.0,
        count,
    };
    let day0 = 20_000i64;
    let day_only: Vec<format::DayRecord> = (0..all_days - quarter_days)
        .map(|d| format::DayRecord {
            day: day0 + d,
            day_bucket: Some(one(day0 + d, 24_000.0 + d as f64 / 7.0, 96)),
            quarters: Vec::new(),
        })
        .collect();
    let store = rollup_store::store_dir(&dir);
    std::fs::create_dir_all(&store).expect("store dir");
    let write = |seq: u64, bytes: &[u8]| {
        let path = store.join(rollup_store::spill_file_name(seq));
        std::fs::write(&path, bytes).expect("spill");
        Arc::new(rollup_store::SpillFile::open(&path).expect("open"))
    };
    let bytes = format::encode_file(
        &format::SpillSpec::plain(1),
        ids.iter().map(|id| (id, day_only.as_slice())),
    );
    let mut disk_bytes = bytes.len() as u64;
    let mut spills = vec![write(1, &bytes)];
    for q in 0..quarter_days {
        let day = day0 + all_days - quarter_days + q;
        let record = [format::DayRecord {
            day,
            day_bucket: Some(one(day, 24_000.0 + q as f64 / 3.0, 96)),
            quarters: (0..96)
                .map(|i| one(day * 96 + i, 250.0 + (i as f64) / 9.0, 1))
                .collect(),
        }];
        let seq = q as u64 + 2;
        let bytes = format::encode_file(
            &format::SpillSpec::plain(seq),
            ids.iter().map(|id| (id, &record[..])),
        );
        disk_bytes += bytes.len() as u64;
        spills.push(write(seq, &bytes));
    }
    let end = day0 + all_days;
    let ranges = [
        (
            "7 days of quarter hours (7 spills)",
            end - quarter_days..end,
        ),
        ("400 days of days (8 spills)", day0..end),
        ("1 day (1 spill)", end - 1..end),
    ];
    println!("## Rollup store: bytes on disk and reading one meter back (issue 18)\n");
    println!(
        "{meters} meters, {} days of day buckets in one spill + {quarter_days} spills of a quarter-hourly day each: {:.1} MB on disk, {:.0} B per meter. Latency of `rollup_store::read_meter` for {SAMPLES} meters spread over the ids (warm page cache: the files were just written).\n",
        all_days - quarter_days,
        disk_bytes as f64 / 1e6,
        disk_bytes as f64 / meters as f64
    );
    println!("| range read | day records | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, range) in ranges {
        let mut lat = Vec::with_capacity(SAMPLES);
        let mut records = 0;
        for i in 0..SAMPLES {
            let id = &ids[i * meters / SAMPLES];
            let t = Instant::now();
            let got = rollup_store::read_meter(&spills, id.as_str(), range.clone()).expect("read");
            lat.push(t.elapsed());
            records = got.len();
        }
        lat.sort_unstable();
        println!(
            "| {name} | {records} | {} | {} | {} |",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }
    println!();
    let _ = std::fs::remove_dir_all(&dir);
}

struct Restart {
    replay_full_ms: u64,
    replay_full_events: u64,
    open_full_ms: f64,
    snap_open_ms: f64,
    snap_replay_ms: u64,
    snap_replayed: u64,
    started_from: String,
    snapshot_bytes: u64,
    snapshot_ms: u64,
    archived_original: u64,
    archived_file: u64,
    archive_ms: u64,
    cycle_ms: f64,
}

fn restart_row(ctx: &Ctx, events: u64, meters: usize) -> Restart {
    let dir = ctx.sub(&format!("restart-{events}"));
    let ids = meter_ids(meters);
    let clocks = Clocks::new(meters);
    {
        let engine = Engine::open(&dir, options(None, SMALL_SEGMENT_BYTES)).expect("open");
        register(&engine, &ids);
        eprintln!("restart: writing {events} events");
        let r = ingest(&engine, &ids, &clocks, 16, 1000, 3600.0, events);
        eprintln!(
            "restart: wrote {} events at {:.0}/s",
            r.readings,
            r.readings as f64 / r.secs
        );
        engine.shutdown();
    }
    // A restart measures reading the log back, not the writeback of the history just
    // written (its pages stay in the page cache: the "warm" case).
    tables::sync_tree(&dir).expect("sync the history");
    let t = Instant::now();
    let engine = Engine::open(&dir, options(None, SMALL_SEGMENT_BYTES)).expect("open");
    let open_full_ms = t.elapsed().as_secs_f64() * 1000.0;
    let s = engine.stats();
    let (replay_full_ms, replay_full_events) = (s.replay_millis, s.replayed_events);
    eprintln!("restart: snapshot + archive");
    let t = Instant::now();
    let st = engine.snapshot_now().expect("snapshot");
    let cycle_ms = t.elapsed().as_secs_f64() * 1000.0;
    engine.shutdown();
    tables::sync_tree(&dir).expect("sync the snapshot and archive");
    let t = Instant::now();
    let engine = Engine::open(&dir, options(None, SMALL_SEGMENT_BYTES)).expect("open");
    let snap_open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let s = engine.stats();
    let out = Restart {
        replay_full_ms,
        replay_full_events,
        open_full_ms,
        snap_open_ms,
        snap_replay_ms: s.replay_millis,
        snap_replayed: s.replayed_events,
        started_from: engine.started_from().to_string(),
        snapshot_bytes: st.last_snapshot_bytes,
        snapshot_ms: st.last_snapshot_millis,
        archived_original: st.archived_original_bytes,
        archived_file: st.archived_file_bytes,
        archive_ms: st.archive_millis,
        cycle_ms,
    };
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn section_restart(ctx: &Ctx) {
    let meters = 10_000usize;
    let rows: Vec<Restart> = env_list("GRIDLOG_BENCH_HISTORY", &[1_000_000, 10_000_000])
        .into_iter()
        .map(|n| restart_row(ctx, n, meters))
        .collect();
    println!("## Engine (issue 3) and snapshots (issue 4): replay and restart\n");
    println!(
        "{meters} meters; history written by 16 submitters × 1000 readings; restart = `Engine::open` wall time (log in the page cache: warm). Load: {}\n",
        load()
    );
    println!("| events | full replay: open | replay (engine's `replay_millis`) | events/s | target ≥ 3,000,000/s | with snapshot: open | replayed after snapshot | started from | target < 1 s, flat |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let eps = r.replay_full_events as f64 / (r.replay_full_ms.max(1) as f64 / 1000.0);
        println!(
            "| {} | {:.0} ms | {} ms | {:.0} | {} | {:.0} ms | {} events in {} ms | {} | {} |",
            r.replay_full_events,
            r.open_full_ms,
            r.replay_full_ms,
            eps,
            pass(eps >= 3_000_000.0),
            r.snap_open_ms,
            r.snap_replayed,
            r.snap_replay_ms,
            r.started_from,
            pass(r.snap_open_ms < 1000.0)
        );
    }
    println!();
    println!("## Snapshots and archive (issue 4): sizes and speed\n");
    println!("| events | snapshot bytes | snapshot write | whole cycle (snapshot + archive) | archived original | archive file | ratio | archive MB/s (original) |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} MiB | {} ms | {:.0} ms | {:.1} MiB | {:.1} MiB | {:.2}× | {:.0} |",
            r.replay_full_events,
            r.snapshot_bytes as f64 / 1048576.0,
            r.snapshot_ms,
            r.cycle_ms,
            r.archived_original as f64 / 1048576.0,
            r.archived_file as f64 / 1048576.0,
            r.archived_original as f64 / r.archived_file.max(1) as f64,
            r.archived_original as f64 / 1e6 / (r.archive_ms.max(1) as f64 / 1000.0)
        );
    }
    println!();
}

fn section_maintenance(ctx: &Ctx) {
    let meters = 10_000usize;
    let product_default = StorageOptions::default().snapshot_every_events;
    let stress = env_u64("GRIDLOG_BENCH_SNAPSHOT_EVERY", 100_000);
    let secs = env_secs("GRIDLOG_BENCH_MAINT_SECS", 10.0);
    let mut rows = Vec::new();
    for every in [None, Some(product_default), Some(stress)] {
        eprintln!("maintenance: snapshot every {every:?} events");
        let (r, st) = fresh_ingest(
            ctx,
            &format!("maintenance-{every:?}"),
            options(every, SMALL_SEGMENT_BYTES),
            meters,
            secs,
        );
        rows.push((every, r, st));
    }
    let base = rows[0].1.readings as f64 / rows[0].1.secs;
    println!("## Snapshots and archive (issue 4): ingest while they run\n");
    println!(
        "{meters} meters, {} submitters × {} readings, {:.0} s each, 16 MiB segments; a snapshot every N events (the product default, then a stress setting), each followed by archiving of sealed segments (zstd 3). Load: {}\n",
        ctx.submitters, ctx.per_request, secs, load()
    );
    println!("| snapshot every | readings/s | ack p99 | CPU process | snapshots | segments archived | archive ratio | vs without | target within 10 % | result |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (every, r, st) in &rows {
        let rps = r.readings as f64 / r.secs;
        let rel = rps / base;
        println!(
            "| {} | {:.0} | {} | {:.0} % | {} | {} | {:.2}× | {:.1} % | ≥ 90 % | {} |",
            match every {
                Some(n) if *n == product_default => format!("{n} events (default)"),
                Some(n) => format!("{n} events (stress)"),
                None => "never (no maintenance)".to_string(),
            },
            rps,
            ms(pct(&r.lat, 0.99)),
            r.cpu.0 * 100.0,
            st.snapshots_written,
            st.segments_archived,
            st.archived_original_bytes as f64 / st.archived_file_bytes.max(1) as f64,
            rel * 100.0,
            if every.is_some() {
                pass(rel >= 0.9)
            } else {
                "—"
            }
        );
    }
    println!();
}

fn main() {
    if !tables::invoked_as_bench("engine") {
        return;
    }
    let base = tables::bench_base_dir();
    std::fs::create_dir_all(&base).expect("bench dir");
    let ctx = Ctx {
        dir: tempfile::tempdir_in(&base).expect("temp dir"),
        secs: env_secs("GRIDLOG_BENCH_SECS", 5.0),
        submitters: env_u64("GRIDLOG_BENCH_SUBMITTERS", 16) as usize,
        per_request: env_u64("GRIDLOG_BENCH_REQUEST", 100) as usize,
    };
    let only = std::env::var("GRIDLOG_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    eprintln!(
        "engine bench in {} (load {})",
        ctx.dir.path().display(),
        load()
    );
    // Memory first: the process is still small, so RSS deltas are the engine's.
    let sections: [(&str, &dyn Fn()); 7] = [
        ("memory", &|| section_memory(&ctx)),
        ("horizons", &|| section_memory_horizons(&ctx)),
        ("rollup-store", &|| section_rollup_store(&ctx)),
        ("ingest", &|| section_ingest(&ctx)),
        ("restart", &|| section_restart(&ctx)),
        ("maintenance", &|| section_maintenance(&ctx)),
        ("replay", &section_replay),
    ];
    for (name, section) in sections {
        // Replay runs only when asked for by name (it keeps its directory).
        let wanted = if name == "replay" {
            only.split(',').any(|o| o == "replay")
        } else {
            run(name)
        };
        if wanted {
            let before = tables::steal_and_total_ticks();
            section();
            let steal = tables::steal_share(before, tables::steal_and_total_ticks());
            println!("CPU time taken by the host (steal) during the {name} section: {steal}\n");
        }
    }
}

/// `GRIDLOG_BENCH_ONLY=replay`: full replays of one kept data directory
/// (`GRIDLOG_BENCH_REPLAY_DIR`, default `target/bench-data/replay`), written once with
/// `GRIDLOG_BENCH_HISTORY` events over 10,000 meters; for profiling start-up alone.
fn section_replay() {
    let dir = std::env::var_os("GRIDLOG_BENCH_REPLAY_DIR")
        .map_or_else(|| tables::bench_base_dir().join("replay"), Into::into);
    if !dir.exists() {
        let events = env_list("GRIDLOG_BENCH_HISTORY", &[1_000_000])[0];
        let ids = meter_ids(10_000);
        let engine = Engine::open(&dir, options(None, SMALL_SEGMENT_BYTES)).expect("open");
        register(&engine, &ids);
        let r = ingest(
            &engine,
            &ids,
            &Clocks::new(ids.len()),
            16,
            1000,
            3600.0,
            events,
        );
        eprintln!("replay: wrote {} events into {}", r.readings, dir.display());
        engine.shutdown();
    }
    println!("| replay of {} | events | ms | events/s |", dir.display());
    println!("|---|---|---|---|");
    for _ in 0..env_u64("GRIDLOG_BENCH_REPLAYS", 3) {
        let engine = Engine::open(&dir, options(None, SMALL_SEGMENT_BYTES)).expect("open");
        let s = engine.stats();
        println!(
            "| | {} | {} | {:.0} |",
            s.replayed_events,
            s.replay_millis,
            s.replayed_events as f64 / (s.replay_millis.max(1) as f64 / 1000.0)
        );
        engine.shutdown();
    }
}
