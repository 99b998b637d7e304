//! `GET /api/v1/limits`: the rules and bounds a client must know to read the other answers
//! right (when a value is stale, how far back each rollup step goes, the largest pages). The
//! dashboard reads them here rather than keeping copies that drift from the server's.

use axum::extract::State;
use axum::Json;
use gridlog_firmware::engine::query::QUERY_LIMIT_MAX;
use serde::Serialize;
use utoipa::ToSchema;

use super::read::{EVENTS_LIMIT_DEFAULT, STALE_AFTER_MS};
use super::today::{TODAY_LIMIT_DEFAULT, TODAY_LIMIT_MAX};
use super::AppState;

/// `GET /api/v1/limits` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// A value whose newest reading is older than this (gateway time) is stale, as
    /// `/api/v1/site` marks it.
    pub stale_after_ms: i64,
    /// Days of 15-minute and hourly rollups kept per meter (`engine.rollup_quarter_hour_days`).
    pub rollup_quarter_hour_days: u32,
    /// Days of daily rollups kept per meter (`engine.rollup_day_days`).
    pub rollup_day_days: u32,
    /// Default `limit` of the event queries.
    pub events_limit_default: usize,
    /// Largest `limit` of the event queries.
    pub events_limit_max: usize,
    /// Default `limit` of `/api/v1/today/meters`.
    pub today_limit_default: usize,
    /// Largest `limit` of `/api/v1/today/meters`.
    pub today_limit_max: usize,
    /// Bytes that large answers may hold at once (`http.answer_bytes_max`).
    pub answer_bytes_max: u64,
}

/// The server's limits and rules that clients need: staleness, rollup horizons, page sizes.
#[utoipa::path(get, path = "/api/v1/limits", tag = "site",
    responses((status = 200, body = LimitsView)))]
pub async fn limits(State(state): State<AppState>) -> Json<LimitsView> {
    let config = state.config();
    Json(LimitsView {
        stale_after_ms: STALE_AFTER_MS,
        rollup_quarter_hour_days: config.engine.rollup_quarter_hour_days,
        rollup_day_days: config.engine.rollup_day_days,
        events_limit_default: EVENTS_LIMIT_DEFAULT,
        events_limit_max: QUERY_LIMIT_MAX,
        today_limit_default: TODAY_LIMIT_DEFAULT,
        today_limit_max: TODAY_LIMIT_MAX,
        answer_bytes_max: config.http.answer_bytes_max,
    })
}
