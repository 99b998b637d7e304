//! A meter's rollups as snapshot format 4 held them, in memory, before the rollup store:
//! a ring of every quarter hour and every day of the horizons. Read only to upgrade a
//! format-4 snapshot ([`MeterRollupsV4::upgrade`]), and by tests as the reference every
//! answer of today's rollups must equal bit for bit.

use std::sync::Arc;

use super::QUARTERS_PER_DAY;
use super::{
    hours_of, Bucket, DayRecord, MeterRollups, RollupOptions, Step, DAY_MS, QUARTER_HOUR_MS,
};

/// A fixed-capacity ring of buckets of one interval length.
///
/// The newest interval's bucket (`head`) is held in the ring itself; the slots, far apart
/// in memory, are written once per interval (or by a late reading), into chunks of
/// [`CHUNK_SLOTS`] allocated as intervals reach them: a meter that reported for an hour
/// holds one chunk per ring. A slot is a bucket packed into five words that are all zero
/// when it holds nothing. Serialised sparsely (only slots that hold an interval), so a
/// snapshot of meters that have reported for a day does not carry their empty 7-day rings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "RingWire")]
pub struct Ring {
    period_ms: i64,
    capacity: usize,
    /// `None` until first needed, then `capacity` packed slots (see [`pack`]) in chunks of
    /// [`CHUNK_SLOTS`], each allocated when a slot in it is first written. The slot at
    /// `newest_slot` is stale: the newest interval lives in `head`. Shared: a copy of the
    /// entity (a snapshot holds the image's while it writes) copies the pointer, and the
    /// slots are copied only if a shared ring is written (once an interval, not per reading).
    slots: Option<Arc<Vec<Option<Box<Chunk>>>>>,
    /// Newest interval index written.
    newest: i64,
    /// Derived from `newest` (not stored): its start time and its slot, so a reading in the
    /// newest interval (nearly all of them) is booked without a division.
    newest_start_ms: i64,
    newest_slot: usize,
    /// The newest interval's bucket: nearly every reading lands in it, with no miss in
    /// cache or TLB for a slot of the ring.
    head: Bucket,
}

/// A bucket slot that holds no interval.
const NO_BUCKET: Bucket = Bucket::empty(i64::MIN);

/// Slots per chunk of a ring: 32 × 40 bytes. A ring's memory grows a chunk at a time as
/// its intervals reach it, so a meter that has reported for an hour holds one chunk per
/// ring, not a week of empty quarter hours.
pub const CHUNK_SLOTS: usize = 32;

/// `CHUNK_SLOTS` packed slots.
type Chunk = [[u64; 5]; CHUNK_SLOTS];

/// A bucket as five words; all zero for a slot without an interval (index `i64::MIN`).
fn pack(b: &Bucket) -> [u64; 5] {
    if b.index == i64::MIN {
        return [0; 5];
    }
    [
        (b.index as u64) ^ (1 << 63),
        b.import_wh.to_bits(),
        b.export_wh.to_bits(),
        (u64::from(b.min_w.to_bits()) << 32) | u64::from(b.max_w.to_bits()),
        (u64::from(b.mean_w.to_bits()) << 32) | u64::from(b.count),
    ]
}

fn unpack(w: &[u64; 5]) -> Bucket {
    if w[0] == 0 {
        return NO_BUCKET;
    }
    Bucket {
        index: (w[0] ^ (1 << 63)) as i64,
        import_wh: f64::from_bits(w[1]),
        export_wh: f64::from_bits(w[2]),
        min_w: f32::from_bits((w[3] >> 32) as u32),
        max_w: f32::from_bits(w[3] as u32),
        mean_w: f32::from_bits((w[4] >> 32) as u32),
        count: w[4] as u32,
    }
}

/// A ring as snapshots store it: its shape and its filled slots.
#[derive(serde::Serialize, serde::Deserialize)]
struct RingWire {
    period_ms: i64,
    capacity: u32,
    newest: i64,
    filled: Vec<(u32, Bucket)>,
}

impl serde::Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RingWire {
            period_ms: self.period_ms,
            capacity: self.capacity as u32,
            newest: self.newest,
            filled: self.filled().map(|(i, b)| (i as u32, b)).collect(),
        }
        .serialize(serializer)
    }
}

/// Why a stored rollup ring was refused (a snapshot that fails this is skipped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The ring's period or size is impossible.
    #[error("bad rollup ring: period {period_ms} ms, {capacity} slots")]
    Shape {
        /// Its period.
        period_ms: i64,
        /// Its slots.
        capacity: u32,
    },
    /// A bucket names a slot beyond the ring, or holds no interval.
    #[error("bad rollup slot {0}")]
    Slot(usize),
    /// The newest interval has no bucket.
    #[error("bad rollup ring: newest interval {0} has no bucket")]
    NewestMissing(i64),
}

impl TryFrom<RingWire> for Ring {
    type Error = RingError;

    fn try_from(wire: RingWire) -> Result<Ring, RingError> {
        if wire.period_ms <= 0 || wire.capacity == 0 || wire.capacity > ROLLUP_SLOTS_MAX {
            return Err(RingError::Shape {
                period_ms: wire.period_ms,
                capacity: wire.capacity,
            });
        }
        let mut ring = Ring::new(wire.period_ms, wire.capacity as usize);
        ring.set_newest(wire.newest);
        for (i, bucket) in wire.filled {
            let i = i as usize;
            if i >= ring.capacity || bucket.index == i64::MIN {
                return Err(RingError::Slot(i));
            }
            if ring.newest != i64::MIN && i == ring.newest_slot {
                ring.head = bucket;
            } else {
                *ring.slot_mut(i) = pack(&bucket);
            }
        }
        if ring.newest != i64::MIN && ring.head.index != ring.newest {
            return Err(RingError::NewestMissing(ring.newest));
        }
        Ok(ring)
    }
}

/// Most slots a ring may have (10 years of quarter hours): bounds what a snapshot can make
/// a reader allocate.
pub const ROLLUP_SLOTS_MAX: u32 = 96 * 366 * 10;

impl Ring {
    fn new(period_ms: i64, capacity: usize) -> Ring {
        Ring {
            period_ms,
            capacity: capacity.max(1),
            slots: None,
            newest: i64::MIN,
            newest_start_ms: i64::MIN,
            newest_slot: 0,
            head: NO_BUCKET,
        }
    }

    /// Slot `pos` (below `capacity`) to write: its chunk allocated if it was not, the
    /// slots copied if a snapshot shares them.
    fn slot_mut(&mut self, pos: usize) -> &mut [u64; 5] {
        let chunks = self.capacity.div_ceil(CHUNK_SLOTS);
        let slots = self
            .slots
            .get_or_insert_with(|| Arc::new(vec![None; chunks]));
        let chunk = Arc::make_mut(slots)[pos / CHUNK_SLOTS]
            .get_or_insert_with(|| Box::new([[0; 5]; CHUNK_SLOTS]));
        &mut chunk[pos % CHUNK_SLOTS]
    }

    /// The bucket in slot `pos`, reading the newest interval's from `head`.
    fn bucket_at(&self, pos: usize) -> Bucket {
        if self.newest != i64::MIN && pos == self.newest_slot {
            self.head
        } else {
            self.slots
                .as_ref()
                .and_then(|slots| slots.get(pos / CHUNK_SLOTS)?.as_ref())
                .map_or(NO_BUCKET, |chunk| unpack(&chunk[pos % CHUNK_SLOTS]))
        }
    }

    /// Slots that hold an interval, by position.
    fn filled(&self) -> impl Iterator<Item = (usize, Bucket)> + '_ {
        (0..self.capacity)
            .map(|i| (i, self.bucket_at(i)))
            .filter(|(_, b)| b.index != i64::MIN)
    }

    fn set_newest(&mut self, index: i64) {
        self.newest = index;
        if index != i64::MIN {
            self.newest_start_ms = index.saturating_mul(self.period_ms);
            self.newest_slot = index.rem_euclid(self.capacity as i64) as usize;
        }
    }

    /// Books into the bucket of `time_ms` (nothing if it is older than the horizon).
    fn book(&mut self, time_ms: i64, add: impl FnOnce(&mut Bucket)) {
        if self.newest != i64::MIN
            && time_ms >= self.newest_start_ms
            && time_ms - self.newest_start_ms < self.period_ms
        {
            add(&mut self.head);
            return;
        }
        let index = time_ms.div_euclid(self.period_ms);
        let capacity = self.capacity as i64;
        if self.newest != i64::MIN && index <= self.newest - capacity {
            return; // older than the horizon
        }
        if index > self.newest {
            // A new interval: the head goes to its slot, the new interval becomes the head.
            if self.newest != i64::MIN {
                let (slot, head) = (self.newest_slot, pack(&self.head));
                *self.slot_mut(slot) = head;
            }
            self.set_newest(index);
            self.head = Bucket::empty(index);
            add(&mut self.head);
            return;
        }
        // A late reading, in an older interval within the horizon.
        let pos = index.rem_euclid(capacity) as usize;
        let slot = self.slot_mut(pos);
        let mut bucket = unpack(slot);
        if bucket.index != index {
            bucket = Bucket::empty(index);
        }
        add(&mut bucket);
        *slot = pack(&bucket);
    }

    /// Interval numbers the ring answers for (empty before the first interval).
    fn kept(&self) -> std::ops::RangeInclusive<i64> {
        if self.newest == i64::MIN {
            return std::ops::RangeInclusive::new(0, -1); // empty
        }
        self.newest.saturating_sub(self.capacity as i64 - 1)..=self.newest
    }

    /// Buckets with data whose interval starts in `from_ms..to_ms`, oldest first.
    fn range(&self, from_ms: i64, to_ms: i64) -> Vec<Bucket> {
        let capacity = self.capacity as i64;
        let oldest = self.newest.saturating_sub(capacity - 1);
        let first = from_ms.div_euclid(self.period_ms).max(oldest);
        let last = (to_ms - 1).div_euclid(self.period_ms).min(self.newest);
        let mut out = Vec::new();
        let mut index = first;
        while index <= last {
            let slot = self.bucket_at(index.rem_euclid(capacity) as usize);
            if slot.index == index
                && (slot.count > 0 || slot.import_wh != 0.0 || slot.export_wh != 0.0)
            {
                out.push(slot);
            }
            index += 1;
        }
        out
    }

    fn digest(&self, hasher: &mut crate::engine::digest::DigestHasher) {
        for (_, slot) in self.filled() {
            super::digest_bucket(hasher, &slot);
        }
    }
}

/// A meter's rollups as format 4 held them: a ring of every interval of each horizon.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeterRollupsV4 {
    quarter: Ring,
    day: Ring,
}

impl MeterRollupsV4 {
    /// Empty rollups sized by `options`.
    pub fn new(options: &RollupOptions) -> MeterRollupsV4 {
        MeterRollupsV4 {
            quarter: Ring::new(QUARTER_HOUR_MS, options.quarter_hour_days as usize * 96),
            day: Ring::new(DAY_MS, options.day_days as usize),
        }
    }

    /// Books a reading: its energy delta (may be zero) and its power.
    pub fn add(&mut self, time_ms: i64, import_delta_wh: f64, export_delta_wh: f64, power_w: f64) {
        for ring in [&mut self.quarter, &mut self.day] {
            ring.book(time_ms, |bucket| {
                bucket.book(import_delta_wh, export_delta_wh, power_w)
            });
        }
    }

    /// Buckets of `step` whose interval starts in `from_ms..to_ms`, oldest first.
    pub fn query(&self, step: Step, from_ms: i64, to_ms: i64) -> Vec<Bucket> {
        match step {
            Step::QuarterHour => self.quarter.range(from_ms, to_ms),
            Step::Day => self.day.range(from_ms, to_ms),
            Step::Hour => hours_of(self.quarter.range(from_ms, to_ms)),
        }
    }

    /// Quarter-hour numbers the rings answer for: the oldest kept to the newest written
    /// (empty before the first reading).
    pub fn kept_quarters(&self) -> std::ops::RangeInclusive<i64> {
        self.quarter.kept()
    }

    /// Day numbers the rings answer for, likewise.
    pub fn kept_days(&self) -> std::ops::RangeInclusive<i64> {
        self.day.kept()
    }

    pub(crate) fn digest(&self, hasher: &mut crate::engine::digest::DigestHasher) {
        self.quarter.digest(hasher);
        self.day.digest(hasher);
    }
}

impl MeterRollupsV4 {
    /// Today's shape: the current day's bucket and its current block's quarter hours in
    /// memory; every older day the rings answer for, and the current day's earlier blocks,
    /// as sealed [`DayRecord`]s (oldest first) for the rollup store. Answers stay bit for
    /// bit the same.
    pub fn upgrade(&self) -> Result<(MeterRollups, Vec<DayRecord>), RingError> {
        let options = RollupOptions {
            quarter_hour_days: (self.quarter.capacity / QUARTERS_PER_DAY).max(1) as u32,
            day_days: self.day.capacity as u32,
        };
        let mut rollups = MeterRollups::new(&options);
        if self.quarter.newest == i64::MIN {
            return Ok((rollups, Vec::new()));
        }
        let current = self.quarter.newest.div_euclid(QUARTERS_PER_DAY as i64);
        if self.day.newest != current {
            return Err(RingError::NewestMissing(current));
        }
        let mut sealed = Vec::new();
        let days = self.kept_days();
        let first_quarter_day = self
            .kept_quarters()
            .start()
            .div_euclid(QUARTERS_PER_DAY as i64);
        let first = (*days.start()).min(first_quarter_day);
        for day in first..=current {
            let (from_ms, to_ms) = (day * DAY_MS, (day + 1) * DAY_MS);
            let record = DayRecord {
                day,
                day_bucket: self.day.range(from_ms, to_ms).first().copied(),
                quarters: self.quarter.range(from_ms, to_ms),
            };
            if day < current {
                if record.day_bucket.is_some() || !record.quarters.is_empty() {
                    sealed.push(record);
                }
                continue;
            }
            // Today's blocks before the current one go to the store, as if handed out.
            let first = super::meter::block_start(self.quarter.newest);
            let (before, block): (Vec<Bucket>, Vec<Bucket>) =
                record.quarters.into_iter().partition(|b| b.index < first);
            if !before.is_empty() {
                sealed.push(DayRecord {
                    day,
                    day_bucket: None,
                    quarters: before,
                });
            }
            rollups = MeterRollups::try_from(super::meter::MeterRollupsWire {
                quarter_horizon: options.quarter_hour_days,
                day_horizon: options.day_days,
                newest: self.quarter.newest,
                quarter: self.quarter.head,
                day: self.day.head,
                earlier: block
                    .into_iter()
                    .filter(|b| b.index != self.quarter.newest)
                    .collect(),
            })
            .map_err(|_| RingError::NewestMissing(self.quarter.newest))?;
        }
        Ok((rollups, sealed))
    }
}
