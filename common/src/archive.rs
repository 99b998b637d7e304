//! The archive file: a sealed log segment, compressed, with checksums of the original bytes.
//!
//! ```text
//!  0        8        10       12       16                32        40        48        56        64                96        104    108    112
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+---------+-----------------+---------+------+------+
//!  | magic  |version |hdr len | codec  | log id          | first   | next    | original| archived| sha256 of the    | created | orig | crc  |
//!  | 8 B    | u16 LE | u16 LE | u32 LE | 16 B            | offset  | offset  | bytes   | bytes   | original bytes   | unix ms | crc32| u32  |
//!  |        |        |        |        |                 | u64 LE  | u64 LE  | u64 LE  | u64 LE  | 32 B             | u64 LE  | u32  | LE   |
//!  +--------+--------+--------+--------+-----------------+---------+---------+---------+---------+-----------------+---------+------+------+
//!  magic = "GLOGARCH"; codec 1 = zstd; crc = CRC-32 of bytes 0..108
//! ```
//!
//! After the header come `archived bytes` of compressed data which decompress to the
//! `original bytes` of the segment file from its start to the end of its footer (the zero
//! padding of the preallocated file is not kept). `orig crc32` and `sha256` are of those
//! original bytes: CRC-32 for a fast local check, SHA-256 as the segment's identity in
//! central storage.

use core::fmt;

/// The eight bytes every archive file starts with.
pub const ARCHIVE_MAGIC: [u8; 8] = *b"GLOGARCH";
/// Byte offset of the magic.
pub const A_MAGIC_AT: usize = 0;
/// Byte offset of the version.
pub const A_VERSION_AT: usize = A_MAGIC_AT + 8;
/// Byte offset of the header length.
pub const A_HEADER_LEN_AT: usize = A_VERSION_AT + 2;
/// Byte offset of the codec.
pub const A_CODEC_AT: usize = A_HEADER_LEN_AT + 2;
/// Byte offset of the log id.
pub const A_LOG_ID_AT: usize = A_CODEC_AT + 4;
/// Byte offset of the first offset.
pub const A_FIRST_OFFSET_AT: usize = A_LOG_ID_AT + 16;
/// Byte offset of the next offset.
pub const A_NEXT_OFFSET_AT: usize = A_FIRST_OFFSET_AT + 8;
/// Byte offset of the original length.
pub const A_ORIGINAL_BYTES_AT: usize = A_NEXT_OFFSET_AT + 8;
/// Byte offset of the compressed length.
pub const A_ARCHIVED_BYTES_AT: usize = A_ORIGINAL_BYTES_AT + 8;
/// Byte offset of the SHA-256.
pub const A_SHA256_AT: usize = A_ARCHIVED_BYTES_AT + 8;
/// Byte offset of the creation time.
pub const A_CREATED_AT: usize = A_SHA256_AT + 32;
/// Byte offset of the CRC-32 of the original bytes.
pub const A_ORIGINAL_CRC_AT: usize = A_CREATED_AT + 8;
/// Byte offset of the header CRC.
pub const A_CRC_AT: usize = A_ORIGINAL_CRC_AT + 4;
/// Size of the header.
pub const ARCHIVE_HEADER_BYTES: usize = A_CRC_AT + 4;

const _: () = assert!(ARCHIVE_HEADER_BYTES == 112);

/// Compression codecs.
pub const CODEC_ZSTD: u32 = 1;

/// An archive header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// The log the segment belongs to.
    pub log_id: [u8; 16],
    /// Offset of the segment's first record.
    pub first_offset: u64,
    /// One past its last record.
    pub next_offset: u64,
    /// Length of the original (uncompressed) bytes.
    pub original_bytes: u64,
    /// Length of the compressed bytes after the header.
    pub archived_bytes: u64,
    /// SHA-256 of the original bytes.
    pub sha256: [u8; 32],
    /// When the archive was written.
    pub created_unix_ms: u64,
    /// CRC-32 of the original bytes.
    pub original_crc32: u32,
}

/// Why bytes are not a valid archive header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveHeaderError {
    /// Fewer bytes than a header.
    Truncated,
    /// Not an archive file.
    BadMagic,
    /// The header CRC does not match.
    BadCrc,
    /// A version, header length or codec this build does not know.
    Unsupported,
}

impl fmt::Display for ArchiveHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveHeaderError::Truncated => "archive header truncated",
            ArchiveHeaderError::BadMagic => "not a gridlog archive file (bad magic)",
            ArchiveHeaderError::BadCrc => "bad archive header CRC",
            ArchiveHeaderError::Unsupported => {
                "unsupported archive version, header length or codec"
            }
        })
    }
}

impl core::error::Error for ArchiveHeaderError {}

impl ArchiveHeader {
    /// Encodes the header (version 1, zstd).
    pub fn encode(&self) -> [u8; ARCHIVE_HEADER_BYTES] {
        let mut out = [0u8; ARCHIVE_HEADER_BYTES];
        out[A_MAGIC_AT..A_VERSION_AT].copy_from_slice(&ARCHIVE_MAGIC);
        out[A_VERSION_AT..A_HEADER_LEN_AT].copy_from_slice(&1u16.to_le_bytes());
        out[A_HEADER_LEN_AT..A_CODEC_AT]
            .copy_from_slice(&(ARCHIVE_HEADER_BYTES as u16).to_le_bytes());
        out[A_CODEC_AT..A_LOG_ID_AT].copy_from_slice(&CODEC_ZSTD.to_le_bytes());
        out[A_LOG_ID_AT..A_FIRST_OFFSET_AT].copy_from_slice(&self.log_id);
        out[A_FIRST_OFFSET_AT..A_NEXT_OFFSET_AT].copy_from_slice(&self.first_offset.to_le_bytes());
        out[A_NEXT_OFFSET_AT..A_ORIGINAL_BYTES_AT].copy_from_slice(&self.next_offset.to_le_bytes());
        out[A_ORIGINAL_BYTES_AT..A_ARCHIVED_BYTES_AT]
            .copy_from_slice(&self.original_bytes.to_le_bytes());
        out[A_ARCHIVED_BYTES_AT..A_SHA256_AT].copy_from_slice(&self.archived_bytes.to_le_bytes());
        out[A_SHA256_AT..A_CREATED_AT].copy_from_slice(&self.sha256);
        out[A_CREATED_AT..A_ORIGINAL_CRC_AT].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        out[A_ORIGINAL_CRC_AT..A_CRC_AT].copy_from_slice(&self.original_crc32.to_le_bytes());
        let crc = crc32fast::hash(&out[..A_CRC_AT]);
        out[A_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header. Never panics, whatever the bytes.
    pub fn decode(input: &[u8]) -> Result<ArchiveHeader, ArchiveHeaderError> {
        let b = input
            .get(..ARCHIVE_HEADER_BYTES)
            .ok_or(ArchiveHeaderError::Truncated)?;
        if b[..8] != ARCHIVE_MAGIC {
            return Err(ArchiveHeaderError::BadMagic);
        }
        if crc32fast::hash(&b[..A_CRC_AT]) != u32_at(b, A_CRC_AT) {
            return Err(ArchiveHeaderError::BadCrc);
        }
        if u16::from_le_bytes([b[A_VERSION_AT], b[A_VERSION_AT + 1]]) != 1
            || usize::from(u16::from_le_bytes([
                b[A_HEADER_LEN_AT],
                b[A_HEADER_LEN_AT + 1],
            ])) != ARCHIVE_HEADER_BYTES
            || u32_at(b, A_CODEC_AT) != CODEC_ZSTD
        {
            return Err(ArchiveHeaderError::Unsupported);
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[A_LOG_ID_AT..A_FIRST_OFFSET_AT]);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&b[A_SHA256_AT..A_CREATED_AT]);
        Ok(ArchiveHeader {
            log_id,
            first_offset: u64_at(b, A_FIRST_OFFSET_AT),
            next_offset: u64_at(b, A_NEXT_OFFSET_AT),
            original_bytes: u64_at(b, A_ORIGINAL_BYTES_AT),
            archived_bytes: u64_at(b, A_ARCHIVED_BYTES_AT),
            sha256,
            created_unix_ms: u64_at(b, A_CREATED_AT),
            original_crc32: u32_at(b, A_ORIGINAL_CRC_AT),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_bit_flips() {
        let h = ArchiveHeader {
            log_id: [3; 16],
            first_offset: 1,
            next_offset: 1000,
            original_bytes: 65536,
            archived_bytes: 4096,
            sha256: [9; 32],
            created_unix_ms: 1_700_000_000_000,
            original_crc32: 0xdead_beef,
        };
        let bytes = h.encode();
        assert_eq!(ArchiveHeader::decode(&bytes), Ok(h));
        for bit in 0..ARCHIVE_HEADER_BYTES * 8 {
            let mut d = bytes;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(ArchiveHeader::decode(&d).is_err(), "bit {bit}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = ArchiveHeader::decode(&bytes);
        }
    }
}
