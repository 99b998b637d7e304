//! Polling the site's meters and inverters over Modbus (TCP, or RTU on a serial port), with
//! SunSpec discovery or an explicit register map: what it reads becomes the engine's
//! commands (meter readings, asset telemetry, availability), submitted exactly as
//! `POST /api/v1/readings` submits them.
//!
//! - [`config`]: `[[modbus.device]]` and each device's check;
//! - [`decode`]: words → numbers (types, byte orders, "not implemented" values, scale
//!   factors); [`sunspec`]: the marker, the model chain walk and the models' points;
//!   [`discovery`]: a walked chain → the models read, the entities and their commands;
//!   [`registers`]: explicit points → reads and values; [`mapping`]: values → commands;
//!   [`schedule`]: wall-clock slots, failures and backoff — all pure, unit-tested;
//! - [`link`]: one bus's connection and its reads; [`poller`]: one task per bus;
//!   [`status`]: what each device is doing.
//!
//! Architecture invariant: the poller only produces engine commands. It decodes and
//! converts (units, ids, timestamps, scale factors) but never validates values, detects
//! duplicates or checks counters: a wrapping acc32 register is registered with
//! `register_bits = 32` so the ENGINE records the rollover, and a "not implemented" value
//! never reaches the engine at all.

pub mod config;
pub mod decode;
pub mod discovery;
pub mod link;
pub mod mapping;
pub mod poller;
pub mod registers;
pub mod schedule;
pub mod status;
pub mod sunspec;
