//! gridlog's interface crate: the types and byte formats every part of gridlog shares.
//!
//! `no_std` and free of I/O, so a meter-side adapter on a microcontroller
//! (`thumbv7em-none-eabihf`) can encode the same frames the gateway stores.
//! The `alloc` feature (default) adds owned types; `std` adds nothing but `std::error::Error`
//! glue through `core::error::Error`, which is already implemented.
//!
//! Modules:
//! - [`varint`]: postcard's LEB128 integers, by hand for the zero-copy hot paths.
//! - [`frame`]: the checksummed envelope around every stored body (length, CRC32, body).
//! - [`batch`]: frame bodies — a batch of records, or a segment footer — in postcard's layout.
//! - [`segment`]: the fixed 64-byte header that opens every log segment file.
//! - [`archive`]: the header of an archived (compressed) segment file.
//! - [`id`]: bounded, validated ids and labels.
//! - [`domain`]: meters, assets, commands, events and the versioned event record.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod archive;
pub mod batch;
pub mod domain;
pub mod frame;
pub mod id;
pub mod segment;
pub mod varint;

/// A position in the global log: every record has one, gap-free, starting at
/// [`FIRST_OFFSET`].
pub type Offset = u64;

/// The offset of the first record of a new log. Offsets start at 1 so that `after=0`
/// (exclusive resume) means "from the beginning".
pub const FIRST_OFFSET: Offset = 1;
