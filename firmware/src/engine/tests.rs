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
