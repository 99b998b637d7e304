//! Entity state: what a meter, an asset and the gateway itself are after their events,
//! how one event changes it ([`EntityState::advance`]), the reading fingerprint that
//! recognises a re-sent reading, and the replacement rule both validation and the state
//! change use (`after_replacement`).
//!
//! Depends on nothing else in the engine but `times` (every stored reading time of a
//! meter): validation reads these types, the image holds them, and neither is imported
//! here.
//!
//! The functions run for every reading (by the planner and the applier) are `#[inline]`:
//! their callers are in other modules, which may be other codegen units, and without it
//! the planner's CPU time per reading rose measurably (docs/BENCHMARKS.md, issue 19).

use gridlog_common::domain::ShipObject;
use gridlog_common::domain::{
    AssetKind, EntityKind, Event, MeterKind, Reading, StoredEvent, Telemetry,
};
use gridlog_common::id::Label;
use gridlog_common::Offset;

use super::times::ReadingTimes;

/// Readings per meter remembered to recognise a re-sent reading as a duplicate.
pub const DUPLICATE_WINDOW: usize = 8;
/// Faults an asset can have active at once; validation refuses one more
/// (`too_many_faults`), so the log never holds a raised fault the state does not list.
pub const ASSET_FAULTS_MAX: usize = 8;

/// The fingerprint of a reading's values, for duplicate detection: each value's bits mixed
/// in by multiply and xor-shift, then a final avalanche (MurmurHash3's `fmix64`). Word-wise,
/// so it costs a few multiplies, not one per byte. Fingerprints are kept in the image and
/// its snapshots: changing this function needs a new snapshot format version.
#[inline]
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
    /// The time of every stored reading (bounded; see [`ReadingTimes`]), so a reading at a
    /// time already stored is never stored again.
    pub times: ReadingTimes,
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
    #[inline]
    pub fn seq(&self) -> u64 {
        match self {
            EntityState::Meter(m) => m.seq,
            EntityState::Asset(a) => a.seq,
            EntityState::System(s) => s.seq,
        }
    }

    /// The entity's kind.
    #[inline]
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

    /// [`EntityState::evolve`] in place: no copy of the state (a meter's reading times are
    /// on the heap), for callers that fold a history of events.
    pub fn evolve_in_place(state: &mut Option<EntityState>, stored: &StoredEvent) {
        match state {
            Some(state) => state.advance(stored),
            None => *state = EntityState::create(stored),
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
                times: ReadingTimes::default(),
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
    #[inline]
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
                            r.time_ms > l.time_ms || after_replacement(m, &l, r.time_ms)
                        }) {
                            m.latest = Some(*r);
                        }
                        m.recent[m.recent_next as usize] = (r.time_ms, reading_fingerprint(r));
                        m.recent_next = ((m.recent_next as usize + 1) % DUPLICATE_WINDOW) as u8;
                        m.times.insert(r.time_ms);
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

/// True if `latest` is a replacement's baseline and `time_ms` its time: a reading then is
/// the new meter's first, checked against the baseline like a later one.
#[inline]
pub(crate) fn after_replacement(m: &MeterState, latest: &Reading, time_ms: i64) -> bool {
    time_ms == latest.time_ms && m.replaced_ms == Some(time_ms)
}

/// A meter's state as snapshot format 3 stored it: without its reading times.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MeterStateV3 {
    kind: MeterKind,
    register_bits: Option<u8>,
    seq: u64,
    decommissioned: bool,
    latest: Option<Reading>,
    replaced_ms: Option<i64>,
    recent: [(i64, u64); DUPLICATE_WINDOW],
    recent_next: u8,
    readings: u64,
    updated_ms: i64,
}

impl From<MeterStateV3> for MeterState {
    /// The times before the newest reading are not known: they are forgotten (a late
    /// reading dated there is refused, never risked twice); the newest reading's time is
    /// stored if a reading has it (not only a replacement's baseline).
    fn from(v3: MeterStateV3) -> MeterState {
        let times = match v3.latest {
            None => ReadingTimes::default(),
            Some(latest) => {
                let mut times = ReadingTimes::forgotten_through(latest.time_ms.saturating_sub(1));
                let baseline_only = v3.replaced_ms == Some(latest.time_ms)
                    && !v3.recent.iter().any(|&(t, _)| t == latest.time_ms);
                if !baseline_only {
                    times.insert(latest.time_ms);
                }
                times
            }
        };
        MeterState {
            kind: v3.kind,
            register_bits: v3.register_bits,
            seq: v3.seq,
            decommissioned: v3.decommissioned,
            latest: v3.latest,
            replaced_ms: v3.replaced_ms,
            recent: v3.recent,
            recent_next: v3.recent_next,
            times,
            readings: v3.readings,
            updated_ms: v3.updated_ms,
        }
    }
}
