//! A meter's rollups in memory ([`MeterRollups`]): the current UTC day's bucket and the
//! current block's quarter hours, what a reading hands out when it leaves them
//! ([`Sealing`]), and their snapshot shape (format 5). See the parent module's docs.

use std::sync::Arc;

use super::{
    digest_bucket, hours_of, Amendment, Bucket, DayRecord, RollupOptions, Sealing, Step,
    BLOCK_QUARTERS, DAY_MS, QUARTERS_PER_DAY, QUARTER_HOUR_MS, QUARTER_INDEX_ABS_MAX,
    ROLLUP_DAYS_MAX,
};

/// A quarter hour of the current day: a bucket's fields without its interval number, all
/// zero when the slot holds nothing (a booked bucket counts at least one reading).
pub(super) type Slot = [u64; 4];
type BlockSlots = [Slot; BLOCK_QUARTERS];

fn pack(b: &Bucket) -> Slot {
    [
        b.import_wh.to_bits(),
        b.export_wh.to_bits(),
        (u64::from(b.min_w.to_bits()) << 32) | u64::from(b.max_w.to_bits()),
        (u64::from(b.mean_w.to_bits()) << 32) | u64::from(b.count),
    ]
}

fn unpack(w: &Slot, index: i64) -> Option<Bucket> {
    (w[3] as u32 != 0).then(|| Bucket {
        index,
        import_wh: f64::from_bits(w[0]),
        export_wh: f64::from_bits(w[1]),
        min_w: f32::from_bits((w[2] >> 32) as u32),
        max_w: f32::from_bits(w[2] as u32),
        mean_w: f32::from_bits((w[3] >> 32) as u32),
        count: w[3] as u32,
    })
}

/// A meter's rollups in memory: its current UTC day's bucket and its current block's
/// quarter hours (see the module docs).
///
/// The newest quarter hour and the day's bucket are inline (nearly every reading lands in
/// them, with no miss in cache or TLB); the block's other quarter hours are slots allocated
/// when the first closes, behind an `Arc`: a snapshot's copy of the entity shares them, and
/// they are copied only if a shared block is written (once a quarter hour, not per
/// reading). Handing a block out gives them up without a copy.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "MeterRollupsWire")]
pub struct MeterRollups {
    /// Quarter hours answered back from the newest (96 × `quarter_hour_days`).
    quarter_horizon: i64,
    /// Days answered back from the current one.
    day_horizon: i64,
    /// Newest quarter-hour number booked; `i64::MIN` before the first reading.
    newest: i64,
    /// Derived from `newest`: its start time, so a reading in it is booked without a division.
    newest_start_ms: i64,
    /// The newest quarter hour's bucket.
    quarter: Bucket,
    /// The current day's bucket (the newest quarter hour's day).
    day: Bucket,
    /// The current block's other quarter hours, by position in the block.
    slots: Option<Arc<BlockSlots>>,
}

/// Rollups as snapshots store them (format 5).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct MeterRollupsWire {
    pub(super) quarter_horizon: u32,
    pub(super) day_horizon: u32,
    pub(super) newest: i64,
    pub(super) quarter: Bucket,
    pub(super) day: Bucket,
    /// The current block's quarter hours before the newest, oldest first.
    pub(super) earlier: Vec<Bucket>,
}

impl serde::Serialize for MeterRollups {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MeterRollupsWire {
            quarter_horizon: (self.quarter_horizon / QUARTERS_PER_DAY as i64) as u32,
            day_horizon: self.day_horizon as u32,
            newest: self.newest,
            quarter: self.quarter,
            day: self.day,
            earlier: self.earlier().collect(),
        }
        .serialize(serializer)
    }
}

/// Why stored rollups were refused (a snapshot that fails this is skipped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollupsError {
    /// A horizon is zero or beyond [`ROLLUP_DAYS_MAX`].
    #[error("bad rollup horizons: {quarter_hour_days} days of quarter hours, {day_days} of days")]
    Horizon {
        /// Days of quarter hours.
        quarter_hour_days: u32,
        /// Days of days.
        day_days: u32,
    },
    /// A bucket is not in the current day, or out of order, or counts no reading.
    #[error("bad rollup bucket {index} (newest quarter hour {newest})")]
    Bucket {
        /// The bucket's interval number.
        index: i64,
        /// The newest quarter hour.
        newest: i64,
    },
}

impl TryFrom<MeterRollupsWire> for MeterRollups {
    type Error = RollupsError;

    fn try_from(wire: MeterRollupsWire) -> Result<MeterRollups, RollupsError> {
        let horizons = [wire.quarter_horizon, wire.day_horizon];
        if horizons.iter().any(|&d| d == 0 || d > ROLLUP_DAYS_MAX) {
            return Err(RollupsError::Horizon {
                quarter_hour_days: wire.quarter_horizon,
                day_days: wire.day_horizon,
            });
        }
        let mut rollups = MeterRollups::new(&RollupOptions {
            quarter_hour_days: wire.quarter_horizon,
            day_days: wire.day_horizon,
        });
        if wire.newest == i64::MIN {
            return match wire.earlier.first() {
                None => Ok(rollups),
                Some(b) => Err(RollupsError::Bucket {
                    index: b.index,
                    newest: wire.newest,
                }),
            };
        }
        let newest = wire.newest;
        let day = newest.div_euclid(QUARTERS_PER_DAY as i64);
        let bad = |index| RollupsError::Bucket { index, newest };
        // Interval numbers of times a reading can have (validation bounds them far inside
        // this), so no arithmetic on them overflows.
        if newest.unsigned_abs() > QUARTER_INDEX_ABS_MAX {
            return Err(bad(newest));
        }
        if wire.quarter.index != newest || wire.quarter.count == 0 {
            return Err(bad(wire.quarter.index));
        }
        if wire.day.index != day || wire.day.count == 0 {
            return Err(bad(wire.day.index));
        }
        rollups.set_newest(newest);
        rollups.quarter = wire.quarter;
        rollups.day = wire.day;
        let mut previous = block_start(newest) - 1;
        for bucket in wire.earlier {
            if bucket.index <= previous || bucket.index >= newest || bucket.count == 0 {
                return Err(bad(bucket.index));
            }
            previous = bucket.index;
            *rollups.slot_mut(bucket.index) = pack(&bucket);
        }
        Ok(rollups)
    }
}

/// The first quarter hour of `q`'s block.
pub(super) fn block_start(q: i64) -> i64 {
    q.div_euclid(BLOCK_QUARTERS as i64) * BLOCK_QUARTERS as i64
}

impl MeterRollups {
    /// Empty rollups answering for the horizons of `options`.
    pub fn new(options: &RollupOptions) -> MeterRollups {
        MeterRollups {
            quarter_horizon: options.quarter_horizon(),
            day_horizon: options.day_horizon(),
            newest: i64::MIN,
            newest_start_ms: i64::MIN,
            quarter: Bucket::empty(i64::MIN),
            day: Bucket::empty(i64::MIN),
            slots: None,
        }
    }

    fn set_newest(&mut self, quarter: i64) {
        self.newest = quarter;
        self.newest_start_ms = quarter.saturating_mul(QUARTER_HOUR_MS);
    }

    /// The slot of quarter hour `q` of the current block, to write: allocated if it was
    /// not, copied if a snapshot shares it.
    fn slot_mut(&mut self, q: i64) -> &mut Slot {
        let pos = q.rem_euclid(BLOCK_QUARTERS as i64) as usize;
        let slots = self
            .slots
            .get_or_insert_with(|| Arc::new([[0; 4]; BLOCK_QUARTERS]));
        &mut Arc::make_mut(slots)[pos]
    }

    /// The current block's quarter hours before the newest, oldest first.
    fn earlier(&self) -> impl Iterator<Item = Bucket> + '_ {
        let first = self.first_in_memory();
        let slots = self.slots.as_deref();
        (0..BLOCK_QUARTERS).filter_map(move |pos| {
            let q = first + pos as i64;
            (q != self.newest)
                .then(|| unpack(&slots?[pos], q))
                .flatten()
        })
    }

    /// The first quarter hour memory answers for: the current block's (before it, the
    /// rollup store and the queue do).
    pub fn first_in_memory(&self) -> i64 {
        block_start(self.newest)
    }

    /// Books a reading (its energy delta may be zero) and says what it left for the rollup
    /// store: the day it sealed, or the amendment of a sealed day it is.
    pub fn add(
        &mut self,
        time_ms: i64,
        import_delta_wh: f64,
        export_delta_wh: f64,
        power_w: f64,
    ) -> Sealing {
        let book = |bucket: &mut Bucket| bucket.book(import_delta_wh, export_delta_wh, power_w);
        if self.newest != i64::MIN
            && time_ms >= self.newest_start_ms
            && time_ms.saturating_sub(self.newest_start_ms) < QUARTER_HOUR_MS
        {
            book(&mut self.quarter);
            book(&mut self.day);
            return Sealing::Nothing;
        }
        let q = time_ms.div_euclid(QUARTER_HOUR_MS);
        let day = q.div_euclid(QUARTERS_PER_DAY as i64);
        let mut sealing = Sealing::Nothing;
        if self.newest == i64::MIN || q > self.newest {
            // A new newest quarter hour: the old one goes to its slot, or its block (with the
            // day's bucket, if the day is over) is handed out.
            if self.newest != i64::MIN && block_start(q) > block_start(self.newest) {
                sealing = Sealing::Sealed(self.seal(day > self.day.index));
            } else if self.newest != i64::MIN {
                let (newest, head) = (self.newest, pack(&self.quarter));
                *self.slot_mut(newest) = head;
            }
            if day != self.day.index {
                self.day = Bucket::empty(day);
            }
            self.set_newest(q);
            self.quarter = Bucket::empty(q);
            book(&mut self.quarter);
            book(&mut self.day);
            return sealing;
        }
        // A late reading. The quarter hour only within the horizon, as a ring of it would.
        let in_quarters = q > self.newest.saturating_sub(self.quarter_horizon);
        if day == self.day.index {
            book(&mut self.day);
            if !in_quarters {
                return Sealing::Nothing;
            }
            if q >= self.first_in_memory() {
                let slot = self.slot_mut(q);
                let mut bucket = unpack(slot, q).unwrap_or(Bucket::empty(q));
                book(&mut bucket);
                *slot = pack(&bucket);
                return Sealing::Nothing;
            }
            // An earlier block of today: its quarter hour is the store's, the day is here.
            return Sealing::Amended(Amendment {
                time_ms,
                import_delta_wh,
                export_delta_wh,
                power_w,
                quarter: true,
                day: false,
            });
        }
        let in_days = day > self.day.index.saturating_sub(self.day_horizon);
        if !in_quarters && !in_days {
            return Sealing::Nothing;
        }
        Sealing::Amended(Amendment {
            time_ms,
            import_delta_wh,
            export_delta_wh,
            power_w,
            quarter: in_quarters,
            day: in_days,
        })
    }

    /// The current block's quarter hours (and, with `day_over`, the day's bucket), leaving
    /// memory empty of them.
    fn seal(&mut self, day_over: bool) -> DayRecord {
        let mut quarters = Vec::with_capacity(BLOCK_QUARTERS);
        quarters.extend(self.earlier());
        quarters.push(self.quarter);
        quarters.shrink_to_fit();
        self.slots = None;
        DayRecord {
            day: self.day.index,
            day_bucket: day_over.then_some(self.day),
            quarters,
        }
    }

    /// The current day (the newest reading's), if the meter has a reading.
    pub fn current_day(&self) -> Option<i64> {
        (self.newest != i64::MIN).then_some(self.day.index)
    }

    /// Buckets of `step` in memory (the current day's bucket, the current block's quarter
    /// hours) whose interval starts in `from_ms..to_ms` and is within the horizon, oldest
    /// first. The rest is in the rollup store (`Engine::rollups` answers for all of it).
    pub fn query_current_day(&self, step: Step, from_ms: i64, to_ms: i64) -> Vec<Bucket> {
        if self.newest == i64::MIN || from_ms >= to_ms {
            return Vec::new();
        }
        let quarters = || {
            let kept = self.kept_quarters();
            let first = from_ms.div_euclid(QUARTER_HOUR_MS).max(*kept.start());
            let last = (to_ms - 1).div_euclid(QUARTER_HOUR_MS).min(*kept.end());
            self.earlier()
                .chain(std::iter::once(self.quarter))
                .filter(move |b| b.index >= first && b.index <= last)
        };
        match step {
            Step::QuarterHour => quarters().collect(),
            Step::Hour => hours_of(quarters()),
            Step::Day => {
                let (first, last) = (from_ms.div_euclid(DAY_MS), (to_ms - 1).div_euclid(DAY_MS));
                let day = self.day;
                (day.index >= first && day.index <= last)
                    .then_some(day)
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Quarter-hour numbers answered for: the horizon back from the newest (empty before
    /// the first reading).
    pub fn kept_quarters(&self) -> std::ops::RangeInclusive<i64> {
        if self.newest == i64::MIN {
            return std::ops::RangeInclusive::new(0, -1);
        }
        self.newest.saturating_sub(self.quarter_horizon - 1)..=self.newest
    }

    /// Day numbers answered for, likewise.
    pub fn kept_days(&self) -> std::ops::RangeInclusive<i64> {
        if self.newest == i64::MIN {
            return std::ops::RangeInclusive::new(0, -1);
        }
        self.day.index.saturating_sub(self.day_horizon - 1)..=self.day.index
    }

    pub(crate) fn digest(&self, hasher: &mut crate::engine::digest::DigestHasher) {
        hasher.write_i64(self.quarter_horizon);
        hasher.write_i64(self.day_horizon);
        hasher.write_i64(self.newest);
        let buckets = [self.quarter, self.day];
        for b in self.earlier().chain(buckets) {
            digest_bucket(hasher, &b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::HOUR_MS;
    use super::*;

    const T0: i64 = 1_700_000_000_000 / DAY_MS * DAY_MS;

    fn chunks(r: &MeterRollups) -> usize {
        usize::from(r.slots.is_some())
    }

    #[test]
    fn gaps_stay_gaps_and_hours_sum_quarters() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        r.add(T0, 10.0, 0.0, 100.0);
        r.add(T0 + QUARTER_HOUR_MS, 5.0, 1.0, 300.0);
        r.add(T0 + 3 * HOUR_MS, 2.0, 0.0, 50.0);
        let q = r.query_current_day(Step::QuarterHour, T0, T0 + 4 * HOUR_MS);
        assert_eq!(q.len(), 3, "empty intervals are not returned");
        let h = r.query_current_day(Step::Hour, T0, T0 + 4 * HOUR_MS);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].import_wh, h[0].export_wh), (15.0, 1.0));
        assert_eq!(
            (h[0].min_w, h[0].max_w, h[0].mean_w, h[0].count),
            (100.0, 300.0, 200.0, 2)
        );
        assert_eq!(
            r.query_current_day(Step::Day, T0, T0 + DAY_MS)[0].import_wh,
            17.0
        );
    }

    #[test]
    fn a_newer_day_seals_the_current_one_whole_and_a_late_reading_into_it_is_an_amendment() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        assert_eq!(r.add(T0 + 1000, 1.0, 0.0, 10.0), Sealing::Nothing);
        assert_eq!(r.add(T0 + 2000, 2.0, 0.0, 30.0), Sealing::Nothing);
        assert_eq!(chunks(&r), 0, "one open quarter hour: nothing allocated");
        assert_eq!(r.add(T0 + HOUR_MS, 4.0, 1.0, 50.0), Sealing::Nothing);
        assert_eq!(chunks(&r), 1, "a closed quarter hour: one chunk");
        assert_eq!(
            r.add(T0 + 3000, 0.0, 0.0, 20.0),
            Sealing::Nothing,
            "late, same day"
        );
        let Sealing::Sealed(day) = r.add(T0 + DAY_MS + 5, 8.0, 0.0, 70.0) else {
            panic!("the first reading of a newer day seals the current one");
        };
        assert_eq!(chunks(&r), 0, "sealing gives the slots up");
        assert_eq!(day.day, T0 / DAY_MS);
        assert_eq!(
            day.quarters
                .iter()
                .map(|b| (b.import_wh, b.count))
                .collect::<Vec<_>>(),
            [(3.0, 3), (4.0, 1)]
        );
        assert_eq!(
            day.day_bucket.map(|b| (b.import_wh, b.count)),
            Some((7.0, 4))
        );
        assert_eq!(r.current_day(), Some(T0 / DAY_MS + 1));
        assert_eq!(r.query_current_day(Step::Day, T0, T0 + 2 * DAY_MS).len(), 1);
        // A late reading into the sealed day: handed out, booked by the store as a ring would.
        let Sealing::Amended(amendment) = r.add(T0 + 4000, 0.0, 0.0, 90.0) else {
            panic!("a late reading into a sealed day is an amendment");
        };
        assert!(amendment.quarter && amendment.day);
        let mut stored = day.clone();
        amendment.apply(&mut stored);
        assert_eq!(
            (stored.quarters[0].count, stored.quarters[0].max_w),
            (4, 90.0)
        );
        assert_eq!(stored.day_bucket.map(|b| b.count), Some(5));
        // Into a quarter hour the day had no bucket for: a new one, in order.
        let Sealing::Amended(amendment) = r.add(T0 + 2 * QUARTER_HOUR_MS, 0.0, 0.0, 1.0) else {
            panic!("amendment");
        };
        amendment.apply(&mut stored);
        let starts: Vec<i64> = stored.quarters.iter().map(|b| b.index).collect();
        let q0 = T0 / QUARTER_HOUR_MS;
        assert_eq!(starts, [q0, q0 + 2, q0 + 4]);
    }

    #[test]
    fn beyond_both_horizons_a_late_reading_is_ignored() {
        let options = RollupOptions {
            quarter_hour_days: 1,
            day_days: 2,
        };
        let mut r = MeterRollups::new(&options);
        r.add(T0 + 3 * DAY_MS, 1.0, 0.0, 1.0);
        assert_eq!(r.add(T0, 1.0, 0.0, 1.0), Sealing::Nothing);
        let Sealing::Amended(a) = r.add(T0 + 2 * DAY_MS, 1.0, 0.0, 1.0) else {
            panic!("within the day horizon");
        };
        assert!(
            !a.quarter && a.day,
            "beyond the quarter-hour horizon, within the day's"
        );
    }

    #[test]
    fn memory_holds_one_block_and_a_day_leaves_it_in_three_parts() {
        let options = RollupOptions::default();
        let bound = if cfg!(target_pointer_width = "64") {
            1_040
        } else {
            1_032
        };
        assert_eq!(options.bytes_per_meter(), bound);
        let mut r = MeterRollups::new(&options);
        let mut parts = Vec::new();
        for q in 0..(QUARTERS_PER_DAY as i64 + 1) {
            if let Sealing::Sealed(part) = r.add(T0 + q * QUARTER_HOUR_MS, 1.0, 0.0, 10.0) {
                parts.push(part);
            }
            assert!(chunks(&r) <= 1);
        }
        // Quarter hours 0..32 and 32..64 when the next block began; 64..96 with the day's
        // bucket when the next day did.
        let shape: Vec<(usize, Option<u32>)> = parts
            .iter()
            .map(|p| (p.quarters.len(), p.day_bucket.map(|b| b.count)))
            .collect();
        assert_eq!(shape, [(32, None), (32, None), (32, Some(96))]);
        assert!(parts.iter().all(DayRecord::is_well_formed));
        // A late reading into an earlier block of today: the quarter hour is the store's,
        // the day's bucket is in memory.
        r.add(T0 + DAY_MS + 40 * QUARTER_HOUR_MS, 1.0, 0.0, 10.0);
        let Sealing::Amended(a) = r.add(T0 + DAY_MS + 60_000, 0.0, 0.0, 5.0) else {
            panic!("an amendment of the earlier block");
        };
        assert!(a.quarter && !a.day);
        assert_eq!(
            r.query_current_day(Step::Day, T0, T0 + 2 * DAY_MS)[0].count,
            3
        );
    }

    #[test]
    fn a_copy_shares_the_slots_until_one_side_writes_them() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        r.add(T0, 1.0, 0.0, 10.0);
        r.add(T0 + QUARTER_HOUR_MS, 2.0, 0.0, 20.0);
        let shared = |a: &MeterRollups, b: &MeterRollups| match (&a.slots, &b.slots) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        let copy = r.clone();
        assert!(shared(&r, &copy));
        let before = copy.query_current_day(Step::QuarterHour, T0, T0 + DAY_MS);
        r.add(T0 + QUARTER_HOUR_MS + 1000, 1.0, 0.0, 30.0);
        assert!(shared(&r, &copy), "the newest quarter hour is inline");
        r.add(T0 + 2000, 0.0, 0.0, 40.0);
        assert!(!shared(&r, &copy), "a late reading writes a slot: copied");
        assert_eq!(
            copy.query_current_day(Step::QuarterHour, T0, T0 + DAY_MS),
            before
        );
        assert_eq!(
            r.query_current_day(Step::QuarterHour, T0, T0 + QUARTER_HOUR_MS)[0].count,
            2
        );
    }

    #[test]
    fn a_snapshot_round_trip_keeps_answers_and_digest_and_goes_on_alike() {
        let mut r = MeterRollups::new(&RollupOptions::default());
        for (t, p) in [(0, 10.0), (HOUR_MS, 30.0), (5000, 20.0), (2 * HOUR_MS, 1.0)] {
            r.add(T0 + t, 1.0, 0.0, p);
        }
        let bytes = postcard::to_allocvec(&r).expect("serialise");
        let back: MeterRollups = postcard::from_bytes(&bytes).expect("deserialise");
        for step in [Step::QuarterHour, Step::Hour, Step::Day] {
            assert_eq!(
                back.query_current_day(step, T0, T0 + DAY_MS),
                r.query_current_day(step, T0, T0 + DAY_MS)
            );
        }
        let digest = |r: &MeterRollups| {
            let mut h = crate::engine::digest::DigestHasher::default();
            r.digest(&mut h);
            h.finish()
        };
        assert_eq!(digest(&back), digest(&r));
        let (mut a, mut b) = (r, back);
        assert_eq!(
            a.add(T0 + DAY_MS, 1.0, 0.0, 1.0),
            b.add(T0 + DAY_MS, 1.0, 0.0, 1.0)
        );
        assert_eq!(digest(&a), digest(&b));
        // A bucket outside the current day is refused.
        let mut wire: MeterRollupsWire = postcard::from_bytes(&bytes).expect("wire");
        wire.earlier.push(Bucket::empty(wire.newest + 200));
        let bytes = postcard::to_allocvec(&wire).expect("serialise");
        assert!(postcard::from_bytes::<MeterRollups>(&bytes).is_err());
    }
}
