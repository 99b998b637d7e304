//! The InfluxDB-compatible HTTP front end, as Telegraf's `outputs.influxdb` (v1) and
//! `outputs.influxdb_v2` use it: `POST /write`, `POST /api/v2/write`, `GET|HEAD /ping`,
//! `POST /query` (`CREATE DATABASE` only).
//!
//! Answers are InfluxDB's, because Telegraf acts on them: 204 once every stored line is
//! durable; 400 naming the first bad line (`partial write: …`, the good lines ARE stored,
//! as InfluxDB does) — Telegraf drops the batch; 413 for a body over a limit — Telegraf
//! splits it; 503 with `Retry-After` when the engine is busy — Telegraf retries the same
//! body (never 429: Telegraf's v1 output drops a batch on any other 4xx). Errors carry the
//! message in `X-Influxdb-Error` as well as the body: `{"error": …}` (v1) or
//! `{"code": …, "message": …}` (v2).
//!
//! The query string is read as influxd reads it (Go's `net/url`): a pair with a bad `%`
//! escape or a `;` is dropped, the first of a repeated key counts; so `db=%zz` is a missing
//! `db` (400 `database is required`), never a framework's plain-text 400. One deliberate
//! difference from influxd 1.6: an unknown `precision` is 400 (influxd ignores it and reads
//! the timestamps as nanoseconds, which would misdate every line).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::batch::{self, BodyError, Outcome, Prepared};
use super::line_protocol::Precision;
use crate::server::error::ApiError;
use crate::server::AppState;

/// `X-Influxdb-Version` on every answer: the InfluxDB API level these routes answer like,
/// 1.6.7 (the `influxd` the side-by-side test compares with), and, as semver build metadata,
/// that it is gridlog and which version. Telegraf's outputs never read it; clients that
/// pick an API by it (InfluxQL for `1.`) see a 1.x server, and nobody is told gridlog is
/// InfluxDB 1.6.7 itself.
pub const INFLUXDB_VERSION: &str = concat!("1.6.7+gridlog.", env!("CARGO_PKG_VERSION"));
/// `X-Influxdb-Build` on every answer (influxd says `OSS` or `ENT`).
pub const INFLUXDB_BUILD: &str = "gridlog";

/// Largest `/query` body (a form with `q=CREATE DATABASE …`).
pub const QUERY_BYTES_MAX: usize = 16 * 1024;

/// Longest error message put into the `X-Influxdb-Error` header (the body has all of it).
pub const ERROR_HEADER_BYTES_MAX: usize = 1024;

/// Which InfluxDB API a route belongs to: it decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// 1.x: `{"error": …}`.
    V1,
    /// 2.x: `{"code": …, "message": …}`.
    V2,
}

impl Api {
    /// The API of an ingest route's path; `None` for every other route.
    pub fn of_path(path: &str) -> Option<Api> {
        match path {
            "/write" | "/query" | "/ping" => Some(Api::V1),
            "/api/v2/write" => Some(Api::V2),
            _ => None,
        }
    }

    /// The query parameter a write needs, and InfluxDB's answer when it is missing.
    fn required_param(self) -> (&'static str, &'static str) {
        match self {
            Api::V1 => ("db", "database is required"),
            Api::V2 => ("bucket", "bucket is required"),
        }
    }
}

/// An error as InfluxDB answers it.
#[derive(Debug, Clone)]
pub struct InfluxError {
    api: Api,
    status: StatusCode,
    message: String,
    retry_after_s: Option<u32>,
}

impl InfluxError {
    fn new(api: Api, status: StatusCode, message: impl Into<String>) -> InfluxError {
        InfluxError {
            api,
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same status, message and `Retry-After` as a gridlog API error.
    fn from_api(api: Api, error: ApiError) -> InfluxError {
        InfluxError {
            api,
            status: error.status,
            message: error.detail.message,
            retry_after_s: error.retry_after_s,
        }
    }

    fn from_body(api: Api, error: &BodyError) -> InfluxError {
        let status = match error {
            BodyError::NotGzip { .. } => StatusCode::BAD_REQUEST,
            BodyError::TooLarge { .. } | BodyError::TooManyLines { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
        };
        InfluxError::new(api, status, error.to_string())
    }
}

/// InfluxDB 2's error code for a status.
fn v2_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        413 => "request too large",
        503 => "unavailable",
        _ => "internal error",
    }
}

/// `X-Influxdb-Version` and `X-Influxdb-Build` on an answer.
fn with_version(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        "x-influxdb-version",
        HeaderValue::from_static(INFLUXDB_VERSION),
    );
    headers.insert("x-influxdb-build", HeaderValue::from_static(INFLUXDB_BUILD));
    response
}

impl IntoResponse for InfluxError {
    fn into_response(self) -> Response {
        let body = match self.api {
            Api::V1 => serde_json::json!({ "error": self.message }),
            Api::V2 => serde_json::json!({ "code": v2_code(self.status), "message": self.message }),
        };
        let mut response = with_version((self.status, axum::Json(body)).into_response());
        let header_text: String = self
            .message
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(ERROR_HEADER_BYTES_MAX)
            .collect();
        if let Ok(value) = HeaderValue::from_str(&header_text) {
            response.headers_mut().insert("x-influxdb-error", value);
        }
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// The routes and their OpenAPI description.
pub fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(write_v1))
        .routes(routes!(write_v2))
        .routes(routes!(ping))
        .routes(routes!(query))
        .split_for_parts()
}

/// The token a request carries in any of the ways InfluxDB clients send one:
/// `Authorization: Token <t>` (v2), `Bearer <t>`, `Basic` whose password is the token
/// (v1 `username`/`password`), or the `p` query parameter (v1).
pub fn credentials(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim_start_matches(' ');
        return if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            Some(rest.to_string())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split_once(':')
                .map(|(_, password)| password.to_string())
        } else {
            None
        };
    }
    query_pairs(query?).remove("p")
}

/// A query string (or form) as influxd reads it (Go's `url.ParseQuery`, whose errors
/// influxd ignores): pairs split at `&`; a pair holding `;` or a bad `%` escape is dropped;
/// `+` is a space; the first value of a repeated key counts. Never fails.
pub fn query_pairs(query: &str) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    for pair in query
        .split('&')
        .filter(|p| !p.is_empty() && !p.contains(';'))
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(key), Some(value)) = (unescape(key), unescape(value)) {
            pairs.entry(key).or_insert(value);
        }
    }
    pairs
}

/// `+` → space and `%XX` → its byte; `None` for a `%` not followed by two hex digits.
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The token check of the ingest routes, with InfluxDB's answers: called by the server's
/// token middleware for every guarded request to one of them (`matches` knows which
/// tokens grant it: the write token for writes, the read or write token for `/query`).
pub async fn authorize(
    api: Api,
    matches: impl Fn(&str) -> bool,
    request: Request,
    next: Next,
) -> Response {
    match credentials(request.headers(), request.uri().query()) {
        Some(given) if matches(&given) => next.run(request).await,
        Some(_) => InfluxError::new(api, StatusCode::FORBIDDEN, "authorization failed").into_response(),
        None => InfluxError::new(
            api,
            StatusCode::UNAUTHORIZED,
            "unable to parse authentication credentials: send the token as Authorization: Token <t>, Bearer <t>, Basic (as the password) or ?p=<t>",
        )
        .into_response(),
    }
}

/// Check the gateway is up (InfluxDB's `/ping`; `HEAD` answers the same).
#[utoipa::path(get, path = "/ping", tag = "line protocol",
    responses((status = 204, description = "Up; X-Influxdb-Version names the InfluxDB API answered")))]
pub async fn ping() -> Response {
    with_version(StatusCode::NO_CONTENT.into_response())
}

/// InfluxDB 1.x queries: only `CREATE DATABASE …` (Telegraf's v1 output sends it at start),
/// which does nothing; gridlog has no databases. Reads are under `/api/v1`.
#[utoipa::path(post, path = "/query", tag = "line protocol",
    params(("q" = Option<String>, Query, description = "The query; the body may carry it as a form instead")),
    responses(
        (status = 200, description = "`{\"results\":[{\"statement_id\":0}]}`", body = Object),
        (status = 400, description = "Not a CREATE DATABASE statement: `{\"error\": …}`", body = Object)))]
pub async fn query(RawQuery(raw): RawQuery, body: Body) -> Result<Response, InfluxError> {
    let params = query_pairs(raw.as_deref().unwrap_or(""));
    let form = axum::body::to_bytes(body, QUERY_BYTES_MAX)
        .await
        .map_err(|_| {
            InfluxError::new(
                Api::V1,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the query is larger than {QUERY_BYTES_MAX} bytes"),
            )
        })?;
    let form = query_pairs(&String::from_utf8_lossy(&form));
    let q = params
        .get("q")
        .or_else(|| form.get("q"))
        .map(String::as_str)
        .unwrap_or("");
    let words: Vec<&str> = q.split_whitespace().take(2).collect();
    if words.len() == 2
        && words[0].eq_ignore_ascii_case("create")
        && words[1].eq_ignore_ascii_case("database")
    {
        let ok = serde_json::json!({"results": [{"statement_id": 0}]});
        return Ok(with_version(axum::Json(ok).into_response()));
    }
    Err(InfluxError::new(
        Api::V1,
        StatusCode::BAD_REQUEST,
        format!(
            "gridlog answers only CREATE DATABASE on /query, not {q:?}; read data under /api/v1"
        ),
    ))
}

/// Write line protocol, InfluxDB 1.x style.
#[utoipa::path(post, path = "/write", tag = "line protocol",
    params(
        ("db" = String, Query, description = "Required by InfluxDB; any name is accepted"),
        ("rp" = Option<String>, Query, description = "Ignored"),
        ("precision" = Option<String>, Query, description = "n, ns, u, ms, s, m, h; default ns"),
        ("u" = Option<String>, Query, description = "User (ignored)"),
        ("p" = Option<String>, Query, description = "The write token")),
    request_body(content = String, content_type = "text/plain", description = "Line protocol, optionally Content-Encoding: gzip"),
    responses(
        (status = 204, description = "Every line stored (or already stored), durably"),
        (status = 400, description = "`{\"error\":\"partial write: …\"}`: lines named were refused, the others stored", body = Object),
        (status = 413, description = "Body or line count over a limit; nothing stored", body = Object),
        (status = 503, description = "Busy: retry the same body after Retry-After", body = Object)))]
pub async fn write_v1(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InfluxError> {
    let params = query_pairs(raw.as_deref().unwrap_or(""));
    write(&state, Api::V1, &params, &headers, body).await
}

/// Write line protocol, InfluxDB 2.x style.
#[utoipa::path(post, path = "/api/v2/write", tag = "line protocol",
    params(
        ("bucket" = String, Query, description = "Required by InfluxDB; any name is accepted"),
        ("org" = Option<String>, Query, description = "Ignored"),
        ("precision" = Option<String>, Query, description = "ns, us, ms, s; default ns")),
    request_body(content = String, content_type = "text/plain", description = "Line protocol, optionally Content-Encoding: gzip"),
    responses(
        (status = 204, description = "Every line stored (or already stored), durably"),
        (status = 400, description = "`{\"code\":\"invalid\",\"message\":\"partial write: …\"}`", body = Object),
        (status = 413, description = "Body or line count over a limit; nothing stored", body = Object),
        (status = 503, description = "Busy: retry the same body after Retry-After", body = Object)))]
pub async fn write_v2(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InfluxError> {
    let params = query_pairs(raw.as_deref().unwrap_or(""));
    write(&state, Api::V2, &params, &headers, body).await
}

async fn write(
    state: &AppState,
    api: Api,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, InfluxError> {
    let (required, missing) = api.required_param();
    if params.get(required).is_none_or(|v| v.is_empty()) {
        return Err(InfluxError::new(api, StatusCode::BAD_REQUEST, missing));
    }
    let text = params.get("precision").map_or("", String::as_str);
    let precision = Precision::parse(text).ok_or_else(|| {
        InfluxError::new(
            api,
            StatusCode::BAD_REQUEST,
            format!("invalid precision {text:?}: n, ns, u, ms, s, m or h"),
        )
    })?;
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => false,
        Some(b"gzip") => true,
        Some(other) => {
            return Err(InfluxError::new(
                api,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {:?} is not supported: gzip or none",
                    String::from_utf8_lossy(other)
                ),
            ))
        }
    };
    let raw = read_body(state, api, body).await?;
    let engine = state.engine().map_err(|e| InfluxError::from_api(api, e))?;
    let now_ms = engine.now_ms();
    let ingest = state.ingest().clone();
    let (body_bytes_max, lines_max) = (
        state.config().ingest.body_bytes_max,
        state.config().ingest.lines_max,
    );
    let mut prepared = tokio::task::spawn_blocking(move || -> Result<Prepared, BodyError> {
        let inflated;
        let body: &[u8] = if gzip {
            inflated = batch::gunzip(&raw, body_bytes_max)?;
            &inflated
        } else if raw.len() > body_bytes_max {
            return Err(BodyError::TooLarge {
                max_bytes: body_bytes_max,
            });
        } else {
            &raw
        };
        batch::prepare(body, precision, lines_max, ingest.mapper(), now_ms)
    })
    .await
    .map_err(|e| InfluxError::from_api(api, ApiError::internal("line protocol task failed", e)))?
    .map_err(|e| InfluxError::from_body(api, &e))?;
    let unmapped = std::mem::take(&mut prepared.unmapped);
    let mut outcome = store(state, api, prepared).await?;
    outcome.unmapped = unmapped.len();
    state.ingest().stats.record(&outcome, &unmapped);
    answer(api, &outcome)
}

/// Reads the body as sent, bounded by `http.body_bytes_max`.
async fn read_body(state: &AppState, api: Api, body: Body) -> Result<Bytes, InfluxError> {
    let limit = state.config().http.body_bytes_max;
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let over_limit = std::error::Error::source(&error)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            InfluxError::new(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes (http.body_bytes_max)"),
            )
        } else {
            InfluxError::new(
                api,
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            )
        }
    })
}

/// Submits the commands (if any) and waits until they are durable. A body's lines are
/// independent writes: a body whose events do not fit one log frame is stored as several
/// requests (`submit_in_frames`), never refused whole.
async fn store(state: &AppState, api: Api, mut prepared: Prepared) -> Result<Outcome, InfluxError> {
    if prepared.commands.is_empty() {
        return Ok(prepared.outcome(&[]));
    }
    let commands = std::mem::take(&mut prepared.commands);
    let results = crate::server::submit_in_frames(state, commands)
        .await
        .map_err(|e| InfluxError::from_api(api, e))?;
    Ok(prepared.outcome(&results))
}

/// 204 when no line was refused, else 400 naming the first refused line.
fn answer(api: Api, outcome: &Outcome) -> Result<Response, InfluxError> {
    let Some(first) = outcome.refused.first() else {
        return Ok(with_version(StatusCode::NO_CONTENT.into_response()));
    };
    let field = first
        .field
        .as_ref()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    let more = match outcome.refused.len() {
        1 => String::new(),
        n => format!("; {} more lines refused", n - 1),
    };
    let dropped = outcome.refused.len();
    Err(InfluxError::new(
        api,
        StatusCode::BAD_REQUEST,
        format!(
            "partial write: line {}{field}: {}{more}; of {} lines {} stored, {} already stored, {} unmapped dropped={dropped}",
            first.line, first.message, outcome.lines, outcome.stored, outcome.duplicates, outcome.unmapped
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        map
    }

    #[test]
    fn the_token_is_taken_the_ways_influxdb_clients_send_it() {
        let basic = base64::engine::general_purpose::STANDARD.encode("telegraf:s3cret");
        for (authorization, expected) in [
            ("Token s3cret", Some("s3cret")),
            ("token  s3cret", Some("s3cret")),
            ("Bearer s3cret", Some("s3cret")),
            (format!("Basic {basic}").as_str(), Some("s3cret")),
            ("Basic !!notbase64", None),
            ("Digest x", None),
        ] {
            assert_eq!(
                credentials(&headers(authorization), None).as_deref(),
                expected,
                "{authorization}"
            );
        }
        let none = HeaderMap::new();
        assert_eq!(
            credentials(&none, Some("db=x&u=a&p=s3cret")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(credentials(&none, Some("db=x")), None);
        assert_eq!(credentials(&none, None), None);
    }

    #[test]
    fn the_query_string_is_read_as_influxd_reads_it() {
        let pairs = query_pairs("db=site+a&rp=&precision=s&db=other&u=%41%42");
        assert_eq!(pairs["db"], "site a");
        assert_eq!(pairs["rp"], "");
        assert_eq!(pairs["precision"], "s");
        assert_eq!(pairs["u"], "AB");
        // A bad escape or a `;` drops the pair, nothing else.
        for (query, kept) in [
            ("db=%zz&precision=s", vec!["precision"]),
            ("db=g%2&precision=s", vec!["precision"]),
            ("db=g;x=1&precision=s", vec!["precision"]),
            ("%zz=1&db=g", vec!["db"]),
            ("&&db&", vec!["db"]),
        ] {
            let mut keys: Vec<String> = query_pairs(query).into_keys().collect();
            keys.sort();
            assert_eq!(keys, kept, "{query}");
        }
    }

    #[tokio::test]
    async fn the_version_header_is_a_1x_semver_naming_gridlog() {
        let response = ping().await;
        let version = response.headers()["x-influxdb-version"].to_str().unwrap();
        let (api, build) = version.split_once('+').unwrap();
        assert!(api.starts_with("1."), "{version}");
        assert_eq!(api.split('.').count(), 3, "{version}");
        assert_eq!(build, format!("gridlog.{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(response.headers()["x-influxdb-build"], INFLUXDB_BUILD);
    }

    #[test]
    fn a_busy_engine_is_503_with_retry_after_in_influxdbs_shape() {
        let busy = ApiError::from(gridlog_firmware::engine::SubmitError::Busy { queue_depth: 8 });
        let response = InfluxError::from_api(Api::V1, busy).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(response.headers().contains_key("x-influxdb-error"));
        assert!(response.headers().contains_key("x-influxdb-version"));
    }
}
