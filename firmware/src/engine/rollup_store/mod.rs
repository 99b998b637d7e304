//! The rollup store: sealed rollup intervals on disk, so a meter's memory holds only its
//! newest ones (see `docs/ARCHITECTURE.md`, "Rollup memory", for the whole design).
//!
//! `DATA_DIR/rollups/<spill seq, 20 digits>.rlp` are **spill files**, each written once,
//! whole, atomically (temp file, `fdatasync`, rename, directory `fsync`) and never changed:
//! the layout is in [`format`]. Spill `n` holds the day records the image handed over at
//! the `n`-th spill; a later spill may hold a newer version of the same meter-day (a late
//! reading amended it), and the newest spill holding a meter-day wins.
//!
//! Crash rule: a snapshot records the highest spill it covers (its image no longer holds
//! those intervals). Recovery calls [`trim`] with that number: spill files above it were
//! written after that snapshot (a crash between the store write and the snapshot), so they
//! are removed and replay derives their intervals again. Nothing is lost (the log still
//! holds the readings) and nothing is counted twice (the image from the snapshot holds
//! exactly the intervals no kept spill holds). A damaged file at or below it is reported
//! ([`StoreError::Corrupt`]), never skipped.
//!
//! This module does file work only; it runs on the maintenance thread and on query
//! threads, never on the write path.

pub mod format;
pub mod merge;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gridlog_common::id::EntityId;

use crate::wal::io::Io;
use format::{DayRecord, DecodeError, IndexEntry, SpillHeader, SPILL_HEADER_BYTES};

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

/// Writes spill `spill_seq` (the bytes of [`format::encode_file`]) atomically; durable
/// when this returns.
pub fn write_spill(data_dir: &Path, spill_seq: u64, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    write_spill_with(&Io::default(), data_dir, spill_seq, bytes)
}

/// [`write_spill`] through `io` (the engine's, which a test can hook).
pub(crate) fn write_spill_with(
    io: &Io,
    data_dir: &Path,
    spill_seq: u64,
    bytes: &[u8],
) -> Result<PathBuf, StoreError> {
    let dir = store_dir(data_dir);
    if !dir.exists() {
        io.create_dir_durably(&dir)
            .map_err(|(path, source)| StoreError::Io { path, source })?;
    }
    io.write_file_atomically(&dir, &spill_file_name(spill_seq), &[bytes])
        .map_err(|(path, source)| StoreError::Io { path, source })
}

/// What [`trim`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Spills above the covered one (written, but no snapshot counts them).
    pub spills: Vec<u64>,
    /// Leftover temp files (a crash while a spill was written).
    pub temp_files: usize,
}

/// Makes the store hold exactly spills `..= covered`: removes newer spill files and
/// leftover temp files, then syncs the directory. Called at start-up with the covered
/// spill of the snapshot that is loaded (0 without one: no spill is covered).
pub fn trim(data_dir: &Path, covered: u64) -> Result<Trimmed, StoreError> {
    trim_with(&Io::default(), data_dir, covered)
}

/// [`trim`] through `io`.
pub(crate) fn trim_with(io: &Io, data_dir: &Path, covered: u64) -> Result<Trimmed, StoreError> {
    let dir = store_dir(data_dir);
    let mut trimmed = Trimmed::default();
    for (seq, path) in list(data_dir)? {
        if seq > covered {
            io.remove(&path).map_err(io_err(&path))?;
            trimmed.spills.push(seq);
        }
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                io.remove(&path).map_err(io_err(&path))?;
                trimmed.temp_files += 1;
            }
        }
    }
    if trimmed != Trimmed::default() {
        io.sync_dir(&dir).map_err(io_err(&dir))?;
    }
    Ok(trimmed)
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
        let mut bytes = vec![0u8; self.header.index_bytes() as usize];
        self.file
            .read_exact_at(&mut bytes, self.header.index_at())
            .map_err(io_err(&self.path))?;
        let index =
            format::decode_index(&bytes, &self.header).map_err(|reason| StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            })?;
        index.iter().map(|e| self.block(e)).collect()
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

/// Meter `id`'s stored day records whose day is in `days`, from every spill whose header
/// says it may hold one (newest spill's version of a meter-day wins), oldest first.
pub fn read_meter(
    data_dir: &Path,
    id: &str,
    days: std::ops::Range<i64>,
) -> Result<Vec<DayRecord>, StoreError> {
    let mut by_day = std::collections::BTreeMap::new();
    for (_, path) in list(data_dir)? {
        let Some(spill) = SpillFile::open_if(&path, |h| h.overlaps(&days))? else {
            continue;
        };
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
