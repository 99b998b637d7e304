//! Frame bodies of the log: a batch of records, a round's commit, or a segment footer.
//!
//! Bodies are postcard: the encoding below is byte for byte what postcard writes for
//!
//! ```text
//! enum FrameBody<'a> {
//!     Batch { first_offset: u64, records: Vec<&'a [u8]> },   // variant 0
//!     Footer { first_offset: u64, next_offset: u64, frame_count: u64,
//!              data_end: u64, index: &'a [u8] },               // variant 1
//!     Commit { magic: [u8; 3], salt: [u8; 4], position: [u8; 8],
//!              round_start: [u8; 8] },                         // variant 2, then zero padding
//! }
//! ```
//!
//! ```text
//! Batch body:   0x00 | first_offset varint | count varint | (len varint | record bytes) * count
//! Footer body:  0x01 | first_offset varint | next_offset varint | frame_count varint
//!                    | data_end varint | index_len varint | index bytes
//! Commit body:  0x02 | "CMT" | salt u32 LE | position u64 LE | round_start u64 LE | zeros
//!               0      1       4            8                 16                   24
//! ```
//!
//! A **commit** ends every write round of a version-2 segment (see `crate::segment`): the
//! writer puts it after the round's batch frames, in the same write and the same sync, and
//! pads it with zeros so that the round ends on a [`ROUND_ALIGN_BYTES`] boundary. `salt` is
//! the segment header's CRC (so a commit of another segment, or of an earlier use of the same
//! file, never passes as one of this segment), `position` the commit frame's own byte
//! position, `round_start` the position of the round's first byte. Only the padding, which
//! must be zeros, follows postcard's bytes; the frame's length says how much there is.
//!
//! It is written and read by hand (zero-copy, no allocation) because this is the log's hot
//! path; the tests pin equality with postcard's own output. A record is opaque here; the
//! engine puts its postcard-encoded, schema-versioned events inside.
//!
//! A batch is the unit of atomicity: one frame, so recovery keeps all of its records or
//! none. Its records have the consecutive offsets `first_offset .. first_offset + count`.

use crate::frame::{self, FrameEncodeError, FRAME_BODY_AT, FRAME_BODY_BYTES_MAX};
use crate::varint::{self, VarintError};
use crate::Offset;
use core::fmt;

/// postcard's variant index of a batch body.
pub const BODY_TAG_BATCH: u8 = 0;
/// postcard's variant index of a footer body.
pub const BODY_TAG_FOOTER: u8 = 1;
/// postcard's variant index of a round's commit body.
pub const BODY_TAG_COMMIT: u8 = 2;

/// The three bytes after a commit body's tag.
pub const COMMIT_MAGIC: [u8; 3] = *b"CMT";
/// Byte offset of the magic within a commit body.
pub const COMMIT_MAGIC_AT: usize = 1;
/// Byte offset of the salt (the segment header's CRC) within a commit body.
pub const COMMIT_SALT_AT: usize = COMMIT_MAGIC_AT + 3;
/// Byte offset of the commit frame's own position within a commit body.
pub const COMMIT_POSITION_AT: usize = COMMIT_SALT_AT + 4;
/// Byte offset of the round's first byte position within a commit body.
pub const COMMIT_ROUND_START_AT: usize = COMMIT_POSITION_AT + 8;
/// Byte offset of the zero padding within a commit body; also the shortest commit body.
pub const COMMIT_PADDING_AT: usize = COMMIT_ROUND_START_AT + 8;
/// The shortest commit frame (no padding).
pub const COMMIT_FRAME_BYTES_MIN: usize = frame::frame_len(COMMIT_PADDING_AT);
/// Rounds of a version-2 segment end on a multiple of this many bytes (a disk sector), so a
/// write round never rewrites a sector that holds an earlier, acknowledged round, and damage
/// to one sector never reaches two rounds.
pub const ROUND_ALIGN_BYTES: usize = 512;
/// The longest commit frame: the shortest one plus the padding to the next boundary.
pub const COMMIT_FRAME_BYTES_MAX: usize = COMMIT_FRAME_BYTES_MIN + ROUND_ALIGN_BYTES - 1;
/// The first bytes of every commit body, which a reader looking for rounds after damage
/// searches for.
pub const COMMIT_BODY_PREFIX: [u8; 4] = [
    BODY_TAG_COMMIT,
    COMMIT_MAGIC[0],
    COMMIT_MAGIC[1],
    COMMIT_MAGIC[2],
];

const _: () = assert!(COMMIT_PADDING_AT == 24);
const _: () = assert!(COMMIT_FRAME_BYTES_MIN == 32);
const _: () = assert!(ROUND_ALIGN_BYTES.is_power_of_two());

/// A round's commit: the end of one write round of a version-2 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The segment header's CRC: ties the commit to one segment file's current use.
    pub salt: u32,
    /// Byte position of this commit frame in its segment.
    pub position: u64,
    /// Byte position of the round's first byte (its first batch frame).
    pub round_start: u64,
}

/// The length of the commit frame that starts at byte `position` and pads the round to the
/// next [`ROUND_ALIGN_BYTES`] boundary (a whole extra sector when the gap is too small).
pub const fn commit_frame_len(position: u64) -> usize {
    let align = ROUND_ALIGN_BYTES as u64;
    let gap = (align - position % align) % align;
    let gap = gap as usize;
    if gap >= COMMIT_FRAME_BYTES_MIN {
        gap
    } else {
        gap + ROUND_ALIGN_BYTES
    }
}

/// Encodes the commit frame for `commit` at the start of `out` (at least
/// [`commit_frame_len`]`(commit.position)` bytes); returns its length.
pub fn encode_commit_frame(out: &mut [u8], commit: &Commit) -> Result<usize, FrameEncodeError> {
    let total = commit_frame_len(commit.position);
    if out.len() < total {
        return Err(FrameEncodeError::BufferTooSmall {
            needed: total,
            available: out.len(),
        });
    }
    let body_len = total - FRAME_BODY_AT;
    let body = &mut out[FRAME_BODY_AT..total];
    body.fill(0);
    body[0] = BODY_TAG_COMMIT;
    body[COMMIT_MAGIC_AT..COMMIT_SALT_AT].copy_from_slice(&COMMIT_MAGIC);
    body[COMMIT_SALT_AT..COMMIT_POSITION_AT].copy_from_slice(&commit.salt.to_le_bytes());
    body[COMMIT_POSITION_AT..COMMIT_ROUND_START_AT].copy_from_slice(&commit.position.to_le_bytes());
    body[COMMIT_ROUND_START_AT..COMMIT_PADDING_AT]
        .copy_from_slice(&commit.round_start.to_le_bytes());
    frame::seal_in_place(out, body_len)
}

/// The bytes a batch body takes for these records.
pub fn batch_body_len<R: AsRef<[u8]>>(first_offset: Offset, records: &[R]) -> usize {
    let mut len = 1 + varint::encoded_len(first_offset) + varint::encoded_len(records.len() as u64);
    for record in records {
        let n = record.as_ref().len();
        len += varint::encoded_len(n as u64) + n;
    }
    len
}

/// The bytes a whole batch frame (header included) takes for these records.
pub fn batch_frame_len<R: AsRef<[u8]>>(first_offset: Offset, records: &[R]) -> usize {
    frame::frame_len(batch_body_len(first_offset, records))
}

/// The most bytes a batch frame of `count` records, none longer than `record_bytes_max`,
/// can take, whatever its first offset.
pub fn batch_frame_len_bound(count: usize, record_bytes_max: usize) -> usize {
    let record = varint::encoded_len(record_bytes_max as u64) + record_bytes_max;
    let body = 1
        + varint::encoded_len(u64::MAX)
        + varint::encoded_len(count as u64)
        + count.saturating_mul(record);
    frame::frame_len(body)
}

/// Encodes a batch frame at the start of `out`; returns the frame's length.
///
/// Fails without writing a valid frame if `records` is empty, the body exceeds
/// [`FRAME_BODY_BYTES_MAX`] or `out` is too small.
pub fn encode_batch_frame<R: AsRef<[u8]>>(
    out: &mut [u8],
    first_offset: Offset,
    records: &[R],
) -> Result<usize, FrameEncodeError> {
    let body_len = batch_body_len(first_offset, records);
    if records.is_empty() || body_len > FRAME_BODY_BYTES_MAX {
        let len = if records.is_empty() { 0 } else { body_len };
        return Err(FrameEncodeError::BodyTooLarge {
            len,
            max: FRAME_BODY_BYTES_MAX,
        });
    }
    let total = frame::frame_len(body_len);
    if out.len() < total {
        return Err(FrameEncodeError::BufferTooSmall {
            needed: total,
            available: out.len(),
        });
    }
    let body = &mut out[FRAME_BODY_AT..total];
    body[0] = BODY_TAG_BATCH;
    let mut at = 1;
    at += put_varint(first_offset, &mut body[at..]);
    at += put_varint(records.len() as u64, &mut body[at..]);
    for record in records {
        let record = record.as_ref();
        at += put_varint(record.len() as u64, &mut body[at..]);
        body[at..at + record.len()].copy_from_slice(record);
        at += record.len();
    }
    debug_assert_eq!(at, body_len);
    frame::seal_in_place(out, body_len)
}

fn put_varint(value: u64, out: &mut [u8]) -> usize {
    // The caller sized `out` with `batch_body_len`, so this cannot run short.
    varint::encode(value, out).expect("buffer sized by batch_body_len")
}

/// A segment's footer: written as the last frame of a segment when it is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer<'a> {
    /// Offset of the segment's first record (equals the header's).
    pub first_offset: Offset,
    /// Offset the next segment starts at: one past the last record here.
    pub next_offset: Offset,
    /// Number of batch frames in the segment.
    pub frame_count: u64,
    /// Byte position in the segment file where the footer frame starts.
    pub data_end: u64,
    /// An index the engine may attach (entities, tags, time range); opaque here.
    pub index: &'a [u8],
}

/// The bytes a footer frame takes.
pub fn footer_frame_len(footer: &Footer<'_>) -> usize {
    frame::frame_len(footer_body_len(footer))
}

fn footer_body_len(footer: &Footer<'_>) -> usize {
    1 + varint::encoded_len(footer.first_offset)
        + varint::encoded_len(footer.next_offset)
        + varint::encoded_len(footer.frame_count)
        + varint::encoded_len(footer.data_end)
        + varint::encoded_len(footer.index.len() as u64)
        + footer.index.len()
}

/// Encodes a footer frame at the start of `out`; returns the frame's length.
pub fn encode_footer_frame(out: &mut [u8], footer: &Footer<'_>) -> Result<usize, FrameEncodeError> {
    let body_len = footer_body_len(footer);
    if body_len > FRAME_BODY_BYTES_MAX {
        return Err(FrameEncodeError::BodyTooLarge {
            len: body_len,
            max: FRAME_BODY_BYTES_MAX,
        });
    }
    let total = frame::frame_len(body_len);
    if out.len() < total {
        return Err(FrameEncodeError::BufferTooSmall {
            needed: total,
            available: out.len(),
        });
    }
    let body = &mut out[FRAME_BODY_AT..total];
    body[0] = BODY_TAG_FOOTER;
    let mut at = 1;
    for value in [
        footer.first_offset,
        footer.next_offset,
        footer.frame_count,
        footer.data_end,
    ] {
        at += put_varint(value, &mut body[at..]);
    }
    at += put_varint(footer.index.len() as u64, &mut body[at..]);
    body[at..at + footer.index.len()].copy_from_slice(footer.index);
    frame::seal_in_place(out, body_len)
}

/// A decoded frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// A batch of records.
    Batch(BatchView<'a>),
    /// A segment footer.
    Footer(Footer<'a>),
    /// The end of a write round (version-2 segments).
    Commit(Commit),
}

/// A validated batch body, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchView<'a> {
    /// Offset of the first record.
    pub first_offset: Offset,
    count: u64,
    records: &'a [u8],
    records_at: usize,
}

impl<'a> BatchView<'a> {
    /// Number of records (at least 1).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// One past the last record's offset.
    pub fn next_offset(&self) -> Offset {
        self.first_offset + self.count
    }

    /// Byte position within the body where the record list (`len | bytes`, repeated)
    /// starts, so a reader can walk the records in place.
    pub fn records_at(&self) -> usize {
        self.records_at
    }

    /// The records with their offsets, in order.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.records,
            offset: self.first_offset,
        }
    }
}

/// Iterator over a batch's records as `(offset, bytes)`.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    offset: Offset,
}

impl<'a> Iterator for Records<'a> {
    type Item = (Offset, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The body was validated by `decode_body`, so these reads cannot fail; if they
        // did, ending the iteration is the safe answer.
        let (len, used) = varint::decode(self.rest).ok()?;
        let end = used.checked_add(usize::try_from(len).ok()?)?;
        let record = self.rest.get(used..end)?;
        self.rest = &self.rest[end..];
        let offset = self.offset;
        self.offset += 1;
        Some((offset, record))
    }
}

/// Why a frame body is not a valid batch or footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is empty.
    Empty,
    /// The first byte names no known body kind.
    UnknownTag(u8),
    /// A varint field is cut short or malformed.
    BadVarint {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        error: VarintError,
    },
    /// A batch with no records.
    EmptyBatch,
    /// Offsets would pass `u64::MAX`.
    OffsetOverflow,
    /// A length runs past the end of the body.
    LengthOverrun {
        /// Which field.
        field: &'static str,
    },
    /// Bytes remain after the last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A commit body whose magic is wrong, that is cut short, or whose padding is not zeros.
    BadCommit,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Empty => write!(f, "empty frame body"),
            BodyError::UnknownTag(tag) => write!(f, "unknown frame body kind {tag}"),
            BodyError::BadVarint { field, error } => write!(f, "bad varint in {field}: {error:?}"),
            BodyError::EmptyBatch => write!(f, "batch with no records"),
            BodyError::OffsetOverflow => write!(f, "record offsets overflow u64"),
            BodyError::LengthOverrun { field } => {
                write!(f, "{field} runs past the end of the body")
            }
            BodyError::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the body")
            }
            BodyError::BadCommit => write!(f, "bad round commit body"),
        }
    }
}

impl core::error::Error for BodyError {}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint(&mut self, field: &'static str) -> Result<u64, BodyError> {
        let (value, used) =
            varint::decode(self.rest).map_err(|error| BodyError::BadVarint { field, error })?;
        self.rest = &self.rest[used..];
        Ok(value)
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], BodyError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len).map_err(|_| BodyError::LengthOverrun { field })?;
        if len > self.rest.len() {
            return Err(BodyError::LengthOverrun { field });
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }
}

/// Decodes and fully validates a frame body. Never panics, whatever the bytes.
pub fn decode_body(body: &[u8]) -> Result<Body<'_>, BodyError> {
    let (&tag, rest) = body.split_first().ok_or(BodyError::Empty)?;
    let mut cursor = Cursor { rest };
    let decoded = match tag {
        BODY_TAG_BATCH => {
            let first_offset = cursor.varint("first_offset")?;
            let count = cursor.varint("record count")?;
            if count == 0 {
                return Err(BodyError::EmptyBatch);
            }
            first_offset
                .checked_add(count)
                .ok_or(BodyError::OffsetOverflow)?;
            // Each record takes at least one byte, so a count above the body's length is a
            // lie; checking first keeps the loop below short on hostile input.
            if count > cursor.rest.len() as u64 {
                return Err(BodyError::LengthOverrun {
                    field: "record count",
                });
            }
            let records = cursor.rest;
            let records_at = body.len() - records.len();
            for _ in 0..count {
                cursor.bytes("record")?;
            }
            let records = &records[..records.len() - cursor.rest.len()];
            Body::Batch(BatchView {
                first_offset,
                count,
                records,
                records_at,
            })
        }
        BODY_TAG_FOOTER => {
            let first_offset = cursor.varint("first_offset")?;
            let next_offset = cursor.varint("next_offset")?;
            let frame_count = cursor.varint("frame_count")?;
            let data_end = cursor.varint("data_end")?;
            let index = cursor.bytes("index")?;
            Body::Footer(Footer {
                first_offset,
                next_offset,
                frame_count,
                data_end,
                index,
            })
        }
        BODY_TAG_COMMIT => return decode_commit(body).map(Body::Commit),
        other => return Err(BodyError::UnknownTag(other)),
    };
    if !cursor.rest.is_empty() {
        return Err(BodyError::TrailingBytes {
            count: cursor.rest.len(),
        });
    }
    Ok(decoded)
}

fn decode_commit(body: &[u8]) -> Result<Commit, BodyError> {
    let fixed = body.get(..COMMIT_PADDING_AT).ok_or(BodyError::BadCommit)?;
    let padding = &body[COMMIT_PADDING_AT..];
    if fixed[COMMIT_MAGIC_AT..COMMIT_SALT_AT] != COMMIT_MAGIC || padding.iter().any(|&b| b != 0) {
        return Err(BodyError::BadCommit);
    }
    let word = |at: usize, n: usize| {
        let mut bytes = [0u8; 8];
        bytes[..n].copy_from_slice(&fixed[at..at + n]);
        u64::from_le_bytes(bytes)
    };
    let commit = Commit {
        salt: word(COMMIT_SALT_AT, 4) as u32,
        position: word(COMMIT_POSITION_AT, 8),
        round_start: word(COMMIT_ROUND_START_AT, 8),
    };
    // Exactly the padding that ends the round on a boundary, so there is one encoding.
    if FRAME_BODY_AT + body.len() != commit_frame_len(commit.position) {
        return Err(BodyError::BadCommit);
    }
    Ok(commit)
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn frame_len_bound_is_the_length_of_the_largest_such_frame() {
        for (count, max) in [
            (1, 0),
            (1, 127),
            (3, 128),
            (100, 256),
            (10_000, 256),
            (200, 70_000),
        ] {
            let record = vec![7u8; max];
            let records: Vec<&[u8]> = (0..count).map(|_| record.as_slice()).collect();
            assert_eq!(
                batch_frame_len_bound(count, max),
                batch_frame_len(u64::MAX, &records),
                "{count} records of {max} bytes"
            );
            let short = vec![7u8; max / 2];
            let shorter: Vec<&[u8]> = (0..count).map(|_| short.as_slice()).collect();
            assert!(batch_frame_len_bound(count, max) >= batch_frame_len(0, &shorter));
        }
    }

    /// The serde mirror of the hand-written layout: postcard must agree with it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum FrameBody<'a> {
        Batch {
            first_offset: u64,
            #[serde(borrow)]
            records: Vec<&'a [u8]>,
        },
        Footer {
            first_offset: u64,
            next_offset: u64,
            frame_count: u64,
            data_end: u64,
            index: &'a [u8],
        },
        Commit {
            magic: [u8; 3],
            salt: [u8; 4],
            position: [u8; 8],
            round_start: [u8; 8],
        },
    }

    fn encode_batch(first_offset: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0u8; batch_frame_len(first_offset, records)];
        let n = encode_batch_frame(&mut out, first_offset, records).unwrap();
        assert_eq!(n, out.len());
        out
    }

    proptest! {
        #[test]
        fn batch_bytes_equal_postcard(
            first_offset in any::<u64>().prop_map(|o| o / 2),
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        ) {
            let frame = encode_batch(first_offset, &records);
            let body = &frame[FRAME_BODY_AT..];
            let mirror = FrameBody::Batch {
                first_offset,
                records: records.iter().map(|r| r.as_slice()).collect(),
            };
            prop_assert_eq!(body, &postcard::to_allocvec(&mirror).unwrap()[..]);
            prop_assert_eq!(postcard::from_bytes::<FrameBody<'_>>(body).unwrap(), mirror);
            let Body::Batch(view) = decode_body(body).unwrap() else { panic!("not a batch") };
            let decoded: Vec<(u64, &[u8])> = view.records().collect();
            let expected: Vec<(u64, &[u8])> =
                records.iter().enumerate().map(|(i, r)| (first_offset + i as u64, r.as_slice())).collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn footer_bytes_equal_postcard(
            first_offset in any::<u64>(), next_offset in any::<u64>(), frame_count in any::<u64>(),
            data_end in any::<u64>(), index in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let footer = Footer { first_offset, next_offset, frame_count, data_end, index: &index };
            let mut out = vec![0u8; footer_frame_len(&footer)];
            encode_footer_frame(&mut out, &footer).unwrap();
            let body = &out[FRAME_BODY_AT..];
            let mirror = FrameBody::Footer { first_offset, next_offset, frame_count, data_end, index: &index };
            prop_assert_eq!(body, &postcard::to_allocvec(&mirror).unwrap()[..]);
            prop_assert_eq!(decode_body(body).unwrap(), Body::Footer(footer));
        }

        #[test]
        fn commit_bytes_equal_postcard_then_zeros(
            salt in any::<u32>(), position in any::<u64>().prop_map(|p| p / 2), round_start in any::<u64>(),
        ) {
            let commit = Commit { salt, position, round_start };
            let len = commit_frame_len(position);
            prop_assert!((COMMIT_FRAME_BYTES_MIN..=COMMIT_FRAME_BYTES_MAX).contains(&len));
            prop_assert_eq!((position + len as u64) % ROUND_ALIGN_BYTES as u64, 0);
            let mut out = vec![0xffu8; len + 3];
            prop_assert_eq!(encode_commit_frame(&mut out, &commit).unwrap(), len);
            let frame = crate::frame::decode(&out[..len]).unwrap();
            let body = frame.body;
            let mirror = FrameBody::Commit {
                magic: COMMIT_MAGIC,
                salt: salt.to_le_bytes(),
                position: position.to_le_bytes(),
                round_start: round_start.to_le_bytes(),
            };
            prop_assert_eq!(&body[..COMMIT_PADDING_AT], &postcard::to_allocvec(&mirror).unwrap()[..]);
            prop_assert!(body[COMMIT_PADDING_AT..].iter().all(|&b| b == 0));
            prop_assert_eq!(decode_body(body).unwrap(), Body::Commit(commit));
        }

        #[test]
        fn decode_body_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_body(&bytes);
        }

        #[test]
        fn decode_body_never_panics_on_batch_like_input(
            tail in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut bytes = vec![BODY_TAG_BATCH];
            bytes.extend_from_slice(&tail);
            if let Ok(Body::Batch(view)) = decode_body(&bytes) {
                prop_assert_eq!(view.records().count() as u64, view.count());
            }
        }
    }

    #[test]
    fn rejects_empty_batch_and_trailing_bytes() {
        assert_eq!(decode_body(&[0, 1, 0]), Err(BodyError::EmptyBatch));
        assert_eq!(
            decode_body(&[0, 1, 1, 1, 7, 9]),
            Err(BodyError::TrailingBytes { count: 1 })
        );
        assert_eq!(decode_body(&[9]), Err(BodyError::UnknownTag(9)));
        assert_eq!(
            decode_body(&[2, b'C', b'M', b'T', 0]),
            Err(BodyError::BadCommit)
        );
        // A commit at byte 480 pads to 512: a body of 24 bytes, no padding.
        let mut commit = [0u8; COMMIT_PADDING_AT + 2];
        commit[..4].copy_from_slice(&COMMIT_BODY_PREFIX);
        commit[COMMIT_POSITION_AT..COMMIT_POSITION_AT + 8].copy_from_slice(&478u64.to_le_bytes());
        assert!(matches!(decode_body(&commit), Ok(Body::Commit(_))));
        assert_eq!(
            decode_body(&commit[..COMMIT_PADDING_AT + 1]),
            Err(BodyError::BadCommit)
        );
        commit[COMMIT_PADDING_AT + 1] = 1;
        assert_eq!(decode_body(&commit), Err(BodyError::BadCommit));
        commit[COMMIT_PADDING_AT + 1] = 0;
        commit[2] = b'X';
        assert_eq!(decode_body(&commit), Err(BodyError::BadCommit));
        assert_eq!(decode_body(&[]), Err(BodyError::Empty));
        let empty: [&[u8]; 0] = [];
        assert!(encode_batch_frame(&mut [0u8; 64], 1, &empty).is_err());
    }
}
