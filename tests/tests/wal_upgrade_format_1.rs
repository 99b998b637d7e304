//! A log written by an earlier build (segment format 1, no round commits) opens and reads as
//! it is, keeps format 1's rules in its old segments, and goes on in format-2 segments.
//!
//! The fixtures in `tests/fixtures/wal-format-1/` were written by the format-1 build (the
//! commit before round commits) with 4 KiB segments: `written/` holds 199 records, numbered
//! as [`record`] makes them, in a sealed segment and an active one (and a leftover
//! `prealloc.tmp`, which opening removes); `empty/` is a log opened and closed with no
//! record.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridlog_common::frame;
use gridlog_firmware::wal::dump::read_records;
use gridlog_firmware::wal::{verify, Wal, WalOptions};

fn options() -> WalOptions {
    WalOptions::default().segment_bytes(4096)
}

/// Record `n` as the format-1 build wrote it.
fn record(n: u64) -> Vec<u8> {
    format!("format-1 record {n:04} {}", "r".repeat((n % 23) as usize)).into_bytes()
}

fn fixture(name: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/wal-format-1")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    for entry in std::fs::read_dir(from.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.path().join("wal").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    dir
}

fn all_records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    read_records(dir, 1, |offset, bytes| {
        out.push((offset, bytes.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn segment(dir: &Path, first: u64) -> PathBuf {
    dir.join("wal").join(format!("{first:020}.seg"))
}

#[test]
fn a_format_1_log_is_read_as_it_is_and_continues_in_format_2() {
    let dir = fixture("written");
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    assert_eq!(report.records(), 199);
    assert!(report.segments.iter().all(|s| s.format_version == 1));
    let expected: Vec<(u64, Vec<u8>)> = (1..=199).map(|n| (n, record(n))).collect();
    assert_eq!(all_records(dir.path()), expected, "dump reads format 1");

    let wal = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(wal.next_offset(), 200);
    let read: Vec<(u64, Vec<u8>)> = {
        let mut cursor = wal.read_from(1).unwrap();
        let mut out = Vec::new();
        while let Some(r) = cursor.next() {
            let r = r.unwrap();
            out.push((r.offset, r.bytes.to_vec()));
        }
        out
    };
    assert_eq!(read, expected, "the cursor reads format 1");
    for n in 200..210 {
        assert_eq!(wal.append(&[record(n)]).unwrap().first_offset, n);
    }
    wal.close().unwrap();

    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    let versions: Vec<(u64, u16, bool)> = report
        .segments
        .iter()
        .map(|s| (s.first_offset, s.format_version, s.sealed))
        .collect();
    // The old active segment was sealed, nothing in it rewritten; new records are in format 2.
    assert_eq!(
        versions[..3],
        [(1, 1, true), (104, 1, true), (200, 2, true)]
    );
    assert!(versions[2..].iter().all(|s| s.1 == 2));
    let rounds: u64 = report.segments[2..].iter().map(|s| s.rounds).sum();
    assert_eq!(rounds, 10, "one round per sequential append");
    let expected: Vec<(u64, Vec<u8>)> = (1..210).map(|n| (n, record(n))).collect();
    assert_eq!(all_records(dir.path()), expected);
    let original = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/wal-format-1/written/wal/00000000000000000001.seg"),
    )
    .unwrap();
    assert!(
        std::fs::read(segment(dir.path(), 1)).unwrap() == original,
        "a sealed old segment changed"
    );
}

#[test]
fn an_empty_format_1_log_is_replaced_by_a_format_2_segment_of_the_same_name() {
    let dir = fixture("empty");
    let wal = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(wal.append(&[record(1)]).unwrap().first_offset, 1);
    wal.close().unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.segments.len(), 1);
    assert_eq!(report.segments[0].format_version, 2);
    assert_eq!(report.segments[0].path, segment(dir.path(), 1));
    assert_eq!(all_records(dir.path()), [(1, record(1))]);
}

/// A format-1 segment keeps format 1's rule: a bad frame within one round of its end is a
/// torn tail (format 1 cannot tell rounds apart), further back it is damage.
#[test]
fn a_format_1_last_segment_keeps_the_window_rule() {
    let dir = fixture("written");
    let path = segment(dir.path(), 104);
    let bytes = std::fs::read(&path).unwrap();
    let mut pos = gridlog_common::segment::SEGMENT_HEADER_BYTES;
    let mut frames = Vec::new();
    while let Ok(f) = frame::decode(&bytes[pos..]) {
        frames.push(pos);
        pos += f.encoded_len();
    }
    let last = *frames.last().unwrap();
    let mut torn = bytes.clone();
    torn[last + frame::FRAME_BODY_AT] ^= 0x20;
    std::fs::write(&path, &torn).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    assert_eq!(
        report.torn_tail.as_ref().map(|t| t.position),
        Some(last as u64)
    );
    let wal = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(wal.next_offset(), 199);
    wal.close().unwrap();
}
