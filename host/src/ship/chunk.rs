//! Chunk objects: a run of the log's durable records, shipped before their segment is
//! sealed and archived, so central storage holds every acknowledged event within
//! `ship.max_lag_s`. A shipped segment covering a chunk's whole range supersedes it.
//!
//! A chunk is read from the log through the WAL's record cursor, never from segment bytes,
//! so it does not depend on the segment format.
//!
//! ```text
//!  0        8        10       12       16                32        40        48       52       56       60       64
//!  +--------+--------+--------+--------+-----------------+---------+---------+--------+--------+--------+--------+----------------+
//!  | magic  |version |hdr len | codec  | log id          | first   | next    | body   | orig   | orig   | hdr    | body: zstd of  |
//!  | 8 B    | u16 LE | u16 LE | u32 LE | 16 B            | offset  | offset  | bytes  | bytes  | crc32  | crc32  | the records    |
//!  |        |        |        |        |                 | u64 LE  | u64 LE  | u32 LE | u32 LE | u32 LE | u32 LE |                |
//!  +--------+--------+--------+--------+-----------------+---------+---------+--------+--------+--------+--------+----------------+
//!  magic = "GLOGCHNK"; version 1; hdr len = 64; codec 1 = zstd; hdr crc32 = CRC-32 of bytes 0..60
//!  records (decompressed, `orig bytes` long, CRC-32 `orig crc32`):
//!    one per offset first..next, each: len u32 LE | the record's bytes (an event, as in the log)
//! ```
//!
//! The decoder never panics and checks every length before it allocates: the body's
//! declared size against [`CHUNK_ORIGINAL_BYTES_MAX`], the record count against
//! [`CHUNK_RECORDS_MAX`], each record length against what is left.

use std::io::Read;

use gridlog_common::Offset;

/// The eight bytes every chunk object starts with.
pub const CHUNK_MAGIC: [u8; 8] = *b"GLOGCHNK";
/// The format version this build writes and reads.
pub const CHUNK_VERSION: u16 = 1;
/// Codec of the body: zstd.
pub const CHUNK_CODEC_ZSTD: u32 = 1;
/// Byte offset of the magic.
pub const C_MAGIC_AT: usize = 0;
/// Byte offset of the version.
pub const C_VERSION_AT: usize = C_MAGIC_AT + 8;
/// Byte offset of the header length.
pub const C_HEADER_LEN_AT: usize = C_VERSION_AT + 2;
/// Byte offset of the codec.
pub const C_CODEC_AT: usize = C_HEADER_LEN_AT + 2;
/// Byte offset of the log id.
pub const C_LOG_ID_AT: usize = C_CODEC_AT + 4;
/// Byte offset of the first offset.
pub const C_FIRST_OFFSET_AT: usize = C_LOG_ID_AT + 16;
/// Byte offset of the next offset.
pub const C_NEXT_OFFSET_AT: usize = C_FIRST_OFFSET_AT + 8;
/// Byte offset of the compressed body's length.
pub const C_BODY_BYTES_AT: usize = C_NEXT_OFFSET_AT + 8;
/// Byte offset of the decompressed body's length.
pub const C_ORIGINAL_BYTES_AT: usize = C_BODY_BYTES_AT + 4;
/// Byte offset of the decompressed body's CRC-32.
pub const C_ORIGINAL_CRC_AT: usize = C_ORIGINAL_BYTES_AT + 4;
/// Byte offset of the header's CRC-32.
pub const C_CRC_AT: usize = C_ORIGINAL_CRC_AT + 4;
/// Size of the header.
pub const CHUNK_HEADER_BYTES: usize = C_CRC_AT + 4;
/// Bytes before each record in the body (its length).
pub const CHUNK_RECORD_LEN_BYTES: usize = 4;

const _: () = assert!(CHUNK_HEADER_BYTES == 64);

/// Most decompressed body bytes of one chunk: 16 MiB. The shipper cuts chunks well below it
/// ([`CHUNK_TARGET_BYTES`]); the decoder refuses to allocate more.
pub const CHUNK_ORIGINAL_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most records in one chunk (each has at least its length prefix).
pub const CHUNK_RECORDS_MAX: u64 = (CHUNK_ORIGINAL_BYTES_MAX / CHUNK_RECORD_LEN_BYTES) as u64;
/// The shipper closes a chunk once its records reach this many bytes: 4 MiB.
pub const CHUNK_TARGET_BYTES: usize = 4 * 1024 * 1024;
/// zstd level of chunk bodies (fast; chunks are small and frequent).
pub const CHUNK_ZSTD_LEVEL: i32 = 3;

const _: () = assert!(CHUNK_TARGET_BYTES < CHUNK_ORIGINAL_BYTES_MAX);

/// A decoded record with its offset.
pub type ChunkRecord = (Offset, Vec<u8>);

/// A chunk's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The log the records belong to.
    pub log_id: [u8; 16],
    /// Offset of the first record.
    pub first_offset: Offset,
    /// One past the last record.
    pub next_offset: Offset,
}

/// Why bytes are not a valid chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// Fewer bytes than a header.
    #[error("chunk truncated: {available} bytes, the header alone is {CHUNK_HEADER_BYTES}")]
    Truncated {
        /// Bytes there are.
        available: usize,
    },
    /// Not a chunk.
    #[error("not a gridlog chunk (bad magic)")]
    BadMagic,
    /// The header CRC does not match.
    #[error("bad chunk header CRC")]
    BadHeaderCrc,
    /// A version, header length or codec this build does not know.
    #[error("unsupported chunk version {version}, header length {header_len} or codec {codec}")]
    Unsupported {
        /// The version.
        version: u16,
        /// The header length.
        header_len: u16,
        /// The codec.
        codec: u32,
    },
    /// The offset range is empty or larger than a chunk may hold.
    #[error("chunk offsets {first}..{next}: empty, or more than {CHUNK_RECORDS_MAX} records")]
    BadRange {
        /// First offset.
        first: Offset,
        /// Next offset.
        next: Offset,
    },
    /// The body is not as long as the header says.
    #[error("chunk body is {actual} bytes, the header says {declared}")]
    BodyLength {
        /// What the header says.
        declared: u64,
        /// What is there.
        actual: u64,
    },
    /// The header claims a body larger than the limit.
    #[error("chunk claims {declared} decompressed bytes; the most is {CHUNK_ORIGINAL_BYTES_MAX}")]
    TooLarge {
        /// What the header says.
        declared: u64,
    },
    /// The body does not decompress to what the header says.
    #[error("chunk body does not decompress: {0}")]
    Decompress(String),
    /// The decompressed body's CRC does not match.
    #[error("chunk body CRC mismatch")]
    BadBodyCrc,
    /// The records do not fill the body exactly, one per offset.
    #[error("chunk records: {0}")]
    BadRecords(&'static str),
    /// The records are too large for one chunk.
    #[error("{bytes} bytes of records are more than a chunk holds ({CHUNK_ORIGINAL_BYTES_MAX})")]
    EncodeTooLarge {
        /// Bytes of records with their lengths.
        bytes: usize,
    },
}

/// Encodes records `first_offset..` as a chunk object.
pub fn encode<R: AsRef<[u8]>>(
    log_id: [u8; 16],
    first_offset: Offset,
    records: &[R],
) -> Result<Vec<u8>, ChunkError> {
    let original_bytes: usize = records
        .iter()
        .map(|r| CHUNK_RECORD_LEN_BYTES + r.as_ref().len())
        .sum();
    if original_bytes > CHUNK_ORIGINAL_BYTES_MAX || records.is_empty() {
        return Err(ChunkError::EncodeTooLarge {
            bytes: original_bytes,
        });
    }
    let mut body = Vec::with_capacity(original_bytes);
    for r in records {
        let r = r.as_ref();
        body.extend_from_slice(&(r.len() as u32).to_le_bytes());
        body.extend_from_slice(r);
    }
    let compressed = zstd::bulk::compress(&body, CHUNK_ZSTD_LEVEL)
        .map_err(|e| ChunkError::Decompress(e.to_string()))?;
    let mut out = Vec::with_capacity(CHUNK_HEADER_BYTES + compressed.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.extend_from_slice(&CHUNK_VERSION.to_le_bytes());
    out.extend_from_slice(&(CHUNK_HEADER_BYTES as u16).to_le_bytes());
    out.extend_from_slice(&CHUNK_CODEC_ZSTD.to_le_bytes());
    out.extend_from_slice(&log_id);
    out.extend_from_slice(&first_offset.to_le_bytes());
    out.extend_from_slice(&(first_offset + records.len() as u64).to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let crc = crc32fast::hash(&out[..C_CRC_AT]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), CHUNK_HEADER_BYTES);
    out.extend_from_slice(&compressed);
    Ok(out)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// How many records to reserve room for: what the header says, but never more than the
/// checked body can hold (every record takes at least its length prefix), so a forged
/// header cannot make the decoder reserve `CHUNK_RECORDS_MAX` records for a tiny body.
fn records_capacity(records: u64, body_bytes: usize) -> usize {
    let fit = body_bytes / CHUNK_RECORD_LEN_BYTES;
    usize::try_from(records).map_or(fit, |r| r.min(fit))
}

/// Checks and decodes a chunk: its header, and its records with their offsets. Never
/// panics; allocates at most [`CHUNK_ORIGINAL_BYTES_MAX`] plus the records' copies.
pub fn decode(bytes: &[u8]) -> Result<(ChunkHeader, Vec<ChunkRecord>), ChunkError> {
    let b = bytes
        .get(..CHUNK_HEADER_BYTES)
        .ok_or(ChunkError::Truncated {
            available: bytes.len(),
        })?;
    if b[C_MAGIC_AT..C_VERSION_AT] != CHUNK_MAGIC {
        return Err(ChunkError::BadMagic);
    }
    if crc32fast::hash(&b[..C_CRC_AT]) != u32_at(b, C_CRC_AT) {
        return Err(ChunkError::BadHeaderCrc);
    }
    let (version, header_len, codec) = (
        u16_at(b, C_VERSION_AT),
        u16_at(b, C_HEADER_LEN_AT),
        u32_at(b, C_CODEC_AT),
    );
    if version != CHUNK_VERSION
        || usize::from(header_len) != CHUNK_HEADER_BYTES
        || codec != CHUNK_CODEC_ZSTD
    {
        return Err(ChunkError::Unsupported {
            version,
            header_len,
            codec,
        });
    }
    let mut log_id = [0u8; 16];
    log_id.copy_from_slice(&b[C_LOG_ID_AT..C_FIRST_OFFSET_AT]);
    let (first, next) = (u64_at(b, C_FIRST_OFFSET_AT), u64_at(b, C_NEXT_OFFSET_AT));
    let records = next.saturating_sub(first);
    if records == 0 || records > CHUNK_RECORDS_MAX {
        return Err(ChunkError::BadRange { first, next });
    }
    let body = &bytes[CHUNK_HEADER_BYTES..];
    let declared = u64::from(u32_at(b, C_BODY_BYTES_AT));
    if body.len() as u64 != declared {
        return Err(ChunkError::BodyLength {
            declared,
            actual: body.len() as u64,
        });
    }
    let original_bytes = u64::from(u32_at(b, C_ORIGINAL_BYTES_AT));
    if original_bytes > CHUNK_ORIGINAL_BYTES_MAX as u64 {
        return Err(ChunkError::TooLarge {
            declared: original_bytes,
        });
    }
    let mut original = Vec::with_capacity(original_bytes as usize);
    zstd::stream::read::Decoder::new(body)
        .map_err(|e| ChunkError::Decompress(e.to_string()))?
        .take(original_bytes + 1)
        .read_to_end(&mut original)
        .map_err(|e| ChunkError::Decompress(e.to_string()))?;
    if original.len() as u64 != original_bytes {
        return Err(ChunkError::Decompress(format!(
            "{} bytes, the header says {original_bytes}",
            original.len()
        )));
    }
    if crc32fast::hash(&original) != u32_at(b, C_ORIGINAL_CRC_AT) {
        return Err(ChunkError::BadBodyCrc);
    }
    let mut out = Vec::with_capacity(records_capacity(records, original.len()));
    let mut rest = &original[..];
    for offset in first..next {
        let Some((len, tail)) = rest.split_first_chunk::<CHUNK_RECORD_LEN_BYTES>() else {
            return Err(ChunkError::BadRecords("fewer records than offsets"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((record, tail)) = tail.split_at_checked(len) else {
            return Err(ChunkError::BadRecords("a record runs past the body"));
        };
        out.push((offset, record.to_vec()));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ChunkError::BadRecords("bytes after the last record"));
    }
    Ok((
        ChunkHeader {
            log_id,
            first_offset: first,
            next_offset: next,
        },
        out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_pinned() {
        assert_eq!(
            [
                C_MAGIC_AT,
                C_VERSION_AT,
                C_HEADER_LEN_AT,
                C_CODEC_AT,
                C_LOG_ID_AT,
                C_FIRST_OFFSET_AT,
                C_NEXT_OFFSET_AT,
                C_BODY_BYTES_AT,
                C_ORIGINAL_BYTES_AT,
                C_ORIGINAL_CRC_AT,
                C_CRC_AT,
                CHUNK_HEADER_BYTES
            ],
            [0, 8, 10, 12, 16, 32, 40, 48, 52, 56, 60, 64]
        );
    }

    /// `docs/FORMAT.md`'s chunk table names every field at its constant's offset and size.
    #[test]
    fn the_format_document_matches_the_constants() {
        let doc = include_str!("../../../docs/FORMAT.md");
        let table = doc
            .split("<!-- checked-table: chunk_header -->")
            .nth(1)
            .expect("docs/FORMAT.md has the chunk table");
        let rows: Vec<(usize, usize, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with("|---"))
            .skip(1)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].parse().unwrap(),
                    cells[2].parse().unwrap(),
                    cells[3].trim_matches('`').to_string(),
                )
            })
            .collect();
        let expected = [
            (C_MAGIC_AT, C_VERSION_AT, "magic"),
            (C_VERSION_AT, C_HEADER_LEN_AT, "version"),
            (C_HEADER_LEN_AT, C_CODEC_AT, "header_len"),
            (C_CODEC_AT, C_LOG_ID_AT, "codec"),
            (C_LOG_ID_AT, C_FIRST_OFFSET_AT, "log_id"),
            (C_FIRST_OFFSET_AT, C_NEXT_OFFSET_AT, "first_offset"),
            (C_NEXT_OFFSET_AT, C_BODY_BYTES_AT, "next_offset"),
            (C_BODY_BYTES_AT, C_ORIGINAL_BYTES_AT, "body_bytes"),
            (C_ORIGINAL_BYTES_AT, C_ORIGINAL_CRC_AT, "original_bytes"),
            (C_ORIGINAL_CRC_AT, C_CRC_AT, "original_crc"),
            (C_CRC_AT, CHUNK_HEADER_BYTES, "crc"),
        ]
        .map(|(at, end, name)| (at, end - at, name.to_string()));
        assert_eq!(rows, expected);
        assert!(table.contains(&format!("header_len` | u16 LE, {CHUNK_HEADER_BYTES}")));
        assert!(table.contains(std::str::from_utf8(&CHUNK_MAGIC).unwrap()));
    }

    fn sample() -> (Vec<Vec<u8>>, Vec<u8>) {
        let records: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        let bytes = encode([7; 16], 1000, &records).unwrap();
        (records, bytes)
    }

    #[test]
    fn round_trip() {
        let (records, bytes) = sample();
        let (h, decoded) = decode(&bytes).unwrap();
        assert_eq!(
            (h.log_id, h.first_offset, h.next_offset),
            ([7; 16], 1000, 1050)
        );
        let expected: Vec<_> = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (1000 + i as u64, r))
            .collect();
        assert_eq!(decoded, expected);
        assert!(encode::<Vec<u8>>([0; 16], 1, &[]).is_err());
    }

    #[test]
    fn a_forged_record_count_reserves_only_what_the_body_can_hold() {
        assert_eq!(records_capacity(CHUNK_RECORDS_MAX, 4), 1);
        assert_eq!(records_capacity(CHUNK_RECORDS_MAX, 0), 0);
        assert_eq!(records_capacity(3, 1_000), 3);
        assert_eq!(records_capacity(u64::MAX, 40), 10);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_an_error_never_other_records() {
        let (_, bytes) = sample();
        let good = decode(&bytes).unwrap();
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut d = bytes.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            // A flip in a zstd frame field that does not change what it decompresses to
            // (the body CRC is of the records) may decode; never to other records. The
            // manifest's SHA-256 of the object catches it in central storage.
            if let Ok(decoded) = decode(&d) {
                assert!(bit / 8 >= CHUNK_HEADER_BYTES, "header bit {bit} flipped");
                assert_eq!(decoded, good, "bit {bit} flipped");
            }
        }
    }

    /// Header fields re-signed with a valid CRC: the limits hold before any allocation.
    #[test]
    fn lying_headers_are_refused_before_allocating() {
        let (_, bytes) = sample();
        let resign = |mut d: Vec<u8>| {
            let crc = crc32fast::hash(&d[..C_CRC_AT]);
            d[C_CRC_AT..CHUNK_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
            d
        };
        let mut huge = bytes.clone();
        huge[C_ORIGINAL_BYTES_AT..C_ORIGINAL_CRC_AT].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&resign(huge)),
            Err(ChunkError::TooLarge { .. })
        ));
        let mut range = bytes.clone();
        range[C_NEXT_OFFSET_AT..C_BODY_BYTES_AT].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&resign(range)),
            Err(ChunkError::BadRange { .. })
        ));
        let mut more = bytes.clone();
        more[C_NEXT_OFFSET_AT..C_BODY_BYTES_AT].copy_from_slice(&1051u64.to_le_bytes());
        assert!(matches!(
            decode(&resign(more)),
            Err(ChunkError::BadRecords(_))
        ));
        let mut version = bytes;
        version[C_VERSION_AT] = 2;
        assert!(matches!(
            decode(&resign(version)),
            Err(ChunkError::Unsupported { version: 2, .. })
        ));
        // Arbitrary bytes behind a valid magic.
        for seed in 0..200u32 {
            let mut junk = CHUNK_MAGIC.to_vec();
            junk.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8));
            assert!(decode(&junk).is_err());
        }
    }
}
