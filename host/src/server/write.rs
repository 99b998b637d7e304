//! Write endpoints: each builds commands, submits them, and answers after they are durable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gridlog_common::domain::Command;
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::{CommandRequest, ItemResult, RejectionCode, Request, Response};

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PathId};
use super::wire::*;
use super::AppState;
use crate::submit::{submit_and_wait, SubmitWaitError};

/// Submits `request` and awaits its durable results without blocking the runtime.
pub(crate) async fn submit(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let engine = state.engine()?;
    super::note_submitted();
    submit_and_wait(engine, request).await.map_err(api_error)
}

/// Submits independent `commands` in as many requests as log frames need
/// ([`submit_in_frames`]) and awaits their durable results, one per command.
pub(crate) async fn submit_in_frames(
    state: &AppState,
    commands: Vec<CommandRequest>,
) -> Result<Vec<ItemResult>, ApiError> {
    let engine = state.engine()?;
    super::note_submitted();
    crate::submit::submit_in_frames(engine, commands)
        .await
        .map_err(api_error)
}

fn api_error(error: SubmitWaitError) -> ApiError {
    match error {
        SubmitWaitError::Submit(e) => e.into(),
        SubmitWaitError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the engine stopped",
        )
        .retry(5),
    }
}

fn path_id(id: &str) -> Result<EntityId, ApiError> {
    EntityId::new(id).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "id",
            format!("id {e}"),
        )
    })
}

/// The status for a rejection of a single write: the one place a code meets HTTP. No
/// catch-all arm: a new code does not compile until it is given a status here.
fn rejection_status(code: RejectionCode) -> StatusCode {
    use RejectionCode as C;
    match code {
        C::UnknownMeter | C::UnknownAsset => StatusCode::NOT_FOUND,
        C::SeqMismatch | C::AlreadyRegistered | C::NotAMeter | C::NotAnAsset => {
            StatusCode::CONFLICT
        }
        // Limits of the state and every rule of the values themselves.
        C::TooManyEntities
        | C::TooManyFaults
        | C::ReservedId
        | C::InvalidRegisterBits
        | C::InvalidRatedPower
        | C::InvalidNumber
        | C::NegativeEnergy
        | C::ValueOutOfRange
        | C::MeterDecommissioned
        | C::ReplacementBeforeLatest
        | C::InvalidSoc
        | C::SetpointAboveRated
        | C::SetpointNegative
        | C::AssetUnavailable
        | C::TimeTooEarly
        | C::TimeInFuture
        | C::RegisterOutOfRange
        | C::ConflictingDuplicate
        | C::BeforeReplacement
        | C::BeyondDuplicateHistory
        | C::SuspectReset
        | C::RegisterDecreased
        | C::RegisterNotMonotonic
        | C::RequestTooLarge
        | C::Internal => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Submits one command and maps its single result: `created` is the status for a new event.
async fn single(
    state: &AppState,
    command: CommandRequest,
    created: StatusCode,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let entity = command.command.entity().clone();
    let response = submit(
        state,
        Request {
            commands: vec![command],
            command_id: None,
        },
    )
    .await?;
    match response.results.into_iter().next() {
        Some(ItemResult::Accepted { offset, seq }) => Ok((
            created,
            Json(WriteResponse {
                status: "accepted".into(),
                offset: Some(offset),
                seq,
            }),
        )),
        // A single-command request has no command id, so a replay is not expected here.
        Some(ItemResult::Duplicate | ItemResult::Replayed) => {
            let seq = state
                .engine()?
                .read(|image| image.entity(entity.as_str()).map_or(0, |e| e.state.seq()));
            Ok((
                StatusCode::OK,
                Json(WriteResponse {
                    status: "duplicate".into(),
                    offset: None,
                    seq,
                }),
            ))
        }
        Some(ItemResult::Rejected(r)) => {
            let detail = rejection_detail(&r, "");
            Err(ApiError {
                status: rejection_status(r.code),
                detail,
                retry_after_s: None,
                challenge: None,
            })
        }
        None => Err(ApiError::internal(
            "engine returned no result",
            "empty results",
        )),
    }
}

/// Register a meter.
#[utoipa::path(post, path = "/api/v1/meters", tag = "meters", request_body = RegisterMeterBody,
    responses(
        (status = 201, description = "Registered", body = WriteResponse),
        (status = 200, description = "Already registered identically", body = WriteResponse),
        (status = 409, description = "Registered differently", body = ErrorBody),
        (status = 400, description = "Bad request", body = ErrorBody)))]
pub async fn register_meter(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterMeterBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let command = Command::RegisterMeter {
        meter: body.id,
        kind: body.kind.into(),
        register_bits: body.register_bits,
    };
    single(&state, command.into(), StatusCode::CREATED).await
}

/// Record a batch of readings: one result per reading, in order.
#[utoipa::path(post, path = "/api/v1/readings", tag = "meters", request_body = ReadingsBody,
    responses(
        (status = 200, description = "Per-reading results, after the accepted ones are durable", body = BatchResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 413, description = "Too many readings or too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After", body = ErrorBody)))]
pub async fn record_readings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ReadingsBody>,
) -> Result<Json<BatchResponse>, ApiError> {
    let max = state.config().http.readings_per_request_max;
    if body.readings.is_empty() {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_batch",
            "readings",
            "readings must not be empty",
        ));
    }
    if body.readings.len() > max {
        return Err(ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_readings",
            "readings",
            format!(
                "{} readings in one request; the maximum is {max}",
                body.readings.len()
            ),
        ));
    }
    let commands = body
        .readings
        .iter()
        .map(|r| CommandRequest {
            command: Command::RecordReading {
                meter: r.meter.clone(),
                reading: r.reading(),
            },
            expected_seq: None,
        })
        .collect();
    let response = submit(
        &state,
        Request {
            commands,
            command_id: body.command_id,
        },
    )
    .await?;
    let results: Vec<ItemResultWire> = response
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| item_result(r, &format!("readings[{i}].")))
        .collect();
    let count = |f: fn(&ItemResult) -> bool| response.results.iter().filter(|r| f(r)).count();
    Ok(Json(BatchResponse {
        accepted: count(|r| matches!(r, ItemResult::Accepted { .. })),
        duplicates: count(|r| matches!(r, ItemResult::Duplicate)),
        rejected: count(|r| matches!(r, ItemResult::Rejected(_))),
        replayed: response.replayed,
        results,
    }))
}

/// Record that a meter was physically replaced: its registers continue from new values.
#[utoipa::path(post, path = "/api/v1/meters/{id}/replace", tag = "meters", request_body = ReplaceBody,
    params(("id" = String, Path, description = "Meter id")),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace_meter(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ReplaceBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let command = Command::ReplaceMeter {
        meter: path_id(&id)?,
        time_ms: body.time.0,
        import_wh: body.import_wh,
        export_wh: body.export_wh,
    };
    single(&state, command.into(), StatusCode::OK).await
}

/// Take a meter out of service.
#[utoipa::path(post, path = "/api/v1/meters/{id}/decommission", tag = "meters",
    params(("id" = String, Path, description = "Meter id")),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody)))]
pub async fn decommission_meter(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    single(
        &state,
        Command::DecommissionMeter {
            meter: path_id(&id)?,
        }
        .into(),
        StatusCode::OK,
    )
    .await
}

/// Register an energy asset.
#[utoipa::path(post, path = "/api/v1/assets", tag = "assets", request_body = RegisterAssetBody,
    responses(
        (status = 201, description = "Registered", body = WriteResponse),
        (status = 200, description = "Already registered identically", body = WriteResponse),
        (status = 409, description = "Registered differently", body = ErrorBody)))]
pub async fn register_asset(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterAssetBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let command = Command::RegisterAsset {
        asset: body.id,
        kind: body.kind.into(),
        rated_power_w: body.rated_power_w,
        capacity_wh: body.capacity_wh,
    };
    single(&state, command.into(), StatusCode::CREATED).await
}

/// Record asset telemetry.
#[utoipa::path(post, path = "/api/v1/assets/{id}/telemetry", tag = "assets", request_body = TelemetryBody,
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record_telemetry(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<TelemetryBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let command = Command::RecordTelemetry {
        asset: path_id(&id)?,
        telemetry: body.telemetry(),
    };
    single(&state, command.into(), StatusCode::OK).await
}

/// Request a power setpoint (validated against rated power and availability).
#[utoipa::path(post, path = "/api/v1/assets/{id}/setpoint", tag = "assets", request_body = SetpointBody,
    params(("id" = String, Path, description = "Asset id")),
    responses(
        (status = 200, body = WriteResponse),
        (status = 409, description = "expected_seq does not match", body = ErrorBody),
        (status = 422, description = "Rejected, e.g. above rated power", body = ErrorBody)))]
pub async fn request_setpoint(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<SetpointBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let command = CommandRequest {
        command: Command::RequestSetpoint {
            asset: path_id(&id)?,
            power_w: body.power_w,
        },
        expected_seq: body.expected_seq,
    };
    single(&state, command, StatusCode::OK).await
}

/// Mark an asset available or unavailable for control.
#[utoipa::path(post, path = "/api/v1/assets/{id}/availability", tag = "assets", request_body = AvailabilityBody,
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody)))]
pub async fn change_availability(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<AvailabilityBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    single(
        &state,
        Command::ChangeAvailability {
            asset: path_id(&id)?,
            available: body.available,
        }
        .into(),
        StatusCode::OK,
    )
    .await
}

/// Raise or clear an asset fault.
#[utoipa::path(post, path = "/api/v1/assets/{id}/faults", tag = "assets", request_body = FaultBody,
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody)))]
pub async fn report_fault(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<FaultBody>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let asset = path_id(&id)?;
    let command = if body.active {
        Command::RaiseFault {
            asset,
            code: body.code,
        }
    } else {
        Command::ClearFault {
            asset,
            code: body.code,
        }
    };
    single(&state, command.into(), StatusCode::OK).await
}

/// Take a snapshot now (then compact and archive, as after any snapshot).
#[utoipa::path(post, path = "/api/v1/snapshot", tag = "operations",
    responses((status = 200, description = "Snapshot written", body = Object), (status = 500, body = ErrorBody)))]
pub async fn take_snapshot(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = state.engine()?.clone();
    super::note_submitted();
    let stats = tokio::task::spawn_blocking(move || engine.snapshot_now())
        .await
        .map_err(|e| ApiError::internal("snapshot task failed", e))?
        .map_err(|e| ApiError::internal("snapshot failed", e))?;
    Ok(Json(serde_json::json!({
        "offset": stats.last_snapshot_offset,
        "bytes": stats.last_snapshot_bytes,
        "millis": stats.last_snapshot_millis,
        "segments_archived": stats.segments_archived,
        "archive_bytes": stats.archive_bytes,
    })))
}

#[cfg(test)]
mod tests {
    use super::rejection_status;
    use axum::http::StatusCode;
    use gridlog_firmware::engine::RejectionCode;

    /// Every code with the status a single write answers it with (the same as before the
    /// codes were an enum). A code missing here fails the length check.
    const EXPECTED: &[(&str, StatusCode)] = &[
        ("seq_mismatch", StatusCode::CONFLICT),
        ("reserved_id", StatusCode::UNPROCESSABLE_ENTITY),
        ("invalid_register_bits", StatusCode::UNPROCESSABLE_ENTITY),
        ("already_registered", StatusCode::CONFLICT),
        ("invalid_rated_power", StatusCode::UNPROCESSABLE_ENTITY),
        ("invalid_number", StatusCode::UNPROCESSABLE_ENTITY),
        ("negative_energy", StatusCode::UNPROCESSABLE_ENTITY),
        ("value_out_of_range", StatusCode::UNPROCESSABLE_ENTITY),
        ("meter_decommissioned", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "replacement_before_latest",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("invalid_soc", StatusCode::UNPROCESSABLE_ENTITY),
        ("setpoint_above_rated", StatusCode::UNPROCESSABLE_ENTITY),
        ("setpoint_negative", StatusCode::UNPROCESSABLE_ENTITY),
        ("asset_unavailable", StatusCode::UNPROCESSABLE_ENTITY),
        ("too_many_faults", StatusCode::UNPROCESSABLE_ENTITY),
        ("not_a_meter", StatusCode::CONFLICT),
        ("unknown_meter", StatusCode::NOT_FOUND),
        ("not_an_asset", StatusCode::CONFLICT),
        ("unknown_asset", StatusCode::NOT_FOUND),
        ("time_too_early", StatusCode::UNPROCESSABLE_ENTITY),
        ("time_in_future", StatusCode::UNPROCESSABLE_ENTITY),
        ("register_out_of_range", StatusCode::UNPROCESSABLE_ENTITY),
        ("conflicting_duplicate", StatusCode::UNPROCESSABLE_ENTITY),
        ("before_replacement", StatusCode::UNPROCESSABLE_ENTITY),
        ("beyond_duplicate_history", StatusCode::UNPROCESSABLE_ENTITY),
        ("suspect_reset", StatusCode::UNPROCESSABLE_ENTITY),
        ("register_decreased", StatusCode::UNPROCESSABLE_ENTITY),
        ("register_not_monotonic", StatusCode::UNPROCESSABLE_ENTITY),
        ("too_many_entities", StatusCode::UNPROCESSABLE_ENTITY),
        ("request_too_large", StatusCode::UNPROCESSABLE_ENTITY),
        ("internal", StatusCode::UNPROCESSABLE_ENTITY),
    ];

    #[test]
    fn every_rejection_code_maps_to_its_status() {
        assert_eq!(
            EXPECTED.len(),
            RejectionCode::ALL.len(),
            "every code needs a row in EXPECTED"
        );
        for code in RejectionCode::ALL {
            let wire = code.as_str();
            let expected = EXPECTED
                .iter()
                .find(|(spelling, _)| *spelling == wire)
                .map(|(_, status)| *status);
            assert_eq!(Some(rejection_status(code)), expected, "{wire}");
        }
    }
}
