//! Reading the log: a cursor over durable records, across segments, safe while the writer
//! appends.
//!
//! The cursor reads the memory map of each segment, but only up to the segment's published
//! durable end, so it never sees a record that a crash could take back. At the end of what
//! is durable it returns `None`; calling `next` again later continues with whatever has
//! become durable since (this is how live subscriptions follow the log).

use std::sync::Arc;

use gridlog_common::varint;
use gridlog_common::Offset;

use super::error::{Damage, ReadError};
use super::segment::{frame_at, FrameAt, Segment};
use super::Shared;
use gridlog_common::segment::SEGMENT_HEADER_BYTES;

/// One durable record, borrowed from the log's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's global offset.
    pub offset: Offset,
    /// The record's bytes.
    pub bytes: &'a [u8],
}

/// The records of the frame being read: a byte range of the segment and the next offset.
#[derive(Debug, Clone, Copy)]
struct FrameRecords {
    rest_start: usize,
    rest_end: usize,
    next_offset: Offset,
}

/// A cursor over durable records from a start offset. Not an `Iterator`: records borrow
/// from the cursor's memory map (a lending cursor), so they are copied only if kept.
pub struct LogCursor {
    shared: Arc<Shared>,
    segment: Arc<Segment>,
    /// Position of the next frame in `segment`.
    pos: usize,
    frame: Option<FrameRecords>,
    /// Records below this offset are skipped (the start offset).
    from: Offset,
}

impl std::fmt::Debug for LogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCursor")
            .field("segment", &self.segment.path)
            .field("pos", &self.pos)
            .field("from", &self.from)
            .finish()
    }
}

impl LogCursor {
    pub(crate) fn new(shared: Arc<Shared>, from: Offset) -> Result<LogCursor, ReadError> {
        let segment = {
            let segments = shared.segments.read().unwrap_or_else(|e| e.into_inner());
            let oldest = segments
                .first()
                .map_or(gridlog_common::FIRST_OFFSET, |s| s.first_offset);
            if from < oldest {
                return Err(ReadError::Truncated {
                    offset: from,
                    oldest,
                });
            }
            let i = segments
                .partition_point(|s| s.first_offset <= from)
                .saturating_sub(1);
            segments
                .get(i)
                .cloned()
                .expect("an open log has at least one segment")
        };
        Ok(LogCursor {
            shared,
            segment,
            pos: SEGMENT_HEADER_BYTES,
            frame: None,
            from,
        })
    }

    /// The offset the next returned record will have, if it exists.
    pub fn position(&self) -> Offset {
        match self.frame {
            Some(frame) => frame.next_offset.max(self.from),
            None => self.from,
        }
    }

    /// The next durable record, `None` at the current end of the durable log, or an error
    /// if a frame below the durable end is damaged.
    #[allow(clippy::should_implement_trait)] // a lending cursor cannot be an Iterator
    pub fn next(&mut self) -> Option<Result<Record<'_>, ReadError>> {
        let (offset, start, end) = loop {
            if let Some(frame) = &mut self.frame {
                if frame.rest_start < frame.rest_end {
                    let bytes = self.segment.durable_bytes();
                    let rest = &bytes[frame.rest_start..frame.rest_end];
                    // The frame was fully validated when it was decoded.
                    let Ok((len, used)) = varint::decode(rest) else {
                        return Some(Err(self.corrupt("record length in a validated frame")));
                    };
                    let start = frame.rest_start + used;
                    let end = start + len as usize;
                    frame.rest_start = end;
                    let offset = frame.next_offset;
                    frame.next_offset += 1;
                    if offset < self.from {
                        continue;
                    }
                    self.from = offset + 1;
                    break (offset, start, end);
                }
                self.frame = None;
            }
            match self.advance_frame() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        };
        let bytes = &self.segment.durable_bytes()[start..end];
        Some(Ok(Record { offset, bytes }))
    }

    /// Loads the next frame into `self.frame`; `false` at the end of the durable log.
    fn advance_frame(&mut self) -> Result<bool, ReadError> {
        loop {
            let bytes = self.segment.durable_bytes();
            match frame_at(bytes, self.pos) {
                FrameAt::Batch { view, len } => {
                    let body_start =
                        self.pos + gridlog_common::frame::FRAME_BODY_AT + view.records_at();
                    self.pos += len;
                    if view.next_offset() <= self.from {
                        continue; // wholly before the start
                    }
                    self.frame = Some(FrameRecords {
                        rest_start: body_start,
                        rest_end: self.pos,
                        next_offset: view.first_offset,
                    });
                    return Ok(true);
                }
                // A round's end, checked when the segment was recovered or written.
                FrameAt::Commit { len, .. } => self.pos += len,
                FrameAt::Footer { footer, .. } => {
                    let (next, oldest) = {
                        let segments = self
                            .shared
                            .segments
                            .read()
                            .unwrap_or_else(|e| e.into_inner());
                        let next = segments
                            .iter()
                            .find(|s| s.first_offset == footer.next_offset)
                            .cloned();
                        (next, segments.first().map(|s| s.first_offset))
                    };
                    match (next, oldest) {
                        (Some(segment), _) => {
                            self.segment = segment;
                            self.pos = SEGMENT_HEADER_BYTES;
                        }
                        // The cursor sat in a segment that was retired, and the one after it
                        // has been retired too: its records are only in the archive now.
                        (None, Some(oldest)) if oldest > footer.next_offset => {
                            return Err(ReadError::Truncated {
                                offset: self.from.max(footer.next_offset),
                                oldest,
                            })
                        }
                        // Sealed, but the next segment is not installed yet.
                        (None, _) => return Ok(false),
                    }
                }
                FrameAt::End => return Ok(false),
                FrameAt::Invalid(reason) => return Err(self.corrupt(&reason)),
            }
        }
    }

    fn corrupt(&self, reason: &str) -> ReadError {
        ReadError::Corrupt(Damage {
            path: self.segment.path.clone(),
            position: self.pos as u64,
            reason: reason.to_string(),
        })
    }
}
