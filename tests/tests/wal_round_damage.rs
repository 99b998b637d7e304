//! Only the last write round can be torn by a crash: damage in any earlier round is damage.
//!
//! A log is written in many rounds (sequential single-record appends, each its own round,
//! and concurrent batches, several frames a round), all inside the newest `ROUND_BYTES` of
//! the log. Then, for **every** round, a bit is flipped in a batch frame and in the commit,
//! and a 512-byte sector of the round is zeroed; the file is also cut short inside every
//! round. For a round before the last, each is damage: `open` refuses in strict mode and
//! changes nothing, `verify` reports it with the file and a byte of that round, `dump` stops
//! there with an error, and quarantine mode keeps exactly the rounds before it (the original
//! in quarantine). In the last round, flips, lost sectors and an unfinished write are a torn
//! tail: the log opens with every earlier round and the tear zeroed. A shorter file is
//! damage anywhere: segments are created at their full size and no crash shortens them.
//!
//! Both on a fresh segment and on a **recycled** one (a removed segment's file reused, with
//! bytes of its earlier use after the log's end): there the rules may not lean on zeros after
//! the end, and the tear is zeroed only within one round's reach.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridlog_common::batch::{decode_body, Body, ROUND_ALIGN_BYTES};
use gridlog_common::frame;
use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use gridlog_firmware::wal::dump::{read_records, DumpError};
use gridlog_firmware::wal::recovery::torn_tail_window;
use gridlog_firmware::wal::{
    verify, OpenError, RecoveryMode, Wal, WalOptions, ROUND_BYTES_DEFAULT,
};

const SEGMENT_BYTES: u64 = 512 * 1024;

fn options() -> WalOptions {
    WalOptions::default().segment_bytes(SEGMENT_BYTES)
}

/// A record about the size of a stored reading.
fn record(i: u64) -> Vec<u8> {
    format!("reading {i:06} {}", "w".repeat(40 + (i % 37) as usize)).into_bytes()
}

/// One round as found in the segment: its bytes `start..end` (end = past its commit), where
/// its commit starts, its first batch frame and its records `first..next`.
#[derive(Debug, Clone, Copy)]
struct Round {
    start: usize,
    first_frame: usize,
    commit: usize,
    end: usize,
    first: u64,
    next: u64,
}

fn header_of(path: &Path) -> SegmentHeader {
    SegmentHeader::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// Fills and removes segments (as archiving does) until the active segment is a recycled
/// file, its earlier use's bytes after its end.
fn recycle_a_segment(wal: &Wal) {
    let filler = vec![0x5a_u8; 4000];
    let batch: Vec<&[u8]> = vec![&filler[..]; 16];
    while !header_of(&wal.segments().last().unwrap().1).recycled {
        wal.append(&batch).unwrap();
        for (first, _) in wal.sealed_segments() {
            wal.remove_oldest_segment(first).unwrap();
        }
    }
}

/// Writes the log (sequential rounds, concurrent rounds, sequential rounds) and closes it;
/// if `recycled`, into a recycled segment file. Returns the segment and its bytes before the
/// last round was written (what a lost write of that round leaves: zeros in a fresh file,
/// the earlier use's bytes in a recycled one).
fn write_log(dir: &Path, recycled: bool) -> (PathBuf, Vec<u8>) {
    let wal = std::sync::Arc::new(Wal::open(dir, options()).unwrap());
    if recycled {
        recycle_a_segment(&wal);
    }
    let mut n = 0u64;
    for _ in 0..120 {
        n += 1;
        wal.append(&[record(n)]).unwrap();
    }
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..15u64 {
                    let count = 1 + (t + i) % 4;
                    let records: Vec<Vec<u8>> = (0..count).map(|k| record(10_000 + k)).collect();
                    wal.append(&records).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let segments = wal.segments();
    assert_eq!(segments.len(), 1, "the test wants one segment");
    let mut before_last = Vec::new();
    for i in 0..30 {
        n += 1;
        if i == 29 {
            before_last = std::fs::read(&segments[0].1).unwrap();
        }
        wal.append(&[record(n)]).unwrap();
    }
    assert_eq!(wal.segments(), segments, "the test wants one segment");
    let wal = std::sync::Arc::into_inner(wal).unwrap();
    wal.close().unwrap();
    (segments[0].1.clone(), before_last)
}

/// Whether what a tear left of the last round can be recognised as this segment's: its
/// first frame whole (the walk takes it), or a commit with this segment's salt at its own
/// position. In a fresh segment, anything but zeros is recognised (nothing else is there).
fn tear_is_recognisable(damaged: &[u8], last: &Round) -> bool {
    let header = SegmentHeader::decode(damaged).unwrap();
    if !header.recycled {
        return damaged[last.start..].iter().any(|&b| b != 0);
    }
    let body_at = |at: usize| {
        frame::decode(&damaged[at..])
            .ok()
            .map(|f| decode_body(f.body))
    };
    let first_frame_whole = matches!(
        body_at(last.start),
        Some(Ok(Body::Batch(view))) if view.first_offset == last.first
    );
    let commit_of_segment = (last.start..last.end).any(|at| {
        matches!(
            body_at(at),
            Some(Ok(Body::Commit(c))) if c.salt == header.salt() && c.position == at as u64
        )
    });
    first_frame_whole || commit_of_segment
}

/// The rounds of a closed segment, read with the format's own decoders.
fn rounds(bytes: &[u8]) -> Vec<Round> {
    let header = SegmentHeader::decode(bytes).unwrap();
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut start = pos;
    let mut first_frame = None;
    let (mut first, mut next) = (None, header.first_offset);
    while let Ok(f) = frame::decode(&bytes[pos..]) {
        let len = f.encoded_len();
        match decode_body(f.body).unwrap() {
            // A recycled segment: the earlier use's frames (older offsets, another salt).
            Body::Batch(view) if view.first_offset != next => break,
            Body::Commit(commit) if commit.salt != header.salt() => break,
            Body::Batch(view) => {
                first_frame.get_or_insert(pos);
                first.get_or_insert(view.first_offset);
                next = view.next_offset();
            }
            Body::Commit(commit) => {
                assert_eq!(commit.round_start as usize, start);
                assert_eq!((pos + len) % ROUND_ALIGN_BYTES, 0, "rounds end on a sector");
                out.push(Round {
                    start,
                    first_frame: first_frame.take().expect("a round has frames"),
                    commit: pos,
                    end: pos + len,
                    first: first.take().unwrap(),
                    next,
                });
                start = pos + len;
            }
            Body::Footer(_) => break,
        }
        pos += len;
    }
    out
}

fn copy_log(from: &Path, segment: &Path, damaged: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    let path = dir
        .path()
        .join("wal")
        .join(segment.strip_prefix(from).unwrap().file_name().unwrap());
    std::fs::write(&path, damaged).unwrap();
    (dir, path)
}

/// The offset after the last record of the log in `dir`, opened.
fn next_offset_of(dir: &Path) -> u64 {
    let wal = Wal::open(dir, options()).unwrap();
    let next = wal.next_offset();
    wal.close().unwrap();
    next
}

/// Damage in round `round` of a log whose rounds are `rounds`: every reader says so, strict
/// open refuses without changing a byte, quarantine keeps exactly the earlier rounds.
fn assert_damage(
    what: &str,
    original_dir: &Path,
    segment: &Path,
    damaged: &[u8],
    round: &Round,
    quarantine: bool,
) {
    let (dir, path) = copy_log(original_dir, segment, damaged);
    let report = verify(dir.path()).unwrap();
    assert!(
        !report.is_clean(),
        "{what}: verify calls it clean ({report:?})"
    );
    let damage = &report.damage[0];
    assert_eq!(damage.path, path, "{what}");
    assert!(
        (round.start as u64..round.end as u64).contains(&damage.position),
        "{what}: verify names byte {} outside the round {round:?}: {}",
        damage.position,
        damage.reason
    );
    assert!(report.torn_tail.is_none(), "{what}: also a torn tail?");
    let dumped = read_records(dir.path(), 1, |_, _| ControlFlow::Continue(()));
    assert!(
        matches!(dumped, Err(DumpError::Corrupt(_))),
        "{what}: dump says {dumped:?}"
    );
    match Wal::open(dir.path(), options()) {
        Err(OpenError::Corrupt { damage }) => assert_eq!(damage.path, path, "{what}"),
        Err(other) => panic!("{what}: expected Corrupt, got {other}"),
        Ok(wal) => panic!(
            "{what}: strict open accepted damage in an acknowledged round, next offset {}",
            wal.next_offset()
        ),
    }
    assert!(
        std::fs::read(&path).unwrap() == damaged,
        "{what}: a refused open changed the segment"
    );
    if quarantine {
        let wal = Wal::open(
            dir.path(),
            options().recovery(RecoveryMode::QuarantineCorrupt),
        )
        .unwrap();
        assert_eq!(
            wal.next_offset(),
            round.first,
            "{what}: quarantine keeps the rounds before"
        );
        wal.close().unwrap();
        let kept = std::fs::read_dir(dir.path().join("wal/quarantine"))
            .unwrap()
            .count();
        assert_eq!(kept, 1, "{what}: the original is in quarantine");
    }
}

/// A tear of the last round: verify notes it, dump ends before it, open zeroes it and keeps
/// every earlier round; the log then takes new appends.
///
/// In a recycled segment only the round itself (`..last.end`) is looked at: bytes of the
/// file's earlier use follow it and stay.
fn assert_torn_last(what: &str, original_dir: &Path, segment: &Path, damaged: &[u8], last: &Round) {
    let (dir, path) = copy_log(original_dir, segment, damaged);
    let header = SegmentHeader::decode(damaged).unwrap();
    let tear_end = if header.recycled {
        last.end
    } else {
        damaged.len()
    };
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{what}: {:?}", report.damage);
    // In a recycled segment, a tear that left neither a whole frame nor a commit of the
    // round cannot be told from the earlier use's bytes: the log ends before it, and it is
    // left as it is (the next round overwrites it; nothing in it can pass as this log's).
    // (Nothing of a fresh segment's round reached the disk: a clean end too.)
    let unrecognisable = !tear_is_recognisable(damaged, last);
    if unrecognisable {
        assert_eq!(report.torn_tail, None, "{what}");
    } else {
        let torn = report
            .torn_tail
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no torn tail"));
        assert_eq!(torn.position, last.start as u64, "{what}: {}", torn.reason);
    }
    let dumped = read_records(dir.path(), 1, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(
        dumped.records,
        last.first - header.first_offset,
        "{what}: dump"
    );
    assert_eq!(next_offset_of(dir.path()), last.first, "{what}: open");
    let bytes = std::fs::read(&path).unwrap();
    if unrecognisable {
        assert!(
            bytes == damaged,
            "{what}: an unrecognisable tear was changed"
        );
    } else {
        assert!(
            bytes[last.start..tear_end].iter().all(|&b| b == 0),
            "{what}: the tear was not zeroed"
        );
    }
    // (Zeroing covers at most the torn-tail window: one round's reach.)
    let window_end = (last.start + torn_tail_window(&header)).min(bytes.len());
    assert!(
        bytes[window_end.max(tear_end)..] == damaged[window_end.max(tear_end)..],
        "{what}: bytes beyond one round's reach changed"
    );
    assert!(
        bytes[..last.start] == damaged[..last.start],
        "{what}: bytes before the tear changed"
    );
    let wal = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(
        wal.append(&[record(1)]).unwrap().first_offset,
        last.first,
        "{what}"
    );
    wal.close().unwrap();
    assert!(
        verify(dir.path()).unwrap().is_clean(),
        "{what}: after a new append"
    );
}

#[test]
fn damage_in_any_round_but_the_last_is_damage_and_the_last_rounds_tear_is_cut() {
    every_round_is_checked(false);
}

#[test]
fn in_a_recycled_segment_damage_in_any_round_but_the_last_is_damage_too() {
    every_round_is_checked(true);
}

fn every_round_is_checked(recycled: bool) {
    let original = tempfile::tempdir().unwrap();
    let (segment, before_last) = write_log(original.path(), recycled);
    let bytes = std::fs::read(&segment).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    assert_eq!(header.recycled, recycled);
    let rounds = rounds(&bytes);
    if recycled {
        assert!(
            bytes[rounds.last().unwrap().end..].iter().any(|&b| b != 0),
            "bytes of the earlier use follow the log"
        );
    }
    let log_bytes = rounds.last().unwrap().end - SEGMENT_HEADER_BYTES;
    assert!(
        log_bytes <= ROUND_BYTES_DEFAULT,
        "every round lies in the last ROUND_BYTES"
    );
    assert!(rounds.len() >= 150, "{} rounds", rounds.len());
    assert!(
        rounds.iter().any(|r| r.commit - r.first_frame > 200),
        "some rounds hold several frames"
    );
    let (last, earlier) = rounds.split_last().unwrap();
    assert_eq!(next_offset_of(original.path()), last.next);

    for (k, round) in earlier.iter().enumerate() {
        let quarantine = k % 16 == 0;
        let mut flipped = bytes.clone();
        flipped[round.first_frame + frame::FRAME_BODY_AT + 2] ^= 0x10;
        assert_damage(
            &format!("bit flip in a frame of round {k}"),
            original.path(),
            &segment,
            &flipped,
            round,
            quarantine,
        );

        let mut flipped = bytes.clone();
        flipped[round.commit + frame::FRAME_BODY_AT + 5] ^= 0x01;
        assert_damage(
            &format!("bit flip in the commit of round {k}"),
            original.path(),
            &segment,
            &flipped,
            round,
            false,
        );

        let middle = (round.start + round.end) / 2;
        let sector = (middle / 512 * 512).max(SEGMENT_HEADER_BYTES);
        let mut zeroed = bytes.clone();
        zeroed[sector..sector / 512 * 512 + 512].fill(0);
        assert_damage(
            &format!("zeroed sector at {sector} in round {k}"),
            original.path(),
            &segment,
            &zeroed,
            round,
            quarantine,
        );
    }

    for (k, round) in rounds.iter().enumerate() {
        // A shorter file is damage in every round, the last included.
        let cut = (round.first_frame + round.end) / 2;
        let (dir, path) = copy_log(original.path(), &segment, &bytes[..cut]);
        let report = verify(dir.path()).unwrap();
        assert!(!report.is_clean(), "file cut at {cut} in round {k}");
        assert!(
            matches!(
                Wal::open(dir.path(), options()),
                Err(OpenError::Corrupt { .. })
            ),
            "file cut at {cut} in round {k} opened"
        );
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            cut,
            "a refused open changed the file"
        );
    }

    let mut flipped = bytes.clone();
    flipped[last.first_frame + frame::FRAME_BODY_AT + 2] ^= 0x10;
    assert_torn_last(
        "bit flip in the last round",
        original.path(),
        &segment,
        &flipped,
        last,
    );
    let mut flipped = bytes.clone();
    flipped[last.commit + frame::FRAME_BODY_AT + 5] ^= 0x01;
    assert_torn_last(
        "bit flip in the last commit",
        original.path(),
        &segment,
        &flipped,
        last,
    );
    let mut lost = bytes.clone();
    lost[last.end - 512..last.end].copy_from_slice(&before_last[last.end - 512..last.end]);
    assert_torn_last(
        "the last round's commit sector lost",
        original.path(),
        &segment,
        &lost,
        last,
    );
    // The write in flight reached the disk up to any byte of the last round before its
    // commit is whole (after that only the commit's zero padding is missing: no tear).
    let commit_whole = last.commit + gridlog_common::batch::COMMIT_FRAME_BYTES_MIN;
    for written in (last.start + 1..commit_whole).step_by(13) {
        let mut torn = bytes.clone();
        torn[written..last.end].copy_from_slice(&before_last[written..last.end]);
        assert_torn_last(
            &format!("last round written up to byte {written}"),
            original.path(),
            &segment,
            &torn,
            last,
        );
    }
}
