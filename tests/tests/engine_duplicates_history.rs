//! A reading identical to one already stored is a duplicate wherever it lies in its meter's
//! history, not only among the newest 8: a retried backfill stores nothing twice, before
//! and after a restart (from a snapshot or a full replay); a different reading at a stored
//! time is never stored; a late reading where the meter's times are forgotten is refused;
//! a snapshot of format 3 is read and upgraded.

mod engine_support;

use std::path::Path;

use engine_support::*;
use gridlog_common::domain::{Command, MeterKind};
use gridlog_firmware::engine::state::EntityState;
use gridlog_firmware::engine::times::READING_RUNS_MAX;
use gridlog_firmware::engine::{
    Clock, Engine, EngineOptions, ItemResult, RejectionCode as C, StartedFrom, SystemClock,
};
use gridlog_firmware::wal::WalOptions;

const MINUTE_MS: i64 = 60_000;
/// Readings in the backfill: far more than a meter's newest 8.
const BACKFILL: i64 = 1000;

/// The backfill: a reading a minute from `T0_MS`, import `i` Wh.
fn backfill(meter: &str) -> Vec<Command> {
    (0..BACKFILL)
        .map(|i| import_reading(meter, T0_MS + i * MINUTE_MS, i as f64))
        .collect()
}

/// A meter with a live reading after the backfill's times, so the backfill is late.
fn meter_after_an_outage(engine: &Engine, meter: &str) {
    accept(engine, register_meter(meter, MeterKind::Grid, None));
    accept(
        engine,
        import_reading(meter, T0_MS + 2 * BACKFILL * MINUTE_MS, 5000.0),
    );
}

fn readings_stored(engine: &Engine, meter: &str) -> u64 {
    engine.read(|image| match image.entity(meter).map(|e| &e.state) {
        Some(EntityState::Meter(m)) => m.readings,
        other => panic!("{meter} is not a meter: {other:?}"),
    })
}

/// Segments large enough for the backfill in one request.
fn clock_options() -> EngineOptions {
    storage_options(&FakeClock::at(T0_MS + 3 * BACKFILL * MINUTE_MS))
        .wal(WalOptions::default().segment_bytes(1 << 20))
}

fn count(results: &[ItemResult], pred: impl Fn(&ItemResult) -> bool) -> usize {
    results.iter().filter(|r| pred(r)).count()
}

fn accepted(r: &ItemResult) -> bool {
    matches!(r, ItemResult::Accepted { .. })
}

fn rejected_with(code: C) -> impl Fn(&ItemResult) -> bool {
    move |r| matches!(r, ItemResult::Rejected(rej) if rej.code == code && rej.field == Some("time"))
}

/// The answers a restarted engine must give as the live one did: the backfill again is
/// all duplicates, a different reading at one of its times is refused; nothing stored.
fn assert_retries_store_nothing(engine: &Engine) {
    let (committed, digest) = (engine.committed_offset(), engine.digest());
    let stored = readings_stored(engine, "m1");
    let results = submit(engine, backfill("m1"));
    assert_eq!(
        count(&results, |r| *r == ItemResult::Duplicate),
        BACKFILL as usize
    );
    let conflict = import_reading("m1", T0_MS + 10 * MINUTE_MS, 10.5);
    let results = submit(engine, [conflict]);
    assert_eq!(
        count(&results, rejected_with(C::ConflictingDuplicate)),
        1,
        "{results:?}"
    );
    assert_eq!(engine.committed_offset(), committed);
    assert_eq!(engine.digest(), digest);
    assert_eq!(readings_stored(engine, "m1"), stored);
}

#[test]
fn a_retried_backfill_stores_nothing_twice_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), clock_options());
    meter_after_an_outage(&engine, "m1");
    // The first try stored part of the batch (a write that failed half way), the retry
    // sends it whole, then once more.
    let first_try = submit(&engine, backfill("m1").into_iter().take(400));
    assert_eq!(count(&first_try, accepted), 400);
    let retry = submit(&engine, backfill("m1"));
    assert_eq!(count(&retry[..400], |r| *r == ItemResult::Duplicate), 400);
    assert_eq!(count(&retry[400..], accepted), 600);
    assert_eq!(readings_stored(&engine, "m1"), BACKFILL as u64 + 1);
    assert_retries_store_nothing(&engine);
    engine.snapshot_now().unwrap();
    // More after the snapshot, so the restart replays some of the log.
    submit(
        &engine,
        [import_reading(
            "m1",
            T0_MS + 2 * BACKFILL * MINUTE_MS + MINUTE_MS,
            5001.0,
        )],
    );
    let digest = engine.digest();
    engine.shutdown();

    let engine = open(dir.path(), clock_options());
    assert!(matches!(
        engine.started_from(),
        StartedFrom::Snapshot { .. }
    ));
    assert_eq!(engine.digest(), digest);
    assert_retries_store_nothing(&engine);
    engine.shutdown();

    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let engine = open(dir.path(), clock_options());
    assert_eq!(engine.started_from(), StartedFrom::FullReplay);
    assert_eq!(engine.digest(), digest);
    assert_retries_store_nothing(&engine);
}

#[test]
fn a_reading_at_a_stored_time_whose_values_are_forgotten_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), clock_options().recent_readings_max(100));
    meter_after_an_outage(&engine, "m1");
    assert_eq!(
        count(&submit(&engine, backfill("m1")), accepted),
        BACKFILL as usize
    );
    let committed = engine.committed_offset();
    // The gateway remembers the newest 100 readings' values; for older ones it knows only
    // that a reading is stored at that time.
    let retry = submit(&engine, backfill("m1"));
    let remembered = 100;
    assert_eq!(
        count(&retry, |r| *r == ItemResult::Duplicate),
        remembered,
        "{:?}",
        &retry[..3]
    );
    assert_eq!(
        count(&retry, rejected_with(C::ConflictingDuplicate)),
        BACKFILL as usize - remembered
    );
    assert_eq!(engine.committed_offset(), committed);
    assert_eq!(readings_stored(&engine, "m1"), BACKFILL as u64 + 1);
}

#[test]
fn a_late_reading_where_the_times_are_forgotten_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), clock_options());
    accept(&engine, register_meter("m2", MeterKind::Grid, None));
    // Times that jitter (every step differs), so the meter needs a run per two readings
    // and its oldest times are forgotten.
    let readings = 2 * READING_RUNS_MAX as i64 + 10;
    let time = |i: i64| T0_MS + i * MINUTE_MS + i * (i + 1) / 2;
    let results = submit(
        &engine,
        (0..readings).map(|i| import_reading("m2", time(i), i as f64)),
    );
    assert_eq!(
        count(&results, accepted),
        readings as usize,
        "{:?}",
        &results[..2]
    );
    let committed = engine.committed_offset();
    let late = import_reading("m2", time(0) + MINUTE_MS / 2, 0.5);
    let results = submit(&engine, [late]);
    assert_eq!(
        count(&results, rejected_with(C::BeyondDuplicateHistory)),
        1,
        "{results:?}"
    );
    match &results[0] {
        ItemResult::Rejected(r) => assert!(r.message.contains("ms"), "{r:?}"),
        other => panic!("{other:?}"),
    }
    // A retry of its first reading is still known by its values.
    assert_eq!(
        submit(&engine, [import_reading("m2", time(0), 0.0)]),
        vec![ItemResult::Duplicate]
    );
    // A late reading among the times still kept is accepted.
    let newest_late = import_reading("m2", time(readings - 2) + 1, (readings - 2) as f64);
    assert_eq!(count(&submit(&engine, [newest_late]), accepted), 1);
    assert_eq!(engine.committed_offset(), committed + 1);
}

/// A data directory written by the build before reading times were kept: meter `m1` with
/// 20 readings a minute apart from 2025-12-04T12:00Z (import 1000 + i Wh), the last 8 of
/// them its newest, and a snapshot (format 3) of all of it.
fn format_3_fixture() -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/snapshot-v3");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["wal", "snapshots"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn a_format_3_snapshot_is_upgraded_with_the_times_before_the_newest_forgotten() {
    const FIXTURE_T0_MS: i64 = 1_764_849_600_000;
    let reading = |i: i64, import: f64| {
        record(
            "m1",
            reading_values(FIXTURE_T0_MS + i * MINUTE_MS, import, 0.0, 60.0),
        )
    };
    let dir = format_3_fixture();
    let options = || {
        storage_options(&FakeClock::at(
            SystemClock.now_ms().max(FIXTURE_T0_MS + 3_600_000),
        ))
    };
    let engine = open(dir.path(), options());
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot { next_offset: 22 }
    );
    assert_eq!(readings_stored(&engine, "m1"), 20);
    let committed = engine.committed_offset();
    // The newest 8 and the newest by time are known by their values.
    assert_eq!(
        submit(&engine, [reading(19, 1019.0)]),
        vec![ItemResult::Duplicate]
    );
    assert_eq!(
        submit(&engine, [reading(15, 1015.0)]),
        vec![ItemResult::Duplicate]
    );
    let results = submit(&engine, [reading(15, 1015.5)]);
    assert_eq!(
        count(&results, rejected_with(C::ConflictingDuplicate)),
        1,
        "{results:?}"
    );
    // Before the newest, the times are not known: refused, never risked twice.
    let results = submit(&engine, [reading(2, 1002.0)]);
    assert_eq!(
        count(&results, rejected_with(C::BeyondDuplicateHistory)),
        1,
        "{results:?}"
    );
    assert_eq!(engine.committed_offset(), committed);
    assert_eq!(count(&submit(&engine, [reading(20, 1020.0)]), accepted), 1);
    // The next snapshot is of today's format, and loads.
    engine.snapshot_now().unwrap();
    let digest = engine.digest();
    engine.shutdown();
    let engine = open(dir.path(), options());
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot { next_offset: 23 }
    );
    assert_eq!(engine.digest(), digest);
    assert_eq!(
        submit(&engine, [reading(20, 1020.0)]),
        vec![ItemResult::Duplicate]
    );
}

#[test]
fn a_request_too_large_for_the_log_leaves_no_remembered_reading() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 16 KiB: the backfill does not fit in one frame.
    let engine = open(
        dir.path(),
        storage_options(&FakeClock::at(T0_MS + 3 * BACKFILL * MINUTE_MS)),
    );
    meter_after_an_outage(&engine, "m1");
    let results = submit(&engine, backfill("m1"));
    assert_eq!(
        count(
            &results,
            |r| matches!(r, ItemResult::Rejected(rej) if rej.code == C::RequestTooLarge)
        ),
        BACKFILL as usize
    );
    // Other values at the same times, in requests that fit: stored, and then known by
    // their own values, not the refused request's.
    let other = |i: i64| import_reading("m1", T0_MS + i * MINUTE_MS, i as f64 + 0.5);
    for chunk in (0..BACKFILL).collect::<Vec<_>>().chunks(100) {
        let results = submit(&engine, chunk.iter().map(|&i| other(i)));
        assert_eq!(
            count(&results, accepted),
            chunk.len(),
            "{:?}",
            &results[..1]
        );
    }
    let results = submit(&engine, (0..100).map(other));
    assert_eq!(
        count(&results, |r| *r == ItemResult::Duplicate),
        100,
        "{:?}",
        &results[..1]
    );
}
