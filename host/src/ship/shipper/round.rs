//! Segment and snapshot rounds: the backlog (derived from the archive, the hot log's sealed
//! segments and the snapshots, never stored apart), then one round: intents, uploads with
//! read-back, a manifest, confirmations.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use gridlog_common::domain::{Event, ShipObject};
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::state::SystemState;
use tokio::sync::watch;

use super::objects::{event_range, load, unix_ms_of, Confirmed, ObjectOutcome, Pending, Source};
use super::rollups_round::RollupSet;
use super::{plan, ShipError, Shipper, Summary};
use crate::ship::layout::ObjectName;
use crate::ship::manifest::RollupEntry;
use crate::ship::record::{record, system_state};
use crate::ship::status::{unix_ms_now, Backlog};
use crate::ship::store::{StoreError, Stored, Upload};
use crate::ship::{sha256, Sha256};

impl Shipper {
    /// What is waiting, oldest first.
    pub(super) fn backlog(&self) -> Result<Vec<Pending>, ShipError> {
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
            // It ships with the rollup store's spills as they are: none may cover events
            // past it, and it must be one the store continues (not one start-up passed over).
            let shippable = || {
                !self.parked.contains(&name)
                    && !self
                        .engine
                        .snapshots_passed_over()
                        .contains(&snap.next_offset)
                    && self.rollups_fit(snap.next_offset)
            };
            if snap.next_offset > newest_shipped && due && shippable() {
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
    pub(super) fn sealed_backlog(
        &self,
        system: &SystemState,
        archived: &HashSet<Offset>,
    ) -> Vec<Pending> {
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
    pub(super) fn publish_backlog(&self) -> Result<Vec<Pending>, ShipError> {
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
    pub(super) async fn round(
        &mut self,
        stop: &watch::Receiver<bool>,
        summary: &mut Summary,
    ) -> Result<bool, ShipError> {
        let pending = self.publish_backlog()?;
        if pending.is_empty() {
            return Ok(false);
        }
        self.status.set_phase("shipping");
        let mut batch = plan::plan_round(pending, |p| p.object_bytes);
        let rollups = self.rollups_for(&mut batch, stop).await?;
        self.record_intents(&mut batch).await?;
        let results = self.upload_all(batch, stop).await;
        let (mut confirmed, round_bytes) = self.sort_outcomes(results)?;
        if let Some(entries) = rollups {
            for c in &mut confirmed {
                if let Confirmed::Snapshot(s) = c {
                    s.rollups = entries.clone();
                }
            }
        }
        if confirmed.is_empty() {
            return Ok(true);
        }
        self.commit_round(&confirmed, round_bytes, stop, summary)
            .await?;
        Ok(true)
    }

    /// The rollup set of the round's snapshot, uploaded first (see `rollups_round`): the
    /// snapshot stays in the batch only once every part of its set is verified.
    async fn rollups_for(
        &mut self,
        batch: &mut Vec<Pending>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Vec<RollupEntry>>, ShipError> {
        let Some(next) = batch.iter().find_map(|p| match p.name {
            ObjectName::Snapshot(next) => Some(next),
            _ => None,
        }) else {
            return Ok(None);
        };
        match self.ship_rollups(next, stop).await? {
            RollupSet::Ready(entries) => Ok(Some(entries)),
            RollupSet::NotYet | RollupSet::Unshippable => {
                batch.retain(|p| p.name != ObjectName::Snapshot(next));
                Ok(None)
            }
        }
    }

    /// Persists the intents before any upload. A segment's hash comes from its archive
    /// header, or from the hot log's bytes for a sealed segment (kept in its `Pending`, so
    /// the upload checks the same bytes); an object gone meanwhile gets no intent.
    async fn record_intents(&self, batch: &mut [Pending]) -> Result<(), ShipError> {
        let mut intents = Vec::with_capacity(batch.len());
        for p in batch.iter_mut() {
            let (object, first_offset, next_offset) = event_range(p.name);
            let sha256 = match (p.segment_sha, &p.source) {
                (Some(sha), _) => sha,
                (None, Source::File(path)) => match std::fs::read(path) {
                    Ok(bytes) => sha256(&bytes),
                    Err(_) => continue,
                },
                (None, Source::Sealed) => match self.engine.wal().sealed_segment(first_offset) {
                    Some(bytes) => *p.segment_sha.insert(sha256(&bytes)),
                    None => continue,
                },
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
        Ok(())
    }

    /// Loads (and checks) and uploads each object, `ship.concurrency` at a time, so memory
    /// holds at most that many objects.
    async fn upload_all(
        &self,
        batch: Vec<Pending>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<(ObjectName, Result<ObjectOutcome, StoreError>)> {
        futures_util::stream::iter(batch)
            .map(|p| self.upload_one(p, stop))
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn upload_one(
        &self,
        p: Pending,
        stop: &watch::Receiver<bool>,
    ) -> (ObjectName, Result<ObjectOutcome, StoreError>) {
        let name = p.name;
        let source = p.source.describe(name);
        let engine = self.engine.clone();
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
        let key = self.layout.key(object.name);
        let same_content = |stored: &[u8]| object.same_content(stored);
        let upload = Upload {
            listed: self.listed.contains(&key),
            key,
            bytes: object.bytes.clone(),
            sha256: object.object_sha,
            kind: object.kind(),
            same_content: &same_content,
        };
        let size = object.bytes.len() as u64;
        let outcome = self
            .store
            .put_verified(upload, &self.status, stop)
            .await
            .map(|stored| match stored {
                Stored::Written | Stored::Duplicate => ObjectOutcome::Stored(
                    object.confirmed(&self.layout, object.object_sha, size),
                    size,
                    stored == Stored::Duplicate,
                ),
                Stored::Equivalent { sha256, bytes } => ObjectOutcome::Stored(
                    object.confirmed(&self.layout, sha256, bytes),
                    bytes,
                    true,
                ),
                Stored::Conflict(message) => ObjectOutcome::Conflict(message),
            });
        (name, outcome)
    }

    /// The round's verified objects and their bytes; conflicts and damaged local objects are
    /// parked (alarm or error), objects archived meanwhile wait for their archive file.
    fn sort_outcomes(
        &mut self,
        results: Vec<(ObjectName, Result<ObjectOutcome, StoreError>)>,
    ) -> Result<(Vec<Confirmed>, u64), ShipError> {
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
        Ok((confirmed, round_bytes))
    }

    /// The manifest naming the round's verified objects: its intent, upload with read-back,
    /// then every confirmation; the head moves; counters.
    async fn commit_round(
        &mut self,
        confirmed: &[Confirmed],
        round_bytes: u64,
        stop: &watch::Receiver<bool>,
        summary: &mut Summary,
    ) -> Result<(), ShipError> {
        let manifest = plan::build_manifest(self.chain(), unix_ms_now(), confirmed, vec![]);
        let seq = manifest.sequence;
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
            confirmed,
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
            .round_shipped(objects + 1, round_bytes + manifest_bytes.len() as u64);
        summary.objects += objects;
        summary.bytes += round_bytes;
        summary.manifests += 1;
        tracing::info!(
            manifest = seq,
            objects,
            bytes = round_bytes,
            "shipped a round"
        );
        Ok(())
    }
}
