//! Validation: a command against the current state (and earlier commands of the same
//! batch) becomes events, a duplicate (accepted, nothing stored), or a rejection that names
//! the field and the reason. Pure: no I/O, no clock but the one passed in.

mod values;

use gridlog_common::domain::{
    AssetKind, Command, EntityKind, Event, MeterKind, Reading, Register, SYSTEM_ID_PREFIX,
};
use gridlog_common::id::{EntityId, Label};

use super::rejection::{Rejection, RejectionCode};
use super::state::{
    after_replacement, reading_fingerprint, AssetState, EntityState, MeterState, ASSET_FAULTS_MAX,
};
use super::times::{TimeLookup, READING_RUNS_MAX};
use values::{check_time, energy, finite, reading_values, within};
pub use values::{
    CURRENT_A_ABS_MAX, ENERGY_WH_MAX, POWER_W_ABS_MAX, REACTIVE_POWER_VAR_ABS_MAX, TIME_MS_MIN,
    VOLTAGE_V_ABS_MAX,
};

/// Most events one command produces: a reading with both registers wrapped gives two
/// rollovers and the reading; an auto-registered meter's first reading gives two.
pub const EVENTS_PER_COMMAND_MAX: usize = 3;

/// The events of one accepted command (inline: no allocation per command).
pub type CommandEvents = heapless::Vec<Event, EVENTS_PER_COMMAND_MAX>;

/// What validation decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Store these events (in order) for the command's entity.
    Accept(CommandEvents),
    /// Already recorded exactly so: nothing to store, report success.
    Duplicate,
    /// Refused.
    Reject(Rejection),
}

/// Settings validation depends on.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Register unknown meters on their first reading, with this kind.
    pub auto_register: Option<MeterKind>,
    /// How far ahead of the gateway clock a measurement time may be.
    pub future_skew_ms: i64,
    /// Most entities the gateway holds: meters and assets (decommissioned ones count: they
    /// stay in the image and the log) and the gateway's own. A command that would create
    /// a meter or asset beyond it is rejected with `too_many_entities`; the gateway's own
    /// bookkeeping never is. Bounds the image's memory whatever clients send. Default
    /// [`super::ENTITIES_MAX_DEFAULT`].
    pub entities_max: usize,
}

/// Fraction of a register's range near its top (before) and bottom (after) within which a
/// decrease is recognised as a wrap rather than rejected.
pub const ROLLOVER_BAND: f64 = 0.25;

/// A verdict that stores one event.
fn accept_one(event: Event) -> Verdict {
    let mut events = CommandEvents::new();
    push(&mut events, event);
    Verdict::Accept(events)
}

/// Adds one of a command's events; no command produces more than
/// [`EVENTS_PER_COMMAND_MAX`] (tests run with this check on).
fn push(events: &mut CommandEvents, event: Event) {
    let pushed = events.push(event);
    debug_assert!(
        pushed.is_ok(),
        "a command produced more than EVENTS_PER_COMMAND_MAX events"
    );
}

/// The fingerprint of the entity's reading stored at a measurement time, if the gateway
/// still remembers it among its recent arrivals (the planner's `RecentReadings`, which
/// builds its index at the first lookup: hence `FnMut`).
pub(crate) type Recall<'a> = &'a mut dyn FnMut(i64) -> Option<u64>;

/// Validates `command` (with an optional `expected_seq`) at gateway time `now_ms`.
pub(crate) fn validate(
    command: &Command,
    expected_seq: Option<u64>,
    state: Option<&EntityState>,
    recall: Recall<'_>,
    rules: &Rules,
    now_ms: i64,
) -> Verdict {
    match check(command, expected_seq, state, recall, rules, now_ms) {
        Ok(verdict) => verdict,
        Err(rejection) => Verdict::Reject(rejection),
    }
}

fn check(
    command: &Command,
    expected_seq: Option<u64>,
    state: Option<&EntityState>,
    recall: Recall<'_>,
    rules: &Rules,
    now_ms: i64,
) -> Result<Verdict, Rejection> {
    let entity = command.entity();
    check_expected_seq(entity, expected_seq, state)?;
    let reserved = entity.as_str().starts_with(SYSTEM_ID_PREFIX);
    if reserved != matches!(command, Command::RecordSystemEvent { .. }) {
        return Err(Rejection::new(
            RejectionCode::ReservedId,
            Some("id"),
            format!("ids starting with {SYSTEM_ID_PREFIX:?} are the gateway's own; {entity} cannot be used here"),
        ));
    }
    match command {
        Command::RecordSystemEvent { event, .. } => Ok(accept_one(event.clone())),
        Command::RegisterMeter {
            kind,
            register_bits,
            ..
        } => register_meter(entity, *kind, *register_bits, state),
        Command::RegisterAsset {
            kind,
            rated_power_w,
            capacity_wh,
            ..
        } => register_asset(entity, *kind, *rated_power_w, *capacity_wh, state),
        Command::RecordReading { reading, .. } => {
            check_reading(entity, reading, state, recall, rules, now_ms)
        }
        Command::ReplaceMeter {
            time_ms,
            import_wh,
            export_wh,
            ..
        } => {
            let registers = (*import_wh, *export_wh);
            replace_meter(entity, *time_ms, registers, state, rules, now_ms)
        }
        Command::DecommissionMeter { .. } => {
            let m = meter(entity, state)?;
            if m.decommissioned {
                return Ok(Verdict::Duplicate);
            }
            Ok(accept_one(Event::MeterDecommissioned))
        }
        Command::RecordTelemetry { telemetry, .. } => {
            asset(entity, state)?;
            within(telemetry.power_w, POWER_W_ABS_MAX, "power_w", "W")?;
            if let Some(soc) = telemetry.soc_pct {
                finite(soc, "soc_pct")?;
                if !(0.0..=100.0).contains(&soc) {
                    return Err(Rejection::new(
                        RejectionCode::InvalidSoc,
                        Some("soc_pct"),
                        format!("soc_pct must be 0..=100, got {soc}"),
                    ));
                }
            }
            check_time(telemetry.time_ms, rules.future_skew_ms, now_ms)?;
            Ok(accept_one(Event::TelemetryRecorded(telemetry.clone())))
        }
        Command::RequestSetpoint { power_w, .. } => {
            setpoint(entity, *power_w, state, SetpointStep::Request)
        }
        Command::ConfirmSetpoint { power_w, .. } => {
            setpoint(entity, *power_w, state, SetpointStep::Confirm)
        }
        Command::ChangeAvailability { available, .. } => {
            let a = asset(entity, state)?;
            if a.available == *available {
                return Ok(Verdict::Duplicate);
            }
            Ok(accept_one(Event::AvailabilityChanged {
                available: *available,
            }))
        }
        Command::RaiseFault { code, .. } => raise_fault(entity, code, state),
        Command::ClearFault { code, .. } => {
            let a = asset(entity, state)?;
            if !a.faults.contains(code) {
                return Ok(Verdict::Duplicate);
            }
            Ok(accept_one(Event::FaultCleared { code: code.clone() }))
        }
    }
}

/// Optimistic concurrency: the command names the seq it expects the entity at.
fn check_expected_seq(
    entity: &EntityId,
    expected_seq: Option<u64>,
    state: Option<&EntityState>,
) -> Result<(), Rejection> {
    let current = state.map_or(0, EntityState::seq);
    match expected_seq {
        Some(expected) if expected != current => Err(Rejection {
            code: RejectionCode::SeqMismatch,
            field: Some("expected_seq"),
            message: format!("expected seq {expected} but {entity} is at seq {current}"),
            current_seq: Some(current),
        }),
        _ => Ok(()),
    }
}

fn already_registered(entity: &EntityId, existing: &EntityState) -> Rejection {
    Rejection::new(
        RejectionCode::AlreadyRegistered,
        Some("id"),
        format!("{entity} is already registered as {:?}", existing.kind()),
    )
}

fn register_meter(
    entity: &EntityId,
    kind: MeterKind,
    register_bits: Option<u8>,
    state: Option<&EntityState>,
) -> Result<Verdict, Rejection> {
    if let Some(bits) = register_bits {
        if !(8..=64).contains(&bits) {
            return Err(Rejection::new(
                RejectionCode::InvalidRegisterBits,
                Some("register_bits"),
                format!("register_bits must be 8..=64, got {bits}"),
            ));
        }
    }
    match state {
        None => Ok(accept_one(Event::MeterRegistered {
            kind,
            register_bits,
        })),
        Some(EntityState::Meter(m)) if m.kind == kind && m.register_bits == register_bits => {
            Ok(Verdict::Duplicate)
        }
        Some(existing) => Err(already_registered(entity, existing)),
    }
}

fn register_asset(
    entity: &EntityId,
    kind: AssetKind,
    rated_power_w: f64,
    capacity_wh: Option<f64>,
    state: Option<&EntityState>,
) -> Result<Verdict, Rejection> {
    within(rated_power_w, POWER_W_ABS_MAX, "rated_power_w", "W")?;
    if rated_power_w <= 0.0 {
        return Err(Rejection::new(
            RejectionCode::InvalidRatedPower,
            Some("rated_power_w"),
            "rated_power_w must be positive",
        ));
    }
    if let Some(c) = capacity_wh {
        energy(c, "capacity_wh")?;
    }
    match state {
        None => Ok(accept_one(Event::AssetRegistered {
            kind,
            rated_power_w,
            capacity_wh,
        })),
        Some(EntityState::Asset(a))
            if a.kind == kind
                && a.rated_power_w == rated_power_w
                && a.capacity_wh == capacity_wh =>
        {
            Ok(Verdict::Duplicate)
        }
        Some(existing) => Err(already_registered(entity, existing)),
    }
}

/// A replacement at `time_ms` by a meter whose registers start at `(import_wh, export_wh)`.
fn replace_meter(
    entity: &EntityId,
    time_ms: i64,
    (import_wh, export_wh): (f64, f64),
    state: Option<&EntityState>,
    rules: &Rules,
    now_ms: i64,
) -> Result<Verdict, Rejection> {
    let m = meter(entity, state)?;
    energy(import_wh, "import_wh")?;
    energy(export_wh, "export_wh")?;
    // A replacement dated ahead would turn away every reading until then.
    check_time(time_ms, rules.future_skew_ms, now_ms)?;
    if m.decommissioned {
        return Err(decommissioned(entity));
    }
    // The readings up to the newest belong to the old meter: a replacement dated among
    // them would hand some of them to the new one.
    if let Some(latest) = m.latest.filter(|l| time_ms <= l.time_ms) {
        return Err(Rejection::new(
            RejectionCode::ReplacementBeforeLatest,
            Some("time"),
            format!(
                "{entity} has a reading at {} ms, not before the replacement's time: a replacement is dated after the old meter's last reading",
                latest.time_ms
            ),
        ));
    }
    Ok(accept_one(Event::MeterReplaced {
        time_ms,
        import_wh,
        export_wh,
    }))
}

fn decommissioned(entity: &EntityId) -> Rejection {
    Rejection::new(
        RejectionCode::MeterDecommissioned,
        Some("meter"),
        format!("{entity} is decommissioned"),
    )
}

/// Which side of a setpoint a command is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetpointStep {
    /// Asked of the asset: it must be available for control.
    Request,
    /// Applied by the asset (reported back): recorded whatever its availability.
    Confirm,
}

fn setpoint(
    entity: &EntityId,
    power_w: f64,
    state: Option<&EntityState>,
    step: SetpointStep,
) -> Result<Verdict, Rejection> {
    let a = asset(entity, state)?;
    within(power_w, POWER_W_ABS_MAX, "power_w", "W")?;
    if power_w.abs() > a.rated_power_w {
        return Err(Rejection::new(
            RejectionCode::SetpointAboveRated,
            Some("power_w"),
            format!(
                "setpoint {power_w} W exceeds the rated power of {} W of {entity}",
                a.rated_power_w
            ),
        ));
    }
    if power_w < 0.0 && a.kind != AssetKind::Battery {
        return Err(Rejection::new(
            RejectionCode::SetpointNegative,
            Some("power_w"),
            format!(
                "only batteries take negative setpoints; {entity} is a {}",
                a.kind.name()
            ),
        ));
    }
    match step {
        SetpointStep::Request if !a.available => Err(Rejection::new(
            RejectionCode::AssetUnavailable,
            Some("asset"),
            format!("{entity} is not available for control"),
        )),
        SetpointStep::Request => Ok(accept_one(Event::SetpointRequested { power_w })),
        SetpointStep::Confirm => Ok(accept_one(Event::SetpointApplied { power_w })),
    }
}

fn raise_fault(
    entity: &EntityId,
    code: &Label,
    state: Option<&EntityState>,
) -> Result<Verdict, Rejection> {
    let a = asset(entity, state)?;
    if a.faults.contains(code) {
        return Ok(Verdict::Duplicate);
    }
    // The image holds at most ASSET_FAULTS_MAX active faults: one more would be stored and
    // acknowledged but not kept, and log and state would disagree for good (clearing it
    // would then be a duplicate).
    if a.faults.len() >= ASSET_FAULTS_MAX {
        return Err(Rejection::new(
            RejectionCode::TooManyFaults,
            Some("code"),
            format!(
                "asset {entity} already has {ASSET_FAULTS_MAX} active faults, the most it can have; clear one first"
            ),
        ));
    }
    Ok(accept_one(Event::FaultRaised { code: code.clone() }))
}

fn meter<'s>(
    entity: &EntityId,
    state: Option<&'s EntityState>,
) -> Result<&'s MeterState, Rejection> {
    match state {
        Some(EntityState::Meter(m)) => Ok(m),
        Some(EntityState::Asset(_) | EntityState::System(_)) => Err(Rejection::new(
            RejectionCode::NotAMeter,
            Some("meter"),
            format!("{entity} is an asset, not a meter"),
        )),
        None => Err(Rejection::new(
            RejectionCode::UnknownMeter,
            Some("meter"),
            format!("meter {entity} is not registered"),
        )),
    }
}

fn asset<'s>(
    entity: &EntityId,
    state: Option<&'s EntityState>,
) -> Result<&'s AssetState, Rejection> {
    match state {
        Some(EntityState::Asset(a)) => Ok(a),
        Some(EntityState::Meter(_) | EntityState::System(_)) => Err(Rejection::new(
            RejectionCode::NotAnAsset,
            Some("asset"),
            format!("{entity} is a meter, not an asset"),
        )),
        None => Err(Rejection::new(
            RejectionCode::UnknownAsset,
            Some("asset"),
            format!("asset {entity} is not registered"),
        )),
    }
}

fn check_reading(
    entity: &EntityId,
    r: &Reading,
    state: Option<&EntityState>,
    recall: Recall<'_>,
    rules: &Rules,
    now_ms: i64,
) -> Result<Verdict, Rejection> {
    reading_values(r)?;
    check_time(r.time_ms, rules.future_skew_ms, now_ms)?;
    // At most EVENTS_PER_COMMAND_MAX pushes below: a registration or up to two rollovers,
    // then the reading.
    let mut events = CommandEvents::new();
    let m = match (state, rules.auto_register) {
        (None, Some(kind)) => {
            push(
                &mut events,
                Event::MeterRegistered {
                    kind,
                    register_bits: None,
                },
            );
            push(&mut events, Event::ReadingRecorded(*r));
            return Ok(Verdict::Accept(events));
        }
        _ => meter(entity, state)?,
    };
    register_width(m, r)?;
    if let Some(verdict) = against_history(entity, m, r, recall, &mut events)? {
        return Ok(verdict);
    }
    push(&mut events, Event::ReadingRecorded(*r));
    Ok(Verdict::Accept(events))
}

/// Registers that wrap hold values below their modulus.
fn register_width(m: &MeterState, r: &Reading) -> Result<(), Rejection> {
    if let Some(bits) = m.register_bits {
        let modulus = 2f64.powi(i32::from(bits));
        for (field, value) in [("import_wh", r.import_wh), ("export_wh", r.export_wh)] {
            if value >= modulus {
                return Err(Rejection::new(
                    RejectionCode::RegisterOutOfRange,
                    Some(field),
                    format!("{field} is {value}, beyond the meter's {bits}-bit register (below {modulus})"),
                ));
            }
        }
    }
    Ok(())
}

/// A reading against the meter's earlier ones: a duplicate (`Some`), refused, or new
/// (`None`, with any rollovers it implies pushed onto `events`). A reading is never stored
/// at a time the meter already has one for: identical values (known from the meter's
/// newest readings or the gateway's recent arrivals) make it a duplicate, anything else a
/// `conflicting_duplicate`; at a time whose history is forgotten it is refused.
fn against_history(
    entity: &EntityId,
    m: &MeterState,
    r: &Reading,
    recall: Recall<'_>,
    events: &mut CommandEvents,
) -> Result<Option<Verdict>, Rejection> {
    let fingerprint = reading_fingerprint(r);
    let known = m.times.lookup(r.time_ms);
    let remembered = match known {
        TimeLookup::Absent => None,
        TimeLookup::Stored | TimeLookup::Forgotten => remembered_fingerprint(m, r.time_ms, recall),
    };
    // A retry of a stored reading is a duplicate, even after the meter was decommissioned.
    if remembered == Some(fingerprint) {
        return Ok(Some(Verdict::Duplicate));
    }
    if m.decommissioned {
        return Err(decommissioned(entity));
    }
    if known == TimeLookup::Stored || remembered.is_some() {
        let why = if remembered.is_some() {
            "a different reading"
        } else {
            "a reading (stored too long ago for its values to be compared)"
        };
        return Err(Rejection::new(
            RejectionCode::ConflictingDuplicate,
            Some("time"),
            format!("{entity} already has {why} at this time"),
        ));
    }
    if m.replaced_ms.is_some_and(|t| r.time_ms < t) {
        return Err(Rejection::new(
            RejectionCode::BeforeReplacement,
            Some("time"),
            format!("{entity} was replaced after this time; the reading belongs to the old meter"),
        ));
    }
    if known == TimeLookup::Forgotten {
        return Err(beyond_duplicate_history(entity, m));
    }
    match &m.latest {
        Some(latest) => against_latest(entity, m, latest, r, fingerprint, events),
        None => Ok(None),
    }
}

/// The fingerprint of the meter's reading at `time_ms`, if it is among its newest
/// readings, the gateway's recent arrivals, or is its newest reading (not a replacement's
/// baseline, which shares its time with no reading of the old meter).
fn remembered_fingerprint(m: &MeterState, time_ms: i64, recall: Recall<'_>) -> Option<u64> {
    m.recent
        .iter()
        .find(|(t, _)| *t == time_ms)
        .map(|&(_, seen)| seen)
        .or_else(|| recall(time_ms))
        .or_else(|| {
            m.latest
                .filter(|l| l.time_ms == time_ms && m.replaced_ms != Some(time_ms))
                .map(|l| reading_fingerprint(&l))
        })
}

fn beyond_duplicate_history(entity: &EntityId, m: &MeterState) -> Rejection {
    let through = m.times.forgotten_through_ms().unwrap_or(i64::MIN);
    Rejection::new(
        RejectionCode::BeyondDuplicateHistory,
        Some("time"),
        format!(
            "{entity} keeps the times of its stored readings only after {through} ms (at most {READING_RUNS_MAX} runs of times per meter); a reading at or before it could be one already stored and is not stored"
        ),
    )
}

/// A reading against the meter's newest one (`latest`): later readings must not go down
/// (unless a register wrapped), one at the same time must be the same, and a late one
/// must fit under it.
fn against_latest(
    entity: &EntityId,
    m: &MeterState,
    latest: &Reading,
    r: &Reading,
    fingerprint: u64,
    events: &mut CommandEvents,
) -> Result<Option<Verdict>, Rejection> {
    // At the replacement's time the newest "reading" is the new meter's baseline, and
    // the new meter's first reading may share its time.
    if r.time_ms > latest.time_ms || after_replacement(m, latest, r.time_ms) {
        for (register, field, new, old) in [
            (Register::Import, "import_wh", r.import_wh, latest.import_wh),
            (Register::Export, "export_wh", r.export_wh, latest.export_wh),
        ] {
            let wraps = m.register_bits.is_some_and(|bits| is_wrap(old, new, bits));
            if new == 0.0 && old > 0.0 && !wraps {
                return Err(Rejection::new(RejectionCode::SuspectReset, Some(field), format!("{field} dropped from {old} to exactly 0: a reset must be recorded as a replacement")));
            }
            if new < old {
                match m.register_bits {
                    Some(bits) if is_wrap(old, new, bits) => {
                        push(events, Event::RegisterRolledOver { register, bits, before_wh: old, after_wh: new });
                    }
                    _ => {
                        return Err(Rejection::new(
                            RejectionCode::RegisterDecreased,
                            Some(field),
                            format!("{field} went down from {old} to {new}; record a replacement or rollover first"),
                        ))
                    }
                }
            }
        }
    } else if r.time_ms == latest.time_ms {
        // Same time as the newest but not in the duplicate window: compare directly.
        if reading_fingerprint(latest) == fingerprint {
            return Ok(Some(Verdict::Duplicate));
        }
        return Err(Rejection::new(
            RejectionCode::ConflictingDuplicate,
            Some("time"),
            format!("{entity} already has a different reading at this time"),
        ));
    } else if r.import_wh > latest.import_wh || r.export_wh > latest.export_wh {
        // A late reading (backfill) must fit under the newer registers.
        let field = if r.import_wh > latest.import_wh {
            "import_wh"
        } else {
            "export_wh"
        };
        return Err(Rejection::new(
            RejectionCode::RegisterNotMonotonic,
            Some(field),
            format!("late reading has {field} above the newer reading's"),
        ));
    }
    Ok(None)
}

fn is_wrap(old: f64, new: f64, bits: u8) -> bool {
    let modulus = 2f64.powi(i32::from(bits));
    old >= modulus * (1.0 - ROLLOVER_BAND) && old < modulus && new < modulus * ROLLOVER_BAND
}

/// The kind an event belongs to, when it is the entity's first (registration).
pub(crate) fn kind_after(
    state: Option<&EntityState>,
    events: &[Event],
    entity: &EntityId,
) -> Option<EntityKind> {
    if entity.as_str().starts_with(SYSTEM_ID_PREFIX) {
        return Some(EntityKind::System);
    }
    state
        .map(EntityState::kind)
        .or_else(|| match events.first() {
            Some(Event::MeterRegistered { kind, .. }) => Some(EntityKind::Meter(*kind)),
            Some(Event::AssetRegistered { kind, .. }) => Some(EntityKind::Asset(*kind)),
            _ => None,
        })
}

#[cfg(test)]
mod tests;
