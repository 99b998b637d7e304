//! Helpers of the engine and HTTP benchmarks (`benches/benches/{engine,http}.rs`): sizes from
//! the environment, readings of `/proc`, and the cells of their Markdown tables.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where benchmark data lives: `GRIDLOG_BENCH_DIR`, or the workspace's `target/bench-data`
/// (whatever the working directory: `cargo bench` runs from the package's own folder).
pub fn bench_base_dir() -> PathBuf {
    match std::env::var_os("GRIDLOG_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("bench-data"),
    }
}

/// A whole number from the environment (`_` separators allowed), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of whole numbers from the environment, or `default`.
pub fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().replace('_', "").parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// `VmRSS` of a process (`"self"` or a pid), in bytes; 0 if unreadable.
pub fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU seconds in a `/proc/.../stat` file (clock ticks of 1/100 s); 0 if
/// unreadable.
pub fn cpu_secs(stat_file: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the name: state is index 0, utime 11, stime 12.
    (t(11) + t(12)) / 100.0
}

/// `/proc/self/task/TID` of this process's thread named `name` (as `comm` shows it:
/// at most 15 bytes).
pub fn thread_dir(name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| t.path())
}

/// The nearest-rank-rounded `p` quantile of sorted durations (zero if none).
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A target's result cell.
pub fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}
