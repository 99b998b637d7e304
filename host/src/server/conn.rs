//! Serving connections with every resource bounded, and stopping with a deadline.
//!
//! `axum::serve` accepts without limit and never times out a write, so a client that asks
//! for a large answer and never reads it holds that answer's memory for as long as it keeps
//! the connection open. Here:
//!
//! - at most `http.connections_max` connections are open (lowered at start to what the
//!   open-file limit leaves after [`FDS_RESERVED_FOR_LOG`]); when they are all taken the
//!   loop stops accepting and new ones wait in the kernel's backlog;
//! - with TLS (`tls.cert_file`), the handshake must finish within
//!   `tls.handshake_timeout_s`, so a client that connects and sends nothing gives its slot
//!   back; the connection then goes through every rule below like a plain one;
//! - a request's head must arrive within `http.header_read_timeout_s` (slowloris);
//! - each connection's kernel send buffer is fixed ([`SOCKET_SEND_BUFFER_BYTES`]), so an
//!   unread answer stays in the process, counted against `http.answer_bytes_max`;
//! - a write to the socket that makes no progress for `http.send_timeout_s` closes the
//!   connection ([`SendTimeout`]), freeing the answer it was sending;
//! - at shutdown the loop stops accepting, every connection is told to close once its
//!   current request is answered (idle ones at once), and after `http.shutdown_timeout_s`
//!   the rest (half-sent requests, non-reading clients) are dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use super::AppState;

/// File descriptors kept free for the log (segments, snapshots, archive, the directory
/// handles and what the runtime needs): connections are capped at the open-file limit less
/// this, so a flood of connections cannot make the next segment rotation fail.
pub const FDS_RESERVED_FOR_LOG: u64 = 128;

/// The kernel send buffer of each connection (`SO_SNDBUF`; Linux doubles it for its
/// bookkeeping). Left to autotuning it grows to `net.ipv4.tcp_wmem`'s maximum (4 MiB by
/// default) per connection, so non-reading clients could park megabytes each in the kernel;
/// fixed, the rest of an answer stays in the process, where `http.answer_bytes_max` counts it.
pub const SOCKET_SEND_BUFFER_BYTES: usize = 128 * 1024;

/// After an `accept` that failed for lack of a resource (EMFILE, ENFILE, ENOMEM), wait this
/// long before trying again, rather than spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The open-file limit (soft), if it can be read.
// rlim_t is u64 on 64-bit Linux and u32 on 32-bit ARM, where the conversion is not useless.
#[allow(clippy::useless_conversion)]
fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| u64::from(soft))
}

/// `configured`, lowered so that connections leave [`FDS_RESERVED_FOR_LOG`] descriptors of
/// the open-file limit `nofile` free (at least 1).
pub fn connections_cap(configured: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(limit) => {
            let room = limit.saturating_sub(FDS_RESERVED_FOR_LOG).max(1);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, lets each
/// connection finish its current request (their commits complete), closes idle and
/// half-sent ones, and returns at the latest `http.shutdown_timeout_s` later.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let http = state.config().http.clone();
    let cap = connections_cap(http.connections_max, open_file_limit());
    if cap < http.connections_max {
        tracing::warn!(
            configured = http.connections_max,
            cap,
            reserved = FDS_RESERVED_FOR_LOG,
            "http.connections_max lowered to fit the open-file limit (raise LimitNOFILE)"
        );
    }
    let connections = Arc::new(Semaphore::new(cap));
    let timeouts = Timeouts {
        header_read: Duration::from_secs(http.header_read_timeout_s),
        send: Duration::from_secs(http.send_timeout_s),
        handshake: Duration::from_secs(state.config().tls.handshake_timeout_s),
    };
    let tls = state.tls().cloned();
    let app = super::app(state.clone());
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: wait, the shortage may pass. Anything
                    // else is the client's problem (a reset before accept).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SOCKET_SEND_BUFFER_BYTES);
        let service = TowerToHyperService::new(app.clone());
        // The pair in force when the connection was accepted serves all of it.
        let tls_config = tls.as_ref().map(|t| t.current().config.clone());
        let closing = closing_rx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match tls_config {
                None => serve_connection(stream, service, timeouts, closing).await,
                Some(config) => {
                    if let Some(stream) = handshake(stream, config, timeouts, closing.clone()).await
                    {
                        serve_connection(stream, service, timeouts, closing).await;
                    }
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    state.begin_shutdown();
    let _ = closing_tx.send(true);
    let deadline = Duration::from_secs(http.shutdown_timeout_s);
    let drained = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after http.shutdown_timeout_s: closing them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// The time limits of one connection.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    send: Duration,
    handshake: Duration,
}

/// The TLS handshake on an accepted socket, within `tls.handshake_timeout_s`; `None` (the
/// socket is closed) if it fails, runs out of time or the server begins to stop.
async fn handshake(
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeouts: Timeouts,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    tokio::select! {
        done = tokio::time::timeout(timeouts.handshake, accept) => match done {
            Ok(Ok(stream)) => Some(stream),
            // A client that does not speak TLS (plain HTTP to the HTTPS port) or does not
            // trust the certificate: the client's problem, not worth more than a debug line.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within tls.handshake_timeout_s");
                None
            }
        },
        _ = closing.wait_for(|c| *c) => None,
    }
}

/// The most a connection buffers of a request's head (hyper's default is ~400 KiB, which
/// 512 connections of slow clients would hold at once): the request line and headers
/// must fit.
pub const CONNECTION_READ_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// Serves HTTP/1.1 on one connection (plain or TLS) until the client closes it or the
/// server stops (then the current request is finished first).
async fn serve_connection<S>(
    stream: S,
    service: TowerToHyperService<axum::Router>,
    timeouts: Timeouts,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(SendTimeout::new(stream, timeouts.send));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(CONNECTION_READ_BUFFER_BYTES_MAX);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { let _ = closing.wait_for(|c| *c).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no progress for `timeout`:
/// a client that stops reading cannot hold a connection (and the answer it was being sent)
/// for longer.
///
/// It also gives the protocol layer's own error answers a JSON body: hyper answers a
/// request it cannot parse (a bad request line, two `Content-Length`s, a URI or header
/// section too long) with an empty 400/414/431 and closes; [`protocol_error_answer`]
/// rewrites that answer, on its way to the socket, into the API's error shape.
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// A rewritten protocol error answer being written, and how much of it is.
    rewritten: Option<(Vec<u8>, usize)>,
}

/// An error the HTTP protocol layer answers by itself, before any route sees the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// 400: not a valid HTTP/1.1 request (request line, header syntax, framing).
    #[error("the request is not valid HTTP/1.1: a bad request line or header, or ambiguous framing such as two Content-Length headers")]
    BadRequest,
    /// 414: the request target is too long.
    #[error("the request's URI is too long")]
    UriTooLong,
    /// 431: the header section is too large.
    #[error("the request's header section is too large")]
    HeadersTooLarge,
}

impl ProtocolError {
    /// The status and the stable code: in one place.
    pub fn wire(self) -> (u16, &'static str) {
        match self {
            ProtocolError::BadRequest => (400, "bad_request"),
            ProtocolError::UriTooLong => (414, "uri_too_long"),
            ProtocolError::HeadersTooLarge => (431, "headers_too_large"),
        }
    }

    fn from_status(status: u16) -> Option<ProtocolError> {
        [
            ProtocolError::BadRequest,
            ProtocolError::UriTooLong,
            ProtocolError::HeadersTooLarge,
        ]
        .into_iter()
        .find(|e| e.wire().0 == status)
    }
}

/// If `written` is hyper's own answer to an unparseable request (a 400, 414 or 431 head
/// with `content-length: 0`; the API's own errors always have a JSON body), the same answer
/// with a JSON error body.
pub fn protocol_error_answer(written: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(written).ok()?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let error = ProtocolError::from_status(status)?;
    if !text.ends_with("\r\n\r\n") || !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (_, code) = error.wire();
    let body =
        serde_json::json!({"error": {"code": code, "message": error.to_string()}}).to_string();
    let head = text.replacen(
        "\r\ncontent-length: 0\r\n",
        &format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ),
        1,
    );
    Some([head.as_bytes(), body.as_bytes()].concat())
}

impl<S> SendTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            timeout,
            stalled: None,
            rewritten: None,
        }
    }

    /// Writes the rewritten answer; reports `original` bytes written once all of it is.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>, original: usize) -> Poll<io::Result<usize>>
    where
        S: AsyncWrite + Unpin,
    {
        loop {
            let Some((bytes, at)) = self.rewritten.as_mut() else {
                return Poll::Ready(Ok(original));
            };
            if *at == bytes.len() {
                self.rewritten = None;
                return Poll::Ready(Ok(original));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(n)) => {
                    *at += n;
                    self.stalled = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.check_stall(cx),
            }
        }
    }

    /// After a write or flush came back `Pending`: starts the stall clock, or fails if it
    /// has run out.
    fn check_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?} (http.send_timeout_s)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewritten.is_none() {
            self.rewritten = protocol_error_answer(buf).map(|answer| (answer, 0));
        }
        if self.rewritten.is_some() {
            return self.poll_rewritten(cx, buf.len());
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's own error answer is a head alone, in one slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if self.rewritten.is_none() {
                self.rewritten = protocol_error_answer(only).map(|answer| (answer, 0));
            }
            if self.rewritten.is_some() {
                return self.poll_rewritten(cx, only.len());
            }
        }
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    /// Closing can write too (TLS sends `close_notify`): a client that stops reading holds
    /// it no longer than a write.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

/// The most a response body hands the connection at once. hyper queues a data frame whole
/// and asks for the next only when its write buffer has room, so an answer handed over in
/// chunks is done (and [`Held`] drops its guard) only when nearly all of it has reached the
/// socket, not the moment the whole answer sits in hyper's queue.
pub const BODY_CHUNK_BYTES: usize = 64 * 1024;

/// A response body that holds `guard` (the request's concurrency slot, its write slot, its
/// share of `http.answer_bytes_max`) until the body has been sent or dropped, handing it
/// over in chunks of at most [`BODY_CHUNK_BYTES`].
pub struct Held<G> {
    inner: axum::body::Body,
    pending: bytes::Bytes,
    _guard: G,
}

impl<G> Held<G> {
    /// `inner`, holding `guard`.
    pub fn new(inner: axum::body::Body, guard: G) -> Held<G> {
        Held {
            inner,
            pending: bytes::Bytes::new(),
            _guard: guard,
        }
    }

    fn next_chunk(&mut self) -> bytes::Bytes {
        let n = self.pending.len().min(BODY_CHUNK_BYTES);
        self.pending.split_to(n)
    }
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if !self.pending.is_empty() {
            let chunk = self.next_chunk();
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.len() > BODY_CHUNK_BYTES => {
                    self.pending = data;
                    let chunk = self.next_chunk();
                    Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
                }
                Ok(data) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_layers_empty_errors_get_a_json_body_and_nothing_else_changes() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 13:31:07 GMT\r\n\r\n";
        let answer = String::from_utf8(protocol_error_answer(hyper_400).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(protocol_error_answer(hyper_431).unwrap())
            .unwrap()
            .contains("headers_too_large"));
        // The API's own answers, with bodies, pass untouched.
        assert_eq!(protocol_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n"), None);
        assert_eq!(
            protocol_error_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(protocol_error_answer(b"{\"events\":[]}"), None);
    }

    #[test]
    fn connections_leave_descriptors_for_the_log() {
        assert_eq!(connections_cap(512, Some(1024)), 512);
        assert_eq!(
            connections_cap(1000, Some(1024)),
            1024 - FDS_RESERVED_FOR_LOG as usize
        );
        assert_eq!(connections_cap(512, Some(64)), 1);
        assert_eq!(connections_cap(512, None), 512);
    }
}
