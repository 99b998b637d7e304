//! The targets of issue 2, computed from numbers of the same run.
//!
//! The reference latency is the raw p50 of `pwrite` + `fdatasync` on a **zero-filled** file,
//! because that is what a gridlog segment is; the reference bandwidth is the better of the
//! two sequential passes (new file, overwrite), so the bulk target is never set too low.
//!
//! - group commit, N appenders: records/s ≥ 0.8 × min(N / raw p50, bandwidth / frame bytes)
//!   ("until bandwidth-bound");
//! - bulk: record payload ≥ 50 % of sequential bandwidth, and ≥ 1,000,000 records/s;
//! - single appender: ack p50 ≤ 1.5 × raw p50;
//! - replay: ≥ 1 GB/s of record payload (first pass, from the page cache);
//! - every row: ahead of each peer, meaning more records/s *and* an ack p50 no higher.

use crate::disk::FileKind;
use crate::report::{fmt_count, fmt_duration, fmt_mb, Report, Workload};
use crate::stores::RECORD_BYTES;

/// Group commit must reach this fraction of N / raw sync latency.
pub const GROUP_COMMIT_FRACTION: f64 = 0.8;
/// Bulk must reach this fraction of the sequential bandwidth.
pub const BULK_BANDWIDTH_FRACTION: f64 = 0.5;
/// Bulk must reach this many records per second.
pub const BULK_RECORDS_PER_S_MIN: f64 = 1_000_000.0;
/// A single appender's ack p50 may be at most this multiple of the raw sync p50.
pub const SINGLE_ACK_P50_FACTOR: f64 = 1.5;
/// Replay must read at least this many payload bytes per second.
pub const REPLAY_BYTES_PER_S_MIN: f64 = 1e9;

/// A target's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Pass,
    /// Not met.
    Miss,
    /// Could not be evaluated (the reason).
    NotApplicable(&'static str),
}

impl Verdict {
    fn of(pass: bool) -> Verdict {
        if pass {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    /// How the table shows it.
    pub fn label(&self) -> String {
        match self {
            Verdict::Pass => "PASS".to_string(),
            Verdict::Miss => "**MISS**".to_string(),
            Verdict::NotApplicable(why) => format!("n/a ({why})"),
        }
    }
}

/// One evaluated target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is required, in words.
    pub target: String,
    /// The threshold, computed from this run.
    pub needed: String,
    /// gridlog's number.
    pub measured: String,
    /// The outcome.
    pub verdict: Verdict,
}

/// Evaluates every target the report has numbers for.
pub fn evaluate(report: &Report) -> Vec<Check> {
    let mut checks = Vec::new();
    let raw_p50 = report.raw(FileKind::ZeroFilled).map(|m| m.latency.p50);
    let bandwidth = report.bandwidth.map(|b| b.best_bytes_per_s());
    let mut peers: Vec<&'static str> = Vec::new();
    for row in &report.rows {
        if row.store != "gridlog" && !peers.contains(&row.store) {
            peers.push(row.store);
        }
    }

    for row in report.rows.iter().filter(|r| r.store == "gridlog") {
        let m = &row.measured;
        match row.workload {
            Workload::Appenders(n) => {
                if let (Some(p50), Some(bw)) = (raw_p50, bandwidth) {
                    let latency_bound = n as f64 / p50.as_secs_f64();
                    let bandwidth_bound = bw / report.record_frame_bytes as f64;
                    let needed = GROUP_COMMIT_FRACTION * latency_bound.min(bandwidth_bound);
                    checks.push(Check {
                        target: format!(
                            "group commit, {}: ≥ 0.8 × N / raw p50 (capped by bandwidth)",
                            row.workload.label()
                        ),
                        needed: format!("{} rec/s", fmt_count(needed)),
                        measured: format!("{} rec/s", fmt_count(m.records_per_s)),
                        verdict: Verdict::of(m.records_per_s >= needed),
                    });
                    if n == 1 {
                        let needed = p50.mul_f64(SINGLE_ACK_P50_FACTOR);
                        checks.push(Check {
                            target: "single appender: ack p50 ≤ 1.5 × raw fdatasync p50"
                                .to_string(),
                            needed: format!("≤ {}", fmt_duration(needed)),
                            measured: fmt_duration(m.latency.p50),
                            verdict: Verdict::of(m.latency.p50 <= needed),
                        });
                    }
                }
            }
            Workload::Bulk => {
                let bytes_per_s = m.records_per_s * RECORD_BYTES as f64;
                if let Some(bw) = bandwidth {
                    let needed = BULK_BANDWIDTH_FRACTION * bw;
                    checks.push(Check {
                        target: "bulk: ≥ 50 % of sequential bandwidth (payload bytes)".to_string(),
                        needed: format!("{} MB/s", fmt_mb(needed)),
                        measured: format!("{} MB/s", fmt_mb(bytes_per_s)),
                        verdict: Verdict::of(bytes_per_s >= needed),
                    });
                }
                checks.push(Check {
                    target: "bulk: ≥ 1,000,000 records/s".to_string(),
                    needed: format!("{} rec/s", fmt_count(BULK_RECORDS_PER_S_MIN)),
                    measured: format!("{} rec/s", fmt_count(m.records_per_s)),
                    verdict: Verdict::of(m.records_per_s >= BULK_RECORDS_PER_S_MIN),
                });
            }
        }
        if peers.is_empty() {
            checks.push(Check {
                target: format!("{}: ahead of the peers", row.workload.label()),
                needed: String::new(),
                measured: String::new(),
                verdict: Verdict::NotApplicable("built without --features peers"),
            });
        }
        for &peer in &peers {
            let Some(other) = report.row(row.workload, peer) else {
                continue;
            };
            let o = &other.measured;
            checks.push(Check {
                target: format!(
                    "{}: ahead of {peer} (more rec/s, p50 no higher)",
                    row.workload.label()
                ),
                needed: format!(
                    "> {} rec/s, ≤ {}",
                    fmt_count(o.records_per_s),
                    fmt_duration(o.latency.p50)
                ),
                measured: format!(
                    "{} rec/s, {}",
                    fmt_count(m.records_per_s),
                    fmt_duration(m.latency.p50)
                ),
                verdict: Verdict::of(
                    m.records_per_s > o.records_per_s && m.latency.p50 <= o.latency.p50,
                ),
            });
        }
    }

    if let Some(pass) = report.replay.as_ref().and_then(|r| r.passes.first()) {
        let bytes_per_s = pass.payload_bytes_per_s();
        checks.push(Check {
            target: "replay from the page cache: ≥ 1 GB/s (first pass)".to_string(),
            needed: format!("{} MB/s", fmt_mb(REPLAY_BYTES_PER_S_MIN)),
            measured: format!("{} MB/s", fmt_mb(bytes_per_s)),
            verdict: Verdict::of(bytes_per_s >= REPLAY_BYTES_PER_S_MIN),
        });
    }
    checks
}
