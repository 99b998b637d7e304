//! Values read from a device → the engine's commands. Pure.
//!
//! Converts and renames, never judges: a value the device does not implement is left out
//! (an optional field stays empty; a reading without its import or export register or its
//! power is not recorded at all, since the engine would have to take a made-up value for
//! it), and every rule of the engine still applies to what is recorded.

use gridlog_common::domain::{Command, Telemetry};
use gridlog_common::id::{EntityId, Label};

use crate::ingest::fields::{self, GridField};

/// The values of one poll, in gridlog's units, each absent unless the device gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Values {
    /// Import register, Wh.
    pub import_wh: Option<f64>,
    /// Export register, Wh.
    pub export_wh: Option<f64>,
    /// Active power, W, positive = import.
    pub power_w: Option<f64>,
    /// Voltage, V.
    pub voltage_v: Option<f64>,
    /// Current, A.
    pub current_a: Option<f64>,
    /// Reactive power, var.
    pub reactive_power_var: Option<f64>,
    /// State of charge, %.
    pub soc_pct: Option<f64>,
}

impl Values {
    /// The value of `field`, if the device gave it (a status is never a value here).
    fn get(&self, field: GridField) -> Option<f64> {
        match field {
            GridField::ImportWh => self.import_wh,
            GridField::ExportWh => self.export_wh,
            GridField::PowerW => self.power_w,
            GridField::VoltageV => self.voltage_v,
            GridField::CurrentA => self.current_a,
            GridField::ReactivePowerVar => self.reactive_power_var,
            GridField::SocPct => self.soc_pct,
            GridField::Status => None,
        }
    }
}

/// A field a record needs is absent from what the device answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not implemented by the device (its \"not implemented\" value), so nothing is recorded")]
pub struct Absent {
    /// The gridlog field.
    pub field: &'static str,
}

/// A meter reading from `values`, timestamped `time_ms`.
pub fn reading(
    meter: &EntityId,
    time_ms: i64,
    v: &Values,
    invert: bool,
) -> Result<Command, Absent> {
    let reading = fields::reading(
        time_ms,
        invert,
        |f| Ok(v.get(f)),
        |f| Absent { field: f.name() },
    )?;
    Ok(Command::RecordReading {
        meter: meter.clone(),
        reading,
    })
}

/// Asset telemetry from `values` with status `status`, timestamped `time_ms`.
pub fn telemetry(
    asset: &EntityId,
    time_ms: i64,
    v: &Values,
    status: &str,
    invert: bool,
) -> Result<Command, Absent> {
    let power = v.power_w.ok_or(Absent { field: "power_w" })?;
    Ok(Command::RecordTelemetry {
        asset: asset.clone(),
        telemetry: Telemetry {
            time_ms,
            power_w: if invert { -power } else { power },
            soc_pct: v.soc_pct,
            // Every name this module passes is a valid label; "unknown" covers the rest.
            status: Label::new(status)
                .or_else(|_| Label::new("unknown"))
                .map_err(|_| Absent { field: "status" })?,
        },
    })
}

/// An entity id from text read from a device (`Mn`, `SN`): characters an id may not hold
/// become `_`, and it is cut at the id's length limit.
pub fn id_from_text(text: &str) -> Result<EntityId, gridlog_common::id::IdError> {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .take(gridlog_common::id::ID_BYTES_MAX)
        .collect();
    EntityId::new(&cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> EntityId {
        EntityId::new(s).unwrap()
    }

    fn full() -> Values {
        Values {
            import_wh: Some(100.5),
            export_wh: Some(2.0),
            power_w: Some(-300.0),
            voltage_v: Some(230.1),
            ..Values::default()
        }
    }

    #[test]
    fn a_reading_carries_the_values_and_invert_swaps_them() {
        let Ok(Command::RecordReading { reading, .. }) = reading(&id("m"), 7, &full(), false)
        else {
            panic!()
        };
        assert_eq!(
            (
                reading.time_ms,
                reading.import_wh,
                reading.export_wh,
                reading.power_w
            ),
            (7, 100.5, 2.0, -300.0)
        );
        assert_eq!(reading.voltage_v, Some(230.1f32));
        assert_eq!(reading.current_a, None);
        let Ok(Command::RecordReading { reading, .. }) = super::reading(&id("m"), 7, &full(), true)
        else {
            panic!()
        };
        assert_eq!(
            (reading.import_wh, reading.export_wh, reading.power_w),
            (2.0, 100.5, 300.0)
        );
    }

    #[test]
    fn an_absent_register_records_nothing_instead_of_zero() {
        let v = Values {
            import_wh: None,
            ..full()
        };
        assert_eq!(
            reading(&id("m"), 7, &v, false),
            Err(Absent { field: "import_wh" })
        );
        let v = Values {
            power_w: None,
            ..full()
        };
        assert_eq!(
            telemetry(&id("a"), 7, &v, "mppt", false),
            Err(Absent { field: "power_w" })
        );
    }

    #[test]
    fn ids_from_device_text_keep_only_id_characters() {
        assert_eq!(
            id_from_text("Acme Meter/3").unwrap().as_str(),
            "Acme_Meter_3"
        );
        assert!(id_from_text("").is_err());
        assert_eq!(id_from_text(&"x".repeat(100)).unwrap().as_str().len(), 64);
    }
}
