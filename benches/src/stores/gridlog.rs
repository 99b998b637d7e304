//! gridlog's WAL, as the gateway uses it.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::time::Instant;

use gridlog_firmware::wal::{AppendTicket, CommitStatsSnapshot, Preallocation, Wal, WalOptions};

use super::{Payload, Store};
use crate::driver::{Samples, Window};

/// gridlog with default options (64 MiB zero-filled segments, no commit delay).
#[derive(Debug)]
pub struct GridlogStore {
    wal: Wal,
}

impl GridlogStore {
    /// Opens a new log in the data directory `dir`.
    pub fn open(dir: &Path) -> io::Result<GridlogStore> {
        GridlogStore::open_with(dir, WalOptions::default())
    }

    /// Opens a new log in the data directory `dir` with `options` (and the preallocation
    /// that `GRIDLOG_BENCH_PREALLOCATION` names, if set).
    pub fn open_with(dir: &Path, options: WalOptions) -> io::Result<GridlogStore> {
        let options = options.preallocation(preallocation_from_env()?);
        let wal = Wal::open(dir, options).map_err(io::Error::other)?;
        Ok(GridlogStore { wal })
    }

    /// The log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The commit counters.
    pub fn stats(&self) -> CommitStatsSnapshot {
        self.wal.stats()
    }

    /// Closes the log (everything appended is durable when this returns).
    pub fn close(self) -> io::Result<()> {
        self.wal.close().map_err(io::Error::other)
    }
}

impl Store for GridlogStore {
    fn name(&self) -> &'static str {
        "gridlog"
    }

    fn append_durable(&self, records: &[Payload]) -> io::Result<()> {
        self.wal
            .append(records)
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

/// One bulk appender: keeps `window_batches` batches in flight with `append_nowait`, waiting
/// for the oldest before it sends another, until `more()` says stop. Each batch's latency
/// runs from its `append_nowait` call to its acknowledgement.
pub fn bulk_pipelined(
    wal: &Wal,
    thread: usize,
    window_batches: usize,
    batch: &mut [Payload],
    window: &Window,
    samples: &mut Samples,
    mut more: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut in_flight: VecDeque<(AppendTicket<'_>, Instant)> =
        VecDeque::with_capacity(window_batches);
    let mut seq = 0u64;
    let records = batch.len() as u64;
    while more() {
        for record in batch.iter_mut() {
            *record = super::payload(thread, seq);
            seq += 1;
        }
        let started = Instant::now();
        let ticket = wal.append_nowait(batch).map_err(io::Error::other)?;
        in_flight.push_back((ticket, started));
        if in_flight.len() >= window_batches {
            if let Some((ticket, started)) = in_flight.pop_front() {
                ticket.wait().map_err(io::Error::other)?;
                samples.record(window, started, Instant::now(), records);
            }
        }
    }
    while let Some((ticket, started)) = in_flight.pop_front() {
        ticket.wait().map_err(io::Error::other)?;
        samples.record(window, started, Instant::now(), records);
    }
    Ok(())
}

/// The preallocation `GRIDLOG_BENCH_PREALLOCATION` asks for: `fallocate` (the default) or
/// `zero-fill`.
pub fn preallocation_from_env() -> io::Result<Preallocation> {
    match std::env::var("GRIDLOG_BENCH_PREALLOCATION").as_deref() {
        Err(_) | Ok("fallocate") => Ok(Preallocation::Fallocate),
        Ok("zero-fill") => Ok(Preallocation::ZeroFill),
        Ok(other) => Err(io::Error::other(format!(
            "GRIDLOG_BENCH_PREALLOCATION must be fallocate or zero-fill, not {other:?}"
        ))),
    }
}
