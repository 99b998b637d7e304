//! Snapshots and the archive: restart from snapshot + tail equals a full replay; damaged
//! snapshots fall back without losing an event; a crash at every I/O step of snapshot
//! writing, compaction and archiving recovers every acknowledged event; queries spanning
//! the archive and the hot log return what they returned before archiving.

mod engine_support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use engine_support::*;
use gridlog_firmware::engine::{Engine, Filter, QueryError, StartedFrom};
use gridlog_firmware::wal::{IoOp, WalOptions};

const T0: i64 = 1_700_000_000_000;

/// Registers 5 meters (with `start_batch` 0) and writes `batches` requests of 10 readings.
fn write(engine: &Engine, start_batch: i64, batches: i64) {
    write_batches(engine, T0, start_batch, batches);
}

fn all_events(engine: &Engine) -> Vec<(u64, String)> {
    read_all(engine, &Filter::All)
        .into_iter()
        .map(|e| (e.offset, format!("{:?}", e.stored)))
        .collect()
}

/// The meters' and assets' events (archiving adds the gateway's own events beside them).
fn user_events(engine: &Engine) -> Vec<(u64, String)> {
    read_all(engine, &Filter::Tag("meter".into()))
        .into_iter()
        .map(|e| (e.offset, format!("{:?}", e.stored)))
        .collect()
}

/// The meters' states, as text.
fn meter_states(engine: &Engine) -> Vec<String> {
    (0..5)
        .map(|m| {
            engine.read(|image| format!("{:?}", image.entity(&format!("m{m}")).map(|e| &e.state)))
        })
        .collect()
}

#[test]
fn snapshot_plus_tail_equals_full_replay_and_archived_history_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let (digest, before) = {
        let engine = open(dir.path(), storage_options(&clock));
        write(&engine, 0, 150);
        let before = all_events(&engine);
        let stats = engine.snapshot_now().unwrap();
        assert_eq!(stats.snapshots_written, 1);
        assert!(stats.segments_archived >= 3, "{stats:?}");
        assert!(
            engine.wal().oldest_offset() > 1,
            "the hot log no longer starts at 1"
        );
        // Queries spanning the archive and the hot log see the same events as before.
        let after: Vec<(u64, String)> = all_events(&engine)
            .into_iter()
            .filter(|(o, _)| *o < before.len() as u64 + 1)
            .collect();
        assert_eq!(after, before);
        let m0 = engine.events_of("m0", 1, u64::MAX, 10_000).unwrap();
        assert_eq!(m0.events.len() as u64, m0.highest_seq);
        // A subscription from the beginning reads through the archive, then the hot log
        // (which now also holds the archive's own events).
        let mut sub = engine.subscribe(0, Filter::All).unwrap();
        let mut n = 0;
        while let Some(e) = sub.try_next().unwrap() {
            n += 1;
            assert_eq!(e.offset, n);
        }
        assert_eq!(n, engine.committed_offset() - 1);
        write(&engine, 150, 20); // a tail after the snapshot
                                 // An archived segment's file, no longer mapped by the maintenance cycle, is reused
                                 // as a later segment (recycled); the restarts below read through it.
        let mut batch = 170;
        while engine.wal().stats().recycled_rotations == 0 {
            assert!(batch < 600, "no segment was recycled after archiving");
            write(&engine, batch, 1);
            batch += 1;
        }
        (engine.digest(), all_events(&engine))
    };
    // verify checks the snapshot and every archive file too; a damaged archive is damage.
    let report = gridlog_firmware::wal::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.snapshots.len(), 1);
    assert!(report.archived.len() >= 3);
    let archived = report.archived[1].0.clone();
    let original = std::fs::read(&archived).unwrap();
    let mut damaged = original.clone();
    let at = damaged.len() - 10;
    damaged[at] ^= 0x01;
    std::fs::write(&archived, &damaged).unwrap();
    let report = gridlog_firmware::wal::verify(dir.path()).unwrap();
    assert!(
        report.damage.iter().any(|d| d.path == archived),
        "{:?}",
        report.damage
    );
    std::fs::write(&archived, &original).unwrap();
    // Restart: snapshot + tail.
    let engine = open(dir.path(), storage_options(&clock));
    assert!(
        engine
            .started_from()
            .to_string()
            .starts_with("snapshot at offset"),
        "{}",
        engine.started_from()
    );
    assert_eq!(engine.digest(), digest);
    // Only the tail after the snapshot is replayed: 200 readings and the archive's events.
    let snapshot_at = gridlog_firmware::snapshot::list(dir.path()).unwrap()[0].next_offset;
    assert_eq!(
        engine.stats().replayed_events,
        engine.committed_offset() - snapshot_at
    );
    assert!(engine.stats().replayed_events >= 200);
    assert_eq!(all_events(&engine), before);
    drop(engine);
    // Without snapshots: a full replay through the archive and the hot log, same digest.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let engine = open(dir.path(), storage_options(&clock));
    assert_eq!(engine.started_from(), StartedFrom::FullReplay);
    assert_eq!(engine.digest(), digest);
}

/// A subscriber that stops reading while the segments under and after its cursor are
/// archived and removed goes on from the archive: no gap, no duplicate, no stall.
#[test]
fn a_stalled_subscriber_reads_on_through_the_archive_after_its_segments_are_retired() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let engine = open(dir.path(), storage_options(&clock));
    write(&engine, 0, 5);
    let mut sub = engine.subscribe(0, Filter::All).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(sub.try_next().unwrap().expect("an event").offset);
    }
    // Enough for several segments after the cursor's, then two cycles, so the cursor's
    // segment and the ones after it leave the hot log.
    write(&engine, 5, 150);
    engine.snapshot_now().unwrap();
    write(&engine, 155, 150);
    engine.snapshot_now().unwrap();
    assert!(
        engine.wal().oldest_offset() > 200,
        "the segments after the cursor were retired (oldest {})",
        engine.wal().oldest_offset()
    );
    while let Some(event) = sub.try_next().unwrap() {
        seen.push(event.offset);
    }
    let expected: Vec<u64> = (1..engine.committed_offset()).collect();
    assert!(
        seen == expected,
        "got {} events ending at {:?}, expected 1..{}",
        seen.len(),
        seen.last(),
        engine.committed_offset()
    );
}

#[test]
fn reading_evicted_history_names_where_the_local_history_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let mut options = storage_options(&clock);
    options.storage.archive_budget_bytes = 1;
    options.storage.archive_evict_unshipped = true;
    let engine = open(dir.path(), options);
    write(&engine, 0, 150);
    let stats = engine.snapshot_now().unwrap();
    assert!(stats.segments_archived >= 3, "{stats:?}");
    let expect_evicted = |error: QueryError| match error {
        QueryError::Evicted {
            offset,
            next_available,
        } => {
            assert_eq!(offset, 1);
            assert!(next_available > 1, "{next_available}");
            next_available
        }
        other => panic!("expected Evicted, got {other:?}"),
    };
    let next_available = expect_evicted(engine.events_after(0, &Filter::All, 10).unwrap_err());
    let mut sub = engine.subscribe(0, Filter::All).unwrap();
    assert_eq!(expect_evicted(sub.try_next().unwrap_err()), next_available);
    // Resuming where it says reads on without a gap.
    let page = engine
        .events_after(next_available - 1, &Filter::All, 10)
        .unwrap();
    assert_eq!(page.events[0].offset, next_available);
}

/// An archive file left under a segment's name by another log (as after a quarantine
/// recovery that started the log anew) is never taken for that segment: archiving writes
/// the segment's own bytes, and its events stay readable.
#[test]
fn a_stale_archive_under_a_segments_name_is_rewritten_not_reused() {
    // The other log: the same commands at the same offsets, stamped at another gateway
    // time, so its segments' bytes differ.
    let other = tempfile::tempdir().unwrap();
    {
        let engine = open(
            other.path(),
            storage_options(&FakeClock::at(T0 + 20_000_000)),
        );
        write(&engine, 0, 150);
        engine.snapshot_now().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), storage_options(&FakeClock::at(T0 + 10_000_000)));
    write(&engine, 0, 150);
    let before = user_events(&engine);
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    for entry in std::fs::read_dir(other.path().join("archive")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), archive.join(entry.file_name())).unwrap();
    }
    let stats = engine.snapshot_now().unwrap();
    assert!(stats.segments_archived >= 3, "{stats:?}");
    let after: Vec<(u64, String)> = user_events(&engine)
        .into_iter()
        .filter(|(o, _)| *o <= before.last().unwrap().0)
        .collect();
    assert!(after == before, "the archived history is this log's own");
}

#[test]
fn a_snapshot_without_tail_continues_with_the_next_seq() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    {
        let engine = open(dir.path(), storage_options(&clock));
        write(&engine, 0, 10);
        engine.snapshot_now().unwrap();
    }
    let engine = open(dir.path(), storage_options(&clock));
    assert_eq!(engine.stats().replayed_events, 0);
    let seq = engine.events_of("m0", 1, u64::MAX, 0).unwrap().highest_seq;
    let (_, next) = accept(&engine, import_reading("m0", T0 + 5_000_000, 1e6));
    assert_eq!(next, seq + 1);
}

#[test]
fn damaged_newest_snapshots_fall_back_and_lose_nothing() {
    for damage in ["bit flip", "truncation", "zero length", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::at(T0 + 10_000_000);
        let (digest, events) = {
            let engine = open(dir.path(), storage_options(&clock));
            write(&engine, 0, 40);
            engine.snapshot_now().unwrap();
            write(&engine, 40, 40);
            engine.snapshot_now().unwrap();
            write(&engine, 80, 5);
            (engine.digest(), all_events(&engine))
        };
        let snapshots = gridlog_firmware::snapshot::list(dir.path()).unwrap();
        assert_eq!(snapshots.len(), 2);
        let newest = &snapshots[1].path;
        let mut bytes = std::fs::read(newest).unwrap();
        match damage {
            "bit flip" => {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x20;
            }
            "truncation" => bytes.truncate(bytes.len() - 7),
            "zero length" => bytes.clear(),
            _ => bytes = vec![0x5a; 4096],
        }
        std::fs::write(newest, bytes).unwrap();
        let engine = open(dir.path(), storage_options(&clock));
        assert_eq!(
            engine.started_from(),
            StartedFrom::Snapshot {
                next_offset: snapshots[0].next_offset
            },
            "{damage}"
        );
        assert_eq!(engine.digest(), digest, "{damage}");
        assert_eq!(all_events(&engine), events, "{damage}");
        drop(engine);
        // Both damaged: the archive and the hot log still hold everything.
        std::fs::write(&snapshots[0].path, b"not a snapshot").unwrap();
        let engine = open(dir.path(), storage_options(&clock));
        assert_eq!(engine.started_from(), StartedFrom::FullReplay, "{damage}");
        assert_eq!(engine.digest(), digest, "{damage}");
    }
}

#[test]
fn a_snapshot_beyond_the_end_of_the_log_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let digest = {
        let engine = open(dir.path(), storage_options(&clock));
        write(&engine, 0, 10);
        engine.snapshot_now().unwrap();
        engine.digest()
    };
    let snap = &gridlog_firmware::snapshot::list(dir.path()).unwrap()[0];
    let far = snap
        .path
        .with_file_name(gridlog_firmware::snapshot::snapshot_file_name(
            snap.next_offset + 1000,
        ));
    std::fs::copy(&snap.path, &far).unwrap();
    let engine = open(dir.path(), storage_options(&clock));
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot {
            next_offset: snap.next_offset
        }
    );
    assert_eq!(engine.digest(), digest);
}

/// A quarantine cut below a snapshot: the snapshot is set aside, never loaded later. Before,
/// it stayed in `snapshots/` and was skipped only while the log was shorter; once new
/// events reached its offset it loaded — holding the cut-off events and missing the new ones.
#[test]
fn a_snapshot_beyond_a_quarantine_cut_is_set_aside_and_never_loaded_later() {
    use gridlog_firmware::wal::RecoveryMode;
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let (older, newer) = {
        let engine = open(dir.path(), storage_options(&clock));
        write(&engine, 0, 40);
        let older = engine.snapshot_now().unwrap().last_snapshot_offset.unwrap();
        write(&engine, 40, 40);
        let newer = engine.snapshot_now().unwrap().last_snapshot_offset.unwrap();
        (older, newer)
    };
    // A flipped bit in a hot segment between the two snapshots.
    let mut segments: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let first = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "seg").then_some((first, path))
        })
        .collect();
    segments.sort();
    let victim = segments
        .windows(2)
        .find(|w| w[0].0 > older && w[1].0 < newer)
        .map(|w| w[0].1.clone())
        .expect("a hot segment between the snapshots");
    let mut bytes = std::fs::read(&victim).unwrap();
    let frames = gridlog_tests::frame_positions(&bytes);
    bytes[frames[frames.len() / 2] + 12] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();

    let quarantine = || {
        let mut options = storage_options(&clock);
        options.wal = options.wal.recovery(RecoveryMode::QuarantineCorrupt);
        options
    };
    let newer_name = gridlog_firmware::snapshot::snapshot_file_name(newer);
    {
        let engine = open(dir.path(), quarantine());
        assert_eq!(
            engine.started_from(),
            StartedFrom::Snapshot { next_offset: older }
        );
        assert!(engine.committed_offset() < newer);
        let aside = dir
            .path()
            .join("snapshots")
            .join("beyond-log")
            .join(&newer_name);
        assert!(aside.exists(), "the snapshot beyond the cut is set aside");
        assert!(!dir.path().join("snapshots").join(&newer_name).exists());
        // New events carry the log past the set-aside snapshot's offset.
        write(&engine, 80, 80);
        assert!(engine.committed_offset() > newer);
    }
    let engine = open(dir.path(), quarantine());
    assert_eq!(
        engine.started_from(),
        StartedFrom::Snapshot { next_offset: older }
    );
    let digest = engine.digest();
    drop(engine);
    // The same log replayed in full gives the same state.
    std::fs::rename(
        dir.path().join("snapshots"),
        dir.path().join("snapshots-away"),
    )
    .unwrap();
    let replayed = open(dir.path(), quarantine());
    assert_eq!(replayed.started_from(), StartedFrom::FullReplay);
    assert_eq!(replayed.digest(), digest);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A crash (every later I/O call fails, as if the process died there) at each I/O step of
/// a maintenance cycle — snapshot write, compaction, archive write, the archive event, the
/// hot segment's removal — then recovery: every event is there, the digest is the same,
/// no half-written file is used, and the next cycle completes.
#[test]
fn a_crash_at_every_io_step_of_snapshot_compaction_and_archiving_recovers() {
    let template = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let (states, events) = {
        let engine = open(template.path(), storage_options(&clock));
        write(&engine, 0, 60);
        engine.snapshot_now().unwrap(); // an older snapshot, to be compacted away
        write(&engine, 60, 60);
        (meter_states(&engine), user_events(&engine))
    };
    let mut k = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(template.path(), dir.path());
        let ops = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook = {
            let (ops, armed) = (ops.clone(), armed.clone());
            Arc::new(move |_op: &IoOp<'_>| -> std::io::Result<()> {
                if armed.load(Ordering::SeqCst) && ops.fetch_add(1, Ordering::SeqCst) >= k {
                    return Err(std::io::Error::other("injected crash"));
                }
                Ok(())
            })
        };
        let mut o = storage_options(&clock);
        o.storage.snapshots_keep = 1;
        let o = o.wal(WalOptions::default().segment_bytes(16 * 1024).io_hook(hook));
        let completed = {
            let engine = Engine::open(dir.path(), o).unwrap();
            armed.store(true, Ordering::SeqCst);
            let result = engine.snapshot_now();
            armed.store(false, Ordering::SeqCst);
            result.is_ok()
        };
        let engine = open(dir.path(), storage_options(&clock));
        assert_eq!(meter_states(&engine), states, "crash at I/O step {k}");
        assert_eq!(user_events(&engine), events, "crash at I/O step {k}");
        assert!(
            gridlog_firmware::wal::verify(dir.path())
                .unwrap()
                .is_clean(),
            "crash at I/O step {k}"
        );
        for leftover in ["snapshots", "archive"] {
            let tmp = std::fs::read_dir(dir.path().join(leftover))
                .map(|r| {
                    r.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
                        .count()
                })
                .unwrap_or(0);
            assert!(
                tmp == 0 || !completed,
                "temp files left after a completed cycle"
            );
        }
        // The interrupted work completes on the next cycle.
        engine.snapshot_now().unwrap();
        assert_eq!(
            user_events(&engine),
            events,
            "after the next cycle, step {k}"
        );
        assert!(
            engine.wal().oldest_offset() > 1,
            "the next cycle archived, step {k}"
        );
        drop(engine);
        if completed {
            assert!(k > 10, "the cycle should take more than a few I/O steps");
            break;
        }
        k += 1;
    }
}

/// A snapshot cycle that fails for a passing shortage (no file handle for the snapshot file)
/// is tried again by itself after a pause, without waiting for the next trigger.
#[test]
fn a_failed_snapshot_cycle_is_tried_again_without_a_new_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::at(T0 + 10_000_000);
    let refused = Arc::new(AtomicUsize::new(0));
    let hook = {
        let refused = refused.clone();
        Arc::new(move |op: &IoOp<'_>| -> std::io::Result<()> {
            let snapshot_file = matches!(op, IoOp::Create { path }
                if path.parent().is_some_and(|p| p.ends_with("snapshots")));
            if snapshot_file && refused.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
            Ok(())
        })
    };
    let mut o = storage_options(&clock);
    // One trigger: 5 registrations and 30 readings pass 20 events once.
    o.storage.snapshot_every_events = 20;
    let o = o.wal(WalOptions::default().segment_bytes(16 * 1024).io_hook(hook));
    let engine = open(dir.path(), o);
    write(&engine, 0, 3);
    let snapshots = || {
        std::fs::read_dir(dir.path().join("snapshots"))
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while snapshots() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the failed cycle was not tried again ({} snapshot file creations)",
            refused.load(Ordering::SeqCst)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        refused.load(Ordering::SeqCst) >= 2,
        "the first try was refused"
    );
}
