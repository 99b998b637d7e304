//! The newest verified point a restore can reach, chosen from the manifests alone (a pure
//! decision, unit-tested): a snapshot and the segments and chunks after it, or with `--full`
//! every segment from offset 1.

use std::collections::BTreeMap;

use gridlog_common::{Offset, FIRST_OFFSET};

use crate::ship::manifest::{ChunkEntry, SegmentEntry, SnapshotEntry};

/// What a restore downloads: a pure decision over what the manifest chain lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot to start from (none: replay from offset 1).
    pub snapshot: Option<SnapshotEntry>,
    /// The segments to write, in offset order, without gaps.
    pub segments: Vec<SegmentEntry>,
    /// The chunks that continue them (or the snapshot), in offset order, each holding the
    /// next offset the one before ends at.
    pub chunks: Vec<ChunkEntry>,
    /// The first offset the rebuilt log holds.
    pub history_start: Offset,
    /// One past the last offset the rebuilt directory knows (its next offset).
    pub end: Offset,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The chain lists no segment and no snapshot.
    #[error("nothing shipped")]
    Nothing,
    /// The shipped history has a gap that no snapshot bridges.
    #[error("{0}")]
    Gap(String),
}

/// The newest verified point: the newest snapshot that the shipped segments after it
/// continue without a gap (or that is newer than all of them: the log then starts empty at
/// the snapshot), and every segment after it. With `full`, every segment from offset 1 and
/// no snapshot.
pub fn plan(
    segments: &BTreeMap<Offset, SegmentEntry>,
    snapshots: &BTreeMap<Offset, SnapshotEntry>,
    chunks: &[ChunkEntry],
    full: bool,
) -> Result<Plan, PlanError> {
    let mut plan = plan_segments(segments, snapshots, chunks, full)?;
    // Extend with chunks: from the end, the chunk holding it that reaches furthest.
    while let Some(c) = chunks
        .iter()
        .filter(|c| c.first_offset <= plan.end && c.next_offset > plan.end)
        .max_by_key(|c| c.next_offset)
    {
        plan.end = c.next_offset;
        plan.chunks.push(c.clone());
    }
    if plan.snapshot.is_none() && plan.segments.is_empty() && plan.chunks.is_empty() {
        return Err(PlanError::Nothing);
    }
    Ok(plan)
}

/// The snapshot and segments of [`plan`], before chunks extend them.
fn plan_segments(
    segments: &BTreeMap<Offset, SegmentEntry>,
    snapshots: &BTreeMap<Offset, SnapshotEntry>,
    chunks: &[ChunkEntry],
    full: bool,
) -> Result<Plan, PlanError> {
    // The segments from `from` on, if they run without a gap from a segment holding it.
    let run_from = |from: Offset| -> Result<Vec<SegmentEntry>, String> {
        let chosen: Vec<SegmentEntry> = segments
            .values()
            .filter(|s| s.next_offset > from)
            .cloned()
            .collect();
        let mut expected = chosen.first().map_or(from, |s| s.first_offset.min(from));
        if chosen.first().is_some_and(|s| s.first_offset > from) {
            return Err(format!(
                "offsets {from}..{} are in no shipped segment",
                chosen[0].first_offset
            ));
        }
        for s in &chosen {
            if s.first_offset != expected {
                return Err(format!(
                    "offsets {expected}..{} are in no shipped segment",
                    s.first_offset
                ));
            }
            expected = s.next_offset;
        }
        Ok(chosen)
    };
    if segments.is_empty() && chunks.is_empty() && (full || snapshots.is_empty()) {
        return Err(PlanError::Nothing);
    }
    let mut first_gap = None;
    if !full {
        for s in snapshots.values().rev() {
            match run_from(s.next_offset) {
                Ok(chosen) => {
                    let history_start = chosen.first().map_or(s.next_offset, |c| c.first_offset);
                    let end = chosen.last().map_or(s.next_offset, |c| c.next_offset);
                    return Ok(Plan {
                        snapshot: Some(s.clone()),
                        segments: chosen,
                        chunks: vec![],
                        history_start,
                        end,
                    });
                }
                Err(gap) => {
                    first_gap.get_or_insert(gap);
                }
            }
        }
    }
    match run_from(FIRST_OFFSET) {
        Ok(chosen)
            if !chosen.is_empty() || chunks.iter().any(|c| c.first_offset == FIRST_OFFSET) =>
        {
            Ok(Plan {
                snapshot: None,
                end: chosen.last().map_or(FIRST_OFFSET, |c| c.next_offset),
                segments: chosen,
                chunks: vec![],
                history_start: FIRST_OFFSET,
            })
        }
        Ok(_) => Err(PlanError::Nothing),
        Err(gap) => Err(PlanError::Gap(match first_gap {
            Some(after_snapshot) => format!(
                "{after_snapshot} after the newest snapshot, and {gap} for a restore from offset 1"
            ),
            None if full => format!("{gap}: restore without --full starts from a snapshot"),
            None => format!("{gap}, and no shipped snapshot covers what is before"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::Sha256;

    fn segment(first: Offset, next: Offset) -> (Offset, SegmentEntry) {
        (
            first,
            SegmentEntry {
                key: format!("seg-{first}"),
                first_offset: first,
                next_offset: next,
                object_bytes: 1,
                object_sha256: Sha256::default(),
                original_bytes: 1,
                segment_sha256: Sha256::default(),
            },
        )
    }

    fn snapshot(next: Offset) -> (Offset, SnapshotEntry) {
        (
            next,
            SnapshotEntry {
                key: format!("snap-{next}"),
                next_offset: next,
                object_bytes: 1,
                object_sha256: Sha256::default(),
                rollups: vec![],
            },
        )
    }

    fn firsts(p: &Plan) -> Vec<Offset> {
        p.segments.iter().map(|s| s.first_offset).collect()
    }

    #[test]
    fn the_newest_snapshot_wins_even_when_it_is_newer_than_every_segment() {
        // The reported case: segments up to 75,030, snapshots at 70,028 and 90,033.
        let segments = BTreeMap::from([segment(1, 60_027), segment(60_027, 75_030)]);
        let snapshots = BTreeMap::from([snapshot(70_028), snapshot(90_033)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(p.snapshot.as_ref().map(|s| s.next_offset), Some(90_033));
        assert!(p.segments.is_empty());
        assert_eq!((p.history_start, p.end), (90_033, 90_033));

        // A snapshot inside the shipped segments: the segment holding it, and all after.
        let snapshots = BTreeMap::from([snapshot(70_028)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [60_027]);
        assert_eq!((p.history_start, p.end), (60_027, 75_030));

        // At a segment boundary: only the segments after it.
        let snapshots = BTreeMap::from([snapshot(60_027)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [60_027]);

        // --full: every segment, no snapshot.
        let p = plan(&segments, &snapshots, &[], true).unwrap();
        assert_eq!(firsts(&p), [1, 60_027]);
        assert_eq!((p.snapshot, p.history_start, p.end), (None, 1, 75_030));
    }

    fn chunk(first: Offset, next: Offset) -> ChunkEntry {
        ChunkEntry {
            key: format!("chunk-{first}"),
            first_offset: first,
            next_offset: next,
            object_bytes: 1,
            object_sha256: Sha256::default(),
        }
    }

    #[test]
    fn chunks_extend_the_restore_past_the_segments_and_the_snapshot() {
        let segments = BTreeMap::from([segment(1, 100), segment(100, 200)]);
        let snapshots = BTreeMap::from([snapshot(150), snapshot(250)]);
        // A superseded chunk (below 200), one straddling the segments' end, one beyond
        // the newest snapshot, and one past a gap.
        let chunks = [
            chunk(120, 180),
            chunk(190, 240),
            chunk(240, 300),
            chunk(310, 320),
        ];
        let p = plan(&segments, &snapshots, &chunks, false).unwrap();
        // The newest snapshot is newer than every segment: the log starts at it and the
        // chunk holding it, then the next, fill it to 300.
        assert_eq!(p.snapshot.as_ref().map(|s| s.next_offset), Some(250));
        assert!(p.segments.is_empty());
        let keys: Vec<_> = p.chunks.iter().map(|c| c.first_offset).collect();
        assert_eq!(keys, [240]);
        assert_eq!((p.history_start, p.end), (250, 300));
        // --full: segments to 200, then the chunks to 300.
        let p = plan(&segments, &snapshots, &chunks, true).unwrap();
        let keys: Vec<_> = p.chunks.iter().map(|c| c.first_offset).collect();
        assert_eq!(keys, [190, 240]);
        assert_eq!((p.history_start, p.end), (1, 300));
        // Only chunks, from offset 1: a young gateway's whole history.
        let p = plan(&BTreeMap::new(), &BTreeMap::new(), &[chunk(1, 10)], false).unwrap();
        assert_eq!((p.history_start, p.end, p.chunks.len()), (1, 10, 1));
        assert_eq!(
            plan(&BTreeMap::new(), &BTreeMap::new(), &[chunk(5, 10)], false),
            Err(PlanError::Nothing)
        );
    }

    #[test]
    fn gaps_fall_back_to_an_older_snapshot_or_are_an_error() {
        // Segments after the newest snapshot have a gap; the older one is continued.
        let segments = BTreeMap::from([segment(1, 100), segment(100, 200), segment(300, 400)]);
        let snapshots = BTreeMap::from([snapshot(150), snapshot(250)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap_err();
        assert!(
            matches!(&p, PlanError::Gap(m) if m.contains("200..300")),
            "{p}"
        );
        let snapshots = BTreeMap::from([snapshot(350)]);
        let p = plan(&segments, &snapshots, &[], false).unwrap();
        assert_eq!(firsts(&p), [300]);
        assert!(matches!(
            plan(&segments, &snapshots, &[], true),
            Err(PlanError::Gap(m)) if m.contains("200..300")
        ));
        // No segment from offset 1 and no snapshot before the first one.
        let segments = BTreeMap::from([segment(100, 200)]);
        assert!(matches!(
            plan(&segments, &BTreeMap::new(), &[], false),
            Err(PlanError::Gap(m)) if m.contains("1..100")
        ));
        assert_eq!(
            plan(&BTreeMap::new(), &BTreeMap::new(), &[], false),
            Err(PlanError::Nothing)
        );
        // Only a snapshot: an empty log from it.
        let p = plan(
            &BTreeMap::new(),
            &BTreeMap::from([snapshot(42)]),
            &[],
            false,
        )
        .unwrap();
        assert_eq!((p.history_start, p.end), (42, 42));
    }
}
