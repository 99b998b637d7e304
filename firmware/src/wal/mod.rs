//! The durable log: segmented, checksummed, group-committed, crash-recovering.
//!
//! ```text
//! appender threads ──append(records)──▶ Pending buffer (offsets assigned, frame encoded
//!        ▲                               under one mutex; bounded: appenders wait for room)
//!        │                                      │ the writer takes the whole buffer
//!        │ durable offset ≥ mine                ▼
//!        └──────────── writer thread: pwrite the round (rotating segments at frame
//!                       boundaries), ONE fdatasync, publish durable end, wake waiters
//! ```
//!
//! Batches grow by themselves: while one `fdatasync` runs, new appends pile up in the pending
//! buffer and all go into the next round. An append returns only after its frame is durable.
//! While rounds carry one append each, `Wal::append` that finds nothing pending and the
//! writer idle does the writer's part itself, on its own thread (see `writer`).
//!
//! Files by role: [`segment`] (naming, preallocation, scanning), `spare` (recycling removed
//! segments), `writer` (group commit
//! and rotation), [`reader`] (cursor over durable records), [`recovery`] (open and repair),
//! [`verify`] (read-only check), [`error`], `failure` (failing the log, waiting out a
//! shortage), [`io`] (the hookable file-system calls),
//! `options` (options and their limits), `pending` (the appenders' buffer).

pub mod dump;
pub mod error;
mod failure;
pub mod io;
mod notify;
mod options;
mod pending;
pub mod reader;
pub mod recovery;
pub mod segment;
mod spare;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use gridlog_common::Offset;

pub use error::{AppendError, Damage, OpenError, ReadError};
pub use io::{IoHook, IoOp};
pub use options::{
    WalOptions, ROUND_BYTES_DEFAULT, ROUND_BYTES_MAX, ROUND_BYTES_MIN, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
pub(crate) use pending::{Pending, PendingFrame};
pub use reader::{LogCursor, Record};
pub use recovery::{RecoveryMode, RecoveryReport};
pub use segment::Preallocation;
pub use verify::{verify, VerifyReport};

use crate::lock::DirLock;
use segment::Segment;

/// The bytes of a sealed segment (header to the end of its footer), which never change.
/// They are read from the segment's mapping, which stays valid while this lives, even if
/// the segment is archived and its file removed meanwhile.
pub struct SealedSegment(Arc<Segment>);

impl std::ops::Deref for SealedSegment {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.durable_bytes()
    }
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment")
            .field("first_offset", &self.0.first_offset)
            .field("bytes", &self.len())
            .finish()
    }
}

/// Name of the log's directory inside a data directory.
pub const WAL_DIR_NAME: &str = "wal";

/// Acknowledgement of a durable append: its records have offsets `first_offset..next_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Offset of the first record of the batch.
    pub first_offset: Offset,
    /// One past the last record's offset.
    pub next_offset: Offset,
}

/// Counters of the commit path, for status and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Write rounds (each ends with one `fdatasync` of the active segment).
    pub rounds: AtomicU64,
    /// Batch frames made durable.
    pub frames: AtomicU64,
    /// Records made durable.
    pub records: AtomicU64,
    /// Frame bytes made durable.
    pub bytes: AtomicU64,
    /// Rounds an appender wrote itself (see [`Wal::append`]): no hand-off to the writer
    /// thread and back (of [`CommitStats::rounds`]).
    pub rounds_led: AtomicU64,
    /// Segments rotated.
    pub rotations: AtomicU64,
    /// Rotations into a recycled segment file (of [`CommitStats::rotations`]).
    pub recycled_rotations: AtomicU64,
    /// Sum of `fdatasync` durations in nanoseconds.
    pub sync_nanos: AtomicU64,
    /// `fdatasync` durations, bucket i counts syncs under 2^i microseconds (last: the rest).
    pub sync_micros_log2: [AtomicU64; 24],
    /// Frames per round, bucket i counts rounds of under 2^i frames (last: the rest).
    pub round_frames_log2: [AtomicU64; 24],
    /// Set while the next segment cannot be preallocated (disk full): appends wait.
    pub disk_full: std::sync::atomic::AtomicBool,
    /// Set while the next segment cannot be preallocated for want of file handles or
    /// memory (EMFILE, ENFILE, ENOMEM): appends wait.
    pub resources_exhausted: std::sync::atomic::AtomicBool,
}

pub(crate) fn log2_bucket(value: u64) -> usize {
    ((64 - value.leading_zeros()) as usize).min(23)
}

/// A snapshot of [`CommitStats`] with plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStatsSnapshot {
    /// See [`CommitStats::rounds`].
    pub rounds: u64,
    /// See [`CommitStats::frames`].
    pub frames: u64,
    /// See [`CommitStats::records`].
    pub records: u64,
    /// See [`CommitStats::bytes`].
    pub bytes: u64,
    /// See [`CommitStats::rounds_led`].
    pub rounds_led: u64,
    /// See [`CommitStats::rotations`].
    pub rotations: u64,
    /// See [`CommitStats::recycled_rotations`].
    pub recycled_rotations: u64,
    /// See [`CommitStats::sync_nanos`].
    pub sync_nanos: u64,
    /// See [`CommitStats::sync_micros_log2`].
    pub sync_micros_log2: Vec<u64>,
    /// See [`CommitStats::round_frames_log2`].
    pub round_frames_log2: Vec<u64>,
    /// See [`CommitStats::disk_full`].
    pub disk_full: bool,
    /// See [`CommitStats::resources_exhausted`].
    pub resources_exhausted: bool,
}

pub(crate) struct Durable {
    /// One past the last durable record.
    pub(crate) next_offset: Offset,
    pub(crate) failed: Option<Arc<std::io::Error>>,
    /// The log is closing: nothing more becomes durable.
    pub(crate) closed: bool,
}

pub(crate) struct Shared {
    pub(crate) wal_dir: PathBuf,
    pub(crate) options: WalOptions,
    pub(crate) log_id: [u8; 16],
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) pending: Mutex<Pending>,
    /// The writer waits here for work.
    pub(crate) work: Condvar,
    /// Appenders wait here for room in the pending buffer.
    pub(crate) room: Condvar,
    pub(crate) durable: Mutex<Durable>,
    /// Appenders waiting for durability (woken by the notifier thread, only when theirs is).
    pub(crate) waiters: notify::Waiters,
    pub(crate) durable_next: AtomicU64,
    /// The last two rounds carried one frame each: an appender that finds the writer idle
    /// writes its own round (see `writer`).
    pub(crate) lone_rounds: AtomicBool,
    pub(crate) stats: CommitStats,
}

/// The open log. Cheap to share between threads (`&Wal` is enough to append and read).
pub struct Wal {
    shared: Arc<Shared>,
    /// The writing end (dropped before the lock: its preallocator thread ends with it).
    writer: Arc<Mutex<writer::Writer>>,
    writer_thread: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
    report: RecoveryReport,
    _lock: DirLock,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.wal_dir)
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the log of the data directory `data_dir`, taking its lock and
    /// recovering it (see [`recovery`]).
    pub fn open(data_dir: &Path, options: WalOptions) -> Result<Wal, OpenError> {
        options.validate()?;
        let lock = DirLock::acquire(data_dir)?;
        let wal_dir = data_dir.join(WAL_DIR_NAME);
        let io = io::Io::new(options.io_hook.clone());
        io.create_dir_durably(&wal_dir)
            .map_err(|(path, source)| OpenError::Io { path, source })?;
        let recovered = recovery::recover(&io, &wal_dir, options.recovery, options.preallocation)?;
        let log_id = recovered.log_id.unwrap_or_else(random_log_id);
        let report = recovered.report.clone();
        let writer::Started {
            shared,
            writer,
            thread,
        } = writer::start(wal_dir, options, io, log_id, recovered)?;
        let notifier = match start_notifier(shared.clone()) {
            Ok(notifier) => notifier,
            Err(source) => {
                // Stop the writer thread (and with it the preallocator) before the lock goes.
                shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed = true;
                shared.work.notify_all();
                let _ = thread.join();
                return Err(OpenError::Io {
                    path: PathBuf::from("<notifier thread>"),
                    source,
                });
            }
        };
        Ok(Wal {
            shared,
            writer,
            writer_thread: Some(thread),
            notifier: Some(notifier),
            report,
            _lock: lock,
        })
    }

    /// The largest batch frame one append may produce.
    pub fn batch_frame_bytes_max(&self) -> usize {
        self.shared.options.batch_frame_bytes_max()
    }

    /// What recovery found and did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The random id of this log.
    pub fn log_id(&self) -> [u8; 16] {
        self.shared.log_id
    }

    /// One past the last durable record's offset (the offset the next record will get,
    /// once everything in flight is durable).
    pub fn next_offset(&self) -> Offset {
        self.shared.durable_next.load(Ordering::Acquire)
    }

    /// The oldest offset still in the hot log.
    pub fn oldest_offset(&self) -> Offset {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        segments
            .first()
            .map_or(gridlog_common::FIRST_OFFSET, |s| s.first_offset)
    }

    /// Appends one batch of records as one atomic frame and waits until it is durable.
    pub fn append<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<AppendAck, AppendError> {
        if let Some(ack) = self.append_as_leader(records)? {
            return Ok(ack);
        }
        self.append_nowait(records)?.wait()
    }

    /// Writes `records` as a round of their own on this thread, if rounds carry one frame
    /// each (no `commit_delay`), nothing is pending and the writer is idle; `None` if not
    /// (the caller hands them to the writer thread). A lone appender so pays no hand-off.
    fn append_as_leader<R: AsRef<[u8]>>(
        &self,
        records: &[R],
    ) -> Result<Option<AppendAck>, AppendError> {
        let shared = &*self.shared;
        if !shared.lone_rounds.load(Ordering::Relaxed) || !shared.options.commit_delay.is_zero() {
            return Ok(None);
        }
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.frames.is_empty() {
            return Ok(None);
        }
        // Taken while holding `pending`, so only tried: the writer thread takes them in the
        // other order.
        let mut writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
            Err(std::sync::TryLockError::Poisoned(_)) => {
                drop(pending);
                let error = failure::fail_log(shared, failure::writer_panicked());
                return Err(AppendError::Io(error));
            }
        };
        let max = shared.options.batch_frame_bytes_max();
        let Some(ack) = pending.push_frame(records, max, shared.options.round_bytes)? else {
            return Ok(None); // unreachable: an empty buffer takes any frame up to `max`
        };
        writer
            .write_pending(shared, pending, writer::Gather::No)
            .map_err(AppendError::Io)?;
        shared.stats.rounds_led.fetch_add(1, Ordering::Relaxed);
        Ok(Some(ack))
    }

    /// Appends one batch of records as one atomic frame; returns at once with a ticket
    /// to wait on. The batch is not acknowledged (may be lost) until [`AppendTicket::wait`]
    /// returns `Ok`.
    pub fn append_nowait<R: AsRef<[u8]>>(
        &self,
        records: &[R],
    ) -> Result<AppendTicket<'_>, AppendError> {
        let mut acks = self.append_frames_nowait(&[records])?;
        let ack = acks.pop().ok_or(AppendError::Empty)?;
        Ok(AppendTicket {
            shared: &self.shared,
            ack,
        })
    }

    /// Appends several frames (each one atomic batch of records) in order, under one lock
    /// and with one wake of the writer, so that frames handed over together go into the
    /// same write round when they fit. Returns each frame's offsets at once; none is
    /// acknowledged until [`Wal::wait_durable`] passes its `next_offset`. On an error, the
    /// frames before the failing one are appended (and may become durable), the rest not.
    pub fn append_frames_nowait<R: AsRef<[u8]>>(
        &self,
        frames: &[&[R]],
    ) -> Result<Vec<AppendAck>, AppendError> {
        let shared = &*self.shared;
        let max = shared.options.batch_frame_bytes_max();
        let round_bytes = shared.options.round_bytes;
        let mut acks = Vec::with_capacity(frames.len());
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake_writer = false;
        let mut result = Ok(());
        'frames: for records in frames {
            loop {
                match pending.push_frame(records, max, round_bytes) {
                    Ok(Some(ack)) => {
                        let frames = pending.frames.len();
                        wake_writer |= frames == 1 || frames == pending.wake_writer_at;
                        acks.push(ack);
                        break;
                    }
                    // The buffer is full: let the writer take what is there, then wait.
                    Ok(None) => {
                        if std::mem::take(&mut wake_writer) {
                            shared.work.notify_one();
                        }
                        pending = shared.room.wait(pending).unwrap_or_else(|e| e.into_inner());
                    }
                    Err(e) => {
                        result = Err(e);
                        break 'frames;
                    }
                }
            }
        }
        drop(pending);
        // On every path, errors included: frames appended before an error must be written.
        if wake_writer {
            shared.work.notify_one();
        }
        result.map(|()| acks)
    }

    /// Waits until every record below `offset` is durable (or the log failed).
    pub fn wait_durable(&self, offset: Offset) -> Result<(), AppendError> {
        wait_durable(&self.shared, offset)
    }

    /// A cursor over durable records starting at `from` (inclusive).
    pub fn read_from(&self, from: Offset) -> Result<LogCursor, ReadError> {
        LogCursor::new(self.shared.clone(), from)
    }

    /// Counters of the commit path.
    pub fn stats(&self) -> CommitStatsSnapshot {
        let s = &self.shared.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CommitStatsSnapshot {
            rounds: load(&s.rounds),
            frames: load(&s.frames),
            records: load(&s.records),
            bytes: load(&s.bytes),
            rounds_led: load(&s.rounds_led),
            rotations: load(&s.rotations),
            recycled_rotations: load(&s.recycled_rotations),
            sync_nanos: load(&s.sync_nanos),
            sync_micros_log2: s.sync_micros_log2.iter().map(load).collect(),
            round_frames_log2: s.round_frames_log2.iter().map(load).collect(),
            disk_full: s.disk_full.load(Ordering::Relaxed),
            resources_exhausted: s.resources_exhausted.load(Ordering::Relaxed),
        }
    }

    /// Sealed segments of the hot log (all but the active one), oldest first, as
    /// `(first offset, next offset)`.
    pub fn sealed_segments(&self) -> Vec<(Offset, Offset)> {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        segments
            .windows(2)
            .map(|w| (w[0].first_offset, w[1].first_offset))
            .collect()
    }

    /// A sealed segment's bytes from its start to the end of its footer, read in place from
    /// its mapping: no copy, and the read lock is held only to find it.
    pub fn sealed_segment(&self, first_offset: Offset) -> Option<SealedSegment> {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let i = segments
            .iter()
            .position(|s| s.first_offset == first_offset)?;
        if i + 1 == segments.len() {
            return None; // the active segment is never archived
        }
        Some(SealedSegment(segments[i].clone()))
    }

    /// Removes the oldest sealed segment from the hot log (after it was archived): drops it
    /// from the list, then keeps the file as the spare for a later segment
    /// ([`WalOptions::recycle_segments`], if no reader maps it and there is no spare yet) or
    /// unlinks it, and syncs the directory. Readers that hold it keep reading their mapping
    /// (a file still mapped is never recycled); new readers start at the next segment.
    pub fn remove_oldest_segment(&self, first_offset: Offset) -> std::io::Result<()> {
        let removed = {
            let mut segments = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if segments.len() < 2 || segments[0].first_offset != first_offset {
                return Err(std::io::Error::other(format!(
                    "segment {first_offset} is not the oldest sealed segment"
                )));
            }
            segments.remove(0)
        };
        let io = io::Io::new(self.shared.options.io_hook.clone());
        let path = removed.path.clone();
        // The only holder: no reader maps it, and none can start to (it left the list).
        let unmapped = Arc::try_unwrap(removed).is_ok();
        let options = &self.shared.options;
        if unmapped
            && options.recycle_segments
            && spare::recycle(&io, &path, options.segment_bytes)?
        {
            return Ok(());
        }
        io.remove(&path)?;
        io.sync_dir(&self.shared.wal_dir)
    }

    /// The log's I/O layer (shared with snapshots and the archive, so one hook sees all).
    pub(crate) fn io(&self) -> io::Io {
        io::Io::new(self.shared.options.io_hook.clone())
    }

    /// Paths and first offsets of the segments of the hot log, oldest first.
    pub fn segments(&self) -> Vec<(Offset, PathBuf)> {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        segments
            .iter()
            .map(|s| (s.first_offset, s.path.clone()))
            .collect()
    }

    /// Stops accepting appends, makes everything appended durable, and closes the log.
    pub fn close(mut self) -> Result<(), AppendError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AppendError> {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.closed = true;
        }
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
        self.shared
            .durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.waiters.wake_everyone();
        if let Some(notifier) = self.notifier.take() {
            let _ = notifier.join();
        }
        let durable = self
            .shared
            .durable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &durable.failed {
            Some(e) => Err(AppendError::Io(e.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A pending append; [`AppendTicket::wait`] returns once it is durable.
#[must_use = "an append is not acknowledged until its ticket is waited on"]
#[derive(Debug)]
pub struct AppendTicket<'a> {
    shared: &'a Shared,
    ack: AppendAck,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("wal_dir", &self.wal_dir)
            .finish()
    }
}

impl AppendTicket<'_> {
    /// The offsets this append will have.
    pub fn ack(&self) -> AppendAck {
        self.ack
    }

    /// Waits until the batch is durable.
    pub fn wait(self) -> Result<AppendAck, AppendError> {
        wait_durable(self.shared, self.ack.next_offset)?;
        Ok(self.ack)
    }
}

fn wait_durable(shared: &Shared, offset: Offset) -> Result<(), AppendError> {
    let durable = || shared.durable_next.load(Ordering::Acquire) >= offset;
    if durable() {
        return Ok(());
    }
    shared.waiters.register(offset);
    loop {
        if durable() {
            return Ok(());
        }
        let state = shared.durable.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &state.failed {
            return Err(AppendError::Io(e.clone()));
        }
        if state.closed {
            return Err(AppendError::Closed);
        }
        drop(state);
        std::thread::park();
    }
}

/// Starts the thread that wakes appenders after each sync (see `notify`). It ends when the
/// log closes.
fn start_notifier(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    let (started, ready) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("gridlog-wal-notify".into())
        .spawn(move || {
            shared.waiters.set_notifier(std::thread::current());
            let _ = started.send(());
            loop {
                let closed = shared
                    .durable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed;
                shared
                    .waiters
                    .wake_durable(shared.durable_next.load(Ordering::Acquire));
                if closed {
                    return;
                }
                std::thread::park();
            }
        })?;
    // Waiters registered before the notifier was set are woken by its first pass.
    let _ = ready.recv();
    Ok(handle)
}

fn random_log_id() -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_err()
    {
        // No urandom: time and pid are unique enough to tell logs apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
        id[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    id
}

pub(crate) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
