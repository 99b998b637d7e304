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
            matches!(&r.results[3], ItemResult::Rejected(rej) if rej.code == "register_decreased")
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
