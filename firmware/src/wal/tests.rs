use super::*;
use std::sync::Arc;

fn small() -> WalOptions {
    WalOptions::default().segment_bytes(4096)
}

fn read_all(wal: &Wal, from: Offset) -> Vec<(Offset, Vec<u8>)> {
    let mut cursor = wal.read_from(from).unwrap();
    let mut out = Vec::new();
    while let Some(record) = cursor.next() {
        let record = record.unwrap();
        out.push((record.offset, record.bytes.to_vec()));
    }
    out
}

#[test]
fn append_read_reopen_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        let ack = wal.append(&[b"a".as_slice(), b"bc"]).unwrap();
        assert_eq!(
            ack,
            AppendAck {
                first_offset: 1,
                next_offset: 3
            }
        );
        let ack = wal.append(&[b"d"]).unwrap();
        assert_eq!(ack.first_offset, 3);
        assert_eq!(
            read_all(&wal, 1),
            vec![(1, b"a".to_vec()), (2, b"bc".to_vec()), (3, b"d".to_vec())]
        );
        assert_eq!(read_all(&wal, 2).len(), 2);
        assert_eq!(read_all(&wal, 4).len(), 0);
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(wal.next_offset(), 4);
    assert_eq!(wal.append(&[b"e"]).unwrap().first_offset, 4);
    assert_eq!(read_all(&wal, 1).len(), 4);
}

#[test]
fn rotation_keeps_every_record_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let payload = vec![7u8; 300];
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        for _ in 0..100 {
            wal.append(&[&payload[..], &payload[..]]).unwrap();
        }
        assert!(
            wal.segments().len() > 10,
            "expected many segments, got {}",
            wal.segments().len()
        );
        assert_eq!(read_all(&wal, 1).len(), 200);
        assert_eq!(read_all(&wal, 150).first().unwrap().0, 150);
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(read_all(&wal, 1).len(), 200);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records(), 200);
}

#[test]
fn too_large_and_empty_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let empty: [&[u8]; 0] = [];
    assert!(matches!(wal.append(&empty), Err(AppendError::Empty)));
    let big = vec![0u8; 5000];
    match wal.append(&[&big[..]]) {
        Err(AppendError::TooLarge { max, .. }) => {
            assert_eq!(
                max,
                4096 - 64 - 64 - gridlog_common::batch::COMMIT_FRAME_BYTES_MAX
            )
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(wal.next_offset(), 1);
}

#[test]
fn concurrent_appenders_get_gap_free_offsets_and_a_live_cursor_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let wal =
        Arc::new(Wal::open(dir.path(), WalOptions::default().segment_bytes(64 * 1024)).unwrap());
    let mut cursor = wal.read_from(1).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..200u32)
                    .map(|i| {
                        let rec = [t, i as u8, (i >> 8) as u8];
                        let ack = wal.append(&[rec]).unwrap();
                        (ack.first_offset, rec.to_vec())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < 1600 {
        match cursor.next() {
            Some(r) => {
                let r = r.unwrap();
                seen.push((r.offset, r.bytes.to_vec()));
            }
            None => std::thread::yield_now(),
        }
    }
    let mut acked: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    assert_eq!(seen, acked);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
    assert!(
        wal.stats().rounds < 1600,
        "group commit should batch: {:?}",
        wal.stats()
    );
}

#[test]
fn frames_handed_over_together_get_consecutive_offsets_even_beyond_one_round() {
    let dir = tempfile::tempdir().unwrap();
    // Rounds of at most 1 KiB: 20 frames of ~300 bytes need several rounds, so the call
    // must wake the writer and wait for room part-way.
    let wal = Wal::open(
        dir.path(),
        WalOptions::default()
            .segment_bytes(64 * 1024)
            .round_bytes(1024),
    )
    .unwrap();
    let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 300]).collect();
    let records: Vec<Vec<&[u8]>> = payloads
        .iter()
        .map(|p| vec![p.as_slice(), &p[..1]])
        .collect();
    let frames: Vec<&[&[u8]]> = records.iter().map(Vec::as_slice).collect();
    let acks = wal.append_frames_nowait(&frames).unwrap();
    assert_eq!(acks.len(), 20);
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack.first_offset, 1 + 2 * i as u64);
        assert_eq!(ack.next_offset, ack.first_offset + 2);
    }
    wal.wait_durable(acks[19].next_offset).unwrap();
    let read = read_all(&wal, 1);
    assert_eq!(read.len(), 40);
    assert_eq!(read[38], (39, payloads[19].clone()));
    // An empty frame is refused; the frames before it are appended.
    let empty: &[&[u8]] = &[];
    let err = wal.append_frames_nowait(&[&[b"x".as_slice()][..], empty]);
    assert!(matches!(err, Err(AppendError::Empty)));
    wal.wait_durable(42).unwrap();
    assert_eq!(read_all(&wal, 41), vec![(41, b"x".to_vec())]);
}

#[test]
fn a_preallocation_error_other_than_a_full_disk_fails_appends_instead_of_hanging_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let hook = {
        let armed = armed.clone();
        Arc::new(move |_: &IoOp<'_>| -> std::io::Result<()> {
            // Only the preallocator's own I/O (zero-filling the next segment) fails.
            let preallocating = std::thread::current().name() == Some("gridlog-prealloc");
            if armed.load(Ordering::SeqCst) && preallocating {
                return Err(std::io::Error::other("injected I/O error"));
            }
            Ok(())
        })
    };
    let wal = Arc::new(Wal::open(dir.path(), small().io_hook(hook)).unwrap());
    // The segment after the first is preallocated right after open; the one after that
    // fails.
    std::thread::sleep(std::time::Duration::from_millis(300));
    armed.store(true, Ordering::SeqCst);
    let (done, result) = std::sync::mpsc::channel();
    {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let record = [7u8; 100];
            // Enough records for three segments of 4 KiB.
            let outcome = (0..200).try_for_each(|_| wal.append(&[record]).map(drop));
            let _ = done.send(outcome);
        });
    }
    match result.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(Err(AppendError::Io(e))) => assert!(e.to_string().contains("injected"), "{e}"),
        Ok(other) => panic!("expected the injected error, got {other:?}"),
        Err(_) => panic!("appends hung behind a failed preallocation"),
    }
    assert!(!wal.stats().disk_full, "an I/O error is not a full disk");
}

#[test]
fn reopening_with_larger_rounds_seals_the_segment_whose_header_allows_smaller_ones() {
    let dir = tempfile::tempdir().unwrap();
    let options = |round_bytes| {
        WalOptions::default()
            .segment_bytes(64 * 1024)
            .round_bytes(round_bytes)
    };
    {
        let wal = Wal::open(dir.path(), options(ROUND_BYTES_MIN)).unwrap();
        wal.append(&[b"a".as_slice(), b"b"]).unwrap();
        wal.close().unwrap();
    }
    let round_bytes_of = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap();
        gridlog_common::segment::SegmentHeader::decode(&bytes)
            .unwrap()
            .round_bytes as usize
    };
    let wal = Wal::open(dir.path(), options(8 * 1024)).unwrap();
    let segments = wal.segments();
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert_eq!(wal.sealed_segments(), vec![(1, 3)]);
    assert_eq!(round_bytes_of(&segments[1].1), 8 * 1024);
    wal.append(&[b"c".as_slice()]).unwrap();
    assert_eq!(read_all(&wal, 1).len(), 3);
    wal.close().unwrap();
    // Smaller rounds than the header allows need nothing new.
    let wal = Wal::open(dir.path(), options(ROUND_BYTES_MIN)).unwrap();
    assert_eq!(wal.segments().len(), 2);
    wal.close().unwrap();
}

/// Running out of file handles while a rotation installs the next segment (the directory
/// sync needs one) pauses appends and says why, then goes on: never a failed log.
#[test]
fn no_file_handle_while_installing_a_segment_pauses_the_log_and_it_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook: IoHook = {
        let (failures, armed) = (failures.clone(), armed.clone());
        Arc::new(move |op: &IoOp<'_>| -> std::io::Result<()> {
            // Whoever writes rounds (the writer thread, or an appender writing its own).
            let writer = std::thread::current().name() != Some("gridlog-prealloc");
            let sync_dir = matches!(op, IoOp::SyncDir { .. });
            if writer
                && sync_dir
                && armed.load(Ordering::SeqCst)
                && failures.fetch_add(1, Ordering::SeqCst) < 2
            {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
            Ok(())
        })
    };
    let wal = Arc::new(Wal::open(dir.path(), small().io_hook(hook)).unwrap());
    armed.store(true, Ordering::SeqCst);
    let appender = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            (0..40u32)
                .map(|i| wal.append(&[vec![i as u8; 300]]).map(|a| a.first_offset))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    let mut saw_flag = false;
    while !appender.is_finished() {
        saw_flag |= wal.stats().resources_exhausted;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let offsets = appender
        .join()
        .unwrap()
        .expect("appends wait, they do not fail");
    assert_eq!(offsets, (1..=40).collect::<Vec<u64>>());
    assert!(
        failures.load(Ordering::SeqCst) >= 3,
        "the rotation met the shortage"
    );
    assert!(saw_flag, "status said why appends waited");
    assert!(!wal.stats().resources_exhausted);
    Arc::into_inner(wal).unwrap().close().unwrap();
    assert!(verify(dir.path()).unwrap().is_clean());
}

fn recycled_flag(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    gridlog_common::segment::SegmentHeader::decode(&bytes)
        .unwrap()
        .recycled
}

#[test]
fn a_removed_segment_is_recycled_unless_a_reader_maps_it() {
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join(WAL_DIR_NAME).join(spare::SPARE_FILE_NAME);
    let payload = vec![7u8; 300];
    // Segments of several pages: a round zeroes the rest of its page only, so the earlier
    // use's bytes stay in the pages after the log's end.
    let options = || WalOptions::default().segment_bytes(16 * 1024);
    let wal = Wal::open(dir.path(), options()).unwrap();
    while wal.sealed_segments().len() < 4 {
        wal.append(&[&payload[..], &payload[..]]).unwrap();
    }
    // A reader in the oldest segment maps it: removed, it is unlinked, not recycled.
    let mut cursor = wal.read_from(1).unwrap();
    assert!(cursor.next().is_some());
    let (first, _) = wal.sealed_segments()[0];
    let oldest = wal.segments()[0].1.clone();
    wal.remove_oldest_segment(first).unwrap();
    assert!(!oldest.exists() && !spare.exists());
    drop(cursor);
    // No reader: it becomes the spare.
    let (first, _) = wal.sealed_segments()[0];
    wal.remove_oldest_segment(first).unwrap();
    assert!(spare.exists());
    let spare_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&spare).unwrap());
    // There is a spare already: the next one is unlinked.
    let (first, _) = wal.sealed_segments()[0];
    let oldest = wal.segments()[0].1.clone();
    wal.remove_oldest_segment(first).unwrap();
    assert!(!oldest.exists());
    // Rotations take the spare: a segment whose header says so, in the same file.
    while !wal.segments().iter().any(|(_, path)| recycled_flag(path)) {
        wal.append(&[&payload[..], &payload[..]]).unwrap();
    }
    let (_, recycled) = wal
        .segments()
        .into_iter()
        .find(|(_, path)| recycled_flag(path))
        .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&recycled).unwrap()),
        spare_inode
    );
    // The rotation into it was the last: it is the active segment, its earlier use's bytes
    // after its end.
    assert_eq!(wal.segments().last().unwrap().1, recycled);
    assert_eq!(wal.stats().recycled_rotations, 1);
    let oldest = wal.segments()[0].0;
    let expected = read_all(&wal, oldest);
    let next = wal.next_offset();
    wal.close().unwrap();
    let bytes = std::fs::read(&recycled).unwrap();
    assert!(bytes[bytes.len() - 1024..].iter().any(|&b| b != 0));
    // It reads and reopens whole, with no torn tail and nothing zeroed.
    let report = verify(dir.path()).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    let wal = Wal::open(dir.path(), options()).unwrap();
    assert!(wal.recovery_report().torn_tail.is_none());
    assert_eq!(wal.next_offset(), next);
    assert_eq!(read_all(&wal, oldest), expected);
    assert_eq!(std::fs::read(&recycled).unwrap(), bytes);
    assert_eq!(wal.append(&[b"after"]).unwrap().first_offset, next);
}

/// A lone appender writes and syncs its own rounds (no hand-off to the writer thread and
/// back), rotating segments itself; what it wrote reads back and survives a reopen.
#[test]
fn a_lone_appender_writes_its_own_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    for i in 0..100u32 {
        let ack = wal.append(&[vec![i as u8; 200]]).unwrap();
        assert_eq!(ack.first_offset, 1 + u64::from(i));
        assert!(
            wal.next_offset() > ack.first_offset,
            "acknowledged is durable"
        );
    }
    let stats = wal.stats();
    assert_eq!(stats.rounds_led, 100, "{stats:?}");
    assert!(stats.rotations >= 4, "the appender rotated: {stats:?}");
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let records = read_all(&wal, 1);
    assert_eq!(records.len(), 100);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.1 == vec![i as u8; 200]));
    wal.close().unwrap();
    assert!(verify(dir.path()).unwrap().is_clean());
}

/// With `commit_delay_ms` set, rounds are the writer thread's alone: the delay is there to
/// gather appenders, and an appender writing its own round would skip it.
#[test]
fn with_a_commit_delay_no_appender_writes_its_own_round() {
    let dir = tempfile::tempdir().unwrap();
    let options = small().commit_delay(std::time::Duration::from_millis(1));
    let wal = Wal::open(dir.path(), options).unwrap();
    for i in 0..10u8 {
        wal.append(&[[i]]).unwrap();
    }
    assert_eq!(wal.stats().rounds_led, 0);
    wal.close().unwrap();
}

/// A hook that, while `armed`, does `act` in place of every `fdatasync` of a file (an error
/// it returns fails that sync).
fn on_sync_while_armed(
    armed: &Arc<std::sync::atomic::AtomicBool>,
    act: fn(&std::sync::atomic::AtomicBool) -> std::io::Result<()>,
) -> IoHook {
    let armed = armed.clone();
    Arc::new(move |op: &IoOp<'_>| match op {
        IoOp::SyncData { .. } => act(&armed),
        _ => Ok(()),
    })
}

/// A round an appender writes itself that fails to sync fails the log as the writer
/// thread's would: that append and every later one get the error, nothing hangs, and a
/// reopen finds every acknowledged record.
#[test]
fn a_failed_round_written_by_an_appender_fails_the_log() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let hook = on_sync_while_armed(&armed, |armed| match armed.load(Ordering::SeqCst) {
        true => Err(std::io::Error::other("injected sync error")),
        false => Ok(()),
    });
    let wal = Wal::open(dir.path(), small().io_hook(hook)).unwrap();
    for i in 0..5u8 {
        wal.append(&[[i]]).unwrap();
    }
    armed.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        match wal.append(&[[9u8]]) {
            Err(AppendError::Io(e)) => assert!(e.to_string().contains("injected"), "{e}"),
            other => panic!("expected the injected error, got {other:?}"),
        }
    }
    assert_eq!(wal.stats().rounds_led, 5);
    assert!(wal.close().is_err(), "close reports the failure");
    armed.store(false, Ordering::SeqCst);
    let wal = Wal::open(dir.path(), small()).unwrap();
    let records = read_all(&wal, 1);
    assert_eq!(
        records[..5],
        (0..5u8)
            .map(|i| (1 + u64::from(i), vec![i]))
            .collect::<Vec<_>>()
    );
    wal.close().unwrap();
}

/// A panic in the middle of a round an appender writes (here: in the I/O hook) leaves the
/// writing end in an unknown state: the log fails, on either path, and is never written on
/// with offsets past the lost round.
#[test]
fn a_panic_in_a_round_fails_the_log_instead_of_writing_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let hook = on_sync_while_armed(&armed, |armed| match armed.swap(false, Ordering::SeqCst) {
        true => panic!("injected panic in a round"),
        false => Ok(()),
    });
    let wal = Wal::open(dir.path(), small().io_hook(hook)).unwrap();
    for i in 0..3u8 {
        wal.append(&[[i]]).unwrap();
    }
    armed.store(true, Ordering::SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.append(&[[3u8]])));
    assert!(
        panicked.is_err(),
        "the hook panicked in the appender's round"
    );
    let expect_failed = |result: Result<AppendAck, AppendError>| match result {
        Err(AppendError::Io(e)) => assert!(e.to_string().contains("panicked"), "{e}"),
        other => panic!("expected the log to have failed, got {other:?}"),
    };
    // Handed to the writer thread, which finds the writing end left by the panic.
    expect_failed(wal.append_nowait(&[[4u8]]).and_then(AppendTicket::wait));
    expect_failed(wal.append(&[[5u8]]));
    assert_eq!(
        wal.next_offset(),
        4,
        "nothing after the lost round became durable"
    );
    assert!(wal.close().is_err());
    let wal = Wal::open(dir.path(), small()).unwrap();
    let records = read_all(&wal, 1);
    assert_eq!(
        records[..3],
        (0..3u8)
            .map(|i| (1 + u64::from(i), vec![i]))
            .collect::<Vec<_>>()
    );
    wal.close().unwrap();
}
