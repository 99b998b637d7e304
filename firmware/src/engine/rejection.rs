//! Why a command is refused: a [`RejectionCode`] (one variant per rule, with its stable
//! wire spelling in [`RejectionCode::as_str`], the only place it is written) and the
//! [`Rejection`] that carries it with the field at fault and words for people. Depends on
//! nothing else in the engine; the host maps every code to an HTTP status with an
//! exhaustive `match`, so a new code cannot be forgotten there.

/// The stable code of a rejection, for programs. Spelled on the wire by
/// [`RejectionCode::as_str`] (snake_case), in JSON and logs alike.
///
/// Deliberately not `#[non_exhaustive]`: a new code must break every exhaustive `match`
/// over it (the host's HTTP status above all) until someone decides how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionCode {
    /// The command's `expected_seq` is not the entity's seq.
    SeqMismatch,
    /// An id reserved for the gateway's own entities, or a system event for another id.
    ReservedId,
    /// A register width outside 8..=64 bits.
    InvalidRegisterBits,
    /// The entity is registered with other properties.
    AlreadyRegistered,
    /// A rated power that is not positive.
    InvalidRatedPower,
    /// A value that is not a finite number.
    InvalidNumber,
    /// A negative energy register or capacity.
    NegativeEnergy,
    /// A value beyond its physical range (see `POWER_W_ABS_MAX` and the others).
    ValueOutOfRange,
    /// The meter is decommissioned.
    MeterDecommissioned,
    /// A replacement dated at or before the old meter's newest reading.
    ReplacementBeforeLatest,
    /// A state of charge outside 0..=100 %.
    InvalidSoc,
    /// A setpoint above the asset's rated power.
    SetpointAboveRated,
    /// A negative setpoint for an asset that is not a battery.
    SetpointNegative,
    /// A setpoint requested of an asset not available for control.
    AssetUnavailable,
    /// One more active fault than an asset can hold (`ASSET_FAULTS_MAX`).
    TooManyFaults,
    /// A meter command for an entity that is not a meter.
    NotAMeter,
    /// A meter command for a meter that is not registered.
    UnknownMeter,
    /// An asset command for an entity that is not an asset.
    NotAnAsset,
    /// An asset command for an asset that is not registered.
    UnknownAsset,
    /// A measurement time before `TIME_MS_MIN` (a clock never set).
    TimeTooEarly,
    /// A measurement time further ahead of the gateway clock than `Rules::future_skew_ms`.
    TimeInFuture,
    /// A register value beyond the meter's register width.
    RegisterOutOfRange,
    /// A different reading at a time the meter already has one for.
    ConflictingDuplicate,
    /// A reading dated before the meter's replacement (it belongs to the old meter).
    BeforeReplacement,
    /// A late reading dated where the meter's stored times are no longer known
    /// (`READING_RUNS_MAX`): it could be a reading already stored, so it is not stored.
    BeyondDuplicateHistory,
    /// A register that dropped to exactly 0 without a recorded replacement.
    SuspectReset,
    /// A register that went down, neither a wrap nor after a replacement.
    RegisterDecreased,
    /// A late reading whose register is above a newer reading's.
    RegisterNotMonotonic,
    /// A new meter or asset beyond `Rules::entities_max`.
    TooManyEntities,
    /// The request's events do not fit in one log frame.
    RequestTooLarge,
    /// A fault of the engine itself (a bug), not of the command.
    Internal,
}

impl RejectionCode {
    /// Every code, in the order of this list: for tables that must cover them all.
    pub const ALL: [RejectionCode; 31] = [
        RejectionCode::SeqMismatch,
        RejectionCode::ReservedId,
        RejectionCode::InvalidRegisterBits,
        RejectionCode::AlreadyRegistered,
        RejectionCode::InvalidRatedPower,
        RejectionCode::InvalidNumber,
        RejectionCode::NegativeEnergy,
        RejectionCode::ValueOutOfRange,
        RejectionCode::MeterDecommissioned,
        RejectionCode::ReplacementBeforeLatest,
        RejectionCode::InvalidSoc,
        RejectionCode::SetpointAboveRated,
        RejectionCode::SetpointNegative,
        RejectionCode::AssetUnavailable,
        RejectionCode::TooManyFaults,
        RejectionCode::NotAMeter,
        RejectionCode::UnknownMeter,
        RejectionCode::NotAnAsset,
        RejectionCode::UnknownAsset,
        RejectionCode::TimeTooEarly,
        RejectionCode::TimeInFuture,
        RejectionCode::RegisterOutOfRange,
        RejectionCode::ConflictingDuplicate,
        RejectionCode::BeforeReplacement,
        RejectionCode::BeyondDuplicateHistory,
        RejectionCode::SuspectReset,
        RejectionCode::RegisterDecreased,
        RejectionCode::RegisterNotMonotonic,
        RejectionCode::TooManyEntities,
        RejectionCode::RequestTooLarge,
        RejectionCode::Internal,
    ];

    /// The code's wire spelling (stable: clients match on it).
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionCode::SeqMismatch => "seq_mismatch",
            RejectionCode::ReservedId => "reserved_id",
            RejectionCode::InvalidRegisterBits => "invalid_register_bits",
            RejectionCode::AlreadyRegistered => "already_registered",
            RejectionCode::InvalidRatedPower => "invalid_rated_power",
            RejectionCode::InvalidNumber => "invalid_number",
            RejectionCode::NegativeEnergy => "negative_energy",
            RejectionCode::ValueOutOfRange => "value_out_of_range",
            RejectionCode::MeterDecommissioned => "meter_decommissioned",
            RejectionCode::ReplacementBeforeLatest => "replacement_before_latest",
            RejectionCode::InvalidSoc => "invalid_soc",
            RejectionCode::SetpointAboveRated => "setpoint_above_rated",
            RejectionCode::SetpointNegative => "setpoint_negative",
            RejectionCode::AssetUnavailable => "asset_unavailable",
            RejectionCode::TooManyFaults => "too_many_faults",
            RejectionCode::NotAMeter => "not_a_meter",
            RejectionCode::UnknownMeter => "unknown_meter",
            RejectionCode::NotAnAsset => "not_an_asset",
            RejectionCode::UnknownAsset => "unknown_asset",
            RejectionCode::TimeTooEarly => "time_too_early",
            RejectionCode::TimeInFuture => "time_in_future",
            RejectionCode::RegisterOutOfRange => "register_out_of_range",
            RejectionCode::ConflictingDuplicate => "conflicting_duplicate",
            RejectionCode::BeforeReplacement => "before_replacement",
            RejectionCode::BeyondDuplicateHistory => "beyond_duplicate_history",
            RejectionCode::SuspectReset => "suspect_reset",
            RejectionCode::RegisterDecreased => "register_decreased",
            RejectionCode::RegisterNotMonotonic => "register_not_monotonic",
            RejectionCode::TooManyEntities => "too_many_entities",
            RejectionCode::RequestTooLarge => "request_too_large",
            RejectionCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectionCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a command was rejected: a stable code for programs, the field at fault, words for
/// people, and the entity's current sequence number where that helps a retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The rule that refused it.
    pub code: RejectionCode,
    /// The request field at fault, if one is.
    pub field: Option<&'static str>,
    /// What is wrong, in words.
    pub message: String,
    /// The entity's current sequence number (on `seq_mismatch`).
    pub current_seq: Option<u64>,
}

impl Rejection {
    pub(crate) fn new(
        code: RejectionCode,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Rejection {
        Rejection {
            code,
            field,
            message: message.into(),
            current_seq: None,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::RejectionCode;

    #[test]
    fn every_code_has_its_own_snake_case_spelling() {
        let mut seen = std::collections::HashSet::new();
        for code in RejectionCode::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} is spelled twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire} is not snake_case"
            );
            assert_eq!(
                postcard::to_allocvec(&code).unwrap(),
                postcard::to_allocvec(wire).unwrap()
            );
            assert_eq!(code.to_string(), wire);
        }
    }
}
