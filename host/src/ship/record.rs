//! Recording the shipper's events (`ShipIntended`, `ShipConfirmed`, alarms) on
//! `gateway:storage` through the engine, like any other command, and reading that entity's
//! state back.

use gridlog_common::domain::{Command, Event, STORAGE_ENTITY};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::state::{EntityState, SystemState};
use std::time::Duration;

use gridlog_firmware::engine::{Engine, ItemResult, RejectionCode, Request, SubmitError};

use super::shipper::RECORD_EVENTS_MAX;
use crate::submit::{submit_and_wait, SubmitWaitError};

pub fn storage_entity() -> EntityId {
    EntityId::new(STORAGE_ENTITY).expect("a valid id")
}

/// The `gateway:storage` state.
pub fn system_state(engine: &Engine) -> SystemState {
    engine.read(
        |image| match image.entity(STORAGE_ENTITY).map(|e| &e.state) {
            Some(EntityState::System(s)) => (**s).clone(),
            _ => SystemState::default(),
        },
    )
}

/// Why shipping events could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The engine did not take them (stopped, failed) or could not make them durable.
    #[error("recording shipping events failed: {0}")]
    Engine(#[from] SubmitWaitError),
    /// The engine refused one (a rule of `gateway:storage`'s state).
    #[error("the engine refused a shipping event ({code}): {message}")]
    Rejected {
        /// Its code.
        code: RejectionCode,
        /// Its message.
        message: String,
    },
}

/// How long to wait before trying again while the engine's queue is full.
pub const RECORD_BUSY_PAUSE: Duration = Duration::from_millis(20);

/// Records system events durably, in requests small enough for any segment size; the
/// order is kept. A full queue is waited out, never an error.
pub async fn record(engine: &Engine, events: Vec<Event>) -> Result<(), RecordError> {
    let per_request = (engine.wal().batch_frame_bytes_max() / 256).clamp(1, RECORD_EVENTS_MAX);
    for chunk in events.chunks(per_request) {
        let response = loop {
            let request =
                Request::of(
                    chunk
                        .iter()
                        .cloned()
                        .map(|event| Command::RecordSystemEvent {
                            entity: storage_entity(),
                            event,
                        }),
                );
            match submit_and_wait(engine, request).await {
                Err(SubmitWaitError::Submit(SubmitError::Busy { .. })) => {
                    tokio::time::sleep(RECORD_BUSY_PAUSE).await;
                }
                other => break other?,
            }
        };
        if let Some(ItemResult::Rejected(r)) = response
            .results
            .into_iter()
            .find(|r| matches!(r, ItemResult::Rejected(_)))
        {
            return Err(RecordError::Rejected {
                code: r.code,
                message: r.message,
            });
        }
    }
    Ok(())
}
