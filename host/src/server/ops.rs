//! Operations endpoints: status, Prometheus metrics, liveness and readiness.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;

/// Bytes free for the data directory's file system (`statvfs`), if known.
pub fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
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

/// The gateway's state: log, commits, queue, disk.
#[utoipa::path(get, path = "/api/v1/status", tag = "operations", responses((status = 200, body = Object)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let stats = engine.stats();
    let wal = engine.wal();
    let segments = wal.segments();
    let digest = engine.digest();
    let committed = stats.committed_offset;
    Ok(Json(json!({
        "site_id": state.config().site_id,
        "version": env!("CARGO_PKG_VERSION"),
        "now": super::wire::rfc3339(engine.now_ms()),
        "uptime_s": state.inner.started.elapsed().as_secs(),
        "ready": !state.shutting_down() && stats.failed.is_none(),
        "last_offset": committed.saturating_sub(1),
        "digest": format!("{digest:016x}"),
        "entities": engine.read(|i| i.len()),
        "commands": {"accepted": stats.accepted, "duplicates": stats.duplicates, "rejected": stats.rejected},
        "queue": {"depth": stats.queued, "capacity": state.config().engine.queue_depth},
        "ingest": state.ingest().stats.status_json(),
        "commit": {
            "rounds": stats.wal.rounds,
            "records": stats.wal.records,
            "bytes": stats.wal.bytes,
            "batches": stats.batches,
            "mean_records_per_round": if stats.wal.rounds == 0 { 0.0 } else { stats.wal.records as f64 / stats.wal.rounds as f64 },
            "fsync_mean_us": stats.wal.sync_nanos.checked_div(stats.wal.rounds).unwrap_or(0) / 1000,
            "fsync_p50_us_le": log2_percentile(&stats.wal.sync_micros_log2, 0.5),
            "fsync_p99_us_le": log2_percentile(&stats.wal.sync_micros_log2, 0.99),
            "fsync_histogram_us_log2": stats.wal.sync_micros_log2,
            "round_frames_histogram_log2": stats.wal.round_frames_log2,
        },
        "log": {
            "segments": segments.len(),
            "oldest_offset": wal.oldest_offset(),
            "segment_bytes": state.config().wal.segment_bytes,
            "rotations": stats.wal.rotations,
            "disk_full": stats.wal.disk_full,
            "resources_exhausted": stats.wal.resources_exhausted,
            "recovery": format!("{:?}", wal.recovery_report()),
        },
        "replay": {"events": stats.replayed_events, "millis": stats.replay_millis},
        "snapshots": {
            "written": stats.storage.snapshots_written,
            "last_offset": stats.storage.last_snapshot_offset,
            "last_bytes": stats.storage.last_snapshot_bytes,
            "last_millis": stats.storage.last_snapshot_millis,
            "kept": gridlog_firmware::snapshot::list(&state.config().data_dir).map(|l| l.len()).unwrap_or(0),
            "started_from": engine.started_from(),
        },
        "archive": {
            "bytes": stats.storage.archive_bytes,
            "segments_archived": stats.storage.segments_archived,
            "original_bytes": stats.storage.archived_original_bytes,
            "file_bytes": stats.storage.archived_file_bytes,
            "over_budget": stats.storage.archive_over_budget,
            "budget_bytes": state.config().storage.archive_budget_bytes,
            "evicted": stats.storage.evicted,
            "last_error": stats.storage.last_error,
        },
        "shipping": state.shipping().map_or_else(|| json!({"enabled": false}), |s| s.to_json()),
        "disk_free_bytes": disk_free_bytes(&state.config().data_dir),
        "failed": stats.failed,
    })))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let engine = state.engine()?;
    let stats = engine.stats();
    let mut registry = Registry::with_prefix("gridlog");
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    counter(
        &mut registry,
        "commands_accepted",
        "Commands accepted",
        stats.accepted,
    );
    counter(
        &mut registry,
        "commands_duplicate",
        "Commands that were duplicates",
        stats.duplicates,
    );
    counter(
        &mut registry,
        "commands_rejected",
        "Commands rejected",
        stats.rejected,
    );
    counter(
        &mut registry,
        "commit_rounds",
        "Write rounds, one fdatasync each",
        stats.wal.rounds,
    );
    counter(
        &mut registry,
        "commit_records",
        "Records made durable",
        stats.wal.records,
    );
    counter(
        &mut registry,
        "commit_bytes",
        "Frame bytes made durable",
        stats.wal.bytes,
    );
    counter(
        &mut registry,
        "fsync_seconds",
        "Total time in fdatasync, microseconds",
        stats.wal.sync_nanos / 1000,
    );
    counter(
        &mut registry,
        "segment_rotations",
        "Log segments rotated",
        stats.wal.rotations,
    );
    gauge(
        &mut registry,
        "last_offset",
        "Newest committed offset",
        stats.committed_offset.saturating_sub(1) as i64,
    );
    gauge(
        &mut registry,
        "queue_depth",
        "Requests waiting for the processor",
        stats.queued as i64,
    );
    gauge(
        &mut registry,
        "segments",
        "Segments in the hot log",
        engine.wal().segments().len() as i64,
    );
    gauge(
        &mut registry,
        "disk_full",
        "1 while the next segment cannot be preallocated",
        i64::from(stats.wal.disk_full),
    );
    gauge(
        &mut registry,
        "resources_exhausted",
        "1 while the next segment cannot be preallocated for want of file handles or memory",
        i64::from(stats.wal.resources_exhausted),
    );
    gauge(
        &mut registry,
        "entities",
        "Meters and assets",
        engine.read(|i| i.len()) as i64,
    );
    counter(
        &mut registry,
        "snapshots_written",
        "Snapshots written since start",
        stats.storage.snapshots_written,
    );
    counter(
        &mut registry,
        "segments_archived",
        "Segments moved into the archive since start",
        stats.storage.segments_archived,
    );
    gauge(
        &mut registry,
        "archive_bytes",
        "Bytes in the local archive",
        stats.storage.archive_bytes as i64,
    );
    gauge(
        &mut registry,
        "archive_over_budget",
        "1 while the archive is over budget with nothing evictable",
        i64::from(stats.storage.archive_over_budget),
    );
    if let Some(ship) = state.shipping() {
        use std::sync::atomic::Ordering::Relaxed;
        let backlog = ship.backlog();
        let now_ms = crate::ship::status::unix_ms_now();
        let point = ship.recovery_point();
        gauge(
            &mut registry,
            "ship_recovery_point_next_offset",
            "One past the newest offset central storage holds without a gap",
            point.next_offset as i64,
        );
        gauge(
            &mut registry,
            "ship_recovery_lag_seconds",
            "Seconds the oldest acknowledged event not yet in central storage has waited (0 when it holds everything)",
            point.lag_s(now_ms) as i64,
        );
        gauge(
            &mut registry,
            "ship_backlog_objects",
            "Objects waiting to be shipped to central storage",
            backlog.objects as i64,
        );
        gauge(
            &mut registry,
            "ship_backlog_bytes",
            "Bytes waiting to be shipped to central storage",
            backlog.bytes as i64,
        );
        gauge(
            &mut registry,
            "ship_backlog_oldest_age_seconds",
            "Age of the oldest object waiting to be shipped (0 when none)",
            backlog
                .oldest_created_unix_ms
                .map_or(0, |t| now_ms.saturating_sub(t) / 1000) as i64,
        );
        counter(
            &mut registry,
            "ship_objects",
            "Objects confirmed in central storage (segments, snapshots, manifests)",
            ship.objects_shipped.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_bytes",
            "Bytes of objects confirmed in central storage",
            ship.bytes_shipped.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_duplicates",
            "Uploads found already in the store with the same content",
            ship.duplicates.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_requests",
            "Requests sent to central storage",
            ship.requests.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_retries",
            "Failed requests to central storage that were retried",
            ship.retries.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_sent_bytes",
            "Request body bytes sent to central storage",
            ship.bytes_sent.load(Relaxed),
        );
        counter(
            &mut registry,
            "ship_alarms",
            "Objects in central storage that differ from the local copy",
            ship.alarms_total.load(Relaxed),
        );
    }
    if let Some(free) = disk_free_bytes(&state.config().data_dir) {
        gauge(
            &mut registry,
            "disk_free_bytes",
            "Bytes free on the data directory's file system",
            free as i64,
        );
    }
    state.ingest().stats.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| ApiError::internal("encoding metrics failed", e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the log is recovered, writes are accepted, the server is not stopping.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Object), (status = 503, body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.engine() {
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        ),
        Ok(_) if state.shutting_down() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stopping"})),
        ),
        Ok(engine) => match engine.stats().failed {
            Some(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "failed", "reason": reason})),
            ),
            None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        },
    }
}
