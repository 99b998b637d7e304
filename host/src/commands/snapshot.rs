//! `gridlog snapshot`: take a snapshot of a stopped gateway's data directory now (then
//! compact and archive as after any snapshot). A running gateway is asked over HTTP instead.

use std::sync::Arc;

use gridlog_firmware::engine::{Engine, EngineOpenError, SystemClock};
use gridlog_firmware::lock::LockError;
use gridlog_firmware::wal::OpenError;

use super::serve::{engine_options, load_config, Overrides};
use super::Outcome;

/// Runs `gridlog snapshot`.
pub fn run(overrides: &Overrides) -> Outcome {
    let config = match load_config(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog snapshot: {e}");
            return Outcome::Failed;
        }
    };
    let engine = match Engine::open(
        &config.data_dir,
        engine_options(&config, Arc::new(SystemClock)),
    ) {
        Ok(e) => e,
        Err(EngineOpenError::Log(OpenError::Locked(LockError::Held { pid, .. }))) => {
            eprintln!(
                "gridlog snapshot: the gateway is running on {} (pid {}); ask it instead: curl -X POST http://{}/api/v1/snapshot",
                config.data_dir.display(),
                pid.map_or("unknown".into(), |p| p.to_string()),
                config.listen
            );
            return Outcome::Failed;
        }
        Err(e) => {
            eprintln!(
                "gridlog snapshot: cannot open {}: {e}",
                config.data_dir.display()
            );
            return Outcome::Damaged;
        }
    };
    match engine.snapshot_now() {
        Ok(stats) => {
            println!(
                "snapshot at offset {} ({} bytes, {} ms); {} segments archived",
                stats.last_snapshot_offset.unwrap_or(0),
                stats.last_snapshot_bytes,
                stats.last_snapshot_millis,
                stats.segments_archived
            );
            engine.shutdown();
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("gridlog snapshot: {e}");
            Outcome::Failed
        }
    }
}
