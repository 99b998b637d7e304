//! Shipping to central storage, and rebuilding a gateway from it.
//!
//! Sealed segments leave the hot log into the local archive (`firmware::archive`); the
//! shipper uploads each archive file, unchanged, to S3-compatible object storage (or a
//! directory, for simple installs), ships the newest snapshot now and then, and after each
//! round writes a manifest that lists what the round verified and names the manifest before
//! it. Restore walks that chain back and rebuilds a data directory.
//!
//! ```text
//! archive/ + snapshots/ ──backlog──▶ ShipIntended (durable)
//!                                     │  PUT create-only ─▶ already exists? read back, compare
//!                                     │  GET read-back ──▶ SHA-256 equal? else alarm, keep local
//!                                     ▼
//!                      manifest N (lists the round, names N-1) PUT + GET
//!                                     ▼
//!                      ShipConfirmed for every object of the round, then for manifest N
//! ```
//!
//! A segment counts as shipped (`ShipConfirmed`, so the archive budget may evict it) only
//! once a durable manifest in the store covers it. At start, one listing of the lineage's
//! prefix reconciles the log with the store: a manifest written but not recorded (a crash)
//! is checked against the chain and recorded; an object written but not yet in a manifest is
//! read back instead of uploaded again.
//!
//! The recovery point: between archives, the durable tail of the log goes up as chunk
//! objects ([`chunk`], [`tail`]) once its oldest record has waited a quarter of
//! `ship.max_lag_s`, so every acknowledged event is verified in the store within that bound
//! while the uplink is up. Tail rounds record no events (they would be new tail); a later
//! segment supersedes the chunks it covers, which are deleted once it is verified.
//!
//! Files by role: [`layout`] (keys), [`lineage`] (the `LINEAGE` id and a restore's parent
//! link), [`manifest`], [`chunk`] (the chunk format), [`tail`] (tail-round decisions and
//! state), [`store`] (the store, create-only upload with read-back),
//! [`retry`] (backoff with full jitter), [`shipper`] (the loop and its events),
//! [`restore`], [`status`].
//!
//! Requests per object: one PUT and one GET; per round one PUT and one GET for the manifest;
//! one listing at start. With 64 MiB segments that is about 40 requests per GiB of log.

pub mod audit;
pub mod chunk;
pub mod export;
pub mod layout;
pub mod lineage;
pub mod manifest;
pub mod record;
pub mod restore;
pub mod retry;
pub mod sha;
pub mod shipper;
pub mod status;
pub mod store;
pub mod tail;

pub use sha::Sha256;
pub use shipper::{ShipError, Shipper};
pub use status::ShipStatus;
pub use store::StoreUrl;

/// Most uploads in flight that `ship.concurrency` may ask for.
pub const CONCURRENCY_MAX: usize = 64;

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    Sha256::of(bytes)
}
