//! Reconciling with the store: at start, the chain head from the log (and a restore's parent
//! link), one listing of the lineage, manifests written but not recorded adopted; and, at
//! start and every `ship.orphan_grace_s`, objects no manifest names removed once older than
//! the grace.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridlog_common::domain::{Event, ShipObject};
use gridlog_common::FIRST_OFFSET;
use gridlog_firmware::engine::state::SystemState;
use object_store::path::Path;
use tokio::sync::watch;

use super::objects::Confirmed;
use super::{manifest_link, HaltReason, Head, Listed, ShipError, Shipper};
use crate::ship::layout::ObjectName;
use crate::ship::lineage::{self, ParentLink};
use crate::ship::manifest::{Manifest, ManifestLink, MANIFEST_BYTES_MAX};
use crate::ship::record::{record, system_state};
use crate::ship::status::unix_ms_now;
use crate::ship::store::StoreError;
use crate::ship::tail;
use crate::ship::{sha256, Sha256};

impl Shipper {
    /// The chain head from the log (and a restore's parent link), then one listing of the
    /// lineage: adopt manifests written but not recorded, remember objects already there.
    pub(super) async fn reconcile(
        &mut self,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), ShipError> {
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
            let Some(bytes) = self
                .store
                .get(key, MANIFEST_BYTES_MAX as u64)
                .await
                .map_err(StoreError::from)?
            else {
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
    pub(super) async fn list_lineage(
        &self,
    ) -> Result<(BTreeMap<u64, Path>, Vec<Listed>), ShipError> {
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
    pub(super) async fn sweep_orphans(&mut self) -> Result<(), ShipError> {
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
    pub(super) async fn record_parent(
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
    pub(super) async fn adopt(
        &mut self,
        seq: u64,
        key: &Path,
        bytes: &[u8],
    ) -> Result<(), ShipError> {
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

    /// Removes this lineage's chunks and segments that no manifest names (an upload a crash
    /// left before its manifest, which the backlog will not upload again under that key)
    /// once they are older than `ship.orphan_grace_s`.
    pub(super) async fn remove_orphans(&mut self, listed: &[Listed]) -> Result<(), ShipError> {
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
            // Snapshots, manifests and rollup parts are never removed by the shipper (a
            // rollup part is content-addressed: a later round uses it again).
            ObjectName::Snapshot(_) | ObjectName::Manifest(_) | ObjectName::RollupPart(..) => true,
        };
        for key in tail::orphans(listed, &known, self.orphan_grace_ms) {
            tracing::warn!(%key, "removing an object no manifest names (left by a crash)");
            self.status.requests.fetch_add(1, Ordering::Relaxed);
            self.store.delete(&key).await.map_err(StoreError::from)?;
            self.listed.remove(&key);
        }
        Ok(())
    }
}
