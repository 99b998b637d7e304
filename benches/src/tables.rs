//! Helpers of the engine and HTTP benchmarks (`benches/benches/{engine,http}.rs`): sizes from
//! the environment, readings of `/proc`, and the cells of their Markdown tables.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Readings of the engine and HTTP benchmarks start this long before now, one second apart
/// per meter: always in the past, whatever the run's length.
pub const HISTORY_START_MS: i64 = 10 * 24 * 3600 * 1000;

/// The id of benchmark meter `i`: `m000000`, `m000001`, …
pub fn meter_id(i: usize) -> String {
    format!("m{i:06}")
}

/// Per-meter reading counters (reading `k` of a meter is `k` seconds after the history's
/// start), shared by runs over the same meters so times keep rising.
#[derive(Debug)]
pub struct Clocks(pub Vec<AtomicU64>);

impl Clocks {
    /// Counters for `meters` meters, all at zero.
    pub fn new(meters: usize) -> Arc<Clocks> {
        Arc::new(Clocks((0..meters).map(|_| AtomicU64::new(0)).collect()))
    }
}

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

/// Syncs every file under `dir` to the disk, so a measurement that follows (a restart)
/// does not share the disk and the CPU with the writeback of the data it was set up with.
pub fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// A number from the environment (`_` separators allowed), or `default` if unset; a value
/// that does not parse is an error naming the variable, never a silent default.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}={text:?} is not a number")),
    }
}

/// A whole number from the environment, or `default`; panics naming a bad value.
pub fn env_u64(name: &str, default: u64) -> u64 {
    env_number(name, default).unwrap_or_else(|e| panic!("{e}"))
}

/// A number of seconds (may be fractional) from the environment, or `default`; panics
/// naming a bad value.
pub fn env_secs(name: &str, default: f64) -> f64 {
    match env_number(name, default) {
        Ok(secs) if secs > 0.0 && secs.is_finite() => secs,
        _ => panic!("{name} must be a number of seconds above 0"),
    }
}

/// A comma-separated list of whole numbers from the environment, or `default`; panics
/// naming a bad value.
pub fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Err(_) => default.to_vec(),
        Ok(text) => text
            .split(',')
            .map(|item| {
                item.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?}: {item:?} is not a number"))
            })
            .collect(),
    }
}

/// True when cargo runs this bench target as a benchmark (`cargo bench` passes `--bench`);
/// otherwise (`cargo test` builds and runs every target) says so and the target does nothing.
pub fn invoked_as_bench(name: &str) -> bool {
    let bench = std::env::args().any(|a| a == "--bench");
    if !bench {
        eprintln!("{name} bench: run with `cargo bench` (nothing to test here)");
    }
    bench
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

/// User + system CPU seconds in a `/proc/.../stat` file (in clock ticks, see
/// [`crate::sys::clock_ticks_per_second`]); 0 if unreadable.
pub fn cpu_secs(stat_file: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the name: state is index 0, utime 11, stime 12.
    (t(11) + t(12)) / crate::sys::clock_ticks_per_second()
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

/// The `p` quantile (0.5, 0.99) of sorted durations by the nearest-rank rule (zero if none).
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    crate::driver::nearest_rank(sorted, (p * 100.0).round() as usize).unwrap_or_default()
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

/// CPU time the host took from this machine's CPUs ("steal", `/proc/stat`) and all CPU
/// time, in clock ticks, since boot; `None` if unreadable. The share of steal over a window
/// says whether the host, not the code, made a run slow.
pub fn steal_and_total_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// The share of CPU time the host stole between two [`steal_and_total_ticks`] readings,
/// as "x.x %" (or "unknown").
pub fn steal_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> String {
    match (before, after) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            format!("{:.1} %", (s1 - s0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => "unknown".to_string(),
    }
}
