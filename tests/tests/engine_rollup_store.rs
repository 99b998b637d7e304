//! Sealed rollup days leave memory for the rollup store, through the engine: meters read
//! every quarter hour for twelve days, some readings late by up to two days (amendments of
//! sealed days), spilled whenever anything is queued, merged as spills accumulate,
//! snapshots now and then, restarts in between (some after a spill the newest snapshot
//! does not know of). After every restart and at the end, every rollup `Engine::rollups`
//! answers is bit for bit what one ring of every interval (format 4's in-memory rollups,
//! fed the same readings) answers; the digest survives every restart; and memory holds
//! only each meter's current day.

mod engine_support;

use engine_support::*;
use gridlog_common::domain::{MeterKind, Reading};
use gridlog_firmware::engine::rollup::v4::MeterRollupsV4;
use gridlog_firmware::engine::rollup::{Baseline, Bucket, BucketBits, RollupOptions};
use gridlog_firmware::engine::{
    Engine, EngineOptions, ItemResult, StartedFrom, Step, StorageOptions,
};
use gridlog_firmware::wal::WalOptions;

const METERS: usize = 3;
const DAYS: i64 = 12;
const QUARTER_MS: i64 = 900_000;
const DAY_MS: i64 = 86_400_000;

/// Small horizons, so twelve days run past both.
fn horizons() -> RollupOptions {
    RollupOptions {
        quarter_hour_days: 3,
        day_days: 8,
    }
}

fn engine_options(clock: &std::sync::Arc<FakeClock>, spill_bytes: u64) -> EngineOptions {
    let mut storage = StorageOptions::default();
    storage.snapshot_every_events = 200;
    storage.snapshot_every_bytes = u64::MAX;
    storage.snapshots_keep = 2;
    // No archive: its cycle records events, which would race the digests compared here.
    storage.archive = false;
    storage.rollup_spill_bytes = spill_bytes;
    options(clock)
        .wal(WalOptions::default().segment_bytes(32 * 1024))
        .storage(storage)
        .rollups(horizons())
}

/// Every meter's readings in arrival order: one a quarter hour (a few minutes in), its
/// registers rising with time at 1 kW; about one in nine held back and sent up to two days
/// later (a late reading, into a sealed day once a newer day has begun).
fn readings() -> Vec<(usize, Reading)> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut on_time = Vec::new();
    let mut held: Vec<(i64, usize, Reading)> = Vec::new();
    for q in 0..DAYS * 96 {
        for m in 0..METERS {
            let time_ms = T0_MS + q * QUARTER_MS + (next() % 600_000) as i64;
            let reading = reading_values(
                time_ms,
                (time_ms - T0_MS) as f64 / 3_600.0 + m as f64,
                0.0,
                200.0 + (next() % 5_000) as f64 / 7.0,
            );
            if next() % 9 == 0 {
                let release = time_ms + (next() % (2 * DAY_MS as u64)) as i64;
                held.push((release, m, reading));
            } else {
                on_time.push((time_ms, m, reading));
            }
        }
    }
    on_time.extend(held);
    on_time.sort_by_key(|(at, _, _)| *at);
    on_time.into_iter().map(|(_, m, r)| (m, r)).collect()
}

fn meter(m: usize) -> String {
    format!("m{m}")
}

fn register_meters(engine: &Engine) {
    for m in 0..METERS {
        accept(engine, register_meter(&meter(m), MeterKind::Grid, None));
    }
}

/// One ring of every interval per meter (format 4's rollups), fed what the engine accepted
/// with the same energy rule (`Baseline`).
struct Reference {
    rings: Vec<MeterRollupsV4>,
    baselines: [Baseline; METERS],
}

impl Reference {
    fn new() -> Reference {
        Reference {
            rings: (0..METERS)
                .map(|_| MeterRollupsV4::new(&horizons()))
                .collect(),
            baselines: [Baseline::default(); METERS],
        }
    }

    fn book(&mut self, m: usize, r: &Reading) {
        let (import_wh, export_wh) = self.baselines[m].book(r);
        self.rings[m].add(r.time_ms, import_wh, export_wh, r.power_w);
    }
}

fn bits(buckets: &[Bucket]) -> Vec<BucketBits> {
    buckets.iter().map(Bucket::bits).collect()
}

/// Every step, whole and in three windows, against the reference.
fn assert_answers_as_the_reference(engine: &Engine, reference: &[MeterRollupsV4], when: &str) {
    let windows = [
        (i64::MIN / 2, i64::MAX / 2),
        (T0_MS + 2 * DAY_MS + 7 * QUARTER_MS, T0_MS + 9 * DAY_MS),
        (T0_MS + 10 * DAY_MS, T0_MS + 10 * DAY_MS + 5 * QUARTER_MS),
        (T0_MS + (DAYS - 1) * DAY_MS, T0_MS + DAYS * DAY_MS),
    ];
    for (m, want) in reference.iter().enumerate() {
        for step in [Step::QuarterHour, Step::Hour, Step::Day] {
            for (from, to) in windows {
                let got = engine
                    .rollups(&meter(m), step, from, to)
                    .expect("rollups")
                    .expect("a meter");
                assert_eq!(
                    bits(&got),
                    bits(&want.query(step, from, to)),
                    "{when}: meter {m}, {step:?}, {from}..{to}"
                );
            }
        }
    }
}

#[test]
fn sealed_days_in_the_store_answer_as_one_ring_of_every_interval_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0_MS + (DAYS + 3) * DAY_MS);
    let mut engine = open(dir.path(), engine_options(&clock, 1));
    register_meters(&engine);
    let mut reference = Reference::new();
    let all = readings();
    let (mut restarts, mut spilled_then_restarted, mut from_snapshot) = (0, 0, 0);
    for (i, batch) in all.chunks(50).enumerate() {
        let commands = batch.iter().map(|(m, r)| record(&meter(*m), *r));
        for ((m, r), result) in batch.iter().zip(submit(&engine, commands)) {
            assert!(matches!(result, ItemResult::Accepted { .. }), "{result:?}");
            reference.book(*m, r);
        }
        if i % 11 == 10 {
            // A spill the newest snapshot may not know of, then a restart.
            engine.spill_rollups_now().expect("spill");
            spilled_then_restarted += 1;
        }
        if i % 6 == 5 {
            let digest = engine.digest();
            engine.shutdown();
            engine = open(dir.path(), engine_options(&clock, 1));
            restarts += 1;
            assert_eq!(engine.digest(), digest, "restart {restarts}");
            if matches!(engine.started_from(), StartedFrom::Snapshot { .. }) {
                from_snapshot += 1;
            }
            assert_answers_as_the_reference(
                &engine,
                &reference.rings,
                &format!("restart {restarts}"),
            );
        }
    }
    assert!(restarts >= 10 && spilled_then_restarted >= 5 && from_snapshot >= 5);
    engine.spill_rollups_now().expect("spill");
    assert_answers_as_the_reference(&engine, &reference.rings, "the end");
    // Memory holds each meter's current day; the store holds the rest, merged.
    let stats = engine.storage_stats();
    assert_eq!(stats.rollup_queued_bytes, 0, "{stats:?}");
    let spills = std::fs::read_dir(dir.path().join("rollups"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "rlp")
        })
        .count();
    assert!(
        (1..=2 * 8).contains(&spills),
        "{spills} spill files: merged as they accumulate"
    );
    let current_days: Vec<Option<i64>> = engine.read(|image| {
        (0..METERS)
            .map(|m| {
                image
                    .entity(&meter(m))
                    .unwrap()
                    .rollups
                    .as_ref()
                    .unwrap()
                    .current_day()
            })
            .collect()
    });
    assert!(current_days
        .iter()
        .all(|d| *d == Some(T0_MS / DAY_MS + DAYS - 1)));
    // A replay from nothing but the log and the store gives the same answers.
    engine.shutdown();
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let engine = open(dir.path(), engine_options(&clock, 1));
    assert_answers_as_the_reference(&engine, &reference.rings, "full replay over the store");
    engine.snapshot_now().unwrap();
    engine.shutdown();
    // A damaged spill is set aside with every newer one; the snapshot that assumed them is
    // passed over, and the log derives their days again.
    let mut spills: Vec<_> = std::fs::read_dir(dir.path().join("rollups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rlp"))
        .collect();
    spills.sort();
    let mut bytes = std::fs::read(&spills[0]).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&spills[0], &bytes).unwrap();
    let passed_over: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert!(!passed_over.is_empty());
    let engine = open(dir.path(), engine_options(&clock, 1));
    assert_eq!(engine.started_from(), StartedFrom::FullReplay);
    assert!(dir
        .path()
        .join("rollups/set-aside")
        .join(spills[0].file_name().unwrap())
        .exists());
    // The engine says which snapshots it passed over (the shipper does not ship them with
    // this store); they stay on disk.
    let mut offsets: Vec<u64> = passed_over
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    offsets.sort_unstable();
    let mut said = engine.snapshots_passed_over().to_vec();
    said.sort_unstable();
    assert_eq!(said, offsets);
    assert!(passed_over.iter().all(|p| p.exists()));
    assert_answers_as_the_reference(&engine, &reference.rings, "after a spill was set aside");
}

/// Without a spill (the queue's bound never reached, no snapshot), sealed days and
/// amendments stay queued in the image and are answered from there, and a restart rebuilds
/// the queue by replay: the same answers, the same digest.
#[test]
fn queued_days_answer_before_any_spill_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0_MS + (DAYS + 3) * DAY_MS);
    let options = || {
        let mut o = engine_options(&clock, u64::MAX);
        let mut storage = StorageOptions::default();
        storage.snapshot_every_events = u64::MAX;
        storage.rollup_spill_bytes = u64::MAX;
        o = o.storage(storage);
        o
    };
    let engine = open(dir.path(), options());
    register_meters(&engine);
    let mut reference = Reference::new();
    for batch in readings().chunks(100) {
        submit(&engine, batch.iter().map(|(m, r)| record(&meter(*m), *r)));
        for (m, r) in batch {
            reference.book(*m, r);
        }
    }
    assert_answers_as_the_reference(&engine, &reference.rings, "queued");
    assert!(!dir.path().join("rollups").exists(), "nothing spilled");
    let digest = engine.digest();
    engine.shutdown();
    let engine = open(dir.path(), options());
    assert_eq!(engine.digest(), digest);
    assert_answers_as_the_reference(&engine, &reference.rings, "queued, after a restart");
    engine.shutdown();
    // A replay that queues more than a spill's worth spills as it goes.
    let engine = open(dir.path(), engine_options(&clock, 1));
    assert!(dir.path().join("rollups").exists(), "replay spilled");
    assert!(engine.storage_stats().rollup_queued_bytes < 4096);
    assert_eq!(engine.digest(), digest);
    assert_answers_as_the_reference(&engine, &reference.rings, "spilled by the replay");
}
