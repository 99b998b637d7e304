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
use futures_util::StreamExt;
use gridlog_common::{Offset, FIRST_OFFSET};
use object_store::path::Path as Key;
use tokio::sync::watch;

use super::layout::Layout;
use super::manifest::SegmentEntry;
use super::restore::{fetch_segment, newest_lineage, walk_chain, RestoreError};
use super::store::{Store, StoreError, Stored, Upload};
use super::{sha256, ShipStatus};
use crate::config::ShipConfig;
use crate::tables::{Carry, SegmentJob, TablesError};

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
}

/// Site outcomes of an export, in the order the sites were given.
pub type SiteResults = Vec<(String, Result<ExportReport, ExportError>)>;

/// Exports every site of `options`, `jobs` at a time; an error only if a store cannot be
/// opened.
pub async fn export(options: &ExportOptions, ship: &ShipConfig) -> Result<SiteResults, StoreError> {
    let from = Store::open_url(&options.from, ship)?;
    let to = Store::open_url(&options.to, ship)?;
    let (from, to) = (&from, &to);
    Ok(futures_util::stream::iter(&options.sites)
        .map(|site| async move {
            let result = export_site(from, to, site, options.from_offset).await;
            (site.clone(), result)
        })
        .buffered(options.jobs.max(1))
        .collect()
        .await)
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
    let first = segments
        .first()
        .map_or(FIRST_OFFSET, |(s, _)| s.first_offset);
    let mut carry = Carry::starting_at(first);
    for (n, (entry, lineage)) in segments.iter().enumerate() {
        let fetched = fetch_segment(from, entry).await?;
        report.segments += 1;
        report.log_bytes += fetched.original.len() as u64;
        let job = SegmentJob {
            site: site.to_string(),
            lineage: lineage.clone(),
            first_offset: entry.first_offset,
            records: Arc::new(fetched.original),
            carry_in: Arc::new(carry),
        };
        let scanned = run(&job, |job| job.scan()).await?;
        carry = scanned.carry_out;
        let (mut written, mut rows) = (0, 0);
        if entry.next_offset > from_offset {
            for (table, day) in scanned.files {
                let last = scanned.last_offset;
                let (key, file) = run(&job, move |job| job.build(table, day, last)).await?;
                rows += file.rows;
                match put_table_once(to, &key, file.bytes).await? {
                    TablePut::Written => written += 1,
                    TablePut::Present => report.files_present += 1,
                    TablePut::Differs { key, reason } => {
                        return Err(ExportError::Conflict { key, reason })
                    }
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

/// Runs `work` on `job` off the runtime's threads.
async fn run<T: Send + 'static>(
    job: &SegmentJob,
    work: impl FnOnce(&SegmentJob) -> Result<T, TablesError> + Send + 'static,
) -> Result<T, ExportError> {
    let (job, first_offset) = (job.clone(), job.first_offset);
    tokio::task::spawn_blocking(move || work(&job))
        .await?
        .map_err(|source| ExportError::Tables {
            first_offset,
            source,
        })
}

/// [`put_table`] for a command that is never stopped midway.
async fn put_table_once(to: &Store, key: &str, bytes: Vec<u8>) -> Result<TablePut, StoreError> {
    let (_keep, stop) = watch::channel(false);
    put_table(to, key, bytes, &ShipStatus::default(), &stop).await
}

/// The segments the newest lineage's chain lists, in offset order, each with the lineage of
/// the manifest that first listed it; they must run on from offset 1.
pub(crate) async fn shipped_segments(
    store: &Store,
    site: &str,
) -> Result<Vec<(SegmentEntry, String)>, ExportError> {
    let site_layout = Layout::new(store.prefix(), site, "-");
    let (_, head_key) = newest_lineage(store, &site_layout, None).await?;
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
