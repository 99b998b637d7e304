//! What meters sealed and amended that the rollup store does not hold yet: the image's
//! queue of [`SealedEntry`]s, in the order of the events that made them, and the one rule
//! that turns stored days plus queued entries into days ([`overlay`]), used by the spill
//! (what to write) and by queries (what to answer) alike.
//!
//! The queue holds only what events at or above its `stored_below` offset made (the
//! rollup store's coverage): pushing anything below it is a no-op, so a replay over days
//! the store already holds queues nothing twice. Memory: [`SealedQueue::bytes`], which the
//! engine keeps under `StorageOptions::rollup_spill_bytes` by spilling.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use gridlog_common::id::EntityId;
use gridlog_common::Offset;

use super::rollup::{Amendment, DayRecord, Sealing, QUARTER_HOUR_MS, QUARTER_INDEX_ABS_MAX};

/// What one event left for the rollup store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Sealed {
    /// A day its meter sealed, whole.
    Day(DayRecord),
    /// A late reading into a sealed day.
    Amendment(Amendment),
}

/// One queued entry: the event's offset, its meter, what it left.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SealedEntry {
    /// Offset of the event that made it.
    pub offset: Offset,
    /// The meter.
    pub meter: EntityId,
    /// What it left.
    pub sealed: Sealed,
}

impl SealedEntry {
    /// The day it is about.
    pub fn day(&self) -> i64 {
        match &self.sealed {
            Sealed::Day(record) => record.day,
            Sealed::Amendment(a) => a.day_index(),
        }
    }

    fn memory_bytes(&self) -> usize {
        let record = match &self.sealed {
            Sealed::Day(record) => record.memory_bytes(),
            Sealed::Amendment(_) => 0,
        };
        std::mem::size_of::<SealedEntry>() + 2 * std::mem::size_of::<usize>() + record
    }
}

/// The queue (see the module docs). Entries are shared: a snapshot's capture copies
/// pointers, not records.
#[derive(Debug, Default)]
pub struct SealedQueue {
    entries: VecDeque<Arc<SealedEntry>>,
    bytes: usize,
    /// What events below this offset made is in the rollup store.
    stored_below: Offset,
}

impl SealedQueue {
    /// Queues what the event at `offset` left for `meter`, unless the store holds it.
    pub(crate) fn push(&mut self, offset: Offset, meter: &EntityId, sealing: Sealing) {
        let sealed = match sealing {
            Sealing::Nothing => return,
            _ if offset < self.stored_below => return,
            Sealing::Sealed(record) => Sealed::Day(record),
            Sealing::Amended(amendment) => Sealed::Amendment(amendment),
        };
        self.push_entry(SealedEntry {
            offset,
            meter: meter.clone(),
            sealed,
        });
    }

    /// Whether `entry` could have been made by an event before `next_offset` and comes
    /// after `previous` (offsets in order): a snapshot's queue is checked with it.
    pub(crate) fn is_plausible(entry: &SealedEntry, previous: Offset, next_offset: Offset) -> bool {
        let shape = match &entry.sealed {
            Sealed::Day(record) => record.is_well_formed(),
            Sealed::Amendment(a) => {
                a.time_ms.unsigned_abs() / QUARTER_HOUR_MS as u64 <= QUARTER_INDEX_ABS_MAX
            }
        };
        shape && entry.offset >= previous && entry.offset < next_offset
    }

    /// Queues an entry as a snapshot stored it, unless the store holds it.
    pub(crate) fn push_entry(&mut self, entry: SealedEntry) {
        if entry.offset >= self.stored_below {
            self.bytes += entry.memory_bytes();
            self.entries.push_back(Arc::new(entry));
        }
    }

    /// The store holds what events below `offset` made: forgets it (entries are in offset
    /// order) and queues nothing below it from now on.
    pub(crate) fn stored_below(&mut self, offset: Offset) {
        self.stored_below = self.stored_below.max(offset);
        while let Some(entry) = self.entries.front() {
            if entry.offset >= self.stored_below {
                break;
            }
            self.bytes -= entry.memory_bytes();
            self.entries.pop_front();
        }
    }

    /// The offset below which the store holds what events made (as the queue knows it).
    pub fn coverage(&self) -> Offset {
        self.stored_below
    }

    /// Bytes the queue holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, oldest first (shared).
    pub(crate) fn entries(&self) -> Vec<Arc<SealedEntry>> {
        self.entries.iter().cloned().collect()
    }

    /// `meter`'s entries, oldest first.
    pub(crate) fn of_meter(&self, meter: &str) -> Vec<Arc<SealedEntry>> {
        self.entries
            .iter()
            .filter(|e| e.meter.as_str() == meter)
            .cloned()
            .collect()
    }
}

/// A meter's days: `stored` (its records from the rollup store, by day) with `entries`
/// (its queued ones, oldest first) on top — a sealed block merged into its day (its quarter
/// hours added, and the day's bucket with the day's last block), an amendment applied to
/// its day as stored or sealed (or to an empty day if neither holds it), in order, so the
/// floats are those of booking every reading in one place.
pub fn overlay<'a>(
    stored: &mut BTreeMap<i64, DayRecord>,
    entries: impl IntoIterator<Item = &'a SealedEntry>,
) {
    for entry in entries {
        let day = stored
            .entry(entry.day())
            .or_insert_with(|| DayRecord::empty(entry.day()));
        match &entry.sealed {
            Sealed::Day(record) => merge_block(day, record),
            Sealed::Amendment(a) => a.apply(day),
        }
    }
}

/// Merges a sealed block into its day: its quarter hours (a block leaves memory once, so
/// they are new to the day; one already there is replaced), its day bucket if it has one.
fn merge_block(day: &mut DayRecord, block: &DayRecord) {
    for bucket in &block.quarters {
        match day
            .quarters
            .binary_search_by_key(&bucket.index, |b| b.index)
        {
            Ok(at) => day.quarters[at] = *bucket,
            Err(at) => day.quarters.insert(at, *bucket),
        }
    }
    if block.day_bucket.is_some() {
        day.day_bucket = block.day_bucket;
    }
}

/// What a spill of `entries` (oldest first) writes: per meter, every day they touch, whole,
/// as [`overlay`] makes it from the day `stored_day(meter, day)` reads from the store (the
/// store keeps the newest spill's version of a meter-day, so it must be whole).
pub fn spill_records<E>(
    entries: &[Arc<SealedEntry>],
    mut stored_day: impl FnMut(&EntityId, i64) -> Result<Option<DayRecord>, E>,
) -> Result<BTreeMap<EntityId, Vec<DayRecord>>, E> {
    let mut by_meter: BTreeMap<&EntityId, Vec<&SealedEntry>> = BTreeMap::new();
    for entry in entries {
        by_meter.entry(&entry.meter).or_default().push(entry);
    }
    let mut out = BTreeMap::new();
    for (meter, entries) in by_meter {
        let mut days: BTreeMap<i64, DayRecord> = BTreeMap::new();
        for entry in &entries {
            if let std::collections::btree_map::Entry::Vacant(vacant) = days.entry(entry.day()) {
                if let Some(record) = stored_day(meter, entry.day())? {
                    vacant.insert(record);
                }
            }
            overlay(&mut days, [*entry]);
        }
        out.insert(meter.clone(), days.into_values().collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rollup::{Bucket, MeterRollups, RollupOptions, DAY_MS};

    fn id(s: &str) -> EntityId {
        EntityId::new(s).expect("id")
    }

    #[test]
    fn nothing_below_the_store_is_queued_and_storing_forgets_in_order() {
        let mut q = SealedQueue::default();
        let mut r = MeterRollups::new(&RollupOptions::default());
        r.add(0, 0.0, 0.0, 1.0);
        let sealing = r.add(DAY_MS, 1.0, 0.0, 1.0);
        q.push(10, &id("m"), sealing.clone());
        q.push(11, &id("m"), Sealing::Nothing);
        assert_eq!(q.len(), 1);
        assert!(q.bytes() > 0);
        q.stored_below(11);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        q.push(10, &id("m"), sealing);
        assert!(q.is_empty(), "below what the store holds: not queued again");
    }

    #[test]
    fn an_amendment_of_a_stored_day_is_applied_to_it_and_one_of_a_queued_day_to_that() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        r.add(1000, 0.0, 0.0, 10.0);
        let Sealing::Sealed(day0) = r.add(DAY_MS + 1000, 5.0, 0.0, 10.0) else {
            panic!("sealed")
        };
        let amend = |r: &mut MeterRollups, t| match r.add(t, 0.0, 0.0, 99.0) {
            Sealing::Amended(a) => Sealed::Amendment(a),
            other => panic!("{other:?}"),
        };
        let late0 = amend(&mut r, 2000);
        let Sealing::Sealed(day1) = r.add(2 * DAY_MS + 1000, 5.0, 0.0, 10.0) else {
            panic!("sealed")
        };
        let late1 = amend(&mut r, DAY_MS + 2000);
        let entry = |offset, sealed| {
            Arc::new(SealedEntry {
                offset,
                meter: id("m"),
                sealed,
            })
        };
        // Day 0 is in the store already; day 1 is queued, sealed, then amended.
        let entries = [
            entry(5, late0),
            entry(6, Sealed::Day(day1.clone())),
            entry(7, late1),
        ];
        let mut reads = Vec::new();
        let records = spill_records(&entries, |_, day| {
            reads.push(day);
            Ok::<_, ()>(Some(day0.clone()).filter(|r| r.day == day))
        })
        .expect("records");
        assert_eq!(
            reads,
            [0, 1],
            "each day is read once: parts of it may be in the store"
        );
        let days = &records[&id("m")];
        assert_eq!(days.len(), 2);
        let count = |b: Option<Bucket>| b.map(|b| (b.count, b.max_w));
        assert_eq!(count(days[0].day_bucket), Some((2, 99.0)));
        assert_eq!(count(days[1].day_bucket), Some((2, 99.0)));
        assert_eq!(
            day1.day_bucket.map(|b| b.count),
            Some(1),
            "the queued record is not changed"
        );
    }
}
