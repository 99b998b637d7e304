//! Register decoding: Modbus words → numbers, pure and without I/O.
//!
//! A value of more than one register is put together from its words in the configured byte
//! order (`ABCD` is Modbus' own big-endian order: high word first, high byte first). SunSpec
//! marks a point it does not implement with a reserved value ([`Decoded::Absent`]): the
//! poller leaves such a point out of what it records, so a "not implemented" accumulator
//! never reaches the engine as 0 (which would look like a counter reset).

use serde::{Deserialize, Serialize};

/// The Modbus data types a point can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterType {
    /// Unsigned 16 bits (one register).
    U16,
    /// Signed 16 bits (one register).
    I16,
    /// Unsigned 32 bits (two registers).
    U32,
    /// Signed 32 bits (two registers).
    I32,
    /// Unsigned 64 bits (four registers).
    U64,
    /// IEEE 754 single precision (two registers); NaN is absent.
    F32,
    /// SunSpec's 32-bit accumulator: unsigned, wraps at 2^32, and 0 means "not
    /// implemented" (absent).
    Acc32,
}

impl RegisterType {
    /// How many 16-bit registers a value takes.
    pub fn registers(self) -> u16 {
        match self {
            RegisterType::U16 | RegisterType::I16 => 1,
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 | RegisterType::Acc32 => 2,
            RegisterType::U64 => 4,
        }
    }

    /// Parses the configured name (`u16`, `acc32` …).
    pub fn from_name(name: &str) -> Option<RegisterType> {
        Some(match name {
            "u16" => RegisterType::U16,
            "i16" => RegisterType::I16,
            "u32" => RegisterType::U32,
            "i32" => RegisterType::I32,
            "u64" => RegisterType::U64,
            "f32" => RegisterType::F32,
            "acc32" => RegisterType::Acc32,
            _ => return None,
        })
    }
}

/// The order of bytes in a multi-register value, named by where the most significant byte
/// `A` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ByteOrder {
    /// Big-endian words, high word first (Modbus' and SunSpec's own order).
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    /// Low word first, big-endian within each word ("word swap").
    #[serde(rename = "CDAB")]
    Cdab,
    /// High word first, bytes swapped within each word.
    #[serde(rename = "BADC")]
    Badc,
    /// Fully little-endian.
    #[serde(rename = "DCBA")]
    Dcba,
}

impl ByteOrder {
    /// Parses the configured name (`ABCD` …).
    pub fn from_name(name: &str) -> Option<ByteOrder> {
        Some(match name {
            "ABCD" => ByteOrder::Abcd,
            "CDAB" => ByteOrder::Cdab,
            "BADC" => ByteOrder::Badc,
            "DCBA" => ByteOrder::Dcba,
            _ => return None,
        })
    }

    fn swaps_words(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }
}

/// A decoded value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoded {
    /// A number, before any scaling.
    Value(f64),
    /// The device does not implement the point (its reserved value).
    Absent,
}

impl Decoded {
    /// The number, if there is one.
    pub fn value(self) -> Option<f64> {
        match self {
            Decoded::Value(v) => Some(v),
            Decoded::Absent => None,
        }
    }
}

/// Whether the reserved "not implemented" values of SunSpec apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// SunSpec: int16 0x8000, uint16 0xFFFF, int32 0x80000000, uint32 0xFFFFFFFF, uint64
    /// all ones, acc32 0, float32 NaN are absent.
    SunSpec,
    /// A plain device: every bit pattern is a value, except acc32 0 and float NaN, which
    /// mean "no value" by the types' own definitions.
    Plain,
}

/// Puts the words of one value together as a big-endian integer, honouring `order`.
/// `words` holds exactly the value's registers.
fn assemble(words: &[u16], order: ByteOrder) -> u64 {
    let mut value = 0u64;
    let mut push = |word: u16| {
        let word = if order.swaps_bytes() {
            word.swap_bytes()
        } else {
            word
        };
        value = (value << 16) | u64::from(word);
    };
    if order.swaps_words() {
        words.iter().rev().copied().for_each(&mut push);
    } else {
        words.iter().copied().for_each(&mut push);
    }
    value
}

/// Decodes the value of type `ty` at the start of `words`; `None` if `words` is too short
/// (the caller's plan is wrong: every plan is checked against the request it reads).
pub fn decode(
    words: &[u16],
    ty: RegisterType,
    order: ByteOrder,
    missing: Missing,
) -> Option<Decoded> {
    let words = words.get(..usize::from(ty.registers()))?;
    let raw = assemble(words, order);
    let sunspec = missing == Missing::SunSpec;
    // The casts below keep the low bits of `raw`, which hold exactly the type's width.
    let decoded = match ty {
        RegisterType::U16 if sunspec && raw == 0xFFFF => Decoded::Absent,
        RegisterType::U16 => Decoded::Value(raw as f64),
        RegisterType::I16 if sunspec && raw == 0x8000 => Decoded::Absent,
        RegisterType::I16 => Decoded::Value(f64::from(raw as u16 as i16)),
        RegisterType::U32 if sunspec && raw == 0xFFFF_FFFF => Decoded::Absent,
        RegisterType::U32 => Decoded::Value(raw as f64),
        RegisterType::I32 if sunspec && raw == 0x8000_0000 => Decoded::Absent,
        RegisterType::I32 => Decoded::Value(f64::from(raw as u32 as i32)),
        RegisterType::U64 if sunspec && raw == u64::MAX => Decoded::Absent,
        RegisterType::U64 => Decoded::Value(raw as f64),
        RegisterType::Acc32 if raw == 0 => Decoded::Absent,
        RegisterType::Acc32 => Decoded::Value(raw as f64),
        RegisterType::F32 => {
            let v = f32::from_bits(raw as u32);
            if v.is_nan() {
                Decoded::Absent
            } else {
                Decoded::Value(f64::from(v))
            }
        }
    };
    Some(decoded)
}

/// The smallest and largest SunSpec scale factor (`sunssf`): the specification allows
/// -10..=10; anything else is a device's error and scales nothing.
pub const SCALE_FACTOR_MIN: i16 = -10;
/// See [`SCALE_FACTOR_MIN`].
pub const SCALE_FACTOR_MAX: i16 = 10;

/// A SunSpec scale factor register: the power of ten it means, or `None` if it is "not
/// implemented" (0x8000) or outside the allowed range. Values it scales are then absent.
pub fn scale_factor(word: u16) -> Option<i16> {
    let sf = word as i16;
    (SCALE_FACTOR_MIN..=SCALE_FACTOR_MAX)
        .contains(&sf)
        .then_some(sf)
}

/// `raw × 10^sf`, exactly as a decimal would be written: a negative power divides, so
/// 12345 with -1 is 1234.5 (not 1234.5000000000002).
pub fn apply_scale_factor(raw: f64, sf: i16) -> f64 {
    let power = 10f64.powi(i32::from(sf.unsigned_abs()));
    if sf < 0 {
        raw / power
    } else {
        raw * power
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ORDERS: [ByteOrder; 4] = [
        ByteOrder::Abcd,
        ByteOrder::Cdab,
        ByteOrder::Badc,
        ByteOrder::Dcba,
    ];

    /// The words a device sends for the big-endian bytes `bytes` in `order`.
    fn words_for(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
        let mut words: Vec<u16> = bytes
            .chunks(2)
            .map(|b| {
                let w = u16::from_be_bytes([b[0], b[1]]);
                if order.swaps_bytes() {
                    w.swap_bytes()
                } else {
                    w
                }
            })
            .collect();
        if order.swaps_words() {
            words.reverse();
        }
        words
    }

    #[test]
    fn every_byte_order_gives_back_the_same_number() {
        for order in ALL_ORDERS {
            let w = words_for(&0x1234_5678u32.to_be_bytes(), order);
            assert_eq!(
                decode(&w, RegisterType::U32, order, Missing::Plain),
                Some(Decoded::Value(f64::from(0x1234_5678u32))),
                "{order:?}"
            );
            let w = words_for(&(-123_456i32).to_be_bytes(), order);
            assert_eq!(
                decode(&w, RegisterType::I32, order, Missing::Plain),
                Some(Decoded::Value(-123_456.0)),
                "{order:?}"
            );
            let w = words_for(&1234.5f32.to_be_bytes(), order);
            assert_eq!(
                decode(&w, RegisterType::F32, order, Missing::Plain),
                Some(Decoded::Value(1234.5)),
                "{order:?}"
            );
            let w = words_for(&0x0102_0304_0506_0708u64.to_be_bytes(), order);
            assert_eq!(
                decode(&w, RegisterType::U64, order, Missing::Plain),
                Some(Decoded::Value(0x0102_0304_0506_0708u64 as f64)),
                "{order:?}"
            );
        }
    }

    #[test]
    fn the_orders_differ_on_the_wire() {
        // 0x11223344 as a device in each order sends it.
        assert_eq!(
            words_for(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Abcd),
            [0x1122, 0x3344]
        );
        assert_eq!(
            words_for(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Cdab),
            [0x3344, 0x1122]
        );
        assert_eq!(
            words_for(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Badc),
            [0x2211, 0x4433]
        );
        assert_eq!(
            words_for(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Dcba),
            [0x4433, 0x2211]
        );
        let abcd = decode(
            &[0x1122, 0x3344],
            RegisterType::U32,
            ByteOrder::Abcd,
            Missing::Plain,
        );
        let cdab = decode(
            &[0x1122, 0x3344],
            RegisterType::U32,
            ByteOrder::Cdab,
            Missing::Plain,
        );
        assert_eq!(abcd, Some(Decoded::Value(f64::from(0x1122_3344u32))));
        assert_eq!(cdab, Some(Decoded::Value(f64::from(0x3344_1122u32))));
    }

    #[test]
    fn sixteen_bit_values_are_signed_or_not() {
        let d = |w: u16, ty| decode(&[w], ty, ByteOrder::Abcd, Missing::Plain);
        assert_eq!(d(0xFFFE, RegisterType::U16), Some(Decoded::Value(65534.0)));
        assert_eq!(d(0xFFFE, RegisterType::I16), Some(Decoded::Value(-2.0)));
        assert_eq!(d(0x8000, RegisterType::I16), Some(Decoded::Value(-32768.0)));
    }

    #[test]
    fn sunspec_not_implemented_values_are_absent_never_zero() {
        let s = |w: &[u16], ty| decode(w, ty, ByteOrder::Abcd, Missing::SunSpec);
        assert_eq!(s(&[0x8000], RegisterType::I16), Some(Decoded::Absent));
        assert_eq!(s(&[0xFFFF], RegisterType::U16), Some(Decoded::Absent));
        assert_eq!(s(&[0, 0], RegisterType::Acc32), Some(Decoded::Absent));
        assert_eq!(s(&[0x8000, 0], RegisterType::I32), Some(Decoded::Absent));
        assert_eq!(
            s(&[0xFFFF, 0xFFFF], RegisterType::U32),
            Some(Decoded::Absent)
        );
        assert_eq!(s(&[0xFFFF; 4], RegisterType::U64), Some(Decoded::Absent));
        assert_eq!(s(&[0x7FC0, 0], RegisterType::F32), Some(Decoded::Absent));
        // Neighbours of the reserved values are values.
        assert_eq!(
            s(&[0x8001], RegisterType::I16),
            Some(Decoded::Value(-32767.0))
        );
        assert_eq!(s(&[0, 1], RegisterType::Acc32), Some(Decoded::Value(1.0)));
        assert_eq!(
            s(&[0xFFFF, 0xFFFF], RegisterType::Acc32),
            Some(Decoded::Value(4_294_967_295.0))
        );
        // A plain device's 0xFFFF is a value; its acc32 0 is still absent.
        let p = |w: &[u16], ty| decode(w, ty, ByteOrder::Abcd, Missing::Plain);
        assert_eq!(
            p(&[0xFFFF], RegisterType::U16),
            Some(Decoded::Value(65535.0))
        );
        assert_eq!(p(&[0, 0], RegisterType::Acc32), Some(Decoded::Absent));
    }

    #[test]
    fn too_few_words_decode_nothing() {
        assert_eq!(
            decode(&[1], RegisterType::U32, ByteOrder::Abcd, Missing::Plain),
            None
        );
        assert_eq!(
            decode(&[], RegisterType::U16, ByteOrder::Abcd, Missing::Plain),
            None
        );
    }

    #[test]
    fn scale_factors_outside_the_range_or_not_implemented_scale_nothing() {
        assert_eq!(scale_factor(0x8000), None);
        assert_eq!(scale_factor((-11i16) as u16), None);
        assert_eq!(scale_factor(11), None);
        assert_eq!(scale_factor((-2i16) as u16), Some(-2));
        assert_eq!(scale_factor(3), Some(3));
    }

    #[test]
    fn scaling_gives_the_decimal_the_device_means() {
        assert_eq!(apply_scale_factor(12345.0, -1), 1234.5);
        assert_eq!(apply_scale_factor(2301.0, -1), 230.1);
        assert_eq!(apply_scale_factor(7.0, -2), 0.07);
        assert_eq!(apply_scale_factor(123.0, 3), 123_000.0);
        assert_eq!(apply_scale_factor(-5.0, 0), -5.0);
    }

    #[test]
    fn names_parse() {
        assert_eq!(RegisterType::from_name("acc32"), Some(RegisterType::Acc32));
        assert_eq!(RegisterType::from_name("u128"), None);
        assert_eq!(ByteOrder::from_name("CDAB"), Some(ByteOrder::Cdab));
        assert_eq!(ByteOrder::from_name("cdab"), None);
    }
}
