//! Interval rollups of a meter: energy per interval (register deltas) and min/avg/max power,
//! in fixed-size rings so memory is bounded whatever the load.
//!
//! Two rings per meter: 15-minute buckets for [`RollupOptions::quarter_hour_days`] and daily
//! buckets for [`RollupOptions::day_days`]. Hourly rollups are summed from the 15-minute
//! ring when asked. A bucket is [`BUCKET_BYTES`] bytes; a ring's slots are allocated in
//! chunks of [`CHUNK_SLOTS`] as its intervals reach them, so a meter's rollups grow to at
//! most [`RollupOptions::bytes_per_meter`]: `(96 × quarter_hour_days + day_days) × 40`
//! bytes rounded up to whole chunks, plus a pointer per chunk; at the defaults (7 and 400
//! days) 43,792 bytes, reached after 7 days of quarter hours and 400 days of days. The
//! newest interval's bucket lives in the ring's header, beside the entity.
//!
//! Energy of a reading is the delta of its registers to the previous reading **in time**,
//! booked into the bucket of the reading's time. A late reading (older than the newest) adds
//! to the power statistics of its bucket but no energy: the cumulative registers already
//! counted that energy when the newer reading arrived. An interval with no reading has no
//! bucket: gaps stay gaps.

use std::sync::Arc;

use gridlog_common::domain::{Event, Reading, Register};

/// Length of a quarter-hour bucket.
pub const QUARTER_HOUR_MS: i64 = 15 * 60 * 1000;
/// Length of an hour.
pub const HOUR_MS: i64 = 60 * 60 * 1000;
/// Length of a day bucket (UTC days).
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Size of one bucket in memory.
pub const BUCKET_BYTES: usize = std::mem::size_of::<Bucket>();

const _: () = assert!(BUCKET_BYTES == 40);

/// How long rollups are kept. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollupOptions {
    /// Days of 15-minute (and so hourly) rollups kept per meter. Default 7.
    pub quarter_hour_days: u32,
    /// Days of daily rollups kept per meter. Default 400.
    pub day_days: u32,
}

impl Default for RollupOptions {
    fn default() -> Self {
        RollupOptions {
            quarter_hour_days: 7,
            day_days: 400,
        }
    }
}

impl RollupOptions {
    /// Most bytes of rollup slots per reporting meter, once both rings are full: each
    /// ring's slots rounded up to whole chunks, plus a pointer per chunk.
    pub fn bytes_per_meter(&self) -> usize {
        [self.quarter_hour_days as usize * 96, self.day_days as usize]
            .into_iter()
            .map(|slots| {
                let chunks = slots.max(1).div_ceil(CHUNK_SLOTS);
                chunks * (CHUNK_SLOTS * BUCKET_BYTES + std::mem::size_of::<usize>())
            })
            .sum()
    }
}

/// Interval sizes a query can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 15 minutes.
    QuarterHour,
    /// 1 hour (summed from quarter hours).
    Hour,
    /// 1 day (UTC).
    Day,
}

impl Step {
    /// The interval's length.
    pub fn millis(self) -> i64 {
        match self {
            Step::QuarterHour => QUARTER_HOUR_MS,
            Step::Hour => HOUR_MS,
            Step::Day => DAY_MS,
        }
    }
}

/// One interval's aggregates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Interval number: start time / interval length.
    pub index: i64,
    /// Energy imported in the interval.
    pub import_wh: f64,
    /// Energy exported in the interval.
    pub export_wh: f64,
    /// Smallest power seen.
    pub min_w: f32,
    /// Largest power seen.
    pub max_w: f32,
    /// Mean power of the readings.
    pub mean_w: f32,
    /// Readings in the interval.
    pub count: u32,
}

/// A [`Bucket`]'s fields as bits: `index, import_wh, export_wh, min_w, max_w, mean_w, count`.
pub type BucketBits = (i64, u64, u64, u32, u32, u32, u32);

impl Bucket {
    /// The bucket as bits: equal exactly when two buckets are the same bit for bit (unlike
    /// `==` on floats: `-0.0 == 0.0`), as a stored or re-derived rollup must be.
    pub fn bits(&self) -> BucketBits {
        (
            self.index,
            self.import_wh.to_bits(),
            self.export_wh.to_bits(),
            self.min_w.to_bits(),
            self.max_w.to_bits(),
            self.mean_w.to_bits(),
            self.count,
        )
    }

    /// The empty bucket of interval `index` (no reading yet).
    pub const fn empty(index: i64) -> Bucket {
        Bucket {
            index,
            import_wh: 0.0,
            export_wh: 0.0,
            min_w: f32::MAX,
            max_w: f32::MIN,
            mean_w: 0.0,
            count: 0,
        }
    }

    /// Books one reading: its energy delta (see [`Baseline::book`]) and its power.
    pub fn book(&mut self, import_delta_wh: f64, export_delta_wh: f64, power_w: f64) {
        self.import_wh += import_delta_wh;
        self.export_wh += export_delta_wh;
        self.add_power(power_w);
    }

    fn add_power(&mut self, power_w: f64) {
        let p = power_w as f32;
        self.count += 1;
        self.min_w = self.min_w.min(p);
        self.max_w = self.max_w.max(p);
        self.mean_w += (p - self.mean_w) / self.count as f32;
    }

    fn merge(&mut self, other: &Bucket) {
        self.import_wh += other.import_wh;
        self.export_wh += other.export_wh;
        if other.count > 0 {
            let total = self.count + other.count;
            self.mean_w = (self.mean_w * self.count as f32 + other.mean_w * other.count as f32)
                / total as f32;
            self.count = total;
            self.min_w = self.min_w.min(other.min_w);
            self.max_w = self.max_w.max(other.max_w);
        }
    }
}

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

    fn digest(&self, hasher: &mut super::digest::DigestHasher) {
        for (_, slot) in self.filled() {
            hasher.write_i64(slot.index);
            hasher.write_f64(slot.import_wh);
            hasher.write_f64(slot.export_wh);
            hasher.write_f64(f64::from(slot.min_w));
            hasher.write_f64(f64::from(slot.max_w));
            hasher.write_f64(f64::from(slot.mean_w));
            hasher.write_u64(u64::from(slot.count));
        }
    }
}

/// Hourly buckets summed from quarter hours (oldest first), as [`MeterRollups::query`]
/// answers [`Step::Hour`]: whichever store the quarter hours came from, the same sums.
pub fn hours_of(quarters: impl IntoIterator<Item = Bucket>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for q in quarters {
        let hour = (q.index * QUARTER_HOUR_MS).div_euclid(HOUR_MS);
        match out.last_mut() {
            Some(last) if last.index == hour => last.merge(&q),
            _ => {
                let mut bucket = Bucket::empty(hour);
                bucket.merge(&q);
                out.push(bucket);
            }
        }
    }
    out
}

/// Where a meter's next energy delta is measured from: the registers of its newest reading
/// in time, moved by wraps and replacements. The one rule for a reading's energy, shared by
/// the image's rollups and site totals and by anything that re-derives them from the log
/// (the fleet tables), so both book the same watt-hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Baseline(Option<(i64, f64, f64)>);

impl Baseline {
    /// The energy of reading `r` (import, export): the delta of its registers to the newest
    /// reading before it in time; none for the first reading (the baseline) or a late one
    /// (the newer reading's registers already counted it). Moves the baseline to `r` when
    /// `r` is the newest.
    pub fn book(&mut self, r: &Reading) -> (f64, f64) {
        match self.0 {
            Some((t, import, export)) if r.time_ms > t => {
                self.0 = Some((r.time_ms, r.import_wh, r.export_wh));
                (r.import_wh - import, r.export_wh - export)
            }
            Some(_) => (0.0, 0.0),
            None => {
                self.0 = Some((r.time_ms, r.import_wh, r.export_wh));
                (0.0, 0.0)
            }
        }
    }

    /// Follows a meter event other than a reading: a wrap moves the wrapped register's
    /// baseline down by the register's modulus, a replacement starts from the new meter's
    /// registers.
    pub fn follow(&mut self, event: &Event) {
        match event {
            Event::RegisterRolledOver { register, bits, .. } => {
                let modulus = 2f64.powi(i32::from(*bits));
                if let Some((_, import, export)) = &mut self.0 {
                    match register {
                        Register::Import => *import -= modulus,
                        Register::Export => *export -= modulus,
                    }
                }
            }
            Event::MeterReplaced {
                time_ms,
                import_wh,
                export_wh,
            } => self.0 = Some((*time_ms, *import_wh, *export_wh)),
            _ => {}
        }
    }
}

/// A meter's rollups.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeterRollups {
    quarter: Ring,
    day: Ring,
}

impl MeterRollups {
    /// Empty rollups sized by `options`.
    pub fn new(options: &RollupOptions) -> MeterRollups {
        MeterRollups {
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

    pub(crate) fn digest(&self, hasher: &mut super::digest::DigestHasher) {
        self.quarter.digest(hasher);
        self.day.digest(hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_stay_gaps_and_hours_sum_quarters() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        let t0 = 1_700_000_000_000i64 / HOUR_MS * HOUR_MS;
        r.add(t0, 10.0, 0.0, 100.0);
        r.add(t0 + QUARTER_HOUR_MS, 5.0, 1.0, 300.0);
        r.add(t0 + 3 * HOUR_MS, 2.0, 0.0, 50.0);
        let q = r.query(Step::QuarterHour, t0, t0 + 4 * HOUR_MS);
        assert_eq!(q.len(), 3, "empty intervals are not returned");
        let h = r.query(Step::Hour, t0, t0 + 4 * HOUR_MS);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].import_wh, 15.0);
        assert_eq!(h[0].export_wh, 1.0);
        assert_eq!(
            (h[0].min_w, h[0].max_w, h[0].mean_w, h[0].count),
            (100.0, 300.0, 200.0, 2)
        );
    }

    #[test]
    fn head_and_slots_read_alike_and_survive_a_snapshot_round_trip() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        let t0 = 1_700_000_000_000i64 / DAY_MS * DAY_MS;
        // Nothing allocated while readings stay in the newest interval.
        r.add(t0, 1.0, 0.0, 10.0);
        r.add(t0 + 1000, 2.0, 0.0, 30.0);
        assert!(r.quarter.slots.is_none() && r.day.slots.is_none());
        // A new interval moves the head into its slot; a late reading writes a slot.
        r.add(t0 + QUARTER_HOUR_MS, 4.0, 1.0, 50.0);
        r.add(t0 + 2000, 0.0, 0.0, 20.0);
        r.add(t0 + DAY_MS + 5, 8.0, 0.0, 70.0);
        let q = r.query(Step::QuarterHour, t0, t0 + 2 * DAY_MS);
        assert_eq!(
            q.iter().map(|b| (b.import_wh, b.count)).collect::<Vec<_>>(),
            vec![(3.0, 3), (4.0, 1), (8.0, 1)]
        );
        let d = r.query(Step::Day, t0, t0 + 2 * DAY_MS);
        assert_eq!(
            d.iter().map(|b| (b.import_wh, b.count)).collect::<Vec<_>>(),
            vec![(7.0, 4), (8.0, 1)]
        );
        let bytes = postcard::to_allocvec(&r).expect("serialise");
        let back: MeterRollups = postcard::from_bytes(&bytes).expect("deserialise");
        assert_eq!(back.query(Step::QuarterHour, t0, t0 + 2 * DAY_MS), q);
        assert_eq!(back.query(Step::Day, t0, t0 + 2 * DAY_MS), d);
        let digest = |r: &MeterRollups| {
            let mut h = super::super::digest::DigestHasher::default();
            r.digest(&mut h);
            h.finish()
        };
        assert_eq!(digest(&back), digest(&r));
        // The copy goes on exactly like the original.
        let (mut a, mut b) = (r, back);
        a.add(t0 + DAY_MS + 60_000, 1.0, 0.0, 1.0);
        b.add(t0 + DAY_MS + 60_000, 1.0, 0.0, 1.0);
        assert_eq!(digest(&a), digest(&b));
    }

    #[test]
    fn a_ring_takes_memory_a_chunk_at_a_time_up_to_the_bound() {
        let options = RollupOptions::default();
        // 34 chunks of 32 slots, and a pointer per chunk (4 bytes on 32-bit gateways).
        let bound = if cfg!(target_pointer_width = "64") {
            43_792
        } else {
            43_656
        };
        assert_eq!(options.bytes_per_meter(), bound);
        let chunks = |ring: &Ring| {
            ring.slots
                .as_ref()
                .map_or(0, |slots| slots.iter().flatten().count())
        };
        let mut r = MeterRollups::new(&options);
        let t0 = 1_700_000_000_000i64 / DAY_MS * DAY_MS;
        r.add(t0, 1.0, 0.0, 10.0);
        assert_eq!(
            (chunks(&r.quarter), chunks(&r.day)),
            (0, 0),
            "one open interval"
        );
        r.add(t0 + QUARTER_HOUR_MS, 2.0, 0.0, 10.0);
        assert_eq!(chunks(&r.quarter), 1, "one closed quarter hour: one chunk");
        // Ten days of quarter hours: the whole 7-day ring, and ten daily slots.
        for q in 2..96 * 10 {
            r.add(t0 + q * QUARTER_HOUR_MS, q as f64, 0.0, 10.0);
        }
        assert_eq!(chunks(&r.quarter), (96 * 7usize).div_ceil(CHUNK_SLOTS));
        assert_eq!(chunks(&r.day), 1);
        let quarters = r.query(Step::QuarterHour, t0, t0 + 10 * DAY_MS);
        assert_eq!(quarters.len(), 96 * 7, "the horizon, every slot readable");
        assert_eq!(r.query(Step::Day, t0, t0 + 10 * DAY_MS).len(), 10);
    }

    #[test]
    fn a_copy_shares_the_slots_until_one_side_writes_them() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        let t0 = 1_700_000_000_000i64 / DAY_MS * DAY_MS;
        r.add(t0, 1.0, 0.0, 10.0);
        r.add(t0 + QUARTER_HOUR_MS, 2.0, 0.0, 20.0);
        let shared = |a: &MeterRollups, b: &MeterRollups| match (&a.quarter.slots, &b.quarter.slots)
        {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        // A snapshot's copy of the entity: the slots are not copied.
        let copy = r.clone();
        assert!(shared(&r, &copy));
        let before = copy.query(Step::QuarterHour, t0, t0 + DAY_MS);
        // Readings in the newest interval write the head only: still shared.
        r.add(t0 + QUARTER_HOUR_MS + 1000, 1.0, 0.0, 30.0);
        assert!(shared(&r, &copy));
        // A late reading writes a slot: the writer gets its own copy; the snapshot's is as it was.
        r.add(t0 + 2000, 0.0, 0.0, 40.0);
        assert!(!shared(&r, &copy));
        assert_eq!(copy.query(Step::QuarterHour, t0, t0 + DAY_MS), before);
        assert_eq!(
            r.query(Step::QuarterHour, t0, t0 + QUARTER_HOUR_MS)[0].count,
            2
        );
    }

    #[test]
    fn the_horizon_bounds_what_is_kept() {
        let options = RollupOptions {
            quarter_hour_days: 1,
            day_days: 2,
        };
        let mut r = MeterRollups::new(&options);
        for i in 0..(96 * 3) {
            r.add(i * QUARTER_HOUR_MS, 1.0, 0.0, 1.0);
        }
        assert_eq!(
            r.query(Step::QuarterHour, 0, 96 * 3 * QUARTER_HOUR_MS)
                .len(),
            96
        );
        assert_eq!(r.query(Step::Day, 0, 3 * DAY_MS).len(), 2);
        // Too old to book: ignored, not written over newer data.
        r.add(0, 1.0, 0.0, 1.0);
        assert_eq!(r.query(Step::Day, 0, DAY_MS).len(), 0);
    }
}
