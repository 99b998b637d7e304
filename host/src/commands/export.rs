//! `gridlog export --from URL --site SITE... --to URL|DIR`: the fleet tables from shipped
//! history (see `crate::ship::export`).

use super::serve::{load_config, Overrides};
use super::{store_runtime, Outcome};
use crate::cli::ExportArgs;
use crate::ship::export::{export, ExportError, ExportOptions};
use crate::ship::restore::RestoreError;

/// Runs the export. Exit status: 0 every site exported, 1 a site's shipped history is
/// missing, tampered or inconsistent, 2 usage, store or I/O error.
pub fn run(args: &ExportArgs) -> Outcome {
    let config = match load_config(&Overrides {
        config: args.config.clone(),
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog export: {e}");
            return Outcome::Failed;
        }
    };
    let to = match target_url(&args.to) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("gridlog export: --to {}: {e}", args.to);
            return Outcome::Failed;
        }
    };
    let options = ExportOptions {
        from: args.from.clone(),
        sites: args.site.clone(),
        from_offset: args.from_offset,
        to,
        jobs: args.jobs,
    };
    let runtime = match store_runtime("gridlog export") {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let results = match runtime.block_on(export(&options, &config.ship)) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("gridlog export: {e}");
            return Outcome::Failed;
        }
    };
    let mut outcome = Outcome::Clean;
    for (site, result) in results {
        match result {
            Ok(r) => println!(
                "{site}: lineage {}, {} segments ({} bytes of log), {} files written, {} already there, {} rows",
                r.lineage, r.segments, r.log_bytes, r.files_written, r.files_present, r.rows
            ),
            Err(e) => {
                eprintln!("gridlog export: {site}: {e}");
                outcome = worse(outcome, site_outcome(&e));
            }
        }
    }
    outcome
}

/// A store URL as given, or a directory as a `file://` URL (created if absent).
fn target_url(to: &str) -> std::io::Result<String> {
    if to.contains("://") {
        return Ok(to.to_string());
    }
    std::fs::create_dir_all(to)?;
    let dir = std::fs::canonicalize(to)?;
    Ok(format!("file://{}", dir.display()))
}

fn site_outcome(e: &ExportError) -> Outcome {
    match e {
        ExportError::History(
            RestoreError::Usage(_) | RestoreError::Io { .. } | RestoreError::Store(_),
        )
        | ExportError::Store(_)
        | ExportError::Worker(_) => Outcome::Failed,
        ExportError::History(_)
        | ExportError::Tables { .. }
        | ExportError::Gap { .. }
        | ExportError::Conflict { .. } => Outcome::Damaged,
    }
}

fn worse(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
        (Outcome::Damaged, _) | (_, Outcome::Damaged) => Outcome::Damaged,
        _ => Outcome::Clean,
    }
}
