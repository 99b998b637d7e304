//! The bound on decompressed archived segments in memory, over every reader of the local
//! archive (`ARCHIVE_SEGMENTS_IN_MEMORY_MAX`): a reader beyond it waits, then is told the
//! archive is busy and goes on where it was once a place is free; a parked reader holds
//! none. Its own test binary, so no other test's readers share the process-wide bound.

mod engine_support;

use std::time::{Duration, Instant};

use engine_support::*;
use gridlog_firmware::archive::{ARCHIVE_READ_WAIT, ARCHIVE_SEGMENTS_IN_MEMORY_MAX};
use gridlog_firmware::engine::{Filter, QueryError, Subscription};

const T0: i64 = 1_700_000_000_000;

fn drain(sub: &mut Subscription, into: &mut Vec<u64>) {
    while let Some(event) = sub.try_next().unwrap() {
        into.push(event.offset);
    }
}

#[test]
fn readers_beyond_the_bound_wait_then_are_told_busy_and_go_on_where_they_were() {
    assert_eq!(
        ARCHIVE_SEGMENTS_IN_MEMORY_MAX, 2,
        "the test holds exactly the bound"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), storage_options(&FakeClock::at(T0 + 10_000_000)));
    write_batches(&engine, T0, 0, 150);
    let stats = engine.snapshot_now().unwrap();
    assert!(stats.segments_archived >= 3, "{stats:?}");
    let oldest = engine.wal().oldest_offset();
    let starts = [0, oldest / 2, oldest - 20];
    let mut subs: Vec<Subscription> = starts
        .iter()
        .map(|&after| engine.subscribe(after, Filter::All).unwrap())
        .collect();
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); starts.len()];
    // Two readers take the two places.
    for i in 0..2 {
        seen[i].push(subs[i].try_next().unwrap().unwrap().offset);
    }
    // A third waits for one, then is told the archive is busy.
    let started = Instant::now();
    match subs[2].try_next() {
        Err(QueryError::Busy) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(started.elapsed() >= ARCHIVE_READ_WAIT - Duration::from_millis(50));
    // A parked reader lets go of its place: the third goes on from where it was.
    subs[0].park();
    seen[2].push(subs[2].try_next().unwrap().unwrap().offset);
    // Each reads its range to the end (one at a time here: this thread holds the places).
    subs[2].park();
    for (sub, seen) in subs.iter_mut().zip(seen.iter_mut()) {
        drain(sub, seen);
        sub.park();
    }
    let end = engine.committed_offset();
    for (after, seen) in starts.iter().zip(&seen) {
        let expected: Vec<u64> = (after + 1..end).collect();
        assert!(
            *seen == expected,
            "after {after}: {} events ending at {:?}, expected {}..{end}",
            seen.len(),
            seen.last(),
            after + 1
        );
    }
}
