//! The stores under test behind one interface: gridlog, and with the `peers` feature SQLite
//! (WAL mode, `synchronous=FULL`, behind a group-commit front) and okaywal.
//!
//! Every store acknowledges an append only once it survives power loss: that is what makes
//! the rows comparable.

use std::io;

pub mod gridlog;
#[cfg(feature = "peers")]
pub mod okaywal;
#[cfg(feature = "peers")]
pub mod sqlite;

/// Bytes of every record the benchmark appends (an encoded gateway event is about this size).
pub const RECORD_BYTES: usize = 64;

/// One record's bytes.
pub type Payload = [u8; RECORD_BYTES];

/// The record thread `thread` appends as its `seq`-th: distinct and not all zeros, so no layer
/// can skip or compress it.
pub fn payload(thread: usize, seq: u64) -> Payload {
    let mut p = [0u8; RECORD_BYTES];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p[8..16].copy_from_slice(&(thread as u64).to_le_bytes());
    for (i, b) in p[16..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ (seq as u8);
    }
    p
}

/// A durable log of records, shared by the appender threads.
pub trait Store: Sync {
    /// The name the table shows.
    fn name(&self) -> &'static str;

    /// Appends `records` as one atomic batch; returns once they are durable.
    fn append_durable(&self, records: &[Payload]) -> io::Result<()>;
}
