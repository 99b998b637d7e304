//! The API's own request and response types (host is the only crate that knows JSON), and
//! their conversion to and from the domain.
//!
//! One file on purpose: the API's JSON vocabulary (small request and answer types, each
//! with its OpenAPI schema), kept together so a client's view of the wire reads in one place.

use gridlog_common::domain::{AssetKind, Event, MeterKind, Reading, StoredEvent, Telemetry};
use gridlog_common::id::{CommandId, EntityId, Label};
use gridlog_firmware::engine::query::EventRecord;
use gridlog_firmware::engine::rollup::Bucket;
use gridlog_firmware::engine::state::{AssetState, EntityState, MeterState};
use gridlog_firmware::engine::{ItemResult, Rejection, Step};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Formats milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses RFC 3339 into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|source| TimeError {
        text: s.to_string(),
        source,
    })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A time that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time ({source}); example: 2026-11-23T12:00:00Z")]
pub struct TimeError {
    /// What was given.
    pub text: String,
    /// Why it does not parse.
    pub source: time::error::Parse,
}

/// A time in the API: an RFC 3339 string, held as milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s)
            .map(Time)
            .map_err(serde::de::Error::custom)
    }
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<EntityId, D::Error> {
    EntityId::deserialize(d)
}

/// `POST /api/v1/meters`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMeterBody {
    /// Meter id: 1-64 of `A-Z a-z 0-9 - _ . :`.
    #[serde(deserialize_with = "id")]
    #[schema(value_type = String, example = "m1")]
    pub id: EntityId,
    /// What it measures.
    pub kind: MeterKindWire,
    /// Register width in bits if the registers wrap (SunSpec acc32: 32).
    #[serde(default)]
    pub register_bits: Option<u8>,
}

/// Meter kinds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeterKindWire {
    /// Grid connection.
    Grid,
    /// PV production.
    Pv,
    /// A load.
    Load,
    /// EV charging.
    Ev,
    /// Battery.
    Battery,
    /// Sub-meter.
    Submeter,
}

impl From<MeterKindWire> for MeterKind {
    fn from(k: MeterKindWire) -> MeterKind {
        match k {
            MeterKindWire::Grid => MeterKind::Grid,
            MeterKindWire::Pv => MeterKind::Pv,
            MeterKindWire::Load => MeterKind::Load,
            MeterKindWire::Ev => MeterKind::Ev,
            MeterKindWire::Battery => MeterKind::Battery,
            MeterKindWire::Submeter => MeterKind::Submeter,
        }
    }
}

/// Asset kinds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetKindWire {
    /// Battery storage.
    Battery,
    /// PV inverter.
    PvInverter,
    /// EV charger.
    EvCharger,
    /// Controllable load.
    Load,
}

impl From<AssetKindWire> for AssetKind {
    fn from(k: AssetKindWire) -> AssetKind {
        match k {
            AssetKindWire::Battery => AssetKind::Battery,
            AssetKindWire::PvInverter => AssetKind::PvInverter,
            AssetKindWire::EvCharger => AssetKind::EvCharger,
            AssetKindWire::Load => AssetKind::Load,
        }
    }
}

/// One reading in `POST /api/v1/readings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingWire {
    /// The meter.
    #[serde(deserialize_with = "id")]
    #[schema(value_type = String, example = "m1")]
    pub meter: EntityId,
    /// Measurement time, RFC 3339.
    #[schema(value_type = String, example = "2026-11-23T12:00:00Z")]
    pub time: Time,
    /// Cumulative import register, Wh.
    pub import_wh: f64,
    /// Cumulative export register, Wh.
    pub export_wh: f64,
    /// Instantaneous power, W (positive = import).
    pub power_w: f64,
    /// Voltage, V.
    #[serde(default)]
    pub voltage_v: Option<f32>,
    /// Current, A.
    #[serde(default)]
    pub current_a: Option<f32>,
    /// Reactive power, var (positive = inductive).
    #[serde(default)]
    pub reactive_power_var: Option<f32>,
}

impl ReadingWire {
    /// The domain reading.
    pub fn reading(&self) -> Reading {
        Reading {
            time_ms: self.time.0,
            import_wh: self.import_wh,
            export_wh: self.export_wh,
            power_w: self.power_w,
            voltage_v: self.voltage_v,
            current_a: self.current_a,
            reactive_power_var: self.reactive_power_var,
        }
    }
}

/// `POST /api/v1/readings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingsBody {
    /// The readings, processed in order, each with its own result.
    pub readings: Vec<ReadingWire>,
    /// Makes retries idempotent: a request with an id already processed stores nothing.
    #[serde(default, deserialize_with = "opt_command_id")]
    #[schema(value_type = Option<String>)]
    pub command_id: Option<CommandId>,
}

fn opt_command_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CommandId>, D::Error> {
    Option::<CommandId>::deserialize(d)
}

/// `POST /api/v1/assets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAssetBody {
    /// Asset id.
    #[serde(deserialize_with = "id")]
    #[schema(value_type = String, example = "bat1")]
    pub id: EntityId,
    /// What it is.
    pub kind: AssetKindWire,
    /// Rated power, W.
    pub rated_power_w: f64,
    /// Capacity, Wh (storage).
    #[serde(default)]
    pub capacity_wh: Option<f64>,
}

/// `POST /api/v1/assets/{id}/telemetry`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBody {
    /// Measurement time, RFC 3339.
    #[schema(value_type = String)]
    pub time: Time,
    /// Power, W (battery: positive = charging).
    pub power_w: f64,
    /// State of charge, %.
    #[serde(default)]
    pub soc_pct: Option<f64>,
    /// Status label.
    #[serde(default = "default_status")]
    #[schema(value_type = String)]
    pub status: Label,
}

fn default_status() -> Label {
    Label::new("ok").expect("valid label")
}

impl TelemetryBody {
    /// The domain telemetry.
    pub fn telemetry(&self) -> Telemetry {
        Telemetry {
            time_ms: self.time.0,
            power_w: self.power_w,
            soc_pct: self.soc_pct,
            status: self.status.clone(),
        }
    }
}

/// `POST /api/v1/assets/{id}/setpoint`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetpointBody {
    /// Setpoint, W (battery: positive = charge).
    pub power_w: f64,
    /// Optimistic concurrency: rejected (409) unless the asset is at this seq.
    #[serde(default)]
    pub expected_seq: Option<u64>,
}

/// `POST /api/v1/assets/{id}/availability`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityBody {
    /// Available for control.
    pub available: bool,
}

/// `POST /api/v1/assets/{id}/faults`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    /// Fault code.
    #[schema(value_type = String)]
    pub code: Label,
    /// Raised (true) or cleared (false).
    pub active: bool,
}

/// `POST /api/v1/meters/{id}/replace`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceBody {
    /// When the meter was replaced.
    #[schema(value_type = String)]
    pub time: Time,
    /// The new meter's import register, Wh.
    pub import_wh: f64,
    /// The new meter's export register, Wh.
    pub export_wh: f64,
}

/// One item's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ItemResultWire {
    /// Stored.
    Accepted {
        /// Global offset of its event.
        offset: u64,
        /// The entity's seq after it.
        seq: u64,
    },
    /// Already recorded exactly so; nothing stored.
    Duplicate,
    /// The request's `command_id` was processed before: nothing stored now; what the first
    /// processing stored is stored once, what it refused is not stored (its per-item
    /// answers are not kept).
    Replayed,
    /// Refused; nothing stored.
    Rejected {
        /// Why.
        error: super::error::ErrorDetail,
    },
}

/// Converts an engine result; `field_prefix` turns `time` into `readings[3].time`.
pub fn item_result(result: &ItemResult, field_prefix: &str) -> ItemResultWire {
    match result {
        ItemResult::Accepted { offset, seq } => ItemResultWire::Accepted {
            offset: *offset,
            seq: *seq,
        },
        ItemResult::Duplicate => ItemResultWire::Duplicate,
        ItemResult::Replayed => ItemResultWire::Replayed,
        ItemResult::Rejected(r) => ItemResultWire::Rejected {
            error: rejection_detail(r, field_prefix),
        },
    }
}

/// The error detail of a rejection.
pub fn rejection_detail(r: &Rejection, field_prefix: &str) -> super::error::ErrorDetail {
    super::error::ErrorDetail {
        code: r.code.to_string(),
        message: r.message.clone(),
        field: r.field.map(|f| format!("{field_prefix}{f}")),
        current_seq: r.current_seq,
    }
}

/// `POST /api/v1/readings` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Items stored.
    pub accepted: usize,
    /// Items already recorded.
    pub duplicates: usize,
    /// Items refused.
    pub rejected: usize,
    /// True if this request's command_id had been processed before (nothing stored now).
    pub replayed: bool,
    /// One result per item, in order.
    pub results: Vec<ItemResultWire>,
}

/// Result of a single write.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResponse {
    /// `accepted` or `duplicate`.
    pub status: String,
    /// Offset of the stored event (absent for a duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The entity's seq.
    pub seq: u64,
}

/// A meter as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeterView {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Highest seq.
    pub seq: u64,
    /// Register width if wrapping.
    pub register_bits: Option<u8>,
    /// Out of service.
    pub decommissioned: bool,
    /// Readings recorded.
    pub readings: u64,
    /// Newest reading.
    #[schema(value_type = Option<Object>)]
    pub latest: Option<Value>,
    /// Gateway time of the newest event.
    pub updated: String,
    /// Readings of this meter rejected in the last hour (kept in memory since start).
    pub rejected_last_hour: u32,
}

/// Builds a [`MeterView`] (`rejected_last_hour` 0: fill it from the engine).
pub fn meter_view(id: &str, m: &MeterState) -> MeterView {
    MeterView {
        id: id.to_string(),
        kind: m.kind.name().to_string(),
        seq: m.seq,
        register_bits: m.register_bits,
        decommissioned: m.decommissioned,
        readings: m.readings,
        latest: m.latest.as_ref().map(reading_json),
        updated: rfc3339(m.updated_ms),
        rejected_last_hour: 0,
    }
}

/// An asset as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Highest seq.
    pub seq: u64,
    /// Rated power, W.
    pub rated_power_w: f64,
    /// Capacity, Wh.
    pub capacity_wh: Option<f64>,
    /// Available for control.
    pub available: bool,
    /// Active faults.
    pub faults: Vec<String>,
    /// Newest telemetry.
    #[schema(value_type = Option<Object>)]
    pub telemetry: Option<Value>,
    /// Last requested setpoint, W.
    pub setpoint_requested_w: Option<f64>,
    /// Last applied setpoint, W.
    pub setpoint_applied_w: Option<f64>,
    /// Gateway time of the newest event.
    pub updated: String,
}

/// Builds an [`AssetView`].
pub fn asset_view(id: &str, a: &AssetState) -> AssetView {
    AssetView {
        id: id.to_string(),
        kind: a.kind.name().to_string(),
        seq: a.seq,
        rated_power_w: a.rated_power_w,
        capacity_wh: a.capacity_wh,
        available: a.available,
        faults: a.faults.iter().map(|f| f.to_string()).collect(),
        telemetry: a.telemetry.as_ref().map(telemetry_json),
        setpoint_requested_w: a.setpoint_requested_w,
        setpoint_applied_w: a.setpoint_applied_w,
        updated: rfc3339(a.updated_ms),
    }
}

/// The JSON of an entity's state.
pub fn state_json(id: &str, state: &EntityState) -> Value {
    match state {
        EntityState::Meter(m) => serde_json::to_value(meter_view(id, m)).unwrap_or(Value::Null),
        EntityState::Asset(a) => serde_json::to_value(asset_view(id, a)).unwrap_or(Value::Null),
        EntityState::System(s) => json!({
            "id": id,
            "kind": "system",
            "seq": s.seq,
            "archived_segments": s.archived.len(),
            "shipped_objects": s.shipped.len(),
            "ship_pending": s.ship_pending.len(),
            "updated": rfc3339(s.updated_ms),
        }),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ship_object(o: gridlog_common::domain::ShipObject) -> &'static str {
    match o {
        gridlog_common::domain::ShipObject::Segment => "segment",
        gridlog_common::domain::ShipObject::Snapshot => "snapshot",
        gridlog_common::domain::ShipObject::Manifest => "manifest",
        gridlog_common::domain::ShipObject::Tables => "tables",
    }
}

fn reading_json(r: &Reading) -> Value {
    json!({
        "time": rfc3339(r.time_ms),
        "import_wh": r.import_wh,
        "export_wh": r.export_wh,
        "power_w": r.power_w,
        "voltage_v": r.voltage_v,
        "current_a": r.current_a,
        "reactive_power_var": r.reactive_power_var,
    })
}

fn telemetry_json(t: &Telemetry) -> Value {
    json!({"time": rfc3339(t.time_ms), "power_w": t.power_w, "soc_pct": t.soc_pct, "status": t.status.as_str()})
}

/// An event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Global offset.
    pub offset: u64,
    /// Entity id.
    pub entity: String,
    /// Per-entity seq.
    pub seq: u64,
    /// Gateway time.
    pub time: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Builds an [`EventView`].
pub fn event_view(record: &EventRecord) -> EventView {
    let s: &StoredEvent = &record.stored;
    EventView {
        offset: record.offset,
        entity: s.entity.to_string(),
        seq: s.seq,
        time: rfc3339(s.gateway_ms),
        tags: s.tags().iter().map(|t| t.to_string()).collect(),
        kind: s.event.type_name().to_string(),
        data: event_data(&s.event),
    }
}

/// An event's fields as the API shows them (also the `data` column of the fleet tables).
pub fn event_data(e: &Event) -> Value {
    match e {
        Event::MeterRegistered {
            kind,
            register_bits,
        } => json!({"kind": kind.name(), "register_bits": register_bits}),
        Event::ReadingRecorded(r) => reading_json(r),
        Event::RegisterRolledOver {
            register,
            bits,
            before_wh,
            after_wh,
        } => json!({
            "register": match register { gridlog_common::domain::Register::Import => "import", gridlog_common::domain::Register::Export => "export" },
            "bits": bits, "before_wh": before_wh, "after_wh": after_wh,
        }),
        Event::MeterReplaced {
            time_ms,
            import_wh,
            export_wh,
        } => json!({"time": rfc3339(*time_ms), "import_wh": import_wh, "export_wh": export_wh}),
        Event::MeterDecommissioned => json!({}),
        Event::AssetRegistered {
            kind,
            rated_power_w,
            capacity_wh,
        } => {
            json!({"kind": kind.name(), "rated_power_w": rated_power_w, "capacity_wh": capacity_wh})
        }
        Event::TelemetryRecorded(t) => telemetry_json(t),
        Event::SetpointRequested { power_w } | Event::SetpointApplied { power_w } => {
            json!({"power_w": power_w})
        }
        Event::AvailabilityChanged { available } => json!({"available": available}),
        Event::FaultRaised { code } | Event::FaultCleared { code } => {
            json!({"code": code.as_str()})
        }
        Event::SegmentArchived {
            first_offset,
            next_offset,
            original_bytes,
            archived_bytes,
            sha256,
        } => json!({
            "first_offset": first_offset, "next_offset": next_offset, "original_bytes": original_bytes,
            "archived_bytes": archived_bytes, "sha256": hex(sha256),
        }),
        Event::ArchiveEvicted {
            first_offset,
            next_offset,
            shipped,
        } => {
            json!({"first_offset": first_offset, "next_offset": next_offset, "shipped": shipped})
        }
        Event::ShipIntended {
            object,
            first_offset,
            next_offset,
            sha256,
            bytes,
        }
        | Event::ShipConfirmed {
            object,
            first_offset,
            next_offset,
            sha256,
            bytes,
        } => json!({
            "object": ship_object(*object), "first_offset": first_offset, "next_offset": next_offset,
            "sha256": hex(sha256), "bytes": bytes,
        }),
        Event::RecoveryPointLagging {
            lag_s,
            max_lag_s,
            store_next_offset,
        } => {
            json!({"lag_s": lag_s, "max_lag_s": max_lag_s, "store_next_offset": store_next_offset})
        }
    }
}

/// `GET /api/v1/entities/{id}/events` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityEventsView {
    /// Entity id.
    pub entity: String,
    /// Highest seq (0 if unknown).
    pub highest_seq: u64,
    /// Set when the events asked for begin before this gateway's history (it was restored
    /// from central storage, which holds them): the first offset it holds; the events
    /// listed begin there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_start: Option<u64>,
    /// Events.
    pub events: Vec<EventView>,
}

/// `GET /api/v1/events` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPageView {
    /// Events.
    pub events: Vec<EventView>,
    /// Continue with `after=last_offset`.
    pub last_offset: u64,
}

/// A rollup bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketView {
    /// Interval start.
    pub start: String,
    /// Interval end.
    pub end: String,
    /// Energy imported in the interval, Wh.
    pub import_wh: f64,
    /// Energy exported, Wh.
    pub export_wh: f64,
    /// Minimum power, W.
    pub min_w: f32,
    /// Mean power, W.
    pub avg_w: f32,
    /// Maximum power, W.
    pub max_w: f32,
    /// Readings.
    pub count: u32,
}

/// Builds a [`BucketView`].
pub fn bucket_view(b: &Bucket, step: Step) -> BucketView {
    let start = b.index * step.millis();
    BucketView {
        start: rfc3339(start),
        end: rfc3339(start + step.millis()),
        import_wh: b.import_wh,
        export_wh: b.export_wh,
        min_w: b.min_w,
        avg_w: b.mean_w,
        max_w: b.max_w,
        count: b.count,
    }
}

/// `GET /api/v1/meters/{id}/rollups` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollupsView {
    /// Meter id.
    pub meter: String,
    /// `15m`, `1h` or `1d`.
    pub step: String,
    /// Range start.
    pub from: String,
    /// Range end.
    pub to: String,
    /// Intervals with data, oldest first (intervals without data are absent: gaps).
    pub buckets: Vec<BucketView>,
}
