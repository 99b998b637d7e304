//! The `gridlog` binary's `verify` and `dump`, run as an operator runs them: exit status,
//! what they print, and that they only read.
//!
//! Logs are written with the firmware's `Wal` in tiny (4 KiB) segments, so a few hundred
//! records span many sealed segments and one open one.

use std::path::{Path, PathBuf};
use std::process::Output;

use gridlog_common::frame;
use gridlog_common::segment::SEGMENT_HEADER_BYTES;
use gridlog_firmware::wal::{Wal, WalOptions};
use gridlog_tests::{all_frame_positions, frame_positions, hex, run_gridlog};

fn options() -> WalOptions {
    WalOptions::default().segment_bytes(4096)
}

/// Record `offset`'s bytes: every byte value occurs, lengths vary from 1 to 90.
fn record(offset: u64) -> Vec<u8> {
    let len = 1 + (offset * 7 % 90) as usize;
    (0..len)
        .map(|i| (offset as usize * 31 + i * 17) as u8)
        .collect()
}

/// A log of 400 records in batches of 1 to 4; returns the segment files, oldest first.
fn write_log(dir: &Path) -> Vec<PathBuf> {
    let wal = Wal::open(dir, options()).unwrap();
    let mut next = 1u64;
    let mut batch = 0u64;
    while next <= 400 {
        let count = (batch % 4 + 1).min(401 - next);
        let records: Vec<Vec<u8>> = (next..next + count).map(record).collect();
        let ack = wal.append(&records).unwrap();
        assert_eq!(ack.first_offset, next);
        next = ack.next_offset;
        batch += 1;
    }
    let segments: Vec<PathBuf> = wal.segments().into_iter().map(|(_, p)| p).collect();
    wal.close().unwrap();
    assert!(
        segments.len() >= 5,
        "want many segments, got {}",
        segments.len()
    );
    segments
}

/// The first record offset of the batch frame at `pos`.
fn first_offset_of_frame(bytes: &[u8], pos: usize) -> u64 {
    let body = frame::decode(&bytes[pos..]).unwrap().body;
    match gridlog_common::batch::decode_body(body).unwrap() {
        gridlog_common::batch::Body::Batch(view) => view.first_offset,
        other => panic!("not a batch: {other:?}"),
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn expected_lines(offsets: impl IntoIterator<Item = u64>) -> String {
    offsets
        .into_iter()
        .map(|o| {
            let r = record(o);
            format!(
                "{{\"offset\":{o},\"len\":{},\"hex\":\"{}\"}}\n",
                r.len(),
                hex(&r)
            )
        })
        .collect()
}

fn dump(dir: &Path, from: Option<u64>) -> Output {
    let mut args = vec![
        "dump".to_string(),
        "--data-dir".to_string(),
        dir.display().to_string(),
    ];
    if let Some(from) = from {
        args.extend(["--from".to_string(), from.to_string()]);
    }
    run_gridlog(args)
}

/// Every file under `dir` with its bytes, to show a command changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn verify_exits_0_on_a_clean_log_and_counts_segments_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let output = run_gridlog(["verify".as_ref(), dir.path().as_os_str()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("records: 400 (offsets 1..=400)"), "{text}");
    assert!(
        text.contains(&format!(
            "segments: {} ({} sealed, 1 open)",
            segments.len(),
            segments.len() - 1
        )),
        "{text}"
    );
    assert!(text.contains("CLEAN"), "{text}");
    for segment in &segments {
        let name = segment.file_name().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&name), "{name} missing from\n{text}");
    }

    let output = run_gridlog(["verify".as_ref(), "--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["records"], 400);
    assert_eq!(json["first_offset"], 1);
    assert_eq!(json["next_offset"], 401);
    assert_eq!(json["segments"].as_array().unwrap().len(), segments.len());
    assert_eq!(json["damage"].as_array().unwrap().len(), 0);
    assert_eq!(json["torn_tail"], serde_json::Value::Null);
}

#[test]
fn verify_exits_1_and_names_file_and_byte_of_a_flipped_bit_in_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let victim = &segments[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let frames = frame_positions(&bytes);
    let bad = frames[2];
    bytes[bad + frame::FRAME_BODY_AT + 3] ^= 0x04;
    std::fs::write(victim, &bytes).unwrap();
    let before = snapshot(dir.path());

    let output = run_gridlog(["verify".as_ref(), dir.path().as_os_str()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!("{} at byte {bad}: bad frame CRC", victim.display());
    assert!(text.contains(&expected), "want `{expected}` in\n{text}");
    assert!(text.contains("DAMAGED:"), "{text}");

    let output = run_gridlog(["verify".as_ref(), "--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["clean"], false);
    let damage = json["damage"].as_array().unwrap();
    assert!(
        damage
            .iter()
            .any(|d| d["path"] == victim.display().to_string()
                && d["position"] == bad as u64
                && d["reason"].as_str().unwrap().contains("CRC")),
        "{json}"
    );

    assert!(snapshot(dir.path()) == before, "verify changed files");
}

#[test]
fn dump_from_k_prints_exactly_the_records_from_k() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    // The first offset of the third segment, and the offsets around it.
    let third = std::fs::read(&segments[2]).unwrap();
    let segment_start = first_offset_of_frame(&third, SEGMENT_HEADER_BYTES);
    for from in [
        None,
        Some(0),
        Some(1),
        Some(2),
        Some(segment_start - 1),
        Some(segment_start),
        Some(segment_start + 1),
        Some(399),
        Some(400),
        Some(401),
        Some(10_000),
    ] {
        let output = dump(dir.path(), from);
        assert_eq!(
            output.status.code(),
            Some(0),
            "from {from:?}: {}",
            stderr(&output)
        );
        let start = from.unwrap_or(1).max(1);
        assert_eq!(
            stdout(&output),
            expected_lines(start..=400),
            "from {from:?}"
        );
        assert_eq!(stderr(&output), "", "from {from:?}");
    }
}

#[test]
fn dump_reads_beside_a_running_writer_without_the_lock_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let wal = Wal::open(dir.path(), options()).unwrap();
    let ack = wal.append(&[record(401)]).unwrap();
    assert_eq!(ack.first_offset, 401);
    let before = snapshot(dir.path());
    // The log is open in this process and holds LOCK: dump reads all the same.
    let output = dump(dir.path(), Some(390));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected_lines(390..=401));
    assert!(snapshot(dir.path()) == before, "dump changed files");
    drop(wal);
}

#[test]
fn a_torn_tail_is_a_note_for_verify_and_the_end_for_dump_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let end = all_frame_positions(&bytes)
        .last()
        .map(|&p| p + frame::decode(&bytes[p..]).unwrap().encoded_len())
        .unwrap_or(SEGMENT_HEADER_BYTES);
    // Half a frame after the last one: a write the power cut short.
    bytes[end..end + 20].copy_from_slice(&[0x5a; 20]);
    std::fs::write(last, &bytes).unwrap();
    let before = snapshot(dir.path());

    let output = run_gridlog(["verify".as_ref(), dir.path().as_os_str()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "note: torn tail at {} at byte {end}",
            last.display()
        )),
        "{text}"
    );

    let output = dump(dir.path(), Some(395));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected_lines(395..=400));
    assert!(
        stderr(&output).contains(&format!("torn tail at {} at byte {end}", last.display())),
        "{}",
        stderr(&output)
    );
    assert!(
        snapshot(dir.path()) == before,
        "a read-only command repaired the tail"
    );
}

#[test]
fn dump_prints_every_record_before_damage_then_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let victim = &segments[2];
    let mut bytes = std::fs::read(victim).unwrap();
    let frames = frame_positions(&bytes);
    let bad = frames[1];
    let bad_first_offset = first_offset_of_frame(&bytes, bad);
    bytes[bad + 1] ^= 0x80; // the length field
    std::fs::write(victim, &bytes).unwrap();

    let output = dump(dir.path(), None);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected_lines(1..bad_first_offset));
    let expected = format!("{} at byte {bad}", victim.display());
    assert!(
        stderr(&output).contains(&expected),
        "want `{expected}` in {}",
        stderr(&output)
    );

    // From after the damaged segment, dump does not read it and succeeds.
    let fourth = std::fs::read(&segments[3]).unwrap();
    let after = first_offset_of_frame(&fourth, SEGMENT_HEADER_BYTES);
    let output = dump(dir.path(), Some(after));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected_lines(after..=400));
}

#[test]
fn a_missing_log_or_bad_usage_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for command in ["verify", "dump"] {
        let output = run_gridlog([command.as_ref(), missing.as_os_str()]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert!(
            stderr(&output).contains("does not exist"),
            "{}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
    }
    // Pointing at wal/ itself gets a hint.
    write_log(dir.path());
    let output = run_gridlog(["verify".as_ref(), dir.path().join("wal").as_os_str()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("give its parent"),
        "{}",
        stderr(&output)
    );

    for args in [
        &["verify"][..],
        &["dump", "/x", "--from", "minus-one"][..],
        &["frobnicate"][..],
    ] {
        let output = run_gridlog(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn verify_and_dump_take_the_data_directory_by_flag_variable_or_old_positional() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    for command in ["verify", "dump"] {
        let by_flag = run_gridlog([
            command.as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ]);
        let by_variable = gridlog_tests::gridlog_command()
            .arg(command)
            .env("GRIDLOG_DATA_DIR", dir.path())
            .output()
            .unwrap();
        let by_position = run_gridlog([command.as_ref(), dir.path().as_os_str()]);
        assert_eq!(
            by_flag.status.code(),
            Some(0),
            "{command}: {}",
            stderr(&by_flag)
        );
        assert!(!by_flag.stdout.is_empty(), "{command}");
        for other in [&by_variable, &by_position] {
            assert_eq!(other.status.code(), Some(0), "{command}: {}", stderr(other));
            assert_eq!(stdout(other), stdout(&by_flag), "{command}");
        }
    }
}

#[test]
fn help_teaches_with_examples() {
    for args in [
        &["--help"][..],
        &["verify", "--help"][..],
        &["dump", "--help"][..],
    ] {
        let output = run_gridlog(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let text = stdout(&output);
        assert!(text.contains("Examples:"), "{args:?}: {text}");
        assert!(
            text.contains("Exit status") || args == ["--help"],
            "{args:?}: {text}"
        );
    }
}

/// `dump --rounds` names every write round after its records, the rounds tile each segment
/// from its header to its footer on sector boundaries, and `verify` counts them.
#[test]
fn dump_with_rounds_names_every_round_and_verify_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    let output = run_gridlog(["dump".as_ref(), dir.path().as_os_str(), "--rounds".as_ref()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut last_offset = 0u64;
    let mut rounds_per_segment = std::collections::BTreeMap::<String, Vec<(u64, u64)>>::new();
    for line in stdout(&output).lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(round) = value.get("round") {
            // The round line comes right after the round's last record.
            assert_eq!(round["next_offset"], last_offset + 1, "{line}");
            let (start, end) = (
                round["start"].as_u64().unwrap(),
                round["end"].as_u64().unwrap(),
            );
            assert_eq!(end % 512, 0, "{line}");
            rounds_per_segment
                .entry(round["segment"].as_str().unwrap().to_string())
                .or_default()
                .push((start, end));
        } else {
            last_offset = value["offset"].as_u64().unwrap();
        }
    }
    assert_eq!(last_offset, 400);
    assert_eq!(rounds_per_segment.len(), segments.len());
    for rounds in rounds_per_segment.values() {
        assert_eq!(rounds[0].0, SEGMENT_HEADER_BYTES as u64);
        for pair in rounds.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "rounds follow each other");
        }
    }
    let total: usize = rounds_per_segment.values().map(Vec::len).sum();
    let output = run_gridlog(["verify".as_ref(), dir.path().as_os_str(), "--json".as_ref()]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let counted: u64 = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rounds"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, total);
    let text = stdout(&run_gridlog(["verify".as_ref(), dir.path().as_os_str()]));
    assert!(text.contains("rounds"), "{text}");
    // Without the flag, only records.
    assert!(!stdout(&dump(dir.path(), None)).contains("\"round\""));
}
