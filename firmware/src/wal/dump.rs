//! `dump`: the records of a log, read without opening it — no lock, no repair, no memory map.
//!
//! For looking into a data directory (`gridlog dump`, tests, support), whether its gateway is
//! stopped or running. Unlike [`super::Wal::open`] it changes nothing and takes no lock; unlike
//! the cursor it reads segment files with plain positioned reads into its own buffer, never
//! through a memory map, so a writer appending beside it can at worst make it see a torn tail
//! (reported as such), never bytes changing under a shared slice.
//!
//! It checks what it reads exactly as [`super::verify`] does — every frame's CRC and body,
//! offset continuity, footers, the log id — and classifies where reading stops the same way:
//! - a clean end (zeros after the last frame of the last segment) or a sealed last segment:
//!   `Ok`;
//! - a torn tail of the last segment (a write in flight when the power went, never
//!   acknowledged): `Ok`, with the place in [`DumpSummary::torn_tail`];
//! - anything else: [`DumpError::Corrupt`] with file and byte position, after every record
//!   before the damage was passed on.
//!
//! Segments that lie wholly before `from` are not read at all, so damage there is not seen:
//! [`super::verify`] is the tool for checking a whole log.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gridlog_common::batch::COMMIT_FRAME_BYTES_MAX;
use gridlog_common::frame::{frame_len, FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};
use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use gridlog_common::Offset;

use super::error::Damage;
use super::recovery::{list_wal_dir, WalEntry};
use super::segment::{
    classify_recycled, classify_tail, frame_at, torn_tail_window, FrameAt, RecycledTail, Step,
    Tail, Walk,
};
use super::WAL_DIR_NAME;

/// Bytes read from a segment file at a time: 1 MiB. Bounds the reader's memory (together with
/// the largest frame, which is read whole) and keeps the number of reads small.
pub const DUMP_READ_BYTES: usize = 1 << 20;

/// What a dump read, and where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Records passed to the callback.
    pub records: u64,
    /// The oldest offset in the hot log (the first segment's), if there is a segment.
    pub oldest_offset: Option<Offset>,
    /// One past the last valid record read, if any segment was read.
    pub next_offset: Option<Offset>,
    /// Segment files read.
    pub segments_read: usize,
    /// The callback asked to stop before the end of the log.
    pub stopped: bool,
    /// A torn tail of the last segment where reading stopped (never acknowledged; the next
    /// open zeroes it).
    pub torn_tail: Option<Damage>,
}

/// Why a dump did not reach the end of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// Damage a crash cannot explain. Every record before it was passed on.
    #[error("corrupt log: {0}")]
    Corrupt(Damage),
    /// A file or directory could not be read.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// What [`read_log`] passes on, in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DumpItem<'a> {
    /// A record and its offset.
    Record(Offset, &'a [u8]),
    /// The end of a write round of a format-2 segment, after its records: the round took
    /// bytes `start..end` of `segment` (its commit included) and its last record is
    /// `next_offset - 1`.
    RoundEnd {
        /// The segment file.
        segment: &'a Path,
        /// Byte position of the round's first frame.
        start: u64,
        /// Byte position just past its commit (a multiple of 512).
        end: u64,
        /// One past the round's last record.
        next_offset: Offset,
    },
}

/// Passes every record of the log in `data_dir` with an offset of at least `from` to `f`, in
/// offset order, until the end of the log or until `f` breaks.
///
/// See the module docs for what is checked and how a torn tail and damage are told apart.
pub fn read_records<F>(data_dir: &Path, from: Offset, mut f: F) -> Result<DumpSummary, DumpError>
where
    F: FnMut(Offset, &[u8]) -> ControlFlow<()>,
{
    read_log(data_dir, from, |item| match item {
        DumpItem::Record(offset, bytes) => f(offset, bytes),
        DumpItem::RoundEnd { .. } => ControlFlow::Continue(()),
    })
}

/// [`read_records`], with the end of every write round (of a format-2 segment) whose records
/// reach `from` passed on too, after its records.
pub fn read_log<F>(data_dir: &Path, from: Offset, mut f: F) -> Result<DumpSummary, DumpError>
where
    F: FnMut(DumpItem<'_>) -> ControlFlow<()>,
{
    let wal_dir = data_dir.join(WAL_DIR_NAME);
    let entries = list_wal_dir(&wal_dir).map_err(|source| DumpError::Io {
        path: wal_dir.clone(),
        source,
    })?;
    let mut segments = Vec::new();
    for entry in entries {
        match entry {
            WalEntry::Segment(first, path) => segments.push((first, path)),
            WalEntry::Unexpected(path) => {
                tracing::warn!(path = %path.display(), "unexpected file in wal/ (verify reports it)");
            }
            WalEntry::Prealloc(_) | WalEntry::Spare | WalEntry::Quarantine => {}
        }
    }
    let mut summary = DumpSummary {
        oldest_offset: segments.first().map(|(first, _)| *first),
        ..DumpSummary::default()
    };
    // The last segment whose name says it starts at or before `from`: earlier ones hold only
    // records below `from`.
    let start = segments
        .partition_point(|(first, _)| *first <= from)
        .saturating_sub(1);
    let mut expected_first: Option<Offset> = None;
    let mut log_id: Option<[u8; 16]> = None;
    for (i, (name_offset, path)) in segments.iter().enumerate().skip(start) {
        let is_last = i + 1 == segments.len();
        let mut file = SegmentFile::open(path)?;
        summary.segments_read += 1;
        let header = file.header()?;
        let at_start = |reason: String| {
            DumpError::Corrupt(Damage {
                path: path.clone(),
                position: 0,
                reason,
            })
        };
        if header.first_offset != *name_offset {
            let wrong = Err(at_start(format!(
                "header says first offset {} but the name says {name_offset}",
                header.first_offset
            )));
            return file.checked_name(wrong);
        }
        if log_id.is_some_and(|id| id != header.log_id) {
            return Err(at_start("segment belongs to another log".into()));
        }
        log_id = Some(header.log_id);
        if let Some(expected) = expected_first.filter(|&n| n != header.first_offset) {
            return Err(at_start(format!(
                "missing segment: offsets {expected}..{} are in no segment",
                header.first_offset
            )));
        }

        // Batch frames of the round being read: passed on once its commit is read (a
        // version-1 segment commits every frame), since a round without its commit was never
        // acknowledged and the next open zeroes it.
        // (Position and first offset of each.)
        let mut round: Vec<(u64, Offset)> = Vec::new();
        let mut walk = Walk::new(header);
        // Where reading this segment stopped: `None` at a valid footer, else the position and,
        // for an invalid frame, why.
        let stop: Option<(u64, Option<String>)> = loop {
            let pos = walk.pos;
            let round_start = walk.committed.pos;
            let frame = file.frame(pos)?;
            let batch_first = match &frame {
                FrameAt::Batch { view, .. } => Some(view.first_offset),
                _ => None,
            };
            let is_batch = batch_first.is_some();
            match walk.step(frame) {
                Step::Frame => {
                    if let Some(first) = batch_first {
                        round.push((pos, first));
                    }
                    if walk.committed() {
                        let passed = pass_on(&mut file, &round, from, &mut summary, &mut f);
                        if file.checked(&header, passed)?.is_break() {
                            return Ok(summary);
                        }
                        round.clear();
                        let end = walk.committed;
                        let round_end = DumpItem::RoundEnd {
                            segment: path,
                            start: round_start,
                            end: end.pos,
                            next_offset: end.next_offset,
                        };
                        if !is_batch && end.next_offset > from && f(round_end).is_break() {
                            summary.stopped = true;
                            summary.next_offset = Some(end.next_offset);
                            return Ok(summary);
                        }
                    }
                }
                Step::Footer(_) => break None,
                Step::End => break Some((pos, None)),
                Step::Invalid(reason) => break Some((pos, Some(reason))),
            }
        };
        let committed = walk.committed;
        summary.next_offset = Some(committed.next_offset);
        expected_first = Some(committed.next_offset);
        let Some((stop_at, invalid)) = stop else {
            continue; // sealed
        };
        if !is_last {
            let reason = invalid
                .unwrap_or_else(|| "segment is not sealed but is not the last one".to_string());
            return file.checked(
                &header,
                Err(DumpError::Corrupt(Damage {
                    path: path.clone(),
                    position: stop_at,
                    reason,
                })),
            );
        }
        // The last segment: what follows the last complete round decides between a clean
        // end, a torn tail and damage, by the same rule as recovery.
        let tail = if header.recycled {
            let facts = file.recycled_tail(&header, committed.pos, stop_at)?;
            classify_recycled(committed.pos, stop_at, invalid.as_deref(), &facts)
        } else {
            let window_bytes = torn_tail_window(&header);
            let window = file.bytes(committed.pos, window_bytes)?.to_vec();
            let more_nonzero = file.any_nonzero_from(committed.pos + window.len() as u64)?;
            classify_tail(
                &header,
                committed.pos,
                stop_at,
                invalid.as_deref(),
                &window,
                more_nonzero,
            )
        };
        match tail {
            Tail::Clean | Tail::Stale => {}
            Tail::Torn(reason) => {
                summary.torn_tail = Some(Damage {
                    path: path.clone(),
                    position: committed.pos,
                    reason,
                })
            }
            Tail::Damage(position, reason) => {
                let damage = Err(DumpError::Corrupt(Damage {
                    path: path.clone(),
                    position,
                    reason,
                }));
                return file.checked(&header, damage);
            }
        }
    }
    Ok(summary)
}

/// Passes on the records of the batch frames at `positions` (one committed round, with
/// each frame's first offset) that are at `from` or later; breaks when `f` does, with the
/// summary saying where it stopped. A frame read again must be the one walked: beside a
/// running gateway, a segment archived meanwhile may have been recycled and rewritten.
fn pass_on<F>(
    file: &mut SegmentFile<'_>,
    positions: &[(u64, Offset)],
    from: Offset,
    summary: &mut DumpSummary,
    f: &mut F,
) -> Result<ControlFlow<()>, DumpError>
where
    F: FnMut(DumpItem<'_>) -> ControlFlow<()>,
{
    for &(pos, first) in positions {
        let path = file.path.to_path_buf();
        let view = match file.frame(pos)? {
            FrameAt::Batch { view, .. } if view.first_offset == first => view,
            _ => {
                return Err(DumpError::Corrupt(Damage {
                    path,
                    position: pos,
                    reason: "the batch frame read here a moment ago changed".into(),
                }))
            }
        };
        if view.next_offset() <= from {
            continue;
        }
        for (offset, record) in view.records().filter(|(offset, _)| *offset >= from) {
            summary.records += 1;
            if f(DumpItem::Record(offset, record)).is_break() {
                summary.stopped = true;
                summary.next_offset = Some(offset + 1);
                return Ok(ControlFlow::Break(()));
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// A segment file read through a read-ahead buffer.
struct SegmentFile<'a> {
    path: &'a Path,
    file: File,
    len: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_at: u64,
}

impl<'a> SegmentFile<'a> {
    fn open(path: &'a Path) -> Result<SegmentFile<'a>, DumpError> {
        let io_err = |source| DumpError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        Ok(SegmentFile {
            path,
            file,
            len,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    fn io_err(&self, source: io::Error) -> DumpError {
        DumpError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// The bytes at `pos .. pos + want`, cut at the end of the file.
    fn bytes(&mut self, pos: u64, want: usize) -> Result<&[u8], DumpError> {
        let pos = pos.min(self.len);
        let end = pos.saturating_add(want as u64).min(self.len);
        let buf_end = self.buf_at + self.buf.len() as u64;
        if pos < self.buf_at || end > buf_end {
            let fill = (end - pos).max(DUMP_READ_BYTES as u64).min(self.len - pos);
            self.buf.resize(fill as usize, 0);
            self.buf_at = pos;
            if let Err(source) = self.file.read_exact_at(&mut self.buf, pos) {
                self.buf.clear();
                return Err(self.io_err(source));
            }
        }
        let start = (pos - self.buf_at) as usize;
        Ok(&self.buf[start..start + (end - pos) as usize])
    }

    /// The decoded and checked segment header.
    fn header(&mut self) -> Result<SegmentHeader, DumpError> {
        let (len, path) = (self.len, self.path);
        let corrupt = |reason: String| {
            DumpError::Corrupt(Damage {
                path: path.to_path_buf(),
                position: 0,
                reason,
            })
        };
        if len < SEGMENT_HEADER_BYTES as u64 {
            return Err(corrupt(format!(
                "segment file of {len} bytes is shorter than its header"
            )));
        }
        let bytes = self.bytes(0, SEGMENT_HEADER_BYTES)?;
        let header = SegmentHeader::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.segment_bytes != len {
            return Err(corrupt(format!(
                "header says {} bytes but the file has {len}",
                header.segment_bytes
            )));
        }
        Ok(header)
    }

    /// What stands at byte `pos`: reads the frame's header, then the whole frame.
    fn frame(&mut self, pos: u64) -> Result<FrameAt<'_>, DumpError> {
        let header = self.bytes(pos, FRAME_HEADER_BYTES)?;
        let body_len = match header.get(..4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
            _ => 0,
        };
        // A length out of range is reported from the header alone, without reading on.
        let want = if (1..=FRAME_BODY_BYTES_MAX).contains(&body_len) {
            frame_len(body_len)
        } else {
            FRAME_HEADER_BYTES
        };
        let bytes = self.bytes(pos, want)?;
        Ok(frame_at(bytes, 0))
    }

    /// `result`, unless the segment headed by `header` no longer is (read again from the
    /// file): beside a running gateway, a segment archived meanwhile may have been recycled
    /// and rewritten while it was read, which is an error to retry, not damage.
    fn checked<T>(
        &self,
        header: &SegmentHeader,
        result: Result<T, DumpError>,
    ) -> Result<T, DumpError> {
        if result.is_ok() {
            return result;
        }
        let mut now = [0u8; SEGMENT_HEADER_BYTES];
        let read = self.file.read_exact_at(&mut now, 0);
        if read.is_err() || now != header.encode() {
            return Err(self.io_err(super::verify::recycled_while_read(self.path)));
        }
        result
    }

    /// `result` (a header that does not name the file's offset), unless the file is no longer
    /// at its path: recycling renames a segment before it gives it a new header.
    fn checked_name<T>(&self, result: Result<T, DumpError>) -> Result<T, DumpError> {
        if super::verify::still_at(&self.file, self.path) {
            result
        } else {
            Err(self.io_err(super::verify::recycled_while_read(self.path)))
        }
    }

    /// What the bytes from `pos` (a recycled segment's committed end) to the end of the
    /// file hold of the segment `header` heads, read a buffer at a time.
    fn recycled_tail(
        &mut self,
        header: &SegmentHeader,
        mut pos: u64,
        stop_at: u64,
    ) -> Result<RecycledTail, DumpError> {
        let mut facts = RecycledTail::default();
        while pos < self.len {
            // Overlapping by the longest commit, so each commit is whole in its piece.
            let piece = self.bytes(pos, DUMP_READ_BYTES + COMMIT_FRAME_BYTES_MAX)?;
            let starts = DUMP_READ_BYTES.min(piece.len());
            facts.take_in(header, pos, piece, 0..starts, stop_at);
            pos += starts as u64;
        }
        Ok(facts)
    }

    /// Whether any byte from `pos` to the end of the file is not zero.
    fn any_nonzero_from(&mut self, mut pos: u64) -> Result<bool, DumpError> {
        while pos < self.len {
            let chunk = self.bytes(pos, DUMP_READ_BYTES)?;
            if chunk.iter().any(|&b| b != 0) {
                return Ok(true);
            }
            pos += chunk.len() as u64;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{verify, Wal, WalOptions};

    fn collect(dir: &Path, from: Offset) -> (Vec<(Offset, Vec<u8>)>, DumpSummary) {
        let mut out = Vec::new();
        let summary = read_records(dir, from, |offset, bytes| {
            out.push((offset, bytes.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        (out, summary)
    }

    fn record(i: u64) -> Vec<u8> {
        format!("record {i} {}", "y".repeat((i % 70) as usize)).into_bytes()
    }

    #[test]
    fn reads_what_was_appended_from_any_offset_beside_an_open_log() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default().segment_bytes(4096)).unwrap();
        let mut next = 1u64;
        for n in 1..=200u64 {
            let batch: Vec<Vec<u8>> = (0..n % 4 + 1).map(|k| record(next + k)).collect();
            next = wal.append(&batch).unwrap().next_offset;
        }
        assert!(wal.segments().len() > 3);
        // The log is open (and locked): dump reads it all the same.
        for from in [0, 1, 2, 77, next - 1, next, next + 5] {
            let (records, summary) = collect(dir.path(), from);
            let expected: Vec<(Offset, Vec<u8>)> =
                (from.max(1)..next).map(|o| (o, record(o))).collect();
            assert_eq!(records, expected, "from {from}");
            assert_eq!(summary.next_offset, Some(next));
            assert_eq!(summary.torn_tail, None);
            assert!(!summary.stopped);
        }
        wal.close().unwrap();
        assert!(verify(dir.path()).unwrap().is_clean());
    }

    #[test]
    fn a_break_stops_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default().segment_bytes(4096)).unwrap();
        for i in 1..=10 {
            wal.append(&[record(i)]).unwrap();
        }
        let mut seen = Vec::new();
        let summary = read_records(dir.path(), 3, |offset, _| {
            seen.push(offset);
            if offset == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, [3, 4, 5]);
        assert!(summary.stopped);
        assert_eq!(summary.records, 3);
    }

    #[test]
    fn a_missing_log_is_an_io_error_and_an_empty_one_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_records(dir.path(), 1, |_, _| ControlFlow::Continue(())),
            Err(DumpError::Io { .. })
        ));
        std::fs::create_dir(dir.path().join(WAL_DIR_NAME)).unwrap();
        let (records, summary) = collect(dir.path(), 1);
        assert!(records.is_empty());
        assert_eq!(summary.segments_read, 0);
    }
}
