//! Every validation rule of the engine, through its public API: each refused command comes
//! back with the exact code and field, and leaves no trace — the committed offset, the
//! entity's seq, its stored events and the image digest are all as they were.

mod engine_support;

use engine_support::*;
use gridlog_common::domain::{AssetKind, Command, Event, MeterKind, Reading, Register};
use gridlog_common::id::Label;
use gridlog_firmware::engine::rollup::Step;
use gridlog_firmware::engine::{
    CommandRequest, Engine, EventRecord, ItemResult, Rejection, Request, FUTURE_SKEW_MS_DEFAULT,
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
    code: &str,
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

#[test]
fn a_reading_of_an_unknown_meter_is_rejected() {
    let f = fixture();
    assert_rejected(
        &f.engine,
        import_reading("ghost", T0_MS, 1.0),
        "unknown_meter",
        Some("meter"),
    );
    assert_eq!(f.engine.committed_offset(), 1, "nothing at all was stored");
    assert!(f.engine.read(|image| image.entity("ghost").is_none()));
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
        "invalid_number",
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
            "conflicting_duplicate",
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
        "conflicting_duplicate",
        Some("time"),
    );
}

#[test]
fn a_decreasing_cumulative_register_is_rejected() {
    let f = fixture_with_meter();
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 60_000, 999.0, 50.0, 400.0)),
        "register_decreased",
        Some("import_wh"),
    );
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 60_000, 1001.0, 49.5, 400.0)),
        "register_decreased",
        Some("export_wh"),
    );
    // Equal registers are fine (no energy flowed).
    accept(
        &f.engine,
        record("m", reading_values(T0_MS + 60_000, 1000.0, 50.0, 0.0)),
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
    let buckets = f.engine.read(|image| {
        image.entity("w").unwrap().rollups.as_ref().unwrap().query(
            Step::QuarterHour,
            T0_MS,
            T0_MS + 3_600_000,
        )
    });
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
        "register_decreased",
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
        "register_decreased",
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
    let buckets = f.engine.read(|image| {
        image.entity("w").unwrap().rollups.as_ref().unwrap().query(
            Step::QuarterHour,
            T0_MS,
            T0_MS + 900_000,
        )
    });
    assert_eq!(buckets[0].import_wh, 536.0, "2^16 - 65000");
    // Far from the top of the range, a drop to 0 is still a suspect reset.
    accept(
        &f.engine,
        record("w", reading_values(T0_MS + 120_000, 1000.0, 0.0, 0.0)),
    );
    assert_rejected(
        &f.engine,
        record("w", reading_values(T0_MS + 180_000, 0.0, 0.0, 0.0)),
        "suspect_reset",
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
    let buckets = f.engine.read(|image| {
        image.entity("m").unwrap().rollups.as_ref().unwrap().query(
            Step::QuarterHour,
            T0_MS,
            T0_MS + 900_000,
        )
    });
    assert_eq!(buckets.len(), 1);
    assert_eq!((buckets[0].import_wh, buckets[0].export_wh), (4.0, 1.0));
    // Readings older than the replacement belong to the old meter.
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at - 1, 1000.0, 50.0, 0.0)),
        "before_replacement",
        Some("time"),
    );
    // A replacement is a fact: it cannot be dated ahead of the clock.
    assert_rejected(
        &f.engine,
        replace_m(NOW_MS + FUTURE_SKEW_MS_DEFAULT + 1, 0.0),
        "time_in_future",
        Some("time"),
    );
    // The new meter's registers must not go down either.
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at + 120_000, 6.0, 1.0, 0.0)),
        "register_decreased",
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
            "replacement_before_latest",
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
        "conflicting_duplicate",
        Some("time"),
    );
    // Later readings are checked against it, not against the baseline (3.0).
    assert_rejected(
        &f.engine,
        record("m", reading_values(replaced_at + 60_000, 3.2, 0.0, 120.0)),
        "register_decreased",
        Some("import_wh"),
    );
    accept(
        &f.engine,
        record("m", reading_values(replaced_at + 60_000, 5.0, 0.0, 120.0)),
    );
}

#[test]
fn a_register_dropping_to_exactly_zero_is_a_suspect_reset() {
    let f = fixture_with_meter();
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 60_000, 0.0, 50.0, 0.0)),
        "suspect_reset",
        Some("import_wh"),
    );
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 60_000, 1000.0, 0.0, 0.0)),
        "suspect_reset",
        Some("export_wh"),
    );
}

#[test]
fn non_finite_numbers_are_rejected_naming_the_field() {
    let f = fixture_with_meter();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    let t = T0_MS + 60_000;
    let good = reading_values(t, 1001.0, 51.0, 100.0);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let cases: [(Reading, &str); 5] = [
            (
                Reading {
                    power_w: bad,
                    ..good
                },
                "power_w",
            ),
            (
                Reading {
                    import_wh: bad,
                    ..good
                },
                "import_wh",
            ),
            (
                Reading {
                    export_wh: bad,
                    ..good
                },
                "export_wh",
            ),
            (
                Reading {
                    voltage_v: Some(bad as f32),
                    ..good
                },
                "voltage_v",
            ),
            (
                Reading {
                    current_a: Some(bad as f32),
                    reactive_power_var: None,
                    ..good
                },
                "current_a",
            ),
        ];
        for (reading, field) in cases {
            assert_rejected(
                &f.engine,
                record("m", reading),
                "invalid_number",
                Some(field),
            );
        }
        assert_rejected(
            &f.engine,
            replace_m(t, bad),
            "invalid_number",
            Some("import_wh"),
        );
        assert_rejected(
            &f.engine,
            Command::RequestSetpoint {
                asset: id("bat"),
                power_w: bad,
            },
            "invalid_number",
            Some("power_w"),
        );
        assert_rejected(
            &f.engine,
            Command::RegisterAsset {
                asset: id("other"),
                kind: AssetKind::Load,
                rated_power_w: bad,
                capacity_wh: None,
            },
            "invalid_number",
            Some("rated_power_w"),
        );
    }
    // The good reading itself passes.
    accept(&f.engine, record("m", good));
}

#[test]
fn values_beyond_their_physical_range_are_rejected_naming_the_field() {
    use gridlog_firmware::engine::validate::{
        CURRENT_A_ABS_MAX, ENERGY_WH_MAX, POWER_W_ABS_MAX, REACTIVE_POWER_VAR_ABS_MAX,
        VOLTAGE_V_ABS_MAX,
    };
    let f = fixture_with_meter();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    let t = T0_MS + 60_000;
    let good = reading_values(t, 1001.0, 51.0, 100.0);
    // 1e39 is beyond f32 (rollups' min/max), 1.7e308 near f64::MAX (sums overflow).
    for huge in [1e39, 1.7e308, POWER_W_ABS_MAX * 1.01] {
        for sign in [1.0, -1.0] {
            assert_rejected(
                &f.engine,
                record(
                    "m",
                    Reading {
                        power_w: sign * huge,
                        ..good
                    },
                ),
                "value_out_of_range",
                Some("power_w"),
            );
            assert_rejected(
                &f.engine,
                Command::RequestSetpoint {
                    asset: id("bat"),
                    power_w: sign * huge,
                },
                "value_out_of_range",
                Some("power_w"),
            );
            assert_rejected(
                &f.engine,
                Command::RecordTelemetry {
                    asset: id("bat"),
                    telemetry: gridlog_common::domain::Telemetry {
                        time_ms: t,
                        power_w: sign * huge,
                        soc_pct: None,
                        status: Label::new("ok").unwrap(),
                    },
                },
                "value_out_of_range",
                Some("power_w"),
            );
        }
        assert_rejected(
            &f.engine,
            register_asset("big", AssetKind::Load, huge),
            "value_out_of_range",
            Some("rated_power_w"),
        );
    }
    for huge in [1e39, 1.7e308, ENERGY_WH_MAX * 1.01] {
        for (reading, field) in [
            (
                Reading {
                    import_wh: huge,
                    ..good
                },
                "import_wh",
            ),
            (
                Reading {
                    export_wh: huge,
                    ..good
                },
                "export_wh",
            ),
        ] {
            assert_rejected(
                &f.engine,
                record("m", reading),
                "value_out_of_range",
                Some(field),
            );
        }
        assert_rejected(
            &f.engine,
            replace_m(t, huge),
            "value_out_of_range",
            Some("import_wh"),
        );
        assert_rejected(
            &f.engine,
            Command::RegisterAsset {
                asset: id("big"),
                kind: AssetKind::Battery,
                rated_power_w: 1.0,
                capacity_wh: Some(huge),
            },
            "value_out_of_range",
            Some("capacity_wh"),
        );
    }
    // The f32 fields: beyond their bound but still finite as f32.
    for (reading, field) in [
        (
            Reading {
                voltage_v: Some((VOLTAGE_V_ABS_MAX * 2.0) as f32),
                ..good
            },
            "voltage_v",
        ),
        (
            Reading {
                current_a: Some((-CURRENT_A_ABS_MAX * 2.0) as f32),
                ..good
            },
            "current_a",
        ),
        (
            Reading {
                reactive_power_var: Some(1e38),
                ..good
            },
            "reactive_power_var",
        ),
        (
            Reading {
                reactive_power_var: Some((REACTIVE_POWER_VAR_ABS_MAX * 2.0) as f32),
                ..good
            },
            "reactive_power_var",
        ),
    ] {
        assert_rejected(
            &f.engine,
            record("m", reading),
            "value_out_of_range",
            Some(field),
        );
    }
    // At the bounds themselves, accepted.
    accept(
        &f.engine,
        record(
            "m",
            Reading {
                power_w: -POWER_W_ABS_MAX,
                voltage_v: Some(VOLTAGE_V_ABS_MAX as f32),
                current_a: Some(CURRENT_A_ABS_MAX as f32),
                reactive_power_var: Some(REACTIVE_POWER_VAR_ABS_MAX as f32),
                ..good
            },
        ),
    );
    accept(
        &f.engine,
        record(
            "m",
            reading_values(t + 60_000, ENERGY_WH_MAX, ENERGY_WH_MAX, POWER_W_ABS_MAX),
        ),
    );
}

#[test]
fn negative_energy_is_rejected() {
    let f = fixture_with_meter();
    let t = T0_MS + 60_000;
    assert_rejected(
        &f.engine,
        record("m", reading_values(t, -1.0, 50.0, 0.0)),
        "negative_energy",
        Some("import_wh"),
    );
    assert_rejected(
        &f.engine,
        record("m", reading_values(t, 1000.0, -0.001, 0.0)),
        "negative_energy",
        Some("export_wh"),
    );
    assert_rejected(
        &f.engine,
        Command::ReplaceMeter {
            meter: id("m"),
            time_ms: t,
            import_wh: 0.0,
            export_wh: -5.0,
        },
        "negative_energy",
        Some("export_wh"),
    );
    // Negative power is a direction, not an error.
    accept(
        &f.engine,
        record("m", reading_values(t, 1000.0, 51.0, -60.0)),
    );
}

#[test]
fn a_reading_from_an_unset_device_clock_is_rejected() {
    let f = fixture_with_meter();
    // 2000-01-01T00:00:00Z is the earliest time accepted; 1970 is a clock never set.
    let earliest = 946_684_800_000;
    for time in [i64::MIN, 0, earliest - 1] {
        assert_rejected(
            &f.engine,
            m_reading(time, 900.0),
            "time_too_early",
            Some("time"),
        );
    }
    accept(&f.engine, m_reading(earliest, 900.0));
}

#[test]
fn a_register_value_beyond_the_meters_register_width_is_rejected() {
    let f = fixture();
    accept(&f.engine, register_meter("w", MeterKind::Grid, Some(16)));
    let modulus = 65_536.0;
    assert_rejected(
        &f.engine,
        record("w", reading_values(T0_MS, modulus, 0.0, 10.0)),
        "register_out_of_range",
        Some("import_wh"),
    );
    assert_rejected(
        &f.engine,
        record("w", reading_values(T0_MS, 1.0, modulus + 5.0, 10.0)),
        "register_out_of_range",
        Some("export_wh"),
    );
    accept(
        &f.engine,
        record("w", reading_values(T0_MS, modulus - 1.0, 0.0, 10.0)),
    );
}

#[test]
fn a_reading_beyond_the_allowed_skew_ahead_of_the_clock_is_rejected() {
    let f = fixture_with_meter();
    let limit = NOW_MS + FUTURE_SKEW_MS_DEFAULT;
    assert_rejected(
        &f.engine,
        m_reading(limit + 1, 1001.0),
        "time_in_future",
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
        "time_in_future",
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
            gridlog_firmware::engine::image::EntityState::Meter(m) => m.latest,
            other => panic!("not a meter: {other:?}"),
        });
    assert_eq!(latest, Some(newest), "the newest reading stays the newest");
    // A late reading still has to fit under the newer registers.
    assert_rejected(
        &f.engine,
        record("m", reading_values(T0_MS + 30 * 60_000, 1301.0, 50.0, 0.0)),
        "register_not_monotonic",
        Some("import_wh"),
    );
}

#[test]
fn a_setpoint_above_rated_power_is_rejected() {
    let f = fixture();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    accept(
        &f.engine,
        register_asset("ev", AssetKind::EvCharger, 11_000.0),
    );
    for (asset, power_w) in [("bat", 5000.5), ("bat", -5001.0), ("ev", 11_001.0)] {
        assert_rejected(
            &f.engine,
            Command::RequestSetpoint {
                asset: id(asset),
                power_w,
            },
            "setpoint_above_rated",
            Some("power_w"),
        );
    }
    assert_rejected(
        &f.engine,
        Command::ConfirmSetpoint {
            asset: id("bat"),
            power_w: 6000.0,
        },
        "setpoint_above_rated",
        Some("power_w"),
    );
    // Exactly the rated power, either direction for a battery, is fine.
    accept(
        &f.engine,
        Command::RequestSetpoint {
            asset: id("bat"),
            power_w: -5000.0,
        },
    );
    accept(
        &f.engine,
        Command::RequestSetpoint {
            asset: id("ev"),
            power_w: 11_000.0,
        },
    );
    // Only batteries take negative setpoints.
    assert_rejected(
        &f.engine,
        Command::RequestSetpoint {
            asset: id("ev"),
            power_w: -1.0,
        },
        "setpoint_negative",
        Some("power_w"),
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
        "asset_unavailable",
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
            "seq_mismatch",
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
        "seq_mismatch",
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
                    code: "register_decreased",
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
            ItemResult::Rejected(rejection) => rejection.code,
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
        "meter_decommissioned",
        Some("meter"),
    );
    assert_rejected(
        &f.engine,
        replace_m(T0_MS + 60_000, 0.0),
        "meter_decommissioned",
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
fn commands_for_the_wrong_kind_of_entity_are_rejected() {
    let f = fixture_with_meter();
    accept(&f.engine, register_asset("bat", AssetKind::Battery, 5000.0));
    assert_rejected(
        &f.engine,
        import_reading("bat", T0_MS, 1.0),
        "not_a_meter",
        Some("meter"),
    );
    assert_rejected(
        &f.engine,
        Command::RaiseFault {
            asset: id("m"),
            code: Label::new("E1").unwrap(),
        },
        "not_an_asset",
        Some("asset"),
    );
    assert_rejected(
        &f.engine,
        Command::RequestSetpoint {
            asset: id("nobody"),
            power_w: 1.0,
        },
        "unknown_asset",
        Some("asset"),
    );
    assert_rejected(
        &f.engine,
        register_meter("m", MeterKind::Pv, None),
        "already_registered",
        Some("id"),
    );
    assert_duplicate(&f.engine, register_meter("m", MeterKind::Grid, None));
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
            ItemResult::Rejected(r) => assert_eq!(r.code, "request_too_large", "{r}"),
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
        let rejection = assert_rejected(&engine, refused, "too_many_entities", Some("id"));
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
        Some(gridlog_firmware::engine::image::EntityState::Asset(a)) => {
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
    let max = gridlog_firmware::engine::image::ASSET_FAULTS_MAX;
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
            assert_eq!((r.code, r.field), ("too_many_faults", Some("code")), "{r}");
        }
        other => panic!("the ninth fault: {other:?}"),
    }
    // Alone, too: refused with nothing stored.
    assert_rejected(
        &engine,
        raise(format!("F{max}")),
        "too_many_faults",
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
