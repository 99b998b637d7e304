//! `gridlog restore`: rebuild a data directory from central storage.
//!
//! 1. Find the site's newest lineage (the one whose manifest chain is longest; `--lineage`
//!    picks one) with one listing per lineage.
//! 2. Walk its manifest chain back to sequence 1, across the lineages it was restored from:
//!    every manifest must hash to what the next one names, and sequence numbers must run
//!    without a gap. A missing or changed manifest is a clear error.
//! 3. Pick the newest verified point ([`plan`], a pure decision): the newest snapshot the
//!    shipped segments after it continue without a gap — or that is newer than every
//!    shipped segment, when the log starts empty at it — and every segment after it; with
//!    `--full`, no snapshot and every segment from offset 1. A snapshot restore writes
//!    where its history starts to `HISTORY_START` (see `engine::HISTORY_START_FILE_NAME`).
//! 4. Download each object and check its SHA-256 against the manifest, decompress each
//!    archive and check the segment's length, CRC-32 and SHA-256, then write it as
//!    `wal/<first offset>.seg`, zero-padded to the size in its segment header; the snapshot
//!    goes to `snapshots/` and is checked as the engine would.
//! 5. Read the rebuilt log once more, frame by frame; write a new `LINEAGE` and
//!    `ship/parent.json` (see [`super::lineage`]).
//!
//! The target directory must be empty or absent: restore never mixes with existing data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use gridlog_common::domain::ShipObject;
use gridlog_common::{Offset, FIRST_OFFSET};

use super::layout::Layout;
use super::lineage::{self, ParentLink};
use super::manifest::{ChunkEntry, Manifest, ManifestLink, SegmentEntry, SnapshotEntry};
use super::store::{Store, StoreError};
use super::{hex, Sha256};
use crate::config::ShipConfig;

mod fetch;
mod plan;

use fetch::*;
pub(crate) use fetch::{newest_lineage, walk_chain};
pub use plan::{plan, Plan, PlanError};

/// Objects downloaded at once.
pub const RESTORE_CONCURRENCY: usize = 2;

/// What to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The store URL.
    pub from: String,
    /// The site.
    pub site: String,
    /// The data directory to create.
    pub data_dir: PathBuf,
    /// Every segment from offset 1, no snapshot.
    pub full: bool,
    /// Restore this lineage instead of the newest.
    pub lineage: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The lineage restored from.
    pub from_lineage: String,
    /// The new lineage of the rebuilt directory.
    pub new_lineage: String,
    /// Manifests walked.
    pub manifests: u64,
    /// Segments written.
    pub segments: u64,
    /// The snapshot used (its next offset).
    pub snapshot: Option<Offset>,
    /// The first offset of the rebuilt log.
    pub first_offset: Offset,
    /// One past the last offset of the rebuilt log.
    pub next_offset: Offset,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
}

/// Why a restore failed. Nothing is left half-written under the names the engine reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Bad arguments or store settings.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] object_store::Error),
    /// Nothing to restore.
    #[error("no shipped history for site {site:?} under {url}")]
    NothingShipped {
        /// The site.
        site: String,
        /// The store.
        url: String,
    },
    /// An object the chain names is not in the store.
    #[error("missing object {key}: {what}")]
    Missing {
        /// Its key.
        key: String,
        /// What it is.
        what: String,
    },
    /// An object is not what the chain says it is.
    #[error("tampered or corrupt object {key}: {reason}")]
    Tampered {
        /// Its key.
        key: String,
        /// What does not match.
        reason: String,
    },
    /// The chain or the history has a gap or contradicts itself.
    #[error("inconsistent history: {0}")]
    Inconsistent(String),
    /// A local file could not be written or read.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<StoreError> for RestoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Store(e) => RestoreError::Store(e),
            other => RestoreError::Usage(other.to_string()),
        }
    }
}

/// A manifest of the chain with its key and hash.
#[derive(Debug, Clone)]
pub(crate) struct ChainLink {
    pub(crate) key: String,
    pub(crate) sha256: Sha256,
    pub(crate) manifest: Manifest,
}

/// Rebuilds `options.data_dir` from the store.
pub async fn restore(
    options: &RestoreOptions,
    ship: &ShipConfig,
) -> Result<RestoreReport, RestoreError> {
    check_empty(&options.data_dir)?;
    let store = Store::open_url(&options.from, ship)?;
    let site_layout = Layout::new(store.prefix(), &options.site, "-");
    let (lineage, head_key) = newest_lineage(&store, &site_layout, options).await?;
    let chain = walk_chain(&store, &head_key, &options.site).await?;
    let head = chain.last().expect("a chain has a head");
    tracing::info!(lineage = %lineage, manifests = chain.len(), "manifest chain verified");

    // Every segment and snapshot the chain lists, by offset.
    let mut segments: BTreeMap<Offset, SegmentEntry> = BTreeMap::new();
    let mut snapshots: BTreeMap<Offset, SnapshotEntry> = BTreeMap::new();
    let mut chunks: Vec<ChunkEntry> = Vec::new();
    for link in &chain {
        for s in &link.manifest.segments {
            if let Some(old) = segments.get(&s.first_offset) {
                if old.segment_sha256 != s.segment_sha256 || old.next_offset != s.next_offset {
                    return Err(RestoreError::Inconsistent(format!(
                        "two different segments start at offset {} ({} and {})",
                        s.first_offset, old.key, s.key
                    )));
                }
                continue;
            }
            segments.insert(s.first_offset, s.clone());
        }
        for s in &link.manifest.snapshots {
            snapshots.insert(s.next_offset, s.clone());
        }
        chunks.extend(link.manifest.chunks.iter().cloned());
    }
    let plan = plan(&segments, &snapshots, &chunks, options.full).map_err(|e| match e {
        PlanError::Nothing => RestoreError::NothingShipped {
            site: options.site.clone(),
            url: options.from.clone(),
        },
        PlanError::Gap(reason) => RestoreError::Inconsistent(reason),
    })?;
    let Plan {
        snapshot,
        segments: chosen,
        chunks: chosen_chunks,
        history_start,
        end,
    } = plan;

    // Write into a temporary sibling directory, rename at the end: a failed restore leaves
    // no half-built data directory behind.
    let parent_dir = options
        .data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent_dir).map_err(io_err(parent_dir))?;
    let building = parent_dir.join(format!(
        ".{}.restoring",
        options
            .data_dir
            .file_name()
            .map_or("data".into(), |n| n.to_string_lossy())
    ));
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(io_err(&building))?;
    }
    let wal_dir = building.join(gridlog_firmware::wal::WAL_DIR_NAME);
    std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;

    let mut downloaded = 0u64;
    let mut log_id: Option<[u8; 16]> = None;
    let results: Vec<Result<(u64, [u8; 16]), RestoreError>> =
        futures_util::stream::iter(chosen.iter())
            .map(|entry| {
                let store = &store;
                let wal_dir = &wal_dir;
                async move { restore_segment(store, entry, wal_dir).await }
            })
            .buffered(RESTORE_CONCURRENCY)
            .collect()
            .await;
    for r in results {
        let (bytes, id) = r?;
        downloaded += bytes;
        if log_id.is_some_and(|l| l != id) {
            return Err(RestoreError::Inconsistent(
                "the shipped segments belong to different logs".into(),
            ));
        }
        log_id = Some(id);
    }
    if let Some(id) = log_id {
        if hex(&id) != head.manifest.log_id {
            return Err(RestoreError::Inconsistent(format!(
                "the segments' log id {} is not the manifests' {}",
                hex(&id),
                head.manifest.log_id
            )));
        }
    }
    if let Some(s) = &snapshot {
        downloaded += restore_snapshot(&store, s, &building, log_id).await?;
    }
    let manifest_log_id = unhex16(&head.manifest.log_id).ok_or_else(|| {
        RestoreError::Inconsistent(format!(
            "the newest manifest's log id {:?} is not 32 hex digits",
            head.manifest.log_id
        ))
    })?;
    if let Some(s) = &snapshot {
        let path = building
            .join(gridlog_firmware::snapshot::SNAPSHOT_DIR_NAME)
            .join(gridlog_firmware::snapshot::snapshot_file_name(
                s.next_offset,
            ));
        let header =
            gridlog_firmware::snapshot::verify_file(&path).map_err(|e| RestoreError::Tampered {
                key: s.key.clone(),
                reason: e.to_string(),
            })?;
        if header.log_id != manifest_log_id {
            return Err(RestoreError::Inconsistent(format!(
                "the snapshot's log id {} is not the manifests' {}",
                hex(&header.log_id),
                head.manifest.log_id
            )));
        }
    }
    if chosen.is_empty() {
        // No segment: the log starts, empty, where the snapshot ends (or at the first
        // chunk's first offset), and the chunks fill it.
        write_empty_segment(&wal_dir, manifest_log_id, history_start)?;
    }
    if !chosen_chunks.is_empty() {
        downloaded += restore_chunks(&store, &chosen_chunks, &building, manifest_log_id).await?;
    }
    lineage::sync_dir(&wal_dir).map_err(io_err(&wal_dir))?;

    // Read the rebuilt log once more, as the engine will, and learn what it already knows
    // to be shipped.
    let (next_offset, system) = replay_system_state(&building, snapshot.as_ref())?;
    if next_offset != end {
        return Err(RestoreError::Inconsistent(format!(
            "the rebuilt log ends before offset {next_offset}, the chain says {end}"
        )));
    }
    // The history below the rebuilt log is in central storage only: tell the engine where
    // this directory's history starts, so queries below it answer 410, never a read error.
    if history_start > FIRST_OFFSET {
        let marker = building.join(gridlog_firmware::engine::HISTORY_START_FILE_NAME);
        lineage::write_durably(&marker, format!("{history_start}\n").as_bytes())
            .map_err(io_err(&marker))?;
    }
    let new_lineage = lineage::write_new(&building).map_err(io_err(&building))?;
    let unconfirmed_segments = segments
        .values()
        .filter(|s| {
            system
                .shipped
                .get(&(ShipObject::Segment, s.first_offset))
                .is_none_or(|(_, h)| *h != s.segment_sha256.0)
        })
        .cloned()
        .collect();
    let newest_snapshot = snapshots.values().last().cloned();
    let link = ParentLink {
        lineage: lineage.clone(),
        manifest: ManifestLink {
            key: head.key.clone(),
            sha256: head.sha256,
        },
        sequence: head.manifest.sequence,
        unconfirmed_segments,
        unconfirmed_snapshot: newest_snapshot,
    };
    lineage::write_parent(&building, &link).map_err(io_err(&building))?;
    // The chunks the restored log was built from are in central storage: the new
    // lineage's shipper continues after them.
    let tail_state = super::tail::TailState {
        head: None,
        chunks: chosen_chunks.clone(),
        newest_verified_unix_ms: None,
    };
    super::tail::write_state(&building, &tail_state).map_err(io_err(&building))?;
    std::fs::rename(&building, &options.data_dir).map_err(io_err(&options.data_dir))?;
    lineage::sync_dir(parent_dir).map_err(io_err(parent_dir))?;
    Ok(RestoreReport {
        from_lineage: lineage,
        new_lineage,
        manifests: chain.len() as u64,
        segments: chosen.len() as u64,
        snapshot: snapshot.map(|s| s.next_offset),
        first_offset: history_start,
        next_offset: end,
        bytes_downloaded: downloaded,
    })
}
