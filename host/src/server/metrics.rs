//! `/metrics`: Prometheus metrics, rendered from one table.
//!
//! Every metric is a row of [`METRICS`]: its name without the unit, help, kind, unit and how
//! its value is read from a [`Sample`] taken once per scrape. The unit is a column, not
//! part of a hand-written name: the exposition appends it (`_seconds`, `_bytes`) and
//! announces it on a `# UNIT` line, so a name cannot claim a unit its value is not in.
//! Times are in seconds and sizes in bytes, the Prometheus base units; counts have no unit.

use std::sync::atomic::Ordering::Relaxed;

use gridlog_firmware::engine::EngineStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::ingest::mqtt::MqttCounts;
use crate::ingest::IngestCounts;
use crate::modbus::status::DeviceStatusBody;
use crate::ship::status::{unix_ms_now, ShipStatus};

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "gridlog";

/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (while the process runs); exposed with `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// The unit of a metric's value, appended to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// A count, or a 0/1 state: no suffix.
    Count,
    /// Bytes: `_bytes`.
    Bytes,
    /// Seconds: `_seconds`.
    Seconds,
}

/// A metric's value: integers stay integers in the exposition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A whole number.
    Int(u64),
    /// A fraction (times in seconds).
    Float(f64),
}

/// What one scrape reads: gathered once, then every row picks its value.
#[derive(Debug)]
pub struct Sample<'a> {
    /// The engine's counters.
    pub stats: EngineStats,
    /// Segments in the hot log.
    pub segments: u64,
    /// Meters and assets.
    pub entities: u64,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Bytes free on the data directory's file system, if known.
    pub disk_free_bytes: Option<u64>,
    /// The shipper's state, when shipping is on.
    pub shipping: Option<&'a ShipStatus>,
    /// Milliseconds since the Unix epoch at the scrape.
    pub now_unix_ms: u64,
    /// Line-protocol ingest's counters.
    pub ingest: IngestCounts,
    /// The MQTT subscriber's counters, when it runs.
    pub mqtt: Option<MqttCounts>,
    /// The Modbus devices' status (none when no device is configured).
    pub modbus: Vec<DeviceStatusBody>,
    /// The served TLS certificate's notAfter, seconds since the Unix epoch (TLS on and
    /// the date readable).
    pub tls_not_after_unix_s: Option<i64>,
}

/// One row of the table.
#[derive(Debug)]
pub struct Metric {
    /// Name without prefix and unit.
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its unit.
    pub unit: MetricUnit,
    /// Its value now; `None` leaves it out (shipping off, disk space unknown).
    pub value: fn(&Sample<'_>) -> Option<Value>,
}

const fn row(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    unit: MetricUnit,
    value: fn(&Sample<'_>) -> Option<Value>,
) -> Metric {
    Metric {
        name,
        help,
        kind,
        unit,
        value,
    }
}

fn int(v: u64) -> Option<Value> {
    Some(Value::Int(v))
}

/// A sum over the MQTT sources; absent when MQTT is off.
fn mqtt(
    s: &Sample<'_>,
    f: impl Fn(&crate::ingest::mqtt::status::SourceCounts) -> u64,
) -> Option<Value> {
    s.mqtt
        .as_ref()
        .map(|m| Value::Int(m.sources.iter().map(f).sum()))
}

fn ship(s: &Sample<'_>, f: impl Fn(&ShipStatus) -> u64) -> Option<Value> {
    s.shipping.map(|ship| Value::Int(f(ship)))
}

use Kind::{Counter as C, Gauge as G};
use MetricUnit::{Bytes, Count, Seconds};

/// Every metric `/metrics` serves.
pub const METRICS: &[Metric] = &[
    row("commands_accepted", "Commands accepted", C, Count, |s| int(s.stats.accepted)),
    row("commands_duplicate", "Commands that were duplicates", C, Count, |s| int(s.stats.duplicates)),
    row("commands_rejected", "Commands rejected", C, Count, |s| int(s.stats.rejected)),
    row("commit_rounds", "Write rounds, one fdatasync each", C, Count, |s| int(s.stats.wal.rounds)),
    row("commit_records", "Records made durable", C, Count, |s| int(s.stats.wal.records)),
    row("commit", "Frame bytes made durable", C, Bytes, |s| int(s.stats.wal.bytes)),
    row("fsync", "Total time in fdatasync", C, Seconds, |s| {
        Some(Value::Float(s.stats.wal.sync_nanos as f64 / 1e9))
    }),
    row("segment_rotations", "Log segments rotated", C, Count, |s| int(s.stats.wal.rotations)),
    row("segment_recycled_rotations", "Log segment rotations into a recycled file", C, Count, |s| {
        int(s.stats.wal.recycled_rotations)
    }),
    row("last_offset", "Newest committed offset", G, Count, |s| {
        int(s.stats.committed_offset.saturating_sub(1))
    }),
    row("queue_depth", "Requests waiting for the processor", G, Count, |s| int(s.stats.queued as u64)),
    row("segments", "Segments in the hot log", G, Count, |s| int(s.segments)),
    row("disk_full", "1 while the next segment cannot be preallocated", G, Count, |s| {
        int(u64::from(s.stats.wal.disk_full))
    }),
    row(
        "resources_exhausted",
        "1 while the next segment cannot be preallocated for want of file handles or memory",
        G,
        Count,
        |s| int(u64::from(s.stats.wal.resources_exhausted)),
    ),
    row("entities", "Meters and assets", G, Count, |s| int(s.entities)),
    row("uptime", "Time since the server started", G, Seconds, |s| Some(Value::Float(s.uptime_s))),
    row("snapshots_written", "Snapshots written since start", C, Count, |s| {
        int(s.stats.storage.snapshots_written)
    }),
    row("segments_archived", "Segments moved into the archive since start", C, Count, |s| {
        int(s.stats.storage.segments_archived)
    }),
    row("archive", "Bytes in the local archive", G, Bytes, |s| int(s.stats.storage.archive_bytes)),
    row(
        "rollup_queued",
        "Sealed rollup days queued in memory for the rollup store",
        G,
        Bytes,
        |s| int(s.stats.storage.rollup_queued_bytes),
    ),
    row("rollup_spills", "Rollup spills written since start", C, Count, |s| {
        int(s.stats.storage.rollup_spills)
    }),
    row(
        "archive_over_budget",
        "1 while the archive is over budget with nothing evictable",
        G,
        Count,
        |s| int(u64::from(s.stats.storage.archive_over_budget)),
    ),
    row(
        "ship_recovery_point_next_offset",
        "One past the newest offset central storage holds without a gap",
        G,
        Count,
        |s| ship(s, |p| p.recovery_point().next_offset),
    ),
    row(
        "ship_recovery_lag",
        "Time the oldest acknowledged event not yet in central storage has waited (0 when it holds everything)",
        G,
        Seconds,
        |s| ship(s, |p| p.recovery_point().lag_s(s.now_unix_ms)),
    ),
    row("ship_backlog_objects", "Objects waiting to be shipped to central storage", G, Count, |s| {
        ship(s, |p| p.backlog().objects)
    }),
    row("ship_backlog", "Bytes waiting to be shipped to central storage", G, Bytes, |s| {
        ship(s, |p| p.backlog().bytes)
    }),
    row(
        "ship_backlog_oldest_age",
        "Age of the oldest object waiting to be shipped (0 when none)",
        G,
        Seconds,
        |s| {
            ship(s, |p| {
                p.backlog()
                    .oldest_created_unix_ms
                    .map_or(0, |t| s.now_unix_ms.saturating_sub(t) / 1000)
            })
        },
    ),
    row(
        "ship_objects",
        "Objects confirmed in central storage (segments, snapshots, manifests)",
        C,
        Count,
        |s| ship(s, |p| p.objects_shipped.load(Relaxed)),
    ),
    row("ship", "Bytes of objects confirmed in central storage", C, Bytes, |s| {
        ship(s, |p| p.bytes_shipped.load(Relaxed))
    }),
    row("ship_duplicates", "Uploads found already in the store with the same content", C, Count, |s| {
        ship(s, |p| p.duplicates.load(Relaxed))
    }),
    row("ship_requests", "Requests sent to central storage", C, Count, |s| {
        ship(s, |p| p.requests.load(Relaxed))
    }),
    row("ship_retries", "Failed requests to central storage that were retried", C, Count, |s| {
        ship(s, |p| p.retries.load(Relaxed))
    }),
    row("ship_sent", "Request body bytes sent to central storage", C, Bytes, |s| {
        ship(s, |p| p.bytes_sent.load(Relaxed))
    }),
    row("ship_alarms", "Objects in central storage that differ from the local copy", C, Count, |s| {
        ship(s, |p| p.alarms_total.load(Relaxed))
    }),
    row("ship_tables_files", "Fleet table files (Parquet) verified in central storage", C, Count, |s| {
        ship(s, |p| p.tables.files.load(Relaxed))
    }),
    row("ship_tables", "Bytes of fleet table files verified in central storage", C, Bytes, |s| {
        ship(s, |p| p.tables.bytes.load(Relaxed))
    }),
    row("ingest_lines_stored", "Line protocol lines stored", C, Count, |s| int(s.ingest.lines_stored)),
    row("ingest_lines_duplicate", "Line protocol lines already stored (retries)", C, Count, |s| {
        int(s.ingest.lines_duplicate)
    }),
    row("ingest_lines_refused", "Line protocol lines refused", C, Count, |s| int(s.ingest.lines_refused)),
    row("ingest_lines_unmapped", "Line protocol lines of a measurement no mapping takes", C, Count, |s| {
        int(s.ingest.lines_unmapped)
    }),
    row("mqtt_connected", "1 while the MQTT broker connection is up", G, Count, |s| {
        s.mqtt.as_ref().map(|m| Value::Int(u64::from(m.connected)))
    }),
    row("mqtt_connections", "MQTT connections made (1 + reconnections)", C, Count, |s| {
        s.mqtt.as_ref().map(|m| Value::Int(m.connections))
    }),
    row("mqtt_messages", "MQTT messages received on the sources' topics", C, Count, |s| mqtt(s, |c| c.messages)),
    row("mqtt_stored", "Readings and telemetry stored from MQTT", C, Count, |s| mqtt(s, |c| c.stored)),
    row("mqtt_duplicates", "MQTT readings already stored (redeliveries)", C, Count, |s| mqtt(s, |c| c.duplicates)),
    row("mqtt_rejected", "MQTT commands the engine refused", C, Count, |s| {
        mqtt(s, |c| c.rejected.values().sum())
    }),
    row("mqtt_refused", "MQTT messages that made no command (bad payload, incomplete, ...)", C, Count, |s| {
        mqtt(s, |c| c.refused.values().sum())
    }),
    row("disk_free", "Bytes free on the data directory's file system", G, Bytes, |s| {
        s.disk_free_bytes.map(Value::Int)
    }),
    row(
        "tls_certificate_not_after",
        "When the served TLS certificate expires (notAfter), since the Unix epoch",
        G,
        Seconds,
        |s| s.tls_not_after_unix_s.and_then(|t| u64::try_from(t).ok()).map(Value::Int),
    ),
];

impl<'a> Sample<'a> {
    /// A sample of the engine's counters now.
    pub fn new(
        stats: EngineStats,
        segments: u64,
        entities: u64,
        uptime_s: f64,
        disk_free_bytes: Option<u64>,
        shipping: Option<&'a ShipStatus>,
    ) -> Sample<'a> {
        Sample {
            stats,
            segments,
            entities,
            uptime_s,
            disk_free_bytes,
            shipping,
            now_unix_ms: unix_ms_now(),
            ingest: IngestCounts::default(),
            mqtt: None,
            modbus: Vec::new(),
            tls_not_after_unix_s: None,
        }
    }

    /// The same sample with line-protocol ingest's counters.
    pub fn with_ingest(self, ingest: IngestCounts) -> Sample<'a> {
        Sample { ingest, ..self }
    }

    /// The same sample with the MQTT subscriber's counters.
    pub fn with_mqtt(self, mqtt: Option<MqttCounts>) -> Sample<'a> {
        Sample { mqtt, ..self }
    }

    /// The same sample with the served certificate's notAfter.
    pub fn with_tls(self, tls_not_after_unix_s: Option<i64>) -> Sample<'a> {
        Sample {
            tls_not_after_unix_s,
            ..self
        }
    }

    /// The same sample with the Modbus devices' status.
    pub fn with_modbus(self, modbus: Vec<DeviceStatusBody>) -> Sample<'a> {
        Sample { modbus, ..self }
    }
}

/// The text exposition of every metric of [`METRICS`] that has a value in `sample`.
pub fn render(sample: &Sample<'_>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix(METRIC_PREFIX);
    for metric in METRICS {
        let Some(value) = (metric.value)(sample) else {
            continue;
        };
        register(&mut registry, metric, value);
    }
    register_modbus(&mut registry, &sample.modbus);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn register(registry: &mut Registry, metric: &Metric, value: Value) {
    use std::sync::atomic::AtomicU64;
    match (metric.kind, value) {
        (Kind::Counter, Value::Int(v)) => {
            let c: Counter = Counter::default();
            c.inc_by(v);
            add(registry, metric, c);
        }
        (Kind::Counter, Value::Float(v)) => {
            let c: Counter<f64, AtomicU64> = Counter::default();
            c.inc_by(v);
            add(registry, metric, c);
        }
        (Kind::Gauge, Value::Int(v)) => {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            add(registry, metric, g);
        }
        (Kind::Gauge, Value::Float(v)) => {
            let g: Gauge<f64, AtomicU64> = Gauge::default();
            g.set(v);
            add(registry, metric, g);
        }
    }
}

/// Per-device Modbus metrics, labelled `device` (and `kind` for errors); none without
/// devices. Durations are in seconds like every time here.
fn register_modbus(registry: &mut Registry, devices: &[DeviceStatusBody]) {
    use prometheus_client::metrics::family::Family;
    use std::sync::atomic::AtomicU64;
    type Labels = Vec<(String, String)>;
    if devices.is_empty() {
        return;
    }
    let up: Family<Labels, Gauge> = Family::default();
    let connected: Family<Labels, Gauge> = Family::default();
    let polls: Family<Labels, Counter> = Family::default();
    let errors: Family<Labels, Counter> = Family::default();
    let p50: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    let p99: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    for d in devices {
        let device: Labels = vec![("device".into(), d.name.clone())];
        up.get_or_create(&device).set(i64::from(!d.unavailable));
        connected.get_or_create(&device).set(i64::from(d.connected));
        polls.get_or_create(&device).inc_by(d.polls);
        for (kind, n) in &d.errors {
            let mut labels = device.clone();
            labels.push(("kind".into(), kind.clone()));
            errors.get_or_create(&labels).inc_by(*n);
        }
        if let (Some(a), Some(b)) = (d.poll_duration_ms_p50, d.poll_duration_ms_p99) {
            p50.get_or_create(&device).set(a / 1000.0);
            p99.get_or_create(&device).set(b / 1000.0);
        }
    }
    registry.register(
        "modbus_device_up",
        "1 while the device answers, 0 once it is unavailable",
        up,
    );
    registry.register(
        "modbus_device_connected",
        "1 while the device's bus is connected",
        connected,
    );
    registry.register("modbus_polls", "Polls whose records are durable", polls);
    registry.register(
        "modbus_poll_errors",
        "Failed or incomplete polls by kind",
        errors,
    );
    let (p50_help, p99_help) = (
        "Median time from a poll's slot until its records are durable",
        "99th percentile time from a poll's slot until its records are durable",
    );
    registry.register_with_unit("modbus_poll_duration_p50", p50_help, Unit::Seconds, p50);
    registry.register_with_unit("modbus_poll_duration_p99", p99_help, Unit::Seconds, p99);
}

fn add(registry: &mut Registry, metric: &Metric, m: impl prometheus_client::registry::Metric) {
    match metric.unit {
        MetricUnit::Count => registry.register(metric.name, metric.help, m),
        MetricUnit::Bytes => registry.register_with_unit(metric.name, metric.help, Unit::Bytes, m),
        MetricUnit::Seconds => {
            registry.register_with_unit(metric.name, metric.help, Unit::Seconds, m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_name_carries_a_unit_of_its_own() {
        // The unit column adds the suffix; a name ending in one would say it twice or
        // say another unit than the column.
        for m in METRICS {
            for suffix in [
                "_seconds", "_bytes", "_ms", "_millis", "_us", "_micros", "_s", "_total",
            ] {
                assert!(!m.name.ends_with(suffix), "{} ends in {suffix}", m.name);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = METRICS.iter().map(|m| (m.name, m.unit)).collect();
        names.sort_by_key(|(n, _)| *n);
        for w in names.windows(2) {
            assert_ne!(w[0].0, w[1].0);
        }
    }
}
