//! Bounded, validated identifiers: entity ids, client command ids, short labels.
//!
//! An id is 1 to [`ID_BYTES_MAX`] characters from `A-Z a-z 0-9 - _ . :`. The set is small
//! on purpose: ids appear in URLs, object keys, file names and logs without escaping.

use core::fmt;
use serde::{Deserialize, Serialize};

/// Longest id in bytes: 64. Long enough for `site42:building-3:meter-0017`, short enough
/// that the in-memory image of 10,000 meters stays small.
pub const ID_BYTES_MAX: usize = 64;
/// Longest label (asset status, fault code) in bytes.
pub const LABEL_BYTES_MAX: usize = 32;

/// Why a string is not a valid id or label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The string is empty.
    Empty,
    /// Longer than allowed.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A character outside the allowed set.
    BadChar {
        /// The character.
        ch: char,
        /// Its byte position.
        at: usize,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "must not be empty"),
            IdError::TooLong { len, max } => write!(f, "is {len} bytes long; the maximum is {max}"),
            IdError::BadChar { ch, at } => write!(
                f,
                "has {ch:?} at byte {at}; allowed are A-Z a-z 0-9 and - _ . :"
            ),
        }
    }
}

impl core::error::Error for IdError {}

const fn id_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

const fn label_char_ok(c: char) -> bool {
    c.is_ascii_graphic() || c == ' '
}

/// Which bytes a `const fn(char) -> bool` allows, as a table: one load per byte when
/// checking (ids are checked for every event decoded). Every allowed character is ASCII.
macro_rules! byte_table {
    ($ok:path) => {{
        let mut table = [false; 256];
        let mut b = 0;
        while b < 128 {
            table[b] = $ok(b as u8 as char);
            b += 1;
        }
        table
    }};
}

const ID_BYTES: [bool; 256] = byte_table!(id_char_ok);
const LABEL_BYTES: [bool; 256] = byte_table!(label_char_ok);

macro_rules! bounded_string {
    ($(#[$doc:meta])* $name:ident, $max:expr, $ok:path, $table:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(heapless::String<{ $max }>);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // Validated straight from the input's string: no intermediate copy (replay
                // decodes one id per event).
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a string of 1 to {} allowed characters", $max)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }

        impl $name {
            /// Validates `s`.
            pub fn new(s: &str) -> Result<Self, IdError> {
                if s.is_empty() {
                    return Err(IdError::Empty);
                }
                if s.len() > $max {
                    return Err(IdError::TooLong { len: s.len(), max: $max });
                }
                // Every allowed character is ASCII: check bytes, find the char only to report.
                if !s.bytes().all(|b| $table[usize::from(b)]) {
                    if let Some((at, ch)) = s.char_indices().find(|&(_, c)| !$ok(c)) {
                        return Err(IdError::BadChar { ch, at });
                    }
                }
                let mut inner = heapless::String::new();
                // Length was checked above, so this cannot fail.
                inner.push_str(s).map_err(|_| IdError::TooLong { len: s.len(), max: $max })?;
                Ok($name(inner))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl TryFrom<heapless::String<{ $max }>> for $name {
            type Error = IdError;
            fn try_from(s: heapless::String<{ $max }>) -> Result<Self, IdError> {
                $name::new(s.as_str())
            }
        }

        impl core::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.as_str())
            }
        }

        impl core::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
    };
}

bounded_string!(
    /// The id of a meter or an energy asset.
    EntityId, ID_BYTES_MAX, id_char_ok, ID_BYTES
);
bounded_string!(
    /// A client's id for a request, making its retries idempotent.
    CommandId, ID_BYTES_MAX, id_char_ok, ID_BYTES
);
bounded_string!(
    /// A short printable label: an asset status, a fault code.
    Label, LABEL_BYTES_MAX, label_char_ok, LABEL_BYTES
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_set_and_names_what_is_wrong() {
        assert!(EntityId::new("site-1:meter_07.a").is_ok());
        assert_eq!(EntityId::new(""), Err(IdError::Empty));
        assert_eq!(
            EntityId::new("a b"),
            Err(IdError::BadChar { ch: ' ', at: 1 })
        );
        assert_eq!(EntityId::new("é"), Err(IdError::BadChar { ch: 'é', at: 0 }));
        let long = "x".repeat(ID_BYTES_MAX + 1);
        assert_eq!(
            EntityId::new(&long),
            Err(IdError::TooLong { len: 65, max: 64 })
        );
        assert!(EntityId::new(&long[..64]).is_ok());
        assert!(Label::new("charging slowly").is_ok());
    }

    #[test]
    fn the_byte_tables_follow_the_character_rules() {
        for b in 0u8..=255 {
            let c = char::from(b);
            let s = alloc::string::String::from(c);
            assert_eq!(EntityId::new(&s).is_ok(), id_char_ok(c), "{c:?}");
            assert_eq!(CommandId::new(&s).is_ok(), id_char_ok(c), "{c:?}");
            assert_eq!(Label::new(&s).is_ok(), label_char_ok(c), "{c:?}");
        }
    }

    #[test]
    fn decoding_validates_too() {
        let bad =
            postcard::to_allocvec(&heapless::String::<64>::try_from("bad id").unwrap()).unwrap();
        assert!(postcard::from_bytes::<EntityId>(&bad).is_err());
        let good = postcard::to_allocvec(&EntityId::new("m1").unwrap()).unwrap();
        assert_eq!(
            postcard::from_bytes::<EntityId>(&good).unwrap().as_str(),
            "m1"
        );
    }
}
