//! Rollup spills shipped with a snapshot, so a restore of the snapshot starts with the
//! rollup days that left memory (the snapshot holds only what was still queued).
//!
//! When a snapshot is in a round, the rollup store's spills in use (a consistent set, from
//! one moment: `Engine::rollup_spills`) go first, each cut into parts of
//! [`ROLLUP_PART_BYTES`] named by the spill's number, its whole file's SHA-256 and the
//! part's number (`layout::ObjectName::RollupPart`), uploaded with read-back like every
//! object. The snapshot's manifest entry lists the set (`manifest::RollupEntry`), and is
//! written only once every part of it is verified; until then the snapshot waits for a
//! later round, which uploads the parts still missing (parts are started only within a
//! quarter of `ship.max_lag_s`, at least one, and at most [`ROLLUP_ROUND_BYTES_MAX`] a
//! round; a part is small, so segments and the tail rounds keep the recovery point
//! meanwhile).
//!
//! A set fits a snapshot only when no spill covers events past it (`through_offset` at most
//! the snapshot's `next_offset`): every maintenance cycle spills before it snapshots, so
//! the set fits until the next spill. Nor may the snapshot assume more of the store than it
//! holds: a snapshot start-up passed over for that, or for other horizons
//! (`Engine::snapshots_passed_over`), is not shipped. A snapshot whose set no longer fits
//! waits for the next one. One of whose spills cannot be read, or one of whose parts the
//! store holds other bytes for, is parked with an alarm (counted as left), and the round
//! goes on; for a conflict, once a fresh hash shows the local spill still matches its key,
//! the other bytes are removed (no manifest can name them), so the next snapshot's set
//! uploads the part afresh; stored bytes that are the part's, with other metadata, count as
//! verified.
//!
//! Parts are not deleted otherwise: spills are immutable and content-addressed, so a later
//! set names the parts an earlier one uploaded, and an older manifest's set stays
//! restorable. Which parts are verified is remembered in memory only: after a restart, the
//! first set is read back from the store (not uploaded again) before its snapshot ships.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use gridlog_common::Offset;
use gridlog_firmware::engine::rollup_store::format::SpillHeader;
use gridlog_firmware::engine::rollup_store::SpillFile;
use tokio::sync::watch;

use super::{ShipError, Shipper};
use crate::ship::layout::ObjectName;
use crate::ship::manifest::{RollupEntry, RollupPartEntry};
use crate::ship::store::{StoreError, Stored, Upload};
use crate::ship::{sha256, Sha256};

/// Bytes of a rollup part object (the last part of a spill is shorter): what one upload
/// holds in memory, twice with its read-back; small, so one part's upload and read-back
/// take seconds even on a slow uplink.
pub const ROLLUP_PART_BYTES: u64 = 1024 * 1024;
/// Most rollup part bytes uploaded in one round; a bigger set takes several rounds (the
/// first shipment of a full store, a few hundred MB at full horizons, included).
pub const ROLLUP_ROUND_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// A round uploads rollup parts for at most `ship.max_lag_s` divided by this (then the
/// round's segments and a tail round go, and the next round goes on), so a slow uplink
/// keeps the recovery point while a big set ships: 15 s at the default 60 s.
pub const ROLLUP_ROUND_LAG_SHARE: u32 = 4;
/// Bytes read at a time while a spill's whole-file hash is computed.
const HASH_READ_BYTES: usize = 1024 * 1024;

/// What the rollup stage remembers between rounds.
#[derive(Debug, Default)]
pub(super) struct RollupsStage {
    /// Whole-file hashes of the spills of the last set, by header (a spill never changes;
    /// a header names one spill's bytes: its number, coverage, sizes and index CRC).
    hashed: Vec<(SpillHeader, Sha256)>,
    /// Parts of the last set verified in the store by this process: their hash and size.
    verified: HashMap<ObjectName, (Sha256, u64)>,
}

/// Where a snapshot's rollup set stands after a round's uploads.
#[derive(Debug)]
pub(super) enum RollupSet {
    /// Every part verified: the snapshot's manifest entry lists these.
    Ready(Vec<RollupEntry>),
    /// Parts are still to be uploaded in a later round.
    NotYet,
    /// The snapshot cannot ship with the set (it went past it, or a part conflicts).
    Unshippable,
}

/// A spill file's parts: `(position, length)` of each, in order, [`ROLLUP_PART_BYTES`]
/// each but the last.
pub(super) fn parts_of(file_bytes: u64, part_bytes: u64) -> Vec<(u64, u64)> {
    let part_bytes = part_bytes.max(1);
    (0..file_bytes.div_ceil(part_bytes))
        .map(|i| {
            let at = i * part_bytes;
            (at, part_bytes.min(file_bytes - at))
        })
        .collect()
}

/// Whether a set of spills (their coverage) fits a snapshot ending before `snapshot_next`.
pub(super) fn set_fits(through_offsets: impl IntoIterator<Item = u64>, snapshot_next: u64) -> bool {
    through_offsets.into_iter().all(|t| t <= snapshot_next)
}

/// The parts to upload this round: those not yet verified, oldest spill first, at most
/// `bytes_max` bytes but at least one part.
pub(super) fn due_parts<T: Copy>(missing: &[(T, u64)], bytes_max: u64) -> Vec<T> {
    let mut due = Vec::new();
    let mut bytes = 0u64;
    for &(part, len) in missing {
        if !due.is_empty() && bytes.saturating_add(len) > bytes_max {
            break;
        }
        bytes = bytes.saturating_add(len);
        due.push(part);
    }
    due
}

/// Every part of a set, oldest spill first.
fn set_parts(spills: &[Arc<SpillFile>], hashed: &[Sha256]) -> Vec<Part> {
    let mut parts = Vec::new();
    for (spill, sha) in spills.iter().zip(hashed) {
        let seq = spill.header().spill_seq;
        for (i, (at, len)) in parts_of(spill.file_bytes(), ROLLUP_PART_BYTES)
            .into_iter()
            .enumerate()
        {
            parts.push(Part {
                name: ObjectName::RollupPart(seq, *sha, i as u32),
                spill: spill.clone(),
                at,
                len,
            });
        }
    }
    parts
}

/// How one part's upload ended, short of a store failure.
#[derive(Debug)]
enum PartUpload {
    /// Verified in the store: its hash and size.
    Verified(Sha256, u64),
    /// The spill could not be read.
    Unreadable(String),
    /// The store holds other bytes (or other metadata) under its key; the part's hash.
    Conflict(String, Sha256),
}

/// One part to upload.
#[derive(Debug, Clone)]
struct Part {
    name: ObjectName,
    spill: Arc<SpillFile>,
    at: u64,
    len: u64,
}

impl Shipper {
    /// Whether the rollup store's set fits a snapshot ending before `snapshot_next`.
    pub(super) fn rollups_fit(&self, snapshot_next: Offset) -> bool {
        let spills = self.engine.rollup_spills();
        set_fits(
            spills.iter().map(|s| s.header().through_offset),
            snapshot_next,
        )
    }

    /// Uploads what is missing of the rollup set for the snapshot ending before
    /// `snapshot_next` — parts started within a [`ROLLUP_ROUND_LAG_SHARE`]th of
    /// `ship.max_lag_s`, at most [`ROLLUP_ROUND_BYTES_MAX`] bytes, at least one part — and
    /// says where the set stands. A store failure ends the round (it is tried again); a
    /// spill that cannot be read or a part that conflicts parks the snapshot with an alarm
    /// (not shipped, counted as left), never the round: segments and the tail ship on.
    pub(super) async fn ship_rollups(
        &mut self,
        snapshot_next: Offset,
        stop: &watch::Receiver<bool>,
    ) -> Result<RollupSet, ShipError> {
        let spills = self.engine.rollup_spills();
        if !set_fits(
            spills.iter().map(|s| s.header().through_offset),
            snapshot_next,
        ) {
            tracing::info!(
                snapshot = snapshot_next,
                "the rollup store spilled past the snapshot; the next snapshot ships instead"
            );
            // The backlog leaves it out from now on (the store only grows).
            return Ok(RollupSet::Unshippable);
        }
        let hashed = match self.hash_spills(&spills).await {
            Ok(hashed) => hashed,
            Err(e) => {
                let message = format!("reading the rollup store to ship it: {e}");
                tracing::error!(%message, snapshot = snapshot_next, "the snapshot is not shipped");
                self.status.alarm(message);
                self.parked.insert(ObjectName::Snapshot(snapshot_next));
                return Ok(RollupSet::Unshippable);
            }
        };
        let parts = set_parts(&spills, &hashed);
        let wanted: HashSet<ObjectName> = parts.iter().map(|p| p.name).collect();
        let verified = &mut self.rollups.verified;
        verified.retain(|name, _| wanted.contains(name));
        let missing: Vec<(usize, u64)> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !verified.contains_key(&p.name))
            .map(|(i, p)| (i, p.len))
            .collect();
        let due = due_parts(&missing, ROLLUP_ROUND_BYTES_MAX)
            .into_iter()
            .map(|i| parts[i].clone())
            .collect();
        let deadline = Instant::now() + self.max_lag / ROLLUP_ROUND_LAG_SHARE;
        let mut failed: Option<String> = None;
        for (part, outcome) in self.upload_parts(due, deadline, stop).await {
            let settled = match outcome? {
                PartUpload::Verified(sha, bytes) => Ok((sha, bytes)),
                PartUpload::Unreadable(message) => Err(message),
                PartUpload::Conflict(message, part_sha) => self
                    .settle_conflict(&part, part_sha)
                    .await?
                    .map_err(|why| format!("{message}; {why}")),
            };
            match settled {
                Ok(verified) => {
                    self.rollups.verified.insert(part.name, verified);
                }
                Err(message) => {
                    failed.get_or_insert(message);
                }
            }
        }
        if let Some(message) = failed {
            // Not shipped, and counted as left (`ship --once` exits 1); the next one is.
            tracing::error!(%message, snapshot = snapshot_next, "the snapshot is not shipped");
            self.status.alarm(message);
            self.parked.insert(ObjectName::Snapshot(snapshot_next));
            return Ok(RollupSet::Unshippable);
        }
        if parts
            .iter()
            .any(|p| !self.rollups.verified.contains_key(&p.name))
        {
            return Ok(RollupSet::NotYet);
        }
        Ok(RollupSet::Ready(self.set_entries(&spills, &hashed, &parts)))
    }

    /// After the store answered a part's upload with other bytes: verified after all if the
    /// stored bytes are the part's (only their metadata disagreed); otherwise, once a fresh
    /// hash of the local spill shows our bytes are still the ones its key names, the other
    /// bytes are removed (no manifest can name them: a key is its content), so the next
    /// set uploads the part afresh. `Err` says why the part is not verified.
    async fn settle_conflict(
        &mut self,
        part: &Part,
        part_sha: Sha256,
    ) -> Result<Result<(Sha256, u64), String>, ShipError> {
        let key = self.layout.key(part.name);
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        let stored = self
            .store
            .get(&key, part.len.saturating_mul(2).saturating_add(1 << 20))
            .await
            .map_err(StoreError::from)?;
        if stored.as_deref().is_some_and(|b| sha256(b) == part_sha) {
            return Ok(Ok((part_sha, part.len)));
        }
        let ObjectName::RollupPart(_, file_sha, _) = part.name else {
            return Ok(Err("not a rollup part".into()));
        };
        let spill = part.spill.clone();
        let fresh = tokio::task::spawn_blocking(move || hash_spill(&spill)).await?;
        if fresh.ok() != Some(file_sha) {
            let header = *part.spill.header();
            self.rollups.hashed.retain(|(h, _)| *h != header);
            return Ok(Err(
                "the local spill no longer hashes to its key (damaged on disk?): kept".into(),
            ));
        }
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        self.store.delete(&key).await.map_err(StoreError::from)?;
        self.listed.remove(&key);
        tracing::warn!(%key, "removed other bytes under a rollup part's key");
        Ok(Err(
            "the other bytes were removed; the next snapshot uploads the part afresh".into(),
        ))
    }

    /// The manifest entries of a set whose parts are all verified.
    fn set_entries(
        &self,
        spills: &[Arc<SpillFile>],
        hashed: &[Sha256],
        parts: &[Part],
    ) -> Vec<RollupEntry> {
        spills
            .iter()
            .zip(hashed)
            .map(|(spill, sha)| {
                let parts = parts
                    .iter()
                    .filter(|p| Arc::ptr_eq(&p.spill, spill))
                    .map(|p| {
                        let (object_sha256, object_bytes) = self.rollups.verified[&p.name];
                        RollupPartEntry {
                            key: self.layout.key(p.name).to_string(),
                            object_bytes,
                            object_sha256,
                        }
                    })
                    .collect();
                RollupEntry {
                    spill_seq: spill.header().spill_seq,
                    through_offset: spill.header().through_offset,
                    file_bytes: spill.file_bytes(),
                    file_sha256: *sha,
                    parts,
                }
            })
            .collect()
    }

    /// Each spill's whole-file SHA-256, computed once per spill (off the runtime) and
    /// remembered while the spill is in the set.
    async fn hash_spills(&mut self, spills: &[Arc<SpillFile>]) -> std::io::Result<Vec<Sha256>> {
        let mut hashed = Vec::with_capacity(spills.len());
        for spill in spills {
            let header = *spill.header();
            let known = self.rollups.hashed.iter().find(|(h, _)| *h == header);
            let sha = match known {
                Some((_, sha)) => *sha,
                None => {
                    let spill = spill.clone();
                    tokio::task::spawn_blocking(move || hash_spill(&spill))
                        .await
                        .map_err(std::io::Error::other)??
                }
            };
            hashed.push((header, sha));
        }
        let shas = hashed.iter().map(|(_, sha)| *sha).collect();
        self.rollups.hashed = hashed;
        Ok(shas)
    }

    /// Uploads `parts`, `ship.concurrency` at a time, starting a part only before
    /// `deadline` (the first always): each part with how its upload ended.
    async fn upload_parts(
        &self,
        parts: Vec<Part>,
        deadline: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Vec<(Part, Result<PartUpload, ShipError>)> {
        let mut first = true;
        futures_util::stream::iter(parts)
            .take_while(move |_| {
                let start = std::mem::take(&mut first) || Instant::now() < deadline;
                std::future::ready(start)
            })
            .map(|p| async move { (p.clone(), self.upload_part(p, stop).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn upload_part(
        &self,
        part: Part,
        stop: &watch::Receiver<bool>,
    ) -> Result<PartUpload, ShipError> {
        let (spill, at, len) = (part.spill, part.at, part.len);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            spill.read_exact_at(&mut buf, at).map(|()| buf)
        })
        .await?;
        let key = self.layout.key(part.name);
        let bytes = match read {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => return Ok(PartUpload::Unreadable(format!("rollup part {key}: {e}"))),
        };
        let sha = sha256(&bytes);
        let upload = Upload {
            listed: self.listed.contains(&key),
            key: key.clone(),
            bytes,
            sha256: sha,
            kind: "rollup",
            same_content: &|_| false,
        };
        Ok(
            match self.store.put_verified(upload, &self.status, stop).await? {
                Stored::Written | Stored::Duplicate => PartUpload::Verified(sha, len),
                Stored::Equivalent { .. } => PartUpload::Conflict(
                    format!("{key}: the store holds other bytes under a rollup part's key"),
                    sha,
                ),
                Stored::Conflict(message) => PartUpload::Conflict(message, sha),
            },
        )
    }
}

/// A spill file's SHA-256, read through its open handle.
fn hash_spill(spill: &SpillFile) -> std::io::Result<Sha256> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; HASH_READ_BYTES];
    let mut at = 0u64;
    let file_bytes = spill.file_bytes();
    while at < file_bytes {
        let len = (file_bytes - at).min(HASH_READ_BYTES as u64) as usize;
        spill.read_exact_at(&mut buf[..len], at)?;
        hasher.update(&buf[..len]);
        at += len as u64;
    }
    Ok(Sha256(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_in_order_each_at_most_the_part_size() {
        assert_eq!(parts_of(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(parts_of(8, 4), vec![(0, 4), (4, 4)]);
        assert_eq!(parts_of(3, 4), vec![(0, 3)]);
        assert!(parts_of(0, 4).is_empty());
        for (file, part) in [(1u64, 1u64), (ROLLUP_PART_BYTES * 3 + 7, ROLLUP_PART_BYTES)] {
            let parts = parts_of(file, part);
            assert_eq!(parts.iter().map(|(_, l)| l).sum::<u64>(), file);
            assert!(parts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
            assert!(parts.iter().all(|(_, l)| *l >= 1 && *l <= part));
        }
    }

    #[test]
    fn a_set_fits_a_snapshot_only_when_no_spill_covers_events_past_it() {
        assert!(set_fits([], 1));
        assert!(set_fits([5, 10], 10));
        assert!(!set_fits([5, 11], 10));
    }

    #[test]
    fn a_round_uploads_the_oldest_missing_parts_within_the_bound_and_never_none() {
        let missing = [(0, 4u64), (1, 4), (2, 4)];
        assert_eq!(due_parts(&missing, 8), vec![0, 1]);
        assert_eq!(due_parts(&missing, 7), vec![0]);
        assert_eq!(due_parts(&missing, 1), vec![0]);
        assert_eq!(due_parts(&missing, 100), vec![0, 1, 2]);
        assert!(due_parts::<u8>(&[], 8).is_empty());
    }
}
