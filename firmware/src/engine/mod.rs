//! The engine: meters and energy assets as event-sourced entities over the durable log.
//!
//! ```text
//! submit(Request) ─▶ bounded queue ─▶ processor thread:
//!                        drain a batch of requests
//!                        validate each command against the image + earlier commands of
//!                          the batch (an overlay), encode accepted events, one frame per
//!                          request (atomic)
//!                        append all frames; wait for the ONE durable point of the batch
//!                        apply events to the image (persist, then apply)
//!                        publish the committed offset; answer every caller
//! ```
//!
//! Files by role: [`image`] (state, read models, digest), [`validate`] (the rules),
//! `processor` (the write path), [`query`] (reads and subscriptions), [`rollup`].

pub mod image;
pub mod maintenance;
mod processor;
pub mod query;
pub mod rollup;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use gridlog_common::domain::{decode_event, Command, EventDecodeError, MeterKind, StoredEvent};
use gridlog_common::id::CommandId;
use gridlog_common::Offset;

use crate::wal::{CommitStatsSnapshot, OpenError, ReadError, Wal, WalOptions};
use image::EntitySlot;
pub use image::{Image, SiteTotals};
pub use maintenance::{MaintenanceError, StorageOptions, StorageStats};
pub use query::{EntityEvents, EventPage, EventRecord, Filter, QueryError, Subscription};
pub use rollup::{RollupOptions, Step};
pub use validate::{Rejection, Rules};

/// Default depth of the request queue: requests waiting beyond it are refused as busy.
pub const QUEUE_DEPTH_DEFAULT: usize = 1024;
/// Default most commands the processor takes into one batch (one durable point).
pub const BATCH_COMMANDS_DEFAULT: usize = 16_384;
/// Most commands in one request.
pub const REQUEST_COMMANDS_MAX: usize = 10_000;
/// Default allowed skew of measurement times ahead of the gateway clock: 5 minutes.
pub const FUTURE_SKEW_MS_DEFAULT: i64 = 5 * 60 * 1000;
/// Default most entities ([`Rules::entities_max`]): at most about 46 KB each with full
/// rollups at the default horizons, so under 1 GB of image in the worst case.
pub const ENTITIES_MAX_DEFAULT: usize = 20_000;

/// The gateway's clock, replaceable in tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// How the engine runs. Every field has a documented default.
#[derive(Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// The log's options.
    pub wal: WalOptions,
    /// Requests that may wait in the queue. Default [`QUEUE_DEPTH_DEFAULT`].
    pub queue_depth: usize,
    /// Most commands per processor batch. Default [`BATCH_COMMANDS_DEFAULT`].
    pub batch_commands: usize,
    /// Validation settings. Default: no auto-registration, [`FUTURE_SKEW_MS_DEFAULT`].
    pub rules: Rules,
    /// Rollup horizons. Default [`RollupOptions::default`].
    pub rollups: RollupOptions,
    /// The clock. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// Snapshots and archive. Default [`StorageOptions::default`].
    pub storage: StorageOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wal: WalOptions::default(),
            queue_depth: QUEUE_DEPTH_DEFAULT,
            batch_commands: BATCH_COMMANDS_DEFAULT,
            rules: Rules {
                auto_register: None,
                future_skew_ms: FUTURE_SKEW_MS_DEFAULT,
                entities_max: ENTITIES_MAX_DEFAULT,
            },
            rollups: RollupOptions::default(),
            clock: Arc::new(SystemClock),
            storage: StorageOptions::default(),
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("wal", &self.wal)
            .field("queue_depth", &self.queue_depth)
            .field("batch_commands", &self.batch_commands)
            .field("rules", &self.rules)
            .field("rollups", &self.rollups)
            .finish()
    }
}

impl EngineOptions {
    /// Sets the log options.
    pub fn wal(mut self, wal: WalOptions) -> Self {
        self.wal = wal;
        self
    }
    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Registers unknown meters on their first reading with this kind.
    pub fn auto_register(mut self, kind: Option<MeterKind>) -> Self {
        self.rules.auto_register = kind;
        self
    }
    /// Sets the queue depth.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }
    /// Sets the snapshot and archive options.
    pub fn storage(mut self, storage: StorageOptions) -> Self {
        self.storage = storage;
        self
    }

    /// Sets the rollup horizons.
    pub fn rollups(mut self, rollups: RollupOptions) -> Self {
        self.rollups = rollups;
        self
    }
}

/// One command of a request, with optional optimistic concurrency.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    /// The command.
    pub command: Command,
    /// If set, the command is rejected unless the entity is at exactly this seq.
    pub expected_seq: Option<u64>,
}

impl From<Command> for CommandRequest {
    fn from(command: Command) -> Self {
        CommandRequest {
            command,
            expected_seq: None,
        }
    }
}

/// A request: commands processed in order, each with its own result. The accepted events
/// of one request are stored atomically (one frame).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The commands.
    pub commands: Vec<CommandRequest>,
    /// The client's id for the request: a retry with the same id is answered as a
    /// duplicate and stores nothing.
    pub command_id: Option<CommandId>,
}

impl Request {
    /// A request of these commands without expected seqs or id.
    pub fn of(commands: impl IntoIterator<Item = Command>) -> Request {
        Request {
            commands: commands.into_iter().map(CommandRequest::from).collect(),
            command_id: None,
        }
    }
}

/// The outcome of one command.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    /// Stored: the offset and seq of its (last) event.
    Accepted {
        /// Global offset.
        offset: Offset,
        /// Per-entity seq.
        seq: u64,
    },
    /// Already recorded exactly so; nothing stored.
    Duplicate,
    /// The request's `command_id` was processed before (a retry): nothing stored now. The
    /// first processing's per-item answers are not kept, so this says neither "stored" nor
    /// "refused" for the item: what that processing stored is stored once, what it refused
    /// is not stored.
    Replayed,
    /// Refused; nothing stored.
    Rejected(Rejection),
}

/// The outcome of a request, one result per command, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Per-command results.
    pub results: Vec<ItemResult>,
    /// True if the request's `command_id` had been processed before (a retry).
    pub replayed: bool,
}

/// Why a request was not processed at all (nothing of it is stored).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full: retry later.
    #[error("engine busy: {queue_depth} requests are queued")]
    Busy {
        /// The queue's depth.
        queue_depth: usize,
    },
    /// Too many commands in one request.
    #[error("request has {commands} commands; the maximum is {max}")]
    TooLarge {
        /// Commands in the request.
        commands: usize,
        /// The limit.
        max: usize,
    },
    /// The engine is shutting down.
    #[error("engine stopped")]
    Stopped,
    /// The log failed; the engine must be restarted.
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineOpenError {
    /// The log could not be opened.
    #[error(transparent)]
    Log(#[from] OpenError),
    /// The log could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A record is not a valid event.
    #[error("record at offset {offset} is not a valid event: {error}")]
    BadEvent {
        /// Its offset.
        offset: Offset,
        /// What is wrong.
        error: EventDecodeError,
    },
    /// [`HISTORY_START_FILE_NAME`] exists but does not hold an offset.
    #[error("{path}: {reason}")]
    HistoryStart {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No usable snapshot, and the history before the hot log is not in the local archive.
    #[error("cannot rebuild the state: no usable snapshot, and the history before offset {oldest} is not in the local archive ({reason}); restore the data directory from central storage (gridlog restore)")]
    HistoryMissing {
        /// The hot log's oldest offset.
        oldest: Offset,
        /// What is missing.
        reason: String,
    },
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    /// Commands accepted.
    pub accepted: u64,
    /// Commands that were duplicates.
    pub duplicates: u64,
    /// Commands rejected.
    pub rejected: u64,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Processor batches.
    pub batches: u64,
    /// One past the newest applied offset.
    pub committed_offset: Offset,
    /// Events replayed at start.
    pub replayed_events: u64,
    /// How long the start-up replay took.
    pub replay_millis: u64,
    /// The log's commit counters.
    pub wal: CommitStatsSnapshot,
    /// Set if the log failed.
    pub failed: Option<String>,
    /// Snapshots and archive.
    pub storage: StorageStats,
}

type Reply = Box<dyn FnOnce(Result<Response, SubmitError>) + Send>;

/// Rejections of one entity per minute over the last hour: a fixed 60-slot ring, so memory
/// per entity is bounded whatever the rejection rate.
#[derive(Debug, Clone)]
pub(crate) struct RejectionWindow {
    minutes: [(i64, u32); 60],
}

impl Default for RejectionWindow {
    fn default() -> Self {
        RejectionWindow {
            minutes: [(i64::MIN, 0); 60],
        }
    }
}

impl RejectionWindow {
    pub(crate) fn add(&mut self, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000);
        let slot = &mut self.minutes[minute.rem_euclid(60) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
    }

    fn count(&self, now_ms: i64) -> u32 {
        let minute = now_ms.div_euclid(60_000);
        self.minutes
            .iter()
            .filter(|(m, _)| *m <= minute && *m > minute - 60)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The file a restore from central storage leaves in `DATA_DIR`: the first offset whose
/// history this directory holds, as decimal text. The history before it is in central
/// storage only: queries for it answer [`QueryError::BeforeHistory`], never a read error,
/// and entity queries whose index points below it start there. Absent: offset 1.
pub const HISTORY_START_FILE_NAME: &str = "HISTORY_START";

/// Reads [`HISTORY_START_FILE_NAME`]; offset 1 when there is none.
pub fn read_history_start(data_dir: &Path) -> Result<Offset, EngineOpenError> {
    let path = data_dir.join(HISTORY_START_FILE_NAME);
    let bad = |reason: String| EngineOpenError::HistoryStart {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<Offset>() {
            Ok(offset) if offset >= gridlog_common::FIRST_OFFSET => Ok(offset),
            _ => Err(bad(format!("holds {text:?}, not an offset"))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(gridlog_common::FIRST_OFFSET),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Called with the new committed offset after every commit.
pub type CommitHook = Box<dyn Fn(Offset) + Send + Sync>;

pub(crate) struct Job {
    pub(crate) request: Request,
    pub(crate) reply: Reply,
}

pub(crate) struct Inner {
    pub(crate) wal: Wal,
    pub(crate) image: RwLock<Image>,
    pub(crate) committed: Mutex<Offset>,
    pub(crate) commit_cv: Condvar,
    pub(crate) committed_atomic: AtomicU64,
    pub(crate) failed: Mutex<Option<String>>,
    pub(crate) rules: Rules,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) batch_commands: usize,
    pub(crate) queued: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) commit_hooks: Mutex<Vec<CommitHook>>,
    /// Recent rejections per known entity (not events: nothing of a rejection is stored).
    pub(crate) rejections:
        Mutex<std::collections::HashMap<gridlog_common::id::EntityId, RejectionWindow>>,
    replayed_events: u64,
    replay_millis: u64,
    pub(crate) data_dir: std::path::PathBuf,
    pub(crate) storage_options: StorageOptions,
    pub(crate) storage: Mutex<StorageStats>,
    /// Events and log bytes committed since the last maintenance trigger.
    pub(crate) since_snapshot: Mutex<(u64, u64)>,
    /// Wakes the maintenance thread.
    pub(crate) maintenance_wake: Mutex<Option<SyncSender<()>>>,
    /// One maintenance cycle at a time (the thread's, or an operator's `snapshot_now`).
    pub(crate) maintenance_lock: Mutex<()>,
    /// Where start-up found its state.
    pub(crate) started_from: String,
    /// The first offset this directory holds history from ([`HISTORY_START_FILE_NAME`]).
    pub(crate) history_start: Offset,
}

impl Inner {
    /// Counts committed work and wakes maintenance when a snapshot is due.
    pub(crate) fn note_committed(&self, events: u64, bytes: u64) {
        let mut since = self
            .since_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        since.0 += events;
        since.1 += bytes;
        if since.0 >= self.storage_options.snapshot_every_events
            || since.1 >= self.storage_options.snapshot_every_bytes
        {
            *since = (0, 0);
            if let Some(wake) = self
                .maintenance_wake
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                let _ = wake.try_send(());
            }
        }
    }
}

impl Inner {
    pub(crate) fn committed(&self) -> Offset {
        self.committed_atomic.load(Ordering::Acquire)
    }

    pub(crate) fn publish_commit(&self, next: Offset) {
        *self.committed.lock().unwrap_or_else(|e| e.into_inner()) = next;
        self.committed_atomic.store(next, Ordering::Release);
        self.commit_cv.notify_all();
        for hook in self
            .commit_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hook(next);
        }
    }
}

/// The running engine. Share it by reference or `Arc`; every method takes `&self`.
pub struct Engine {
    inner: Arc<Inner>,
    queue: Option<SyncSender<Job>>,
    queue_depth: usize,
    processor: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
}

/// The first pause before a failed snapshot/archive cycle is tried again; it doubles after
/// each failure up to [`MAINTENANCE_RETRY_MAX`].
pub const MAINTENANCE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between tries of a failing snapshot/archive cycle.
pub const MAINTENANCE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The pause before the next try after a failed cycle (`previous`: the pause before it).
fn maintenance_retry_after(previous: Option<std::time::Duration>) -> std::time::Duration {
    previous.map_or(MAINTENANCE_RETRY_FIRST, |p| {
        (p * 2).min(MAINTENANCE_RETRY_MAX)
    })
}

/// Runs snapshot/archive cycles when woken, and tries a failed one again after a growing
/// pause (a shortage of file handles, memory or space passes by itself) until it succeeds.
fn maintenance_loop(inner: &Inner, queue: &SyncSender<Job>, woken: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut retry: Option<std::time::Duration> = None;
    loop {
        let go = match retry {
            None => woken.recv().is_ok(),
            Some(pause) => !matches!(
                woken.recv_timeout(pause),
                Err(RecvTimeoutError::Disconnected)
            ),
        };
        if !go {
            return;
        }
        retry = (!run_maintenance(inner, queue)).then(|| maintenance_retry_after(retry));
    }
}

/// One snapshot/archive cycle; false if it failed (`last_error` says why).
fn run_maintenance(inner: &Inner, queue: &SyncSender<Job>) -> bool {
    let _one = inner
        .maintenance_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let result = maintenance::cycle(inner, queue, &inner.data_dir, &inner.storage_options);
    let mut stats = inner.storage.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => {
            stats.last_error = None;
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot/archive cycle failed; it is tried again after a pause");
            stats.last_error = Some(e.to_string());
            false
        }
    }
}

/// Events decoded per chunk handed from the decoding thread to the applying one.
const REPLAY_CHUNK_EVENTS: usize = 4096;
/// Chunks decoded ahead of the applying thread (bounds replay's memory to a few MiB).
const REPLAY_CHUNKS_AHEAD: usize = 4;

/// Applies every event `next` yields to `image`, in order. Reading and decoding run on a
/// second thread, ahead of the applying one by at most [`REPLAY_CHUNKS_AHEAD`] chunks:
/// start-up uses both cores.
fn replay(
    image: &mut Image,
    mut next: impl FnMut() -> Option<Result<(Offset, StoredEvent), EngineOpenError>> + Send,
) -> Result<(), EngineOpenError> {
    type Chunk = Result<Vec<(Offset, StoredEvent)>, EngineOpenError>;
    std::thread::scope(|scope| {
        let (chunks, decoded) = mpsc::sync_channel::<Chunk>(REPLAY_CHUNKS_AHEAD);
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK_EVENTS);
            while let Some(item) = next() {
                match item {
                    Ok(event) => chunk.push(event),
                    Err(e) => {
                        let _ = chunks.send(Err(e));
                        return;
                    }
                }
                if chunk.len() == REPLAY_CHUNK_EVENTS {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_CHUNK_EVENTS));
                    if chunks.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = chunks.send(Ok(chunk));
            }
        });
        for chunk in decoded {
            let chunk = chunk?;
            // Slots first (entities new in this chunk get none and are found by id), then
            // apply with the entity a few events ahead already on its way into the cache.
            let slots: Vec<EntitySlot> = chunk
                .iter()
                .map(|(_, event)| image.slot(event.entity.as_str()).unwrap_or(EntitySlot::MAX))
                .collect();
            image.apply_all(&slots, chunk.iter().map(|(offset, event)| (*offset, event)));
        }
        Ok(())
    })
}

/// The event in the record at `offset`, for replay.
fn decoded(offset: Offset, bytes: &[u8]) -> Result<(Offset, StoredEvent), EngineOpenError> {
    decode_event(bytes)
        .map(|event| (offset, event))
        .map_err(|error| EngineOpenError::BadEvent { offset, error })
}

/// The newest snapshot that loads and checks, or an empty image (full replay). A snapshot
/// beyond the end of the log, of another log, or damaged, is skipped with a warning.
fn load_newest_snapshot(data_dir: &Path, wal: &Wal, rollups: RollupOptions) -> (Image, String) {
    let snapshots = crate::snapshot::list(data_dir).unwrap_or_default();
    for entry in snapshots.iter().rev() {
        if entry.next_offset > wal.next_offset() {
            tracing::warn!(path = %entry.path.display(), "snapshot is beyond the end of the log; ignored");
            continue;
        }
        match crate::snapshot::load(&entry.path, Some(wal.log_id())) {
            Ok((_, image)) if image.rollup_options == rollups => {
                return (image, format!("snapshot at offset {}", entry.next_offset));
            }
            Ok(_) => {
                tracing::warn!(path = %entry.path.display(), "snapshot has other rollup horizons than configured; ignored")
            }
            Err(e) => tracing::warn!(error = %e, "damaged snapshot; falling back to an older one"),
        }
    }
    (Image::new(rollups), "full replay".to_string())
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("committed", &self.inner.committed())
            .finish()
    }
}

impl Engine {
    /// Opens the data directory: recovers the log, replays it into the image, and starts the
    /// processor.
    pub fn open(data_dir: &Path, options: EngineOptions) -> Result<Engine, EngineOpenError> {
        let history_start = read_history_start(data_dir)?;
        let wal = Wal::open(data_dir, options.wal.clone())?;
        let io = wal.io();
        let _ = crate::archive::remove_temporaries(&io, data_dir);
        let started = std::time::Instant::now();
        let (mut image, started_from) = load_newest_snapshot(data_dir, &wal, options.rollups);
        // Every event applied from here on was replayed, from the archive or the hot log.
        let events_before = image.events;
        let oldest = wal.oldest_offset();
        if image.next_offset < oldest {
            // The history between the snapshot (or the beginning) and the hot log is in the
            // local archive, or the state cannot be rebuilt.
            let mut cursor =
                crate::archive::ArchiveCursor::new(data_dir, image.next_offset, oldest).map_err(
                    |e| EngineOpenError::HistoryMissing {
                        oldest,
                        reason: e.to_string(),
                    },
                )?;
            replay(&mut image, || {
                Some(match cursor.next_record()? {
                    Ok((offset, bytes)) => decoded(offset, &bytes),
                    Err(e) => Err(EngineOpenError::HistoryMissing {
                        oldest,
                        reason: e.to_string(),
                    }),
                })
            })?;
        }
        let mut cursor = wal.read_from(image.next_offset.max(oldest))?;
        replay(&mut image, || {
            Some(match cursor.next()? {
                Ok(record) => decoded(record.offset, record.bytes),
                Err(e) => Err(e.into()),
            })
        })?;
        drop(cursor);
        let replayed_events = image.events - events_before;
        let replay_millis = started.elapsed().as_millis() as u64;
        tracing::info!(
            events = replayed_events,
            millis = replay_millis,
            from = %started_from,
            "recovered the image"
        );
        let next = wal.next_offset();
        image.next_offset = next;
        let planner = processor::Planner::new(&image);
        let inner = Arc::new(Inner {
            wal,
            image: RwLock::new(image),
            committed: Mutex::new(next),
            commit_cv: Condvar::new(),
            committed_atomic: AtomicU64::new(next),
            failed: Mutex::new(None),
            rules: options.rules,
            clock: options.clock.clone(),
            batch_commands: options.batch_commands.max(1),
            queued: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            commit_hooks: Mutex::new(Vec::new()),
            rejections: Mutex::new(std::collections::HashMap::new()),
            replayed_events,
            replay_millis,
            data_dir: data_dir.to_path_buf(),
            storage_options: options.storage,
            storage: Mutex::new(StorageStats::default()),
            since_snapshot: Mutex::new((0, 0)),
            maintenance_wake: Mutex::new(None),
            maintenance_lock: Mutex::new(()),
            started_from,
            history_start,
        });
        let (queue, jobs) = mpsc::sync_channel::<Job>(options.queue_depth.max(1));
        let processor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("gridlog-processor".into())
                .spawn(move || processor::run(&inner, jobs, planner))
                .map_err(|source| OpenError::Io {
                    path: data_dir.to_path_buf(),
                    source,
                })?
        };
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        *inner
            .maintenance_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(wake);
        let maintenance = {
            let inner = inner.clone();
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("gridlog-maintenance".into())
                .spawn(move || {
                    // Snapshots and archiving use the cores ingest leaves idle.
                    if let Err(error) = crate::hints::run_in_background() {
                        tracing::warn!(%error, "cannot lower the maintenance thread's priority");
                    }
                    maintenance_loop(&inner, &queue, &woken);
                })
                .map_err(|source| OpenError::Io {
                    path: data_dir.to_path_buf(),
                    source,
                })?
        };
        Ok(Engine {
            inner,
            queue: Some(queue),
            queue_depth: options.queue_depth.max(1),
            processor: Some(processor),
            maintenance: Some(maintenance),
        })
    }

    /// Takes a snapshot now (and archives and compacts as after any snapshot); returns the
    /// storage statistics after it.
    pub fn snapshot_now(&self) -> Result<StorageStats, MaintenanceError> {
        let queue = self.queue.as_ref().ok_or(MaintenanceError::Record {
            what: "the snapshot",
            error: SubmitError::Stopped,
        })?;
        let _one = self
            .inner
            .maintenance_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        maintenance::cycle(
            &self.inner,
            queue,
            &self.inner.data_dir,
            &self.inner.storage_options,
        )?;
        Ok(self.storage_stats())
    }

    /// What the snapshot and archive side did.
    pub fn storage_stats(&self) -> StorageStats {
        self.inner
            .storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first offset whose history this directory holds (1 unless it was restored from
    /// a snapshot in central storage; see [`HISTORY_START_FILE_NAME`]).
    pub fn history_start(&self) -> Offset {
        self.inner.history_start
    }

    /// Where start-up found its state (`snapshot at N`, `full replay`).
    pub fn started_from(&self) -> &str {
        &self.inner.started_from
    }

    /// Submits a request and waits for its results (after its events are durable).
    pub fn submit(&self, request: Request) -> Result<Response, SubmitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit_with(
            request,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )?;
        rx.recv().unwrap_or(Err(SubmitError::Stopped))
    }

    /// Queues a request; `reply` is called from the processor thread with the results once
    /// they are durable. For async callers: send the result to a oneshot channel in `reply`.
    pub fn submit_with(
        &self,
        request: Request,
        reply: Box<dyn FnOnce(Result<Response, SubmitError>) + Send>,
    ) -> Result<(), SubmitError> {
        if request.commands.len() > REQUEST_COMMANDS_MAX {
            return Err(SubmitError::TooLarge {
                commands: request.commands.len(),
                max: REQUEST_COMMANDS_MAX,
            });
        }
        if let Some(failed) = self
            .inner
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(SubmitError::Storage(failed));
        }
        let queue = self.queue.as_ref().ok_or(SubmitError::Stopped)?;
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(Job { request, reply }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Busy {
                        queue_depth: self.queue_depth,
                    },
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// Runs `f` with read access to the image.
    pub fn read<R>(&self, f: impl FnOnce(&Image) -> R) -> R {
        let image = self.inner.image.read().unwrap_or_else(|e| e.into_inner());
        f(&image)
    }

    /// The gateway's current time, from the engine's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The image's digest.
    ///
    /// Only the copy-on-write capture (pointer copies) happens under the image's read lock;
    /// the hashing runs outside it, so a status poll never holds up the processor's apply.
    pub fn digest(&self) -> u64 {
        self.read(Image::capture).digest()
    }

    /// One past the newest offset applied to the image.
    pub fn committed_offset(&self) -> Offset {
        self.inner.committed()
    }

    /// Calls `hook` with the new committed offset after every commit (from the processor
    /// thread: keep it short, e.g. send to a channel).
    pub fn on_commit(&self, hook: CommitHook) {
        self.inner
            .commit_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Commands about `entity` rejected in the last hour (by gateway time). Kept in memory
    /// only, for known entities: rejections are not events and are forgotten at restart.
    pub fn rejected_last_hour(&self, entity: &str) -> u32 {
        let now = self.now_ms();
        let windows = self
            .inner
            .rejections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        windows.get(entity).map_or(0, |w| w.count(now))
    }

    /// The log (for status and tools).
    pub fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        let i = &self.inner;
        EngineStats {
            accepted: i.accepted.load(Ordering::Relaxed),
            duplicates: i.duplicates.load(Ordering::Relaxed),
            rejected: i.rejected.load(Ordering::Relaxed),
            queued: i.queued.load(Ordering::Relaxed),
            batches: i.batches.load(Ordering::Relaxed),
            committed_offset: i.committed(),
            replayed_events: i.replayed_events,
            replay_millis: i.replay_millis,
            wal: i.wal.stats(),
            failed: i.failed.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            storage: i.storage.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Stops taking requests, finishes the queued ones, and closes the log.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Maintenance first: it submits through the queue, which must outlive it.
        self.inner
            .maintenance_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(maintenance) = self.maintenance.take() {
            let _ = maintenance.join();
        }
        self.queue.take();
        if let Some(processor) = self.processor.take() {
            let _ = processor.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
