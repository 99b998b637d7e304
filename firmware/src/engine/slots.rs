//! Entities numbered in creation order: the slot an entity keeps for the life of the
//! image, and the fast hash map both the image and the planner use. Depends on nothing
//! else in the engine.

use std::collections::HashMap;

use gridlog_common::id::EntityId;

/// A hash map with a fast, randomly seeded hasher (foldhash). Entity ids are short keys
/// looked up several times per reading; SipHash was a tenth of the processor's time.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// An entity's place in the image: the index of its slot, which it keeps for the life of
/// the image (entities are never removed). The processor's planner numbers new entities
/// the same way (both keep a [`Slots`]), so the applier finds an entity without hashing
/// its id.
pub(crate) type EntitySlot = u32;
/// Values of entities numbered in creation order: an id → slot map and the values by slot.
/// The image and the planner each keep one and add entities in the same order, so a slot
/// names the same entity in both.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    slot_of: FastMap<EntityId, EntitySlot>,
    values: Vec<T>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slot_of: FastMap::default(),
            values: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    /// The slot of entity `id`, if it has one.
    pub(crate) fn slot(&self, id: &str) -> Option<EntitySlot> {
        self.slot_of.get(id).copied()
    }

    /// The slot the next new entity gets.
    pub(crate) fn next_slot(&self) -> EntitySlot {
        self.values.len() as EntitySlot
    }

    pub(crate) fn get(&self, slot: EntitySlot) -> Option<&T> {
        self.values.get(slot as usize)
    }

    pub(crate) fn get_mut(&mut self, slot: EntitySlot) -> Option<&mut T> {
        self.values.get_mut(slot as usize)
    }

    /// Adds entity `id` in the next slot; `None` (nothing added) if every slot number is
    /// taken (never near: memory runs out long before).
    pub(crate) fn push(&mut self, id: EntityId, value: T) -> Option<&mut T> {
        let slot = EntitySlot::try_from(self.values.len()).ok()?;
        self.slot_of.insert(id, slot);
        self.values.push(value);
        self.values.last_mut()
    }

    /// Forgets entity `id` if it is the newest (taking back its [`Slots::push`]).
    pub(crate) fn forget_newest(&mut self, id: &str) {
        if self
            .slot(id)
            .is_some_and(|slot| slot + 1 == self.next_slot())
        {
            self.slot_of.remove(id);
            self.values.pop();
        }
    }

    /// Every value, by slot.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.values.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}
