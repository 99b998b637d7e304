//! The in-memory image: the current state of every meter and asset, derived only from
//! events ([`Image::apply`]), plus the read models kept beside it (rollups, site totals,
//! per-entity offset checkpoints, recent command ids).
//!
//! The image is changed only by applying durable events: by the processor after each
//! commit, and at start-up by replay. Same events in the same order ⇒ same image ⇒ same
//! [`Image::digest`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use gridlog_common::domain::ShipObject;
use gridlog_common::domain::{
    AssetKind, EntityKind, Event, MeterKind, Reading, Register, StoredEvent, Telemetry,
};
use gridlog_common::id::{CommandId, EntityId, Label};
use gridlog_common::Offset;

use super::rollup::{MeterRollups, RollupOptions, DAY_MS};

/// Readings per meter remembered to recognise a re-sent reading as a duplicate.
pub const DUPLICATE_WINDOW: usize = 8;
/// Faults an asset can have active at once; validation refuses one more
/// (`too_many_faults`), so the log never holds a raised fault the state does not list.
pub const ASSET_FAULTS_MAX: usize = 8;
/// Every this many events of an entity, the image remembers the offset, so entity queries
/// start reading the log near the asked-for sequence number.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 64;
/// Most checkpoints kept per entity (16 bytes each): beyond it, older ones are thinned out
/// (see [`EntityIndex::note_checkpoint`]), so an entity's index stays at most 512 bytes
/// however long it lives.
pub const CHECKPOINTS_MAX: usize = 32;
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

/// A hash map with a fast, randomly seeded hasher (foldhash). Entity ids are short keys
/// looked up several times per reading; SipHash was a tenth of the processor's time.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The image digest's hash: 64-bit words mixed by multiply, rotate and xor (bytes taken
/// eight at a time, little-endian), with a final avalanche. Small, fixed, dependency-free,
/// and fast enough to digest 10,000 meters with their rollups in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct DigestHasher(u64);

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl DigestHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::K).rotate_left(29);
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "" apart from "a" + "b".
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }
    pub(crate) fn write_u64(&mut self, v: u64) {
        self.word(v);
    }
    pub(crate) fn write_i64(&mut self, v: i64) {
        self.word(v as u64);
    }
    pub(crate) fn write_f64(&mut self, v: f64) {
        self.word(v.to_bits());
    }
    pub(crate) fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// The fingerprint of a reading's values, for duplicate detection: each value's bits mixed
/// in by multiply and xor-shift, then a final avalanche (MurmurHash3's `fmix64`). Word-wise,
/// so it costs a few multiplies, not one per byte. Fingerprints are kept in the image and
/// its snapshots: changing this function needs a new snapshot format version.
pub(crate) fn reading_fingerprint(r: &Reading) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    // An absent value has bits no f32 conversion of a reading produces (a NaN payload).
    const ABSENT: u32 = 0x7fc0_dead;
    let optional = (u64::from(r.voltage_v.map_or(ABSENT, f32::to_bits)) << 32)
        | u64::from(r.current_a.map_or(ABSENT, f32::to_bits));
    let mut h = K;
    for word in [
        r.import_wh.to_bits(),
        r.export_wh.to_bits(),
        r.power_w.to_bits(),
        optional,
        u64::from(r.reactive_power_var.map_or(ABSENT, f32::to_bits)),
    ] {
        h = (h ^ word).wrapping_mul(K);
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A meter's state: what validation needs, and what an operator asks for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeterState {
    /// What it measures.
    pub kind: MeterKind,
    /// Register width if its registers wrap.
    pub register_bits: Option<u8>,
    /// Highest sequence number.
    pub seq: u64,
    /// Taken out of service.
    pub decommissioned: bool,
    /// The newest reading by measurement time (after a replacement: the new baseline).
    pub latest: Option<Reading>,
    /// Time of the last replacement; older readings belong to the old meter.
    pub replaced_ms: Option<i64>,
    /// Recent readings (time, fingerprint), for duplicate detection.
    pub recent: [(i64, u64); DUPLICATE_WINDOW],
    recent_next: u8,
    /// Readings recorded.
    pub readings: u64,
    /// Gateway time of the newest event.
    pub updated_ms: i64,
}

/// An asset's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AssetState {
    /// What it is.
    pub kind: AssetKind,
    /// Rated power.
    pub rated_power_w: f64,
    /// Capacity, for storage.
    pub capacity_wh: Option<f64>,
    /// Highest sequence number.
    pub seq: u64,
    /// Available for control.
    pub available: bool,
    /// Active faults.
    pub faults: heapless::Vec<Label, ASSET_FAULTS_MAX>,
    /// Newest telemetry.
    pub telemetry: Option<Telemetry>,
    /// Last requested setpoint.
    pub setpoint_requested_w: Option<f64>,
    /// Last applied setpoint.
    pub setpoint_applied_w: Option<f64>,
    /// Gateway time of the newest event.
    pub updated_ms: i64,
}

/// An archived segment, as the archive's events describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedSegment {
    /// One past its last offset.
    pub next_offset: Offset,
    /// Bytes of the segment.
    pub original_bytes: u64,
    /// Bytes of the archive file.
    pub archived_bytes: u64,
    /// SHA-256 of the segment bytes.
    pub sha256: [u8; 32],
    /// Removed from the local archive.
    pub evicted: bool,
    /// Central storage holds a verified copy.
    pub shipped: bool,
}

/// The gateway's own state: its archive and shipping, from its events.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SystemState {
    /// Highest sequence number.
    pub seq: u64,
    /// Gateway time of the newest event.
    pub updated_ms: i64,
    /// Archived segments by first offset.
    pub archived: std::collections::BTreeMap<Offset, ArchivedSegment>,
    /// Objects confirmed in central storage: (kind, first offset) → (next offset, sha256).
    pub shipped: std::collections::BTreeMap<(ShipObject, Offset), (Offset, [u8; 32])>,
    /// Uploads started but not confirmed.
    pub ship_pending: std::collections::BTreeMap<(ShipObject, Offset), (Offset, [u8; 32])>,
}

/// A meter or an asset.
// Meters are inline (they are the many: no allocation each), assets boxed (few, larger).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum EntityState {
    /// A meter.
    Meter(MeterState),
    /// An asset (boxed: assets are few and larger than meters, which are many).
    Asset(Box<AssetState>),
    /// The gateway's own bookkeeping.
    System(Box<SystemState>),
}

impl EntityState {
    /// Highest sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            EntityState::Meter(m) => m.seq,
            EntityState::Asset(a) => a.seq,
            EntityState::System(s) => s.seq,
        }
    }

    /// The entity's kind.
    pub fn kind(&self) -> EntityKind {
        match self {
            EntityState::Meter(m) => EntityKind::Meter(m.kind),
            EntityState::Asset(a) => EntityKind::Asset(a.kind),
            EntityState::System(_) => EntityKind::System,
        }
    }

    /// The state after `event` (which must be this entity's next event). Pure: a copy
    /// changed by [`EntityState::advance`], or a new state from a registration.
    pub fn evolve(state: Option<&EntityState>, stored: &StoredEvent) -> Option<EntityState> {
        match state {
            Some(state) => {
                let mut next = state.clone();
                next.advance(stored);
                Some(next)
            }
            None => EntityState::create(stored),
        }
    }

    /// The state an entity starts with: from its registration (or any event of the system
    /// entity). `None` for other events of an unknown entity: validation never produces
    /// them; replay of a foreign log could, and they change nothing.
    pub fn create(stored: &StoredEvent) -> Option<EntityState> {
        let seq = stored.seq;
        let at = stored.gateway_ms;
        if stored.kind == EntityKind::System {
            let mut system = Box::<SystemState>::default();
            system.seq = seq;
            system.updated_ms = at;
            system.apply(&stored.event);
            return Some(EntityState::System(system));
        }
        match stored.event {
            Event::MeterRegistered {
                kind,
                register_bits,
            } => Some(EntityState::Meter(MeterState {
                kind,
                register_bits,
                seq,
                decommissioned: false,
                latest: None,
                replaced_ms: None,
                recent: [(i64::MIN, 0); DUPLICATE_WINDOW],
                recent_next: 0,
                readings: 0,
                updated_ms: at,
            })),
            Event::AssetRegistered {
                kind,
                rated_power_w,
                capacity_wh,
            } => Some(EntityState::Asset(Box::new(AssetState {
                kind,
                rated_power_w,
                capacity_wh,
                seq,
                available: true,
                faults: heapless::Vec::new(),
                telemetry: None,
                setpoint_requested_w: None,
                setpoint_applied_w: None,
                updated_ms: at,
            }))),
            _ => None,
        }
    }

    /// Changes the state in place by the entity's next event (the processor validates
    /// and applies every reading this way: no copy of the state).
    pub fn advance(&mut self, stored: &StoredEvent) {
        let seq = stored.seq;
        let at = stored.gateway_ms;
        if stored.kind == EntityKind::System {
            if !matches!(self, EntityState::System(_)) {
                *self = EntityState::System(Box::default());
            }
            if let EntityState::System(system) = self {
                system.seq = seq;
                system.updated_ms = at;
                system.apply(&stored.event);
            }
            return;
        }
        match self {
            EntityState::Meter(m) => {
                m.seq = seq;
                m.updated_ms = at;
                match &stored.event {
                    Event::ReadingRecorded(r) => {
                        if m.latest.is_none_or(|l| {
                            r.time_ms > l.time_ms
                                || super::validate::after_replacement(m, &l, r.time_ms)
                        }) {
                            m.latest = Some(*r);
                        }
                        m.recent[m.recent_next as usize] = (r.time_ms, reading_fingerprint(r));
                        m.recent_next = ((m.recent_next as usize + 1) % DUPLICATE_WINDOW) as u8;
                        m.readings += 1;
                    }
                    Event::MeterReplaced {
                        time_ms,
                        import_wh,
                        export_wh,
                    } => {
                        let power_w = m.latest.map_or(0.0, |l| l.power_w);
                        m.latest = Some(Reading {
                            time_ms: *time_ms,
                            import_wh: *import_wh,
                            export_wh: *export_wh,
                            power_w,
                            voltage_v: None,
                            current_a: None,
                            reactive_power_var: None,
                        });
                        m.replaced_ms = Some(*time_ms);
                    }
                    Event::MeterDecommissioned => m.decommissioned = true,
                    // The wrap itself changes nothing here; the reading after it does.
                    Event::RegisterRolledOver { .. } => {}
                    _ => {}
                }
            }
            EntityState::Asset(a) => {
                a.seq = seq;
                a.updated_ms = at;
                match &stored.event {
                    Event::TelemetryRecorded(t)
                        if a.telemetry
                            .as_ref()
                            .is_none_or(|old| t.time_ms >= old.time_ms) =>
                    {
                        a.telemetry = Some(t.clone());
                    }
                    Event::SetpointRequested { power_w } => a.setpoint_requested_w = Some(*power_w),
                    Event::SetpointApplied { power_w } => a.setpoint_applied_w = Some(*power_w),
                    Event::AvailabilityChanged { available } => a.available = *available,
                    Event::FaultRaised { code } if !a.faults.contains(code) => {
                        let _ = a.faults.push(code.clone());
                    }
                    Event::FaultCleared { code } => a.faults.retain(|c| c != code),
                    _ => {}
                }
            }
            // A meter or asset event for the system entity: a foreign log; unchanged.
            EntityState::System(_) => {}
        }
    }
}

impl SystemState {
    fn apply(&mut self, event: &Event) {
        match *event {
            Event::SegmentArchived {
                first_offset,
                next_offset,
                original_bytes,
                archived_bytes,
                sha256,
            } => {
                self.archived.insert(
                    first_offset,
                    ArchivedSegment {
                        next_offset,
                        original_bytes,
                        archived_bytes,
                        sha256,
                        evicted: false,
                        shipped: self
                            .shipped
                            .get(&(ShipObject::Segment, first_offset))
                            .is_some_and(|(n, h)| *n == next_offset && *h == sha256),
                    },
                );
            }
            Event::ArchiveEvicted { first_offset, .. } => {
                if let Some(a) = self.archived.get_mut(&first_offset) {
                    a.evicted = true;
                }
            }
            Event::ShipIntended {
                object,
                first_offset,
                next_offset,
                sha256,
                ..
            } => {
                self.ship_pending
                    .insert((object, first_offset), (next_offset, sha256));
            }
            Event::ShipConfirmed {
                object,
                first_offset,
                next_offset,
                sha256,
                ..
            } => {
                self.ship_pending.remove(&(object, first_offset));
                self.shipped
                    .insert((object, first_offset), (next_offset, sha256));
                if object == ShipObject::Segment {
                    if let Some(a) = self.archived.get_mut(&first_offset) {
                        a.shipped = a.sha256 == sha256;
                    }
                }
            }
            _ => {}
        }
    }
}

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
    prev_registers: Option<(i64, f64, f64)>,
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

/// A digest over entities given in id order and the remembered command ids in order:
/// everything a restart must bring back, so a replay or a snapshot that lost any of it
/// (an entity's rollup baseline, the ids that make retries idempotent) shows as a different
/// digest at once, not as a wrong answer later.
pub(crate) fn digest_of<'a>(
    next_offset: Offset,
    entities: impl Iterator<Item = (&'a EntityId, &'a Entity)>,
    site: &SiteTotals,
    command_ids: impl Iterator<Item = (&'a CommandId, Offset)>,
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
            &(
                &entity.state,
                &entity.index.checkpoints,
                &entity.prev_registers,
            ),
            buf,
        )
        .unwrap_or_default();
        h.write(&buf);
        if let Some(rollups) = &entity.rollups {
            rollups.digest(&mut h);
        }
    }
    h.write(&postcard::to_allocvec(site).unwrap_or_default());
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
    pub(crate) entities: Vec<(EntityId, Arc<Entity>)>,
}

impl ImageCapture {
    /// The digest of the captured image.
    pub(crate) fn digest(&self) -> u64 {
        digest_of(
            self.next_offset,
            self.entities.iter().map(|(id, e)| (id, &**e)),
            &self.site,
            self.command_ids.iter().map(|(id, offset)| (id, *offset)),
        )
    }
}

/// The image's parts as a snapshot stores them.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ImageParts {
    pub(crate) next_offset: Offset,
    pub(crate) events: u64,
    pub(crate) rollup_options: RollupOptions,
    pub(crate) site: SiteTotals,
    pub(crate) command_ids: Vec<(CommandId, Offset)>,
    pub(crate) entities: Vec<(EntityId, Entity)>,
}

/// The same fields as [`ImageParts`], serialised from a capture without copying entities.
#[derive(serde::Serialize)]
pub(crate) struct ImagePartsRef<'a> {
    pub(crate) next_offset: Offset,
    pub(crate) events: u64,
    pub(crate) rollup_options: RollupOptions,
    pub(crate) site: SiteTotals,
    pub(crate) command_ids: &'a [(CommandId, Offset)],
    pub(crate) entities: Vec<(&'a EntityId, &'a Entity)>,
}

/// An entity's place in the image: the index of its slot, which it keeps for the life of
/// the image (entities are never removed). The processor's planner numbers new entities
/// the same way (both keep a [`Slots`]), so the applier finds an entity without hashing
/// its id.
pub(crate) type EntitySlot = u32;

/// How many events ahead [`Image::apply_all`] starts loading an entity into the cache:
/// enough for the load to arrive before the event is applied, with several under way.
const PREFETCH_AHEAD_EVENTS: usize = 8;

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
                    prev_registers: None,
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
                let rollups = entity
                    .rollups
                    .get_or_insert_with(|| MeterRollups::new(&rollup_options));
                let (import_delta, export_delta) = match entity.prev_registers {
                    Some((t, import, export)) if r.time_ms > t => {
                        (r.import_wh - import, r.export_wh - export)
                    }
                    Some(_) => (0.0, 0.0), // late reading: energy already counted
                    None => (0.0, 0.0),    // first reading: the baseline
                };
                if entity.prev_registers.is_none_or(|(t, _, _)| r.time_ms > t) {
                    entity.prev_registers = Some((r.time_ms, r.import_wh, r.export_wh));
                }
                rollups.add(r.time_ms, import_delta, export_delta, r.power_w);
                self.site.all_time.add(kind, import_delta, export_delta);
                let day = r.time_ms.div_euclid(DAY_MS);
                if day > self.site.day_index {
                    self.site.day_index = day;
                    self.site.today = Flows::default();
                }
                if day == self.site.day_index {
                    self.site.today.add(kind, import_delta, export_delta);
                }
            }
            Event::RegisterRolledOver { register, bits, .. } => {
                let modulus = 2f64.powi(i32::from(*bits));
                if let Some((_, import, export)) = &mut entity.prev_registers {
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
            } => {
                entity.prev_registers = Some((*time_ms, *import_wh, *export_wh));
            }
            _ => {}
        }
    }

    /// A deterministic digest of all state and read models: equal for equal event histories.
    pub fn digest(&self) -> u64 {
        let mut entities: Vec<(&EntityId, &Entity)> = self.entities().collect();
        entities.sort_by(|a, b| a.0.cmp(b.0));
        digest_of(
            self.next_offset,
            entities.into_iter(),
            &self.site,
            self.command_ids.in_order(),
        )
    }

    /// The parts of the image a snapshot stores, taken in O(entities) pointer copies (the
    /// caller holds the read lock only for this).
    pub(crate) fn capture(&self) -> ImageCapture {
        let mut entities: Vec<(EntityId, Arc<Entity>)> = self
            .slots
            .values()
            .map(|e| (e.id.clone(), e.clone()))
            .collect();
        entities.sort_by(|a, b| a.0.cmp(&b.0));
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
            entities,
        }
    }

    /// An image from the parts a snapshot stored.
    pub(crate) fn from_parts(parts: ImageParts) -> Image {
        let mut image = Image::new(parts.rollup_options);
        image.next_offset = parts.next_offset;
        image.events = parts.events;
        image.site = parts.site;
        for (id, offset) in parts.command_ids {
            image.command_ids.insert(id, offset);
        }
        for (id, mut entity) in parts.entities {
            entity.id = id.clone();
            image.slots.push(id, Arc::new(entity));
        }
        image
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
