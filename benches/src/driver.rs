//! Closed-loop load: N threads, each issuing one operation at a time (or a fixed window of
//! them), over a warm-up and then a fixed measurement window.
//!
//! Only operations that *complete* inside the measurement window count, so throughput is
//! "records acknowledged per second of window" and is not flattered by work started before
//! the window or cut off after it.

use std::io;
use std::time::{Duration, Instant};

/// Lead time before the window starts, per spawned thread: spawning 256 threads must not eat
/// into anyone's warm-up.
const SPAWN_LEAD_PER_THREAD: Duration = Duration::from_micros(200);
/// Lead time before the window starts, whatever the thread count.
const SPAWN_LEAD_BASE: Duration = Duration::from_millis(20);

/// The time window of one run: warm-up from `start`, measurement from `from` to `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the threads begin (after all are spawned).
    pub start: Instant,
    /// End of the warm-up, start of the measurement.
    pub from: Instant,
    /// End of the measurement: threads issue no new operation after it.
    pub until: Instant,
}

impl Window {
    /// A window beginning `lead` from now.
    pub fn after(lead: Duration, warmup: Duration, measure: Duration) -> Window {
        let start = Instant::now() + lead;
        Window {
            start,
            from: start + warmup,
            until: start + warmup + measure,
        }
    }

    /// Whether a thread should issue another operation.
    pub fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// Length of the measurement window.
    pub fn measured(&self) -> Duration {
        self.until - self.from
    }
}

/// Latencies and record counts of the operations one thread completed in the window.
#[derive(Debug, Default)]
pub struct Samples {
    latencies_ns: Vec<u64>,
    records: u64,
    /// Records of every completed operation, warm-up and tail included.
    records_total: u64,
}

impl Samples {
    /// Counts one operation of `records` records that ran from `started` to `ended`, if it
    /// ended inside the measurement window.
    pub fn record(&mut self, window: &Window, started: Instant, ended: Instant, records: u64) {
        self.records_total += records;
        if ended >= window.from && ended < window.until {
            self.latencies_ns
                .push(ended.duration_since(started).as_nanos() as u64);
            self.records += records;
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latencies_ns.extend(other.latencies_ns);
        self.records += other.records;
        self.records_total += other.records_total;
    }
}

/// Latency percentiles of a set of operations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Mean.
    pub mean: Duration,
}

impl LatencySummary {
    /// Nearest-rank percentiles of `latencies_ns` (sorted in place). `None` if empty.
    pub fn of(latencies_ns: &mut [u64]) -> Option<LatencySummary> {
        if latencies_ns.is_empty() {
            return None;
        }
        latencies_ns.sort_unstable();
        let n = latencies_ns.len();
        let rank = |p: usize| nearest_rank(latencies_ns, p).unwrap_or(0);
        let sum: u128 = latencies_ns.iter().map(|&l| u128::from(l)).sum();
        Some(LatencySummary {
            p50: Duration::from_nanos(rank(50)),
            p99: Duration::from_nanos(rank(99)),
            mean: Duration::from_nanos((sum / n as u128) as u64),
        })
    }
}

/// The `percent`th percentile of `sorted` by the nearest-rank rule (the smallest value
/// with at least `percent` % of the values at or below it); `None` if empty. Every table of
/// the benchmarks uses this rule.
pub fn nearest_rank<T: Copy>(sorted: &[T], percent: usize) -> Option<T> {
    let n = sorted.len();
    (n > 0).then(|| sorted[(n * percent).div_ceil(100).clamp(1, n) - 1])
}

/// What one closed-loop run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Records acknowledged per second of the measurement window.
    pub records_per_s: f64,
    /// Latency of each operation (one append call, from call to durable acknowledgement).
    pub latency: LatencySummary,
    /// Records of every completed operation, warm-up and tail included.
    pub records_total: u64,
}

/// Runs `threads` copies of `work` over a window of `warmup` then `measure`, and merges
/// what they measured. `work(thread, window, samples)` loops while `window.running()`.
pub fn closed_loop<F>(
    threads: usize,
    warmup: Duration,
    measure: Duration,
    work: F,
) -> io::Result<Measured>
where
    F: Fn(usize, &Window, &mut Samples) -> io::Result<()> + Sync,
{
    assert!(threads > 0, "a run needs at least one thread");
    let lead = SPAWN_LEAD_BASE + SPAWN_LEAD_PER_THREAD * threads as u32;
    let window = Window::after(lead, warmup, measure);
    let mut all = Samples::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let work = &work;
                let window = &window;
                std::thread::Builder::new()
                    .name(format!("bench-{thread}"))
                    .spawn_scoped(scope, move || {
                        let now = Instant::now();
                        if window.start > now {
                            std::thread::sleep(window.start - now);
                        }
                        let mut samples = Samples::default();
                        work(thread, window, &mut samples).map(|()| samples)
                    })
            })
            .collect::<io::Result<_>>()?;
        for handle in handles {
            let samples = handle
                .join()
                .map_err(|_| io::Error::other("a benchmark thread panicked"))??;
            all.merge(samples);
        }
        Ok::<(), io::Error>(())
    })?;
    let latency = LatencySummary::of(&mut all.latencies_ns).ok_or_else(|| {
        io::Error::other(format!(
            "no operation completed in a {:?} window: the store is stalled or the window too short",
            window.measured()
        ))
    })?;
    Ok(Measured {
        records_per_s: all.records as f64 / window.measured().as_secs_f64(),
        latency,
        records_total: all.records_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = LatencySummary::of(&mut v).unwrap();
        assert_eq!(s.p50, Duration::from_nanos(50));
        assert_eq!(s.p99, Duration::from_nanos(99));
        let mut one = vec![7];
        let s = LatencySummary::of(&mut one).unwrap();
        assert_eq!(s.p50, Duration::from_nanos(7));
        assert_eq!(s.p99, Duration::from_nanos(7));
        assert_eq!(LatencySummary::of(&mut []), None);
    }

    #[test]
    fn only_operations_ending_in_the_window_count() {
        let window = Window::after(
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut samples = Samples::default();
        samples.record(&window, window.start, window.start, 1); // warm-up
        samples.record(&window, window.start, window.from, 2);
        samples.record(&window, window.from, window.until, 4); // after
        assert_eq!(samples.records, 2);
        assert_eq!(samples.latencies_ns.len(), 1);
    }
}
