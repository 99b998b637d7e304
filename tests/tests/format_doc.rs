//! `docs/FORMAT.md` agrees with the code: every offset and size in its layout tables is the
//! constant the encoder uses, every value in its constants table is the constant's value,
//! and every byte of its worked examples is what the encoders write (and the decoders read
//! back). A change of format that forgets the document fails here.
//!
//! The document marks what is checked with HTML comments the renderer hides:
//! `<!-- checked-table: NAME -->` before a Markdown table, `<!-- checked-example: NAME -->`
//! before a code block of hex bytes (`# …` starts a comment on a line).

use gridlog_common::batch::{self, Body, Footer};
use gridlog_common::frame;
use gridlog_common::segment::{self, FormatVersion, SegmentHeader};
use gridlog_common::varint;

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

/// The rows of the table after `<!-- checked-table: NAME -->`, header and separator dropped,
/// cells trimmed and stripped of backticks.
fn table(name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- checked-table: {name} -->");
    let start = FORMAT_MD
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/FORMAT.md has no `{marker}`"));
    let rows: Vec<Vec<String>> = FORMAT_MD[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "table {name} is empty");
    assert!(
        rows[1].iter().all(|c| c.contains("---")),
        "table {name}: no separator row"
    );
    rows[2..].to_vec()
}

/// The bytes of the code block after `<!-- checked-example: NAME -->`.
fn example(name: &str) -> Vec<u8> {
    let marker = format!("<!-- checked-example: {name} -->");
    let start = FORMAT_MD
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/FORMAT.md has no `{marker}`"));
    let mut lines = FORMAT_MD[start + marker.len()..]
        .lines()
        .skip_while(|l| !l.starts_with("```"));
    lines.next().expect("a code block after the marker");
    let mut bytes = Vec::new();
    for line in lines.take_while(|l| !l.starts_with("```")) {
        let hex = line.split('#').next().unwrap_or("");
        for pair in hex.split_whitespace() {
            assert_eq!(
                pair.len(),
                2,
                "example {name}: `{pair}` is not one byte in hex"
            );
            bytes.push(
                u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("example {name}: `{pair}`")),
            );
        }
    }
    bytes
}

fn hex_block(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn number(cell: &str) -> u64 {
    cell.replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("`{cell}` is not a number"))
}

/// Checks a layout table against `(field, offset, size)` from the constants: same fields in
/// the same order, each starting where the previous ends, integer types as wide as their size.
fn check_layout(name: &str, expected: &[(&str, usize, Option<usize>)]) {
    let rows = table(name);
    let fields: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(fields, want, "table {name}: fields");
    for (row, &(field, at, size)) in rows.iter().zip(expected) {
        assert_eq!(
            number(&row[0]) as usize,
            at,
            "table {name}: offset of {field}"
        );
        if let Some(size) = size {
            assert_eq!(
                number(&row[1]) as usize,
                size,
                "table {name}: size of {field}"
            );
            let ty = &row[3];
            if let Some(bits) = ty
                .strip_prefix('u')
                .and_then(|t| t.split_whitespace().next())
            {
                assert_eq!(
                    bits,
                    (size * 8).to_string(),
                    "table {name}: type of {field}"
                );
                assert!(
                    ty.contains("LE"),
                    "table {name}: {field} must say little-endian"
                );
            }
        }
    }
    for pair in expected.windows(2) {
        let (field, at, size) = pair[0];
        assert_eq!(
            at + size.unwrap(),
            pair[1].1,
            "constants: {field} does not end where the next field starts"
        );
    }
}

#[test]
fn segment_header_table_matches_the_constants() {
    use segment::*;
    check_layout(
        "segment_header",
        &[
            ("magic", MAGIC_AT, Some(VERSION_AT - MAGIC_AT)),
            ("version", VERSION_AT, Some(HEADER_LEN_AT - VERSION_AT)),
            ("header_len", HEADER_LEN_AT, Some(FLAGS_AT - HEADER_LEN_AT)),
            ("flags", FLAGS_AT, Some(LOG_ID_AT - FLAGS_AT)),
            ("log_id", LOG_ID_AT, Some(FIRST_OFFSET_AT - LOG_ID_AT)),
            (
                "first_offset",
                FIRST_OFFSET_AT,
                Some(SEGMENT_BYTES_AT - FIRST_OFFSET_AT),
            ),
            (
                "segment_bytes",
                SEGMENT_BYTES_AT,
                Some(CREATED_AT - SEGMENT_BYTES_AT),
            ),
            (
                "created_unix_ms",
                CREATED_AT,
                Some(ROUND_BYTES_AT - CREATED_AT),
            ),
            ("round_bytes", ROUND_BYTES_AT, Some(CRC_AT - ROUND_BYTES_AT)),
            ("crc", CRC_AT, Some(SEGMENT_HEADER_BYTES - CRC_AT)),
        ],
    );
}

#[test]
fn snapshot_header_table_matches_the_constants() {
    use gridlog_firmware::snapshot::*;
    check_layout(
        "snapshot_header",
        &[
            ("magic", S_MAGIC_AT, Some(S_VERSION_AT - S_MAGIC_AT)),
            (
                "version",
                S_VERSION_AT,
                Some(S_HEADER_LEN_AT - S_VERSION_AT),
            ),
            (
                "header_len",
                S_HEADER_LEN_AT,
                Some(S_FLAGS_AT - S_HEADER_LEN_AT),
            ),
            ("flags", S_FLAGS_AT, Some(S_LOG_ID_AT - S_FLAGS_AT)),
            ("log_id", S_LOG_ID_AT, Some(S_NEXT_OFFSET_AT - S_LOG_ID_AT)),
            (
                "next_offset",
                S_NEXT_OFFSET_AT,
                Some(S_CREATED_AT - S_NEXT_OFFSET_AT),
            ),
            (
                "created_unix_ms",
                S_CREATED_AT,
                Some(S_DIGEST_AT - S_CREATED_AT),
            ),
            ("digest", S_DIGEST_AT, Some(S_BODY_BYTES_AT - S_DIGEST_AT)),
            (
                "body_bytes",
                S_BODY_BYTES_AT,
                Some(S_EVENTS_AT - S_BODY_BYTES_AT),
            ),
            ("events", S_EVENTS_AT, Some(S_BODY_CRC_AT - S_EVENTS_AT)),
            ("body_crc", S_BODY_CRC_AT, Some(S_CRC_AT - S_BODY_CRC_AT)),
            ("crc", S_CRC_AT, Some(SNAPSHOT_HEADER_BYTES - S_CRC_AT)),
        ],
    );
}

#[test]
fn rollup_spill_header_table_matches_the_constants() {
    use gridlog_firmware::engine::rollup_store::format::*;
    check_layout(
        "rollup_spill_header",
        &[
            ("magic", R_MAGIC_AT, Some(R_VERSION_AT - R_MAGIC_AT)),
            (
                "version",
                R_VERSION_AT,
                Some(R_HEADER_LEN_AT - R_VERSION_AT),
            ),
            (
                "header_len",
                R_HEADER_LEN_AT,
                Some(R_FLAGS_AT - R_HEADER_LEN_AT),
            ),
            ("flags", R_FLAGS_AT, Some(R_SPILL_SEQ_AT - R_FLAGS_AT)),
            (
                "spill_seq",
                R_SPILL_SEQ_AT,
                Some(R_BLOCKS_BYTES_AT - R_SPILL_SEQ_AT),
            ),
            (
                "blocks_bytes",
                R_BLOCKS_BYTES_AT,
                Some(R_METERS_AT - R_BLOCKS_BYTES_AT),
            ),
            ("meters", R_METERS_AT, Some(R_INDEX_CRC_AT - R_METERS_AT)),
            (
                "index_crc",
                R_INDEX_CRC_AT,
                Some(R_FIRST_DAY_AT - R_INDEX_CRC_AT),
            ),
            (
                "first_day",
                R_FIRST_DAY_AT,
                Some(R_LAST_DAY_AT - R_FIRST_DAY_AT),
            ),
            ("last_day", R_LAST_DAY_AT, Some(R_LOG_ID_AT - R_LAST_DAY_AT)),
            (
                "log_id",
                R_LOG_ID_AT,
                Some(R_THROUGH_OFFSET_AT - R_LOG_ID_AT),
            ),
            (
                "through_offset",
                R_THROUGH_OFFSET_AT,
                Some(R_REPLACES_FROM_AT - R_THROUGH_OFFSET_AT),
            ),
            (
                "replaces_from",
                R_REPLACES_FROM_AT,
                Some(R_LEVEL_AT - R_REPLACES_FROM_AT),
            ),
            (
                "level",
                R_LEVEL_AT,
                Some(R_QUARTER_HOUR_DAYS_AT - R_LEVEL_AT),
            ),
            (
                "quarter_hour_days",
                R_QUARTER_HOUR_DAYS_AT,
                Some(R_DAY_DAYS_AT - R_QUARTER_HOUR_DAYS_AT),
            ),
            ("day_days", R_DAY_DAYS_AT, Some(R_CRC_AT - R_DAY_DAYS_AT)),
            ("crc", R_CRC_AT, Some(SPILL_HEADER_BYTES - R_CRC_AT)),
        ],
    );
    assert_eq!(SPILL_METERS_MAX, 1_048_576);
    assert_eq!(SPILL_DAYS_PER_BLOCK_MAX, 3_660);
    assert_eq!(SPILL_VERSION, 2);
    assert_eq!(&SPILL_MAGIC, b"GLOGRLUP");
}

#[test]
fn archive_header_table_matches_the_constants() {
    use gridlog_common::archive::*;
    check_layout(
        "archive_header",
        &[
            ("magic", A_MAGIC_AT, Some(A_VERSION_AT - A_MAGIC_AT)),
            (
                "version",
                A_VERSION_AT,
                Some(A_HEADER_LEN_AT - A_VERSION_AT),
            ),
            (
                "header_len",
                A_HEADER_LEN_AT,
                Some(A_CODEC_AT - A_HEADER_LEN_AT),
            ),
            ("codec", A_CODEC_AT, Some(A_LOG_ID_AT - A_CODEC_AT)),
            ("log_id", A_LOG_ID_AT, Some(A_FIRST_OFFSET_AT - A_LOG_ID_AT)),
            (
                "first_offset",
                A_FIRST_OFFSET_AT,
                Some(A_NEXT_OFFSET_AT - A_FIRST_OFFSET_AT),
            ),
            (
                "next_offset",
                A_NEXT_OFFSET_AT,
                Some(A_ORIGINAL_BYTES_AT - A_NEXT_OFFSET_AT),
            ),
            (
                "original_bytes",
                A_ORIGINAL_BYTES_AT,
                Some(A_ARCHIVED_BYTES_AT - A_ORIGINAL_BYTES_AT),
            ),
            (
                "archived_bytes",
                A_ARCHIVED_BYTES_AT,
                Some(A_SHA256_AT - A_ARCHIVED_BYTES_AT),
            ),
            ("sha256", A_SHA256_AT, Some(A_CREATED_AT - A_SHA256_AT)),
            (
                "created_unix_ms",
                A_CREATED_AT,
                Some(A_ORIGINAL_CRC_AT - A_CREATED_AT),
            ),
            (
                "original_crc",
                A_ORIGINAL_CRC_AT,
                Some(A_CRC_AT - A_ORIGINAL_CRC_AT),
            ),
            ("crc", A_CRC_AT, Some(ARCHIVE_HEADER_BYTES - A_CRC_AT)),
        ],
    );
}

#[test]
fn frame_table_matches_the_constants() {
    use frame::*;
    check_layout(
        "frame",
        &[
            ("len", FRAME_LEN_AT, Some(FRAME_CRC_AT - FRAME_LEN_AT)),
            ("crc", FRAME_CRC_AT, Some(FRAME_BODY_AT - FRAME_CRC_AT)),
            ("body", FRAME_BODY_AT, None),
        ],
    );
}

#[test]
fn constants_table_matches_the_code() {
    use gridlog_firmware::wal;
    let code: Vec<(&str, u64)> = vec![
        ("SEGMENT_HEADER_BYTES", segment::SEGMENT_HEADER_BYTES as u64),
        ("FormatVersion::CURRENT", FormatVersion::CURRENT as u64),
        ("FRAME_HEADER_BYTES", frame::FRAME_HEADER_BYTES as u64),
        ("FRAME_BODY_BYTES_MAX", frame::FRAME_BODY_BYTES_MAX as u64),
        ("BODY_TAG_BATCH", u64::from(batch::BODY_TAG_BATCH)),
        ("BODY_TAG_FOOTER", u64::from(batch::BODY_TAG_FOOTER)),
        ("BODY_TAG_COMMIT", u64::from(batch::BODY_TAG_COMMIT)),
        ("ROUND_ALIGN_BYTES", batch::ROUND_ALIGN_BYTES as u64),
        (
            "COMMIT_FRAME_BYTES_MIN",
            batch::COMMIT_FRAME_BYTES_MIN as u64,
        ),
        ("VARINT_U64_BYTES_MAX", varint::VARINT_U64_BYTES_MAX as u64),
        ("FIRST_OFFSET", gridlog_common::FIRST_OFFSET),
        ("SEGMENT_BYTES_DEFAULT", wal::SEGMENT_BYTES_DEFAULT),
        ("SEGMENT_BYTES_MIN", wal::SEGMENT_BYTES_MIN),
        ("SEGMENT_BYTES_MAX", wal::SEGMENT_BYTES_MAX),
        ("ROUND_BYTES_DEFAULT", wal::ROUND_BYTES_DEFAULT as u64),
        (
            "STORED_EVENT_BYTES_MAX",
            gridlog_common::domain::STORED_EVENT_BYTES_MAX as u64,
        ),
    ];
    let doc: Vec<(String, u64)> = table("constants")
        .iter()
        .map(|row| (row[0].clone(), number(&row[1])))
        .collect();
    let doc_names: Vec<&str> = doc.iter().map(|(n, _)| n.as_str()).collect();
    let code_names: Vec<&str> = code.iter().map(|(n, _)| *n).collect();
    assert_eq!(doc_names, code_names, "constants table: names");
    for ((name, documented), (_, value)) in doc.iter().zip(&code) {
        assert_eq!(documented, value, "constants table: {name}");
    }
    assert_eq!(&segment::SEGMENT_MAGIC, b"GLOGSEG\0");
    assert!(
        FORMAT_MD.contains("`GLOGSEG\\0`"),
        "the magic is written out"
    );
}

/// Compares an example in the document with what the code writes, printing the right block
/// when they differ.
fn check_example(name: &str, written: &[u8]) {
    let documented = example(name);
    assert!(
        documented == written,
        "example {name} in docs/FORMAT.md differs from the encoder; the encoder writes:\n{}",
        hex_block(written)
    );
}

#[test]
fn frame_example_is_what_the_encoder_writes() {
    let mut out = [0u8; 16];
    let n = frame::encode(b"abc", &mut out).unwrap();
    check_example("frame", &out[..n]);
    assert_eq!(frame::decode(&out[..n]).unwrap().body, b"abc");
}

#[test]
fn batch_example_is_what_the_encoder_writes() {
    let records: [&[u8]; 2] = [b"a", b"bc"];
    let mut out = vec![0u8; batch::batch_frame_len(1, &records)];
    batch::encode_batch_frame(&mut out, 1, &records).unwrap();
    check_example("batch_frame", &out);
    let body = frame::decode(&out).unwrap().body;
    let Body::Batch(view) = batch::decode_body(body).unwrap() else {
        panic!("not a batch")
    };
    assert_eq!(
        view.records().collect::<Vec<_>>(),
        [(1, &b"a"[..]), (2, &b"bc"[..])]
    );
}

#[test]
fn footer_example_is_what_the_encoder_writes() {
    let footer = Footer {
        first_offset: 1,
        next_offset: 3,
        frame_count: 1,
        data_end: 80,
        index: &[],
    };
    let mut out = vec![0u8; batch::footer_frame_len(&footer)];
    batch::encode_footer_frame(&mut out, &footer).unwrap();
    check_example("footer_frame", &out);
    let body = frame::decode(&out).unwrap().body;
    assert_eq!(batch::decode_body(body).unwrap(), Body::Footer(footer));
}

#[test]
fn commit_table_matches_the_constants() {
    use batch::*;
    check_layout(
        "commit_body",
        &[
            ("tag", 0, Some(COMMIT_MAGIC_AT)),
            (
                "magic",
                COMMIT_MAGIC_AT,
                Some(COMMIT_SALT_AT - COMMIT_MAGIC_AT),
            ),
            (
                "salt",
                COMMIT_SALT_AT,
                Some(COMMIT_POSITION_AT - COMMIT_SALT_AT),
            ),
            (
                "position",
                COMMIT_POSITION_AT,
                Some(COMMIT_ROUND_START_AT - COMMIT_POSITION_AT),
            ),
            (
                "round_start",
                COMMIT_ROUND_START_AT,
                Some(COMMIT_PADDING_AT - COMMIT_ROUND_START_AT),
            ),
            ("padding", COMMIT_PADDING_AT, Some(0)),
        ],
    );
}

#[test]
fn commit_example_is_what_the_encoder_writes() {
    let salt = example_segment_header().salt();
    let commit = batch::Commit {
        salt,
        position: 80,
        round_start: 64,
    };
    let len = batch::commit_frame_len(80);
    assert_eq!(80 + len, 512);
    let mut out = vec![0u8; len];
    batch::encode_commit_frame(&mut out, &commit).unwrap();
    check_example("commit_frame", &out);
    let body = frame::decode(&out).unwrap().body;
    assert_eq!(batch::decode_body(body).unwrap(), Body::Commit(commit));
}

fn example_segment_header() -> SegmentHeader {
    SegmentHeader {
        version: FormatVersion::V2,
        log_id: *b"\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00",
        first_offset: 1,
        segment_bytes: 4096,
        created_unix_ms: 1_700_000_000_000,
        round_bytes: 1_048_576,
        recycled: false,
    }
}

#[test]
fn segment_header_example_is_what_the_encoder_writes() {
    let header = SegmentHeader {
        version: FormatVersion::V2,
        log_id: *b"\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00",
        first_offset: 1,
        segment_bytes: 4096,
        created_unix_ms: 1_700_000_000_000,
        round_bytes: 1_048_576,
        recycled: false,
    };
    let bytes = header.encode();
    check_example("segment_header", &bytes);
    assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
}

#[test]
fn varint_example_is_what_the_encoder_writes() {
    let mut out = Vec::new();
    for value in [0u64, 127, 128, 300] {
        let mut buf = [0u8; varint::VARINT_U64_BYTES_MAX];
        let n = varint::encode(value, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    check_example("varints", &out);
}
