//! Submitting a request to the engine from async code and awaiting its durable results
//! without blocking the runtime: the one path the HTTP API, the line-protocol ingest and the
//! shipper share (each maps the outcome to its own answers).

use gridlog_firmware::engine::{
    CommandRequest, Engine, ItemResult, RejectionCode, Request, Response, SubmitError,
};

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

/// Submits `commands` as requests of as many commands as fit one log frame, in order, and
/// returns one result per command. First all of them as one request; when the engine
/// refuses that as larger than a frame (`request_too_large` for every command, nothing
/// stored), each half again, and so on. Only for sources whose batches have no atomicity
/// (line protocol: a body is many independent writes); never for a request with a command id,
/// whose commands must share one frame. A refusal of the engine (busy, stopping) part-way
/// returns the error: the halves before it are stored, and the client's retry of the whole
/// batch meets the duplicate rule.
pub async fn submit_in_frames(
    engine: &Engine,
    commands: Vec<CommandRequest>,
) -> Result<Vec<ItemResult>, SubmitWaitError> {
    let mut results = Vec::with_capacity(commands.len());
    // The parts still to submit, the next one last.
    let mut parts = vec![commands];
    while let Some(mut part) = parts.pop() {
        let request = |commands| Request {
            commands,
            command_id: None,
        };
        if !engine.request_may_exceed_a_frame(part.len()) {
            // Certain to fit (the common case): no copy kept for a split.
            results.extend(submit_and_wait(engine, request(part)).await?.results);
            continue;
        }
        let response = submit_and_wait(engine, request(part.clone())).await?;
        if part.len() > 1 && too_large_for_a_frame(&response.results) {
            let second = part.split_off(part.len() / 2);
            parts.push(second);
            parts.push(part);
            continue;
        }
        results.extend(response.results);
    }
    Ok(results)
}

/// The engine refused a whole request as larger than one log frame.
fn too_large_for_a_frame(results: &[ItemResult]) -> bool {
    results.iter().all(|r| {
        matches!(r, ItemResult::Rejected(rejection) if rejection.code == RejectionCode::RequestTooLarge)
    })
}
