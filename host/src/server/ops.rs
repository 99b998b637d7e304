//! Operations endpoints: status, Prometheus metrics, liveness and readiness.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::metrics::{render, Sample};
use super::status::{status_body, HealthBody, ReadyBody, StatusBody};
use super::AppState;

/// Bytes free for the data directory's file system (`statvfs`), if known.
pub fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// The gateway's state: log, commits, queue, disk.
#[utoipa::path(get, path = "/api/v1/status", tag = "operations", responses((status = 200, body = StatusBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    let engine = state.engine()?.clone();
    // The digest hashes every entity (rollups and remembered readings included) and the
    // body reads the disk's state: work that must not hold one of the runtime's few threads.
    let body = tokio::task::spawn_blocking(move || status_body(&state, &engine))
        .await
        .map_err(|e| ApiError::internal("status task failed", e))?;
    Ok(Json(body))
}

/// Prometheus metrics (text exposition format), from the table in [`super::metrics`].
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let engine = state.engine()?;
    let sample = Sample::new(
        engine.stats(),
        engine.wal().segments().len() as u64,
        engine.read(|i| i.len()) as u64,
        state.inner.started.elapsed().as_secs_f64(),
        disk_free_bytes(&state.config().data_dir),
        state.shipping().map(|s| &**s),
    )
    .with_ingest(state.ingest().stats.counts())
    .with_mqtt(state.mqtt().map(|m| m.counts()))
    .with_modbus(state.modbus())
    .with_tls(state.tls().and_then(|tls| tls.current().not_after_unix_s));
    let text = render(&sample).map_err(|e| ApiError::internal("encoding metrics failed", e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthBody)))]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody::Ok)
}

/// Readiness: the log is recovered, writes are accepted, the server is not stopping.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = ReadyBody), (status = 503, body = ReadyBody)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let body = match state.engine() {
        Err(_) => ReadyBody::Recovering,
        Ok(_) if state.shutting_down() => ReadyBody::Stopping,
        Ok(engine) => match engine.stats().failed {
            Some(reason) => ReadyBody::Failed {
                reason: reason.to_string(),
            },
            None => ReadyBody::Ready,
        },
    };
    let code = if body == ReadyBody::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
