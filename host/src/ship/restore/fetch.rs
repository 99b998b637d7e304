//! A restore's I/O: the site's newest lineage, its manifest chain walked and checked, and each
//! object downloaded, verified and written into the directory being built.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use gridlog_common::domain::{decode_event, STORAGE_ENTITY};
use gridlog_common::segment::SegmentHeader;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::state::{EntityState, SystemState};
use object_store::path::Path as Key;

use crate::ship::layout::{Layout, ObjectName};
use crate::ship::lineage::{self};
use crate::ship::manifest::{
    ChunkEntry, Manifest, SegmentEntry, SnapshotEntry, MANIFEST_BYTES_MAX,
};
use crate::ship::store::Store;
use crate::ship::{sha256, Sha256};
use gridlog_firmware::archive::verify_bytes;

use super::*;

pub(super) fn unhex16(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Downloads and checks the chunks one at a time, appending each one's records after the
/// log's end through the log's own append (never by writing segment bytes) before the next
/// is downloaded, so memory holds one chunk; returns bytes downloaded. (A failure leaves a
/// partly rebuilt log in the building directory, which restore then removes.)
pub(super) async fn restore_chunks(
    store: &Store,
    chunks: &[ChunkEntry],
    data_dir: &Path,
    log_id: [u8; 16],
) -> Result<u64, RestoreError> {
    let open =
        || gridlog_firmware::wal::Wal::open(data_dir, gridlog_firmware::wal::WalOptions::default());
    let wal = tokio::task::block_in_place(open).map_err(|e| inconsistent(e.to_string()))?;
    let mut downloaded = 0;
    for entry in chunks {
        let (object_bytes, records) = fetch_chunk(store, entry, log_id).await?;
        downloaded += object_bytes;
        tokio::task::block_in_place(|| append_records(&wal, records))?;
    }
    tokio::task::block_in_place(|| wal.close()).map_err(|e| inconsistent(e.to_string()))?;
    Ok(downloaded)
}

fn inconsistent(e: String) -> RestoreError {
    RestoreError::Inconsistent(format!("the rebuilt log: {e}"))
}

/// Downloads one chunk and checks it against its manifest entry and the log's id: its
/// object's size and bytes, and its header. Its size downloaded and its records.
async fn fetch_chunk(
    store: &Store,
    entry: &ChunkEntry,
    log_id: [u8; 16],
) -> Result<(u64, Vec<(Offset, Vec<u8>)>), RestoreError> {
    let what = || {
        format!(
            "the chunk of offsets {}..{}",
            entry.first_offset, entry.next_offset
        )
    };
    let expected = (entry.object_bytes, entry.object_sha256);
    let bytes = download_checked(store, &entry.key, expected, what).await?;
    let tampered = |reason: String| RestoreError::Tampered {
        key: entry.key.clone(),
        reason,
    };
    let (header, records) =
        crate::ship::chunk::decode(&bytes).map_err(|e| tampered(e.to_string()))?;
    if header.log_id != log_id
        || (header.first_offset, header.next_offset) != (entry.first_offset, entry.next_offset)
    {
        return Err(tampered(
            "the chunk holds another log or range than the manifest lists".into(),
        ));
    }
    Ok((bytes.len() as u64, records))
}

/// Appends one chunk's records that continue the log (records it already holds, where
/// chunks overlap, are skipped), in frames of at most half the largest batch frame.
fn append_records(
    wal: &gridlog_firmware::wal::Wal,
    records: Vec<(Offset, Vec<u8>)>,
) -> Result<(), RestoreError> {
    let frame_max = wal.batch_frame_bytes_max() / 2;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    for (offset, record) in records {
        let expected = wal.next_offset() + batch.len() as u64;
        if offset < expected {
            continue;
        }
        if offset != expected {
            return Err(inconsistent(format!(
                "a chunk continues at offset {offset}, the log at {expected}"
            )));
        }
        if !batch.is_empty() && batch_bytes + record.len() + 64 > frame_max {
            wal.append(&batch)
                .map_err(|e| inconsistent(e.to_string()))?;
            batch.clear();
            batch_bytes = 0;
        }
        batch_bytes += record.len() + 64;
        batch.push(record);
    }
    if !batch.is_empty() {
        wal.append(&batch)
            .map_err(|e| inconsistent(e.to_string()))?;
    }
    Ok(())
}

/// An empty segment starting at `first_offset`: the log of a directory restored from a
/// snapshot newer than every shipped segment.
pub(super) fn write_empty_segment(
    wal_dir: &Path,
    log_id: [u8; 16],
    first_offset: Offset,
) -> Result<(), RestoreError> {
    let header = SegmentHeader {
        version: gridlog_common::segment::FormatVersion::CURRENT,
        log_id,
        first_offset,
        segment_bytes: gridlog_firmware::wal::SEGMENT_BYTES_DEFAULT,
        created_unix_ms: crate::ship::status::unix_ms_now(),
        round_bytes: gridlog_firmware::wal::ROUND_BYTES_DEFAULT as u32,
        recycled: false,
    };
    let name = format!("{first_offset:020}.seg");
    let path = wal_dir.join(&name);
    let tmp = wal_dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&header.encode())?;
        file.set_len(header.segment_bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(io_err(&path))
}

pub(super) fn check_empty(dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RestoreError::Usage(format!(
                    "{} is not empty: restore only into an empty or new directory",
                    dir.display()
                )));
            }
            std::fs::remove_dir(dir).map_err(io_err(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// The lineage to read (`lineage`, or the site's newest) and the key of its newest manifest.
pub(crate) async fn newest_lineage(
    store: &Store,
    site: &Layout,
    lineage: Option<&str>,
) -> Result<(String, String), RestoreError> {
    let lineages: Vec<String> = match lineage {
        Some(l) => vec![l.to_string()],
        None => store
            .list_folders(&site.site_root())
            .await?
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect(),
    };
    let mut best: Option<(u64, String, String)> = None;
    let mut tie = None;
    for lineage in lineages {
        let layout = site.with_lineage(&lineage);
        let prefix = Key::from_iter(
            layout
                .root()
                .parts()
                .chain([crate::ship::layout::MANIFESTS_DIR.into()]),
        );
        let newest = store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| match layout.parse(&m.location) {
                Some(ObjectName::Manifest(seq)) => Some((seq, m.location.to_string())),
                _ => None,
            })
            .max();
        let Some((seq, key)) = newest else { continue };
        match &best {
            Some((b, ..)) if *b > seq => {}
            Some((b, ..)) if *b == seq => tie = Some(seq),
            _ => {
                tie = None;
                best = Some((seq, lineage, key));
            }
        }
    }
    if let Some(seq) = tie {
        return Err(RestoreError::Inconsistent(format!(
            "two lineages of site {:?} end at manifest {seq}: choose one with --lineage",
            site.site()
        )));
    }
    best.map(|(_, l, k)| (l, k))
        .ok_or_else(|| RestoreError::NothingShipped {
            site: site.site().to_string(),
            url: store.url().to_string(),
        })
}

/// Reads the chain from `head_key` back to sequence 1; returns it oldest first.
pub(crate) async fn walk_chain(
    store: &Store,
    head_key: &str,
    site: &str,
) -> Result<Vec<ChainLink>, RestoreError> {
    let mut chain = Vec::new();
    let mut key = head_key.to_string();
    let mut expected_sha: Option<Sha256> = None;
    let mut expected_seq: Option<u64> = None;
    loop {
        let what = || "a manifest of the chain".to_string();
        let bytes = download(store, &key, MANIFEST_BYTES_MAX as u64, what).await?;
        let sha = sha256(&bytes);
        if let Some(expected) = &expected_sha {
            if *expected != sha {
                return Err(RestoreError::Tampered {
                    key,
                    reason: format!("manifest hashes to {sha}, the next manifest names {expected}"),
                });
            }
        }
        let manifest = Manifest::decode(&bytes).map_err(|e| RestoreError::Tampered {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        if expected_seq.is_some_and(|s| s != manifest.sequence) || manifest.site_id != site {
            return Err(RestoreError::Inconsistent(format!(
                "manifest {key} is sequence {} of site {:?}; expected {expected_seq:?} of {site:?}",
                manifest.sequence, manifest.site_id
            )));
        }
        let previous = manifest.previous.clone();
        expected_seq = Some(manifest.sequence.saturating_sub(1));
        chain.push(ChainLink {
            key,
            sha256: sha,
            manifest,
        });
        match previous {
            Some(p) => {
                key = p.key;
                expected_sha = Some(p.sha256);
            }
            None => break,
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Downloads, checks and writes one segment; returns the bytes downloaded and its log id.
pub(super) async fn restore_segment(
    store: &Store,
    entry: &SegmentEntry,
    wal_dir: &Path,
) -> Result<(u64, [u8; 16]), RestoreError> {
    let fetched = fetch_segment(store, entry).await?;
    // The header comes from the store: its size is checked before the file is made that
    // large (a forged one could ask for terabytes), and it must hold the bytes it came with.
    let segment_bytes = fetched.header.segment_bytes;
    let sizes = gridlog_firmware::wal::SEGMENT_BYTES_MIN..=gridlog_firmware::wal::SEGMENT_BYTES_MAX;
    if !sizes.contains(&segment_bytes) || segment_bytes < fetched.original.len() as u64 {
        return Err(RestoreError::Inconsistent(format!(
            "segment at offset {}: its header says {segment_bytes} bytes, outside {}..={} or \
             below its {} bytes of frames",
            entry.first_offset,
            sizes.start(),
            sizes.end(),
            fetched.original.len()
        )));
    }
    let name = format!("{:020}.seg", entry.first_offset);
    let path = wal_dir.join(&name);
    let tmp = wal_dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&fetched.original)?;
        file.set_len(segment_bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    tokio::task::block_in_place(write).map_err(io_err(&path))?;
    Ok((fetched.object_bytes, fetched.header.log_id))
}

/// A shipped segment, downloaded and checked against its manifest entry.
#[derive(Debug)]
pub(crate) struct FetchedSegment {
    /// The segment's bytes to the end of its footer.
    pub(crate) original: Vec<u8>,
    /// Its segment header.
    pub(crate) header: SegmentHeader,
    /// Bytes downloaded.
    pub(crate) object_bytes: u64,
}

/// Downloads one segment and checks it: the object's size and SHA-256 against the manifest,
/// the archive's checksums, and that it holds the segment and offsets the manifest lists.
pub(crate) async fn fetch_segment(
    store: &Store,
    entry: &SegmentEntry,
) -> Result<FetchedSegment, RestoreError> {
    let what = || {
        format!(
            "the segment of offsets {}..{}",
            entry.first_offset, entry.next_offset
        )
    };
    let expected = (entry.object_bytes, entry.object_sha256);
    let bytes = download_checked(store, &entry.key, expected, what).await?;
    let tampered = |reason: String| RestoreError::Tampered {
        key: entry.key.clone(),
        reason,
    };
    let (header, original) = verify_bytes(&bytes).map_err(|e| tampered(e.to_string()))?;
    if header.sha256 != entry.segment_sha256.0
        || (header.first_offset, header.next_offset) != (entry.first_offset, entry.next_offset)
    {
        return Err(tampered(
            "the archive holds another segment than the manifest lists".into(),
        ));
    }
    let segment =
        SegmentHeader::decode(&original).map_err(|e| tampered(format!("segment header: {e}")))?;
    if segment.first_offset != entry.first_offset || (original.len() as u64) > segment.segment_bytes
    {
        return Err(tampered(
            "the segment header disagrees with the archive".into(),
        ));
    }
    Ok(FetchedSegment {
        original,
        header: segment,
        object_bytes: bytes.len() as u64,
    })
}

/// Downloads, checks and writes the snapshot; returns the bytes downloaded.
pub(super) async fn restore_snapshot(
    store: &Store,
    entry: &SnapshotEntry,
    data_dir: &Path,
    log_id: Option<[u8; 16]>,
) -> Result<u64, RestoreError> {
    let what = || format!("the snapshot at offset {}", entry.next_offset);
    let bytes = download(store, &entry.key, entry.object_bytes, what).await?;
    let sha = sha256(&bytes);
    if sha != entry.object_sha256 {
        return Err(RestoreError::Tampered {
            key: entry.key.clone(),
            reason: format!("hashes to {sha}; the manifest says {}", entry.object_sha256),
        });
    }
    let dir = data_dir.join(gridlog_firmware::snapshot::SNAPSHOT_DIR_NAME);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(gridlog_firmware::snapshot::snapshot_file_name(
        entry.next_offset,
    ));
    lineage::write_durably(&path, &bytes).map_err(io_err(&path))?;
    gridlog_firmware::snapshot::load(&path, log_id).map_err(|e| RestoreError::Tampered {
        key: entry.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(bytes.len() as u64)
}

/// Reads the rebuilt log (checking every frame) from the snapshot on; returns where it ends
/// and the `gateway:storage` state it leads to.
pub(super) fn replay_system_state(
    data_dir: &Path,
    snapshot: Option<&SnapshotEntry>,
) -> Result<(Offset, SystemState), RestoreError> {
    let (from, mut state) = match snapshot {
        Some(s) => {
            let path = data_dir
                .join(gridlog_firmware::snapshot::SNAPSHOT_DIR_NAME)
                .join(gridlog_firmware::snapshot::snapshot_file_name(
                    s.next_offset,
                ));
            let (_, image) = gridlog_firmware::snapshot::load(&path, None)
                .map_err(|e| RestoreError::Inconsistent(format!("restored snapshot: {e}")))?;
            let state = image.entity(STORAGE_ENTITY).map(|e| e.state.clone());
            (s.next_offset, state)
        }
        None => (FIRST_OFFSET, None),
    };
    let mut bad = None;
    let summary = gridlog_firmware::wal::dump::read_records(data_dir, from, |offset, bytes| {
        match decode_event(bytes) {
            Ok(event) if event.entity.as_str() == STORAGE_ENTITY => {
                EntityState::evolve_in_place(&mut state, &event);
            }
            Ok(_) => {}
            Err(e) => {
                bad = Some(format!("record at offset {offset} is not an event: {e}"));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| RestoreError::Inconsistent(format!("the rebuilt log: {e}")))?;
    if let Some(reason) = bad {
        return Err(RestoreError::Inconsistent(reason));
    }
    if summary.torn_tail.is_some() {
        return Err(RestoreError::Inconsistent(
            "the rebuilt log ends in a torn frame".into(),
        ));
    }
    let system = match state {
        Some(EntityState::System(s)) => *s,
        _ => SystemState::default(),
    };
    Ok((summary.next_offset.unwrap_or(from), system))
}
/// Downloads the object at `key`, at most `max_bytes` (its manifest's size, or a manifest's
/// bound); a missing one is [`RestoreError::Missing`] naming `what` it holds.
/// Downloads the object `key`, which its manifest says is `(bytes, sha256)`: any other
/// size or content is tampering.
pub(super) async fn download_checked(
    store: &Store,
    key: &str,
    (object_bytes, object_sha256): (u64, Sha256),
    what: impl FnOnce() -> String,
) -> Result<bytes::Bytes, RestoreError> {
    let bytes = download(store, key, object_bytes, what).await?;
    let sha = sha256(&bytes);
    if sha != object_sha256 || bytes.len() as u64 != object_bytes {
        return Err(RestoreError::Tampered {
            key: key.to_string(),
            reason: format!(
                "{} bytes with sha256 {sha}; the manifest says {object_bytes} bytes with sha256 {object_sha256}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

async fn download(
    store: &Store,
    key: &str,
    max_bytes: u64,
    what: impl FnOnce() -> String,
) -> Result<bytes::Bytes, RestoreError> {
    store
        .get(&Key::from(key), max_bytes)
        .await?
        .ok_or_else(|| RestoreError::Missing {
            key: key.to_string(),
            what: what(),
        })
}
