//! Helpers shared by the `engine_*` black-box tests: a fake clock, command builders and a
//! paged full read of the log. Each test file includes this with `mod engine_support;`.
#![allow(dead_code)] // every test file uses a different part

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use gridlog_common::domain::{AssetKind, Command, MeterKind, Reading};
use gridlog_common::id::{CommandId, EntityId};
use gridlog_firmware::engine::{
    Clock, Engine, EngineOptions, EventRecord, Filter, ItemResult, Request, StorageOptions,
};
use gridlog_firmware::wal::WalOptions;

/// A whole hour (UTC) in 2025, so quarter-hour, hour and day buckets are easy to reason about.
pub const T0_MS: i64 = 1_750_000_000_000 / 86_400_000 * 86_400_000;

/// A gateway clock the test sets.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(now_ms: i64) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicI64::new(now_ms)))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Engine options for tests: small segments (so logs rotate) and the given clock.
pub fn options(clock: &Arc<FakeClock>) -> EngineOptions {
    EngineOptions::default()
        .wal(WalOptions::default().segment_bytes(64 * 1024))
        .clock(clock.clone())
}

pub fn open(dir: &Path, options: EngineOptions) -> Engine {
    Engine::open(dir, options).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

pub fn id(s: &str) -> EntityId {
    EntityId::new(s).unwrap()
}

pub fn command_id(s: &str) -> CommandId {
    CommandId::new(s).unwrap()
}

pub fn register_meter(meter: &str, kind: MeterKind, register_bits: Option<u8>) -> Command {
    Command::RegisterMeter {
        meter: id(meter),
        kind,
        register_bits,
    }
}

pub fn register_asset(asset: &str, kind: AssetKind, rated_power_w: f64) -> Command {
    Command::RegisterAsset {
        asset: id(asset),
        kind,
        rated_power_w,
        capacity_wh: None,
    }
}

pub fn reading_values(time_ms: i64, import_wh: f64, export_wh: f64, power_w: f64) -> Reading {
    Reading {
        time_ms,
        import_wh,
        export_wh,
        power_w,
        voltage_v: None,
        current_a: None,
        reactive_power_var: None,
    }
}

pub fn record(meter: &str, reading: Reading) -> Command {
    Command::RecordReading {
        meter: id(meter),
        reading,
    }
}

/// A reading of the import register only.
pub fn import_reading(meter: &str, time_ms: i64, import_wh: f64) -> Command {
    record(meter, reading_values(time_ms, import_wh, 0.0, 100.0))
}

/// Submits one request and returns its per-command results.
pub fn submit(engine: &Engine, commands: impl IntoIterator<Item = Command>) -> Vec<ItemResult> {
    engine
        .submit(Request::of(commands))
        .expect("submit")
        .results
}

/// Submits one command that must be accepted; returns (offset, seq).
pub fn accept(engine: &Engine, command: Command) -> (u64, u64) {
    let results = submit(engine, [command.clone()]);
    match results.as_slice() {
        [ItemResult::Accepted { offset, seq }] => (*offset, *seq),
        other => panic!("{command:?} was not accepted: {other:?}"),
    }
}

/// Every committed event matching `filter`, read page by page from the start of the log.
pub fn read_all(engine: &Engine, filter: &Filter) -> Vec<EventRecord> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = engine
            .events_after(after, filter, 1000)
            .expect("events_after");
        out.extend(page.events);
        if page.last_offset == after {
            return out;
        }
        after = page.last_offset;
    }
}

/// Small segments, and snapshots only on demand, so tests decide when they happen.
pub fn storage_options(clock: &Arc<FakeClock>) -> EngineOptions {
    let mut storage = StorageOptions::default();
    storage.snapshot_every_events = u64::MAX;
    storage.snapshot_every_bytes = u64::MAX;
    storage.snapshots_keep = 2;
    options(clock)
        .wal(WalOptions::default().segment_bytes(16 * 1024))
        .storage(storage)
}

/// Registers 5 meters (with `start_batch` 0) and writes `batches` requests of 10 readings,
/// one second apart from `t0_ms`.
pub fn write_batches(engine: &Engine, t0_ms: i64, start_batch: i64, batches: i64) {
    if start_batch == 0 {
        submit(
            engine,
            (0..5).map(|m| register_meter(&format!("m{m}"), MeterKind::Submeter, None)),
        );
    }
    for b in start_batch..start_batch + batches {
        let results = submit(
            engine,
            (0..10).map(|i| {
                let k = b * 10 + i;
                import_reading(&format!("m{}", k % 5), t0_ms + k * 1000, k as f64)
            }),
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, ItemResult::Accepted { .. })),
            "{results:?}"
        );
    }
}
