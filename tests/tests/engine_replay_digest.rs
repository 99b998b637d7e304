//! The image is a pure function of the log: whatever commands were submitted, however they
//! were grouped into requests and from how many threads, a fresh `Engine::open` of the same
//! directory (a replay) has the same `digest()` as the live engine. And after a `SIGKILL`
//! at a random moment, the reopened engine holds every acknowledged request where it was
//! acknowledged, and its digest equals that of an engine fed exactly the recovered prefix of
//! requests.
//!
//! `PROPTEST_CASES` sets the number of random histories (default 48);
//! `GRIDLOG_KILL_CYCLES` the number of kill cycles (default 12).

mod engine_support;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use engine_support::*;
use gridlog_common::domain::{AssetKind, Command, MeterKind, Reading, Telemetry};
use gridlog_common::id::{CommandId, Label};
use gridlog_firmware::engine::{
    CommandRequest, Engine, EngineOptions, Filter, ItemResult, Request, Response,
};
use gridlog_firmware::wal::WalOptions;
use gridlog_tests::kill::{complete_lines, sigkill, KillRng};
use proptest::prelude::*;

#[path = "../src/bin/engine_writer.rs"]
#[allow(dead_code)]
mod writer;

const WRITER: &str = env!("CARGO_BIN_EXE_engine-writer");

/// The gateway clock of the random histories: constant, so two engines fed the same
/// commands stamp the same `gateway_ms`.
const NOW_MS: i64 = T0_MS + 86_400_000;

const METER_NAMES: [&str; 4] = ["m0", "m1", "m2", "unknown-meter"];
const ASSET_NAMES: [&str; 3] = ["a0", "a1", "unknown-asset"];

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn engine_options(clock: &std::sync::Arc<FakeClock>) -> EngineOptions {
    // Tiny segments: replays cross many of them.
    EngineOptions::default()
        .wal(WalOptions::default().segment_bytes(8 * 1024))
        .clock(clock.clone())
}

/// The registrations every history starts with, so most random commands find an entity.
fn setup() -> Vec<Command> {
    vec![
        register_meter("m0", MeterKind::Pv, None),
        register_meter("m1", MeterKind::Load, None),
        register_meter("m2", MeterKind::Grid, Some(16)),
        register_asset("a0", AssetKind::Battery, 5000.0),
        register_asset("a1", AssetKind::PvInverter, 3000.0),
    ]
}

/// A value that breaks a reading (or is merely unusual).
fn odd_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
    ]
}

/// A reading to be built once its place in the history is known.
#[derive(Debug, Clone)]
struct ReadingOp {
    meter: usize,
    /// A random minute (a late or repeated reading), or `None`: the next minute in order.
    minute: Option<i64>,
    /// A field replaced by an odd value.
    odd: Option<(usize, f64)>,
    /// Measured ten minutes ahead of the gateway clock.
    future: bool,
}

/// A command, or a reading still to be placed.
#[derive(Debug, Clone)]
enum Op {
    Reading(ReadingOp),
    Other(Command),
}

fn reading_strategy() -> impl Strategy<Value = Op> {
    (
        0..METER_NAMES.len(),
        prop::option::weighted(0.3, 0i64..400),
        prop::option::weighted(0.15, (0..4usize, odd_value())),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(meter, minute, odd, future)| {
            Op::Reading(ReadingOp {
                meter,
                minute,
                odd,
                future,
            })
        })
}

/// Meter `m`'s reading at minute `k`: a function of (m, k) unless a field is odd, so the
/// same (m, k) twice is a duplicate. The import register grows 250 Wh a minute modulo
/// 2^16: the 16-bit meter m2 wraps around minute 262, the others see a decrease there.
fn build_reading(op: &ReadingOp, next_minute: i64) -> Command {
    let k = op.minute.unwrap_or(next_minute);
    let mut reading = Reading {
        time_ms: T0_MS + k * 60_000,
        import_wh: ((k * 250 + op.meter as i64 * 7) % 65_536) as f64,
        export_wh: k as f64 * 10.0,
        power_w: ((k * 37) % 100) as f64 * 50.0 - 1000.0,
        voltage_v: Some(230.0),
        current_a: None,
        reactive_power_var: None,
    };
    if let Some((field, value)) = op.odd {
        match field {
            0 => reading.import_wh = value,
            1 => reading.export_wh = value,
            2 => reading.power_w = value,
            _ => reading.voltage_v = Some(value as f32),
        }
    }
    if op.future {
        reading.time_ms = NOW_MS + 10 * 60_000;
    }
    record(METER_NAMES[op.meter], reading)
}

fn command_strategy() -> impl Strategy<Value = Op> {
    let meter = || (0..METER_NAMES.len()).prop_map(|m| id(METER_NAMES[m]));
    let asset = || (0..ASSET_NAMES.len()).prop_map(|a| id(ASSET_NAMES[a]));
    let code = || (0..3u8).prop_map(|c| Label::new(&format!("E{c}")).unwrap());
    let other = prop_oneof![
        1 => (meter(), prop::sample::select(MeterKind::ALL.to_vec()), prop::option::of(Just(16u8)))
            .prop_map(|(meter, kind, register_bits)| Command::RegisterMeter { meter, kind, register_bits }),
        1 => (meter(), 0i64..400, 0u32..100).prop_map(|(meter, k, wh)| Command::ReplaceMeter {
            meter,
            time_ms: T0_MS + k * 60_000,
            import_wh: f64::from(wh),
            export_wh: 0.0,
        }),
        // Rarely a known meter: a decommissioned meter takes no more readings.
        1 => (0..METER_NAMES.len() * 2).prop_map(|m| Command::DecommissionMeter {
            meter: id(METER_NAMES[m.min(METER_NAMES.len() - 1)]),
        }),
        2 => (asset(), 0i64..400, -6000.0..6000.0f64, prop::option::of(-10.0..110.0f64)).prop_map(
            |(asset, k, power_w, soc_pct)| Command::RecordTelemetry {
                asset,
                telemetry: Telemetry {
                    time_ms: T0_MS + k * 60_000,
                    power_w,
                    soc_pct,
                    status: Label::new("ok").unwrap(),
                },
            }
        ),
        3 => (asset(), -6000.0..6000.0f64).prop_map(|(asset, power_w)| Command::RequestSetpoint { asset, power_w }),
        2 => (asset(), -6000.0..6000.0f64).prop_map(|(asset, power_w)| Command::ConfirmSetpoint { asset, power_w }),
        2 => (asset(), any::<bool>()).prop_map(|(asset, available)| Command::ChangeAvailability { asset, available }),
        1 => (asset(), code()).prop_map(|(asset, code)| Command::RaiseFault { asset, code }),
        1 => (asset(), code()).prop_map(|(asset, code)| Command::ClearFault { asset, code }),
        1 => (asset(), prop::sample::select(AssetKind::ALL.to_vec()), 1000.0..6000.0f64).prop_map(
            |(asset, kind, rated_power_w)| Command::RegisterAsset { asset, kind, rated_power_w, capacity_wh: None }
        ),
    ];
    prop_oneof![3 => reading_strategy(), 1 => other.prop_map(Op::Other)]
}

/// Requests of one to four commands (some with an expected seq), a third of them with a
/// command id from a small pool, so some are retries. Most readings come in time order,
/// eight minutes apart, so registers grow and m2's wraps; the rest are late or repeated.
fn requests_strategy() -> impl Strategy<Value = Vec<Request>> {
    let item = (command_strategy(), prop::option::weighted(0.1, 0u64..12));
    let request = (
        prop::collection::vec(item, 1..5),
        prop::option::weighted(0.3, 0u8..6),
    );
    prop::collection::vec(request, 1..64).prop_map(|requests| {
        let mut next_minute = 0;
        requests
            .into_iter()
            .map(|(items, id)| Request {
                commands: items
                    .into_iter()
                    .map(|(op, expected_seq)| {
                        let command = match op {
                            Op::Reading(reading) => {
                                next_minute += 8;
                                build_reading(&reading, next_minute)
                            }
                            Op::Other(command) => command,
                        };
                        CommandRequest {
                            command,
                            expected_seq,
                        }
                    })
                    .collect(),
                command_id: id.map(|i| CommandId::new(&format!("req-{i}")).unwrap()),
            })
            .collect()
    })
}

/// Submits `requests` (after the setup) from `threads` threads, taking turns; the first
/// thread takes a snapshot (and archives) after its first `snapshot_after` requests, if
/// given. Returns every response with its request.
fn submit_all(
    engine: &Engine,
    requests: &[Request],
    threads: usize,
    snapshot_after: Option<usize>,
) -> Vec<(Request, Response)> {
    engine.submit(Request::of(setup())).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mine: Vec<&Request> = requests.iter().skip(t).step_by(threads).collect();
                    let mut responses = Vec::with_capacity(mine.len());
                    for (i, r) in mine.iter().enumerate() {
                        if t == 0 && snapshot_after == Some(i) {
                            engine.snapshot_now().unwrap();
                        }
                        responses.push(((*r).clone(), engine.submit((*r).clone()).unwrap()));
                    }
                    if t == 0 && snapshot_after.is_some_and(|k| k >= mine.len()) {
                        engine.snapshot_now().unwrap();
                    }
                    responses
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Every accepted command's result names an event of its entity with that seq at that
/// offset.
fn check_results_point_at_their_events(engine: &Engine, responses: &[(Request, Response)]) {
    for (request, response) in responses {
        assert_eq!(response.results.len(), request.commands.len());
        for (item, result) in request.commands.iter().zip(&response.results) {
            if let ItemResult::Accepted { offset, seq } = result {
                let entity = item.command.entity().as_str();
                let found = engine.events_of(entity, *seq, *seq, 1).unwrap().events;
                assert_eq!(found.len(), 1, "{entity} seq {seq} is missing");
                assert_eq!(found[0].offset, *offset, "{entity} seq {seq}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(env_u32("PROPTEST_CASES", 48)))]

    /// Live image == replayed image, with requests from one or two threads.
    #[test]
    fn a_replay_rebuilds_the_live_image(
        requests in requests_strategy(),
        two_threads in any::<bool>(),
        snapshot_after in proptest::option::of(0usize..40),
    ) {
        let snapshot = snapshot_after.is_some();
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::at(NOW_MS);
        let (live_digest, committed, all) = {
            let engine = open(dir.path(), engine_options(&clock));
            let threads = if two_threads { 2 } else { 1 };
            let responses = submit_all(&engine, &requests, threads, snapshot_after);
            check_results_point_at_their_events(&engine, &responses);
            // Offsets are gap-free and seqs per entity are 1, 2, 3 …
            let all = read_all(&engine, &Filter::All);
            prop_assert_eq!(all.len() as u64, engine.committed_offset() - 1);
            let mut seqs = std::collections::HashMap::new();
            for (i, event) in all.iter().enumerate() {
                prop_assert_eq!(event.offset, i as u64 + 1);
                let seq = seqs.entry(event.stored.entity.clone()).or_insert(0u64);
                *seq += 1;
                prop_assert_eq!(event.stored.seq, *seq);
            }
            (engine.digest(), engine.committed_offset(), all)
        };
        // From the snapshot and the log after it (if one was taken), then twice from the
        // whole log (the archive, then the hot log).
        for round in 0..3 {
            let full = !snapshot || round > 0;
            if full {
                let _ = std::fs::remove_dir_all(dir.path().join("snapshots"));
            }
            let replayed = open(dir.path(), engine_options(&clock));
            prop_assert_eq!(replayed.committed_offset(), committed);
            prop_assert_eq!(replayed.digest(), live_digest, "replay differs from the live image");
            if full {
                prop_assert_eq!(replayed.stats().replayed_events, committed - 1);
            } else {
                // The snapshot was loaded (a digest mismatch would have fallen back).
                prop_assert!(
                    replayed.started_from().to_string().starts_with("snapshot at"),
                    "{}",
                    replayed.started_from()
                );
            }
            prop_assert_eq!(read_all(&replayed, &Filter::All), all.clone());
        }
    }

    /// How commands are grouped into requests changes nothing: the same commands one per
    /// request give the same results, offsets, seqs and image (validation inside a request
    /// sees the earlier commands of the request exactly as if they had been committed).
    #[test]
    fn grouping_commands_into_requests_changes_nothing(requests in requests_strategy()) {
        let clock = FakeClock::at(NOW_MS);
        let requests: Vec<Request> = requests
            .into_iter()
            .map(|r| Request { command_id: None, ..r })
            .collect();
        let singles: Vec<Request> = requests
            .iter()
            .flat_map(|r| r.commands.iter().map(|c| Request { commands: vec![c.clone()], command_id: None }))
            .collect();
        let run = |requests: &[Request]| {
            let dir = tempfile::tempdir().unwrap();
            let engine = open(dir.path(), engine_options(&clock));
            let results: Vec<ItemResult> = submit_all(&engine, requests, 1, None)
                .into_iter()
                .flat_map(|(_, response)| response.results)
                .collect();
            (results, engine.digest(), read_all(&engine, &Filter::All))
        };
        let grouped = run(&requests);
        let single = run(&singles);
        prop_assert_eq!(&grouped.0, &single.0);
        prop_assert_eq!(grouped.1, single.1);
        prop_assert_eq!(grouped.2, single.2);
    }
}

/// An acknowledged request: its index and, per command, `Some((offset, seq))` if accepted.
type Ack = (u64, Vec<Option<(u64, u64)>>);

fn parse_ack(line: &str) -> Ack {
    let mut fields = line.split(' ').skip(1);
    let index = fields.next().unwrap().parse().unwrap();
    let results = fields
        .map(|f| {
            f.split_once(':')
                .map(|(o, s)| (o.parse().unwrap(), s.parse().unwrap()))
        })
        .collect();
    (index, results)
}

fn results_of(response: &Response) -> Vec<Option<(u64, u64)>> {
    response
        .results
        .iter()
        .map(|r| match r {
            ItemResult::Accepted { offset, seq } => Some((*offset, *seq)),
            _ => None,
        })
        .collect()
}

/// Runs the writer from request `first`, kills it after `run_ms`, returns its acks.
fn run_writer_and_kill(dir: &std::path::Path, first: u64, run_ms: u64) -> Vec<Ack> {
    let mut child = Process::new(WRITER)
        .args([dir.to_str().unwrap(), &first.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn engine-writer");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert!(ready.starts_with("READY "), "writer said {ready:?}");
    // The READY line is read; the rest comes through the same buffer.
    let reader = complete_lines(stdout);
    std::thread::sleep(Duration::from_millis(run_ms));
    sigkill(child.id());
    child.wait().unwrap();
    reader
        .join()
        .unwrap()
        .iter()
        .map(|l| parse_ack(l))
        .collect()
}

#[test]
fn after_a_sigkill_the_reopened_engine_is_the_acknowledged_prefix() {
    let cycles = env_u32("GRIDLOG_KILL_CYCLES", 12);
    eprintln!("{cycles} cycles");
    let mut rng = KillRng::from_env_or_clock("engine kill test");
    let dir = tempfile::tempdir().unwrap();
    // The reference: an engine fed the same requests in process, never killed.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = Engine::open(reference_dir.path(), writer::options()).unwrap();
    // Per request index: the reference's results.
    let mut expected: Vec<Vec<Option<(u64, u64)>>> = Vec::new();
    let mut acked_total = 0;
    for cycle in 0..cycles {
        let first = expected.len() as u64;
        let acks = run_writer_and_kill(dir.path(), first, 20 + rng.next_u64() % 200);
        for (n, (index, _)) in acks.iter().enumerate() {
            assert_eq!(*index, first + n as u64, "cycle {cycle}: acks in order");
        }
        acked_total += acks.len();

        let engine = Engine::open(dir.path(), writer::options())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let recovered = engine.committed_offset();
        // Feed the reference until it holds as many events: the recovered log must be
        // exactly a prefix of whole requests (a request is one atomic frame).
        while reference.committed_offset() < recovered {
            let index = expected.len() as u64;
            let response = reference.submit(writer::request(index)).unwrap();
            expected.push(results_of(&response));
        }
        assert_eq!(
            reference.committed_offset(),
            recovered,
            "cycle {cycle}: the recovered log ends inside a request"
        );
        let prefix = expected.len() as u64;
        assert!(
            prefix >= first + acks.len() as u64,
            "cycle {cycle}: {} requests acknowledged up to {}, but the log holds only {prefix}",
            acks.len(),
            first + acks.len() as u64
        );
        // Every acknowledged command is where it was acknowledged.
        for (index, results) in &acks {
            assert_eq!(
                results, &expected[*index as usize],
                "cycle {cycle}: request {index}"
            );
            let request = writer::request(*index);
            for (item, result) in request.commands.iter().zip(results) {
                let Some((offset, seq)) = *result else {
                    continue;
                };
                let page = engine.events_after(offset - 1, &Filter::All, 1).unwrap();
                let event = &page.events[0].stored;
                assert_eq!(page.events[0].offset, offset);
                assert_eq!(
                    (event.entity.as_str(), event.seq),
                    (item.command.entity().as_str(), seq),
                    "cycle {cycle}: request {index}"
                );
            }
        }
        let digest = engine.digest();
        assert_eq!(
            digest,
            reference.digest(),
            "cycle {cycle}: reopened engine differs from one fed the first {prefix} requests"
        );
        // A client that missed the ack retries: the id is known, nothing is stored.
        if prefix > 0 {
            let retry = engine.submit(writer::request(prefix - 1)).unwrap();
            assert!(
                retry.replayed,
                "cycle {cycle}: retry of request {}",
                prefix - 1
            );
            assert_eq!(engine.committed_offset(), recovered);
        }
        drop(engine);
        let again = Engine::open(dir.path(), writer::options()).unwrap();
        assert_eq!(
            again.digest(),
            digest,
            "cycle {cycle}: second replay differs"
        );
        drop(again);
        if cycle.is_multiple_of(4) {
            eprintln!(
                "cycle {cycle}: {prefix} requests, {recovered} offsets, {} acked this cycle",
                acks.len()
            );
        }
    }
    assert!(
        acked_total > cycles as usize,
        "the writer should acknowledge requests before most kills"
    );
    let report = gridlog_firmware::wal::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.segments.len() > 2,
        "expected rotations, got {} segments",
        report.segments.len()
    );
}
