//! Retrying requests: exponential backoff with full jitter, and which failures are worth it.
//!
//! The client library's own retries are off (`max_retries = 0`): it does not retry a
//! create-only PUT that timed out (it cannot know whether the store wrote it), and one loop
//! here that knows what "already exists" means is easier to reason about than two.
//! Delay `n` is drawn uniformly from `[0, min(max, min_delay · 2^n)]` ("full jitter"), so a
//! fleet of gateways whose uplink comes back at the same moment does not retry in step.

use std::time::Duration;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// Bounds from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed = u64::from_le_bytes(super::lineage::random_bytes::<8>()) | 1;
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            rng: seed,
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let bound = self.bound();
        self.failures = self.failures.saturating_add(1);
        let nanos = bound.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(self.next_u64() % nanos.saturating_add(1))
    }

    /// Starts again from `min` (the failures it counted are over).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Moves to the largest bound (a persistent failure waits the longest), in at most 32
    /// doublings: past `min · 2^31` the bound grows no more, whatever `max` says.
    pub fn saturate(&mut self) {
        while self.failures < 32 && self.bound() < self.max {
            self.failures += 1;
        }
    }

    /// The upper bound of the next delay.
    pub fn bound(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    // xorshift64*: enough for jitter, no dependency.
    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// How a failed request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Unreachable, timed out, reset, 5xx, 429: the uplink or the store will come back.
    Transient,
    /// Credentials, permissions, a bad request or configuration: retried too (an operator
    /// may fix it without restarting), but logged as an error and at the longest delay.
    Persistent,
}

/// Classifies an object store error.
pub fn classify(error: &object_store::Error) -> FailureKind {
    use object_store::Error as E;
    match error {
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => FailureKind::Persistent,
        // Generic covers transport errors (connect, timeout, reset) and status codes the
        // library does not name (5xx, 429, and 400s); a 4xx other than 429 is persistent.
        E::Generic { .. } => match status_code(error) {
            Some(code) if (400..500).contains(&code) && code != 408 && code != 429 => {
                FailureKind::Persistent
            }
            _ => FailureKind::Transient,
        },
        _ => FailureKind::Transient,
    }
}

/// The HTTP status in an error's message, if there is one (the library's error type that
/// holds it is not public).
pub fn status_code(error: &object_store::Error) -> Option<u16> {
    let text = error.to_string();
    let at = text.find("status code: ")? + "status code: ".len();
    text[at..].get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_below_a_doubling_capped_bound() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut bounds = Vec::new();
        for _ in 0..8 {
            let bound = b.bound();
            let d = b.next_delay();
            assert!(d <= bound, "{d:?} > {bound:?}");
            bounds.push(bound.as_millis());
        }
        assert_eq!(bounds, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.bound(), Duration::from_secs(2));
    }

    #[test]
    fn saturating_ends_even_when_the_maximum_is_out_of_reach() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        b.saturate();
        assert_eq!(b.bound(), Duration::from_secs(60));
        // 1 ms doubled 31 times is ~25 days: a larger maximum is never reached.
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(30 * 86_400));
        b.saturate();
        assert_eq!(b.bound(), Duration::from_millis(1 << 31));
    }

    #[test]
    fn delays_are_spread() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::BTreeSet<u128> =
            (0..50).map(|_| b.next_delay().as_millis()).collect();
        assert!(delays.len() > 20, "{delays:?}");
    }
}
