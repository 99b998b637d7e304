//! The appenders' side of group commit: frames encoded under one mutex, with their
//! offsets, waiting for the writer to take the whole buffer as one round. Bounded by
//! `round_bytes`: an appender that finds no room waits.

use std::sync::Arc;

use gridlog_common::batch;
use gridlog_common::Offset;

use super::error::AppendError;
use super::AppendAck;

pub(crate) struct PendingFrame {
    pub(crate) len: usize,
    pub(crate) first_offset: Offset,
    pub(crate) next_offset: Offset,
}

pub(crate) struct Pending {
    pub(crate) buf: Vec<u8>,
    pub(crate) frames: Vec<PendingFrame>,
    /// Offset the next appended record gets.
    pub(crate) next_offset: Offset,
    pub(crate) closed: bool,
    pub(crate) failed: Option<Arc<std::io::Error>>,
    /// While the writer gathers a round (see `writer::gather`), the number of pending
    /// frames at which an appender wakes it (besides the first frame, which always does).
    pub(crate) wake_writer_at: usize,
}

impl Pending {
    /// Encodes one frame of `records` into the buffer and returns its offsets; `None` if the
    /// buffer has no room for it (bounded memory: one round's bytes, though a frame larger
    /// than a round still goes into an empty buffer, alone).
    pub(super) fn push_frame<R: AsRef<[u8]>>(
        &mut self,
        records: &[R],
        max: usize,
        round_bytes: usize,
    ) -> Result<Option<AppendAck>, AppendError> {
        if records.is_empty() {
            return Err(AppendError::Empty);
        }
        if let Some(e) = &self.failed {
            return Err(AppendError::Io(e.clone()));
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        let len = batch::batch_frame_len(self.next_offset, records);
        if len > max {
            return Err(AppendError::TooLarge { bytes: len, max });
        }
        if !self.buf.is_empty() && self.buf.len() + len > round_bytes {
            return Ok(None);
        }
        let first_offset = self.next_offset;
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        if batch::encode_batch_frame(&mut self.buf[start..], first_offset, records).is_err() {
            self.buf.truncate(start);
            return Err(AppendError::TooLarge { bytes: len, max });
        }
        let next_offset = first_offset + records.len() as u64;
        self.frames.push(PendingFrame {
            len,
            first_offset,
            next_offset,
        });
        self.next_offset = next_offset;
        Ok(Some(AppendAck {
            first_offset,
            next_offset,
        }))
    }
}
