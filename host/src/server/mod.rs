//! The HTTP side: the API, live stream, status, metrics and (later) the dashboard.
//!
//! [`app`] builds the router from state, apart from [`serve`], so tests drive the router
//! directly. Writes go through [`Engine::submit_with`], whose reply is sent to a oneshot
//! channel: the async runtime never blocks on the log.

pub mod conn;
mod dashboard;
pub mod error;
pub mod extract;
mod limits;
pub mod metrics;
mod ops;
pub mod origin;
mod read;
mod status;
mod stream;
pub mod tls;
mod today;
pub mod wire;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use gridlog_firmware::engine::Engine;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use error::{ApiError, AuthFailure};
pub(crate) use write::submit_in_frames;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    engine: OnceLock<Arc<Engine>>,
    shipping: OnceLock<Arc<crate::ship::ShipStatus>>,
    mqtt: OnceLock<Arc<crate::ingest::mqtt::MqttStatus>>,
    modbus: OnceLock<Arc<crate::modbus::status::ModbusStatus>>,
    tls: OnceLock<Arc<tls::Tls>>,
    config: Config,
    started: Instant,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    answer_kib: Arc<Semaphore>,
    log_queries: Arc<Semaphore>,
    ingest: Arc<crate::ingest::IngestState>,
    shutting_down: AtomicBool,
}

impl AppState {
    /// State for `config`; the engine is attached when recovery finishes.
    pub fn new(config: Config) -> AppState {
        AppState {
            inner: Arc::new(StateInner {
                engine: OnceLock::new(),
                shipping: OnceLock::new(),
                mqtt: OnceLock::new(),
                modbus: OnceLock::new(),
                tls: OnceLock::new(),
                requests: Arc::new(Semaphore::new(config.http.concurrency_max)),
                streams: Arc::new(Semaphore::new(config.http.streams_max)),
                writes: Arc::new(Semaphore::new(config.http.writes_max)),
                answer_kib: Arc::new(Semaphore::new(answer_budget_kib(&config))),
                log_queries: Arc::new(Semaphore::new(config.http.log_queries_max)),
                ingest: Arc::new(
                    crate::ingest::IngestState::new(&config.ingest.mapping)
                        .expect("Config::check checks ingest.mapping before the server starts"),
                ),
                config,
                started: Instant::now(),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// Attaches the recovered engine: from now on the gateway is ready.
    pub fn attach(&self, engine: Arc<Engine>) {
        let _ = self.inner.engine.set(engine);
    }

    /// Runs `scan`, a query that reads the log, on a blocking thread once one of the
    /// `http.log_queries_max` turns is free; the turn is held until the scan ends, even
    /// if the request has timed out meanwhile.
    pub(crate) async fn log_query<T: Send + 'static>(
        &self,
        scan: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = self
            .inner
            .log_queries
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal("query turns closed", e))?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            scan()
        })
        .await
        .map_err(|e| ApiError::internal("query task failed", e))
    }

    /// Attaches the shipper's status (when a store is configured).
    pub fn attach_shipping(&self, status: Arc<crate::ship::ShipStatus>) {
        let _ = self.inner.shipping.set(status);
    }

    /// Attaches the MQTT subscriber's status (when `mqtt.url` is set).
    pub fn attach_mqtt(&self, status: Arc<crate::ingest::mqtt::MqttStatus>) {
        let _ = self.inner.mqtt.set(status);
    }

    /// The MQTT subscriber's status, if it runs.
    pub fn mqtt(&self) -> Option<&Arc<crate::ingest::mqtt::MqttStatus>> {
        self.inner.mqtt.get()
    }

    /// The shipper's status, if shipping is on.
    pub fn shipping(&self) -> Option<&Arc<crate::ship::ShipStatus>> {
        self.inner.shipping.get()
    }

    /// Attaches the Modbus poller's status (when devices are configured).
    pub fn attach_modbus(&self, status: Arc<crate::modbus::status::ModbusStatus>) {
        let _ = self.inner.modbus.set(status);
    }

    /// The Modbus devices' status (none when no device is configured).
    pub fn modbus(&self) -> Vec<crate::modbus::status::DeviceStatusBody> {
        self.inner
            .modbus
            .get()
            .map(|m| m.bodies())
            .unwrap_or_default()
    }

    /// Attaches the listener's certificate (when `tls.cert_file` is set): from then on
    /// connections are served over TLS.
    pub fn attach_tls(&self, tls: Arc<tls::Tls>) {
        let _ = self.inner.tls.set(tls);
    }

    /// The listener's certificate, when TLS is on.
    pub fn tls(&self) -> Option<&Arc<tls::Tls>> {
        self.inner.tls.get()
    }

    /// Line protocol ingest: mappings and counters.
    pub fn ingest(&self) -> &Arc<crate::ingest::IngestState> {
        &self.inner.ingest
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The engine, or 503 while recovering.
    pub fn engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.inner.engine.get().ok_or_else(ApiError::not_ready)
    }

    /// Marks the server as stopping (streams end, readyz fails).
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    fn shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gridlog",
        description = "The local API of a gridlog energy site gateway. Writes answer only after their events are durable."
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// The router and the OpenAPI document generated from the same route list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(write::register_meter, read::list_meters))
        .routes(routes!(read::get_meter))
        .routes(routes!(write::replace_meter))
        .routes(routes!(write::decommission_meter))
        .routes(routes!(write::record_readings))
        .routes(routes!(write::register_asset, read::list_assets))
        .routes(routes!(read::get_asset))
        .routes(routes!(write::record_telemetry))
        .routes(routes!(write::request_setpoint))
        .routes(routes!(write::change_availability))
        .routes(routes!(write::report_fault))
        .routes(routes!(read::meter_rollups))
        .routes(routes!(today::meters_today))
        .routes(routes!(read::entity_events))
        .routes(routes!(read::entity_state))
        .routes(routes!(read::events))
        .routes(routes!(read::site))
        .routes(routes!(limits::limits))
        .routes(routes!(stream::stream))
        .routes(routes!(write::take_snapshot))
        .routes(routes!(ops::status))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .split_for_parts()
}

/// The name of the write token's security scheme in the OpenAPI document.
const WRITE_TOKEN_SCHEME: &str = "write_token";

/// The name of the read token's security scheme in the OpenAPI document.
const READ_TOKEN_SCHEME: &str = "read_token";

/// Declares the tokens in the document, over the whole route list by [`access`], so a new
/// route cannot miss them: the write token (an HTTP bearer scheme) on every write; the
/// read token or the write token on every read. Each such operation can answer 401 (no
/// token) and 403 (a wrong one).
fn declare_tokens(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, description) in [
        (WRITE_TOKEN_SCHEME, "The gateway's write token (`write_token`), needed by writes when one is configured; it grants reads too."),
        (READ_TOKEN_SCHEME, "The gateway's read token (`read_token`), needed by reads when one is configured. The live stream also takes it as `?access_token=` (browsers' EventSource cannot set headers)."),
    ] {
        components.add_security_scheme(
            name,
            utoipa::openapi::security::SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            ),
        );
    }
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let requirement = |scheme: &str| SecurityRequirement::new(scheme, Vec::<String>::new());
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in [
            (Method::GET, item.get.as_mut()),
            (Method::POST, item.post.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            let (security, what) = match access(&method, path, false) {
                Access::Open => continue,
                Access::Read => (
                    vec![
                        requirement(READ_TOKEN_SCHEME),
                        requirement(WRITE_TOKEN_SCHEME),
                    ],
                    "a read token is configured",
                ),
                Access::Write => (
                    vec![requirement(WRITE_TOKEN_SCHEME)],
                    "a write token is configured",
                ),
            };
            operation.security = Some(security);
            let responses = &mut operation.responses.responses;
            responses.insert(
                "401".into(),
                error(&format!("`unauthorized`: {what} and the request has none")).into(),
            );
            responses.insert(
                "403".into(),
                error("`forbidden`: the token does not grant this request").into(),
            );
        }
    }
}

/// The whole application: API, OpenAPI document and limits.
pub fn app(state: AppState) -> Router {
    let (api, mut openapi) = routes();
    let (line_protocol, line_protocol_doc) = crate::ingest::http::routes();
    openapi.merge(line_protocol_doc);
    declare_tokens(&mut openapi);
    let api = api
        .route_layer(axum::middleware::from_fn(origin::refuse_cross_site_writes))
        .merge(
            line_protocol.route_layer(axum::middleware::from_fn(origin::refuse_cross_site_origin)),
        );
    let openapi = Arc::new(openapi);
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let openapi = openapi.clone();
            async move { axum::Json((*openapi).clone()) }
        }),
    )
    .merge(dashboard::routes())
    .fallback(|| async {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; see /api/v1/openapi.json",
        )
    })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method; see /api/v1/openapi.json",
        )
    })
    .layer(axum::middleware::from_fn_with_state(state.clone(), limits))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
        axum::response::IntoResponse::into_response(ApiError::internal(
            "request handler panicked",
            "panic",
        ))
    }))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        token_auth,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        origin::refuse_foreign_host,
    ))
    .with_state(state)
}

tokio::task_local! {
    /// Set by a write handler once its command has been handed to the engine: from then on,
    /// a timeout cannot say whether it was stored.
    static SUBMITTED: Arc<AtomicBool>;
}

/// Notes that the current request's write has reached the engine (see [`SUBMITTED`]).
pub(crate) fn note_submitted() {
    let _ = SUBMITTED.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

/// Answers at least this large take their size from `http.answer_bytes_max` while they
/// are sent; smaller ones (almost all) only their concurrency slot.
pub const ANSWER_BUDGETED_BYTES_MIN: u64 = 64 * 1024;

/// `http.answer_bytes_max` in KiB (the semaphore's unit), at least one answer's worth.
fn answer_budget_kib(config: &Config) -> usize {
    let kib = config.http.answer_bytes_max.div_ceil(1024);
    usize::try_from(kib).unwrap_or(usize::MAX).max(1)
}

/// Concurrency limit, request timeout and the budget of answer bytes in flight, answered as
/// JSON. Every slot a request takes is held by its response body until the body has been
/// sent (or the connection dropped), not only until the handler returns: a client that does
/// not read cannot make the server hold more than the limits allow.
async fn limits(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let permits = match admit(&state, &request) {
        Ok(permits) => permits,
        Err(refusal) => return refusal.into_response(),
    };
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let response = match run_within_timeout(&state, request, next, read_only).await {
        Ok(response) => response,
        Err(refusal) => return refusal.into_response(),
    };
    let budget = match answer_share(&state, &response) {
        Ok(budget) => budget,
        Err(refusal) => {
            drop(response);
            return refusal.into_response();
        }
    };
    response
        .map(|body| axum::body::Body::new(conn::Held::new(body, (permits.0, permits.1, budget))))
}

/// 503 `overloaded`, to be retried after a second: a slot or budget of the server is full.
fn overloaded(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry(1)
}

/// A request slot, and for a write a write slot, or why not: every slot taken (503), or a
/// body declared larger than the limit (413, before it takes a write slot or anyone waits
/// for it to arrive).
fn admit(
    state: &AppState,
    request: &Request,
) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), ApiError> {
    let permit = state
        .inner
        .requests
        .clone()
        .try_acquire_owned()
        .map_err(|_| overloaded("too many requests in flight"))?;
    let limit = state.config().http.body_bytes_max;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body",
            format!("the body is larger than {limit} bytes"),
        ));
    }
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok((permit, None));
    }
    let write = state
        .inner
        .writes
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            overloaded(format!(
                "at most {} writes at once",
                state.config().http.writes_max
            ))
        })?;
    Ok((permit, Some(write)))
}

/// Runs the request within `http.request_timeout_s`. A read, or a write that never reached
/// the engine (its body did not arrive in time), times out plainly (408): nothing can have
/// been stored. A write that may have reached the engine may still be stored (a stalled
/// disk makes the commit late, not lost): 504 `outcome_unknown` says so, rather than a 408
/// that invites a blind retry.
async fn run_within_timeout(
    state: &AppState,
    request: Request,
    next: Next,
    read_only: bool,
) -> Result<Response, ApiError> {
    let timeout = Duration::from_secs(state.config().http.request_timeout_s);
    let submitted = Arc::new(AtomicBool::new(false));
    let run = SUBMITTED.scope(submitted.clone(), next.run(request));
    match tokio::time::timeout(timeout, run).await {
        Ok(response) => Ok(response),
        Err(_) if read_only || !submitted.load(Ordering::Relaxed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request did not complete within {} s",
                timeout.as_secs()
            ),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!(
                "the write did not complete within {} s and may still be stored: check before retrying, or retry with the same command_id",
                timeout.as_secs()
            ),
        )),
    }
}

/// A large answer (an event page) takes its share of the bytes all answers may hold while
/// they are sent, or is refused at once (503): waiting for a share would hold the built
/// answer in memory meanwhile, which is what the budget is there to prevent.
fn answer_share(
    state: &AppState,
    response: &Response,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let Some(bytes) = http_body::Body::size_hint(response.body()).exact() else {
        return Ok(None);
    };
    if bytes < ANSWER_BUDGETED_BYTES_MIN {
        return Ok(None);
    }
    let total = answer_budget_kib(state.config());
    let kib = usize::try_from(bytes.div_ceil(1024))
        .unwrap_or(usize::MAX)
        .min(total);
    let kib = u32::try_from(kib).unwrap_or(u32::MAX);
    match state.inner.answer_kib.clone().try_acquire_many_owned(kib) {
        Ok(share) => Ok(Some(share)),
        Err(_) => Err(overloaded(format!(
                "large answers being sent already hold http.answer_bytes_max ({} bytes); retry, or ask for a smaller page (limit)",
                state.config().http.answer_bytes_max
            ))),
    }
}

/// What a request needs to be let through. The one classification of routes, read by
/// [`token_auth`] and by [`declare_tokens`] for the OpenAPI document, so the two cannot
/// disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nobody's token: liveness and readiness (systemd, load balancers), InfluxDB's
    /// `/ping`, the dashboard's static files (they hold no data), and `/metrics` with
    /// `metrics_public`.
    Open,
    /// The read token or the write token, when a read token is configured.
    Read,
    /// The write token, when one is configured.
    Write,
}

/// The live stream's query parameter that may carry the token: a browser's `EventSource`
/// cannot set `Authorization`. Accepted on that route only.
pub const STREAM_TOKEN_PARAM: &str = "access_token";

/// How `method path` is guarded.
pub fn access(method: &Method, path: &str, metrics_public: bool) -> Access {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/healthz" | "/readyz" | "/ping" => Access::Open,
        "/metrics" if metrics_public => Access::Open,
        // InfluxDB's query route is a POST, but it reads (gridlog answers CREATE DATABASE).
        "/query" => Access::Read,
        _ if reads && dashboard::is_asset(path) => Access::Open,
        _ if reads => Access::Read,
        _ => Access::Write,
    }
}

/// Every request passes here: writes need the write token when one is configured, reads
/// the read token (or the write token: a writer may read) when one is configured. Tokens
/// are compared in constant time, each of them, whichever matched.
async fn token_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = state.config();
    let path = request.uri().path();
    let needed = access(request.method(), path, config.metrics_public);
    let accepted: &[&str] = match needed {
        Access::Open => &[],
        Access::Read => &[&config.read_token, &config.write_token],
        Access::Write => &[&config.write_token],
    };
    let guarding = match needed {
        Access::Open => false,
        Access::Read => !config.read_token.is_empty(),
        Access::Write => !config.write_token.is_empty(),
    };
    if !guarding {
        return next.run(request).await;
    }
    let matches = |given: &str| {
        accepted.iter().fold(false, |any, token| {
            let equal = constant_time_eq(given.as_bytes(), token.as_bytes());
            any | (equal && !token.is_empty())
        })
    };
    // The line protocol routes take the token the ways InfluxDB clients send it.
    if let Some(api) = crate::ingest::http::Api::of_path(path) {
        return crate::ingest::http::authorize(api, matches, request, next).await;
    }
    let (given, field) = match presented_token(&request) {
        Some(given) => given,
        None => {
            let message = match needed {
                Access::Write => "writes need Authorization: Bearer <write token>",
                _ => "reads need Authorization: Bearer <read token> (the write token reads too)",
            };
            let error = ApiError::auth(AuthFailure::Missing, "Authorization", message);
            return error.into_response();
        }
    };
    if matches(&given) {
        return next.run(request).await;
    }
    let message = match needed {
        Access::Write => "the write token is wrong",
        _ => "the token is neither the read token nor the write token",
    };
    ApiError::auth(AuthFailure::Wrong, field, message).into_response()
}

/// The token a request presents, and where: `Authorization: Bearer`, or on the live
/// stream alone, the [`STREAM_TOKEN_PARAM`] query parameter.
fn presented_token(request: &Request) -> Option<(String, &'static str)> {
    if let Some(given) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
    {
        return Some((given.to_string(), "Authorization"));
    }
    if request.uri().path() != stream::STREAM_PATH {
        return None;
    }
    crate::ingest::http::query_pairs(request.uri().query()?)
        .remove(STREAM_TOKEN_PARAM)
        .map(|given| (given, STREAM_TOKEN_PARAM))
}

/// The credentials of `Authorization: Bearer <token>`; the scheme's name is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` are the same scheme.
fn bearer_credentials(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// Compares without an early exit, so timing tells nothing about where tokens differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

pub use conn::serve;

#[cfg(test)]
mod tests {
    use super::*;

    /// `http.log_queries_max` scans run at once, never more; the others wait their turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_log_queries_max_scans_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        const TURNS: usize = 2;
        let mut config = Config::default();
        config.http.log_queries_max = TURNS;
        let state = AppState::new(config);
        let (running, most, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let scans: Vec<_> = (0..3 * TURNS)
            .map(|_| {
                let (state, running, most, done) =
                    (state.clone(), running.clone(), most.clone(), done.clone());
                tokio::spawn(async move {
                    state
                        .log_query(move || {
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            // Hold the turn until as many scans run as may (or a second
                            // passes): more would show here.
                            let until = Instant::now() + Duration::from_secs(1);
                            while running.load(SeqCst) < TURNS && Instant::now() < until {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, SeqCst);
                            done.fetch_add(1, SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for scan in scans {
            scan.await.unwrap().unwrap();
        }
        assert_eq!(done.load(SeqCst), 3 * TURNS, "every scan ran");
        assert_eq!(most.load(SeqCst), TURNS, "scans at once");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_credentials("Bearer t0k"), Some("t0k"));
        assert_eq!(bearer_credentials("bearer t0k"), Some("t0k"));
        assert_eq!(bearer_credentials("BEARER  t0k"), Some("t0k"));
        assert_eq!(bearer_credentials("Basic t0k"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
    }

    #[test]
    fn every_guarded_route_declares_its_tokens_and_its_401_and_403() {
        let (_, mut openapi) = routes();
        declare_tokens(&mut openapi);
        let doc = serde_json::to_value(&openapi).unwrap();
        for scheme in [WRITE_TOKEN_SCHEME, READ_TOKEN_SCHEME] {
            assert_eq!(
                doc["components"]["securitySchemes"][scheme]["scheme"],
                "bearer"
            );
        }
        let (mut posts, mut gets, mut open) = (0, 0, Vec::new());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let schemes: Vec<&str> = operation["security"]
                    .as_array()
                    .map(|s| s.iter().flat_map(|r| r.as_object().unwrap().keys()))
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                match method.as_str() {
                    "post" => {
                        posts += 1;
                        assert_eq!(schemes, [WRITE_TOKEN_SCHEME], "{path}");
                    }
                    "get" if schemes.is_empty() => open.push(path.as_str()),
                    "get" => {
                        gets += 1;
                        assert_eq!(schemes, [READ_TOKEN_SCHEME, WRITE_TOKEN_SCHEME], "{path}");
                    }
                    other => panic!("{other} {path}"),
                }
                if !schemes.is_empty() {
                    assert!(operation["responses"].get("401").is_some(), "{path}");
                    assert!(operation["responses"].get("403").is_some(), "{path}");
                }
            }
        }
        assert!(posts >= 10, "{posts}");
        assert!(gets >= 10, "{gets}");
        open.sort_unstable();
        assert_eq!(open, ["/healthz", "/readyz"]);
    }

    #[test]
    fn reads_writes_and_open_routes_are_told_apart() {
        let get = Method::GET;
        assert_eq!(access(&get, "/healthz", false), Access::Open);
        assert_eq!(access(&get, "/", false), Access::Open);
        assert_eq!(access(&get, "/main.js", false), Access::Open);
        assert_eq!(access(&get, "/nope.js", false), Access::Read);
        assert_eq!(access(&get, "/metrics", false), Access::Read);
        assert_eq!(access(&get, "/metrics", true), Access::Open);
        assert_eq!(access(&get, "/api/v1/meters", false), Access::Read);
        assert_eq!(
            access(&Method::POST, "/api/v1/meters", false),
            Access::Write
        );
        assert_eq!(access(&Method::POST, "/query", false), Access::Read);
        assert_eq!(access(&Method::POST, "/write", false), Access::Write);
        assert_eq!(access(&Method::DELETE, "/main.js", false), Access::Write);
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
