//! The read side: events of an entity, events by tag or from an offset, and live
//! subscriptions. All read the log (memory-mapped) and never touch the write path; they see
//! only committed events (durable and applied).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{decode_event, peek_entity, EventDecodeError, StoredEvent};
use gridlog_common::Offset;

use super::{Engine, Inner};
use crate::wal::{LogCursor, ReadError};

/// Most records one paged query reads before it returns what it has (with the offset to
/// continue after), so a query for a rare tag cannot scan the whole log in one go.
pub const SCAN_RECORDS_MAX: usize = 1_000_000;
/// Most events one query returns.
pub const QUERY_LIMIT_MAX: usize = 10_000;

/// A committed event with its offset.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Global offset.
    pub offset: Offset,
    /// The event.
    pub stored: StoredEvent,
}

/// Events of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityEvents {
    /// The entity's highest seq (0 if unknown).
    pub highest_seq: u64,
    /// The events asked for, by seq.
    pub events: Vec<EventRecord>,
}

/// A page of events from an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// The matching events.
    pub events: Vec<EventRecord>,
    /// The last offset examined: continue with `after = last_offset`.
    pub last_offset: Offset,
}

/// Which events a subscription or page wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    /// Everything.
    #[default]
    All,
    /// One entity's events.
    Entity(String),
    /// Events carrying this tag.
    Tag(String),
}

impl Filter {
    fn cheap_reject(&self, record: &[u8]) -> bool {
        match self {
            Filter::Entity(id) => peek_entity(record) != Some(id.as_str()),
            _ => false,
        }
    }

    fn matches(&self, stored: &StoredEvent) -> bool {
        match self {
            Filter::All => true,
            Filter::Entity(id) => stored.entity.as_str() == id,
            Filter::Tag(tag) => stored.has_tag(tag),
        }
    }
}

/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The log could not be read (damage, or the range left the hot log).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A record is not a valid event.
    #[error("record at offset {offset} is not a valid event: {error}")]
    BadEvent {
        /// Its offset.
        offset: Offset,
        /// What is wrong.
        error: EventDecodeError,
    },
}

fn decode(offset: Offset, bytes: &[u8]) -> Result<EventRecord, QueryError> {
    let stored = decode_event(bytes).map_err(|error| QueryError::BadEvent { offset, error })?;
    Ok(EventRecord { offset, stored })
}

impl Engine {
    /// Events of `entity` with `from_seq <= seq <= to_seq`, at most `limit` (capped at
    /// [`QUERY_LIMIT_MAX`]). An unknown entity has `highest_seq` 0 and no events; `limit`
    /// 0 returns only `highest_seq`.
    pub fn events_of(
        &self,
        entity: &str,
        from_seq: u64,
        to_seq: u64,
        limit: usize,
    ) -> Result<EntityEvents, QueryError> {
        let limit = limit.min(QUERY_LIMIT_MAX);
        let found = self.read(|image| {
            image.entity(entity).map(|e| {
                let cps = &e.index.checkpoints;
                let i = cps
                    .partition_point(|&(seq, _)| seq <= from_seq.max(1))
                    .saturating_sub(1);
                (
                    e.state.seq(),
                    cps.get(i).map_or(0, |c| c.1),
                    e.index.last_offset,
                )
            })
        });
        let Some((highest_seq, start, last_offset)) = found else {
            return Ok(EntityEvents {
                highest_seq: 0,
                events: vec![],
            });
        };
        let mut events = Vec::new();
        if limit == 0 || from_seq > highest_seq || from_seq > to_seq {
            return Ok(EntityEvents {
                highest_seq,
                events,
            });
        }
        let filter = Filter::Entity(entity.to_string());
        let mut cursor = self.inner.wal.read_from(start)?;
        while let Some(record) = cursor.next() {
            let record = record?;
            if record.offset > last_offset {
                break;
            }
            if filter.cheap_reject(record.bytes) {
                continue;
            }
            let event = decode(record.offset, record.bytes)?;
            if event.stored.seq > to_seq {
                break;
            }
            if event.stored.seq >= from_seq {
                events.push(event);
                if events.len() == limit {
                    break;
                }
            }
        }
        Ok(EntityEvents {
            highest_seq,
            events,
        })
    }

    /// Committed events after offset `after` matching `filter`, at most `limit`.
    pub fn events_after(
        &self,
        after: Offset,
        filter: &Filter,
        limit: usize,
    ) -> Result<EventPage, QueryError> {
        let limit = limit.min(QUERY_LIMIT_MAX);
        let committed = self.inner.committed();
        let from = (after + 1).max(self.inner.wal.oldest_offset());
        let mut events = Vec::new();
        let mut last_offset = after;
        if limit == 0 || from >= committed {
            return Ok(EventPage {
                events,
                last_offset: last_offset.min(committed.saturating_sub(1)),
            });
        }
        let mut cursor = self.inner.wal.read_from(from)?;
        let mut scanned = 0;
        while let Some(record) = cursor.next() {
            let record = record?;
            if record.offset >= committed {
                break;
            }
            last_offset = record.offset;
            scanned += 1;
            if !filter.cheap_reject(record.bytes) {
                let event = decode(record.offset, record.bytes)?;
                if filter.matches(&event.stored) {
                    events.push(event);
                    if events.len() == limit {
                        break;
                    }
                }
            }
            if scanned >= SCAN_RECORDS_MAX {
                break;
            }
        }
        Ok(EventPage {
            events,
            last_offset,
        })
    }

    /// Follows the log from after offset `after`: catch-up from the log, then live, with no
    /// gap and no duplicate at the switch (it is the same cursor).
    pub fn subscribe(&self, after: Offset, filter: Filter) -> Result<Subscription, QueryError> {
        let from = (after + 1).max(self.inner.wal.oldest_offset());
        let cursor = self.inner.wal.read_from(from)?;
        Ok(Subscription {
            inner: self.inner.clone(),
            cursor,
            filter,
            position: from,
        })
    }
}

/// A live subscription. Memory is bounded by construction: it pulls from the log at its own
/// pace, so a slow subscriber holds nothing but its cursor. It falls behind only if the log
/// range it needs leaves the hot log; then it gets `QueryError::Read(ReadError::Truncated)`
/// and can resume from its last offset through the archive.
pub struct Subscription {
    inner: Arc<Inner>,
    cursor: LogCursor,
    filter: Filter,
    /// The offset of the next record to examine.
    position: Offset,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("filter", &self.filter)
            .finish()
    }
}

impl Subscription {
    /// The next matching committed event, or `None` if there is none yet.
    pub fn try_next(&mut self) -> Result<Option<EventRecord>, QueryError> {
        loop {
            if self.position >= self.inner.committed() {
                return Ok(None);
            }
            let Some(record) = self.cursor.next() else {
                return Ok(None);
            };
            let record = record?;
            self.position = record.offset + 1;
            if self.filter.cheap_reject(record.bytes) {
                continue;
            }
            let event = decode(record.offset, record.bytes)?;
            if self.filter.matches(&event.stored) {
                return Ok(Some(event));
            }
        }
    }

    /// The next matching event, waiting up to `timeout` for one to be committed.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<EventRecord>, QueryError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.try_next()? {
                return Ok(Some(event));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let committed = self
                .inner
                .committed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let position = self.position;
            let _unused = self
                .inner
                .commit_cv
                .wait_timeout_while(committed, deadline - now, |c| *c <= position)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The offset the subscription will examine next (everything before it was delivered
    /// or filtered out).
    pub fn position(&self) -> Offset {
        self.position
    }
}
