//! The writing end: takes the pending buffer, writes it into the active segment (rotating
//! at frame boundaries), syncs once per round, publishes the durable end and wakes waiters.
//!
//! One [`Writer`] behind a mutex; whoever holds it writes the next round. Usually that is
//! the writer thread, which gathers appenders into rounds. While rounds carry one frame
//! each (`Shared::lone_rounds`), an appender that finds nothing pending and the writer idle
//! takes the mutex and writes its own round (leader/follower): a lone appender pays no
//! hand-off to the writer thread and back. An appender that finds the writer busy hands its
//! frame to the writer thread as before.
//!
//! Rotation, step by step (a crash between any two steps recovers cleanly):
//! 1. write the footer after the last frame; `fdatasync` (the old segment is sealed);
//! 2. take the preallocated `prealloc.tmp`; write the new header; `fdatasync`;
//! 3. rename it to `<first offset>.seg`; `fsync` the directory.
//!
//! After 1 alone, recovery finds a sealed last segment and the writer starts the next one;
//! a leftover `prealloc.tmp` is removed. The next segment is preallocated by a helper thread
//! while the active one fills, so rotation costs two syncs, not a 64 MiB zero-fill.
//!
//! A failed write or sync of the active segment poisons the log: after an `fdatasync` error
//! the kernel may have dropped the dirty pages, so nothing written since the last good sync
//! can be trusted. Every waiting and later append gets the error; reopening recovers. A
//! preallocation that fails for a shortage that passes by itself — space (a full disk or
//! quota), file handles (EMFILE, ENFILE) or kernel memory (ENOMEM) — is not fatal: appends
//! wait, the writer retries every [`super::failure::DISK_FULL_RETRY`], and
//! [`super::CommitStats::disk_full`] or [`super::CommitStats::resources_exhausted`] says
//! why. Any other preallocation error fails the log like a failed write.
//!
//! Over 600 lines on purpose: start-up, the round loop, rotation and the preallocator are
//! one state machine over the active segment ([`Active`]) and the preallocated file; split
//! into files, each part would reach into the others' private state. What a failure does
//! to the log (failing it, waiting out a shortage) is `failure`'s.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridlog_common::batch::{
    encode_commit_frame, encode_footer_frame, footer_frame_len, Commit, Footer,
    COMMIT_FRAME_BYTES_MAX,
};
use gridlog_common::segment::{FormatVersion, SegmentHeader};
use gridlog_common::Offset;

use super::error::OpenError;
use super::failure::{fail_log, wait_out, writer_panicked};
use super::io::Io;
use super::recovery::Recovered;
use super::segment::{
    install_segment, run_once, InstallStep, Preallocation, Segment, FOOTER_RESERVE_BYTES,
    PREALLOC_FILE_NAME,
};
use super::spare::{prepare_segment_file, Prepared};
use super::{log2_bucket, unix_ms_now, Durable, Pending, PendingFrame, Shared, WalOptions};

struct Active {
    segment: Arc<Segment>,
    file: File,
    segment_bytes: u64,
    /// The salt of the segment's round commits (its header's CRC).
    salt: u32,
    /// Where the next frame goes.
    pos: u64,
    frame_count: u64,
    next_offset: Offset,
}

struct Preallocator {
    request: Option<Sender<()>>,
    ready: Receiver<io::Result<Prepared>>,
    outstanding: bool,
    thread: Option<JoinHandle<()>>,
}

impl Preallocator {
    fn start(io: Io, path: PathBuf, segment_bytes: u64, how: Preallocation) -> Preallocator {
        let (request, requests) = mpsc::channel::<()>();
        let (done, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gridlog-prealloc".into())
            .spawn(move || {
                for () in requests {
                    if done
                        .send(prepare_segment_file(&io, &path, segment_bytes, how))
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .expect("spawn preallocator thread");
        Preallocator {
            request: Some(request),
            ready,
            outstanding: false,
            thread: Some(thread),
        }
    }

    fn ask(&mut self) {
        if !self.outstanding {
            if let Some(request) = &self.request {
                self.outstanding = request.send(()).is_ok();
            }
        }
    }

    fn take(&mut self) -> io::Result<Prepared> {
        self.ask();
        self.outstanding = false;
        self.ready
            .recv()
            .map_err(|_| io::Error::other("preallocator thread ended"))?
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.request.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writing end of the log: the active segment, the preallocated next one, and the
/// buffers a round is taken into. Behind a mutex shared by the writer thread and the
/// appenders: whoever holds it writes the next round (see [`Writer::write_pending`]).
pub(super) struct Writer {
    shared: Arc<Shared>,
    io: Io,
    active: Active,
    prealloc: Preallocator,
    /// Frames of the last two rounds: the appenders that will be back (see [`gather`]).
    last_rounds_frames: [usize; 2],
    /// The last `fdatasync`'s duration: what gathering may cost at most (half of it).
    last_sync: Duration,
    /// The round being written: its frames' bytes and offsets (kept to reuse the memory).
    buf: Vec<u8>,
    frames: Vec<PendingFrame>,
    /// A round's last write: frames after their last block boundary, commit, zeros.
    tail_buf: Vec<u8>,
}

/// Whether a round waits for more appenders before it is taken (see [`Writer::gather`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gather {
    /// The writer thread: waits out `commit_delay_ms`, or gathers adaptively.
    Yes,
    /// An appender writing its own round: takes what is pending at once.
    No,
}

/// What [`start`] hands to the log: the state everyone shares, the writing end, and the
/// writer thread.
pub(super) struct Started {
    pub(super) shared: Arc<Shared>,
    pub(super) writer: Arc<Mutex<Writer>>,
    pub(super) thread: JoinHandle<()>,
}

pub(super) fn start(
    wal_dir: PathBuf,
    options: WalOptions,
    io: Io,
    log_id: [u8; 16],
    recovered: Recovered,
) -> Result<Started, OpenError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io {
            path: path.clone(),
            source,
        }
    };
    let Adopted {
        mut segments,
        active,
        outgrown,
    } = adopt_segments(recovered.segments, options.round_bytes)?;
    let prealloc_path = wal_dir.join(PREALLOC_FILE_NAME);
    let mut prealloc = Preallocator::start(
        io.clone(),
        prealloc_path.clone(),
        options.segment_bytes,
        options.preallocation,
    );
    let active = match active {
        Some(active) => active,
        None => {
            let file = prealloc.take().map_err(io_err(&prealloc_path))?;
            let active = new_segment(
                &io,
                &wal_dir,
                file,
                log_id,
                recovered.next_offset,
                &options,
                &mut run_once,
            )
            .map_err(io_err(&wal_dir))?;
            segments.push(active.segment.clone());
            active
        }
    };
    prealloc.ask();
    let next_offset = recovered.next_offset;
    let shared = Arc::new(new_shared(wal_dir, options, log_id, segments, next_offset));
    let mut writer = Writer {
        shared: shared.clone(),
        io,
        active,
        prealloc,
        last_rounds_frames: [0; 2],
        last_sync: Duration::ZERO,
        buf: Vec::new(),
        frames: Vec::new(),
        tail_buf: Vec::new(),
    };
    if outgrown {
        let path = writer.active.segment.path.clone();
        writer
            .seal()
            .and_then(|()| writer.rotate(next_offset))
            .map_err(io_err(&path))?;
    }
    let writer = Arc::new(Mutex::new(writer));
    let thread = std::thread::Builder::new()
        .name("gridlog-wal-writer".into())
        .spawn({
            let (writer, shared) = (writer.clone(), shared.clone());
            move || run(&writer, &shared)
        })
        .map_err(|source| OpenError::Io {
            path: PathBuf::from("<writer thread>"),
            source,
        })?;
    Ok(Started {
        shared,
        writer,
        thread,
    })
}

/// The writer thread: waits for pending frames, then takes the writing end and writes
/// them as one round (unless an appender wrote them itself meanwhile). Ends when the log
/// closes with nothing pending, or fails.
fn run(writer: &Mutex<Writer>, shared: &Shared) {
    loop {
        {
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            while pending.frames.is_empty() && !pending.closed && pending.failed.is_none() {
                pending = shared.work.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            if pending.failed.is_some() || pending.frames.is_empty() {
                return; // failed, or closed and drained
            }
        }
        // Never wait for the writing end while holding `pending`: an appender holding the
        // writing end takes `pending` after it.
        let Ok(mut writer) = writer.lock() else {
            fail_log(shared, writer_panicked());
            return;
        };
        let pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        if writer.write_pending(shared, pending, Gather::Yes).is_err() {
            return;
        }
    }
}

/// What [`adopt_segments`] makes of the recovered segments.
struct Adopted {
    segments: Vec<Arc<Segment>>,
    active: Option<Active>,
    outgrown: bool,
}

/// The recovered segments as the writer keeps them, the unsealed last one as the active
/// segment, and whether that one must be sealed and a new one started ("outgrown": its
/// header allows smaller rounds than `round_bytes`, or it is of version 1, which cannot
/// mark rounds). An empty version-1 active segment is dropped: a new segment of the same
/// name replaces it.
fn adopt_segments(
    recovered: Vec<super::recovery::RecoveredSegment>,
    round_bytes: usize,
) -> Result<Adopted, OpenError> {
    let mut segments = Vec::with_capacity(recovered.len() + 1);
    let mut active = None;
    // Rounds larger than the recovered active segment's header allows would tear beyond
    // the window recovery accepts there, and a version-1 segment cannot mark rounds: such a
    // segment is sealed and a new one started.
    let mut outgrown = false;
    let count = recovered.len();
    for (i, rs) in recovered.into_iter().enumerate() {
        let old_format = !rs.version.marks_rounds();
        if i + 1 == count && !rs.sealed && old_format && rs.frame_count == 0 {
            // An empty version-1 active segment: a new segment of the same name (the same
            // first offset) replaces it in one rename below.
            continue;
        }
        let segment = Arc::new(
            Segment::new(rs.path.clone(), rs.first_offset, &rs.file, rs.durable_end).map_err(
                |source| OpenError::Io {
                    path: rs.path.clone(),
                    source,
                },
            )?,
        );
        if i + 1 == count && !rs.sealed {
            // The writer never writes frames into the footer reserve; frames there (bytes
            // no crash of this writer leaves) would leave no room for the footer.
            let frames_end_max = rs.segment_bytes.saturating_sub(FOOTER_RESERVE_BYTES as u64);
            if rs.data_end > frames_end_max {
                return Err(OpenError::Corrupt {
                    damage: super::Damage {
                        path: rs.path.clone(),
                        position: frames_end_max,
                        reason: format!(
                            "frames reach into the segment's {FOOTER_RESERVE_BYTES}-byte footer reserve"
                        ),
                    },
                });
            }
            if rs.recycled {
                // The recovery scan read the earlier use's bytes ahead (see the function).
                super::spare::forget_cached_pages(&rs.file, rs.data_end);
            }
            // (An empty one keeps its name: a new segment would take the same.)
            outgrown =
                ((rs.round_bytes as usize) < round_bytes || old_format) && rs.frame_count > 0;
            active = Some(Active {
                segment: segment.clone(),
                file: rs.file,
                segment_bytes: rs.segment_bytes,
                salt: rs.salt,
                pos: rs.data_end,
                frame_count: rs.frame_count,
                next_offset: rs.next_offset,
            });
        }
        segments.push(segment);
    }
    Ok(Adopted {
        segments,
        active,
        outgrown,
    })
}

/// The state shared by appenders, the writer and readers, for a log whose next record
/// gets `next_offset`.
fn new_shared(
    wal_dir: PathBuf,
    options: WalOptions,
    log_id: [u8; 16],
    segments: Vec<Arc<Segment>>,
    next_offset: Offset,
) -> Shared {
    Shared {
        wal_dir,
        options,
        log_id,
        segments: RwLock::new(segments),
        pending: Mutex::new(Pending {
            buf: Vec::new(),
            frames: Vec::new(),
            next_offset,
            closed: false,
            failed: None,
            wake_writer_at: 0,
        }),
        work: Condvar::new(),
        room: Condvar::new(),
        durable: Mutex::new(Durable {
            next_offset,
            failed: None,
            closed: false,
        }),
        waiters: Default::default(),
        durable_next: std::sync::atomic::AtomicU64::new(next_offset),
        lone_rounds: std::sync::atomic::AtomicBool::new(true),
        stats: Default::default(),
    }
}

fn new_segment(
    io: &Io,
    wal_dir: &Path,
    prepared: Prepared,
    log_id: [u8; 16],
    first_offset: Offset,
    options: &WalOptions,
    step: &mut InstallStep<'_>,
) -> io::Result<Active> {
    let segment_bytes = options.segment_bytes;
    let header = SegmentHeader {
        version: FormatVersion::CURRENT,
        log_id,
        first_offset,
        segment_bytes,
        created_unix_ms: unix_ms_now(),
        round_bytes: options.round_bytes as u32,
        recycled: prepared.recycled,
    };
    let file = prepared.file;
    let prealloc_path = wal_dir.join(PREALLOC_FILE_NAME);
    let path = install_segment(io, wal_dir, &prealloc_path, &file, &header, step)?;
    let pos = gridlog_common::segment::SEGMENT_HEADER_BYTES as u64;
    let mut segment = None;
    step(&mut || {
        segment = Some(Segment::new(path.clone(), first_offset, &file, pos)?);
        Ok(())
    })?;
    let segment = Arc::new(segment.expect("the step succeeded"));
    Ok(Active {
        segment,
        file,
        segment_bytes,
        salt: header.salt(),
        pos,
        frame_count: 0,
        next_offset: first_offset,
    })
}

impl Writer {
    /// Takes every pending frame (after gathering, if `gather`) and writes them as one
    /// round, synced and published before it returns. Nothing pending: nothing to do. A
    /// failed round fails the log (every waiter and later append gets the error).
    /// `pending` is the guard of `shared.pending` (this log's).
    pub(super) fn write_pending<'a>(
        &mut self,
        shared: &'a Shared,
        mut pending: MutexGuard<'a, Pending>,
        gather: Gather,
    ) -> Result<(), Arc<io::Error>> {
        debug_assert!(std::ptr::eq(shared, &*self.shared));
        if let Some(e) = &pending.failed {
            return Err(e.clone());
        }
        if pending.frames.is_empty() {
            return Ok(());
        }
        if gather == Gather::Yes {
            let delay = shared.options.commit_delay;
            if !delay.is_zero() && !pending.closed {
                drop(pending);
                std::thread::sleep(delay);
                pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            } else {
                let target = gather_target(self.last_rounds_frames);
                pending = self.gather(pending, target);
            }
        }
        std::mem::swap(&mut pending.buf, &mut self.buf);
        std::mem::swap(&mut pending.frames, &mut self.frames);
        drop(pending);
        shared.room.notify_all();
        self.last_rounds_frames = [self.frames.len(), self.last_rounds_frames[0]];
        shared.lone_rounds.store(
            gather_target(self.last_rounds_frames) == 1,
            Ordering::Relaxed,
        );
        let (buf, frames) = (
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.frames),
        );
        let written = self.write_round(&buf, &frames);
        (self.buf, self.frames) = (buf, frames);
        self.buf.clear();
        self.frames.clear();
        written.map_err(|e| fail_log(&self.shared, e))
    }

    /// Waits, for at most half the last sync, until `target` frames are pending (or the
    /// pending buffer is full, or the log closes): the appenders woken after the last round
    /// come back within microseconds, and a round that waits for them saves the sync that
    /// would carry them alone. A lone appender (target 1) never waits.
    fn gather<'a>(
        &self,
        mut pending: MutexGuard<'a, Pending>,
        target: usize,
    ) -> MutexGuard<'a, Pending> {
        let shared = &*self.shared;
        let deadline = Instant::now() + self.last_sync / 2;
        let full = |p: &Pending| p.buf.len() * 2 >= shared.options.round_bytes;
        pending.wake_writer_at = target;
        while pending.frames.len() < target && !pending.closed && !full(&pending) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            pending = shared
                .work
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        pending.wake_writer_at = 0;
        pending
    }

    fn write_round(&mut self, buf: &[u8], frames: &[PendingFrame]) -> io::Result<()> {
        let shared = self.shared.clone();
        let stats = &shared.stats;
        stats.round_frames_log2[log2_bucket(frames.len() as u64)].fetch_add(1, Ordering::Relaxed);
        let mut at = 0usize;
        let mut i = 0usize;
        while i < frames.len() {
            // Room for frames, with the round's commit (at its longest) and the footer after.
            let room = self.active.segment_bytes.saturating_sub(
                FOOTER_RESERVE_BYTES as u64 + COMMIT_FRAME_BYTES_MAX as u64 + self.active.pos,
            );
            let (mut chunk, mut j) = (0u64, i);
            while j < frames.len() && chunk + frames[j].len as u64 <= room {
                chunk += frames[j].len as u64;
                j += 1;
            }
            if j > i {
                self.write_chunk(&buf[at..at + chunk as usize])?;
                self.active.frame_count += (j - i) as u64;
                self.active.next_offset = frames[j - 1].next_offset;
                let records = frames[j - 1].next_offset - frames[i].first_offset;
                stats.frames.fetch_add((j - i) as u64, Ordering::Relaxed);
                stats.records.fetch_add(records, Ordering::Relaxed);
                stats.bytes.fetch_add(chunk, Ordering::Relaxed);
                at += chunk as usize;
                i = j;
            }
            if i < frames.len() {
                self.seal()?;
                self.rotate(frames[i].first_offset)?;
            }
        }
        let end = self.active.pos;
        self.sync_and_publish(end)
    }

    /// Writes one round's frames into the active segment, then the round's commit, which
    /// pads the round to a sector boundary (see `gridlog_common::batch::Commit`). Both reach
    /// the disk with the same sync: a round without its commit was never acknowledged.
    ///
    /// The round's last write (the frames' bytes from their last block boundary, the
    /// commit, zeros) runs to the end of its 4 KiB block ([`PAD_BYTES`], see
    /// [`round_writes`]): a block this round is the first to write is then overwritten
    /// whole, and the kernel need not read it from the device first (a recycled file's
    /// blocks are not cached: without this, every eighth 512-byte round of a lone appender
    /// waited for a 4 KiB read).
    fn write_chunk(&mut self, frames: &[u8]) -> io::Result<()> {
        let round_start = self.active.pos;
        let position = round_start + frames.len() as u64;
        let commit = Commit {
            salt: self.active.salt,
            position,
            round_start,
        };
        let mut commit_bytes = [0u8; COMMIT_FRAME_BYTES_MAX];
        let commit_len =
            encode_commit_frame(&mut commit_bytes, &commit).map_err(io::Error::other)?;
        let plan = round_writes(
            round_start,
            frames.len() as u64,
            commit_len as u64,
            PAD_BYTES,
            self.active.segment_bytes,
        );
        let path = &self.active.segment.path;
        let head = plan.head_bytes as usize;
        if head > 0 {
            self.io
                .write_all_at(&self.active.file, path, round_start, &frames[..head])?;
        }
        let tail = &mut self.tail_buf;
        tail.clear();
        tail.extend_from_slice(&frames[head..]);
        tail.extend_from_slice(&commit_bytes[..commit_len]);
        tail.resize(plan.tail_bytes as usize, 0);
        self.io
            .write_all_at(&self.active.file, path, round_start + head as u64, tail)?;
        self.active.pos = position + commit_len as u64;
        Ok(())
    }

    fn sync_and_publish(&mut self, durable_end: u64) -> io::Result<()> {
        let started = Instant::now();
        self.io
            .sync_data(&self.active.file, &self.active.segment.path)?;
        let took = started.elapsed();
        self.last_sync = took;
        let stats = &self.shared.stats;
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats
            .sync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        stats.sync_micros_log2[log2_bucket(took.as_micros() as u64)]
            .fetch_add(1, Ordering::Relaxed);
        self.active.segment.publish_durable_end(durable_end);
        let next = self.active.next_offset;
        let shared = &*self.shared;
        shared.durable_next.store(next, Ordering::Release);
        shared
            .durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_offset = next;
        shared.waiters.durable_changed(next);
        Ok(())
    }

    /// Writes the footer after the last frame and makes both durable.
    fn seal(&mut self) -> io::Result<()> {
        let active = &self.active;
        let footer = Footer {
            first_offset: active.segment.first_offset,
            next_offset: active.next_offset,
            frame_count: active.frame_count,
            data_end: active.pos,
            index: &[],
        };
        let mut bytes = vec![0u8; footer_frame_len(&footer)];
        debug_assert!(bytes.len() <= FOOTER_RESERVE_BYTES);
        encode_footer_frame(&mut bytes, &footer).map_err(io::Error::other)?;
        self.io
            .write_all_at(&active.file, &active.segment.path, active.pos, &bytes)?;
        let end = active.pos + bytes.len() as u64;
        self.sync_and_publish(end)
    }

    /// Starts the segment that begins at `first_offset`, waiting out a full disk.
    fn rotate(&mut self, first_offset: Offset) -> io::Result<()> {
        let wal_dir = self.shared.wal_dir.clone();
        let mut file = None;
        let (shared, prealloc) = (self.shared.clone(), &mut self.prealloc);
        wait_out(
            &shared,
            "cannot preallocate the next log segment",
            &mut || {
                file = Some(prealloc.take()?);
                Ok(())
            },
        )?;
        let prepared = file.expect("the step succeeded");
        let recycled = prepared.recycled;
        let shared = self.shared.clone();
        let mut step = |op: &mut dyn FnMut() -> io::Result<()>| {
            wait_out(&shared, "cannot install the next log segment", op)
        };
        let active = new_segment(
            &self.io,
            &wal_dir,
            prepared,
            self.shared.log_id,
            first_offset,
            &self.shared.options,
            &mut step,
        )?;
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(active.segment.clone());
        self.active = active;
        self.shared.stats.rotations.fetch_add(1, Ordering::Relaxed);
        if recycled {
            self.shared
                .stats
                .recycled_rotations
                .fetch_add(1, Ordering::Relaxed);
        }
        self.prealloc.ask();
        Ok(())
    }
}

/// How a round is written: `head_bytes` of its frames from the round's start (up to the
/// last `pad_bytes` boundary inside the frames; none if there is no such boundary), then
/// one write of `tail_bytes`: the rest of the frames, the commit, and zeros to the next
/// `pad_bytes` boundary (never past the segment's end). Bytes after the commit are the log's
/// free space (the next round overwrites them): zeros there are what a fresh segment holds
/// anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoundWrites {
    head_bytes: u64,
    tail_bytes: u64,
}

fn round_writes(
    round_start: u64,
    frames_bytes: u64,
    commit_bytes: u64,
    pad_bytes: u64,
    segment_bytes: u64,
) -> RoundWrites {
    let position = round_start + frames_bytes;
    let tail_start = (position / pad_bytes * pad_bytes).max(round_start);
    let end = position + commit_bytes;
    let padded_end = end.div_ceil(pad_bytes) * pad_bytes;
    RoundWrites {
        head_bytes: tail_start - round_start,
        tail_bytes: padded_end.min(segment_bytes).max(end) - tail_start,
    }
}

/// What a round's last write is padded to: the kernel reads a block of a file from the
/// device before it changes part of it, unless the block is cached; a write that covers
/// whole blocks needs no read. 4 KiB is the block of ext4, f2fs and xfs as made by default
/// (a smaller block divides it). Not the memory page: on ARM kernels with 16 or 64 KiB
/// pages, padding to the page would write up to 64 KiB of zeros a round.
pub(super) const PAD_BYTES: u64 = 4096;

/// How many frames the next round waits for: as many as the larger of the last two rounds
/// carried. Under a steady closed loop of N appenders, rounds alternate between those that
/// came back before the writer took the buffer and the rest; waiting for the larger brings
/// every round to N within a few rounds. When load drops, the wait ends at its deadline and
/// the target follows the smaller rounds down.
fn gather_target(last_rounds_frames: [usize; 2]) -> usize {
    last_rounds_frames[0].max(last_rounds_frames[1]).max(1)
}

#[cfg(test)]
mod tests {
    use super::{gather_target, round_writes};

    #[test]
    fn a_round_ends_with_one_write_to_the_end_of_its_page() {
        let page = 4096;
        let seg = 64 * 1024;
        // A lone appender's round at a page start: one write of the whole page.
        let w = round_writes(4096, 100, 412, page, seg);
        assert_eq!((w.head_bytes, w.tail_bytes), (0, 4096));
        // Mid-page: from the round's start to the page's end.
        let w = round_writes(4096 + 512, 100, 412, page, seg);
        assert_eq!((w.head_bytes, w.tail_bytes), (0, 4096 - 512));
        // A round across pages: whole pages first, then the last page from its start.
        let w = round_writes(512, 10_000, 240, page, seg);
        assert_eq!(w.head_bytes, 8192 - 512);
        assert_eq!(8192 + w.tail_bytes, 12_288);
        // Frames ending on a page boundary: the commit starts the tail, in a page of its own.
        let w = round_writes(0, 8192, 512, page, seg);
        assert_eq!((w.head_bytes, w.tail_bytes), (8192, 4096));
        // Never past the segment's end, never short of the commit's end.
        let w = round_writes(seg - 1024, 400, 112, page, seg);
        assert_eq!((w.head_bytes, w.tail_bytes), (0, 1024));
        let w = round_writes(0, 100, 412, page, 300);
        assert_eq!(w.tail_bytes, 512);
    }

    #[test]
    fn the_gather_target_is_the_larger_of_the_last_two_rounds() {
        assert_eq!(gather_target([0, 0]), 1);
        assert_eq!(gather_target([1, 1]), 1);
        assert_eq!(gather_target([3, 5]), 5);
        assert_eq!(gather_target([60, 4]), 60);
    }
}
