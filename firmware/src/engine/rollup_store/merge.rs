//! From a meter's rings to spill records, and from spill records plus rings back to the
//! answer the rings alone would give, bit for bit: the two halves of moving sealed days out
//! of memory without changing any rollup a user can query.
//!
//! A meter's days before a **boundary** day are answered from stored records, its days from
//! the boundary on from the rings; the rings' horizons ([`MeterRollups::kept_quarters`],
//! [`MeterRollups::kept_days`]) apply to both, so a stored interval the rings would have
//! overwritten by now is not answered either. Hours are summed from quarter hours by the
//! one function the rings use ([`hours_of`]), in the same order, so their floats agree.

use std::collections::BTreeMap;
use std::ops::Range;

use super::format::{DayRecord, QUARTERS_PER_DAY};
use crate::engine::rollup::{hours_of, Bucket, MeterRollups, Step, DAY_MS};

/// The meter's intervals of `days` held by its rings, as spill records (oldest first; a
/// day with no interval has no record).
pub fn day_records(rollups: &MeterRollups, days: Range<i64>) -> Vec<DayRecord> {
    let (from_ms, to_ms) = (
        days.start.saturating_mul(DAY_MS),
        days.end.saturating_mul(DAY_MS),
    );
    let mut by_day: BTreeMap<i64, DayRecord> = BTreeMap::new();
    let record = |day: i64| DayRecord {
        day,
        day_bucket: None,
        quarters: Vec::new(),
    };
    for bucket in rollups.query(Step::Day, from_ms, to_ms) {
        by_day
            .entry(bucket.index)
            .or_insert_with(|| record(bucket.index))
            .day_bucket = Some(bucket);
    }
    for bucket in rollups.query(Step::QuarterHour, from_ms, to_ms) {
        let day = bucket.index.div_euclid(QUARTERS_PER_DAY as i64);
        by_day
            .entry(day)
            .or_insert_with(|| record(day))
            .quarters
            .push(bucket);
    }
    by_day.into_values().collect()
}

/// The answer to a rollup query of `step` over `from_ms..to_ms` when the meter's days before
/// `boundary_day` are `stored` (oldest first, as `rollup_store::read_meter` returns them)
/// and the rest are in `rollups`.
pub fn answer(
    stored: &[DayRecord],
    rollups: &MeterRollups,
    boundary_day: i64,
    step: Step,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Bucket> {
    let stored_quarters = || stored.iter().flat_map(|r| r.quarters.iter().copied());
    let quarters = || {
        joined(
            stored_quarters(),
            rollups,
            Step::QuarterHour,
            boundary_day,
            from_ms,
            to_ms,
        )
    };
    match step {
        Step::QuarterHour => quarters(),
        Step::Hour => hours_of(quarters()),
        Step::Day => {
            let stored_days = stored.iter().filter_map(|r| r.day_bucket);
            joined(
                stored_days,
                rollups,
                Step::Day,
                boundary_day,
                from_ms,
                to_ms,
            )
        }
    }
}

/// Stored buckets of `step` (quarter hours or days) before `boundary_day`, within the
/// rings' horizon and the query, then the rings' answer from `boundary_day` on.
fn joined(
    stored: impl Iterator<Item = Bucket>,
    rollups: &MeterRollups,
    step: Step,
    boundary_day: i64,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Bucket> {
    let (kept, boundary) = match step {
        Step::Day => (rollups.kept_days(), boundary_day),
        _ => (
            rollups.kept_quarters(),
            boundary_day.saturating_mul(QUARTERS_PER_DAY as i64),
        ),
    };
    let period_ms = step.millis();
    let first = from_ms.div_euclid(period_ms).max(*kept.start());
    let last = (to_ms - 1).div_euclid(period_ms).min(*kept.end());
    let mut out: Vec<Bucket> = stored
        .filter(|b| b.index >= first && b.index <= last && b.index < boundary)
        .collect();
    out.extend(rollups.query(step, from_ms.max(boundary.saturating_mul(period_ms)), to_ms));
    out
}
