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
//!    goes to `snapshots/` and is checked as the engine would, its rollup spills (manifest
//!    version 3) to `rollups/` ([`rollups`]).
//! 5. Read the rebuilt log once more, frame by frame; write a new `LINEAGE` and
//!    `ship/parent.json` (see [`super::lineage`]).
//!
//! The target directory must be empty or absent: restore never mixes with existing data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use gridlog_common::domain::ShipObject;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::state::SystemState;

use super::layout::Layout;
use super::lineage::{self, ParentLink};
use super::manifest::{ChunkEntry, Manifest, ManifestLink, SegmentEntry, SnapshotEntry};
use super::store::{GetError, Store, StoreError};
use super::{hex, Sha256};
use crate::config::ShipConfig;

mod fetch;
mod plan;
mod rollups;

use fetch::*;
pub(crate) use fetch::{fetch_segment, newest_lineage, walk_chain};
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
    /// Rollup spill files restored with the snapshot.
    pub rollup_spills: usize,
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

impl From<GetError> for RestoreError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Store(e) => RestoreError::Store(e),
            GetError::TooLarge(e) => RestoreError::Tampered {
                key: e.key.clone(),
                reason: e.to_string(),
            },
        }
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
    let (lineage, head_key) =
        newest_lineage(&store, &site_layout, options.lineage.as_deref()).await?;
    let chain = walk_chain(&store, &head_key, &options.site).await?;
    let head = chain.last().expect("a chain has a head");
    tracing::info!(lineage = %lineage, manifests = chain.len(), "manifest chain verified");
    let listed = Listed::of(&chain)?;
    let plan = plan(
        &listed.segments,
        &listed.snapshots,
        &listed.chunks,
        options.full,
    )
    .map_err(|e| match e {
        PlanError::Nothing => RestoreError::NothingShipped {
            site: options.site.clone(),
            url: options.from.clone(),
        },
        PlanError::Gap(reason) => RestoreError::Inconsistent(reason),
    })?;
    let dirs = Building::prepare(&options.data_dir)?;
    let built = build(&store, &plan, &dirs, head, &lineage, &listed).await;
    let (downloaded, new_lineage) = match built {
        Ok(built) => built,
        Err(e) => {
            // Nothing is left behind: the half-built directory (possibly gigabytes) goes.
            if let Err(error) = std::fs::remove_dir_all(&dirs.building) {
                tracing::warn!(%error, path = %dirs.building.display(), "cannot remove the half-built restore");
            }
            return Err(e);
        }
    };
    std::fs::rename(&dirs.building, &options.data_dir).map_err(io_err(&options.data_dir))?;
    lineage::sync_dir(&dirs.parent).map_err(io_err(&dirs.parent))?;
    Ok(RestoreReport {
        from_lineage: lineage,
        new_lineage,
        manifests: chain.len() as u64,
        segments: plan.segments.len() as u64,
        snapshot: plan.snapshot.as_ref().map(|s| s.next_offset),
        rollup_spills: plan.snapshot.as_ref().map_or(0, |s| s.rollups.len()),
        first_offset: plan.history_start,
        next_offset: plan.end,
        bytes_downloaded: downloaded,
    })
}

/// Fills the building directory: downloads and checks what the plan chose, reads the
/// rebuilt log once more as the engine will (learning what it already knows to be
/// shipped), and writes the new lineage. The bytes downloaded and the new lineage.
async fn build(
    store: &Store,
    plan: &Plan,
    dirs: &Building,
    head: &ChainLink,
    lineage: &str,
    listed: &Listed,
) -> Result<(u64, String), RestoreError> {
    let downloaded = download(store, plan, dirs, head).await?;
    let (next_offset, system) = replay_system_state(&dirs.building, plan.snapshot.as_ref())?;
    if next_offset != plan.end {
        return Err(RestoreError::Inconsistent(format!(
            "the rebuilt log ends before offset {next_offset}, the chain says {}",
            plan.end
        )));
    }
    let new_lineage = write_lineage(&dirs.building, lineage, head, listed, plan, &system)?;
    Ok((downloaded, new_lineage))
}

/// Every segment, snapshot and chunk the chain lists, by offset.
struct Listed {
    segments: BTreeMap<Offset, SegmentEntry>,
    snapshots: BTreeMap<Offset, SnapshotEntry>,
    chunks: Vec<ChunkEntry>,
}

impl Listed {
    /// Two different segments at one offset are an inconsistent chain.
    fn of(chain: &[ChainLink]) -> Result<Listed, RestoreError> {
        let mut listed = Listed {
            segments: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            chunks: Vec::new(),
        };
        for link in chain {
            for s in &link.manifest.segments {
                if let Some(old) = listed.segments.get(&s.first_offset) {
                    if old.segment_sha256 != s.segment_sha256 || old.next_offset != s.next_offset {
                        return Err(RestoreError::Inconsistent(format!(
                            "two different segments start at offset {} ({} and {})",
                            s.first_offset, old.key, s.key
                        )));
                    }
                    continue;
                }
                listed.segments.insert(s.first_offset, s.clone());
            }
            for s in &link.manifest.snapshots {
                listed.snapshots.insert(s.next_offset, s.clone());
            }
            listed.chunks.extend(link.manifest.chunks.iter().cloned());
        }
        Ok(listed)
    }
}

/// The temporary sibling directory a restore builds in, renamed at the end: a failed
/// restore leaves no half-built data directory behind.
struct Building {
    parent: PathBuf,
    building: PathBuf,
    wal_dir: PathBuf,
}

impl Building {
    fn prepare(data_dir: &Path) -> Result<Building, RestoreError> {
        let parent = data_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let name = data_dir
            .file_name()
            .map_or("data".into(), |n| n.to_string_lossy());
        let building = parent.join(format!(".{name}.restoring"));
        if building.exists() {
            std::fs::remove_dir_all(&building).map_err(io_err(&building))?;
        }
        let wal_dir = building.join(gridlog_firmware::wal::WAL_DIR_NAME);
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        Ok(Building {
            parent,
            building,
            wal_dir,
        })
    }
}

/// Downloads and verifies what the plan chose (segments, the snapshot, chunks) into the
/// building directory, each checked against the manifests' log id; the bytes downloaded.
async fn download(
    store: &Store,
    plan: &Plan,
    dirs: &Building,
    head: &ChainLink,
) -> Result<u64, RestoreError> {
    let mut downloaded = 0u64;
    let mut log_id: Option<[u8; 16]> = None;
    let results: Vec<Result<(u64, [u8; 16]), RestoreError>> =
        futures_util::stream::iter(plan.segments.iter())
            .map(|entry| restore_segment(store, entry, &dirs.wal_dir))
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
    let manifest_log_id = unhex16(&head.manifest.log_id).ok_or_else(|| {
        RestoreError::Inconsistent(format!(
            "the newest manifest's log id {:?} is not 32 hex digits",
            head.manifest.log_id
        ))
    })?;
    if let Some(id) = log_id.filter(|id| *id != manifest_log_id) {
        return Err(RestoreError::Inconsistent(format!(
            "the segments' log id {} is not the manifests' {}",
            hex(&id),
            head.manifest.log_id
        )));
    }
    if let Some(s) = &plan.snapshot {
        downloaded += restore_snapshot(store, s, &dirs.building, log_id).await?;
        check_snapshot_log(&dirs.building, s, manifest_log_id)?;
        downloaded +=
            rollups::restore_rollups(store, s, &dirs.building, manifest_log_id, plan.end).await?;
    }
    if plan.segments.is_empty() {
        // No segment: the log starts, empty, where the snapshot ends (or at the first
        // chunk's first offset), and the chunks fill it.
        write_empty_segment(&dirs.wal_dir, manifest_log_id, plan.history_start)?;
    }
    if !plan.chunks.is_empty() {
        downloaded += restore_chunks(store, &plan.chunks, &dirs.building, manifest_log_id).await?;
    }
    lineage::sync_dir(&dirs.wal_dir).map_err(io_err(&dirs.wal_dir))?;
    Ok(downloaded)
}

/// The restored snapshot verifies as the engine would, and is of the manifests' log.
fn check_snapshot_log(
    building: &Path,
    s: &SnapshotEntry,
    manifest_log_id: [u8; 16],
) -> Result<(), RestoreError> {
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
            hex(&manifest_log_id)
        )));
    }
    Ok(())
}

/// The files that make the rebuilt directory a new lineage: `HISTORY_START` (history below
/// it is in central storage only, so queries below it answer 410, never a read error), a
/// new `LINEAGE`, the parent link naming what the store holds that the restored log does
/// not know was shipped, and the tail state (the new lineage's shipper continues after the
/// chunks the log was built from). The new lineage's id.
fn write_lineage(
    building: &Path,
    lineage: &str,
    head: &ChainLink,
    listed: &Listed,
    plan: &Plan,
    system: &SystemState,
) -> Result<String, RestoreError> {
    if plan.history_start > FIRST_OFFSET {
        let marker = building.join(gridlog_firmware::engine::HISTORY_START_FILE_NAME);
        lineage::write_durably(&marker, format!("{}\n", plan.history_start).as_bytes())
            .map_err(io_err(&marker))?;
    }
    let new_lineage = lineage::write_new(building).map_err(io_err(building))?;
    let unconfirmed_segments = listed
        .segments
        .values()
        .filter(|s| {
            system
                .shipped
                .get(&(ShipObject::Segment, s.first_offset))
                .is_none_or(|(_, h)| *h != s.segment_sha256.0)
        })
        .cloned()
        .collect();
    let link = ParentLink {
        lineage: lineage.to_string(),
        manifest: ManifestLink {
            key: head.key.clone(),
            sha256: head.sha256,
        },
        sequence: head.manifest.sequence,
        unconfirmed_segments,
        unconfirmed_snapshot: listed.snapshots.values().last().cloned(),
    };
    lineage::write_parent(building, &link).map_err(io_err(building))?;
    let tail_state = super::tail::TailState {
        head: None,
        chunks: plan.chunks.clone(),
        newest_verified_unix_ms: None,
    };
    super::tail::write_state(building, &tail_state).map_err(io_err(building))?;
    Ok(new_lineage)
}
