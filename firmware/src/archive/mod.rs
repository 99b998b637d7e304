//! The local archive: sealed segments that left the hot log, compressed, with checksums of
//! the original bytes (layout in `gridlog_common::archive` and `docs/FORMAT.md`).
//!
//! ```text
//! DATA_DIR/archive/<first offset, 20 digits>.seg.zst     one per archived segment
//! DATA_DIR/archive/*.tmp                                 an archive being written (removed)
//! ```
//!
//! zstd, level [`ZSTD_LEVEL`]: meter readings are repetitive (ids, tags, slowly moving
//! registers), and the archive is what crosses a metered cellular uplink, so ratio matters
//! more than the last bit of speed; zstd compresses such data several times better than
//! lz4 at speeds far above what archiving needs (figures in docs/BENCHMARKS.md).
//!
//! Writing is crash-safe: temp file, fsync, rename, fsync directory, then read back and
//! verified against the SHA-256 of the original bytes. The caller removes the hot segment
//! only after that (and after recording the archive as an event), so a crash at any step
//! leaves the hot segment, a verified archive copy, or both.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use gridlog_common::archive::{ArchiveHeader, ARCHIVE_HEADER_BYTES};
use gridlog_common::Offset;
use sha2::{Digest, Sha256};

use crate::wal::io::Io;
use crate::wal::segment::{frame_at, FrameAt};
use crate::wal::Damage;

mod records;
use gridlog_common::segment::SEGMENT_HEADER_BYTES;
pub use records::{for_each_record, for_each_record_in_file, read_header, SegmentRecordsInvalid};

/// Name of the archive directory inside a data directory.
pub const ARCHIVE_DIR_NAME: &str = "archive";
/// zstd compression level of archived segments.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest original segment an archive may claim: a segment is at most 1 GiB.
pub const ARCHIVE_ORIGINAL_BYTES_MAX: u64 = crate::wal::SEGMENT_BYTES_MAX;

/// File name of the archive of the segment starting at `first_offset`.
pub fn archive_file_name(first_offset: Offset) -> String {
    format!("{first_offset:020}.seg.zst")
}

/// An archive file and its (checked) header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: ArchiveHeader,
    /// The file's size.
    pub file_bytes: u64,
}

/// Why an archive file is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A file-system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is damaged.
    #[error("damaged archive: {0}")]
    Damaged(Damage),
    /// Every place for a decompressed segment stayed taken for [`ARCHIVE_READ_WAIT`]; try
    /// again later (the cursor that returned this goes on where it was).
    #[error(
        "the archive's readers are busy (at most {ARCHIVE_SEGMENTS_IN_MEMORY_MAX} segments in memory); try again"
    )]
    Busy,
}

fn damaged(path: &Path, position: u64, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Damaged(Damage {
        path: path.to_path_buf(),
        position,
        reason: reason.into(),
    })
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The archive files of a data directory, by first offset, with those whose header is
/// damaged reported apart.
pub fn list(data_dir: &Path) -> io::Result<(Vec<ArchiveEntry>, Vec<Damage>)> {
    let dir = data_dir.join(ARCHIVE_DIR_NAME);
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((entries, damage)),
        Err(e) => return Err(e),
    };
    for entry in read {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || !entry.file_type()?.is_file() {
            continue;
        }
        // Maintenance may evict an archive file between the directory read and the open:
        // gone is not an error, just not listed.
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file_bytes = file.metadata()?.len();
        let header = read_header(&mut file, &path).map_err(|e| match e {
            ArchiveError::Damaged(d) => d.reason,
            other => other.to_string(),
        });
        match header {
            Ok(header) if name == archive_file_name(header.first_offset) => {
                entries.push(ArchiveEntry {
                    path,
                    header,
                    file_bytes,
                })
            }
            Ok(header) => damage.push(Damage {
                path,
                position: 0,
                reason: format!(
                    "header says first offset {} but the name does not",
                    header.first_offset
                ),
            }),
            Err(reason) => damage.push(Damage {
                path,
                position: 0,
                reason,
            }),
        }
    }
    entries.sort_by_key(|e| e.header.first_offset);
    Ok((entries, damage))
}

/// Largest buffer reserved up front for a segment an archive header claims: a claim is
/// checked only once the body decompresses, so a lying header (one downloaded from object
/// storage, say) costs at most this much before it is caught; a larger true segment grows
/// the buffer as its bytes come.
pub const ARCHIVE_RESERVE_BYTES_MAX: u64 = crate::wal::SEGMENT_BYTES_DEFAULT;

/// What is wrong with the bytes of an archive file ([`verify_bytes`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveInvalid {
    /// The header does not decode.
    #[error("{0}")]
    Header(#[from] gridlog_common::archive::ArchiveHeaderError),
    /// The compressed body is not as long as the header says.
    #[error("{actual} compressed bytes, header says {claimed}")]
    ArchivedBytes {
        /// Bytes after the header.
        actual: u64,
        /// What the header says.
        claimed: u64,
    },
    /// The header claims a segment larger than a segment may be.
    #[error("original size {claimed} exceeds {ARCHIVE_ORIGINAL_BYTES_MAX}")]
    TooLarge {
        /// What the header says.
        claimed: u64,
    },
    /// The header's offset range holds no record.
    #[error("the header's offset range {first}..{next} is empty")]
    EmptyRange {
        /// First offset.
        first: Offset,
        /// Next offset.
        next: Offset,
    },
    /// The body is not a zstd stream.
    #[error("cannot decompress: {0}")]
    Decompress(#[source] io::Error),
    /// The body decompresses to another length than the header says.
    #[error("decompresses to {actual} bytes, header says {claimed}")]
    OriginalBytes {
        /// Bytes decompressed (at most one past the claim).
        actual: u64,
        /// What the header says.
        claimed: u64,
    },
    /// CRC-32 or SHA-256 of the decompressed segment differ from the header's.
    #[error("checksum of the decompressed segment does not match")]
    Checksum,
}

impl ArchiveInvalid {
    /// Byte position in the file the fault is at: the header, or the body after it.
    pub fn position(&self) -> u64 {
        match self {
            ArchiveInvalid::Header(_)
            | ArchiveInvalid::TooLarge { .. }
            | ArchiveInvalid::EmptyRange { .. } => 0,
            _ => ARCHIVE_HEADER_BYTES as u64,
        }
    }
}

/// Checks the bytes of an archive file (read from disk or downloaded from central storage)
/// and returns its header and the original segment: header CRC, compressed length, claimed
/// size within [`ARCHIVE_ORIGINAL_BYTES_MAX`], a non-empty offset range, decompressed
/// length, CRC-32 and SHA-256. At most [`ARCHIVE_RESERVE_BYTES_MAX`] is reserved before the
/// body has proven its length, and decompression stops one byte past the claim.
pub fn verify_bytes(bytes: &[u8]) -> Result<(ArchiveHeader, Vec<u8>), ArchiveInvalid> {
    let header = ArchiveHeader::decode(bytes)?;
    let body = &bytes[ARCHIVE_HEADER_BYTES..];
    if body.len() as u64 != header.archived_bytes {
        return Err(ArchiveInvalid::ArchivedBytes {
            actual: body.len() as u64,
            claimed: header.archived_bytes,
        });
    }
    if header.original_bytes > ARCHIVE_ORIGINAL_BYTES_MAX {
        return Err(ArchiveInvalid::TooLarge {
            claimed: header.original_bytes,
        });
    }
    if header.first_offset >= header.next_offset {
        return Err(ArchiveInvalid::EmptyRange {
            first: header.first_offset,
            next: header.next_offset,
        });
    }
    let reserve = header.original_bytes.min(ARCHIVE_RESERVE_BYTES_MAX);
    let mut original = Vec::with_capacity(reserve as usize);
    zstd::stream::read::Decoder::new(body)
        .map_err(ArchiveInvalid::Decompress)?
        .take(header.original_bytes + 1)
        .read_to_end(&mut original)
        .map_err(ArchiveInvalid::Decompress)?;
    if original.len() as u64 != header.original_bytes {
        return Err(ArchiveInvalid::OriginalBytes {
            actual: original.len() as u64,
            claimed: header.original_bytes,
        });
    }
    if crc32fast::hash(&original) != header.original_crc32 || sha256(&original) != header.sha256 {
        return Err(ArchiveInvalid::Checksum);
    }
    Ok((header, original))
}

/// The archive of a sealed segment (`original`: its bytes to the end of the footer): its
/// header and the compressed bytes that follow it. The local archive and the shipper (which
/// ships a sealed segment before it is archived) build it the same way, so both name the
/// segment by the same SHA-256 of its original bytes.
pub fn compress(
    log_id: [u8; 16],
    first_offset: Offset,
    next_offset: Offset,
    original: &[u8],
) -> io::Result<(ArchiveHeader, Vec<u8>)> {
    let compressed = zstd::bulk::compress(original, ZSTD_LEVEL)?;
    let header = ArchiveHeader {
        log_id,
        first_offset,
        next_offset,
        original_bytes: original.len() as u64,
        archived_bytes: compressed.len() as u64,
        sha256: sha256(original),
        created_unix_ms: crate::wal::unix_ms_now(),
        original_crc32: crc32fast::hash(original),
    };
    Ok((header, compressed))
}

/// Reads an archive file and returns its header and the original segment bytes, verified
/// by [`verify_bytes`].
pub fn read_original(path: &Path) -> Result<(ArchiveHeader, Vec<u8>), ArchiveError> {
    let bytes = std::fs::read(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    verify_bytes(&bytes).map_err(|e| damaged(path, e.position(), e.to_string()))
}

/// Writes the archive of a sealed segment (`original`: its bytes to the end of the
/// footer), durably, and verifies it by reading it back. Returns its header.
pub(crate) fn write(
    io: &Io,
    data_dir: &Path,
    log_id: [u8; 16],
    first_offset: Offset,
    next_offset: Offset,
    original: &[u8],
) -> Result<ArchiveHeader, ArchiveError> {
    let dir = data_dir.join(ARCHIVE_DIR_NAME);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io {
            path: path.clone(),
            source,
        }
    };
    io.create_dir_durably(&dir)
        .map_err(|(path, source)| ArchiveError::Io { path, source })?;
    let (header, compressed) =
        compress(log_id, first_offset, next_offset, original).map_err(io_err(&dir))?;
    let path = io
        .write_file_atomically(
            &dir,
            &archive_file_name(first_offset),
            &[&header.encode(), &compressed],
        )
        .map_err(|(path, e)| io_err(&path)(e))?;
    let (read_back, _) = read_original(&path)?;
    if read_back != header {
        return Err(damaged(
            &path,
            0,
            "archive read back differs from what was written",
        ));
    }
    Ok(header)
}

/// Removes leftover temporary archive files (a crash while writing one).
pub(crate) fn remove_temporaries(io: &Io, data_dir: &Path) -> io::Result<()> {
    let dir = data_dir.join(ARCHIVE_DIR_NAME);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut removed = false;
    for entry in read {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            io.remove(&path)?;
            removed = true;
        }
    }
    if removed {
        io.sync_dir(&dir)?;
    }
    Ok(())
}

/// Most decompressed archived segments in memory at once, over every reader of the
/// archive (queries, live streams catching up, start-up replay): each reader holds the one
/// segment it is reading, so archive reads cost at most this many segments (64 MiB each by
/// default) however many readers there are.
pub const ARCHIVE_SEGMENTS_IN_MEMORY_MAX: usize = 2;
/// How long a reader waits for one of those places before it is told the archive is busy
/// ([`ArchiveError::Busy`]; HTTP answers 503 with `Retry-After`).
pub const ARCHIVE_READ_WAIT: Duration = Duration::from_secs(10);

/// Decompressed segments in memory now, and the signal that one was dropped.
static IN_MEMORY: Mutex<usize> = Mutex::new(0);
static RELEASED: Condvar = Condvar::new();

/// One archived segment's original bytes, verified, holding one of the
/// [`ARCHIVE_SEGMENTS_IN_MEMORY_MAX`] places until it is dropped.
struct Loaded {
    bytes: Vec<u8>,
}

impl Loaded {
    fn load(path: &Path) -> Result<Loaded, ArchiveError> {
        {
            let deadline = Instant::now() + ARCHIVE_READ_WAIT;
            let mut in_memory = IN_MEMORY.lock().unwrap_or_else(|e| e.into_inner());
            while *in_memory >= ARCHIVE_SEGMENTS_IN_MEMORY_MAX {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ArchiveError::Busy);
                }
                in_memory = RELEASED
                    .wait_timeout(in_memory, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            *in_memory += 1;
        }
        // From here the place is ours: `Loaded` gives it back when dropped, also if
        // reading fails.
        let mut loaded = Loaded { bytes: Vec::new() };
        loaded.bytes = read_original(path)?.1;
        Ok(loaded)
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({} bytes)", self.bytes.len())
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        *IN_MEMORY.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        RELEASED.notify_one();
    }
}

/// Reads records from archived segments in offset order, holding the decompressed segment
/// it is in (one of [`ARCHIVE_SEGMENTS_IN_MEMORY_MAX`]); [`ArchiveCursor::park`] lets go
/// of it while the reader waits on something else.
#[derive(Debug)]
pub struct ArchiveCursor {
    entries: std::vec::IntoIter<ArchiveEntry>,
    /// The archive file being read.
    current: Option<ArchiveEntry>,
    /// Its bytes, while loaded.
    loaded: Option<Loaded>,
    pos: usize,
    /// Records of the frame being read, not yet returned.
    pending: std::collections::VecDeque<(Offset, Vec<u8>)>,
    /// The next offset to return (records below are skipped).
    from: Offset,
    /// Stop before this offset (the hot log takes over there).
    until: Offset,
    /// Next offset expected from the archive (gap detection).
    expected: Offset,
}

impl ArchiveCursor {
    /// Records with `from <= offset < until` from the archive of `data_dir`.
    pub fn new(
        data_dir: &Path,
        from: Offset,
        until: Offset,
    ) -> Result<ArchiveCursor, ArchiveError> {
        let (entries, mut damage) = list(data_dir).map_err(|source| ArchiveError::Io {
            path: data_dir.join(ARCHIVE_DIR_NAME),
            source,
        })?;
        if let Some(d) = damage.pop() {
            return Err(ArchiveError::Damaged(d));
        }
        Ok(ArchiveCursor::over(entries, from, until))
    }

    /// Records with `from <= offset < until` from `entries`, an undamaged listing of the
    /// archive ([`list`]) the caller already has.
    pub fn over(entries: Vec<ArchiveEntry>, from: Offset, until: Offset) -> ArchiveCursor {
        let entries: Vec<ArchiveEntry> = entries
            .into_iter()
            .filter(|e| e.header.next_offset > from && e.header.first_offset < until)
            .collect();
        ArchiveCursor {
            entries: entries.into_iter(),
            current: None,
            loaded: None,
            pos: 0,
            pending: Default::default(),
            from,
            until,
            expected: from,
        }
    }

    /// Lets go of the decompressed segment (the position is kept; the next call loads it
    /// again): for a reader about to wait on something else, such as a slow client.
    pub fn park(&mut self) {
        self.loaded = None;
    }

    /// The next record as `(offset, bytes)`, or `None` when the range is done. A missing
    /// piece of the range is an error (`Damaged` naming the gap), never skipped.
    pub fn next_record(&mut self) -> Option<Result<(Offset, Vec<u8>), ArchiveError>> {
        loop {
            if let Some((offset, bytes)) = self.pending.pop_front() {
                if offset >= self.until {
                    self.pending.clear();
                    self.from = self.until;
                    return None;
                }
                self.from = offset + 1;
                return Some(Ok((offset, bytes)));
            }
            if self.from >= self.until {
                return None;
            }
            if self.current.is_none() {
                let Some(entry) = self.entries.next() else {
                    let reason = format!(
                        "offsets {}..{} are in no archive file",
                        self.from, self.until
                    );
                    self.from = self.until;
                    return Some(Err(damaged(Path::new(ARCHIVE_DIR_NAME), 0, reason)));
                };
                if entry.header.first_offset > self.from {
                    let reason = format!(
                        "offsets {}..{} are in no archive file",
                        self.from, entry.header.first_offset
                    );
                    self.from = self.until;
                    return Some(Err(damaged(&entry.path, 0, reason)));
                }
                self.pos = SEGMENT_HEADER_BYTES;
                self.expected = entry.header.first_offset;
                self.current = Some(entry);
            }
            let entry = self.current.as_ref().expect("chosen above");
            if self.loaded.is_none() {
                match Loaded::load(&entry.path) {
                    Ok(loaded) => self.loaded = Some(loaded),
                    // Nothing lost: the same call later goes on from here.
                    Err(ArchiveError::Busy) => return Some(Err(ArchiveError::Busy)),
                    Err(e) => {
                        self.from = self.until;
                        return Some(Err(e));
                    }
                }
            }
            let bytes = &self.loaded.as_ref().expect("loaded above").bytes;
            let path = &entry.path;
            match frame_at(bytes, self.pos) {
                FrameAt::Batch { view, len } => {
                    if view.first_offset != self.expected {
                        let e = damaged(path, self.pos as u64, "frame offsets are not continuous");
                        self.from = self.until;
                        return Some(Err(e));
                    }
                    self.expected = view.next_offset();
                    self.pos += len;
                    let from = self.from;
                    self.pending.extend(
                        view.records()
                            .filter(|(o, _)| *o >= from)
                            .map(|(o, r)| (o, r.to_vec())),
                    );
                }
                // A round's end: checked when the archive was written and loaded.
                FrameAt::Commit { len, .. } => self.pos += len,
                FrameAt::Footer { .. } | FrameAt::End => {
                    self.current = None;
                    self.loaded = None;
                }
                FrameAt::Invalid(reason) => {
                    let e = damaged(path, self.pos as u64, reason);
                    self.from = self.until;
                    return Some(Err(e));
                }
            }
        }
    }
}
