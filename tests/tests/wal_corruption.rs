//! Damage a crash cannot explain is detected and reported with file and byte position by
//! both `open` and `verify`, never skipped silently; quarantine mode cuts the log at the
//! damage and keeps the damaged files.

use std::path::{Path, PathBuf};

use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use gridlog_common::{batch, frame};
use gridlog_firmware::wal::{verify, OpenError, RecoveryMode, Wal, WalOptions};
use gridlog_tests::{all_frame_positions, frame_positions};

fn options() -> WalOptions {
    WalOptions::default().segment_bytes(4096)
}

/// A closed log of 300 records in many 4 KiB segments; returns the segment paths.
fn write_log(dir: &Path) -> Vec<PathBuf> {
    let wal = Wal::open(dir, options()).unwrap();
    for i in 0..100u32 {
        let records: Vec<Vec<u8>> = (0..3)
            .map(|j| format!("record {i}.{j} {}", "x".repeat(20 + (i % 50) as usize)).into_bytes())
            .collect();
        wal.append(&records).unwrap();
    }
    let segments = wal
        .segments()
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>();
    wal.close().unwrap();
    assert!(
        segments.len() >= 5,
        "want several segments, got {}",
        segments.len()
    );
    segments
}

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    let mut cursor = wal.read_from(wal.oldest_offset()).unwrap();
    let mut out = Vec::new();
    while let Some(r) = cursor.next() {
        let r = r.unwrap();
        out.push((r.offset, r.bytes.to_vec()));
    }
    out
}

fn expect_corrupt(dir: &Path, path: &Path, position: Option<u64>) {
    match Wal::open(dir, options()) {
        Err(OpenError::Corrupt { damage }) => {
            assert_eq!(damage.path, path, "{damage}");
            if let Some(position) = position {
                assert_eq!(damage.position, position, "{damage}");
            }
        }
        other => panic!(
            "expected corruption at {} {position:?}, got {other:?}",
            path.display()
        ),
    }
    let report = verify(dir).unwrap();
    assert!(!report.is_clean(), "verify missed the damage");
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.path == path && position.is_none_or(|p| d.position == p)),
        "verify reported {:?}",
        report.damage
    );
}

#[test]
fn a_flipped_bit_in_any_frame_of_a_sealed_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let victim = &segments[1];
    let original = std::fs::read(victim).unwrap();
    // Round commits included: a flip in one (or in its zero padding) is damage too.
    let frames = all_frame_positions(&original);
    assert!(frames.len() >= 3);
    for (n, &pos) in frames.iter().enumerate() {
        let next = frames.get(n + 1).copied().unwrap_or(pos + 16);
        // One bit in the header, one in the body of each frame.
        for bit_at in [pos + 2, (pos + next) / 2] {
            let mut damaged = original.clone();
            damaged[bit_at] ^= 0x10;
            std::fs::write(victim, &damaged).unwrap();
            expect_corrupt(dir.path(), victim, Some(pos as u64));
        }
    }
    std::fs::write(victim, &original).unwrap();
    assert!(verify(dir.path()).unwrap().is_clean());
    assert!(Wal::open(dir.path(), options()).is_ok());
}

#[test]
fn a_flipped_bit_in_a_segment_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let mut bytes = std::fs::read(&segments[2]).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&segments[2], &bytes).unwrap();
    expect_corrupt(dir.path(), &segments[2], Some(0));
}

#[test]
fn a_truncated_middle_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segments[2])
        .unwrap();
    file.set_len(1000).unwrap();
    expect_corrupt(dir.path(), &segments[2], Some(0));
}

#[test]
fn a_missing_segment_is_reported_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    std::fs::remove_file(&segments[2]).unwrap();
    expect_corrupt(dir.path(), &segments[3], Some(0));
    let report = verify(dir.path()).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.reason.contains("missing segment")),
        "{:?}",
        report.damage
    );
}

#[test]
fn a_garbage_file_in_the_wal_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let garbage = dir.path().join("wal").join("notes.txt");
    std::fs::write(&garbage, b"hello").unwrap();
    expect_corrupt(dir.path(), &garbage, None);
    // Also a file that looks like a segment but is not one.
    std::fs::remove_file(&garbage).unwrap();
    let fake = dir.path().join("wal").join("99999999999999999999.seg");
    std::fs::write(&fake, vec![0xAB; 8192]).unwrap();
    expect_corrupt(dir.path(), &fake, Some(0));
}

#[test]
fn quarantine_mode_cuts_at_the_damage_and_keeps_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let before = {
        let wal = Wal::open(dir.path(), options()).unwrap();
        read_all(&wal)
    };
    let victim = &segments[2];
    let mut bytes = std::fs::read(victim).unwrap();
    let frames = frame_positions(&bytes);
    let bad_frame = frames[2];
    bytes[bad_frame + 12] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    // Strict refuses and changes nothing.
    expect_corrupt(dir.path(), victim, Some(bad_frame as u64));
    assert_eq!(
        std::fs::read(victim).unwrap(),
        bytes,
        "strict mode must not touch files"
    );

    let wal = Wal::open(
        dir.path(),
        options().recovery(RecoveryMode::QuarantineCorrupt),
    )
    .unwrap();
    let report = wal.recovery_report().clone();
    let after = read_all(&wal);
    // Everything before the damaged frame survives, in order; nothing after it is in the log.
    assert!(!after.is_empty() && after.len() < before.len());
    assert_eq!(after[..], before[..after.len()]);
    // The quarantine holds the damaged segment and every later one, byte for byte.
    let quarantine = dir.path().join("wal").join("quarantine");
    assert_eq!(report.quarantined.len(), segments.len() - 2, "{report:?}");
    assert_eq!(
        std::fs::read(quarantine.join(victim.file_name().unwrap())).unwrap(),
        bytes
    );
    for later in &segments[3..] {
        assert!(quarantine.join(later.file_name().unwrap()).exists());
    }
    // The log goes on from the cut, and is clean.
    let ack = wal.append(&[b"after the cut"]).unwrap();
    assert_eq!(ack.first_offset, after.last().unwrap().0 + 1);
    drop(wal);
    assert!(verify(dir.path()).unwrap().is_clean());
}

/// Quarantine mode never cuts the oldest segment away: that would leave no log, and a new
/// one would start at offset 1 under a new id, orphaning the snapshots and the archive (whose
/// files a new log would later overwrite). It refuses, names the damage and changes nothing.
#[test]
fn quarantine_mode_refuses_damage_that_would_leave_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[40] ^= 1; // in the header
    std::fs::write(&segments[0], &bytes).unwrap();
    match Wal::open(
        dir.path(),
        options().recovery(RecoveryMode::QuarantineCorrupt),
    ) {
        Err(e @ OpenError::OldestSegmentDamaged { .. }) => {
            let OpenError::OldestSegmentDamaged { damage } = &e else {
                unreachable!()
            };
            assert_eq!(damage.path, segments[0], "{e}");
            assert!(e.to_string().contains("gridlog restore"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    for path in &segments {
        assert!(path.exists(), "{} was moved", path.display());
    }
    assert_eq!(std::fs::read(&segments[0]).unwrap(), bytes);
    assert!(!dir.path().join("wal").join("quarantine").exists());
}

/// A crash at any I/O step of a quarantine cut (modelled as the step failing and the
/// process giving up there) never loses the valid prefix: the next quarantine open finds
/// it, or the original to cut again.
#[test]
fn a_crash_at_every_step_of_a_quarantine_cut_keeps_the_valid_prefix() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let template = tempfile::tempdir().unwrap();
    let segments = write_log(template.path());
    let victim_name = segments[2].file_name().unwrap().to_owned();
    let victim = template.path().join("wal").join(&victim_name);
    let mut bytes = std::fs::read(&victim).unwrap();
    let bad_frame = frame_positions(&bytes)[2];
    bytes[bad_frame + 12] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let quarantine = || options().recovery(RecoveryMode::QuarantineCorrupt);
    let expected = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        read_all(&Wal::open(dir.path(), quarantine()).unwrap())
    };
    for k in 0.. {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let ops = Arc::new(AtomicUsize::new(0));
        let hook = {
            let ops = ops.clone();
            Arc::new(
                move |_: &gridlog_firmware::wal::IoOp<'_>| -> std::io::Result<()> {
                    if ops.fetch_add(1, Ordering::SeqCst) >= k {
                        return Err(std::io::Error::other("injected crash"));
                    }
                    Ok(())
                },
            )
        };
        let completed = Wal::open(dir.path(), quarantine().io_hook(hook)).is_ok();
        let wal = Wal::open(dir.path(), quarantine()).unwrap();
        let got = read_all(&wal);
        assert!(
            got == expected,
            "crash at I/O step {k}: {} records, expected {}",
            got.len(),
            expected.len()
        );
        if completed {
            break;
        }
    }
}

/// Copies a data directory (files and one level of subdirectories, enough for `wal/`).
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Valid frames in the 64 bytes a segment keeps for its footer (which the writer never
/// writes there) are a clear error at open, not an arithmetic underflow at the next append.
#[test]
fn frames_in_the_footer_reserve_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let segment = {
        let wal = Wal::open(dir.path(), options()).unwrap();
        wal.append(&[b"first".as_slice()]).unwrap();
        let segment = wal.segments()[0].1.clone();
        wal.close().unwrap();
        segment
    };
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = *all_frame_positions(&bytes).last().unwrap();
    let data_end = last + frame::decode(&bytes[last..]).unwrap().encoded_len();
    let reserve_start = bytes.len() - 64;
    // One more valid round (offset 2) whose commit ends inside the reserve: its batch frame
    // ends so close to the reserve that the commit's padding runs to the end of the file.
    let record = (1..)
        .map(|n| vec![b'x'; n])
        .find(|r| data_end + batch::batch_frame_len(2, &[r]) > reserve_start - 24)
        .unwrap();
    let len = batch::encode_batch_frame(&mut bytes[data_end..], 2, &[&record]).unwrap();
    let commit = batch::Commit {
        salt: SegmentHeader::decode(&bytes).unwrap().salt(),
        position: (data_end + len) as u64,
        round_start: data_end as u64,
    };
    let commit_len = batch::encode_commit_frame(&mut bytes[data_end + len..], &commit).unwrap();
    assert!(data_end + len + commit_len > reserve_start);
    std::fs::write(&segment, &bytes).unwrap();
    match Wal::open(dir.path(), options()) {
        Err(OpenError::Corrupt { damage }) => {
            assert_eq!(damage.path, segment);
            assert!(
                damage.reason.contains("footer reserve"),
                "{}",
                damage.reason
            );
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a segment with frames in its footer reserve was opened"),
    }
}

#[test]
fn a_torn_tail_of_the_last_segment_is_zeroed_and_reported_as_torn_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let frames = all_frame_positions(&bytes);
    let end = frames
        .last()
        .map(|&p| p + frame::decode(&bytes[p..]).unwrap().encoded_len())
        .unwrap_or(SEGMENT_HEADER_BYTES);
    // A half-written frame after the last round's commit.
    bytes[end..end + 20].copy_from_slice(&[0x55; 20]);
    std::fs::write(last, &bytes).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_some(),
        "{report:?}"
    );
    let wal = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(
        wal.recovery_report().torn_tail.as_ref().map(|t| t.1),
        Some(end as u64)
    );
    assert_eq!(read_all(&wal).len(), 300);
    drop(wal);
    assert!(verify(dir.path()).unwrap().torn_tail.is_none());
}

#[test]
fn a_flipped_bit_in_the_last_segment_further_back_than_one_round_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        WalOptions::default()
            .segment_bytes(1 << 20)
            .round_bytes(1024)
    };
    {
        let wal = Wal::open(dir.path(), options()).unwrap();
        for i in 0..200u32 {
            wal.append(&[format!("acknowledged record {i:04} {}", "y".repeat(40))])
                .unwrap();
        }
        wal.close().unwrap();
    }
    let segments: Vec<PathBuf> = {
        let mut s: Vec<PathBuf> = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        s.sort();
        s
    };
    assert_eq!(segments.len(), 1, "all in one (the last, unsealed) segment");
    let last = &segments[0];
    let mut bytes = std::fs::read(last).unwrap();
    let frames = frame_positions(&bytes);
    assert!(frames.len() > 100);
    // A frame with more than one round of acknowledged frames after it.
    let victim = frames[10];
    bytes[victim + 9] ^= 0x04;
    std::fs::write(last, &bytes).unwrap();
    match Wal::open(dir.path(), options()) {
        Err(OpenError::Corrupt { damage }) => {
            assert_eq!(damage.path, *last);
            assert_eq!(damage.position, victim as u64);
        }
        other => panic!("expected damage, got {other:?}"),
    }
    let report = verify(dir.path()).unwrap();
    assert!(
        !report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
}

#[test]
fn damage_in_a_middle_segment_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let mut bytes = std::fs::read(&segments[1]).unwrap();
    let frames = frame_positions(&bytes);
    bytes[frames[1] + 10] ^= 0x01;
    std::fs::write(&segments[1], &bytes).unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
}
