//! The segment header: the first 64 bytes of every log segment file.
//!
//! ```text
//!  0        8        10       12       16                32        40        48        56      60     64
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+------+------+
//!  | magic  |version |hdr len | flags  | log id          | first   | segment | created | round | crc  |
//!  | 8 B    | u16 LE | u16 LE | u32 LE | 16 B            | offset  | bytes   | unix ms | bytes | u32  |
//!  |        |        |        |        |                 | u64 LE  | u64 LE  | u64 LE  | u32LE | LE   |
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+------+------+
//!  magic   = "GLOGSEG\0"
//!  crc     = CRC-32 (IEEE) of bytes 0..60
//! ```
//!
//! After the header come frames (see [`crate::frame`]), then zeros up to `segment bytes`
//! (the file is preallocated). A sealed segment's last frame is a footer
//! (see [`crate::batch::Footer`]). `log id` is random per log, so a segment from another
//! gateway's log is recognised as foreign. `round bytes` is the most bytes the writer of
//! this segment puts in one write-and-sync round: recovery's bound on how far past the last
//! good frame a crash can have left torn bytes (anything further is damage, not a tear).
//!
//! Versions: in a version-1 segment frames follow each other with nothing that says which
//! write round wrote them. In a version-2 segment every write round ends with a **commit**
//! frame (see [`crate::batch::Commit`]) padded to a 512-byte boundary, so recovery knows where
//! each round began and ended: only the round after the last commit can be torn by a crash,
//! and damage with a later round's commit after it was acknowledged data, never a tear.

use core::fmt;

/// The eight bytes every segment file starts with.
pub const SEGMENT_MAGIC: [u8; 8] = *b"GLOGSEG\0";

/// Byte offset of the magic.
pub const MAGIC_AT: usize = 0;
/// Byte offset of the format version.
pub const VERSION_AT: usize = MAGIC_AT + 8;
/// Byte offset of the header length.
pub const HEADER_LEN_AT: usize = VERSION_AT + 2;
/// Byte offset of the flags (bit 0: [`FLAG_RECYCLED`]; the other bits are reserved, zero).
pub const FLAGS_AT: usize = HEADER_LEN_AT + 2;
/// Byte offset of the log id.
pub const LOG_ID_AT: usize = FLAGS_AT + 4;
/// Byte offset of the first record offset.
pub const FIRST_OFFSET_AT: usize = LOG_ID_AT + 16;
/// Byte offset of the preallocated segment size.
pub const SEGMENT_BYTES_AT: usize = FIRST_OFFSET_AT + 8;
/// Byte offset of the creation time.
pub const CREATED_AT: usize = SEGMENT_BYTES_AT + 8;
/// Byte offset of the round size bound.
pub const ROUND_BYTES_AT: usize = CREATED_AT + 8;
/// Byte offset of the CRC.
pub const CRC_AT: usize = ROUND_BYTES_AT + 4;
/// Size of the header; frames start here.
pub const SEGMENT_HEADER_BYTES: usize = CRC_AT + 4;

const _: () = assert!(SEGMENT_HEADER_BYTES == 64);

/// Flag bit 0: the file is recycled (a segment of the same log that was archived and
/// removed, given a new header): bytes of its earlier use may follow the log's end. Only
/// version 2 and later, whose round commits carry the header's CRC as a salt, may set it:
/// nothing of an earlier use passes as a round of this one.
pub const FLAG_RECYCLED: u32 = 1;

/// Segment format versions this build understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FormatVersion {
    /// Version 1: header as above, frames with postcard batch/footer bodies.
    V1 = 1,
    /// Version 2: as version 1, and every write round ends with a commit frame padded to a
    /// 512-byte boundary.
    V2 = 2,
}

impl FormatVersion {
    /// The version new segments are written with.
    pub const CURRENT: FormatVersion = FormatVersion::V2;

    /// Whether this version's rounds end with commit frames.
    pub fn marks_rounds(self) -> bool {
        self >= FormatVersion::V2
    }
}

impl TryFrom<u16> for FormatVersion {
    type Error = SegmentHeaderError;

    fn try_from(value: u16) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(FormatVersion::V1),
            2 => Ok(FormatVersion::V2),
            other => Err(SegmentHeaderError::UnknownVersion(other)),
        }
    }
}

/// A segment header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format of the frames that follow.
    pub version: FormatVersion,
    /// Random id of the log this segment belongs to.
    pub log_id: [u8; 16],
    /// Offset of the first record in the segment.
    pub first_offset: u64,
    /// Preallocated size of the file in bytes.
    pub segment_bytes: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Most bytes one write round of this segment's writer spans (torn-tail bound).
    pub round_bytes: u32,
    /// The file is recycled ([`FLAG_RECYCLED`]): bytes of an earlier use may follow the
    /// log's end.
    pub recycled: bool,
}

/// Why bytes are not a valid segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentHeaderError {
    /// Fewer than [`SEGMENT_HEADER_BYTES`] bytes.
    Truncated {
        /// Bytes there are.
        available: usize,
    },
    /// The file does not start with [`SEGMENT_MAGIC`].
    BadMagic,
    /// The header's CRC does not match.
    BadCrc {
        /// CRC stored.
        stored: u32,
        /// CRC computed.
        computed: u32,
    },
    /// A version this build does not know.
    UnknownVersion(u16),
    /// A header length other than [`SEGMENT_HEADER_BYTES`], an unknown flag (or
    /// [`FLAG_RECYCLED`] on a version-1 segment), or a zero round size.
    BadLayout,
}

impl fmt::Display for SegmentHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentHeaderError::Truncated { available } => write!(
                f,
                "segment header truncated: {available} of {SEGMENT_HEADER_BYTES} bytes"
            ),
            SegmentHeaderError::BadMagic => write!(f, "not a gridlog segment (bad magic)"),
            SegmentHeaderError::BadCrc { stored, computed } => write!(
                f,
                "bad segment header CRC: stored {stored:#010x}, computed {computed:#010x}"
            ),
            SegmentHeaderError::UnknownVersion(v) => {
                write!(
                    f,
                    "unknown segment format version {v} (this build reads 1 and 2)"
                )
            }
            SegmentHeaderError::BadLayout => write!(f, "bad segment header layout"),
        }
    }
}

impl core::error::Error for SegmentHeaderError {}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[MAGIC_AT..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        out[VERSION_AT..HEADER_LEN_AT].copy_from_slice(&(self.version as u16).to_le_bytes());
        out[HEADER_LEN_AT..FLAGS_AT].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        let flags = if self.recycled { FLAG_RECYCLED } else { 0 };
        out[FLAGS_AT..LOG_ID_AT].copy_from_slice(&flags.to_le_bytes());
        out[LOG_ID_AT..FIRST_OFFSET_AT].copy_from_slice(&self.log_id);
        out[FIRST_OFFSET_AT..SEGMENT_BYTES_AT].copy_from_slice(&self.first_offset.to_le_bytes());
        out[SEGMENT_BYTES_AT..CREATED_AT].copy_from_slice(&self.segment_bytes.to_le_bytes());
        out[CREATED_AT..ROUND_BYTES_AT].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        out[ROUND_BYTES_AT..CRC_AT].copy_from_slice(&self.round_bytes.to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..SEGMENT_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header's CRC: the salt of this segment's round commits. It changes with the log
    /// id, the first offset and the creation time, so a commit of another segment (or of an
    /// earlier use of the same file) does not pass as one of this one.
    pub fn salt(&self) -> u32 {
        let bytes = self.encode();
        u32_at(&bytes, CRC_AT)
    }

    /// Decodes and verifies a header. Never panics, whatever the bytes.
    pub fn decode(input: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        let Some(bytes) = input.get(..SEGMENT_HEADER_BYTES) else {
            return Err(SegmentHeaderError::Truncated {
                available: input.len(),
            });
        };
        if bytes[MAGIC_AT..VERSION_AT] != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        let stored = u32_at(bytes, CRC_AT);
        let computed = crc32fast::hash(&bytes[..CRC_AT]);
        if stored != computed {
            return Err(SegmentHeaderError::BadCrc { stored, computed });
        }
        let version = FormatVersion::try_from(u16_at(bytes, VERSION_AT))?;
        let flags = u32_at(bytes, FLAGS_AT);
        let recycled = flags & FLAG_RECYCLED != 0;
        if usize::from(u16_at(bytes, HEADER_LEN_AT)) != SEGMENT_HEADER_BYTES
            || flags & !FLAG_RECYCLED != 0
            || (recycled && !version.marks_rounds())
            || u32_at(bytes, ROUND_BYTES_AT) == 0
        {
            return Err(SegmentHeaderError::BadLayout);
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&bytes[LOG_ID_AT..FIRST_OFFSET_AT]);
        Ok(SegmentHeader {
            version,
            log_id,
            first_offset: u64_at(bytes, FIRST_OFFSET_AT),
            segment_bytes: u64_at(bytes, SEGMENT_BYTES_AT),
            created_unix_ms: u64_at(bytes, CREATED_AT),
            round_bytes: u32_at(bytes, ROUND_BYTES_AT),
            recycled,
        })
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offsets_are_pinned() {
        assert_eq!(
            [
                MAGIC_AT,
                VERSION_AT,
                HEADER_LEN_AT,
                FLAGS_AT,
                LOG_ID_AT,
                FIRST_OFFSET_AT
            ],
            [0, 8, 10, 12, 16, 32]
        );
        assert_eq!(
            [
                SEGMENT_BYTES_AT,
                CREATED_AT,
                ROUND_BYTES_AT,
                CRC_AT,
                SEGMENT_HEADER_BYTES
            ],
            [40, 48, 56, 60, 64]
        );
    }

    fn sample() -> SegmentHeader {
        SegmentHeader {
            version: FormatVersion::V1,
            log_id: [7; 16],
            first_offset: 1234,
            segment_bytes: 64 << 20,
            created_unix_ms: 1_700_000_000_000,
            round_bytes: 1 << 20,
            recycled: false,
        }
    }

    #[test]
    fn the_recycled_flag_round_trips_and_other_flags_are_refused() {
        let recycled = SegmentHeader {
            version: FormatVersion::V2,
            recycled: true,
            ..sample()
        };
        let bytes = recycled.encode();
        assert_eq!(u32_at(&bytes, FLAGS_AT), FLAG_RECYCLED);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(recycled));
        assert_ne!(
            recycled.salt(),
            SegmentHeader {
                recycled: false,
                ..recycled
            }
            .salt()
        );
        // A version-1 segment cannot be recycled (its rounds carry no salt), and an unknown
        // flag is refused, though the CRC matches.
        let with = |version: u16, flags: u32| {
            let mut bytes = recycled.encode();
            bytes[VERSION_AT..HEADER_LEN_AT].copy_from_slice(&version.to_le_bytes());
            bytes[FLAGS_AT..LOG_ID_AT].copy_from_slice(&flags.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..CRC_AT]);
            bytes[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            SegmentHeader::decode(&bytes)
        };
        assert_eq!(with(1, FLAG_RECYCLED), Err(SegmentHeaderError::BadLayout));
        assert_eq!(with(2, 2), Err(SegmentHeaderError::BadLayout));
        assert_eq!(with(2, FLAG_RECYCLED).map(|h| h.recycled), Ok(true));
        assert_eq!(with(2, 0).map(|h| h.recycled), Ok(false));
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let bytes = sample().encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(sample()));
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
