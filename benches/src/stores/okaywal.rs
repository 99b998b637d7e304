//! okaywal 0.3: a WAL that group-commits on its own. `EntryWriter::commit` returns after an
//! `fdatasync` that covers the entry (one thread syncs for everyone waiting), so an
//! acknowledged entry is as durable as a gridlog batch.
//!
//! Each record is one chunk (individually addressable, like a gridlog record); a batch is one
//! entry, so it is atomic like a gridlog frame. The configuration is okaywal's default
//! (`WriteAheadLog::recover`): 1 MiB preallocated files, recycled after each checkpoint;
//! checkpointing does nothing here ([`okaywal::LogVoid`]), as gridlog's benchmark has no
//! snapshot either.

use std::io;
use std::path::Path;

use okaywal::{LogVoid, WriteAheadLog};

use super::{Payload, Store};

/// okaywal with its default configuration.
#[derive(Debug)]
pub struct OkaywalStore {
    log: WriteAheadLog,
}

impl OkaywalStore {
    /// Creates a log in `dir`.
    pub fn open(dir: &Path) -> io::Result<OkaywalStore> {
        Ok(OkaywalStore {
            log: WriteAheadLog::recover(dir, LogVoid)?,
        })
    }
}

impl Store for OkaywalStore {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn append_durable(&self, records: &[Payload]) -> io::Result<()> {
        let mut entry = self.log.begin_entry()?;
        for record in records {
            entry.write_chunk(record)?;
        }
        entry.commit()?;
        Ok(())
    }
}
