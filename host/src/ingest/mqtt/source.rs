//! Compiled `[[mqtt.source]]` entries and what a message becomes under them: pure apart
//! from the clock reading the caller passes in.
//!
//! A source is one or more topic patterns (parts). Each message updates the values held
//! for its device; a message on a completing part makes a command of the device's values
//! (values of the other parts only if at most `value_age_max_ms` old). A plain source is
//! one completing part: one message, one reading.
//!
//! A source converts and renames; it never judges a value: the engine's rules decide.

use std::collections::HashMap;

use gridlog_common::domain::{Command, Telemetry};
use gridlog_common::id::{EntityId, Label};
use jiff::tz::TimeZone;
use serde_json::Value;

use super::config::{MqttConfig, PointerSource, SourceConfig};
use super::payload::{self, PayloadError, TimeFormat};
use super::presets::{self, PresetError};
use super::topic::{Captures, PatternError, TopicPattern};
use crate::ingest::fields::{self, factor, GridField, Target, UnitError};
use crate::ingest::template::Template;

/// Most `[[mqtt.source]]` entries.
pub const SOURCES_MAX: usize = 256;
/// Most devices (distinct ids) one source holds values for; a message of one more is
/// refused (`too_many_devices`). Bounds the memory held values take.
pub const DEVICES_PER_SOURCE_MAX: usize = 4096;

/// A source that cannot be used: the configuration is refused, naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// More than [`SOURCES_MAX`].
    #[error("{0} sources; the maximum is {SOURCES_MAX}")]
    TooMany(usize),
    /// Neither or both of `preset` and `topic`.
    #[error("source {0}: give either preset (with prefix) or topic (with fields)")]
    PresetOrTopic(usize),
    /// A preset given fields or a time of its own.
    #[error("source {0}: a preset takes no topic, fields, time or target")]
    PresetWithFields(usize),
    /// A preset whose prefix does not fit.
    #[error("source {index}: {error}")]
    Preset {
        /// Its position.
        index: usize,
        /// What is wrong.
        error: PresetError,
    },
    /// A malformed topic pattern.
    #[error("source {index}: {error}")]
    Pattern {
        /// Its position.
        index: usize,
        /// What is wrong.
        error: PatternError,
    },
    /// A malformed id template, or one naming a wildcard no topic has.
    #[error(
        "source {index}: id template {template:?} is malformed or names a wildcard the topic lacks"
    )]
    BadId {
        /// Its position.
        index: usize,
        /// The template.
        template: String,
    },
    /// A field the target lacks.
    #[error("source {index}: {field:?} is not a {target:?} field")]
    UnknownField {
        /// Its position.
        index: usize,
        /// The field.
        field: String,
        /// The target.
        target: Target,
    },
    /// A field the target needs.
    #[error("source {index}: field {field} is required")]
    MissingField {
        /// Its position.
        index: usize,
        /// The field.
        field: &'static str,
    },
    /// A bad unit or scale.
    #[error("source {index}: field {field}: {error}")]
    Unit {
        /// Its position.
        index: usize,
        /// The field.
        field: String,
        /// What is wrong.
        error: UnitError,
    },
    /// A time zone the system does not know.
    #[error("source {index}: unknown time zone {zone:?}")]
    TimeZone {
        /// Its position.
        index: usize,
        /// The zone.
        zone: String,
    },
}

/// Why a message made nothing (it is acknowledged, counted by this code, and logged).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Larger than `mqtt.payload_bytes_max`.
    #[error("payload of {bytes} bytes is over mqtt.payload_bytes_max ({max})")]
    PayloadTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, a value not a number, a bad time.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The id made from the topic is not a valid entity id.
    #[error("id {id:?} is not a valid entity id: {reason}")]
    BadId {
        /// The id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A required value is missing, or from another topic and too old.
    #[error("{field} is missing or older than value_age_max_ms")]
    Incomplete {
        /// The gridlog field.
        field: &'static str,
    },
    /// A retained message of a source without a time in its payload: its age is unknown,
    /// so it is not recorded as a reading of now.
    #[error("retained message without a time in its payload")]
    RetainedWithoutTime,
    /// More devices than [`DEVICES_PER_SOURCE_MAX`].
    #[error("more than {DEVICES_PER_SOURCE_MAX} devices on this source")]
    TooManyDevices,
    /// A status that is not a valid label.
    #[error("status {0:?} is not a valid label")]
    BadStatus(String),
}

impl MessageError {
    /// Its name in status and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::PayloadTooLarge { .. } => "payload_too_large",
            MessageError::Payload(_) => "bad_payload",
            MessageError::BadId { .. } => "bad_id",
            MessageError::Incomplete { .. } => "incomplete",
            MessageError::RetainedWithoutTime => "retained_without_time",
            MessageError::TooManyDevices => "too_many_devices",
            MessageError::BadStatus(_) => "bad_status",
        }
    }
}

/// One message as received.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// The broker's retained copy (sent at every subscription).
    pub retained: bool,
    /// Gateway time it arrived.
    pub received_ms: i64,
}

/// What a message became.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A command to submit.
    Command(Command),
    /// Values held for the device's next reading; nothing to store yet.
    Held,
}

#[derive(Debug, Clone)]
struct FieldSpec {
    field: GridField,
    pointer: String,
    factor: f64,
    default: Option<f64>,
}

#[derive(Debug, Clone)]
struct Part {
    pattern: TopicPattern,
    fields: Vec<FieldSpec>,
    completes: bool,
}

#[derive(Debug, Clone)]
struct TimeSpec {
    pointer: String,
    format: TimeFormat,
    zone: TimeZone,
}

/// A value held for a device: a number or a status text, and when it arrived.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Number(f64),
    Text(String),
}

/// A checked source with the values it holds per device.
#[derive(Debug)]
pub struct Source {
    /// Its name in status and logs.
    pub name: String,
    target: Target,
    id: Template,
    invert: bool,
    parts: Vec<Part>,
    time: Option<TimeSpec>,
    value_age_max_ms: i64,
    keepalive: Option<String>,
    held: HashMap<String, Vec<(GridField, Held, i64)>>,
}

/// A field as configured or preset: (gridlog field, pointer, unit, scale, default).
type FieldDecl = (String, PointerSource);

/// A source's parts before checking: (topic pattern, fields, completes).
type PartDecl = (String, Vec<FieldDecl>, bool);

/// A source before checking: its parts, where its time is, its keep-alive topic.
type SourceDecl = (Vec<PartDecl>, Option<(String, TimeFormat)>, Option<String>);

fn preset_parts(index: usize, c: &SourceConfig) -> Result<SourceDecl, SourceError> {
    let preset = c.preset.ok_or(SourceError::PresetOrTopic(index))?;
    if !c.topic.is_empty()
        || !c.fields.is_empty()
        || c.time.is_some()
        || c.time_format.is_some()
        || c.target != Target::Meter
    {
        return Err(SourceError::PresetWithFields(index));
    }
    let expanded =
        presets::expand(preset, &c.prefix).map_err(|error| SourceError::Preset { index, error })?;
    let parts = expanded
        .parts
        .into_iter()
        .map(|p| {
            let fields = p
                .fields
                .iter()
                .map(|&(field, pointer, unit, default)| {
                    let source = PointerSource {
                        pointer: pointer.into(),
                        unit: Some(unit.into()),
                        scale: None,
                        default,
                    };
                    (field.to_string(), source)
                })
                .collect();
            (p.topic, fields, p.completes)
        })
        .collect();
    let time = expanded
        .time
        .map(|(pointer, format)| (pointer.to_string(), format));
    Ok((parts, time, expanded.keepalive))
}

fn check_part(index: usize, target: Target, decl: PartDecl) -> Result<Part, SourceError> {
    let (topic, fields, completes) = decl;
    let pattern =
        TopicPattern::parse(&topic).map_err(|error| SourceError::Pattern { index, error })?;
    let fields = fields
        .into_iter()
        .map(|(name, source)| {
            let field =
                GridField::named(target, &name).ok_or_else(|| SourceError::UnknownField {
                    index,
                    field: name.clone(),
                    target,
                })?;
            let factor = factor(field, source.unit.as_deref(), source.scale).map_err(|error| {
                SourceError::Unit {
                    index,
                    field: name,
                    error,
                }
            })?;
            Ok(FieldSpec {
                field,
                pointer: source.pointer,
                factor,
                default: source.default,
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(Part {
        pattern,
        fields,
        completes,
    })
}

impl Source {
    fn compile(index: usize, c: &SourceConfig) -> Result<Source, SourceError> {
        let (decls, time, keepalive) = if c.preset.is_some() {
            preset_parts(index, c)?
        } else if c.topic.is_empty() {
            return Err(SourceError::PresetOrTopic(index));
        } else {
            let fields = c.fields.clone().into_iter().collect();
            let time = c
                .time
                .clone()
                .map(|p| (p, c.time_format.unwrap_or(TimeFormat::UnixS)));
            (vec![(c.topic.clone(), fields, true)], time, None)
        };
        let parts = decls
            .into_iter()
            .map(|d| check_part(index, c.target, d))
            .collect::<Result<Vec<_>, _>>()?;
        for required in GridField::required(c.target) {
            if !parts
                .iter()
                .flat_map(|p| &p.fields)
                .any(|f| f.field == *required)
            {
                return Err(SourceError::MissingField {
                    index,
                    field: required.name(),
                });
            }
        }
        let bad_id = || SourceError::BadId {
            index,
            template: c.id.clone(),
        };
        let id = Template::parse(&c.id).ok_or_else(bad_id)?;
        // Every part must give every wildcard the id needs.
        if !parts
            .iter()
            .all(|p| id.holes().all(|h| p.pattern.names().any(|n| n == h)))
        {
            return Err(bad_id());
        }
        let zone = match &c.time_zone {
            Some(zone) => TimeZone::get(zone).map_err(|_| SourceError::TimeZone {
                index,
                zone: zone.clone(),
            })?,
            None => TimeZone::system(),
        };
        let name = match (&c.name, c.preset) {
            (name, _) if !name.is_empty() => name.clone(),
            (_, Some(preset)) => format!(
                "{}:{}",
                serde_json::to_value(preset)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                c.prefix
            ),
            (_, None) => c.topic.clone(),
        };
        Ok(Source {
            name,
            target: c.target,
            id,
            invert: c.invert,
            parts,
            time: time.map(|(pointer, format)| TimeSpec {
                pointer,
                format,
                zone,
            }),
            value_age_max_ms: i64::try_from(c.value_age_max_ms).unwrap_or(i64::MAX),
            keepalive,
            held: HashMap::new(),
        })
    }

    /// What `message` becomes if one of this source's patterns takes its topic.
    pub fn decode(&mut self, message: &Message<'_>) -> Option<Result<Decoded, MessageError>> {
        let (part, id_text) = {
            let (part, captures): (usize, Captures<'_, '_>) = self
                .parts
                .iter()
                .enumerate()
                .find_map(|(p, part)| part.pattern.matches(message.topic).map(|c| (p, c)))?;
            (part, self.id.fill(|hole| captures.get(hole)))
        };
        // Checked with the configuration: every part has every wildcard the id names.
        let id_text = id_text.map_err(|hole| MessageError::BadId {
            id: format!("{{{hole}}}"),
            reason: "the topic lacks this wildcard".into(),
        });
        Some(id_text.and_then(|id_text| self.decode_part(part, id_text, message)))
    }

    fn decode_part(
        &mut self,
        part: usize,
        id_text: String,
        message: &Message<'_>,
    ) -> Result<Decoded, MessageError> {
        if message.retained && self.time.is_none() {
            return Err(MessageError::RetainedWithoutTime);
        }
        let id = EntityId::new(&id_text).map_err(|e| MessageError::BadId {
            id: id_text.clone(),
            reason: e.to_string(),
        })?;
        let doc = payload::parse(message.payload)?;
        let part = &self.parts[part];
        let values = read_fields(&doc, &part.fields)?;
        let time_ms = match (&self.time, part.completes) {
            (_, false) => None,
            (Some(t), true) => Some(payload::time_ms(&doc, &t.pointer, t.format, &t.zone)?),
            (None, true) => Some(message.received_ms),
        };
        if self.parts.len() == 1 {
            // One topic, one reading: nothing to hold between messages.
            let time_ms = time_ms.unwrap_or(message.received_ms);
            return self.command(id, time_ms, |f| {
                values.iter().find(|(g, _)| *g == f).map(|(_, v)| v)
            });
        }
        let now_ms = message.received_ms;
        let age_max_ms = self.value_age_max_ms;
        let held = self.hold(&id_text, values, now_ms)?;
        let Some(time_ms) = time_ms else {
            return Ok(Decoded::Held);
        };
        let fresh: Vec<(GridField, Held)> = held
            .iter()
            .filter(|(_, _, at_ms)| now_ms.saturating_sub(*at_ms) <= age_max_ms)
            .map(|(f, v, _)| (*f, v.clone()))
            .collect();
        self.command(id, time_ms, |f| {
            fresh.iter().find(|(g, _)| *g == f).map(|(_, v)| v)
        })
    }

    /// Stores `values` as the device's newest; the device's values now.
    fn hold(
        &mut self,
        device: &str,
        values: Vec<(GridField, Held)>,
        now_ms: i64,
    ) -> Result<&Vec<(GridField, Held, i64)>, MessageError> {
        if !self.held.contains_key(device) && self.held.len() >= DEVICES_PER_SOURCE_MAX {
            return Err(MessageError::TooManyDevices);
        }
        let held = self.held.entry(device.to_string()).or_default();
        for (field, value) in values {
            match held.iter_mut().find(|(f, _, _)| *f == field) {
                Some(slot) => *slot = (field, value, now_ms),
                None => held.push((field, value, now_ms)),
            }
        }
        Ok(held)
    }

    /// The command of the device's values.
    fn command<'v>(
        &self,
        id: EntityId,
        time_ms: i64,
        value: impl Fn(GridField) -> Option<&'v Held>,
    ) -> Result<Decoded, MessageError> {
        let number = |f: GridField| match value(f) {
            Some(Held::Number(n)) => Some(*n),
            _ => None,
        };
        let required = |f: GridField| number(f).ok_or(MessageError::Incomplete { field: f.name() });
        let command = match self.target {
            Target::Meter => Command::RecordReading {
                meter: id,
                reading: fields::reading(
                    time_ms,
                    self.invert,
                    |f| Ok(number(f)),
                    |f| MessageError::Incomplete { field: f.name() },
                )?,
            },
            Target::Asset => {
                let power = required(GridField::PowerW)?;
                let status = match value(GridField::Status) {
                    Some(Held::Text(text)) => text.as_str(),
                    _ => "ok",
                };
                Command::RecordTelemetry {
                    asset: id,
                    telemetry: Telemetry {
                        time_ms,
                        power_w: if self.invert { -power } else { power },
                        soc_pct: number(GridField::SocPct),
                        status: Label::new(status)
                            .map_err(|_| MessageError::BadStatus(status.into()))?,
                    },
                }
            }
        };
        Ok(Decoded::Command(command))
    }
}

/// The values `fields` find in `doc` (absent ones left out, defaults filled in).
fn read_fields(doc: &Value, fields: &[FieldSpec]) -> Result<Vec<(GridField, Held)>, PayloadError> {
    let mut values = Vec::with_capacity(fields.len());
    for spec in fields {
        let value = if spec.field == GridField::Status {
            payload::text(doc, &spec.pointer)?.map(|t| Held::Text(t.into()))
        } else {
            payload::number(doc, &spec.pointer, spec.factor)?
                .or(spec.default)
                .map(Held::Number)
        };
        if let Some(value) = value {
            values.push((spec.field, value));
        }
    }
    Ok(values)
}

/// Every configured source, and which takes a topic.
#[derive(Debug)]
pub struct Sources {
    sources: Vec<Source>,
}

impl Sources {
    /// Checks and compiles `config.source`.
    pub fn new(config: &MqttConfig) -> Result<Sources, SourceError> {
        if config.source.len() > SOURCES_MAX {
            return Err(SourceError::TooMany(config.source.len()));
        }
        let sources = config
            .source
            .iter()
            .enumerate()
            .map(|(i, c)| Source::compile(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources { sources })
    }

    /// The sources, in configuration order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The subscription filters, each once.
    pub fn filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = Vec::new();
        for filter in self
            .sources
            .iter()
            .flat_map(|s| s.parts.iter().map(|p| p.pattern.filter()))
        {
            if !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        filters
    }

    /// Topics to publish to regularly (Victron's keep-alive), each once.
    pub fn keepalive_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for topic in self.sources.iter().filter_map(|s| s.keepalive.clone()) {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics
    }

    /// The first source whose patterns take `topic`.
    pub fn source_of(&self, topic: &str) -> Option<usize> {
        self.sources
            .iter()
            .position(|s| s.parts.iter().any(|p| p.pattern.matches(topic).is_some()))
    }

    /// The first source whose pattern matches `message.topic` (its index), and what the
    /// message became; `None` if no source takes the topic.
    pub fn decode(
        &mut self,
        message: &Message<'_>,
    ) -> Option<(usize, Result<Decoded, MessageError>)> {
        self.sources
            .iter_mut()
            .enumerate()
            .find_map(|(index, source)| source.decode(message).map(|r| (index, r)))
    }
}

#[cfg(test)]
mod tests;
