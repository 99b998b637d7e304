//! InfluxDB line protocol: a pure, bounded parser (no I/O).
//!
//! ```text
//! measurement[,tag=value…] field=value[,field=value…] [timestamp]
//! ```
//!
//! Escapes follow the InfluxDB reference: in a measurement `\,` and `\ `; in tag keys, tag
//! values and field keys `\,`, `\=` and `\ `; in string field values `\"` and `\\`. A
//! backslash before any other character is a literal backslash (as InfluxDB reads it); a
//! backslash that ends a line escapes nothing and is an error. Field values: floats
//! (`1`, `-1.5e3`), integers (`1i`), unsigned integers (`1u`), strings (`"…"`, which may
//! span lines) and booleans (`t`, `true`, `F`, `FALSE` …). `NaN` and infinities are refused.
//! Lines starting with `#` and blank lines are skipped.
//!
//! Bounds: a line longer than [`LINE_BYTES_MAX`] is refused without being parsed, and the
//! caller bounds the body and the number of points ([`parse`]'s `points_max`). Nothing is
//! allocated by a length the input claims; names and strings borrow from the body unless
//! they hold escapes.
//!
//! One file on purpose: one grammar (InfluxDB line protocol), its bounded parser and the
//! errors that name a line and a field.

use std::borrow::Cow;
use std::collections::HashMap;

/// Longest line accepted, in bytes. Telegraf's lines are a few hundred bytes; 64 KiB leaves
/// room for long string fields while one bad line cannot hold much memory.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// `1.5`, `1`, `-2e3`: always finite.
    Float(f64),
    /// `1i`.
    Integer(i64),
    /// `1u`.
    Unsigned(u64),
    /// `"text"`, unescaped.
    String(Cow<'a, str>),
    /// `t`, `true`, `F`, `FALSE` …
    Boolean(bool),
}

impl FieldValue<'_> {
    /// The type's name as InfluxDB words it in a type conflict.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Integer(_) => "integer",
            FieldValue::Unsigned(_) => "unsigned",
            FieldValue::String(_) => "string",
            FieldValue::Boolean(_) => "boolean",
        }
    }
}

/// The unit of the timestamps in a body (`precision=`); nanoseconds unless told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `n`, `ns`.
    #[default]
    Nanoseconds,
    /// `u`, `us`, `µ`.
    Microseconds,
    /// `ms`.
    Milliseconds,
    /// `s`.
    Seconds,
    /// `m`.
    Minutes,
    /// `h`.
    Hours,
}

impl Precision {
    /// Parses the `precision` query parameter.
    pub fn parse(text: &str) -> Option<Precision> {
        Some(match text {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds per unit.
    fn ns(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// The line's number in the body, from 1.
    pub line: usize,
    /// The measurement.
    pub measurement: Cow<'a, str>,
    /// Tags in the order given.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields in the order given (at least one).
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// The timestamp in nanoseconds since the epoch, if the line has one.
    pub time_ns: Option<i64>,
}

impl<'a> Point<'a> {
    /// The value of tag `key` (the last one if repeated).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The value of field `key` (the last one if repeated, as InfluxDB keeps it).
    pub fn field(&self, key: &str) -> Option<&FieldValue<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// Longer than [`LINE_BYTES_MAX`].
    #[error("the line is {bytes} bytes long; the maximum is {max} bytes")]
    TooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The line is not UTF-8.
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// The measurement is empty.
    #[error("missing measurement")]
    MissingMeasurement,
    /// A tag without `=` or with an empty key or value.
    #[error("invalid tag {tag:?}: a tag is key=value, both non-empty")]
    BadTag {
        /// The tag as written.
        tag: String,
    },
    /// No field set after the measurement and tags.
    #[error("missing field set")]
    MissingFieldSet,
    /// A field without `=`, key or value.
    #[error("invalid field {field:?}: a field is key=value, both non-empty")]
    BadField {
        /// The field as written.
        field: String,
    },
    /// A field value that is no number, string or boolean.
    #[error("field {field:?}: invalid value {value:?}")]
    BadValue {
        /// The field's key.
        field: String,
        /// The value as written.
        value: String,
    },
    /// `NaN`, an infinity, or a float too large for 64 bits.
    #[error("field {field:?}: {value:?} is not a finite number")]
    NotFinite {
        /// The field's key.
        field: String,
        /// The value as written.
        value: String,
    },
    /// A backslash at the end of the line.
    #[error("bad escape: a backslash at the end of the line escapes nothing")]
    BadEscape,
    /// A string field value without its closing quote.
    #[error("field {field:?}: unterminated string")]
    UnterminatedString {
        /// The field's key.
        field: String,
    },
    /// The timestamp is not an integer, or overflows once scaled to nanoseconds.
    #[error(
        "timestamp {value:?} is not an integer of the precision's unit within 64-bit nanoseconds"
    )]
    BadTimestamp {
        /// The timestamp as written.
        value: String,
    },
    /// Something after the timestamp.
    #[error("unexpected text after the timestamp: {rest:?}")]
    TrailingText {
        /// What follows.
        rest: String,
    },
    /// A field's type differs from its type on an earlier line of the same body.
    #[error("field type conflict: input field {field:?} on measurement {measurement:?} is type {given}, already exists as type {first}")]
    TypeConflict {
        /// The measurement.
        measurement: String,
        /// The field's key.
        field: String,
        /// Its type on this line.
        given: &'static str,
        /// Its type on the first line that had it.
        first: &'static str,
    },
}

impl LineErrorKind {
    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            LineErrorKind::BadValue { field, .. }
            | LineErrorKind::NotFinite { field, .. }
            | LineErrorKind::UnterminatedString { field }
            | LineErrorKind::TypeConflict { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A line that could not be parsed, by its number in the body (from 1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct LineError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong.
    pub kind: LineErrorKind,
}

/// A whole body: the points that parsed and an error per line that did not.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// The points, in body order.
    pub points: Vec<Point<'a>>,
    /// The lines refused, in body order.
    pub errors: Vec<LineError>,
    /// Lines left unread because `points_max` was reached.
    pub lines_over_limit: bool,
}

/// Parses `body`. At most `points_max` lines (points and errors) are kept; past it
/// [`Batch::lines_over_limit`] is set and the rest is not read. A field whose type differs
/// from its type earlier in the same body (same measurement) refuses that line.
pub fn parse(body: &[u8], precision: Precision, points_max: usize) -> Batch<'_> {
    let mut batch = Batch::default();
    let mut types: HashMap<(Cow<'_, str>, Cow<'_, str>), &'static str> = HashMap::new();
    for (line, text) in Lines::new(body) {
        if batch.points.len() + batch.errors.len() >= points_max {
            batch.lines_over_limit = true;
            break;
        }
        let result = parse_line(text, line, precision).and_then(|point| {
            check_types(&point, &mut types)?;
            Ok(point)
        });
        match result {
            Ok(point) => batch.points.push(point),
            Err(kind) => batch.errors.push(LineError { line, kind }),
        }
    }
    batch
}

fn check_types<'a>(
    point: &Point<'a>,
    types: &mut HashMap<(Cow<'a, str>, Cow<'a, str>), &'static str>,
) -> Result<(), LineErrorKind> {
    for (key, value) in &point.fields {
        let given = value.type_name();
        let entry = (point.measurement.clone(), key.clone());
        if let Some(&first) = types.get(&entry) {
            if first != given {
                return Err(LineErrorKind::TypeConflict {
                    measurement: point.measurement.to_string(),
                    field: key.to_string(),
                    given,
                    first,
                });
            }
        }
    }
    for (key, value) in &point.fields {
        types
            .entry((point.measurement.clone(), key.clone()))
            .or_insert(value.type_name());
    }
    Ok(())
}

/// The lines of a body with their numbers, skipping blank and comment lines. A newline
/// inside a string field value does not end the line (InfluxDB allows it).
struct Lines<'a> {
    body: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(body: &'a [u8]) -> Self {
        Lines {
            body,
            at: 0,
            line: 1,
        }
    }

    /// The end of the line starting at `start` and the newlines inside it.
    fn line_end(&self, start: usize) -> (usize, usize) {
        let mut in_fields = false;
        let mut quoted = false;
        let mut newlines = 0;
        let mut i = start;
        while i < self.body.len() {
            match self.body[i] {
                // A backslash ending a line escapes nothing (the line is refused), so the
                // newline still ends it.
                b'\\' if self.body.get(i + 1) != Some(&b'\n') => i += 1,
                b'\n' if !quoted => return (i, newlines),
                b'\n' => newlines += 1,
                b' ' if !quoted => in_fields = true,
                b'"' if in_fields => quoted = !quoted,
                _ => {}
            }
            i += 1;
        }
        (self.body.len(), newlines)
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.body.len() {
            let start = self.at;
            let line = self.line;
            let (end, inner) = self.line_end(start);
            self.at = end + 1;
            self.line += 1 + inner;
            let text = &self.body[start..end.min(self.body.len())];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let trimmed = text.trim_ascii_start();
            if trimmed.is_empty() || trimmed.starts_with(b"#") {
                continue;
            }
            return Some((line, trimmed));
        }
        None
    }
}

/// Parses one line (without its newline).
pub fn parse_line(
    text: &[u8],
    line: usize,
    precision: Precision,
) -> Result<Point<'_>, LineErrorKind> {
    if text.len() > LINE_BYTES_MAX {
        return Err(LineErrorKind::TooLong {
            bytes: text.len(),
            max: LINE_BYTES_MAX,
        });
    }
    let text = std::str::from_utf8(text).map_err(|_| LineErrorKind::NotUtf8)?;
    let trailing_backslashes = text.bytes().rev().take_while(|&b| b == b'\\').count();
    if trailing_backslashes % 2 == 1 {
        return Err(LineErrorKind::BadEscape);
    }
    let (series, rest) = split_unescaped(text, b' ', false);
    let rest = rest.ok_or(LineErrorKind::MissingFieldSet)?;
    let (measurement, tags) = parse_series(series)?;
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        return Err(LineErrorKind::MissingFieldSet);
    }
    let (fields, after) = parse_fields(rest)?;
    let time_ns = parse_timestamp(after.trim_matches(' '), precision)?;
    Ok(Point {
        line,
        measurement,
        tags,
        fields,
        time_ns,
    })
}

/// Splits at the first unescaped `sep`; with `quotes`, not inside a quoted string.
fn split_unescaped(text: &str, sep: u8, quotes: bool) -> (&str, Option<&str>) {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' if quotes => quoted = !quoted,
            b if b == sep && !quoted => return (&text[..i], Some(&text[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    (text, None)
}

/// Removes the escapes of `specials` (a backslash before anything else stays).
fn unescape<'a>(text: &'a str, specials: &[u8]) -> Cow<'a, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if next.is_ascii() && specials.contains(&(next as u8)) {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    Cow::Owned(out)
}

type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn parse_series(series: &str) -> Result<(Cow<'_, str>, Tags<'_>), LineErrorKind> {
    let (measurement, mut rest) = split_unescaped(series, b',', false);
    if measurement.is_empty() {
        return Err(LineErrorKind::MissingMeasurement);
    }
    let measurement = unescape(measurement, b", ");
    let mut tags = Vec::new();
    while let Some(text) = rest {
        let (tag, next) = split_unescaped(text, b',', false);
        rest = next;
        let bad = || LineErrorKind::BadTag { tag: tag.into() };
        let (key, value) = split_unescaped(tag, b'=', false);
        let value = value.ok_or_else(bad)?;
        if key.is_empty() || value.is_empty() {
            return Err(bad());
        }
        tags.push((unescape(key, b", ="), unescape(value, b", =")));
    }
    Ok((measurement, tags))
}

type Fields<'a> = Vec<(Cow<'a, str>, FieldValue<'a>)>;

/// The field set and what follows it (the timestamp, if any).
fn parse_fields(text: &str) -> Result<(Fields<'_>, &str), LineErrorKind> {
    let mut fields = Vec::new();
    let mut rest = text;
    loop {
        let (key, value) = split_unescaped(rest, b'=', false);
        let value = value.ok_or_else(|| LineErrorKind::BadField {
            field: key.split(' ').next().unwrap_or(key).into(),
        })?;
        let unescaped_in_key = |sep| split_unescaped(key, sep, false).1.is_some();
        if key.is_empty() || unescaped_in_key(b' ') || unescaped_in_key(b',') {
            return Err(LineErrorKind::BadField { field: key.into() });
        }
        let key_text = unescape(key, b", =");
        let (raw, end) = field_value_text(value, &key_text)?;
        if raw.is_empty() {
            return Err(LineErrorKind::BadField {
                field: format!("{key}="),
            });
        }
        fields.push((key_text.clone(), field_value(raw, &key_text)?));
        match value.as_bytes().get(end) {
            Some(b',') => rest = &value[end + 1..],
            Some(_) => return Ok((fields, &value[end..])),
            None => return Ok((fields, "")),
        }
    }
}

/// The text of a value and the index just after it: up to `,` or ` ` outside quotes.
fn field_value_text<'a>(value: &'a str, key: &str) -> Result<(&'a str, usize), LineErrorKind> {
    let bytes = value.as_bytes();
    if bytes.first() == Some(&b'"') {
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 1,
                b'"' => return Ok((&value[..=i], i + 1)),
                _ => {}
            }
            i += 1;
        }
        return Err(LineErrorKind::UnterminatedString { field: key.into() });
    }
    let end = bytes
        .iter()
        .position(|&b| b == b',' || b == b' ')
        .unwrap_or(bytes.len());
    Ok((&value[..end], end))
}

fn field_value<'a>(raw: &'a str, key: &str) -> Result<FieldValue<'a>, LineErrorKind> {
    let bad = || LineErrorKind::BadValue {
        field: key.into(),
        value: raw.into(),
    };
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or_else(bad)?;
        return Ok(FieldValue::String(unescape(inner, b"\"\\")));
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    if let Some(digits) = raw.strip_suffix('i') {
        return integer_text(digits, true)
            .and_then(|d| d.parse().ok())
            .map(FieldValue::Integer)
            .ok_or_else(bad);
    }
    if let Some(digits) = raw.strip_suffix('u') {
        return integer_text(digits, false)
            .and_then(|d| d.parse().ok())
            .map(FieldValue::Unsigned)
            .ok_or_else(bad);
    }
    let lower = raw.trim_start_matches(['-', '+']).to_ascii_lowercase();
    if lower.starts_with("nan") || lower.starts_with("inf") {
        return Err(LineErrorKind::NotFinite {
            field: key.into(),
            value: raw.into(),
        });
    }
    if !float_text(raw) {
        return Err(bad());
    }
    let value: f64 = raw.parse().map_err(|_| bad())?;
    if !value.is_finite() {
        return Err(LineErrorKind::NotFinite {
            field: key.into(),
            value: raw.into(),
        });
    }
    Ok(FieldValue::Float(value))
}

/// `digits` if it is `-?[0-9]+` (the sign only when `signed`).
fn integer_text(digits: &str, signed: bool) -> Option<&str> {
    let unsigned = if signed {
        digits.strip_prefix('-').unwrap_or(digits)
    } else {
        digits
    };
    (!unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// `-?(digits(.digits?)?|.digits)([eE][+-]?digits)?`, InfluxDB's number form.
fn float_text(raw: &str) -> bool {
    let text = raw.strip_prefix('-').unwrap_or(raw);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

fn parse_timestamp(text: &str, precision: Precision) -> Result<Option<i64>, LineErrorKind> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Some((_, rest)) = text.split_once(' ') {
        return Err(LineErrorKind::TrailingText {
            rest: rest.trim_start().into(),
        });
    }
    let bad = || LineErrorKind::BadTimestamp { value: text.into() };
    integer_text(text, true)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| t.checked_mul(precision.ns()))
        .map(Some)
        .ok_or_else(bad)
}

/// Writes `point` as line protocol (the inverse of [`parse_line`] for nanosecond precision).
#[cfg(test)]
pub fn encode(point: &Point<'_>) -> String {
    use std::fmt::Write as _;
    let esc = |s: &str, specials: &str| {
        let mut out = String::new();
        for c in s.chars() {
            if specials.contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let mut out = esc(&point.measurement, ", ");
    for (k, v) in &point.tags {
        let _ = write!(out, ",{}={}", esc(k, ", ="), esc(v, ", ="));
    }
    for (i, (k, v)) in point.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        let value = match v {
            FieldValue::Float(f) => format!("{f:?}"),
            FieldValue::Integer(n) => format!("{n}i"),
            FieldValue::Unsigned(n) => format!("{n}u"),
            FieldValue::String(s) => format!("\"{}\"", esc(s, "\"\\")),
            FieldValue::Boolean(b) => b.to_string(),
        };
        let _ = write!(out, "{}={value}", esc(k, ", ="));
    }
    if let Some(t) = point.time_ns {
        let _ = write!(out, " {t}");
    }
    out
}

#[cfg(test)]
mod tests;
