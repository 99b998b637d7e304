//! Tells systemd how the service is doing (`Type=notify`), through `sd-notify`.
//!
//! - while the log is recovered: `EXTEND_TIMEOUT_USEC` every [`EXTEND_EVERY`], so a long
//!   replay is never killed by `TimeoutStartSec`, and a hung one still is;
//! - `READY=1` once the engine is open and every adapter is started;
//! - `WATCHDOG=1` every half `WatchdogSec`, but only while the commit path is healthy
//!   ([`CommitHealth`]): a failed log or a commit path that stopped finishing rounds with work
//!   waiting lets the watchdog fire, and systemd restarts the gateway (recovery then keeps
//!   every acknowledged event);
//! - `STOPPING=1` at the first SIGINT/SIGTERM.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::sync::Arc;
use std::time::Duration;

use gridlog_firmware::engine::{Engine, EngineStats};
use sd_notify::NotifyState;

/// How often recovery extends systemd's start timeout.
pub const EXTEND_EVERY: Duration = Duration::from_secs(10);
/// How far each extension reaches: three periods, so one late tick does not kill the start.
pub const EXTEND_BY: Duration = Duration::from_secs(30);

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Recovery has started (or goes on): asks systemd for [`EXTEND_BY`] more time.
pub fn recovering() {
    notify(&[
        NotifyState::Status("recovering the log"),
        NotifyState::ExtendTimeoutUsec(EXTEND_BY.as_micros() as u32),
    ]);
}

/// Extends the start timeout every [`EXTEND_EVERY`] until the returned task is aborted.
pub fn keep_extending_start() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            recovering();
            tokio::time::sleep(EXTEND_EVERY).await;
        }
    })
}

/// The gateway serves reads and writes.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("ready")]);
}

/// The gateway stops (finishing in-flight requests and commits).
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Whether the commit path may be reported alive, decided from two samples of the engine's
/// counters taken one watchdog period apart. Pure, so the rule has unit tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitHealth {
    rounds: u64,
    queued: usize,
    failed: bool,
    /// The log waits for space (a full disk) or for file handles or kernel memory: a
    /// shortage it retries by itself (every `DISK_FULL_RETRY`) and reports in status.
    waiting_for_resources: bool,
}

impl CommitHealth {
    /// The sample of `stats`.
    pub fn sample(stats: &EngineStats) -> CommitHealth {
        CommitHealth {
            rounds: stats.wal.rounds,
            queued: stats.queued,
            failed: stats.failed.is_some(),
            waiting_for_resources: stats.wal.disk_full || stats.wal.resources_exhausted,
        }
    }

    /// Healthy unless the log failed, or requests were waiting at both samples and no write
    /// round finished between them (a commit path stuck in a write or a sync). A log that
    /// waits for disk space is not stuck: it resumes by itself when space is freed, and a
    /// restart would only replay the log and wait again (a restart loop on a full disk).
    pub fn healthy_since(self, earlier: CommitHealth) -> bool {
        let stuck = earlier.queued > 0
            && self.queued > 0
            && self.rounds == earlier.rounds
            && !self.waiting_for_resources
            && !earlier.waiting_for_resources;
        !self.failed && !stuck
    }
}

/// Pings systemd's watchdog while the commit path is healthy, if the unit asks for one
/// (`WatchdogSec`); `None` if it does not.
pub fn spawn_watchdog(engine: Arc<Engine>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        let mut earlier = CommitHealth::sample(&engine.stats());
        loop {
            tokio::time::sleep(period).await;
            let now = CommitHealth::sample(&engine.stats());
            if now.healthy_since(earlier) {
                notify(&[NotifyState::Watchdog]);
                if now.waiting_for_resources != earlier.waiting_for_resources {
                    let status = if now.waiting_for_resources {
                        "ready; writes wait for disk space (or file handles, memory)"
                    } else {
                        "ready"
                    };
                    notify(&[NotifyState::Status(status)]);
                }
            } else {
                tracing::error!(
                    failed = now.failed,
                    queued = now.queued,
                    "the commit path is not healthy: not pinging the watchdog"
                );
            }
            earlier = now;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::CommitHealth;

    fn health(rounds: u64, queued: usize, failed: bool) -> CommitHealth {
        CommitHealth {
            rounds,
            queued,
            failed,
            waiting_for_resources: false,
        }
    }

    fn waiting_for_space(rounds: u64, queued: usize) -> CommitHealth {
        CommitHealth {
            waiting_for_resources: true,
            ..health(rounds, queued, false)
        }
    }

    #[test]
    fn an_idle_commit_path_is_healthy() {
        assert!(health(5, 0, false).healthy_since(health(5, 0, false)));
    }

    #[test]
    fn rounds_finishing_under_load_are_healthy() {
        assert!(health(9, 40, false).healthy_since(health(5, 40, false)));
    }

    #[test]
    fn work_waiting_without_a_finished_round_is_stuck() {
        assert!(!health(5, 3, false).healthy_since(health(5, 1, false)));
    }

    #[test]
    fn work_that_just_arrived_is_not_yet_stuck() {
        assert!(health(5, 3, false).healthy_since(health(5, 0, false)));
    }

    #[test]
    fn work_waiting_for_disk_space_is_not_stuck() {
        assert!(waiting_for_space(5, 3).healthy_since(waiting_for_space(5, 1)));
        // Space has just come back: the writer's next retry has a whole period to finish.
        assert!(health(5, 3, false).healthy_since(waiting_for_space(5, 1)));
        // A period later without a round, it is stuck.
        assert!(!health(5, 3, false).healthy_since(health(5, 3, false)));
    }

    #[test]
    fn a_failed_log_is_never_healthy() {
        assert!(!health(9, 0, true).healthy_since(health(5, 0, false)));
    }
}
