//! `GET /api/v1/stream`: Server-Sent Events, catch-up from the log then live.
//!
//! Each client gets a pump thread that pulls from its own log cursor (a firmware
//! `Subscription`) and sends into a small bounded channel. A slow client therefore holds a
//! cursor, never a growing buffer: the pump simply waits. `id:` is the event's offset, so a
//! reconnecting client's `Last-Event-ID` resumes exactly after the last event it got — no
//! gap, no duplicate. A client that stalls while its position leaves the hot log reads on
//! from the local archive; if the history it needs was evicted from this gateway (under the
//! archive budget, once central storage holds it), it gets an explicit `event: fell_behind`
//! naming the offset to resume after, and the stream ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use gridlog_firmware::engine::{Filter, QueryError};
use serde::Deserialize;
use utoipa::IntoParams;

use tokio::sync::mpsc::error::TrySendError;

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::wire::event_view;
use super::AppState;

/// The stream's route.
pub const STREAM_PATH: &str = "/api/v1/stream";

/// Events buffered per client between its pump and its connection.
pub const STREAM_BUFFER_EVENTS: usize = 256;
/// How often a waiting pump checks whether its client left or the server is stopping.
const PUMP_POLL: Duration = Duration::from_millis(250);

/// Query of the stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this offset (exclusive; default: now, i.e. only new events). The
    /// `Last-Event-ID` header, sent by reconnecting clients, takes precedence.
    after: Option<String>,
    /// Only events with this tag.
    tag: Option<String>,
    /// Only events of this entity.
    entity: Option<String>,
    /// The read (or write) token, for clients that cannot set `Authorization` (a browser's
    /// `EventSource`); checked with the header's rules before the handler runs.
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Live events as Server-Sent Events: `id:` = offset, `data:` = the event as JSON; resumes
/// from `Last-Event-ID`; heartbeats as comments.
#[utoipa::path(get, path = "/api/v1/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this offset")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many streams", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let engine = state.engine()?.clone();
    // A position past the log (a client of a gateway whose data directory was started
    // anew) follows from now; the position event tells the client where that is.
    let after = resume_point(&headers, q.after.as_deref())?
        .unwrap_or(u64::MAX)
        .min(engine.committed_offset().saturating_sub(1));
    let filter = stream_filter(q.tag, q.entity)?;
    let permit = state
        .inner
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("at most {} live streams", state.config().http.streams_max),
            )
            .retry(5)
        })?;
    // A restored gateway holds no history before its start: say so now, as a 410, rather
    // than open a stream that ends at once.
    if after.saturating_add(1) < engine.history_start() {
        return Err(QueryError::BeforeHistory {
            offset: after.saturating_add(1),
            history_start: engine.history_start(),
        }
        .into());
    }
    let subscription = engine.subscribe(after, filter)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(STREAM_BUFFER_EVENTS);
    let pump_state = state.clone();
    std::thread::Builder::new()
        .name("gridlog-sse".into())
        .spawn(move || {
            let _permit = permit;
            pump(subscription, &tx, after, &pump_state);
        })
        .map_err(|e| ApiError::internal("cannot start stream", e))?;
    let heartbeat = Duration::from_secs(state.config().http.stream_heartbeat_s.max(1));
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

/// Where the client resumes: `Last-Event-ID` first, then `after`; `None` for "from now".
fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<Option<u64>, ApiError> {
    let bad = |field: &str, v: &str| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            field,
            format!("{field} must be an offset, got {v:?}"),
        )
    };
    match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad("Last-Event-ID", v)),
        None => after
            .map(|v| v.parse::<u64>().map_err(|_| bad("after", v)))
            .transpose(),
    }
}

/// The stream's filter: a tag or an entity, not both.
fn stream_filter(tag: Option<String>, entity: Option<String>) -> Result<Filter, ApiError> {
    match (tag, entity) {
        (Some(_), Some(_)) => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "tag",
            "give tag or entity, not both",
        )),
        (Some(tag), None) => Ok(Filter::Tag(tag)),
        (None, Some(entity)) => Ok(Filter::Entity(entity)),
        (None, None) => Ok(Filter::All),
    }
}

/// The stream's own thread: pulls the subscription and sends events until the client goes,
/// the server stops, or the history it needs is gone.
fn pump(
    mut subscription: gridlog_firmware::engine::Subscription,
    tx: &tokio::sync::mpsc::Sender<Result<Event, Infallible>>,
    after: u64,
    state: &AppState,
) {
    // The client's resume point from the start, and kept current while a filter
    // skips events: an event with an id and no data sets a browser's Last-Event-ID
    // without being dispatched, so a reconnect misses nothing committed meanwhile.
    let mut resume_after = after;
    if tx.blocking_send(Ok(position_event(resume_after))).is_err() {
        return;
    }
    while !tx.is_closed() && !state.shutting_down() {
        match subscription.next_timeout(PUMP_POLL) {
            Ok(Some(record)) => {
                resume_after = record.offset;
                let data = serde_json::to_string(&event_view(&record)).unwrap_or_default();
                let event = Ok(Event::default().id(record.offset.to_string()).data(data));
                match tx.try_send(event) {
                    Ok(()) => {}
                    Err(TrySendError::Full(event)) => {
                        // A slow client: wait without holding an archived segment.
                        subscription.park();
                        if tx.blocking_send(event).is_err() {
                            break;
                        }
                    }
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            Ok(None) => {
                let examined = subscription.position().saturating_sub(1);
                if examined > resume_after {
                    resume_after = examined;
                    if tx.blocking_send(Ok(position_event(resume_after))).is_err() {
                        break;
                    }
                }
            }
            Err(
                QueryError::Evicted {
                    offset,
                    next_available,
                }
                | QueryError::BeforeHistory {
                    offset,
                    history_start: next_available,
                },
            ) => {
                let data = serde_json::json!({"resume_after": next_available.saturating_sub(1), "oldest_offset": next_available,
                    "message": format!("the events from offset {offset} were evicted from this gateway (central storage holds them); resume after {}", next_available.saturating_sub(1))});
                let _ = tx.blocking_send(Ok(Event::default()
                    .event("fell_behind")
                    .data(data.to_string())));
                break;
            }
            // Other readers hold the archive's places: try again shortly.
            Err(QueryError::Busy) => std::thread::sleep(PUMP_POLL),
            Err(error) => {
                tracing::error!(%error, "live stream failed");
                let _ = tx.blocking_send(Ok(Event::default()
                    .event("error")
                    .data("{\"code\":\"internal\"}")));
                break;
            }
        }
    }
}

/// An event that only moves the client's `Last-Event-ID` to `after` (no `data:`, so an
/// `EventSource` does not dispatch it).
fn position_event(after: u64) -> Event {
    Event::default().id(after.to_string()).comment("position")
}
