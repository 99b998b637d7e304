//! `gridlog ship --once`: ship what is pending to central storage and exit (for installs
//! that run shipping from cron or a timer instead of inside `gridlog serve`).
//!
//! It opens the data directory (so the gateway must not be running on it: the lock refuses
//! a second writer), reconciles with the store, ships rounds until the backlog is empty,
//! and closes the log. SIGINT/SIGTERM stop it between requests; what was confirmed stays
//! confirmed, the rest is shipped next time.

use std::sync::Arc;

use gridlog_firmware::engine::{Engine, SystemClock};

use super::serve::{engine_options, load_config, Overrides};
use super::{store_runtime, Outcome};
use crate::config::Config;
use crate::ship::{ShipStatus, Shipper};

/// The configuration of a command that needs `ship.store`; says what is wrong for `command`
/// otherwise.
fn store_config(overrides: &Overrides, command: &str) -> Result<Config, Outcome> {
    let config = load_config(overrides).map_err(|e| {
        eprintln!("{command}: {e}");
        Outcome::Failed
    })?;
    if config.ship.store.is_empty() {
        eprintln!("{command}: no store configured: set ship.store (GRIDLOG_SHIP__STORE), e.g. s3://bucket/prefix or file:///srv/gridlog");
        return Err(Outcome::Failed);
    }
    Ok(config)
}

/// Runs `ship --check`: the read-only audit of central storage.
pub fn check(overrides: &Overrides) -> Outcome {
    const COMMAND: &str = "gridlog ship --check";
    let config = match store_config(overrides, COMMAND) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let runtime = match store_runtime(COMMAND) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let result = runtime.block_on(crate::ship::audit::audit(
        &config.ship.store,
        &config.site_id,
        &config.ship,
    ));
    match result {
        Ok(report) => {
            println!(
                "checked {} objects against {} manifests: {} missing, {} extra, {} tampered ({} superseded chunks deleted as expected; {} rollup parts no manifest names yet)",
                report.listed,
                report.manifests,
                report.missing.len(),
                report.extra.len(),
                report.tampered.len(),
                report.superseded_gone,
                report.unnamed_rollup_parts
            );
            for key in &report.missing {
                println!("MISSING  {key}");
            }
            for key in &report.extra {
                println!("EXTRA    {key}");
            }
            for key in &report.tampered {
                println!("TAMPERED {key}");
            }
            if report.clean() {
                Outcome::Clean
            } else {
                Outcome::Damaged
            }
        }
        Err(e) => {
            eprintln!("gridlog ship --check: {e}");
            Outcome::Failed
        }
    }
}

/// Runs `ship --once`.
pub fn run(overrides: &Overrides) -> Outcome {
    const COMMAND: &str = "gridlog ship";
    let config = match store_config(overrides, COMMAND) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let engine = match Engine::open(
        &config.data_dir,
        engine_options(&config, Arc::new(SystemClock)),
    ) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!(
                "gridlog ship: cannot open {}: {e}",
                config.data_dir.display()
            );
            return Outcome::Failed;
        }
    };
    let runtime = match store_runtime(COMMAND) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let result = runtime.block_on(async {
        let lineage = crate::ship::lineage::ensure(&config.data_dir)?;
        let status = Arc::new(ShipStatus::new(&config.ship.store, &lineage));
        let shipper = Shipper::new(&config, engine.clone(), status.clone())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let summary = shipper.run_once(stop_rx).await?;
        Ok::<_, crate::ship::ShipError>((summary, status))
    });
    drop(runtime);
    let outcome = match result {
        Ok((summary, status)) => {
            println!(
                "shipped {} objects ({} bytes) in {} manifests; {} requests; {} left in the backlog",
                summary.objects,
                summary.bytes,
                summary.manifests,
                status.requests.load(std::sync::atomic::Ordering::Relaxed),
                summary.left
            );
            let detail = status.body().detail;
            let tables = detail.as_ref().map(|d| &d.tables);
            let tables_waiting = match tables.filter(|t| t.enabled) {
                Some(t) => {
                    println!(
                        "tables: {} segments, {} files ({} bytes, {} rows) from {} bytes of log in {} ms CPU; {} segments waiting",
                        t.segments, t.files, t.bytes, t.rows, t.log_bytes, t.cpu_ms, t.waiting_segments
                    );
                    t.waiting_segments
                }
                None => 0,
            };
            for alarm in status.alarms() {
                eprintln!("gridlog ship: ALARM: {alarm}");
            }
            if let Some(error) = detail
                .and_then(|d| d.last_error)
                .filter(|_| tables_waiting > 0)
            {
                eprintln!("gridlog ship: {}", error.message);
            }
            if summary.left == 0 && tables_waiting == 0 {
                Outcome::Clean
            } else {
                Outcome::Damaged
            }
        }
        Err(e) => {
            eprintln!("gridlog ship: {e}");
            Outcome::Failed
        }
    };
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown(),
        Err(engine) => drop(engine),
    }
    outcome
}
