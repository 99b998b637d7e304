//! Snapshots of the image: an optimisation of start-up, never the truth.
//!
//! ```text
//!  0        8        10       12       16                32        40        48        56        64        72       76       80
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+---------+---------+--------+--------+
//!  | magic  |version |hdr len | flags  | log id          | next    | created | image   | body    | events  | body   | header |
//!  | 8 B    | u16 LE | u16 LE | u32 LE | 16 B            | offset  | unix ms | digest  | bytes   |         | crc32  | crc32  |
//!  |        |        |        | = 0    |                 | u64 LE  | u64 LE  | u64 LE  | u64 LE  | u64 LE  | u32 LE | u32 LE |
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+---------+---------+--------+--------+
//!  magic = "GLOGSNAP"; header crc = CRC-32 of bytes 0..76; body crc = CRC-32 of the body
//!  then `body bytes` of body: postcard of the image's parts (entities in id order)
//! ```
//!
//! `next offset` is one past the last event the snapshot contains: start-up loads the newest
//! valid snapshot and replays the log from there. A snapshot is written atomically (temp
//! file, fsync, rename, fsync directory) and checked on load (both CRCs, the version, the
//! log id, and the digest of the decoded image against the header's). A damaged snapshot is
//! skipped with a warning for an older one, or a full replay: it can cost time, never data.
//!
//! Versions: 5 is written (a meter's rollups are its current day; the days it sealed that
//! the rollup store does not hold yet are the body's queue). 4 (every meter's rollups a
//! ring of every interval) and 3 (also meters without their reading times, no remembered
//! readings) are still read and upgraded: the digest is checked as that format computed
//! it, then a format-3 meter's reading times before its newest reading are taken as
//! forgotten, and every meter's days before its current one are queued for the store.

use std::path::{Path, PathBuf};

use gridlog_common::Offset;

use crate::engine::image::{
    Image, ImageCapture, ImageParts, ImagePartsRef, ImagePartsV3, ImagePartsV4,
};
use crate::engine::sealed::SealedQueue;
use crate::wal::io::Io;

/// Name of the snapshot directory inside a data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";
/// The eight bytes every snapshot file starts with.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"GLOGSNAP";
/// The snapshot format this build writes (and reads).
pub const SNAPSHOT_VERSION: u16 = 5;
/// The older snapshot formats this build still reads, upgrading them as it loads.
pub const SNAPSHOT_VERSIONS_UPGRADED: [u16; 2] = [3, 4];

/// Byte offset of the magic.
pub const S_MAGIC_AT: usize = 0;
/// Byte offset of the version.
pub const S_VERSION_AT: usize = S_MAGIC_AT + 8;
/// Byte offset of the header length.
pub const S_HEADER_LEN_AT: usize = S_VERSION_AT + 2;
/// Byte offset of the flags.
pub const S_FLAGS_AT: usize = S_HEADER_LEN_AT + 2;
/// Byte offset of the log id.
pub const S_LOG_ID_AT: usize = S_FLAGS_AT + 4;
/// Byte offset of the next offset.
pub const S_NEXT_OFFSET_AT: usize = S_LOG_ID_AT + 16;
/// Byte offset of the creation time.
pub const S_CREATED_AT: usize = S_NEXT_OFFSET_AT + 8;
/// Byte offset of the image digest.
pub const S_DIGEST_AT: usize = S_CREATED_AT + 8;
/// Byte offset of the body length.
pub const S_BODY_BYTES_AT: usize = S_DIGEST_AT + 8;
/// Byte offset of the event count.
pub const S_EVENTS_AT: usize = S_BODY_BYTES_AT + 8;
/// Byte offset of the body CRC.
pub const S_BODY_CRC_AT: usize = S_EVENTS_AT + 8;
/// Byte offset of the header CRC.
pub const S_CRC_AT: usize = S_BODY_CRC_AT + 4;
/// Size of the header; the body follows.
pub const SNAPSHOT_HEADER_BYTES: usize = S_CRC_AT + 4;

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 80);

/// A snapshot header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Its format: [`SNAPSHOT_VERSION`] or, read only, one of [`SNAPSHOT_VERSIONS_UPGRADED`].
    pub version: u16,
    /// The log the snapshot belongs to.
    pub log_id: [u8; 16],
    /// One past the last event it contains.
    pub next_offset: Offset,
    /// When it was written.
    pub created_unix_ms: u64,
    /// Digest of the image it holds.
    pub digest: u64,
    /// Length of the body.
    pub body_bytes: u64,
    /// Events applied to the image.
    pub events: u64,
    /// CRC-32 of the body.
    pub body_crc32: u32,
}

/// Why a snapshot is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file-system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is damaged or not a snapshot of this log.
    #[error("unusable snapshot {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn invalid(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl SnapshotHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut out = [0u8; SNAPSHOT_HEADER_BYTES];
        out[S_MAGIC_AT..S_VERSION_AT].copy_from_slice(&SNAPSHOT_MAGIC);
        out[S_VERSION_AT..S_HEADER_LEN_AT].copy_from_slice(&self.version.to_le_bytes());
        out[S_HEADER_LEN_AT..S_FLAGS_AT]
            .copy_from_slice(&(SNAPSHOT_HEADER_BYTES as u16).to_le_bytes());
        out[S_LOG_ID_AT..S_NEXT_OFFSET_AT].copy_from_slice(&self.log_id);
        out[S_NEXT_OFFSET_AT..S_CREATED_AT].copy_from_slice(&self.next_offset.to_le_bytes());
        out[S_CREATED_AT..S_DIGEST_AT].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        out[S_DIGEST_AT..S_BODY_BYTES_AT].copy_from_slice(&self.digest.to_le_bytes());
        out[S_BODY_BYTES_AT..S_EVENTS_AT].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[S_EVENTS_AT..S_BODY_CRC_AT].copy_from_slice(&self.events.to_le_bytes());
        out[S_BODY_CRC_AT..S_CRC_AT].copy_from_slice(&self.body_crc32.to_le_bytes());
        let crc = crc32fast::hash(&out[..S_CRC_AT]);
        out[S_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header. Never panics, whatever the bytes.
    pub fn decode(b: &[u8]) -> Result<SnapshotHeader, String> {
        let b = b
            .get(..SNAPSHOT_HEADER_BYTES)
            .ok_or("shorter than a snapshot header")?;
        if b[..8] != SNAPSHOT_MAGIC {
            return Err("not a gridlog snapshot (bad magic)".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        if crc32fast::hash(&b[..S_CRC_AT]) != u32_at(S_CRC_AT) {
            return Err("bad header CRC".into());
        }
        let version = u16::from_le_bytes([b[S_VERSION_AT], b[S_VERSION_AT + 1]]);
        if version != SNAPSHOT_VERSION && !SNAPSHOT_VERSIONS_UPGRADED.contains(&version) {
            return Err(format!("snapshot format {version} is not readable by this build (reads {SNAPSHOT_VERSIONS_UPGRADED:?} and {SNAPSHOT_VERSION})"));
        }
        if usize::from(u16::from_le_bytes([
            b[S_HEADER_LEN_AT],
            b[S_HEADER_LEN_AT + 1],
        ])) != SNAPSHOT_HEADER_BYTES
            || u32_at(S_FLAGS_AT) != 0
        {
            return Err("bad header layout".into());
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[S_LOG_ID_AT..S_NEXT_OFFSET_AT]);
        Ok(SnapshotHeader {
            version,
            log_id,
            next_offset: u64_at(S_NEXT_OFFSET_AT),
            created_unix_ms: u64_at(S_CREATED_AT),
            digest: u64_at(S_DIGEST_AT),
            body_bytes: u64_at(S_BODY_BYTES_AT),
            events: u64_at(S_EVENTS_AT),
            body_crc32: u32_at(S_BODY_CRC_AT),
        })
    }
}

/// File name of the snapshot whose image ends before `next_offset`.
pub fn snapshot_file_name(next_offset: Offset) -> String {
    format!("{next_offset:020}.snap")
}

/// A snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The file.
    pub path: PathBuf,
    /// One past the last event it contains (from its name).
    pub next_offset: Offset,
    /// Its size.
    pub file_bytes: u64,
}

/// The snapshot files of a data directory, oldest first (by name; contents unchecked).
pub fn list(data_dir: &Path) -> std::io::Result<Vec<SnapshotEntry>> {
    let dir = data_dir.join(SNAPSHOT_DIR_NAME);
    let mut out = Vec::new();
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in read {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(digits) = name.strip_suffix(".snap") else {
            continue;
        };
        if digits.len() != 20 {
            continue;
        }
        if let Ok(next_offset) = digits.parse() {
            // Compaction may remove a snapshot between the directory read and this look:
            // gone is not an error, just not listed.
            let file_bytes = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(SnapshotEntry {
                path: entry.path(),
                next_offset,
                file_bytes,
            });
        }
    }
    out.sort_by_key(|e| e.next_offset);
    Ok(out)
}

/// Reads and fully checks a snapshot file, returning its header and image.
pub fn load(
    path: &Path,
    log_id: Option<[u8; 16]>,
) -> Result<(SnapshotHeader, Image), SnapshotError> {
    let bytes = std::fs::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = SnapshotHeader::decode(&bytes).map_err(|r| invalid(path, r))?;
    if log_id.is_some_and(|id| id != header.log_id) {
        return Err(invalid(path, "belongs to another log (log id differs)"));
    }
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() as u64 != header.body_bytes {
        return Err(invalid(
            path,
            format!(
                "body is {} bytes, header says {}",
                body.len(),
                header.body_bytes
            ),
        ));
    }
    if crc32fast::hash(body) != header.body_crc32 {
        return Err(invalid(path, "bad body CRC"));
    }
    let parts = decode_body(path, &header, body)?;
    if parts.next_offset != header.next_offset {
        return Err(invalid(path, "body and header disagree on the offset"));
    }
    // The rollup queue is outside the digest: checked here, entry by entry.
    let mut previous = 0;
    for (i, entry) in parts.sealed.iter().enumerate() {
        if !SealedQueue::is_plausible(entry, previous, parts.next_offset) {
            return Err(invalid(
                path,
                format!("rollup queue entry {i} is malformed"),
            ));
        }
        previous = entry.offset;
    }
    let name_offset = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".snap"))
        .and_then(|d| d.parse::<Offset>().ok());
    if name_offset != Some(header.next_offset) {
        return Err(invalid(path, "file name and header disagree on the offset"));
    }
    let image = Image::from_parts(parts);
    // An upgraded body's digest was checked in its own format.
    let digest = image.digest();
    if header.version == SNAPSHOT_VERSION && digest != header.digest {
        return Err(invalid(
            path,
            format!(
                "image digest {digest:016x} differs from the header's {:016x}",
                header.digest
            ),
        ));
    }
    Ok((header, image))
}

/// The body's image parts in today's shape: an older body is decoded as such, its digest
/// checked as its format computed it, and upgraded.
fn decode_body(
    path: &Path,
    header: &SnapshotHeader,
    body: &[u8],
) -> Result<ImageParts, SnapshotError> {
    let undecodable = |e: postcard::Error| invalid(path, format!("body does not decode: {e}"));
    if header.version == SNAPSHOT_VERSION {
        return postcard::from_bytes(body).map_err(undecodable);
    }
    let (digest, parts) = if header.version == 3 {
        let parts: ImagePartsV3 = postcard::from_bytes(body).map_err(undecodable)?;
        (parts.digest(), parts.upgrade())
    } else {
        let parts: ImagePartsV4 = postcard::from_bytes(body).map_err(undecodable)?;
        (parts.digest(), parts)
    };
    if digest != header.digest {
        return Err(invalid(
            path,
            format!(
                "format-{} image digest {digest:016x} differs from the header's {:016x}",
                header.version, header.digest
            ),
        ));
    }
    parts
        .upgrade()
        .map_err(|e| invalid(path, format!("format-{} rollups: {e}", header.version)))
}

/// Checks a snapshot file without keeping its image.
pub fn verify_file(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    load(path, None).map(|(h, _)| h)
}

/// Writes a snapshot of `capture` atomically; returns its header and path.
pub(crate) fn write(
    io: &Io,
    data_dir: &Path,
    log_id: [u8; 16],
    capture: &ImageCapture,
) -> Result<(SnapshotHeader, PathBuf), SnapshotError> {
    let dir = data_dir.join(SNAPSHOT_DIR_NAME);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            path: path.clone(),
            source,
        }
    };
    io.create_dir_durably(&dir)
        .map_err(|(path, source)| SnapshotError::Io { path, source })?;
    let parts = ImagePartsRef {
        next_offset: capture.next_offset,
        events: capture.events,
        rollup_options: capture.rollup_options,
        site: capture.site,
        command_ids: &capture.command_ids,
        readings: &capture.readings,
        entities: capture.entities.iter().map(|(id, e)| (id, &**e)).collect(),
        sealed: capture.sealed.iter().map(|e| &**e).collect(),
        rollups_stored_below: capture.rollups_stored_below,
    };
    let body =
        postcard::to_allocvec(&parts).map_err(|e| invalid(&dir, format!("cannot encode: {e}")))?;
    let header = SnapshotHeader {
        version: SNAPSHOT_VERSION,
        log_id,
        next_offset: capture.next_offset,
        created_unix_ms: crate::wal::unix_ms_now(),
        digest: capture.digest(),
        body_bytes: body.len() as u64,
        events: capture.events,
        body_crc32: crc32fast::hash(&body),
    };
    let path = io
        .write_file_atomically(
            &dir,
            &snapshot_file_name(capture.next_offset),
            &[&header.encode(), &body],
        )
        .map_err(|(path, e)| io_err(&path)(e))?;
    Ok((header, path))
}

/// Removes all but the newest `keep` snapshots (and leftover temporaries).
pub(crate) fn compact(
    io: &Io,
    data_dir: &Path,
    keep: usize,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let dir = data_dir.join(SNAPSHOT_DIR_NAME);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            path: path.clone(),
            source,
        }
    };
    let mut removed = Vec::new();
    if let Ok(read) = std::fs::read_dir(&dir) {
        for entry in read.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                io.remove(&entry.path()).map_err(io_err(&entry.path()))?;
                removed.push(entry.path());
            }
        }
    }
    let all = list(data_dir).map_err(io_err(&dir))?;
    let excess = all.len().saturating_sub(keep.max(1));
    for entry in &all[..excess] {
        io.remove(&entry.path).map_err(io_err(&entry.path))?;
        removed.push(entry.path.clone());
    }
    if !removed.is_empty() {
        io.sync_dir(&dir).map_err(io_err(&dir))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_round_trip_and_bit_flips() {
        assert_eq!(
            [
                S_NEXT_OFFSET_AT,
                S_CREATED_AT,
                S_DIGEST_AT,
                S_BODY_BYTES_AT,
                S_EVENTS_AT,
                S_BODY_CRC_AT,
                S_CRC_AT
            ],
            [32, 40, 48, 56, 64, 72, 76]
        );
        let h = SnapshotHeader {
            version: SNAPSHOT_VERSION,
            log_id: [5; 16],
            next_offset: 42,
            created_unix_ms: 7,
            digest: 9,
            body_bytes: 100,
            events: 41,
            body_crc32: 3,
        };
        let bytes = h.encode();
        assert_eq!(SnapshotHeader::decode(&bytes), Ok(h));
        for bit in 0..SNAPSHOT_HEADER_BYTES * 8 {
            let mut d = bytes;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(SnapshotHeader::decode(&d).is_err(), "bit {bit}");
        }
    }
}
