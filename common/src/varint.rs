//! Unsigned LEB128 integers exactly as postcard writes `u64` and sequence lengths.
//!
//! Written by hand so the log's hot paths can encode into and decode from a borrowed
//! slice without serde; `batch`'s tests pin the equality with postcard itself.

/// The longest encoding of a `u64`.
pub const VARINT_U64_BYTES_MAX: usize = 10;

/// How many bytes `value` takes.
pub const fn encoded_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Writes `value` at the start of `out`; returns the number of bytes written, or `None`
/// if `out` is too short.
pub fn encode(mut value: u64, out: &mut [u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let byte = out.get_mut(i)?;
        if value < 0x80 {
            *byte = value as u8;
            return Some(i + 1);
        }
        *byte = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
        i += 1;
    }
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the number.
    Truncated,
    /// More than ten bytes, or bits beyond 64, or a non-canonical (overlong) encoding.
    Invalid,
}

/// Reads a varint from the start of `input`; returns the value and the bytes consumed.
pub fn decode(input: &[u8]) -> Result<(u64, usize), VarintError> {
    // Most varints (lengths, kinds, small numbers) are one byte.
    match input.first() {
        Some(&byte) if byte < 0x80 => return Ok((u64::from(byte), 1)),
        None => return Err(VarintError::Truncated),
        Some(_) => {}
    }
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(VARINT_U64_BYTES_MAX) {
        let bits = u64::from(byte & 0x7f);
        if i == VARINT_U64_BYTES_MAX - 1 && byte > 0x01 {
            return Err(VarintError::Invalid);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            // Canonical form only: a trailing zero byte (other than a lone 0) is overlong.
            if i > 0 && byte == 0 {
                return Err(VarintError::Invalid);
            }
            return Ok((value, i + 1));
        }
    }
    if input.len() >= VARINT_U64_BYTES_MAX {
        Err(VarintError::Invalid)
    } else {
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = [0u8; VARINT_U64_BYTES_MAX];
            let n = encode(value, &mut buf).unwrap();
            assert_eq!(n, encoded_len(value));
            assert_eq!(decode(&buf[..n]), Ok((value, n)));
            assert_eq!(
                decode(&buf[..n - 1]).err(),
                Some(VarintError::Truncated)
                    .filter(|_| n > 1)
                    .or(Some(VarintError::Truncated))
            );
        }
    }

    #[test]
    fn rejects_overlong_and_too_wide() {
        assert_eq!(decode(&[0x80, 0x00]), Err(VarintError::Invalid));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Invalid));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Invalid)
        );
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
    }
}
