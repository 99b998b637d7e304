//! What a segment/snapshot round handles: an object waiting to be shipped (from a file, or a
//! sealed segment of the hot log), loaded and checked, how each upload ended, and the events
//! that record it.

use std::path::PathBuf;

use bytes::Bytes;
use gridlog_common::domain::{Event, ShipObject};
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::archive::verify_bytes;
use gridlog_firmware::engine::Engine;

use super::super::layout::{Layout, ObjectName};
use super::super::manifest::{SegmentEntry, SnapshotEntry};
use super::super::{sha256, Sha256};

/// An object waiting to be shipped.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) name: ObjectName,
    pub(super) source: Source,
    /// The file's size; for a sealed segment not yet archived, its size in the hot log (the
    /// object will be smaller: it is compressed when loaded).
    pub(super) object_bytes: u64,
    pub(super) created_unix_ms: u64,
    /// For a segment, its SHA-256 (from the archive header, or computed when its intent is
    /// recorded), checked again when loaded.
    pub(super) segment_sha: Option<Sha256>,
}

/// Where a pending object's bytes come from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// An archive file or a snapshot file.
    File(PathBuf),
    /// A sealed segment still in the hot log: shipped when sealed, not when archived. It is
    /// compressed into the archive's format when loaded, so the object is the same whether
    /// it was shipped from here or from the archive file later.
    Sealed,
}

impl Source {
    pub(super) fn describe(&self, name: ObjectName) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Sealed => format!("sealed segment {name:?} of the hot log"),
        }
    }
}

/// How one object of a round ended.
#[derive(Debug)]
pub(super) enum ObjectOutcome {
    /// Verified in the store.
    Stored(Confirmed, u64, bool),
    /// The store holds something else: alarm, keep local.
    Conflict(String),
    /// The local file is gone or damaged.
    Local(String),
    /// A sealed segment left the hot log meanwhile (archived): its archive file ships it
    /// in a later round.
    Moved,
}

/// An object verified in the store during a round.
#[derive(Debug, Clone)]
pub(super) enum Confirmed {
    Segment(SegmentEntry),
    Snapshot(SnapshotEntry),
}

/// A local object read and checked, ready to upload.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) name: ObjectName,
    pub(super) bytes: Bytes,
    pub(super) object_sha: Sha256,
    /// For segments: the segment's SHA-256 and size (from the verified archive header).
    pub(super) segment: Option<(Sha256, u64)>,
}

/// Reads and checks a pending object; `None` if it was a sealed segment that left the hot
/// log meanwhile.
pub(super) fn load(engine: &Engine, p: &Pending) -> Result<Option<Loaded>, String> {
    let path = match &p.source {
        Source::File(path) => path,
        Source::Sealed => return load_sealed(engine, p),
    };
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let segment = match p.name {
        ObjectName::Segment(first, next) => {
            let (header, _) = verify_bytes(&bytes).map_err(|e| e.to_string())?;
            if (header.first_offset, header.next_offset) != (first, next)
                || p.segment_sha.is_some_and(|sha| sha.0 != header.sha256)
            {
                return Err("the archive file changed since it was listed".into());
            }
            Some((Sha256(header.sha256), header.original_bytes))
        }
        ObjectName::Snapshot(_) => {
            gridlog_firmware::snapshot::verify_file(path).map_err(|e| e.to_string())?;
            None
        }
        ObjectName::Manifest(_) => None,
        ObjectName::Chunk(..) => return Err("chunks are read from the log, not a file".into()),
        ObjectName::RollupPart(..) => {
            return Err("rollup parts are read from the rollup store, not a file".into())
        }
    };
    Ok(Some(Loaded {
        name: p.name,
        object_sha: sha256(&bytes),
        bytes: Bytes::from(bytes),
        segment,
    }))
}

/// A sealed segment of the hot log in the archive's format (the object its archive file
/// would be, but for the creation time in the header), checked against its intent's hash.
pub(super) fn load_sealed(engine: &Engine, p: &Pending) -> Result<Option<Loaded>, String> {
    let ObjectName::Segment(first, next) = p.name else {
        return Err("only segments are read from the hot log".into());
    };
    let Some(original) = engine.wal().sealed_segment(first) else {
        return Ok(None);
    };
    let (header, compressed) =
        gridlog_firmware::archive::compress(engine.wal().log_id(), first, next, &original)
            .map_err(|e| e.to_string())?;
    if p.segment_sha.is_some_and(|sha| sha.0 != header.sha256) {
        return Err("the sealed segment changed since its intent was recorded".into());
    }
    let mut bytes =
        Vec::with_capacity(gridlog_common::archive::ARCHIVE_HEADER_BYTES + compressed.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&compressed);
    Ok(Some(Loaded {
        name: p.name,
        object_sha: sha256(&bytes),
        bytes: Bytes::from(bytes),
        segment: Some((Sha256(header.sha256), header.original_bytes)),
    }))
}

pub(super) fn unix_ms_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Loaded {
    pub(super) fn kind(&self) -> &'static str {
        match self.name {
            ObjectName::Segment(..) => "segment",
            ObjectName::Snapshot(_) => "snapshot",
            ObjectName::Manifest(_) => "manifest",
            ObjectName::Chunk(..) => "chunk",
            ObjectName::RollupPart(..) => "rollup",
        }
    }

    /// A different archive of the same segment (archived again after a crash: another
    /// creation time in the header) is the same content.
    pub(super) fn same_content(&self, stored: &[u8]) -> bool {
        match (self.name, self.segment) {
            (ObjectName::Segment(first, next), Some((sha, _))) => {
                verify_bytes(stored).is_ok_and(|(h, _)| {
                    h.sha256 == sha.0 && h.first_offset == first && h.next_offset == next
                })
            }
            _ => false,
        }
    }

    /// The manifest entry of this object as the store holds it: `object_sha` and
    /// `object_bytes` are the stored bytes' (which differ from ours for an equivalent
    /// archive of the same segment).
    pub(super) fn confirmed(
        &self,
        layout: &Layout,
        object_sha: Sha256,
        object_bytes: u64,
    ) -> Confirmed {
        let key = layout.key(self.name).to_string();
        match self.name {
            ObjectName::Segment(first_offset, next_offset) => {
                let (segment_sha, original_bytes) = self.segment.unwrap_or_default();
                Confirmed::Segment(SegmentEntry {
                    key,
                    first_offset,
                    next_offset,
                    object_bytes,
                    object_sha256: object_sha,
                    original_bytes,
                    segment_sha256: segment_sha,
                })
            }
            // `load` refuses chunks and rollup parts, so neither gets here.
            ObjectName::Snapshot(next_offset)
            | ObjectName::Manifest(next_offset)
            | ObjectName::Chunk(_, next_offset)
            | ObjectName::RollupPart(next_offset, ..) => Confirmed::Snapshot(SnapshotEntry {
                key,
                next_offset,
                object_bytes,
                object_sha256: object_sha,
                rollups: Vec::new(),
            }),
        }
    }
}

pub(super) fn event_range(name: ObjectName) -> (ShipObject, Offset, Offset) {
    match name {
        ObjectName::Segment(first, next) => (ShipObject::Segment, first, next),
        ObjectName::Snapshot(next) => (ShipObject::Snapshot, FIRST_OFFSET, next),
        ObjectName::Manifest(seq) => (ShipObject::Manifest, seq, seq),
        // Tail rounds and rollup parts record no events; the backlog never holds either.
        ObjectName::Chunk(first, next) => (ShipObject::Segment, first, next),
        ObjectName::RollupPart(seq, ..) => (ShipObject::Snapshot, seq, seq),
    }
}

pub(super) fn confirmed_event(c: &Confirmed) -> Event {
    match c {
        Confirmed::Segment(s) => Event::ShipConfirmed {
            object: ShipObject::Segment,
            first_offset: s.first_offset,
            next_offset: s.next_offset,
            sha256: s.segment_sha256.0,
            bytes: s.object_bytes,
        },
        Confirmed::Snapshot(s) => Event::ShipConfirmed {
            object: ShipObject::Snapshot,
            first_offset: FIRST_OFFSET,
            next_offset: s.next_offset,
            sha256: s.object_sha256.0,
            bytes: s.object_bytes,
        },
    }
}
