//! Keeping restart time and the hot log bounded: snapshots, snapshot compaction, the cold
//! archive and its budget — on a thread of their own, off the write path.
//!
//! A **rollup spill** (when the image queues [`StorageOptions::rollup_spill_bytes`] of
//! sealed rollup days, and first in every cycle): write what the image queued for the
//! rollup store as one spill, then drop it from the image (see `rollup_store`); merge
//! spills as they accumulate.
//!
//! One cycle (after every [`StorageOptions::snapshot_every_events`] events or
//! [`StorageOptions::snapshot_every_bytes`] bytes of log, or on demand):
//! 0. the rollup spill;
//! 1. capture the image (pointer copies under the read lock, so writes do not wait for the
//!    snapshot), write the snapshot atomically, keep the newest K;
//! 2. archive every sealed segment wholly below the oldest kept snapshot: write and verify
//!    the archive copy, record `SegmentArchived` (durable), then remove the hot segment —
//!    a crash at any step leaves the hot segment, a verified archive copy, or both;
//! 3. enforce the archive budget: evict the oldest archived segments that central storage
//!    has confirmed (or, if the operator allows it, unshipped ones), each recorded as
//!    `ArchiveEvicted`; with nothing evictable, say so loudly and keep going.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use gridlog_common::domain::{Command, Event, STORAGE_ENTITY};
use gridlog_common::id::EntityId;
use gridlog_common::Offset;

use super::request::{Job, Request, SubmitError};
use super::shared::{Inner, StorageOptions};
use super::state::{ArchivedSegment, EntityState};
use crate::{archive, snapshot};

/// Why a maintenance cycle failed (it is retried at the next trigger).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    /// Writing the snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// Archiving failed.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// Recording an event failed.
    #[error("recording {what} failed: {error}")]
    Record {
        /// What.
        what: &'static str,
        /// Why.
        error: SubmitError,
    },
    /// A file-system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Writing or reading the rollup store failed.
    #[error(transparent)]
    Rollups(#[from] super::rollup_store::StoreError),
}

/// Runs rollup spills when woken (the image queues `rollup_spill_bytes`), on a thread of
/// its own: the maintenance thread may wait for the write path (it records events), and
/// the write path may wait for a spill
/// ([`super::shared::MaintenanceState::wait_for_rollup_room`]). A failed spill is tried
/// again after a growing pause.
pub(super) fn run_rollups(inner: &Inner, woken: &Receiver<()>) {
    run_when_woken(woken, || match spill_rollups(inner) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "rollup spill failed; it is tried again after a pause");
            inner.maintenance.stats().last_error = Some(e.to_string());
            false
        }
    });
}

/// Runs `work` each time `woken` is signalled until it is dropped; after a failed run
/// (`work` false), again after [`maintenance_retry_after`]'s growing pause, woken or not.
fn run_when_woken(woken: &Receiver<()>, mut work: impl FnMut() -> bool) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut retry: Option<std::time::Duration> = None;
    loop {
        let go = match retry {
            None => woken.recv().is_ok(),
            Some(pause) => !matches!(
                woken.recv_timeout(pause),
                Err(RecvTimeoutError::Disconnected)
            ),
        };
        if !go {
            return;
        }
        retry = (!work()).then(|| maintenance_retry_after(retry));
    }
}

/// Writes what the image queued for the rollup store as one spill, drops it from the image
/// once the spill is durable and published, and merges spills that accumulated. One at a
/// time (the rollup thread's, a maintenance cycle's, an operator's).
pub(crate) fn spill_rollups(inner: &Inner) -> Result<(), MaintenanceError> {
    let _one = inner.rollups.one_writer();
    let queued_bytes = spill_and_merge(inner)?;
    inner.maintenance.note_spilled(queued_bytes);
    Ok(())
}

/// [`spill_rollups`]' work; the bytes still queued after it.
fn spill_and_merge(inner: &Inner) -> Result<usize, MaintenanceError> {
    let (entries, through) = {
        let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
        (image.sealed.entries(), image.next_offset)
    };
    if entries.is_empty() {
        return Ok(0);
    }
    let mut queued_bytes = 0;
    let merges = inner
        .rollups
        .spill_queue_and_merge(&inner.wal.io(), entries, through, || {
            let mut image = inner.image.write().unwrap_or_else(|e| e.into_inner());
            image.sealed.stored_below(through);
            queued_bytes = image.sealed.bytes();
        })?;
    let mut stats = inner.maintenance.stats();
    stats.rollup_spills += 1;
    stats.rollup_merges += merges as u64;
    Ok(queued_bytes)
}

/// Makes an archive file found from an interrupted cycle durable, data and name, before it
/// is relied on: the cycle that wrote it may have failed after its rename and before its
/// directory sync, and what verified may be only in the page cache.
fn make_durable(inner: &Inner, path: &std::path::Path) -> std::io::Result<()> {
    let io = inner.wal.io();
    let file = std::fs::File::open(path)?;
    io.sync_data(&file, path)?;
    match path.parent() {
        Some(dir) => io.sync_dir(dir),
        None => Ok(()),
    }
}

fn storage_entity() -> EntityId {
    EntityId::new(STORAGE_ENTITY).expect("a valid id")
}

/// Records a system event through the processor (durable when this returns).
fn record(
    inner: &Inner,
    queue: &std::sync::mpsc::SyncSender<Job>,
    what: &'static str,
    event: Event,
) -> Result<(), MaintenanceError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let request = Request::of([Command::RecordSystemEvent {
        entity: storage_entity(),
        event,
    }]);
    inner.counters.queued.fetch_add(1, Ordering::Relaxed);
    queue
        .send(Job {
            request,
            reply: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        })
        .map_err(|_| MaintenanceError::Record {
            what,
            error: SubmitError::Stopped,
        })?;
    match rx.recv().unwrap_or(Err(SubmitError::Stopped)) {
        Ok(_) => Ok(()),
        Err(error) => Err(MaintenanceError::Record { what, error }),
    }
}

/// One maintenance cycle; see the module docs.
pub(crate) fn cycle(
    inner: &Inner,
    queue: &std::sync::mpsc::SyncSender<Job>,
    data_dir: &Path,
    options: &StorageOptions,
) -> Result<(), MaintenanceError> {
    let io = inner.wal.io();
    // 0. Rollups, so the snapshot holds little of the queue. A failure is the rollup
    // thread's to retry (and is in status): it must not stop snapshots and archiving.
    if let Err(error) = spill_rollups(inner) {
        tracing::error!(%error, "rollup spill failed; the snapshot holds the queue");
    }
    // 1. Snapshot.
    let capture = inner
        .image
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .capture();
    let newest = snapshot::list(data_dir)?.last().map(|s| s.next_offset);
    if newest != Some(capture.next_offset) {
        let started = Instant::now();
        let (header, path) = snapshot::write(&io, data_dir, inner.wal.log_id(), &capture)?;
        let millis = started.elapsed().as_millis() as u64;
        let bytes = header.body_bytes + snapshot::SNAPSHOT_HEADER_BYTES as u64;
        tracing::info!(path = %path.display(), offset = header.next_offset, bytes, millis, "snapshot written");
        let mut stats = inner.maintenance.stats();
        stats.snapshots_written += 1;
        stats.last_snapshot_offset = Some(header.next_offset);
        stats.last_snapshot_bytes = bytes;
        stats.last_snapshot_millis = millis;
    }
    drop(capture);
    snapshot::compact(&io, data_dir, options.snapshots_keep)?;
    // 2. Archive below the oldest kept snapshot.
    if options.archive {
        let Some(oldest_kept) = snapshot::list(data_dir)?.first().map(|s| s.next_offset) else {
            return Ok(());
        };
        for (first, next) in inner.wal.sealed_segments() {
            if next > oldest_kept {
                break;
            }
            archive_segment(inner, queue, data_dir, first, next)?;
        }
    }
    // 3. The budget.
    enforce_budget(inner, queue, data_dir, options)
}

fn archived_state(inner: &Inner, first: Offset) -> Option<ArchivedSegment> {
    let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
    match image.entity(STORAGE_ENTITY).map(|e| &e.state) {
        Some(EntityState::System(s)) => s.archived.get(&first).copied(),
        _ => None,
    }
}

/// If `offset` lies in a segment evicted from the local archive: the first offset after
/// the run of evicted segments it is in (where this gateway's history resumes).
pub(super) fn evicted_until(inner: &Inner, offset: Offset) -> Option<Offset> {
    let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
    let Some(EntityState::System(system)) = image.entity(STORAGE_ENTITY).map(|e| &e.state) else {
        return None;
    };
    let (_, segment) = system.archived.range(..=offset).next_back()?;
    if !segment.evicted || segment.next_offset <= offset {
        return None;
    }
    let mut end = segment.next_offset;
    for (&first, segment) in system.archived.range(end..) {
        if first != end || !segment.evicted {
            break;
        }
        end = segment.next_offset;
    }
    Some(end)
}

fn archive_segment(
    inner: &Inner,
    queue: &std::sync::mpsc::SyncSender<Job>,
    data_dir: &Path,
    first: Offset,
    next: Offset,
) -> Result<(), MaintenanceError> {
    let path = data_dir
        .join(archive::ARCHIVE_DIR_NAME)
        .join(archive::archive_file_name(first));
    let recorded = archived_state(inner, first);
    let mut hot = inner.wal.sealed_segment(first);
    // An archive from an earlier, interrupted cycle is reused only if it verifies, is of
    // this log and this segment, holds exactly the hot segment's bytes (while they are
    // still here) and matches what was recorded. Anything else under the name, such as
    // a file left by an earlier log that a quarantine recovery replaced, is rewritten.
    let existing = if path.exists() {
        archive::read_original(&path)
            .ok()
            .map(|(h, _)| h)
            .filter(|h| {
                h.log_id == inner.wal.log_id()
                    && h.first_offset == first
                    && h.next_offset == next
                    && hot.as_ref().is_none_or(|b| archive::sha256(b) == h.sha256)
            })
    } else {
        None
    };
    let header = match (existing, recorded) {
        (Some(h), r) if r.is_none_or(|r| r.sha256 == h.sha256) => {
            make_durable(inner, &path)?;
            h
        }
        _ => {
            let Some(bytes) = hot.take() else {
                return Ok(());
            };
            let started = Instant::now();
            let header = archive::write(
                &inner.wal.io(),
                data_dir,
                inner.wal.log_id(),
                first,
                next,
                &bytes,
            )?;
            let mut stats = inner.maintenance.stats();
            stats.segments_archived += 1;
            stats.archived_original_bytes += header.original_bytes;
            stats.archived_file_bytes += header.archived_bytes;
            stats.archive_millis += started.elapsed().as_millis() as u64;
            header
        }
    };
    if recorded.is_none() {
        record(
            inner,
            queue,
            "the archived segment",
            Event::SegmentArchived {
                first_offset: first,
                next_offset: next,
                original_bytes: header.original_bytes,
                archived_bytes: header.archived_bytes,
                sha256: header.sha256,
            },
        )?;
    }
    // Let go of the mapping first: a segment no one maps is recycled as a later segment.
    drop(hot);
    inner.wal.remove_oldest_segment(first)?;
    tracing::info!(
        first,
        next,
        ratio = header.original_bytes as f64 / header.archived_bytes.max(1) as f64,
        "segment archived"
    );
    Ok(())
}

fn enforce_budget(
    inner: &Inner,
    queue: &std::sync::mpsc::SyncSender<Job>,
    data_dir: &Path,
    options: &StorageOptions,
) -> Result<(), MaintenanceError> {
    let (entries, _) = archive::list(data_dir)?;
    let mut total: u64 = entries.iter().map(|e| e.file_bytes).sum();
    let mut over = false;
    if options.archive_budget_bytes > 0 {
        for entry in &entries {
            if total <= options.archive_budget_bytes {
                break;
            }
            let first = entry.header.first_offset;
            let shipped = archived_state(inner, first).is_some_and(|a| a.shipped);
            if !shipped && !options.archive_evict_unshipped {
                over = true;
                break;
            }
            record(
                inner,
                queue,
                "the eviction",
                Event::ArchiveEvicted {
                    first_offset: first,
                    next_offset: entry.header.next_offset,
                    shipped,
                },
            )?;
            let io = inner.wal.io();
            io.remove(&entry.path)?;
            io.sync_dir(&data_dir.join(archive::ARCHIVE_DIR_NAME))?;
            total -= entry.file_bytes;
            inner.maintenance.stats().evicted += 1;
            tracing::warn!(
                first,
                shipped,
                "evicted an archived segment under the archive budget"
            );
        }
        if over {
            tracing::warn!(
                archive_bytes = total,
                budget = options.archive_budget_bytes,
                "ARCHIVE OVER BUDGET: nothing may be evicted until central storage confirms segments; ingest continues while disk remains"
            );
        }
    }
    let mut stats = inner.maintenance.stats();
    stats.archive_bytes = total;
    stats.archive_over_budget = over;
    Ok(())
}

/// The first pause before a failed snapshot/archive cycle is tried again; it doubles after
/// each failure up to [`MAINTENANCE_RETRY_MAX`].
pub const MAINTENANCE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between tries of a failing snapshot/archive cycle.
pub const MAINTENANCE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The pause before the next try after a failed cycle (`previous`: the pause before it).
pub(super) fn maintenance_retry_after(
    previous: Option<std::time::Duration>,
) -> std::time::Duration {
    previous.map_or(MAINTENANCE_RETRY_FIRST, |p| {
        (p * 2).min(MAINTENANCE_RETRY_MAX)
    })
}

/// Runs snapshot/archive cycles when woken, and tries a failed one again after a growing
/// pause (a shortage of file handles, memory or space passes by itself) until it succeeds.
pub(super) fn run(inner: &Inner, queue: &SyncSender<Job>, woken: &Receiver<()>) {
    run_when_woken(woken, || run_maintenance(inner, queue));
}

/// One snapshot/archive cycle; false if it failed (`last_error` says why).
fn run_maintenance(inner: &Inner, queue: &SyncSender<Job>) -> bool {
    let _one = inner.maintenance.one_at_a_time();
    let result = cycle(inner, queue, &inner.data_dir, &inner.maintenance.options);
    let mut stats = inner.maintenance.stats();
    match result {
        Ok(()) => {
            stats.last_error = None;
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot/archive cycle failed; it is tried again after a pause");
            stats.last_error = Some(e.to_string());
            false
        }
    }
}
