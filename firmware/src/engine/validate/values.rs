//! The physical ranges of measured values and the checks that hold them: finite, not
//! negative where it is an energy, within a bound, and measurement times a set clock can
//! give. Depends only on [`Rejection`]. Every check runs per reading from `validate.rs`,
//! another module (and maybe codegen unit): they are `#[inline]` (see [`super::super::state`]).

use gridlog_common::domain::Reading;

use super::super::rejection::{Rejection, RejectionCode};

// Physical ranges of measured values. Finite is not enough: a value near f64::MAX passes
// `is_finite` and then overflows the sums of rollups and site totals (to infinity, which
// JSON writes as `null`), and a power above f32::MAX overflows the rollups' f32 min/max.
// Each bound is far beyond any real site (the largest power plants are a few GW) and far
// below where sums of millions of values could overflow.

/// Largest magnitude of a power (meter and asset power, rated power, setpoints): 1 GW.
pub const POWER_W_ABS_MAX: f64 = 1e9;
/// Largest magnitude of a reactive power: 1 Gvar.
pub const REACTIVE_POWER_VAR_ABS_MAX: f64 = 1e9;
/// Largest energy register (import, export, a replacement's start values) and asset
/// capacity: 1 PWh, 10^15 Wh.
pub const ENERGY_WH_MAX: f64 = 1e15;
/// Largest magnitude of a voltage: 1 MV.
pub const VOLTAGE_V_ABS_MAX: f64 = 1e6;
/// Largest magnitude of a current: 1 MA.
pub const CURRENT_A_ABS_MAX: f64 = 1e6;

// Sums stay finite: 20,000 meters' rollups of values at the bounds are far from f64::MAX,
// and every bound fits an f32 (the rollups' min/max).
const _: () = assert!(POWER_W_ABS_MAX < f32::MAX as f64);
const _: () = assert!(REACTIVE_POWER_VAR_ABS_MAX < f32::MAX as f64);
const _: () = assert!(ENERGY_WH_MAX < f32::MAX as f64);

#[inline]
pub(super) fn finite(value: f64, field: &'static str) -> Result<(), Rejection> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectionCode::InvalidNumber,
            Some(field),
            format!("{field} must be a finite number, got {value}"),
        ))
    }
}

#[inline]
fn non_negative(value: f64, field: &'static str) -> Result<(), Rejection> {
    finite(value, field)?;
    if value < 0.0 {
        return Err(Rejection::new(
            RejectionCode::NegativeEnergy,
            Some(field),
            format!("{field} must not be negative, got {value}"),
        ));
    }
    Ok(())
}

/// A finite value whose magnitude is at most `max` (`unit` for the message).
#[inline]
pub(super) fn within(
    value: f64,
    max: f64,
    field: &'static str,
    unit: &str,
) -> Result<(), Rejection> {
    finite(value, field)?;
    if value.abs() > max {
        return Err(Rejection::new(
            RejectionCode::ValueOutOfRange,
            Some(field),
            format!("{field} must be within -{max:e}..={max:e} {unit}, got {value:e}"),
        ));
    }
    Ok(())
}

/// An energy: finite, not negative, at most [`ENERGY_WH_MAX`].
#[inline]
pub(super) fn energy(value: f64, field: &'static str) -> Result<(), Rejection> {
    non_negative(value, field)?;
    within(value, ENERGY_WH_MAX, field, "Wh")
}

/// The measured values of a reading, each within its physical range.
#[inline]
pub(super) fn reading_values(r: &Reading) -> Result<(), Rejection> {
    within(r.power_w, POWER_W_ABS_MAX, "power_w", "W")?;
    energy(r.import_wh, "import_wh")?;
    energy(r.export_wh, "export_wh")?;
    if let Some(v) = r.voltage_v {
        within(f64::from(v), VOLTAGE_V_ABS_MAX, "voltage_v", "V")?;
    }
    if let Some(a) = r.current_a {
        within(f64::from(a), CURRENT_A_ABS_MAX, "current_a", "A")?;
    }
    if let Some(q) = r.reactive_power_var {
        within(
            f64::from(q),
            REACTIVE_POWER_VAR_ABS_MAX,
            "reactive_power_var",
            "var",
        )?;
    }
    Ok(())
}

/// The earliest measurement time accepted: 2000-01-01T00:00:00Z. An earlier time comes
/// from a device whose clock was never set (1970), and the bound keeps interval arithmetic
/// far from the ends of `i64`.
pub const TIME_MS_MIN: i64 = 946_684_800_000;

/// A measurement time: after [`TIME_MS_MIN`], at most `future_skew_ms` ahead of `now_ms`.
#[inline]
pub(super) fn check_time(time_ms: i64, future_skew_ms: i64, now_ms: i64) -> Result<(), Rejection> {
    if time_ms < TIME_MS_MIN {
        return Err(Rejection::new(
            RejectionCode::TimeTooEarly,
            Some("time"),
            "time is before 2000-01-01T00:00:00Z: the device's clock is not set",
        ));
    }
    if time_ms > now_ms.saturating_add(future_skew_ms) {
        return Err(Rejection::new(
            RejectionCode::TimeInFuture,
            Some("time"),
            format!(
                "time is {} s ahead of the gateway clock (allowed: {} s)",
                (time_ms - now_ms) / 1000,
                future_skew_ms / 1000
            ),
        ));
    }
    Ok(())
}
