//! The shipper: finds what is not yet in central storage, uploads it in rounds, writes a
//! manifest per round, and records intent and confirmation as events on `gateway:storage`.
//!
//! The backlog is derived, never stored apart: every archive file in `DATA_DIR/archive/`
//! whose segment has no `ShipConfirmed` with the same SHA-256 (the segment's, as in the
//! archive header and `SegmentArchived`), plus the newest snapshot when it is newer than the
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
use super::{hex, sha256, verify_archive};
use crate::config::Config;

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
    Halted(String),
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
    path: PathBuf,
    object_bytes: u64,
    created_unix_ms: u64,
    /// For a segment, its SHA-256 from the archive header (checked again when loaded).
    segment_sha: Option<[u8; 32]>,
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
                    sha256: hex(&sha),
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
        let listing = self
            .store
            .list(&self.layout.root())
            .await
            .map_err(StoreError::from)?;
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        let mut manifests = BTreeMap::new();
        self.listed.clear();
        let now_ms = unix_ms_now();
        let mut candidates = Vec::new();
        for meta in listing {
            match self.layout.parse(&meta.location) {
                Some(ObjectName::Manifest(seq)) => {
                    manifests.insert(seq, meta.location);
                }
                Some(name) => {
                    let age_ms =
                        now_ms.saturating_sub(meta.last_modified.timestamp_millis().max(0) as u64);
                    candidates.push((name, meta.location.clone(), age_ms));
                    self.listed.insert(meta.location);
                }
                None => {}
            }
        }
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

    /// Records the objects of the parent chain that the restored log does not know of.
    async fn record_parent(
        &mut self,
        system: &SystemState,
        parent: &ParentLink,
    ) -> Result<(), ShipError> {
        let mut events = Vec::new();
        for s in &parent.unconfirmed_segments {
            let Some(sha) = unhex32(&s.segment_sha256) else {
                continue;
            };
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
            if let (true, Some(sha)) = (s.next_offset > newest, unhex32(&s.object_sha256)) {
                events.push(Event::ShipConfirmed {
                    object: ShipObject::Snapshot,
                    first_offset: FIRST_OFFSET,
                    next_offset: s.next_offset,
                    sha256: sha,
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
        let manifest = Manifest::decode(bytes)
            .map_err(|e| ShipError::Halted(format!("manifest {key} in our lineage: {e}")))?;
        let expected_previous = self.head.as_ref().map(|h| &h.link);
        let expected_seq = self.head.as_ref().map_or(1, |h| h.sequence + 1);
        if manifest.sequence != seq
            || seq != expected_seq
            || manifest.previous.as_ref() != expected_previous
            || manifest.lineage != self.layout.lineage()
        {
            let message = format!(
                "manifest {key} does not continue this gateway's chain (expected sequence {expected_seq} after {:?}): a second writer in lineage {}, or tampering",
                expected_previous.map(|l| &l.key),
                self.layout.lineage()
            );
            self.status.alarm(message.clone());
            return Err(ShipError::Halted(message));
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
        manifest_sha: [u8; 32],
        manifest_bytes: u64,
    ) -> Result<(), ShipError> {
        let mut events = Vec::with_capacity(confirmed.len() + 1);
        for c in confirmed {
            events.push(confirmed_event(c).ok_or_else(|| {
                ShipError::Halted(format!("manifest {seq} holds a malformed hash"))
            })?);
        }
        events.push(Event::ShipConfirmed {
            object: ShipObject::Manifest,
            first_offset: seq,
            next_offset: manifest.next_offset(),
            sha256: manifest_sha,
            bytes: manifest_bytes,
        });
        record(&self.engine, events).await?;
        let key = self.layout.key(ObjectName::Manifest(seq)).to_string();
        self.head = Some(Head {
            sequence: seq,
            link: ManifestLink {
                key,
                sha256: hex(&manifest_sha),
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
                    path: a.path,
                    object_bytes: a.file_bytes,
                    created_unix_ms: h.created_unix_ms,
                    segment_sha: Some(h.sha256),
                });
            }
        }
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
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                pending.push(Pending {
                    name,
                    path: snap.path,
                    object_bytes: snap.file_bytes,
                    created_unix_ms: created,
                    segment_sha: None,
                });
            }
        }
        Ok(pending)
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
        for p in &batch {
            let (object, first_offset, next_offset) = event_range(p.name);
            let sha256 = match p.segment_sha {
                Some(sha) => sha,
                None => match std::fs::read(&p.path) {
                    Ok(bytes) => sha256(&bytes),
                    Err(_) => continue,
                },
            };
            intents.push(Event::ShipIntended {
                object,
                first_offset,
                next_offset,
                sha256,
                bytes: p.object_bytes,
            });
        }
        record(&self.engine, intents).await?;
        let results: Vec<(ObjectName, Result<ObjectOutcome, StoreError>)> = {
            let store = &self.store;
            let layout = &self.layout;
            let status = &*self.status;
            let listed = &self.listed;
            futures_util::stream::iter(batch)
                .map(|p| async move {
                    let name = p.name;
                    let path = p.path.clone();
                    let loaded = tokio::task::spawn_blocking(move || load(&p))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                    let object = match loaded {
                        Ok(object) => object,
                        Err(reason) => {
                            let message = format!("{}: {reason}", path.display());
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
                                object.confirmed(layout),
                                object.bytes.len() as u64,
                                stored == Stored::Duplicate,
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
                sha256: manifest_sha,
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
        sha256: [u8; 32],
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
            Stored::Conflict(message) => {
                let message = format!(
                    "{message} — another writer in lineage {}? shipping halts",
                    self.layout.lineage()
                );
                self.status.alarm(message.clone());
                Err(ShipError::Halted(message))
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
    async fn remove_orphans(
        &mut self,
        listed: &[(ObjectName, Path, u64)],
    ) -> Result<(), ShipError> {
        let system = system_state(&self.engine);
        let (archives, _) = gridlog_firmware::archive::list(&self.data_dir)?;
        let pending: HashSet<ObjectName> = archives
            .iter()
            .map(|a| ObjectName::Segment(a.header.first_offset, a.header.next_offset))
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
            match self.store.put_verified(upload, &self.status, stop).await? {
                Stored::Written | Stored::Duplicate => {}
                Stored::Conflict(message) => {
                    self.status.alarm(message.clone());
                    return Err(ShipError::Halted(message));
                }
            }
            round_bytes += bytes.len() as u64;
            entries.push(ChunkEntry {
                key: key.to_string(),
                first_offset: first,
                next_offset: first + count as u64,
                object_bytes: bytes.len() as u64,
                object_sha256: hex(&object_sha),
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

fn manifest_link(key: &Path, sha: &[u8; 32]) -> ManifestLink {
    ManifestLink {
        key: key.to_string(),
        sha256: hex(sha),
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
    object_sha: [u8; 32],
    /// For segments: the segment's SHA-256 and size (from the verified archive header).
    segment: Option<([u8; 32], u64)>,
}

fn load(p: &Pending) -> Result<Loaded, String> {
    let bytes = std::fs::read(&p.path).map_err(|e| e.to_string())?;
    let segment = match p.name {
        ObjectName::Segment(first, next) => {
            let (header, _) = verify_archive(&bytes)?;
            if (header.first_offset, header.next_offset) != (first, next)
                || p.segment_sha.is_some_and(|sha| sha != header.sha256)
            {
                return Err("the archive file changed since it was listed".into());
            }
            Some((header.sha256, header.original_bytes))
        }
        ObjectName::Snapshot(_) => {
            gridlog_firmware::snapshot::verify_file(&p.path).map_err(|e| e.to_string())?;
            None
        }
        ObjectName::Manifest(_) => None,
        ObjectName::Chunk(..) => return Err("chunks are read from the log, not a file".into()),
    };
    Ok(Loaded {
        name: p.name,
        object_sha: sha256(&bytes),
        bytes: Bytes::from(bytes),
        segment,
    })
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
                verify_archive(stored).is_ok_and(|(h, _)| {
                    h.sha256 == sha && h.first_offset == first && h.next_offset == next
                })
            }
            _ => false,
        }
    }

    fn confirmed(&self, layout: &Layout) -> Confirmed {
        let key = layout.key(self.name).to_string();
        match self.name {
            ObjectName::Segment(first_offset, next_offset) => {
                let (segment_sha, original_bytes) = self.segment.unwrap_or_default();
                Confirmed::Segment(SegmentEntry {
                    key,
                    first_offset,
                    next_offset,
                    object_bytes: self.bytes.len() as u64,
                    object_sha256: hex(&self.object_sha),
                    original_bytes,
                    segment_sha256: hex(&segment_sha),
                })
            }
            // `load` refuses chunks, so a chunk never gets here.
            ObjectName::Snapshot(next_offset)
            | ObjectName::Manifest(next_offset)
            | ObjectName::Chunk(_, next_offset) => Confirmed::Snapshot(SnapshotEntry {
                key,
                next_offset,
                object_bytes: self.bytes.len() as u64,
                object_sha256: hex(&self.object_sha),
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

fn confirmed_event(c: &Confirmed) -> Option<Event> {
    Some(match c {
        Confirmed::Segment(s) => Event::ShipConfirmed {
            object: ShipObject::Segment,
            first_offset: s.first_offset,
            next_offset: s.next_offset,
            sha256: unhex32(&s.segment_sha256)?,
            bytes: s.object_bytes,
        },
        Confirmed::Snapshot(s) => Event::ShipConfirmed {
            object: ShipObject::Snapshot,
            first_offset: FIRST_OFFSET,
            next_offset: s.next_offset,
            sha256: unhex32(&s.object_sha256)?,
            bytes: s.object_bytes,
        },
    })
}

/// Parses 64 hex digits.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = sha256(b"x");
        assert_eq!(unhex32(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex32("zz"), None);
    }
}
