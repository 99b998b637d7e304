//! Many writers and live subscribers at once: every subscriber — following everything, a
//! tag, or one entity, from the start or joining late — receives exactly what a full read
//! of the log returns afterwards, in order, without a gap or a duplicate; and it never sees
//! an event before the image does ("persist, then apply, then publish").

mod engine_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use engine_support::*;
use gridlog_common::domain::{AssetKind, Command, Event, MeterKind};
use gridlog_firmware::engine::{Engine, EventRecord, Filter, ItemResult, Request, Subscription};

const WRITERS: usize = 8;
const REQUESTS_PER_WRITER: u64 = 150;
const METERS_PER_WRITER: usize = 3;
const KINDS: [MeterKind; METERS_PER_WRITER] = [MeterKind::Pv, MeterKind::Load, MeterKind::Grid];
/// How long a subscriber may wait for the end before the test gives up on it.
const SUBSCRIBER_DEADLINE: Duration = Duration::from_secs(120);

fn meter_name(writer: usize, j: usize) -> String {
    format!("w{writer}-m{j}")
}

/// Writer `w`'s request `i`: readings of one to three of its meters, a setpoint on its
/// battery every fourth request, and every fifth request a command that is rejected.
fn request(w: usize, i: u64) -> Request {
    let mut commands = Vec::new();
    for j in 0..(1 + i as usize % METERS_PER_WRITER) {
        let t = T0_MS + i as i64 * 60_000;
        let wh = (i + 1) as f64 * (j + 1) as f64;
        commands.push(record(
            &meter_name(w, j),
            reading_values(t, wh, wh / 2.0, 100.0 * j as f64),
        ));
    }
    if i.is_multiple_of(4) {
        commands.push(Command::RequestSetpoint {
            asset: id(&format!("w{w}-bat")),
            power_w: (i % 10) as f64 * 100.0,
        });
    }
    if i.is_multiple_of(5) {
        commands.push(import_reading("nobody", T0_MS, 1.0));
    }
    Request::of(commands)
}

fn write(engine: &Engine, w: usize) {
    let mut setup: Vec<Command> = (0..METERS_PER_WRITER)
        .map(|j| register_meter(&meter_name(w, j), KINDS[j], None))
        .collect();
    setup.push(register_asset(
        &format!("w{w}-bat"),
        AssetKind::Battery,
        5000.0,
    ));
    let results = submit(engine, setup);
    assert!(results
        .iter()
        .all(|r| matches!(r, ItemResult::Accepted { .. })));
    for i in 0..REQUESTS_PER_WRITER {
        let request = request(w, i);
        let response = engine.submit(request.clone()).unwrap();
        for (item, result) in request.commands.iter().zip(&response.results) {
            let entity = item.command.entity().as_str();
            if entity == "nobody" {
                assert!(
                    matches!(result, ItemResult::Rejected(r) if r.code == gridlog_firmware::engine::RejectionCode::UnknownMeter),
                    "{result:?}"
                );
                continue;
            }
            let ItemResult::Accepted { offset, seq } = *result else {
                panic!("writer {w} request {i}: {item:?} -> {result:?}");
            };
            // An acknowledged event is readable at once.
            assert!(engine.committed_offset() > offset);
            let found = engine.events_of(entity, seq, seq, 1).unwrap().events;
            assert_eq!(found[0].offset, offset);
        }
    }
}

/// Follows `subscription` until it has examined everything before `end` (once `end` is
/// set, i.e. not 0), checking each event against the image as it arrives.
fn follow(engine: &Engine, mut subscription: Subscription, end: &AtomicU64) -> Vec<EventRecord> {
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        if let Some(event) = subscription
            .next_timeout(Duration::from_millis(20))
            .unwrap()
        {
            // The image already holds what a subscriber is told about.
            let seq_in_image = engine.read(|image| {
                image
                    .entity(event.stored.entity.as_str())
                    .map(|e| e.state.seq())
            });
            assert!(
                seq_in_image >= Some(event.stored.seq),
                "offset {} delivered before it was applied",
                event.offset
            );
            assert!(engine.committed_offset() > event.offset);
            events.push(event);
            continue;
        }
        let end = end.load(Ordering::SeqCst);
        if end != 0 && subscription.position() >= end {
            return events;
        }
        assert!(
            started.elapsed() < SUBSCRIBER_DEADLINE,
            "subscriber stuck at {} (end {end})",
            subscription.position()
        );
    }
}

/// What each of the test's filters selects, decided from the test's own naming (meter j
/// of every writer has kind `KINDS[j]`) rather than by the engine's tags.
fn is_selected_by(filter: &Filter, e: &EventRecord) -> bool {
    let entity = e.stored.entity.as_str();
    match filter {
        Filter::All => true,
        Filter::Tag(tag) if tag == "kind:pv" => entity.ends_with("-m0"),
        Filter::Tag(tag) if tag == "setpoint" => matches!(
            e.stored.event,
            Event::SetpointRequested { .. } | Event::SetpointApplied { .. }
        ),
        Filter::Entity(id) => entity == id,
        other => panic!("no test selection for {other:?}"),
    }
}

fn assert_strictly_increasing(name: &str, events: &[EventRecord]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].offset < pair[1].offset,
            "{name}: offset {} then {}",
            pair[0].offset,
            pair[1].offset
        );
    }
}

#[test]
fn live_subscribers_see_exactly_the_log_while_many_writers_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0_MS + 30 * 86_400_000);
    let engine = Arc::new(open(dir.path(), options(&clock)));
    let end = Arc::new(AtomicU64::new(0));
    let filters = [
        Filter::All,
        Filter::Tag("kind:pv".into()),
        Filter::Entity(meter_name(3, 1)),
        Filter::Tag("setpoint".into()),
    ];
    let start = Arc::new(Barrier::new(WRITERS + filters.len() + 2));

    std::thread::scope(|s| {
        // Subscribers from the start of the log, subscribed before anything is written.
        let early: Vec<_> = filters
            .iter()
            .map(|filter| {
                let subscription = engine.subscribe(0, filter.clone()).unwrap();
                let (engine, end, start) = (&engine, &end, &start);
                s.spawn(move || {
                    start.wait();
                    follow(engine, subscription, end)
                })
            })
            .collect();
        // Two subscribers that join while the writers run: one catches up from the start,
        // one resumes after the offset committed when it joined (`Last-Event-ID`).
        let late = {
            let (engine, end, start) = (&engine, &end, &start);
            s.spawn(move || {
                start.wait();
                while engine.committed_offset() < 200 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let resume_after = engine.committed_offset() - 1;
                let from_start = engine.subscribe(0, Filter::All).unwrap();
                let resumed = engine.subscribe(resume_after, Filter::All).unwrap();
                std::thread::scope(|s| {
                    let a = s.spawn(|| follow(engine, from_start, end));
                    let b = s.spawn(|| follow(engine, resumed, end));
                    (a.join().unwrap(), resume_after, b.join().unwrap())
                })
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (engine, start) = (&engine, &start);
                s.spawn(move || {
                    start.wait();
                    write(engine, w);
                })
            })
            .collect();
        start.wait();
        for writer in writers {
            writer.join().unwrap();
        }
        end.store(engine.committed_offset(), Ordering::SeqCst);

        let total = engine.committed_offset() - 1;
        let everything = read_all(&engine, &Filter::All);
        for (filter, subscriber) in filters.iter().zip(early) {
            let seen = subscriber.join().unwrap();
            let name = format!("{filter:?}");
            assert_strictly_increasing(&name, &seen);
            let full = read_all(&engine, filter);
            assert!(!full.is_empty(), "{name}: nothing matched");
            assert_eq!(seen.len(), full.len(), "{name}");
            assert_eq!(seen, full, "{name}: live differs from a full read");
            // And both are what the test itself picks from everything, without the engine's
            // filter code.
            let picked: Vec<EventRecord> = everything
                .iter()
                .filter(|e| is_selected_by(filter, e))
                .cloned()
                .collect();
            assert_eq!(seen, picked, "{name}: the filter kept the wrong events");
        }
        let (from_start, resume_after, resumed) = late.join().unwrap();
        let full = read_all(&engine, &Filter::All);
        assert_eq!(full.len() as u64, total);
        for (i, event) in full.iter().enumerate() {
            assert_eq!(event.offset, i as u64 + 1, "Filter::All has no gap");
        }
        assert_eq!(from_start, full, "late subscriber from the start");
        assert_eq!(
            resumed,
            full[resume_after as usize..].to_vec(),
            "subscriber resumed after {resume_after}"
        );
    });

    // Every writer's events are all there: registrations + accepted commands.
    let per_writer: u64 = (METERS_PER_WRITER as u64 + 1)
        + (0..REQUESTS_PER_WRITER)
            .map(|i| 1 + i % METERS_PER_WRITER as u64 + u64::from(i.is_multiple_of(4)))
            .sum::<u64>();
    assert_eq!(
        engine.committed_offset() - 1,
        per_writer * WRITERS as u64,
        "every accepted command stored once"
    );
}
