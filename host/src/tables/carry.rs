//! Where each meter's energy baseline stands between segments: the state a segment's
//! `intervals` need from the segments before it (a reading's energy is the delta to the
//! meter's previous reading, which may lie in an earlier segment).
//!
//! Built by folding the history from its first offset with the engine's own rule
//! (`rollup::Baseline`), so every writer that folds the same history books the same
//! watt-hours as the gateway's rollups, and the same segment gives the same bytes.

use std::collections::BTreeMap;

use gridlog_common::domain::Event;
use gridlog_common::id::EntityId;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::rollup::Baseline;

/// Each meter's baseline at `next_offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Carry {
    /// The offset the baselines stand before.
    pub next_offset: Offset,
    baselines: BTreeMap<EntityId, Baseline>,
}

impl Default for Carry {
    fn default() -> Self {
        Carry::new()
    }
}

impl Carry {
    /// The carry before the first event of a history.
    pub fn new() -> Carry {
        Carry {
            next_offset: FIRST_OFFSET,
            baselines: BTreeMap::new(),
        }
    }

    /// Follows one event of `entity`: a reading's energy (import, export) as the engine's
    /// rollups book it, `None` for any other event (wraps and replacements move the
    /// baseline).
    pub fn follow(&mut self, entity: &EntityId, event: &Event) -> Option<(f64, f64)> {
        match event {
            Event::ReadingRecorded(r) => Some(self.baseline(entity).book(r)),
            Event::RegisterRolledOver { .. } | Event::MeterReplaced { .. } => {
                self.baseline(entity).follow(event);
                None
            }
            _ => None,
        }
    }

    fn baseline(&mut self, entity: &EntityId) -> &mut Baseline {
        if !self.baselines.contains_key(entity) {
            self.baselines.insert(entity.clone(), Baseline::default());
        }
        self.baselines.get_mut(entity).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridlog_common::domain::Reading;

    fn reading(time_ms: i64, import_wh: f64) -> Event {
        Event::ReadingRecorded(Reading {
            time_ms,
            import_wh,
            export_wh: 0.0,
            power_w: 0.0,
            voltage_v: None,
            current_a: None,
            reactive_power_var: None,
        })
    }

    #[test]
    fn a_carry_books_deltas_across_the_cut() {
        let m = EntityId::new("m1").unwrap();
        let mut carry = Carry::new();
        assert_eq!(carry.follow(&m, &reading(1_000, 10.0)), Some((0.0, 0.0)));
        let mut back = carry.clone();
        assert_eq!(back.follow(&m, &reading(2_000, 12.5)), Some((2.5, 0.0)));
        assert_eq!(
            back.follow(&m, &reading(1_500, 11.0)),
            Some((0.0, 0.0)),
            "late"
        );
    }
}
