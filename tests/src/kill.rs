//! Killing processes as a power cut would, and reading what they acknowledged before.
//!
//! Every kill test spawns a writer (`wal-appender`, `engine-writer`, `gridlog serve`), lets
//! it acknowledge work on stdout, `SIGKILL`s it at a random moment and checks the reopened
//! store against the acknowledgements: [`sigkill`], [`complete_lines`] and [`KillRng`] are
//! the parts they share.

use std::io::{BufRead, BufReader, Read};
use std::thread::JoinHandle;

/// Sends `signal` to process `pid` (a negative `pid` names a process group). An error is
/// returned as the OS gave it; a process that is already gone is `ESRCH`.
pub fn send(pid: i32, signal: i32) -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends a signal to a process, ignoring whether it is still there.
pub fn signal(pid: u32, signal: i32) {
    let _ = send(pid as i32, signal);
}

/// Sends `signal` to every process of the process group `group`.
pub fn signal_group(group: u32, signal: i32) {
    let _ = send(-(group as i32), signal);
}

/// `SIGKILL`s `pid`, as a power cut would; panics unless it was killed or already gone.
pub fn sigkill(pid: u32) {
    match send(pid as i32, libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => panic!("SIGKILL {pid}: {e}"),
    }
}

/// Reads `stdout` of a process on a thread until it closes and returns its complete lines:
/// a line cut by the kill (no newline) was not acknowledged to anyone and is dropped.
pub fn complete_lines(stdout: impl Read + Send + 'static) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                lines.push(line.trim_end().to_string());
            }
            line.clear();
        }
        lines
    })
}

/// xorshift64: the kill moments and thread counts, reproducible from a printed seed.
#[derive(Debug, Clone)]
pub struct KillRng(u64);

impl KillRng {
    /// Seeded from `GRIDLOG_KILL_SEED` if set, else from the clock; prints the seed so a
    /// failing run can be repeated.
    pub fn from_env_or_clock(what: &str) -> KillRng {
        let seed = std::env::var("GRIDLOG_KILL_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("{what} seed {seed} (GRIDLOG_KILL_SEED={seed} repeats it)");
        KillRng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
