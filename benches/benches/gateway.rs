//! The gateway row: what a site gateway's log costs the flash.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench gateway
//! ```
//!
//! 10 clients send one reading each every 200 ms (50 readings/s in all, one per request, the
//! clients spread evenly over the 200 ms), each request on time whether or not the ones
//! before it were acknowledged yet (as HTTP clients with several connections do), for
//! `GRIDLOG_BENCH_GATEWAY_SECS` (default 60) per commit delay in
//! `GRIDLOG_BENCH_GATEWAY_DELAYS_MS` (default 0,20,100,250,1000). For each it reports the ack
//! p50/p99 and the bytes written per payload byte, two ways: `/proc/self/io` `write_bytes`
//! (this process; pages counted as they turn dirty) and the block device's sectors written
//! (what reached the disk, journal included, but from every process on the machine).
//! Data lives under `GRIDLOG_BENCH_DIR` (default `target/bench-data`);
//! `GRIDLOG_BENCH_PREALLOCATION` (`fallocate`, the default, or `zero-fill`) sets how fresh
//! segments are preallocated. `GRIDLOG_BENCH_GATEWAY_SEGMENTS` (default `fresh,recycled`)
//! says in which segment files the readings land: a fresh (preallocated) one, or a recycled
//! one, as on a gateway that has run for a while (segments archived and reused: the log is
//! filled and its sealed segments removed until the active segment is a recycled file, before
//! the measurement starts). Segments are `SEGMENT_BYTES` (8 MiB) so that this takes seconds.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_benches::driver::LatencySummary;
use gridlog_benches::report::{fmt_duration, load_average, Mount};
use gridlog_benches::tables::{bench_base_dir, env_list, env_secs};
use gridlog_benches::usage::{DeviceStat, Usage};
use gridlog_firmware::wal::{Wal, WalOptions};

/// Clients, each with one request in flight at most.
const CLIENTS: u64 = 10;
/// Each client's interval between readings: 10 clients × 5/s = 50 readings/s.
const CLIENT_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes of one reading record (a stored reading event is 53–60 bytes).
const RECORD_BYTES: usize = 64;
/// How long the file system is left alone after the set-up's `sync`: longer than ext4's
/// 5 s journal commit interval.
const SETTLE_AFTER_SYNC: Duration = Duration::from_secs(6);
/// Segment size: small enough to recycle one in seconds, far larger than a row writes.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Where a row's readings land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segments {
    Fresh,
    Recycled,
}

impl Segments {
    fn from_env() -> std::io::Result<Vec<Segments>> {
        let list = std::env::var("GRIDLOG_BENCH_GATEWAY_SEGMENTS")
            .unwrap_or_else(|_| "fresh,recycled".into());
        list.split(',')
            .map(|name| match name.trim() {
                "fresh" => Ok(Segments::Fresh),
                "recycled" => Ok(Segments::Recycled),
                other => Err(std::io::Error::other(format!(
                    "GRIDLOG_BENCH_GATEWAY_SEGMENTS: fresh or recycled, not {other:?}"
                ))),
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Segments::Fresh => "fresh",
            Segments::Recycled => "recycled",
        }
    }
}

struct Row {
    segments: Segments,
    delay_ms: u64,
    readings: u64,
    rounds: u64,
    ack: Option<LatencySummary>,
    process_bytes_per_payload: f64,
    device_bytes_per_payload: Option<f64>,
}

fn main() -> ExitCode {
    if !gridlog_benches::tables::invoked_as_bench("gateway") {
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let secs = env_secs("GRIDLOG_BENCH_GATEWAY_SECS", 60.0);
    let delays = env_list("GRIDLOG_BENCH_GATEWAY_DELAYS_MS", &[0, 20, 100, 250, 1000]);
    let base = bench_base_dir();
    std::fs::create_dir_all(&base)?;
    let mount = Mount::of(&base);
    let device = mount.as_ref().and_then(|m| DeviceStat::of(&m.device));
    println!("Load average at start: {}", load_average());
    if let Some(m) = &mount {
        println!(
            "File system: {} on `{}` (options `{}`)",
            m.fs_type, m.device, m.options
        );
    }
    // Each row is printed as soon as it is measured.
    println!("| segment | `wal.commit_delay_ms` | readings | rounds | readings/round | ack p50 | ack p99 | process bytes written / payload byte | device bytes written / payload byte |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for segments in Segments::from_env()? {
        for &delay_ms in &delays {
            eprintln!(
                "[gateway] {} segment, commit delay {delay_ms} ms, {secs} s",
                segments.name()
            );
            let dir = tempfile::Builder::new()
                .prefix("gridlog-gateway-")
                .tempdir_in(&base)?;
            let row = one_row(
                dir.path(),
                segments,
                delay_ms,
                Duration::from_secs_f64(secs),
                device.as_ref(),
            )?;
            print_row(&row);
        }
    }
    println!("\nLoad average at end: {}", load_average());
    Ok(())
}

fn print_row(r: &Row) {
    let (p50, p99) = r.ack.as_ref().map_or(("-".into(), "-".into()), |a| {
        (fmt_duration(a.p50), fmt_duration(a.p99))
    });
    println!(
        "| {} | {} | {} | {} | {:.1} | {p50} | {p99} | {:.2} | {} |",
        r.segments.name(),
        r.delay_ms,
        r.readings,
        r.rounds,
        r.readings as f64 / r.rounds.max(1) as f64,
        r.process_bytes_per_payload,
        r.device_bytes_per_payload
            .map_or("-".to_string(), |v| format!("{v:.2}")),
    );
}

fn one_row(
    dir: &std::path::Path,
    segments: Segments,
    delay_ms: u64,
    measure: Duration,
    device: Option<&DeviceStat>,
) -> std::io::Result<Row> {
    let options = WalOptions::default()
        .segment_bytes(SEGMENT_BYTES)
        .commit_delay(Duration::from_millis(delay_ms))
        .preallocation(gridlog_benches::stores::gridlog::preallocation_from_env()?);
    let wal = Arc::new(Wal::open(dir, options).map_err(std::io::Error::other)?);
    if segments == Segments::Recycled {
        // In the same open log, as on a gateway that runs on: a restart changes what the page
        // cache holds of the segment, and with it the bytes written (see BENCHMARKS).
        gridlog_benches::stores::gridlog::recycle_a_segment(&wal)?;
    }
    // Let the preallocation of the next segment finish, and the file system write back and
    // commit what the set-up left (the filling rounds, removed files' freed blocks: its
    // journal commits every 5 s), before measuring.
    std::thread::sleep(Duration::from_secs(2));
    std::process::Command::new("sync").status()?;
    std::thread::sleep(SETTLE_AFTER_SYNC);
    let rounds_before = wal.stats().rounds;
    let usage = Usage::now(device)?;
    let start = Instant::now() + Duration::from_millis(50);
    // Each client sends on its schedule; its own waiter thread takes the acknowledgements in
    // order (rounds become durable in offset order), so a slow round delays no send.
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let wal = wal.clone();
            std::thread::spawn(move || -> std::io::Result<Vec<u64>> {
                let (sent, acks) = std::sync::mpsc::channel::<(Instant, u64)>();
                let waiter = {
                    let wal = wal.clone();
                    std::thread::spawn(move || -> std::io::Result<Vec<u64>> {
                        let mut latencies = Vec::new();
                        for (at, next_offset) in acks {
                            wal.wait_durable(next_offset)
                                .map_err(std::io::Error::other)?;
                            latencies.push(at.elapsed().as_nanos() as u64);
                        }
                        Ok(latencies)
                    })
                };
                let offset = CLIENT_INTERVAL * client as u32 / CLIENTS as u32;
                for i in 0u32.. {
                    let due = start + offset + CLIENT_INTERVAL * i;
                    if due >= start + measure {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let mut record = [0u8; RECORD_BYTES];
                    record[..8].copy_from_slice(&client.to_le_bytes());
                    record[8..12].copy_from_slice(&i.to_le_bytes());
                    let at = Instant::now();
                    let ticket = wal
                        .append_nowait(&[record])
                        .map_err(std::io::Error::other)?;
                    let _ = sent.send((at, ticket.ack().next_offset));
                }
                drop(sent);
                waiter.join().expect("waiter thread")
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().expect("client thread")?);
    }
    let usage = Usage::now(device)?.since(&usage);
    let rounds = wal.stats().rounds - rounds_before;
    let readings = latencies.len() as u64;
    let payload = (readings as usize * RECORD_BYTES) as f64;
    Arc::into_inner(wal)
        .expect("clients done")
        .close()
        .map_err(std::io::Error::other)?;
    Ok(Row {
        segments,
        delay_ms,
        readings,
        rounds,
        ack: LatencySummary::of(&mut latencies),
        process_bytes_per_payload: usage.disk_write_bytes as f64 / payload,
        device_bytes_per_payload: usage.device_write_bytes.map(|b| b as f64 / payload),
    })
}
