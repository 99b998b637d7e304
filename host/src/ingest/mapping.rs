//! From a parsed point to an engine command: which entity, which fields, which units.
//!
//! Two default mappings work with no configuration: measurement `meter` (tag `id`; fields
//! `import_wh`, `export_wh`, `power_w`, `voltage_v`, `current_a`, `reactive_power_var`)
//! gives [`Command::RecordReading`], measurement `asset` (tag `id`; fields `power_w`,
//! `soc_pct`, `status`) gives [`Command::RecordTelemetry`]. Configured mappings
//! (`[[ingest.mapping]]`) are tried first, in order; the first whose measurement and tag
//! filters match a point maps it.
//!
//! A mapping converts and renames; it never judges a value. A kWh register mapped as Wh
//! arrives 1000× too small and the engine's rules (counters, duplicates) still decide.

use std::collections::BTreeMap;

use gridlog_common::domain::{Command, Reading, Telemetry};
use gridlog_common::id::{EntityId, Label};
use serde::{Deserialize, Serialize};

use super::line_protocol::{FieldValue, Point};

/// Most `[[ingest.mapping]]` entries: each point is matched against them in order.
pub const MAPPINGS_MAX: usize = 256;

/// What a mapping produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A meter reading.
    Meter,
    /// Asset telemetry.
    Asset,
}

/// One `[[ingest.mapping]]` entry as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// The measurement it maps.
    pub measurement: String,
    /// Tags a point must carry with these values (all of them). Default none.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `meter` or `asset`.
    pub target: Target,
    /// The entity id: a template over tags, `{tag}` replaced by the tag's value. Default
    /// `{id}`.
    #[serde(default = "default_id_template")]
    pub id: String,
    /// Swap import and export and negate power (sites wired the other way). Default false.
    #[serde(default)]
    pub invert: bool,
    /// Per gridlog field (`import_wh`, `power_w`, `soc_pct` …) where its value comes from.
    pub fields: BTreeMap<String, FieldSource>,
}

fn default_id_template() -> String {
    "{id}".into()
}

/// Where one gridlog field comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSource {
    /// The field of the point.
    pub source: String,
    /// Its unit: `Wh`, `kWh`, `MWh`, `W`, `kW`, `MW`, `V`, `A`, `var`, `kvar`, `%`. Default:
    /// the gridlog field's own unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// A factor instead of a unit (the value is multiplied by it). Default none.
    #[serde(default)]
    pub scale: Option<f64>,
}

/// A mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// More mappings than [`MAPPINGS_MAX`].
    #[error("{count} ingest mappings; the maximum is {max}")]
    TooMany {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field gridlog does not have for the target.
    #[error("mapping {index} ({measurement}): {field:?} is not a {target:?} field")]
    UnknownField {
        /// The mapping's position.
        index: usize,
        /// Its measurement.
        measurement: String,
        /// The field.
        field: String,
        /// Its target.
        target: Target,
    },
    /// A field the target needs is not mapped.
    #[error("mapping {index} ({measurement}): field {field} is required")]
    MissingField {
        /// The mapping's position.
        index: usize,
        /// Its measurement.
        measurement: String,
        /// The field.
        field: &'static str,
    },
    /// A unit that is not the field's kind of quantity, or a bad scale.
    #[error("mapping {index} ({measurement}): field {field}: {reason}")]
    BadUnit {
        /// The mapping's position.
        index: usize,
        /// Its measurement.
        measurement: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An id template with an unclosed or empty `{}`.
    #[error("mapping {index} ({measurement}): id template {template:?} is malformed")]
    BadTemplate {
        /// The mapping's position.
        index: usize,
        /// Its measurement.
        measurement: String,
        /// The template.
        template: String,
    },
}

/// Why a point that has a mapping could not be mapped (the line is refused).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The id template names a tag the point does not have.
    #[error("tag {tag:?} (for the {target:?} id) is missing")]
    MissingTag {
        /// The tag.
        tag: String,
        /// The target.
        target: Target,
    },
    /// The id built is not a valid entity id.
    #[error("id {id:?} is not a valid entity id: {reason}")]
    BadId {
        /// The id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A required field is absent.
    #[error("field {field:?} is missing")]
    MissingField {
        /// The source field.
        field: String,
    },
    /// A numeric field holds a string or boolean, or a status field holds no text.
    #[error("field {field:?} is {given}, not {wanted}")]
    WrongType {
        /// The source field.
        field: String,
        /// The type given.
        given: &'static str,
        /// The type wanted.
        wanted: &'static str,
    },
    /// The value after scaling is not finite.
    #[error("field {field:?} is out of range after scaling")]
    OutOfRange {
        /// The source field.
        field: String,
    },
    /// A status text that is not a valid label.
    #[error("field {field:?}: status {value:?} is not a valid label")]
    BadStatus {
        /// The source field.
        field: String,
        /// The value.
        value: String,
    },
}

impl MapError {
    /// The source field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            MapError::MissingField { field }
            | MapError::WrongType { field, .. }
            | MapError::OutOfRange { field }
            | MapError::BadStatus { field, .. } => Some(field),
            MapError::MissingTag { tag, .. } => Some(tag),
            MapError::BadId { .. } => None,
        }
    }
}

/// A gridlog field a mapping can fill (also the Modbus poller's register targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GridField {
    ImportWh,
    ExportWh,
    PowerW,
    VoltageV,
    CurrentA,
    ReactivePowerVar,
    SocPct,
    Status,
}

/// The quantity a field or unit measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantity {
    Energy,
    Power,
    Voltage,
    Current,
    Reactive,
    Percent,
    Text,
}

impl GridField {
    const METER: [GridField; 6] = [
        GridField::ImportWh,
        GridField::ExportWh,
        GridField::PowerW,
        GridField::VoltageV,
        GridField::CurrentA,
        GridField::ReactivePowerVar,
    ];
    const ASSET: [GridField; 3] = [GridField::PowerW, GridField::SocPct, GridField::Status];

    pub(crate) fn name(self) -> &'static str {
        match self {
            GridField::ImportWh => "import_wh",
            GridField::ExportWh => "export_wh",
            GridField::PowerW => "power_w",
            GridField::VoltageV => "voltage_v",
            GridField::CurrentA => "current_a",
            GridField::ReactivePowerVar => "reactive_power_var",
            GridField::SocPct => "soc_pct",
            GridField::Status => "status",
        }
    }

    pub(crate) fn quantity(self) -> Quantity {
        match self {
            GridField::ImportWh | GridField::ExportWh => Quantity::Energy,
            GridField::PowerW => Quantity::Power,
            GridField::VoltageV => Quantity::Voltage,
            GridField::CurrentA => Quantity::Current,
            GridField::ReactivePowerVar => Quantity::Reactive,
            GridField::SocPct => Quantity::Percent,
            GridField::Status => Quantity::Text,
        }
    }

    pub(crate) fn of(target: Target) -> &'static [GridField] {
        match target {
            Target::Meter => &GridField::METER,
            Target::Asset => &GridField::ASSET,
        }
    }

    pub(crate) fn required(target: Target) -> &'static [GridField] {
        match target {
            Target::Meter => &[GridField::ImportWh, GridField::ExportWh, GridField::PowerW],
            Target::Asset => &[GridField::PowerW],
        }
    }
}

/// The quantity and factor to the gridlog unit of a unit's name.
fn unit(name: &str) -> Option<(Quantity, f64)> {
    Some(match name {
        "Wh" => (Quantity::Energy, 1.0),
        "kWh" => (Quantity::Energy, 1e3),
        "MWh" => (Quantity::Energy, 1e6),
        "W" => (Quantity::Power, 1.0),
        "kW" => (Quantity::Power, 1e3),
        "MW" => (Quantity::Power, 1e6),
        "V" => (Quantity::Voltage, 1.0),
        "A" => (Quantity::Current, 1.0),
        "var" => (Quantity::Reactive, 1.0),
        "kvar" => (Quantity::Reactive, 1e3),
        "%" => (Quantity::Percent, 1.0),
        _ => return None,
    })
}

/// One part of an id template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdPart {
    Text(String),
    Tag(String),
}

pub(crate) fn parse_template(template: &str) -> Option<Vec<IdPart>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(IdPart::Text(rest[..open].into()));
        }
        let close = rest[open..].find('}')? + open;
        let tag = &rest[open + 1..close];
        if tag.is_empty() || tag.contains('{') {
            return None;
        }
        parts.push(IdPart::Tag(tag.into()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    if !rest.is_empty() {
        parts.push(IdPart::Text(rest.into()));
    }
    (!parts.is_empty()).then_some(parts)
}

/// A checked mapping.
#[derive(Debug, Clone)]
struct Mapping {
    measurement: String,
    tags: Vec<(String, String)>,
    target: Target,
    id: Vec<IdPart>,
    invert: bool,
    /// Gridlog field, source field, factor.
    fields: Vec<(GridField, String, f64)>,
}

impl Mapping {
    fn check(index: usize, config: &MappingConfig) -> Result<Mapping, MappingError> {
        let measurement = config.measurement.clone();
        let id = parse_template(&config.id).ok_or_else(|| MappingError::BadTemplate {
            index,
            measurement: measurement.clone(),
            template: config.id.clone(),
        })?;
        let mut fields = Vec::new();
        for (name, source) in &config.fields {
            let field = GridField::of(config.target)
                .iter()
                .copied()
                .find(|f| f.name() == name)
                .ok_or_else(|| MappingError::UnknownField {
                    index,
                    measurement: measurement.clone(),
                    field: name.clone(),
                    target: config.target,
                })?;
            let factor = factor(field, source).map_err(|reason| MappingError::BadUnit {
                index,
                measurement: measurement.clone(),
                field: name.clone(),
                reason,
            })?;
            fields.push((field, source.source.clone(), factor));
        }
        for required in GridField::required(config.target) {
            if !fields.iter().any(|(f, _, _)| f == required) {
                return Err(MappingError::MissingField {
                    index,
                    measurement,
                    field: required.name(),
                });
            }
        }
        Ok(Mapping {
            measurement,
            tags: config.tags.clone().into_iter().collect(),
            target: config.target,
            id,
            invert: config.invert,
            fields,
        })
    }

    /// The default mapping of `target`: measurement and fields named as gridlog names them.
    fn default_for(target: Target, measurement: &str) -> Mapping {
        Mapping {
            measurement: measurement.into(),
            tags: Vec::new(),
            target,
            id: vec![IdPart::Tag("id".into())],
            invert: false,
            fields: GridField::of(target)
                .iter()
                .map(|f| (*f, f.name().to_string(), 1.0))
                .collect(),
        }
    }

    fn matches(&self, point: &Point<'_>) -> bool {
        point.measurement == self.measurement.as_str()
            && self
                .tags
                .iter()
                .all(|(k, v)| point.tag(k) == Some(v.as_str()))
    }
}

/// The factor of a field's source: from its unit or scale, checked against the field.
pub(crate) fn factor(field: GridField, source: &FieldSource) -> Result<f64, String> {
    match (&source.unit, source.scale) {
        (Some(_), Some(_)) => Err("give unit or scale, not both".into()),
        (Some(name), None) => match unit(name) {
            Some((quantity, factor)) if quantity == field.quantity() => Ok(factor),
            Some(_) => Err(format!("unit {name:?} does not measure this field")),
            None => Err(format!("unknown unit {name:?}")),
        },
        (None, Some(scale)) if field.quantity() == Quantity::Text => {
            Err(format!("a text field takes no scale, not {scale}"))
        }
        (None, Some(scale)) if scale.is_finite() && scale != 0.0 => Ok(scale),
        (None, Some(scale)) => Err(format!("scale must be finite and non-zero, not {scale}")),
        (None, None) => Ok(1.0),
    }
}

/// What became of one point.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// The command to submit.
    Command(Command),
    /// No mapping takes its measurement: counted, not an error.
    Unmapped,
}

/// The configured mappings followed by the defaults.
#[derive(Debug, Clone)]
pub struct Mapper {
    mappings: Vec<Mapping>,
}

impl Mapper {
    /// Checks `configs` and adds the default mappings after them.
    pub fn new(configs: &[MappingConfig]) -> Result<Mapper, MappingError> {
        if configs.len() > MAPPINGS_MAX {
            return Err(MappingError::TooMany {
                count: configs.len(),
                max: MAPPINGS_MAX,
            });
        }
        let mut mappings = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Mapping::check(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        mappings.push(Mapping::default_for(Target::Meter, "meter"));
        mappings.push(Mapping::default_for(Target::Asset, "asset"));
        Ok(Mapper { mappings })
    }

    /// Maps `point`; a point without a timestamp takes `now_ms`.
    pub fn map(&self, point: &Point<'_>, now_ms: i64) -> Result<Mapped, MapError> {
        let Some(mapping) = self.mappings.iter().find(|m| m.matches(point)) else {
            return Ok(Mapped::Unmapped);
        };
        let id = entity_id(mapping, point)?;
        let time_ms = point.time_ns.map_or(now_ms, |ns| ns.div_euclid(1_000_000));
        let values = Values { mapping, point };
        Ok(Mapped::Command(match mapping.target {
            Target::Meter => {
                let (import_wh, export_wh, power_w) = {
                    let import = values.number(GridField::ImportWh)?.unwrap_or_default();
                    let export = values.number(GridField::ExportWh)?.unwrap_or_default();
                    let power = values.number(GridField::PowerW)?.unwrap_or_default();
                    if mapping.invert {
                        (export, import, -power)
                    } else {
                        (import, export, power)
                    }
                };
                Command::RecordReading {
                    meter: id,
                    reading: Reading {
                        time_ms,
                        import_wh,
                        export_wh,
                        power_w,
                        voltage_v: values.number(GridField::VoltageV)?.map(|v| v as f32),
                        current_a: values.number(GridField::CurrentA)?.map(|v| v as f32),
                        reactive_power_var: values
                            .number(GridField::ReactivePowerVar)?
                            .map(|v| v as f32),
                    },
                }
            }
            Target::Asset => {
                let power = values.number(GridField::PowerW)?.unwrap_or_default();
                Command::RecordTelemetry {
                    asset: id,
                    telemetry: Telemetry {
                        time_ms,
                        power_w: if mapping.invert { -power } else { power },
                        soc_pct: values.number(GridField::SocPct)?,
                        status: values.status()?,
                    },
                }
            }
        }))
    }
}

fn entity_id(mapping: &Mapping, point: &Point<'_>) -> Result<EntityId, MapError> {
    let mut id = String::new();
    for part in &mapping.id {
        match part {
            IdPart::Text(text) => id.push_str(text),
            IdPart::Tag(tag) => {
                id.push_str(point.tag(tag).ok_or_else(|| MapError::MissingTag {
                    tag: tag.clone(),
                    target: mapping.target,
                })?)
            }
        }
    }
    EntityId::new(&id).map_err(|e| MapError::BadId {
        id,
        reason: e.to_string(),
    })
}

/// The values of one point under one mapping.
struct Values<'m, 'p> {
    mapping: &'m Mapping,
    point: &'m Point<'p>,
}

impl Values<'_, '_> {
    fn source(&self, field: GridField) -> Option<(&str, f64, Option<&FieldValue<'_>>)> {
        let (_, source, factor) = self.mapping.fields.iter().find(|(f, _, _)| *f == field)?;
        Some((source, *factor, self.point.field(source)))
    }

    /// The field's value in gridlog's unit; `None` if it is absent and optional.
    fn number(&self, field: GridField) -> Result<Option<f64>, MapError> {
        let Some((source, factor, value)) = self.source(field) else {
            return Ok(None);
        };
        let raw = match value {
            Some(FieldValue::Float(v)) => *v,
            Some(FieldValue::Integer(v)) => *v as f64,
            Some(FieldValue::Unsigned(v)) => *v as f64,
            Some(other) => {
                return Err(MapError::WrongType {
                    field: source.into(),
                    given: other.type_name(),
                    wanted: "a number",
                })
            }
            None if GridField::required(self.mapping.target).contains(&field) => {
                return Err(MapError::MissingField {
                    field: source.into(),
                })
            }
            None => return Ok(None),
        };
        let scaled = raw * factor;
        if !scaled.is_finite() {
            return Err(MapError::OutOfRange {
                field: source.into(),
            });
        }
        Ok(Some(scaled))
    }

    /// The status label; `ok` when the point has none (as `POST …/telemetry`).
    fn status(&self) -> Result<Label, MapError> {
        let text = match self.source(GridField::Status) {
            Some((_, _, None)) | None => "ok",
            Some((_, _, Some(FieldValue::String(s)))) => s.as_ref(),
            Some((source, _, Some(other))) => {
                return Err(MapError::WrongType {
                    field: source.into(),
                    given: other.type_name(),
                    wanted: "a string",
                })
            }
        };
        Label::new(text).map_err(|_| MapError::BadStatus {
            field: self
                .source(GridField::Status)
                .map_or("status", |s| s.0)
                .into(),
            value: text.into(),
        })
    }
}

#[cfg(test)]
mod tests;
