//! Shipping the log's durable tail as chunk objects, so the recovery point stays within
//! `ship.max_lag_s` without sealing segments early: the pure decisions (when a tail round
//! is due, how records are cut into chunks, which chunks a shipped segment supersedes) and
//! the small state file the shipper keeps beside the log.
//!
//! Tail rounds record no events in the log: an event per round would itself be new tail,
//! and an idle gateway would ship forever. What they did lives in the store (the chunk and
//! a manifest naming it) and in `DATA_DIR/ship/tail.json` (the chain head and the chunks
//! not yet superseded), written durably after each round; a crash between the two is
//! reconciled at start by adopting the manifests after the known head.
//!
//! The bound: an event acknowledged at `t` is seen by the shipper by `t + poll`
//! ([`poll_interval`], at most a quarter of `max_lag_s`), its tail round is due a quarter
//! of `max_lag_s` after the oldest unshipped record was seen, and rounds are looked for
//! every `poll`: it is verified in the store by `t + ¾ max_lag_s` plus the upload time.

use std::path::Path;
use std::time::Duration;

use gridlog_common::Offset;
use serde::{Deserialize, Serialize};

use super::chunk::{CHUNK_RECORD_LEN_BYTES, CHUNK_TARGET_BYTES};
use super::lineage;
use super::manifest::{ChunkEntry, ManifestLink};

/// The tail state file inside `DATA_DIR/ship/`.
pub const TAIL_FILE_NAME: &str = "tail.json";
/// Most chunks one tail round uploads (a long outage catches up over several rounds).
pub const TAIL_CHUNKS_PER_ROUND_MAX: usize = 16;

/// Unshipped records after which the tail is read before it is due by time, to see
/// whether a whole chunk's worth is waiting (a busy site ships full chunks sooner).
pub const TAIL_EARLY_RECORDS: u64 = 20_000;

/// Times `max_lag_s` the lag must reach before the recovery point raises an alarm (a
/// `RecoveryPointLagging` event and a status alarm): 3, so a slow round or a short outage
/// does not, a dead uplink does within three bounds.
pub const LAG_ALARM_FACTOR: u64 = 3;

/// What the lag watchdog does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagAlarm {
    /// Raise the alarm (once per episode).
    Raise,
    /// The store caught up: the next episode may raise again.
    Clear,
    /// Nothing changes.
    Keep,
}

/// The alarm rule: raise once when the lag reaches [`LAG_ALARM_FACTOR`] × `max_lag_s`,
/// re-arm when it is back to zero.
pub fn lag_alarm(lag_s: u64, max_lag_s: u64, raised: bool) -> LagAlarm {
    if !raised && lag_s >= LAG_ALARM_FACTOR * max_lag_s.max(1) {
        LagAlarm::Raise
    } else if raised && lag_s == 0 {
        LagAlarm::Clear
    } else {
        LagAlarm::Keep
    }
}

/// How often the shipper looks for work: `ship.interval_s`, but at most a quarter of
/// `max_lag_s` (and at least 100 ms).
pub fn poll_interval(interval: Duration, max_lag: Duration) -> Duration {
    interval.min(max_lag / 4).max(Duration::from_millis(100))
}

/// A tail round is due once the oldest unshipped record has waited a quarter of
/// `max_lag`, or there is a whole chunk's worth of it.
pub fn tail_due(waited: Duration, max_lag: Duration, unshipped_bytes: usize) -> bool {
    waited >= max_lag / 4 || unshipped_bytes >= CHUNK_TARGET_BYTES
}

/// Cuts records (with their sizes) into chunks of at most [`CHUNK_TARGET_BYTES`] each
/// (a record larger than that is a chunk of its own): returns the number of records of each
/// chunk, at most [`TAIL_CHUNKS_PER_ROUND_MAX`] chunks.
pub fn cut_chunks(record_bytes: &[usize]) -> Vec<usize> {
    let mut chunks = Vec::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    for &len in record_bytes {
        let len = len + CHUNK_RECORD_LEN_BYTES;
        if count > 0 && bytes + len > CHUNK_TARGET_BYTES {
            chunks.push(count);
            if chunks.len() == TAIL_CHUNKS_PER_ROUND_MAX {
                return chunks;
            }
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += len;
    }
    if count > 0 {
        chunks.push(count);
    }
    chunks
}

/// The chunks that verified segments hold wholly: each lies inside one contiguous run of
/// the `shipped` segments (`(first, next)` offsets, in any order), so it may go. A chunk
/// over a segment that was never shipped stays, however far later segments reach.
pub fn superseded(chunks: &[ChunkEntry], shipped: &[(Offset, Offset)]) -> Vec<ChunkEntry> {
    let mut sorted = shipped.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(Offset, Offset)> = Vec::new();
    for (first, next) in sorted {
        match runs.last_mut() {
            Some(run) if first <= run.1 => run.1 = run.1.max(next),
            _ => runs.push((first, next)),
        }
    }
    chunks
        .iter()
        .filter(|c| {
            runs.iter()
                .any(|&(first, next)| first <= c.first_offset && c.next_offset <= next)
        })
        .cloned()
        .collect()
}

/// The newest offset central storage holds (one past it): the end of the shipped segments,
/// extended by every chunk that continues it.
pub fn store_end(segments_end: Offset, chunks: &[ChunkEntry]) -> Offset {
    let mut end = segments_end;
    let mut sorted: Vec<&ChunkEntry> = chunks.iter().collect();
    sorted.sort_by_key(|c| c.first_offset);
    for c in sorted {
        if c.first_offset <= end {
            end = end.max(c.next_offset);
        }
    }
    end
}

/// The listed objects (name, key, age in ms) that `known` does not name and that are at
/// least `grace_ms` old: uploads no manifest names, safe to remove.
pub fn orphans(
    listed: &[(super::layout::ObjectName, object_store::path::Path, u64)],
    known: &dyn Fn(super::layout::ObjectName) -> bool,
    grace_ms: u64,
) -> Vec<object_store::path::Path> {
    listed
        .iter()
        .filter(|(name, _, age_ms)| *age_ms >= grace_ms && !known(*name))
        .map(|(_, key, _)| key.clone())
        .collect()
}

/// What the shipper keeps about tail rounds (`DATA_DIR/ship/tail.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailState {
    /// The newest manifest a tail round wrote: its sequence and link.
    pub head: Option<(u64, ManifestLink)>,
    /// Chunks in the store not yet superseded by a shipped segment.
    pub chunks: Vec<ChunkEntry>,
    /// When the newest chunk was verified (Unix ms).
    pub newest_verified_unix_ms: Option<u64>,
}

/// Reads the tail state; empty when there is none.
pub fn read_state(data_dir: &Path) -> std::io::Result<TailState> {
    let path = data_dir.join(lineage::SHIP_DIR_NAME).join(TAIL_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TailState::default()),
        Err(e) => Err(e),
    }
}

/// Writes the tail state durably.
pub fn write_state(data_dir: &Path, state: &TailState) -> std::io::Result<()> {
    let dir = data_dir.join(lineage::SHIP_DIR_NAME);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        lineage::sync_dir(data_dir)?;
    }
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    lineage::write_durably(&dir.join(TAIL_FILE_NAME), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: Offset, next: Offset) -> ChunkEntry {
        ChunkEntry {
            key: format!("c{first}"),
            first_offset: first,
            next_offset: next,
            object_bytes: 1,
            object_sha256: crate::ship::Sha256::default(),
        }
    }

    #[test]
    fn the_poll_and_the_due_rule_keep_the_bound() {
        let lag = Duration::from_secs(60);
        assert_eq!(
            poll_interval(Duration::from_secs(10), lag),
            Duration::from_secs(10)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(30), lag),
            Duration::from_secs(15)
        );
        assert!(!tail_due(Duration::from_secs(14), lag, 100));
        assert!(tail_due(Duration::from_secs(15), lag, 100));
        assert!(tail_due(Duration::ZERO, lag, CHUNK_TARGET_BYTES));
        // Seen within a poll, due a quarter later, looked at within a poll: ¾ of the lag.
        let worst = poll_interval(Duration::from_secs(3600), lag) * 2 + lag / 4;
        assert!(worst <= lag * 3 / 4);
    }

    #[test]
    fn only_unnamed_objects_past_the_grace_period_are_orphans() {
        use crate::ship::layout::ObjectName;
        let key = |s: &str| object_store::path::Path::from(s);
        let listed = [
            (ObjectName::Chunk(1, 5), key("a"), 10_000),
            (ObjectName::Chunk(5, 9), key("b"), 10_000),
            (ObjectName::Chunk(9, 12), key("c"), 10),
        ];
        let known = |n: ObjectName| n == ObjectName::Chunk(1, 5);
        assert_eq!(orphans(&listed, &known, 1000), [key("b")]);
        assert_eq!(orphans(&listed, &known, 0), [key("b"), key("c")]);
    }

    #[test]
    fn the_lag_alarm_is_raised_once_per_episode() {
        assert_eq!(lag_alarm(179, 60, false), LagAlarm::Keep);
        assert_eq!(lag_alarm(180, 60, false), LagAlarm::Raise);
        assert_eq!(lag_alarm(500, 60, true), LagAlarm::Keep);
        assert_eq!(lag_alarm(1, 60, true), LagAlarm::Keep);
        assert_eq!(lag_alarm(0, 60, true), LagAlarm::Clear);
        assert_eq!(lag_alarm(0, 60, false), LagAlarm::Keep);
    }

    #[test]
    fn records_are_cut_at_the_target_size() {
        assert_eq!(cut_chunks(&[]), Vec::<usize>::new());
        assert_eq!(cut_chunks(&[10, 10, 10]), [3]);
        let big = CHUNK_TARGET_BYTES / 2;
        assert_eq!(cut_chunks(&[big, big, big]), [1, 1, 1]);
        assert_eq!(cut_chunks(&[CHUNK_TARGET_BYTES * 2, 1]), [1, 1]);
        let many = vec![big; 100];
        assert_eq!(cut_chunks(&many).len(), TAIL_CHUNKS_PER_ROUND_MAX);
    }

    #[test]
    fn chunks_are_superseded_only_wholly_and_extend_the_store_end() {
        let chunks = [chunk(100, 150), chunk(150, 220), chunk(220, 230)];
        assert_eq!(
            superseded(&chunks, &[(1, 100), (100, 200)]),
            [chunk(100, 150)]
        );
        assert_eq!(superseded(&chunks, &[(1, 99)]), []);
        // Segments in any order, touching: one run.
        assert_eq!(
            superseded(&chunks, &[(200, 240), (100, 200)]),
            [chunk(100, 150), chunk(150, 220), chunk(220, 230)]
        );
        // The oldest segment was never shipped: its chunks stay, though a later segment
        // reaches past them.
        let early = [chunk(1, 40), chunk(40, 100)];
        assert_eq!(superseded(&early, &[(50, 200)]), []);
        assert_eq!(superseded(&early, &[(1, 50), (50, 200)]), early);
        assert_eq!(store_end(100, &chunks), 230);
        assert_eq!(store_end(160, &chunks), 230);
        // A gap: chunks beyond it do not count.
        assert_eq!(store_end(90, &chunks), 90);
        assert_eq!(store_end(300, &chunks), 300);
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), TailState::default());
        let state = TailState {
            head: Some((
                3,
                ManifestLink {
                    key: "k".into(),
                    sha256: crate::ship::Sha256::of(b"h"),
                },
            )),
            chunks: vec![chunk(1, 5)],
            newest_verified_unix_ms: Some(7),
        };
        write_state(dir.path(), &state).unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), state);
    }
}
