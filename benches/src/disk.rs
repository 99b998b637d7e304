//! The physical limit: what the file system gives a single thread that does nothing but
//! `pwrite` + `fdatasync`, with no log, no locks and no threads in between.
//!
//! Three kinds of file, because the kind decides what `fdatasync` must make durable:
//! - **zero-filled**: every block was written (with zeros) and synced beforehand, so a sync
//!   after an overwrite flushes data only — this is what a gridlog segment is. Filled in
//!   1 MiB writes as gridlog does, and once more in 4 KiB writes: the write size decides
//!   the size of the page-cache folios the file keeps (large folios on ext4 since Linux
//!   6.16), and so how much one small overwrite dirties;
//! - **appended**: the file grows with every write, so each sync also commits the new size
//!   and the new block allocation through the file system's journal;
//! - **fallocated**: blocks are reserved but marked unwritten, so the first write to each
//!   block must convert the extent to written, again a journal commit.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::driver::{closed_loop, Measured};
use crate::sys;
use crate::usage::{DeviceStat, Usage, UsageDelta};

/// Size of the files the record probes write into: as large as a gridlog segment, so a
/// probe never runs off the end (a record probe writes well under 1 MiB per second).
pub const PROBE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes per write of the page-sized record probes: every sync then lands in a block no
/// earlier sync touched, so a fallocated file pays its extent conversion on every sync
/// rather than once per 4 KiB of small records.
pub const PAGE_PROBE_BYTES: usize = 4096;
/// Bytes per write of the bandwidth probe; it syncs after each.
pub const SEQUENTIAL_CHUNK_BYTES: usize = 1024 * 1024;
/// Most bytes the bandwidth probe writes per pass (it also stops at its time limit).
pub const SEQUENTIAL_BYTES_MAX: u64 = 1024 * 1024 * 1024;

const _: () = assert!(PROBE_FILE_BYTES.is_multiple_of(SEQUENTIAL_CHUNK_BYTES as u64));

/// The kind of file a record probe writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Written with zeros in 1 MiB writes (as gridlog's preallocator does) and synced
    /// beforehand: overwrites.
    ZeroFilled,
    /// The same, zero-filled in 4 KiB writes (page-sized page-cache folios).
    ZeroFilledInPages,
    /// Empty: every write extends it.
    Appended,
    /// `fallocate`d: reserved, unwritten extents.
    Fallocated,
}

impl FileKind {
    /// All kinds, in the order they are reported.
    pub const ALL: [FileKind; 4] = [
        FileKind::ZeroFilled,
        FileKind::ZeroFilledInPages,
        FileKind::Appended,
        FileKind::Fallocated,
    ];

    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            FileKind::ZeroFilled => "zero-filled in 1 MiB writes (overwrite)",
            FileKind::ZeroFilledInPages => "zero-filled in 4 KiB writes (overwrite)",
            FileKind::Appended => "appended",
            FileKind::Fallocated => "fallocated",
        }
    }
}

/// Result of the sequential bandwidth probe, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    /// Writing a new file (it grows with each chunk).
    pub append_bytes_per_s: f64,
    /// Writing the same bytes again (blocks already allocated and written).
    pub overwrite_bytes_per_s: f64,
    /// Bytes written per pass.
    pub bytes: u64,
}

impl Bandwidth {
    /// The better of the two passes: the disk's sequential limit as far as we can tell.
    pub fn best_bytes_per_s(&self) -> f64 {
        self.append_bytes_per_s.max(self.overwrite_bytes_per_s)
    }
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Creates `path` as a file of `kind`, durable (data and size) before the probe starts.
fn prepare(path: &Path, kind: FileKind) -> io::Result<File> {
    let file = create(path)?;
    let zero_fill_chunk = match kind {
        FileKind::ZeroFilledInPages => PAGE_PROBE_BYTES,
        _ => SEQUENTIAL_CHUNK_BYTES,
    };
    match kind {
        FileKind::ZeroFilled | FileKind::ZeroFilledInPages => {
            let zeros = vec![0u8; zero_fill_chunk];
            let mut pos = 0;
            while pos < PROBE_FILE_BYTES {
                file.write_all_at(&zeros, pos)?;
                pos += zeros.len() as u64;
            }
        }
        FileKind::Appended => {}
        FileKind::Fallocated => sys::fallocate(&file, PROBE_FILE_BYTES)?,
    }
    file.sync_all()?;
    Ok(file)
}

/// One raw probe and what it measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawProbe {
    /// The kind of file.
    pub kind: FileKind,
    /// Bytes per `pwrite`.
    pub write_bytes: usize,
    /// Latency of write + sync; "records" are syncs.
    pub measured: Measured,
    /// What the loop cost (the file's preparation excluded).
    pub usage: UsageDelta,
}

/// Measures `pwrite(record_bytes)` + `fdatasync` at consecutive positions of a file of
/// `kind` in `dir`, in a closed loop of one thread. The file is removed afterwards.
pub fn probe_record_sync(
    dir: &Path,
    kind: FileKind,
    record_bytes: usize,
    warmup: Duration,
    measure: Duration,
    device: Option<&DeviceStat>,
) -> io::Result<RawProbe> {
    let path = dir.join(format!("probe-{kind:?}-{record_bytes}.dat"));
    let file = prepare(&path, kind)?;
    let record: Vec<u8> = (0..record_bytes).map(|i| (i as u8) | 0x80).collect();
    let slots = PROBE_FILE_BYTES / record_bytes as u64;
    let usage = Usage::now(device)?;
    let measured = closed_loop(1, warmup, measure, |_, window, samples| {
        let mut slot = 0u64;
        while window.running() && slot < slots {
            let started = Instant::now();
            file.write_all_at(&record, slot * record_bytes as u64)?;
            file.sync_data()?;
            samples.record(window, started, Instant::now(), 1);
            slot += 1;
        }
        Ok(())
    });
    let usage = Usage::now(device)?.since(&usage);
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(RawProbe {
        kind,
        write_bytes: record_bytes,
        measured: measured?,
        usage,
    })
}

/// Measures sequential 1 MiB writes with an `fdatasync` after each: first into a new file,
/// then over the same bytes again. Each pass stops at `limit` or [`SEQUENTIAL_BYTES_MAX`].
pub fn probe_sequential(dir: &Path, limit: Duration) -> io::Result<Bandwidth> {
    let path = dir.join("probe-sequential.dat");
    let file = create(&path)?;
    let chunk: Vec<u8> = (0..SEQUENTIAL_CHUNK_BYTES)
        .map(|i| (i as u8) | 0x40)
        .collect();
    let started = Instant::now();
    let mut bytes = 0u64;
    while bytes < SEQUENTIAL_BYTES_MAX && started.elapsed() < limit {
        file.write_all_at(&chunk, bytes)?;
        file.sync_data()?;
        bytes += chunk.len() as u64;
    }
    let append_bytes_per_s = bytes as f64 / started.elapsed().as_secs_f64();
    file.sync_all()?;
    let started = Instant::now();
    let mut pos = 0u64;
    while pos < bytes {
        file.write_all_at(&chunk, pos)?;
        file.sync_data()?;
        pos += chunk.len() as u64;
    }
    let overwrite_bytes_per_s = bytes as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Bandwidth {
        append_bytes_per_s,
        overwrite_bytes_per_s,
        bytes,
    })
}
