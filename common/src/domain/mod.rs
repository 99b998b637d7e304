//! The site's domain: meters and energy assets, the commands that ask for change and the
//! events that record it.
//!
//! A [`Command`] is a request; the engine validates it against current state and may reject
//! it. An [`Event`] is a fact; it is never rejected, changed or deleted. Events are stored as
//! records of the log: see [`encode_event`] / [`decode_event`] and `docs/FORMAT.md`.
//!
//! Units are in the names: `_wh` watt-hours, `_w` watts, `_v` volts, `_a` amperes, `_pct`
//! percent, `_ms` milliseconds since the Unix epoch (UTC).
//!
//! [`record`] is how an event is stored: the versioned record and its hand-written reading
//! codec, byte-identical to postcard's encoding of these types (its proptests compare both
//! ways).

use crate::id::{CommandId, EntityId, Label};
use serde::{Deserialize, Serialize};

pub mod record;

#[cfg(feature = "alloc")]
pub use record::encode_event_vec;
pub use record::{
    decode_event, encode_event, peek_entity, EventDecodeError, EventSchema, STORED_EVENT_BYTES_MAX,
};

/// What a meter measures. Decides how its energy counts in the site totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MeterKind {
    /// The grid connection point: import = bought, export = sold.
    Grid,
    /// A PV generation meter: export = produced.
    Pv,
    /// A load: import = consumed.
    Load,
    /// An EV charger's meter: import = charged into vehicles.
    Ev,
    /// A battery's meter: import = charged, export = discharged.
    Battery,
    /// A sub-meter of part of the site: import = consumed.
    Submeter,
}

impl MeterKind {
    /// All kinds, in a fixed order.
    pub const ALL: [MeterKind; 6] = [
        MeterKind::Grid,
        MeterKind::Pv,
        MeterKind::Load,
        MeterKind::Ev,
        MeterKind::Battery,
        MeterKind::Submeter,
    ];

    /// The lower-case name used in the API and in tags.
    pub fn name(self) -> &'static str {
        match self {
            MeterKind::Grid => "grid",
            MeterKind::Pv => "pv",
            MeterKind::Load => "load",
            MeterKind::Ev => "ev",
            MeterKind::Battery => "battery",
            MeterKind::Submeter => "submeter",
        }
    }

    /// Parses [`MeterKind::name`].
    pub fn from_name(name: &str) -> Option<MeterKind> {
        MeterKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What an energy asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AssetKind {
    /// A battery storage system.
    Battery,
    /// A PV inverter.
    PvInverter,
    /// An EV charger.
    EvCharger,
    /// A controllable load.
    Load,
}

impl AssetKind {
    /// All kinds, in a fixed order.
    pub const ALL: [AssetKind; 4] = [
        AssetKind::Battery,
        AssetKind::PvInverter,
        AssetKind::EvCharger,
        AssetKind::Load,
    ];

    /// The lower-case name used in the API and in tags.
    pub fn name(self) -> &'static str {
        match self {
            AssetKind::Battery => "battery",
            AssetKind::PvInverter => "pv_inverter",
            AssetKind::EvCharger => "ev_charger",
            AssetKind::Load => "load",
        }
    }

    /// Parses [`AssetKind::name`].
    pub fn from_name(name: &str) -> Option<AssetKind> {
        AssetKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The kind of an entity: a meter or an asset of some kind, or the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityKind {
    /// A meter.
    Meter(MeterKind),
    /// An energy asset.
    Asset(AssetKind),
    /// The gateway's own bookkeeping (archive, shipping): ids start with
    /// [`SYSTEM_ID_PREFIX`].
    System,
}

impl EntityKind {
    /// The kind's name: the meter's or asset's kind (`pv`, `battery`, …), or `system`.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Meter(k) => k.name(),
            EntityKind::Asset(k) => k.name(),
            EntityKind::System => "system",
        }
    }
}

/// Ids starting with this are the gateway's own entities; meters and assets may not use it.
pub const SYSTEM_ID_PREFIX: &str = "gateway:";
/// The entity that records the history's storage: segments archived, evicted, shipped.
/// One entity, so one state knows of each segment whether it is archived and shipped.
pub const STORAGE_ENTITY: &str = "gateway:storage";

/// What is shipped to central storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShipObject {
    /// An archived log segment.
    Segment,
    /// An image snapshot.
    Snapshot,
    /// A manifest listing shipped objects.
    Manifest,
    /// The fleet tables (Parquet files) of a shipped segment. Added after the others, so
    /// older events decode as they were.
    Tables,
}

/// Which cumulative register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Register {
    /// The import (consumed, bought, charged) register.
    Import,
    /// The export (produced, sold, discharged) register.
    Export,
}

/// One meter reading as a device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When the meter measured it.
    pub time_ms: i64,
    /// Cumulative import register.
    pub import_wh: f64,
    /// Cumulative export register.
    pub export_wh: f64,
    /// Instantaneous active power; positive = import.
    pub power_w: f64,
    /// Optional voltage.
    pub voltage_v: Option<f32>,
    /// Optional current.
    pub current_a: Option<f32>,
    /// Optional reactive power, var; positive = inductive (lagging). Since event schema
    /// version 2; a version-1 reading is read with none.
    pub reactive_power_var: Option<f32>,
}

/// Asset telemetry as a device reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// When the asset measured it.
    pub time_ms: i64,
    /// Active power; for a battery positive = charging.
    pub power_w: f64,
    /// State of charge, for storage.
    pub soc_pct: Option<f64>,
    /// Free-form status (`charging`, `idle`, `fault` …).
    pub status: Label,
}

/// A request to change the site's state. Validated, then accepted (events) or rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Register a meter. Identical re-registration is a no-op; a different one is rejected.
    RegisterMeter {
        /// The meter.
        meter: EntityId,
        /// What it measures.
        kind: MeterKind,
        /// Width of its registers in bits if they wrap (SunSpec acc32: 32), else `None`.
        register_bits: Option<u8>,
    },
    /// Record a reading.
    RecordReading {
        /// The meter.
        meter: EntityId,
        /// The reading.
        reading: Reading,
    },
    /// The physical meter was replaced: its registers start again from these values.
    ReplaceMeter {
        /// The meter.
        meter: EntityId,
        /// When.
        time_ms: i64,
        /// The new meter's import register.
        import_wh: f64,
        /// The new meter's export register.
        export_wh: f64,
    },
    /// Take a meter out of service; later readings are rejected.
    DecommissionMeter {
        /// The meter.
        meter: EntityId,
    },
    /// Register an energy asset.
    RegisterAsset {
        /// The asset.
        asset: EntityId,
        /// What it is.
        kind: AssetKind,
        /// Rated power in watts (the largest setpoint, either direction).
        rated_power_w: f64,
        /// Energy capacity, for storage.
        capacity_wh: Option<f64>,
    },
    /// Record asset telemetry.
    RecordTelemetry {
        /// The asset.
        asset: EntityId,
        /// The telemetry.
        telemetry: Telemetry,
    },
    /// Ask an asset for a new power setpoint.
    RequestSetpoint {
        /// The asset.
        asset: EntityId,
        /// The setpoint; for a battery positive = charge.
        power_w: f64,
    },
    /// The asset confirms it applied a setpoint.
    ConfirmSetpoint {
        /// The asset.
        asset: EntityId,
        /// The setpoint it runs at.
        power_w: f64,
    },
    /// The asset became available or unavailable for control.
    ChangeAvailability {
        /// The asset.
        asset: EntityId,
        /// Available or not.
        available: bool,
    },
    /// The asset raised a fault.
    RaiseFault {
        /// The asset.
        asset: EntityId,
        /// Fault code.
        code: Label,
    },
    /// The asset cleared a fault.
    ClearFault {
        /// The asset.
        asset: EntityId,
        /// Fault code.
        code: Label,
    },
    /// The gateway records a fact about itself (archive, shipping). Only for ids starting
    /// with [`SYSTEM_ID_PREFIX`]; never from the API.
    RecordSystemEvent {
        /// A system entity.
        entity: EntityId,
        /// The fact.
        event: Event,
    },
}

impl Command {
    /// The entity the command is about.
    pub fn entity(&self) -> &EntityId {
        match self {
            Command::RegisterMeter { meter, .. }
            | Command::RecordReading { meter, .. }
            | Command::ReplaceMeter { meter, .. }
            | Command::DecommissionMeter { meter } => meter,
            Command::RegisterAsset { asset, .. }
            | Command::RecordTelemetry { asset, .. }
            | Command::RequestSetpoint { asset, .. }
            | Command::ConfirmSetpoint { asset, .. }
            | Command::ChangeAvailability { asset, .. }
            | Command::RaiseFault { asset, .. }
            | Command::ClearFault { asset, .. } => asset,
            Command::RecordSystemEvent { entity, .. } => entity,
        }
    }
}

/// A fact about one entity. Never rejected, changed or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A meter was registered.
    MeterRegistered {
        /// What it measures.
        kind: MeterKind,
        /// Register width if the registers wrap.
        register_bits: Option<u8>,
    },
    /// A reading was recorded.
    ReadingRecorded(Reading),
    /// A register wrapped at its width; the next reading continues from zero.
    RegisterRolledOver {
        /// Which register.
        register: Register,
        /// Its width in bits.
        bits: u8,
        /// The last value before the wrap.
        before_wh: f64,
        /// The first value after it.
        after_wh: f64,
    },
    /// The physical meter was replaced; registers continue from these values.
    MeterReplaced {
        /// When.
        time_ms: i64,
        /// New import register.
        import_wh: f64,
        /// New export register.
        export_wh: f64,
    },
    /// The meter was taken out of service.
    MeterDecommissioned,
    /// An asset was registered.
    AssetRegistered {
        /// What it is.
        kind: AssetKind,
        /// Rated power.
        rated_power_w: f64,
        /// Capacity, for storage.
        capacity_wh: Option<f64>,
    },
    /// Telemetry was recorded.
    TelemetryRecorded(Telemetry),
    /// A setpoint was requested.
    SetpointRequested {
        /// The setpoint.
        power_w: f64,
    },
    /// The asset applied a setpoint.
    SetpointApplied {
        /// The setpoint.
        power_w: f64,
    },
    /// Availability changed.
    AvailabilityChanged {
        /// Available or not.
        available: bool,
    },
    /// A fault was raised.
    FaultRaised {
        /// Fault code.
        code: Label,
    },
    /// A fault was cleared.
    FaultCleared {
        /// Fault code.
        code: Label,
    },
    /// A sealed segment was compressed into the local archive (and verified).
    SegmentArchived {
        /// Its first offset.
        first_offset: u64,
        /// One past its last offset.
        next_offset: u64,
        /// Bytes of the segment (to the end of its footer).
        original_bytes: u64,
        /// Bytes of the archive file.
        archived_bytes: u64,
        /// SHA-256 of the segment bytes.
        sha256: [u8; 32],
    },
    /// An archived segment was removed from the local archive (under the archive budget).
    ArchiveEvicted {
        /// Its first offset.
        first_offset: u64,
        /// One past its last offset.
        next_offset: u64,
        /// True if central storage held a verified copy.
        shipped: bool,
    },
    /// An upload to central storage is about to start.
    ShipIntended {
        /// What.
        object: ShipObject,
        /// First offset covered.
        first_offset: u64,
        /// One past the last offset covered.
        next_offset: u64,
        /// SHA-256 of the object's bytes.
        sha256: [u8; 32],
        /// Its size.
        bytes: u64,
    },
    /// Central storage holds a verified copy.
    ShipConfirmed {
        /// What.
        object: ShipObject,
        /// First offset covered.
        first_offset: u64,
        /// One past the last offset covered.
        next_offset: u64,
        /// SHA-256 of the object's bytes.
        sha256: [u8; 32],
        /// Its size.
        bytes: u64,
    },
    /// The recovery point fell behind: the oldest acknowledged event not yet in central
    /// storage has waited `lag_s`, several times the bound `max_lag_s`. Raised once per
    /// episode (an alarm).
    RecoveryPointLagging {
        /// Seconds the oldest acknowledged event not in central storage has waited.
        lag_s: u64,
        /// The configured bound.
        max_lag_s: u64,
        /// One past the newest offset central storage holds.
        store_next_offset: u64,
    },
}

impl Event {
    /// The event's type name, as the API shows it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::MeterRegistered { .. } => "meter_registered",
            Event::ReadingRecorded(_) => "reading_recorded",
            Event::RegisterRolledOver { .. } => "register_rolled_over",
            Event::MeterReplaced { .. } => "meter_replaced",
            Event::MeterDecommissioned => "meter_decommissioned",
            Event::AssetRegistered { .. } => "asset_registered",
            Event::TelemetryRecorded(_) => "telemetry_recorded",
            Event::SetpointRequested { .. } => "setpoint_requested",
            Event::SetpointApplied { .. } => "setpoint_applied",
            Event::AvailabilityChanged { .. } => "availability_changed",
            Event::FaultRaised { .. } => "fault_raised",
            Event::FaultCleared { .. } => "fault_cleared",
            Event::SegmentArchived { .. } => "segment_archived",
            Event::ArchiveEvicted { .. } => "archive_evicted",
            Event::ShipIntended { .. } => "ship_intended",
            Event::ShipConfirmed { .. } => "ship_confirmed",
            Event::RecoveryPointLagging { .. } => "recovery_point_lagging",
        }
    }
}

/// An event as stored: one log record. The record's global offset is its position in the log
/// and is not repeated inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The entity.
    pub entity: EntityId,
    /// Its kind (so tags can be derived from the record alone).
    pub kind: EntityKind,
    /// Per-entity sequence number: 1, 2, 3 … without gaps.
    pub seq: u64,
    /// Gateway time when the event was committed.
    pub gateway_ms: i64,
    /// The client's request id, on the first event of a request that carried one.
    pub command_id: Option<CommandId>,
    /// What happened.
    pub event: Event,
}

/// Tag names derived from a stored event (at most [`TAGS_MAX`]).
pub const TAGS_MAX: usize = 4;

impl StoredEvent {
    /// Tags: `meter` or `asset`, `kind:<kind>`, and `alarm` for faults, `setpoint` for
    /// setpoints, `register` for registrations. Derived, not stored, so they cost no bytes.
    pub fn tags(&self) -> heapless::Vec<&'static str, TAGS_MAX> {
        let mut tags = heapless::Vec::new();
        let (class, kind) = match self.kind {
            EntityKind::Meter(k) => ("meter", kind_tag_meter(k)),
            EntityKind::Asset(k) => ("asset", kind_tag_asset(k)),
            EntityKind::System => ("system", "kind:system"),
        };
        let extra = match self.event {
            Event::SegmentArchived { .. } | Event::ArchiveEvicted { .. } => Some("archive"),
            Event::ShipIntended { .. } | Event::ShipConfirmed { .. } => Some("shipping"),
            Event::FaultRaised { .. }
            | Event::FaultCleared { .. }
            | Event::RecoveryPointLagging { .. } => Some("alarm"),
            Event::SetpointRequested { .. } | Event::SetpointApplied { .. } => Some("setpoint"),
            Event::MeterRegistered { .. } | Event::AssetRegistered { .. } => Some("registration"),
            _ => None,
        };
        // Capacity is TAGS_MAX >= 3, so these pushes cannot fail.
        let _ = tags.push(class);
        let _ = tags.push(kind);
        if let Some(extra) = extra {
            let _ = tags.push(extra);
        }
        tags
    }

    /// True if the event carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().contains(&tag)
    }
}

fn kind_tag_meter(k: MeterKind) -> &'static str {
    match k {
        MeterKind::Grid => "kind:grid",
        MeterKind::Pv => "kind:pv",
        MeterKind::Load => "kind:load",
        MeterKind::Ev => "kind:ev",
        MeterKind::Battery => "kind:battery",
        MeterKind::Submeter => "kind:submeter",
    }
}

fn kind_tag_asset(k: AssetKind) -> &'static str {
    match k {
        AssetKind::Battery => "kind:battery",
        AssetKind::PvInverter => "kind:pv_inverter",
        AssetKind::EvCharger => "kind:ev_charger",
        AssetKind::Load => "kind:load",
    }
}
