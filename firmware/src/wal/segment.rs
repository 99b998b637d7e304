//! Segment files: naming, creation (zero-filled preallocation), and scanning their frames.
//!
//! A segment is `wal/<first offset, 20 digits>.seg`, preallocated to `segment_bytes` with
//! zeros. Layout (see `gridlog_common::segment` and `docs/FORMAT.md`):
//!
//! ```text
//! | header 64 B | frame | frame | ... | frame | [footer frame] | zeros ... |
//! ```
//!
//! Preallocation reserves the file's blocks with `fallocate` by default ([`Preallocation`]):
//! they read as zeros, a full disk shows at preallocation rather than at a write, and each
//! byte of the log is written once. Writing real zeros instead (the former default,
//! `Preallocation::ZeroFill`) spares the sync the metadata of a block's first write but
//! writes every segment twice; docs/BENCHMARKS.md measures both.
//!
//! A recycled segment (see `spare`) has the bytes of the file's earlier use after the log's
//! end; they carry older offsets and another salt, so no reader takes them for this log
//! ([`classify_tail`]).
//!
//! One file on purpose: one segment format's rules (the walk over frames and round commits,
//! and how a tail is classified) shared by recovery, verify and dump, so the three never
//! disagree.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gridlog_common::batch::{self, BatchView, Body, Commit, Footer, COMMIT_BODY_PREFIX};
use gridlog_common::frame::{self, FrameError};
use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use gridlog_common::Offset;

use super::io::Io;
use crate::mmap::SegmentMap;

/// Bytes kept free at the end of every segment for its footer frame (with an empty index).
pub(crate) const FOOTER_RESERVE_BYTES: usize = 64;

/// Name of the file the preallocator fills before it becomes the next segment.
pub(crate) const PREALLOC_FILE_NAME: &str = "prealloc.tmp";

/// File name of the segment whose first record is `first_offset`.
pub(crate) fn segment_file_name(first_offset: Offset) -> String {
    format!("{first_offset:020}.seg")
}

/// The first offset a segment file name stands for, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates `path` at `segment_bytes` of zeros with its blocks reserved, then syncs it: the
/// preallocation. [`Preallocation::Fallocate`] reserves the blocks without writing them
/// (falling back to writing zeros where the file system cannot); [`Preallocation::ZeroFill`]
/// writes the zeros.
pub(crate) fn preallocate(
    io: &Io,
    path: &Path,
    segment_bytes: u64,
    how: Preallocation,
) -> io::Result<File> {
    if path.exists() {
        io.remove(path)?;
    }
    let file = io.create_new(path)?;
    let allocated = match how {
        Preallocation::Fallocate => match io.allocate(&file, path, segment_bytes) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => false,
            Err(e) => return Err(e),
        },
        Preallocation::ZeroFill => false,
    };
    if !allocated {
        io.write_zeros(&file, path, 0, segment_bytes)?;
    }
    io.sync_data(&file, path)?;
    Ok(file)
}

/// How a segment file gets its size before it is used (`wal.preallocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Preallocation {
    /// `fallocate`: the blocks are reserved (a full disk shows here, never at a write) and
    /// read as zeros, but nothing is written, so every byte of the log reaches the flash
    /// once. The first write into a block also records that the block is in use, which the
    /// round's `fdatasync` commits. The default (see docs/BENCHMARKS.md).
    #[default]
    Fallocate,
    /// Zeros written and synced: every byte is written twice (zeros, then the log), but a
    /// sync after overwriting them changes no file-system metadata.
    ZeroFill,
}

/// Turns a preallocated file into segment `first_offset`: header, sync, rename, sync dir.
///
/// A crash before the rename leaves only `prealloc.tmp` (removed at open); after it, a
/// segment with a durable header and no frames, which recovery accepts as the last segment.
pub(crate) fn install_segment(
    io: &Io,
    wal_dir: &Path,
    prealloc_path: &Path,
    file: &File,
    header: &SegmentHeader,
    step: &mut InstallStep<'_>,
) -> io::Result<PathBuf> {
    step(&mut || io.write_all_at(file, prealloc_path, 0, &header.encode()))?;
    step(&mut || io.sync_data(file, prealloc_path))?;
    let path = wal_dir.join(segment_file_name(header.first_offset));
    step(&mut || io.rename(prealloc_path, &path))?;
    step(&mut || io.sync_dir(wal_dir))?;
    Ok(path)
}

/// Runs one step of installing a segment: at once ([`run_once`]), or, in the running writer,
/// again after a pause while it fails for a shortage that passes by itself (no file handle
/// left to open the directory with, say). Each step may run again after it failed.
pub(crate) type InstallStep<'a> =
    dyn FnMut(&mut dyn FnMut() -> io::Result<()>) -> io::Result<()> + 'a;

/// An [`InstallStep`] runner that runs each step once.
pub(crate) fn run_once(op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
    op()
}

/// A segment as the running log holds it: mapped for reading, with the end of its durable
/// frames published by the writer.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) first_offset: Offset,
    map: SegmentMap,
    /// Byte position just past the last durable frame (footer included once sealed).
    durable_end: AtomicU64,
}

impl Segment {
    pub(crate) fn new(
        path: PathBuf,
        first_offset: Offset,
        file: &File,
        durable_end: u64,
    ) -> io::Result<Segment> {
        let map = SegmentMap::new(file)?;
        Ok(Segment {
            path,
            first_offset,
            map,
            durable_end: AtomicU64::new(durable_end),
        })
    }

    /// The bytes from the start of the file to the durable end.
    pub(crate) fn durable_bytes(&self) -> &[u8] {
        let end = self.durable_end.load(Ordering::Acquire) as usize;
        self.map.prefix(end)
    }

    /// Publishes more durable bytes. Only the writer calls this, after the sync.
    pub(crate) fn publish_durable_end(&self, end: u64) {
        debug_assert!(end as usize <= self.map.len());
        self.durable_end.store(end, Ordering::Release);
    }
}

/// What stands at a position of a segment.
#[derive(Debug)]
pub(crate) enum FrameAt<'a> {
    /// A valid batch frame of `len` bytes.
    Batch { view: BatchView<'a>, len: usize },
    /// A valid footer frame of `len` bytes.
    Footer { footer: Footer<'a>, len: usize },
    /// A valid round commit frame of `len` bytes (its salt and position not yet checked).
    Commit { commit: Commit, len: usize },
    /// Zeros: the end of written data.
    End,
    /// Something that is not a valid frame.
    Invalid(String),
}

/// Decodes the frame at `pos` of `bytes` (a segment file's bytes).
pub(crate) fn frame_at(bytes: &[u8], pos: usize) -> FrameAt<'_> {
    let rest = bytes.get(pos..).unwrap_or(&[]);
    if rest.is_empty() {
        return FrameAt::End;
    }
    match frame::decode(rest) {
        Ok(frame) => {
            let len = frame.encoded_len();
            match batch::decode_body(frame.body) {
                Ok(Body::Batch(view)) => FrameAt::Batch { view, len },
                Ok(Body::Footer(footer)) => FrameAt::Footer { footer, len },
                Ok(Body::Commit(commit)) => FrameAt::Commit { commit, len },
                Err(e) => FrameAt::Invalid(format!("frame with a valid CRC but a bad body: {e}")),
            }
        }
        Err(FrameError::End) => FrameAt::End,
        Err(e) => FrameAt::Invalid(e.to_string()),
    }
}

/// Where a scan of a segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// Zeros after the last frame: the segment is open (unsealed).
    End,
    /// A valid footer that agrees with the frames: the segment is sealed.
    Footer,
    /// Damage at byte `position`.
    Invalid { position: u64, reason: String },
}

/// The result of reading a segment's frames from the start.
///
/// In a version-2 segment the counts and ends are those of the last **committed** round:
/// valid batch frames after the last commit belong to a round whose write never finished
/// (its commit is in the same write and sync), so they were never acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    pub(crate) header: SegmentHeader,
    /// Byte position just past the last valid batch frame (version 2: the last commit).
    pub(crate) data_end: u64,
    /// Byte position past the footer if sealed, else `data_end`.
    pub(crate) durable_end: u64,
    pub(crate) next_offset: Offset,
    pub(crate) frame_count: u64,
    pub(crate) record_count: u64,
    /// Committed rounds (version 2; 0 in version 1).
    pub(crate) rounds: u64,
    /// Where the walk stopped: the first byte that is not a valid frame (or the footer).
    pub(crate) stop_at: u64,
    pub(crate) stop: ScanStop,
}

/// Reads the header and every frame of a segment file's bytes, checking each frame's CRC,
/// body, offset continuity and the footer's agreement with what precedes it.
pub(crate) fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, (u64, String)> {
    scan_segment_bytes(bytes, true)
}

/// [`scan_segment`] of a segment's bytes that may lack the zero padding (an archived copy
/// ends with its footer), when `whole_file` is false.
pub(crate) fn scan_segment_bytes(
    bytes: &[u8],
    whole_file: bool,
) -> Result<SegmentScan, (u64, String)> {
    let header = SegmentHeader::decode(bytes).map_err(|e| (0, e.to_string()))?;
    if whole_file && header.segment_bytes != bytes.len() as u64 {
        return Err((
            0,
            format!(
                "header says {} bytes but the file has {}",
                header.segment_bytes,
                bytes.len()
            ),
        ));
    }
    let mut walk = Walk::new(header);
    let mut scan = SegmentScan {
        header,
        data_end: SEGMENT_HEADER_BYTES as u64,
        durable_end: SEGMENT_HEADER_BYTES as u64,
        next_offset: header.first_offset,
        frame_count: 0,
        record_count: 0,
        rounds: 0,
        stop_at: SEGMENT_HEADER_BYTES as u64,
        stop: ScanStop::End,
    };
    loop {
        let pos = walk.pos;
        let step = walk.step(frame_at(bytes, pos as usize));
        if walk.committed() {
            scan.data_end = walk.committed.pos;
            scan.durable_end = walk.committed.pos;
            scan.next_offset = walk.committed.next_offset;
            scan.frame_count = walk.committed.frames;
            scan.record_count = walk.committed.records;
            scan.rounds = walk.committed.rounds;
        }
        match step {
            Step::Frame => continue,
            Step::Footer(len) => {
                scan.durable_end = pos + len as u64;
                scan.stop = ScanStop::Footer;
            }
            Step::End => scan.stop = ScanStop::End,
            Step::Invalid(reason) => {
                scan.stop = ScanStop::Invalid {
                    position: pos,
                    reason,
                }
            }
        }
        scan.stop_at = pos;
        return Ok(scan);
    }
}

/// Counts at a point of a segment walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalkPoint {
    /// Byte position.
    pub(crate) pos: u64,
    pub(crate) next_offset: Offset,
    /// Batch frames before `pos`.
    pub(crate) frames: u64,
    pub(crate) records: u64,
    /// Commits before `pos`.
    pub(crate) rounds: u64,
}

/// What one frame did to a [`Walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A valid batch or commit frame: go on.
    Frame,
    /// A valid footer of this many bytes that agrees with the frames before it.
    Footer(usize),
    /// Zeros: no more written data.
    End,
    /// Not a valid frame here, and why.
    Invalid(String),
}

/// The rules for walking a segment's frames in order, shared by every reader that checks
/// them (the scan of recovery and verify, and dump's buffered reads): offset continuity,
/// version 2's round commits (salt, own position, round start), and the footer's agreement.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    header: SegmentHeader,
    salt: u32,
    /// Where the next frame starts and the counts before it.
    pub(crate) pos: u64,
    next_offset: Offset,
    frames: u64,
    records: u64,
    /// The end of the last committed round (version 2), or of the last valid frame
    /// (version 1, where every frame counts as committed).
    pub(crate) committed: WalkPoint,
    just_committed: bool,
}

impl Walk {
    pub(crate) fn new(header: SegmentHeader) -> Walk {
        let start = WalkPoint {
            pos: SEGMENT_HEADER_BYTES as u64,
            next_offset: header.first_offset,
            frames: 0,
            records: 0,
            rounds: 0,
        };
        Walk {
            header,
            salt: header.salt(),
            pos: start.pos,
            next_offset: start.next_offset,
            frames: 0,
            records: 0,
            committed: start,
            just_committed: false,
        }
    }

    /// Whether the last step moved the committed point.
    pub(crate) fn committed(&self) -> bool {
        self.just_committed
    }

    /// Takes the frame found at `self.pos`.
    pub(crate) fn step(&mut self, frame: FrameAt<'_>) -> Step {
        self.just_committed = false;
        let marks_rounds = self.header.version.marks_rounds();
        match frame {
            FrameAt::Batch { view, len } => {
                if view.first_offset != self.next_offset {
                    return Step::Invalid(format!(
                        "frame starts at offset {} but offset {} was expected",
                        view.first_offset, self.next_offset
                    ));
                }
                self.pos += len as u64;
                self.next_offset = view.next_offset();
                self.frames += 1;
                self.records += view.count();
                if !marks_rounds {
                    self.commit();
                }
                Step::Frame
            }
            FrameAt::Commit { commit, len } => {
                if let Some(reason) = self.commit_problem(&commit) {
                    return Step::Invalid(reason);
                }
                self.pos += len as u64;
                self.commit();
                self.committed.rounds += 1;
                Step::Frame
            }
            FrameAt::Footer { footer, len } => {
                if self.pos != self.committed.pos {
                    return Step::Invalid(format!(
                        "footer after frames of a round that has no commit (round starts at byte {})",
                        self.committed.pos
                    ));
                }
                let expected = Footer {
                    first_offset: self.header.first_offset,
                    next_offset: self.next_offset,
                    frame_count: self.frames,
                    data_end: self.pos,
                    index: footer.index,
                };
                if footer != expected {
                    return Step::Invalid(format!(
                        "footer {footer:?} disagrees with the frames before it"
                    ));
                }
                Step::Footer(len)
            }
            FrameAt::End => Step::End,
            FrameAt::Invalid(reason) => Step::Invalid(reason),
        }
    }

    fn commit_problem(&self, commit: &Commit) -> Option<String> {
        if !self.header.version.marks_rounds() {
            return Some("round commit in a version-1 segment".into());
        }
        if commit.salt != self.salt {
            return Some(format!(
                "round commit of another segment (salt {:#010x}, this segment's is {:#010x})",
                commit.salt, self.salt
            ));
        }
        if commit.position != self.pos {
            return Some(format!(
                "round commit says it is at byte {} but it is at byte {}",
                commit.position, self.pos
            ));
        }
        if commit.round_start != self.committed.pos {
            return Some(format!(
                "round commit says its round starts at byte {} but the round starts at byte {}",
                commit.round_start, self.committed.pos
            ));
        }
        None
    }

    fn commit(&mut self) {
        self.committed = WalkPoint {
            pos: self.pos,
            next_offset: self.next_offset,
            frames: self.frames,
            records: self.records,
            rounds: self.committed.rounds,
        };
        self.just_committed = true;
    }
}

/// What the bytes after the committed end of a log's **last** segment are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing but zeros.
    Clean,
    /// (Recycled segment) bytes of the file's earlier use, and nothing of this segment's:
    /// no frame that continues its offsets, no commit with its salt. Left as they are.
    Stale,
    /// A torn write of the last round (never acknowledged): zero it. The reason says what
    /// was found.
    Torn(String),
    /// Damage a crash cannot explain, at the position given.
    Damage(u64, String),
}

/// Classifies what follows the committed end of a log's last segment.
///
/// - `committed_end`: where the last complete round ends (version 1: the last valid frame);
/// - `stop_at` and `invalid`: where the walk stopped, and why if not at zeros;
/// - `window`: the segment's bytes from `committed_end` on, at least up to
///   `committed_end + torn_tail_window` (or the end of the file; a recycled segment's: to
///   the end of the file), and `more_nonzero` whether any non-zero byte lies beyond what
///   `window` holds.
///
/// A crash can tear only the round that was being written, which starts at the committed end
/// and spans at most the torn-tail window. So non-zero bytes beyond the window are damage;
/// and in a version-2 segment, a valid commit after the stop whose round starts after it is
/// a later round, written only after the damaged bytes were synced and acknowledged: damage.
/// A recycled segment has bytes of its earlier use after its end: see [`classify_recycled`].
pub(crate) fn classify_tail(
    header: &SegmentHeader,
    committed_end: u64,
    stop_at: u64,
    invalid: Option<&str>,
    window: &[u8],
    more_nonzero: bool,
) -> Tail {
    let what = invalid.unwrap_or("zeros followed by data");
    if header.recycled {
        let mut facts = RecycledTail::default();
        facts.take_in(header, committed_end, window, 0..window.len(), stop_at);
        return classify_recycled(committed_end, stop_at, invalid, &facts);
    }
    let tear_bytes = torn_tail_window(header);
    let last_nonzero = window.iter().rposition(|&b| b != 0);
    if more_nonzero || last_nonzero.is_some_and(|last| last >= tear_bytes) {
        return Tail::Damage(
            stop_at,
            format!("{what}, with data after it further than one write round can reach"),
        );
    }
    if header.version.marks_rounds() {
        let from = (stop_at - committed_end) as usize;
        if let Some((at, round_start)) =
            commits_of(header, committed_end, window, from..window.len())
                .find(|&(_, round_start)| round_start > stop_at)
        {
            return later_round_damage(what, committed_end, stop_at, at, round_start);
        }
    }
    match last_nonzero {
        None => Tail::Clean,
        Some(_) if header.version.marks_rounds() => Tail::Torn(format!(
            "{what} in the last round (starts at byte {committed_end}, has no commit)"
        )),
        Some(_) => Tail::Torn(what.to_string()),
    }
}

fn later_round_damage(
    what: &str,
    committed_end: u64,
    stop_at: u64,
    at: u64,
    round_start: u64,
) -> Tail {
    Tail::Damage(
        stop_at,
        format!(
            "{what} in the round that starts at byte {committed_end}, and a later round \
             (starting at byte {round_start}, committed at byte {at}) follows: \
             acknowledged data, not a torn write"
        ),
    )
}

/// What the bytes after a recycled segment's committed end hold of the segment itself,
/// gathered over the whole rest of the file: at once ([`classify_tail`]) or in pieces
/// ([`RecycledTail::take_in`], as dump reads with a bounded buffer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecycledTail {
    /// The first commit of this segment at or after the stop whose round starts after the
    /// stop: (position, round start).
    later_round: Option<(u64, u64)>,
    /// The first commit of this segment at all.
    any_commit: Option<u64>,
    /// Whether any byte is not zero.
    any_nonzero: bool,
}

impl RecycledTail {
    /// Takes in `piece`, the file's bytes from position `base`, counting the commits that
    /// start at an index in `starts` (pieces read one after another overlap by
    /// `COMMIT_FRAME_BYTES_MAX`, so that each commit lies whole in the piece it starts in);
    /// `stop_at` is where the walk stopped.
    pub(crate) fn take_in(
        &mut self,
        header: &SegmentHeader,
        base: u64,
        piece: &[u8],
        starts: std::ops::Range<usize>,
        stop_at: u64,
    ) {
        let end = starts.end.min(piece.len());
        self.any_nonzero |= piece[starts.start.min(end)..end].iter().any(|&b| b != 0);
        for (at, round_start) in commits_of(header, base, piece, starts) {
            self.any_commit.get_or_insert(at);
            if round_start > stop_at && at >= stop_at && self.later_round.is_none() {
                self.later_round = Some((at, round_start));
            }
        }
    }
}

/// [`classify_tail`] of a recycled segment, from what the bytes after its committed end
/// hold of it (`facts`). Those bytes are mostly the file's earlier use's: older offsets and
/// commits with another salt, so only what belongs to this segment counts:
/// - a commit with this segment's salt, at or after the stop, whose round starts after the
///   stop: a later round followed the damaged bytes, so they were acknowledged: damage
///   (searched to the end of the file, since non-zero bytes beyond the torn-tail window
///   prove nothing here);
/// - frames that continue the offsets after the last commit (the walk stopped past the
///   committed end), or any other commit with this salt: the round in flight at a crash,
///   torn: zero the torn-tail window;
/// - nothing of this segment: [`Tail::Stale`] (or [`Tail::Clean`] if all zeros).
pub(crate) fn classify_recycled(
    committed_end: u64,
    stop_at: u64,
    invalid: Option<&str>,
    facts: &RecycledTail,
) -> Tail {
    let what = invalid.unwrap_or("zeros followed by data");
    if let Some((at, round_start)) = facts.later_round {
        return later_round_damage(what, committed_end, stop_at, at, round_start);
    }
    if stop_at > committed_end {
        return Tail::Torn(format!(
            "{what} in the last round (starts at byte {committed_end}, has no commit)"
        ));
    }
    if let Some(at) = facts.any_commit {
        return Tail::Torn(format!(
            "a commit of this segment at byte {at} after the last round (starts at byte \
             {committed_end}): the rest of a torn round"
        ));
    }
    if facts.any_nonzero {
        Tail::Stale
    } else {
        Tail::Clean
    }
}

/// How many bytes after the committed end the tail classification of a segment with
/// `header` looks at (of a file of `file_bytes`): the torn-tail window, or for a recycled
/// segment the whole rest of the file.
pub(crate) fn tail_window_end(header: &SegmentHeader, committed_end: u64, file_bytes: u64) -> u64 {
    if header.recycled {
        file_bytes
    } else {
        committed_end
            .saturating_add(torn_tail_window(header) as u64)
            .min(file_bytes)
    }
}

/// [`classify_tail`] for the last segment of a log whose whole file is `bytes`, scanned as
/// `scan` (which stopped at zeros or an invalid frame).
pub(crate) fn classify_last_segment(bytes: &[u8], scan: &SegmentScan) -> Tail {
    let committed_end = scan.data_end as usize;
    let window_end = tail_window_end(&scan.header, scan.data_end, bytes.len() as u64) as usize;
    let invalid = match &scan.stop {
        ScanStop::Invalid { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    classify_tail(
        &scan.header,
        scan.data_end,
        scan.stop_at,
        invalid,
        bytes.get(committed_end..window_end).unwrap_or(&[]),
        last_nonzero_from(bytes, window_end).is_some(),
    )
}

/// The valid commits of `header`'s segment (its salt, their own position) in `window`
/// (bytes from file position `base`) that start at an index in `starts`, in order, as
/// (position, round start). A commit whose round starts after the place a walk stopped
/// proves that a later round was written.
fn commits_of<'a>(
    header: &SegmentHeader,
    base: u64,
    window: &'a [u8],
    starts: std::ops::Range<usize>,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let salt = header.salt();
    let body_at = gridlog_common::frame::FRAME_BODY_AT;
    let prefix = COMMIT_BODY_PREFIX.len();
    let last = window.len().saturating_sub(body_at + prefix - 1);
    (starts.start..starts.end.min(last))
        .filter(move |&at| window[at + body_at..at + body_at + prefix] == COMMIT_BODY_PREFIX)
        .filter_map(move |at| {
            let FrameAt::Commit { commit, .. } = frame_at(window, at) else {
                return None;
            };
            let position = base + at as u64;
            (commit.salt == salt && commit.position == position)
                .then_some((position, commit.round_start))
        })
}

/// How far past the committed end of a last segment a crash can have left bytes: one write
/// round of the segment's writer (recorded in its header; a single append never exceeds it)
/// with its commit, plus a footer.
pub fn torn_tail_window(header: &SegmentHeader) -> usize {
    let commit = if header.version.marks_rounds() {
        batch::COMMIT_FRAME_BYTES_MAX
    } else {
        0
    };
    header.round_bytes as usize + commit + FOOTER_RESERVE_BYTES
}

/// Where the bytes a torn tail's zeroing covers end, for the last segment whose whole file
/// is `bytes` and whose last complete round ends at `committed_end`: the last non-zero byte
/// (nothing else was ever written after the end), or for a recycled segment the end of the
/// torn-tail window (beyond it lie only bytes of the file's earlier use, left as they are).
pub(crate) fn torn_tail_end(header: &SegmentHeader, bytes: &[u8], committed_end: usize) -> usize {
    if header.recycled {
        return committed_end
            .saturating_add(torn_tail_window(header))
            .min(bytes.len());
    }
    last_nonzero_from(bytes, committed_end).map_or(committed_end, |last| last + 1)
}

/// The position of the last non-zero byte in `bytes[from..]`, if any (absolute).
pub(crate) fn last_nonzero_from(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    tail.iter().rposition(|&b| b != 0).map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled segment's tail with commits of its own (salt) and of an earlier use.
    fn recycled_tail_bytes() -> (SegmentHeader, Vec<u8>) {
        let header = SegmentHeader {
            version: gridlog_common::segment::FormatVersion::V2,
            log_id: [3; 16],
            first_offset: 500,
            segment_bytes: 64 * 1024,
            created_unix_ms: 1_700_000_000_000,
            round_bytes: 4096,
            recycled: true,
        };
        let mut bytes = vec![0x5a_u8; header.segment_bytes as usize];
        bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
        let mut put = |salt: u32, position: u64, round_start: u64| {
            let commit = Commit {
                salt,
                position,
                round_start,
            };
            let mut frame = [0u8; batch::COMMIT_FRAME_BYTES_MAX];
            let len = batch::encode_commit_frame(&mut frame, &commit).unwrap();
            let at = position as usize;
            bytes[at..at + len].copy_from_slice(&frame[..len]);
        };
        // The earlier use's commits (another salt), one straddling a 1,000-byte boundary.
        put(header.salt() ^ 1, 2048, 1536);
        put(header.salt() ^ 1, 3990, 3584);
        // This use's: one whose round starts at 8192, one of a later round at 30,000.
        put(header.salt(), 8600, 8192);
        put(header.salt(), 30_700, 30_000);
        (header, bytes)
    }

    #[test]
    fn a_recycled_tail_is_classified_the_same_read_whole_or_in_pieces() {
        let (header, bytes) = recycled_tail_bytes();
        for (committed_end, stop_at) in [(8192u64, 8192u64), (8192, 9000), (1024, 1024)] {
            let rest = &bytes[committed_end as usize..];
            let mut whole = RecycledTail::default();
            whole.take_in(&header, committed_end, rest, 0..rest.len(), stop_at);
            // Pieces of 1,000 bytes overlapping by the longest commit, as dump reads.
            let mut pieces = RecycledTail::default();
            let mut pos = committed_end as usize;
            while pos < bytes.len() {
                let end = (pos + 1000 + batch::COMMIT_FRAME_BYTES_MAX).min(bytes.len());
                let starts = 1000.min(end - pos);
                pieces.take_in(&header, pos as u64, &bytes[pos..end], 0..starts, stop_at);
                pos += starts;
            }
            assert_eq!(
                whole, pieces,
                "committed end {committed_end}, stop {stop_at}"
            );
        }
    }

    #[test]
    fn a_recycled_tail_tells_stale_bytes_a_torn_round_and_a_later_round_apart() {
        let (header, bytes) = recycled_tail_bytes();
        let classify = |committed_end: u64, stop_at: u64, rest: &[u8]| {
            let mut facts = RecycledTail::default();
            facts.take_in(&header, committed_end, rest, 0..rest.len(), stop_at);
            classify_recycled(committed_end, stop_at, None, &facts)
        };
        // Stopped at 8192: the commit at 30,700 starts a later round (damage).
        assert!(matches!(
            classify(8192, 8192, &bytes[8192..]),
            Tail::Damage(8192, _)
        ));
        // Stopped at 31,000, past both: only the earlier use's bytes follow.
        assert_eq!(classify(31_000, 31_000, &bytes[31_000..]), Tail::Stale);
        // Up to 30,000: this use's commit at 8,600 belongs to the round that starts at the
        // committed end, 8,192 (not a later one): the rest of a torn round.
        let rest: Vec<u8> = bytes[..30_000].to_vec();
        assert!(matches!(classify(8192, 8192, &rest[8192..]), Tail::Torn(_)));
        // Frames of this use past the last commit (the walk stopped later): torn.
        assert!(matches!(
            classify(31_000, 31_200, &bytes[31_000..]),
            Tail::Torn(_)
        ));
        // Nothing but zeros: clean.
        assert_eq!(classify(31_000, 31_000, &[0u8; 64]), Tail::Clean);
    }

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("1.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000001.seg.tmp"),
            None
        );
    }
}
