//! The rollup store: sealed rollup intervals on disk, so a meter's memory holds only its
//! newest ones (see `docs/ARCHITECTURE.md`, "Rollup memory", for the whole design).
//!
//! `DATA_DIR/rollups/<spill seq, 20 digits>.rlp` are **spill files**, each written once,
//! whole, atomically (temp file, `fdatasync`, rename, directory `fsync`) and never changed:
//! the layout is in [`format`]. A spill holds the day records the image queued (days its
//! meters sealed, and sealed days amended by late readings, written whole again); a later
//! spill may hold a newer version of the same meter-day, and the newest spill wins. Every
//! [`SPILLS_PER_MERGE`] spills of one level are merged into one of the next level, which
//! replaces them (its header names the first it replaces).
//!
//! Crash rule: a spill says which events it covers — every day sealed and every amendment
//! made by an event below its `through_offset` is in it or an older spill — and the image
//! queues only what an event at or above [`RollupStore::covered`] made. So the store and
//! the snapshots need no agreement: a snapshot holds the queued records of its moment, and
//! at start-up those below the store's coverage are dropped (they were written after the
//! snapshot), as are the ones replay makes below it. Killed while a spill is written: a
//! temp file, removed at start; the records are still queued in the image the next start
//! rebuilds. Killed after a merge, before it removed what it replaces: removed at start.
//! Nothing is lost (the log still holds the readings of what no spill covers) and nothing
//! is counted twice. A damaged spill, or one of another log, is set aside at start with an
//! error logged; the coverage then falls back to the other spills, so the days it held are
//! derived again from the log as far as the log still holds them.
//!
//! This module does file work only; it runs on the maintenance thread and on query
//! threads, never on the write path.

pub mod format;
pub mod merge;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gridlog_common::id::EntityId;

use crate::engine::rollup::{RollupOptions, QUARTERS_PER_DAY};
use crate::engine::sealed::{self, SealedEntry};
use crate::wal::io::Io;
use format::{
    DayRecord, DecodeError, IndexEntry, SpillHeader, SpillLayout, SpillSpec, SPILL_HEADER_BYTES,
};

/// Name of the rollup store's directory inside a data directory.
pub const ROLLUP_DIR_NAME: &str = "rollups";
/// Extension of a spill file.
pub const SPILL_EXTENSION: &str = "rlp";

/// Why the rollup store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system call failed.
    #[error("rollup store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A spill file's bytes are not a valid spill.
    #[error("rollup spill {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte position.
        reason: DecodeError,
    },
    /// Records would make a spill a reader refuses.
    #[error("rollup spill {path}: {reason}")]
    Unwritable {
        /// The file being written.
        path: PathBuf,
        /// Which limit.
        reason: format::EncodeError,
    },
    /// A spill file does not belong to this log as it is: another log's, one running past
    /// its end (after a quarantine cut), or made under other rollup horizons.
    #[error("rollup spill {path}: {why}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Which.
        why: &'static str,
    },
    /// A spill file's name and its header disagree.
    #[error("rollup spill {path} says it is spill {in_header}")]
    Misnamed {
        /// The file.
        path: PathBuf,
        /// The number in its header.
        in_header: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file name of spill `spill_seq`.
pub fn spill_file_name(spill_seq: u64) -> String {
    format!("{spill_seq:020}.{SPILL_EXTENSION}")
}

/// The store's directory in `data_dir`.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(ROLLUP_DIR_NAME)
}

/// Spill files present, oldest first: `(spill seq, path)`. Other names (a `.tmp`) are
/// left out. No directory yet: no spills.
pub fn list(data_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let dir = store_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut spills = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(&dir))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{SPILL_EXTENSION}")))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            spills.push((seq, path));
        }
    }
    spills.sort_unstable();
    Ok(spills)
}

/// A spill file being written: blocks streamed to `<name>.tmp` one meter at a time (a merge
/// of the whole store never holds more than one meter's records), then the index, the
/// header, `fdatasync`, rename, directory `fsync`.
struct SpillWriter<'a> {
    io: &'a Io,
    tmp: PathBuf,
    file: File,
    layout: SpillLayout,
    block: Vec<u8>,
}

impl<'a> SpillWriter<'a> {
    fn create(io: &'a Io, dir: &Path, spill_seq: u64) -> Result<SpillWriter<'a>, StoreError> {
        let tmp = dir.join(format!("{}.tmp", spill_file_name(spill_seq)));
        if tmp.exists() {
            io.remove(&tmp).map_err(io_err(&tmp))?;
        }
        let file = io.create_new(&tmp).map_err(io_err(&tmp))?;
        Ok(SpillWriter {
            io,
            tmp,
            file,
            layout: SpillLayout::new(),
            block: Vec::new(),
        })
    }

    fn push(&mut self, id: &EntityId, days: &[DayRecord]) -> Result<(), StoreError> {
        if days.is_empty() {
            return Ok(());
        }
        self.block.clear();
        format::encode_block(id, days, &mut self.block);
        let at = SPILL_HEADER_BYTES as u64 + self.layout.blocks_bytes();
        self.layout
            .add(id, days, self.block.len())
            .map_err(|reason| StoreError::Unwritable {
                path: self.tmp.clone(),
                reason,
            })?;
        self.io
            .write_all_at(&self.file, &self.tmp, at, &self.block)
            .map_err(io_err(&self.tmp))?;
        Ok(())
    }

    /// Writes the index and the header and names the file: durable when this returns.
    fn finish(self, spec: &SpillSpec) -> Result<PathBuf, StoreError> {
        let (header, index) = self.layout.finish(spec);
        let (io, tmp, file) = (self.io, &self.tmp, &self.file);
        io.write_all_at(file, tmp, header.index_at(), &index)
            .map_err(io_err(tmp))?;
        io.write_all_at(file, tmp, 0, &header.encode())
            .map_err(io_err(tmp))?;
        io.sync_data(file, tmp).map_err(io_err(tmp))?;
        let path = tmp.with_extension("");
        io.rename(tmp, &path).map_err(io_err(&path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        io.sync_dir(dir).map_err(io_err(dir))?;
        Ok(path)
    }
}

/// Where spill files that cannot be used are moved at start-up (damaged, or of another
/// log): kept for an operator, never read.
pub const SET_ASIDE_DIR_NAME: &str = "set-aside";

/// How many spills of one level are merged into one of the next level. 8: a day's spills
/// at 10,000 meters (a few) stay a few files, and every interval is rewritten about once
/// per level (~4 levels over 400 days).
pub const SPILLS_PER_MERGE: usize = 8;

/// What `RollupStore::open` found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Spill files in use.
    pub spills: usize,
    /// Spills removed because a merged spill replaces them (a crash after the merge).
    pub replaced: Vec<u64>,
    /// Leftover temp files removed (a crash while a spill was written).
    pub temp_files: usize,
    /// Files moved to [`SET_ASIDE_DIR_NAME`], with why.
    pub set_aside: Vec<(PathBuf, String)>,
}

/// The rollup store of a data directory: its spill files in use, oldest first, open.
#[derive(Debug)]
pub struct RollupStore {
    dir: PathBuf,
    log_id: [u8; 16],
    /// The horizons its records are made under (and merges trim to).
    horizons: RollupOptions,
    /// Replaced whole, under the write lock, when a spill or merge is published. Files are
    /// shared: a query reads the list it took even while a merge removes them.
    spills: std::sync::RwLock<Vec<Arc<SpillFile>>>,
    /// Held by whoever spills or merges: one writer at a time.
    writer: std::sync::Mutex<()>,
}

impl RollupStore {
    /// Opens the store of `data_dir` for log `log_id`, whose events end before `log_end`,
    /// with rollups of `horizons`: removes temp files and spills a merged spill replaces,
    /// sets aside damaged spills, spills of another log, spills covering events past the
    /// log's end (a quarantine cut lost them; new events will reuse their offsets) and
    /// spills made under other horizons, each with every newer spill (their days are then
    /// re-derived from the log where it still holds them: see [`RollupStore::covered`]).
    pub(crate) fn open(
        io: &Io,
        data_dir: &Path,
        log_id: [u8; 16],
        log_end: u64,
        horizons: RollupOptions,
    ) -> Result<(RollupStore, Opened), StoreError> {
        let dir = store_dir(data_dir);
        let mut opened = Opened::default();
        let mut changed = false;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                let path = entry.map_err(io_err(&dir))?.path();
                if path.extension().is_some_and(|e| e == "tmp") {
                    io.remove(&path).map_err(io_err(&path))?;
                    opened.temp_files += 1;
                    changed = true;
                }
            }
        }
        let mut checked: Vec<(u64, PathBuf, Result<SpillFile, StoreError>)> = Vec::new();
        for (seq, path) in list(data_dir)? {
            let unusable = |why| StoreError::Unusable {
                path: path.clone(),
                why,
            };
            let spill = SpillFile::open(&path).and_then(|spill| match spill.header {
                h if h.spill_seq != seq => Err(StoreError::Misnamed {
                    path: path.clone(),
                    in_header: h.spill_seq,
                }),
                h if h.log_id != log_id => Err(unusable("belongs to another log")),
                h if h.through_offset > log_end => {
                    Err(unusable("covers events past the log's end"))
                }
                h if h.horizons != horizons => Err(unusable("made under other rollup horizons")),
                _ => Ok(spill),
            });
            if let Err(StoreError::Io { path, source }) = spill {
                return Err(StoreError::Io { path, source });
            }
            checked.push((seq, path, spill));
        }
        // A merged spill replaces a run of older ones; a crash may have left them.
        let replacing: Vec<std::ops::Range<u64>> = checked
            .iter()
            .filter_map(|(_, _, s)| s.as_ref().ok())
            .map(|s| s.header.replaces_from..s.header.spill_seq)
            .collect();
        let mut kept: Vec<Arc<SpillFile>> = Vec::new();
        let mut damaged = false;
        for (seq, path, spill) in checked {
            if replacing.iter().any(|r| r.contains(&seq)) {
                io.remove(&path).map_err(io_err(&path))?;
                opened.replaced.push(seq);
                changed = true;
                continue;
            }
            // From the first unusable spill on, every spill is set aside: the store must
            // cover a prefix of the log, and the log derives the rest again.
            let why = match spill {
                Ok(spill) if !damaged => {
                    kept.push(Arc::new(spill));
                    continue;
                }
                Ok(_) => "a spill before it was set aside".to_string(),
                Err(e) => e.to_string(),
            };
            damaged = true;
            tracing::error!(path = %path.display(), %why, "rollup spill set aside; its days are derived again from the log as far as it holds them");
            let aside = dir.join(SET_ASIDE_DIR_NAME);
            io.create_dir_all(&aside).map_err(io_err(&aside))?;
            let to = aside.join(path.file_name().unwrap_or_default());
            io.rename(&path, &to).map_err(io_err(&path))?;
            opened.set_aside.push((to, why));
            changed = true;
        }
        if changed {
            io.sync_dir(&dir).map_err(io_err(&dir))?;
        }
        opened.spills = kept.len();
        let store = RollupStore {
            dir,
            log_id,
            horizons,
            spills: std::sync::RwLock::new(kept),
            writer: std::sync::Mutex::new(()),
        };
        Ok((store, opened))
    }

    /// Every day sealed and every amendment made by an event below this offset is in the
    /// store (0: nothing is).
    pub fn covered(&self) -> u64 {
        self.spills()
            .iter()
            .map(|s| s.header.through_offset)
            .max()
            .unwrap_or(0)
    }

    /// The spills in use, oldest first. Take it with the image's queued records under the
    /// same lock order (store, then image) for a consistent view: see [`RollupStore::publish`].
    pub(crate) fn spills(&self) -> Vec<Arc<SpillFile>> {
        self.spills
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Holds the list of spills for reading while `f` runs (so no spill is published
    /// meanwhile) and gives it to `f`.
    pub(crate) fn with_spills<T>(&self, f: impl FnOnce(&[Arc<SpillFile>]) -> T) -> T {
        f(&self.spills.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Spill files in use and their bytes.
    pub fn size(&self) -> (usize, u64) {
        let spills = self.spills();
        let bytes = spills.iter().map(|s| s.file_bytes()).sum();
        (spills.len(), bytes)
    }

    /// Held while a spill and its merges are written: one writer at a time.
    pub(crate) fn one_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_seq(&self) -> u64 {
        self.spills().last().map_or(1, |s| s.header.spill_seq + 1)
    }

    /// Writes a level-0 spill of `meters` (each meter's records sorted by day) covering
    /// events below `through_offset`, durably, and publishes it: `on_publish` runs while no
    /// query can take the list of spills (it drops the image's queued records the spill
    /// holds), so a query sees every record exactly once.
    pub(crate) fn spill<'m>(
        &self,
        io: &Io,
        through_offset: u64,
        meters: impl IntoIterator<Item = (&'m EntityId, &'m [DayRecord])>,
        on_publish: impl FnOnce(),
    ) -> Result<u64, StoreError> {
        if !self.dir.exists() {
            io.create_dir_durably(&self.dir)
                .map_err(|(path, source)| StoreError::Io { path, source })?;
        }
        let spill_seq = self.next_seq();
        let mut writer = SpillWriter::create(io, &self.dir, spill_seq)?;
        for (id, days) in meters {
            writer.push(id, days)?;
        }
        let spec = SpillSpec {
            spill_seq,
            log_id: self.log_id,
            through_offset,
            replaces_from: spill_seq,
            level: 0,
            horizons: self.horizons,
        };
        let path = writer.finish(&spec)?;
        self.publish(io, SpillFile::open(&path)?, on_publish)?;
        Ok(spill_seq)
    }

    /// Writes the image's queue `entries` (taken when the image's next offset was
    /// `through_offset`) as one spill and publishes it (`on_publish`: see
    /// [`RollupStore::spill`]): per meter, every day the entries touch, as
    /// [`sealed::spill_records`] makes it (each day read from the store first, from the
    /// newest spill that holds it whole and readable: [`stored_day_skipping_damage`]), less
    /// what the horizons can no longer answer.
    pub(crate) fn spill_queue(
        &self,
        io: &Io,
        entries: &[Arc<SealedEntry>],
        through_offset: u64,
        on_publish: impl FnOnce(),
    ) -> Result<u64, StoreError> {
        let spills = self.spills();
        let records = sealed::spill_records(entries, |meter, day| {
            stored_day_skipping_damage(&spills, meter.as_str(), day)
        })?;
        drop(spills);
        let records: Vec<(EntityId, Vec<DayRecord>)> = records
            .into_iter()
            .map(|(id, days)| (id, trimmed(days, &self.horizons)))
            .collect();
        let meters = records.iter().map(|(id, days)| (id, days.as_slice()));
        self.spill(io, through_offset, meters, on_publish)
    }

    /// [`RollupStore::spill_queue`] of `entries`, then the merges that became due (one that
    /// fails is logged and tried again after the next spill: the spill stands), then the
    /// pages the spilled records held returned to the system. Returns the merges done.
    pub(crate) fn spill_queue_and_merge(
        &self,
        io: &Io,
        entries: Vec<Arc<SealedEntry>>,
        through_offset: u64,
        on_publish: impl FnOnce(),
    ) -> Result<usize, StoreError> {
        self.spill_queue(io, &entries, through_offset, on_publish)?;
        drop(entries);
        let merges = self.merge(io).unwrap_or_else(|error| {
            tracing::error!(%error, "merging rollup spills failed; tried again after the next spill");
            0
        });
        crate::hints::return_free_memory();
        Ok(merges)
    }

    /// Puts `spill` in use, replacing the spills from its `replaces_from` on, then removes
    /// their files.
    fn publish(
        &self,
        io: &Io,
        spill: SpillFile,
        on_publish: impl FnOnce(),
    ) -> Result<(), StoreError> {
        let replaces_from = spill.header.replaces_from;
        let removed: Vec<Arc<SpillFile>> = {
            let mut spills = self.spills.write().unwrap_or_else(|e| e.into_inner());
            let at = spills.partition_point(|s| s.header.spill_seq < replaces_from);
            let removed = spills.split_off(at);
            spills.push(Arc::new(spill));
            on_publish();
            removed
        };
        for old in &removed {
            io.remove(&old.path).map_err(io_err(&old.path))?;
        }
        if !removed.is_empty() {
            io.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    /// Merges the newest [`SPILLS_PER_MERGE`] spills while they share a level, into one of
    /// the next level; quarter hours and days no meter can be asked for again (beyond
    /// `options`' horizons from the meter's newest stored day) are left out. Returns the
    /// merges done.
    pub(crate) fn merge(&self, io: &Io) -> Result<usize, StoreError> {
        let options = &self.horizons;
        let mut merges = 0;
        loop {
            let spills = self.spills();
            if spills.len() < SPILLS_PER_MERGE {
                return Ok(merges);
            }
            let run = &spills[spills.len() - SPILLS_PER_MERGE..];
            let level = run[0].header.level;
            if run.iter().any(|s| s.header.level != level) {
                return Ok(merges);
            }
            let spill_seq = self.next_seq();
            let mut writer = SpillWriter::create(io, &self.dir, spill_seq)?;
            merge_run(run, options, |id, days| writer.push(id, days))?;
            let spec = SpillSpec {
                spill_seq,
                log_id: self.log_id,
                through_offset: run
                    .iter()
                    .map(|s| s.header.through_offset)
                    .max()
                    .unwrap_or(0),
                replaces_from: run[0].header.spill_seq,
                level: level + 1,
                horizons: self.horizons,
            };
            let path = writer.finish(&spec)?;
            self.publish(io, SpillFile::open(&path)?, || {})?;
            merges += 1;
        }
    }
}

/// Meter by meter (in id-hash order), the records of `run` (oldest spill first; the newest
/// version of a meter-day wins), trimmed to what the horizons can still answer.
fn merge_run(
    run: &[Arc<SpillFile>],
    options: &RollupOptions,
    mut out: impl FnMut(&EntityId, &[DayRecord]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let indexes = run
        .iter()
        .map(|s| s.index())
        .collect::<Result<Vec<_>, _>>()?;
    let mut cursors = vec![0usize; run.len()];
    loop {
        let next_hash = (0..run.len())
            .filter_map(|i| indexes[i].get(cursors[i]).map(|e| e.id_hash))
            .min();
        let Some(hash) = next_hash else {
            return Ok(());
        };
        let mut by_id: std::collections::BTreeMap<
            EntityId,
            std::collections::BTreeMap<i64, DayRecord>,
        > = Default::default();
        for (i, spill) in run.iter().enumerate() {
            while let Some(entry) = indexes[i].get(cursors[i]).filter(|e| e.id_hash == hash) {
                cursors[i] += 1;
                // A damaged block is lost either way; the merge keeps every other one.
                let (id, days) = match spill.block(entry) {
                    Ok(block) => block,
                    Err(StoreError::Corrupt { path, reason }) => {
                        tracing::error!(path = %path.display(), %reason, "damaged rollup block left out of a merge");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let records = by_id.entry(id).or_default();
                records.extend(days.into_iter().map(|d| (d.day, d)));
            }
        }
        for (id, records) in by_id {
            let days = trimmed(records.into_values().collect(), options);
            out(&id, &days)?;
        }
    }
}

/// A meter's records without what its horizons can no longer answer: its newest quarter
/// hour is at least the newest stored day's first, its current day at least the newest
/// stored day, and both only grow.
fn trimmed(mut days: Vec<DayRecord>, options: &RollupOptions) -> Vec<DayRecord> {
    let Some(newest_day) = days.last().map(|r| r.day) else {
        return days;
    };
    let first_quarter = newest_day * QUARTERS_PER_DAY as i64 - options.quarter_horizon() + 1;
    let first_day = newest_day - options.day_horizon() + 1;
    for record in &mut days {
        record.quarters.retain(|q| q.index >= first_quarter);
        if record.day < first_day {
            record.day_bucket = None;
        }
    }
    days.retain(|r| r.day_bucket.is_some() || !r.quarters.is_empty());
    days
}
/// An open spill file: its header checked; index entries and blocks read on demand.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    file: File,
    header: SpillHeader,
}

impl SpillFile {
    /// Opens spill `path` and checks its header and size.
    pub fn open(path: &Path) -> Result<SpillFile, StoreError> {
        Ok(SpillFile::open_if(path, |_| true)?.expect("every header wanted"))
    }

    /// [`SpillFile::open`], but `None` if `wanted` refuses the checked header.
    pub fn open_if(
        path: &Path,
        wanted: impl FnOnce(&SpillHeader) -> bool,
    ) -> Result<Option<SpillFile>, StoreError> {
        let corrupt = |reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io_err(path))?;
        let file_bytes = file.metadata().map_err(io_err(path))?.len();
        let mut head = [0u8; SPILL_HEADER_BYTES];
        let got = read_at_most(&file, &mut head, 0).map_err(io_err(path))?;
        let header = SpillHeader::decode(&head[..got], file_bytes).map_err(corrupt)?;
        if !wanted(&header) {
            return Ok(None);
        }
        Ok(Some(SpillFile {
            path: path.to_path_buf(),
            file,
            header,
        }))
    }

    /// The header.
    pub fn header(&self) -> &SpillHeader {
        &self.header
    }

    /// The file's length: header, blocks and index.
    pub fn file_bytes(&self) -> u64 {
        self.header.index_at() + self.header.index_bytes()
    }

    /// Fills `buf` with the file's bytes from `pos`, through the handle opened with it: the
    /// bytes stay readable while its holder keeps it, even after a merge removed the file
    /// (the shipper copies spills this way). Past the end is an `UnexpectedEof`.
    pub fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    /// Meter `id`'s day records in this spill, oldest first (empty if it has none): a
    /// binary search of the index on disk (log2 meters reads of 16 bytes, each entry
    /// checked), then its block (or a few, if ids share a hash).
    pub fn meter(&self, id: &str) -> Result<Vec<DayRecord>, StoreError> {
        let hash = format::id_hash(id);
        let (mut lo, mut hi) = (0u32, self.header.meters);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.id_hash < hash {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for i in lo..self.header.meters {
            let entry = self.entry(i)?;
            if entry.id_hash != hash {
                break;
            }
            let (found, days) = self.block(&entry)?;
            if found.as_str() == id {
                return Ok(days);
            }
        }
        Ok(Vec::new())
    }

    /// Every meter's block, decoded and checked, with the whole index (`verify`, tests).
    pub fn all(&self) -> Result<Vec<(EntityId, Vec<DayRecord>)>, StoreError> {
        self.index()?.iter().map(|e| self.block(e)).collect()
    }

    /// The whole index, read and checked (16 bytes a meter).
    fn index(&self) -> Result<Vec<IndexEntry>, StoreError> {
        let mut bytes = vec![0u8; self.header.index_bytes() as usize];
        self.file
            .read_exact_at(&mut bytes, self.header.index_at())
            .map_err(io_err(&self.path))?;
        format::decode_index(&bytes, &self.header).map_err(|reason| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        })
    }

    /// Index entry `i` (below `meters`), read and checked.
    fn entry(&self, i: u32) -> Result<IndexEntry, StoreError> {
        let mut bytes = [0u8; format::SPILL_INDEX_ENTRY_BYTES];
        let at = self.header.index_at() + u64::from(i) * bytes.len() as u64;
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(io_err(&self.path))?;
        IndexEntry::decode(&bytes, &self.header, at as usize).map_err(|r| self.corrupt(r))
    }

    fn corrupt(&self, reason: DecodeError) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn block(&self, entry: &IndexEntry) -> Result<(EntityId, Vec<DayRecord>), StoreError> {
        let mut bytes = vec![0u8; entry.block_bytes as usize];
        let at = SPILL_HEADER_BYTES as u64 + u64::from(entry.block_at);
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(io_err(&self.path))?;
        format::decode_block(&bytes).map_err(|r| self.corrupt(r))
    }
}

/// Checks every spill file of `data_dir` whole (header, index, every block, name against
/// header); the first damage found is the error.
pub fn verify(data_dir: &Path) -> Result<usize, StoreError> {
    let spills = list(data_dir)?;
    for (seq, path) in &spills {
        let spill = SpillFile::open(path)?;
        if spill.header.spill_seq != *seq {
            return Err(StoreError::Misnamed {
                path: path.clone(),
                in_header: spill.header.spill_seq,
            });
        }
        spill.all()?;
    }
    Ok(spills.len())
}

/// Meter `id`'s record of `day` as the newest spill holding it readable has it: a damaged
/// block (logged) is passed over for an older spill's version, as a merge passes it over,
/// so a spill never writes a day without the parts an older, readable spill holds.
fn stored_day_skipping_damage(
    spills: &[Arc<SpillFile>],
    id: &str,
    day: i64,
) -> Result<Option<DayRecord>, StoreError> {
    let days = day..day + 1;
    for spill in spills.iter().rev().filter(|s| s.header.overlaps(&days)) {
        match spill.meter(id) {
            Ok(records) => {
                if let Some(record) = records.into_iter().find(|r| r.day == day) {
                    return Ok(Some(record));
                }
            }
            Err(StoreError::Corrupt { path, reason }) => {
                tracing::error!(path = %path.display(), %reason, meter = id, day, "damaged rollup block passed over; an older spill's version of the day is used");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Meter `id`'s stored day records whose day is in `days`, from every spill of `spills`
/// (oldest first) whose header says it may hold one; the newest spill's version of a
/// meter-day wins. Oldest first.
pub fn read_meter(
    spills: &[Arc<SpillFile>],
    id: &str,
    days: std::ops::Range<i64>,
) -> Result<Vec<DayRecord>, StoreError> {
    let mut by_day = std::collections::BTreeMap::new();
    for spill in spills.iter().filter(|s| s.header.overlaps(&days)) {
        for record in spill.meter(id)? {
            if days.contains(&record.day) {
                by_day.insert(record.day, record);
            }
        }
    }
    Ok(by_day.into_values().collect())
}

/// Reads up to `buf.len()` bytes at `pos`; fewer only at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], pos + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests;
