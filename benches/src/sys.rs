//! The only `unsafe` of the benchmarks: `fallocate(2)`, `getrusage(2)` and `sysconf(3)`,
//! which std does not expose.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Allocates `len` bytes from the start of `file` as unwritten extents (mode 0: the file's
/// size grows to `len`, reads return zeros, no data is written).
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length beyond off_t"))?;
    // SAFETY: `file` is borrowed for the whole call, so its descriptor stays open and valid;
    // fallocate takes no pointer, so no memory can be touched.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time and context switches of this process (all its threads, dead ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessTimes {
    /// User and system CPU time.
    pub cpu: std::time::Duration,
    /// Voluntary and involuntary context switches.
    pub context_switches: u64,
}

/// `getrusage(RUSAGE_SELF)`.
pub fn process_times() -> io::Result<ProcessTimes> {
    // SAFETY: `rusage` is plain old data (integers and timevals), for which all-zero bytes
    // are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable `rusage` that outlives the call, which
    // writes only within it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    Ok(ProcessTimes {
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        context_switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    })
}

/// Clock ticks per second, the unit of the CPU times in `/proc/*/stat` (`sysconf(_SC_CLK_TCK)`;
/// 100 if it cannot be read, the value on every Linux this runs on).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads only its integer argument.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
