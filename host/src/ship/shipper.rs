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

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gridlog_common::domain::{Command, Event, ShipObject, STORAGE_ENTITY};
use gridlog_common::id::EntityId;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::state::{EntityState, SystemState};
use gridlog_firmware::engine::{Engine, ItemResult, Request, SubmitError};
use object_store::path::Path;
use tokio::sync::watch;

use super::chunk;
use super::layout::{Layout, ObjectName};
use super::lineage::{self, ParentLink};
use super::manifest::ChunkEntry;
use super::manifest::{
    Manifest, ManifestLink, SegmentEntry, SnapshotEntry, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use super::status::{unix_ms_now, Backlog, RecoveryPoint, ShipStatus};
use super::store::{sleep_or_stop, Store, StoreError, Stored, Upload};
use super::tail::{self, TailState};
use super::{hex, sha256, Sha256};
use crate::config::Config;
use gridlog_firmware::archive::verify_bytes;

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
    #[error("recording shipping events failed: {0}")]
    Record(String),
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

/// An object waiting to be shipped.
#[derive(Debug, Clone)]
struct Pending {
    name: ObjectName,
    source: Source,
    /// The file's size; for a sealed segment not yet archived, its size in the hot log (the
    /// object will be smaller: it is compressed when loaded).
    object_bytes: u64,
    created_unix_ms: u64,
    /// For a segment, its SHA-256 (from the archive header, or computed when its intent is
    /// recorded), checked again when loaded.
    segment_sha: Option<Sha256>,
}

/// Where a pending object's bytes come from.
#[derive(Debug, Clone)]
enum Source {
    /// An archive file or a snapshot file.
    File(PathBuf),
    /// A sealed segment still in the hot log: shipped when sealed, not when archived. It is
    /// compressed into the archive's format when loaded, so the object is the same whether
    /// it was shipped from here or from the archive file later.
    Sealed,
}

impl Source {
    fn describe(&self, name: ObjectName) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Sealed => format!("sealed segment {name:?} of the hot log"),
        }
    }
}

/// How one object of a round ended.
#[derive(Debug)]
enum ObjectOutcome {
    /// Verified in the store.
    Stored(Confirmed, u64, bool),
    /// The store holds something else: alarm, keep local.
    Conflict(String),
    /// The local file is gone or damaged.
    Local(String),
    /// A sealed segment left the hot log meanwhile (archived): its archive file ships it
    /// in a later round.
    Moved,
}

/// An object verified in the store during a round.
#[derive(Debug, Clone)]
enum Confirmed {
    Segment(SegmentEntry),
    Snapshot(SnapshotEntry),
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
}

fn storage_entity() -> EntityId {
    EntityId::new(STORAGE_ENTITY).expect("a valid id")
}

/// The `gateway:storage` state.
pub fn system_state(engine: &Engine) -> SystemState {
    engine.read(
        |image| match image.entity(STORAGE_ENTITY).map(|e| &e.state) {
            Some(EntityState::System(s)) => (**s).clone(),
            _ => SystemState::default(),
        },
    )
}

/// Records system events durably, in requests small enough for any segment size; the
/// order is kept.
pub async fn record(engine: &Engine, events: Vec<Event>) -> Result<(), ShipError> {
    let per_request = (engine.wal().batch_frame_bytes_max() / 256).clamp(1, RECORD_EVENTS_MAX);
    for chunk in events.chunks(per_request) {
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let request =
                Request::of(
                    chunk
                        .iter()
                        .cloned()
                        .map(|event| Command::RecordSystemEvent {
                            entity: storage_entity(),
                            event,
                        }),
                );
            match engine.submit_with(
                request,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            ) {
                Ok(()) => {}
                Err(SubmitError::Busy { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(ShipError::Record(e.to_string())),
            }
            let response = rx
                .await
                .map_err(|_| ShipError::Record("engine stopped".into()))?
                .map_err(|e| ShipError::Record(e.to_string()))?;
            if let Some(ItemResult::Rejected(r)) = response
                .results
                .iter()
                .find(|r| matches!(r, ItemResult::Rejected(_)))
            {
                return Err(ShipError::Record(format!("rejected: {}", r.message)));
            }
            break;
        }
    }
    Ok(())
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
                tracing::error!(error = %e, "shipping stopped");
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

    /// The chain head from the log (and a restore's parent link), then one listing of the
    /// lineage: adopt manifests written but not recorded, remember objects already there.
    async fn reconcile(&mut self, stop: &watch::Receiver<bool>) -> Result<(), ShipError> {
        let system = system_state(&self.engine);
        let parent = lineage::read_parent(&self.data_dir)?;
        let own = system
            .shipped
            .range((ShipObject::Manifest, 0)..=(ShipObject::Manifest, u64::MAX))
            .next_back()
            .map(|((_, seq), (_, sha))| (*seq, *sha));
        let parent_head = |p: &ParentLink| Head {
            sequence: p.sequence,
            link: p.manifest.clone(),
        };
        self.head = match (&parent, own) {
            (Some(p), None) => Some(parent_head(p)),
            (Some(p), Some((seq, _))) if seq <= p.sequence => Some(parent_head(p)),
            (_, Some((sequence, sha))) => Some(Head {
                sequence,
                link: ManifestLink {
                    key: self.layout.key(ObjectName::Manifest(sequence)).to_string(),
                    sha256: Sha256(sha),
                },
            }),
            (None, None) => None,
        };
        if let Some((sequence, link)) = &self.tail.head {
            if self.head.as_ref().is_none_or(|h| h.sequence < *sequence) {
                self.head = Some(Head {
                    sequence: *sequence,
                    link: link.clone(),
                });
            }
        }
        if let Some(p) = &parent {
            self.record_parent(&system, p).await?;
        }
        let (manifests, candidates) = self.list_lineage().await?;
        self.listed = candidates.iter().map(|(_, key, _)| key.clone()).collect();
        let head_seq = self.head.as_ref().map_or(0, |h| h.sequence);
        for (seq, key) in manifests.range(head_seq + 1..) {
            if *stop.borrow() {
                return Err(StoreError::Stopped.into());
            }
            self.status.requests.fetch_add(1, Ordering::Relaxed);
            let Some(bytes) = self.store.get(key).await.map_err(StoreError::from)? else {
                continue;
            };
            self.adopt(*seq, key, &bytes).await?;
        }
        self.remove_orphans(&candidates).await?;
        self.next_sweep = Instant::now() + Duration::from_millis(self.orphan_grace_ms);
        if let Some(h) = &self.head {
            self.status.set_chain(h.sequence, 0);
        }
        tracing::info!(
            lineage = self.layout.lineage(),
            head = self.head.as_ref().map_or(0, |h| h.sequence),
            listed = self.listed.len(),
            "reconciled with the store"
        );
        Ok(())
    }

    /// One listing of this lineage: its manifests by sequence, and every other object of
    /// ours with its age in milliseconds.
    async fn list_lineage(&self) -> Result<(BTreeMap<u64, Path>, Vec<Listed>), ShipError> {
        let listing = self
            .store
            .list(&self.layout.root())
            .await
            .map_err(StoreError::from)?;
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        let now_ms = unix_ms_now();
        let mut manifests = BTreeMap::new();
        let mut objects = Vec::new();
        for meta in listing {
            match self.layout.parse(&meta.location) {
                Some(ObjectName::Manifest(seq)) => {
                    manifests.insert(seq, meta.location);
                }
                Some(name) => {
                    let modified_ms = meta.last_modified.timestamp_millis().max(0) as u64;
                    objects.push((name, meta.location, now_ms.saturating_sub(modified_ms)));
                }
                None => {}
            }
        }
        Ok((manifests, objects))
    }

    /// Between rounds, when due: removes the objects no manifest names that have grown
    /// older than the grace since the last look. A store that cannot be listed now is
    /// looked at again after a shipping interval.
    async fn sweep_orphans(&mut self) -> Result<(), ShipError> {
        if Instant::now() < self.next_sweep {
            return Ok(());
        }
        match self.list_lineage().await {
            Ok((_, objects)) => {
                self.remove_orphans(&objects).await?;
                self.next_sweep = Instant::now() + Duration::from_millis(self.orphan_grace_ms);
            }
            Err(ShipError::Store(StoreError::Store(e))) => {
                tracing::warn!(error = %e, "cannot list the store for orphans; trying later");
                self.next_sweep = Instant::now() + self.interval;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Records the objects of the parent chain that the restored log does not know of.
    async fn record_parent(
        &mut self,
        system: &SystemState,
        parent: &ParentLink,
    ) -> Result<(), ShipError> {
        let mut events = Vec::new();
        for s in &parent.unconfirmed_segments {
            let sha = s.segment_sha256.0;
            let known = system
                .shipped
                .get(&(ShipObject::Segment, s.first_offset))
                .is_some_and(|(_, h)| *h == sha);
            if !known {
                events.push(Event::ShipConfirmed {
                    object: ShipObject::Segment,
                    first_offset: s.first_offset,
                    next_offset: s.next_offset,
                    sha256: sha,
                    bytes: s.object_bytes,
                });
            }
        }
        if let Some(s) = &parent.unconfirmed_snapshot {
            let newest = system
                .shipped
                .get(&(ShipObject::Snapshot, FIRST_OFFSET))
                .map_or(0, |(next, _)| *next);
            if s.next_offset > newest {
                events.push(Event::ShipConfirmed {
                    object: ShipObject::Snapshot,
                    first_offset: FIRST_OFFSET,
                    next_offset: s.next_offset,
                    sha256: s.object_sha256.0,
                    bytes: s.object_bytes,
                });
            }
        }
        if !events.is_empty() {
            tracing::info!(
                objects = events.len(),
                "recording the restored history's objects as shipped"
            );
            record(&self.engine, events).await?;
        }
        Ok(())
    }

    /// A manifest of our lineage that the log has no confirmation of: it must continue our
    /// chain; then everything it lists is confirmed.
    async fn adopt(&mut self, seq: u64, key: &Path, bytes: &[u8]) -> Result<(), ShipError> {
        let manifest = Manifest::decode(bytes).map_err(|source| {
            ShipError::Halted(HaltReason::ManifestUnreadable {
                key: key.to_string(),
                source,
            })
        })?;
        let expected_previous = self.head.as_ref().map(|h| &h.link);
        let expected_seq = self.head.as_ref().map_or(1, |h| h.sequence + 1);
        if manifest.sequence != seq
            || seq != expected_seq
            || manifest.previous.as_ref() != expected_previous
            || manifest.lineage != self.layout.lineage()
        {
            let reason = HaltReason::ChainBroken {
                key: key.to_string(),
                expected_sequence: expected_seq,
                expected_previous: expected_previous.map(|l| l.key.clone()),
                lineage: self.layout.lineage().to_string(),
            };
            self.status.alarm(reason.to_string());
            return Err(ShipError::Halted(reason));
        }
        let sha = sha256(bytes);
        tracing::info!(%key, "adopting a manifest written before a crash");
        if !manifest.chunks.is_empty() {
            self.note_chunks(&manifest.chunks, seq, &manifest_link(key, &sha))?;
        }
        if manifest.segments.is_empty() && manifest.snapshots.is_empty() {
            self.head = Some(Head {
                sequence: seq,
                link: manifest_link(key, &sha),
            });
            return Ok(());
        }
        let mut confirmed = Vec::new();
        for s in &manifest.segments {
            confirmed.push(Confirmed::Segment(s.clone()));
        }
        for s in &manifest.snapshots {
            confirmed.push(Confirmed::Snapshot(s.clone()));
        }
        self.confirm(&confirmed, seq, &manifest, sha, bytes.len() as u64)
            .await
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

    /// What is waiting, oldest first.
    fn backlog(&self) -> Result<Vec<Pending>, ShipError> {
        let system = system_state(&self.engine);
        let mut pending = Vec::new();
        let (archives, damage) = gridlog_firmware::archive::list(&self.data_dir)?;
        for d in damage {
            tracing::error!(file = %d.path.display(), reason = %d.reason, "damaged archive file is not shipped");
        }
        let archived: HashSet<Offset> = archives.iter().map(|a| a.header.first_offset).collect();
        for a in archives {
            let h = &a.header;
            let name = ObjectName::Segment(h.first_offset, h.next_offset);
            let shipped = system
                .shipped
                .get(&(ShipObject::Segment, h.first_offset))
                .is_some_and(|(next, sha)| *next == h.next_offset && *sha == h.sha256);
            if !shipped && !self.parked.contains(&name) {
                pending.push(Pending {
                    name,
                    source: Source::File(a.path),
                    object_bytes: a.file_bytes,
                    created_unix_ms: h.created_unix_ms,
                    segment_sha: Some(Sha256(h.sha256)),
                });
            }
        }
        pending.extend(self.sealed_backlog(&system, &archived));
        if let Some(snap) = gridlog_firmware::snapshot::list(&self.data_dir)?.pop() {
            let newest_shipped = system
                .shipped
                .get(&(ShipObject::Snapshot, FIRST_OFFSET))
                .map_or(0, |(next, _)| *next);
            let due = self
                .last_snapshot_shipped
                .is_none_or(|t| t.elapsed() >= self.snapshot_interval);
            let name = ObjectName::Snapshot(snap.next_offset);
            if snap.next_offset > newest_shipped && due && !self.parked.contains(&name) {
                let created = std::fs::metadata(&snap.path)
                    .and_then(|m| m.modified())
                    .map_or(0, unix_ms_of);
                pending.push(Pending {
                    name,
                    source: Source::File(snap.path),
                    object_bytes: snap.file_bytes,
                    created_unix_ms: created,
                    segment_sha: None,
                });
            }
        }
        Ok(pending)
    }

    /// The hot log's sealed segments that are neither archived nor shipped: a segment ships
    /// once it is sealed, whenever the engine archives it.
    fn sealed_backlog(&self, system: &SystemState, archived: &HashSet<Offset>) -> Vec<Pending> {
        let wal = self.engine.wal();
        let paths: BTreeMap<Offset, PathBuf> = wal.segments().into_iter().collect();
        let mut pending = Vec::new();
        for (first, next) in wal.sealed_segments() {
            let name = ObjectName::Segment(first, next);
            let shipped = system
                .shipped
                .get(&(ShipObject::Segment, first))
                .is_some_and(|(n, _)| *n == next);
            if shipped || archived.contains(&first) || self.parked.contains(&name) {
                continue;
            }
            let meta = paths.get(&first).and_then(|p| std::fs::metadata(p).ok());
            pending.push(Pending {
                name,
                source: Source::Sealed,
                object_bytes: meta.as_ref().map_or(0, |m| m.len()),
                created_unix_ms: meta
                    .and_then(|m| m.modified().ok())
                    .map_or_else(unix_ms_now, unix_ms_of),
                segment_sha: None,
            });
        }
        pending
    }

    /// Computes the backlog and shows it in status.
    fn publish_backlog(&self) -> Result<Vec<Pending>, ShipError> {
        let pending = self.backlog()?;
        self.status.set_backlog(Backlog {
            objects: pending.len() as u64,
            bytes: pending.iter().map(|p| p.object_bytes).sum(),
            oldest_first_offset: pending.iter().find_map(|p| match p.name {
                ObjectName::Segment(first, _) => Some(first),
                _ => None,
            }),
            oldest_created_unix_ms: pending.iter().map(|p| p.created_unix_ms).min(),
        });
        Ok(pending)
    }

    /// One round: intents, uploads with read-back, manifest, confirmations. False if there
    /// was nothing to ship.
    async fn round(
        &mut self,
        stop: &watch::Receiver<bool>,
        summary: &mut Summary,
    ) -> Result<bool, ShipError> {
        let pending = self.publish_backlog()?;
        if pending.is_empty() {
            return Ok(false);
        }
        self.status.set_phase("shipping");
        let mut batch = Vec::new();
        let mut bytes = 0;
        for p in pending {
            if batch.len() == ROUND_OBJECTS_MAX
                || (!batch.is_empty() && bytes + p.object_bytes > ROUND_BYTES_MAX)
            {
                break;
            }
            bytes += p.object_bytes;
            batch.push(p);
        }
        // Persist the intents before any upload. A segment's comes from its archive header;
        // files are read (and checked) one upload at a time, so memory holds at most
        // `concurrency` objects.
        let mut intents = Vec::with_capacity(batch.len());
        for p in &mut batch {
            let (object, first_offset, next_offset) = event_range(p.name);
            let sha256 = match (p.segment_sha, &p.source) {
                (Some(sha), _) => sha,
                (None, Source::File(path)) => match std::fs::read(path) {
                    Ok(bytes) => sha256(&bytes),
                    Err(_) => continue,
                },
                (None, Source::Sealed) => {
                    match self.engine.wal().sealed_segment_bytes(first_offset) {
                        Some(bytes) => *p.segment_sha.insert(sha256(&bytes)),
                        None => continue,
                    }
                }
            };
            intents.push(Event::ShipIntended {
                object,
                first_offset,
                next_offset,
                sha256: sha256.0,
                bytes: p.object_bytes,
            });
        }
        record(&self.engine, intents).await?;
        let results: Vec<(ObjectName, Result<ObjectOutcome, StoreError>)> = {
            let store = &self.store;
            let layout = &self.layout;
            let status = &*self.status;
            let listed = &self.listed;
            let engine = &self.engine;
            futures_util::stream::iter(batch)
                .map(|p| async move {
                    let name = p.name;
                    let source = p.source.describe(name);
                    let engine = engine.clone();
                    let loaded = tokio::task::spawn_blocking(move || load(&engine, &p))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                    let object = match loaded {
                        Ok(Some(object)) => object,
                        Ok(None) => return (name, Ok(ObjectOutcome::Moved)),
                        Err(reason) => {
                            let message = format!("{source}: {reason}");
                            return (name, Ok(ObjectOutcome::Local(message)));
                        }
                    };
                    let key = layout.key(object.name);
                    let same_content = |stored: &[u8]| object.same_content(stored);
                    let upload = Upload {
                        listed: listed.contains(&key),
                        key,
                        bytes: object.bytes.clone(),
                        sha256: object.object_sha,
                        kind: object.kind(),
                        same_content: &same_content,
                    };
                    let outcome = store
                        .put_verified(upload, status, stop)
                        .await
                        .map(|stored| match stored {
                            Stored::Written | Stored::Duplicate => ObjectOutcome::Stored(
                                object.confirmed(
                                    layout,
                                    object.object_sha,
                                    object.bytes.len() as u64,
                                ),
                                object.bytes.len() as u64,
                                stored == Stored::Duplicate,
                            ),
                            Stored::Equivalent { sha256, bytes } => ObjectOutcome::Stored(
                                object.confirmed(layout, sha256, bytes),
                                bytes,
                                true,
                            ),
                            Stored::Conflict(message) => ObjectOutcome::Conflict(message),
                        });
                    (name, outcome)
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await
        };
        let mut confirmed = Vec::new();
        let mut round_bytes = 0;
        for (name, result) in results {
            match result? {
                ObjectOutcome::Stored(entry, bytes, duplicate) => {
                    if duplicate {
                        self.status.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    round_bytes += bytes;
                    confirmed.push(entry);
                }
                ObjectOutcome::Conflict(message) => {
                    self.status.alarm(message);
                    self.parked.insert(name);
                }
                ObjectOutcome::Local(message) => {
                    // Evicted meanwhile, or damaged on disk: not shippable as it is.
                    tracing::error!(%message, "local object not shipped");
                    self.status.error(message);
                    self.parked.insert(name);
                }
                ObjectOutcome::Moved => {
                    tracing::debug!(
                        ?name,
                        "sealed segment archived meanwhile; its archive ships it"
                    );
                }
            }
        }
        confirmed.sort_by_key(|c| match c {
            Confirmed::Segment(s) => (0, s.first_offset),
            Confirmed::Snapshot(s) => (1, s.next_offset),
        });
        if confirmed.is_empty() {
            return Ok(true);
        }
        let seq = self.head.as_ref().map_or(1, |h| h.sequence + 1);
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            site_id: self.site_id.clone(),
            lineage: self.layout.lineage().to_string(),
            log_id: hex(&self.log_id),
            sequence: seq,
            previous: self.head.as_ref().map(|h| h.link.clone()),
            created_unix_ms: unix_ms_now(),
            segments: confirmed
                .iter()
                .filter_map(|c| match c {
                    Confirmed::Segment(s) => Some(s.clone()),
                    Confirmed::Snapshot(_) => None,
                })
                .collect(),
            snapshots: confirmed
                .iter()
                .filter_map(|c| match c {
                    Confirmed::Snapshot(s) => Some(s.clone()),
                    Confirmed::Segment(_) => None,
                })
                .collect(),
            chunks: vec![],
        };
        let manifest_bytes = Bytes::from(manifest.encode());
        let manifest_sha = sha256(&manifest_bytes);
        record(
            &self.engine,
            vec![Event::ShipIntended {
                object: ShipObject::Manifest,
                first_offset: seq,
                next_offset: manifest.next_offset(),
                sha256: manifest_sha.0,
                bytes: manifest_bytes.len() as u64,
            }],
        )
        .await?;
        let key = self.layout.key(ObjectName::Manifest(seq));
        self.put_manifest(&key, &manifest_bytes, manifest_sha, stop)
            .await?;
        self.confirm(
            &confirmed,
            seq,
            &manifest,
            manifest_sha,
            manifest_bytes.len() as u64,
        )
        .await?;
        let objects = confirmed.len() as u64;
        if confirmed
            .iter()
            .any(|c| matches!(c, Confirmed::Snapshot(_)))
        {
            self.last_snapshot_shipped = Some(Instant::now());
        }
        self.status
            .objects_shipped
            .fetch_add(objects + 1, Ordering::Relaxed);
        self.status
            .bytes_shipped
            .fetch_add(round_bytes + manifest_bytes.len() as u64, Ordering::Relaxed);
        self.status.manifests.fetch_add(1, Ordering::Relaxed);
        self.status.success();
        summary.objects += objects;
        summary.bytes += round_bytes;
        summary.manifests += 1;
        tracing::info!(
            manifest = seq,
            objects,
            bytes = round_bytes,
            "shipped a round"
        );
        Ok(true)
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

    /// The end of the run of shipped segments from their start.
    fn segments_end(&self) -> Offset {
        let system = system_state(&self.engine);
        let mut end: Option<Offset> = None;
        for ((object, first), (next, _)) in system
            .shipped
            .range((ShipObject::Segment, 0)..=(ShipObject::Segment, u64::MAX))
        {
            debug_assert_eq!(*object, ShipObject::Segment);
            match end {
                None => end = Some(*next),
                Some(e) if *first <= e => end = Some(e.max(*next)),
                Some(_) => break,
            }
        }
        end.unwrap_or(FIRST_OFFSET)
    }

    /// Removes this lineage's chunks and segments that no manifest names (an upload a crash
    /// left before its manifest, which the backlog will not upload again under that key)
    /// once they are older than `ship.orphan_grace_s`.
    async fn remove_orphans(&mut self, listed: &[Listed]) -> Result<(), ShipError> {
        let system = system_state(&self.engine);
        let (archives, _) = gridlog_firmware::archive::list(&self.data_dir)?;
        let sealed = self.engine.wal().sealed_segments();
        let pending: HashSet<ObjectName> = archives
            .iter()
            .map(|a| (a.header.first_offset, a.header.next_offset))
            .chain(sealed)
            .map(|(first, next)| ObjectName::Segment(first, next))
            .collect();
        let known = |name: ObjectName| match name {
            ObjectName::Segment(first, next) => {
                pending.contains(&name)
                    || system
                        .shipped
                        .get(&(ShipObject::Segment, first))
                        .is_some_and(|(n, _)| *n == next)
            }
            ObjectName::Chunk(first, next) => self
                .tail
                .chunks
                .iter()
                .any(|c| (c.first_offset, c.next_offset) == (first, next)),
            // Snapshots and manifests are never removed by the shipper.
            ObjectName::Snapshot(_) | ObjectName::Manifest(_) => true,
        };
        for key in tail::orphans(listed, &known, self.orphan_grace_ms) {
            tracing::warn!(%key, "removing an object no manifest names (left by a crash)");
            self.status.requests.fetch_add(1, Ordering::Relaxed);
            self.store.delete(&key).await.map_err(StoreError::from)?;
            self.listed.remove(&key);
        }
        Ok(())
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

    /// Chunks a manifest of this chain verified: remembered (durably) until superseded.
    fn note_chunks(
        &mut self,
        chunks: &[ChunkEntry],
        sequence: u64,
        link: &ManifestLink,
    ) -> Result<(), ShipError> {
        for c in chunks {
            if !self.tail.chunks.iter().any(|k| k.key == c.key) {
                self.tail.chunks.push(c.clone());
            }
        }
        self.tail.chunks.sort_by_key(|c| c.first_offset);
        self.tail.head = Some((sequence, link.clone()));
        self.tail.newest_verified_unix_ms = Some(unix_ms_now());
        tail::write_state(&self.data_dir, &self.tail)?;
        Ok(())
    }

    /// Deletes this lineage's chunks that verified segments supersede (another lineage's
    /// are only forgotten: a restored gateway never changes the history it came from).
    async fn drop_superseded(&mut self, segments_end: Offset) -> Result<(), ShipError> {
        let gone = tail::superseded(&self.tail.chunks, segments_end);
        if gone.is_empty() {
            return Ok(());
        }
        let own = self.layout.root();
        for c in &gone {
            let key = Path::from(c.key.as_str());
            if key.prefix_match(&own).is_some() {
                self.status.requests.fetch_add(1, Ordering::Relaxed);
                self.store.delete(&key).await.map_err(StoreError::from)?;
            }
        }
        self.tail
            .chunks
            .retain(|c| !gone.iter().any(|g| g.key == c.key));
        tail::write_state(&self.data_dir, &self.tail)?;
        tracing::debug!(chunks = gone.len(), "superseded chunks deleted");
        Ok(())
    }

    /// A tail round, when due (always with `force`): the durable records after what the
    /// store holds, as chunks, then a manifest naming them. True if it shipped.
    async fn ship_tail(
        &mut self,
        stop: &watch::Receiver<bool>,
        force: bool,
        summary: &mut Summary,
    ) -> Result<bool, ShipError> {
        let segments_end = self.segments_end();
        self.drop_superseded(segments_end).await?;
        let committed = self.engine.committed_offset();
        let chunks_end = self.tail.chunks.iter().map(|c| c.next_offset).max();
        let from = segments_end
            .max(chunks_end.unwrap_or(FIRST_OFFSET))
            .max(self.engine.wal().oldest_offset());
        if from >= committed {
            self.tail_since = None;
        } else if self.tail_since.is_none() {
            self.tail_since = Some((Instant::now(), unix_ms_now()));
        }
        self.publish_recovery_point(segments_end);
        let Some((since, _)) = self.tail_since else {
            return Ok(false);
        };
        if !force
            && !tail::tail_due(since.elapsed(), self.max_lag, 0)
            && committed - from < tail::TAIL_EARLY_RECORDS
        {
            return Ok(false);
        }
        let engine = self.engine.clone();
        let records = tokio::task::spawn_blocking(move || read_tail(&engine, from, committed))
            .await
            .map_err(|e| ShipError::Record(e.to_string()))??;
        let unshipped: usize = records.iter().map(Vec::len).sum();
        if records.is_empty()
            || !(force || tail::tail_due(since.elapsed(), self.max_lag, unshipped))
        {
            return Ok(false);
        }
        self.status.set_phase("shipping");
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        let mut entries = Vec::new();
        let mut at = 0usize;
        let mut round_bytes = 0u64;
        for count in tail::cut_chunks(&sizes) {
            let first = from + at as u64;
            let slice = &records[at..at + count];
            at += count;
            let bytes = Bytes::from(
                chunk::encode(self.log_id, first, slice)
                    .map_err(|e| ShipError::Record(e.to_string()))?,
            );
            let name = ObjectName::Chunk(first, first + count as u64);
            let key = self.layout.key(name);
            let object_sha = sha256(&bytes);
            let same = |stored: &[u8]| {
                chunk::decode(stored).is_ok_and(|(h, r)| {
                    h.first_offset == first && r.iter().map(|(_, b)| b).eq(slice.iter())
                })
            };
            let upload = Upload {
                listed: self.listed.contains(&key),
                key: key.clone(),
                bytes: bytes.clone(),
                sha256: object_sha,
                kind: "chunk",
                same_content: &same,
            };
            let (object_sha, object_bytes) =
                match self.store.put_verified(upload, &self.status, stop).await? {
                    Stored::Written | Stored::Duplicate => (object_sha, bytes.len() as u64),
                    // The same records chunked the same way by an earlier run.
                    Stored::Equivalent { sha256, bytes } => (sha256, bytes),
                    Stored::Conflict(conflict) => {
                        let reason = HaltReason::ObjectConflict { conflict };
                        self.status.alarm(reason.to_string());
                        return Err(ShipError::Halted(reason));
                    }
                };
            round_bytes += object_bytes;
            entries.push(ChunkEntry {
                key: key.to_string(),
                first_offset: first,
                next_offset: first + count as u64,
                object_bytes,
                object_sha256: object_sha,
            });
        }
        let seq = self.head.as_ref().map_or(1, |h| h.sequence + 1);
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            site_id: self.site_id.clone(),
            lineage: self.layout.lineage().to_string(),
            log_id: hex(&self.log_id),
            sequence: seq,
            previous: self.head.as_ref().map(|h| h.link.clone()),
            created_unix_ms: unix_ms_now(),
            segments: vec![],
            snapshots: vec![],
            chunks: entries.clone(),
        };
        let manifest_bytes = Bytes::from(manifest.encode());
        let manifest_sha = sha256(&manifest_bytes);
        let key = self.layout.key(ObjectName::Manifest(seq));
        self.put_manifest(&key, &manifest_bytes, manifest_sha, stop)
            .await?;
        let link = manifest_link(&key, &manifest_sha);
        self.note_chunks(&entries, seq, &link)?;
        self.head = Some(Head {
            sequence: seq,
            link,
        });
        let end = entries.last().map_or(from, |c| c.next_offset);
        // What is left waited since it was seen; a conservative start for it is now.
        self.tail_since =
            (end < self.engine.committed_offset()).then(|| (Instant::now(), unix_ms_now()));
        self.status.set_chain(seq, manifest.next_offset());
        self.publish_recovery_point(segments_end);
        self.status
            .objects_shipped
            .fetch_add(entries.len() as u64 + 1, Ordering::Relaxed);
        self.status
            .bytes_shipped
            .fetch_add(round_bytes + manifest_bytes.len() as u64, Ordering::Relaxed);
        self.status.manifests.fetch_add(1, Ordering::Relaxed);
        self.status.success();
        summary.objects += entries.len() as u64;
        summary.bytes += round_bytes;
        summary.manifests += 1;
        tracing::debug!(
            manifest = seq,
            chunks = entries.len(),
            from,
            end,
            "shipped the tail"
        );
        Ok(true)
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

/// The durable records `from..until` of the hot log, read through its record cursor (never
/// from segment bytes). Stops early if the hot log no longer holds `from` (archived
/// meanwhile: the archive's segment ships instead).
fn read_tail(engine: &Engine, from: Offset, until: Offset) -> Result<Vec<Vec<u8>>, ShipError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = match engine.wal().read_from(from) {
        Ok(c) => c,
        Err(gridlog_firmware::wal::ReadError::Truncated { .. }) => return Ok(out),
        Err(e) => return Err(ShipError::Record(e.to_string())),
    };
    let limit = chunk::CHUNK_TARGET_BYTES * tail::TAIL_CHUNKS_PER_ROUND_MAX;
    while let Some(record) = cursor.next() {
        let record = match record {
            Ok(r) => r,
            Err(gridlog_firmware::wal::ReadError::Truncated { .. }) => break,
            Err(e) => return Err(ShipError::Record(e.to_string())),
        };
        if record.offset >= until {
            break;
        }
        if record.offset != from + out.len() as u64 {
            return Err(ShipError::Record(format!(
                "the log cursor gave offset {} where {} was expected",
                record.offset,
                from + out.len() as u64
            )));
        }
        bytes += record.bytes.len();
        out.push(record.bytes.to_vec());
        if bytes >= limit {
            break;
        }
    }
    Ok(out)
}

/// A local object read and checked, ready to upload.
#[derive(Debug)]
struct Loaded {
    name: ObjectName,
    bytes: Bytes,
    object_sha: Sha256,
    /// For segments: the segment's SHA-256 and size (from the verified archive header).
    segment: Option<(Sha256, u64)>,
}

/// Reads and checks a pending object; `None` if it was a sealed segment that left the hot
/// log meanwhile.
fn load(engine: &Engine, p: &Pending) -> Result<Option<Loaded>, String> {
    let path = match &p.source {
        Source::File(path) => path,
        Source::Sealed => return load_sealed(engine, p),
    };
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let segment = match p.name {
        ObjectName::Segment(first, next) => {
            let (header, _) = verify_bytes(&bytes).map_err(|e| e.to_string())?;
            if (header.first_offset, header.next_offset) != (first, next)
                || p.segment_sha.is_some_and(|sha| sha.0 != header.sha256)
            {
                return Err("the archive file changed since it was listed".into());
            }
            Some((Sha256(header.sha256), header.original_bytes))
        }
        ObjectName::Snapshot(_) => {
            gridlog_firmware::snapshot::verify_file(path).map_err(|e| e.to_string())?;
            None
        }
        ObjectName::Manifest(_) => None,
        ObjectName::Chunk(..) => return Err("chunks are read from the log, not a file".into()),
    };
    Ok(Some(Loaded {
        name: p.name,
        object_sha: sha256(&bytes),
        bytes: Bytes::from(bytes),
        segment,
    }))
}

/// A sealed segment of the hot log in the archive's format (the object its archive file
/// would be, but for the creation time in the header), checked against its intent's hash.
fn load_sealed(engine: &Engine, p: &Pending) -> Result<Option<Loaded>, String> {
    let ObjectName::Segment(first, next) = p.name else {
        return Err("only segments are read from the hot log".into());
    };
    let Some(original) = engine.wal().sealed_segment_bytes(first) else {
        return Ok(None);
    };
    let (header, compressed) =
        gridlog_firmware::archive::compress(engine.wal().log_id(), first, next, &original)
            .map_err(|e| e.to_string())?;
    if p.segment_sha.is_some_and(|sha| sha.0 != header.sha256) {
        return Err("the sealed segment changed since its intent was recorded".into());
    }
    let mut bytes =
        Vec::with_capacity(gridlog_common::archive::ARCHIVE_HEADER_BYTES + compressed.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&compressed);
    Ok(Some(Loaded {
        name: p.name,
        object_sha: sha256(&bytes),
        bytes: Bytes::from(bytes),
        segment: Some((Sha256(header.sha256), header.original_bytes)),
    }))
}

fn unix_ms_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Loaded {
    fn kind(&self) -> &'static str {
        match self.name {
            ObjectName::Segment(..) => "segment",
            ObjectName::Snapshot(_) => "snapshot",
            ObjectName::Manifest(_) => "manifest",
            ObjectName::Chunk(..) => "chunk",
        }
    }

    /// A different archive of the same segment (archived again after a crash: another
    /// creation time in the header) is the same content.
    fn same_content(&self, stored: &[u8]) -> bool {
        match (self.name, self.segment) {
            (ObjectName::Segment(first, next), Some((sha, _))) => {
                verify_bytes(stored).is_ok_and(|(h, _)| {
                    h.sha256 == sha.0 && h.first_offset == first && h.next_offset == next
                })
            }
            _ => false,
        }
    }

    /// The manifest entry of this object as the store holds it: `object_sha` and
    /// `object_bytes` are the stored bytes' (which differ from ours for an equivalent
    /// archive of the same segment).
    fn confirmed(&self, layout: &Layout, object_sha: Sha256, object_bytes: u64) -> Confirmed {
        let key = layout.key(self.name).to_string();
        match self.name {
            ObjectName::Segment(first_offset, next_offset) => {
                let (segment_sha, original_bytes) = self.segment.unwrap_or_default();
                Confirmed::Segment(SegmentEntry {
                    key,
                    first_offset,
                    next_offset,
                    object_bytes,
                    object_sha256: object_sha,
                    original_bytes,
                    segment_sha256: segment_sha,
                })
            }
            // `load` refuses chunks, so a chunk never gets here.
            ObjectName::Snapshot(next_offset)
            | ObjectName::Manifest(next_offset)
            | ObjectName::Chunk(_, next_offset) => Confirmed::Snapshot(SnapshotEntry {
                key,
                next_offset,
                object_bytes,
                object_sha256: object_sha,
            }),
        }
    }
}

fn event_range(name: ObjectName) -> (ShipObject, Offset, Offset) {
    match name {
        ObjectName::Segment(first, next) => (ShipObject::Segment, first, next),
        ObjectName::Snapshot(next) => (ShipObject::Snapshot, FIRST_OFFSET, next),
        ObjectName::Manifest(seq) => (ShipObject::Manifest, seq, seq),
        // Tail rounds record no events; the backlog never holds a chunk.
        ObjectName::Chunk(first, next) => (ShipObject::Segment, first, next),
    }
}

fn confirmed_event(c: &Confirmed) -> Event {
    match c {
        Confirmed::Segment(s) => Event::ShipConfirmed {
            object: ShipObject::Segment,
            first_offset: s.first_offset,
            next_offset: s.next_offset,
            sha256: s.segment_sha256.0,
            bytes: s.object_bytes,
        },
        Confirmed::Snapshot(s) => Event::ShipConfirmed {
            object: ShipObject::Snapshot,
            first_offset: FIRST_OFFSET,
            next_offset: s.next_offset,
            sha256: s.object_sha256.0,
            bytes: s.object_bytes,
        },
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
    let handle = tokio::spawn(async move {
        let _ = shipper.run(stop).await;
    });
    Ok(Some((status, handle)))
}
