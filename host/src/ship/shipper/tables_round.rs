//! The fleet tables stage (`ship.tables`): after a segment is confirmed shipped, its Parquet
//! files (`crate::tables`) go to `PREFIX/tables/`, one segment per call, oldest first.
//!
//! Per segment: `ShipIntended { object: Tables }` (once; `sha256` the segment's), each file
//! built (a pass over the segment each, holding one row group and one file) and uploaded
//! create-only with read-back, then `ShipConfirmed { object: Tables, bytes: the files' }`,
//! then the meters' baselines after it saved to `DATA_DIR/ship/tables-carry`. A crash
//! anywhere repeats the segment: its files are then found in the store with the same bytes.
//!
//! The baselines at a segment's start come from that file; if it is missing, damaged or
//! stands elsewhere, they are folded again from the history before the segment (each segment
//! read from the local archive, the hot log, or else central storage along the manifest
//! chain). A file in the store that differs is an alarm and parks that segment's tables
//! until restart. No failure here stops or delays the shipping of segments beyond the
//! current call: errors are shown in status and the stage retries later.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{Event, ShipObject};
use gridlog_common::Offset;
use gridlog_firmware::engine::state::SystemState;
use tokio::sync::watch;

use super::super::export::{put_table, shipped_segments, TablePut};
use super::super::lineage;
use super::super::manifest::SegmentEntry;
use super::super::record::{record, system_state};
use super::super::restore::fetch_segment;
use super::super::store::StoreError;
use super::{ShipError, Shipper};
use crate::tables::carry::CARRY_BODY_BYTES_MAX;
use crate::tables::{self, ArchiveFile, Carry, Records, SegmentJob};

/// The baselines' file inside `DATA_DIR/ship/`.
pub const TABLES_CARRY_FILE_NAME: &str = "tables-carry";
/// How long the stage waits after a failure before it tries again; doubled after each
/// failure in a row, up to [`TABLES_RETRY_MAX`] (a store that refuses the tables for good
/// then costs the segments at most one bounded upload attempt an hour).
pub const TABLES_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between attempts after failures.
pub const TABLES_RETRY_MAX: Duration = Duration::from_secs(3600);

/// The oldest shipped segment whose tables are not confirmed, as (first, next, segment
/// SHA-256), and how many such segments there are.
pub(super) fn next_untabled(system: &SystemState) -> (Option<(Offset, Offset, [u8; 32])>, u64) {
    let mut waiting = system
        .shipped
        .range((ShipObject::Segment, 0)..=(ShipObject::Segment, u64::MAX))
        .filter(|((_, first), (_, sha))| {
            system
                .shipped
                .get(&(ShipObject::Tables, *first))
                .is_none_or(|(_, tabled)| tabled != sha)
        })
        .map(|((_, first), (next, sha))| (*first, *next, *sha));
    let oldest = waiting.next();
    (oldest, oldest.map_or(0, |_| 1 + waiting.count() as u64))
}

/// The wait after `failures` failures in a row (pure).
fn retry_wait(failures: u32) -> Duration {
    TABLES_RETRY
        .saturating_mul(1 << failures.min(16))
        .min(TABLES_RETRY_MAX)
}

/// Why a tables call did not finish (shown in status; retried later).
#[derive(Debug, thiserror::Error)]
pub(super) enum TablesFault {
    #[error("segment {0}: no copy found locally or in central storage")]
    NoCopy(Offset),
    #[error("segment {first}: the copy read is not the segment shipped (sha256 differs)")]
    WrongCopy { first: Offset },
    #[error("the shipped segments before {0} have a gap (a segment that never shipped)")]
    Gap(Offset),
    #[error(transparent)]
    Tables(#[from] tables::TablesError),
    #[error(transparent)]
    Export(#[from] super::super::export::ExportError),
    #[error(transparent)]
    History(#[from] super::super::restore::RestoreError),
    #[error("uploading: {0}")]
    Store(#[from] StoreError),
    #[error("a tables worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Ship(#[from] ShipError),
}

/// What the stage keeps between calls.
#[derive(Debug, Default)]
pub(super) struct TablesStage {
    /// The baselines where the next segment begins (loaded or folded on first use).
    carry: Option<Carry>,
    /// Segments whose files conflict with the store: not retried until restart.
    parked: std::collections::HashSet<Offset>,
    /// No call before this (after a failure).
    retry_at: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    /// The shipped segments of the manifest chain, by first offset (read once, if a
    /// segment is in no local copy).
    chain: Option<BTreeMap<Offset, SegmentEntry>>,
}

impl Shipper {
    /// Writes the tables of the oldest shipped segment that has none; true if it did.
    pub(super) async fn tables_round(
        &mut self,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, ShipError> {
        if !self.tables_on || self.tables.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        let system = system_state(&self.engine);
        let (next, waiting) = next_untabled(&system);
        self.status.set_tables_waiting(waiting);
        let Some(segment) = next.filter(|(first, ..)| !self.tables.parked.contains(first)) else {
            return Ok(false);
        };
        match self.write_segment_tables(segment, &system, stop).await {
            Ok(done) => {
                self.tables.retry_at = None;
                self.tables.failures = 0;
                Ok(done)
            }
            Err(TablesFault::Ship(e)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "fleet tables: retrying later");
                self.status.error(format!("fleet tables: {e}"));
                self.tables.carry = None;
                let wait = retry_wait(self.tables.failures);
                self.tables.failures = self.tables.failures.saturating_add(1);
                self.tables.retry_at = Some(Instant::now() + wait);
                Ok(false)
            }
        }
    }

    async fn write_segment_tables(
        &mut self,
        (first, next, sha): (Offset, Offset, [u8; 32]),
        system: &SystemState,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TablesFault> {
        let carry = self.carry_at(first, system).await?;
        let (records, log_bytes) = self.segment_source(first, next, sha).await?;
        if !system
            .ship_pending
            .contains_key(&(ShipObject::Tables, first))
        {
            let intent = Event::ShipIntended {
                object: ShipObject::Tables,
                first_offset: first,
                next_offset: next,
                sha256: sha,
                bytes: log_bytes,
            };
            record(&self.engine, vec![intent])
                .await
                .map_err(ShipError::from)?;
        }
        let job = SegmentJob {
            site: self.site_id.clone(),
            lineage: self.layout.lineage().to_string(),
            first_offset: first,
            records,
            carry_in: Arc::new(carry),
        };
        let scanned = {
            let job = job.clone();
            blocking(&self.status.tables.cpu_us, move || job.scan()).await??
        };
        let (mut bytes, mut rows) = (0, 0);
        for (table, day) in scanned.files {
            let (key, file) = {
                let (job, last) = (job.clone(), scanned.last_offset);
                blocking(&self.status.tables.cpu_us, move || {
                    job.build(table, day, last)
                })
                .await??
            };
            let (file_bytes, file_rows) = (file.bytes.len() as u64, file.rows);
            let put = match put_table(&self.store, &key, file.bytes, &self.status, stop).await {
                Err(StoreError::Stopped) => return Err(ShipError::from(StoreError::Stopped).into()),
                other => other?,
            };
            if let TablePut::Differs { key, reason } = put {
                self.status.alarm(format!(
                    "fleet table {key} differs in the store ({reason}); kept"
                ));
                self.tables.parked.insert(first);
                return Ok(false);
            }
            bytes += file_bytes;
            rows += file_rows;
            self.status.tables.files.fetch_add(1, Ordering::Relaxed);
        }
        let confirm = Event::ShipConfirmed {
            object: ShipObject::Tables,
            first_offset: first,
            next_offset: next,
            sha256: sha,
            bytes,
        };
        record(&self.engine, vec![confirm])
            .await
            .map_err(ShipError::from)?;
        // The baselines stay in memory either way; a file that could not be saved is only
        // folded again after a restart.
        let carry_out = scanned.carry_out;
        if let Err(e) = self.save_carry(&carry_out) {
            tracing::warn!(error = %e, "fleet tables: cannot save the baselines");
            self.status
                .error(format!("fleet tables: saving the baselines: {e}"));
        }
        self.tables.carry = Some(carry_out);
        let counters = &self.status.tables;
        counters.segments.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        counters.rows.fetch_add(rows, Ordering::Relaxed);
        counters.log_bytes.fetch_add(log_bytes, Ordering::Relaxed);
        Ok(true)
    }

    /// The baselines where segment `first` begins: the saved ones, else folded again.
    async fn carry_at(
        &mut self,
        first: Offset,
        system: &SystemState,
    ) -> Result<Carry, TablesFault> {
        if self.tables.carry.is_none() {
            self.tables.carry = self.load_carry();
        }
        // The shipped history begins at its lowest shipped segment (1, unless older
        // segments were never shipped).
        let start = system
            .shipped
            .range((ShipObject::Segment, 0)..=(ShipObject::Segment, u64::MAX))
            .next()
            .map_or(first, |((_, f), _)| *f);
        let mut carry = match self.tables.carry.take() {
            Some(c) if c.next_offset <= first && c.next_offset >= start => c,
            _ => Carry::starting_at(start),
        };
        // Every segment between where the baselines stand and `first` was shipped (and
        // has tables): fold through it.
        let before: Vec<(Offset, Offset, [u8; 32])> = system
            .shipped
            .range((ShipObject::Segment, carry.next_offset)..(ShipObject::Segment, first))
            .map(|((_, f), (n, sha))| (*f, *n, *sha))
            .collect();
        for (f, n, sha) in before {
            if f != carry.next_offset {
                return Err(TablesFault::Gap(first));
            }
            let (records, _) = self.segment_source(f, n, sha).await?;
            let job = SegmentJob {
                site: self.site_id.clone(),
                lineage: String::new(),
                first_offset: f,
                records,
                carry_in: Arc::new(carry),
            };
            carry = blocking(&self.status.tables.cpu_us, move || job.scan())
                .await??
                .carry_out;
        }
        if carry.next_offset != first {
            return Err(TablesFault::Gap(first));
        }
        Ok(carry)
    }

    /// Where segment `first..next`'s records are read from, and its size: the local archive
    /// file (decompressed as it is read; its checksums are checked on every pass), else the
    /// hot log (read in place), else a copy downloaded from central storage. A local copy
    /// must have the segment's SHA-256.
    async fn segment_source(
        &mut self,
        first: Offset,
        next: Offset,
        sha: [u8; 32],
    ) -> Result<(Arc<dyn Records>, u64), TablesFault> {
        let path = self
            .data_dir
            .join(gridlog_firmware::archive::ARCHIVE_DIR_NAME)
            .join(gridlog_firmware::archive::archive_file_name(first));
        let header = tokio::task::block_in_place(|| {
            let mut file = std::fs::File::open(&path).ok()?;
            gridlog_firmware::archive::read_header(&mut file, &path).ok()
        });
        if let Some(header) = header {
            if header.sha256 != sha || header.next_offset != next {
                return Err(TablesFault::WrongCopy { first });
            }
            return Ok((Arc::new(ArchiveFile(path)), header.original_bytes));
        }
        if let Some(sealed) = self.engine.wal().sealed_segment(first) {
            let sealed_sha =
                tokio::task::block_in_place(|| gridlog_firmware::archive::sha256(&sealed));
            if sealed_sha != sha {
                return Err(TablesFault::WrongCopy { first });
            }
            let bytes = sealed.len() as u64;
            return Ok((Arc::new(sealed), bytes));
        }
        if self.tables.chain.is_none() {
            let segments = shipped_segments(&self.store, &self.site_id).await?;
            self.tables.chain = Some(
                segments
                    .into_iter()
                    .map(|(e, _)| (e.first_offset, e))
                    .collect(),
            );
        }
        let entry = self
            .tables
            .chain
            .as_ref()
            .and_then(|c| c.get(&first))
            .filter(|e| e.next_offset == next && e.segment_sha256.0 == sha)
            .cloned()
            .ok_or(TablesFault::NoCopy(first))?;
        let fetched = fetch_segment(&self.store, &entry).await?;
        self.status
            .tables
            .history_fetched_segments
            .fetch_add(1, Ordering::Relaxed);
        let bytes = fetched.original.len() as u64;
        Ok((Arc::new(fetched.original), bytes))
    }

    fn carry_path(&self) -> std::path::PathBuf {
        self.data_dir
            .join(lineage::SHIP_DIR_NAME)
            .join(TABLES_CARRY_FILE_NAME)
    }

    fn load_carry(&self) -> Option<Carry> {
        let path = self.carry_path();
        // Read no more than any carry can be: a larger file fails to decode (damage), and
        // the baselines are folded again.
        let bytes = crate::files::read_at_most(&path, CARRY_FILE_BYTES_MAX).ok()?;
        Carry::decode(&bytes)
            .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "fleet tables: folding the baselines again"))
            .ok()
    }

    fn save_carry(&self, carry: &Carry) -> std::io::Result<()> {
        let dir = self.data_dir.join(lineage::SHIP_DIR_NAME);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            lineage::sync_dir(&self.data_dir)?;
        }
        lineage::write_durably(&self.carry_path(), &carry.encode())?;
        Ok(())
    }
}

/// Runs CPU-bound work off the runtime's threads; adds the CPU time it took (µs) to `cpu_us`.
async fn blocking<T: Send + 'static>(
    cpu_us: &std::sync::atomic::AtomicU64,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let (value, spent_us) = tokio::task::spawn_blocking(move || {
        let start = thread_cpu_us();
        let value = f();
        (value, thread_cpu_us().saturating_sub(start))
    })
    .await?;
    cpu_us.fetch_add(spent_us, Ordering::Relaxed);
    Ok(value)
}

/// CPU time of the calling thread, µs (0 where the clock cannot be read).
fn thread_cpu_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
    })
}

/// The largest carry file read: its header and the largest body.
const CARRY_FILE_BYTES_MAX: u64 = CARRY_BODY_BYTES_MAX as u64 + 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_after_failures_doubles_up_to_an_hour() {
        assert_eq!(retry_wait(0), TABLES_RETRY);
        assert_eq!(retry_wait(1), 2 * TABLES_RETRY);
        assert_eq!(retry_wait(5), TABLES_RETRY_MAX.min(32 * TABLES_RETRY));
        assert_eq!(retry_wait(40), TABLES_RETRY_MAX);
    }

    #[test]
    fn the_oldest_shipped_segment_without_its_tables_comes_next() {
        let mut system = SystemState::default();
        assert_eq!(next_untabled(&system), (None, 0));
        for (first, next) in [(1, 10), (10, 20), (20, 30)] {
            system
                .shipped
                .insert((ShipObject::Segment, first), (next, [first as u8; 32]));
        }
        assert_eq!(next_untabled(&system), (Some((1, 10, [1; 32])), 3));
        system
            .shipped
            .insert((ShipObject::Tables, 1), (10, [1; 32]));
        system
            .shipped
            .insert((ShipObject::Tables, 20), (30, [20; 32]));
        assert_eq!(next_untabled(&system), (Some((10, 20, [10; 32])), 1));
        // Tables of another segment at the same offset (a different copy) do not count.
        system
            .shipped
            .insert((ShipObject::Tables, 10), (20, [99; 32]));
        assert_eq!(next_untabled(&system), (Some((10, 20, [10; 32])), 1));
        system
            .shipped
            .insert((ShipObject::Tables, 10), (20, [10; 32]));
        assert_eq!(next_untabled(&system), (None, 0));
    }
}
