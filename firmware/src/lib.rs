//! gridlog's engine, as a synchronous, thread-safe library: no async runtime, no HTTP.
//!
//! - [`wal`]: the segmented, checksummed, group-committed write-ahead log and its recovery.
//! - [`lock`]: the single-writer lock on a data directory.
//! - [`snapshot`]: checksummed snapshots of the image, written off the write path.
//! - [`archive`]: compressed, verified copies of sealed segments that left the hot log.
//! - [`engine`]: meters and assets as event-sourced entities: validation, the processor,
//!   the in-memory image, queries and subscriptions.
//!
//! `unsafe` lives only in the private `mmap` and `hints` modules.
#![warn(missing_docs)]

mod hints;
mod mmap;

pub mod archive;
pub mod snapshot;

pub mod engine;
pub mod lock;
pub mod wal;

pub use gridlog_common as common;
