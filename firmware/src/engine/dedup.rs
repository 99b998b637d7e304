//! Recent client command ids, for idempotent retries (a retried request is answered as a
//! replay and stores nothing). Kept by the image (with each id's offset, stored in
//! snapshots) and by the planner (to know a retry before it is applied).

use std::collections::VecDeque;

use gridlog_common::id::CommandId;

use super::slots::FastMap;

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
