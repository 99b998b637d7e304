//! What the gateway remembers of recent arrivals, to answer a retry: client command ids (a
//! retried request is answered as a replay and stores nothing) and the fingerprints of
//! recent readings (a retried reading is a duplicate wherever it lies in its meter's
//! history). Both are kept by the image (stored in snapshots) and by the planner (to know a
//! retry before it is applied), bounded, the oldest forgotten first.

use std::collections::VecDeque;

use gridlog_common::id::CommandId;

use super::slots::{EntitySlot, FastMap};

/// Recent client command ids remembered for idempotent retries.
pub const COMMAND_IDS_MAX: usize = 100_000;

/// Recent client command ids in arrival order, at most [`COMMAND_IDS_MAX`]: the oldest is
/// forgotten first. The image keeps them with the offset of their first event (snapshots
/// store them); the planner keeps its own copy, to know a retry before it is applied.
#[derive(Debug, Clone)]
pub(crate) struct RecentCommandIds<V> {
    values: FastMap<CommandId, V>,
    order: VecDeque<CommandId>,
}

impl<V> Default for RecentCommandIds<V> {
    fn default() -> Self {
        RecentCommandIds {
            values: FastMap::default(),
            order: VecDeque::new(),
        }
    }
}

impl<V: Copy> RecentCommandIds<V> {
    /// Remembers `id` (a known id keeps its first value and place).
    pub(crate) fn insert(&mut self, id: CommandId, value: V) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.values.entry(id.clone()) {
            slot.insert(value);
            self.order.push_back(id);
            while self.order.len() > COMMAND_IDS_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.values.remove(&old);
                }
            }
        }
    }

    /// True if `id` is remembered.
    pub(crate) fn contains(&self, id: &CommandId) -> bool {
        self.values.contains_key(id)
    }

    /// Every remembered id with its value, oldest first.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (&CommandId, V)> {
        self.order
            .iter()
            .filter_map(|id| self.values.get(id).map(|v| (id, *v)))
    }
}

/// Default of how many recent readings' fingerprints are remembered gateway-wide
/// (`EngineOptions::recent_readings_max`): 6.5 times Telegraf's default buffer of 10,000
/// metrics. Costs [`RECENT_READING_BYTES`] each in the image and in the planner (3 MiB each
/// at most), and the planner's lookup index while retries are being answered
/// ([`RECENT_READING_INDEX_BYTES`] each, 3.7 MiB at most).
pub const RECENT_READINGS_DEFAULT: usize = 65_536;
/// Most bytes one remembered reading costs in one copy, derived: 24 B in a ring that is at
/// least half full (it doubles when it grows).
pub const RECENT_READING_BYTES: usize = 48;
/// Most bytes one remembered reading costs in the planner's lookup index while it exists,
/// derived: a hash table bucket holds its key and fingerprint (24 B) and a control byte,
/// and the table is at least 7/16 full (it doubles at 7/8): at most 16/7 buckets.
pub const RECENT_READING_INDEX_BYTES: usize = 58;
const _: () = assert!(2 * std::mem::size_of::<RememberedReading>() <= RECENT_READING_BYTES);
const _: () = assert!(
    16 * (std::mem::size_of::<((EntitySlot, i64), u64)>() + 1) / 7 <= RECENT_READING_INDEX_BYTES
);

/// A remembered reading: its meter's slot, its measurement time, its fingerprint.
pub(crate) type RememberedReading = (EntitySlot, i64, u64);

/// The fingerprints of the most recent readings across meters, in arrival order, at most
/// `max`: the oldest is forgotten first.
///
/// Every reading is remembered (the write path pays a ring append and, past the bound, a
/// removal at the front: sequential memory, no hashing), but only a retry looks one up.
/// The first lookup builds an index by (slot, time) from the ring; it is kept up to date
/// while lookups keep coming and dropped after `max` inserts without one, so a gateway that
/// answers no retries never pays for hashing.
#[derive(Debug, Clone)]
pub(crate) struct RecentReadings {
    ring: VecDeque<RememberedReading>,
    max: usize,
    index: Option<Box<LookupIndex>>,
}

/// The index of a [`RecentReadings`] ring: the fingerprint of the oldest remembered reading
/// of each (slot, time).
#[derive(Debug, Clone, Default)]
struct LookupIndex {
    fingerprints: FastMap<(EntitySlot, i64), u64>,
    inserts_since_lookup: usize,
}

impl Default for RecentReadings {
    fn default() -> Self {
        RecentReadings::with_max(RECENT_READINGS_DEFAULT)
    }
}

impl RecentReadings {
    /// Empty, remembering at most `max`.
    pub(crate) fn with_max(max: usize) -> Self {
        RecentReadings {
            ring: VecDeque::new(),
            max,
            index: None,
        }
    }

    /// Remembers a reading, forgetting the oldest beyond the bound (the image's way).
    pub(crate) fn insert(&mut self, reading: RememberedReading) {
        self.insert_unbounded(reading);
        self.trim();
    }

    /// Remembers a reading without forgetting: the planner adds a request's readings so,
    /// and either takes them back ([`RecentReadings::forget_newest`]) or calls
    /// [`RecentReadings::trim`]; the result is the same as inserting one by one.
    #[inline]
    pub(crate) fn insert_unbounded(&mut self, reading: RememberedReading) {
        self.ring.push_back(reading);
        if let Some(index) = &mut self.index {
            let (slot, time_ms, fingerprint) = reading;
            index
                .fingerprints
                .entry((slot, time_ms))
                .or_insert(fingerprint);
            index.inserts_since_lookup += 1;
        }
    }

    /// Forgets the oldest beyond the bound; drops the index after `max` inserts without a
    /// lookup.
    #[inline]
    pub(crate) fn trim(&mut self) {
        let excess = self.ring.len().saturating_sub(self.max);
        match &mut self.index {
            // Without an index the forgotten entries are not read: the ring's head moves.
            None => drop(self.ring.drain(..excess)),
            Some(index) => {
                for (slot, time_ms, _) in self.ring.drain(..excess) {
                    index.fingerprints.remove(&(slot, time_ms));
                }
            }
        }
        if self
            .index
            .as_ref()
            .is_some_and(|index| index.inserts_since_lookup > self.max)
        {
            self.index = None;
        }
    }

    /// Forgets the newest `count` (taking back inserts not yet trimmed).
    pub(crate) fn forget_newest(&mut self, count: usize) {
        for _ in 0..count {
            if let Some((slot, time_ms, _)) = self.ring.pop_back() {
                if let Some(index) = &mut self.index {
                    index.fingerprints.remove(&(slot, time_ms));
                }
            }
        }
    }

    /// Changes the bound (forgetting the oldest beyond a smaller one).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
        self.trim();
    }

    /// The fingerprint of the reading of the meter in `slot` at `time_ms`, if it is
    /// remembered (the oldest, should one be remembered twice). Builds the index if there
    /// is none.
    pub(crate) fn get(&mut self, slot: EntitySlot, time_ms: i64) -> Option<u64> {
        let ring = &self.ring;
        let index = self.index.get_or_insert_with(|| {
            let mut fingerprints = FastMap::default();
            fingerprints.reserve(ring.len());
            for &(slot, time_ms, fingerprint) in ring {
                fingerprints.entry((slot, time_ms)).or_insert(fingerprint);
            }
            Box::new(LookupIndex {
                fingerprints,
                inserts_since_lookup: 0,
            })
        });
        index.inserts_since_lookup = 0;
        index.fingerprints.get(&(slot, time_ms)).copied()
    }

    /// Every remembered reading, oldest first.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = &RememberedReading> {
        self.ring.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_reading_is_forgotten_first_and_inserts_taken_back_leave_no_trace() {
        let mut recent = RecentReadings::with_max(3);
        for t in 0..5 {
            recent.insert((1, t, t as u64 * 10));
        }
        let kept = |r: &RecentReadings| r.in_order().map(|&(_, t, _)| t).collect::<Vec<_>>();
        assert_eq!(kept(&recent), [2, 3, 4]);
        assert_eq!(recent.get(1, 1), None);
        assert_eq!(recent.get(1, 2), Some(20));
        assert_eq!(recent.get(2, 2), None);
        // A request's readings, taken back: as if never inserted (with the index built).
        recent.insert_unbounded((1, 5, 50));
        recent.insert_unbounded((1, 6, 60));
        assert_eq!(recent.get(1, 6), Some(60));
        recent.forget_newest(2);
        assert_eq!(kept(&recent), [2, 3, 4]);
        assert_eq!(recent.get(1, 6), None);
        // Kept, then trimmed: the same as one by one; the index follows.
        recent.insert_unbounded((1, 5, 50));
        recent.insert_unbounded((1, 6, 60));
        recent.trim();
        assert_eq!(kept(&recent), [4, 5, 6]);
        assert_eq!(recent.get(1, 3), None);
        assert_eq!(recent.get(1, 5), Some(50));
        recent.set_max(1);
        assert_eq!(kept(&recent), [6]);
        assert_eq!(recent.get(1, 5), None);
    }

    #[test]
    fn the_index_is_dropped_after_max_inserts_without_a_lookup_and_rebuilt_alike() {
        let mut recent = RecentReadings::with_max(4);
        recent.insert((7, 1, 11));
        assert!(recent.index.is_none(), "no index before a lookup");
        assert_eq!(recent.get(7, 1), Some(11));
        for t in 2..=6 {
            recent.insert((7, t, t as u64 + 10));
        }
        assert!(
            recent.index.is_none(),
            "dropped after 5 inserts without a lookup"
        );
        // Rebuilt from the ring: the same answers.
        assert_eq!(recent.get(7, 6), Some(16));
        assert_eq!(recent.get(7, 2), None);
        assert_eq!(recent.get(7, 3), Some(13));
    }
}
