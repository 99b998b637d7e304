//! Every rule of [`validate`](super::validate), as a pure function: a state built from
//! events, a command, and the verdict it must get. No log, no engine, no threads.

use gridlog_common::domain::{
    AssetKind, Command, EntityKind, Event, MeterKind, Reading, Register, StoredEvent, Telemetry,
};
use gridlog_common::id::{EntityId, Label};

use super::super::rejection::RejectionCode as C;
use super::super::state::{reading_fingerprint, EntityState, ASSET_FAULTS_MAX};
use super::super::times::ReadingTimes;
use super::*;

/// A day after a measurement time that is a whole day (UTC).
const T0_MS: i64 = 1_750_000_000_000 / 86_400_000 * 86_400_000;
const NOW_MS: i64 = T0_MS + 86_400_000;
const SKEW_MS: i64 = 5 * 60 * 1000;
/// 2000-01-01T00:00:00Z.
const EARLIEST_MS: i64 = 946_684_800_000;

fn id(s: &str) -> EntityId {
    EntityId::new(s).unwrap()
}

/// A [`Recall`] that remembers nothing.
fn recall_nothing(_time_ms: i64) -> Option<u64> {
    None
}

fn rules() -> Rules {
    Rules {
        auto_register: None,
        future_skew_ms: SKEW_MS,
        entities_max: 20_000,
    }
}

/// The state of an entity after `events` (the first a registration), applied the way the
/// image applies them.
fn state_after(events: &[Event]) -> EntityState {
    let kind = match events.first() {
        Some(Event::MeterRegistered { kind, .. }) => EntityKind::Meter(*kind),
        Some(Event::AssetRegistered { kind, .. }) => EntityKind::Asset(*kind),
        other => panic!("not a registration: {other:?}"),
    };
    let mut state: Option<EntityState> = None;
    for (i, event) in events.iter().enumerate() {
        let stored = StoredEvent {
            entity: id("e"),
            kind,
            seq: i as u64 + 1,
            gateway_ms: NOW_MS,
            command_id: None,
            event: event.clone(),
        };
        state = EntityState::evolve(state.as_ref(), &stored);
    }
    state.expect("a registration creates the state")
}

fn reading(time_ms: i64, import_wh: f64, export_wh: f64) -> Reading {
    Reading {
        time_ms,
        import_wh,
        export_wh,
        power_w: 100.0,
        voltage_v: None,
        current_a: None,
        reactive_power_var: None,
    }
}

fn registered_meter(bits: Option<u8>) -> Event {
    Event::MeterRegistered {
        kind: MeterKind::Grid,
        register_bits: bits,
    }
}

/// Grid meter with one reading at `T0_MS`: import 1000, export 50.
fn meter() -> EntityState {
    state_after(&[
        registered_meter(None),
        Event::ReadingRecorded(reading(T0_MS, 1000.0, 50.0)),
    ])
}

/// A meter with 16-bit registers near the top of their range (import 65,000).
fn meter_16_bit() -> EntityState {
    state_after(&[
        registered_meter(Some(16)),
        Event::ReadingRecorded(reading(T0_MS, 65_000.0, 0.0)),
    ])
}

/// [`meter`], replaced a minute after its reading by one starting at import 3.
/// Grid meter with readings every minute from `T0_MS - 10 min` (import 990) to `T0_MS`
/// (import 1000), export 50: the oldest three are no longer among its newest eight.
fn meter_with_eleven_readings() -> EntityState {
    let mut events = vec![registered_meter(None)];
    for k in (0..=10).rev() {
        events.push(Event::ReadingRecorded(reading(
            T0_MS - k * 60_000,
            1000.0 - k as f64,
            50.0,
        )));
    }
    state_after(&events)
}

/// [`meter`], with its reading times before `T0_MS` forgotten.
fn meter_with_forgotten_history() -> EntityState {
    let mut state = meter();
    if let EntityState::Meter(m) = &mut state {
        m.times = ReadingTimes::forgotten_through(T0_MS - 1);
    }
    state
}

fn replaced_meter() -> EntityState {
    state_after(&[
        registered_meter(None),
        Event::ReadingRecorded(reading(T0_MS, 1000.0, 50.0)),
        Event::MeterReplaced {
            time_ms: T0_MS + 60_000,
            import_wh: 3.0,
            export_wh: 0.0,
        },
    ])
}

fn decommissioned_meter() -> EntityState {
    state_after(&[
        registered_meter(None),
        Event::ReadingRecorded(reading(T0_MS, 1000.0, 50.0)),
        Event::MeterDecommissioned,
    ])
}

fn asset_events(kind: AssetKind, rated_power_w: f64) -> Vec<Event> {
    vec![Event::AssetRegistered {
        kind,
        rated_power_w,
        capacity_wh: None,
    }]
}

fn battery() -> EntityState {
    state_after(&asset_events(AssetKind::Battery, 5000.0))
}

fn ev_charger() -> EntityState {
    state_after(&asset_events(AssetKind::EvCharger, 11_000.0))
}

fn unavailable_battery() -> EntityState {
    let mut events = asset_events(AssetKind::Battery, 5000.0);
    events.push(Event::AvailabilityChanged { available: false });
    state_after(&events)
}

fn battery_with_faults(n: usize) -> EntityState {
    let mut events = asset_events(AssetKind::Battery, 5000.0);
    events.extend((0..n).map(|i| Event::FaultRaised {
        code: Label::new(&format!("F{i}")).unwrap(),
    }));
    state_after(&events)
}

fn record(time_ms: i64, import_wh: f64, export_wh: f64) -> Command {
    record_reading(reading(time_ms, import_wh, export_wh))
}

fn record_reading(reading: Reading) -> Command {
    Command::RecordReading {
        meter: id("e"),
        reading,
    }
}

fn setpoint(power_w: f64) -> Command {
    Command::RequestSetpoint {
        asset: id("e"),
        power_w,
    }
}

fn telemetry(power_w: f64, soc_pct: Option<f64>) -> Command {
    Command::RecordTelemetry {
        asset: id("e"),
        telemetry: Telemetry {
            time_ms: T0_MS,
            power_w,
            soc_pct,
            status: Label::new("ok").unwrap(),
        },
    }
}

fn register_asset(rated_power_w: f64, capacity_wh: Option<f64>) -> Command {
    Command::RegisterAsset {
        asset: id("e"),
        kind: AssetKind::Battery,
        rated_power_w,
        capacity_wh,
    }
}

fn replace(time_ms: i64, import_wh: f64, export_wh: f64) -> Command {
    Command::ReplaceMeter {
        meter: id("e"),
        time_ms,
        import_wh,
        export_wh,
    }
}

fn fault(code: &str) -> Command {
    Command::RaiseFault {
        asset: id("e"),
        code: Label::new(code).unwrap(),
    }
}

/// A rejection the rule must give: its code and field.
fn refused(code: C, field: &'static str) -> Expect {
    Expect::Refused(code, field)
}

#[derive(Debug)]
enum Expect {
    Refused(C, &'static str),
    /// Accepted with these events, in order.
    Accepted(Vec<Event>),
    Duplicate,
}

struct Case {
    why: &'static str,
    state: Option<EntityState>,
    command: Command,
    expected_seq: Option<u64>,
    /// What the gateway's recent arrivals remember: (time, fingerprint).
    recalled: Option<(i64, u64)>,
    expect: Expect,
}

fn case(why: &'static str, state: Option<EntityState>, command: Command, expect: Expect) -> Case {
    Case {
        why,
        state,
        command,
        expected_seq: None,
        recalled: None,
        expect,
    }
}

/// Every rule, with the values on both sides of it.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let m = || Some(meter());
    let t = T0_MS + 60_000;
    let r = |time_ms, import_wh, export_wh| Event::ReadingRecorded(reading(time_ms, import_wh, export_wh));
    vec![
        Case { expected_seq: Some(1), ..case("expected seq behind the entity", m(), record(t, 1001.0, 50.0), refused(C::SeqMismatch, "expected_seq")) },
        Case { expected_seq: Some(1), ..case("expected seq of an unknown entity", None, record(t, 1001.0, 50.0), refused(C::SeqMismatch, "expected_seq")) },
        Case { expected_seq: Some(2), ..case("expected seq matches", m(), record(t, 1001.0, 50.0), Expect::Accepted(vec![r(t, 1001.0, 50.0)])) },
        case("a meter under a reserved id", None, Command::RegisterMeter { meter: id("gateway:x"), kind: MeterKind::Grid, register_bits: None }, refused(C::ReservedId, "id")),
        case("a system event for a client id", None, Command::RecordSystemEvent { entity: id("e"), event: Event::MeterDecommissioned }, refused(C::ReservedId, "id")),
        case("register width 7", None, Command::RegisterMeter { meter: id("e"), kind: MeterKind::Grid, register_bits: Some(7) }, refused(C::InvalidRegisterBits, "register_bits")),
        case("register width 65", None, Command::RegisterMeter { meter: id("e"), kind: MeterKind::Grid, register_bits: Some(65) }, refused(C::InvalidRegisterBits, "register_bits")),
        case("register width 8", None, Command::RegisterMeter { meter: id("e"), kind: MeterKind::Grid, register_bits: Some(8) }, Expect::Accepted(vec![registered_meter(Some(8))])),
        case("the same registration again", m(), Command::RegisterMeter { meter: id("e"), kind: MeterKind::Grid, register_bits: None }, Expect::Duplicate),
        case("a meter registered as another kind", m(), Command::RegisterMeter { meter: id("e"), kind: MeterKind::Pv, register_bits: None }, refused(C::AlreadyRegistered, "id")),
        case("an asset registered over a meter", m(), register_asset(1.0, None), refused(C::AlreadyRegistered, "id")),
        case("a rated power of 0", None, register_asset(0.0, None), refused(C::InvalidRatedPower, "rated_power_w")),
        case("a negative rated power", None, register_asset(-1.0, None), refused(C::InvalidRatedPower, "rated_power_w")),
        case("a rated power of NaN", None, register_asset(f64::NAN, None), refused(C::InvalidNumber, "rated_power_w")),
        case("a rated power above 1 GW", None, register_asset(POWER_W_ABS_MAX * 1.01, None), refused(C::ValueOutOfRange, "rated_power_w")),
        case("a negative capacity", None, register_asset(1.0, Some(-1.0)), refused(C::NegativeEnergy, "capacity_wh")),
        case("a capacity above 1 PWh", None, register_asset(1.0, Some(ENERGY_WH_MAX * 1.01)), refused(C::ValueOutOfRange, "capacity_wh")),
        case("a reading of an unknown meter", None, record(t, 1.0, 0.0), refused(C::UnknownMeter, "meter")),
        case("a reading of an asset", Some(battery()), record(t, 1.0, 0.0), refused(C::NotAMeter, "meter")),
        case("an infinite import", m(), record(t, f64::INFINITY, 50.0), refused(C::InvalidNumber, "import_wh")),
        case("a NaN power", m(), record_reading(Reading { power_w: f64::NAN, ..reading(t, 1001.0, 50.0) }), refused(C::InvalidNumber, "power_w")),
        case("a negative export", m(), record(t, 1001.0, -0.001), refused(C::NegativeEnergy, "export_wh")),
        case("an import above 1 PWh", m(), record(t, ENERGY_WH_MAX * 1.01, 50.0), refused(C::ValueOutOfRange, "import_wh")),
        case("a power beyond f32", m(), record_reading(Reading { power_w: -1e39, ..reading(t, 1001.0, 50.0) }), refused(C::ValueOutOfRange, "power_w")),
        case("a voltage above 1 MV", m(), record_reading(Reading { voltage_v: Some(2e6), ..reading(t, 1001.0, 50.0) }), refused(C::ValueOutOfRange, "voltage_v")),
        case("a current above 1 MA", m(), record_reading(Reading { current_a: Some(-2e6), ..reading(t, 1001.0, 50.0) }), refused(C::ValueOutOfRange, "current_a")),
        case("a reactive power above 1 Gvar", m(), record_reading(Reading { reactive_power_var: Some(2e9), ..reading(t, 1001.0, 50.0) }), refused(C::ValueOutOfRange, "reactive_power_var")),
        case("values at their bounds", m(), record_reading(Reading { power_w: POWER_W_ABS_MAX, voltage_v: Some(VOLTAGE_V_ABS_MAX as f32), ..reading(t, ENERGY_WH_MAX, 50.0) }), Expect::Accepted(vec![Event::ReadingRecorded(Reading { power_w: POWER_W_ABS_MAX, voltage_v: Some(VOLTAGE_V_ABS_MAX as f32), ..reading(t, ENERGY_WH_MAX, 50.0) })])),
        case("a time before 2000", m(), record(EARLIEST_MS - 1, 900.0, 50.0), refused(C::TimeTooEarly, "time")),
        case("the earliest time", m(), record(EARLIEST_MS, 900.0, 50.0), Expect::Accepted(vec![r(EARLIEST_MS, 900.0, 50.0)])),
        case("beyond the skew ahead of the clock", m(), record(NOW_MS + SKEW_MS + 1, 1001.0, 50.0), refused(C::TimeInFuture, "time")),
        case("exactly the skew ahead of the clock", m(), record(NOW_MS + SKEW_MS, 1001.0, 50.0), Expect::Accepted(vec![r(NOW_MS + SKEW_MS, 1001.0, 50.0)])),
        case("an import beyond a 16-bit register", Some(meter_16_bit()), record(t, 65_536.0, 0.0), refused(C::RegisterOutOfRange, "import_wh")),
        case("an export beyond a 16-bit register", Some(meter_16_bit()), record(t, 65_001.0, 65_540.0), refused(C::RegisterOutOfRange, "export_wh")),
        case("a 16-bit register wrapping", Some(meter_16_bit()), record(t, 500.0, 0.0), Expect::Accepted(vec![Event::RegisterRolledOver { register: Register::Import, bits: 16, before_wh: 65_000.0, after_wh: 500.0 }, r(t, 500.0, 0.0)])),
        case("a 16-bit register wrapping to exactly 0", Some(meter_16_bit()), record(t, 0.0, 0.0), Expect::Accepted(vec![Event::RegisterRolledOver { register: Register::Import, bits: 16, before_wh: 65_000.0, after_wh: 0.0 }, r(t, 0.0, 0.0)])),
        case("a 16-bit register dropping far from a wrap", Some(meter_16_bit()), record(t, 30_000.0, 0.0), refused(C::RegisterDecreased, "import_wh")),
        case("the same reading again", m(), record(T0_MS, 1000.0, 50.0), Expect::Duplicate),
        case("another reading at the same time", m(), record(T0_MS, 1000.5, 50.0), refused(C::ConflictingDuplicate, "time")),
        case("a stored reading beyond the newest eight, its values forgotten", Some(meter_with_eleven_readings()), record(T0_MS - 600_000, 990.0, 50.0), refused(C::ConflictingDuplicate, "time")),
        Case { recalled: Some((T0_MS - 600_000, reading_fingerprint(&reading(T0_MS - 600_000, 990.0, 50.0)))), ..case("a stored reading beyond the newest eight, recalled", Some(meter_with_eleven_readings()), record(T0_MS - 600_000, 990.0, 50.0), Expect::Duplicate) },
        Case { recalled: Some((T0_MS - 600_000, reading_fingerprint(&reading(T0_MS - 600_000, 990.0, 50.0)))), ..case("another reading at a recalled time", Some(meter_with_eleven_readings()), record(T0_MS - 600_000, 989.0, 50.0), refused(C::ConflictingDuplicate, "time")) },
        case("a late reading between stored ones", Some(meter_with_eleven_readings()), record(T0_MS - 570_000, 990.5, 50.0), Expect::Accepted(vec![r(T0_MS - 570_000, 990.5, 50.0)])),
        case("a late reading where the times are forgotten", Some(meter_with_forgotten_history()), record(T0_MS - 60_000, 999.0, 49.0), refused(C::BeyondDuplicateHistory, "time")),
        case("the newest reading again, its times before forgotten", Some(meter_with_forgotten_history()), record(T0_MS, 1000.0, 50.0), Expect::Duplicate),
        case("import went down", m(), record(t, 999.0, 50.0), refused(C::RegisterDecreased, "import_wh")),
        case("export went down", m(), record(t, 1001.0, 49.0), refused(C::RegisterDecreased, "export_wh")),
        case("equal registers", m(), record(t, 1000.0, 50.0), Expect::Accepted(vec![r(t, 1000.0, 50.0)])),
        case("import dropped to exactly 0", m(), record(t, 0.0, 50.0), refused(C::SuspectReset, "import_wh")),
        case("export dropped to exactly 0", m(), record(t, 1000.0, 0.0), refused(C::SuspectReset, "export_wh")),
        case("a late reading above the newer one", m(), record(T0_MS - 60_000, 1001.0, 50.0), refused(C::RegisterNotMonotonic, "import_wh")),
        case("a late export above the newer one", m(), record(T0_MS - 60_000, 999.0, 51.0), refused(C::RegisterNotMonotonic, "export_wh")),
        case("a late reading below the newer one", m(), record(T0_MS - 60_000, 999.0, 49.0), Expect::Accepted(vec![r(T0_MS - 60_000, 999.0, 49.0)])),
        case("a reading before the replacement", Some(replaced_meter()), record(T0_MS + 59_999, 1000.0, 50.0), refused(C::BeforeReplacement, "time")),
        case("the new meter's first reading at the replacement's time", Some(replaced_meter()), record(t, 3.5, 0.0), Expect::Accepted(vec![r(t, 3.5, 0.0)])),
        case("the new meter below its baseline", Some(replaced_meter()), record(t + 60_000, 2.0, 0.0), refused(C::RegisterDecreased, "import_wh")),
        case("a reading of a decommissioned meter", Some(decommissioned_meter()), record(t, 1001.0, 50.0), refused(C::MeterDecommissioned, "meter")),
        case("a stored reading retried after decommissioning", Some(decommissioned_meter()), record(T0_MS, 1000.0, 50.0), Expect::Duplicate),
        case("a replacement of a decommissioned meter", Some(decommissioned_meter()), replace(t, 0.0, 0.0), refused(C::MeterDecommissioned, "meter")),
        case("decommissioning again", Some(decommissioned_meter()), Command::DecommissionMeter { meter: id("e") }, Expect::Duplicate),
        case("a replacement at the newest reading's time", m(), replace(T0_MS, 0.0, 0.0), refused(C::ReplacementBeforeLatest, "time")),
        case("a replacement ahead of the clock", m(), replace(NOW_MS + SKEW_MS + 1, 0.0, 0.0), refused(C::TimeInFuture, "time")),
        case("a replacement with a negative register", m(), replace(t, 0.0, -5.0), refused(C::NegativeEnergy, "export_wh")),
        case("a replacement of an unknown meter", None, replace(t, 0.0, 0.0), refused(C::UnknownMeter, "meter")),
        case("a replacement after the newest reading", m(), replace(t, 3.0, 0.0), Expect::Accepted(vec![Event::MeterReplaced { time_ms: t, import_wh: 3.0, export_wh: 0.0 }])),
        case("telemetry of an unknown asset", None, telemetry(0.0, None), refused(C::UnknownAsset, "asset")),
        case("telemetry of a meter", m(), telemetry(0.0, None), refused(C::NotAnAsset, "asset")),
        case("a state of charge above 100 %", Some(battery()), telemetry(0.0, Some(100.5)), refused(C::InvalidSoc, "soc_pct")),
        case("a negative state of charge", Some(battery()), telemetry(0.0, Some(-0.1)), refused(C::InvalidSoc, "soc_pct")),
        case("a NaN state of charge", Some(battery()), telemetry(0.0, Some(f64::NAN)), refused(C::InvalidNumber, "soc_pct")),
        case("a telemetry power beyond 1 GW", Some(battery()), telemetry(-2e9, None), refused(C::ValueOutOfRange, "power_w")),
        case("a setpoint above rated power", Some(battery()), setpoint(5000.5), refused(C::SetpointAboveRated, "power_w")),
        case("a discharge above rated power", Some(battery()), setpoint(-5001.0), refused(C::SetpointAboveRated, "power_w")),
        case("a confirmed setpoint above rated power", Some(ev_charger()), Command::ConfirmSetpoint { asset: id("e"), power_w: 11_001.0 }, refused(C::SetpointAboveRated, "power_w")),
        case("a discharge at rated power", Some(battery()), setpoint(-5000.0), Expect::Accepted(vec![Event::SetpointRequested { power_w: -5000.0 }])),
        case("a negative setpoint for an EV charger", Some(ev_charger()), setpoint(-1.0), refused(C::SetpointNegative, "power_w")),
        case("a setpoint for an unavailable asset", Some(unavailable_battery()), setpoint(1000.0), refused(C::AssetUnavailable, "asset")),
        case("a confirmed setpoint for an unavailable asset", Some(unavailable_battery()), Command::ConfirmSetpoint { asset: id("e"), power_w: 1000.0 }, Expect::Accepted(vec![Event::SetpointApplied { power_w: 1000.0 }])),
        case("the same availability again", Some(unavailable_battery()), Command::ChangeAvailability { asset: id("e"), available: false }, Expect::Duplicate),
        case("one fault more than an asset holds", Some(battery_with_faults(ASSET_FAULTS_MAX)), fault("NEW"), refused(C::TooManyFaults, "code")),
        case("an active fault raised again", Some(battery_with_faults(ASSET_FAULTS_MAX)), fault("F0"), Expect::Duplicate),
        case("the last fault that fits", Some(battery_with_faults(ASSET_FAULTS_MAX - 1)), fault("NEW"), Expect::Accepted(vec![Event::FaultRaised { code: Label::new("NEW").unwrap() }])),
        case("clearing a fault that is not active", Some(battery()), Command::ClearFault { asset: id("e"), code: Label::new("F0").unwrap() }, Expect::Duplicate),
    ]
}

#[test]
fn every_rule_gives_its_verdict_on_a_state_without_a_log() {
    for case in cases() {
        let mut recall = |time_ms: i64| {
            case.recalled
                .filter(|&(at, _)| at == time_ms)
                .map(|(_, fingerprint)| fingerprint)
        };
        let verdict = validate(
            &case.command,
            case.expected_seq,
            case.state.as_ref(),
            &mut recall,
            &rules(),
            NOW_MS,
        );
        match (&case.expect, &verdict) {
            (Expect::Refused(code, field), Verdict::Reject(rejection)) => {
                assert_eq!(
                    (rejection.code, rejection.field),
                    (*code, Some(*field)),
                    "{}: {rejection}",
                    case.why
                );
                assert!(!rejection.message.is_empty(), "{}", case.why);
            }
            (Expect::Accepted(events), Verdict::Accept(got)) => {
                assert_eq!(got.as_slice(), events.as_slice(), "{}", case.why);
            }
            (Expect::Duplicate, Verdict::Duplicate) => {}
            (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.why),
        }
    }
}

#[test]
fn every_code_validation_can_give_has_a_case() {
    // The planner's own codes (limits of the gateway and of a frame) are not validation's.
    let planner = [C::TooManyEntities, C::RequestTooLarge, C::Internal];
    let cases = cases();
    for code in C::ALL.into_iter().filter(|c| !planner.contains(c)) {
        assert!(
            cases
                .iter()
                .any(|c| matches!(c.expect, Expect::Refused(got, _) if got == code)),
            "no case refuses with {code}"
        );
    }
}

#[test]
fn a_seq_mismatch_names_the_current_seq() {
    let command = record(T0_MS + 60_000, 1001.0, 50.0);
    for (state, current) in [(Some(meter()), 2), (None, 0)] {
        match validate(
            &command,
            Some(7),
            state.as_ref(),
            &mut recall_nothing,
            &rules(),
            NOW_MS,
        ) {
            Verdict::Reject(r) => assert_eq!(r.current_seq, Some(current), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn auto_registration_registers_an_unknown_meter_with_its_first_reading() {
    let rules = Rules {
        auto_register: Some(MeterKind::Load),
        ..rules()
    };
    let first = reading(T0_MS, 10.0, 0.0);
    let verdict = validate(
        &record_reading(first),
        None,
        None,
        &mut recall_nothing,
        &rules,
        NOW_MS,
    );
    let expected = [
        Event::MeterRegistered {
            kind: MeterKind::Load,
            register_bits: None,
        },
        Event::ReadingRecorded(first),
    ];
    assert!(
        matches!(&verdict, Verdict::Accept(events) if events.as_slice() == expected),
        "{verdict:?}"
    );
    // The reading's own checks still apply.
    let bad = record(T0_MS, f64::NAN, 0.0);
    assert!(
        matches!(validate(&bad, None, None, &mut recall_nothing, &rules, NOW_MS), Verdict::Reject(r) if r.code == C::InvalidNumber)
    );
}
