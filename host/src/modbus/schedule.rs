//! When to poll: intervals aligned to the wall clock, and a device's health (failures,
//! unavailable, backoff). Pure: times are passed in, nothing sleeps here.
//!
//! Polls fall on multiples of the interval since the Unix epoch (a 1 s interval polls at
//! :00.000, :01.000, …), so readings of every device line up and a late poll never shifts
//! the ones after it. A slot missed (the bus was busy) is skipped, never caught up. After
//! `failures_max` failures in a row the device is unavailable and is polled less often: the
//! wait doubles from one interval up to [`BACKOFF_MS_MAX`], still on the interval's grid, so
//! a dead device costs its bus one timeout per backoff instead of one per interval.

/// The longest wait between two polls of a device that does not answer.
pub const BACKOFF_MS_MAX: u64 = 60_000;

/// The first slot of `interval_ms` strictly after `after_ms` (both since the epoch).
pub fn next_slot_ms(after_ms: i64, interval_ms: u64) -> i64 {
    let interval = i64::try_from(interval_ms.max(1)).unwrap_or(i64::MAX);
    (after_ms.div_euclid(interval) + 1).saturating_mul(interval)
}

/// A change of a device's availability, to record as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing changed.
    None,
    /// It answered again after being unavailable.
    Available,
    /// It failed `failures_max` times in a row.
    Unavailable,
}

/// A device's health over its polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    failures_max: u32,
    failures_in_row: u32,
    unavailable: bool,
}

impl Health {
    /// A device not yet polled: available until it fails `failures_max` (≥ 1) times in a row.
    pub fn new(failures_max: u32) -> Health {
        Health {
            failures_max: failures_max.max(1),
            failures_in_row: 0,
            unavailable: false,
        }
    }

    /// Whether it is unavailable now.
    pub fn unavailable(&self) -> bool {
        self.unavailable
    }

    /// A poll succeeded.
    pub fn succeeded(&mut self) -> Change {
        self.failures_in_row = 0;
        if std::mem::take(&mut self.unavailable) {
            Change::Available
        } else {
            Change::None
        }
    }

    /// A poll failed.
    pub fn failed(&mut self) -> Change {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        if !self.unavailable && self.failures_in_row >= self.failures_max {
            self.unavailable = true;
            Change::Unavailable
        } else {
            Change::None
        }
    }

    /// How long to wait from one poll to the next: the interval, or while unavailable the
    /// interval doubled per failure beyond `failures_max`, at most [`BACKOFF_MS_MAX`] (and
    /// never less than the interval).
    pub fn wait_ms(&self, interval_ms: u64) -> u64 {
        if !self.unavailable {
            return interval_ms;
        }
        let doublings = (self.failures_in_row - self.failures_max).min(16);
        interval_ms
            .saturating_mul(1 << doublings)
            .min(BACKOFF_MS_MAX)
            .max(interval_ms)
    }

    /// The slot of the next poll, for a poll of slot `slot_ms` that ended at `now_ms`.
    pub fn next_poll_ms(&self, slot_ms: i64, now_ms: i64, interval_ms: u64) -> i64 {
        let wait = i64::try_from(self.wait_ms(interval_ms)).unwrap_or(i64::MAX);
        // At least `wait` after the slot, and never a slot already past.
        let earliest = slot_ms.saturating_add(wait).max(now_ms + 1);
        next_slot_ms(earliest - 1, interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fall_on_multiples_of_the_interval() {
        assert_eq!(next_slot_ms(1_700_000_000_123, 1000), 1_700_000_001_000);
        assert_eq!(next_slot_ms(1_700_000_001_000, 1000), 1_700_000_002_000);
        assert_eq!(next_slot_ms(1_700_000_000_999, 1000), 1_700_000_001_000);
        assert_eq!(next_slot_ms(59_999, 60_000), 60_000);
        assert_eq!(next_slot_ms(-1, 1000), 0);
    }

    #[test]
    fn a_late_poll_does_not_shift_the_next_and_a_missed_slot_is_skipped() {
        let h = Health::new(3);
        // Slot 10 s, finished 300 ms late: the next is still 11 s.
        assert_eq!(h.next_poll_ms(10_000, 10_300, 1000), 11_000);
        // Finished after 12.5 s: 11 s and 12 s are gone, the next is 13 s.
        assert_eq!(h.next_poll_ms(10_000, 12_500, 1000), 13_000);
        // Finished exactly on the next slot: that slot is past.
        assert_eq!(h.next_poll_ms(10_000, 11_000, 1000), 12_000);
    }

    #[test]
    fn a_device_is_unavailable_after_failures_max_failures_in_a_row() {
        let mut h = Health::new(3);
        assert_eq!(h.failed(), Change::None);
        assert_eq!(h.failed(), Change::None);
        assert_eq!(
            h.succeeded(),
            Change::None,
            "two failures do not make it unavailable"
        );
        assert_eq!(h.failed(), Change::None);
        assert_eq!(h.failed(), Change::None);
        assert_eq!(h.failed(), Change::Unavailable);
        assert!(h.unavailable());
        assert_eq!(h.failed(), Change::None, "reported once");
        assert_eq!(h.succeeded(), Change::Available);
        assert!(!h.unavailable());
        assert_eq!(h.succeeded(), Change::None);
    }

    #[test]
    fn a_dead_device_backs_off_up_to_the_maximum_on_the_interval_grid() {
        let mut h = Health::new(2);
        h.failed();
        assert_eq!(h.wait_ms(1000), 1000, "not yet unavailable");
        h.failed();
        assert_eq!(h.wait_ms(1000), 1000);
        h.failed();
        assert_eq!(h.wait_ms(1000), 2000);
        h.failed();
        assert_eq!(h.wait_ms(1000), 4000);
        assert_eq!(h.next_poll_ms(10_000, 10_500, 1000), 14_000);
        for _ in 0..100 {
            h.failed();
        }
        assert_eq!(h.wait_ms(1000), BACKOFF_MS_MAX);
        assert_eq!(h.wait_ms(120_000), 120_000, "never less than the interval");
        h.succeeded();
        assert_eq!(
            h.wait_ms(1000),
            1000,
            "back to the interval once it answers"
        );
    }
}
