//! The four tables' columns: each table's Parquet schema beside the function that writes its
//! rows column by column, in the schema's order, so the two cannot drift apart unnoticed
//! (`Columns::finish` fails if a column is left over).
//!
//! Types are the ones Spark, Trino and DuckDB all read: no unsigned integers; times are
//! `INT64 TIMESTAMP(MICROS, UTC)`; strings `BYTE_ARRAY (STRING)`; optional measured values
//! are `OPTIONAL`. A column added later goes at the end and is `OPTIONAL`, so a reader that
//! merges files by name (`union_by_name`) reads old and new files together.

use parquet::data_type::{ByteArray, ByteArrayType, DataType, DoubleType, FloatType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::writer::SerializedRowGroupWriter;

/// One row of `readings`: a meter reading as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    pub meter: String,
    pub kind: &'static str,
    pub time_us: i64,
    pub import_wh: f64,
    pub export_wh: f64,
    pub power_w: f64,
    pub voltage_v: Option<f32>,
    pub current_a: Option<f32>,
    pub reactive_power_var: Option<f32>,
    pub offset: i64,
    pub seq: i64,
}

/// One row of `asset_telemetry`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRow {
    pub asset: String,
    pub kind: &'static str,
    pub time_us: i64,
    pub power_w: f64,
    pub soc_pct: Option<f64>,
    pub status: String,
    pub offset: i64,
    pub seq: i64,
}

/// One row of `events`: any event, its fields as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub offset: i64,
    pub entity: String,
    pub kind: &'static str,
    pub seq: i64,
    pub time_us: i64,
    pub event_type: &'static str,
    pub tags: Vec<&'static str>,
    pub command_id: Option<String>,
    pub data: String,
}

/// One row of `intervals`: what one segment's readings booked into one meter's quarter hour.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    pub meter: String,
    pub kind: &'static str,
    pub interval_start_us: i64,
    pub import_wh: f64,
    pub export_wh: f64,
    pub power_min_w: f32,
    pub power_max_w: f32,
    pub power_mean_w: f32,
    pub readings: i64,
    pub first_offset: i64,
}

/// Columns every table starts with or ends with: the site first, the lineage last.
pub struct Common<'a> {
    pub site: &'a str,
    pub lineage: &'a str,
}

/// `readings`: one row per `reading_recorded` event, in offset order.
pub const READINGS_SCHEMA: &str = "message readings {
  REQUIRED BYTE_ARRAY site (STRING);
  REQUIRED BYTE_ARRAY meter (STRING);
  REQUIRED BYTE_ARRAY kind (STRING);
  REQUIRED INT64 time (TIMESTAMP(MICROS,true));
  REQUIRED DOUBLE import_wh;
  REQUIRED DOUBLE export_wh;
  REQUIRED DOUBLE power_w;
  OPTIONAL FLOAT voltage_v;
  OPTIONAL FLOAT current_a;
  OPTIONAL FLOAT reactive_power_var;
  REQUIRED INT64 offset;
  REQUIRED INT64 seq;
  REQUIRED BYTE_ARRAY lineage (STRING);
}";

/// `asset_telemetry`: one row per `telemetry_recorded` event.
pub const TELEMETRY_SCHEMA: &str = "message asset_telemetry {
  REQUIRED BYTE_ARRAY site (STRING);
  REQUIRED BYTE_ARRAY asset (STRING);
  REQUIRED BYTE_ARRAY kind (STRING);
  REQUIRED INT64 time (TIMESTAMP(MICROS,true));
  REQUIRED DOUBLE power_w;
  OPTIONAL DOUBLE soc_pct;
  REQUIRED BYTE_ARRAY status (STRING);
  REQUIRED INT64 offset;
  REQUIRED INT64 seq;
  REQUIRED BYTE_ARRAY lineage (STRING);
}";

/// `events`: one row per event of every kind; `time` is the gateway's commit time.
pub const EVENTS_SCHEMA: &str = "message events {
  REQUIRED BYTE_ARRAY site (STRING);
  REQUIRED INT64 offset;
  REQUIRED BYTE_ARRAY entity (STRING);
  REQUIRED BYTE_ARRAY kind (STRING);
  REQUIRED INT64 seq;
  REQUIRED INT64 time (TIMESTAMP(MICROS,true));
  REQUIRED BYTE_ARRAY type (STRING);
  REQUIRED GROUP tags (LIST) {
    REPEATED GROUP list {
      REQUIRED BYTE_ARRAY element (STRING);
    }
  }
  OPTIONAL BYTE_ARRAY command_id (STRING);
  REQUIRED BYTE_ARRAY data (JSON);
  REQUIRED BYTE_ARRAY lineage (STRING);
}";

/// `intervals`: per meter and quarter hour, what this segment's readings booked there.
pub const INTERVALS_SCHEMA: &str = "message intervals {
  REQUIRED BYTE_ARRAY site (STRING);
  REQUIRED BYTE_ARRAY meter (STRING);
  REQUIRED BYTE_ARRAY kind (STRING);
  REQUIRED INT64 interval_start (TIMESTAMP(MICROS,true));
  REQUIRED DOUBLE import_wh;
  REQUIRED DOUBLE export_wh;
  REQUIRED FLOAT power_min_w;
  REQUIRED FLOAT power_max_w;
  REQUIRED FLOAT power_mean_w;
  REQUIRED INT64 readings;
  REQUIRED INT64 first_offset;
  REQUIRED BYTE_ARRAY lineage (STRING);
}";

/// Writes one row group's columns in schema order.
pub struct Columns<'r, 'w> {
    group: &'r mut SerializedRowGroupWriter<'w, Vec<u8>>,
    rows: usize,
}

impl<'r, 'w> Columns<'r, 'w> {
    pub fn new(group: &'r mut SerializedRowGroupWriter<'w, Vec<u8>>, rows: usize) -> Self {
        Columns { group, rows }
    }

    fn next(&mut self) -> Result<parquet::file::writer::SerializedColumnWriter<'_>, ParquetError> {
        self.group
            .next_column()?
            .ok_or_else(|| ParquetError::General("more columns written than the schema has".into()))
    }

    /// Writes the next column: its values, and definition and repetition levels if the
    /// column has them.
    fn column<T: DataType>(
        &mut self,
        values: &[T::T],
        defs: Option<&[i16]>,
        reps: Option<&[i16]>,
    ) -> Result<(), ParquetError> {
        let mut column = self.next()?;
        column.typed::<T>().write_batch(values, defs, reps)?;
        column.close()
    }

    /// The same string in every row (site, lineage).
    pub fn constant(&mut self, value: &str) -> Result<(), ParquetError> {
        let values = vec![bytes(value); self.rows];
        self.column::<ByteArrayType>(&values, None, None)
    }

    /// A required column: one value per row.
    pub fn required<T: DataType>(
        &mut self,
        values: impl Iterator<Item = T::T>,
    ) -> Result<(), ParquetError> {
        self.column::<T>(&values.collect::<Vec<_>>(), None, None)
    }

    /// An optional column: a definition level per row, the values that are present.
    pub fn optional<T: DataType>(
        &mut self,
        values: impl Iterator<Item = Option<T::T>>,
    ) -> Result<(), ParquetError> {
        let (values, defs) = present(values);
        self.column::<T>(&values, Some(&defs), None)
    }

    /// A required string column.
    pub fn strings<'s>(
        &mut self,
        values: impl Iterator<Item = &'s str>,
    ) -> Result<(), ParquetError> {
        self.required::<ByteArrayType>(values.map(bytes))
    }

    /// A required list of strings per row (`tags`): repetition level 1 within a row.
    pub fn string_lists<'s>(
        &mut self,
        rows: impl Iterator<Item = &'s [&'static str]>,
    ) -> Result<(), ParquetError> {
        let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
        for list in rows {
            if list.is_empty() {
                defs.push(0);
                reps.push(0);
            }
            for (i, s) in list.iter().enumerate() {
                values.push(bytes(s));
                defs.push(1);
                reps.push(i16::from(i > 0));
            }
        }
        self.column::<ByteArrayType>(&values, Some(&defs), Some(&reps))
    }

    /// Checks every column of the schema was written.
    pub fn finish(self) -> Result<(), ParquetError> {
        match self.group.next_column()? {
            None => Ok(()),
            Some(_) => Err(ParquetError::General(
                "a column of the schema was not written".into(),
            )),
        }
    }
}

fn bytes(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

/// The present values and a definition level per row (1 present, 0 absent).
fn present<T>(values: impl Iterator<Item = Option<T>>) -> (Vec<T>, Vec<i16>) {
    let mut present = Vec::new();
    let defs = values
        .map(|v| match v {
            Some(v) => {
                present.push(v);
                1
            }
            None => 0,
        })
        .collect();
    (present, defs)
}

/// Writes `rows` of `readings` as one row group.
pub fn write_readings(
    common: &Common,
    rows: &[ReadingRow],
    mut c: Columns,
) -> Result<(), ParquetError> {
    c.constant(common.site)?;
    c.strings(rows.iter().map(|r| r.meter.as_str()))?;
    c.strings(rows.iter().map(|r| r.kind))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.time_us))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.import_wh))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.export_wh))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.power_w))?;
    c.optional::<FloatType>(rows.iter().map(|r| r.voltage_v))?;
    c.optional::<FloatType>(rows.iter().map(|r| r.current_a))?;
    c.optional::<FloatType>(rows.iter().map(|r| r.reactive_power_var))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.offset))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.seq))?;
    c.constant(common.lineage)?;
    c.finish()
}

/// Writes `rows` of `asset_telemetry` as one row group.
pub fn write_telemetry(
    common: &Common,
    rows: &[TelemetryRow],
    mut c: Columns,
) -> Result<(), ParquetError> {
    c.constant(common.site)?;
    c.strings(rows.iter().map(|r| r.asset.as_str()))?;
    c.strings(rows.iter().map(|r| r.kind))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.time_us))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.power_w))?;
    c.optional::<DoubleType>(rows.iter().map(|r| r.soc_pct))?;
    c.strings(rows.iter().map(|r| r.status.as_str()))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.offset))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.seq))?;
    c.constant(common.lineage)?;
    c.finish()
}

/// Writes `rows` of `events` as one row group.
pub fn write_events(
    common: &Common,
    rows: &[EventRow],
    mut c: Columns,
) -> Result<(), ParquetError> {
    c.constant(common.site)?;
    c.required::<Int64Type>(rows.iter().map(|r| r.offset))?;
    c.strings(rows.iter().map(|r| r.entity.as_str()))?;
    c.strings(rows.iter().map(|r| r.kind))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.seq))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.time_us))?;
    c.strings(rows.iter().map(|r| r.event_type))?;
    c.string_lists(rows.iter().map(|r| r.tags.as_slice()))?;
    c.optional::<ByteArrayType>(rows.iter().map(|r| r.command_id.as_deref().map(bytes)))?;
    c.strings(rows.iter().map(|r| r.data.as_str()))?;
    c.constant(common.lineage)?;
    c.finish()
}

/// Writes `rows` of `intervals` as one row group.
pub fn write_intervals(
    common: &Common,
    rows: &[IntervalRow],
    mut c: Columns,
) -> Result<(), ParquetError> {
    c.constant(common.site)?;
    c.strings(rows.iter().map(|r| r.meter.as_str()))?;
    c.strings(rows.iter().map(|r| r.kind))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.interval_start_us))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.import_wh))?;
    c.required::<DoubleType>(rows.iter().map(|r| r.export_wh))?;
    c.required::<FloatType>(rows.iter().map(|r| r.power_min_w))?;
    c.required::<FloatType>(rows.iter().map(|r| r.power_max_w))?;
    c.required::<FloatType>(rows.iter().map(|r| r.power_mean_w))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.readings))?;
    c.required::<Int64Type>(rows.iter().map(|r| r.first_offset))?;
    c.constant(common.lineage)?;
    c.finish()
}
