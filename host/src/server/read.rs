//! Read endpoints: current state from the image, history from rollups and the log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gridlog_common::domain::{AssetKind, MeterKind};
use gridlog_firmware::engine::image::Flows;
use gridlog_firmware::engine::query::QUERY_LIMIT_MAX;
use gridlog_firmware::engine::state::EntityState;
use gridlog_firmware::engine::{Engine, Filter, QueryError, Step};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{PathId, QueryParams};
use super::wire::*;
use super::AppState;

/// A meter is shown as stale when its newest reading is older than this.
pub const STALE_AFTER_MS: i64 = 60_000;
/// Default page size of event queries.
pub const EVENTS_LIMIT_DEFAULT: usize = 100;

fn parse<T: std::str::FromStr>(
    value: &Option<String>,
    field: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => v.parse::<T>().map(Some).map_err(|_| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                field,
                format!("{field} must be {what}, got {v:?}"),
            )
        }),
    }
}

/// The `limit` query parameter of event queries: default [`EVENTS_LIMIT_DEFAULT`], at most
/// [`QUERY_LIMIT_MAX`].
fn parse_limit(value: &Option<String>) -> Result<usize, ApiError> {
    let limit = parse::<usize>(value, "limit", "a whole number")?.unwrap_or(EVENTS_LIMIT_DEFAULT);
    if limit > QUERY_LIMIT_MAX {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            format!("limit must be at most {QUERY_LIMIT_MAX}"),
        ));
    }
    Ok(limit)
}

fn parse_time(value: &Option<String>, field: &str) -> Result<Option<i64>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            parse_rfc3339(v).map_err(|e| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    field,
                    e.to_string(),
                )
            })
        })
        .transpose()
}

/// The views of every entity `view` accepts, in id order.
fn views<T>(engine: &Engine, view: impl Fn(&str, &EntityState) -> Option<T>) -> Vec<T> {
    let mut views = engine.read(|image| {
        image
            .entities()
            .filter_map(|(id, e)| view(id.as_str(), &e.state).map(|v| (id.clone(), v)))
            .collect::<Vec<_>>()
    });
    views.sort_by(|a, b| a.0.cmp(&b.0));
    views.into_iter().map(|(_, v)| v).collect()
}

/// The view of one entity, if it exists and `view` accepts it.
fn one_view<T>(
    engine: &Engine,
    id: &str,
    view: impl Fn(&str, &EntityState) -> Option<T>,
) -> Option<T> {
    engine.read(|image| image.entity(id).and_then(|e| view(id, &e.state)))
}

fn as_meter(id: &str, state: &EntityState) -> Option<MeterView> {
    match state {
        EntityState::Meter(m) => Some(meter_view(id, m)),
        _ => None,
    }
}

fn as_asset(id: &str, state: &EntityState) -> Option<AssetView> {
    match state {
        EntityState::Asset(a) => Some(asset_view(id, a)),
        _ => None,
    }
}

/// List meters.
#[utoipa::path(get, path = "/api/v1/meters", tag = "meters", responses((status = 200, body = Vec<MeterView>)))]
pub async fn list_meters(State(state): State<AppState>) -> Result<Json<Vec<MeterView>>, ApiError> {
    let engine = state.engine()?;
    let mut meters = views(engine, as_meter);
    for m in &mut meters {
        m.rejected_last_hour = engine.rejected_last_hour(&m.id);
    }
    Ok(Json(meters))
}

/// One meter's current state.
#[utoipa::path(get, path = "/api/v1/meters/{id}", tag = "meters",
    params(("id" = String, Path, description = "Meter id")),
    responses((status = 200, body = MeterView), (status = 404, body = ErrorBody)))]
pub async fn get_meter(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<MeterView>, ApiError> {
    let engine = state.engine()?;
    let mut view =
        one_view(engine, &id, as_meter).ok_or_else(|| ApiError::not_found("meter", &id))?;
    view.rejected_last_hour = engine.rejected_last_hour(&id);
    Ok(Json(view))
}

/// List assets.
#[utoipa::path(get, path = "/api/v1/assets", tag = "assets", responses((status = 200, body = Vec<AssetView>)))]
pub async fn list_assets(State(state): State<AppState>) -> Result<Json<Vec<AssetView>>, ApiError> {
    Ok(Json(views(state.engine()?, as_asset)))
}

/// One asset's current state (with `seq` for optimistic concurrency).
#[utoipa::path(get, path = "/api/v1/assets/{id}", tag = "assets",
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)))]
pub async fn get_asset(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<AssetView>, ApiError> {
    one_view(state.engine()?, &id, as_asset)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("asset", &id))
}

/// Query of the rollups endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RollupQuery {
    /// `15m`, `1h` or `1d` (default `15m`).
    step: Option<String>,
    /// Range start, RFC 3339 (default: `to` − 24 h for 15m/1h, − 31 days for 1d).
    from: Option<String>,
    /// Range end, RFC 3339 (default: now).
    to: Option<String>,
}

/// A meter's interval rollups: energy per interval and min/avg/max power. Intervals without
/// readings are absent (gaps stay gaps).
#[utoipa::path(get, path = "/api/v1/meters/{id}/rollups", tag = "meters",
    params(("id" = String, Path, description = "Meter id"), RollupQuery),
    responses((status = 200, body = RollupsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn meter_rollups(
    State(state): State<AppState>,
    PathId(id): PathId,
    QueryParams(q): QueryParams<RollupQuery>,
) -> Result<Json<RollupsView>, ApiError> {
    let engine = state.engine()?;
    let step = match q.step.as_deref().unwrap_or("15m") {
        "15m" => Step::QuarterHour,
        "1h" => Step::Hour,
        "1d" => Step::Day,
        other => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "step",
                format!("step must be 15m, 1h or 1d, got {other:?}"),
            ))
        }
    };
    let to = parse_time(&q.to, "to")?.unwrap_or_else(|| engine.now_ms());
    let span = if step == Step::Day {
        31 * 86_400_000
    } else {
        86_400_000
    };
    let from = parse_time(&q.from, "from")?.unwrap_or(to - span);
    if from >= to {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "from",
            "from must be before to",
        ));
    }
    // Days before the meter's current one are read from the rollup store: off the runtime.
    let (engine, meter) = (engine.clone(), id.clone());
    let buckets = tokio::task::spawn_blocking(move || engine.rollups(&meter, step, from, to))
        .await
        .map_err(|e| ApiError::internal("rollup query task failed", e))?
        .map_err(|e| ApiError::internal("reading the rollup store failed", e))?;
    let buckets = buckets.ok_or_else(|| ApiError::not_found("meter", &id))?;
    Ok(Json(RollupsView {
        meter: id,
        step: q.step.unwrap_or_else(|| "15m".into()),
        from: rfc3339(from),
        to: rfc3339(to),
        buckets: buckets.iter().map(|b| bucket_view(b, step)).collect(),
    }))
}

/// Query of an entity's events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntityEventsQuery {
    /// First seq (default 1).
    from_seq: Option<String>,
    /// Last seq (default: the highest).
    to_seq: Option<String>,
    /// Most events (default 100, at most 10000); 0 returns only `highest_seq`.
    limit: Option<String>,
}

/// Events of one entity by seq range. An unknown entity has `highest_seq` 0 and no events.
#[utoipa::path(get, path = "/api/v1/entities/{id}/events", tag = "events",
    params(("id" = String, Path, description = "Entity id"), EntityEventsQuery),
    responses((status = 200, body = EntityEventsView), (status = 400, body = ErrorBody)))]
pub async fn entity_events(
    State(state): State<AppState>,
    PathId(id): PathId,
    QueryParams(q): QueryParams<EntityEventsQuery>,
) -> Result<Json<EntityEventsView>, ApiError> {
    let engine = state.engine()?.clone();
    let from_seq = parse::<u64>(&q.from_seq, "from_seq", "a whole number")?.unwrap_or(1);
    let to_seq = parse::<u64>(&q.to_seq, "to_seq", "a whole number")?.unwrap_or(u64::MAX);
    let limit = parse_limit(&q.limit)?;
    let id2 = id.clone();
    let result = state
        .log_query(move || engine.events_of(&id2, from_seq, to_seq, limit))
        .await??;
    Ok(Json(EntityEventsView {
        entity: id,
        highest_seq: result.highest_seq,
        history_start: result.before_history,
        events: result.events.iter().map(event_view).collect(),
    }))
}

/// Query of the point-in-time state.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// Gateway time, RFC 3339 (default: now).
    as_of: Option<String>,
}

/// An entity's state as of a time: its events up to that gateway time, folded.
#[utoipa::path(get, path = "/api/v1/entities/{id}/state", tag = "events",
    params(("id" = String, Path, description = "Entity id"), StateQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn entity_state(
    State(state): State<AppState>,
    PathId(id): PathId,
    QueryParams(q): QueryParams<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?.clone();
    let as_of = parse_time(&q.as_of, "as_of")?.unwrap_or_else(|| engine.now_ms());
    let id2 = id.clone();
    let folded = state
        .log_query(move || -> Result<Option<EntityState>, ApiError> {
            let mut state: Option<EntityState> = None;
            let mut from_seq = 1;
            // On a restored gateway the entity's first events may be in central storage
            // only: then only "as of after its last event" can be answered (the current
            // state), and only for a time after this gateway's history starts.
            let mut before_history = None;
            loop {
                let page = engine.events_of(&id2, from_seq, u64::MAX, QUERY_LIMIT_MAX)?;
                if from_seq == 1 {
                    before_history = page.before_history;
                }
                let not_here = |history_start| QueryError::BeforeHistory {
                    offset: history_start,
                    history_start,
                };
                for record in &page.events {
                    if record.stored.gateway_ms > as_of {
                        return match before_history {
                            Some(start) => Err(not_here(start).into()),
                            None => Ok(state),
                        };
                    }
                    EntityState::evolve_in_place(&mut state, &record.stored);
                }
                match page.events.last() {
                    Some(last) if last.stored.seq < page.highest_seq => {
                        from_seq = last.stored.seq + 1
                    }
                    _ => {
                        let Some(start) = before_history else {
                            return Ok(state);
                        };
                        let first_held = engine.events_after(start - 1, &Filter::All, 1)?;
                        if first_held
                            .events
                            .first()
                            .is_none_or(|e| e.stored.gateway_ms > as_of)
                        {
                            return Err(not_here(start).into());
                        }
                        return Ok(engine.read(|image| image.entity(&id2).map(|e| e.state.clone())));
                    }
                }
            }
        })
        .await??;
    match folded {
        Some(s) => Ok(Json(
            json!({"entity": id, "as_of": rfc3339(as_of), "seq": s.seq(), "state": state_json(&id, &s)}),
        )),
        None => Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "no_state",
            "as_of",
            format!("{id} had no events at or before {}", rfc3339(as_of)),
        )),
    }
}

/// Query of the event page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this offset (exclusive; default 0 = from the start).
    after: Option<String>,
    /// Only events with this tag (`meter`, `asset`, `kind:pv`, `alarm`, `setpoint`, …).
    tag: Option<String>,
    /// Most events (default 100, at most 10000).
    limit: Option<String>,
}

/// Events from an offset, optionally by tag. `last_offset` says where to continue.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPageView), (status = 400, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Json<EventPageView>, ApiError> {
    let engine = state.engine()?.clone();
    let after = parse::<u64>(&q.after, "after", "a whole number")?.unwrap_or(0);
    let limit = parse_limit(&q.limit)?;
    let filter = q.tag.map_or(Filter::All, Filter::Tag);
    let page = state
        .log_query(move || engine.events_after(after, &filter, limit))
        .await??;
    Ok(Json(EventPageView {
        events: page.events.iter().map(event_view).collect(),
        last_offset: page.last_offset,
    }))
}

/// Live power of one flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowPower {
    /// Power, W (sum of the meters of this kind).
    pub power_w: f64,
    /// Newest reading among them.
    pub updated: Option<String>,
    /// True if any of them has not reported within 60 s.
    pub stale: bool,
    /// Meters counted.
    pub meters: usize,
}

/// Energy by flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowsView {
    /// Bought from the grid, Wh.
    pub grid_import_wh: f64,
    /// Sold to the grid, Wh.
    pub grid_export_wh: f64,
    /// PV production, Wh.
    pub pv_wh: f64,
    /// Battery charge, Wh.
    pub battery_charge_wh: f64,
    /// Battery discharge, Wh.
    pub battery_discharge_wh: f64,
    /// EV charging, Wh.
    pub ev_wh: f64,
    /// Site consumption, Wh.
    pub consumption_wh: f64,
}

fn flows_view(f: &Flows) -> FlowsView {
    FlowsView {
        grid_import_wh: f.grid_import_wh,
        grid_export_wh: f.grid_export_wh,
        pv_wh: f.pv_wh,
        battery_charge_wh: f.battery_charge_wh,
        battery_discharge_wh: f.battery_discharge_wh,
        ev_wh: f.ev_wh,
        consumption_wh: f.consumption_wh,
    }
}

/// The site at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    /// Gateway time now.
    pub now: String,
    /// Live power per meter kind (`grid`, `pv`, `battery`, `ev`, `load`, `submeter`).
    pub power: std::collections::BTreeMap<String, FlowPower>,
    /// Site consumption now, W: grid + PV + battery discharge − charge.
    pub consumption_w: f64,
    /// Mean state of charge of the batteries, %.
    pub battery_soc_pct: Option<f64>,
    /// Energy today (UTC day of the newest reading).
    pub today: FlowsView,
    /// Energy since the log began.
    pub all_time: FlowsView,
}

/// The site now: live power by flow with staleness, today's energy, battery state of charge.
#[utoipa::path(get, path = "/api/v1/site", tag = "site", responses((status = 200, body = SiteView)))]
pub async fn site(State(state): State<AppState>) -> Result<Json<SiteView>, ApiError> {
    let engine = state.engine()?;
    let now = engine.now_ms();
    Ok(Json(engine.read(|image| {
        let mut power: std::collections::BTreeMap<String, FlowPower> =
            std::collections::BTreeMap::new();
        let mut socs = Vec::new();
        for (_, e) in image.entities() {
            match &e.state {
                EntityState::Meter(m) if !m.decommissioned => {
                    let flow = power.entry(m.kind.name().to_string()).or_insert(FlowPower {
                        power_w: 0.0,
                        updated: None,
                        stale: false,
                        meters: 0,
                    });
                    flow.meters += 1;
                    match &m.latest {
                        Some(r) => {
                            // Meter power: positive = import. For PV the production is export.
                            flow.power_w += r.power_w;
                            if flow
                                .updated
                                .as_ref()
                                .is_none_or(|u| parse_rfc3339(u).map_or(true, |t| t < r.time_ms))
                            {
                                flow.updated = Some(rfc3339(r.time_ms));
                            }
                            flow.stale |= now - r.time_ms > STALE_AFTER_MS;
                        }
                        None => flow.stale = true,
                    }
                }
                EntityState::Asset(a) if a.kind == AssetKind::Battery => {
                    if let Some(soc) = a.telemetry.as_ref().and_then(|t| t.soc_pct) {
                        socs.push(soc);
                    }
                }
                _ => {}
            }
        }
        let p = |k: MeterKind| power.get(k.name()).map_or(0.0, |f| f.power_w);
        // Grid import is +, PV meter export is − (production), battery charge is + (import).
        let consumption_w = p(MeterKind::Grid) - p(MeterKind::Pv) - p(MeterKind::Battery);
        let totals = image.site_totals();
        SiteView {
            now: rfc3339(now),
            power,
            consumption_w,
            battery_soc_pct: if socs.is_empty() {
                None
            } else {
                Some(socs.iter().sum::<f64>() / socs.len() as f64)
            },
            today: flows_view(&totals.today),
            all_time: flows_view(&totals.all_time),
        }
    })))
}
