//! Manifests: the store's own account of what it holds, one JSON object per shipping round,
//! written after every object it lists has been verified in the store, each naming the key
//! and SHA-256 of the one before (a chain).
//!
//! ```json
//! {
//!   "format": "gridlog-manifest", "version": 1,
//!   "site_id": "plant-7", "lineage": "9f0c…", "log_id": "1b2e…",
//!   "sequence": 42,
//!   "previous": {"key": "…/manifests/00000000000000000041.json", "sha256": "…"},
//!   "created_unix_ms": 1760000000000,
//!   "segments": [{"key": "…", "first_offset": 1, "next_offset": 5000, "object_bytes": 81234,
//!                 "object_sha256": "…", "original_bytes": 1048576, "segment_sha256": "…"}],
//!   "snapshots": [{"key": "…", "next_offset": 5000, "object_bytes": 2345, "object_sha256": "…"}],
//!   "chunks": [{"key": "…", "first_offset": 5000, "next_offset": 5120, "object_bytes": 912,
//!               "object_sha256": "…"}]
//! }
//! ```
//!
//! Version 2 added `chunks` (records shipped before their segment, see `super::chunk`);
//! version 1 manifests are read as having none. A chunk a later manifest's segment covers
//! wholly is superseded: the shipper deletes it once that segment is verified, so a chunk
//! listed in an old manifest may be gone by design (a restore and `ship --check` know).
//!
//! ```text
//! ```
//!
//! A manifest lists the objects verified in its round only; the chain back to sequence 1
//! (whose `previous` is null) lists the whole history. A gap (a missing manifest), a changed
//! manifest (its hash differs from what the next one names) or a second writer (two
//! manifests naming the same previous one) shows up when the chain is walked. Sequence
//! numbers run on across lineages: the first manifest after a restore continues the
//! sequence of the history it was restored from and names its newest manifest.

use serde::{Deserialize, Serialize};

use super::Sha256;

/// The `format` field.
pub const MANIFEST_FORMAT: &str = "gridlog-manifest";
/// The `version` this build writes and reads.
pub const MANIFEST_VERSION: u32 = 2;
/// The oldest `version` this build reads.
pub const MANIFEST_VERSION_MIN: u32 = 1;
/// Largest manifest accepted when reading one (a round lists at most a few thousand
/// objects; a bigger one is not ours).
pub const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A manifest's name and hash, as the next one names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLink {
    /// Its key.
    pub key: String,
    /// SHA-256 of its bytes (hex in JSON).
    pub sha256: Sha256,
}

/// A shipped segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Its key.
    pub key: String,
    /// Offset of its first record.
    pub first_offset: u64,
    /// One past its last record.
    pub next_offset: u64,
    /// Size of the object (the archive file).
    pub object_bytes: u64,
    /// SHA-256 of the object (hex in JSON).
    pub object_sha256: Sha256,
    /// Size of the segment it decompresses to.
    pub original_bytes: u64,
    /// SHA-256 of that segment (hex in JSON; the archive header's, and the log's
    /// `ShipConfirmed`).
    pub segment_sha256: Sha256,
}

/// A shipped snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Its key.
    pub key: String,
    /// One past the last event it holds.
    pub next_offset: u64,
    /// Size of the object (the snapshot file).
    pub object_bytes: u64,
    /// SHA-256 of the object (hex in JSON).
    pub object_sha256: Sha256,
}

/// A shipped chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Its key.
    pub key: String,
    /// Offset of its first record.
    pub first_offset: u64,
    /// One past its last record.
    pub next_offset: u64,
    /// Size of the object.
    pub object_bytes: u64,
    /// SHA-256 of the object (hex in JSON).
    pub object_sha256: Sha256,
}

/// One manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The site.
    pub site_id: String,
    /// The lineage that wrote it.
    pub lineage: String,
    /// The log's id (hex), as in every segment header.
    pub log_id: String,
    /// 1, 2, 3 … along the chain.
    pub sequence: u64,
    /// The manifest before it; null for the first.
    pub previous: Option<ManifestLink>,
    /// When it was written.
    pub created_unix_ms: u64,
    /// Segments verified in this round.
    pub segments: Vec<SegmentEntry>,
    /// Snapshots verified in this round.
    pub snapshots: Vec<SnapshotEntry>,
    /// Chunks verified in this round (version 2).
    #[serde(default)]
    pub chunks: Vec<ChunkEntry>,
}

/// Why bytes are not a manifest this build can use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Larger than [`MANIFEST_BYTES_MAX`].
    #[error("manifest is {bytes} bytes; the most accepted is {MANIFEST_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Not JSON of a manifest's shape.
    #[error("not a manifest: {0}")]
    NotAManifest(#[source] serde_json::Error),
    /// Another format, or a version this build does not read.
    #[error(
        "manifest format {format:?} version {version} is not {MANIFEST_FORMAT:?} version {MANIFEST_VERSION_MIN} to {MANIFEST_VERSION}"
    )]
    Unsupported {
        /// Its format.
        format: String,
        /// Its version.
        version: u32,
    },
    /// The first manifest names a previous one, or a later one does not.
    #[error("manifest {sequence} must name a previous manifest exactly when it is not the first")]
    Previous {
        /// Its sequence number.
        sequence: u64,
    },
    /// An object with an empty offset range.
    #[error("{kind} {key} has an empty offset range")]
    EmptyRange {
        /// `segment` or `chunk`.
        kind: &'static str,
        /// Its key.
        key: String,
    },
}

impl Manifest {
    /// The bytes to upload.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks a manifest's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MANIFEST_BYTES_MAX {
            return Err(ManifestError::TooLarge { bytes: bytes.len() });
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(ManifestError::NotAManifest)?;
        if m.format != MANIFEST_FORMAT
            || !(MANIFEST_VERSION_MIN..=MANIFEST_VERSION).contains(&m.version)
        {
            return Err(ManifestError::Unsupported {
                format: m.format,
                version: m.version,
            });
        }
        if m.sequence == 0 || (m.sequence == 1) != m.previous.is_none() {
            return Err(ManifestError::Previous {
                sequence: m.sequence,
            });
        }
        if let Some(s) = m.segments.iter().find(|s| s.first_offset >= s.next_offset) {
            return Err(ManifestError::EmptyRange {
                kind: "segment",
                key: s.key.clone(),
            });
        }
        if let Some(c) = m.chunks.iter().find(|c| c.first_offset >= c.next_offset) {
            return Err(ManifestError::EmptyRange {
                kind: "chunk",
                key: c.key.clone(),
            });
        }
        Ok(m)
    }

    /// One past the highest offset any object of this manifest covers.
    pub fn next_offset(&self) -> u64 {
        let segments = self.segments.iter().map(|s| s.next_offset);
        let snapshots = self.snapshots.iter().map(|s| s.next_offset);
        let chunks = self.chunks.iter().map(|c| c.next_offset);
        segments.chain(snapshots).chain(chunks).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sequence: u64) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            site_id: "s".into(),
            lineage: "l".into(),
            log_id: "00".into(),
            sequence,
            previous: (sequence > 1).then(|| ManifestLink {
                key: "k".into(),
                sha256: Sha256::of(b"h"),
            }),
            created_unix_ms: 1,
            segments: vec![SegmentEntry {
                key: "a".into(),
                first_offset: 1,
                next_offset: 9,
                object_bytes: 10,
                object_sha256: Sha256::of(b"x"),
                original_bytes: 20,
                segment_sha256: Sha256::of(b"y"),
            }],
            snapshots: vec![],
            chunks: vec![],
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let m = sample(2);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m.clone());
        assert_eq!(m.next_offset(), 9);
        let mut first_with_previous = sample(1);
        first_with_previous.previous = m.previous.clone();
        assert!(Manifest::decode(&first_with_previous.encode()).is_err());
        assert!(Manifest::decode(b"{}").is_err());
        // Version 1 (no chunks) still reads.
        let mut v1 = sample(1);
        v1.version = 1;
        let text = String::from_utf8(v1.encode()).unwrap();
        let without_chunks = text.replace(",\n  \"chunks\": []", "");
        assert!(!without_chunks.contains("chunks"), "{without_chunks}");
        assert_eq!(Manifest::decode(without_chunks.as_bytes()).unwrap(), v1);
        let mut other = sample(1);
        other.version = 9;
        assert!(matches!(
            Manifest::decode(&other.encode()),
            Err(ManifestError::Unsupported { version: 9, .. })
        ));
    }
}
