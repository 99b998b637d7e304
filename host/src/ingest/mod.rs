//! Ingest from what a site already runs: sources → mapping → the engine's commands.
//!
//! - [`line_protocol`]: InfluxDB line protocol, parsed (pure, bounded);
//! - [`mapping`]: a parsed point → a `RecordReading` / `RecordTelemetry` command (units,
//!   ids, invert), by the default or the configured mappings;
//! - [`batch`]: one body → commands and refused lines, and the engine's results back to lines;
//! - [`http`]: the InfluxDB-compatible routes Telegraf writes to.
//!
//! Architecture invariant: adapters only produce engine commands. They decode and convert
//! (units, ids, timestamps) but never validate values, detect duplicates or check counters:
//! the engine's rules decide, exactly as for `POST /api/v1/readings`.

pub mod batch;
pub mod fields;
pub mod http;
pub mod line_protocol;
pub mod mapping;
pub mod mqtt;
pub mod template;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use mapping::{Mapper, MappingConfig, MappingError};

/// Most names of unmapped measurements kept for `/api/v1/status` (the count goes on).
pub const UNMAPPED_NAMES_MAX: usize = 16;

/// The ingest side's state: its mappings and counters.
#[derive(Debug)]
pub struct IngestState {
    mapper: Mapper,
    /// What came in.
    pub stats: IngestStats,
}

impl IngestState {
    /// The state for `mappings` (checked: see [`Mapper::new`]).
    pub fn new(mappings: &[MappingConfig]) -> Result<IngestState, MappingError> {
        Ok(IngestState {
            mapper: Mapper::new(mappings)?,
            stats: IngestStats::default(),
        })
    }

    /// The mappings in force.
    pub fn mapper(&self) -> &Mapper {
        &self.mapper
    }
}

/// Counters of line protocol ingest since start.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Lines stored.
    pub lines_stored: AtomicU64,
    /// Lines already stored before (retries).
    pub lines_duplicate: AtomicU64,
    /// Lines refused (malformed, unmappable or rejected by the engine).
    pub lines_refused: AtomicU64,
    /// Lines whose measurement no mapping takes.
    pub lines_unmapped: AtomicU64,
    unmapped_names: Mutex<BTreeSet<String>>,
}

/// What line-protocol ingest did since start (`/api/v1/status` → `ingest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestCounts {
    /// Lines stored.
    pub lines_stored: u64,
    /// Lines already stored (a retried batch).
    pub lines_duplicate: u64,
    /// Lines refused (malformed, or a rule of the engine).
    pub lines_refused: u64,
    /// Lines of a measurement no mapping takes.
    pub lines_unmapped: u64,
    /// The unmapped measurements' names (at most `UNMAPPED_NAMES_MAX`).
    pub unmapped_measurements: Vec<String>,
}

impl IngestStats {
    /// Counts what became of one body.
    pub fn record(&self, outcome: &batch::Outcome, unmapped: &[String]) {
        let add = |counter: &AtomicU64, n: usize| {
            counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        add(&self.lines_stored, outcome.stored);
        add(&self.lines_duplicate, outcome.duplicates);
        add(&self.lines_refused, outcome.refused.len());
        add(&self.lines_unmapped, outcome.unmapped);
        if !unmapped.is_empty() {
            let mut names = self
                .unmapped_names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for name in unmapped {
                if names.len() >= UNMAPPED_NAMES_MAX {
                    break;
                }
                if !names.contains(name) {
                    names.insert(name.clone());
                }
            }
        }
    }

    /// The counters now, for `/api/v1/status` and `/metrics`.
    pub fn counts(&self) -> IngestCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestCounts {
            lines_stored: get(&self.lines_stored),
            lines_duplicate: get(&self.lines_duplicate),
            lines_refused: get(&self.lines_refused),
            lines_unmapped: get(&self.lines_unmapped),
            unmapped_measurements: self
                .unmapped_names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}
