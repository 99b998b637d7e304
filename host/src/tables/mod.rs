//! Fleet tables: the shipped history as Parquet files that DuckDB, Spark and Trino read where
//! they land, without a gridlog decoder.
//!
//! One file per shipped segment, table and UTC day of its rows, at a deterministic key
//! ([`key`]), so a retry, a restart or `gridlog export` names (and writes) the same object:
//!
//! ```text
//! PREFIX/tables/<table>/site=<SITE_ID>/date=<YYYY-MM-DD>/<FIRST>-<LAST>-<LINEAGE>.parquet
//! ```
//!
//! `FIRST` and `LAST` are the segment's first and last offsets (20 digits). The lineage is
//! in the name because two lineages of one site may hold the same offsets (a restore while
//! the old gateway still ran): their files must not collide; rows say their lineage, and
//! queries dedupe on `(site, offset)` (README "Fleet analytics").
//!
//! Files by role: [`schema`] (columns and how a row group is written), [`segment`] (one
//! segment's files, pure), [`carry`] (each meter's energy baseline between segments).
//! The same segment, folded after the same history, gives the same bytes: no time, host or
//! library version is written into a file (`created_by` is [`CREATED_BY`]).

pub mod carry;
pub mod schema;
pub mod segment;

use gridlog_common::domain::EventDecodeError;
use gridlog_common::Offset;
use gridlog_firmware::archive::SegmentRecordsInvalid;

pub use carry::Carry;
pub use segment::{ArchiveFile, Records, SegmentJob};

/// The tables' schema version, written into every file's key-value metadata under
/// [`SCHEMA_KEY`]. A column added at the end (optional) keeps the version; a change that
/// breaks readers raises it.
pub const SCHEMA_VERSION: u32 = 1;
/// The key-value metadata key of [`SCHEMA_VERSION`].
pub const SCHEMA_KEY: &str = "gridlog.tables.schema";
/// The `created_by` of every file: fixed, so a newer Parquet library does not change it.
pub const CREATED_BY: &str = "gridlog tables";
/// Rows per row group: what a writer holds before it writes them (about 2 MiB of readings,
/// 6 MiB of events with their JSON), and the unit engines read in parallel and skip by
/// statistics on time and meter. Small for a gateway's memory; engines read groups this
/// size at full speed (DuckDB's own are 122,880 rows).
pub const ROWS_PER_GROUP: usize = 16_384;
/// zstd level of every page: the library's default level 3 costs little CPU on a gateway.
pub const ZSTD_LEVEL: i32 = 3;
/// The folder of the tables under a store prefix.
pub const TABLES_DIR: &str = "tables";

/// The tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Meter readings as recorded.
    Readings,
    /// Asset telemetry as recorded.
    AssetTelemetry,
    /// Every event, its fields as JSON.
    Events,
    /// Per meter and quarter hour: energy in and out, min/mean/max power.
    Intervals,
}

impl Table {
    /// The table's name: its folder and Parquet message name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::AssetTelemetry => "asset_telemetry",
            Table::Events => "events",
            Table::Intervals => "intervals",
        }
    }

    /// Its Parquet schema.
    pub fn schema(self) -> &'static str {
        match self {
            Table::Readings => schema::READINGS_SCHEMA,
            Table::AssetTelemetry => schema::TELEMETRY_SCHEMA,
            Table::Events => schema::EVENTS_SCHEMA,
            Table::Intervals => schema::INTERVALS_SCHEMA,
        }
    }
}

/// Why a segment's tables could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// A record of the segment does not decode as an event.
    #[error("the event at offset {offset} does not decode: {source}")]
    Decode {
        /// Its offset.
        offset: Offset,
        /// Why.
        source: EventDecodeError,
    },
    /// The segment's frames are not a valid sequence.
    #[error(transparent)]
    Segment(#[from] SegmentRecordsInvalid),
    /// The archive file holds another segment than the one asked for.
    #[error("the archive file holds the segment at offset {found_first_offset}, not {expected_first_offset}")]
    OtherSegment {
        /// The segment asked for.
        expected_first_offset: Offset,
        /// The segment the file holds.
        found_first_offset: Offset,
    },
    /// The archive file cannot be read, or is damaged.
    #[error(transparent)]
    Archive(#[from] gridlog_firmware::archive::ArchiveError),
    /// The carry stands at another offset than the segment begins at (a segment skipped).
    #[error("the meters' baselines stand at offset {carry_next_offset}, the segment begins at {segment_first_offset}")]
    CarryElsewhere {
        /// Where the carry stands.
        carry_next_offset: Offset,
        /// Where the segment begins.
        segment_first_offset: Offset,
    },
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The key of a file, relative to the store prefix.
pub fn key(
    table: Table,
    site: &str,
    day: i64,
    first: Offset,
    last: Offset,
    lineage: &str,
) -> String {
    format!(
        "{TABLES_DIR}/{}/site={site}/date={}/{first:020}-{last:020}-{lineage}.parquet",
        table.name(),
        date_of_day(day)
    )
}

/// `YYYY-MM-DD` of a UTC day number (days since 1970-01-01).
pub fn date_of_day(day: i64) -> String {
    day.checked_mul(86_400)
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or(time::Date::MIN, |t| t.date())
        .to_string()
}

#[cfg(test)]
mod tests;
