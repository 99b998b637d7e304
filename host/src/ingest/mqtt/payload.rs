//! Reading values out of an MQTT payload: JSON (a pointer per value) or a plain payload
//! (the pointer `""` is the whole payload: `230.1`, `"ON"`), numbers and times. Pure.
//!
//! The payload's size is checked before it reaches here (`mqtt.payload_bytes_max`);
//! serde_json bounds nesting depth, so a hostile payload costs at most its size.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde_json::Value;

/// How a payload's time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Seconds since the Unix epoch (a number, fractions allowed).
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// RFC 3339 with an offset: `2026-05-01T12:00:00+02:00`, `…Z`.
    Rfc3339,
    /// Local time without an offset (`2026-05-01T12:00:00`, Tasmota's `Time`), in the
    /// source's `time_zone`.
    Local,
}

/// Why a value could not be read from a payload. Each names the pointer at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON, and the plain payload is not what the pointer `""` can take.
    #[error("the payload is not JSON ({reason})")]
    NotJson {
        /// The parser's words.
        reason: String,
    },
    /// A number was wanted.
    #[error("{pointer:?} is {given}, not a number")]
    NotANumber {
        /// The pointer.
        pointer: String,
        /// What is there.
        given: &'static str,
    },
    /// A number that is not finite after scaling.
    #[error("{pointer:?} is out of range")]
    OutOfRange {
        /// The pointer.
        pointer: String,
    },
    /// Text was wanted.
    #[error("{pointer:?} is {given}, not text")]
    NotText {
        /// The pointer.
        pointer: String,
        /// What is there.
        given: &'static str,
    },
    /// The time is absent.
    #[error("the time {pointer:?} is missing")]
    MissingTime {
        /// The pointer.
        pointer: String,
    },
    /// A time that does not read in its format.
    #[error("the time {pointer:?} ({text}) is not {format:?} time")]
    BadTime {
        /// The pointer.
        pointer: String,
        /// The value as found.
        text: String,
        /// The format configured.
        format: TimeFormat,
    },
}

/// Parses a payload: JSON, or (not JSON but UTF-8) the trimmed text as a JSON string, so a
/// plain `ON` or `230.1 ` can still be read with the pointer `""`.
pub fn parse(payload: &[u8]) -> Result<Value, PayloadError> {
    match serde_json::from_slice(payload) {
        Ok(value) => Ok(value),
        Err(e) => match std::str::from_utf8(payload) {
            Ok(text) if !text.trim().is_empty() => Ok(Value::String(text.trim().to_string())),
            _ => Err(PayloadError::NotJson {
                reason: e.to_string(),
            }),
        },
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The number at `pointer` times `factor`; `None` when absent or `null` (Victron's
/// "invalid"). A string holding a number is read as that number.
pub fn number(doc: &Value, pointer: &str, factor: f64) -> Result<Option<f64>, PayloadError> {
    let raw = match doc.pointer(pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    let Some(raw) = raw else {
        return Err(PayloadError::NotANumber {
            pointer: pointer.into(),
            given: doc.pointer(pointer).map_or("absent", kind),
        });
    };
    let scaled = raw * factor;
    if !scaled.is_finite() {
        return Err(PayloadError::OutOfRange {
            pointer: pointer.into(),
        });
    }
    Ok(Some(scaled))
}

/// The text at `pointer`; `None` when absent or `null`.
pub fn text<'d>(doc: &'d Value, pointer: &str) -> Result<Option<&'d str>, PayloadError> {
    match doc.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(PayloadError::NotText {
            pointer: pointer.into(),
            given: kind(other),
        }),
    }
}

/// The time at `pointer` in milliseconds since the Unix epoch.
pub fn time_ms(
    doc: &Value,
    pointer: &str,
    format: TimeFormat,
    zone: &TimeZone,
) -> Result<i64, PayloadError> {
    let value = match doc.pointer(pointer) {
        None | Some(Value::Null) => {
            return Err(PayloadError::MissingTime {
                pointer: pointer.into(),
            })
        }
        Some(v) => v,
    };
    let bad = || PayloadError::BadTime {
        pointer: pointer.into(),
        text: value.to_string().chars().take(64).collect(),
        format,
    };
    // Within ±100,000 years, so no conversion below overflows.
    const LIMIT_MS: f64 = 3.2e15;
    let ms = match format {
        TimeFormat::UnixS | TimeFormat::UnixMs => {
            let n = value.as_f64().ok_or_else(bad)?;
            let ms = if format == TimeFormat::UnixS {
                n * 1e3
            } else {
                n
            };
            if !(ms.is_finite() && ms.abs() < LIMIT_MS) {
                return Err(bad());
            }
            ms.floor() as i64
        }
        TimeFormat::Rfc3339 => {
            let s = value.as_str().ok_or_else(bad)?;
            s.parse::<jiff::Timestamp>()
                .map_err(|_| bad())?
                .as_millisecond()
        }
        TimeFormat::Local => {
            let s = value.as_str().ok_or_else(bad)?;
            let civil: DateTime = s.parse().map_err(|_| bad())?;
            civil
                .to_zoned_datetime(zone.clone())
                .map_err(|_| bad())?
                .timestamp()
                .as_millisecond()
        }
    };
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_by_pointer_with_null_as_absent() {
        let doc = parse(br#"{"ENERGY":{"Total":1.5,"Power":"230","On":true},"v":null}"#).unwrap();
        assert_eq!(number(&doc, "/ENERGY/Total", 1e3), Ok(Some(1500.0)));
        assert_eq!(number(&doc, "/ENERGY/Power", 1.0), Ok(Some(230.0)));
        assert_eq!(number(&doc, "/v", 1.0), Ok(None));
        assert_eq!(number(&doc, "/nope", 1.0), Ok(None));
        assert_eq!(
            number(&doc, "/ENERGY/On", 1.0),
            Err(PayloadError::NotANumber {
                pointer: "/ENERGY/On".into(),
                given: "a boolean"
            })
        );
        assert!(matches!(
            number(&doc, "/ENERGY", 1.0),
            Err(PayloadError::NotANumber { .. })
        ));
        let huge = parse(b"1e308").unwrap();
        assert!(matches!(
            number(&huge, "", 1e3),
            Err(PayloadError::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_plain_payload_is_read_with_the_empty_pointer() {
        assert_eq!(number(&parse(b"230.1").unwrap(), "", 1.0), Ok(Some(230.1)));
        assert_eq!(text(&parse(b" ON \n").unwrap(), ""), Ok(Some("ON")));
        assert!(matches!(
            parse(b"\xff\xfe"),
            Err(PayloadError::NotJson { .. })
        ));
        assert!(matches!(parse(b"   "), Err(PayloadError::NotJson { .. })));
    }

    #[test]
    fn times_read_in_each_format() {
        let utc = TimeZone::UTC;
        let doc = parse(
            br#"{"s":1767225600,"ms":1767225600123,"r":"2026-01-01T01:00:00+01:00","l":"2026-07-01T12:00:00","bad":"noon"}"#,
        )
        .unwrap();
        assert_eq!(
            time_ms(&doc, "/s", TimeFormat::UnixS, &utc),
            Ok(1_767_225_600_000)
        );
        assert_eq!(
            time_ms(&doc, "/ms", TimeFormat::UnixMs, &utc),
            Ok(1_767_225_600_123)
        );
        assert_eq!(
            time_ms(&doc, "/r", TimeFormat::Rfc3339, &utc),
            Ok(1_767_225_600_000)
        );
        // 12:00 local in Berlin in July is 10:00 UTC (CEST, +02:00).
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            time_ms(&doc, "/l", TimeFormat::Local, &berlin),
            Ok(1_782_900_000_000)
        );
        assert_eq!(
            time_ms(&doc, "/l", TimeFormat::Local, &utc),
            Ok(1_782_900_000_000 + 7_200_000)
        );
        assert!(matches!(
            time_ms(&doc, "/bad", TimeFormat::Rfc3339, &utc),
            Err(PayloadError::BadTime { .. })
        ));
        assert!(matches!(
            time_ms(&doc, "/s", TimeFormat::Local, &utc),
            Err(PayloadError::BadTime { .. })
        ));
        assert!(matches!(
            time_ms(&doc, "/none", TimeFormat::UnixS, &utc),
            Err(PayloadError::MissingTime { .. })
        ));
        let far = parse(b"1e300").unwrap();
        assert!(matches!(
            time_ms(&far, "", TimeFormat::UnixS, &utc),
            Err(PayloadError::BadTime { .. })
        ));
    }
}
