//! The engine: meters and energy assets as event-sourced entities over the durable log.
//!
//! ```text
//! submit(Request) ─▶ bounded queue ─▶ planner thread (gridlog-processor):
//!                        drain a batch of requests; validate each command against the
//!                          planner's own copy of every entity's state (which already holds
//!                          the batches in flight); encode accepted events, one frame per
//!                          request (atomic); append the frames without waiting
//!                    ─▶ applier thread (gridlog-applier), at most BATCHES_IN_FLIGHT behind:
//!                        wait for the batch's ONE durable point; apply its events to the
//!                          image (persist, then apply); publish the committed offset;
//!                          answer every caller
//!                    ─▶ maintenance thread: snapshots, archive, budget (off the write path)
//! ```
//!
//! Files by role, each depending only on those listed before it (no cycles):
//! `digest` (the image hash), [`rejection`] (codes and rejections), [`times`] (a meter's
//! stored reading times), [`state`] (entity state and how events change it), `dedup`
//! (recent command ids and readings), `slots` (entity numbering),
//! [`rollup`] (interval rings), [`validate`] (the rules, pure), [`image`] (state and read
//! models), `clock`, [`request`] (requests and results), [`recovery`] (start-up), `shared`
//! (the engine handle and the state its threads share, by owner), `processor` (the write
//! path), [`maintenance`], [`query`] (reads and subscriptions), and this file (options,
//! open, submit). `validate` and `image` never import each other.

mod clock;
mod dedup;
mod digest;
pub mod image;
pub mod maintenance;
mod processor;
pub mod query;
pub mod recovery;
pub mod rejection;
pub mod request;
pub mod rollup;
mod rollup_query;
pub mod rollup_store;
pub mod sealed;
mod shared;
mod slots;
pub mod state;
pub mod times;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use gridlog_common::domain::MeterKind;
use gridlog_common::Offset;

use crate::wal::{CommitStatsSnapshot, OpenError, Wal, WalOptions};
pub use clock::{Clock, SystemClock};
pub use dedup::{RECENT_READINGS_DEFAULT, RECENT_READING_BYTES, RECENT_READING_INDEX_BYTES};
pub use image::{Image, SiteTotals};
pub use maintenance::{MaintenanceError, MAINTENANCE_RETRY_FIRST, MAINTENANCE_RETRY_MAX};
pub use query::{EntityEvents, EventPage, EventRecord, Filter, QueryError, Subscription};
use recovery::Recovered;
pub use recovery::{
    read_history_start, EngineOpenError, HistoryStartError, StartedFrom, HISTORY_START_FILE_NAME,
};
pub use rejection::{Rejection, RejectionCode};
use request::Job;
pub use request::{
    CommandRequest, EngineFailure, ItemResult, Request, Response, SubmitError, REQUEST_COMMANDS_MAX,
};
pub use rollup::{RollupOptions, Step};
use shared::{lock, CommitState, Counters, Inner, MaintenanceState};
pub use shared::{CommitHook, Engine, StorageOptions, StorageStats, ROLLUP_QUEUE_SPILLS_MAX};
pub use validate::Rules;

/// Default depth of the request queue: requests waiting beyond it are refused as busy.
pub const QUEUE_DEPTH_DEFAULT: usize = 1024;
/// Default most commands the processor takes into one batch (one durable point).
pub const BATCH_COMMANDS_DEFAULT: usize = 16_384;
/// Default allowed skew of measurement times ahead of the gateway clock: 5 minutes.
pub const FUTURE_SKEW_MS_DEFAULT: i64 = 5 * 60 * 1000;
/// Default most entities ([`Rules::entities_max`]): at most about 46 KB each with full
/// rollups at the default horizons, so under 1 GB of image in the worst case.
pub const ENTITIES_MAX_DEFAULT: usize = 20_000;

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
    /// Readings whose fingerprints are remembered gateway-wide, newest first, to answer a
    /// retried reading stored earlier than a meter's newest 8 as a duplicate (older ones at
    /// a stored time are `conflicting_duplicate`). Costs at most [`RECENT_READING_BYTES`]
    /// each in the image and in the planner, and [`RECENT_READING_INDEX_BYTES`] each for
    /// the planner's index while retries are answered. Default [`RECENT_READINGS_DEFAULT`].
    pub recent_readings_max: usize,
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
            recent_readings_max: RECENT_READINGS_DEFAULT,
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
            .field("recent_readings_max", &self.recent_readings_max)
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

    /// Sets how many recent readings' fingerprints are remembered.
    pub fn recent_readings_max(mut self, max: usize) -> Self {
        self.recent_readings_max = max;
        self
    }
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default)]
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
    /// Set if the log failed (its `Display` is the message for status).
    pub failed: Option<EngineFailure>,
    /// Snapshots and archive.
    pub storage: StorageStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("committed", &self.inner.committed())
            .finish()
    }
}

impl Engine {
    /// Opens the data directory: recovers the log and the image ([`recovery`]), then starts
    /// the engine's threads.
    pub fn open(data_dir: &Path, options: EngineOptions) -> Result<Engine, EngineOpenError> {
        let recovered = recovery::recover(
            data_dir,
            options.wal.clone(),
            options.rollups,
            options.recent_readings_max,
            options.storage.rollup_spill_bytes,
        )?;
        Engine::start(data_dir, recovered, options)
    }

    /// Starts the planner (which starts the applier) and the maintenance thread over a
    /// recovered log and image.
    fn start(
        data_dir: &Path,
        recovered: Recovered,
        options: EngineOptions,
    ) -> Result<Engine, EngineOpenError> {
        let Recovered {
            wal,
            image,
            history_start,
            report,
            rollups,
            passed_over,
        } = recovered;
        let planner = processor::Planner::new(&image);
        let inner = Arc::new(Inner {
            commit: CommitState::new(image.next_offset),
            wal,
            image: RwLock::new(image),
            rules: options.rules,
            clock: options.clock.clone(),
            batch_commands: options.batch_commands.max(1),
            data_dir: data_dir.to_path_buf(),
            history_start,
            recovery: report,
            snapshots_passed_over: passed_over,
            counters: Counters::default(),
            maintenance: MaintenanceState::new(options.storage),
            rejections: Mutex::new(std::collections::HashMap::new()),
            rollups,
        });
        let spawn_error = |source| OpenError::Io {
            path: data_dir.to_path_buf(),
            source,
        };
        let queue_depth = options.queue_depth.max(1);
        let (queue, jobs) = mpsc::sync_channel::<Job>(queue_depth);
        let processor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("gridlog-processor".into())
                .spawn(move || processor::run(&inner, jobs, planner))
                .map_err(spawn_error)?
        };
        let (rollup_wake, rollup_woken) = mpsc::sync_channel::<()>(1);
        inner.maintenance.set_rollup_wake(Some(rollup_wake));
        let rollups = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("gridlog-rollups".into())
                .spawn(move || {
                    if let Err(error) = crate::hints::run_in_background() {
                        tracing::warn!(%error, "cannot lower the rollup thread's priority");
                    }
                    maintenance::run_rollups(&inner, &rollup_woken);
                })
                .map_err(spawn_error)?
        };
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        inner.maintenance.set_wake(Some(wake));
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
                    maintenance::run(&inner, &queue, &woken);
                })
                .map_err(spawn_error)?
        };
        Ok(Engine {
            inner,
            queue: Some(queue),
            queue_depth,
            processor: Some(processor),
            maintenance: Some(maintenance),
            rollups: Some(rollups),
        })
    }

    /// Takes a snapshot now (and archives and compacts as after any snapshot); returns the
    /// storage statistics after it.
    pub fn snapshot_now(&self) -> Result<StorageStats, MaintenanceError> {
        let queue = self.queue.as_ref().ok_or(MaintenanceError::Record {
            what: "the snapshot",
            error: SubmitError::Stopped,
        })?;
        let _one = self.inner.maintenance.one_at_a_time();
        maintenance::cycle(
            &self.inner,
            queue,
            &self.inner.data_dir,
            &self.inner.maintenance.options,
        )?;
        Ok(self.storage_stats())
    }

    /// Writes what the image queued for the rollup store now (as the maintenance thread does
    /// when `rollup_spill_bytes` are queued, and first in every cycle).
    pub fn spill_rollups_now(&self) -> Result<StorageStats, MaintenanceError> {
        let _one = self.inner.maintenance.one_at_a_time();
        maintenance::spill_rollups(&self.inner)?;
        Ok(self.storage_stats())
    }

    /// What the snapshot and archive side did (and the rollup queue's bytes now).
    pub fn storage_stats(&self) -> StorageStats {
        let mut stats = self.inner.maintenance.stats().clone();
        stats.rollup_queued_bytes = self.inner.maintenance.rollup_queued_bytes() as u64;
        stats
    }

    /// The rollup store's spill files in use and their bytes.
    pub fn rollup_store_size(&self) -> (usize, u64) {
        self.inner.rollups.size()
    }

    /// The rollup store's spill files in use, oldest first: together, every record below
    /// their newest `through_offset` (a consistent set, taken at one moment). Each stays
    /// readable while held, even after a merge removed its file.
    pub fn rollup_spills(&self) -> Vec<std::sync::Arc<rollup_store::SpillFile>> {
        self.inner.rollups.spills()
    }

    /// The first offset whose history this directory holds (1 unless it was restored from
    /// a snapshot in central storage; see [`HISTORY_START_FILE_NAME`]).
    pub fn history_start(&self) -> Offset {
        self.inner.history_start
    }

    /// Where start-up found its state.
    pub fn started_from(&self) -> StartedFrom {
        self.inner.recovery.started_from
    }

    /// Snapshots (their next offsets) start-up passed over because the rollup store cannot
    /// continue them (other horizons, or assuming spills that were set aside). They stay on
    /// disk; the shipper does not ship them with the store as it is.
    pub fn snapshots_passed_over(&self) -> &[Offset] {
        &self.inner.snapshots_passed_over
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
        if let Some(failed) = self.inner.commit.failure() {
            return Err(SubmitError::Storage(failed));
        }
        let queue = self.queue.as_ref().ok_or(SubmitError::Stopped)?;
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(Job { request, reply }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
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

    /// Whether a request of `commands` commands might be refused as larger than one log
    /// frame (`request_too_large`); false means it certainly fits. The planner's own rule.
    pub fn request_may_exceed_a_frame(&self, commands: usize) -> bool {
        processor::may_exceed_a_frame(commands, self.inner.wal.batch_frame_bytes_max())
    }

    /// One past the newest offset applied to the image.
    pub fn committed_offset(&self) -> Offset {
        self.inner.committed()
    }

    /// Calls `hook` with the new committed offset after every commit (from the processor
    /// thread: keep it short, e.g. send to a channel).
    pub fn on_commit(&self, hook: CommitHook) {
        self.inner.commit.add_hook(hook);
    }

    /// Commands about `entity` rejected in the last hour (by gateway time). Kept in memory
    /// only, for known entities: rejections are not events and are forgotten at restart.
    pub fn rejected_last_hour(&self, entity: &str) -> u32 {
        let now = self.now_ms();
        lock(&self.inner.rejections)
            .get(entity)
            .map_or(0, |w| w.count(now))
    }

    /// The log (for status and tools).
    pub fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        let i = &self.inner;
        let c = &i.counters;
        EngineStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            committed_offset: i.committed(),
            replayed_events: i.recovery.replayed_events,
            replay_millis: i.recovery.replay_ms,
            wal: i.wal.stats(),
            failed: i.commit.failure(),
            storage: i.maintenance.stats().clone(),
        }
    }

    /// Stops taking requests, finishes the queued ones, and closes the log.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.inner.maintenance.note_stopping();
        // Maintenance first: it submits through the queue, which must outlive it.
        self.inner.maintenance.set_wake(None);
        if let Some(maintenance) = self.maintenance.take() {
            let _ = maintenance.join();
        }
        self.queue.take();
        if let Some(processor) = self.processor.take() {
            let _ = processor.join();
        }
        // The rollup thread last: the applier may wait for its spills until it stops.
        self.inner.maintenance.set_rollup_wake(None);
        if let Some(rollups) = self.rollups.take() {
            let _ = rollups.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
