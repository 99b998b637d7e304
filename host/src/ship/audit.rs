//! `gridlog ship --check`: a read-only audit of central storage against the manifests.
//!
//! It walks the site's manifest chain (as a restore does: every manifest must hash to what
//! the next one names), lists everything under the site, and reports:
//! - **missing**: an object a manifest names that the store does not hold — except a chunk
//!   a segment of the chain covers wholly (superseded, deleted by design);
//! - **extra**: an object under the site that no manifest of the chain names (an upload a
//!   crash left before its manifest, or something not ours);
//! - **tampered**: an object whose bytes do not hash to what its manifest says.
//!
//! A rollup part no manifest names is counted apart, not as extra (see
//! [`AuditReport::unnamed_rollup_parts`]).
//!
//! Which objects are expected, and how the listing compares, is decided by pure functions
//! ([`expected`], [`compare`]); only the listing and the reads are I/O. It never writes.

use std::collections::BTreeMap;

use object_store::path::Path as Key;

use super::manifest::{Manifest, MANIFEST_BYTES_MAX};
use super::restore::{newest_lineage, walk_chain, RestoreError};
use super::store::{GetError, Store};
use super::{sha256, Sha256};
use crate::config::ShipConfig;

/// An object a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// SHA-256 of its bytes.
    pub sha256: Sha256,
    /// Its size (0 for a manifest: no manifest records its own).
    pub bytes: u64,
    /// A chunk that a segment of the chain covers wholly: it may be gone.
    pub superseded: bool,
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Manifests walked.
    pub manifests: u64,
    /// Objects the store holds under the site.
    pub listed: u64,
    /// Named by a manifest, not in the store.
    pub missing: Vec<String>,
    /// In the store, named by no manifest.
    pub extra: Vec<String>,
    /// In the store with other bytes than its manifest says.
    pub tampered: Vec<String>,
    /// Superseded chunks already deleted (expected).
    pub superseded_gone: u64,
    /// Rollup parts no manifest names: uploaded for a snapshot that then did not ship (a
    /// newer spill or merge overtook its set, a crash). Harmless, and not `extra`: a part's
    /// key is its content, so a later set may name it.
    pub unnamed_rollup_parts: u64,
}

impl AuditReport {
    /// Nothing missing, extra or tampered.
    pub fn clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.tampered.is_empty()
    }
}

/// Every object the chain's manifests name (the manifests themselves included), by key.
pub fn expected(chain: &[(String, Sha256, &Manifest)]) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    let segments: Vec<(u64, u64)> = chain
        .iter()
        .flat_map(|(_, _, m)| m.segments.iter().map(|s| (s.first_offset, s.next_offset)))
        .collect();
    let covered = |first: u64, next: u64| {
        // Wholly inside the union of the segments (they are contiguous where they overlap it).
        let mut at = first;
        let mut sorted = segments.clone();
        sorted.sort_unstable();
        for (f, n) in sorted {
            if f <= at && n > at {
                at = n;
            }
        }
        at >= next
    };
    for (key, sha, m) in chain {
        let e = |sha256: Sha256, bytes: u64, superseded: bool| Expected {
            sha256,
            bytes,
            superseded,
        };
        out.insert(key.clone(), e(*sha, 0, false));
        for s in &m.segments {
            out.insert(s.key.clone(), e(s.object_sha256, s.object_bytes, false));
        }
        for s in &m.snapshots {
            out.insert(s.key.clone(), e(s.object_sha256, s.object_bytes, false));
            // A snapshot's rollup parts (several sets may name one part).
            for p in s.rollups.iter().flat_map(|r| &r.parts) {
                out.insert(p.key.clone(), e(p.object_sha256, p.object_bytes, false));
            }
        }
        for c in &m.chunks {
            let superseded = covered(c.first_offset, c.next_offset);
            out.insert(
                c.key.clone(),
                e(c.object_sha256, c.object_bytes, superseded),
            );
        }
    }
    out
}

/// Compares what the chain names with what the store lists (key → size): missing, extra,
/// superseded chunks gone, and the keys to read back for a hash check.
pub fn compare(
    expected: &BTreeMap<String, Expected>,
    listed: &BTreeMap<String, u64>,
) -> (AuditReport, Vec<String>) {
    let mut report = AuditReport {
        listed: listed.len() as u64,
        ..AuditReport::default()
    };
    let mut to_read = Vec::new();
    for (key, e) in expected {
        match listed.get(key) {
            None if e.superseded => report.superseded_gone += 1,
            None => report.missing.push(key.clone()),
            Some(size) if e.bytes != 0 && *size != e.bytes => report.tampered.push(key.clone()),
            Some(_) => to_read.push(key.clone()),
        }
    }
    for key in listed.keys().filter(|k| !expected.contains_key(*k)) {
        if super::layout::is_rollup_part_key(key) {
            report.unnamed_rollup_parts += 1;
        } else {
            report.extra.push(key.clone());
        }
    }
    (report, to_read)
}

/// Audits `site`'s history in the store `url` (the newest lineage's chain).
pub async fn audit(url: &str, site: &str, ship: &ShipConfig) -> Result<AuditReport, RestoreError> {
    let store = Store::open_url(url, ship)?;
    let site_layout = super::layout::Layout::new(store.prefix(), site, "-");
    let (_, head_key) = newest_lineage(&store, &site_layout, None).await?;
    let chain = walk_chain(&store, &head_key, site).await?;
    let named: Vec<(String, Sha256, &Manifest)> = chain
        .iter()
        .map(|l| (l.key.clone(), l.sha256, &l.manifest))
        .collect();
    let expected = expected(&named);
    let listed: BTreeMap<String, u64> = store
        .list(&site_layout.site_root())
        .await?
        .into_iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    let (mut report, to_read) = compare(&expected, &listed);
    report.manifests = chain.len() as u64;
    for key in to_read {
        match store
            .get(&Key::from(key.as_str()), read_bytes_max(&expected[&key]))
            .await
        {
            Ok(Some(bytes)) if sha256(&bytes) == expected[&key].sha256 => {}
            Ok(Some(_)) | Err(GetError::TooLarge(_)) => report.tampered.push(key),
            Ok(None) => report.missing.push(key),
            Err(GetError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// The most an object is read: its size in the manifest, or for a manifest (whose size no
/// manifest records) the most a manifest may be.
fn read_bytes_max(expected: &Expected) -> u64 {
    match expected.bytes {
        0 => MANIFEST_BYTES_MAX as u64,
        bytes => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::manifest::{ChunkEntry, SegmentEntry, MANIFEST_FORMAT, MANIFEST_VERSION};

    fn manifest(segments: &[(u64, u64)], chunks: &[(u64, u64)]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            site_id: "s".into(),
            lineage: "l".into(),
            log_id: "00".into(),
            sequence: 1,
            previous: None,
            created_unix_ms: 0,
            segments: segments
                .iter()
                .map(|&(f, n)| SegmentEntry {
                    key: format!("seg-{f}"),
                    first_offset: f,
                    next_offset: n,
                    object_bytes: 10,
                    object_sha256: Sha256::of(format!("sha-seg-{f}").as_bytes()),
                    original_bytes: 10,
                    segment_sha256: Sha256::default(),
                })
                .collect(),
            snapshots: vec![],
            chunks: chunks
                .iter()
                .map(|&(f, n)| ChunkEntry {
                    key: format!("chunk-{f}"),
                    first_offset: f,
                    next_offset: n,
                    object_bytes: 5,
                    object_sha256: Sha256::of(format!("sha-chunk-{f}").as_bytes()),
                })
                .collect(),
        }
    }

    #[test]
    fn missing_extra_and_superseded_are_told_apart() {
        let m1 = manifest(&[], &[(1, 50), (50, 120)]);
        let m2 = manifest(&[(1, 100)], &[(120, 130)]);
        let chain = [
            ("man-1".to_string(), Sha256::of(b"h1"), &m1),
            ("man-2".to_string(), Sha256::of(b"h2"), &m2),
        ];
        let expected = expected(&chain);
        assert!(expected["chunk-1"].superseded);
        assert!(
            !expected["chunk-50"].superseded,
            "50..120 reaches past the segment"
        );
        assert!(!expected["chunk-120"].superseded);
        let listed: BTreeMap<String, u64> = [
            ("man-1", 0),
            ("man-2", 0),
            ("seg-1", 10),
            ("chunk-50", 7),
            ("stray", 3),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let (report, to_read) = compare(&expected, &listed);
        assert_eq!(report.missing, ["chunk-120"]);
        assert_eq!(report.extra, ["stray"]);
        assert_eq!(
            report.tampered,
            ["chunk-50"],
            "a size other than the manifest's"
        );
        assert_eq!(report.superseded_gone, 1);
        assert_eq!(to_read, ["man-1", "man-2", "seg-1"]);
        assert!(!report.clean());
    }

    #[test]
    fn a_snapshots_rollup_parts_are_expected_once_however_many_sets_name_them() {
        use crate::ship::manifest::{RollupEntry, RollupPartEntry, SnapshotEntry};
        let part = |key: &str| RollupPartEntry {
            key: key.into(),
            object_bytes: 4,
            object_sha256: Sha256::of(key.as_bytes()),
        };
        let snapshot = |next: u64, parts: Vec<RollupPartEntry>| SnapshotEntry {
            key: format!("snap-{next}"),
            next_offset: next,
            object_bytes: 1,
            object_sha256: Sha256::of(b"snap"),
            rollups: vec![RollupEntry {
                spill_seq: 1,
                through_offset: next,
                file_bytes: 4 * parts.len() as u64,
                file_sha256: Sha256::of(b"file"),
                parts,
            }],
        };
        let mut m1 = manifest(&[(1, 100)], &[]);
        m1.snapshots.push(snapshot(100, vec![part("part-a")]));
        let mut m2 = manifest(&[], &[]);
        m2.snapshots
            .push(snapshot(200, vec![part("part-a"), part("part-b")]));
        let chain = [
            ("man-1".to_string(), Sha256::of(b"h1"), &m1),
            ("man-2".to_string(), Sha256::of(b"h2"), &m2),
        ];
        let expected = expected(&chain);
        assert_eq!(expected["part-a"].bytes, 4);
        assert_eq!(expected["part-b"].sha256, Sha256::of(b"part-b"));
        let listed: BTreeMap<String, u64> = [
            ("man-1", 0),
            ("man-2", 0),
            ("seg-1", 10),
            ("snap-100", 1),
            ("snap-200", 1),
            ("part-a", 4),
            ("s/l/rollups/00000000000000000001-{sha}-000000.rlp", 4),
        ]
        .into_iter()
        .map(|(k, s)| (k.replace("{sha}", &Sha256::of(b"x").to_hex()), s))
        .collect();
        let (report, _) = compare(&expected, &listed);
        assert_eq!(report.missing, ["part-b"]);
        assert!(report.extra.is_empty(), "{report:?}");
        assert_eq!(report.unnamed_rollup_parts, 1, "{report:?}");
    }
}
