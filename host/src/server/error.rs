//! One error type for the whole API: `{"error":{"code","message","field"}}` with a status.
//!
//! Client errors say exactly what is wrong and name the field; internal errors say little to
//! the client and everything to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Words for people.
    pub message: String,
    /// The request field at fault (a JSON path like `readings[3].time`, a query parameter or
    /// a header), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The entity's current seq, on `seq_mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_seq: Option<u64>,
}

/// An API error: status + body (+ Retry-After for 429/503).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub detail: ErrorDetail,
    /// Seconds for `Retry-After`.
    pub retry_after_s: Option<u32>,
    /// `WWW-Authenticate` challenge (on 401).
    pub challenge: Option<&'static str>,
}

/// Why a request's token was refused. Its status and code are written once, in
/// [`AuthFailure::wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token was sent where one is needed: 401 `unauthorized`, with
    /// `WWW-Authenticate: Bearer`.
    Missing,
    /// A token was sent, but not one that grants this request: 403 `forbidden`.
    Wrong,
}

impl AuthFailure {
    /// The status and the stable code.
    pub fn wire(self) -> (StatusCode, &'static str) {
        match self {
            AuthFailure::Missing => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AuthFailure::Wrong => (StatusCode::FORBIDDEN, "forbidden"),
        }
    }
}

/// The challenge a 401 carries: the API's tokens are bearer tokens (RFC 6750).
pub const BEARER_CHALLENGE: &str = "Bearer";

impl ApiError {
    /// A client error naming a field.
    pub fn field(
        status: StatusCode,
        code: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(status, code, message).with_field(field)
    }

    /// An error without a field.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
                current_seq: None,
            },
            retry_after_s: None,
            challenge: None,
        }
    }

    /// A refused token, naming where it was looked for (`field`).
    pub fn auth(failure: AuthFailure, field: &str, message: impl Into<String>) -> ApiError {
        let (status, code) = failure.wire();
        let mut error = ApiError::field(status, code, field, message);
        if failure == AuthFailure::Missing {
            error.challenge = Some(BEARER_CHALLENGE);
        }
        error
    }

    /// Names the field.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.detail.field = Some(field.into());
        self
    }

    /// 503/429 with Retry-After.
    pub fn retry(mut self, seconds: u32) -> ApiError {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 404 for an unknown entity.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::field(
            StatusCode::NOT_FOUND,
            &format!("unknown_{what}"),
            "id",
            format!("{what} {id} is not registered"),
        )
    }

    /// An internal error: logged in full, reported briefly.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the gateway's log"),
        )
    }

    /// The engine is still recovering.
    pub fn not_ready() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the gateway is recovering its log; retry shortly",
        )
        .retry(1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: self.detail })).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<gridlog_firmware::engine::SubmitError> for ApiError {
    fn from(e: gridlog_firmware::engine::SubmitError) -> ApiError {
        use gridlog_firmware::engine::SubmitError;
        match e {
            SubmitError::Busy { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()).retry(1)
            }
            SubmitError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_commands",
                e.to_string(),
            ),
            SubmitError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            )
            .retry(5),
            _ => ApiError::internal("storage failed", e),
        }
    }
}

impl From<gridlog_firmware::engine::QueryError> for ApiError {
    fn from(e: gridlog_firmware::engine::QueryError) -> ApiError {
        use gridlog_firmware::engine::QueryError;
        use gridlog_firmware::wal::ReadError;
        match e {
            QueryError::Read(ReadError::Truncated { offset, oldest }) => ApiError::field(
                StatusCode::GONE,
                "offset_archived",
                "after",
                format!("offset {offset} is no longer in the hot log (oldest is {oldest})"),
            ),
            QueryError::Evicted { next_available, .. } => ApiError::field(
                StatusCode::GONE,
                "history_evicted",
                "after",
                format!(
                    "{e}; older history is in central storage (resume with after={})",
                    next_available.saturating_sub(1)
                ),
            ),
            QueryError::BeforeHistory { history_start, .. } => ApiError::field(
                StatusCode::GONE,
                "history_evicted",
                "after",
                format!("{e}; resume with after={}", history_start.saturating_sub(1)),
            ),
            QueryError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "archive_busy",
                e.to_string(),
            )
            .retry(1),
            other => ApiError::internal("reading the log failed", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridlog_firmware::engine::QueryError;

    #[test]
    fn evicted_history_is_410_naming_the_offset_to_resume_after() {
        let e = ApiError::from(QueryError::Evicted {
            offset: 1,
            next_available: 5001,
        });
        assert_eq!(e.status, StatusCode::GONE);
        assert_eq!(e.detail.code, "history_evicted");
        assert_eq!(e.detail.field.as_deref(), Some("after"));
        assert!(
            e.detail.message.contains("after=5000"),
            "{}",
            e.detail.message
        );
    }
}
