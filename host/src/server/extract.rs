//! Request extractors that answer bad input with an [`ApiError`] naming the field.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON body: content type checked, size limited, and decoded with the path of the first
/// bad field (`readings[3].time`). Unknown fields are refused by the types themselves, and
/// anything but whitespace after the document is `malformed_json`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::field(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type",
                format!("the body must be application/json, not {content_type:?}"),
            ));
        }
        let limit = state.config().http.body_bytes_max;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|error| {
                // Over the limit, or the body itself broken (a bad chunk size, a connection
                // cut mid-body): different faults, different answers.
                let over_limit = std::error::Error::source(&error)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if over_limit {
                    ApiError::field(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "body",
                        format!("the body is larger than {limit} bytes"),
                    )
                } else {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        "body",
                        format!("the body could not be read: {error}"),
                    )
                }
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut *de) {
            // One document and nothing after it (whitespace aside): a second document would
            // otherwise be acknowledged and silently dropped.
            Ok(value) => match de.end() {
                Ok(()) => Ok(JsonBody(value)),
                Err(_) => Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    "body",
                    "trailing data after the JSON document; send exactly one JSON value",
                )),
            },
            Err(err) => {
                let path = err.path().to_string();
                let inner = err.into_inner();
                let code = if inner.is_syntax() || inner.is_eof() {
                    "malformed_json"
                } else {
                    "invalid_field"
                };
                let message = strip_position(&inner.to_string());
                let field = field_of(&path, &message);
                Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    code,
                    field,
                    message,
                ))
            }
        }
    }
}

/// The field an error is about: serde reports a missing, unknown or duplicate field at the
/// path of the object that contains it, so append the field's name from the message.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." || path.is_empty() {
        ""
    } else {
        path
    };
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| {
            let rest = message.strip_prefix(prefix)?;
            rest.split('`').next()
        });
    match (named, parent) {
        // An unknown field's path already ends with its name.
        (Some(name), parent) if parent == name || parent.ends_with(&format!(".{name}")) => {
            parent.to_string()
        }
        (Some(name), "") => name.to_string(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "") => "body".to_string(),
        (None, parent) => parent.to_string(),
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Query parameters decoded with the name of the bad one.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded_deserializer(query);
        match de {
            Ok(value) => Ok(QueryParams(value)),
            Err((field, message)) => Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                field,
                message,
            )),
        }
    }
}

fn serde_urlencoded_deserializer<T: DeserializeOwned>(query: &str) -> Result<T, (String, String)> {
    // Decode into a JSON object of strings, then into T with paths: query parameters are few
    // and small, and this keeps one error style for bodies and queries.
    let mut map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k);
        let v = percent_decode(v);
        map.insert(k, serde_json::Value::String(v));
    }
    let value = serde_json::Value::Object(map);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = field_of(&path, &message);
        (
            if field == "body" {
                "query".into()
            } else {
                field
            },
            message,
        )
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `{id}` of a route: an axum rejection (an id whose percent-encoding is not UTF-8)
/// becomes a JSON error naming `id`, like every other bad input.
#[derive(Debug)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| PathId(id))
            .map_err(|rejection| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_id",
                    "id",
                    format!("id {}", rejection.body_text()),
                )
            })
    }
}
