//! The shipper's pure decisions, apart from any I/O so they have unit tests: which pending
//! objects make the next round, and the manifest that a round's verified objects get.

use super::objects::Confirmed;
use super::{Head, ROUND_BYTES_MAX, ROUND_OBJECTS_MAX};
use crate::ship::hex;
use crate::ship::manifest::{ChunkEntry, Manifest, MANIFEST_FORMAT, MANIFEST_VERSION};

/// The next round: the oldest pending objects (they come oldest first) up to
/// [`ROUND_OBJECTS_MAX`] objects and [`ROUND_BYTES_MAX`] bytes, but always at least one, so
/// an object bigger than the byte bound still ships (alone).
pub(super) fn plan_round<T>(pending: Vec<T>, bytes_of: impl Fn(&T) -> u64) -> Vec<T> {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for p in pending {
        let size = bytes_of(&p);
        if batch.len() == ROUND_OBJECTS_MAX
            || (!batch.is_empty() && bytes.saturating_add(size) > ROUND_BYTES_MAX)
        {
            break;
        }
        bytes = bytes.saturating_add(size);
        batch.push(p);
    }
    batch
}

/// Where a gateway's manifest chain stands: who writes it and its newest manifest.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chain<'a> {
    pub(super) site_id: &'a str,
    pub(super) lineage: &'a str,
    pub(super) log_id: [u8; 16],
    pub(super) head: Option<&'a Head>,
}

/// The manifest that continues `chain` with a round's verified objects: the next sequence
/// number, naming the head's key and hash; segments by offset, then snapshots.
pub(super) fn build_manifest(
    chain: Chain<'_>,
    created_unix_ms: u64,
    confirmed: &[Confirmed],
    chunks: Vec<ChunkEntry>,
) -> Manifest {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for c in confirmed {
        match c {
            Confirmed::Segment(s) => segments.push(s.clone()),
            Confirmed::Snapshot(s) => snapshots.push(s.clone()),
        }
    }
    segments.sort_by_key(|s| s.first_offset);
    snapshots.sort_by_key(|s| s.next_offset);
    Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        site_id: chain.site_id.to_string(),
        lineage: chain.lineage.to_string(),
        log_id: hex(&chain.log_id),
        sequence: chain.head.map_or(1, |h| h.sequence + 1),
        previous: chain.head.map(|h| h.link.clone()),
        created_unix_ms,
        segments,
        snapshots,
        chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::manifest::{ManifestLink, SegmentEntry, SnapshotEntry};
    use crate::ship::Sha256;

    #[test]
    fn a_round_takes_the_oldest_within_both_bounds_and_never_nothing() {
        let sizes: Vec<u64> = vec![10; ROUND_OBJECTS_MAX + 5];
        assert_eq!(plan_round(sizes, |s| *s).len(), ROUND_OBJECTS_MAX);
        let half = ROUND_BYTES_MAX / 2;
        assert_eq!(plan_round(vec![half, half, 1], |s| *s), vec![half, half]);
        assert_eq!(plan_round(vec![half, half + 1], |s| *s), vec![half]);
        // Bigger than the bound: it goes, alone.
        let huge = ROUND_BYTES_MAX * 3;
        assert_eq!(plan_round(vec![huge, 1], |s| *s), vec![huge]);
        assert_eq!(plan_round(vec![u64::MAX, u64::MAX], |s| *s), vec![u64::MAX]);
        assert!(plan_round(Vec::<u64>::new(), |s| *s).is_empty());
        // Order is kept.
        assert_eq!(plan_round(vec![3, 1, 2], |s| *s), vec![3, 1, 2]);
    }

    fn segment(first: u64) -> Confirmed {
        Confirmed::Segment(SegmentEntry {
            key: format!("s{first}"),
            first_offset: first,
            next_offset: first + 10,
            object_bytes: 1,
            object_sha256: Sha256::of(b"o"),
            original_bytes: 2,
            segment_sha256: Sha256::of(b"s"),
        })
    }

    fn snapshot(next: u64) -> Confirmed {
        Confirmed::Snapshot(SnapshotEntry {
            key: format!("p{next}"),
            next_offset: next,
            object_bytes: 1,
            object_sha256: Sha256::of(b"p"),
            rollups: vec![],
        })
    }

    #[test]
    fn a_manifest_continues_the_chain_and_sorts_what_it_lists() {
        let chain = Chain {
            site_id: "site",
            lineage: "lin",
            log_id: [0xab; 16],
            head: None,
        };
        let first = build_manifest(chain, 7, &[snapshot(30), segment(11), segment(1)], vec![]);
        assert_eq!((first.sequence, first.previous.clone()), (1, None));
        assert_eq!(first.log_id, "ab".repeat(16));
        assert_eq!(
            first
                .segments
                .iter()
                .map(|s| s.first_offset)
                .collect::<Vec<_>>(),
            [1, 11]
        );
        assert_eq!(first.snapshots.len(), 1);
        assert_eq!(first.created_unix_ms, 7);
        assert_eq!(first.next_offset(), 30);
        let head = Head {
            sequence: 41,
            link: ManifestLink {
                key: "m41".into(),
                sha256: Sha256::of(b"m41"),
            },
        };
        let next = build_manifest(
            Chain {
                head: Some(&head),
                ..chain
            },
            8,
            &[],
            vec![],
        );
        assert_eq!(next.sequence, 42);
        assert_eq!(next.previous, Some(head.link.clone()));
        // It decodes as what it is.
        assert_eq!(Manifest::decode(&next.encode()).unwrap(), next);
    }
}
