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
//!   "snapshots": [{"key": "…", "next_offset": 5000, "object_bytes": 2345, "object_sha256": "…",
//!                  "rollups": [{"spill_seq": 9, "through_offset": 4990, "file_bytes": 5242880,
//!                               "file_sha256": "…", "parts": [{"key": "…", "object_bytes": 1048576,
//!                                                              "object_sha256": "…"}, …]}]}],
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
//! Version 3 added a snapshot's `rollups`: the rollup store's spill files in use when the
//! snapshot shipped (see `shipper::rollups_round`), each stored as parts of at most
//! [`ROLLUP_PART_BYTES_MAX`] bytes; every spill's `through_offset` is at most the snapshot's
//! `next_offset`, so a restore of the snapshot can start with them. Older manifests' snapshots
//! have none (a restore from one starts with an empty rollup store).
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
pub const MANIFEST_VERSION: u32 = 3;
/// The oldest `version` this build reads.
pub const MANIFEST_VERSION_MIN: u32 = 1;
/// Largest manifest accepted when reading one (a round lists at most a few thousand
/// objects; a bigger one is not ours).
pub const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest rollup part accepted when reading a manifest (the shipper writes parts of
/// `shipper::rollups_round::ROLLUP_PART_BYTES`; a restore holds one part in memory at a time).
pub const ROLLUP_PART_BYTES_MAX: u64 = 64 * 1024 * 1024;

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
    /// The rollup store's spills a restore of this snapshot starts with (version 3; none
    /// before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollups: Vec<RollupEntry>,
}

/// A rollup spill file shipped with a snapshot, in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupEntry {
    /// Its sequence number (its file name in `rollups/`, and its header's).
    pub spill_seq: u64,
    /// Its header's coverage: every rollup record made by an event below it is in it or an
    /// older spill of the set.
    pub through_offset: u64,
    /// Size of the whole file.
    pub file_bytes: u64,
    /// SHA-256 of the whole file (hex in JSON).
    pub file_sha256: Sha256,
    /// Its parts in order; their bytes joined are the file.
    pub parts: Vec<RollupPartEntry>,
}

/// One part of a shipped rollup spill file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupPartEntry {
    /// Its key.
    pub key: String,
    /// Size of the object.
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
    /// A snapshot's rollup spills do not add up: parts that are not the file's size, a part
    /// larger than [`ROLLUP_PART_BYTES_MAX`], or a spill covering events past the snapshot.
    #[error("snapshot {snapshot}: rollup spill {spill_seq}: {why}")]
    BadRollups {
        /// The snapshot's key.
        snapshot: String,
        /// The spill.
        spill_seq: u64,
        /// What is wrong.
        why: &'static str,
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
        for snapshot in &m.snapshots {
            check_rollups(snapshot)?;
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

/// A snapshot's rollup spills add up (see [`ManifestError::BadRollups`]).
fn check_rollups(snapshot: &SnapshotEntry) -> Result<(), ManifestError> {
    for r in &snapshot.rollups {
        let bad = |why| ManifestError::BadRollups {
            snapshot: snapshot.key.clone(),
            spill_seq: r.spill_seq,
            why,
        };
        if r.through_offset > snapshot.next_offset {
            return Err(bad("it covers events past the snapshot"));
        }
        if r.parts
            .iter()
            .any(|p| p.object_bytes > ROLLUP_PART_BYTES_MAX)
        {
            return Err(bad("a part is larger than the most accepted"));
        }
        let sum = r.parts.iter().map(|p| p.object_bytes).sum::<u64>();
        if sum != r.file_bytes || r.parts.iter().any(|p| p.object_bytes == 0) {
            return Err(bad("its parts are not the file's size"));
        }
    }
    Ok(())
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
        // A snapshot with its rollup spills (version 3) round-trips; parts must add up.
        let with_rollups = with_rollups();
        let part = |bytes| RollupPartEntry {
            key: "r".into(),
            object_bytes: bytes,
            object_sha256: Sha256::of(b"r"),
        };
        assert_eq!(
            Manifest::decode(&with_rollups.encode()).unwrap(),
            with_rollups
        );
        let mutate = |f: &dyn Fn(&mut RollupEntry)| {
            let mut m = with_rollups.clone();
            f(&mut m.snapshots[0].rollups[0]);
            Manifest::decode(&m.encode())
        };
        for (f, why) in [
            (
                &(|r: &mut RollupEntry| r.through_offset = 10) as &dyn Fn(&mut RollupEntry),
                "past the snapshot",
            ),
            (
                &|r: &mut RollupEntry| r.file_bytes = 8,
                "not the file's size",
            ),
            (
                &|r: &mut RollupEntry| r.parts.push(part(0)),
                "not the file's size",
            ),
            (
                &|r: &mut RollupEntry| {
                    r.parts = vec![part(ROLLUP_PART_BYTES_MAX + 1)];
                    r.file_bytes = ROLLUP_PART_BYTES_MAX + 1;
                },
                "larger than",
            ),
        ] {
            let e = mutate(f).unwrap_err();
            assert!(
                matches!(e, ManifestError::BadRollups { spill_seq: 4, .. }),
                "{e}"
            );
            assert!(e.to_string().contains(why), "{e}");
        }
        let mut other = sample(1);
        other.version = 9;
        assert!(matches!(
            Manifest::decode(&other.encode()),
            Err(ManifestError::Unsupported { version: 9, .. })
        ));
    }

    /// A sample manifest of version 3 with one snapshot and its rollup set.
    fn with_rollups() -> Manifest {
        let mut m = sample(2);
        m.snapshots.push(SnapshotEntry {
            key: "snap".into(),
            next_offset: 9,
            object_bytes: 1,
            object_sha256: Sha256::of(b"p"),
            rollups: vec![RollupEntry {
                spill_seq: 4,
                through_offset: 9,
                file_bytes: 7,
                file_sha256: Sha256::of(b"f"),
                parts: [4, 3]
                    .map(|object_bytes| RollupPartEntry {
                        key: "r".into(),
                        object_bytes,
                        object_sha256: Sha256::of(b"r"),
                    })
                    .to_vec(),
            }],
        });
        m
    }

    proptest::proptest! {
        /// Any bytes decode to a manifest or to an error; none panics.
        #[test]
        fn any_bytes_are_a_manifest_or_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let _ = Manifest::decode(&bytes);
        }

        /// A manifest with bytes changed decodes to a manifest that passes every check, or
        /// to an error; none panics.
        #[test]
        fn a_changed_manifest_is_checked_or_refused(
            changes in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let mut bytes = with_rollups().encode();
            for (at, b) in changes {
                let len = bytes.len();
                bytes[at % len] = b;
            }
            if let Ok(m) = Manifest::decode(&bytes) {
                for s in &m.snapshots {
                    proptest::prop_assert!(check_rollups(s).is_ok());
                }
            }
        }
    }
}
