//! The byte layout of a rollup spill file: sealed intervals of many meters, written once,
//! read back one meter at a time.
//!
//! ```text
//!  0        8        10       12       16         24          32       36        40       48       56
//!  +--------+--------+--------+--------+----------+-----------+--------+---------+--------+--------+
//!  | magic  |version |hdr len | flags  | spill    | blocks    | meters | index   | first  | last   |
//!  | 8 B    | u16 LE | u16 LE | u32 LE | seq      | bytes     | u32 LE | crc32   | day    | day    |
//!  |        | = 2    | = 104  | = 0    | u64 LE   | u64 LE    |        | u32 LE  | i64 LE | i64 LE |
//!  +--------+--------+--------+--------+----------+-----------+--------+---------+--------+--------+
//!  56          72          80           88       92         96        100      104
//!  +-----------+-----------+------------+--------+----------+---------+--------+
//!  | log id    | through   | replaces   | level  | quarter  | day     | header |
//!  | 16 B      | offset    | from       | u32 LE | hour     | days    | crc32  |
//!  |           | u64 LE    | u64 LE     |        | days u32 | u32 LE  | u32 LE |
//!  +-----------+-----------+------------+--------+----------+---------+--------+
//!  magic = "GLOGRLUP"; header crc = CRC-32 of bytes 0..100; first/last day: the oldest and
//!  newest day of any record (a reader skips a spill outside its range; 0 and -1 if none);
//!  through offset: every day sealed and amendment made by an event below it is in this
//!  spill or an older one; replaces from: the oldest spill a merged spill replaces (its own
//!  seq for a spill of queued records); level: 0, or one more than the spills it merged;
//!  quarter hour days, day days: the rollup horizons its records were made under
//!  then `blocks bytes` of meter blocks, then `meters` index entries of 16 bytes:
//!  +-----------+-----------+-------------+-----------+
//!  | id hash   | block at  | block bytes | entry crc |  sorted by (id hash, block at);
//!  | u32 LE    | u32 LE    | u32 LE      | u32 LE    |  block at counts from the first
//!  +-----------+-----------+-------------+-----------+  block; entry crc = CRC-32 of its
//!  first 12 bytes (a query binary-searches the index on disk, checking each entry it reads);
//!  index crc = CRC-32 of the whole index (checked by `verify`)
//!
//!  meter block:  crc32 u32 LE of the rest | id len u8 | id | days varint | day record…
//!  day record:   day step varint (first: zigzag day index; then days after the previous − 1)
//!                | has u8 (bit 0 day bucket, bit 1 quarter hours) | day bucket
//!                | quarter bitmap 12 B (bit q = quarter hour q of the day) | bucket per set bit
//!  bucket:       tag u8 (bit 0 one reading, bit 1 import +0, bit 2 export +0)
//!                | import f64 LE unless bit 1 | export f64 LE unless bit 2
//!                | bit 0: power f32 LE (min = max = mean), count 1
//!                | else:  count varint, min f32 LE, max f32 LE, mean f32 LE
//! ```
//!
//! The interval numbers are implied (day by delta, quarter hour by bitmap position), and a
//! bucket of one reading (nearly every quarter hour of a meter read every 15 minutes) keeps
//! its power once: 13 bytes instead of 40 with no export. Energies stay `f64` bit for bit —
//! a rollup read back is the one the image held — so they are not delta-encoded.
//!
//! Decoding trusts nothing: every length is checked against the bytes present and against
//! its limit before anything is allocated, every block carries its own CRC (a query reads
//! one block, not the file), and any inconsistency is a typed [`DecodeError`], never a
//! panic.

use gridlog_common::id::{EntityId, ID_BYTES_MAX};
use gridlog_common::varint;

use crate::engine::rollup::{Bucket, RollupOptions};

/// The eight bytes every spill file starts with.
pub const SPILL_MAGIC: [u8; 8] = *b"GLOGRLUP";
/// The spill file format this build writes and reads.
pub const SPILL_VERSION: u16 = 2;

/// Byte offset of the magic.
pub const R_MAGIC_AT: usize = 0;
/// Byte offset of the version.
pub const R_VERSION_AT: usize = R_MAGIC_AT + 8;
/// Byte offset of the header length.
pub const R_HEADER_LEN_AT: usize = R_VERSION_AT + 2;
/// Byte offset of the flags.
pub const R_FLAGS_AT: usize = R_HEADER_LEN_AT + 2;
/// Byte offset of the spill sequence number.
pub const R_SPILL_SEQ_AT: usize = R_FLAGS_AT + 4;
/// Byte offset of the length of the meter blocks.
pub const R_BLOCKS_BYTES_AT: usize = R_SPILL_SEQ_AT + 8;
/// Byte offset of the number of meters (index entries).
pub const R_METERS_AT: usize = R_BLOCKS_BYTES_AT + 8;
/// Byte offset of the index CRC.
pub const R_INDEX_CRC_AT: usize = R_METERS_AT + 4;
/// Byte offset of the oldest day any record holds.
pub const R_FIRST_DAY_AT: usize = R_INDEX_CRC_AT + 4;
/// Byte offset of the newest day any record holds.
pub const R_LAST_DAY_AT: usize = R_FIRST_DAY_AT + 8;
/// Byte offset of the id of the log whose events the spill was derived from.
pub const R_LOG_ID_AT: usize = R_LAST_DAY_AT + 8;
/// Byte offset of the offset the spill covers up to (exclusive).
pub const R_THROUGH_OFFSET_AT: usize = R_LOG_ID_AT + 16;
/// Byte offset of the oldest spill a merged spill replaces.
pub const R_REPLACES_FROM_AT: usize = R_THROUGH_OFFSET_AT + 8;
/// Byte offset of the merge level.
pub const R_LEVEL_AT: usize = R_REPLACES_FROM_AT + 8;
/// Byte offset of the quarter-hour horizon the records were made under.
pub const R_QUARTER_HOUR_DAYS_AT: usize = R_LEVEL_AT + 4;
/// Byte offset of the day horizon the records were made under.
pub const R_DAY_DAYS_AT: usize = R_QUARTER_HOUR_DAYS_AT + 4;
/// Byte offset of the header CRC.
pub const R_CRC_AT: usize = R_DAY_DAYS_AT + 4;
/// Length of the header.
pub const SPILL_HEADER_BYTES: usize = R_CRC_AT + 4;
/// Length of one index entry.
pub const SPILL_INDEX_ENTRY_BYTES: usize = 16;

const _: () = assert!(SPILL_HEADER_BYTES == 104);

pub use crate::engine::rollup::QUARTERS_PER_DAY;
/// Bytes of a day record's quarter-hour bitmap.
const QUARTER_BITMAP_BYTES: usize = QUARTERS_PER_DAY / 8;
/// Most meters one spill file holds: bounds the index a reader allocates.
pub const SPILL_METERS_MAX: u32 = 1 << 20;
/// Most days one meter block holds (ten years): bounds what a block can make a reader
/// allocate.
pub const SPILL_DAYS_PER_BLOCK_MAX: u64 = 3_660;
/// Longest encoding of one bucket: tag, two energies, count varint, three powers.
pub const BUCKET_ENCODED_BYTES_MAX: usize = 1 + 8 + 8 + varint::encoded_len(u32::MAX as u64) + 12;
/// Longest day record: step, flags, day bucket, bitmap, 96 buckets.
const DAY_RECORD_BYTES_MAX: usize = varint::VARINT_U64_BYTES_MAX
    + 1
    + BUCKET_ENCODED_BYTES_MAX
    + QUARTER_BITMAP_BYTES
    + QUARTERS_PER_DAY * BUCKET_ENCODED_BYTES_MAX;
/// Longest meter block a reader accepts.
pub const SPILL_BLOCK_BYTES_MAX: usize = 4
    + 1
    + ID_BYTES_MAX
    + varint::VARINT_U64_BYTES_MAX
    + SPILL_DAYS_PER_BLOCK_MAX as usize * DAY_RECORD_BYTES_MAX;

const _: () = assert!(SPILL_BLOCK_BYTES_MAX <= u32::MAX as usize);

const TAG_ONE_READING: u8 = 1;
const TAG_IMPORT_ZERO: u8 = 2;
const TAG_EXPORT_ZERO: u8 = 4;
const HAS_DAY: u8 = 1;
const HAS_QUARTERS: u8 = 2;

pub use crate::engine::rollup::DayRecord;

/// Why bytes are not a valid spill file or meter block. `at` is a byte position in the
/// file (header, index) or in the block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the structure does.
    #[error("truncated at byte {at}: {needed} more bytes needed")]
    Truncated {
        /// Where the missing bytes start.
        at: usize,
        /// How many are missing.
        needed: usize,
    },
    /// Not a spill file.
    #[error("bad magic")]
    Magic,
    /// A format this build does not read.
    #[error("spill format version {found}, this build reads {SPILL_VERSION}")]
    Version {
        /// The file's version.
        found: u16,
    },
    /// A checksum does not match.
    #[error("{part} CRC mismatch")]
    Crc {
        /// `header`, `index` or `block`.
        part: &'static str,
    },
    /// A length or count beyond its limit, or one that disagrees with the file's size.
    #[error("{what} is {value}, limit {max}")]
    Bound {
        /// What was counted.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Its limit.
        max: u64,
    },
    /// A varint is malformed.
    #[error("bad varint at byte {at}")]
    Varint {
        /// Where it starts.
        at: usize,
    },
    /// A field holds a value no encoder writes.
    #[error("bad {what} at byte {at}")]
    Field {
        /// The field.
        what: &'static str,
        /// Where it is.
        at: usize,
    },
    /// The block's bytes go on after its last day record.
    #[error("{extra} bytes after the last day record")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

/// The header of a spill file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillHeader {
    /// The spill's sequence number (its file name).
    pub spill_seq: u64,
    /// Length of the meter blocks.
    pub blocks_bytes: u64,
    /// Index entries (meters).
    pub meters: u32,
    /// CRC-32 of the index.
    pub index_crc: u32,
    /// Oldest day of any record (0 with no record).
    pub first_day: i64,
    /// Newest day of any record (-1 with no record).
    pub last_day: i64,
    /// The log the spill's records were derived from.
    pub log_id: [u8; 16],
    /// Every day sealed and every amendment made by an event below this offset is in this
    /// spill or an older one (see `rollup_store`'s module docs).
    pub through_offset: u64,
    /// The oldest spill this one replaces: itself for a spill of queued records; the first
    /// of the run it merged for a merged one (those files are removed after it).
    pub replaces_from: u64,
    /// 0 for a spill of queued records; one more than the level of the spills it merged.
    pub level: u32,
    /// The rollup horizons its records were made under (amendments and merges decide by
    /// them): a store of other horizons is set aside at start.
    pub horizons: RollupOptions,
}

impl SpillHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SPILL_HEADER_BYTES] {
        let mut b = [0u8; SPILL_HEADER_BYTES];
        b[R_MAGIC_AT..R_VERSION_AT].copy_from_slice(&SPILL_MAGIC);
        b[R_VERSION_AT..R_HEADER_LEN_AT].copy_from_slice(&SPILL_VERSION.to_le_bytes());
        b[R_HEADER_LEN_AT..R_FLAGS_AT].copy_from_slice(&(SPILL_HEADER_BYTES as u16).to_le_bytes());
        b[R_SPILL_SEQ_AT..R_BLOCKS_BYTES_AT].copy_from_slice(&self.spill_seq.to_le_bytes());
        b[R_BLOCKS_BYTES_AT..R_METERS_AT].copy_from_slice(&self.blocks_bytes.to_le_bytes());
        b[R_METERS_AT..R_INDEX_CRC_AT].copy_from_slice(&self.meters.to_le_bytes());
        b[R_INDEX_CRC_AT..R_FIRST_DAY_AT].copy_from_slice(&self.index_crc.to_le_bytes());
        b[R_FIRST_DAY_AT..R_LAST_DAY_AT].copy_from_slice(&self.first_day.to_le_bytes());
        b[R_LAST_DAY_AT..R_LOG_ID_AT].copy_from_slice(&self.last_day.to_le_bytes());
        b[R_LOG_ID_AT..R_THROUGH_OFFSET_AT].copy_from_slice(&self.log_id);
        b[R_THROUGH_OFFSET_AT..R_REPLACES_FROM_AT]
            .copy_from_slice(&self.through_offset.to_le_bytes());
        b[R_REPLACES_FROM_AT..R_LEVEL_AT].copy_from_slice(&self.replaces_from.to_le_bytes());
        b[R_LEVEL_AT..R_QUARTER_HOUR_DAYS_AT].copy_from_slice(&self.level.to_le_bytes());
        b[R_QUARTER_HOUR_DAYS_AT..R_DAY_DAYS_AT]
            .copy_from_slice(&self.horizons.quarter_hour_days.to_le_bytes());
        b[R_DAY_DAYS_AT..R_CRC_AT].copy_from_slice(&self.horizons.day_days.to_le_bytes());
        let crc = crc32fast::hash(&b[..R_CRC_AT]);
        b[R_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads and checks a header; `file_bytes` is the file's length, which must be
    /// exactly header + blocks + index.
    pub fn decode(b: &[u8], file_bytes: u64) -> Result<SpillHeader, DecodeError> {
        let mut r = Reader::new(b);
        if r.take(8)? != SPILL_MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = r.u16()?;
        if version != SPILL_VERSION {
            return Err(DecodeError::Version { found: version });
        }
        let header_len = r.u16()?;
        let flags = r.u32()?;
        let header = SpillHeader {
            spill_seq: r.u64()?,
            blocks_bytes: r.u64()?,
            meters: r.u32()?,
            index_crc: r.u32()?,
            first_day: r.i64()?,
            last_day: r.i64()?,
            log_id: r.take(16)?.try_into().expect("16 bytes"),
            through_offset: r.u64()?,
            replaces_from: r.u64()?,
            level: r.u32()?,
            horizons: RollupOptions {
                quarter_hour_days: r.u32()?,
                day_days: r.u32()?,
            },
        };
        if r.u32()? != crc32fast::hash(&b[..R_CRC_AT]) {
            return Err(DecodeError::Crc { part: "header" });
        }
        if usize::from(header_len) != SPILL_HEADER_BYTES || flags != 0 {
            return Err(DecodeError::Field {
                what: "header length or flags",
                at: R_HEADER_LEN_AT,
            });
        }
        if header.replaces_from > header.spill_seq || header.replaces_from == 0 {
            return Err(DecodeError::Field {
                what: "replaces_from",
                at: R_REPLACES_FROM_AT,
            });
        }
        bound("meters", header.meters.into(), SPILL_METERS_MAX.into())?;
        bound("blocks bytes", header.blocks_bytes, u32::MAX.into())?;
        let expected = header.index_at() + header.index_bytes();
        if file_bytes != expected {
            return Err(DecodeError::Bound {
                what: "file length",
                value: file_bytes,
                max: expected,
            });
        }
        Ok(header)
    }

    /// Whether a record of this spill may hold a day in `days`.
    pub fn overlaps(&self, days: &std::ops::Range<i64>) -> bool {
        self.first_day < days.end && days.start <= self.last_day
    }

    /// Where the index starts.
    pub fn index_at(&self) -> u64 {
        (SPILL_HEADER_BYTES as u64).saturating_add(self.blocks_bytes)
    }

    /// Length of the index.
    pub fn index_bytes(&self) -> u64 {
        u64::from(self.meters) * SPILL_INDEX_ENTRY_BYTES as u64
    }
}

/// Where a meter's block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// [`id_hash`] of the meter's id.
    pub id_hash: u32,
    /// Block position, from the first block.
    pub block_at: u32,
    /// Block length.
    pub block_bytes: u32,
}

impl IndexEntry {
    /// The entry's 16 bytes: its fields and a CRC-32 of them.
    pub fn encode(&self) -> [u8; SPILL_INDEX_ENTRY_BYTES] {
        let mut b = [0u8; SPILL_INDEX_ENTRY_BYTES];
        b[0..4].copy_from_slice(&self.id_hash.to_le_bytes());
        b[4..8].copy_from_slice(&self.block_at.to_le_bytes());
        b[8..12].copy_from_slice(&self.block_bytes.to_le_bytes());
        let crc = crc32fast::hash(&b[..12]);
        b[12..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads entry bytes and checks them alone (a reader searching the index on disk reads
    /// a few entries, not the whole index): the entry's CRC, and its block inside the
    /// blocks of `header`'s file and within [`SPILL_BLOCK_BYTES_MAX`]. `at` is the entry's
    /// position in the file, for the error.
    pub fn decode(
        b: &[u8; SPILL_INDEX_ENTRY_BYTES],
        header: &SpillHeader,
        at: usize,
    ) -> Result<IndexEntry, DecodeError> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(12) != crc32fast::hash(&b[..12]) {
            return Err(DecodeError::Crc {
                part: "index entry",
            });
        }
        let entry = IndexEntry {
            id_hash: word(0),
            block_at: word(4),
            block_bytes: word(8),
        };
        let end = u64::from(entry.block_at) + u64::from(entry.block_bytes);
        if end > header.blocks_bytes || entry.block_bytes as usize > SPILL_BLOCK_BYTES_MAX {
            return Err(DecodeError::Field {
                what: "index entry block",
                at,
            });
        }
        Ok(entry)
    }
}

/// Decodes and checks a whole index (what `verify` does; a query searches it on disk):
/// its CRC, every entry, sorted, no two blocks overlapping.
pub fn decode_index(b: &[u8], header: &SpillHeader) -> Result<Vec<IndexEntry>, DecodeError> {
    if b.len() as u64 != header.index_bytes() {
        return Err(DecodeError::Truncated {
            at: b.len(),
            needed: (header.index_bytes() as usize).saturating_sub(b.len()),
        });
    }
    if crc32fast::hash(b) != header.index_crc {
        return Err(DecodeError::Crc { part: "index" });
    }
    let at = header.index_at() as usize;
    let entries = b
        .chunks_exact(SPILL_INDEX_ENTRY_BYTES)
        .enumerate()
        .map(|(i, e)| {
            let e = e.try_into().expect("chunks of the entry size");
            IndexEntry::decode(e, header, at + i * SPILL_INDEX_ENTRY_BYTES)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut spans: Vec<(u32, u32)> = entries
        .iter()
        .map(|e| (e.block_at, e.block_bytes))
        .collect();
    spans.sort_unstable();
    let overlapping = spans
        .windows(2)
        .any(|w| u64::from(w[0].0) + u64::from(w[0].1) > u64::from(w[1].0));
    let sorted = entries
        .windows(2)
        .all(|w| (w[0].id_hash, w[0].block_at) < (w[1].id_hash, w[1].block_at));
    if overlapping || !sorted {
        return Err(DecodeError::Field {
            what: "index order or overlapping blocks",
            at,
        });
    }
    Ok(entries)
}

/// The hash the index sorts meters by: FNV-1a, 32 bits, of the id's bytes. Fixed: it is
/// part of the format. Ids that share a hash sit side by side; a reader compares the id in
/// each of their blocks.
pub fn id_hash(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// What a spill file's header says beside its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpillSpec {
    /// The spill's number.
    pub spill_seq: u64,
    /// The log its records were derived from.
    pub log_id: [u8; 16],
    /// See [`SpillHeader::through_offset`].
    pub through_offset: u64,
    /// See [`SpillHeader::replaces_from`].
    pub replaces_from: u64,
    /// See [`SpillHeader::level`].
    pub level: u32,
    /// See [`SpillHeader::horizons`].
    pub horizons: RollupOptions,
}

impl SpillSpec {
    /// A level-0 spill `spill_seq` that replaces no other (tests, benchmarks).
    pub fn plain(spill_seq: u64) -> SpillSpec {
        SpillSpec {
            spill_seq,
            replaces_from: spill_seq,
            horizons: RollupOptions::default(),
            ..SpillSpec::default()
        }
    }
}

/// The index and header of a spill whose blocks are written one after the other.
#[derive(Debug, Default)]
pub struct SpillLayout {
    index: Vec<IndexEntry>,
    blocks_bytes: u64,
    first_day: i64,
    last_day: i64,
}

impl SpillLayout {
    /// No block yet.
    pub fn new() -> SpillLayout {
        SpillLayout {
            first_day: i64::MAX,
            last_day: i64::MIN,
            ..SpillLayout::default()
        }
    }

    /// Notes meter `id`'s block of `days`, `block_bytes` long, written next.
    /// Refuses what a reader would refuse: more than [`SPILL_DAYS_PER_BLOCK_MAX`] days,
    /// [`SPILL_METERS_MAX`] meters, or blocks beyond 4 GiB (offsets are `u32`).
    pub fn add(
        &mut self,
        id: &EntityId,
        days: &[DayRecord],
        block_bytes: usize,
    ) -> Result<(), EncodeError> {
        if days.len() as u64 > SPILL_DAYS_PER_BLOCK_MAX {
            return Err(EncodeError::TooManyDays { days: days.len() });
        }
        if self.index.len() as u64 >= u64::from(SPILL_METERS_MAX) {
            return Err(EncodeError::TooManyMeters);
        }
        let end = self.blocks_bytes.saturating_add(block_bytes as u64);
        let (Ok(block_at), Ok(block_bytes), true) = (
            u32::try_from(self.blocks_bytes),
            u32::try_from(block_bytes),
            end <= u64::from(u32::MAX),
        ) else {
            return Err(EncodeError::TooLarge);
        };
        for record in days {
            self.first_day = self.first_day.min(record.day);
            self.last_day = self.last_day.max(record.day);
        }
        self.index.push(IndexEntry {
            id_hash: id_hash(id.as_str()),
            block_at,
            block_bytes,
        });
        self.blocks_bytes = end;
        Ok(())
    }

    /// Length of the blocks so far.
    pub fn blocks_bytes(&self) -> u64 {
        self.blocks_bytes
    }

    /// The header and the index's bytes.
    pub fn finish(mut self, spec: &SpillSpec) -> (SpillHeader, Vec<u8>) {
        self.index.sort_unstable_by_key(|e| (e.id_hash, e.block_at));
        let index_bytes: Vec<u8> = self.index.iter().flat_map(|e| e.encode()).collect();
        let empty = self.first_day > self.last_day;
        let header = SpillHeader {
            spill_seq: spec.spill_seq,
            blocks_bytes: self.blocks_bytes,
            meters: u32::try_from(self.index.len()).expect("meters beyond u32"),
            index_crc: crc32fast::hash(&index_bytes),
            first_day: if empty { 0 } else { self.first_day },
            last_day: if empty { -1 } else { self.last_day },
            log_id: spec.log_id,
            through_offset: spec.through_offset,
            replaces_from: spec.replaces_from,
            level: spec.level,
            horizons: spec.horizons,
        };
        (header, index_bytes)
    }
}

/// Why records cannot be written as a spill: a reader would refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// One meter has more day records than a block may hold.
    #[error("{days} day records for one meter, at most {SPILL_DAYS_PER_BLOCK_MAX}")]
    TooManyDays {
        /// How many.
        days: usize,
    },
    /// More meters than a spill may hold.
    #[error("more than {SPILL_METERS_MAX} meters in one spill")]
    TooManyMeters,
    /// The blocks would pass 4 GiB.
    #[error("spill blocks beyond 4 GiB")]
    TooLarge,
}

/// A whole spill file in memory: header, blocks (in the order given), index. For tests and
/// benchmarks.
///
/// # Panics
/// If the records break a limit of the format ([`EncodeError`]).
pub fn encode_file<'a>(
    spec: &SpillSpec,
    meters: impl IntoIterator<Item = (&'a EntityId, &'a [DayRecord])>,
) -> Vec<u8> {
    let mut blocks = Vec::new();
    let mut layout = SpillLayout::new();
    for (id, days) in meters {
        let at = blocks.len();
        encode_block(id, days, &mut blocks);
        layout
            .add(id, days, blocks.len() - at)
            .expect("records within the format's limits");
    }
    let (header, index_bytes) = layout.finish(spec);
    let mut out = Vec::with_capacity(SPILL_HEADER_BYTES + blocks.len() + index_bytes.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&blocks);
    out.extend_from_slice(&index_bytes);
    out
}

/// Appends one meter block. `days` must be sorted by day, strictly increasing, each
/// record's quarter hours in its own day, strictly increasing (asserted: a bug otherwise).
pub fn encode_block(id: &EntityId, days: &[DayRecord], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(id.as_str().len() as u8);
    out.extend_from_slice(id.as_str().as_bytes());
    push_varint(out, days.len() as u64);
    let mut previous: Option<i64> = None;
    for record in days {
        let step = match previous {
            None => zigzag(record.day),
            Some(p) => {
                assert!(record.day > p, "day records out of order");
                (record.day - p - 1) as u64
            }
        };
        previous = Some(record.day);
        push_varint(out, step);
        encode_day(record, out);
    }
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

fn encode_day(record: &DayRecord, out: &mut Vec<u8>) {
    let mut has = 0;
    if record.day_bucket.is_some() {
        has |= HAS_DAY;
    }
    if !record.quarters.is_empty() {
        has |= HAS_QUARTERS;
    }
    out.push(has);
    if let Some(bucket) = &record.day_bucket {
        assert_eq!(bucket.index, record.day, "day bucket of another day");
        encode_bucket(bucket, out);
    }
    if record.quarters.is_empty() {
        return;
    }
    let mut bitmap = [0u8; QUARTER_BITMAP_BYTES];
    let first = record.day * QUARTERS_PER_DAY as i64;
    let mut last = -1i64;
    for q in &record.quarters {
        let at = q.index - first;
        assert!(at > last, "quarter hours out of order");
        assert!(at < QUARTERS_PER_DAY as i64, "quarter hour of another day");
        bitmap[at as usize / 8] |= 1 << (at % 8);
        last = at;
    }
    out.extend_from_slice(&bitmap);
    for q in &record.quarters {
        encode_bucket(q, out);
    }
}

fn encode_bucket(b: &Bucket, out: &mut Vec<u8>) {
    let one = b.count == 1
        && b.min_w.to_bits() == b.max_w.to_bits()
        && b.min_w.to_bits() == b.mean_w.to_bits();
    let mut tag = 0;
    if one {
        tag |= TAG_ONE_READING;
    }
    if b.import_wh.to_bits() == 0 {
        tag |= TAG_IMPORT_ZERO;
    }
    if b.export_wh.to_bits() == 0 {
        tag |= TAG_EXPORT_ZERO;
    }
    out.push(tag);
    if tag & TAG_IMPORT_ZERO == 0 {
        out.extend_from_slice(&b.import_wh.to_le_bytes());
    }
    if tag & TAG_EXPORT_ZERO == 0 {
        out.extend_from_slice(&b.export_wh.to_le_bytes());
    }
    if one {
        out.extend_from_slice(&b.min_w.to_le_bytes());
    } else {
        push_varint(out, u64::from(b.count));
        for p in [b.min_w, b.max_w, b.mean_w] {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
}

/// Decodes and checks one meter block: its CRC, its id, its day records.
pub fn decode_block(b: &[u8]) -> Result<(EntityId, Vec<DayRecord>), DecodeError> {
    bound("block bytes", b.len() as u64, SPILL_BLOCK_BYTES_MAX as u64)?;
    let mut r = Reader::new(b);
    let crc = r.u32()?;
    if crc != crc32fast::hash(&b[4..]) {
        return Err(DecodeError::Crc { part: "block" });
    }
    let id_at = r.at;
    let id_len = r.u8()?;
    let id = std::str::from_utf8(r.take(usize::from(id_len))?)
        .ok()
        .and_then(|s| EntityId::new(s).ok())
        .ok_or(DecodeError::Field {
            what: "meter id",
            at: id_at,
        })?;
    let days = r.varint()?;
    bound("days", days, SPILL_DAYS_PER_BLOCK_MAX)?;
    // Each day record takes at least two bytes: the count is bounded by the bytes too.
    bound("days", days.saturating_mul(2), r.rest() as u64)?;
    let mut records = Vec::with_capacity(days as usize);
    let mut previous: Option<i64> = None;
    for _ in 0..days {
        let step_at = r.at;
        let step = r.varint()?;
        let day = match previous {
            None => unzigzag(step),
            Some(p) => i64::try_from(step)
                .ok()
                .and_then(|s| p.checked_add(s)?.checked_add(1))
                .ok_or(DecodeError::Field {
                    what: "day step",
                    at: step_at,
                })?,
        };
        if day.checked_mul(QUARTERS_PER_DAY as i64 + 1).is_none() {
            return Err(DecodeError::Field {
                what: "day",
                at: step_at,
            });
        }
        previous = Some(day);
        records.push(decode_day(&mut r, day)?);
    }
    if r.rest() != 0 {
        return Err(DecodeError::Trailing { extra: r.rest() });
    }
    Ok((id, records))
}

fn decode_day(r: &mut Reader<'_>, day: i64) -> Result<DayRecord, DecodeError> {
    let has_at = r.at;
    let has = r.u8()?;
    if has & !(HAS_DAY | HAS_QUARTERS) != 0 || has == 0 {
        return Err(DecodeError::Field {
            what: "day record flags",
            at: has_at,
        });
    }
    let day_bucket = if has & HAS_DAY != 0 {
        Some(decode_bucket(r, day)?)
    } else {
        None
    };
    let mut quarters = Vec::new();
    if has & HAS_QUARTERS != 0 {
        let bitmap_at = r.at;
        let bitmap = r.take(QUARTER_BITMAP_BYTES)?;
        if bitmap.iter().all(|&b| b == 0) {
            return Err(DecodeError::Field {
                what: "empty quarter bitmap",
                at: bitmap_at,
            });
        }
        let set: Vec<i64> = (0..QUARTERS_PER_DAY)
            .filter(|q| bitmap[q / 8] & (1 << (q % 8)) != 0)
            .map(|q| day * QUARTERS_PER_DAY as i64 + q as i64)
            .collect();
        quarters.reserve(set.len());
        for index in set {
            quarters.push(decode_bucket(r, index)?);
        }
    }
    Ok(DayRecord {
        day,
        day_bucket,
        quarters,
    })
}

fn decode_bucket(r: &mut Reader<'_>, index: i64) -> Result<Bucket, DecodeError> {
    let tag_at = r.at;
    let tag = r.u8()?;
    if tag & !(TAG_ONE_READING | TAG_IMPORT_ZERO | TAG_EXPORT_ZERO) != 0 {
        return Err(DecodeError::Field {
            what: "bucket tag",
            at: tag_at,
        });
    }
    let import_wh = if tag & TAG_IMPORT_ZERO != 0 {
        0.0
    } else {
        r.f64()?
    };
    let export_wh = if tag & TAG_EXPORT_ZERO != 0 {
        0.0
    } else {
        r.f64()?
    };
    let (count, min_w, max_w, mean_w) = if tag & TAG_ONE_READING != 0 {
        let p = r.f32()?;
        (1, p, p, p)
    } else {
        let count_at = r.at;
        let count = u32::try_from(r.varint()?).map_err(|_| DecodeError::Field {
            what: "bucket count",
            at: count_at,
        })?;
        (count, r.f32()?, r.f32()?, r.f32()?)
    };
    Ok(Bucket {
        index,
        import_wh,
        export_wh,
        min_w,
        max_w,
        mean_w,
        count,
    })
}

fn bound(what: &'static str, value: u64, max: u64) -> Result<(), DecodeError> {
    if value > max {
        return Err(DecodeError::Bound { what, value, max });
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn push_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; varint::VARINT_U64_BYTES_MAX];
    let n = varint::encode(v, &mut buf).expect("ten bytes hold any u64");
    out.extend_from_slice(&buf[..n]);
}

/// A cursor over untrusted bytes: every read checks the length first.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    fn rest(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest() {
            return Err(DecodeError::Truncated {
                at: self.at,
                needed: n - self.rest(),
            });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }
    fn f32(&mut self) -> Result<f32, DecodeError> {
        self.array().map(f32::from_le_bytes)
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        self.array().map(f64::from_le_bytes)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) =
            varint::decode(&self.b[self.at..]).map_err(|_| DecodeError::Varint { at: self.at })?;
        self.at += n;
        Ok(v)
    }
}
