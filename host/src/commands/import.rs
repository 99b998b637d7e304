//! `gridlog import --csv FILE --data-dir DIR`: offline bulk load of meter readings.
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

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// No header line.
    #[error("the file is empty; expected a header line: meter,time,import_wh,export_wh,power_w")]
    Empty,
    /// A line could not be read.
    #[error("line {line}: {source}")]
    Read {
        /// Its number (from 1).
        line: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// The header names other columns.
    #[error("line 1: the header must be `{}`, found `{found}`", COLUMNS.join(","))]
    Header {
        /// The header given.
        found: String,
    },
    /// A malformed row: the import stops before it.
    #[error("line {line}: {reason}")]
    Row {
        /// Its number (from 1).
        line: usize,
        /// What is wrong with it.
        reason: RowError,
    },
    /// The engine could not store a batch.
    #[error("storing the batch ending at line {last_line} failed: {source}")]
    Store {
        /// The batch's last line.
        last_line: usize,
        /// The cause.
        source: SubmitError,
    },
}

/// What is wrong with a row.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// Not five columns.
    #[error("expected {} columns ({}), found {found}", COLUMNS.len(), COLUMNS.join(","))]
    Columns {
        /// How many there are.
        found: usize,
    },
    /// The meter is not a valid id.
    #[error("meter: id {0}")]
    Meter(gridlog_common::id::IdError),
    /// The time is not RFC 3339.
    #[error("time: {0}")]
    Time(crate::server::wire::TimeError),
    /// A value is not a number.
    #[error("{column}: {value:?} is not a number")]
    NotANumber {
        /// The column.
        column: &'static str,
        /// What it holds.
        value: String,
    },
    /// A value is infinite or NaN.
    #[error("{column}: {value:?} is not a finite number")]
    NotFinite {
        /// The column.
        column: &'static str,
        /// What it holds.
        value: String,
    },
}

/// Reads `input` and submits it in batches; stops at the first malformed row.
pub fn import(
    engine: &Engine,
    input: impl BufRead,
    stats: &mut ImportStats,
) -> Result<(), ImportError> {
    let mut batch: Vec<(usize, Command)> = Vec::with_capacity(IMPORT_BATCH_ROWS);
    let mut lines = input.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(ImportError::Empty);
    };
    let header = header.map_err(|source| ImportError::Read { line: 1, source })?;
    let names: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    if names != COLUMNS {
        return Err(ImportError::Header {
            found: header.trim().to_string(),
        });
    }
    for (i, line) in lines {
        let number = i + 1;
        let line = line.map_err(|source| ImportError::Read {
            line: number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(&line) {
            Ok(command) => batch.push((number, command)),
            Err(reason) => {
                submit(engine, &mut batch, stats)?;
                return Err(ImportError::Row {
                    line: number,
                    reason,
                });
            }
        }
        if batch.len() == IMPORT_BATCH_ROWS {
            submit(engine, &mut batch, stats)?;
        }
    }
    submit(engine, &mut batch, stats)
}

fn parse_row(line: &str) -> Result<Command, RowError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != COLUMNS.len() {
        return Err(RowError::Columns {
            found: fields.len(),
        });
    }
    let meter = EntityId::new(fields[0]).map_err(RowError::Meter)?;
    let time_ms = crate::server::wire::parse_rfc3339(fields[1]).map_err(RowError::Time)?;
    let number = |i: usize| -> Result<f64, RowError> {
        let (column, value) = (COLUMNS[i], fields[i].to_string());
        match fields[i].parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => Err(RowError::NotFinite { column, value }),
            Err(_) => Err(RowError::NotANumber { column, value }),
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
) -> Result<(), ImportError> {
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
                break other.map_err(|source| ImportError::Store {
                    last_line: *lines.last().unwrap_or(&0),
                    source,
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
        assert!(
            matches!(
                &err,
                ImportError::Row {
                    line: 5,
                    reason: RowError::NotANumber {
                        column: "import_wh",
                        ..
                    }
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("line 5: import_wh"), "{err}");
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
        assert!(matches!(
            import(&engine, "meter,when\n".as_bytes(), &mut stats),
            Err(ImportError::Header { .. })
        ));
    }
}
