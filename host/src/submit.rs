//! Submitting a request to the engine from async code and awaiting its durable results
//! without blocking the runtime: the one path the HTTP API, the line-protocol ingest and the
//! shipper share (each maps the outcome to its own answers).

use gridlog_firmware::engine::{Engine, Request, Response, SubmitError};

/// Why a submitted request has no results.
#[derive(Debug, thiserror::Error)]
pub enum SubmitWaitError {
    /// The engine refused the request (busy, stopping, failed) or could not make it durable.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The engine stopped before it answered.
    #[error("the engine stopped before it answered")]
    Stopped,
}

/// Submits `request` and waits, without blocking a runtime thread, until its results are
/// durable (or the engine says why not).
pub async fn submit_and_wait(
    engine: &Engine,
    request: Request,
) -> Result<Response, SubmitWaitError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    engine.submit_with(
        request,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    )?;
    match rx.await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SubmitWaitError::Stopped),
    }
}
