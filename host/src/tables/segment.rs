//! One segment's tables: which files it makes ([`SegmentTables::scan`]) and each file's
//! bytes ([`SegmentTables::build`]). Pure: bytes in, bytes out, no I/O.
//!
//! Memory stays bounded whatever the segment's size: a file is built by one pass over the
//! segment's records that keeps at most [`ROWS_PER_GROUP`] rows before it writes them as a
//! row group (plus, for `intervals`, one bucket per meter and quarter hour of that day that
//! the segment's readings touch), and only the compressed file is held whole.

use std::collections::{BTreeMap, BTreeSet};

use gridlog_common::domain::{decode_event, EntityKind, Event, StoredEvent};
use gridlog_common::Offset;
use gridlog_firmware::archive::{for_each_record, for_each_record_in_file};
use gridlog_firmware::engine::rollup::{Bucket, DAY_MS, QUARTER_HOUR_MS};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::carry::Carry;
use super::schema::{self, Columns, Common, EventRow, IntervalRow, ReadingRow, TelemetryRow};
use super::{
    Table, TablesError, CREATED_BY, ROWS_PER_GROUP, SCHEMA_KEY, SCHEMA_VERSION, ZSTD_LEVEL,
};

/// Where a segment's records come from: read once per pass, so a source need not hold the
/// segment in memory.
pub trait Records: std::fmt::Debug + Send + Sync {
    /// Calls `f` with every record in offset order, from `first_offset`; returns one past
    /// the last offset.
    fn for_each(
        &self,
        first_offset: Offset,
        f: &mut dyn FnMut(Offset, &[u8]),
    ) -> Result<Offset, TablesError>;
}

/// A segment's bytes to the end of its footer (as `archive::verify_bytes` returns them).
impl Records for Vec<u8> {
    fn for_each(
        &self,
        first: Offset,
        f: &mut dyn FnMut(Offset, &[u8]),
    ) -> Result<Offset, TablesError> {
        Ok(for_each_record(self, first, f)?)
    }
}

/// A sealed segment of the hot log, read in place.
impl Records for gridlog_firmware::wal::SealedSegment {
    fn for_each(
        &self,
        first: Offset,
        f: &mut dyn FnMut(Offset, &[u8]),
    ) -> Result<Offset, TablesError> {
        Ok(for_each_record(self, first, f)?)
    }
}

/// An archive file, decompressed as it is read (its checksums checked at the end of each
/// pass): memory holds the decoder's window and a frame, whatever the segment's size.
#[derive(Debug, Clone)]
pub struct ArchiveFile(pub std::path::PathBuf);

impl Records for ArchiveFile {
    fn for_each(
        &self,
        first: Offset,
        f: &mut dyn FnMut(Offset, &[u8]),
    ) -> Result<Offset, TablesError> {
        let (header, next) = for_each_record_in_file(&self.0, f)?;
        if header.first_offset != first {
            return Err(TablesError::OtherSegment {
                expected_first_offset: first,
                found_first_offset: header.first_offset,
            });
        }
        Ok(next)
    }
}

/// One segment's tables work, owned (so it runs off an async runtime's threads): the
/// gateway's tables stage and `gridlog export` both make a segment's files through it, a
/// scan first, then each file with a pass of its own.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    /// The site id.
    pub site: String,
    /// The lineage that shipped the segment.
    pub lineage: String,
    /// Its first offset.
    pub first_offset: Offset,
    /// Its records.
    pub records: std::sync::Arc<dyn Records>,
    /// The meters' baselines where it begins.
    pub carry_in: std::sync::Arc<Carry>,
}

/// What a scan found: the files a segment makes, its last offset, the baselines after it.
#[derive(Debug)]
pub struct Scanned {
    /// The files, by table and UTC day.
    pub files: Vec<(Table, i64)>,
    /// The segment's last offset.
    pub last_offset: Offset,
    /// The meters' baselines after it.
    pub carry_out: Carry,
}

impl SegmentJob {
    fn input(&self) -> SegmentInput<'_> {
        SegmentInput {
            site: &self.site,
            lineage: &self.lineage,
            first_offset: self.first_offset,
            records: self.records.as_ref(),
        }
    }

    /// Reads the segment once (see [`SegmentTables::scan`]).
    pub fn scan(&self) -> Result<Scanned, TablesError> {
        let mut carry = Carry::clone(&self.carry_in);
        let segment = SegmentTables::scan(self.input(), &mut carry)?;
        Ok(Scanned {
            files: segment.files().collect(),
            last_offset: segment.last_offset,
            carry_out: carry,
        })
    }

    /// The file of `table` for `day`, with its key (a segment that ends at `last_offset`).
    pub fn build(
        &self,
        table: Table,
        day: i64,
        last_offset: Offset,
    ) -> Result<(String, TableFile), TablesError> {
        let segment = SegmentTables {
            input: self.input(),
            carry_in: Carry::clone(&self.carry_in),
            last_offset,
            files: BTreeSet::new(),
        };
        let key = super::key(
            table,
            &self.site,
            day,
            self.first_offset,
            last_offset,
            &self.lineage,
        );
        Ok((key, segment.build(table, day)?))
    }
}

/// A shipped segment, as the tables see it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentInput<'a> {
    /// The site id.
    pub site: &'a str,
    /// The lineage that shipped it.
    pub lineage: &'a str,
    /// Its first offset.
    pub first_offset: Offset,
    /// Its records.
    pub records: &'a dyn Records,
}

/// One Parquet file of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    /// Which table.
    pub table: Table,
    /// UTC day number (days since 1970-01-01) of the rows' times.
    pub day: i64,
    /// Rows in it.
    pub rows: u64,
    /// The file.
    pub bytes: Vec<u8>,
}

/// What a segment makes: one file per table and UTC day its rows fall on.
#[derive(Debug)]
pub struct SegmentTables<'a> {
    input: SegmentInput<'a>,
    /// The meters' baselines where the segment begins.
    carry_in: Carry,
    /// The segment's last offset.
    pub last_offset: Offset,
    files: BTreeSet<(Table, i64)>,
}

impl<'a> SegmentTables<'a> {
    /// Reads the segment once: every record must decode; notes which (table, day) files it
    /// makes; moves `carry` past it (it must stand at the segment's first offset).
    pub fn scan(
        input: SegmentInput<'a>,
        carry: &mut Carry,
    ) -> Result<SegmentTables<'a>, TablesError> {
        if carry.next_offset != input.first_offset {
            return Err(TablesError::CarryElsewhere {
                carry_next_offset: carry.next_offset,
                segment_first_offset: input.first_offset,
            });
        }
        let carry_in = carry.clone();
        let mut files = BTreeSet::new();
        let next = each_event(&input, |_, stored| {
            files.insert((Table::Events, day_of(stored.gateway_ms)));
            match &stored.event {
                Event::ReadingRecorded(r) => {
                    files.insert((Table::Readings, day_of(r.time_ms)));
                    files.insert((Table::Intervals, day_of(r.time_ms)));
                }
                Event::TelemetryRecorded(t) => {
                    files.insert((Table::AssetTelemetry, day_of(t.time_ms)));
                }
                _ => {}
            }
            carry.follow(&stored.entity, &stored.event);
        })?;
        carry.next_offset = next;
        Ok(SegmentTables {
            input,
            carry_in,
            last_offset: next - 1,
            files,
        })
    }

    /// The files, by table and day.
    pub fn files(&self) -> impl Iterator<Item = (Table, i64)> + '_ {
        self.files.iter().copied()
    }

    /// Builds the file of `table` for UTC day `day`.
    pub fn build(&self, table: Table, day: i64) -> Result<TableFile, TablesError> {
        let common = Common {
            site: self.input.site,
            lineage: self.input.lineage,
        };
        let mut file = ParquetFile::new(table)?;
        match table {
            Table::Readings => self.readings(day, &common, &mut file)?,
            Table::AssetTelemetry => self.telemetry(day, &common, &mut file)?,
            Table::Events => self.events(day, &common, &mut file)?,
            Table::Intervals => self.intervals(day, &common, &mut file)?,
        }
        let rows = file.rows;
        Ok(TableFile {
            table,
            day,
            rows,
            bytes: file.finish()?,
        })
    }

    /// Writes the rows `select` picks from the segment's events, in offset order, a row
    /// group every [`ROWS_PER_GROUP`] rows.
    fn stream<R>(
        &self,
        file: &mut ParquetFile,
        write: impl Fn(&[R], Columns) -> Result<(), parquet::errors::ParquetError>,
        mut select: impl FnMut(Offset, &StoredEvent) -> Option<R>,
    ) -> Result<(), TablesError> {
        let mut rows = Vec::new();
        let mut failed = None;
        each_event(&self.input, |offset, stored| {
            if failed.is_some() {
                return;
            }
            rows.extend(select(offset, stored));
            if rows.len() == ROWS_PER_GROUP {
                failed = file.group(&rows, &write).err();
                rows.clear();
            }
        })?;
        failed.map_or(Ok(()), Err)?;
        file.group(&rows, &write)
    }

    fn readings(
        &self,
        day: i64,
        common: &Common,
        file: &mut ParquetFile,
    ) -> Result<(), TablesError> {
        let write = |rows: &[ReadingRow], c: Columns| schema::write_readings(common, rows, c);
        self.stream(file, write, |offset, stored| {
            let (Event::ReadingRecorded(r), EntityKind::Meter(kind)) = (&stored.event, stored.kind)
            else {
                return None;
            };
            (day_of(r.time_ms) == day).then(|| ReadingRow {
                meter: stored.entity.to_string(),
                kind: kind.name(),
                time_us: micros(r.time_ms),
                import_wh: r.import_wh,
                export_wh: r.export_wh,
                power_w: r.power_w,
                voltage_v: r.voltage_v,
                current_a: r.current_a,
                reactive_power_var: r.reactive_power_var,
                offset: offset as i64,
                seq: stored.seq as i64,
            })
        })
    }

    fn telemetry(
        &self,
        day: i64,
        common: &Common,
        file: &mut ParquetFile,
    ) -> Result<(), TablesError> {
        let write = |rows: &[TelemetryRow], c: Columns| schema::write_telemetry(common, rows, c);
        self.stream(file, write, |offset, stored| {
            let (Event::TelemetryRecorded(t), EntityKind::Asset(kind)) =
                (&stored.event, stored.kind)
            else {
                return None;
            };
            (day_of(t.time_ms) == day).then(|| TelemetryRow {
                asset: stored.entity.to_string(),
                kind: kind.name(),
                time_us: micros(t.time_ms),
                power_w: t.power_w,
                soc_pct: t.soc_pct,
                status: t.status.as_str().to_string(),
                offset: offset as i64,
                seq: stored.seq as i64,
            })
        })
    }

    fn events(&self, day: i64, common: &Common, file: &mut ParquetFile) -> Result<(), TablesError> {
        let write = |rows: &[EventRow], c: Columns| schema::write_events(common, rows, c);
        self.stream(file, write, |offset, stored| {
            (day_of(stored.gateway_ms) == day).then(|| EventRow {
                offset: offset as i64,
                entity: stored.entity.to_string(),
                kind: stored.kind.name(),
                seq: stored.seq as i64,
                time_us: micros(stored.gateway_ms),
                event_type: stored.event.type_name(),
                tags: stored.tags().iter().copied().collect(),
                command_id: stored.command_id.as_ref().map(|id| id.as_str().to_string()),
                data: crate::server::wire::event_data(&stored.event).to_string(),
            })
        })
    }

    /// Books the segment's readings with the engine's rule ([`Carry`] follows
    /// `rollup::Baseline`) and keeps the quarter hours of `day`, by meter and time.
    fn intervals(
        &self,
        day: i64,
        common: &Common,
        file: &mut ParquetFile,
    ) -> Result<(), TablesError> {
        let mut carry = self.carry_in.clone();
        let mut buckets: BTreeMap<(String, i64), (&'static str, Bucket)> = BTreeMap::new();
        each_event(&self.input, |_, stored| {
            let booked = carry.follow(&stored.entity, &stored.event);
            let (Some((import_wh, export_wh)), Event::ReadingRecorded(r), EntityKind::Meter(kind)) =
                (booked, &stored.event, stored.kind)
            else {
                return;
            };
            if day_of(r.time_ms) != day {
                return;
            }
            let quarter = r.time_ms.div_euclid(QUARTER_HOUR_MS);
            buckets
                .entry((stored.entity.to_string(), quarter))
                .or_insert_with(|| (kind.name(), Bucket::empty(quarter)))
                .1
                .book(import_wh, export_wh, r.power_w);
        })?;
        let first_offset = self.input.first_offset as i64;
        let write = |rows: &[IntervalRow], c: Columns| schema::write_intervals(common, rows, c);
        // The buckets are all in memory already; as rows they are written a group at a time.
        let rows: Vec<IntervalRow> = buckets
            .into_iter()
            .map(|((meter, quarter), (kind, b))| IntervalRow {
                meter,
                kind,
                interval_start_us: micros(quarter * QUARTER_HOUR_MS),
                import_wh: b.import_wh,
                export_wh: b.export_wh,
                power_min_w: b.min_w,
                power_max_w: b.max_w,
                power_mean_w: b.mean_w,
                readings: i64::from(b.count),
                first_offset,
            })
            .collect();
        rows.chunks(ROWS_PER_GROUP)
            .try_for_each(|group| file.group(group, write))
    }
}

/// Calls `f` with every event of the segment in offset order; returns one past the last
/// offset. A record that does not decode is an error naming its offset.
fn each_event(
    input: &SegmentInput,
    mut f: impl FnMut(Offset, &StoredEvent),
) -> Result<Offset, TablesError> {
    let mut failed = None;
    let next = input
        .records
        .for_each(input.first_offset, &mut |offset, record| {
            if failed.is_some() {
                return;
            }
            match decode_event(record) {
                Ok(stored) => f(offset, &stored),
                Err(source) => failed = Some(TablesError::Decode { offset, source }),
            }
        })?;
    failed.map_or(Ok(next), Err)
}

/// Most bytes of a data page or a dictionary page before it is cut.
const PAGE_BYTES: usize = 1 << 20;
/// Values handed to a column's encoder at a time.
const WRITE_BATCH_ROWS: usize = 1024;

/// A Parquet file being written into memory.
struct ParquetFile {
    writer: SerializedFileWriter<Vec<u8>>,
    rows: u64,
}

impl ParquetFile {
    fn new(table: Table) -> Result<ParquetFile, TablesError> {
        let schema = parse_message_type(table.schema())?;
        // Every property that shapes the bytes is set here, not left to the library's
        // defaults (which may change between its versions).
        let properties = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_size_limit(PAGE_BYTES)
            .set_dictionary_page_size_limit(PAGE_BYTES)
            .set_data_page_row_count_limit(ROWS_PER_GROUP)
            .set_write_batch_size(WRITE_BATCH_ROWS)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .set_column_index_truncate_length(Some(64))
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_created_by(CREATED_BY.to_string())
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SCHEMA_KEY.to_string(),
                SCHEMA_VERSION.to_string(),
            )]))
            .build();
        let writer = SerializedFileWriter::new(Vec::new(), schema.into(), properties.into())?;
        Ok(ParquetFile { writer, rows: 0 })
    }

    /// Writes `rows` as one row group (nothing if empty).
    fn group<R>(
        &mut self,
        rows: &[R],
        write: impl Fn(&[R], Columns) -> Result<(), parquet::errors::ParquetError>,
    ) -> Result<(), TablesError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        write(rows, Columns::new(&mut group, rows.len()))?;
        group.close()?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, TablesError> {
        Ok(self.writer.into_inner()?)
    }
}

/// UTC day number of a time.
pub fn day_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(DAY_MS)
}

fn micros(time_ms: i64) -> i64 {
    time_ms.saturating_mul(1000)
}
