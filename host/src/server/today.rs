//! `GET /api/v1/today/meters`: today's energy of every meter in one answer, so a page
//! listing meters asks once per refresh instead of once per meter (10,000 rollup requests
//! at 10,000 meters).
//!
//! The path is not `/api/v1/meters/today`: that would hide a meter whose id is `today`
//! behind this route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gridlog_common::id::ID_BYTES_MAX;
use gridlog_firmware::engine::state::EntityState;
use gridlog_firmware::engine::Step;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::wire::rfc3339;
use super::AppState;

/// Meters per page by default: a whole site of a thousand meters in one answer.
pub const TODAY_LIMIT_DEFAULT: usize = 1_000;
/// Most meters per page. A row is at most ~[`TODAY_ROW_BYTES_MAX`] bytes of JSON, so a full
/// page stays near 1.5 MiB, well inside `http.answer_bytes_max` (32 MiB by default).
pub const TODAY_LIMIT_MAX: usize = 10_000;
/// Upper bound of one row's JSON: the id, two numbers of at most 24 characters, the
/// reading count and the field names.
const TODAY_ROW_BYTES_MAX: usize = ID_BYTES_MAX + 2 * 24 + 20 + 60;
const _: () = assert!(TODAY_LIMIT_MAX * TODAY_ROW_BYTES_MAX < 2 * 1024 * 1024);

const DAY_MS: i64 = 86_400_000;

/// Query of the today endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TodayQuery {
    /// Meters with an id after this one (exclusive; default: from the first).
    after: Option<String>,
    /// Most meters (default 1000, at most 10000).
    limit: Option<String>,
}

/// One meter's energy today.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeterTodayView {
    /// Meter id.
    pub id: String,
    /// Energy imported today, Wh; null when the meter has no reading today (no data, not 0).
    pub import_wh: Option<f64>,
    /// Energy exported today, Wh; null when the meter has no reading today.
    pub export_wh: Option<f64>,
    /// Readings today.
    pub readings: u32,
}

/// `GET /api/v1/today/meters` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetersTodayView {
    /// Start of today: the UTC day of the gateway's clock.
    pub day: String,
    /// Gateway time now.
    pub now: String,
    /// Meters in id order (decommissioned ones too).
    pub meters: Vec<MeterTodayView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

/// Today's import and export of every meter (the daily rollup of the gateway's UTC day),
/// paged by id. From each meter's current day in memory: a meter whose newest reading is
/// already in the next UTC day (its clock ahead of the gateway's) shows none until then.
#[utoipa::path(get, path = "/api/v1/today/meters", tag = "meters", params(TodayQuery),
    responses((status = 200, body = MetersTodayView), (status = 400, body = ErrorBody)))]
pub async fn meters_today(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<TodayQuery>,
) -> Result<Json<MetersTodayView>, ApiError> {
    let engine = state.engine()?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after = q.after.unwrap_or_default();
    let now = engine.now_ms();
    let day = now.div_euclid(DAY_MS) * DAY_MS;
    let mut meters = engine.read(|image| {
        image
            .entities()
            .filter(|(id, e)| {
                id.as_str() > after.as_str() && matches!(e.state, EntityState::Meter(_))
            })
            .map(|(id, e)| {
                let bucket = e.rollups.as_ref().and_then(|r| {
                    r.query_current_day(Step::Day, day, day + DAY_MS)
                        .into_iter()
                        .next()
                });
                MeterTodayView {
                    id: id.as_str().to_string(),
                    import_wh: bucket.as_ref().map(|b| b.import_wh),
                    export_wh: bucket.as_ref().map(|b| b.export_wh),
                    readings: bucket.map_or(0, |b| b.count),
                }
            })
            .collect::<Vec<_>>()
    });
    meters.sort_by(|a, b| a.id.cmp(&b.id));
    let next_after = (meters.len() > limit).then(|| meters[limit - 1].id.clone());
    meters.truncate(limit);
    Ok(Json(MetersTodayView {
        day: rfc3339(day),
        now: rfc3339(now),
        meters,
        next_after,
    }))
}

/// `limit`: default [`TODAY_LIMIT_DEFAULT`], 1 to [`TODAY_LIMIT_MAX`].
fn parse_limit(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(TODAY_LIMIT_DEFAULT);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=TODAY_LIMIT_MAX).contains(&n) => Ok(n),
        _ => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            format!("limit must be a whole number from 1 to {TODAY_LIMIT_MAX}, got {value:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_bounded() {
        assert_eq!(parse_limit(None).unwrap(), TODAY_LIMIT_DEFAULT);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("10000")).unwrap(), TODAY_LIMIT_MAX);
        for bad in ["0", "10001", "-1", "x", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
