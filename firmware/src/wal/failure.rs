//! What a failure does to the log: an I/O error of a round fails it for good (every waiting
//! and later append gets the error; reopening recovers), while a shortage that passes by
//! itself — space, file handles, memory — only makes appends wait while the writer retries.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// How long the writer waits before it tries again to preallocate a segment that failed
/// (typically a full disk).
pub const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

/// Fails the log with `error` and returns it: every waiting and later append gets it, the
/// writer thread ends, and reopening recovers.
pub(super) fn fail_log(shared: &Shared, error: io::Error) -> Arc<io::Error> {
    tracing::error!(%error, "log write failed; the log refuses appends until it is reopened");
    let error = Arc::new(error);
    shared
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failed = Some(error.clone());
    shared
        .durable
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failed = Some(error.clone());
    shared.waiters.wake_everyone();
    shared.room.notify_all();
    shared.work.notify_all();
    error
}

/// The error of a log whose writing end was left by a panic in the middle of a round: what
/// the round had written is unknown, so the log is failed, never written on.
pub(super) fn writer_panicked() -> io::Error {
    io::Error::other("a thread panicked while writing a log round")
}

/// Runs `op` until it succeeds, waiting [`DISK_FULL_RETRY`] after each failure for a
/// shortage that passes by itself (space, file handles, memory: appends wait meanwhile, and
/// the status flags say why); any other error, or the log closing, ends it with the error.
pub(super) fn wait_out(
    shared: &Shared,
    what: &str,
    op: &mut dyn FnMut() -> io::Result<()>,
) -> io::Result<()> {
    loop {
        match op() {
            Ok(()) => {
                shared.stats.disk_full.store(false, Ordering::Relaxed);
                shared
                    .stats
                    .resources_exhausted
                    .store(false, Ordering::Relaxed);
                return Ok(());
            }
            // Any other error (EIO, the preallocator gone) fails the log: waiting would
            // hang every append behind a fault that does not go away by itself.
            Err(error) => {
                let Some(shortage) = shortage(&error) else {
                    return Err(error);
                };
                let flag = match shortage {
                    Shortage::Space => &shared.stats.disk_full,
                    Shortage::Handles | Shortage::Memory => &shared.stats.resources_exhausted,
                };
                flag.store(true, Ordering::Relaxed);
                let closed = shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed;
                if closed {
                    return Err(error);
                }
                tracing::warn!(%error, "{what}; appends wait");
                std::thread::sleep(DISK_FULL_RETRY);
            }
        }
    }
}

/// A shortage that ends by itself when something else lets go: the writer waits it out
/// and appends pause; any other error fails the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortage {
    /// A full disk or quota (ENOSPC, EDQUOT).
    Space,
    /// No file handle left, in the process or the system (EMFILE, ENFILE): other files or
    /// connections close.
    Handles,
    /// No memory for the kernel's bookkeeping or a mapping (ENOMEM).
    Memory,
}

fn shortage(error: &io::Error) -> Option<Shortage> {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Some(Shortage::Space),
        io::ErrorKind::OutOfMemory => Some(Shortage::Memory),
        _ => match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => Some(Shortage::Handles),
            Some(libc::ENOMEM) => Some(Shortage::Memory),
            _ => None,
        },
    }
}

#[cfg(test)]
mod shortage_tests {
    use super::*;

    #[test]
    fn shortages_that_pass_by_themselves_are_waited_out_and_faults_are_not() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(shortage(&os(libc::ENOSPC)), Some(Shortage::Space));
        assert_eq!(shortage(&os(libc::EDQUOT)), Some(Shortage::Space));
        assert_eq!(shortage(&os(libc::EMFILE)), Some(Shortage::Handles));
        assert_eq!(shortage(&os(libc::ENFILE)), Some(Shortage::Handles));
        assert_eq!(shortage(&os(libc::ENOMEM)), Some(Shortage::Memory));
        assert_eq!(shortage(&os(libc::EIO)), None);
        assert_eq!(shortage(&os(libc::EACCES)), None);
        assert_eq!(
            shortage(&io::Error::other("preallocator thread ended")),
            None
        );
    }
}
