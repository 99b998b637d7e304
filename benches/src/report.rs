//! What a run measured, and its Markdown rendering (the tables of `docs/BENCHMARKS.md`).
//!
//! Units: MB is 10^6 bytes; record MB/s counts the 64-byte payloads only (not frame headers),
//! so it understates what reaches the disk by a few percent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gridlog_firmware::wal::CommitStatsSnapshot;

use crate::disk::{Bandwidth, FileKind, RawProbe, SEQUENTIAL_CHUNK_BYTES};
use crate::driver::Measured;
use crate::rotation::RotationSummary;
use crate::stores::RECORD_BYTES;
use crate::targets::{self, Check};
use crate::usage::UsageDelta;
use crate::{BenchConfig, BULK_BATCH_RECORDS, BULK_THREADS, BULK_WINDOW_BATCHES};

/// A workload of the append rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// N threads, each appending one record and waiting for it.
    Appenders(usize),
    /// Batches of [`BULK_BATCH_RECORDS`] records, [`BULK_THREADS`] × [`BULK_WINDOW_BATCHES`]
    /// of them in flight.
    Bulk,
}

impl Workload {
    /// How the table names it.
    pub fn label(&self) -> String {
        match self {
            Workload::Appenders(1) => "1 appender".to_string(),
            Workload::Appenders(n) => format!("{n} appenders"),
            Workload::Bulk => format!(
                "bulk: {} × {}-record batches in flight",
                BULK_THREADS * BULK_WINDOW_BATCHES,
                BULK_BATCH_RECORDS
            ),
        }
    }
}

/// What gridlog's commit path did during a row (counters before and after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitDelta {
    /// Write rounds, each ending in one `fdatasync`.
    pub rounds: u64,
    /// Records made durable.
    pub records: u64,
    /// Frame bytes made durable.
    pub bytes: u64,
    /// Time spent in `fdatasync`, in nanoseconds.
    pub sync_nanos: u64,
    /// Segment rotations.
    pub rotations: u64,
}

impl CommitDelta {
    /// The counters' growth from `before` to `after`.
    pub fn between(before: &CommitStatsSnapshot, after: &CommitStatsSnapshot) -> CommitDelta {
        CommitDelta {
            rounds: after.rounds - before.rounds,
            records: after.records - before.records,
            bytes: after.bytes - before.bytes,
            sync_nanos: after.sync_nanos - before.sync_nanos,
            rotations: after.rotations - before.rotations,
        }
    }
}

/// One store on one workload.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// The store's name.
    pub store: &'static str,
    /// Throughput and ack latency.
    pub measured: Measured,
    /// What the row cost the machine (warm-up and tail included).
    pub usage: UsageDelta,
    /// gridlog's commit counters over the row (warm-up included).
    pub commit: Option<CommitDelta>,
}

/// One read of the whole replay log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayPass {
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub payload_bytes: u64,
    /// Time from `read_from` to the end of the log.
    pub elapsed: Duration,
}

impl ReplayPass {
    /// Payload bytes per second.
    pub fn payload_bytes_per_s(&self) -> f64 {
        self.payload_bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// The replay measurement.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Records in the log.
    pub records: u64,
    /// Frame bytes in the log.
    pub log_bytes: u64,
    /// Time the bulk appenders took to write it.
    pub load_elapsed: Duration,
    /// What writing it cost the machine.
    pub load_usage: UsageDelta,
    /// What the segment rotations of the load cost.
    pub rotations: Option<RotationSummary>,
    /// Reads of the whole log, in order.
    pub passes: Vec<ReplayPass>,
}

/// The file system a path lives on, from `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device.
    pub device: String,
    /// Mount point.
    pub point: String,
    /// File system type.
    pub fs_type: String,
    /// Mount options.
    pub options: String,
}

impl Mount {
    /// The mount holding `path` (the longest mount point that prefixes it).
    pub fn of(path: &Path) -> Option<Mount> {
        let path = path.canonicalize().ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(Mount {
                    device: fields.next()?.to_string(),
                    point: fields.next()?.to_string(),
                    fs_type: fields.next()?.to_string(),
                    options: fields.next()?.to_string(),
                })
            })
            .filter(|m| path.starts_with(&m.point))
            .max_by_key(|m| m.point.len())
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where the data lived.
    pub data_dir: PathBuf,
    /// Its file system.
    pub mount: Option<Mount>,
    /// `/proc/loadavg` when the run started and when it ended: other work on the machine.
    pub load_average: (String, String),
    /// Warm-up per row.
    pub warmup: Duration,
    /// Measurement window per row.
    pub measure: Duration,
    /// Bytes of a one-record frame: what each raw probe write carries.
    pub record_frame_bytes: usize,
    /// The raw `pwrite` + `fdatasync` probes.
    pub raw: Vec<RawProbe>,
    /// The raw sequential bandwidth probe.
    pub bandwidth: Option<Bandwidth>,
    /// The append rows.
    pub rows: Vec<Row>,
    /// The replay.
    pub replay: Option<Replay>,
    /// The targets, evaluated.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report of a run in `data_dir`.
    pub fn new(data_dir: &Path, config: &BenchConfig, record_frame_bytes: usize) -> Report {
        Report {
            data_dir: data_dir.to_path_buf(),
            mount: Mount::of(data_dir),
            load_average: (load_average(), String::new()),
            warmup: config.warmup,
            measure: config.measure,
            record_frame_bytes,
            raw: Vec::new(),
            bandwidth: None,
            rows: Vec::new(),
            replay: None,
            checks: Vec::new(),
        }
    }

    /// Evaluates the targets against what was measured.
    pub fn check_targets(&mut self) {
        self.checks = targets::evaluate(self);
    }

    /// The raw probe of `kind` with one-record writes.
    pub fn raw(&self, kind: FileKind) -> Option<&Measured> {
        self.raw
            .iter()
            .find(|p| p.kind == kind && p.write_bytes == self.record_frame_bytes)
            .map(|p| &p.measured)
    }

    /// The row of `store` on `workload`.
    pub fn row(&self, workload: Workload, store: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.store == store)
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        self.write_markdown(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "Data directory: `{}`", self.data_dir.display())?;
        writeln!(
            out,
            "gridlog segments: {} (`GRIDLOG_BENCH_SEGMENTS`); preallocation: {} (`GRIDLOG_BENCH_PREALLOCATION`)",
            std::env::var("GRIDLOG_BENCH_SEGMENTS").unwrap_or_else(|_| "fresh".into()),
            std::env::var("GRIDLOG_BENCH_PREALLOCATION").unwrap_or_else(|_| "fallocate".into()),
        )?;
        if let Some(m) = &self.mount {
            writeln!(
                out,
                "File system: {} on `{}` (mounted at `{}`, options `{}`)",
                m.fs_type, m.device, m.point, m.options
            )?;
        }
        writeln!(
            out,
            "Load average (1, 5, 15 min) at start: {}; at end: {}",
            self.load_average.0, self.load_average.1
        )?;
        writeln!(
            out,
            "Each row: {} warm-up, then {} measured; records are {RECORD_BYTES} B; \
             MB = 10^6 B of record payload.",
            fmt_duration(self.warmup),
            fmt_duration(self.measure)
        )?;

        writeln!(out, "\n### Physical limit (one thread, no log)\n")?;
        writeln!(out, "| probe | p50 | p99 | mean | rate |")?;
        writeln!(out, "|---|---:|---:|---:|---:|")?;
        for probe in &self.raw {
            let m = &probe.measured;
            writeln!(
                out,
                "| pwrite {} B + fdatasync, {} file | {} | {} | {} | {} syncs/s |",
                probe.write_bytes,
                probe.kind.label(),
                fmt_duration(m.latency.p50),
                fmt_duration(m.latency.p99),
                fmt_duration(m.latency.mean),
                fmt_count(m.records_per_s)
            )?;
        }
        if let Some(bw) = &self.bandwidth {
            let chunk_mib = SEQUENTIAL_CHUNK_BYTES >> 20;
            writeln!(
                out,
                "| sequential {chunk_mib} MiB pwrite + fdatasync, new file ({} MiB) | | | | {} MB/s |",
                bw.bytes >> 20,
                fmt_mb(bw.append_bytes_per_s)
            )?;
            writeln!(
                out,
                "| sequential {chunk_mib} MiB pwrite + fdatasync, overwrite ({} MiB) | | | | {} MB/s |",
                bw.bytes >> 20,
                fmt_mb(bw.overwrite_bytes_per_s)
            )?;
        }

        writeln!(out, "\n### Durable append\n")?;
        writeln!(
            out,
            "| workload | store | records/s | MB/s | ack p50 | ack p99 | gridlog ÷ this |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|---:|")?;
        for row in &self.rows {
            let m = &row.measured;
            let ratio = match self.row(row.workload, "gridlog") {
                Some(g) if row.store != "gridlog" => {
                    format!("{:.2}×", g.measured.records_per_s / m.records_per_s)
                }
                _ => String::new(),
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.workload.label(),
                row.store,
                fmt_count(m.records_per_s),
                fmt_mb(m.records_per_s * RECORD_BYTES as f64),
                fmt_duration(m.latency.p50),
                fmt_duration(m.latency.p99),
                ratio
            )?;
        }

        writeln!(
            out,
            "\n### What each row cost the machine (warm-up included)\n"
        )?;
        writeln!(
            out,
            "| workload | store | CPU cores busy (of 2) | context switches / record | \
             dirtied bytes / payload byte (process) | device bytes written / payload byte |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|")?;
        for row in &self.rows {
            let records = row.measured.records_total.max(1) as f64;
            let payload = records * RECORD_BYTES as f64;
            writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {:.1} | {} |",
                row.workload.label(),
                row.store,
                row.usage.cores_busy(),
                row.usage.context_switches as f64 / records,
                row.usage.disk_write_bytes as f64 / payload,
                row.usage
                    .device_write_bytes
                    .map_or("?".to_string(), |b| format!("{:.1}", b as f64 / payload))
            )?;
        }
        if !self.raw.is_empty() {
            writeln!(out, "\nThe raw probes, for comparison (per sync):\n")?;
            writeln!(
                out,
                "| probe | dirtied bytes / sync (process) | device bytes written / sync |"
            )?;
            writeln!(out, "|---|---:|---:|")?;
            for probe in &self.raw {
                let usage = &probe.usage;
                let syncs = probe.measured.records_total.max(1) as f64;
                writeln!(
                    out,
                    "| pwrite {} B + fdatasync, {} file | {:.0} | {} |",
                    probe.write_bytes,
                    probe.kind.label(),
                    usage.disk_write_bytes as f64 / syncs,
                    usage
                        .device_write_bytes
                        .map_or("?".to_string(), |b| format!("{:.0}", b as f64 / syncs))
                )?;
            }
        }

        let commits: Vec<_> = self
            .rows
            .iter()
            .filter_map(|r| r.commit.map(|c| (r.workload, c)))
            .collect();
        if !commits.is_empty() {
            writeln!(out, "\n### gridlog's commit path during each row\n")?;
            writeln!(
                out,
                "| workload | rounds (fdatasyncs) | records/round | KiB/round | mean fdatasync | rotations |"
            )?;
            writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
            for (workload, c) in commits {
                let rounds = c.rounds.max(1);
                writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {} | {} |",
                    workload.label(),
                    c.rounds,
                    c.records as f64 / rounds as f64,
                    c.bytes as f64 / rounds as f64 / 1024.0,
                    fmt_duration(Duration::from_nanos(c.sync_nanos / rounds)),
                    c.rotations
                )?;
            }
        }

        if let Some(replay) = &self.replay {
            writeln!(out, "\n### Replay (gridlog)\n")?;
            writeln!(out, "| step | records | time | records/s | MB/s |")?;
            writeln!(out, "|---|---:|---:|---:|---:|")?;
            let load = replay.load_elapsed.as_secs_f64();
            writeln!(
                out,
                "| write the log ({:.0} MiB of frames, bulk appenders) | {} | {} | {} | {} |",
                replay.log_bytes as f64 / (1024.0 * 1024.0),
                fmt_count(replay.records as f64),
                fmt_duration(replay.load_elapsed),
                fmt_count(replay.records as f64 / load),
                fmt_mb(replay.records as f64 * RECORD_BYTES as f64 / load)
            )?;
            for (i, pass) in replay.passes.iter().enumerate() {
                let what = if i == 0 {
                    "read_from(1), page cache, first touch of the maps"
                } else {
                    "read_from(1) again, pages already mapped"
                };
                writeln!(
                    out,
                    "| {what} | {} | {} | {} | {} |",
                    fmt_count(pass.records as f64),
                    fmt_duration(pass.elapsed),
                    fmt_count(pass.records as f64 / pass.elapsed.as_secs_f64()),
                    fmt_mb(pass.payload_bytes_per_s())
                )?;
            }
        }

        if let Some(replay) = &self.replay {
            let u = &replay.load_usage;
            let payload = replay.records as f64 * RECORD_BYTES as f64;
            writeln!(
                out,
                "\nWriting the log kept {:.2} cores busy; per payload byte it dirtied {:.2} bytes \
                 (process) and the device received {} bytes.",
                u.cores_busy(),
                u.disk_write_bytes as f64 / payload,
                u.device_write_bytes
                    .map_or("?".to_string(), |b| format!("{:.2}", b as f64 / payload))
            )?;
            if let Some(r) = &replay.rotations {
                writeln!(
                    out,
                    "Segment rotations during the write: {} (a segment lasted {} on average; \
                     zero-filling the next one took {} before its sync). The writer stalled \
                     from footer to next header for {} at the median, {} at most, {} in all \
                     ({:.0} % of the write); {} of {} rotations found the next segment still \
                     being zero-filled.",
                    r.rotations,
                    r.segment_span_mean.map_or("?".to_string(), fmt_duration),
                    r.zero_fill_mean.map_or("?".to_string(), fmt_duration),
                    fmt_duration(r.stall_p50),
                    fmt_duration(r.stall_max),
                    fmt_duration(r.stall_total),
                    100.0 * r.stall_total.as_secs_f64() / replay.load_elapsed.as_secs_f64(),
                    r.waited_for_zero_fill,
                    r.rotations
                )?;
                let longest: Vec<String> = r
                    .longest_rounds
                    .iter()
                    .map(|round| match round.after_zero_fill_sync {
                        Some(after) => format!(
                            "{} (began {} after a zero-fill sync began)",
                            fmt_duration(round.span),
                            fmt_duration(after)
                        ),
                        None => fmt_duration(round.span),
                    })
                    .collect();
                writeln!(
                    out,
                    "Write rounds (writer fdatasync to the next): median {}; longest {}.",
                    r.round_p50.map_or("?".to_string(), fmt_duration),
                    longest.join(", ")
                )?;
            }
        }

        writeln!(out, "\n### Targets\n")?;
        writeln!(out, "| target | needed | measured | result |")?;
        writeln!(out, "|---|---:|---:|---|")?;
        for check in &self.checks {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                check.target,
                check.needed,
                check.measured,
                check.verdict.label()
            )?;
        }
        Ok(())
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_string())
}

/// `1234567.8` → `"1,234,568"`.
pub fn fmt_count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes per second as MB/s (10^6).
pub fn fmt_mb(bytes_per_s: f64) -> String {
    let mb = bytes_per_s / 1e6;
    if mb >= 100.0 {
        format!("{mb:.0}")
    } else {
        format!("{mb:.1}")
    }
}

/// A latency in µs below a millisecond, else in ms or s.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_count(0.4), "0");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(1000.0), "1,000");
        assert_eq!(fmt_count(1234567.8), "1,234,568");
        assert_eq!(fmt_mb(1_234_000.0), "1.2");
        assert_eq!(fmt_mb(123_456_000.0), "123");
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.50 s");
    }
}
