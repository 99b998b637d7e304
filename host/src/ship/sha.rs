//! SHA-256 as the shipper carries it: 32 bytes in memory, 64 lowercase hex digits in JSON
//! (manifests, the tail state, a restore's parent link) and in object metadata. One type,
//! so a hash is never compared as bytes on one side and as text on the other.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A SHA-256 digest.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 (64 hex digits): {shown:?}")]
pub struct BadSha256 {
    /// The start of the text (at most [`SHOWN_CHARS_MAX`] characters).
    pub shown: String,
}

/// How much of a bad hash an error repeats.
pub const SHOWN_CHARS_MAX: usize = 80;

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(gridlog_firmware::archive::sha256(bytes))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(self) -> String {
        super::hex(&self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Sha256, BadSha256> {
        let bad = || BadSha256 {
            shown: text.chars().take(SHOWN_CHARS_MAX).collect(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(Sha256(out))
    }
}

impl From<[u8; 32]> for Sha256 {
    fn from(bytes: [u8; 32]) -> Sha256 {
        Sha256(bytes)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sha256, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sha256::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_json() {
        let sha = Sha256::of(b"gridlog");
        assert_eq!(Sha256::from_hex(&sha.to_hex()), Ok(sha));
        assert_eq!(Sha256::from_hex(&sha.to_hex().to_uppercase()), Ok(sha));
        let json = serde_json::to_string(&sha).unwrap();
        assert_eq!(json, format!("\"{sha}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), sha);
    }

    #[test]
    fn bad_text_is_refused_and_shown_bounded() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
            "é".repeat(32).as_str(),
        ] {
            assert!(Sha256::from_hex(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let e = Sha256::from_hex(&long).unwrap_err();
        assert_eq!(e.shown.chars().count(), SHOWN_CHARS_MAX);
        assert!(serde_json::from_str::<Sha256>("\"not hex\"").is_err());
    }
}
