//! Errors of the log, one type per operation, with the context an operator needs.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::lock::LockError;

/// A place in the log's files where something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Byte position in the file.
    pub position: u64,
    /// What is wrong, in words.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.path.display(),
            self.position,
            self.reason
        )
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the data directory.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The log is damaged where a crash cannot have damaged it. Nothing was changed; open
    /// with [`crate::wal::RecoveryMode::QuarantineCorrupt`] to cut the log at the damage
    /// (the damaged files are moved to `wal/quarantine/`, never deleted).
    #[error("log is corrupt: {damage} (open with recovery mode quarantine-corrupt to move the damaged files aside)")]
    Corrupt {
        /// Where and what.
        damage: Damage,
    },
    /// The oldest segment is damaged, in quarantine mode too: cutting there would leave no
    /// log to continue (a new one would start at offset 1 under a new id, orphaning the
    /// snapshots and the archive). Nothing was changed.
    #[error("the oldest log segment is damaged: {damage}; cutting there would leave no log to continue this history (a new log would orphan the snapshots and the archive). Restore the data directory from central storage (gridlog restore), or move the whole data directory aside to start a new history")]
    OldestSegmentDamaged {
        /// Where and what.
        damage: Damage,
    },
    /// Options out of range.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
    /// A file-system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Why an append was not made durable. Nothing of a failed append is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// An append needs at least one record.
    #[error("an append needs at least one record")]
    Empty,
    /// The batch does not fit in one frame or one segment.
    #[error("batch of {bytes} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The encoded size of the batch.
        bytes: usize,
        /// The limit it hit.
        max: usize,
    },
    /// The log is closed.
    #[error("the log is closed")]
    Closed,
    /// Writing or syncing failed; the log stops accepting appends until it is reopened
    /// (after an fsync error the page cache can no longer be trusted).
    #[error("log write failed: {0}")]
    Io(Arc<io::Error>),
}

/// Why a read of the log failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A frame below the durable end failed its checks (damage after open).
    #[error("corrupt log: {0}")]
    Corrupt(Damage),
    /// The offset asked for is no longer in the hot log.
    #[error("offset {offset} is below the oldest offset {oldest} in the hot log")]
    Truncated {
        /// Offset asked for.
        offset: u64,
        /// Oldest offset available.
        oldest: u64,
    },
}
