//! The read side: events of an entity, events by tag or from an offset, and live
//! subscriptions. All read the log (memory-mapped) and never touch the write path; they see
//! only committed events (durable and applied).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{decode_event, peek_entity, EventDecodeError, StoredEvent};
use gridlog_common::Offset;

use super::shared::{Engine, Inner};
use crate::archive::ArchiveError;
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
    /// Set when the entity's events from `from_seq` begin below this gateway's history
    /// start (it was restored from central storage, which holds them): the events returned
    /// begin at that offset, which this field names.
    pub before_history: Option<Offset>,
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
    /// The events from `offset` were evicted from the local archive under its budget
    /// (central storage holds them); this gateway has them again from `next_available`.
    #[error(
        "the events from offset {offset} were evicted from this gateway's archive; \
         the oldest kept here is {next_available}"
    )]
    Evicted {
        /// The offset asked for.
        offset: Offset,
        /// The oldest offset still on this gateway after it.
        next_available: Offset,
    },
    /// The events from `offset` are older than this data directory's history: it was
    /// restored from central storage, which holds them; its history begins at
    /// `history_start`.
    #[error(
        "the events from offset {offset} are not on this gateway: it was restored from \
         central storage, which holds them, and its history begins at offset {history_start}"
    )]
    BeforeHistory {
        /// The offset asked for.
        offset: Offset,
        /// The first offset this gateway holds.
        history_start: Offset,
    },
    /// The archive could not be read (a missing or damaged archive file). Shared, so the
    /// error stays `Clone`.
    #[error("archive: {0}")]
    Archive(Arc<ArchiveError>),
    /// Every place for a decompressed archived segment is taken by other readers; the
    /// query or subscription can be tried again and goes on where it was.
    #[error("{}", ArchiveError::Busy)]
    Busy,
    /// A record is not a valid event.
    #[error("record at offset {offset} is not a valid event: {error}")]
    BadEvent {
        /// Its offset.
        offset: Offset,
        /// What is wrong.
        error: EventDecodeError,
    },
}

/// Records from an offset on, across tiers: the local archive below the hot log, then the
/// hot log. Records are handed to a closure, which may borrow them (from the memory map).
pub(crate) struct Tiered {
    archive: Option<crate::archive::ArchiveCursor>,
    hot: Option<LogCursor>,
    /// The next offset to hand out.
    from: Offset,
}

impl Tiered {
    pub(crate) fn new(from: Offset) -> Tiered {
        Tiered {
            archive: None,
            hot: None,
            from,
        }
    }

    /// The next record, given to `f`; `None` at the end of what is durable.
    pub(crate) fn next_with<R>(
        &mut self,
        inner: &Inner,
        f: impl FnOnce(Offset, &[u8]) -> R,
    ) -> Option<Result<R, QueryError>> {
        loop {
            if let Some(archive) = &mut self.archive {
                match archive.next_record() {
                    Some(Ok((offset, bytes))) => {
                        self.from = offset + 1;
                        return Some(Ok(f(offset, &bytes)));
                    }
                    Some(Err(ArchiveError::Busy)) => return Some(Err(QueryError::Busy)),
                    Some(Err(e)) => return Some(Err(QueryError::Archive(Arc::new(e)))),
                    None => self.archive = None,
                }
                continue;
            }
            if self.hot.is_none() {
                if self.from < inner.history_start {
                    return Some(Err(QueryError::BeforeHistory {
                        offset: self.from,
                        history_start: inner.history_start,
                    }));
                }
                let oldest = inner.wal.oldest_offset();
                if self.from < oldest {
                    if let Some(next_available) =
                        super::maintenance::evicted_until(inner, self.from)
                    {
                        return Some(Err(QueryError::Evicted {
                            offset: self.from,
                            next_available,
                        }));
                    }
                    match crate::archive::ArchiveCursor::new(&inner.data_dir, self.from, oldest) {
                        Ok(cursor) => self.archive = Some(cursor),
                        Err(e) => return Some(Err(QueryError::Archive(Arc::new(e)))),
                    }
                    continue;
                }
                match inner.wal.read_from(self.from) {
                    Ok(cursor) => self.hot = Some(cursor),
                    // Archived between the check and the open: read it from the archive.
                    Err(ReadError::Truncated { .. }) => continue,
                    Err(e) => return Some(Err(e.into())),
                }
            }
            let hot = self.hot.as_mut().expect("opened above");
            return match hot.next() {
                Some(Ok(record)) => {
                    self.from = record.offset + 1;
                    Some(Ok(f(record.offset, record.bytes)))
                }
                // The segments after the cursor were archived while it waited (a slow
                // subscriber): go on from the archive.
                Some(Err(ReadError::Truncated { .. })) => {
                    self.hot = None;
                    continue;
                }
                Some(Err(e)) => Some(Err(e.into())),
                None => None,
            };
        }
    }
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
                before_history: None,
            });
        };
        let mut events = Vec::new();
        if limit == 0 || from_seq > highest_seq || from_seq > to_seq {
            return Ok(EntityEvents {
                highest_seq,
                events,
                before_history: None,
            });
        }
        // A restored gateway's index may point below its history: read from where it
        // begins, and say so (the events found may start after `from_seq`).
        let history_start = self.inner.history_start;
        let before_history =
            (start.max(gridlog_common::FIRST_OFFSET) < history_start).then_some(history_start);
        if before_history.is_some() && last_offset < history_start {
            return Ok(EntityEvents {
                highest_seq,
                events,
                before_history,
            });
        }
        let start = start.max(history_start);
        let filter = Filter::Entity(entity.to_string());
        let mut cursor = Tiered::new(start);
        while let Some(record) = cursor.next_with(&self.inner, |offset, bytes| {
            (
                offset,
                (!filter.cheap_reject(bytes)).then(|| decode(offset, bytes)),
            )
        }) {
            let (offset, event) = record?;
            if offset > last_offset {
                break;
            }
            let Some(event) = event else { continue };
            let event = event?;
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
        let before_history =
            before_history.filter(|_| events.first().is_none_or(|e| e.stored.seq > from_seq));
        Ok(EntityEvents {
            highest_seq,
            events,
            before_history,
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
        let from = after.saturating_add(1);
        let mut events = Vec::new();
        let mut last_offset = after;
        if limit == 0 || from >= committed {
            return Ok(EventPage {
                events,
                last_offset: last_offset.min(committed.saturating_sub(1)),
            });
        }
        let mut cursor = Tiered::new(from);
        let mut scanned = 0;
        while let Some(record) = cursor.next_with(&self.inner, |offset, bytes| {
            (
                offset,
                (!filter.cheap_reject(bytes)).then(|| decode(offset, bytes)),
            )
        }) {
            let (offset, event) = record?;
            if offset >= committed {
                break;
            }
            last_offset = offset;
            scanned += 1;
            if let Some(event) = event {
                let event = event?;
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
        let from = after.saturating_add(1);
        Ok(Subscription {
            inner: self.inner.clone(),
            cursor: Tiered::new(from),
            filter,
            position: from,
        })
    }
}

/// A live subscription. Memory is bounded by construction: it pulls from the log at its own
/// pace, so a slow subscriber holds nothing but its cursor. When the range it needs leaves
/// the hot log while it waits, it reads on from the local archive; only history that is
/// gone from both (evicted under the archive budget) ends it, with
/// [`QueryError::Evicted`] naming where this gateway's history resumes.
pub struct Subscription {
    inner: Arc<Inner>,
    cursor: Tiered,
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
            let filter = &self.filter;
            let Some(record) = self.cursor.next_with(&self.inner, |offset, bytes| {
                (
                    offset,
                    (!filter.cheap_reject(bytes)).then(|| decode(offset, bytes)),
                )
            }) else {
                return Ok(None);
            };
            let (offset, event) = record?;
            self.position = offset + 1;
            let Some(event) = event else { continue };
            let event = event?;
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
            self.inner.commit.wait_past(self.position, deadline - now);
        }
    }

    /// Lets go of the archived segment the subscription is reading, if any, keeping its
    /// position: call it before waiting on a slow client, so a stalled subscriber does not
    /// hold one of the archive's few places in memory.
    pub fn park(&mut self) {
        if let Some(archive) = &mut self.cursor.archive {
            archive.park();
        }
    }

    /// The offset the subscription will examine next (everything before it was delivered
    /// or filtered out).
    pub fn position(&self) -> Offset {
        self.position
    }
}
