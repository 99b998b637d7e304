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
use super::Outcome;
use crate::ship::{ShipStatus, Shipper};

/// Runs `ship --check`: the read-only audit of central storage.
pub fn check(overrides: &Overrides) -> Outcome {
    let config = match load_config(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog ship --check: {e}");
            return Outcome::Failed;
        }
    };
    if config.ship.store.is_empty() {
        eprintln!(
            "gridlog ship --check: no store configured: set ship.store (GRIDLOG_SHIP__STORE)"
        );
        return Outcome::Failed;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gridlog ship --check: cannot start the runtime: {e}");
            return Outcome::Failed;
        }
    };
    let result = runtime.block_on(crate::ship::audit::audit(
        &config.ship.store,
        &config.site_id,
        &config.ship,
    ));
    match result {
        Ok(report) => {
            println!(
                "checked {} objects against {} manifests: {} missing, {} extra, {} tampered ({} superseded chunks deleted as expected)",
                report.listed,
                report.manifests,
                report.missing.len(),
                report.extra.len(),
                report.tampered.len(),
                report.superseded_gone
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
    let config = match load_config(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog ship: {e}");
            return Outcome::Failed;
        }
    };
    if config.ship.store.is_empty() {
        eprintln!("gridlog ship: no store configured: set ship.store (GRIDLOG_SHIP__STORE), e.g. s3://bucket/prefix or file:///srv/gridlog");
        return Outcome::Failed;
    }
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gridlog ship: cannot start the runtime: {e}");
            return Outcome::Failed;
        }
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
            for alarm in status.alarms() {
                eprintln!("gridlog ship: ALARM: {alarm}");
            }
            if summary.left == 0 {
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
