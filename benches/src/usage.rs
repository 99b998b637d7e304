//! What a row cost the machine: CPU, context switches and bytes sent to the disk, from
//! `getrusage`, `/proc/self/io` and the block device's `stat`, before and after.
//!
//! Two views of the bytes written, because neither is exact alone:
//! - `write_bytes` of `/proc/self/io` is this process only, but counted when a page cache
//!   folio turns dirty, at the folio's size: a 78-byte write into a clean 16 KiB folio
//!   counts 16 KiB even if the file system then writes only the one dirty 4 KiB block;
//! - the device's sectors written are what really reached the disk (journal included), but
//!   for the whole machine: anything else writing at the time is counted too.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// A snapshot of the process's counters.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    at: Instant,
    times: sys::ProcessTimes,
    disk_write_bytes: u64,
    device_write_bytes: Option<u64>,
}

/// The `stat` file of the block device a data directory lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStat {
    path: PathBuf,
}

/// Bytes per sector in a block device's `stat` (always 512, whatever the device's own).
const STAT_SECTOR_BYTES: u64 = 512;
/// Index of "sectors written" among the fields of a block device's `stat`.
const STAT_SECTORS_WRITTEN_FIELD: usize = 6;

impl DeviceStat {
    /// The `stat` of `device` (as `/proc/self/mounts` names it, e.g. `/dev/vda`), if the
    /// kernel has one for it.
    pub fn of(device: &str) -> Option<DeviceStat> {
        let name = Path::new(device).file_name()?;
        let path = Path::new("/sys/class/block").join(name).join("stat");
        path.exists().then_some(DeviceStat { path })
    }

    /// Bytes written to the device since boot.
    pub fn written_bytes(&self) -> io::Result<u64> {
        let text = std::fs::read_to_string(&self.path)?;
        text.split_whitespace()
            .nth(STAT_SECTORS_WRITTEN_FIELD)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|sectors| sectors * STAT_SECTOR_BYTES)
            .ok_or_else(|| io::Error::other(format!("unreadable {}", self.path.display())))
    }
}

/// The growth of the counters over a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageDelta {
    /// Wall time.
    pub wall: Duration,
    /// CPU time of all threads.
    pub cpu: Duration,
    /// Context switches of all threads.
    pub context_switches: u64,
    /// Bytes the process caused to be written to storage (dirtied folios).
    pub disk_write_bytes: u64,
    /// Bytes written to the data directory's block device, by anyone.
    pub device_write_bytes: Option<u64>,
}

impl UsageDelta {
    /// Average cores busy.
    pub fn cores_busy(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

fn disk_write_bytes() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    text.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no write_bytes in /proc/self/io"))
}

impl Usage {
    /// The counters now; `device` adds the block device's.
    pub fn now(device: Option<&DeviceStat>) -> io::Result<Usage> {
        Ok(Usage {
            at: Instant::now(),
            times: sys::process_times()?,
            disk_write_bytes: disk_write_bytes()?,
            device_write_bytes: device.map(DeviceStat::written_bytes).transpose()?,
        })
    }

    /// The growth since `earlier`.
    pub fn since(&self, earlier: &Usage) -> UsageDelta {
        UsageDelta {
            wall: self.at - earlier.at,
            cpu: self.times.cpu.saturating_sub(earlier.times.cpu),
            context_switches: self.times.context_switches - earlier.times.context_switches,
            disk_write_bytes: self.disk_write_bytes - earlier.disk_write_bytes,
            device_write_bytes: self
                .device_write_bytes
                .zip(earlier.device_write_bytes)
                .map(|(now, then)| now - then),
        }
    }
}
