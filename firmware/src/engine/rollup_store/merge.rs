//! From stored day records plus a meter's current day back to the answer one ring of every
//! interval would give, bit for bit: how sealed days leave memory without changing any
//! rollup a user can query.
//!
//! A meter's quarter hours before its current block, and its days before its current day,
//! are answered from stored records, the rest from memory; the horizons ([`MeterRollups::kept_quarters`],
//! [`MeterRollups::kept_days`], counted back from the meter's newest interval) apply to
//! both, so a stored interval a ring of every interval would have overwritten by now is not
//! answered either. Hours are summed from quarter hours by the one function memory uses
//! ([`hours_of`]), in the same order, so their floats agree.

use super::format::DayRecord;
use crate::engine::rollup::{hours_of, Bucket, MeterRollups, Step};

/// The answer to a rollup query of `step` over `from_ms..to_ms` when what is not in
/// `rollups` (the quarter hours before its current block, the days before its current day)
/// is `stored` (oldest first, as `rollup_store::read_meter` returns them, the queue laid
/// over them).
pub fn answer(
    stored: &[DayRecord],
    rollups: &MeterRollups,
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
            from_ms,
            to_ms,
        )
    };
    match step {
        Step::QuarterHour => quarters(),
        Step::Hour => hours_of(quarters()),
        Step::Day => {
            let stored_days = stored.iter().filter_map(|r| r.day_bucket);
            joined(stored_days, rollups, Step::Day, from_ms, to_ms)
        }
    }
}

/// Stored buckets of `step` (quarter hours or days) before what memory holds, within the
/// horizon and the query, then memory's answer.
fn joined(
    stored: impl Iterator<Item = Bucket>,
    rollups: &MeterRollups,
    step: Step,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Bucket> {
    let (kept, boundary) = match step {
        Step::Day => (
            rollups.kept_days(),
            rollups.current_day().unwrap_or(i64::MIN),
        ),
        _ => (rollups.kept_quarters(), rollups.first_in_memory()),
    };
    let period_ms = step.millis();
    let first = from_ms.div_euclid(period_ms).max(*kept.start());
    let last = (to_ms - 1).div_euclid(period_ms).min(*kept.end());
    let mut out: Vec<Bucket> = stored
        .filter(|b| b.index >= first && b.index <= last && b.index < boundary)
        .collect();
    out.extend(rollups.query_current_day(
        step,
        from_ms.max(boundary.saturating_mul(period_ms)),
        to_ms,
    ));
    out
}
