//! The versioned event record the engine stores inside log records: a schema byte, then the
//! event in postcard. Reading events, nearly all of the log, are encoded and decoded by hand
//! (`encode_reading_event`, `decode_reading_event`) byte-identical to postcard; the hand
//! decoder gives up on anything unusual and lets postcard decode it and name the error.

use super::*;
use crate::id::{CommandId, EntityId};
use core::fmt;

/// Event schema versions this build reads. A record starts with its version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventSchema {
    /// Version 1: as version 2, but a reading has no `reactive_power_var`. Upcast on read:
    /// its bytes are version 2's with the reading's last field left out, so a version-1
    /// reading decodes as version 2 with that field absent, and every other event is the
    /// same in both.
    V1 = 1,
    /// Version 2: `StoredEvent` as defined above, postcard-encoded.
    V2 = 2,
}

impl EventSchema {
    /// The version new events are written with.
    pub const CURRENT: EventSchema = EventSchema::V2;
}

impl TryFrom<u8> for EventSchema {
    type Error = EventDecodeError;
    fn try_from(v: u8) -> Result<Self, EventDecodeError> {
        match v {
            1 => Ok(EventSchema::V1),
            2 => Ok(EventSchema::V2),
            other => Err(EventDecodeError::UnknownSchema(other)),
        }
    }
}

/// Why a record is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The record is empty.
    Empty,
    /// A schema version this build does not know.
    UnknownSchema(u8),
    /// The body does not decode (postcard's error).
    BadBody(postcard::Error),
    /// Bytes remain after the event.
    TrailingBytes(usize),
}

impl fmt::Display for EventDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventDecodeError::Empty => write!(f, "empty event record"),
            EventDecodeError::UnknownSchema(v) => write!(f, "unknown event schema version {v}"),
            EventDecodeError::BadBody(e) => write!(f, "bad event body: {e}"),
            EventDecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes after the event"),
        }
    }
}

impl core::error::Error for EventDecodeError {}

/// Most bytes one encoded event record (version byte + postcard) can take: an entity id and
/// a command id of [`crate::id::ID_BYTES_MAX`], every varint at its longest, and the largest
/// event. The test `stored_event_bytes_max_bounds_every_variant` pins it.
pub const STORED_EVENT_BYTES_MAX: usize = 256;

/// Encodes an event record (version byte + postcard) into `out`; returns the bytes used.
pub fn encode_event<'a>(
    event: &StoredEvent,
    out: &'a mut [u8],
) -> Result<&'a mut [u8], postcard::Error> {
    if let Event::ReadingRecorded(reading) = &event.event {
        if let Some(used) = encode_reading_event(event, reading, out) {
            return Ok(&mut out[..used]);
        }
    }
    let (first, rest) = out
        .split_first_mut()
        .ok_or(postcard::Error::SerializeBufferFull)?;
    *first = EventSchema::CURRENT as u8;
    let used = postcard::to_slice(event, rest)?.len();
    Ok(&mut out[..1 + used])
}

/// postcard's variant index of [`Event::ReadingRecorded`].
const READING_RECORDED_VARIANT: u8 = 1;

/// The ingest hot path: a reading event written by hand, byte for byte what postcard
/// writes for it (the test `hand_encoded_readings_equal_postcard` pins the equality), at
/// a fraction of serde's cost. `None` if `out` is too short.
fn encode_reading_event(event: &StoredEvent, reading: &Reading, out: &mut [u8]) -> Option<usize> {
    let mut w = SliceWriter { out, at: 0 };
    w.byte(EventSchema::CURRENT as u8)?;
    w.str(event.entity.as_str())?;
    match event.kind {
        // Fieldless enums: `as u8` is the declaration index, which is serde's variant index.
        EntityKind::Meter(kind) => w.bytes(&[0, kind as u8])?,
        EntityKind::Asset(kind) => w.bytes(&[1, kind as u8])?,
        EntityKind::System => w.byte(2)?,
    }
    w.varint(event.seq)?;
    w.varint(zigzag(event.gateway_ms))?;
    match &event.command_id {
        None => w.byte(0)?,
        Some(id) => {
            w.byte(1)?;
            w.str(id.as_str())?;
        }
    }
    w.byte(READING_RECORDED_VARIANT)?;
    w.varint(zigzag(reading.time_ms))?;
    w.bytes(&reading.import_wh.to_le_bytes())?;
    w.bytes(&reading.export_wh.to_le_bytes())?;
    w.bytes(&reading.power_w.to_le_bytes())?;
    for value in [
        reading.voltage_v,
        reading.current_a,
        reading.reactive_power_var,
    ] {
        match value {
            None => w.byte(0)?,
            Some(v) => {
                w.byte(1)?;
                w.bytes(&v.to_le_bytes())?;
            }
        }
    }
    Some(w.at)
}

/// postcard's signed integers: zigzag, then a varint.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Writes postcard's primitives into a borrowed slice.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl SliceWriter<'_> {
    fn byte(&mut self, b: u8) -> Option<()> {
        *self.out.get_mut(self.at)? = b;
        self.at += 1;
        Some(())
    }

    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.out
            .get_mut(self.at..self.at + b.len())?
            .copy_from_slice(b);
        self.at += b.len();
        Some(())
    }

    fn varint(&mut self, value: u64) -> Option<()> {
        self.at += crate::varint::encode(value, self.out.get_mut(self.at..)?)?;
        Some(())
    }

    fn str(&mut self, s: &str) -> Option<()> {
        self.varint(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }
}

/// Encodes an event record into a new vector.
#[cfg(feature = "alloc")]
pub fn encode_event_vec(event: &StoredEvent) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![EventSchema::CURRENT as u8];
    // Serialising into a Vec cannot fail for these types.
    out.extend_from_slice(&postcard::to_allocvec(event).expect("event serialises"));
    out
}

/// Decodes an event record, upcasting older schema versions. Never panics, whatever the
/// bytes.
pub fn decode_event(record: &[u8]) -> Result<StoredEvent, EventDecodeError> {
    let (&version, body) = record.split_first().ok_or(EventDecodeError::Empty)?;
    let schema = EventSchema::try_from(version)?;
    if let Some(event) = decode_reading_event(body, schema) {
        return Ok(event);
    }
    match schema {
        EventSchema::V2 => decode_body(body),
        EventSchema::V1 => {
            // A version-1 reading lacks the reading's last field: add it, absent, and read
            // the record as version 2. Every other event is the same in both versions.
            if v1_event_variant(body) != Some(READING_RECORDED_VARIANT) {
                return decode_body(body);
            }
            let mut upcast = [0u8; STORED_EVENT_BYTES_MAX + 1];
            let len = body.len();
            if len >= upcast.len() {
                return Err(EventDecodeError::TrailingBytes(len + 1 - upcast.len()));
            }
            upcast[..len].copy_from_slice(body);
            // `upcast[len]` is 0: `reactive_power_var: None`.
            let event = decode_body(&upcast[..len + 1])?;
            match &event.event {
                // The added byte was read as absent, not as the start of a value built
                // from bytes the version-1 record had past its end.
                Event::ReadingRecorded(r) if r.reactive_power_var.is_some() => {
                    Err(EventDecodeError::TrailingBytes(4))
                }
                _ => Ok(event),
            }
        }
    }
}

/// A version-2 body through postcard, every byte used.
fn decode_body(body: &[u8]) -> Result<StoredEvent, EventDecodeError> {
    let (event, rest) =
        postcard::take_from_bytes::<StoredEvent>(body).map_err(EventDecodeError::BadBody)?;
    if !rest.is_empty() {
        return Err(EventDecodeError::TrailingBytes(rest.len()));
    }
    Ok(event)
}

/// The event variant index of a body whose fields before it are well formed; `None`
/// otherwise (postcard then reads the body and names what is wrong).
fn v1_event_variant(body: &[u8]) -> Option<u8> {
    let mut r = SliceReader { bytes: body };
    read_head(&mut r)?;
    r.byte()
}

/// The fields every stored event starts with, before its event.
struct Head {
    entity: EntityId,
    kind: EntityKind,
    seq: u64,
    gateway_ms: i64,
    command_id: Option<CommandId>,
}

/// Reads a [`Head`] by hand; `None` for anything unusual (postcard then names it).
fn read_head(r: &mut SliceReader<'_>) -> Option<Head> {
    let entity = EntityId::new(r.str()?).ok()?;
    let kind = match r.byte()? {
        0 => EntityKind::Meter(*MeterKind::ALL.get(usize::from(r.byte()?))?),
        1 => EntityKind::Asset(*AssetKind::ALL.get(usize::from(r.byte()?))?),
        2 => EntityKind::System,
        _ => return None,
    };
    let seq = r.varint()?;
    let gateway_ms = unzigzag(r.varint()?);
    let command_id = match r.byte()? {
        0 => None,
        1 => Some(CommandId::new(r.str()?).ok()?),
        _ => return None,
    };
    Some(Head {
        entity,
        kind,
        seq,
        gateway_ms,
        command_id,
    })
}

/// The replay and query hot path: a reading event read by hand, the inverse of
/// [`encode_reading_event`] (for version 1, without the field it lacks). `None` for any
/// other event and for anything unusual (a
/// non-canonical varint, a bad id, bytes left over): postcard then decodes the record, and
/// names the error if there is one. Whatever this accepts, postcard decodes to the same
/// event (the proptests `hand_decoded_readings_equal_postcard` and
/// `hand_decoding_agrees_with_postcard_on_any_bytes` pin it).
fn decode_reading_event(body: &[u8], schema: EventSchema) -> Option<StoredEvent> {
    let mut r = SliceReader { bytes: body };
    let head = read_head(&mut r)?;
    if r.byte()? != READING_RECORDED_VARIANT {
        return None;
    }
    let reading = Reading {
        time_ms: unzigzag(r.varint()?),
        import_wh: r.f64()?,
        export_wh: r.f64()?,
        power_w: r.f64()?,
        voltage_v: r.option_f32()?,
        current_a: r.option_f32()?,
        reactive_power_var: match schema {
            EventSchema::V1 => None,
            EventSchema::V2 => r.option_f32()?,
        },
    };
    if !r.bytes.is_empty() {
        return None;
    }
    let Head {
        entity,
        kind,
        seq,
        gateway_ms,
        command_id,
    } = head;
    Some(StoredEvent {
        entity,
        kind,
        seq,
        gateway_ms,
        command_id,
        event: Event::ReadingRecorded(reading),
    })
}

/// postcard's signed integers back from their zigzag form.
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Reads postcard's primitives from the front of a slice.
struct SliceReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SliceReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn varint(&mut self) -> Option<u64> {
        let (value, used) = crate::varint::decode(self.bytes).ok()?;
        self.bytes = &self.bytes[used..];
        Some(value)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        core::str::from_utf8(self.take(len)?).ok()
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn option_f32(&mut self) -> Option<Option<f32>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))),
            _ => None,
        }
    }
}

/// The entity id of an event record without decoding the rest: the filter fast path of
/// entity queries. Relies on `entity` being the first field of [`StoredEvent`].
pub fn peek_entity(record: &[u8]) -> Option<&str> {
    let body = record.get(1..)?;
    let (len, used) = crate::varint::decode(body).ok()?;
    let bytes = body.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
    core::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> StoredEvent {
        StoredEvent {
            entity: EntityId::new("m1").unwrap(),
            kind: EntityKind::Meter(MeterKind::Pv),
            seq: 7,
            gateway_ms: 1_700_000_000_000,
            command_id: Some(CommandId::new("req-1").unwrap()),
            event: Event::ReadingRecorded(Reading {
                time_ms: 1_700_000_000_000,
                import_wh: 1.5,
                export_wh: 1234.25,
                power_w: -300.0,
                voltage_v: Some(230.1),
                current_a: None,
                reactive_power_var: None,
            }),
        }
    }

    /// Reading events of every entity kind, with and without a command id, any numbers.
    fn reading_events() -> impl Strategy<Value = StoredEvent> {
        let ids = (
            "[a-zA-Z0-9:._-]{1,64}",
            proptest::option::of("[A-Za-z0-9-]{1,64}"),
            0usize..11,
        );
        let numbers = (any::<(u64, i64, i64)>(), any::<(f64, f64, f64)>());
        let optional = any::<(Option<f32>, Option<f32>, Option<f32>)>();
        (ids, numbers, optional).prop_map(
            |((entity, command_id, kind), ((seq, gateway_ms, time_ms), values), optional)| {
                StoredEvent {
                    entity: EntityId::new(&entity).unwrap(),
                    kind: match kind {
                        0..=5 => EntityKind::Meter(MeterKind::ALL[kind]),
                        6..=9 => EntityKind::Asset(AssetKind::ALL[kind - 6]),
                        _ => EntityKind::System,
                    },
                    seq,
                    gateway_ms,
                    command_id: command_id.map(|id| CommandId::new(&id).unwrap()),
                    event: Event::ReadingRecorded(Reading {
                        time_ms,
                        import_wh: values.0,
                        export_wh: values.1,
                        power_w: values.2,
                        voltage_v: optional.0,
                        current_a: optional.1,
                        reactive_power_var: optional.2,
                    }),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn hand_encoded_readings_equal_postcard(event in reading_events()) {
            let mut by_serde = alloc::vec![EventSchema::CURRENT as u8];
            by_serde.extend_from_slice(&postcard::to_allocvec(&event).unwrap());
            let mut buf = [0u8; STORED_EVENT_BYTES_MAX];
            prop_assert_eq!(&*encode_event(&event, &mut buf).unwrap(), by_serde.as_slice());
            // Too short a buffer is an error at every length, never a panic.
            for len in 0..by_serde.len() {
                prop_assert!(encode_event(&event, &mut buf[..len]).is_err());
            }
        }

        #[test]
        fn hand_decoded_readings_equal_postcard(event in reading_events()) {
            let record = encode_event_vec(&event);
            let by_hand = decode_reading_event(&record[1..], EventSchema::CURRENT);
            prop_assert!(by_hand.is_some(), "a reading the hand encoder wrote");
            // Bytes, not `==`: floats may be NaN.
            prop_assert_eq!(encode_event_vec(&by_hand.unwrap()), record.clone());
            prop_assert_eq!(encode_event_vec(&decode_event(&record).unwrap()), record);
        }

        /// A version-1 reading (version 2's bytes without the last field) decodes, by hand
        /// and through postcard alike, to the same reading without reactive power; damaged
        /// or cut version-1 records are errors, never a reading.
        #[test]
        fn version_1_readings_are_upcast(mut event in reading_events(), cut in 0usize..80) {
            if let Event::ReadingRecorded(r) = &mut event.event {
                r.reactive_power_var = None;
            }
            let v2 = encode_event_vec(&event);
            let mut v1 = v2[..v2.len() - 1].to_vec();
            v1[0] = EventSchema::V1 as u8;
            let by_hand = decode_reading_event(&v1[1..], EventSchema::V1);
            prop_assert!(by_hand.is_some());
            prop_assert_eq!(encode_event_vec(&by_hand.unwrap()), v2.clone());
            prop_assert_eq!(encode_event_vec(&decode_event(&v1).unwrap()), v2.clone());
            // Through postcard too: the hand decoder gives up on a record it finds unusual.
            prop_assert_eq!(encode_event_vec(&upcast_slow(&v1).unwrap()), v2);
            let cut = cut.min(v1.len() - 1).max(1);
            prop_assert!(decode_event(&v1[..cut]).is_err());
            let mut longer = v1.clone();
            longer.push(0);
            prop_assert!(decode_event(&longer).is_err());
        }
    }

    /// The version-1 path that does not use the hand decoder.
    fn upcast_slow(v1: &[u8]) -> Result<StoredEvent, EventDecodeError> {
        let body = &v1[1..];
        assert_eq!(v1_event_variant(body), Some(READING_RECORDED_VARIANT));
        let mut upcast = body.to_vec();
        upcast.push(0);
        decode_body(&upcast)
    }

    /// Records written by the version-1 build (before reactive power), byte for byte:
    /// this build reads them as they were, with no reactive power.
    #[test]
    fn records_of_the_version_1_build_still_decode() {
        let reading_v1: [u8; 63] = [
            0x01, 0x06, 0x67, 0x72, 0x69, 0x64, 0x2d, 0x31, 0x00, 0x00, 0x2a, 0xc0, 0x99, 0x8e,
            0xc2, 0xee, 0x65, 0x01, 0x07, 0x62, 0x61, 0x74, 0x63, 0x68, 0x2d, 0x37, 0x01, 0x80,
            0xf0, 0x86, 0xc2, 0xee, 0x65, 0x00, 0x00, 0x00, 0x00, 0x08, 0x24, 0xfe, 0x40, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x1d, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x70, 0x97,
            0xc0, 0x01, 0x00, 0x80, 0x67, 0x43, 0x00,
        ];
        let replaced_v1: [u8; 41] = [
            0x01, 0x06, 0x67, 0x72, 0x69, 0x64, 0x2d, 0x31, 0x00, 0x00, 0x2b, 0x80, 0xc3, 0x95,
            0xc2, 0xee, 0x65, 0x00, 0x03, 0xc0, 0x8a, 0x93, 0xc2, 0xee, 0x65, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let grid = EntityId::new("grid-1").unwrap();
        assert_eq!(
            decode_event(&reading_v1).unwrap(),
            StoredEvent {
                entity: grid.clone(),
                kind: EntityKind::Meter(MeterKind::Grid),
                seq: 42,
                gateway_ms: 1_750_000_060_000,
                command_id: Some(CommandId::new("batch-7").unwrap()),
                event: Event::ReadingRecorded(Reading {
                    time_ms: 1_750_000_000_000,
                    import_wh: 123_456.5,
                    export_wh: 7.25,
                    power_w: -1500.0,
                    voltage_v: Some(231.5),
                    current_a: None,
                    reactive_power_var: None,
                }),
            }
        );
        assert_eq!(upcast_slow(&reading_v1), decode_event(&reading_v1));
        assert_eq!(
            decode_event(&replaced_v1).unwrap(),
            StoredEvent {
                entity: grid,
                kind: EntityKind::Meter(MeterKind::Grid),
                seq: 43,
                gateway_ms: 1_750_000_120_000,
                command_id: None,
                event: Event::MeterReplaced {
                    time_ms: 1_750_000_100_000,
                    import_wh: 0.0,
                    export_wh: 0.0,
                },
            }
        );
        // Written today, the same reading is version 2 and one byte longer.
        let today = encode_event_vec(&decode_event(&reading_v1).unwrap());
        assert_eq!(today[0], EventSchema::V2 as u8);
        assert_eq!(&today[1..today.len() - 1], &reading_v1[1..]);
    }

    proptest! {
        // Many cases, each cheap: a damaged byte must land on the right spot with the
        // right value to find a disagreement.
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn hand_decoding_agrees_with_postcard_on_any_bytes(
            value in any::<f64>(),
            damage in proptest::collection::vec(
                (any::<proptest::sample::Index>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]),
                0..4,
            ),
            cut in proptest::option::of(0usize..64),
            noise in proptest::collection::vec(any::<u8>(), 0..80),
            use_noise in any::<bool>(),
        ) {
            let mut event = sample();
            if let Event::ReadingRecorded(reading) = &mut event.event {
                reading.power_w = value;
            }
            let mut record = if use_noise {
                let mut r = alloc::vec![EventSchema::CURRENT as u8];
                r.extend_from_slice(&noise);
                r
            } else {
                encode_event_vec(&event)
            };
            let len = record.len();
            for (at, byte) in damage {
                record[at.index(len)] = byte;
            }
            if let Some(cut) = cut {
                record.truncate(cut.max(1));
            }
            let body = &record[1..];
            if let Some(by_hand) = decode_reading_event(body, EventSchema::CURRENT) {
                let by_postcard = postcard::take_from_bytes::<StoredEvent>(body);
                prop_assert!(
                    matches!(&by_postcard, Ok((_, rest)) if rest.is_empty()),
                    "hand decoding accepted what postcard refuses: {:?}", body
                );
                let (by_postcard, _) = by_postcard.unwrap();
                prop_assert_eq!(encode_event_vec(&by_hand), encode_event_vec(&by_postcard));
            }
        }
    }

    #[test]
    fn stored_event_bytes_max_bounds_every_variant() {
        let id = "x".repeat(crate::id::ID_BYTES_MAX);
        let label = Label::new(&"y".repeat(crate::id::LABEL_BYTES_MAX)).unwrap();
        let reading = Reading {
            time_ms: i64::MIN,
            import_wh: f64::MAX,
            export_wh: f64::MAX,
            power_w: f64::MIN,
            voltage_v: Some(f32::MAX),
            current_a: Some(f32::MAX),
            reactive_power_var: Some(f32::MAX),
        };
        let ship = |object| Event::ShipIntended {
            object,
            first_offset: u64::MAX,
            next_offset: u64::MAX,
            sha256: [0xff; 32],
            bytes: u64::MAX,
        };
        let events = [
            Event::MeterRegistered {
                kind: MeterKind::Battery,
                register_bits: Some(u8::MAX),
            },
            Event::ReadingRecorded(reading),
            Event::RegisterRolledOver {
                register: Register::Export,
                bits: u8::MAX,
                before_wh: f64::MAX,
                after_wh: f64::MAX,
            },
            Event::MeterReplaced {
                time_ms: i64::MIN,
                import_wh: f64::MAX,
                export_wh: f64::MAX,
            },
            Event::MeterDecommissioned,
            Event::AssetRegistered {
                kind: AssetKind::Load,
                rated_power_w: f64::MAX,
                capacity_wh: Some(f64::MAX),
            },
            Event::TelemetryRecorded(Telemetry {
                time_ms: i64::MIN,
                power_w: f64::MAX,
                soc_pct: Some(f64::MAX),
                status: label.clone(),
            }),
            Event::SetpointRequested { power_w: f64::MAX },
            Event::SetpointApplied { power_w: f64::MAX },
            Event::AvailabilityChanged { available: true },
            Event::FaultRaised {
                code: label.clone(),
            },
            Event::FaultCleared { code: label },
            Event::SegmentArchived {
                first_offset: u64::MAX,
                next_offset: u64::MAX,
                original_bytes: u64::MAX,
                archived_bytes: u64::MAX,
                sha256: [0xff; 32],
            },
            Event::ArchiveEvicted {
                first_offset: u64::MAX,
                next_offset: u64::MAX,
                shipped: true,
            },
            ship(ShipObject::Manifest),
            match ship(ShipObject::Manifest) {
                Event::ShipIntended {
                    object,
                    first_offset,
                    next_offset,
                    sha256,
                    bytes,
                } => Event::ShipConfirmed {
                    object,
                    first_offset,
                    next_offset,
                    sha256,
                    bytes,
                },
                other => other,
            },
            Event::RecoveryPointLagging {
                lag_s: u64::MAX,
                max_lag_s: 60,
                store_next_offset: u64::MAX,
            },
        ];
        for kind in [
            EntityKind::Meter(MeterKind::Battery),
            EntityKind::Asset(AssetKind::Load),
            EntityKind::System,
        ] {
            for event in &events {
                let stored = StoredEvent {
                    entity: EntityId::new(&id).unwrap(),
                    kind,
                    seq: u64::MAX,
                    gateway_ms: i64::MIN,
                    command_id: Some(CommandId::new(&id).unwrap()),
                    event: event.clone(),
                };
                let len = encode_event_vec(&stored).len();
                assert!(
                    len <= STORED_EVENT_BYTES_MAX,
                    "{} encodes to {len} bytes",
                    event.type_name()
                );
            }
        }
    }

    #[test]
    fn round_trip_and_peek() {
        let bytes = encode_event_vec(&sample());
        assert_eq!(bytes[0], EventSchema::CURRENT as u8);
        assert_eq!(decode_event(&bytes).unwrap(), sample());
        assert_eq!(peek_entity(&bytes), Some("m1"));
        let mut buf = [0u8; 128];
        assert_eq!(encode_event(&sample(), &mut buf).unwrap(), &bytes[..]);
        assert_eq!(sample().tags().as_slice(), &["meter", "kind:pv"]);
    }

    #[test]
    fn unknown_versions_and_garbage_are_clear_errors() {
        let mut bytes = encode_event_vec(&sample());
        bytes[0] = 9;
        assert_eq!(
            decode_event(&bytes),
            Err(EventDecodeError::UnknownSchema(9))
        );
        assert_eq!(decode_event(&[]), Err(EventDecodeError::Empty));
        let mut bytes = encode_event_vec(&sample());
        bytes.push(0);
        assert_eq!(
            decode_event(&bytes),
            Err(EventDecodeError::TrailingBytes(1))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode_event(&bytes);
            let _ = peek_entity(&bytes);
        }
    }
}
