//! From a walked SunSpec chain to what gridlog polls and records: the models it reads, the
//! entities they feed (ids from the common model's `Mn` and `SN`), their registrations, and
//! one poll's commands. Pure.
//!
//! - a meter model (201–204, 211–214) → a meter, `{id}` (`{id}-meter` if the device is also
//!   an inverter), registered with 32-bit registers for the acc32 models so the ENGINE
//!   records a wrap as a rollover;
//! - an inverter model (101–103, or 701) → a `pv_inverter` asset `{id}` (telemetry: `W`,
//!   `St`) and, once its `WH` is implemented, a PV meter `{id}-pv` (export = `WH`, import
//!   0: an inverter has no import register; power = −`W`, since a meter's power is
//!   positive for import).

use gridlog_common::domain::{AssetKind, Command, MeterKind};
use gridlog_common::id::EntityId;

use super::mapping::{self, id_from_text, Absent, Values};
use super::sunspec::{model_map, InverterPoints, MeterPoints, ModelAt, ModelRole};
use crate::ingest::template::Template;

/// A model to read each poll: where its window starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The model id.
    pub model: u16,
    /// First register.
    pub address: u16,
    /// How many.
    pub count: u16,
}

/// The models gridlog reads from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Model 1.
    pub common: Window,
    /// The first meter model, if any.
    pub meter: Option<(Window, MeterPoints)>,
    /// The first inverter model, if any.
    pub inverter: Option<(Window, InverterPoints)>,
}

/// A chain gridlog cannot poll.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No common model (1) before the others.
    #[error("the SunSpec map has no common model (1)")]
    NoCommonModel,
    /// Neither a meter nor an inverter model.
    #[error("the SunSpec map has no meter (201-204, 211-214) or inverter (101-103, 701) model")]
    NothingToPoll,
    /// A model shorter than the points gridlog reads from it.
    #[error("model {model} at register {address} has {registers} registers, fewer than the {needed} read from it")]
    ModelTooShort {
        /// The model.
        model: u16,
        /// Its body's first register.
        address: u16,
        /// Its length.
        registers: u16,
        /// What gridlog reads.
        needed: u16,
    },
    /// An inverter without `rated_power_w` in its configuration.
    #[error("the inverter model {model} needs rated_power_w in the device's configuration")]
    NoRatedPower {
        /// The model.
        model: u16,
    },
    /// The id built from the common model is not a valid entity id.
    #[error("the id from the common model ({text:?}) is not a valid entity id")]
    BadId {
        /// The text.
        text: String,
    },
}

/// Chooses the models to read from `models` (a complete chain).
pub fn plan(models: &[ModelAt]) -> Result<Plan, PlanError> {
    let mut common = None;
    let mut meter = None;
    let mut inverter = None;
    for model in models {
        let Some(map) = model_map(model.id) else {
            continue;
        };
        if model.registers < map.window_registers {
            return Err(PlanError::ModelTooShort {
                model: model.id,
                address: model.body_address,
                registers: model.registers,
                needed: map.window_registers,
            });
        }
        let window = Window {
            model: model.id,
            address: model.body_address,
            count: map.window_registers,
        };
        match map.role {
            ModelRole::Common => common = common.or(Some(window)),
            ModelRole::Meter(points) => meter = meter.or(Some((window, points))),
            ModelRole::Inverter(points) => inverter = inverter.or(Some((window, points))),
        }
    }
    let common = common.ok_or(PlanError::NoCommonModel)?;
    if meter.is_none() && inverter.is_none() {
        return Err(PlanError::NothingToPoll);
    }
    Ok(Plan {
        common,
        meter,
        inverter,
    })
}

/// What a device's models feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entities {
    /// The meter of its meter model.
    pub meter: Option<(EntityId, MeterPoints)>,
    /// The asset of its inverter model and its PV meter.
    pub inverter: Option<(EntityId, EntityId, InverterPoints)>,
}

/// How a device's entities are named and registered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Naming<'a> {
    /// The id template.
    pub template: &'a Template,
    /// The meter's kind.
    pub meter_kind: MeterKind,
    /// The inverter's rated power.
    pub rated_power_w: Option<f64>,
}

/// The entities of `plan`, named from the common model's `Mn` and `SN`, and the commands
/// that register them and mark the inverter available (the PV meter is registered with its
/// first reading).
/// `meter_counts_at_most_wh`: the meter model's energy counts are at most 1 Wh each (see
/// [`super::sunspec::counts_at_most_wh`]), so an acc32 meter may be a 32-bit register.
pub fn entities(
    plan: &Plan,
    naming: Naming<'_>,
    manufacturer: &str,
    serial: &str,
    meter_counts_at_most_wh: bool,
) -> Result<(Entities, Vec<Command>), PlanError> {
    // The configuration allows only {Mn} and {SN}: every hole is filled.
    let text = naming
        .template
        .fill(|hole| Some(if hole == "Mn" { manufacturer } else { serial }))
        .unwrap_or_default();
    let bad = |text: String| PlanError::BadId { text };
    let base = id_from_text(&text).map_err(|_| bad(text.clone()))?;
    let suffixed =
        |suffix: &str| id_from_text(&format!("{base}{suffix}")).map_err(|_| bad(text.clone()));
    let mut commands = Vec::new();
    let meter = match plan.meter {
        Some((window, points)) => {
            let id = if plan.inverter.is_some() {
                suffixed("-meter")?
            } else {
                base.clone()
            };
            commands.push(Command::RegisterMeter {
                meter: id.clone(),
                kind: naming.meter_kind,
                register_bits: (wraps_at_32_bits(window.model) && meter_counts_at_most_wh)
                    .then_some(32),
            });
            Some((id, points))
        }
        None => None,
    };
    let inverter = match plan.inverter {
        Some((window, points)) => {
            let rated_power_w = naming.rated_power_w.ok_or(PlanError::NoRatedPower {
                model: window.model,
            })?;
            commands.push(Command::RegisterAsset {
                asset: base.clone(),
                kind: AssetKind::PvInverter,
                rated_power_w,
                capacity_wh: None,
            });
            // It answers: available (a duplicate unless a failure, perhaps before a
            // restart of the gateway, left it unavailable).
            commands.push(Command::ChangeAvailability {
                asset: base.clone(),
                available: true,
            });
            Some((base.clone(), suffixed("-pv")?, points))
        }
        None => None,
    };
    Ok((Entities { meter, inverter }, commands))
}

/// Whether a model's energy registers are acc32 (they wrap at 2^32 raw counts).
pub fn wraps_at_32_bits(model: u16) -> bool {
    matches!(model, 101..=103 | 201..=204)
}

/// The PV meter's registration (`counts_at_most_wh` as for [`entities`]).
pub fn register_pv_meter(pv_meter: &EntityId, model: u16, counts_at_most_wh: bool) -> Command {
    Command::RegisterMeter {
        meter: pv_meter.clone(),
        kind: MeterKind::Pv,
        register_bits: (wraps_at_32_bits(model) && counts_at_most_wh).then_some(32),
    }
}

/// One poll's commands from the windows read, and the points left out because the device
/// does not implement them. `meter_words` and `inverter_words` are the windows of the plan's
/// meter and inverter models.
pub fn poll_commands(
    entities: &Entities,
    time_ms: i64,
    invert: bool,
    meter_words: Option<&[u16]>,
    inverter_words: Option<&[u16]>,
) -> (Vec<Command>, Vec<Absent>) {
    use super::sunspec::point_value as value;
    let mut commands = Vec::new();
    let mut absent = Vec::new();
    let mut push = |result: Result<Command, Absent>| match result {
        Ok(c) => commands.push(c),
        Err(a) => absent.push(a),
    };
    if let (Some((id, p)), Some(w)) = (&entities.meter, meter_words) {
        let values = Values {
            import_wh: value(w, p.import_wh),
            export_wh: value(w, p.export_wh),
            power_w: value(w, p.power_w),
            voltage_v: value(w, p.voltage_v),
            current_a: value(w, p.current_a),
            reactive_power_var: value(w, p.reactive_power_var),
            soc_pct: None,
        };
        push(mapping::reading(id, time_ms, &values, invert));
    }
    if let (Some((asset, pv_meter, p)), Some(w)) = (&entities.inverter, inverter_words) {
        let power_w = value(w, p.power_w);
        let status = value(w, p.state).map_or("unknown", |s| p.states.name(s as u16));
        let telemetry = Values {
            power_w,
            ..Values::default()
        };
        push(mapping::telemetry(
            asset, time_ms, &telemetry, status, invert,
        ));
        if let Some(energy_wh) = value(w, p.energy_wh) {
            let pv = Values {
                import_wh: Some(0.0),
                export_wh: Some(energy_wh),
                power_w: power_w.map(|w| -w),
                ..Values::default()
            };
            push(mapping::reading(pv_meter, time_ms, &pv, false));
        }
    }
    (commands, absent)
}

#[cfg(test)]
mod tests;
