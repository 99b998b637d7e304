//! Interval rollups of a meter: energy per interval (register deltas) and min/avg/max power.
//!
//! Two interval lengths per meter: 15-minute buckets, answered for
//! [`RollupOptions::quarter_hour_days`], and daily buckets, answered for
//! [`RollupOptions::day_days`]. Hourly rollups are summed from the quarter hours when asked.
//!
//! **Memory holds a meter's current UTC day's bucket and its current block's quarter
//! hours** ([`MeterRollups`]; a block is [`BLOCK_QUARTERS`] quarter hours, 8 hours, a third
//! of a day): at most [`RollupOptions::bytes_per_meter`] (1 KiB of slots), whatever the
//! horizons. The first reading of a newer block hands the current block's quarter hours
//! out, as a [`DayRecord`] without a day bucket, and the first of a newer day also hands
//! out the day's bucket (`Sealing::Sealed`): the image queues them for the rollup store
//! (`rollup_store`), which merges them into the day's record and answers for them from
//! then on. A late reading into what has left memory cannot change it: `add` hands it out
//! as an [`Amendment`], which the store applies with the same booking steps
//! ([`Amendment::apply`]), so every answer is bit for bit what one ring of every interval
//! would give. What leaves memory when depends only on the readings, never on the wall
//! clock or on when the store wrote: a replay hands out the same parts.
//!
//! Energy of a reading is the delta of its registers to the previous reading **in time**,
//! booked into the bucket of the reading's time. A late reading (older than the newest) adds
//! to the power statistics of its bucket but no energy: the cumulative registers already
//! counted that energy when the newer reading arrived. An interval with no reading has no
//! bucket: gaps stay gaps.

mod meter;
pub mod v4;

pub use meter::{MeterRollups, RollupsError};

use gridlog_common::domain::{Event, Reading, Register};

/// Length of a quarter-hour bucket.
pub const QUARTER_HOUR_MS: i64 = 15 * 60 * 1000;
/// Length of an hour.
pub const HOUR_MS: i64 = 60 * 60 * 1000;
/// Length of a day bucket (UTC days).
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Quarter hours in a UTC day.
pub const QUARTERS_PER_DAY: usize = 96;
/// Size of one bucket as queries and records hold it.
pub const BUCKET_BYTES: usize = std::mem::size_of::<Bucket>();
/// Size of one quarter-hour slot of the current day in memory: a bucket without its
/// interval number (the slot's position implies it).
pub const SLOT_BYTES: usize = std::mem::size_of::<meter::Slot>();
/// Quarter hours of a **block**: 8 hours, aligned to the UTC day (a day is 3 blocks). A
/// meter's memory holds the quarter hours of its current block only; a newer block hands
/// the earlier one out to the rollup store.
pub const BLOCK_QUARTERS: usize = 32;
/// Blocks of a day.
pub const DAY_BLOCKS: usize = QUARTERS_PER_DAY / BLOCK_QUARTERS;
/// Most days of either horizon (10 years): bounds what a snapshot or a config can ask for.
pub const ROLLUP_DAYS_MAX: u32 = 3_660;

const _: () = assert!(BUCKET_BYTES == 40 && SLOT_BYTES == 32);
const _: () = assert!(DAY_BLOCKS * BLOCK_QUARTERS == QUARTERS_PER_DAY);

/// Largest quarter-hour number (either sign) stored rollups may hold: ±2^40 quarter hours
/// is ±31 million years, and every product with 96 or 15 minutes stays far inside `i64`.
pub const QUARTER_INDEX_ABS_MAX: u64 = 1 << 40;

/// How long rollups are answered. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollupOptions {
    /// Days of 15-minute (and so hourly) rollups answered per meter. Default 7.
    pub quarter_hour_days: u32,
    /// Days of daily rollups answered per meter. Default 400.
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
    /// Most bytes of rollup slots a meter holds in memory, whatever the horizons: the
    /// current block's quarter hours ([`BLOCK_QUARTERS`] slots behind an `Arc`). The rest of
    /// its history is in the rollup store (and, until it has written it, queued in the
    /// image, bounded by `StorageOptions::rollup_spill_bytes`).
    pub fn bytes_per_meter(&self) -> usize {
        BLOCK_QUARTERS * SLOT_BYTES + 2 * std::mem::size_of::<usize>()
    }

    /// Quarter hours answered back from a meter's newest.
    pub(crate) fn quarter_horizon(&self) -> i64 {
        i64::from(self.quarter_hour_days.clamp(1, ROLLUP_DAYS_MAX)) * QUARTERS_PER_DAY as i64
    }

    /// Days answered back from a meter's current one.
    pub(crate) fn day_horizon(&self) -> i64 {
        i64::from(self.day_days.clamp(1, ROLLUP_DAYS_MAX))
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

/// Hourly buckets summed from quarter hours (oldest first), as [`MeterRollups::query_current_day`]
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

/// One UTC day of a meter's sealed rollups: its day bucket and its quarter hours, as the
/// image hands it to the rollup store and the store hands it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DayRecord {
    /// Day number (start time / 1 day).
    pub day: i64,
    /// The day's bucket, if the day was within the day horizon.
    pub day_bucket: Option<Bucket>,
    /// Quarter-hour buckets of the day, oldest first, each with `index / 96 == day`.
    pub quarters: Vec<Bucket>,
}

impl DayRecord {
    /// A day with no bucket yet.
    pub fn empty(day: i64) -> DayRecord {
        DayRecord {
            day,
            day_bucket: None,
            quarters: Vec::new(),
        }
    }

    /// Whether it is a day record the store can hold: a day bucket of its day, quarter hours
    /// of its day in strictly increasing order, every bucket counting a reading (checked on
    /// records a snapshot brings back).
    pub fn is_well_formed(&self) -> bool {
        let day = self.day;
        let first = day.checked_mul(QUARTERS_PER_DAY as i64);
        let Some(first) = first.filter(|_| day.unsigned_abs() <= QUARTER_INDEX_ABS_MAX) else {
            return false;
        };
        let day_ok = self
            .day_bucket
            .is_none_or(|b| b.index == day && b.count > 0);
        let quarters_ok = self.quarters.len() <= QUARTERS_PER_DAY
            && self.quarters.windows(2).all(|w| w[0].index < w[1].index)
            && self.quarters.iter().all(|b| {
                (first..first + QUARTERS_PER_DAY as i64).contains(&b.index) && b.count > 0
            });
        day_ok && quarters_ok && (self.day_bucket.is_some() || !self.quarters.is_empty())
    }

    /// Bytes it holds in memory (for the image's bound on queued records).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<DayRecord>() + self.quarters.capacity() * BUCKET_BYTES
    }
}

/// A late reading into a sealed day of its meter: what it books, to be applied to the
/// stored day by [`Amendment::apply`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Amendment {
    /// The reading's time.
    pub time_ms: i64,
    /// Its energy delta (zero for a late reading, see [`Baseline::book`]).
    pub import_delta_wh: f64,
    /// Likewise.
    pub export_delta_wh: f64,
    /// Its power.
    pub power_w: f64,
    /// Its quarter hour was within the quarter-hour horizon when it arrived.
    pub quarter: bool,
    /// Its day was within the day horizon when it arrived.
    pub day: bool,
}

impl Amendment {
    /// The sealed day it amends.
    pub fn day_index(&self) -> i64 {
        self.time_ms.div_euclid(DAY_MS)
    }

    /// Books it into `record` (its day's) exactly as one ring of every interval would have
    /// booked the reading: into its quarter hour (a new bucket if there was none) and the
    /// day bucket.
    pub fn apply(&self, record: &mut DayRecord) {
        let book = |bucket: &mut Bucket| {
            bucket.book(self.import_delta_wh, self.export_delta_wh, self.power_w)
        };
        if self.quarter {
            let q = self.time_ms.div_euclid(QUARTER_HOUR_MS);
            let at = match record.quarters.binary_search_by_key(&q, |b| b.index) {
                Ok(at) => at,
                Err(at) => {
                    record.quarters.insert(at, Bucket::empty(q));
                    at
                }
            };
            book(&mut record.quarters[at]);
        }
        if self.day {
            book(
                record
                    .day_bucket
                    .get_or_insert(Bucket::empty(self.day_index())),
            );
        }
    }
}

/// What booking a reading left for the rollup store.
#[derive(Debug, Clone, PartialEq)]
pub enum Sealing {
    /// Nothing: the reading is in memory.
    Nothing,
    /// The reading opened a newer block: the quarter hours of the current one, and (if it
    /// opened a newer day) the day's bucket, to be merged into the day's record — a day
    /// leaves memory in up to three parts.
    Sealed(DayRecord),
    /// The reading belongs to a sealed day.
    Amended(Amendment),
}

/// Rollups of any snapshot format's shape, as the image digest reads them.
pub(crate) trait RollupDigest {
    /// Feeds them to `hasher`.
    fn digest(&self, hasher: &mut super::digest::DigestHasher);
}

impl RollupDigest for MeterRollups {
    fn digest(&self, hasher: &mut super::digest::DigestHasher) {
        MeterRollups::digest(self, hasher);
    }
}

impl RollupDigest for v4::MeterRollupsV4 {
    fn digest(&self, hasher: &mut super::digest::DigestHasher) {
        v4::MeterRollupsV4::digest(self, hasher);
    }
}

/// A bucket into the image digest, field by field.
pub(crate) fn digest_bucket(hasher: &mut super::digest::DigestHasher, b: &Bucket) {
    hasher.write_i64(b.index);
    hasher.write_f64(b.import_wh);
    hasher.write_f64(b.export_wh);
    hasher.write_f64(f64::from(b.min_w));
    hasher.write_f64(f64::from(b.max_w));
    hasher.write_f64(f64::from(b.mean_w));
    hasher.write_u64(u64::from(b.count));
}
