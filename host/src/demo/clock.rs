//! The demo's simulated clock: a start time plus real elapsed time × speed.
//!
//! It is also the engine's clock (`EngineOptions::clock`), so gateway timestamps and the
//! "reading from the future" check use simulated time, and a demo running at 60× can record
//! an hour of readings per real minute without any of them being refused as future.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use gridlog_firmware::engine::Clock;

/// Slowest accepted speed: a simulated second every 100 real seconds.
pub const SPEED_MIN: f64 = 0.01;
/// Fastest accepted speed: a simulated hour per real second. Faster would only make the
/// simulator fall behind the clock: every simulated interval still gets its reading.
pub const SPEED_MAX: f64 = 3600.0;

/// Simulated time: `start_ms` + real time elapsed since [`DemoClock::new`] × `speed`.
/// Monotonic (it is built on [`Instant`]), and it only ever moves forward.
#[derive(Debug)]
pub struct DemoClock {
    started: Instant,
    speed: f64,
    /// Simulated time at `started`; raised (never lowered) by [`DemoClock::advance_to`].
    base_ms: AtomicI64,
}

impl DemoClock {
    /// A clock at `start_ms` (Unix epoch milliseconds, UTC) that runs `speed` times as fast
    /// as real time. A speed outside [`SPEED_MIN`]..=[`SPEED_MAX`] is clamped into it, and
    /// one that is not a number means 1; validate user input against those limits first.
    pub fn new(start_ms: i64, speed: f64) -> DemoClock {
        let speed = if speed.is_nan() {
            1.0
        } else {
            speed.clamp(SPEED_MIN, SPEED_MAX)
        };
        DemoClock {
            started: Instant::now(),
            speed,
            base_ms: AtomicI64::new(start_ms),
        }
    }

    /// How many simulated seconds pass per real second.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Moves the clock forward to `at_ms` if it is behind it; never moves it back. `start`
    /// uses it so that the clock may be created (and the engine opened with it) before the
    /// resume time is known.
    pub fn advance_to(&self, at_ms: i64) {
        let now = self.now_ms();
        if at_ms > now {
            self.base_ms.fetch_add(at_ms - now, Ordering::AcqRel);
        }
    }
}

impl Clock for DemoClock {
    fn now_ms(&self) -> i64 {
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0 * self.speed;
        self.base_ms
            .load(Ordering::Acquire)
            .saturating_add(elapsed_ms as i64)
    }
}
