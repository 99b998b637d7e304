//! gridlog's fields as every ingest front end names them (`import_wh`, `power_w`, …), the
//! units a source may give them in, and the factor from one to the other. Shared by the
//! line-protocol mappings and the MQTT sources, so a unit means the same in both.

/// A gridlog field an ingest source can fill.
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

/// What a source produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A meter reading.
    Meter,
    /// Asset telemetry.
    Asset,
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

    /// Its name in configuration and in gridlog's API.
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

    /// The fields `target` has.
    pub(crate) fn of(target: Target) -> &'static [GridField] {
        match target {
            Target::Meter => &GridField::METER,
            Target::Asset => &GridField::ASSET,
        }
    }

    /// The field of `target` called `name`.
    pub(crate) fn named(target: Target, name: &str) -> Option<GridField> {
        GridField::of(target)
            .iter()
            .copied()
            .find(|f| f.name() == name)
    }

    /// The fields `target` cannot do without.
    pub(crate) fn required(target: Target) -> &'static [GridField] {
        match target {
            Target::Meter => &[GridField::ImportWh, GridField::ExportWh, GridField::PowerW],
            Target::Asset => &[GridField::PowerW],
        }
    }
}

/// A meter reading of `value`s, in gridlog's units; `invert` swaps import and export and
/// negates power (sites wired the other way). A required field without a value is
/// `missing(field)`; optional ones are left out.
pub(crate) fn reading<E>(
    time_ms: i64,
    invert: bool,
    mut value: impl FnMut(GridField) -> Result<Option<f64>, E>,
    missing: impl Fn(GridField) -> E,
) -> Result<gridlog_common::domain::Reading, E> {
    let mut required = |field| value(field)?.ok_or_else(|| missing(field));
    let (import, export, power) = (
        required(GridField::ImportWh)?,
        required(GridField::ExportWh)?,
        required(GridField::PowerW)?,
    );
    let (import_wh, export_wh, power_w) = if invert {
        (export, import, -power)
    } else {
        (import, export, power)
    };
    let mut optional = |field| Ok(value(field)?.map(|v| v as f32));
    Ok(gridlog_common::domain::Reading {
        time_ms,
        import_wh,
        export_wh,
        power_w,
        voltage_v: optional(GridField::VoltageV)?,
        current_a: optional(GridField::CurrentA)?,
        reactive_power_var: optional(GridField::ReactivePowerVar)?,
    })
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

/// Why a field's unit or scale cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Both a unit and a scale.
    #[error("give unit or scale, not both")]
    Both,
    /// A unit of another quantity (`kW` for an energy field).
    #[error("unit {0:?} does not measure this field")]
    WrongQuantity(String),
    /// A unit gridlog does not know.
    #[error("unknown unit {0:?} (Wh, kWh, MWh, W, kW, MW, V, A, var, kvar, %)")]
    Unknown(String),
    /// A scale for a text field.
    #[error("a text field takes no scale, not {0}")]
    ScaleOfText(f64),
    /// A scale of 0, NaN or infinity.
    #[error("scale must be finite and non-zero, not {0}")]
    BadScale(f64),
}

/// The factor from a source's `unit` or `scale` to `field`'s own unit (1 if neither).
pub(crate) fn factor(
    field: GridField,
    unit_name: Option<&str>,
    scale: Option<f64>,
) -> Result<f64, UnitError> {
    match (unit_name, scale) {
        (Some(_), Some(_)) => Err(UnitError::Both),
        (Some(name), None) => match unit(name) {
            Some((quantity, factor)) if quantity == field.quantity() => Ok(factor),
            Some(_) => Err(UnitError::WrongQuantity(name.into())),
            None => Err(UnitError::Unknown(name.into())),
        },
        (None, Some(scale)) if field.quantity() == Quantity::Text => {
            Err(UnitError::ScaleOfText(scale))
        }
        (None, Some(scale)) if scale.is_finite() && scale != 0.0 => Ok(scale),
        (None, Some(scale)) => Err(UnitError::BadScale(scale)),
        (None, None) => Ok(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_to_the_fields_own_unit_and_refuse_other_quantities() {
        assert_eq!(factor(GridField::ImportWh, Some("kWh"), None), Ok(1e3));
        assert_eq!(factor(GridField::PowerW, Some("kW"), None), Ok(1e3));
        assert_eq!(factor(GridField::PowerW, None, Some(-1.0)), Ok(-1.0));
        assert_eq!(factor(GridField::PowerW, None, None), Ok(1.0));
        assert_eq!(
            factor(GridField::ImportWh, Some("kW"), None),
            Err(UnitError::WrongQuantity("kW".into()))
        );
        assert_eq!(
            factor(GridField::ImportWh, Some("kwh"), None),
            Err(UnitError::Unknown("kwh".into()))
        );
        assert_eq!(
            factor(GridField::Status, None, Some(2.0)),
            Err(UnitError::ScaleOfText(2.0))
        );
        assert!(matches!(
            factor(GridField::PowerW, None, Some(0.0)),
            Err(UnitError::BadScale(_))
        ));
        assert_eq!(
            factor(GridField::PowerW, Some("W"), Some(1.0)),
            Err(UnitError::Both)
        );
    }
}
