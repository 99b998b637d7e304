//! Recovering the image at start-up: the newest snapshot that checks (or none), then the
//! history after it replayed from the local archive and the hot log. Runs before any thread
//! of the engine starts; `recover` hands the engine a log and an image that agree.

use std::path::Path;
use std::sync::mpsc;

use gridlog_common::domain::{decode_event, EventDecodeError, StoredEvent};
use gridlog_common::Offset;

use super::image::Image;
use super::rollup::RollupOptions;
use super::rollup_store::RollupStore;
use super::slots::EntitySlot;
use crate::archive::ArchiveError;
use crate::wal::{OpenError, ReadError, Wal, WalOptions};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineOpenError {
    /// The log could not be opened.
    #[error(transparent)]
    Log(#[from] OpenError),
    /// The log could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A record is not a valid event.
    #[error("record at offset {offset} is not a valid event: {error}")]
    BadEvent {
        /// Its offset.
        offset: Offset,
        /// What is wrong.
        error: EventDecodeError,
    },
    /// [`HISTORY_START_FILE_NAME`] exists but does not hold an offset.
    #[error("{path}: {reason}")]
    HistoryStart {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        #[source]
        reason: HistoryStartError,
    },
    /// No usable snapshot, and the history before the hot log is not in the local archive.
    #[error("cannot rebuild the state: no usable snapshot, and the history before offset {oldest} is not in the local archive ({reason}); restore the data directory from central storage (gridlog restore)")]
    HistoryMissing {
        /// The hot log's oldest offset.
        oldest: Offset,
        /// What is missing.
        #[source]
        reason: ArchiveError,
    },
    /// The rollup store could not be opened (a file-system error; damaged spills are set
    /// aside, not refused).
    #[error(transparent)]
    Rollups(#[from] super::rollup_store::StoreError),
}

/// Why [`HISTORY_START_FILE_NAME`] could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryStartError {
    /// It holds something other than an offset.
    #[error("holds {text:?}, not an offset")]
    NotAnOffset {
        /// What it holds.
        text: String,
    },
    /// Reading it failed.
    #[error(transparent)]
    Io(std::io::Error),
}

/// Where start-up found its state. Shown to operators as `snapshot at offset N` or
/// `full replay` (its `Display`, which is also its JSON form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartedFrom {
    /// The newest usable snapshot, then the log after it.
    Snapshot {
        /// One past the snapshot's last offset.
        next_offset: Offset,
    },
    /// No usable snapshot: every event replayed.
    FullReplay,
}

impl std::fmt::Display for StartedFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartedFrom::Snapshot { next_offset } => write!(f, "snapshot at offset {next_offset}"),
            StartedFrom::FullReplay => f.write_str("full replay"),
        }
    }
}

impl serde::Serialize for StartedFrom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How start-up went, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// Where the state came from.
    pub(crate) started_from: StartedFrom,
    /// Events replayed (from the archive and the hot log).
    pub(crate) replayed_events: u64,
    /// How long the replay took.
    pub(crate) replay_ms: u64,
}

/// The log and the image rebuilt from it, ready for the engine's threads.
pub(crate) struct Recovered {
    pub(crate) wal: Wal,
    pub(crate) image: Image,
    pub(crate) history_start: Offset,
    pub(crate) report: RecoveryReport,
    pub(crate) rollups: RollupStore,
    /// Snapshots (their next offsets) passed over because the rollup store cannot continue
    /// them: made under other horizons, or assuming more of the store than it holds.
    pub(crate) passed_over: Vec<Offset>,
}

/// Opens the log and rebuilds the image: the newest usable snapshot, then the archive
/// between it and the hot log (if the snapshot is older than the hot log), then the hot log.
pub(crate) fn recover(
    data_dir: &Path,
    wal_options: WalOptions,
    rollups: RollupOptions,
    recent_readings_max: usize,
    rollup_spill_bytes: u64,
) -> Result<Recovered, EngineOpenError> {
    let history_start = read_history_start(data_dir)?;
    let wal = Wal::open(data_dir, wal_options)?;
    let _ = crate::archive::remove_temporaries(&wal.io(), data_dir);
    let io = wal.io();
    let (store, opened) =
        RollupStore::open(&io, data_dir, wal.log_id(), wal.next_offset(), rollups)?;
    if opened != Default::default() {
        tracing::info!(?opened, "opened the rollup store");
    }
    let started = std::time::Instant::now();
    // Listing the archive is needed only if no snapshot matches the store: asked lazily.
    let complete = || full_replay_possible(data_dir, &wal, history_start);
    let (mut image, started_from, passed_over) =
        load_newest_snapshot(data_dir, &wal, rollups, store.covered(), complete);
    // What the store holds is not queued again, from the snapshot or by replay.
    image.sealed.stored_below(store.covered());
    // Replay spills as the engine does, so its queue stays bounded too.
    let spill = |image: &mut Image| spill_while_replaying(&store, &io, image, rollup_spill_bytes);
    // Before replay, so replay remembers exactly what live processing would have.
    image.set_recent_readings_max(recent_readings_max);
    // Every event applied from here on was replayed, from the archive or the hot log.
    let events_before = image.events;
    let oldest = wal.oldest_offset();
    if image.next_offset < oldest {
        replay_archive(data_dir, &mut image, oldest, &spill)?;
    }
    let mut cursor = wal.read_from(image.next_offset.max(oldest))?;
    replay(&mut image, &spill, || {
        Some(match cursor.next()? {
            Ok(record) => decoded(record.offset, record.bytes),
            Err(e) => Err(e.into()),
        })
    })?;
    drop(cursor);
    let report = RecoveryReport {
        started_from,
        replayed_events: image.events - events_before,
        replay_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        events = report.replayed_events,
        millis = report.replay_ms,
        from = %started_from,
        "recovered the image"
    );
    image.next_offset = wal.next_offset();
    Ok(Recovered {
        wal,
        image,
        history_start,
        report,
        rollups: store,
        passed_over,
    })
}

/// Replays the history between the image (a snapshot, or the beginning) and the hot log's
/// `oldest` offset from the local archive; without it the state cannot be rebuilt.
fn replay_archive(
    data_dir: &Path,
    image: &mut Image,
    oldest: Offset,
    spill: &dyn Fn(&mut Image) -> Result<(), EngineOpenError>,
) -> Result<(), EngineOpenError> {
    let missing = |reason| EngineOpenError::HistoryMissing { oldest, reason };
    let mut cursor =
        crate::archive::ArchiveCursor::new(data_dir, image.next_offset, oldest).map_err(missing)?;
    replay(image, spill, || {
        Some(match cursor.next_record()? {
            Ok((offset, bytes)) => decoded(offset, &bytes),
            Err(e) => Err(missing(e)),
        })
    })
}

/// The file a restore from central storage leaves in `DATA_DIR`: the first offset whose
/// history this directory holds, as decimal text. The history before it is in central
/// storage only: queries for it answer [`QueryError::BeforeHistory`](super::QueryError::BeforeHistory), never a read error,
/// and entity queries whose index points below it start there. Absent: offset 1.
pub const HISTORY_START_FILE_NAME: &str = "HISTORY_START";

/// Reads [`HISTORY_START_FILE_NAME`]; offset 1 when there is none.
pub fn read_history_start(data_dir: &Path) -> Result<Offset, EngineOpenError> {
    let path = data_dir.join(HISTORY_START_FILE_NAME);
    let bad = |reason: HistoryStartError| EngineOpenError::HistoryStart {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<Offset>() {
            Ok(offset) if offset >= gridlog_common::FIRST_OFFSET => Ok(offset),
            _ => Err(bad(HistoryStartError::NotAnOffset { text })),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(gridlog_common::FIRST_OFFSET),
        Err(e) => Err(bad(HistoryStartError::Io(e))),
    }
}

/// Events decoded per chunk handed from the decoding thread to the applying one.
const REPLAY_CHUNK_EVENTS: usize = 4096;
/// Chunks decoded ahead of the applying thread (bounds replay's memory to a few MiB).
const REPLAY_CHUNKS_AHEAD: usize = 4;

/// Applies every event `next` yields to `image`, in order, calling `spill` after each
/// chunk. Reading and decoding run on a second thread, ahead of the applying one by at most
/// [`REPLAY_CHUNKS_AHEAD`] chunks: start-up uses both cores.
fn replay(
    image: &mut Image,
    spill: &dyn Fn(&mut Image) -> Result<(), EngineOpenError>,
    mut next: impl FnMut() -> Option<Result<(Offset, StoredEvent), EngineOpenError>> + Send,
) -> Result<(), EngineOpenError> {
    type Chunk = Result<Vec<(Offset, StoredEvent)>, EngineOpenError>;
    std::thread::scope(|scope| {
        let (chunks, decoded) = mpsc::sync_channel::<Chunk>(REPLAY_CHUNKS_AHEAD);
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK_EVENTS);
            while let Some(item) = next() {
                match item {
                    Ok(event) => chunk.push(event),
                    Err(e) => {
                        let _ = chunks.send(Err(e));
                        return;
                    }
                }
                if chunk.len() == REPLAY_CHUNK_EVENTS {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_CHUNK_EVENTS));
                    if chunks.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = chunks.send(Ok(chunk));
            }
        });
        for chunk in decoded {
            let chunk = chunk?;
            // Slots first (entities new in this chunk get none and are found by id), then
            // apply with the entity a few events ahead already on its way into the cache.
            let slots: Vec<EntitySlot> = chunk
                .iter()
                .map(|(_, event)| image.slot(event.entity.as_str()).unwrap_or(EntitySlot::MAX))
                .collect();
            image.apply_all(&slots, chunk.iter().map(|(offset, event)| (*offset, event)));
            spill(image)?;
        }
        Ok(())
    })
}

/// During replay: once the image queues `spill_bytes` for the rollup store, writes it as a
/// spill (and merges), as the rollup thread does when the engine runs.
fn spill_while_replaying(
    store: &RollupStore,
    io: &crate::wal::io::Io,
    image: &mut Image,
    spill_bytes: u64,
) -> Result<(), EngineOpenError> {
    if (image.sealed.bytes() as u64) < spill_bytes {
        return Ok(());
    }
    let through = image.next_offset;
    let entries = image.sealed.entries();
    store.spill_queue_and_merge(io, entries, through, || image.sealed.stored_below(through))?;
    Ok(())
}

/// Whether the log from its first offset is here (hot log, or archive files without a gap
/// before it): then a full replay can rebuild everything a snapshot holds.
fn full_replay_possible(data_dir: &Path, wal: &Wal, history_start: Offset) -> bool {
    let first = gridlog_common::FIRST_OFFSET;
    if history_start != first {
        return false;
    }
    let oldest = wal.oldest_offset();
    if oldest <= first {
        return true;
    }
    let Ok((entries, damage)) = crate::archive::list(data_dir) else {
        return false;
    };
    let mut next = first;
    for entry in entries.iter().filter(|_| damage.is_empty()) {
        if entry.header.first_offset != next {
            break;
        }
        next = entry.header.next_offset;
    }
    next >= oldest
}

/// The event in the record at `offset`, for replay.
fn decoded(offset: Offset, bytes: &[u8]) -> Result<(Offset, StoredEvent), EngineOpenError> {
    decode_event(bytes)
        .map(|event| (offset, event))
        .map_err(|error| EngineOpenError::BadEvent { offset, error })
}

/// Moves a snapshot beyond the end of the log into `snapshots/beyond-log/`. Snapshots are
/// taken of durable events only, so one beyond the end means the log lost events it held (a
/// quarantine cut): once new events reach its offset it would load, with the lost events and
/// without the new ones. Kept, never deleted; a failed move leaves it skipped as now.
fn set_aside_beyond_the_log(data_dir: &Path, wal: &Wal, path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let io = wal.io();
    let snapshots = data_dir.join(crate::snapshot::SNAPSHOT_DIR_NAME);
    let aside = snapshots.join(SNAPSHOTS_BEYOND_LOG_DIR_NAME);
    let target = aside.join(name);
    let moved = io
        .create_dir_durably(&aside)
        .map_err(|(_, e)| e)
        .and_then(|()| io.rename(path, &target))
        .and_then(|()| io.sync_dir(&aside))
        .and_then(|()| io.sync_dir(&snapshots));
    match moved {
        Ok(()) => tracing::warn!(from = %path.display(), to = %target.display(),
            "snapshot is beyond the end of the log (the log lost events it held); set aside"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e,
            "snapshot is beyond the end of the log; ignored (it could not be set aside)"),
    }
}

/// Where snapshots beyond the end of the log are set aside (under `snapshots/`).
pub const SNAPSHOTS_BEYOND_LOG_DIR_NAME: &str = "beyond-log";

/// The newest snapshot that loads and checks, or an empty image (full replay). A snapshot
/// beyond the end of the log, of another log, or damaged, is skipped with a warning. So is
/// one whose rollup queue assumed more of the rollup store than it holds (`covered`: a
/// spill was set aside, or the store was not restored with the data directory), whose
/// image lacks the days between — unless no other snapshot loads and the log cannot be
/// replayed from its start (`complete` says false): then those days are lost, and said so.
/// Also returns the snapshots passed over for the rollup store (kept on disk: a start with
/// other horizons or a damaged archive may need them; the shipper does not ship them).
fn load_newest_snapshot(
    data_dir: &Path,
    wal: &Wal,
    rollups: RollupOptions,
    covered: Offset,
    complete: impl FnOnce() -> bool,
) -> (Image, StartedFrom, Vec<Offset>) {
    let snapshots = crate::snapshot::list(data_dir).unwrap_or_default();
    let mut lacking: Option<(Image, Offset)> = None;
    let mut passed_over = Vec::new();
    for entry in snapshots.iter().rev() {
        if entry.next_offset > wal.next_offset() {
            set_aside_beyond_the_log(data_dir, wal, &entry.path);
            continue;
        }
        match crate::snapshot::load(&entry.path, Some(wal.log_id())) {
            Ok((_, image))
                if image.rollup_options == rollups && image.sealed.coverage() > covered =>
            {
                tracing::warn!(path = %entry.path.display(), snapshot_assumes = image.sealed.coverage(), store_covers = covered, "the rollup store lacks days this snapshot does not hold; trying an older one");
                passed_over.push(entry.next_offset);
                if lacking.is_none() {
                    lacking = Some((image, entry.next_offset));
                }
            }
            Ok((_, image)) if image.rollup_options == rollups => {
                let from = StartedFrom::Snapshot {
                    next_offset: entry.next_offset,
                };
                return (image, from, passed_over);
            }
            Ok(_) => {
                passed_over.push(entry.next_offset);
                tracing::warn!(path = %entry.path.display(), "snapshot has other rollup horizons than configured; ignored")
            }
            Err(e) => tracing::warn!(error = %e, "damaged snapshot; falling back to an older one"),
        }
    }
    match lacking {
        Some((image, next_offset)) if !complete() => {
            tracing::error!(
                next_offset,
                store_covers = covered,
                "no snapshot matches the rollup store and the log is not whole from its start: \
                 loading the newest; meters' sealed days made by events from the store's \
                 coverage up to the snapshot's are lost"
            );
            passed_over.retain(|o| *o != next_offset);
            (image, StartedFrom::Snapshot { next_offset }, passed_over)
        }
        _ => (Image::new(rollups), StartedFrom::FullReplay, passed_over),
    }
}
