//! Rollup days that left memory (the rollup store's spills) reach central storage with the
//! snapshot and come back with `gridlog restore`: a gateway restored from the snapshot
//! answers every rollup — quarter hours, hours and days, ten days back — bit for bit as the
//! original did. A later snapshot's set names the parts an earlier one uploaded again (none
//! uploaded twice); `ship --check` finds the store clean; a changed part fails the restore
//! and leaves nothing behind, and the shipper replaces it (an alarm, one snapshot passed
//! over). A snapshot start-up passes over (a spill damaged on the gateway) is not shipped. A serving gateway ships its spills with its snapshots while
//! readings arrive, and a restore of what it shipped answers its rollups alike.

#[allow(dead_code)]
mod ship_support;

use std::path::Path;

use gridlog_common::domain::{Command as DomainCommand, MeterKind, Reading};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::rollup::BucketBits;
use gridlog_firmware::engine::{Engine, ItemResult, Request, Step};
use ship_support::*;

const METERS: usize = 3;
const QUARTER_MS: i64 = 900_000;
const BLOCK_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn meter(m: usize) -> EntityId {
    EntityId::new(&format!("meter-{m}")).unwrap()
}

fn submit(engine: &Engine, commands: Vec<DomainCommand>) {
    for r in engine
        .submit(Request::of(commands))
        .expect("submit")
        .results
    {
        assert!(matches!(r, ItemResult::Accepted { .. }), "{r:?}");
    }
}

/// Quarter-hourly readings of every meter for `days` days from `from_ms`, the rollup queue
/// spilled after every 8-hour block (so spills pile up and merge), then a snapshot.
fn add_days(dir: &Path, from_ms: i64, days: i64) {
    let engine = Engine::open(dir, engine_options()).expect("open the engine");
    if engine.read(|i| i.entity(meter(0).as_str()).is_none()) {
        let register = (0..METERS).map(|m| DomainCommand::RegisterMeter {
            meter: meter(m),
            kind: MeterKind::Load,
            register_bits: None,
        });
        submit(&engine, register.collect());
    }
    let quarters = days * DAY_MS / QUARTER_MS;
    for q in 0..quarters {
        let time_ms = from_ms + q * QUARTER_MS + 60_000;
        let commands = (0..METERS)
            .map(|m| DomainCommand::RecordReading {
                meter: meter(m),
                reading: Reading {
                    time_ms,
                    import_wh: time_ms as f64 / 3_600.0 * (m + 1) as f64,
                    export_wh: 0.0,
                    power_w: 1_000.0 + (q % 17) as f64,
                    voltage_v: None,
                    current_a: None,
                    reactive_power_var: None,
                },
            })
            .collect();
        submit(&engine, commands);
        if (time_ms - from_ms + QUARTER_MS) % BLOCK_MS < QUARTER_MS {
            engine.spill_rollups_now().expect("spill");
        }
    }
    engine.snapshot_now().expect("snapshot");
    engine.shutdown();
}

/// Every meter's rollups of every step over the whole period, as bits.
fn answers(dir: &Path, from_ms: i64, to_ms: i64) -> Vec<Vec<BucketBits>> {
    let engine = Engine::open(dir, engine_options()).expect("open the engine");
    let mut out = Vec::new();
    for m in 0..METERS {
        for step in [Step::QuarterHour, Step::Hour, Step::Day] {
            let buckets = engine
                .rollups(meter(m).as_str(), step, from_ms, to_ms)
                .expect("rollups")
                .expect("a meter");
            out.push(buckets.iter().map(|b| b.bits()).collect());
        }
    }
    engine.shutdown();
    out
}

/// Restores the newest shipped point into `into` and checks it answers `expected` (what the
/// original answered over `from_ms..to_ms`); returns restore's output.
fn restore_answers(
    moto: &Moto,
    prefix: &str,
    into: &Path,
    (from_ms, to_ms): (i64, i64),
    expected: &[Vec<BucketBits>],
    what: &str,
) -> String {
    let (code, out, err) = restore(prefix, into, &moto.endpoint(), &[]);
    assert_eq!(code, 0, "{what}: {out}{err}");
    assert!(
        answers(into, from_ms, to_ms) == expected,
        "{what}: the restored gateway answers other rollups than the original"
    );
    out
}

/// The newest snapshot entry of each manifest under `root` that lists one, oldest first.
fn snapshot_entries(bucket: &Bucket, root: &str) -> Vec<serde_json::Value> {
    bucket
        .objects(&format!("{root}/manifests"))
        .values()
        .map(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).unwrap())
        .filter_map(|m| m["snapshots"].as_array().and_then(|s| s.last().cloned()))
        .collect()
}

/// The newest manifest's snapshot entry (with its rollup set) of `root`.
fn newest_snapshot_entry(bucket: &Bucket, root: &str) -> serde_json::Value {
    snapshot_entries(bucket, root)
        .pop()
        .expect("a manifest lists a snapshot")
}

fn part_keys(entry: &serde_json::Value) -> Vec<String> {
    entry["rollups"]
        .as_array()
        .expect("the snapshot lists its rollup spills")
        .iter()
        .flat_map(|r| r["parts"].as_array().unwrap().clone())
        .map(|p| p["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_restored_gateway_answers_the_rollups_that_had_left_memory() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "rollups";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("original");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now_ms / DAY_MS - 17) * DAY_MS;
    add_days(&dir, t0, 10);
    let to_ms = t0 + 12 * DAY_MS;
    let before = answers(&dir, t0, to_ms);
    assert!(
        before.iter().step_by(3).all(|q| q.len() > 96),
        "more than a day of quarter hours per meter"
    );
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = format!("{prefix}/{SITE}/{}", lineage.trim());
    let first = newest_snapshot_entry(&bucket, &root);
    let first_parts = part_keys(&first);
    assert!(!first_parts.is_empty(), "{first}");
    let local_spills = gridlog_firmware::engine::rollup_store::list(&dir).unwrap();
    assert!(local_spills.len() > 1, "the test needs rollups on disk");
    assert_eq!(
        first["rollups"].as_array().unwrap().len(),
        local_spills.len()
    );
    let stored = bucket.keys(&format!("{root}/rollups"));
    for k in &first_parts {
        assert!(stored.contains(k), "{k} is not in the store");
    }

    // Restore from the snapshot: the rollup days come back with it.
    let restored = tmp.path().join("restored");
    let out = restore_answers(&moto, prefix, &restored, (t0, to_ms), &before, "first");
    let spills = format!("with {} rollup spills", local_spills.len());
    assert!(out.contains(&spills), "{out}");

    // Two more days, a second snapshot: its set names the first set's parts still in use
    // again, and uploads only what is new.
    add_days(&dir, t0 + 10 * DAY_MS, 2);
    let before = answers(&dir, t0, to_ms);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let second = newest_snapshot_entry(&bucket, &root);
    assert_ne!(first["key"], second["key"]);
    let second_parts = part_keys(&second);
    let stored = bucket.keys(&format!("{root}/rollups"));
    let reused = second_parts
        .iter()
        .filter(|k| first_parts.contains(k))
        .count();
    assert!(reused > 0, "the second set names no part of the first");
    let mut named: Vec<&String> = first_parts.iter().chain(&second_parts).collect();
    named.sort();
    named.dedup();
    assert_eq!(stored.len(), named.len(), "every part stored once");
    let (code, report) = audit(&env);
    assert_eq!(code, 0, "{report}");

    let again = tmp.path().join("again");
    restore_answers(
        &moto,
        prefix,
        &again,
        (t0, to_ms),
        &before,
        "second restore",
    );

    // A part changed in the store: the restore fails naming it, and leaves nothing.
    // (The oldest spill's part: the next day's spills and merges keep that spill in use.)
    let victim = &second_parts[0];
    let mut bytes = bucket
        .objects(&format!("{root}/rollups"))
        .remove(victim)
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    bucket.overwrite(victim, bytes);
    let broken = tmp.path().join("broken");
    let (code, out, err) = restore(prefix, &broken, &moto.endpoint(), &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("tampered") && err.contains(victim.as_str()),
        "{err}"
    );
    assert!(!broken.exists());

    // The shipper meets the changed part when the next snapshot's set names it again: an
    // alarm, the other bytes removed, that snapshot not shipped (left: exit 1); the one
    // after ships the part afresh, and a restore answers alike again.
    add_days(&dir, t0 + 12 * DAY_MS, 1);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 1, "the snapshot not shipped is left: {out}{err}");
    assert_eq!(newest_snapshot_entry(&bucket, &root)["key"], second["key"]);
    assert!(!bucket.keys(&format!("{root}/rollups")).contains(victim));
    add_days(&dir, t0 + 13 * DAY_MS, 1);
    let to_ms = t0 + 15 * DAY_MS;
    let before = answers(&dir, t0, to_ms);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let third = newest_snapshot_entry(&bucket, &root);
    assert_ne!(third["key"], second["key"]);
    assert!(part_keys(&third).contains(victim), "{third}");
    let repaired = tmp.path().join("repaired");
    restore_answers(
        &moto,
        prefix,
        &repaired,
        (t0, to_ms),
        &before,
        "after the repair",
    );
    let (code, report) = audit(&env);
    assert_eq!(code, 0, "{report}");

    // A spill damaged on the gateway is set aside at start with every newer one; the newest
    // snapshot assumed them, so start-up passes it over (replaying the log instead), and the
    // shipper does not ship it with the store that lacks them. The next snapshot ships.
    add_days(&dir, t0 + 14 * DAY_MS, 1);
    let spills = gridlog_firmware::engine::rollup_store::list(&dir).unwrap();
    let (_, oldest) = &spills[0];
    let mut bytes = std::fs::read(oldest).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(oldest, &bytes).unwrap();
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        newest_snapshot_entry(&bucket, &root)["key"],
        third["key"],
        "a snapshot the rollup store cannot continue was shipped"
    );
    add_days(&dir, t0 + 15 * DAY_MS, 1);
    let to_ms = t0 + 17 * DAY_MS;
    let before = answers(&dir, t0, to_ms);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(newest_snapshot_entry(&bucket, &root)["key"], third["key"]);
    let last = tmp.path().join("last");
    restore_answers(
        &moto,
        prefix,
        &last,
        (t0, to_ms),
        &before,
        "after a set-aside",
    );
}

/// The manifests under `root` whose snapshot lists a rollup set: how many spills each set has.
fn shipped_sets(bucket: &Bucket, root: &str) -> Vec<usize> {
    snapshot_entries(bucket, root)
        .iter()
        .filter_map(|s| s["rollups"].as_array().map(Vec::len))
        .collect()
}

#[test]
fn a_serving_gateway_ships_its_rollup_spills_with_its_snapshots_and_a_restore_answers_alike() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "live-rollups";
    let mut env = ship_env(&moto.endpoint(), prefix);
    for (key, value) in [
        // Spill as soon as anything is queued; snapshot often; ship every snapshot.
        ("GRIDLOG_STORAGE__ROLLUP_SPILL_BYTES", "1024"),
        ("GRIDLOG_STORAGE__SNAPSHOT_EVERY_EVENTS", "100"),
        ("GRIDLOG_SHIP__SNAPSHOT_INTERVAL_S", "1"),
    ] {
        env.push((key.into(), value.into()));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let mut gateway = Gateway::serve(&dir, &env);
    for m in 0..METERS {
        gateway.post(
            "/api/v1/meters",
            serde_json::json!({"id": meter(m).as_str(), "kind": "load"}),
        );
    }
    let now_ms = gridlog_tests::server::unix_now() * 1000;
    let t0 = (now_ms / DAY_MS - 7) * DAY_MS;
    let days = 6;
    let quarters: Vec<i64> = (0..days * DAY_MS / QUARTER_MS).collect();
    for batch in quarters.chunks(16) {
        let readings: Vec<serde_json::Value> = batch
            .iter()
            .flat_map(|q| {
                let time_ms = t0 + q * QUARTER_MS + 60_000;
                (0..METERS).map(move |m| {
                    serde_json::json!({
                        "meter": meter(m).as_str(),
                        "time": gridlog_tests::server::rfc3339_ms(time_ms),
                        "import_wh": time_ms as f64 / 3_600.0 * (m + 1) as f64,
                        "export_wh": 0.0,
                        "power_w": 1_000.0 + (q % 17) as f64,
                    })
                })
            })
            .collect();
        let answer = gateway.post(
            "/api/v1/readings",
            serde_json::json!({ "readings": readings }),
        );
        assert_eq!(answer["accepted"], batch.len() * METERS, "{answer}");
    }
    // Shipping settles with a snapshot that carries the rollup store's spills.
    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = format!("{prefix}/{SITE}/{}", lineage.trim());
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let shipping = gateway.wait_shipped();
        if shipped_sets(&bucket, &root).iter().any(|n| *n > 1) {
            assert_eq!(shipping["alarms_total"], 0, "{shipping:#}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot shipped with its rollup spills: {shipping:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(gateway.stop(), 0);
    // The tail ships within `ship.max_lag_s`, so the newest readings may not be in the store
    // yet: ship what is left (a restore then holds every reading).
    let (code, out, err) = ship_once(&dir, &ship_env(&moto.endpoint(), prefix));
    assert_eq!(code, 0, "{out}{err}");
    let to_ms = t0 + 8 * DAY_MS;
    let before = answers(&dir, t0, to_ms);
    assert!(before.iter().step_by(3).all(|q| q.len() > 96));

    let restored = tmp.path().join("restored");
    let out = restore_answers(&moto, prefix, &restored, (t0, to_ms), &before, "served");
    assert!(!out.contains("with 0 rollup spills"), "{out}");
}
