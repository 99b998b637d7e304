//! What the gateway remembers of recent arrivals, to answer a retry as a duplicate: client
//! command ids (a retried request is answered as a replay and stores nothing) and the
//! fingerprints of recent readings (a retried reading is a duplicate wherever it lies in
//! its meter's history). Both are kept by the image (stored in snapshots) and by the
//! planner (to know a retry before it is applied), bounded, the oldest forgotten first.

use std::collections::VecDeque;
use std::hash::Hash;

use gridlog_common::id::CommandId;

use super::slots::{EntitySlot, FastMap};

/// Recent client command ids remembered for idempotent retries.
pub const COMMAND_IDS_MAX: usize = 100_000;
/// Default of how many recent readings' fingerprints are remembered gateway-wide
/// (`EngineOptions::recent_readings_max`): 6.5 times Telegraf's default buffer of 10,000
/// metrics. At most [`RECENT_READING_BYTES`] each per copy (the image's and the planner's):
/// 6 MiB per copy, 12 MiB for both at the default.
pub const RECENT_READINGS_DEFAULT: usize = 65_536;
/// Most bytes one remembered reading costs in one copy, derived: a hash table bucket holds
/// its key and value (24 B) and a control byte, and the table is at least 7/16 full (it
/// doubles at 7/8), so at most 16/7 buckets (58 B) per reading; the arrival order holds its
/// key (16 B) in a ring at least half full (32 B).
pub const RECENT_READING_BYTES: usize = 96;
const _: () = assert!(
    16 * (std::mem::size_of::<((EntitySlot, i64), u64)>() + 1) / 7
        + 2 * std::mem::size_of::<(EntitySlot, i64)>()
        <= RECENT_READING_BYTES
);

/// Keys in arrival order with a value each, at most `max`: the oldest is forgotten first.
#[derive(Debug, Clone)]
pub(crate) struct Recent<K, V> {
    values: FastMap<K, V>,
    order: VecDeque<K>,
    max: usize,
}

/// Recent client command ids; the image keeps each with the offset of its first event.
pub(crate) type RecentCommandIds<V> = Recent<CommandId, V>;
/// Fingerprints of recent readings by (meter slot, measurement time).
pub(crate) type RecentReadings = Recent<(EntitySlot, i64), u64>;

impl<V> Default for Recent<CommandId, V> {
    fn default() -> Self {
        Recent::with_max(COMMAND_IDS_MAX)
    }
}

impl Default for RecentReadings {
    fn default() -> Self {
        Recent::with_max(RECENT_READINGS_DEFAULT)
    }
}

impl<K, V> Recent<K, V> {
    /// Empty, remembering at most `max`.
    pub(crate) fn with_max(max: usize) -> Self {
        Recent {
            values: FastMap::default(),
            order: VecDeque::new(),
            max,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Copy> Recent<K, V> {
    /// Remembers `key` (a known key keeps its first value and place), forgetting the oldest
    /// beyond the bound.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.insert_unbounded(key, value);
        self.trim();
    }

    /// [`Recent::insert`] without forgetting: the planner adds a request's keys so, and
    /// either takes them back ([`Recent::forget_newest`]) or calls [`Recent::trim`]. With
    /// keys that are never inserted twice, the result is the same as inserting one by one.
    /// Returns whether it was added.
    pub(crate) fn insert_unbounded(&mut self, key: K, value: V) -> bool {
        match self.values.entry(key.clone()) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
                self.order.push_back(key);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }

    /// Forgets the oldest beyond the bound.
    pub(crate) fn trim(&mut self) {
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.values.remove(&old);
            }
        }
    }

    /// Forgets the newest `count` (taking back inserts not yet trimmed).
    pub(crate) fn forget_newest(&mut self, count: usize) {
        for _ in 0..count {
            if let Some(key) = self.order.pop_back() {
                self.values.remove(&key);
            }
        }
    }

    /// Changes the bound (forgetting the oldest beyond a smaller one).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
        self.trim();
    }

    /// True if `key` is remembered.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key`, if it is remembered.
    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.values.get(key).copied()
    }

    /// Every remembered key with its value, oldest first.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (&K, V)> {
        self.order
            .iter()
            .filter_map(|key| self.values.get(key).map(|v| (key, *v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_forgotten_first_and_inserts_taken_back_leave_no_trace() {
        let mut recent: Recent<u32, u64> = Recent::with_max(3);
        for k in 0..5 {
            recent.insert(k, u64::from(k) * 10);
        }
        assert_eq!(
            recent.in_order().collect::<Vec<_>>(),
            [(&2, 20), (&3, 30), (&4, 40)]
        );
        // A request's keys, taken back: as if never inserted.
        recent.insert_unbounded(5, 50);
        recent.insert_unbounded(6, 60);
        recent.forget_newest(2);
        assert_eq!(recent.in_order().count(), 3);
        assert_eq!(recent.get(&2), Some(20));
        assert_eq!(recent.get(&5), None);
        // Kept, then trimmed: the same as one by one.
        recent.insert_unbounded(5, 50);
        recent.insert_unbounded(6, 60);
        recent.trim();
        assert_eq!(
            recent.in_order().collect::<Vec<_>>(),
            [(&4, 40), (&5, 50), (&6, 60)]
        );
        recent.set_max(1);
        assert_eq!(recent.in_order().collect::<Vec<_>>(), [(&6, 60)]);
        assert!(!recent.contains(&4));
    }
}
