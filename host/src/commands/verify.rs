//! `gridlog verify DIR [--json]`: the read-only check of a log, as a report for a person or,
//! with `--json`, for a machine.
//!
//! The JSON shape is this crate's own (see [`VerifyJson`]), not the firmware's types: the
//! firmware may change its structs without changing what monitoring scripts parse.

use std::io::Write;
use std::path::Path;

use gridlog_firmware::wal::verify::SegmentSummary;
use gridlog_firmware::wal::{self, Damage, VerifyReport, WAL_DIR_NAME};
use serde::Serialize;

use super::{describe_io_error, Outcome};
use crate::cli::VerifyArgs;

/// Runs `gridlog verify`.
pub fn run(args: &VerifyArgs) -> Outcome {
    let report = match wal::verify(args.dir.path()) {
        Ok(report) => report,
        Err(error) => {
            let wal_dir = args.dir.path().join(WAL_DIR_NAME);
            eprintln!(
                "gridlog verify: {}",
                describe_io_error(args.dir.path(), &wal_dir, &error)
            );
            return Outcome::Failed;
        }
    };
    tracing::info!(
        segments = report.segments.len(),
        records = report.records(),
        damage = report.damage.len(),
        "verified"
    );
    let text = if args.json {
        let json = VerifyJson::new(args.dir.path(), &report);
        serde_json::to_string_pretty(&json).expect("the report serializes") + "\n"
    } else {
        human_report(args.dir.path(), &report)
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("gridlog verify: cannot write the report: {error}");
            return Outcome::Failed;
        }
    }
    if report.is_clean() {
        Outcome::Clean
    } else {
        Outcome::Damaged
    }
}

/// The report for a person: one line per segment (sealed, open or DAMAGED), a summary, the torn tail as a note, every
/// damage with file and byte position, and a verdict on the last line.
pub fn human_report(data_dir: &Path, report: &VerifyReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let wal_dir = data_dir.join(WAL_DIR_NAME);
    let _ = writeln!(out, "log: {}", wal_dir.display());
    // Columns as wide as their widest number, so small logs print small.
    let width = |title: &str, value: fn(&SegmentSummary) -> u64| {
        report
            .segments
            .iter()
            .map(|s| value(s).to_string().len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let w = [
        width("first offset", |s| s.first_offset),
        width("next offset", |s| s.next_offset),
        width("frames", |s| s.frames),
        width("records", |s| s.records),
        width("rounds", |s| s.rounds),
    ];
    if !report.segments.is_empty() {
        let _ = writeln!(
            out,
            "  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:<7}  file",
            "first offset",
            "next offset",
            "frames",
            "records",
            "rounds",
            "state",
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
        );
    }
    for segment in &report.segments {
        let name = segment.path.file_name().map_or_else(
            || segment.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // Segments of format 1 (earlier builds) do not mark their rounds.
        let rounds = if segment.format_version >= 2 {
            segment.rounds.to_string()
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:<7}  {name}",
            segment.first_offset,
            segment.next_offset,
            segment.frames,
            segment.records,
            rounds,
            segment_state(report, segment),
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
        );
    }
    let count = |state: &str| {
        report
            .segments
            .iter()
            .filter(|s| segment_state(report, s) == state)
            .count()
    };
    let _ = write!(
        out,
        "segments: {} ({} sealed, {} open",
        report.segments.len(),
        count("sealed"),
        count("open"),
    );
    let damaged = count("DAMAGED");
    if damaged > 0 {
        let _ = write!(out, ", {damaged} damaged");
    }
    let _ = write!(out, "); records: {}", report.records());
    match offset_range(report) {
        Some((first, next)) if next > first => {
            let _ = writeln!(out, " (offsets {first}..={})", next - 1);
        }
        _ => out.push('\n'),
    }
    if let Some(torn) = &report.torn_tail {
        let _ = writeln!(
            out,
            "note: torn tail at {torn}\n      (the write round in flight when the gateway stopped: it has no commit, so it was never\n      acknowledged; the next open zeroes it)"
        );
    }
    if report.is_clean() {
        let _ = writeln!(out, "CLEAN: every frame of every segment checked");
    } else {
        let _ = writeln!(
            out,
            "DAMAGED: {} problem(s) a crash cannot explain:",
            report.damage.len()
        );
        for damage in &report.damage {
            let _ = writeln!(out, "  {damage}");
        }
        let _ = writeln!(
            out,
            "The log refuses to open in strict recovery mode. Keep a copy of the data directory;\n\
             the quarantine-corrupt recovery mode cuts the log at the first damage and moves the\n\
             damaged files to wal/quarantine/ (nothing is deleted)."
        );
    }
    out
}

/// `damaged` if a damage names the segment, else `sealed` or `open`.
fn segment_state(report: &VerifyReport, segment: &SegmentSummary) -> &'static str {
    if report.damage.iter().any(|d| d.path == segment.path) {
        "DAMAGED"
    } else if segment.sealed {
        "sealed"
    } else {
        "open"
    }
}

/// The first offset and one past the last offset of the checked segments.
fn offset_range(report: &VerifyReport) -> Option<(u64, u64)> {
    let first = report.segments.first()?.first_offset;
    let next = report.segments.last()?.next_offset;
    Some((first, next))
}

/// `gridlog verify --json`: what monitoring parses. Field names are a contract; add fields,
/// do not rename them.
#[derive(Debug, Serialize)]
pub struct VerifyJson {
    /// The data directory checked.
    pub data_dir: String,
    /// True when nothing is damaged (a torn tail is not damage).
    pub clean: bool,
    /// Records in all segments.
    pub records: u64,
    /// The first segment's first offset.
    pub first_offset: Option<u64>,
    /// One past the last valid record.
    pub next_offset: Option<u64>,
    /// Every segment, oldest first.
    pub segments: Vec<SegmentJson>,
    /// The torn tail of the last segment, if any.
    pub torn_tail: Option<DamageJson>,
    /// Every damage found.
    pub damage: Vec<DamageJson>,
}

/// One segment in [`VerifyJson`].
#[derive(Debug, Serialize)]
pub struct SegmentJson {
    /// The segment file.
    pub path: String,
    /// Its first record's offset.
    pub first_offset: u64,
    /// One past its last valid record.
    pub next_offset: u64,
    /// Valid batch frames.
    pub frames: u64,
    /// Valid records.
    pub records: u64,
    /// Committed write rounds (format 2; 0 in format 1, which does not mark rounds).
    pub rounds: u64,
    /// The segment's format version.
    pub format_version: u16,
    /// Ends with a valid footer.
    pub sealed: bool,
}

/// A place in a file where something is wrong, in [`VerifyJson`].
#[derive(Debug, Serialize)]
pub struct DamageJson {
    /// The file.
    pub path: String,
    /// Byte position in the file.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

impl DamageJson {
    fn new(damage: &Damage) -> DamageJson {
        DamageJson {
            path: damage.path.display().to_string(),
            position: damage.position,
            reason: damage.reason.clone(),
        }
    }
}

impl VerifyJson {
    /// The JSON form of `report`.
    pub fn new(data_dir: &Path, report: &VerifyReport) -> VerifyJson {
        let range = offset_range(report);
        VerifyJson {
            data_dir: data_dir.display().to_string(),
            clean: report.is_clean(),
            records: report.records(),
            first_offset: range.map(|r| r.0),
            next_offset: range.map(|r| r.1),
            segments: report
                .segments
                .iter()
                .map(|s| SegmentJson {
                    path: s.path.display().to_string(),
                    first_offset: s.first_offset,
                    next_offset: s.next_offset,
                    frames: s.frames,
                    records: s.records,
                    rounds: s.rounds,
                    format_version: s.format_version,
                    sealed: s.sealed,
                })
                .collect(),
            torn_tail: report.torn_tail.as_ref().map(DamageJson::new),
            damage: report.damage.iter().map(DamageJson::new).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn report() -> VerifyReport {
        VerifyReport {
            segments: vec![
                SegmentSummary {
                    path: PathBuf::from("/d/wal/00000000000000000001.seg"),
                    first_offset: 1,
                    next_offset: 11,
                    frames: 4,
                    records: 10,
                    rounds: 3,
                    format_version: 2,
                    sealed: true,
                },
                SegmentSummary {
                    path: PathBuf::from("/d/wal/00000000000000000011.seg"),
                    first_offset: 11,
                    next_offset: 13,
                    frames: 1,
                    records: 2,
                    rounds: 1,
                    format_version: 2,
                    sealed: false,
                },
            ],
            damage: vec![Damage {
                path: PathBuf::from("/d/wal/00000000000000000001.seg"),
                position: 200,
                reason: "bad frame CRC".into(),
            }],
            torn_tail: None,
            snapshots: vec![],
            archived: vec![],
        }
    }

    #[test]
    fn the_text_report_names_file_and_byte_and_ends_with_the_verdict() {
        let text = human_report(Path::new("/d"), &report());
        assert!(text.contains("records: 12 (offsets 1..=12)"), "{text}");
        assert!(
            text.contains("/d/wal/00000000000000000001.seg at byte 200: bad frame CRC"),
            "{text}"
        );
        assert!(text.contains("DAMAGED: 1 problem(s)"), "{text}");
        let clean = VerifyReport {
            damage: vec![],
            ..report()
        };
        let text = human_report(Path::new("/d"), &clean);
        assert!(
            text.trim_end()
                .ends_with("every frame of every segment checked"),
            "{text}"
        );
    }

    #[test]
    fn the_json_report_keeps_its_field_names() {
        let json = serde_json::to_value(VerifyJson::new(Path::new("/d"), &report())).unwrap();
        assert_eq!(json["clean"], false);
        assert_eq!(json["records"], 12);
        assert_eq!(json["first_offset"], 1);
        assert_eq!(json["next_offset"], 13);
        assert_eq!(json["segments"][1]["sealed"], false);
        assert_eq!(json["segments"][0]["rounds"], 3);
        assert_eq!(json["segments"][0]["format_version"], 2);
        assert_eq!(json["damage"][0]["position"], 200);
        assert_eq!(json["torn_tail"], serde_json::Value::Null);
    }
}
