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

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridlog_common::batch::{decode_body, Body, ROUND_ALIGN_BYTES};
use gridlog_common::frame;
use gridlog_common::segment::SEGMENT_HEADER_BYTES;
use gridlog_firmware::wal::dump::{read_records, DumpError};
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

/// Writes the log (sequential rounds, concurrent rounds, sequential rounds) and closes it.
fn write_log(dir: &Path) -> PathBuf {
    let wal = std::sync::Arc::new(Wal::open(dir, options()).unwrap());
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
    for _ in 0..30 {
        n += 1;
        wal.append(&[record(n)]).unwrap();
    }
    let segments = wal.segments();
    assert_eq!(segments.len(), 1, "the test wants one segment");
    let wal = std::sync::Arc::into_inner(wal).unwrap();
    wal.close().unwrap();
    segments[0].1.clone()
}

/// The rounds of a closed segment, read with the format's own decoders.
fn rounds(bytes: &[u8]) -> Vec<Round> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut start = pos;
    let mut first_frame = None;
    let (mut first, mut next) = (None, 1u64);
    while let Ok(f) = frame::decode(&bytes[pos..]) {
        let len = f.encoded_len();
        match decode_body(f.body).unwrap() {
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

fn records_in(dir: &Path) -> u64 {
    let wal = Wal::open(dir, options()).unwrap();
    let next = wal.next_offset();
    wal.close().unwrap();
    next - 1
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
fn assert_torn_last(what: &str, original_dir: &Path, segment: &Path, damaged: &[u8], last: &Round) {
    let (dir, path) = copy_log(original_dir, segment, damaged);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{what}: {:?}", report.damage);
    if damaged[last.start..].iter().all(|&b| b == 0) {
        // Nothing of the round reached the disk: a clean end.
        assert_eq!(report.torn_tail, None, "{what}");
    } else {
        let torn = report
            .torn_tail
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no torn tail"));
        assert_eq!(torn.position, last.start as u64, "{what}: {}", torn.reason);
    }
    let dumped = read_records(dir.path(), 1, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(dumped.records, last.first - 1, "{what}: dump");
    assert_eq!(records_in(dir.path()), last.first - 1, "{what}: open");
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes[last.start..].iter().all(|&b| b == 0),
        "{what}: the tear was not zeroed"
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
    let original = tempfile::tempdir().unwrap();
    let segment = write_log(original.path());
    let bytes = std::fs::read(&segment).unwrap();
    let rounds = rounds(&bytes);
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
    let total = last.next - 1;
    assert_eq!(records_in(original.path()), total);

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
    let mut zeroed = bytes.clone();
    zeroed[last.end - 512..last.end].fill(0);
    assert_torn_last(
        "the last round's commit sector lost",
        original.path(),
        &segment,
        &zeroed,
        last,
    );
    // The write in flight reached the disk up to any byte of the last round before its
    // commit is whole (after that only the commit's zero padding is missing: no tear).
    let commit_whole = last.commit + gridlog_common::batch::COMMIT_FRAME_BYTES_MIN;
    for written in (last.start + 1..commit_whole).step_by(13) {
        let mut torn = bytes.clone();
        torn[written..].fill(0);
        assert_torn_last(
            &format!("last round written up to byte {written}"),
            original.path(),
            &segment,
            &torn,
            last,
        );
    }
}
