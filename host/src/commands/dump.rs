//! `gridlog dump --data-dir DIR [--from OFFSET] [--rounds]`: the log's records (and write rounds) as JSON lines, read without opening
//! the log (no lock, no repair), through [`gridlog_firmware::wal::dump`].

use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;

use gridlog_common::Offset;
use gridlog_firmware::wal::dump::{read_log, DumpError, DumpItem};

use super::{describe_io_error, Outcome};
use crate::cli::DumpArgs;

/// Runs `gridlog dump`.
pub fn run(args: &DumpArgs) -> Outcome {
    let mut out = BufWriter::new(io::stdout().lock());
    let mut line = String::new();
    let mut write_error: Option<io::Error> = None;
    // Writes one record's (or round's) line; a failed write stops the dump (reported below).
    let mut emit = |item: DumpItem<'_>| {
        match item {
            DumpItem::Record(offset, bytes) => record_line(&mut line, offset, bytes),
            DumpItem::RoundEnd { .. } if !args.rounds => return ControlFlow::Continue(()),
            round => round_line(&mut line, &round),
        }
        match out.write_all(line.as_bytes()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                write_error = Some(error);
                ControlFlow::Break(())
            }
        }
    };
    // History that left the hot log is in the archive: print it first, then go on in the
    // hot log from where the archive ends (no record twice, even while both hold a segment).
    let mut from = args.from;
    let entries = match gridlog_firmware::archive::list(args.dir.path()) {
        Ok((_, damage)) if !damage.is_empty() => {
            eprintln!("gridlog dump: damaged archive: {}", damage[0]);
            return Outcome::Damaged;
        }
        Ok((entries, _)) => entries,
        Err(e) => {
            eprintln!("gridlog dump: cannot read the archive: {e}");
            return Outcome::Failed;
        }
    };
    let archived = entries
        .first()
        .zip(entries.last())
        .map(|(oldest, newest)| (oldest.header.first_offset, newest.header.next_offset));
    let mut archive_result = Ok(());
    let mut written = ControlFlow::Continue(());
    if let Some((start, end)) = archived.filter(|&(_, end)| end > from) {
        // The listing read above (and found undamaged), not a second one.
        let mut cursor =
            gridlog_firmware::archive::ArchiveCursor::over(entries, from.max(start), end);
        while let Some(record) = cursor.next_record() {
            match record {
                Ok((offset, bytes)) => {
                    written = emit(DumpItem::Record(offset, &bytes));
                    if written.is_break() {
                        break;
                    }
                }
                Err(e) => {
                    archive_result = Err(e.to_string());
                    break;
                }
            }
        }
        from = end;
    }
    let result = (archive_result.is_ok() && written.is_continue())
        .then(|| read_log(args.dir.path(), from, emit));
    if write_error.is_none() {
        write_error = out.flush().err();
    }
    if let Some(error) = write_error {
        // A closed pipe (`gridlog dump … | head`) is the reader saying it has enough.
        if error.kind() == io::ErrorKind::BrokenPipe {
            return Outcome::Clean;
        }
        eprintln!("gridlog dump: cannot write records: {error}");
        return Outcome::Failed;
    }
    if let Err(e) = archive_result {
        eprintln!("gridlog dump: damaged archive: {e}");
        return Outcome::Damaged;
    }
    let Some(result) = result else {
        return Outcome::Failed;
    };
    match result {
        Ok(summary) => {
            tracing::info!(
                records = summary.records,
                segments = summary.segments_read,
                "dumped"
            );
            // Records between where the dump stood (after the archive) and the hot log's
            // start are nowhere any more.
            if let Some(oldest) = summary.oldest_offset.filter(|&oldest| from < oldest) {
                if args.from > gridlog_common::FIRST_OFFSET {
                    eprintln!(
                        "gridlog dump: note: offsets below {oldest} are no longer in the hot log; started at {oldest}"
                    );
                }
            }
            if let Some(torn) = summary.torn_tail {
                eprintln!(
                    "gridlog dump: note: stopped at a torn tail at {torn} (a write in flight when the gateway stopped; never acknowledged)"
                );
            }
            Outcome::Clean
        }
        Err(DumpError::Corrupt(damage)) => {
            eprintln!("gridlog dump: damaged log: {damage}");
            eprintln!(
                "gridlog dump: every record before the damage was printed; run `gridlog verify` for the whole picture"
            );
            Outcome::Damaged
        }
        Err(DumpError::Io { path, source }) => {
            eprintln!(
                "gridlog dump: {}",
                describe_io_error(args.dir.path(), &path, &source)
            );
            Outcome::Failed
        }
        Err(other) => {
            eprintln!("gridlog dump: {other}");
            Outcome::Failed
        }
    }
}

/// Fills `line` with `{"round":{"segment":…,"start":…,"end":…,"next_offset":…}}` and a
/// newline for the end of a write round (nothing for any other item).
fn round_line(line: &mut String, item: &DumpItem<'_>) {
    line.clear();
    if let DumpItem::RoundEnd {
        segment,
        start,
        end,
        next_offset,
    } = item
    {
        let name = segment.file_name().unwrap_or_default().to_string_lossy();
        let round = serde_json::json!({"round": {
            "segment": name, "start": start, "end": end, "next_offset": next_offset,
        }});
        line.push_str(&round.to_string());
        line.push('\n');
    }
}

/// Fills `line` with `{"offset":N,"len":L,"hex":"…"}` (plus `"event":{…}` when the record
/// is an event) and a newline.
///
/// Written by hand rather than through serde_json: every field is a number or hex digits,
/// which need no escaping, and a dump of a large log writes millions of these.
pub fn record_line(line: &mut String, offset: Offset, bytes: &[u8]) {
    use std::fmt::Write as _;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    line.clear();
    let _ = write!(
        line,
        "{{\"offset\":{offset},\"len\":{},\"hex\":\"",
        bytes.len()
    );
    line.reserve(bytes.len() * 2 + 3);
    for &byte in bytes {
        line.push(char::from(HEX[usize::from(byte >> 4)]));
        line.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    line.push('"');
    // Records of a gateway's log are events: show them decoded too (the hex stays, so the
    // exact bytes are always there).
    if let Ok(stored) = gridlog_common::domain::decode_event(bytes) {
        let record = gridlog_firmware::engine::EventRecord { offset, stored };
        if let Ok(event) = serde_json::to_string(&crate::server::wire::event_view(&record)) {
            line.push_str(",\"event\":");
            line.push_str(&event);
        }
    }
    line.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_line_is_json_with_lowercase_hex() {
        let mut line = String::new();
        record_line(&mut line, 42, &[0x00, 0xab, 0x7f, b'a']);
        assert_eq!(line, "{\"offset\":42,\"len\":4,\"hex\":\"00ab7f61\"}\n");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["offset"], 42);
        record_line(&mut line, 1, &[]);
        assert_eq!(line, "{\"offset\":1,\"len\":0,\"hex\":\"\"}\n");
    }
}
