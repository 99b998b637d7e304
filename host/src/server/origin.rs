//! No cross-site requests, with or without a write token.
//!
//! A web page on any site can make a visitor's browser send a "simple" request (a form post:
//! `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`, no custom
//! header) to the gateway on the site network, and a DNS-rebinding page can even read the
//! answers by pointing its own name at the gateway. Three checks, in [`check`]:
//!
//! - **`Host`**, on every request: an IP literal (the listen address or any other address of
//!   the gateway: an address cannot be rebound), `localhost` (and `*.localhost`), or a name
//!   in `http.allowed_hosts`. A rebinding page's requests carry its own name, so they end
//!   here (421 `host_not_allowed`).
//! - **`Content-Type: application/json`**, on every state-changing request (any method but
//!   GET and HEAD), also on the routes without a body (`…/decommission`, `/api/v1/snapshot`:
//!   send no body or `{}`). A browser sends that type cross-site only after a CORS preflight,
//!   which the gateway never grants (415 `unsupported_media_type`).
//! - **`Origin`**, on state-changing requests: if present, its host and port must be the
//!   request's `Host` (`null` is foreign) (403 `foreign_origin`); `Sec-Fetch-Site:
//!   cross-site` likewise. Clients that are not browsers send no `Origin` and pass.
//!
//! The line protocol routes (`/write`, `/api/v2/write`, `/query`) are the exception to the
//! content type rule: Telegraf sends `text/plain; charset=utf-8`. There the `Origin` check
//! alone ([`check_origin`]) refuses a page's post, since browsers send `Origin` with every
//! cross-site POST; the JSON API keeps all three checks.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Why a request was refused as possibly cross-site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrossSiteRefusal {
    /// `Host` names neither an address, nor localhost, nor an allowed host.
    #[error("Host {host:?} is not this gateway's address, localhost or a name in http.allowed_hosts (DNS rebinding?)")]
    HostNotAllowed {
        /// The `Host` header as sent.
        host: String,
    },
    /// A state-changing request without `Content-Type: application/json`.
    #[error("a write must have Content-Type: application/json (routes without a body: send no body or {{}}), not {content_type:?}")]
    NotJson {
        /// The `Content-Type` header as sent (empty if none).
        content_type: String,
    },
    /// A state-changing request from a page of another origin.
    #[error("a write from another site's page is refused (Origin {origin:?} is not this gateway)")]
    ForeignOrigin {
        /// The `Origin` (or `Sec-Fetch-Site`) as sent.
        origin: String,
    },
}

impl CrossSiteRefusal {
    /// The stable code, the status and the header at fault: in one place.
    pub fn wire(&self) -> (&'static str, StatusCode, &'static str) {
        match self {
            CrossSiteRefusal::HostNotAllowed { .. } => {
                ("host_not_allowed", StatusCode::MISDIRECTED_REQUEST, "Host")
            }
            CrossSiteRefusal::NotJson { .. } => (
                "unsupported_media_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type",
            ),
            CrossSiteRefusal::ForeignOrigin { .. } => {
                ("foreign_origin", StatusCode::FORBIDDEN, "Origin")
            }
        }
    }
}

impl From<CrossSiteRefusal> for ApiError {
    fn from(refusal: CrossSiteRefusal) -> ApiError {
        let (code, status, field) = refusal.wire();
        ApiError::field(status, code, field, refusal.to_string())
    }
}

/// The middleware for every request: the `Host` check with `http.allowed_hosts`.
pub async fn refuse_foreign_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check_host(request.headers(), &state.config().http.allowed_hosts) {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::from(refusal).into_response(),
    }
}

/// The middleware for the line protocol routes: the origin check of a write, any content
/// type (see [`check_origin`]).
pub async fn refuse_cross_site_origin(request: Request, next: Next) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    match if read {
        Ok(())
    } else {
        check_origin(request.headers())
    } {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::from(refusal).into_response(),
    }
}

/// The middleware for the routes (a method no route takes stays 405): the write checks.
pub async fn refuse_cross_site_writes(request: Request, next: Next) -> Response {
    match check_write(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::from(refusal).into_response(),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The three checks of the module's documentation, as the two layers apply them.
#[cfg(test)]
fn check(
    method: &Method,
    headers: &HeaderMap,
    allowed_hosts: &[String],
) -> Result<(), CrossSiteRefusal> {
    check_host(headers, allowed_hosts)?;
    check_write(method, headers)
}

/// The `Host` check, on every request.
pub fn check_host(headers: &HeaderMap, allowed_hosts: &[String]) -> Result<(), CrossSiteRefusal> {
    // HTTP/1.0 clients may send no Host; a browser always does.
    match header_text(headers, header::HOST) {
        Some(host) if !host_allowed(&host, allowed_hosts) => {
            Err(CrossSiteRefusal::HostNotAllowed { host })
        }
        _ => Ok(()),
    }
}

/// The content type and origin checks of a state-changing request (any method but GET and
/// HEAD); nothing for reads.
pub fn check_write(method: &Method, headers: &HeaderMap) -> Result<(), CrossSiteRefusal> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let content_type = header_text(headers, header::CONTENT_TYPE).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(CrossSiteRefusal::NotJson { content_type });
    }
    check_origin(headers)
}

/// The origin check alone, for the line protocol routes: InfluxDB clients send
/// `text/plain` (a type a page may send cross-site), so there the `Origin` and
/// `Sec-Fetch-Site` a browser always adds to a cross-site POST are what refuses it.
pub fn check_origin(headers: &HeaderMap) -> Result<(), CrossSiteRefusal> {
    let text = |name: header::HeaderName| header_text(headers, name);
    let host = text(header::HOST);
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site.eq_ignore_ascii_case("cross-site") {
            return Err(CrossSiteRefusal::ForeignOrigin { origin: site });
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let same = match (authority, &host) {
            (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host.trim()),
            _ => false,
        };
        if !same {
            return Err(CrossSiteRefusal::ForeignOrigin { origin });
        }
    }
    Ok(())
}

/// Whether a `Host` header names this gateway: an IP literal, localhost, or an allowed
/// name (case-insensitive, a trailing dot ignored); the port is not compared.
pub fn host_allowed(host: &str, allowed_hosts: &[String]) -> bool {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return false;
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.strip_suffix('.').unwrap_or(allowed);
            allowed.eq_ignore_ascii_case(&lower)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn hosts_are_addresses_localhost_or_allowed_names() {
        let allowed = vec!["gateway.site.example".to_string()];
        for ok in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost",
            "gateway.site.example:8080",
            "Gateway.Site.Example.",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "gateway.site.example.evil",
            "",
            ":8080",
            "[not-v6]:80",
            "10.1.2.3:x",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn line_protocol_needs_no_json_but_a_foreign_origin_is_still_refused() {
        let telegraf = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "text/plain; charset=utf-8"),
        ]);
        assert_eq!(check_origin(&telegraf), Ok(()));
        assert!(matches!(
            check(&Method::POST, &telegraf, &[]),
            Err(CrossSiteRefusal::NotJson { .. })
        ));
        let page = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
        ]);
        assert!(matches!(
            check_origin(&page),
            Err(CrossSiteRefusal::ForeignOrigin { .. })
        ));
        let fetch = headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert!(check_origin(&fetch).is_err());
    }

    #[test]
    fn a_cross_site_form_post_is_refused() {
        let form = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://evil.example"),
        ]);
        assert!(matches!(
            check(&Method::POST, &form, &[]),
            Err(CrossSiteRefusal::NotJson { .. })
        ));
        let json_foreign = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ]);
        assert!(matches!(
            check(&Method::POST, &json_foreign, &[]),
            Err(CrossSiteRefusal::ForeignOrigin { .. })
        ));
        let null_origin = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("origin", "null"),
        ]);
        assert!(check(&Method::POST, &null_origin, &[]).is_err());
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json; charset=utf-8"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check(&Method::POST, &same, &[]), Ok(()));
        let curl = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(check(&Method::POST, &curl, &[]), Ok(()));
        let read = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(check(&Method::GET, &read, &[]), Ok(()));
        let rebound = headers(&[("host", "evil.example:8080")]);
        assert!(matches!(
            check(&Method::GET, &rebound, &[]),
            Err(CrossSiteRefusal::HostNotAllowed { .. })
        ));
    }
}
