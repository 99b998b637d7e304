//! One line protocol body → engine commands and the lines refused, off the async runtime.
//!
//! Pure apart from the clock reading its caller passes in: decompression (bounded),
//! parsing, mapping. The results of the engine are joined back to line numbers by
//! [`Prepared::outcome`].

use std::io::Read as _;

use gridlog_firmware::engine::{CommandRequest, ItemResult, Rejection, RejectionCode};

use super::line_protocol::{self, Precision};
use super::mapping::{Mapped, Mapper};

/// Why a whole body is refused (nothing stored).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `Content-Encoding: gzip` but the body is not valid gzip.
    #[error("the body is not valid gzip: {reason}")]
    NotGzip {
        /// The decoder's words.
        reason: String,
    },
    /// Larger than `ingest.body_bytes_max` once decompressed.
    #[error("the body is larger than {max_bytes} bytes once decompressed (ingest.body_bytes_max)")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// More lines than `ingest.lines_max`.
    #[error("the body has more than {max} lines (ingest.lines_max); send smaller batches")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
}

/// Inflates a gzip body, stopping at `max_bytes`: a gzip bomb costs at most that much
/// memory before it is refused.
pub fn gunzip(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::NotGzip {
            reason: e.to_string(),
        })?;
    if out.len() > max_bytes {
        return Err(BodyError::TooLarge { max_bytes });
    }
    Ok(out)
}

/// A line that was not stored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The line's number, from 1.
    pub line: usize,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A body made ready for the engine.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The commands, in body order.
    pub commands: Vec<CommandRequest>,
    /// The line of each command.
    pub command_lines: Vec<usize>,
    /// Lines refused before reaching the engine.
    pub refused: Vec<Refusal>,
    /// Lines read (comments and blank lines aside).
    pub lines: usize,
    /// Points whose measurement no mapping takes.
    pub unmapped: Vec<String>,
}

/// Parses and maps a (decompressed) body; points without a timestamp take `now_ms`.
pub fn prepare(
    body: &[u8],
    precision: Precision,
    lines_max: usize,
    mapper: &Mapper,
    now_ms: i64,
) -> Result<Prepared, BodyError> {
    let batch = line_protocol::parse(body, precision, lines_max);
    if batch.lines_over_limit {
        return Err(BodyError::TooManyLines { max: lines_max });
    }
    let mut prepared = Prepared {
        lines: batch.points.len() + batch.errors.len(),
        ..Prepared::default()
    };
    prepared.refused = batch
        .errors
        .iter()
        .map(|e| Refusal {
            line: e.line,
            field: e.kind.field().map(str::to_string),
            message: e.kind.to_string(),
        })
        .collect();
    for point in &batch.points {
        match mapper.map(point, now_ms) {
            Ok(Mapped::Command(command)) => {
                prepared.commands.push(CommandRequest {
                    command,
                    expected_seq: None,
                });
                prepared.command_lines.push(point.line);
            }
            Ok(Mapped::Unmapped) => prepared.unmapped.push(point.measurement.to_string()),
            Err(e) => prepared.refused.push(Refusal {
                line: point.line,
                field: e.field().map(str::to_string),
                message: format!("measurement {:?}: {e}", point.measurement),
            }),
        }
    }
    Ok(prepared)
}

/// What became of a body's lines.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Lines read (comments and blank lines aside).
    pub lines: usize,
    /// Lines stored now.
    pub stored: usize,
    /// Lines identical to what was stored before (a retry): not stored again, not an error.
    pub duplicates: usize,
    /// Lines of measurements no mapping takes.
    pub unmapped: usize,
    /// Lines refused, by line number.
    pub refused: Vec<Refusal>,
}

impl Prepared {
    /// Joins the engine's results (one per command) with the lines refused before.
    pub fn outcome(self, results: &[ItemResult]) -> Outcome {
        let mut outcome = Outcome {
            lines: self.lines,
            unmapped: self.unmapped.len(),
            refused: self.refused,
            ..Outcome::default()
        };
        for (result, line) in results.iter().zip(&self.command_lines) {
            match result {
                ItemResult::Accepted { .. } => outcome.stored += 1,
                ItemResult::Duplicate | ItemResult::Replayed => outcome.duplicates += 1,
                ItemResult::Rejected(r) => outcome.refused.push(rejection_refusal(*line, r)),
            }
        }
        outcome.refused.sort_by_key(|r| r.line);
        outcome
    }
}

/// The words of an engine rejection in a line protocol answer: the one place engine codes
/// are read here.
pub fn rejection_refusal(line: usize, rejection: &Rejection) -> Refusal {
    let hint = match rejection.code {
        RejectionCode::UnknownMeter | RejectionCode::UnknownAsset => {
            " (register it first, or set engine.auto_register for meters)"
        }
        RejectionCode::NotAMeter | RejectionCode::NotAnAsset => {
            " (the id belongs to another kind of entity)"
        }
        // Every other rule: the engine's message says what is wrong.
        _ => "",
    };
    Refusal {
        line,
        field: rejection.field.map(str::to_string),
        message: format!("rejected ({}): {}{hint}", rejection.code, rejection.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_inflated_within_the_limit_and_a_bomb_is_refused() {
        let body = b"meter,id=m1 import_wh=1,export_wh=0,power_w=0\n".repeat(10);
        assert_eq!(gunzip(&gzip(&body), body.len()).unwrap(), body);
        // 64 MiB of zeros compress to well under 1 MiB; inflating stops at the limit.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        assert_eq!(
            gunzip(&bomb, 1024 * 1024),
            Err(BodyError::TooLarge {
                max_bytes: 1024 * 1024
            })
        );
        assert!(matches!(
            gunzip(b"meter v=1", 1024),
            Err(BodyError::NotGzip { .. })
        ));
    }

    #[test]
    fn prepare_keeps_line_numbers_of_commands_and_refusals() {
        let mapper = Mapper::new(&[]).unwrap();
        let body = b"meter,id=m1 import_wh=1,export_wh=0,power_w=0 1\ncpu x=1\nmeter,id=m1 import_wh=1\nmeter,id=m2 import_wh=1,export_wh=0,power_w=0\n";
        let prepared = prepare(body, Precision::Seconds, 100, &mapper, 99).unwrap();
        assert_eq!(prepared.lines, 4);
        assert_eq!(prepared.command_lines, vec![1, 4]);
        assert_eq!(prepared.unmapped, vec!["cpu".to_string()]);
        assert_eq!(prepared.refused.len(), 1);
        assert_eq!(prepared.refused[0].line, 3);
        assert_eq!(prepared.refused[0].field.as_deref(), Some("export_wh"));
        assert_eq!(
            prepare(body, Precision::Seconds, 3, &mapper, 0).unwrap_err(),
            BodyError::TooManyLines { max: 3 }
        );
    }
}
