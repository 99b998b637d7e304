//! `verify`: a read-only check of every frame of every segment, reporting precisely.
//!
//! Unlike opening, verify changes nothing and takes no lock, so it can run beside a
//! stopped or a running gateway (on a running one, the active segment's newest bytes may be
//! in flight and show as a torn tail).

use std::path::{Path, PathBuf};

use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use gridlog_common::Offset;

use super::error::Damage;
use super::recovery::{list_wal_dir, WalEntry};
use super::segment::{classify_last_segment, scan_segment, scan_segment_bytes, ScanStop, Tail};
use super::WAL_DIR_NAME;

/// One segment as verify saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The file.
    pub path: PathBuf,
    /// First record offset.
    pub first_offset: Offset,
    /// One past the last valid record.
    pub next_offset: Offset,
    /// Valid batch frames.
    pub frames: u64,
    /// Valid records.
    pub records: u64,
    /// Committed write rounds (segment format 2; 0 for a segment of format 1, whose rounds
    /// are not marked).
    pub rounds: u64,
    /// Segment format version.
    pub format_version: u16,
    /// Sealed with a valid footer.
    pub sealed: bool,
}

/// What verify found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every segment, in order.
    pub segments: Vec<SegmentSummary>,
    /// Damage: anything that would stop the log from opening in strict mode.
    pub damage: Vec<Damage>,
    /// A torn tail of the last segment (would be zeroed at open; never acknowledged).
    pub torn_tail: Option<Damage>,
    /// Snapshot files checked, as (file, offset they end before) — damaged ones are in
    /// `damage` instead.
    pub snapshots: Vec<(PathBuf, Offset)>,
    /// Archive files checked (decompressed and verified), as (file, first, next offset).
    pub archived: Vec<(PathBuf, Offset, Offset)>,
}

impl VerifyReport {
    /// True if nothing is damaged (a torn tail is not damage).
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// Records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }
}

/// The bytes of the segment file at `path` (named for `name_offset`), read while it was
/// that segment: beside a running gateway, a segment archived meanwhile may be recycled —
/// renamed away, given a new header, then new rounds — while it is read, which is an error
/// to retry, not damage. The read was of the segment if its header did not change during
/// it and either names `name_offset` or is still the file at `path` (recycling renames the
/// file before it writes the new header).
pub(crate) fn read_unrecycled(path: &Path, name_offset: Offset) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let Some(read) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return Ok(bytes);
    };
    let mut now = [0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut now, 0)?;
    let names_it = SegmentHeader::decode(read).is_ok_and(|h| h.first_offset == name_offset);
    if now[..] != *read || !(names_it || still_at(&file, path)) {
        return Err(recycled_while_read(path));
    }
    Ok(bytes)
}

/// Whether the open `file` is still the one at `path`.
pub(crate) fn still_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| {
        file.metadata()
            .is_ok_and(|f| (f.dev(), f.ino()) == (m.dev(), m.ino()))
    })
}

/// The error of a reader beside a running gateway whose segment was recycled under it.
pub(crate) fn recycled_while_read(path: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{}: the running gateway archived and reused this segment while it was read; run again",
        path.display()
    ))
}

/// Checks the log of the data directory `data_dir`.
pub fn verify(data_dir: &Path) -> std::io::Result<VerifyReport> {
    let wal_dir = data_dir.join(WAL_DIR_NAME);
    let mut report = VerifyReport::default();
    let entries = list_wal_dir(&wal_dir)?;
    let segment_count = entries
        .iter()
        .filter(|e| matches!(e, WalEntry::Segment(..)))
        .count();
    let mut seen = 0;
    let mut expected_next: Option<Offset> = None;
    let mut log_id = None;
    for entry in entries {
        let (name_offset, path) = match entry {
            WalEntry::Segment(first, path) => (first, path),
            WalEntry::Unexpected(path) => {
                report.damage.push(Damage {
                    path,
                    position: 0,
                    reason: "unexpected file in wal/".into(),
                });
                continue;
            }
            WalEntry::Prealloc(_) | WalEntry::Spare | WalEntry::Quarantine => continue,
        };
        seen += 1;
        let is_last = seen == segment_count;
        // Read, not mapped: verify may run beside a live writer, and a memory map of bytes
        // another process is writing must not be turned into a Rust slice (see `mmap`).
        let bytes = read_unrecycled(&path, name_offset)?;
        let bytes = bytes.as_slice();
        if bytes.is_empty() {
            report.damage.push(Damage {
                path,
                position: 0,
                reason: "empty segment file".into(),
            });
            continue;
        }
        let scan = match scan_segment(bytes) {
            Ok(scan) => scan,
            Err((position, reason)) => {
                report.damage.push(Damage {
                    path,
                    position,
                    reason,
                });
                expected_next = None;
                continue;
            }
        };
        if scan.header.first_offset != name_offset {
            report.damage.push(Damage {
                path: path.clone(),
                position: 0,
                reason: format!(
                    "header says first offset {} but the name says {name_offset}",
                    scan.header.first_offset
                ),
            });
        }
        if log_id.is_some_and(|id| id != scan.header.log_id) {
            report.damage.push(Damage {
                path: path.clone(),
                position: 0,
                reason: "segment belongs to another log".into(),
            });
        }
        log_id = Some(scan.header.log_id);
        if let Some(expected) = expected_next.filter(|&n| n != scan.header.first_offset) {
            report.damage.push(Damage {
                path: path.clone(),
                position: 0,
                reason: format!(
                    "missing segment: offsets {expected}..{} are in no segment",
                    scan.header.first_offset
                ),
            });
        }
        // After damage the next segment cannot be expected anywhere in particular: do not
        // report a second, consequential "missing segment".
        expected_next = match scan.stop {
            ScanStop::Invalid { .. } => None,
            _ => Some(scan.next_offset),
        };
        match &scan.stop {
            ScanStop::Footer => {}
            ScanStop::End | ScanStop::Invalid { .. } if is_last => {
                let tail = classify_last_segment(bytes, &scan);
                match tail {
                    Tail::Clean | Tail::Stale => {}
                    Tail::Torn(reason) => {
                        report.torn_tail = Some(Damage {
                            path: path.clone(),
                            position: scan.data_end,
                            reason,
                        })
                    }
                    Tail::Damage(position, reason) => report.damage.push(Damage {
                        path: path.clone(),
                        position,
                        reason,
                    }),
                }
            }
            ScanStop::End => report.damage.push(Damage {
                path: path.clone(),
                position: scan.data_end,
                reason: "segment is not sealed but is not the last one".into(),
            }),
            ScanStop::Invalid { position, reason } => report.damage.push(Damage {
                path: path.clone(),
                position: *position,
                reason: reason.clone(),
            }),
        }
        report.segments.push(SegmentSummary {
            path,
            first_offset: scan.header.first_offset,
            next_offset: scan.next_offset,
            frames: scan.frame_count,
            records: scan.record_count,
            rounds: scan.rounds,
            format_version: scan.header.version as u16,
            sealed: scan.stop == ScanStop::Footer,
        });
    }
    verify_snapshots_and_archive(data_dir, &mut report)?;
    Ok(report)
}

/// Checks every snapshot (CRCs, decode, digest) and every archive file (decompressed,
/// CRC-32 and SHA-256 of the original segment, and the segment's own frames).
fn verify_snapshots_and_archive(data_dir: &Path, report: &mut VerifyReport) -> std::io::Result<()> {
    for entry in crate::snapshot::list(data_dir)? {
        match crate::snapshot::verify_file(&entry.path) {
            Ok(header) => report.snapshots.push((entry.path, header.next_offset)),
            Err(e) => report.damage.push(Damage {
                path: entry.path,
                position: 0,
                reason: e.to_string(),
            }),
        }
    }
    let (entries, damage) = crate::archive::list(data_dir)?;
    report.damage.extend(damage);
    for entry in entries {
        match crate::archive::read_original(&entry.path) {
            Ok((header, bytes)) => match scan_segment_bytes(&bytes, false) {
                Ok(scan) if scan.stop == ScanStop::Footer && scan.next_offset == header.next_offset => {
                    report.archived.push((entry.path, header.first_offset, header.next_offset))
                }
                Ok(_) => report.damage.push(Damage {
                    path: entry.path,
                    position: 0,
                    reason: "the archived segment is not a whole sealed segment of the offsets its header names".into(),
                }),
                Err((position, reason)) => report.damage.push(Damage { path: entry.path, position, reason }),
            },
            Err(crate::archive::ArchiveError::Damaged(d)) => report.damage.push(d),
            Err(e) => report.damage.push(Damage { path: entry.path, position: 0, reason: e.to_string() }),
        }
    }
    Ok(())
}
