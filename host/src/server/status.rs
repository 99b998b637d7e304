//! The bodies of `/api/v1/status`, `/healthz` and `/readyz`: typed, so the OpenAPI document describes
//! every field, and built from the engine's counters in one place ([`status_body`]).
//!
//! Units are in the field names (`_bytes`, `_ms`, `_us`, `_s`). Nothing here is a
//! firmware `Debug` string: what recovery did is [`RecoveryBody`], field by field.

use gridlog_firmware::engine::Engine;
use gridlog_firmware::wal::RecoveryReport;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::ship::status::ShippingBody;

/// `/api/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    /// The site's id.
    pub site_id: String,
    /// The gridlog version.
    pub version: &'static str,
    /// The gateway's time, RFC 3339.
    pub now: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// Writes are accepted (the log has not failed and the server is not stopping).
    pub ready: bool,
    /// The newest committed offset (0: empty log).
    pub last_offset: u64,
    /// The image digest, 16 hex digits.
    pub digest: String,
    /// Meters and assets.
    pub entities: usize,
    /// Commands since start.
    pub commands: CommandsBody,
    /// The request queue.
    pub queue: QueueBody,
    /// Line-protocol ingest (`/write`, `/api/v2/write`) since start.
    pub ingest: crate::ingest::IngestCounts,
    /// The MQTT subscriber, when `mqtt.url` is set.
    pub mqtt: Option<crate::ingest::mqtt::MqttCounts>,
    /// Group commit.
    pub commit: CommitBody,
    /// The hot log.
    pub log: LogBody,
    /// The start-up replay.
    pub replay: ReplayBody,
    /// Snapshots.
    pub snapshots: SnapshotsBody,
    /// The local archive.
    pub archive: ArchiveBody,
    /// The rollup store: meters' sealed days on disk.
    pub rollups: RollupsBody,
    /// Shipping to central storage.
    pub shipping: ShippingBody,
    /// The Modbus devices polled (`[[modbus.device]]`), in configuration order.
    pub modbus: Vec<crate::modbus::status::DeviceStatusBody>,
    /// Bytes free on the data directory's file system, if known.
    pub disk_free_bytes: Option<u64>,
    /// Why the log failed, if it did (writes are refused until restart).
    pub failed: Option<String>,
    /// The HTTPS listener's certificate, when `tls.cert_file` is set.
    pub tls: Option<TlsBody>,
}

/// The certificate the listener serves now (after the last successful reload).
#[derive(Debug, Serialize, ToSchema)]
pub struct TlsBody {
    /// `tls.cert_file`.
    pub cert_file: String,
    /// The certificate's notAfter, RFC 3339, if it could be read.
    pub not_after: Option<String>,
}

/// Commands since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandsBody {
    /// Accepted.
    pub accepted: u64,
    /// Duplicates (stored nothing).
    pub duplicates: u64,
    /// Rejected.
    pub rejected: u64,
}

/// The request queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueBody {
    /// Requests waiting for the processor.
    pub depth: usize,
    /// Its bound, `engine.queue_depth`.
    pub capacity: usize,
}

/// Group commit since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommitBody {
    /// Write rounds, one fdatasync each.
    pub rounds: u64,
    /// Records made durable.
    pub records: u64,
    /// Frame bytes made durable.
    pub bytes: u64,
    /// Processor batches.
    pub batches: u64,
    /// Records per round.
    pub mean_records_per_round: f64,
    /// Mean fdatasync time, microseconds.
    pub fsync_mean_us: u64,
    /// Upper bound of the median fdatasync's log2 bucket, microseconds.
    pub fsync_p50_us_le: Option<u64>,
    /// Upper bound of the 99th percentile's bucket, microseconds.
    pub fsync_p99_us_le: Option<u64>,
    /// fdatasync times: bucket i counts those under 2^i microseconds.
    pub fsync_histogram_us_log2: Vec<u64>,
    /// Frames per round: bucket i counts rounds of under 2^i frames.
    pub round_frames_histogram_log2: Vec<u64>,
}

/// The hot log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogBody {
    /// Segments.
    pub segments: usize,
    /// The oldest offset it holds.
    pub oldest_offset: u64,
    /// Size of a segment file, `wal.segment_bytes`.
    pub segment_bytes: u64,
    /// Rotations since start.
    pub rotations: u64,
    /// Of `rotations`, those into a recycled segment file (an archived segment's file
    /// reused: no new blocks to allocate, nothing written twice).
    pub recycled_rotations: u64,
    /// The next segment cannot be preallocated for want of space.
    pub disk_full: bool,
    /// ... for want of file handles or memory.
    pub resources_exhausted: bool,
    /// What recovery found and did when the log was opened.
    pub recovery: RecoveryBody,
}

/// What recovery found and did when the log was opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryBody {
    /// A torn tail that was zeroed (a write round never acknowledged), if any.
    pub torn_tail: Option<TornTailBody>,
    /// Files moved to `wal/quarantine/` (quarantine-corrupt mode), with why.
    pub quarantined: Vec<QuarantinedBody>,
    /// A leftover preallocated segment was removed.
    pub removed_prealloc: bool,
    /// Segments after recovery.
    pub segments: usize,
    /// Records in the hot log after recovery.
    pub records: u64,
}

/// A torn tail recovery zeroed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TornTailBody {
    /// The segment file.
    pub path: String,
    /// Its first invalid byte.
    pub position: u64,
    /// Bytes zeroed.
    pub zeroed_bytes: u64,
}

/// A file recovery moved to quarantine.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinedBody {
    /// Where it was.
    pub path: String,
    /// The damaged file.
    pub damage_path: String,
    /// Byte position of the damage.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

impl From<&RecoveryReport> for RecoveryBody {
    fn from(r: &RecoveryReport) -> RecoveryBody {
        RecoveryBody {
            torn_tail: r
                .torn_tail
                .as_ref()
                .map(|(path, position, zeroed)| TornTailBody {
                    path: path.display().to_string(),
                    position: *position,
                    zeroed_bytes: *zeroed,
                }),
            quarantined: r
                .quarantined
                .iter()
                .map(|(path, damage)| QuarantinedBody {
                    path: path.display().to_string(),
                    damage_path: damage.path.display().to_string(),
                    position: damage.position,
                    reason: damage.reason.clone(),
                })
                .collect(),
            removed_prealloc: r.removed_prealloc,
            segments: r.segments,
            records: r.records,
        }
    }
}

/// The start-up replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayBody {
    /// Events replayed.
    pub events: u64,
    /// How long it took.
    pub duration_ms: u64,
}

/// Snapshots.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotsBody {
    /// Written since start.
    pub written: u64,
    /// Offset (exclusive) of the newest written since start.
    pub last_offset: Option<u64>,
    /// Its size.
    pub last_bytes: u64,
    /// How long writing it took.
    pub last_duration_ms: u64,
    /// Snapshot files kept.
    pub kept: usize,
    /// Where start-up found its state (`snapshot at offset N`, `full replay`).
    pub started_from: String,
}

/// The local archive.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArchiveBody {
    /// Its size now.
    pub bytes: u64,
    /// Segments archived since start.
    pub segments_archived: u64,
    /// Original bytes archived since start.
    pub original_bytes: u64,
    /// Archive file bytes written since start.
    pub file_bytes: u64,
    /// Over `storage.archive_budget_bytes` with nothing it may evict.
    pub over_budget: bool,
    /// `storage.archive_budget_bytes`.
    pub budget_bytes: u64,
    /// Segments evicted since start.
    pub evicted: u64,
    /// The last storage error, if the last cycle failed.
    pub last_error: Option<String>,
}

/// The rollup store (`rollups/`): every meter's days before its current one.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollupsBody {
    /// Sealed days and late readings into them queued in memory for the store (at most
    /// about 4 × `storage.rollup_spill_bytes`; ingest waits for a spill beyond it).
    pub queued_bytes: u64,
    /// Spill files in use.
    pub spill_files: usize,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Spills written since start.
    pub spills_written: u64,
    /// Merges of spills since start.
    pub merges: u64,
}

/// `/healthz`: the process answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HealthBody {
    /// Always, while it answers at all.
    Ok,
}

/// `/readyz`: `ready` (200), or why not (503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReadyBody {
    /// The log is open and writes are accepted.
    Ready,
    /// The log is being recovered.
    Recovering,
    /// The server is stopping.
    Stopping,
    /// The log failed; writes are refused until restart.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The status of `state` over `engine`, now.
pub fn status_body(state: &AppState, engine: &Engine) -> StatusBody {
    let stats = engine.stats();
    let wal = engine.wal();
    let config = state.config();
    let commit = &stats.wal;
    StatusBody {
        site_id: config.site_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        now: super::wire::rfc3339(engine.now_ms()),
        uptime_s: state.inner.started.elapsed().as_secs(),
        ready: !state.shutting_down() && stats.failed.is_none(),
        last_offset: stats.committed_offset.saturating_sub(1),
        digest: format!("{:016x}", engine.digest()),
        entities: engine.read(|i| i.len()),
        commands: CommandsBody {
            accepted: stats.accepted,
            duplicates: stats.duplicates,
            rejected: stats.rejected,
        },
        queue: QueueBody {
            depth: stats.queued,
            capacity: config.engine.queue_depth,
        },
        ingest: state.ingest().stats.counts(),
        mqtt: state.mqtt().map(|m| m.counts()),
        commit: CommitBody {
            rounds: commit.rounds,
            records: commit.records,
            bytes: commit.bytes,
            batches: stats.batches,
            mean_records_per_round: if commit.rounds == 0 {
                0.0
            } else {
                commit.records as f64 / commit.rounds as f64
            },
            fsync_mean_us: commit.sync_nanos.checked_div(commit.rounds).unwrap_or(0) / 1000,
            fsync_p50_us_le: log2_percentile(&commit.sync_micros_log2, 0.5),
            fsync_p99_us_le: log2_percentile(&commit.sync_micros_log2, 0.99),
            fsync_histogram_us_log2: commit.sync_micros_log2.clone(),
            round_frames_histogram_log2: commit.round_frames_log2.clone(),
        },
        log: LogBody {
            segments: wal.segments().len(),
            oldest_offset: wal.oldest_offset(),
            segment_bytes: config.wal.segment_bytes,
            rotations: commit.rotations,
            recycled_rotations: commit.recycled_rotations,
            disk_full: commit.disk_full,
            resources_exhausted: commit.resources_exhausted,
            recovery: wal.recovery_report().into(),
        },
        replay: ReplayBody {
            events: stats.replayed_events,
            duration_ms: stats.replay_millis,
        },
        snapshots: SnapshotsBody {
            written: stats.storage.snapshots_written,
            last_offset: stats.storage.last_snapshot_offset,
            last_bytes: stats.storage.last_snapshot_bytes,
            last_duration_ms: stats.storage.last_snapshot_millis,
            kept: gridlog_firmware::snapshot::list(&config.data_dir).map_or(0, |l| l.len()),
            started_from: engine.started_from().to_string(),
        },
        archive: ArchiveBody {
            bytes: stats.storage.archive_bytes,
            segments_archived: stats.storage.segments_archived,
            original_bytes: stats.storage.archived_original_bytes,
            file_bytes: stats.storage.archived_file_bytes,
            over_budget: stats.storage.archive_over_budget,
            budget_bytes: config.storage.archive_budget_bytes,
            evicted: stats.storage.evicted,
            last_error: stats.storage.last_error.clone(),
        },
        rollups: {
            let (spill_files, bytes) = engine.rollup_store_size();
            RollupsBody {
                queued_bytes: stats.storage.rollup_queued_bytes,
                spill_files,
                bytes,
                spills_written: stats.storage.rollup_spills,
                merges: stats.storage.rollup_merges,
            }
        },
        shipping: state
            .shipping()
            .map_or_else(ShippingBody::disabled, |s| s.body()),
        modbus: state.modbus(),
        disk_free_bytes: super::ops::disk_free_bytes(&config.data_dir),
        failed: stats.failed.as_ref().map(ToString::to_string),
        tls: state.tls().map(|tls| TlsBody {
            cert_file: tls.cert_file().display().to_string(),
            not_after: tls
                .current()
                .not_after_unix_s
                .map(|s| super::wire::rfc3339(s.saturating_mul(1000))),
        }),
    }
}

/// Percentile (0..=1) from a log2 histogram, as the upper bound of its bucket.
fn log2_percentile(buckets: &[u64], p: f64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let target = (total as f64 * p).ceil() as u64;
    let mut seen = 0;
    for (i, &n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= target {
            return Some(1u64 << i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_spelled_as_before() {
        let json = |b: ReadyBody| serde_json::to_value(b).unwrap();
        assert_eq!(
            json(ReadyBody::Ready),
            serde_json::json!({"status": "ready"})
        );
        assert_eq!(
            json(ReadyBody::Recovering),
            serde_json::json!({"status": "recovering"})
        );
        assert_eq!(
            json(ReadyBody::Stopping),
            serde_json::json!({"status": "stopping"})
        );
        assert_eq!(
            json(ReadyBody::Failed {
                reason: "disk".into()
            }),
            serde_json::json!({"status": "failed", "reason": "disk"})
        );
    }

    #[test]
    fn shipping_off_is_just_enabled_false() {
        let v = serde_json::to_value(ShippingBody::disabled()).unwrap();
        assert_eq!(v, serde_json::json!({"enabled": false}));
    }

    #[test]
    fn percentiles_are_bucket_bounds() {
        assert_eq!(log2_percentile(&[], 0.5), None);
        assert_eq!(log2_percentile(&[0, 0, 4, 0, 1], 0.5), Some(4));
        assert_eq!(log2_percentile(&[0, 0, 4, 0, 1], 0.99), Some(16));
    }
}
