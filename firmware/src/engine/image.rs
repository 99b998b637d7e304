//! The in-memory image: the current state of every meter and asset, derived only from
//! events ([`Image::apply`]), plus the read models kept beside it (rollups, site totals,
//! per-entity offset checkpoints, recent command ids, recent readings' fingerprints).
//!
//! The image is changed only by applying durable events: by the processor after each
//! commit, and at start-up by replay. Same events in the same order ⇒ same image ⇒ same
//! [`Image::digest`].

use std::sync::Arc;

use gridlog_common::domain::{Event, MeterKind, Reading, StoredEvent};
use gridlog_common::id::{CommandId, EntityId};
use gridlog_common::Offset;

use super::dedup::{RecentCommandIds, RecentReadings, RECENT_READINGS_DEFAULT};
use super::digest::DigestHasher;
use super::rollup::v4::{MeterRollupsV4, RingError};
use super::rollup::{Baseline, MeterRollups, RollupDigest, RollupOptions, Sealing, DAY_MS};
use super::sealed::{Sealed, SealedEntry, SealedQueue};
use super::slots::{EntitySlot, Slots};
use super::state::{reading_fingerprint, AssetState, EntityState, MeterStateV3, SystemState};

/// Every this many events of an entity, the image remembers the offset, so entity queries
/// start reading the log near the asked-for sequence number.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 64;
/// Most checkpoints kept per entity (16 bytes each): beyond it, older ones are thinned out
/// (see [`EntityIndex::note_checkpoint`]), so an entity's index stays at most 512 bytes
/// however long it lives.
pub const CHECKPOINTS_MAX: usize = 32;

/// Read-model bookkeeping of one entity, beside its state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EntityIndex {
    /// (seq, offset) of some of its events, oldest first: seq 1, then every
    /// [`CHECKPOINT_EVERY_EVENTS`] events among the newest, ever sparser among older ones;
    /// at most [`CHECKPOINTS_MAX`].
    pub checkpoints: Vec<(u64, Offset)>,
    /// Offset of the newest event.
    pub last_offset: Offset,
}

impl EntityIndex {
    /// Remembers that event `seq` is at `offset`. At [`CHECKPOINTS_MAX`] it first forgets
    /// one: never the first (seq 1) or the newest, but the one whose gap, once merged with
    /// its neighbours', is smallest relative to its age (`gap / (newest - end + every)`;
    /// the oldest of equals). So gaps grow with age: a checkpoint's gap to the next is never
    /// more than `max(every, seq - next)`, and a query for events `n` events old starts
    /// reading at most `max(every, n)` of the entity's events before them. Integer
    /// arithmetic: live processing and every replay forget the same ones.
    pub(crate) fn note_checkpoint(&mut self, seq: u64, offset: Offset) {
        while self.checkpoints.len() >= CHECKPOINTS_MAX.max(3) {
            let cps = &self.checkpoints;
            let merged = |i: usize| {
                let gap = u128::from(cps[i + 1].0.saturating_sub(cps[i - 1].0));
                let age = u128::from(seq.saturating_sub(cps[i + 1].0) + CHECKPOINT_EVERY_EVENTS);
                (gap, age)
            };
            let mut victim = 1;
            for i in 2..cps.len() - 1 {
                let ((gap, age), (best_gap, best_age)) = (merged(i), merged(victim));
                // gap / age < best_gap / best_age, without division.
                if gap * best_age < best_gap * age {
                    victim = i;
                }
            }
            self.checkpoints.remove(victim);
        }
        self.checkpoints.push((seq, offset));
    }
}

/// An entity in the image.
// `repr(C)`: the id first, next to the state the applier writes, not wherever the compiler
// would put it (a cache line of its own, missed on every check).
#[repr(C)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Entity {
    /// Its id, beside its state, so the applier checks it has the right entity while
    /// touching memory it touches anyway. Not stored (a snapshot stores each id once, with
    /// its entity); set when the entity is put in the image.
    #[serde(skip, default = "unnamed")]
    id: EntityId,
    /// Its state.
    pub state: EntityState,
    /// Where its events are.
    pub index: EntityIndex,
    /// Rollups, for meters that have reported (inline: their newest buckets are written
    /// by every reading).
    pub rollups: Option<MeterRollups>,
    /// Energy delta source for rollups: the previous reading's registers, adjusted for wraps.
    prev_registers: Baseline,
}

/// The id of an entity not yet put in an image.
fn unnamed() -> EntityId {
    EntityId::new("_").expect("`_` is a valid id")
}

/// Site energy totals by flow, since start of the log and for the current UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flows {
    /// Bought from the grid.
    pub grid_import_wh: f64,
    /// Sold to the grid.
    pub grid_export_wh: f64,
    /// Produced by PV.
    pub pv_wh: f64,
    /// Charged into batteries.
    pub battery_charge_wh: f64,
    /// Discharged from batteries.
    pub battery_discharge_wh: f64,
    /// Charged into vehicles.
    pub ev_wh: f64,
    /// Consumed by the site: grid import − export + PV + discharge − charge.
    pub consumption_wh: f64,
}

impl Flows {
    fn add(&mut self, kind: MeterKind, import_wh: f64, export_wh: f64) {
        match kind {
            MeterKind::Grid => {
                self.grid_import_wh += import_wh;
                self.grid_export_wh += export_wh;
                self.consumption_wh += import_wh - export_wh;
            }
            MeterKind::Pv => {
                self.pv_wh += export_wh;
                self.consumption_wh += export_wh;
            }
            MeterKind::Battery => {
                self.battery_charge_wh += import_wh;
                self.battery_discharge_wh += export_wh;
                self.consumption_wh += export_wh - import_wh;
            }
            MeterKind::Ev => self.ev_wh += import_wh,
            MeterKind::Load | MeterKind::Submeter => {}
        }
    }
}

/// Site totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteTotals {
    /// Since the beginning of the log.
    pub all_time: Flows,
    /// For the UTC day of `day_index`.
    pub today: Flows,
    /// UTC day number (days since 1970-01-01) of `today`.
    pub day_index: i64,
}

/// What the digest reads of one entity: its state and its rollups (of any snapshot
/// version's shape), its offset checkpoints, its rollup baseline.
pub(crate) struct DigestOf<'a, S, R> {
    state: &'a S,
    checkpoints: &'a [(u64, Offset)],
    prev_registers: &'a Baseline,
    rollups: Option<&'a R>,
}

impl Entity {
    fn digest_of(&self) -> DigestOf<'_, EntityState, MeterRollups> {
        DigestOf {
            state: &self.state,
            checkpoints: &self.index.checkpoints,
            prev_registers: &self.prev_registers,
            rollups: self.rollups.as_ref(),
        }
    }
}

/// A digest over entities given in id order, the remembered command ids in order and (from
/// snapshot format 4) the remembered readings in order: everything of the image a restart
/// must bring back (from format 5 a meter's rollups are its current day; the days it
/// sealed are the rollup store's, checked by their CRCs, and its queue's), so a replay or a snapshot that lost any of it (an entity's rollup baseline, the
/// ids and fingerprints that make retries duplicates) shows as a different digest at once,
/// not as a wrong answer later.
pub(crate) fn digest_of<'a, S: serde::Serialize + 'a, R: RollupDigest + 'a>(
    next_offset: Offset,
    entities: impl Iterator<Item = (&'a EntityId, DigestOf<'a, S, R>)>,
    site: &SiteTotals,
    command_ids: impl Iterator<Item = (&'a CommandId, Offset)>,
    readings: Option<impl Iterator<Item = (&'a EntityId, i64, u64)>>,
) -> u64 {
    let mut h = DigestHasher::default();
    h.write_u64(next_offset);
    for (id, offset) in command_ids {
        h.write(id.as_str().as_bytes());
        h.write_u64(offset);
    }
    // Each state and index by its postcard bytes (floats as their bits): deterministic,
    // and far cheaper than formatting.
    let mut buf = Vec::new();
    for (id, entity) in entities {
        h.write(id.as_str().as_bytes());
        buf.clear();
        buf = postcard::to_extend(
            &(entity.state, entity.checkpoints, entity.prev_registers),
            buf,
        )
        .unwrap_or_default();
        h.write(&buf);
        if let Some(rollups) = entity.rollups {
            rollups.digest(&mut h);
        }
    }
    h.write(&postcard::to_allocvec(site).unwrap_or_default());
    for (id, time_ms, fingerprint) in readings.into_iter().flatten() {
        h.write(id.as_str().as_bytes());
        h.write_u64(time_ms as u64);
        h.write_u64(fingerprint);
    }
    h.finish()
}

/// The image's parts as captured for a snapshot (entities shared, not copied).
#[derive(Debug)]
pub(crate) struct ImageCapture {
    pub(crate) next_offset: Offset,
    pub(crate) events: u64,
    pub(crate) rollup_options: RollupOptions,
    pub(crate) site: SiteTotals,
    pub(crate) command_ids: Vec<(CommandId, Offset)>,
    pub(crate) readings: Vec<SnapshotReading>,
    pub(crate) entities: Vec<(EntityId, Arc<Entity>)>,
    pub(crate) sealed: Vec<Arc<SealedEntry>>,
    pub(crate) rollups_stored_below: Offset,
}

/// A remembered reading as a snapshot stores it: (index of its meter in the snapshot's
/// entities, measurement time, fingerprint).
pub(crate) type SnapshotReading = (u32, i64, u64);

impl ImageCapture {
    /// The digest of the captured image.
    pub(crate) fn digest(&self) -> u64 {
        let entities = &self.entities;
        digest_of(
            self.next_offset,
            entities.iter().map(|(id, e)| (id, e.digest_of())),
            &self.site,
            self.command_ids.iter().map(|(id, offset)| (id, *offset)),
            Some(remembered_by_id(&self.readings, |i| {
                entities.get(i).map(|e| &e.0)
            })),
        )
    }
}

/// Remembered readings with their meter's id (`id_at`: the id at an entity index); one
/// whose index names no entity is left out (the digest then differs).
fn remembered_by_id<'a>(
    readings: &'a [SnapshotReading],
    id_at: impl Fn(usize) -> Option<&'a EntityId> + 'a,
) -> impl Iterator<Item = (&'a EntityId, i64, u64)> + 'a {
    readings
        .iter()
        .filter_map(move |&(i, t, f)| id_at(i as usize).map(|id| (id, t, f)))
}

/// The image's parts as a snapshot stores them.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ImageParts {
    pub(crate) next_offset: Offset,
    pub(crate) events: u64,
    pub(crate) rollup_options: RollupOptions,
    pub(crate) site: SiteTotals,
    pub(crate) command_ids: Vec<(CommandId, Offset)>,
    pub(crate) readings: Vec<SnapshotReading>,
    pub(crate) entities: Vec<(EntityId, Entity)>,
    /// The image's queue for the rollup store (format 5).
    pub(crate) sealed: Vec<SealedEntry>,
    /// The rollup store's coverage the queue assumed (format 5): a store that covers less
    /// lacks days this image does not hold.
    pub(crate) rollups_stored_below: Offset,
}

/// The same fields as [`ImageParts`], serialised from a capture without copying entities.
#[derive(serde::Serialize)]
pub(crate) struct ImagePartsRef<'a> {
    pub(crate) next_offset: Offset,
    pub(crate) events: u64,
    pub(crate) rollup_options: RollupOptions,
    pub(crate) site: SiteTotals,
    pub(crate) command_ids: &'a [(CommandId, Offset)],
    pub(crate) readings: &'a [SnapshotReading],
    pub(crate) entities: Vec<(&'a EntityId, &'a Entity)>,
    pub(crate) sealed: Vec<&'a SealedEntry>,
    pub(crate) rollups_stored_below: Offset,
}
/// An entity's state as snapshot format 3 stored it: a meter without its reading times.
// The shape of `EntityState` then (meters inline), which postcard must read as it was.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum EntityStateV3 {
    Meter(MeterStateV3),
    Asset(Box<AssetState>),
    System(Box<SystemState>),
}

/// An entity as snapshot format 3 stored it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EntityV3 {
    state: EntityStateV3,
    index: EntityIndex,
    rollups: Option<MeterRollupsV4>,
    prev_registers: Baseline,
}

/// The image's parts as snapshot format 3 stored them: no remembered readings, meters
/// without reading times.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ImagePartsV3 {
    next_offset: Offset,
    events: u64,
    rollup_options: RollupOptions,
    site: SiteTotals,
    command_ids: Vec<(CommandId, Offset)>,
    entities: Vec<(EntityId, EntityV3)>,
}

impl<'a, S, R> DigestOf<'a, S, R> {
    /// What the digest reads of an entity stored in an older snapshot format's shape.
    fn of_parts(
        state: &'a S,
        index: &'a EntityIndex,
        prev_registers: &'a Baseline,
        rollups: Option<&'a R>,
    ) -> Self {
        DigestOf {
            state,
            checkpoints: &index.checkpoints,
            prev_registers,
            rollups,
        }
    }
}

impl ImagePartsV3 {
    /// The digest format 3 computed over these parts.
    pub(crate) fn digest(&self) -> u64 {
        let entities = self.entities.iter().map(|(id, e)| {
            let of = DigestOf::of_parts(&e.state, &e.index, &e.prev_registers, e.rollups.as_ref());
            (id, of)
        });
        let command_ids = self.command_ids.iter().map(|(id, offset)| (id, *offset));
        let no_readings: Option<std::iter::Empty<(&EntityId, i64, u64)>> = None;
        digest_of(
            self.next_offset,
            entities,
            &self.site,
            command_ids,
            no_readings,
        )
    }

    /// The parts in format 4's shape: each meter's reading times before its newest reading
    /// forgotten (see `MeterState`'s `From<MeterStateV3>`), no remembered readings.
    pub(crate) fn upgrade(self) -> ImagePartsV4 {
        let entities = self.entities.into_iter().map(|(id, e)| {
            let state = match e.state {
                EntityStateV3::Meter(m) => EntityState::Meter(m.into()),
                EntityStateV3::Asset(a) => EntityState::Asset(a),
                EntityStateV3::System(s) => EntityState::System(s),
            };
            let entity = EntityV4 {
                state,
                index: e.index,
                rollups: e.rollups,
                prev_registers: e.prev_registers,
            };
            (id, entity)
        });
        ImagePartsV4 {
            next_offset: self.next_offset,
            events: self.events,
            rollup_options: self.rollup_options,
            site: self.site,
            command_ids: self.command_ids,
            readings: Vec::new(),
            entities: entities.collect(),
        }
    }
}

/// An entity as snapshot format 4 stored it: its rollups a ring of every interval.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EntityV4 {
    state: EntityState,
    index: EntityIndex,
    rollups: Option<MeterRollupsV4>,
    prev_registers: Baseline,
}

/// The image's parts as snapshot format 4 stored them: every meter's rollups in memory,
/// no queue for the rollup store.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ImagePartsV4 {
    next_offset: Offset,
    events: u64,
    rollup_options: RollupOptions,
    site: SiteTotals,
    command_ids: Vec<(CommandId, Offset)>,
    readings: Vec<SnapshotReading>,
    entities: Vec<(EntityId, EntityV4)>,
}

impl ImagePartsV4 {
    /// The digest format 4 computed over these parts.
    pub(crate) fn digest(&self) -> u64 {
        let entities = &self.entities;
        digest_of(
            self.next_offset,
            entities.iter().map(|(id, e)| {
                let of =
                    DigestOf::of_parts(&e.state, &e.index, &e.prev_registers, e.rollups.as_ref());
                (id, of)
            }),
            &self.site,
            self.command_ids.iter().map(|(id, offset)| (id, *offset)),
            Some(remembered_by_id(&self.readings, |i| {
                entities.get(i).map(|e| &e.0)
            })),
        )
    }

    /// The parts in today's shape: each meter's current day stays in memory, its older
    /// days go to the queue for the rollup store (as sealed by the snapshot's last event).
    pub(crate) fn upgrade(self) -> Result<ImageParts, RingError> {
        let mut sealed = Vec::new();
        let made_by = self.next_offset.saturating_sub(1);
        let mut entities = Vec::with_capacity(self.entities.len());
        for (id, e) in self.entities {
            let rollups = match e.rollups {
                Some(v4) => {
                    let (rollups, days) = v4.upgrade()?;
                    sealed.extend(days.into_iter().map(|record| SealedEntry {
                        offset: made_by,
                        meter: id.clone(),
                        sealed: Sealed::Day(record),
                    }));
                    Some(rollups)
                }
                None => None,
            };
            let entity = Entity {
                id: unnamed(),
                state: e.state,
                index: e.index,
                rollups,
                prev_registers: e.prev_registers,
            };
            entities.push((id, entity));
        }
        Ok(ImageParts {
            next_offset: self.next_offset,
            events: self.events,
            rollup_options: self.rollup_options,
            site: self.site,
            command_ids: self.command_ids,
            readings: self.readings,
            entities,
            sealed,
            rollups_stored_below: 0,
        })
    }
}

/// How many events ahead [`Image::apply_all`] starts loading an entity into the cache:
/// enough for the load to arrive before the event is applied, with several under way.
const PREFETCH_AHEAD_EVENTS: usize = 8;
/// The whole image.
#[derive(Debug, Default)]
pub struct Image {
    /// Every entity by slot, behind an `Arc`: a snapshot holds clones of these pointers
    /// while it is written, and `apply` copies an entity only if a snapshot still holds it.
    slots: Slots<Arc<Entity>>,
    pub(crate) site: SiteTotals,
    pub(crate) rollup_options: RollupOptions,
    /// Recent client command ids with the offset of their first event.
    pub(crate) command_ids: RecentCommandIds<Offset>,
    /// Fingerprints of the most recent readings by (meter slot, measurement time).
    pub(crate) readings: RecentReadings,
    /// Days meters sealed and amendments, until the rollup store holds them.
    pub(crate) sealed: SealedQueue,
    /// One past the newest applied offset.
    pub(crate) next_offset: Offset,
    /// Events applied.
    pub(crate) events: u64,
}

impl Image {
    /// An empty image.
    pub fn new(rollup_options: RollupOptions) -> Image {
        Image {
            rollup_options,
            next_offset: gridlog_common::FIRST_OFFSET,
            ..Image::default()
        }
    }

    /// Every entity, in the order they were created.
    pub fn entities(&self) -> impl Iterator<Item = (&EntityId, &Entity)> {
        self.slots.values().map(|e| (&e.id, &**e))
    }

    /// State of one entity.
    pub fn entity(&self, id: &str) -> Option<&Entity> {
        let slot = self.slots.slot(id)?;
        self.slots.get(slot).map(|e| &**e)
    }

    /// Applies one durable event at `offset`.
    pub fn apply(&mut self, offset: Offset, stored: &StoredEvent) {
        let slot = self.slot(stored.entity.as_str());
        self.apply_in(slot, offset, stored);
    }

    /// Applies durable events in order, each to the entity the caller expects in the slot
    /// of the same position in `slots` (see [`Image::apply_at_slot`]), starting to load the
    /// entity a few events ahead into the cache so their misses overlap.
    pub(crate) fn apply_all<'a>(
        &mut self,
        slots: &[EntitySlot],
        events: impl IntoIterator<Item = (Offset, &'a StoredEvent)>,
    ) {
        for (i, ((offset, event), &slot)) in events.into_iter().zip(slots).enumerate() {
            let ahead = slots
                .get(i + PREFETCH_AHEAD_EVENTS)
                .and_then(|&s| self.slots.get(s));
            if let Some(entity) = ahead {
                // From the `Arc`'s counts, which `make_mut` reads, to the entity's end.
                crate::hints::prefetch(&**entity, 2 * std::mem::size_of::<usize>());
            }
            self.apply_at_slot(slot, offset, event);
        }
    }

    /// [`Image::apply`] for an event whose entity the caller expects in `slot` (or, for an
    /// entity's first event, to be created there): no hashing of its id. A wrong guess is
    /// found (the slot holds another id) and falls back to the lookup by id.
    pub(crate) fn apply_at_slot(&mut self, slot: EntitySlot, offset: Offset, stored: &StoredEvent) {
        let slot = match self.slots.get(slot) {
            Some(entity) if entity.id == stored.entity => Some(slot),
            _ => self.slot(stored.entity.as_str()),
        };
        self.apply_in(slot, offset, stored);
    }

    /// The slot of entity `id`, if the image holds it.
    pub(crate) fn slot(&self, id: &str) -> Option<EntitySlot> {
        self.slots.slot(id)
    }

    /// Applies `stored` to the entity in `slot`, or creates it (`None`: not in the image).
    fn apply_in(&mut self, slot: Option<EntitySlot>, offset: Offset, stored: &StoredEvent) {
        self.events += 1;
        self.next_offset = offset + 1;
        if let Some(id) = &stored.command_id {
            self.command_ids.insert(id.clone(), offset);
        }
        let rollup_options = self.rollup_options;
        // The entity's slot: its own, or the next one if this event creates it.
        let at = slot
            .filter(|&slot| self.slots.get(slot).is_some())
            .unwrap_or(self.slots.next_slot());
        let entity = match slot.and_then(|slot| self.slots.get_mut(slot)) {
            Some(entity) => {
                let entity = Arc::make_mut(entity);
                entity.state.advance(stored);
                entity
            }
            None => {
                let Some(state) = EntityState::create(stored) else {
                    return;
                };
                let entity = Arc::new(Entity {
                    id: stored.entity.clone(),
                    state,
                    index: EntityIndex::default(),
                    rollups: None,
                    prev_registers: Baseline::default(),
                });
                let Some(entity) = self.slots.push(stored.entity.clone(), entity) else {
                    return;
                };
                Arc::make_mut(entity)
            }
        };
        if stored.seq % CHECKPOINT_EVERY_EVENTS == 1 {
            entity.index.note_checkpoint(stored.seq, offset);
        }
        entity.index.last_offset = offset;
        let EntityState::Meter(meter) = &entity.state else {
            return;
        };
        let kind = meter.kind;
        match &stored.event {
            Event::ReadingRecorded(r) => {
                self.readings
                    .insert((at, r.time_ms, reading_fingerprint(r)));
                let sealing = book_reading(entity, &mut self.site, kind, r, &rollup_options);
                self.sealed.push(offset, &stored.entity, sealing);
            }
            event @ (Event::RegisterRolledOver { .. } | Event::MeterReplaced { .. }) => {
                entity.prev_registers.follow(event);
            }
            _ => {}
        }
    }

    /// A deterministic digest of all state and read models: equal for equal event histories.
    pub fn digest(&self) -> u64 {
        let mut entities: Vec<(&EntityId, &Entity)> = self.entities().collect();
        entities.sort_by(|a, b| a.0.cmp(b.0));
        let slots = &self.slots;
        let readings = self
            .readings
            .in_order()
            .filter_map(|&(slot, t, f)| slots.get(slot).map(|e| (&e.id, t, f)));
        digest_of(
            self.next_offset,
            entities.into_iter().map(|(id, e)| (id, e.digest_of())),
            &self.site,
            self.command_ids.in_order(),
            Some(readings),
        )
    }

    /// The parts of the image a snapshot stores, taken in O(entities + remembered ids and
    /// readings) copies (the caller holds the read lock only for this).
    pub(crate) fn capture(&self) -> ImageCapture {
        let mut entities: Vec<(EntitySlot, EntityId, Arc<Entity>)> = self
            .slots
            .values()
            .enumerate()
            .map(|(slot, e)| (slot as EntitySlot, e.id.clone(), e.clone()))
            .collect();
        entities.sort_by(|a, b| a.1.cmp(&b.1));
        // A remembered reading names its meter by its index among the sorted entities.
        let mut index_of_slot = vec![0u32; entities.len()];
        for (index, (slot, _, _)) in entities.iter().enumerate() {
            index_of_slot[*slot as usize] = index as u32;
        }
        ImageCapture {
            next_offset: self.next_offset,
            events: self.events,
            rollup_options: self.rollup_options,
            site: self.site,
            command_ids: self
                .command_ids
                .in_order()
                .map(|(id, offset)| (id.clone(), offset))
                .collect(),
            readings: self
                .readings
                .in_order()
                .filter_map(|&(slot, t, f)| index_of_slot.get(slot as usize).map(|&i| (i, t, f)))
                .collect(),
            entities: entities.into_iter().map(|(_, id, e)| (id, e)).collect(),
            sealed: self.sealed.entries(),
            rollups_stored_below: self.sealed.coverage(),
        }
    }

    /// An image from the parts a snapshot stored. It remembers every reading the snapshot
    /// holds (so its digest can be checked) until [`Image::set_recent_readings_max`].
    pub(crate) fn from_parts(parts: ImageParts) -> Image {
        let mut image = Image::new(parts.rollup_options);
        image.next_offset = parts.next_offset;
        image.events = parts.events;
        image.site = parts.site;
        for (id, offset) in parts.command_ids {
            image.command_ids.insert(id, offset);
        }
        let entities = parts.entities.len();
        for (id, mut entity) in parts.entities {
            entity.id = id.clone();
            image.slots.push(id, Arc::new(entity));
        }
        // Entities were pushed in the snapshot's order: an index is a slot.
        image.readings =
            RecentReadings::with_max(parts.readings.len().max(RECENT_READINGS_DEFAULT));
        for (index, t, f) in parts.readings {
            if (index as usize) < entities {
                image.readings.insert((index, t, f));
            }
        }
        image.sealed.stored_below(parts.rollups_stored_below);
        for entry in parts.sealed {
            image.sealed.push_entry(entry);
        }
        image
    }

    /// Remembers at most `max` recent readings (forgetting the oldest beyond it).
    pub(crate) fn set_recent_readings_max(&mut self, max: usize) {
        self.readings.set_max(max);
    }

    /// Site totals.
    pub fn site_totals(&self) -> SiteTotals {
        self.site
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if there are no entities.
    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }
}

/// Books a durable reading of a meter of `kind` into its rollups and the site totals: the
/// energy since the previous reading in time (none for the first, or a late one: the newer
/// reading's registers already counted it). Returns what it left for the rollup store.
fn book_reading(
    entity: &mut Entity,
    site: &mut SiteTotals,
    kind: MeterKind,
    r: &Reading,
    rollup_options: &RollupOptions,
) -> Sealing {
    let rollups = entity
        .rollups
        .get_or_insert_with(|| MeterRollups::new(rollup_options));
    let (import_delta, export_delta) = entity.prev_registers.book(r);
    let sealing = rollups.add(r.time_ms, import_delta, export_delta, r.power_w);
    site.all_time.add(kind, import_delta, export_delta);
    let day = r.time_ms.div_euclid(DAY_MS);
    if day > site.day_index {
        site.day_index = day;
        site.today = Flows::default();
    }
    if day == site.day_index {
        site.today.add(kind, import_delta, export_delta);
    }
    sealing
}
