//! Tail rounds: the durable records after what the store holds, read through the log's
//! record cursor, shipped as chunk objects with a manifest naming them, within
//! `ship.max_lag_s`; and the chunks a shipped segment supersedes, deleted.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::Engine;
use object_store::path::Path;
use tokio::sync::watch;

use super::{manifest_link, plan, HaltReason, Head, ShipError, Shipper, Summary};
use crate::ship::chunk;
use crate::ship::layout::ObjectName;
use crate::ship::manifest::{ChunkEntry, ManifestLink};
use crate::ship::sha256;
use crate::ship::status::unix_ms_now;
use crate::ship::store::{StoreError, Stored, Upload};
use crate::ship::tail;

impl Shipper {
    /// Chunks a manifest of this chain verified: remembered (durably) until superseded.
    pub(super) fn note_chunks(
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
    pub(super) async fn drop_superseded(&mut self) -> Result<(), ShipError> {
        let gone = tail::superseded(&self.tail.chunks, &self.shipped_segments());
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
    pub(super) async fn ship_tail(
        &mut self,
        stop: &watch::Receiver<bool>,
        force: bool,
        summary: &mut Summary,
    ) -> Result<bool, ShipError> {
        let segments_end = self.segments_end();
        self.drop_superseded().await?;
        let Some((from, records)) = self.due_tail(segments_end, force).await? else {
            return Ok(false);
        };
        self.status.set_phase("shipping");
        let (entries, round_bytes) = self.upload_chunks(from, &records, stop).await?;
        let manifest = plan::build_manifest(self.chain(), unix_ms_now(), &[], entries.clone());
        let seq = manifest.sequence;
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
        self.status.round_shipped(
            entries.len() as u64 + 1,
            round_bytes + manifest_bytes.len() as u64,
        );
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

    /// The records a tail round would ship now, from where the store's copy ends, if the
    /// round is due (or `force`): none when the store holds everything or the oldest
    /// unshipped record has not waited long enough (and there are not many of them yet).
    async fn due_tail(
        &mut self,
        segments_end: Offset,
        force: bool,
    ) -> Result<Option<(Offset, Vec<Vec<u8>>)>, ShipError> {
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
            return Ok(None);
        };
        if !force
            && !tail::tail_due(since.elapsed(), self.max_lag, 0)
            && committed - from < tail::TAIL_EARLY_RECORDS
        {
            return Ok(None);
        }
        let engine = self.engine.clone();
        let records =
            tokio::task::spawn_blocking(move || read_tail(&engine, from, committed)).await??;
        let unshipped: usize = records.iter().map(Vec::len).sum();
        let due = force || tail::tail_due(since.elapsed(), self.max_lag, unshipped);
        Ok((due && !records.is_empty()).then_some((from, records)))
    }

    /// Cuts `records` (from offset `from`) into chunks and uploads each, create-only with
    /// read-back; their manifest entries and bytes. A different object under a chunk's key
    /// halts shipping.
    async fn upload_chunks(
        &self,
        from: Offset,
        records: &[Vec<u8>],
        stop: &watch::Receiver<bool>,
    ) -> Result<(Vec<ChunkEntry>, u64), ShipError> {
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        let mut entries = Vec::new();
        let mut at = 0usize;
        let mut round_bytes = 0u64;
        for count in tail::cut_chunks(&sizes) {
            let first = from + at as u64;
            let slice = &records[at..at + count];
            at += count;
            let entry = self.upload_chunk(first, slice, stop).await?;
            round_bytes += entry.object_bytes;
            entries.push(entry);
        }
        Ok((entries, round_bytes))
    }

    async fn upload_chunk(
        &self,
        first: Offset,
        slice: &[Vec<u8>],
        stop: &watch::Receiver<bool>,
    ) -> Result<ChunkEntry, ShipError> {
        let next = first + slice.len() as u64;
        let bytes = Bytes::from(chunk::encode(self.log_id, first, slice)?);
        let key = self.layout.key(ObjectName::Chunk(first, next));
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
        Ok(ChunkEntry {
            key: key.to_string(),
            first_offset: first,
            next_offset: next,
            object_bytes,
            object_sha256: object_sha,
        })
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
        Err(e) => return Err(e.into()),
    };
    let limit = chunk::CHUNK_TARGET_BYTES * tail::TAIL_CHUNKS_PER_ROUND_MAX;
    while let Some(record) = cursor.next() {
        let record = match record {
            Ok(r) => r,
            Err(gridlog_firmware::wal::ReadError::Truncated { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        if record.offset >= until {
            break;
        }
        if record.offset != from + out.len() as u64 {
            return Err(ShipError::CursorOrder {
                expected: from + out.len() as u64,
                got: record.offset,
            });
        }
        bytes += record.bytes.len();
        out.push(record.bytes.to_vec());
        if bytes >= limit {
            break;
        }
    }
    Ok(out)
}
