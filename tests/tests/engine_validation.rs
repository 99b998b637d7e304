//! Every validation rule of the engine, through its public API: each refused command comes
//! back with the exact code and field, and leaves no trace — the committed offset, the
//! entity's seq, its stored events and the image digest are all as they were.

mod engine_support;

use engine_support::*;
use gridlog_common::domain::{AssetKind, Command, Event, MeterKind, Reading, Register};
use gridlog_common::id::Label;
use gridlog_firmware::engine::rollup::Step;
use gridlog_firmware::engine::validate::{
    CURRENT_A_ABS_MAX, ENERGY_WH_MAX, POWER_W_ABS_MAX, REACTIVE_POWER_VAR_ABS_MAX,
    VOLTAGE_V_ABS_MAX,
};
use gridlog_firmware::engine::{
    CommandRequest, Engine, EventRecord, ItemResult, Rejection, RejectionCode, RejectionCode as C,
    Request, FUTURE_SKEW_MS_DEFAULT,
};

/// Everything a refused command must not change.
#[derive(Debug, PartialEq)]
struct Stored {
    committed: u64,
    seq: u64,
    events: Vec<EventRecord>,
    digest: u64,
}

fn stored(engine: &Engine, entity: &str) -> Stored {
    let events = engine.events_of(entity, 1, u64::MAX, 10_000).unwrap();
    Stored {
        committed: engine.committed_offset(),
        seq: events.highest_seq,
        events: events.events,
        digest: engine.digest(),
    }
}

/// Submits `item` alone and asserts it is rejected with `code` on `field` and stores nothing.
fn assert_rejected(
    engine: &Engine,
    item: impl Into<CommandRequest>,
    code: RejectionCode,
    field: Option<&str>,
) -> Rejection {
    let item = item.into();
    let entity = item.command.entity().to_string();
    let before = stored(engine, &entity);
    let rejected_before = engine.stats().rejected;
    let response = engine
        .submit(Request {
            commands: vec![item.clone()],
            command_id: None,
        })
        .unwrap();
    assert!(!response.replayed);
    let rejection = match response.results.as_slice() {
        [ItemResult::Rejected(rejection)] => rejection.clone(),
        other => panic!("{item:?}: expected rejection {code}, got {other:?}"),
    };
    assert_eq!(
        (rejection.code, rejection.field),
        (code, field),
        "{item:?}: {rejection}"
    );
    assert!(!rejection.message.is_empty());
    assert_eq!(stored(engine, &entity), before, "{item:?} stored something");
    assert_eq!(engine.stats().rejected, rejected_before + 1);
    rejection
}

/// Submits `command` alone and asserts it is a duplicate that stores nothing.
fn assert_duplicate(engine: &Engine, command: Command) {
    let before = stored(engine, command.entity().as_str());
    assert_eq!(
        submit(engine, [command.clone()]),
        vec![ItemResult::Duplicate]
    );
    assert_eq!(
        stored(engine, command.entity().as_str()),
        before,
        "{command:?} stored something"
    );
}

fn events(engine: &Engine, entity: &str) -> Vec<Event> {
    engine
        .events_of(entity, 1, u64::MAX, 10_000)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.stored.event)
        .collect()
}

/// A fresh engine in a fresh directory, its clock at `T0_MS + 1 day`.
struct Fixture {
    _dir: tempfile::TempDir,
    clock: std::sync::Arc<FakeClock>,
    engine: Engine,
}

const NOW_MS: i64 = T0_MS + 86_400_000;

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let engine = open(dir.path(), options(&clock));
    Fixture {
        _dir: dir,
        clock,
        engine,
    }
}

/// A fixture with meter `m` (grid) holding one reading at `T0_MS`: import 1000, export 50.
fn fixture_with_meter() -> Fixture {
    let f = fixture();
    accept(&f.engine, register_meter("m", MeterKind::Grid, None));
    accept(
        &f.engine,
        record("m", reading_values(T0_MS, 1000.0, 50.0, 400.0)),
    );
    f
}

/// A reading of meter `m` of [`fixture_with_meter`], its export register unchanged.
fn m_reading(time_ms: i64, import_wh: f64) -> Command {
    record("m", reading_values(time_ms, import_wh, 50.0, 100.0))
}

/// Meter `m` replaced at `time_ms` by one whose import register starts at `import_wh`.
fn replace_m(time_ms: i64, import_wh: f64) -> Command {
    Command::ReplaceMeter {
        meter: id("m"),
        time_ms,
        import_wh,
        export_wh: 0.0,
    }
}

/// A fixture for the rule tables: meter `m` (grid) with one reading at `T0_MS` (import
/// 1000, export 50), meter `w` with 16-bit registers and no reading, battery `bat`
/// (5000 W) and EV charger `ev` (11,000 W).
fn fixture_for_rules() -> Fixture {
    let f = fixture_with_meter();
    accept(&f.engine, register_meter("w", MeterKind::Grid, Some(16)));
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    accept(
        &f.engine,
        register_asset("ev", AssetKind::EvCharger, 11_000.0),
    );
    f
}

/// A reading of `m` one minute after its first, every value valid.
fn good_reading() -> Reading {
    reading_values(T0_MS + 60_000, 1001.0, 51.0, 100.0)
}

/// A command refused on [`fixture_for_rules`], and the code and field it must name.
struct Refused {
    why: String,
    command: CommandRequest,
    code: RejectionCode,
    field: &'static str,
}

fn refused(
    why: impl Into<String>,
    command: Command,
    code: RejectionCode,
    field: &'static str,
) -> Refused {
    Refused {
        why: why.into(),
        command: command.into(),
        code,
        field,
    }
}

fn setpoint(asset: &str, power_w: f64) -> Command {
    Command::RequestSetpoint {
        asset: id(asset),
        power_w,
    }
}

fn telemetry(asset: &str, power_w: f64, soc_pct: Option<f64>) -> Command {
    Command::RecordTelemetry {
        asset: id(asset),
        telemetry: gridlog_common::domain::Telemetry {
            time_ms: T0_MS + 60_000,
            power_w,
            soc_pct,
            status: Label::new("ok").unwrap(),
        },
    }
}

fn register_asset_with(asset: &str, rated_power_w: f64, capacity_wh: Option<f64>) -> Command {
    Command::RegisterAsset {
        asset: id(asset),
        kind: AssetKind::Battery,
        rated_power_w,
        capacity_wh,
    }
}

/// `good_reading()` with one value changed: the field's name, then the reading.
fn reading_with(field: &'static str, value: f64) -> (&'static str, Reading) {
    let good = good_reading();
    let reading = match field {
        "power_w" => Reading {
            power_w: value,
            ..good
        },
        "import_wh" => Reading {
            import_wh: value,
            ..good
        },
        "export_wh" => Reading {
            export_wh: value,
            ..good
        },
        "voltage_v" => Reading {
            voltage_v: Some(value as f32),
            ..good
        },
        "current_a" => Reading {
            current_a: Some(value as f32),
            ..good
        },
        "reactive_power_var" => Reading {
            reactive_power_var: Some(value as f32),
            ..good
        },
        other => panic!("no reading field {other}"),
    };
    (field, reading)
}

/// Every rule that refuses one command outright, with the values either side of it.
#[rustfmt::skip]
fn refusals() -> Vec<Refused> {
    let t = T0_MS + 60_000;
    let earliest = 946_684_800_000; // 2000-01-01T00:00:00Z
    let mut cases = vec![
        refused("a reading of an unknown meter", import_reading("ghost", T0_MS, 1.0), C::UnknownMeter, "meter"),
        refused("import below the newest reading", record("m", reading_values(t, 999.0, 50.0, 400.0)), C::RegisterDecreased, "import_wh"),
        refused("export below the newest reading", record("m", reading_values(t, 1001.0, 49.5, 400.0)), C::RegisterDecreased, "export_wh"),
        refused("import dropped to exactly 0", record("m", reading_values(t, 0.0, 50.0, 0.0)), C::SuspectReset, "import_wh"),
        refused("export dropped to exactly 0", record("m", reading_values(t, 1000.0, 0.0, 0.0)), C::SuspectReset, "export_wh"),
        refused("negative import", record("m", reading_values(t, -1.0, 50.0, 0.0)), C::NegativeEnergy, "import_wh"),
        refused("negative export", record("m", reading_values(t, 1000.0, -0.001, 0.0)), C::NegativeEnergy, "export_wh"),
        refused("a replacement with a negative register", Command::ReplaceMeter { meter: id("m"), time_ms: t, import_wh: 0.0, export_wh: -5.0 }, C::NegativeEnergy, "export_wh"),
        refused("a reading at i64::MIN", m_reading(i64::MIN, 900.0), C::TimeTooEarly, "time"),
        refused("a reading at 1970 (a clock never set)", m_reading(0, 900.0), C::TimeTooEarly, "time"),
        refused("a reading just before 2000", m_reading(earliest - 1, 900.0), C::TimeTooEarly, "time"),
        refused("a reading beyond the allowed skew", m_reading(NOW_MS + FUTURE_SKEW_MS_DEFAULT + 1, 1001.0), C::TimeInFuture, "time"),
        refused("import beyond a 16-bit register", record("w", reading_values(T0_MS, 65_536.0, 0.0, 10.0)), C::RegisterOutOfRange, "import_wh"),
        refused("export beyond a 16-bit register", record("w", reading_values(T0_MS, 1.0, 65_541.0, 10.0)), C::RegisterOutOfRange, "export_wh"),
        refused("a reading for an asset", import_reading("bat", T0_MS, 1.0), C::NotAMeter, "meter"),
        refused("a fault for a meter", Command::RaiseFault { asset: id("m"), code: Label::new("E1").unwrap() }, C::NotAnAsset, "asset"),
        refused("a setpoint for an unknown asset", setpoint("nobody", 1.0), C::UnknownAsset, "asset"),
        refused("a meter registered again as another kind", register_meter("m", MeterKind::Pv, None), C::AlreadyRegistered, "id"),
        refused("a battery setpoint above rated power", setpoint("bat", 5000.5), C::SetpointAboveRated, "power_w"),
        refused("a battery setpoint above rated power, discharging", setpoint("bat", -5001.0), C::SetpointAboveRated, "power_w"),
        refused("an EV setpoint above rated power", setpoint("ev", 11_001.0), C::SetpointAboveRated, "power_w"),
        refused("a confirmed setpoint above rated power", Command::ConfirmSetpoint { asset: id("bat"), power_w: 6000.0 }, C::SetpointAboveRated, "power_w"),
        refused("a negative setpoint for an EV charger", setpoint("ev", -1.0), C::SetpointNegative, "power_w"),
        refused("a register width below 8 bits", register_meter("x", MeterKind::Grid, Some(7)), C::InvalidRegisterBits, "register_bits"),
        refused("a register width above 64 bits", register_meter("x", MeterKind::Grid, Some(65)), C::InvalidRegisterBits, "register_bits"),
        refused("a rated power of 0", register_asset_with("x", 0.0, None), C::InvalidRatedPower, "rated_power_w"),
        refused("a state of charge above 100 %", telemetry("bat", 0.0, Some(100.5)), C::InvalidSoc, "soc_pct"),
        refused("a meter under a reserved id", register_meter("gateway:x", MeterKind::Grid, None), C::ReservedId, "id"),
    ];
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for field in ["power_w", "import_wh", "export_wh", "voltage_v", "current_a"] {
            let (field, reading) = reading_with(field, bad);
            cases.push(refused(format!("{field} = {bad}"), record("m", reading), C::InvalidNumber, field));
        }
        cases.push(refused(format!("replacement import_wh = {bad}"), replace_m(t, bad), C::InvalidNumber, "import_wh"));
        cases.push(refused(format!("setpoint {bad}"), setpoint("bat", bad), C::InvalidNumber, "power_w"));
        cases.push(refused(format!("rated power {bad}"), register_asset_with("x", bad, None), C::InvalidNumber, "rated_power_w"));
    }
    // 1e39 is beyond f32 (rollups' min/max), 1.7e308 near f64::MAX (sums overflow).
    for huge in [1e39, 1.7e308, POWER_W_ABS_MAX * 1.01] {
        for value in [huge, -huge] {
            let (field, reading) = reading_with("power_w", value);
            cases.push(refused(format!("power {value}"), record("m", reading), C::ValueOutOfRange, field));
            cases.push(refused(format!("setpoint {value}"), setpoint("bat", value), C::ValueOutOfRange, "power_w"));
            cases.push(refused(format!("telemetry power {value}"), telemetry("bat", value, None), C::ValueOutOfRange, "power_w"));
        }
        cases.push(refused(format!("rated power {huge}"), register_asset_with("x", huge, None), C::ValueOutOfRange, "rated_power_w"));
    }
    for huge in [1e39, 1.7e308, ENERGY_WH_MAX * 1.01] {
        for field in ["import_wh", "export_wh"] {
            let (field, reading) = reading_with(field, huge);
            cases.push(refused(format!("{field} {huge}"), record("m", reading), C::ValueOutOfRange, field));
        }
        cases.push(refused(format!("replacement import {huge}"), replace_m(t, huge), C::ValueOutOfRange, "import_wh"));
        cases.push(refused(format!("capacity {huge}"), register_asset_with("x", 1.0, Some(huge)), C::ValueOutOfRange, "capacity_wh"));
    }
    // The f32 fields: beyond their bound but still finite as f32.
    for (field, value) in [
        ("voltage_v", VOLTAGE_V_ABS_MAX * 2.0),
        ("current_a", -CURRENT_A_ABS_MAX * 2.0),
        ("reactive_power_var", 1e38),
        ("reactive_power_var", REACTIVE_POWER_VAR_ABS_MAX * 2.0),
    ] {
        let (field, reading) = reading_with(field, value);
        cases.push(refused(format!("{field} {value}"), record("m", reading), C::ValueOutOfRange, field));
    }
    cases
}

#[test]
fn each_rule_refuses_its_command_naming_the_field_and_stores_nothing() {
    // Refusals change nothing, so one fixture serves every case; `assert_rejected` checks
    // that the committed offset, the entity's events and the digest stayed as they were.
    let f = fixture_for_rules();
    for case in refusals() {
        let rejection = assert_rejected(&f.engine, case.command, case.code, Some(case.field));
        assert!(!rejection.message.is_empty(), "{}", case.why);
    }
    assert!(f.engine.read(|image| image.entity("ghost").is_none()));
    assert!(f.engine.read(|image| image.entity("x").is_none()));
}

#[test]
#[rustfmt::skip]
fn values_at_the_edge_of_each_rule_are_accepted() {
    let t = T0_MS + 60_000;
    let at_bounds = Reading {
        power_w: -POWER_W_ABS_MAX,
        voltage_v: Some(VOLTAGE_V_ABS_MAX as f32),
        current_a: Some(CURRENT_A_ABS_MAX as f32),
        reactive_power_var: Some(REACTIVE_POWER_VAR_ABS_MAX as f32),
        ..good_reading()
    };
    let accepted: Vec<(&str, Command)> = vec![
        ("equal registers (no energy flowed)", record("m", reading_values(t, 1000.0, 50.0, 0.0))),
        ("negative power (a direction)", record("m", reading_values(t, 1000.0, 51.0, -60.0))),
        ("the earliest time, 2000-01-01", m_reading(946_684_800_000, 900.0)),
        ("exactly the allowed skew ahead", m_reading(NOW_MS + FUTURE_SKEW_MS_DEFAULT, 1001.0)),
        ("the top of a 16-bit register", record("w", reading_values(T0_MS, 65_535.0, 0.0, 10.0))),
        ("a battery discharging at rated power", setpoint("bat", -5000.0)),
        ("an EV charger at rated power", setpoint("ev", 11_000.0)),
        ("every measured value at its bound", record("m", at_bounds)),
        ("registers at their bound", record("m", reading_values(t, ENERGY_WH_MAX, ENERGY_WH_MAX, POWER_W_ABS_MAX))),
        ("a state of charge of 100 %", telemetry("bat", 0.0, Some(100.0))),
        ("a register width of 8 bits", register_meter("x", MeterKind::Grid, Some(8))),
        ("a register width of 64 bits", register_meter("x", MeterKind::Grid, Some(64))),
        ("the good reading itself", record("m", good_reading())),
    ];
    for (why, command) in accepted {
        let f = fixture_for_rules();
        match submit(&f.engine, [command.clone()]).as_slice() {
            [ItemResult::Accepted { .. }] => {}
            other => panic!("{why}: {command:?} got {other:?}"),
        }
    }
}

#[test]
fn with_auto_register_an_unknown_meter_is_registered_by_its_first_reading() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let engine = open(
        dir.path(),
        options(&clock).auto_register(Some(MeterKind::Load)),
    );
    let reading = reading_values(T0_MS, 10.0, 0.0, 100.0);
    assert_eq!(
        submit(&engine, [record("new", reading)]),
        vec![ItemResult::Accepted { offset: 2, seq: 2 }],
        "the result names the reading's event, after the registration's"
    );
    assert_eq!(
        events(&engine, "new"),
        vec![
            Event::MeterRegistered {
                kind: MeterKind::Load,
                register_bits: None
            },
            Event::ReadingRecorded(reading),
        ]
    );
    // Auto-registration does not skip the reading's own checks.
    assert_rejected(
        &engine,
        import_reading("other", T0_MS, f64::NAN),
        C::InvalidNumber,
        Some("import_wh"),
    );
    assert!(engine.read(|image| image.entity("other").is_none()));
}

#[test]
fn an_identical_reading_is_a_duplicate_and_stores_nothing() {
    let f = fixture_with_meter();
    let same = record("m", reading_values(T0_MS, 1000.0, 50.0, 400.0));
    assert_duplicate(&f.engine, same.clone());
    // Also when the newest reading has left the recent-readings window: eight late
    // readings push it out, and the comparison with the newest reading still holds.
    for i in 1..=8 {
        accept(
            &f.engine,
            record(
                "m",
                reading_values(T0_MS - i * 60_000, 1000.0 - i as f64, 50.0, 400.0),
            ),
        );
    }
    assert_duplicate(&f.engine, same);
    assert_eq!(f.engine.stats().duplicates, 2);
}

#[test]
fn a_different_reading_at_the_same_time_is_a_conflicting_duplicate() {
    let f = fixture_with_meter();
    for (import_wh, export_wh, power_w) in [(1001.0, 50.0, 400.0), (1000.0, 50.0, 401.0)] {
        assert_rejected(
            &f.engine,
            record("m", reading_values(T0_MS, import_wh, export_wh, power_w)),
            C::ConflictingDuplicate,
            Some("time"),
        );
    }
    // Same with the newest reading outside the recent-readings window.
    for i in 1..=8 {
        accept(
            &f.engine,
            record(
                "m",
                reading_values(T0_MS - i * 60_000, 1000.0 - i as f64, 50.0, 400.0),
            ),
        );
    }
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS, 1000.5, 50.0, 400.0)),
        C::ConflictingDuplicate,
        Some("time"),
    );
}

#[test]
fn a_register_wrapping_at_its_width_records_a_rollover_and_books_the_wrapped_delta() {
    let f = fixture();
    let modulus = 2f64.powi(32);
    accept(&f.engine, register_meter("w", MeterKind::Grid, Some(32)));
    let before = modulus - 1000.0;
    // Both readings in the quarter hour starting at T0_MS.
    accept(
        &f.engine,
        record("w", reading_values(T0_MS, before, 0.0, 6000.0)),
    );
    let after = reading_values(T0_MS + 60_000, 500.0, 0.0, 6000.0);
    let results = submit(&f.engine, [record("w", after)]);
    assert_eq!(
        results,
        vec![ItemResult::Accepted { offset: 4, seq: 4 }],
        "the result names the reading, stored after the rollover"
    );
    let stored = f.engine.events_of("w", 3, 4, 10).unwrap().events;
    assert_eq!(
        stored.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(
        stored[0].stored.event,
        Event::RegisterRolledOver {
            register: Register::Import,
            bits: 32,
            before_wh: before,
            after_wh: 500.0,
        }
    );
    assert_eq!(stored[1].stored.event, Event::ReadingRecorded(after));
    let buckets = f
        .engine
        .rollups("w", Step::QuarterHour, T0_MS, T0_MS + 3_600_000)
        .expect("rollups")
        .expect("a meter");
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].index, T0_MS / 900_000);
    assert_eq!(
        buckets[0].import_wh, 1500.0,
        "1000 Wh to the wrap + 500 after"
    );
    assert_eq!(buckets[0].count, 2);
    let totals = f.engine.read(|image| image.site_totals());
    assert_eq!(totals.all_time.grid_import_wh, 1500.0);
    // A drop that is not near the top of the register's range is still a decrease.
    assert_rejected(
        &f.engine,
        record("w", reading_values(T0_MS + 120_000, 100.0, 0.0, 0.0)),
        C::RegisterDecreased,
        Some("import_wh"),
    );
    // Without a configured width, the same drop is rejected.
    accept(&f.engine, register_meter("n", MeterKind::Grid, None));
    accept(
        &f.engine,
        record("n", reading_values(T0_MS, before, 0.0, 0.0)),
    );
    assert_rejected(
        &f.engine,
        record("n", reading_values(T0_MS + 60_000, 500.0, 0.0, 0.0)),
        C::RegisterDecreased,
        Some("import_wh"),
    );
}

#[test]
fn a_wrap_landing_exactly_on_zero_is_a_rollover_not_a_reset() {
    let f = fixture();
    accept(&f.engine, register_meter("w", MeterKind::Grid, Some(16)));
    accept(
        &f.engine,
        record("w", reading_values(T0_MS, 65_000.0, 0.0, 0.0)),
    );
    // Integer registers land on 0 at a wrap every so often; that is no reset.
    let after = reading_values(T0_MS + 60_000, 0.0, 0.0, 0.0);
    assert_eq!(
        submit(&f.engine, [record("w", after)]),
        vec![ItemResult::Accepted { offset: 4, seq: 4 }]
    );
    assert_eq!(
        events(&f.engine, "w")[2..],
        [
            Event::RegisterRolledOver {
                register: Register::Import,
                bits: 16,
                before_wh: 65_000.0,
                after_wh: 0.0,
            },
            Event::ReadingRecorded(after),
        ]
    );
    let buckets = f
        .engine
        .rollups("w", Step::QuarterHour, T0_MS, T0_MS + 900_000)
        .expect("rollups")
        .expect("a meter");
    assert_eq!(buckets[0].import_wh, 536.0, "2^16 - 65000");
    // Far from the top of the range, a drop to 0 is still a suspect reset.
    accept(
        &f.engine,
        record("w", reading_values(T0_MS + 120_000, 1000.0, 0.0, 0.0)),
    );
    assert_rejected(
        &f.engine,
        record("w", reading_values(T0_MS + 180_000, 0.0, 0.0, 0.0)),
        C::SuspectReset,
        Some("import_wh"),
    );
}

#[test]
fn after_a_replacement_lower_register_values_are_accepted() {
    let f = fixture_with_meter();
    let replaced_at = T0_MS + 60_000;
    accept(&f.engine, replace_m(replaced_at, 3.0));
    let (_, seq) = accept(
        &f.engine,
        record("m", reading_values(replaced_at + 60_000, 7.0, 1.0, 240.0)),
    );
    assert_eq!(seq, 4, "registration, reading, replacement, reading");
    // Energy counts from the new meter's baseline, not from the old meter's registers.
    let buckets = f
        .engine
        .rollups("m", Step::QuarterHour, T0_MS, T0_MS + 900_000)
        .expect("rollups")
        .expect("a meter");
    assert_eq!(buckets.len(), 1);
    assert_eq!((buckets[0].import_wh, buckets[0].export_wh), (4.0, 1.0));
    // Readings older than the replacement belong to the old meter.
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at - 1, 1000.0, 50.0, 0.0)),
        C::BeforeReplacement,
        Some("time"),
    );
    // A replacement is a fact: it cannot be dated ahead of the clock.
    assert_rejected(
        &f.engine,
        replace_m(NOW_MS + FUTURE_SKEW_MS_DEFAULT + 1, 0.0),
        C::TimeInFuture,
        Some("time"),
    );
    // The new meter's registers must not go down either.
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at + 120_000, 6.0, 1.0, 0.0)),
        C::RegisterDecreased,
        Some("import_wh"),
    );
}

#[test]
fn a_replacement_is_dated_after_the_newest_reading_and_the_new_meter_may_read_at_its_time() {
    let f = fixture_with_meter(); // newest reading at T0_MS
    for time_ms in [T0_MS - 60_000, T0_MS] {
        assert_rejected(
            &f.engine,
            replace_m(time_ms, 0.0),
            C::ReplacementBeforeLatest,
            Some("time"),
        );
    }
    let replaced_at = T0_MS + 60_000;
    accept(&f.engine, replace_m(replaced_at, 3.0));
    // The new meter's first reading, taken as it was installed.
    let first = reading_values(replaced_at, 3.5, 0.0, 120.0);
    accept(&f.engine, record("m", first));
    assert_eq!(
        submit(&f.engine, [record("m", first)]),
        vec![ItemResult::Duplicate]
    );
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at, 4.0, 0.0, 120.0)),
        C::ConflictingDuplicate,
        Some("time"),
    );
    // Later readings are checked against it, not against the baseline (3.0).
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at + 60_000, 3.2, 0.0, 120.0)),
        C::RegisterDecreased,
        Some("import_wh"),
    );
    accept(
        &f.engine,
        record("m", reading_values(replaced_at + 60_000, 5.0, 0.0, 120.0)),
    );
}

#[test]
fn a_reading_beyond_the_allowed_skew_ahead_of_the_clock_is_rejected() {
    let f = fixture_with_meter();
    let limit = NOW_MS + FUTURE_SKEW_MS_DEFAULT;
    assert_rejected(
        &f.engine,
        m_reading(limit + 1, 1001.0),
        C::TimeInFuture,
        Some("time"),
    );
    accept(&f.engine, m_reading(limit, 1001.0));
    // The limit moves with the gateway clock.
    f.clock.set(NOW_MS + 3_600_000);
    accept(
        &f.engine,
        m_reading(NOW_MS + 3_600_000 + FUTURE_SKEW_MS_DEFAULT, 1002.0),
    );

    // A configured skew is honoured.
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let mut options = options(&clock);
    options.rules.future_skew_ms = 1000;
    let engine = open(dir.path(), options);
    accept(&engine, register_meter("m", MeterKind::Pv, None));
    assert_rejected(
        &engine,
        m_reading(NOW_MS + 1001, 1.0),
        C::TimeInFuture,
        Some("time"),
    );
    accept(&engine, m_reading(NOW_MS + 1000, 1.0));
}

#[test]
fn late_readings_backfilled_after_an_outage_are_accepted() {
    let f = fixture_with_meter();
    // The uplink was down for three hours; the newest reading arrives first ...
    let newest = reading_values(T0_MS + 3 * 3_600_000, 1300.0, 80.0, 500.0);
    accept(&f.engine, record("m", newest));
    // ... then the meter's buffer is backfilled, oldest first.
    let mut offsets = Vec::new();
    for h in 1..3 {
        let late = reading_values(
            T0_MS + h * 3_600_000,
            1000.0 + 100.0 * h as f64,
            50.0 + 10.0 * h as f64,
            450.0,
        );
        offsets.push(accept(&f.engine, record("m", late)));
    }
    assert_eq!(offsets, vec![(4, 4), (5, 5)]);
    let latest = f
        .engine
        .read(|image| match &image.entity("m").unwrap().state {
            gridlog_firmware::engine::state::EntityState::Meter(m) => m.latest,
            other => panic!("not a meter: {other:?}"),
        });
    assert_eq!(latest, Some(newest), "the newest reading stays the newest");
    // A late reading still has to fit under the newer registers.
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 30 * 60_000, 1301.0, 50.0, 0.0)),
        C::RegisterNotMonotonic,
        Some("import_wh"),
    );
}

#[test]
fn a_setpoint_on_an_unavailable_asset_is_rejected() {
    let f = fixture();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    let unavailable = Command::ChangeAvailability {
        asset: id("bat"),
        available: false,
    };
    accept(&f.engine, unavailable.clone());
    assert_duplicate(&f.engine, unavailable);
    let setpoint = Command::RequestSetpoint {
        asset: id("bat"),
        power_w: 1000.0,
    };
    assert_rejected(
        &f.engine,
        setpoint.clone(),
        C::AssetUnavailable,
        Some("asset"),
    );
    accept(
        &f.engine,
        Command::ChangeAvailability {
            asset: id("bat"),
            available: true,
        },
    );
    accept(&f.engine, setpoint);
}

#[test]
fn an_expected_seq_mismatch_is_rejected_with_the_current_seq() {
    let f = fixture_with_meter();
    let reading = m_reading(T0_MS + 60_000, 1001.0);
    for expected in [0, 1, 3, 99] {
        let rejection = assert_rejected(
            &f.engine,
            CommandRequest {
                command: reading.clone(),
                expected_seq: Some(expected),
            },
            C::SeqMismatch,
            Some("expected_seq"),
        );
        assert_eq!(rejection.current_seq, Some(2));
    }
    // An unknown entity is at seq 0.
    let rejection = assert_rejected(
        &f.engine,
        CommandRequest {
            command: register_meter("new", MeterKind::Pv, None),
            expected_seq: Some(1),
        },
        C::SeqMismatch,
        Some("expected_seq"),
    );
    assert_eq!(rejection.current_seq, Some(0));
    let response = f
        .engine
        .submit(Request {
            commands: vec![
                CommandRequest {
                    command: reading,
                    expected_seq: Some(2),
                },
                CommandRequest {
                    command: register_meter("new", MeterKind::Pv, None),
                    expected_seq: Some(0),
                },
            ],
            command_id: None,
        })
        .unwrap();
    assert_eq!(
        response.results,
        vec![
            ItemResult::Accepted { offset: 3, seq: 3 },
            ItemResult::Accepted { offset: 4, seq: 1 },
        ]
    );
}

#[test]
fn a_retried_command_id_is_answered_as_a_replay_and_stores_nothing_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let request = Request {
        commands: vec![
            register_meter("m", MeterKind::Pv, None).into(),
            m_reading(T0_MS, 5.0).into(),
            m_reading(T0_MS + 60_000, 1.0).into(), // rejected: decreased
        ],
        command_id: Some(command_id("req-1")),
    };
    let all_replayed = vec![ItemResult::Replayed; 3];
    let first = {
        let engine = open(dir.path(), options(&clock));
        let first = engine.submit(request.clone()).unwrap();
        assert!(!first.replayed);
        assert!(matches!(
            first.results.as_slice(),
            [
                ItemResult::Accepted { offset: 1, seq: 1 },
                ItemResult::Accepted { offset: 2, seq: 2 },
                ItemResult::Rejected(Rejection {
                    code: C::RegisterDecreased,
                    ..
                }),
            ]
        ));
        let before = stored(&engine, "m");
        let retry = engine.submit(request.clone()).unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.results, all_replayed);
        assert_eq!(stored(&engine, "m"), before);
        // The id decides, not the content: a different request under a used id is a replay.
        let other = Request {
            commands: vec![m_reading(T0_MS + 120_000, 9.0).into()],
            command_id: Some(command_id("req-1")),
        };
        let retry = engine.submit(other).unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.results, vec![ItemResult::Replayed]);
        assert_eq!(stored(&engine, "m"), before);
        before
    };
    // The command ids are rebuilt from the log.
    let engine = open(dir.path(), options(&clock));
    assert_eq!(stored(&engine, "m"), first);
    let retry = engine.submit(request).unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.results, all_replayed);
    assert_eq!(stored(&engine, "m"), first);
    // A new id is processed normally.
    let fresh = engine
        .submit(Request {
            commands: vec![m_reading(T0_MS + 60_000, 6.0).into()],
            command_id: Some(command_id("req-2")),
        })
        .unwrap();
    assert!(!fresh.replayed);
    assert_eq!(
        fresh.results,
        vec![ItemResult::Accepted { offset: 3, seq: 3 }]
    );
}

#[test]
fn a_rejected_command_does_not_fail_the_others_of_its_request() {
    let f = fixture_with_meter();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    let results = submit(
        &f.engine,
        [
            m_reading(T0_MS + 60_000, 1001.0),
            import_reading("ghost", T0_MS, 1.0),
            m_reading(T0_MS + 120_000, 900.0),
            Command::RequestSetpoint {
                asset: id("bat"),
                power_w: 9000.0,
            },
            // Validated against the earlier accepted command of the same request.
            m_reading(T0_MS + 60_000, 1001.0),
            Command::RequestSetpoint {
                asset: id("bat"),
                power_w: 2000.0,
            },
            m_reading(T0_MS + 180_000, 1002.0),
        ],
    );
    let codes: Vec<&str> = results
        .iter()
        .map(|r| match r {
            ItemResult::Accepted { .. } => "accepted",
            ItemResult::Duplicate => "duplicate",
            ItemResult::Replayed => "replayed",
            ItemResult::Rejected(rejection) => rejection.code.as_str(),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "accepted",
            "unknown_meter",
            "register_decreased",
            "setpoint_above_rated",
            "duplicate",
            "accepted",
            "accepted",
        ]
    );
    assert_eq!(results[0], ItemResult::Accepted { offset: 4, seq: 3 });
    assert_eq!(results[5], ItemResult::Accepted { offset: 5, seq: 2 });
    assert_eq!(results[6], ItemResult::Accepted { offset: 6, seq: 4 });
    assert_eq!(f.engine.committed_offset(), 7);
    assert_eq!(
        events(&f.engine, "m")[2..],
        [
            Event::ReadingRecorded(reading_values(T0_MS + 60_000, 1001.0, 50.0, 100.0)),
            Event::ReadingRecorded(reading_values(T0_MS + 180_000, 1002.0, 50.0, 100.0)),
        ]
    );
}

#[test]
fn a_decommissioned_meter_rejects_readings() {
    let f = fixture_with_meter();
    let decommission = Command::DecommissionMeter { meter: id("m") };
    accept(&f.engine, decommission.clone());
    assert_duplicate(&f.engine, decommission);
    assert_rejected(
        &f.engine,
        m_reading(T0_MS + 60_000, 1001.0),
        C::MeterDecommissioned,
        Some("meter"),
    );
    assert_rejected(
        &f.engine,
        replace_m(T0_MS + 60_000, 0.0),
        C::MeterDecommissioned,
        Some("meter"),
    );
    // A client retrying a reading that was stored before the decommissioning is told it
    // is stored, not that it was refused.
    assert_duplicate(
        &f.engine,
        record("m", reading_values(T0_MS, 1000.0, 50.0, 400.0)),
    );
}

#[test]
fn a_request_too_large_for_one_log_frame_is_refused_whole_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    // 2 KiB rounds: one frame holds about 25 readings.
    let engine = open(
        dir.path(),
        options(&clock).wal(
            gridlog_firmware::wal::WalOptions::default()
                .segment_bytes(64 * 1024)
                .round_bytes(2048),
        ),
    );
    accept(&engine, register_meter("m", MeterKind::Grid, None));
    accept(
        &engine,
        record("m", reading_values(T0_MS, 1000.0, 50.0, 400.0)),
    );
    let before = stored(&engine, "m");
    // A new meter and 60 readings of `m` (each one valid after the one before it).
    let mut commands = vec![register_meter("n", MeterKind::Pv, None)];
    commands.extend((1..=60).map(|i| {
        record(
            "m",
            reading_values(T0_MS + i * 60_000, 1000.0 + i as f64, 50.0, 400.0),
        )
    }));
    let results = submit(&engine, commands);
    assert_eq!(results.len(), 61);
    for result in &results {
        match result {
            ItemResult::Rejected(r) => assert_eq!(r.code, C::RequestTooLarge, "{r}"),
            other => panic!("expected request_too_large, got {other:?}"),
        }
    }
    assert_eq!(
        stored(&engine, "m"),
        before,
        "the refused request stored something"
    );
    assert!(engine.read(|image| image.entity("n").is_none()));
    // Validation forgot the refused request too: `m` is still at seq 2 with its first
    // reading newest, and `n` is still unknown.
    let next = CommandRequest {
        command: record("m", reading_values(T0_MS + 60_000, 1001.0, 50.0, 400.0)),
        expected_seq: Some(2),
    };
    let response = engine
        .submit(Request {
            commands: vec![next, register_meter("n", MeterKind::Pv, None).into()],
            command_id: None,
        })
        .unwrap();
    assert_eq!(
        response.results,
        vec![
            ItemResult::Accepted { offset: 3, seq: 3 },
            ItemResult::Accepted { offset: 4, seq: 1 },
        ]
    );
}

#[test]
fn a_new_meter_or_asset_beyond_entities_max_is_rejected_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let mut options = options(&clock).auto_register(Some(MeterKind::Load));
    options.rules.entities_max = 2;
    let engine = open(dir.path(), options);
    accept(&engine, register_meter("a", MeterKind::Grid, None));
    accept(&engine, register_asset("b", AssetKind::Battery, 5000.0));
    for refused in [
        register_meter("c", MeterKind::Pv, None),
        register_asset("d", AssetKind::Battery, 5000.0),
        // Auto-registration by a first reading is refused the same way.
        import_reading("e", T0_MS, 1.0),
    ] {
        let entity = refused.entity().to_string();
        let rejection = assert_rejected(&engine, refused, C::TooManyEntities, Some("id"));
        assert!(
            rejection.message.contains("engine.entities_max"),
            "{rejection}"
        );
        assert!(engine.read(|image| image.entity(&entity).is_none()));
    }
    // The entities it holds go on, and a request mixing both keeps its accepted items.
    assert_eq!(
        submit(
            &engine,
            [
                import_reading("a", T0_MS, 1.0),
                register_meter("f", MeterKind::Pv, None),
            ]
        )
        .iter()
        .map(|r| matches!(r, ItemResult::Accepted { .. }))
        .collect::<Vec<_>>(),
        vec![true, false]
    );
    // The gateway's own bookkeeping is never refused.
    let bookkeeping = Command::RecordSystemEvent {
        entity: id(gridlog_common::domain::STORAGE_ENTITY),
        event: Event::SegmentArchived {
            first_offset: 1,
            next_offset: 2,
            original_bytes: 10,
            archived_bytes: 5,
            sha256: [0; 32],
        },
    };
    accept(&engine, bookkeeping);
    assert_eq!(engine.read(|image| image.len()), 3);
}

/// The active faults of `asset` in the image.
fn active_faults(engine: &Engine, asset: &str) -> Vec<String> {
    engine.read(|image| match image.entity(asset).map(|e| &e.state) {
        Some(gridlog_firmware::engine::state::EntityState::Asset(a)) => {
            a.faults.iter().map(|c| c.as_str().to_string()).collect()
        }
        other => panic!("{asset} is not an asset: {other:?}"),
    })
}

/// The active faults of `asset` folded from its events in the log: what any replay or
/// central copy concludes.
fn faults_in_log(engine: &Engine, asset: &str) -> Vec<String> {
    let mut active: Vec<String> = Vec::new();
    for event in events(engine, asset) {
        match event {
            Event::FaultRaised { code } if !active.contains(&code.as_str().to_string()) => {
                active.push(code.as_str().to_string());
            }
            Event::FaultCleared { code } => active.retain(|c| c != code.as_str()),
            _ => {}
        }
    }
    active
}

#[test]
fn a_fault_beyond_the_most_an_asset_can_hold_is_refused_and_state_and_log_agree() {
    let max = gridlog_firmware::engine::state::ASSET_FAULTS_MAX;
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(NOW_MS);
    let engine = open(dir.path(), options(&clock));
    accept(&engine, register_asset("bat", AssetKind::Battery, 5000.0));
    let raise = |code: String| Command::RaiseFault {
        asset: id("bat"),
        code: Label::new(&code).unwrap(),
    };
    let clear = |code: String| Command::ClearFault {
        asset: id("bat"),
        code: Label::new(&code).unwrap(),
    };
    // F0..F8 in one request: validation sees the earlier ones of the same batch, so the
    // ninth is refused there too.
    let results = submit(&engine, (0..=max).map(|i| raise(format!("F{i}"))));
    assert!(
        results[..max]
            .iter()
            .all(|r| matches!(r, ItemResult::Accepted { .. })),
        "{results:?}"
    );
    match &results[max] {
        ItemResult::Rejected(r) => {
            assert_eq!((r.code, r.field), (C::TooManyFaults, Some("code")), "{r}");
        }
        other => panic!("the ninth fault: {other:?}"),
    }
    // Alone, too: refused with nothing stored.
    assert_rejected(
        &engine,
        raise(format!("F{max}")),
        C::TooManyFaults,
        Some("code"),
    );
    assert_eq!(active_faults(&engine, "bat"), faults_in_log(&engine, "bat"));
    // An already-active one is still a duplicate, not a refusal.
    assert_duplicate(&engine, raise("F0".into()));
    // Clear one: the ninth now fits, and clearing it later is not a duplicate.
    accept(&engine, clear("F3".into()));
    accept(&engine, raise(format!("F{max}")));
    accept(&engine, clear(format!("F{max}")));
    let expected: Vec<String> = (0..max)
        .filter(|&i| i != 3)
        .map(|i| format!("F{i}"))
        .collect();
    assert_eq!(active_faults(&engine, "bat"), expected);
    assert_eq!(faults_in_log(&engine, "bat"), expected);
    let digest = engine.digest();
    drop(engine);
    // Replay: the state rebuilt from the log is the state that was acknowledged.
    let engine = open(dir.path(), options(&clock));
    assert_eq!(engine.digest(), digest);
    assert_eq!(active_faults(&engine, "bat"), expected);
    assert_eq!(faults_in_log(&engine, "bat"), expected);
}
