//! The subcommands' work, one file each, and the exit status they share.

pub mod dump;
pub mod export;
pub mod import;
pub mod restore;
pub mod serve;
pub mod ship;
pub mod snapshot;
pub mod tls_selfsigned;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use gridlog_firmware::wal::WAL_DIR_NAME;

/// How a command ended: the process exit status that scripts and monitoring read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job is done and the log is clean (a torn tail included): exit 0.
    Clean,
    /// The job is done and the log is damaged: exit 1.
    Damaged,
    /// The job could not be done (bad usage, a missing directory, an I/O error): exit 2.
    /// clap exits with the same status for usage errors.
    Failed,
}

impl Outcome {
    /// The process exit status.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Damaged => ExitCode::from(1),
            Outcome::Failed => ExitCode::from(2),
        }
    }
}

/// The two-thread runtime of a command that talks to central storage (`ship`, `restore`);
/// if it cannot start, says so for `command` and fails.
pub fn store_runtime(command: &str) -> Result<tokio::runtime::Runtime, Outcome> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{command}: cannot start the runtime: {e}");
            Outcome::Failed
        })
}

/// Explains an I/O error on a data directory; a missing `wal/` gets a hint about which
/// directory to give.
pub fn describe_io_error(data_dir: &Path, path: &Path, error: &std::io::Error) -> String {
    let wal_dir = data_dir.join(WAL_DIR_NAME);
    if error.kind() == std::io::ErrorKind::NotFound && path == wal_dir {
        let holds_segments = std::fs::read_dir(data_dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        });
        let hint = if holds_segments {
            " (this looks like a wal/ directory itself: give its parent, the data directory)"
        } else {
            ""
        };
        return format!(
            "no log in {}: {} does not exist{hint}",
            data_dir.display(),
            wal_dir.display()
        );
    }
    format!("cannot read {}: {error}", path.display())
}
