//! The frame: the checksummed envelope around every body gridlog stores.
//!
//! ```text
//!  byte 0        4          8                      8 + body_len
//!       +--------+----------+----------------------+
//!       | len    | crc      | body (postcard)      |
//!       | u32 LE | u32 LE   | len bytes            |
//!       +--------+----------+----------------------+
//!  len: body length in bytes, 1 ..= FRAME_BODY_BYTES_MAX
//!  crc: CRC-32 (IEEE, crc32fast) over the 4 length bytes, then the body
//! ```
//!
//! A header of eight zero bytes is not a frame but the end of written data: log segments
//! are preallocated with zeros, so that is what a reader finds after the last frame.
//! The CRC covers the length, so a flipped bit in the length is caught as a bad CRC
//! (or a bad length) rather than sending the reader off to a random place.

use core::fmt;

/// Byte offset of the body length within a frame.
pub const FRAME_LEN_AT: usize = 0;
/// Byte offset of the CRC within a frame.
pub const FRAME_CRC_AT: usize = FRAME_LEN_AT + 4;
/// Byte offset of the body within a frame; also the header size.
pub const FRAME_BODY_AT: usize = FRAME_CRC_AT + 4;
/// Size of a frame header in bytes.
pub const FRAME_HEADER_BYTES: usize = FRAME_BODY_AT;

/// The largest body a frame may carry: 16 MiB. Bounds the memory a reader or writer needs
/// for one frame and the damage a corrupt length can do; one command's events and one
/// client's batch fit with room to spare.
pub const FRAME_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(FRAME_BODY_BYTES_MAX <= u32::MAX as usize);

/// Total frame size for a body of `body_len` bytes.
pub const fn frame_len(body_len: usize) -> usize {
    FRAME_HEADER_BYTES + body_len
}

/// CRC-32 of a frame: the length bytes, then the body.
pub fn frame_crc(body_len: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&body_len.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// A decoded, checksum-verified frame borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The body bytes (already verified against the CRC).
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the whole frame occupies, header included.
    pub fn encoded_len(&self) -> usize {
        frame_len(self.body.len())
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Eight zero bytes: the end of written data in a preallocated file, not a frame.
    End,
    /// The input ends before the header or the body does.
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The length field is 0 (with a non-zero CRC) or above [`FRAME_BODY_BYTES_MAX`].
    BadLength {
        /// The length found.
        len: u32,
        /// The largest allowed.
        max: usize,
    },
    /// The CRC does not match the length and body.
    BadCrc {
        /// The CRC stored in the frame.
        stored: u32,
        /// The CRC of the bytes found.
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::End => write!(f, "end of written data (zero header)"),
            FrameError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated frame: needs {needed} bytes, {available} available"
                )
            }
            FrameError::BadLength { len, max } => {
                write!(f, "bad frame length {len} (allowed 1..={max})")
            }
            FrameError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "bad frame CRC: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameEncodeError {
    /// The body is empty or larger than [`FRAME_BODY_BYTES_MAX`].
    BodyTooLarge {
        /// The body's length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The output buffer is smaller than the frame.
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for FrameEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameEncodeError::BodyTooLarge { len, max } => {
                write!(f, "frame body of {len} bytes is outside 1..={max}")
            }
            FrameEncodeError::BufferTooSmall { needed, available } => {
                write!(f, "frame needs {needed} bytes, buffer has {available}")
            }
        }
    }
}

impl core::error::Error for FrameEncodeError {}

/// Writes the header for the body that already sits at `out[FRAME_BODY_AT..][..body_len]`.
///
/// This is the zero-copy path: the caller encodes the body in place, then seals it.
pub fn seal_in_place(out: &mut [u8], body_len: usize) -> Result<usize, FrameEncodeError> {
    if body_len == 0 || body_len > FRAME_BODY_BYTES_MAX {
        return Err(FrameEncodeError::BodyTooLarge {
            len: body_len,
            max: FRAME_BODY_BYTES_MAX,
        });
    }
    let total = frame_len(body_len);
    if out.len() < total {
        return Err(FrameEncodeError::BufferTooSmall {
            needed: total,
            available: out.len(),
        });
    }
    let len = body_len as u32;
    let crc = frame_crc(len, &out[FRAME_BODY_AT..total]);
    out[FRAME_LEN_AT..FRAME_CRC_AT].copy_from_slice(&len.to_le_bytes());
    out[FRAME_CRC_AT..FRAME_BODY_AT].copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}

/// Encodes `body` as a frame at the start of `out`; returns the frame's length.
pub fn encode(body: &[u8], out: &mut [u8]) -> Result<usize, FrameEncodeError> {
    let total = frame_len(body.len());
    if out.len() < total {
        return Err(FrameEncodeError::BufferTooSmall {
            needed: total,
            available: out.len(),
        });
    }
    out[FRAME_BODY_AT..total].copy_from_slice(body);
    seal_in_place(out, body.len())
}

/// Decodes the frame at the start of `input`, verifying length and CRC.
///
/// Never panics, whatever the bytes. Returns [`FrameError::End`] for a zero header.
pub fn decode(input: &[u8]) -> Result<Frame<'_>, FrameError> {
    let Some(header) = input.get(..FRAME_HEADER_BYTES) else {
        if !input.is_empty() && input.iter().all(|&b| b == 0) {
            return Err(FrameError::End);
        }
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_BYTES,
            available: input.len(),
        });
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Err(if stored == 0 {
            FrameError::End
        } else {
            FrameError::BadLength {
                len,
                max: FRAME_BODY_BYTES_MAX,
            }
        });
    }
    if len as usize > FRAME_BODY_BYTES_MAX {
        return Err(FrameError::BadLength {
            len,
            max: FRAME_BODY_BYTES_MAX,
        });
    }
    let total = frame_len(len as usize);
    let Some(body) = input.get(FRAME_BODY_AT..total) else {
        return Err(FrameError::Truncated {
            needed: total,
            available: input.len(),
        });
    };
    let computed = frame_crc(len, body);
    if computed != stored {
        return Err(FrameError::BadCrc { stored, computed });
    }
    Ok(Frame { body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_offsets_are_pinned() {
        assert_eq!(FRAME_LEN_AT, 0);
        assert_eq!(FRAME_CRC_AT, 4);
        assert_eq!(FRAME_BODY_AT, 8);
        assert_eq!(FRAME_HEADER_BYTES, 8);
    }

    #[test]
    fn known_bytes() {
        let mut out = [0u8; 16];
        let n = encode(b"abc", &mut out).unwrap();
        assert_eq!(n, 11);
        assert_eq!(&out[..4], &3u32.to_le_bytes());
        assert_eq!(&out[8..11], b"abc");
        assert_eq!(decode(&out[..n]).unwrap().body, b"abc");
    }

    #[test]
    fn zero_header_is_end_and_empty_body_is_refused() {
        assert_eq!(decode(&[0u8; 32]), Err(FrameError::End));
        assert_eq!(decode(&[0u8; 3]), Err(FrameError::End));
        assert!(matches!(
            encode(b"", &mut [0u8; 16]),
            Err(FrameEncodeError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut out = [0u8; 64];
        let n = encode(b"the quick brown fox", &mut out).unwrap();
        for bit in 0..n * 8 {
            let mut damaged = out;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged[..n]).is_err(),
                "bit {bit} flipped went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn round_trip(body in proptest::collection::vec(any::<u8>(), 1..512)) {
            let mut out = [0u8; 600];
            let n = encode(&body, &mut out).unwrap();
            prop_assert_eq!(decode(&out[..n]).unwrap().body, &body[..]);
            // Any strict prefix is truncated, never a frame.
            for cut in 0..n {
                prop_assert!(decode(&out[..cut]).is_err());
            }
        }
    }
}
