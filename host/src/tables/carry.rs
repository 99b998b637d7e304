//! Where each meter's energy baseline stands between segments: the state a segment's
//! `intervals` need from the segments before it (a reading's energy is the delta to the
//! meter's previous reading, which may lie in an earlier segment).
//!
//! Built by folding the history from its first offset with the engine's own rule
//! (`rollup::Baseline`), so every writer that folds the same history books the same
//! watt-hours as the gateway's rollups, and the same segment gives the same bytes.
//!
//! The gateway keeps it in `DATA_DIR/ship/tables-carry` (written after each segment's tables
//! are confirmed; temp file, fsync, rename) as:
//!
//! ```text
//! "GLTC" | version u8 = 1 | body length u32 LE | body (postcard) | CRC-32 u32 LE of all before
//! ```

use std::collections::BTreeMap;

use gridlog_common::domain::Event;
use gridlog_common::id::EntityId;
use gridlog_common::{Offset, FIRST_OFFSET};
use gridlog_firmware::engine::rollup::Baseline;

/// The first bytes of a stored carry.
pub const CARRY_MAGIC: &[u8; 4] = b"GLTC";
/// The stored carry's format version.
pub const CARRY_VERSION: u8 = 1;
/// Largest body a stored carry may claim (bounds the allocation before the CRC is checked):
/// room for far more meters than `engine.entities_max` allows.
pub const CARRY_BODY_BYTES_MAX: usize = 64 << 20;
const CARRY_HEADER_BYTES: usize = 4 + 1 + 4;

/// Each meter's baseline at `next_offset`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Carry {
    /// The offset the baselines stand before.
    pub next_offset: Offset,
    baselines: BTreeMap<EntityId, Baseline>,
}

impl Default for Carry {
    fn default() -> Self {
        Carry::new()
    }
}

/// Why stored carry bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarryDecodeError {
    /// Shorter than a header and checksum.
    #[error("{0} bytes are too few for a tables carry")]
    Short(usize),
    /// Not a carry file.
    #[error("not a tables carry (bad magic)")]
    Magic,
    /// Written by a newer gridlog.
    #[error("tables carry version {0} is not known (this build reads {CARRY_VERSION})")]
    Version(u8),
    /// Claims a body beyond the bound.
    #[error("tables carry claims {0} body bytes, more than {CARRY_BODY_BYTES_MAX}")]
    TooLarge(u64),
    /// Length or checksum do not match.
    #[error("tables carry is torn or damaged (length or CRC-32 mismatch)")]
    Checksum,
    /// The body does not decode.
    #[error("tables carry body does not decode: {0}")]
    Body(#[from] postcard::Error),
}

impl Carry {
    /// The carry before the first event of a history.
    pub fn new() -> Carry {
        Carry::starting_at(FIRST_OFFSET)
    }

    /// No baselines at `offset`: where the shipped history begins when it does not begin at
    /// the first offset (its older segments were never shipped). Each meter's first reading
    /// there books no energy, as a new meter's does.
    pub fn starting_at(offset: Offset) -> Carry {
        Carry {
            next_offset: offset,
            baselines: BTreeMap::new(),
        }
    }

    /// Follows one event of `entity`: a reading's energy (import, export) as the engine's
    /// rollups book it, `None` for any other event (wraps and replacements move the
    /// baseline).
    pub fn follow(&mut self, entity: &EntityId, event: &Event) -> Option<(f64, f64)> {
        match event {
            Event::ReadingRecorded(r) => Some(self.baseline(entity).book(r)),
            Event::RegisterRolledOver { .. } | Event::MeterReplaced { .. } => {
                self.baseline(entity).follow(event);
                None
            }
            _ => None,
        }
    }

    fn baseline(&mut self, entity: &EntityId) -> &mut Baseline {
        if !self.baselines.contains_key(entity) {
            self.baselines.insert(entity.clone(), Baseline::default());
        }
        self.baselines.get_mut(entity).expect("inserted above")
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("a carry always serialises");
        let mut out = Vec::with_capacity(CARRY_HEADER_BYTES + body.len() + 4);
        out.extend_from_slice(CARRY_MAGIC);
        out.push(CARRY_VERSION);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the stored form; any damage is an error, never a wrong carry.
    pub fn decode(bytes: &[u8]) -> Result<Carry, CarryDecodeError> {
        if bytes.len() < CARRY_HEADER_BYTES + 4 {
            return Err(CarryDecodeError::Short(bytes.len()));
        }
        if &bytes[..4] != CARRY_MAGIC {
            return Err(CarryDecodeError::Magic);
        }
        if bytes[4] != CARRY_VERSION {
            return Err(CarryDecodeError::Version(bytes[4]));
        }
        let claimed = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes"));
        if claimed as usize > CARRY_BODY_BYTES_MAX {
            return Err(CarryDecodeError::TooLarge(u64::from(claimed)));
        }
        let end = CARRY_HEADER_BYTES + claimed as usize;
        if bytes.len() != end + 4 {
            return Err(CarryDecodeError::Checksum);
        }
        let crc = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..end]) != crc {
            return Err(CarryDecodeError::Checksum);
        }
        Ok(postcard::from_bytes(&bytes[CARRY_HEADER_BYTES..end])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridlog_common::domain::Reading;

    fn reading(time_ms: i64, import_wh: f64) -> Event {
        Event::ReadingRecorded(Reading {
            time_ms,
            import_wh,
            export_wh: 0.0,
            power_w: 0.0,
            voltage_v: None,
            current_a: None,
            reactive_power_var: None,
        })
    }

    #[test]
    fn a_carry_books_deltas_across_the_cut_and_survives_its_stored_form() {
        let m = EntityId::new("m1").unwrap();
        let mut carry = Carry::new();
        assert_eq!(carry.follow(&m, &reading(1_000, 10.0)), Some((0.0, 0.0)));
        carry.next_offset = 2;
        let mut back = Carry::decode(&carry.encode()).unwrap();
        assert_eq!(back, carry);
        assert_eq!(back.follow(&m, &reading(2_000, 12.5)), Some((2.5, 0.0)));
        assert_eq!(
            back.follow(&m, &reading(1_500, 11.0)),
            Some((0.0, 0.0)),
            "late"
        );
    }

    #[test]
    fn every_damaged_stored_carry_is_refused() {
        let m = EntityId::new("m1").unwrap();
        let mut carry = Carry::new();
        carry.follow(&m, &reading(1_000, 10.0));
        let bytes = carry.encode();
        for cut in 0..bytes.len() {
            assert!(Carry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            assert!(Carry::decode(&flipped).is_err(), "bit {i}");
        }
    }
}
