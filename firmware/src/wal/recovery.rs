//! Opening a log: find its segments, check every frame, repair what a crash can leave
//! behind, and refuse (or quarantine) what a crash cannot explain.
//!
//! What a crash can leave, and what recovery does about it:
//! - `wal/prealloc.tmp` (a preallocation or rotation in progress): removed.
//! - A torn tail of the **last** segment (the write round that was in flight when the power
//!   went; never acknowledged): the bytes from the end of the last complete round on are
//!   overwritten with zeros and synced, so a later append cannot be followed by stale bytes.
//!   A crash can only tear the round being written. In a version-2 segment every round ends
//!   with a commit frame in the same write and sync, so the last complete round is known
//!   exactly: frames after the last commit are the torn round's (never acknowledged, even if
//!   some of them are whole), and damage followed by a later round's commit lies in a round
//!   that was synced and acknowledged — damage, not a tear. Only damage in the last round,
//!   with nothing of a later round after it, is taken for a tear. In a version-1 segment
//!   (written by earlier builds) rounds are not marked: as before, anything within one round
//!   (`round_bytes` in the header, see [`torn_tail_window`]) of the last valid frame is taken
//!   for a tear. In both, a non-zero byte further than one round is damage.
//! - A sealed last segment (crash after the footer, before the next segment): the writer
//!   starts the next segment.
//!
//! Everything else is damage — a bad frame in a segment that is not the last, a missing
//! segment (a gap in offsets), a foreign or garbage file in `wal/`, a bad header — reported
//! with file and byte position. [`RecoveryMode::Strict`] refuses to open;
//! [`RecoveryMode::QuarantineCorrupt`] cuts the log at the first damage: the damaged segment
//! and all after it are moved to `wal/quarantine/` (never deleted) and the valid frames
//! before the damage are copied into a fresh segment of the same name.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use gridlog_common::segment::SEGMENT_HEADER_BYTES;
use gridlog_common::{Offset, FIRST_OFFSET};

use super::error::{Damage, OpenError};
use super::io::Io;
pub use super::segment::torn_tail_window;
use super::segment::{
    classify_last_segment, parse_segment_file_name, preallocate, scan_segment, torn_tail_end,
    ScanStop, SegmentScan, Tail, PREALLOC_FILE_NAME,
};
use super::spare::SPARE_FILE_NAME;
use crate::mmap::SegmentMap;

/// The directory damaged files are moved to, inside `wal/`.
pub const QUARANTINE_DIR_NAME: &str = "quarantine";

/// What recovery does when it finds damage a crash cannot explain. Configured as
/// `wal.recovery`, spelled `strict` or `quarantine-corrupt` (its serde form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Refuse to open, changing nothing. The default: an operator decides.
    #[default]
    Strict,
    /// Cut the log at the first damage; move damaged and later files to `wal/quarantine/`.
    QuarantineCorrupt,
}

/// What recovery found and did, for the operator's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail that was zeroed: file, first invalid byte, bytes zeroed.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Files moved to quarantine, with the damage that sent them there.
    pub quarantined: Vec<(PathBuf, Damage)>,
    /// A leftover preallocation that was removed.
    pub removed_prealloc: bool,
    /// Number of segments in the hot log after recovery.
    pub segments: usize,
    /// Records in the hot log after recovery.
    pub records: u64,
}

/// A segment as recovery leaves it.
#[derive(Debug)]
pub(crate) struct RecoveredSegment {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) first_offset: Offset,
    pub(crate) next_offset: Offset,
    /// Where the next frame goes (unsealed) — past the last valid batch frame.
    pub(crate) data_end: u64,
    /// Past the footer if sealed, else `data_end`.
    pub(crate) durable_end: u64,
    pub(crate) frame_count: u64,
    pub(crate) segment_bytes: u64,
    /// The largest write round its header allows for (the torn-tail window recovery uses).
    pub(crate) round_bytes: u32,
    /// Its format: a version-1 segment takes no more rounds (they would not be marked).
    pub(crate) version: gridlog_common::segment::FormatVersion,
    /// The salt of its round commits (its header's CRC).
    pub(crate) salt: u32,
    /// A recycled file: bytes of its earlier use follow `data_end`.
    pub(crate) recycled: bool,
    pub(crate) sealed: bool,
}

#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) log_id: Option<[u8; 16]>,
    pub(crate) segments: Vec<RecoveredSegment>,
    pub(crate) next_offset: Offset,
    pub(crate) report: RecoveryReport,
}

/// A file in `wal/`, classified.
pub(crate) enum WalEntry {
    Segment(Offset, PathBuf),
    Prealloc(PathBuf),
    /// A removed segment kept for reuse (`spare.tmp`): not part of the log.
    Spare,
    Quarantine,
    Unexpected(PathBuf),
}

pub(crate) fn list_wal_dir(wal_dir: &Path) -> io::Result<Vec<WalEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(wal_dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_file = entry.file_type()?.is_file();
        entries.push(match parse_segment_file_name(&name) {
            Some(first) if is_file => WalEntry::Segment(first, path),
            _ if name == PREALLOC_FILE_NAME && is_file => WalEntry::Prealloc(path),
            _ if name == SPARE_FILE_NAME && is_file => WalEntry::Spare,
            _ if name == QUARANTINE_DIR_NAME && !is_file => WalEntry::Quarantine,
            _ => WalEntry::Unexpected(path),
        });
    }
    entries.sort_by_key(|e| match e {
        WalEntry::Segment(first, _) => *first,
        _ => 0,
    });
    Ok(entries)
}

struct Recovery<'a> {
    io: &'a Io,
    wal_dir: &'a Path,
    mode: RecoveryMode,
    preallocation: super::segment::Preallocation,
    report: RecoveryReport,
    /// No segment is kept yet: damage now would leave no log to continue.
    nothing_kept: bool,
}

impl Recovery<'_> {
    fn io_err(&self, path: &Path) -> impl Fn(io::Error) -> OpenError + '_ {
        let path = path.to_path_buf();
        move |source| OpenError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Strict: an error. Quarantine: move `paths` aside and note why.
    fn damage(&mut self, damage: Damage, paths: &[PathBuf]) -> Result<(), OpenError> {
        if self.mode == RecoveryMode::Strict {
            return Err(OpenError::Corrupt { damage });
        }
        if self.nothing_kept {
            // Cutting here would leave no segment, and the log would start again at offset
            // 1 under a new id: snapshots and the archive would no longer belong to it, and
            // the history they hold would be unreachable (later overwritten). Refuse.
            return Err(OpenError::OldestSegmentDamaged { damage });
        }
        let quarantine = self.quarantine_dir()?;
        for path in paths {
            let target = quarantine_target(&quarantine, path);
            self.io.rename(path, &target).map_err(self.io_err(path))?;
            tracing::warn!(from = %path.display(), to = %target.display(), %damage, "moved damaged file to quarantine");
            self.report.quarantined.push((target, damage.clone()));
        }
        self.io
            .sync_dir(&quarantine)
            .map_err(self.io_err(&quarantine))?;
        self.io
            .sync_dir(self.wal_dir)
            .map_err(self.io_err(self.wal_dir))?;
        Ok(())
    }

    fn quarantine_dir(&self) -> Result<PathBuf, OpenError> {
        let quarantine = self.wal_dir.join(QUARANTINE_DIR_NAME);
        self.io
            .create_dir_durably(&quarantine)
            .map_err(|(path, source)| OpenError::Io { path, source })?;
        Ok(quarantine)
    }

    /// Quarantine helper for a segment damaged at `position`: keep its valid prefix in the
    /// log and the whole original in quarantine. The segment's name is never missing from
    /// `wal/`: the prefix is made durable under a temporary name, a copy of the original
    /// durable in quarantine, and only then does the prefix replace the original (one
    /// rename). A crash at any step leaves the original in place, and the next start does
    /// it again; the leftover temporary file is removed then.
    fn cut_segment(
        &mut self,
        path: &Path,
        original: &[u8],
        prefix_len: usize,
        segment_bytes: u64,
        damage: Damage,
    ) -> Result<(), OpenError> {
        if self.mode == RecoveryMode::Strict {
            return Err(OpenError::Corrupt { damage });
        }
        let tmp = self.wal_dir.join(PREALLOC_FILE_NAME);
        let file = preallocate(self.io, &tmp, segment_bytes, self.preallocation)
            .map_err(self.io_err(&tmp))?;
        self.io
            .write_all_at(&file, &tmp, 0, &original[..prefix_len])
            .map_err(self.io_err(&tmp))?;
        self.io.sync_data(&file, &tmp).map_err(self.io_err(&tmp))?;
        let quarantine = self.quarantine_dir()?;
        let target = quarantine_target(&quarantine, path);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.io
            .write_file_atomically(&quarantine, &name, &[original])
            .map_err(|(path, source)| OpenError::Io { path, source })?;
        self.io.rename(&tmp, path).map_err(self.io_err(path))?;
        self.io
            .sync_dir(self.wal_dir)
            .map_err(self.io_err(self.wal_dir))?;
        tracing::warn!(segment = %path.display(), copy = %target.display(), %damage, "cut a damaged segment at its last valid frame; the original is in quarantine");
        self.report.quarantined.push((target, damage));
        Ok(())
    }
}

/// How a scanned segment ends, once recovery has dealt with its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It ends with a footer.
    Sealed,
    /// It is the last segment and ends cleanly (a torn tail zeroed): appends go on in it.
    Open,
    /// Damage: quarantine cut it at its last valid frame. The log ends with it; if
    /// `later_damaged`, the segments after it are damage too (a segment before the last
    /// one should have been sealed).
    Cut { later_damaged: bool },
}

impl Recovery<'_> {
    /// Deals with the end of a scanned segment (`bytes`, `len` bytes on disk): a footer, a
    /// clean or torn tail of the last segment, or damage (refused, or cut in quarantine).
    fn settle(
        &mut self,
        file: &File,
        path: &Path,
        bytes: &[u8],
        scan: &SegmentScan,
        len: u64,
        is_last: bool,
    ) -> Result<Settled, OpenError> {
        let committed_end = scan.data_end as usize;
        let (position, reason, later_damaged) = match &scan.stop {
            ScanStop::Footer => return Ok(Settled::Sealed),
            ScanStop::End | ScanStop::Invalid { .. } if is_last => {
                match classify_last_segment(bytes, scan) {
                    Tail::Clean | Tail::Stale => return Ok(Settled::Open),
                    Tail::Torn(reason) => {
                        let end = torn_tail_end(&scan.header, bytes, committed_end);
                        self.zero_torn_tail(file, path, committed_end..end, &reason)?;
                        return Ok(Settled::Open);
                    }
                    Tail::Damage(position, reason) => (position, reason, false),
                }
            }
            // Not the last segment: it should have been sealed before the next one began.
            ScanStop::Invalid { position, reason } => (*position, reason.clone(), true),
            ScanStop::End => (
                scan.data_end,
                "segment is not sealed but is not the last one".to_string(),
                true,
            ),
        };
        let damage = Damage {
            path: path.to_path_buf(),
            position,
            reason,
        };
        self.cut_segment(path, bytes, committed_end, len, damage)?;
        Ok(Settled::Cut { later_damaged })
    }

    /// Opens a segment file for recovery with its length; `None` (after [`Self::damage`]
    /// of it and `later`) if it is shorter than a header.
    fn open_segment(
        &mut self,
        path: &Path,
        later: &[PathBuf],
    ) -> Result<Option<(File, u64)>, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(self.io_err(path))?;
        let len = file.metadata().map_err(self.io_err(path))?.len();
        if len < SEGMENT_HEADER_BYTES as u64 {
            let reason = format!("segment file of {len} bytes is shorter than its header");
            let damage = Damage {
                path: path.to_path_buf(),
                position: 0,
                reason,
            };
            self.damage(damage, later)?;
            return Ok(None);
        }
        Ok(Some((file, len)))
    }

    /// The segment files of `wal/` by first offset. A leftover preallocation is removed
    /// (it never held a record); any other file is damage.
    fn segment_files(&mut self) -> Result<Vec<(Offset, PathBuf)>, OpenError> {
        let entries = list_wal_dir(self.wal_dir).map_err(self.io_err(self.wal_dir))?;
        let mut segment_paths = Vec::new();
        for entry in entries {
            match entry {
                WalEntry::Segment(first, path) => segment_paths.push((first, path)),
                WalEntry::Prealloc(path) => {
                    self.io.remove(&path).map_err(self.io_err(&path))?;
                    self.io
                        .sync_dir(self.wal_dir)
                        .map_err(self.io_err(self.wal_dir))?;
                    self.report.removed_prealloc = true;
                }
                WalEntry::Quarantine | WalEntry::Spare => {}
                WalEntry::Unexpected(path) => {
                    let damage = Damage {
                        path: path.clone(),
                        position: 0,
                        reason: "unexpected file in wal/ (not a segment of this log)".into(),
                    };
                    self.damage(damage, &[path])?;
                }
            }
        }
        Ok(segment_paths)
    }

    /// Zeroes the torn tail `range` of the last segment (from its committed end to where
    /// [`torn_tail_end`] says: a write a crash cut short, never acknowledged), durably.
    fn zero_torn_tail(
        &mut self,
        file: &File,
        path: &Path,
        range: std::ops::Range<usize>,
        reason: &str,
    ) -> Result<(), OpenError> {
        let committed_end = range.start;
        let torn = range.len() as u64;
        self.io
            .write_zeros(file, path, committed_end as u64, torn)
            .map_err(self.io_err(path))?;
        self.io.sync_data(file, path).map_err(self.io_err(path))?;
        tracing::warn!(path = %path.display(), position = committed_end, bytes = torn, %reason, "zeroed the torn tail of the log (never acknowledged)");
        self.report.torn_tail = Some((path.to_path_buf(), committed_end as u64, torn));
        Ok(())
    }
}

/// What is wrong with a segment's header given its name and the segments before it: a
/// first offset other than its name's, another log's id, or a gap after the previous one.
fn header_problem(
    path: &Path,
    name_offset: Offset,
    scan: &SegmentScan,
    log_id: Option<[u8; 16]>,
    next_offset: Option<Offset>,
) -> Option<Damage> {
    let reason = if scan.header.first_offset != name_offset {
        format!(
            "header says first offset {} but the name says {name_offset}",
            scan.header.first_offset
        )
    } else if log_id.is_some_and(|id| id != scan.header.log_id) {
        "segment belongs to another log (log id differs)".into()
    } else if let Some(expected) = next_offset.filter(|&n| n != scan.header.first_offset) {
        format!(
            "missing segment: offsets {expected}..{} are in no segment",
            scan.header.first_offset
        )
    } else {
        return None;
    };
    Some(Damage {
        path: path.to_path_buf(),
        position: 0,
        reason,
    })
}

/// A free name in `quarantine` for the file at `path` (its own name, or with `.1`, `.2` …).
fn quarantine_target(quarantine: &Path, path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut target = quarantine.join(&name);
    let mut n = 1;
    while target.exists() {
        target = quarantine.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    target
}

/// Recovers the log in `wal_dir` (see the module docs).
pub(crate) fn recover(
    io: &Io,
    wal_dir: &Path,
    mode: RecoveryMode,
    preallocation: super::segment::Preallocation,
) -> Result<Recovered, OpenError> {
    let mut rec = Recovery {
        io,
        wal_dir,
        mode,
        preallocation,
        report: RecoveryReport::default(),
        // A stray file in wal/ is moved aside before the segments are read.
        nothing_kept: false,
    };
    let segment_paths = rec.segment_files()?;

    let mut segments: Vec<RecoveredSegment> = Vec::new();
    let mut log_id: Option<[u8; 16]> = None;
    let mut next_offset = None;
    let count = segment_paths.len();
    for (i, (name_offset, path)) in segment_paths.iter().enumerate() {
        rec.nothing_kept = segments.is_empty();
        let later: Vec<PathBuf> = segment_paths[i..].iter().map(|(_, p)| p.clone()).collect();
        let is_last = i + 1 == count;
        let Some((file, len)) = rec.open_segment(path, &later)? else {
            break;
        };
        let map = SegmentMap::new(&file).map_err(rec.io_err(path))?;
        // During recovery nothing else touches the file, so the whole map is stable.
        let bytes = map.prefix(map.len());
        let scan = match scan_segment(bytes) {
            Ok(scan) => scan,
            Err((position, reason)) => {
                rec.damage(
                    Damage {
                        path: path.clone(),
                        position,
                        reason,
                    },
                    &later,
                )?;
                break;
            }
        };
        if let Some(damage) = header_problem(path, *name_offset, &scan, log_id, next_offset) {
            rec.damage(damage, &later)?;
            break;
        }
        log_id = Some(scan.header.log_id);
        let settled = rec.settle(&file, path, bytes, &scan, len, is_last)?;
        drop(map);
        next_offset = Some(scan.next_offset);
        match settled {
            Settled::Sealed | Settled::Open => {
                let sealed = settled == Settled::Sealed;
                segments.push(recovered(path, file, &scan, sealed));
            }
            Settled::Cut { later_damaged } => {
                segments.push(recovered(path, reopen(&rec, path)?, &scan, false));
                rec.nothing_kept = false;
                if later_damaged {
                    rec.damage_rest(&segment_paths[i + 1..])?;
                }
                break;
            }
        }
    }
    rec.report.segments = segments.len();
    rec.report.records = segments
        .iter()
        .map(|s| s.next_offset - s.first_offset)
        .sum();
    Ok(Recovered {
        log_id,
        next_offset: next_offset.unwrap_or(FIRST_OFFSET),
        segments,
        report: rec.report,
    })
}

impl Recovery<'_> {
    /// After a cut, the later segments cannot be part of a gap-free log.
    fn damage_rest(&mut self, rest: &[(Offset, PathBuf)]) -> Result<(), OpenError> {
        let Some((_, first)) = rest.first() else {
            return Ok(());
        };
        let paths: Vec<PathBuf> = rest.iter().map(|(_, p)| p.clone()).collect();
        let damage = Damage {
            path: first.clone(),
            position: 0,
            reason: "follows a damaged segment; cut from the log".into(),
        };
        self.damage(damage, &paths)
    }
}

fn reopen(rec: &Recovery<'_>, path: &Path) -> Result<File, OpenError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(rec.io_err(path))
}

fn recovered(
    path: &Path,
    file: File,
    scan: &super::segment::SegmentScan,
    sealed: bool,
) -> RecoveredSegment {
    RecoveredSegment {
        path: path.to_path_buf(),
        file,
        first_offset: scan.header.first_offset,
        next_offset: scan.next_offset,
        data_end: scan.data_end,
        durable_end: if sealed {
            scan.durable_end
        } else {
            scan.data_end
        },
        frame_count: scan.frame_count,
        segment_bytes: scan.header.segment_bytes,
        round_bytes: scan.header.round_bytes,
        version: scan.header.version,
        salt: scan.header.salt(),
        recycled: scan.header.recycled,
        sealed,
    }
}
