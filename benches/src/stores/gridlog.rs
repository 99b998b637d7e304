//! gridlog's WAL, as the gateway uses it.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridlog_common::segment::SegmentHeader;

use gridlog_firmware::wal::{AppendTicket, CommitStatsSnapshot, Preallocation, Wal, WalOptions};

use super::{Payload, Store};
use crate::driver::{Samples, Window};

/// gridlog with default options (64 MiB preallocated segments, no commit delay).
///
/// With `GRIDLOG_BENCH_SEGMENTS=recycled` it runs as a gateway that has run for a while: the
/// log is first filled and its sealed segments removed until the active segment is a
/// recycled file, and an "archiver" thread removes every sealed segment as it appears (as the
/// maintenance cycle does once it archived one), so later segments are recycled too.
#[derive(Debug)]
pub struct GridlogStore {
    wal: Arc<Wal>,
    archiver: Option<(Arc<AtomicBool>, JoinHandle<io::Result<()>>)>,
}

/// How often the archiver thread of a recycling store removes sealed segments.
const ARCHIVER_PERIOD: Duration = Duration::from_millis(5);

/// Whether `GRIDLOG_BENCH_SEGMENTS` asks for recycled segments (`recycled`) or fresh ones
/// (`fresh`, the default).
pub fn recycled_segments_from_env() -> io::Result<bool> {
    match std::env::var("GRIDLOG_BENCH_SEGMENTS").as_deref() {
        Err(_) | Ok("fresh") => Ok(false),
        Ok("recycled") => Ok(true),
        Ok(other) => Err(io::Error::other(format!(
            "GRIDLOG_BENCH_SEGMENTS must be fresh or recycled, not {other:?}"
        ))),
    }
}

/// Fills the log and removes its sealed segments (as archiving does) until the active
/// segment is a recycled file. The filling appends go 16 at a time (about 1 MiB), so that a
/// log with a commit delay fills one round per delay.
pub fn recycle_a_segment(wal: &Wal) -> io::Result<()> {
    let filler = vec![0x5a_u8; 4000];
    let batch: Vec<&[u8]> = vec![&filler[..]; 16];
    let recycled = |path: &Path| -> io::Result<bool> {
        let mut header = [0u8; gridlog_common::segment::SEGMENT_HEADER_BYTES];
        std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(path)?, &mut header, 0)?;
        Ok(SegmentHeader::decode(&header)
            .map_err(io::Error::other)?
            .recycled)
    };
    while !recycled(&wal.segments().last().expect("a segment").1)? {
        let tickets = (0..16)
            .map(|_| wal.append_nowait(&batch))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        for ticket in tickets {
            ticket.wait().map_err(io::Error::other)?;
        }
        remove_sealed(wal)?;
    }
    Ok(())
}

fn remove_sealed(wal: &Wal) -> io::Result<()> {
    for (first, _) in wal.sealed_segments() {
        wal.remove_oldest_segment(first)?;
    }
    Ok(())
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
        let wal = Arc::new(Wal::open(dir, options).map_err(io::Error::other)?);
        if !recycled_segments_from_env()? {
            return Ok(GridlogStore {
                wal,
                archiver: None,
            });
        }
        recycle_a_segment(&wal)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (wal, stop) = (wal.clone(), stop.clone());
            std::thread::spawn(move || -> io::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    remove_sealed(&wal)?;
                    std::thread::sleep(ARCHIVER_PERIOD);
                }
                Ok(())
            })
        };
        Ok(GridlogStore {
            wal,
            archiver: Some((stop, thread)),
        })
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
        if let Some((stop, thread)) = self.archiver {
            stop.store(true, Ordering::Relaxed);
            thread.join().expect("archiver thread")?;
        }
        Arc::into_inner(self.wal)
            .expect("the archiver has stopped")
            .close()
            .map_err(io::Error::other)
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
