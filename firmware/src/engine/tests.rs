use super::*;
use gridlog_common::domain::{Command, MeterKind, Reading};
use gridlog_common::id::EntityId;

fn id(s: &str) -> EntityId {
    EntityId::new(s).unwrap()
}

fn reading(meter: &str, time_ms: i64, import_wh: f64) -> Command {
    Command::RecordReading {
        meter: id(meter),
        reading: Reading {
            time_ms,
            import_wh,
            export_wh: 0.0,
            power_w: 100.0,
            voltage_v: None,
            current_a: None,
            reactive_power_var: None,
        },
    }
}

#[test]
fn register_read_query_replay() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now_ms();
    let digest = {
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        let r = engine
            .submit(Request::of([Command::RegisterMeter {
                meter: id("m1"),
                kind: MeterKind::Grid,
                register_bits: None,
            }]))
            .unwrap();
        assert_eq!(r.results, vec![ItemResult::Accepted { offset: 1, seq: 1 }]);
        let r = engine
            .submit(Request::of([
                reading("m1", now - 2000, 10.0),
                reading("m1", now - 1000, 12.0),
                reading("m1", now - 1000, 12.0),
                reading("m1", now, 11.0),
            ]))
            .unwrap();
        assert_eq!(r.results[0], ItemResult::Accepted { offset: 2, seq: 2 });
        assert_eq!(r.results[1], ItemResult::Accepted { offset: 3, seq: 3 });
        assert_eq!(r.results[2], ItemResult::Duplicate);
        assert!(
            matches!(&r.results[3], ItemResult::Rejected(rej) if rej.code == RejectionCode::RegisterDecreased)
        );
        let events = engine.events_of("m1", 1, 10, 100).unwrap();
        assert_eq!(events.highest_seq, 3);
        assert_eq!(events.events.len(), 3);
        let page = engine
            .events_after(0, &Filter::Tag("kind:grid".into()), 2)
            .unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.last_offset, 2);
        let mut sub = engine.subscribe(1, Filter::All).unwrap();
        assert_eq!(sub.try_next().unwrap().unwrap().offset, 2);
        assert_eq!(sub.try_next().unwrap().unwrap().offset, 3);
        assert!(sub.try_next().unwrap().is_none());
        // The largest offset a client can send is past everything, not a wrap to the start.
        let page = engine.events_after(u64::MAX, &Filter::All, 10).unwrap();
        assert!(page.events.is_empty());
        let mut sub = engine.subscribe(u64::MAX, Filter::All).unwrap();
        assert!(sub.try_next().unwrap().is_none());
        engine.digest()
    };
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(engine.digest(), digest);
    assert_eq!(engine.stats().replayed_events, 3);
}

#[test]
fn a_wrong_slot_guess_is_found_and_the_event_lands_on_its_own_entity() {
    use gridlog_common::domain::{EntityKind, Event, StoredEvent};
    let event = |entity: &str, seq: u64, event: Event| StoredEvent {
        entity: id(entity),
        kind: EntityKind::Meter(MeterKind::Load),
        seq,
        gateway_ms: 0,
        command_id: None,
        event,
    };
    let registered = Event::MeterRegistered {
        kind: MeterKind::Load,
        register_bits: None,
    };
    let reading = |time_ms| {
        Event::ReadingRecorded(Reading {
            time_ms,
            import_wh: 5.0,
            export_wh: 0.0,
            power_w: 1.0,
            voltage_v: None,
            current_a: None,
            reactive_power_var: None,
        })
    };
    let history = [
        event("a", 1, registered.clone()),
        event("b", 1, registered),
        event("b", 2, reading(1_000)),
        event("a", 2, reading(2_000)),
    ];
    let mut by_id = Image::new(RollupOptions::default());
    let mut by_slot = Image::new(RollupOptions::default());
    for (offset, stored) in (1..).zip(&history) {
        by_id.apply(offset, stored);
        // Every guess wrong: `a` is in slot 0, `b` in slot 1, new entities go to slot 2.
        let wrong = if stored.entity.as_str() == "a" { 1 } else { 0 };
        by_slot.apply_at_slot(wrong, offset, stored);
    }
    assert_eq!(by_slot.digest(), by_id.digest());
    let seq = |image: &Image, id: &str| image.entity(id).map(|e| e.state.seq());
    assert_eq!((seq(&by_slot, "a"), seq(&by_slot, "b")), (Some(2), Some(2)));
    assert_eq!(by_slot.len(), 2);
}

#[test]
fn an_entity_keeps_at_most_checkpoints_max_and_the_newest_stay_close() {
    use super::image::{EntityIndex, CHECKPOINTS_MAX, CHECKPOINT_EVERY_EVENTS};
    for events in [1u64, 64 * 31, 64 * 32 + 1, 77_777, 3_000_000] {
        let mut index = EntityIndex::default();
        for seq in (1..=events).step_by(CHECKPOINT_EVERY_EVENTS as usize) {
            index.note_checkpoint(seq, seq * 10);
        }
        let cps = &index.checkpoints;
        assert!(
            cps.len() <= CHECKPOINTS_MAX,
            "{events} events: {}",
            cps.len()
        );
        assert_eq!(cps[0], (1, 10), "the first event stays");
        let newest = (events - 1) / CHECKPOINT_EVERY_EVENTS * CHECKPOINT_EVERY_EVENTS + 1;
        assert_eq!(cps.last().unwrap().0, newest, "the newest stays");
        for pair in cps.windows(2) {
            let ((a, _), (b, _)) = (pair[0], pair[1]);
            assert!(a < b);
            assert!(
                b - a <= CHECKPOINT_EVERY_EVENTS.max(events - b),
                "{events} events: gap {a}..{b} is wider than its age"
            );
        }
    }
}

#[test]
fn entity_queries_find_every_range_of_a_long_lived_meter() {
    use super::image::CHECKPOINTS_MAX;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let now = SystemClock.now_ms();
    engine
        .submit(Request::of([Command::RegisterMeter {
            meter: id("long"),
            kind: MeterKind::Load,
            register_bits: None,
        }]))
        .unwrap();
    // Another meter between each reading, so offsets and sequence numbers differ.
    let readings = 5_000i64;
    for chunk in (0..readings).collect::<Vec<_>>().chunks(500) {
        let commands = chunk.iter().flat_map(|&k| {
            let time = now - 10_000_000 + k * 1000;
            [
                reading("long", time, k as f64),
                Command::RegisterMeter {
                    meter: id(&format!("other-{k}")),
                    kind: MeterKind::Load,
                    register_bits: None,
                },
            ]
        });
        let r = engine.submit(Request::of(commands)).unwrap();
        assert!(r
            .results
            .iter()
            .all(|r| matches!(r, ItemResult::Accepted { .. })));
    }
    let highest = readings as u64 + 1;
    let kept = engine.read(|image| image.entity("long").unwrap().index.checkpoints.len());
    assert_eq!(kept, CHECKPOINTS_MAX, "thinned, not grown");
    for from in [1, 2, 63, 64, 65, 1000, 2500, 4900, 4999, highest] {
        let page = engine.events_of("long", from, highest, 40).unwrap();
        assert_eq!(page.highest_seq, highest);
        let seqs: Vec<u64> = page.events.iter().map(|e| e.stored.seq).collect();
        let expected: Vec<u64> = (from..=highest).take(40).collect();
        assert_eq!(seqs, expected, "from seq {from}");
    }
}

#[test]
fn a_failing_maintenance_cycle_is_tried_again_after_doubling_pauses_up_to_a_minute() {
    let mut pause = None;
    let mut pauses = Vec::new();
    for _ in 0..9 {
        let next = super::maintenance::maintenance_retry_after(pause);
        pauses.push(next.as_secs());
        pause = Some(next);
    }
    assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

/// The engine's files import each other in one direction only: the graph of `super::file`
/// references between them has no cycle, and no file reaches into `mod.rs` (which imports
/// them all). Doc comments and tests are left out; `validate` and `image` never meet.
#[test]
fn engine_files_import_each_other_in_one_direction() {
    use std::collections::BTreeMap;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut imports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "rs") || name == "mod" || name == "tests" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Code before the file's own unit tests, without comments.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut deps: Vec<String> = Vec::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("super::") {
                let rest = &line[i + "super::".len()..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
                    .collect();
                assert!(
                    word.starts_with(|c: char| c.is_ascii_lowercase()),
                    "{name}.rs reaches into mod.rs (`super::{word}`): move what it needs below it"
                );
                if word != "super" && !deps.contains(&word) {
                    deps.push(word);
                }
            }
        }
        imports.insert(name, deps);
    }
    assert!(imports.len() >= 10, "found only {:?}", imports.keys());
    for banned in [("validate", "image"), ("image", "validate")] {
        assert!(
            !imports[banned.0].iter().any(|d| d == banned.1),
            "{} imports {}",
            banned.0,
            banned.1
        );
    }
    // Depth-first search for a cycle.
    fn visit<'a>(
        file: &'a str,
        imports: &'a BTreeMap<String, Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) {
        if done.contains(&file) {
            return;
        }
        assert!(!path.contains(&file), "import cycle: {path:?} -> {file}");
        path.push(file);
        for dep in imports.get(file).into_iter().flatten() {
            visit(dep, imports, path, done);
        }
        path.pop();
        done.push(file);
    }
    let mut done = Vec::new();
    for file in imports.keys() {
        visit(file, &imports, &mut Vec::new(), &mut done);
    }
}
