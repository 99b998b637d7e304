//! What a caller hands the engine and gets back: requests of commands, per-command results,
//! and why a whole request was refused. Depends only on [`super::rejection`].

use std::sync::Arc;

use gridlog_common::domain::Command;
use gridlog_common::id::CommandId;
use gridlog_common::Offset;

use super::rejection::Rejection;
use crate::wal::AppendError;

/// Most commands in one request.
pub const REQUEST_COMMANDS_MAX: usize = 10_000;

/// One command of a request, with optional optimistic concurrency.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    /// The command.
    pub command: Command,
    /// If set, the command is rejected unless the entity is at exactly this seq.
    pub expected_seq: Option<u64>,
}

impl From<Command> for CommandRequest {
    fn from(command: Command) -> Self {
        CommandRequest {
            command,
            expected_seq: None,
        }
    }
}

/// A request: commands processed in order, each with its own result. The accepted events
/// of one request are stored atomically (one frame).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The commands.
    pub commands: Vec<CommandRequest>,
    /// The client's id for the request: a retry with the same id is answered as a
    /// duplicate and stores nothing.
    pub command_id: Option<CommandId>,
}

impl Request {
    /// A request of these commands without expected seqs or id.
    pub fn of(commands: impl IntoIterator<Item = Command>) -> Request {
        Request {
            commands: commands.into_iter().map(CommandRequest::from).collect(),
            command_id: None,
        }
    }
}

/// The outcome of one command.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    /// Stored: the offset and seq of its (last) event.
    Accepted {
        /// Global offset.
        offset: Offset,
        /// Per-entity seq.
        seq: u64,
    },
    /// Already recorded exactly so; nothing stored.
    Duplicate,
    /// The request's `command_id` was processed before (a retry): nothing stored now. The
    /// first processing's per-item answers are not kept, so this says neither "stored" nor
    /// "refused" for the item: what that processing stored is stored once, what it refused
    /// is not stored.
    Replayed,
    /// Refused; nothing stored.
    Rejected(Rejection),
}

/// The outcome of a request, one result per command, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Per-command results.
    pub results: Vec<ItemResult>,
    /// True if the request's `command_id` had been processed before (a retry).
    pub replayed: bool,
}

/// Why a request was not processed at all (nothing of it is stored).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full: retry later.
    #[error("engine busy: {queue_depth} requests are queued")]
    Busy {
        /// The queue's depth.
        queue_depth: usize,
    },
    /// Too many commands in one request.
    #[error("request has {commands} commands; the maximum is {max}")]
    TooLarge {
        /// Commands in the request.
        commands: usize,
        /// The limit.
        max: usize,
    },
    /// The engine is shutting down.
    #[error("engine stopped")]
    Stopped,
    /// The log failed; the engine must be restarted.
    #[error("storage failed: {0}")]
    Storage(EngineFailure),
}

/// Why the engine stopped accepting writes. It is kept for status output, where its
/// [`Display`](std::fmt::Display) is the message (and its JSON form, a string).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineFailure {
    /// Appending to the log, or waiting for it to become durable, failed.
    #[error(transparent)]
    Log(#[from] AppendError),
    /// The applier thread could not be started.
    #[error("cannot start the applier thread: {0}")]
    ApplierSpawn(Arc<std::io::Error>),
    /// The applier thread stopped while batches were still planned.
    #[error("the applier thread stopped")]
    ApplierStopped,
}

impl serde::Serialize for EngineFailure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

pub(crate) type Reply = Box<dyn FnOnce(Result<Response, SubmitError>) + Send>;

pub(crate) struct Job {
    pub(crate) request: Request,
    pub(crate) reply: Reply,
}
