//! `gridlog import --csv FILE DIR`: offline bulk load of meter readings.
//!
//! Columns `meter,time,import_wh,export_wh,power_w` (a header line naming them first; times
//! RFC 3339). Rows are submitted in batches through the engine, exactly like HTTP ingestion,
//! and each batch is durable before the next is read. A malformed row stops the import with
//! its line number; everything before it that was submitted is durable and reported as such,
//! nothing after it is claimed. Rows the engine rejects (unknown meter, decreasing register
//! …) are reported with their line numbers and counted; they do not stop the import.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use gridlog_common::domain::{Command, Reading};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::{Engine, ItemResult, Request, SubmitError, SystemClock};

use super::serve::{engine_options, load_config, Overrides};
use super::Outcome;

/// Rows per request: large enough to amortise a sync, small enough for one log frame.
pub const IMPORT_BATCH_ROWS: usize = 2000;

const COLUMNS: [&str; 5] = ["meter", "time", "import_wh", "export_wh", "power_w"];

/// Runs the import.
pub fn run(csv: &PathBuf, overrides: &Overrides) -> Outcome {
    let config = match load_config(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog import: {e}");
            return Outcome::Failed;
        }
    };
    let file = match std::fs::File::open(csv) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gridlog import: cannot read {}: {e}", csv.display());
            return Outcome::Failed;
        }
    };
    let engine = match Engine::open(
        &config.data_dir,
        engine_options(&config, Arc::new(SystemClock)),
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "gridlog import: cannot open {}: {e}",
                config.data_dir.display()
            );
            return Outcome::Failed;
        }
    };
    let mut stats = ImportStats::default();
    let outcome = import(&engine, std::io::BufReader::new(file), &mut stats);
    let last_offset = engine.committed_offset().saturating_sub(1);
    engine.shutdown();
    match outcome {
        Ok(()) => {
            println!(
                "imported {} rows: {} accepted, {} duplicates, {} rejected; durable up to line {} (log offset {last_offset})",
                stats.rows, stats.accepted, stats.duplicates, stats.rejected, stats.durable_line
            );
            Outcome::Clean
        }
        Err(message) => {
            eprintln!("gridlog import: {message}");
            eprintln!(
                "gridlog import: rows up to line {} are durable ({} accepted, {} duplicates, {} rejected; log offset {last_offset}); nothing after that line was stored",
                stats.durable_line, stats.accepted, stats.duplicates, stats.rejected
            );
            Outcome::Damaged
        }
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportStats {
    /// Data rows read and submitted.
    pub rows: usize,
    /// Readings stored.
    pub accepted: usize,
    /// Readings already stored exactly so.
    pub duplicates: usize,
    /// Readings the engine refused.
    pub rejected: usize,
    /// The last line whose row is durable (or was refused).
    pub durable_line: usize,
}

/// Reads `input` and submits it in batches; stops at the first malformed row.
pub fn import(engine: &Engine, input: impl BufRead, stats: &mut ImportStats) -> Result<(), String> {
    let mut batch: Vec<(usize, Command)> = Vec::with_capacity(IMPORT_BATCH_ROWS);
    let mut lines = input.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(
            "the file is empty; expected a header line: meter,time,import_wh,export_wh,power_w"
                .into(),
        );
    };
    let header = header.map_err(|e| format!("line 1: {e}"))?;
    let names: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    if names != COLUMNS {
        return Err(format!(
            "line 1: the header must be `{}`, found `{}`",
            COLUMNS.join(","),
            header.trim()
        ));
    }
    for (i, line) in lines {
        let number = i + 1;
        let line = line.map_err(|e| format!("line {number}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(&line) {
            Ok(command) => batch.push((number, command)),
            Err(message) => {
                submit(engine, &mut batch, stats)?;
                return Err(format!("line {number}: {message}"));
            }
        }
        if batch.len() == IMPORT_BATCH_ROWS {
            submit(engine, &mut batch, stats)?;
        }
    }
    submit(engine, &mut batch, stats)
}

fn parse_row(line: &str) -> Result<Command, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != COLUMNS.len() {
        return Err(format!(
            "expected {} columns ({}), found {}",
            COLUMNS.len(),
            COLUMNS.join(","),
            fields.len()
        ));
    }
    let meter = EntityId::new(fields[0]).map_err(|e| format!("meter: id {e}"))?;
    let time_ms =
        crate::server::wire::parse_rfc3339(fields[1]).map_err(|e| format!("time: {e}"))?;
    let number = |i: usize| -> Result<f64, String> {
        let v: f64 = fields[i]
            .parse()
            .map_err(|_| format!("{}: {:?} is not a number", COLUMNS[i], fields[i]))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!(
                "{}: {:?} is not a finite number",
                COLUMNS[i], fields[i]
            ))
        }
    };
    Ok(Command::RecordReading {
        meter,
        reading: Reading {
            time_ms,
            import_wh: number(2)?,
            export_wh: number(3)?,
            power_w: number(4)?,
            voltage_v: None,
            current_a: None,
            reactive_power_var: None,
        },
    })
}

fn submit(
    engine: &Engine,
    batch: &mut Vec<(usize, Command)>,
    stats: &mut ImportStats,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let lines: Vec<usize> = batch.iter().map(|(n, _)| *n).collect();
    let request = Request::of(batch.drain(..).map(|(_, c)| c));
    let response = loop {
        match engine.submit(request.clone()) {
            Err(SubmitError::Busy { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => {
                break other.map_err(|e| {
                    format!(
                        "storing the batch ending at line {} failed: {e}",
                        lines.last().unwrap_or(&0)
                    )
                })?
            }
        }
    };
    for (line, result) in lines.iter().zip(&response.results) {
        match result {
            ItemResult::Accepted { .. } => stats.accepted += 1,
            ItemResult::Duplicate | ItemResult::Replayed => stats.duplicates += 1,
            ItemResult::Rejected(r) => {
                stats.rejected += 1;
                eprintln!(
                    "gridlog import: line {line}: rejected: {} ({})",
                    r.message, r.code
                );
            }
        }
    }
    stats.rows += lines.len();
    stats.durable_line = *lines.last().unwrap_or(&stats.durable_line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridlog_firmware::engine::EngineOptions;

    #[test]
    fn a_bad_row_stops_with_its_line_and_earlier_rows_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            dir.path(),
            EngineOptions::default()
                .auto_register(Some(gridlog_common::domain::MeterKind::Submeter)),
        )
        .unwrap();
        let csv = "meter,time,import_wh,export_wh,power_w\nm1,2024-01-01T00:00:00Z,1,0,5\nm1,2024-01-01T00:00:01Z,2,0,5\n\nm1,2024-01-01T00:00:02Z,abc,0,5\nm1,2024-01-01T00:00:03Z,4,0,5\n";
        let mut stats = ImportStats::default();
        let err = import(&engine, csv.as_bytes(), &mut stats).unwrap_err();
        assert!(err.starts_with("line 5: import_wh"), "{err}");
        assert_eq!((stats.rows, stats.accepted, stats.durable_line), (2, 2, 3));
        assert_eq!(
            engine.events_of("m1", 1, 100, 100).unwrap().highest_seq,
            3,
            "registration + 2 readings"
        );
    }

    #[test]
    fn rejections_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        let csv = "meter,time,import_wh,export_wh,power_w\nnope,2024-01-01T00:00:00Z,1,0,5\n";
        let mut stats = ImportStats::default();
        import(&engine, csv.as_bytes(), &mut stats).unwrap();
        assert_eq!((stats.rows, stats.rejected), (1, 1));
        let mut stats = ImportStats::default();
        assert!(import(&engine, "meter,when\n".as_bytes(), &mut stats)
            .unwrap_err()
            .contains("header"));
    }
}
