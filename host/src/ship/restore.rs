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
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use gridlog_common::domain::{decode_event, ShipObject, STORAGE_ENTITY};
use gridlog_common::segment::SegmentHeader;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::state::{EntityState, SystemState};
use object_store::path::Path as Key;

use super::layout::{Layout, ObjectName};
use super::lineage::{self, ParentLink};
use super::manifest::{ChunkEntry, Manifest, ManifestLink, SegmentEntry, SnapshotEntry};
use super::store::{Store, StoreError};
use super::{hex, sha256, Sha256};
use crate::config::ShipConfig;
use gridlog_firmware::archive::verify_bytes;

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
pub(super) struct ChainLink {
    pub(super) key: String,
    pub(super) sha256: Sha256,
    pub(super) manifest: Manifest,
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

/// What a restore downloads: a pure decision over what the manifest chain lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot to start from (none: replay from offset 1).
    pub snapshot: Option<SnapshotEntry>,
    /// The segments to write, in offset order, without gaps.
    pub segments: Vec<SegmentEntry>,
    /// The chunks that continue them (or the snapshot), in offset order, each holding the
    /// next offset the one before ends at.
    pub chunks: Vec<ChunkEntry>,
    /// The first offset the rebuilt log holds.
    pub history_start: Offset,
    /// One past the last offset the rebuilt directory knows (its next offset).
    pub end: Offset,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The chain lists no segment and no snapshot.
    #[error("nothing shipped")]
    Nothing,
    /// The shipped history has a gap that no snapshot bridges.
    #[error("{0}")]
    Gap(String),
}

/// The newest verified point: the newest snapshot that the shipped segments after it
/// continue without a gap (or that is newer than all of them: the log then starts empty at
/// the snapshot), and every segment after it. With `full`, every segment from offset 1 and
/// no snapshot.
pub fn plan(
    segments: &BTreeMap<Offset, SegmentEntry>,
    snapshots: &BTreeMap<Offset, SnapshotEntry>,
    chunks: &[ChunkEntry],
    full: bool,
) -> Result<Plan, PlanError> {
    let mut plan = plan_segments(segments, snapshots, chunks, full)?;
    // Extend with chunks: from the end, the chunk holding it that reaches furthest.
    while let Some(c) = chunks
        .iter()
        .filter(|c| c.first_offset <= plan.end && c.next_offset > plan.end)
        .max_by_key(|c| c.next_offset)
    {
        plan.end = c.next_offset;
        plan.chunks.push(c.clone());
    }
    if plan.snapshot.is_none() && plan.segments.is_empty() && plan.chunks.is_empty() {
        return Err(PlanError::Nothing);
    }
    Ok(plan)
}

/// The snapshot and segments of [`plan`], before chunks extend them.
fn plan_segments(
    segments: &BTreeMap<Offset, SegmentEntry>,
    snapshots: &BTreeMap<Offset, SnapshotEntry>,
    chunks: &[ChunkEntry],
    full: bool,
) -> Result<Plan, PlanError> {
    // The segments from `from` on, if they run without a gap from a segment holding it.
    let run_from = |from: Offset| -> Result<Vec<SegmentEntry>, String> {
        let chosen: Vec<SegmentEntry> = segments
            .values()
            .filter(|s| s.next_offset > from)
            .cloned()
            .collect();
        let mut expected = chosen.first().map_or(from, |s| s.first_offset.min(from));
        if chosen.first().is_some_and(|s| s.first_offset > from) {
            return Err(format!(
                "offsets {from}..{} are in no shipped segment",
                chosen[0].first_offset
            ));
        }
        for s in &chosen {
            if s.first_offset != expected {
                return Err(format!(
                    "offsets {expected}..{} are in no shipped segment",
                    s.first_offset
                ));
            }
            expected = s.next_offset;
        }
        Ok(chosen)
    };
    if segments.is_empty() && chunks.is_empty() && (full || snapshots.is_empty()) {
        return Err(PlanError::Nothing);
    }
    let mut first_gap = None;
    if !full {
        for s in snapshots.values().rev() {
            match run_from(s.next_offset) {
                Ok(chosen) => {
                    let history_start = chosen.first().map_or(s.next_offset, |c| c.first_offset);
                    let end = chosen.last().map_or(s.next_offset, |c| c.next_offset);
                    return Ok(Plan {
                        snapshot: Some(s.clone()),
                        segments: chosen,
                        chunks: vec![],
                        history_start,
                        end,
                    });
                }
                Err(gap) => {
                    first_gap.get_or_insert(gap);
                }
            }
        }
    }
    match run_from(FIRST_OFFSET) {
        Ok(chosen)
            if !chosen.is_empty() || chunks.iter().any(|c| c.first_offset == FIRST_OFFSET) =>
        {
            Ok(Plan {
                snapshot: None,
                end: chosen.last().map_or(FIRST_OFFSET, |c| c.next_offset),
                segments: chosen,
                chunks: vec![],
                history_start: FIRST_OFFSET,
            })
        }
        Ok(_) => Err(PlanError::Nothing),
        Err(gap) => Err(PlanError::Gap(match first_gap {
            Some(after_snapshot) => format!(
                "{after_snapshot} after the newest snapshot, and {gap} for a restore from offset 1"
            ),
            None if full => format!("{gap}: restore without --full starts from a snapshot"),
            None => format!("{gap}, and no shipped snapshot covers what is before"),
        })),
    }
}

fn unhex16(text: &str) -> Option<[u8; 16]> {
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

/// Downloads and checks the chunks, then appends their records after the log's end
/// through the log's own append (never by writing segment bytes); returns bytes downloaded.
async fn restore_chunks(
    store: &Store,
    chunks: &[ChunkEntry],
    data_dir: &Path,
    log_id: [u8; 16],
) -> Result<u64, RestoreError> {
    let mut objects = Vec::with_capacity(chunks.len());
    let mut downloaded = 0;
    for entry in chunks {
        let bytes = store
            .get(&Key::from(entry.key.as_str()))
            .await?
            .ok_or_else(|| RestoreError::Missing {
                key: entry.key.clone(),
                what: format!(
                    "the chunk of offsets {}..{}",
                    entry.first_offset, entry.next_offset
                ),
            })?;
        let tampered = |reason: String| RestoreError::Tampered {
            key: entry.key.clone(),
            reason,
        };
        let sha = sha256(&bytes);
        if sha != entry.object_sha256 || bytes.len() as u64 != entry.object_bytes {
            return Err(tampered(format!(
                "{} bytes with sha256 {sha}; the manifest says {} bytes with sha256 {}",
                bytes.len(),
                entry.object_bytes,
                entry.object_sha256
            )));
        }
        let (header, records) =
            super::chunk::decode(&bytes).map_err(|e| tampered(e.to_string()))?;
        if header.log_id != log_id
            || (header.first_offset, header.next_offset) != (entry.first_offset, entry.next_offset)
        {
            return Err(tampered(
                "the chunk holds another log or range than the manifest lists".into(),
            ));
        }
        downloaded += bytes.len() as u64;
        objects.push(records);
    }
    let append = || -> Result<(), RestoreError> {
        let inconsistent = |e: String| RestoreError::Inconsistent(format!("the rebuilt log: {e}"));
        let wal = gridlog_firmware::wal::Wal::open(
            data_dir,
            gridlog_firmware::wal::WalOptions::default(),
        )
        .map_err(|e| inconsistent(e.to_string()))?;
        let frame_max = wal.batch_frame_bytes_max() / 2;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0;
        for (offset, record) in objects.into_iter().flatten() {
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
        wal.close().map_err(|e| inconsistent(e.to_string()))
    };
    tokio::task::block_in_place(append)?;
    Ok(downloaded)
}

/// An empty segment starting at `first_offset`: the log of a directory restored from a
/// snapshot newer than every shipped segment.
fn write_empty_segment(
    wal_dir: &Path,
    log_id: [u8; 16],
    first_offset: Offset,
) -> Result<(), RestoreError> {
    let header = SegmentHeader {
        version: gridlog_common::segment::FormatVersion::CURRENT,
        log_id,
        first_offset,
        segment_bytes: gridlog_firmware::wal::SEGMENT_BYTES_DEFAULT,
        created_unix_ms: super::status::unix_ms_now(),
        round_bytes: gridlog_firmware::wal::ROUND_BYTES_DEFAULT as u32,
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

fn check_empty(dir: &Path) -> Result<(), RestoreError> {
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

/// The lineage to restore and the key of its newest manifest.
pub(super) async fn newest_lineage(
    store: &Store,
    site: &Layout,
    options: &RestoreOptions,
) -> Result<(String, String), RestoreError> {
    let lineages: Vec<String> = match &options.lineage {
        Some(l) => vec![l.clone()],
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
                .chain([super::layout::MANIFESTS_DIR.into()]),
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
            options.site
        )));
    }
    best.map(|(_, l, k)| (l, k))
        .ok_or_else(|| RestoreError::NothingShipped {
            site: options.site.clone(),
            url: options.from.clone(),
        })
}

/// Reads the chain from `head_key` back to sequence 1; returns it oldest first.
pub(super) async fn walk_chain(
    store: &Store,
    head_key: &str,
    site: &str,
) -> Result<Vec<ChainLink>, RestoreError> {
    let mut chain = Vec::new();
    let mut key = head_key.to_string();
    let mut expected_sha: Option<Sha256> = None;
    let mut expected_seq: Option<u64> = None;
    loop {
        let bytes =
            store
                .get(&Key::from(key.as_str()))
                .await?
                .ok_or_else(|| RestoreError::Missing {
                    key: key.clone(),
                    what: "a manifest of the chain".into(),
                })?;
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
async fn restore_segment(
    store: &Store,
    entry: &SegmentEntry,
    wal_dir: &Path,
) -> Result<(u64, [u8; 16]), RestoreError> {
    let key = Key::from(entry.key.as_str());
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| RestoreError::Missing {
            key: entry.key.clone(),
            what: format!(
                "the segment of offsets {}..{}",
                entry.first_offset, entry.next_offset
            ),
        })?;
    let tampered = |reason: String| RestoreError::Tampered {
        key: entry.key.clone(),
        reason,
    };
    let object_sha = sha256(&bytes);
    if object_sha != entry.object_sha256 || bytes.len() as u64 != entry.object_bytes {
        return Err(tampered(format!(
            "{} bytes with sha256 {object_sha}; the manifest says {} bytes with sha256 {}",
            bytes.len(),
            entry.object_bytes,
            entry.object_sha256
        )));
    }
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
    let name = format!("{:020}.seg", entry.first_offset);
    let path = wal_dir.join(&name);
    let tmp = wal_dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&original)?;
        file.set_len(segment.segment_bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    tokio::task::block_in_place(write).map_err(io_err(&path))?;
    Ok((bytes.len() as u64, segment.log_id))
}

/// Downloads, checks and writes the snapshot; returns the bytes downloaded.
async fn restore_snapshot(
    store: &Store,
    entry: &SnapshotEntry,
    data_dir: &Path,
    log_id: Option<[u8; 16]>,
) -> Result<u64, RestoreError> {
    let bytes = store
        .get(&Key::from(entry.key.as_str()))
        .await?
        .ok_or_else(|| RestoreError::Missing {
            key: entry.key.clone(),
            what: format!("the snapshot at offset {}", entry.next_offset),
        })?;
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
fn replay_system_state(
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
                state = EntityState::evolve(state.as_ref(), &event);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: Offset, next: Offset) -> (Offset, SegmentEntry) {
        (
            first,
            SegmentEntry {
                key: format!("seg-{first}"),
                first_offset: first,
                next_offset: next,
                object_bytes: 1,
                object_sha256: Sha256::default(),
                original_bytes: 1,
                segment_sha256: Sha256::default(),
            },
        )
    }

    fn snapshot(next: Offset) -> (Offset, SnapshotEntry) {
        (
            next,
            SnapshotEntry {
                key: format!("snap-{next}"),
                next_offset: next,
                object_bytes: 1,
                object_sha256: Sha256::default(),
            },
        )
    }

    fn firsts(p: &Plan) -> Vec<Offset> {
        p.segments.iter().map(|s| s.first_offset).collect()
    }

    #[test]
    fn the_newest_snapshot_wins_even_when_it_is_newer_than_every_segment() {
        // The reported case: segments up to 75,030, snapshots at 70,028 and 90,033.
        let segments = BTreeMap::from([segment(1, 60_027), segment(60_027, 75_030)]);
        let snapshots = BTreeMap::from([snapshot(70_028), snapshot(90_033)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(p.snapshot.as_ref().map(|s| s.next_offset), Some(90_033));
        assert!(p.segments.is_empty());
        assert_eq!((p.history_start, p.end), (90_033, 90_033));

        // A snapshot inside the shipped segments: the segment holding it, and all after.
        let snapshots = BTreeMap::from([snapshot(70_028)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [60_027]);
        assert_eq!((p.history_start, p.end), (60_027, 75_030));

        // At a segment boundary: only the segments after it.
        let snapshots = BTreeMap::from([snapshot(60_027)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [60_027]);

        // --full: every segment, no snapshot.
        let p = plan(&segments, &snapshots, &[], true).unwrap();
        assert_eq!(firsts(&p), [1, 60_027]);
        assert_eq!((p.snapshot, p.history_start, p.end), (None, 1, 75_030));
    }

    fn chunk(first: Offset, next: Offset) -> ChunkEntry {
        ChunkEntry {
            key: format!("chunk-{first}"),
            first_offset: first,
            next_offset: next,
            object_bytes: 1,
            object_sha256: Sha256::default(),
        }
    }

    #[test]
    fn chunks_extend_the_restore_past_the_segments_and_the_snapshot() {
        let segments = BTreeMap::from([segment(1, 100), segment(100, 200)]);
        let snapshots = BTreeMap::from([snapshot(150), snapshot(250)]);
        // A superseded chunk (below 200), one straddling the segments' end, one beyond
        // the newest snapshot, and one past a gap.
        let chunks = [
            chunk(120, 180),
            chunk(190, 240),
            chunk(240, 300),
            chunk(310, 320),
        ];
        let p = plan(&segments, &snapshots, &chunks, false).unwrap();
        // The newest snapshot is newer than every segment: the log starts at it and the
        // chunk holding it, then the next, fill it to 300.
        assert_eq!(p.snapshot.as_ref().map(|s| s.next_offset), Some(250));
        assert!(p.segments.is_empty());
        let keys: Vec<_> = p.chunks.iter().map(|c| c.first_offset).collect();
        assert_eq!(keys, [240]);
        assert_eq!((p.history_start, p.end), (250, 300));
        // --full: segments to 200, then the chunks to 300.
        let p = plan(&segments, &snapshots, &chunks, true).unwrap();
        let keys: Vec<_> = p.chunks.iter().map(|c| c.first_offset).collect();
        assert_eq!(keys, [190, 240]);
        assert_eq!((p.history_start, p.end), (1, 300));
        // Only chunks, from offset 1: a young gateway's whole history.
        let p = plan(&BTreeMap::new(), &BTreeMap::new(), &[chunk(1, 10)], false).unwrap();
        assert_eq!((p.history_start, p.end, p.chunks.len()), (1, 10, 1));
        assert_eq!(
            plan(&BTreeMap::new(), &BTreeMap::new(), &[chunk(5, 10)], false),
            Err(PlanError::Nothing)
        );
    }

    #[test]
    fn gaps_fall_back_to_an_older_snapshot_or_are_an_error() {
        // Segments after the newest snapshot have a gap; the older one is continued.
        let segments = BTreeMap::from([segment(1, 100), segment(100, 200), segment(300, 400)]);
        let snapshots = BTreeMap::from([snapshot(150), snapshot(250)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap_err();
        assert!(
            matches!(&p, PlanError::Gap(m) if m.contains("200..300")),
            "{p}"
        );
        let snapshots = BTreeMap::from([snapshot(350)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [300]);
        assert!(matches!(
            plan(&segments, &snapshots, &[], true),
            Err(PlanError::Gap(m)) if m.contains("200..300")
        ));
        // No segment from offset 1 and no snapshot before the first one.
        let segments = BTreeMap::from([segment(100, 200)]);
        assert!(matches!(
            plan(&segments, &BTreeMap::new(), &[], false),
            Err(PlanError::Gap(m)) if m.contains("1..100")
        ));
        assert_eq!(
            plan(&BTreeMap::new(), &BTreeMap::new(), &[], false),
            Err(PlanError::Nothing)
        );
        // Only a snapshot: an empty log from it.
        let p = plan(
            &BTreeMap::new(),
            &BTreeMap::from([snapshot(42)]),
            &[],
            false,
        )
        .unwrap();
        assert_eq!((p.history_start, p.end), (42, 42));
    }
}
