//! Test child for `engine_replay_digest`'s kill test: submits a deterministic sequence of
//! requests to an engine from one thread, and prints every acknowledged (durable) request as
//! `A <index> <offset>:<seq> <offset>:<seq> …` (one pair per accepted command, in order;
//! `-` for a command that was not accepted) until it is killed.
//!
//! Usage: `engine-writer DIR FIRST_INDEX` — request `FIRST_INDEX` is the first one it sends.
//!
//! Request `i` is [`request`]`(i)`, the same in every process, and the clock is a constant,
//! so feeding requests `0..k` to any fresh engine gives the same log and the same image.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use gridlog_common::domain::{AssetKind, Command, MeterKind, Reading};
use gridlog_common::id::{CommandId, EntityId};
use gridlog_firmware::engine::{Clock, Engine, EngineOptions, ItemResult, Request};
use gridlog_firmware::wal::WalOptions;

/// The gateway clock of every writer: constant, so `gateway_ms` is deterministic.
pub const NOW_MS: i64 = 1_760_000_000_000;
/// Time of request 0's readings; request `i` measures at `READINGS_FROM_MS + i` seconds.
pub const READINGS_FROM_MS: i64 = NOW_MS - 30 * 86_400_000;
/// Small segments, so kills also land around rotations.
pub const SEGMENT_BYTES: u64 = 16 * 1024;

const METERS: [(&str, MeterKind, Option<u8>); 4] = [
    ("m0", MeterKind::Pv, None),
    ("m1", MeterKind::Load, None),
    ("m2", MeterKind::Grid, Some(32)),
    ("m3", MeterKind::Battery, None),
];
const ASSET: &str = "bat";
const ASSET_RATED_W: f64 = 5000.0;

/// A clock that never moves.
#[derive(Debug, Clone, Copy)]
pub struct ConstClock(pub i64);

impl Clock for ConstClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

/// The engine options every writer and every reference engine uses.
pub fn options() -> EngineOptions {
    EngineOptions::default()
        .wal(WalOptions::default().segment_bytes(SEGMENT_BYTES))
        .clock(Arc::new(ConstClock(NOW_MS)))
}

fn id(s: &str) -> EntityId {
    EntityId::new(s).expect("valid id")
}

/// The command id of request `i`.
pub fn command_id(i: u64) -> CommandId {
    CommandId::new(&format!("w-{i}")).expect("valid command id")
}

/// Meter `k`'s reading in request `i`. Registers only grow, except m2's 32-bit import
/// register, which starts near its top and wraps around request 730.
fn reading(k: usize, i: u64) -> Command {
    let (name, _, bits) = METERS[k];
    let import_wh = match bits {
        Some(bits) => (4_294_960_000.0 + i as f64 * 10.0) % 2f64.powi(i32::from(bits)),
        None => i as f64 * 1.5 + k as f64,
    };
    Command::RecordReading {
        meter: id(name),
        reading: Reading {
            time_ms: READINGS_FROM_MS + i as i64 * 1000,
            import_wh,
            export_wh: i as f64 * 0.5,
            power_w: (i % 100) as f64 * 10.0 - 200.0,
            voltage_v: Some(230.0),
            current_a: None,
            reactive_power_var: None,
        },
    }
}

/// Request `i`. Request 0 registers everything; every later request has one to three
/// commands, at least one of which is accepted, so every request is one frame in the log.
pub fn request(i: u64) -> Request {
    let mut commands = Vec::new();
    if i == 0 {
        for (name, kind, register_bits) in METERS {
            commands.push(Command::RegisterMeter {
                meter: id(name),
                kind,
                register_bits,
            });
        }
        commands.push(Command::RegisterAsset {
            asset: id(ASSET),
            kind: AssetKind::Battery,
            rated_power_w: ASSET_RATED_W,
            capacity_wh: Some(10_000.0),
        });
    } else {
        let n = 1 + (i % 3) as usize;
        for j in 0..n {
            commands.push(reading((i as usize + j) % METERS.len(), i));
        }
        if i.is_multiple_of(5) {
            commands.push(Command::RequestSetpoint {
                asset: id(ASSET),
                power_w: (i % 50) as f64 * 100.0 - 2500.0,
            });
        }
        if i.is_multiple_of(7) {
            // Rejected (above rated power): a request's results mix outcomes.
            commands.push(Command::RequestSetpoint {
                asset: id(ASSET),
                power_w: ASSET_RATED_W * 2.0,
            });
        }
    }
    Request {
        commands: commands.into_iter().map(Into::into).collect(),
        command_id: Some(command_id(i)),
    }
}

/// The ack line of request `index`.
pub fn ack_line(index: u64, results: &[ItemResult]) -> String {
    let mut line = format!("A {index}");
    for result in results {
        match result {
            ItemResult::Accepted { offset, seq } => line.push_str(&format!(" {offset}:{seq}")),
            _ => line.push_str(" -"),
        }
    }
    line
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(&args[1]);
    let first: u64 = args[2].parse().expect("FIRST_INDEX");
    let engine = Engine::open(&dir, options()).expect("open the engine");
    println!("READY {}", engine.committed_offset());
    std::io::stdout().flush().expect("flush");
    for index in first.. {
        let response = engine.submit(request(index)).expect("submit");
        assert!(!response.replayed, "request {index} was already in the log");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ack_line(index, &response.results)).expect("write ack");
        out.flush().expect("flush");
    }
}
