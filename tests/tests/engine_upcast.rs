//! A gateway upgraded from the version-1 event schema: a log written before reactive
//! power existed is replayed (upcast on read) to the same image and the same events as
//! the same history written today, and the engine goes on writing version 2 after it.

mod engine_support;

use engine_support::*;
use gridlog_common::domain::{EventSchema, Reading};
use gridlog_firmware::engine::{Filter, ItemResult};
use gridlog_firmware::wal::{Wal, WalOptions};

const T0: i64 = 1_700_000_000_000;

/// What the version-1 build wrote for a record this build writes: the version byte, and a
/// reading without its last field (`reactive_power_var`, absent here).
fn as_version_1(record: &[u8]) -> Vec<u8> {
    let event = gridlog_common::domain::decode_event(record).unwrap();
    let mut v1 = record.to_vec();
    v1[0] = EventSchema::V1 as u8;
    if let gridlog_common::domain::Event::ReadingRecorded(r) = &event.event {
        assert!(r.reactive_power_var.is_none());
        assert_eq!(v1.pop(), Some(0), "an absent last field is one 0 byte");
    }
    v1
}

#[test]
fn a_version_1_log_replays_to_the_image_a_version_2_log_gives() {
    let clock = FakeClock::at(T0 + 10_000_000);
    let today = tempfile::tempdir().unwrap();
    let (digest, events) = {
        let engine = open(today.path(), options(&clock));
        write_batches(&engine, T0, 0, 40);
        (engine.digest(), read_all(&engine, &Filter::All))
    };
    let records: Vec<Vec<u8>> = {
        let wal = Wal::open(today.path(), WalOptions::default()).unwrap();
        let mut cursor = wal.read_from(1).unwrap();
        let mut out = Vec::new();
        while let Some(record) = cursor.next() {
            out.push(record.unwrap().bytes.to_vec());
        }
        out
    };
    assert_eq!(records.len(), events.len());
    assert!(records.iter().all(|r| r[0] == EventSchema::V2 as u8));

    let upgraded = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(upgraded.path(), WalOptions::default()).unwrap();
        for chunk in records.chunks(64) {
            let v1: Vec<Vec<u8>> = chunk.iter().map(|r| as_version_1(r)).collect();
            wal.append(&v1).unwrap();
        }
        wal.close().unwrap();
    }
    let engine = open(upgraded.path(), options(&clock));
    assert_eq!(engine.stats().replayed_events, events.len() as u64);
    assert_eq!(engine.digest(), digest, "upcast replay differs");
    assert_eq!(read_all(&engine, &Filter::All), events);
    // And it goes on: a reading with reactive power, written as version 2.
    let mut reading: Reading = reading_values(T0 + 400_000, 1000.0, 0.0, 500.0);
    reading.reactive_power_var = Some(120.5);
    let results = submit(&engine, [record("m0", reading)]);
    let [ItemResult::Accepted { seq, .. }] = results.as_slice() else {
        panic!("{results:?}");
    };
    let stored = engine.events_of("m0", *seq, *seq, 1).unwrap().events;
    match &stored[0].stored.event {
        gridlog_common::domain::Event::ReadingRecorded(r) => {
            assert_eq!(r.reactive_power_var, Some(120.5))
        }
        other => panic!("{other:?}"),
    }
}
