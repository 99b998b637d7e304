//! `gridlog restore --from URL --site SITE --data DIR [--full]`: rebuild a data directory
//! from central storage (see `crate::ship::restore`).

use super::serve::{load_config, Overrides};
use super::{store_runtime, Outcome};
use crate::ship::restore::{restore, RestoreError, RestoreOptions};

/// Runs the restore. Exit status: 0 rebuilt, 1 the store's history is missing, tampered or
/// inconsistent, 2 usage or I/O error.
pub fn run(options: &RestoreOptions, config_file: Option<std::path::PathBuf>) -> Outcome {
    let config = match load_config(&Overrides {
        config: config_file,
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog restore: {e}");
            return Outcome::Failed;
        }
    };
    let runtime = match store_runtime("gridlog restore") {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    match runtime.block_on(restore(options, &config.ship)) {
        Ok(report) => {
            println!(
                "restored {} from lineage {} ({} manifests): {} segments{}, offsets {}..{}, {} bytes downloaded; new lineage {}",
                options.data_dir.display(),
                report.from_lineage,
                report.manifests,
                report.segments,
                report.snapshot.map_or(String::new(), |s| format!(
                    " after the snapshot at offset {s} with {} rollup spills",
                    report.rollup_spills
                )),
                report.first_offset,
                report.next_offset,
                report.bytes_downloaded,
                report.new_lineage
            );
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("gridlog restore: {e}");
            match e {
                RestoreError::Usage(_) | RestoreError::Io { .. } | RestoreError::Store(_) => {
                    Outcome::Failed
                }
                _ => Outcome::Damaged,
            }
        }
    }
}
