//! A meter's rollups, whole: the days the rollup store holds, the days and amendments the
//! image queued for it, and the current day in memory, joined into the answer one ring of
//! every interval would give (`rollup_store::merge::answer`).

use std::collections::BTreeMap;

use super::rollup::{Bucket, MeterRollups, Step, DAY_MS, QUARTERS_PER_DAY};
use super::rollup_store::{self, StoreError};
use super::sealed::overlay;
use super::shared::Engine;
use super::state::EntityState;

impl Engine {
    /// Meter `id`'s buckets of `step` whose interval starts in `from_ms..to_ms` and is
    /// within the rollup horizons, oldest first; `None` if `id` is not a meter. Reads the
    /// rollup store for days before the meter's current one (a few small reads per spill
    /// whose days overlap: see BENCHMARKS, "rollup store"), so call it off an async runtime's
    /// threads.
    pub fn rollups(
        &self,
        id: &str,
        step: Step,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<Bucket>>, StoreError> {
        let inner = &self.inner;
        // The list of spills and the image's queue from one moment (lock order: store,
        // then image), so every stored or queued record is counted exactly once.
        inner.rollups.with_spills(|spills| {
            let (rollups, queued) = {
                let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
                match image.entity(id) {
                    Some(e) if matches!(e.state, EntityState::Meter(_)) => {
                        (e.rollups.clone(), image.sealed.of_meter(id))
                    }
                    _ => return Ok(None),
                }
            };
            let Some(rollups) = rollups else {
                return Ok(Some(Vec::new()));
            };
            let Some(current_day) = rollups.current_day() else {
                return Ok(Some(Vec::new()));
            };
            let days = stored_days_asked(&rollups, current_day, from_ms, to_ms);
            // (The current day's earlier blocks are stored too.)
            let mut stored: BTreeMap<i64, _> = rollup_store::read_meter(spills, id, days)?
                .into_iter()
                .map(|record| (record.day, record))
                .collect();
            overlay(&mut stored, queued.iter().map(|e| &**e));
            let stored: Vec<_> = stored.into_values().collect();
            Ok(Some(rollup_store::merge::answer(
                &stored, &rollups, step, from_ms, to_ms,
            )))
        })
    }
}

/// The days up to `current_day` (its earlier blocks are stored) a query of `from_ms..to_ms`
/// may answer from stored records: within the query and within either horizon.
fn stored_days_asked(
    rollups: &MeterRollups,
    current_day: i64,
    from_ms: i64,
    to_ms: i64,
) -> std::ops::Range<i64> {
    let oldest_kept = (*rollups.kept_days().start()).min(
        rollups
            .kept_quarters()
            .start()
            .div_euclid(QUARTERS_PER_DAY as i64),
    );
    let first = from_ms.div_euclid(DAY_MS).max(oldest_kept);
    let end = (to_ms.saturating_sub(1).div_euclid(DAY_MS) + 1).min(current_day + 1);
    first..end.max(first)
}
