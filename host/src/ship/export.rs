//! `gridlog export`: the fleet tables (`crate::tables`) rebuilt from what gateways shipped,
//! on any machine: for sites shipped before the tables existed, after a schema change, or
//! on a bigger machine than a gateway.
//!
//! Per site: find the newest lineage and walk its manifest chain back to sequence 1 (as a
//! restore does: every manifest checked against the next), take every segment the chain
//! lists in offset order, download each and check it (object SHA-256 against the manifest,
//! the archive's checksums, the offsets), fold the meters' baselines through it, and write
//! its files create-only with read-back. A file already in the target with the same bytes
//! is left as it is (a second run resumes); other bytes are an error, never overwritten.
//! Sites run `jobs` at a time; each prints a line per segment.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gridlog_common::{Offset, FIRST_OFFSET};
use object_store::path::Path as Key;
use tokio::sync::watch;

use super::layout::Layout;
use super::manifest::SegmentEntry;
use super::restore::{fetch_segment, newest_lineage, walk_chain, RestoreError, RestoreOptions};
use super::store::{Store, StoreError, Stored, Upload};
use super::{sha256, ShipStatus};
use crate::config::ShipConfig;
use crate::tables::{self, Carry, SegmentInput, SegmentTables, TablesError};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The store the gateways shipped to.
    pub from: String,
    /// The sites.
    pub sites: Vec<String>,
    /// Write files only for segments that end at or after this offset (earlier ones are
    /// read for the meters' baselines only).
    pub from_offset: Offset,
    /// Where the tables go: a store URL.
    pub to: String,
    /// Sites exported at once.
    pub jobs: usize,
}

/// What an export of one site did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// The lineage whose chain was read.
    pub lineage: String,
    /// Segments read.
    pub segments: u64,
    /// Bytes of log they held (decompressed).
    pub log_bytes: u64,
    /// Files written.
    pub files_written: u64,
    /// Files the target held already, with the same bytes.
    pub files_present: u64,
    /// Rows in the files.
    pub rows: u64,
}

/// Why an export of a site failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the shipped history failed (missing, tampered, inconsistent).
    #[error(transparent)]
    History(#[from] RestoreError),
    /// The target store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A segment's tables could not be made.
    #[error("segment {first_offset}: {source}")]
    Tables {
        /// The segment's first offset.
        first_offset: Offset,
        /// Why.
        source: TablesError,
    },
    /// The chain's segments do not run on without a gap.
    #[error("the shipped segments have a gap: offset {expected} is in none (the next starts at {found})")]
    Gap {
        /// The offset no segment holds.
        expected: Offset,
        /// Where the next segment starts.
        found: Offset,
    },
    /// The target holds another file at a key.
    #[error("{key}: the target holds different bytes ({reason}); not overwritten")]
    Conflict {
        /// The key.
        key: String,
        /// What the read-back found.
        reason: String,
    },
    /// A blocking task failed.
    #[error("a worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// The site's task ended without an outcome (it panicked; logged).
    #[error("the export task ended without an outcome")]
    Lost,
}

/// Site outcomes of an export, in the order the sites were given.
pub type SiteResults = Vec<(String, Result<ExportReport, ExportError>)>;

/// Exports every site of `options`; an error only if a store cannot be opened.
pub async fn export(options: &ExportOptions, ship: &ShipConfig) -> Result<SiteResults, StoreError> {
    let from = Store::open_url(&options.from, ship)?;
    let to = Store::open_url(&options.to, ship)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, site) in options.sites.iter().enumerate() {
        let (from, to, permits) = (from.clone(), to.clone(), permits.clone());
        let (site, from_offset) = (site.clone(), options.from_offset);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, export_site(&from, &to, &site, from_offset).await)
        });
    }
    let mut results: BTreeMap<usize, Result<ExportReport, ExportError>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => {
                results.insert(index, result);
            }
            Err(e) => tracing::error!("an export task failed: {e}"),
        }
    }
    Ok(options
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let result = results.remove(&i).unwrap_or(Err(ExportError::Lost));
            (site.clone(), result)
        })
        .collect())
}

/// Exports one site.
pub async fn export_site(
    from: &Store,
    to: &Store,
    site: &str,
    from_offset: Offset,
) -> Result<ExportReport, ExportError> {
    let segments = shipped_segments(from, site).await?;
    let mut report = ExportReport {
        lineage: segments.last().map(|(_, l)| l.clone()).unwrap_or_default(),
        ..ExportReport::default()
    };
    let started = Instant::now();
    let (status, (_keep, stop)) = (ShipStatus::default(), watch::channel(false));
    let mut carry = Carry::starting_at(
        segments
            .first()
            .map_or(FIRST_OFFSET, |(s, _)| s.first_offset),
    );
    for (n, (entry, lineage)) in segments.iter().enumerate() {
        let fetched = fetch_segment(from, entry).await?;
        report.segments += 1;
        report.log_bytes += fetched.original.len() as u64;
        let write = entry.next_offset > from_offset;
        let (files, carry_out) = {
            let (site, lineage) = (site.to_string(), lineage.clone());
            let carry_in = std::mem::take(&mut carry);
            let first_offset = entry.first_offset;
            tokio::task::spawn_blocking(move || {
                build_files(
                    &site,
                    &lineage,
                    first_offset,
                    &fetched.original,
                    carry_in,
                    write,
                )
            })
            .await?
            .map_err(|source| ExportError::Tables {
                first_offset,
                source,
            })?
        };
        carry = carry_out;
        let (mut written, mut rows) = (0, 0);
        for (key, file) in files {
            rows += file.rows;
            match put_table(to, &key, file.bytes, &status, &stop).await? {
                TablePut::Written => written += 1,
                TablePut::Present => report.files_present += 1,
                TablePut::Differs { key, reason } => {
                    return Err(ExportError::Conflict { key, reason })
                }
            }
        }
        report.files_written += written;
        report.rows += rows;
        eprintln!(
            "{site}: segment {}/{} (offsets {}..{}): {written} files written, {rows} rows, {:.1} s",
            n + 1,
            segments.len(),
            entry.first_offset,
            entry.next_offset,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(report)
}

/// The segments the newest lineage's chain lists, in offset order, each with the lineage of
/// the manifest that first listed it; they must run on from offset 1.
pub(crate) async fn shipped_segments(
    store: &Store,
    site: &str,
) -> Result<Vec<(SegmentEntry, String)>, ExportError> {
    let options = RestoreOptions {
        from: String::new(),
        site: site.to_string(),
        data_dir: Default::default(),
        full: true,
        lineage: None,
    };
    let site_layout = Layout::new(store.prefix(), site, "-");
    let (_, head_key) = newest_lineage(store, &site_layout, &options).await?;
    let chain = walk_chain(store, &head_key, site).await?;
    let mut segments: BTreeMap<Offset, (SegmentEntry, String)> = BTreeMap::new();
    for link in &chain {
        for s in &link.manifest.segments {
            segments
                .entry(s.first_offset)
                .or_insert_with(|| (s.clone(), link.manifest.lineage.clone()));
        }
    }
    // The history begins at its first shipped segment (older ones may never have shipped);
    // from there the segments must run on without a gap.
    let mut expected = segments.keys().next().copied().unwrap_or(FIRST_OFFSET);
    for (first, (entry, _)) in &segments {
        if *first != expected {
            return Err(ExportError::Gap {
                expected,
                found: *first,
            });
        }
        expected = entry.next_offset;
    }
    Ok(segments.into_values().collect())
}

/// One segment's files (none when `write` is false) and the carry after it.
fn build_files(
    site: &str,
    lineage: &str,
    first_offset: Offset,
    records: &dyn tables::Records,
    mut carry: Carry,
    write: bool,
) -> Result<(Vec<(String, tables::TableFile)>, Carry), TablesError> {
    let input = SegmentInput {
        site,
        lineage,
        first_offset,
        records,
    };
    let segment = SegmentTables::scan(input, &mut carry)?;
    let mut files = Vec::new();
    if write {
        for (table, day) in segment.files() {
            let key = tables::key(table, site, day, first_offset, segment.last_offset, lineage);
            files.push((key, segment.build(table, day)?));
        }
    }
    Ok((files, carry))
}

/// How a table file's create-only upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TablePut {
    /// Written now and read back equal.
    Written,
    /// The store held the same bytes.
    Present,
    /// The store holds other bytes: never overwritten.
    Differs {
        /// The full key.
        key: String,
        /// What the read-back found.
        reason: String,
    },
}

/// How long one table file's upload may keep retrying before it is given up for now: a
/// store that refuses the tables' prefix (a credential limited to the site's own prefix)
/// must not hold the gateway's segment shipping, nor an export, forever.
pub const TABLE_PUT_BOUND: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes one table file (`key` relative to the store's prefix) create-only and reads it
/// back, retrying transient failures until `stop` or for at most [`TABLE_PUT_BOUND`].
pub async fn put_table(
    to: &Store,
    key: &str,
    bytes: Vec<u8>,
    status: &ShipStatus,
    stop: &watch::Receiver<bool>,
) -> Result<TablePut, StoreError> {
    let full_key = if to.prefix().is_empty() {
        key.to_string()
    } else {
        format!("{}/{key}", to.prefix().trim_end_matches('/'))
    };
    let bytes = Bytes::from(bytes);
    let upload = Upload {
        key: Key::from(full_key.as_str()),
        sha256: sha256(&bytes),
        bytes,
        kind: "table",
        listed: false,
        same_content: &|_| false,
    };
    let stored =
        match tokio::time::timeout(TABLE_PUT_BOUND, to.put_verified(upload, status, stop)).await {
            Ok(stored) => stored?,
            Err(_) => {
                return Err(StoreError::Store(object_store::Error::Generic {
                    store: "tables",
                    source: format!(
                        "no verified upload of {full_key} within {} s",
                        TABLE_PUT_BOUND.as_secs()
                    )
                    .into(),
                }))
            }
        };
    Ok(match stored {
        Stored::Written => TablePut::Written,
        Stored::Duplicate => TablePut::Present,
        Stored::Equivalent { sha256, .. } => TablePut::Differs {
            key: full_key,
            reason: format!("sha256 {sha256}"),
        },
        Stored::Conflict(reason) => TablePut::Differs {
            key: full_key,
            reason,
        },
    })
}
