//! The shipper: finds what is not yet in central storage, uploads it in rounds, writes a
//! manifest per round, and records intent and confirmation as events on `gateway:storage`.
//!
//! The backlog is derived, never stored apart: every archive file in `DATA_DIR/archive/`
//! whose segment has no `ShipConfirmed` with the same SHA-256 (the segment's, as in the
//! archive header and `SegmentArchived`), every sealed segment of the hot log that is neither
//! archived nor shipped (compressed into the archive's format when loaded, so it ships when
//! sealed, not when archived), plus the newest snapshot when it is newer than the
//! newest shipped one and `ship.snapshot_interval_s` has passed. So a crash at any point
//! leaves nothing to clean up: the next start computes the same backlog, and the listing at
//! start tells which of it the store already holds.
//!
//! Events (all on [`STORAGE_ENTITY`]):
//! - `ShipIntended` before an upload; `ShipConfirmed` once the round's manifest is verified
//!   in the store. For a segment, `sha256` is the segment's SHA-256 and `bytes` the
//!   object's size; for a snapshot, `first_offset` is 1 (it covers the log from the start),
//!   `sha256` that of the file; for a manifest, `first_offset` carries its **sequence
//!   number** and `next_offset` one past the highest offset its round covers, `sha256` that
//!   of its bytes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridlog_common::domain::{Event, ShipObject};
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::Engine;
use object_store::path::Path;
use tokio::sync::watch;

use super::layout::{Layout, ObjectName};
use super::lineage::{self};
use super::manifest::{Manifest, ManifestLink};
use super::status::{unix_ms_now, RecoveryPoint, ShipStatus};
use super::store::{sleep_or_stop, Store, StoreError, Stored, Upload};
use super::tail::{self, TailState};
use super::Sha256;
use crate::config::Config;

mod objects;
mod plan;
mod reconcile;
use objects::{confirmed_event, Confirmed};
mod rollups_round;
mod round;
mod tables_round;
mod tail_round;

pub use super::record::{record, system_state};

/// Most objects in one round (one manifest). Bounds a manifest's size and how long a
/// confirmation may wait for the round's slowest upload.
pub const ROUND_OBJECTS_MAX: usize = 256;
/// Most object bytes in one round: 1 GiB (with concurrency, what may be in memory at once is
/// `concurrency` objects, each at most one segment).
pub const ROUND_BYTES_MAX: u64 = 1 << 30;
/// Most events in one request to the engine (each is about 100 bytes; the frame must fit
/// the smallest segment).
pub const RECORD_EVENTS_MAX: usize = 64;

/// Why shipping stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// The store cannot be used as configured.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recording an event failed (the engine stopped or its log failed).
    #[error(transparent)]
    Record(#[from] super::record::RecordError),
    /// The log's tail could not be read for a tail round.
    #[error("reading the log's tail: {0}")]
    ReadTail(#[from] gridlog_firmware::wal::ReadError),
    /// The log's record cursor skipped or repeated an offset.
    #[error("the log cursor gave offset {got} where {expected} was expected")]
    CursorOrder {
        /// The offset that was due.
        expected: Offset,
        /// The offset it gave.
        got: Offset,
    },
    /// A chunk could not be encoded.
    #[error("encoding a chunk: {0}")]
    Chunk(#[from] super::chunk::ChunkError),
    /// A blocking task (reading the log's tail) panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A local file could not be read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The store's manifest chain of this lineage is not ours: a second writer, or
    /// tampering. Shipping stops until an operator looks.
    #[error("halted: {0}")]
    Halted(HaltReason),
}

/// Why shipping halted: what in the store contradicts this gateway's own history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HaltReason {
    /// A manifest of our lineage does not decode (a hash that is not 64 hex digits
    /// included).
    #[error("manifest {key} in our lineage: {source}")]
    ManifestUnreadable {
        /// Its key.
        key: String,
        /// Why.
        source: super::manifest::ManifestError,
    },
    /// A manifest of our lineage does not continue the chain this gateway wrote.
    #[error(
        "manifest {key} does not continue this gateway's chain (expected sequence {expected_sequence} after {expected_previous:?}): a second writer in lineage {lineage}, or tampering"
    )]
    ChainBroken {
        /// Its key.
        key: String,
        /// The sequence number that would continue the chain.
        expected_sequence: u64,
        /// The key of the manifest it should name.
        expected_previous: Option<String>,
        /// Our lineage.
        lineage: String,
    },
    /// A different manifest is already under the key of ours.
    #[error("{conflict} — another writer in lineage {lineage}? shipping halts")]
    ManifestConflict {
        /// What the store holds, as the read-back found it.
        conflict: String,
        /// Our lineage.
        lineage: String,
    },
    /// A different object is already under the key of one of ours.
    #[error("{conflict}")]
    ObjectConflict {
        /// What the store holds, as the read-back found it.
        conflict: String,
    },
}

/// The newest manifest of the chain this gateway continues.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    sequence: u64,
    link: ManifestLink,
}

/// What a `ship --once` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Objects confirmed (segments and snapshots).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Manifests written.
    pub manifests: u64,
    /// Objects left in the backlog (conflicts).
    pub left: u64,
}

/// Ships one data directory's archive and snapshots.
#[derive(Debug)]
pub struct Shipper {
    engine: Arc<Engine>,
    store: Store,
    layout: Layout,
    data_dir: PathBuf,
    site_id: String,
    concurrency: usize,
    interval: Duration,
    snapshot_interval: Duration,
    status: Arc<ShipStatus>,
    /// Objects that conflict with the store: kept local, not retried until restart.
    parked: HashSet<ObjectName>,
    head: Option<Head>,
    /// Keys the listing at start saw (read back instead of uploaded).
    listed: HashSet<Path>,
    last_snapshot_shipped: Option<Instant>,
    log_id: [u8; 16],
    /// The recovery-point bound (`ship.max_lag_s`).
    max_lag: Duration,
    /// Tail rounds: the chain head they moved and the chunks not yet superseded.
    tail: TailState,
    /// `ship.orphan_grace_s` in milliseconds.
    orphan_grace_ms: u64,
    /// When the next look for objects no manifest names is due (at start, then every
    /// `ship.orphan_grace_s`, so an orphan younger than the grace at start goes later).
    next_sweep: Instant,
    /// When the shipper first saw the oldest record not yet in the store (and as Unix ms).
    tail_since: Option<(Instant, u64)>,
    /// `ship.tables`: write the fleet tables of shipped segments.
    tables_on: bool,
    /// The fleet tables stage's state.
    tables: tables_round::TablesStage,
    /// The rollup spills shipped with snapshots: hashes and parts verified.
    rollups: rollups_round::RollupsStage,
}

impl Shipper {
    /// A shipper for `engine`'s data directory as `config` says (`config.ship.store` set).
    pub fn new(
        config: &Config,
        engine: Arc<Engine>,
        status: Arc<ShipStatus>,
    ) -> Result<Shipper, ShipError> {
        let store = Store::open(&config.ship)?;
        let lineage = lineage::ensure(&config.data_dir)?;
        let layout = Layout::new(store.prefix(), &config.site_id, &lineage);
        let log_id = engine.wal().log_id();
        Ok(Shipper {
            engine,
            layout,
            store,
            data_dir: config.data_dir.clone(),
            site_id: config.site_id.clone(),
            concurrency: config.ship.concurrency.clamp(1, super::CONCURRENCY_MAX),
            interval: Duration::from_secs(config.ship.interval_s),
            snapshot_interval: Duration::from_secs(config.ship.snapshot_interval_s),
            status,
            parked: HashSet::new(),
            head: None,
            listed: HashSet::new(),
            last_snapshot_shipped: None,
            log_id,
            max_lag: Duration::from_secs(config.ship.max_lag_s.max(1)),
            tail: tail::read_state(&config.data_dir)?,
            tail_since: None,
            orphan_grace_ms: config.ship.orphan_grace_s.saturating_mul(1000),
            next_sweep: Instant::now(),
            tables_on: config.ship.tables,
            tables: tables_round::TablesStage::default(),
            rollups: rollups_round::RollupsStage::default(),
        })
    }

    /// Ships until `stop` turns true: reconcile once, then rounds, sleeping
    /// `ship.interval_s` when there is nothing to do. Returns only when stopped or halted.
    pub async fn run(mut self, stop: watch::Receiver<bool>) -> Result<(), ShipError> {
        let result = self.run_inner(&stop, false).await;
        self.status.set_phase(match &result {
            Err(ShipError::Halted(_)) => "halted",
            _ => "stopped",
        });
        match result {
            Ok(_) | Err(ShipError::Store(StoreError::Stopped)) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "shipping round failed");
                self.status.error(e.to_string());
                Err(e)
            }
        }
    }

    /// Ships what is pending now, then returns (`gridlog ship --once`).
    pub async fn run_once(mut self, stop: watch::Receiver<bool>) -> Result<Summary, ShipError> {
        let result = self.run_inner(&stop, true).await;
        self.status.set_phase("stopped");
        result
    }

    async fn run_inner(
        &mut self,
        stop: &watch::Receiver<bool>,
        once: bool,
    ) -> Result<Summary, ShipError> {
        self.status.set_phase("reconciling");
        // The backlog is local knowledge: show it even while the store cannot be reached.
        self.publish_backlog()?;
        let mut backoff = self.store.backoff();
        loop {
            // So is the recovery point: what the log holds beyond what the store is known
            // to hold has waited since now at the latest.
            self.note_unshipped();
            match self.reconcile(stop).await {
                Ok(()) => break,
                Err(ShipError::Store(StoreError::Store(e))) => {
                    self.status.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot list the store; retrying");
                    self.status.error(format!("listing the store: {e}"));
                    self.status.set_phase("retrying");
                    if sleep_or_stop(delay, stop).await {
                        return Err(StoreError::Stopped.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let mut summary = Summary::default();
        loop {
            if *stop.borrow() {
                return Err(StoreError::Stopped.into());
            }
            let shipped = self.round(stop, &mut summary).await?;
            let shipped = self.ship_tail(stop, once, &mut summary).await? || shipped;
            // Tables after segments and the tail: they never hold back the recovery point.
            let shipped = self.tables_round(stop).await? || shipped;
            if !once {
                self.sweep_orphans().await?;
            }
            if once && !shipped {
                summary.left = self.status.backlog().objects + self.parked.len() as u64;
                return Ok(summary);
            }
            if !shipped {
                self.status.set_phase("idle");
                if sleep_or_stop(tail::poll_interval(self.interval, self.max_lag), stop).await {
                    return Err(StoreError::Stopped.into());
                }
            }
        }
    }

    /// Records the round's objects, then the manifest, as confirmed; moves the head.
    async fn confirm(
        &mut self,
        confirmed: &[Confirmed],
        seq: u64,
        manifest: &Manifest,
        manifest_sha: Sha256,
        manifest_bytes: u64,
    ) -> Result<(), ShipError> {
        let mut events = Vec::with_capacity(confirmed.len() + 1);
        events.extend(confirmed.iter().map(confirmed_event));
        events.push(Event::ShipConfirmed {
            object: ShipObject::Manifest,
            first_offset: seq,
            next_offset: manifest.next_offset(),
            sha256: manifest_sha.0,
            bytes: manifest_bytes,
        });
        record(&self.engine, events).await?;
        let key = self.layout.key(ObjectName::Manifest(seq)).to_string();
        self.head = Some(Head {
            sequence: seq,
            link: ManifestLink {
                key,
                sha256: manifest_sha,
            },
        });
        self.status.set_chain(seq, manifest.next_offset());
        Ok(())
    }
}

impl Shipper {
    /// Uploads a manifest create-only and reads it back; a different manifest already under
    /// its key means another writer in this lineage, and shipping halts with an alarm.
    async fn put_manifest(
        &self,
        key: &Path,
        bytes: &Bytes,
        sha256: Sha256,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), ShipError> {
        let upload = Upload {
            listed: false,
            key: key.clone(),
            bytes: bytes.clone(),
            sha256,
            kind: "manifest",
            same_content: &|_| false,
        };
        match self.store.put_verified(upload, &self.status, stop).await? {
            Stored::Written | Stored::Duplicate => Ok(()),
            // `same_content` is never true for a manifest.
            Stored::Equivalent { .. } => unreachable!("a manifest is never equivalent"),
            Stored::Conflict(conflict) => {
                let reason = HaltReason::ManifestConflict {
                    conflict,
                    lineage: self.layout.lineage().to_string(),
                };
                self.status.alarm(reason.to_string());
                Err(ShipError::Halted(reason))
            }
        }
    }

    /// Where this gateway's manifest chain stands, for the next manifest.
    fn chain(&self) -> plan::Chain<'_> {
        plan::Chain {
            site_id: &self.site_id,
            lineage: self.layout.lineage(),
            log_id: self.log_id,
            head: self.head.as_ref(),
        }
    }

    /// The shipped segments' `(first, next)` offsets, in offset order.
    fn shipped_segments(&self) -> Vec<(Offset, Offset)> {
        let system = system_state(&self.engine);
        system
            .shipped
            .range((ShipObject::Segment, 0)..=(ShipObject::Segment, u64::MAX))
            .map(|((_, first), (next, _))| (*first, *next))
            .collect()
    }

    /// The end of the run of shipped segments from their start.
    fn segments_end(&self) -> Offset {
        let mut end: Option<Offset> = None;
        for (first, next) in self.shipped_segments() {
            match end {
                None => end = Some(next),
                Some(e) if first <= e => end = Some(e.max(next)),
                Some(_) => break,
            }
        }
        end.unwrap_or(FIRST_OFFSET)
    }

    /// Starts the lag clock if the log holds records beyond what the store is known to hold.
    fn note_unshipped(&mut self) {
        let segments_end = self.segments_end();
        let known = segments_end.max(
            self.tail
                .chunks
                .iter()
                .map(|c| c.next_offset)
                .max()
                .unwrap_or(FIRST_OFFSET),
        );
        if known < self.engine.committed_offset() && self.tail_since.is_none() {
            self.tail_since = Some((Instant::now(), unix_ms_now()));
        }
        self.publish_recovery_point(segments_end);
    }

    fn publish_recovery_point(&self, segments_end: Offset) {
        self.status.set_recovery_point(RecoveryPoint {
            next_offset: tail::store_end(segments_end, &self.tail.chunks),
            verified_unix_ms: self.tail.newest_verified_unix_ms,
            unshipped_since_unix_ms: self.tail_since.map(|(_, ms)| ms),
        });
    }
}

/// An object of this lineage in a listing: its name, key and age in milliseconds.
type Listed = (ObjectName, Path, u64);

fn manifest_link(key: &Path, sha: &Sha256) -> ManifestLink {
    ManifestLink {
        key: key.to_string(),
        sha256: *sha,
    }
}

/// The recovery-point watchdog, beside the shipper (whose uploads may be retrying for as
/// long as the uplink is down): raises the alarm ([`tail::lag_alarm`]) as a
/// `RecoveryPointLagging` event on `gateway:storage` and a status alarm.
async fn watch_lag(
    engine: Arc<Engine>,
    status: Arc<ShipStatus>,
    max_lag_s: u64,
    poll: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut raised = false;
    while !sleep_or_stop(poll, &stop).await {
        let point = status.recovery_point();
        let lag_s = point.lag_s(unix_ms_now());
        match tail::lag_alarm(lag_s, max_lag_s, raised) {
            tail::LagAlarm::Raise => {
                raised = true;
                status.alarm(format!(
                    "recovery point lagging: the oldest acknowledged event not in central storage has waited {lag_s} s (bound {max_lag_s} s)"
                ));
                let event = Event::RecoveryPointLagging {
                    lag_s,
                    max_lag_s,
                    store_next_offset: point.next_offset,
                };
                if let Err(e) = record(&engine, vec![event]).await {
                    tracing::error!(error = %e, "cannot record the recovery-point alarm");
                    status.error(e.to_string());
                }
            }
            tail::LagAlarm::Clear => raised = false,
            tail::LagAlarm::Keep => {}
        }
    }
}

/// A running shipper task and its status.
pub type Running = (Arc<ShipStatus>, tokio::task::JoinHandle<()>);

/// Starts the shipper on the runtime if `config.ship.store` is set; its status goes to the
/// HTTP side. The task ends when `stop` turns true.
pub fn spawn(
    config: &Config,
    engine: Arc<Engine>,
    stop: watch::Receiver<bool>,
) -> Result<Option<Running>, ShipError> {
    if config.ship.store.is_empty() {
        return Ok(None);
    }
    let lineage = lineage::ensure(&config.data_dir)?;
    let status = Arc::new(ShipStatus::new(&config.ship.store, &lineage));
    status
        .max_lag_s
        .store(config.ship.max_lag_s, Ordering::Relaxed);
    let shipper = Shipper::new(config, engine.clone(), status.clone())?;
    let engine_for_restarts = engine.clone();
    tracing::info!(store = %config.ship.store, %lineage, "shipping to central storage");
    tokio::spawn(watch_lag(
        engine,
        status.clone(),
        config.ship.max_lag_s,
        tail::poll_interval(
            Duration::from_secs(config.ship.interval_s),
            Duration::from_secs(config.ship.max_lag_s.max(1)),
        ),
        stop.clone(),
    ));
    let handle = tokio::spawn(supervise(
        config.clone(),
        engine_for_restarts,
        status.clone(),
        shipper,
        stop,
    ));
    Ok(Some((status, handle)))
}

/// How long a shipper must have run for its failure to count as a new one: the restart
/// backoff starts again from `ship.retry_min_ms`.
const SHIPPER_HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What ends the shipper for good, rather than starting it again.
fn ends_shipping(error: &ShipError) -> bool {
    matches!(
        error,
        // The store's chain is not ours (an operator must look), the gateway stops, or the
        // engine can record nothing more (it stopped or its log failed).
        ShipError::Halted(_) | ShipError::Store(StoreError::Stopped) | ShipError::Record(_)
    )
}

/// Runs the shipper until it stops or halts. Any other failure of a round (a store request
/// that is not retried in place, such as a DELETE; a local file that vanished or could not
/// be written, such as a full disk) starts it again after a backoff, from its files and the
/// store, exactly as a restart of the gateway would: shipping never stops for good on an
/// error that may pass.
async fn supervise(
    config: Config,
    engine: Arc<Engine>,
    status: Arc<ShipStatus>,
    mut shipper: Shipper,
    stop: watch::Receiver<bool>,
) {
    let mut backoff = shipper.store.backoff();
    loop {
        let started = Instant::now();
        let error = match shipper.run(stop.clone()).await {
            Ok(()) => return,
            Err(e) if ends_shipping(&e) => return,
            Err(e) => e,
        };
        if started.elapsed() >= SHIPPER_HEALTHY_RUN {
            backoff.reset();
        }
        loop {
            let delay = backoff.next_delay();
            status.retries.fetch_add(1, Ordering::Relaxed);
            status.set_phase("retrying");
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "shipping failed; starting it again");
            if sleep_or_stop(delay, &stop).await {
                return;
            }
            match Shipper::new(&config, engine.clone(), status.clone()) {
                Ok(next) => {
                    shipper = next;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start shipping again");
                    status.error(e.to_string());
                }
            }
        }
    }
}
