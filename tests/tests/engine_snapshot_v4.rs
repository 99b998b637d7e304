//! A snapshot of format 4 (the format that holds each meter's rollup rings in memory, before
//! the rollup store) is still loaded: the meter's rollups answer bit for bit as a full
//! replay of the same log does, the digests agree, and the next snapshot loads too.

mod engine_support;

use std::path::Path;

use engine_support::*;
use gridlog_common::domain::{Command, MeterKind};
use gridlog_firmware::engine::rollup::{Bucket, BucketBits};
use gridlog_firmware::engine::{Engine, EngineOptions, StartedFrom, Step, StorageOptions};
use gridlog_firmware::wal::WalOptions;

/// 2025-12-04T00:00Z, the fixture's first reading.
const FIXTURE_T0_MS: i64 = 1_764_806_400_000;
const QUARTER_MS: i64 = 15 * 60_000;
/// Offset one past the snapshot's last event.
const SNAPSHOT_NEXT_OFFSET: u64 = 195;

/// What the fixture's log holds, in order: meter `m1` registered, a reading every 15
/// minutes (7 minutes in) for two UTC days with rising registers and varying power, a late
/// reading in the first day's 5th quarter hour, then — after the snapshot — two readings
/// on the third day (see [`write_fixture`]).
fn fixture_commands() -> (Vec<Command>, Vec<Command>) {
    let reading = |i: i64| {
        record(
            "m1",
            reading_values(
                FIXTURE_T0_MS + i * QUARTER_MS + 7 * 60_000,
                1000.0 + i as f64 * 12.25,
                i as f64 * 0.5,
                100.0 + (i % 13) as f64 * 37.5,
            ),
        )
    };
    let mut before = vec![register_meter("m1", MeterKind::Grid, None)];
    before.extend((0..192).map(reading));
    before.push(record(
        "m1",
        reading_values(FIXTURE_T0_MS + 4 * QUARTER_MS + 60_000, 1048.0, 2.0, 999.0),
    ));
    let after = (192..194).map(reading).collect();
    (before, after)
}

/// Snapshots on demand, no archive (the fixture's whole log stays in `wal/`), small segments.
fn fixture_options() -> EngineOptions {
    let mut storage = StorageOptions::default();
    storage.snapshot_every_events = u64::MAX;
    storage.snapshot_every_bytes = u64::MAX;
    storage.archive = false;
    options(&FakeClock::at(FIXTURE_T0_MS + 3 * 86_400_000))
        .wal(WalOptions::default().segment_bytes(16 * 1024))
        .storage(storage)
}

fn copy_dir(from: &Path, to: &Path, subs: &[&str]) {
    for sub in subs {
        std::fs::create_dir(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/snapshot-v4"))
}

fn all_buckets(engine: &Engine, step: Step) -> Vec<Bucket> {
    engine
        .rollups("m1", step, 0, i64::MAX)
        .expect("rollups")
        .expect("a meter")
}

/// Buckets as their bits, so equality is exact (no float tolerance).
fn bits(buckets: &[Bucket]) -> Vec<BucketBits> {
    buckets.iter().map(Bucket::bits).collect()
}

#[test]
fn a_format_4_snapshot_loads_and_its_rollups_answer_as_a_full_replay() {
    let with_snapshot = tempfile::tempdir().unwrap();
    copy_dir(fixture(), with_snapshot.path(), &["wal", "snapshots"]);
    let replayed = tempfile::tempdir().unwrap();
    copy_dir(fixture(), replayed.path(), &["wal"]);

    let engine = open(with_snapshot.path(), fixture_options());
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot {
            next_offset: SNAPSHOT_NEXT_OFFSET
        }
    );
    let full = open(replayed.path(), fixture_options());
    assert_eq!(full.started_from(), StartedFrom::FullReplay);
    assert_eq!(engine.digest(), full.digest());
    // The fixture holds what `fixture_commands` says: this build, given them, agrees.
    let fresh = tempfile::tempdir().unwrap();
    write_fixture(fresh.path());
    assert_eq!(
        open(fresh.path(), fixture_options()).digest(),
        engine.digest()
    );
    for step in [Step::QuarterHour, Step::Hour, Step::Day] {
        assert_eq!(
            bits(&all_buckets(&engine, step)),
            bits(&all_buckets(&full, step)),
            "{step:?}"
        );
    }
    // What the log says, pinned: 194 quarter hours over three days, the late reading
    // counted in its quarter hour's power but not its energy.
    let quarters = all_buckets(&engine, Step::QuarterHour);
    assert_eq!(quarters.len(), 194);
    assert_eq!(quarters[4].count, 2);
    assert_eq!(quarters[4].max_w, 999.0);
    assert_eq!(quarters[4].import_wh, 12.25);
    let days = all_buckets(&engine, Step::Day);
    assert_eq!(
        days.iter().map(|d| d.count).collect::<Vec<_>>(),
        [97, 96, 2]
    );
    assert_eq!(days[1].import_wh, 96.0 * 12.25);

    // The next snapshot is of today's format and loads with the same digest.
    engine.snapshot_now().unwrap();
    let digest = engine.digest();
    engine.shutdown();
    let engine = open(with_snapshot.path(), fixture_options());
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot {
            next_offset: SNAPSHOT_NEXT_OFFSET + 2
        }
    );
    assert_eq!(engine.digest(), digest);
}

/// Writes the fixture's history into `dir` with this build: [`fixture_commands`], a
/// snapshot between its two parts. The fixture was written so by the last build of format 4.
fn write_fixture(dir: &Path) {
    let (before, after) = fixture_commands();
    let engine = open(dir, fixture_options());
    submit(&engine, before);
    engine.snapshot_now().unwrap();
    submit(&engine, after);
    engine.shutdown();
}
