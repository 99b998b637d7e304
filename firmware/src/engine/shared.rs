//! The engine's handle and the state its threads share, grouped by the one that writes it:
//! [`Counters`] (the planner and the applier count), [`CommitState`] (the applier publishes
//! commits and the first storage failure; readers and subscribers wait on it),
//! [`MaintenanceState`] (the maintenance thread's options, statistics and trigger).
//! Read-only after start: the log, the rules, the clock, the recovery report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use gridlog_common::id::EntityId;
use gridlog_common::Offset;

use super::clock::Clock;
use super::image::Image;
use super::recovery::RecoveryReport;
use super::request::{EngineFailure, Job};
use super::rollup_store::RollupStore;
use super::validate::Rules;
use crate::wal::Wal;

/// Locks `mutex`, taking the data of a poisoned one: every value behind these locks is
/// whole between statements, so a panic elsewhere leaves nothing half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running engine. Share it by reference or `Arc`; every method takes `&self`.
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    pub(crate) queue: Option<SyncSender<Job>>,
    pub(crate) queue_depth: usize,
    pub(crate) processor: Option<JoinHandle<()>>,
    pub(crate) maintenance: Option<JoinHandle<()>>,
    /// The rollup thread (spills), stopped after the processor: the applier may wait for it.
    pub(crate) rollups: Option<JoinHandle<()>>,
}

/// What the engine's threads share.
pub(crate) struct Inner {
    pub(crate) wal: Wal,
    pub(crate) image: RwLock<Image>,
    pub(crate) rules: Rules,
    pub(crate) clock: Arc<dyn Clock>,
    /// Most commands the planner takes into one batch.
    pub(crate) batch_commands: usize,
    pub(crate) data_dir: PathBuf,
    /// The first offset this directory holds history from
    /// ([`super::HISTORY_START_FILE_NAME`]).
    pub(crate) history_start: Offset,
    /// How start-up went.
    pub(crate) recovery: RecoveryReport,
    /// Snapshots start-up passed over for the rollup store (see
    /// `Engine::snapshots_passed_over`).
    pub(crate) snapshots_passed_over: Vec<Offset>,
    pub(crate) counters: Counters,
    pub(crate) commit: CommitState,
    pub(crate) maintenance: MaintenanceState,
    /// Recent rejections per known entity (not events: nothing of a rejection is stored).
    /// Written by the applier, read by status.
    pub(crate) rejections: Mutex<HashMap<EntityId, RejectionWindow>>,
    /// Sealed rollup days on disk. Lock order: its list of spills, then the image.
    pub(crate) rollups: RollupStore,
}

impl Inner {
    /// One past the newest applied offset.
    pub(crate) fn committed(&self) -> Offset {
        self.commit.committed()
    }
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests waiting in the queue (callers add, the planner takes away).
    pub(crate) queued: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
}

/// Called with the new committed offset after every commit.
pub type CommitHook = Box<dyn Fn(Offset) + Send + Sync>;

/// The committed offset and the first storage failure: written by the write path, waited
/// on by readers and subscribers.
pub(crate) struct CommitState {
    /// One past the newest applied offset, for waiters on `changed`.
    committed: Mutex<Offset>,
    /// Notified at every commit.
    changed: Condvar,
    /// The same offset, for readers that do not wait.
    committed_atomic: AtomicU64,
    /// Set at the first failed append or sync; the engine accepts no write after it.
    failed: Mutex<Option<EngineFailure>>,
    hooks: Mutex<Vec<CommitHook>>,
}

impl CommitState {
    pub(crate) fn new(next: Offset) -> CommitState {
        CommitState {
            committed: Mutex::new(next),
            changed: Condvar::new(),
            committed_atomic: AtomicU64::new(next),
            failed: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn committed(&self) -> Offset {
        self.committed_atomic.load(Ordering::Acquire)
    }

    /// Publishes `next` as the committed offset: wakes waiters and calls every hook.
    pub(crate) fn publish(&self, next: Offset) {
        *lock(&self.committed) = next;
        self.committed_atomic.store(next, Ordering::Release);
        self.changed.notify_all();
        for hook in lock(&self.hooks).iter() {
            hook(next);
        }
    }

    /// Waits up to `timeout` for the committed offset to pass `position`.
    pub(crate) fn wait_past(&self, position: Offset, timeout: std::time::Duration) {
        let committed = lock(&self.committed);
        let _unused = self
            .changed
            .wait_timeout_while(committed, timeout, |c| *c <= position)
            .unwrap_or_else(|e| e.into_inner());
    }

    pub(crate) fn add_hook(&self, hook: CommitHook) {
        lock(&self.hooks).push(hook);
    }

    /// The storage failure, if there was one.
    pub(crate) fn failure(&self) -> Option<EngineFailure> {
        lock(&self.failed).clone()
    }

    /// Records the first storage failure (the engine accepts no writes after it); returns
    /// the failure callers are told about.
    pub(crate) fn fail(&self, error: EngineFailure) -> EngineFailure {
        let mut failed = lock(&self.failed);
        if failed.is_none() {
            tracing::error!(%error, "log append failed; the engine stops accepting writes");
            *failed = Some(error);
        }
        failed.clone().unwrap_or(EngineFailure::ApplierStopped)
    }
}

/// When and how much to snapshot and archive. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageOptions {
    /// Snapshot after this many events. Default 1,000,000.
    pub snapshot_every_events: u64,
    /// Snapshot after this many bytes of log. Default 128 MiB.
    pub snapshot_every_bytes: u64,
    /// Snapshots kept. Default 3.
    pub snapshots_keep: usize,
    /// Move sealed segments below the oldest kept snapshot into the archive. Default true.
    pub archive: bool,
    /// Most bytes the archive may hold; 0 = no budget. Default 0.
    pub archive_budget_bytes: u64,
    /// Allow the budget to evict segments central storage has not confirmed. Default false.
    pub archive_evict_unshipped: bool,
    /// Most bytes of sealed rollup days and amendments the image queues before the
    /// maintenance thread writes them to the rollup store (without a snapshot). Default
    /// 4 MiB: at 10,000 meters, every 8 hours the meters hand out ~13 MiB of blocks,
    /// written in ~3 spills.
    pub rollup_spill_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            snapshot_every_events: 1_000_000,
            snapshot_every_bytes: 128 * 1024 * 1024,
            snapshots_keep: 3,
            archive: true,
            archive_budget_bytes: 0,
            archive_evict_unshipped: false,
            rollup_spill_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What the storage side did last, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Snapshots written since start.
    pub snapshots_written: u64,
    /// Offset (exclusive) of the newest snapshot.
    pub last_snapshot_offset: Option<Offset>,
    /// Its size.
    pub last_snapshot_bytes: u64,
    /// How long writing it took.
    pub last_snapshot_millis: u64,
    /// Segments archived since start.
    pub segments_archived: u64,
    /// Original bytes archived since start.
    pub archived_original_bytes: u64,
    /// Archive file bytes written since start.
    pub archived_file_bytes: u64,
    /// Time spent compressing and writing archives since start.
    pub archive_millis: u64,
    /// The archive's size now.
    pub archive_bytes: u64,
    /// The archive is over its budget with nothing it may evict.
    pub archive_over_budget: bool,
    /// Segments evicted from the archive since start.
    pub evicted: u64,
    /// Rollup spills written since start (merges not counted).
    pub rollup_spills: u64,
    /// Rollup spills merged since start.
    pub rollup_merges: u64,
    /// Bytes of sealed rollup days and amendments queued in the image after the last spill.
    pub rollup_queued_bytes: u64,
    /// The last storage error, if the last cycle failed.
    pub last_error: Option<String>,
}

/// The maintenance thread's state: its options, what it did, and when to wake it.
pub(crate) struct MaintenanceState {
    pub(crate) options: StorageOptions,
    stats: Mutex<StorageStats>,
    /// Events and log bytes committed since the last maintenance trigger.
    since_snapshot: Mutex<(u64, u64)>,
    /// Wakes the maintenance thread; `None` once the engine stops.
    wake: Mutex<Option<SyncSender<()>>>,
    /// One maintenance cycle at a time (the thread's, or an operator's `snapshot_now`).
    one_at_a_time: Mutex<()>,
    /// Wakes the rollup thread (a spill is due); `None` once the engine stops.
    rollup_wake: Mutex<Option<SyncSender<()>>>,
    /// Bytes the image queues for the rollup store, as of the last commit or spill.
    rollup_queued: Mutex<usize>,
    /// Notified when a spill has drained the queue.
    rollup_drained: Condvar,
    /// The engine is stopping: the applier no longer waits for spills.
    stopping: std::sync::atomic::AtomicBool,
}

/// How many times `rollup_spill_bytes` the image may queue before the applier waits for a
/// spill: ingest faster than the rollup store is written waits for it, so the queue's memory
/// stays bounded (4 × 4 MiB at the defaults).
pub const ROLLUP_QUEUE_SPILLS_MAX: u64 = 4;

/// The longest the applier waits for a spill before it looks again whether one failed.
const ROLLUP_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(100);

impl MaintenanceState {
    pub(crate) fn new(options: StorageOptions) -> MaintenanceState {
        MaintenanceState {
            options,
            stats: Mutex::new(StorageStats::default()),
            since_snapshot: Mutex::new((0, 0)),
            wake: Mutex::new(None),
            one_at_a_time: Mutex::new(()),
            rollup_wake: Mutex::new(None),
            rollup_queued: Mutex::new(0),
            rollup_drained: Condvar::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The statistics, locked for an update.
    pub(crate) fn stats(&self) -> MutexGuard<'_, StorageStats> {
        lock(&self.stats)
    }

    /// Held for the length of one cycle.
    pub(crate) fn one_at_a_time(&self) -> MutexGuard<'_, ()> {
        lock(&self.one_at_a_time)
    }

    /// Sets (or, with `None`, drops) the maintenance thread's wake-up channel.
    pub(crate) fn set_wake(&self, wake: Option<SyncSender<()>>) {
        *lock(&self.wake) = wake;
    }

    /// Counts committed work and wakes maintenance when a snapshot is due, and the rollup
    /// thread when the image queues `sealed_bytes` ≥ `rollup_spill_bytes` for the store.
    pub(crate) fn note_committed(&self, events: u64, bytes: u64, sealed_bytes: usize) {
        let mut since = lock(&self.since_snapshot);
        since.0 += events;
        since.1 += bytes;
        if since.0 >= self.options.snapshot_every_events
            || since.1 >= self.options.snapshot_every_bytes
        {
            *since = (0, 0);
            if let Some(wake) = lock(&self.wake).as_ref() {
                let _ = wake.try_send(());
            }
        }
        drop(since);
        *lock(&self.rollup_queued) = sealed_bytes;
        if sealed_bytes as u64 >= self.options.rollup_spill_bytes {
            if let Some(wake) = lock(&self.rollup_wake).as_ref() {
                let _ = wake.try_send(());
            }
        }
    }

    /// Sets (or, with `None`, drops) the rollup thread's wake-up channel.
    pub(crate) fn set_rollup_wake(&self, wake: Option<SyncSender<()>>) {
        *lock(&self.rollup_wake) = wake;
        self.rollup_drained.notify_all();
    }

    /// Bytes the image queues for the rollup store, as of the last commit or spill.
    pub(crate) fn rollup_queued_bytes(&self) -> usize {
        *lock(&self.rollup_queued)
    }

    /// A spill drained the queue to `queued` bytes.
    pub(crate) fn note_spilled(&self, queued: usize) {
        *lock(&self.rollup_queued) = queued;
        self.rollup_drained.notify_all();
    }

    /// The engine is stopping: [`MaintenanceState::wait_for_rollup_room`] returns.
    pub(crate) fn note_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.rollup_drained.notify_all();
    }

    /// Waits while the image queues more than [`ROLLUP_QUEUE_SPILLS_MAX`] ×
    /// `rollup_spill_bytes` for the store, so memory stays bounded when ingest outruns the
    /// spills — and while spills fail (the rollup thread retries; status shows the error):
    /// writes then wait in the queue and new ones get `Busy`, as when the log cannot write.
    /// Not once the engine is stopping.
    pub(crate) fn wait_for_rollup_room(&self) {
        let bound = self
            .options
            .rollup_spill_bytes
            .saturating_mul(ROLLUP_QUEUE_SPILLS_MAX);
        let mut queued = lock(&self.rollup_queued);
        while *queued as u64 > bound && !self.stopping.load(Ordering::Relaxed) {
            queued = self
                .rollup_drained
                .wait_timeout(queued, ROLLUP_WAIT_STEP)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

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

    pub(crate) fn count(&self, now_ms: i64) -> u32 {
        let minute = now_ms.div_euclid(60_000);
        self.minutes
            .iter()
            .filter(|(m, _)| *m <= minute && *m > minute - 60)
            .map(|(_, n)| n)
            .sum()
    }
}
