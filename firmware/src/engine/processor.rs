//! The write path: two threads in a pipeline.
//!
//! The **planner** (`gridlog-processor`) takes a batch (every request that queued up
//! meanwhile, so batches grow by themselves under load), validates each command, encodes
//! each request's accepted events as one log frame (atomic) and appends the frames without
//! waiting. It validates against its own copy of every entity's state, which it advances as
//! it plans, so the next batch is validated against the effects of the batches still in
//! flight, while those are synced and applied.
//!
//! The **applier** (`gridlog-applier`) takes the planned batches in order, waits for each
//! batch's durable point, applies its events to the image, publishes the commit and answers
//! every caller. Persist, then apply: the image, queries and subscriptions only ever see
//! durable events. The two threads are joined by a bounded channel of
//! [`BATCHES_IN_FLIGHT`] batches.
//!
//! If an append or a sync fails, the engine stops accepting writes (`failed`); the planner's
//! states may then be ahead of the log, but nothing is planned against them again.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};

use gridlog_common::batch::{batch_frame_len, batch_frame_len_bound};
use gridlog_common::domain::{
    encode_event, EntityKind, Event, StoredEvent, STORED_EVENT_BYTES_MAX,
};
use gridlog_common::id::EntityId;
use gridlog_common::Offset;

use super::dedup::{RecentCommandIds, RecentReadings};
use super::image::Image;
use super::rejection::{Rejection, RejectionCode};
use super::request::{EngineFailure, ItemResult, Job, Response, SubmitError};
use super::shared::Inner;
use super::slots::{EntitySlot, Slots};
use super::state::{reading_fingerprint, EntityState};
use super::validate::{kind_after, validate, Verdict, EVENTS_PER_COMMAND_MAX};
use crate::wal::AppendError;

/// Batches planned and appended but not yet applied: while one is synced and applied, the
/// next is planned. More would only queue requests behind the same fsyncs.
pub const BATCHES_IN_FLIGHT: usize = 3;

/// A request after validation.
struct Planned {
    /// Per command: Ok(index of its last event in `events`, seq) or a final result.
    results: Vec<Result<(usize, u64), ItemResult>>,
    events: Vec<StoredEvent>,
    /// Each event's entity slot in the image (see [`EntitySlot`]).
    slots: Vec<EntitySlot>,
    /// Byte ranges of the encoded events in the batch buffer.
    ranges: Vec<(usize, usize)>,
    replayed: bool,
}

impl Planned {
    /// Encoded bytes of its events.
    fn encoded_bytes(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| (e - s) as u64).sum()
    }
}

/// A batch on its way from the planner to the applier.
struct InFlight {
    jobs: Vec<Job>,
    planned: Vec<Planned>,
    /// Each request's first offset (0 for requests without events).
    first_offsets: Vec<Offset>,
    /// One past the batch's last appended offset; `None` if it appended nothing.
    durable_at: Option<Offset>,
    /// Encoded event bytes of the batch.
    bytes: u64,
}

/// How to take back one command's effect on the planner's states.
// Kept only for the rare request that may not fit in a frame: a state inline is one
// allocation fewer than a box.
#[allow(clippy::large_enum_variant)]
enum Undo {
    /// Put this state back in this slot.
    Restore(EntitySlot, EntityState),
    /// Forget this entity (the command may have created it).
    Forget(EntityId),
    /// Forget this many of the newest remembered readings.
    Readings(usize),
}

/// What validation reads: every entity's state as of everything planned so far, and the
/// recent command ids and readings (the image's, plus those of planned requests).
pub(super) struct Planner {
    /// States by slot: the same slot the image holds (or will hold) each entity in.
    states: Slots<EntityState>,
    command_ids: RecentCommandIds<()>,
    /// Kept within its bound after each request (a request's readings are taken back
    /// exactly if it cannot be stored), so it remembers what the image will.
    readings: RecentReadings,
}

impl Planner {
    /// A planner that starts where `image` is.
    pub(super) fn new(image: &Image) -> Planner {
        let mut command_ids = RecentCommandIds::default();
        for (id, _) in image.command_ids.in_order() {
            command_ids.insert(id.clone(), ());
        }
        let mut states = Slots::default();
        for (id, entity) in image.entities() {
            states.push(id.clone(), entity.state.clone());
        }
        Planner {
            states,
            command_ids,
            readings: image.readings.clone(),
        }
    }

    /// Each command's entity slot if the entity is known; starts loading the states of the
    /// known ones into the cache, so their misses overlap (they are read in the next pass).
    fn resolve(&self, request: &super::request::Request) -> Vec<Option<EntitySlot>> {
        request
            .commands
            .iter()
            .map(|item| {
                let slot = self.states.slot(item.command.entity().as_str());
                if let Some(state) = slot.and_then(|slot| self.states.get(slot)) {
                    crate::hints::prefetch(state, 0);
                }
                slot
            })
            .collect()
    }

    fn plan(&mut self, inner: &Inner, batch: &[Job], buf: &mut Vec<u8>) -> Vec<Planned> {
        let now_ms = inner.clock.now_ms();
        batch
            .iter()
            .map(|job| self.plan_request(inner, &job.request, now_ms, buf))
            .collect()
    }

    /// Validates one request, advances the states by its accepted commands and appends its
    /// encoded events to `buf`; a request too large for one log frame is refused whole
    /// and leaves no trace.
    fn plan_request(
        &mut self,
        inner: &Inner,
        request: &super::request::Request,
        now_ms: i64,
        buf: &mut Vec<u8>,
    ) -> Planned {
        if let Some(id) = &request.command_id {
            if self.command_ids.contains(id) {
                return Planned {
                    results: request
                        .commands
                        .iter()
                        .map(|_| Err(ItemResult::Replayed))
                        .collect(),
                    events: vec![],
                    slots: vec![],
                    ranges: vec![],
                    replayed: true,
                };
            }
        }
        let frame_max = inner.wal.batch_frame_bytes_max();
        // Only a request that might not fit in one frame needs the states as they were
        // before it, to undo it if it cannot be stored (most requests are far smaller).
        let may_overflow = may_exceed_a_frame(request.commands.len(), frame_max);
        let mut undo: Vec<Undo> = Vec::new();
        let known = self.resolve(request);
        let mut plan = Planned {
            results: Vec::with_capacity(request.commands.len()),
            events: Vec::with_capacity(request.commands.len()),
            slots: Vec::with_capacity(request.commands.len()),
            ranges: Vec::new(), // filled by `encode_all` below
            replayed: false,
        };
        for (item, known) in request.commands.iter().zip(known) {
            let result = self.plan_command(
                inner,
                item,
                known,
                now_ms,
                &mut plan,
                may_overflow.then_some(&mut undo),
            );
            plan.results.push(result);
        }
        if let (Some(first), Some(id)) = (plan.events.first_mut(), &request.command_id) {
            first.command_id = Some(id.clone());
        }
        let buf_start = buf.len();
        plan.ranges = encode_all(&plan.events, buf);
        if may_overflow && too_large_for_a_frame(&plan.ranges, buf, frame_max) {
            self.undo(undo);
            buf.truncate(buf_start);
            let rejection = Rejection {
                code: RejectionCode::RequestTooLarge,
                field: None,
                message: format!("the request's events exceed one log frame of {frame_max} bytes; send fewer commands per request"),
                current_seq: None,
            };
            return Planned {
                results: plan
                    .results
                    .iter()
                    .map(|_| Err(ItemResult::Rejected(rejection.clone())))
                    .collect(),
                events: vec![],
                slots: vec![],
                ranges: vec![],
                replayed: false,
            };
        }
        self.readings.trim();
        if let Some(id) = &request.command_id {
            if !plan.events.is_empty() {
                self.command_ids.insert(id.clone(), ());
            }
        }
        plan
    }

    /// Validates one command against its entity's state (`known`: its slot, if the entity
    /// was known before the request); if accepted, adds its events to `plan` and advances
    /// the state, noting in `undo` (if given) how to take that back. Returns the command's
    /// result: Ok(index of its last event in `plan.events`, seq) or a final result.
    fn plan_command(
        &mut self,
        inner: &Inner,
        item: &super::request::CommandRequest,
        known: Option<EntitySlot>,
        now_ms: i64,
        plan: &mut Planned,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<(usize, u64), ItemResult> {
        let entity = item.command.entity();
        // An entity unknown before this request may have been created by an earlier
        // command of it: look again.
        let known = known.or_else(|| self.states.slot(entity.as_str()));
        // A new entity gets the next slot, as it will in the image.
        let slot = known.unwrap_or(self.states.next_slot());
        let entities = self.states.len();
        let mut state = known.and_then(|slot| self.states.get_mut(slot));
        let current = state.as_deref();
        let readings = &mut self.readings;
        let mut recall = |time_ms: i64| known.and_then(|slot| readings.get(slot, time_ms));
        let events = match validate(
            &item.command,
            item.expected_seq,
            current,
            &mut recall,
            &inner.rules,
            now_ms,
        ) {
            Verdict::Accept(events) => events,
            Verdict::Duplicate => return Err(ItemResult::Duplicate),
            Verdict::Reject(rejection) => return Err(ItemResult::Rejected(rejection)),
        };
        let Some(kind) = kind_after(current, &events, entity) else {
            return Err(ItemResult::Rejected(internal(
                "event without an entity kind",
            )));
        };
        let limit = inner.rules.entities_max;
        if current.is_none() && kind != EntityKind::System && entities >= limit {
            return Err(ItemResult::Rejected(Rejection {
                code: RejectionCode::TooManyEntities,
                field: Some("id"),
                message: format!("the gateway holds its limit of {limit} entities (engine.entities_max); {entity} was not registered"),
                current_seq: None,
            }));
        }
        let remembered = remember_readings(&mut self.readings, slot, &events);
        if let Some(undo) = undo {
            undo.push(match current {
                Some(state) => Undo::Restore(slot, state.clone()),
                None => Undo::Forget(entity.clone()),
            });
            undo.push(Undo::Readings(remembered));
        }
        let first_seq = current.map_or(0, EntityState::seq) + 1;
        let mut created: Option<EntityState> = None;
        for (seq, event) in (first_seq..).zip(events) {
            let stored = StoredEvent {
                entity: entity.clone(),
                kind,
                seq,
                gateway_ms: now_ms,
                command_id: None,
                event,
            };
            match (state.as_deref_mut(), created.as_mut()) {
                (Some(state), _) | (None, Some(state)) => state.advance(&stored),
                (None, None) => created = EntityState::create(&stored),
            }
            plan.events.push(stored);
            plan.slots.push(slot);
        }
        let seq = match (state, created) {
            (Some(state), _) => state.seq(),
            (None, Some(created)) => {
                let seq = created.seq();
                self.states.push(entity.clone(), created);
                seq
            }
            (None, None) => 0,
        };
        Ok((plan.events.len() - 1, seq))
    }

    /// Takes back a request's effects on the states, newest first.
    fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Restore(slot, state) => {
                    if let Some(current) = self.states.get_mut(slot) {
                        *current = state;
                    }
                }
                // Created entities are the newest: forgotten newest first.
                Undo::Forget(entity) => self.states.forget_newest(entity.as_str()),
                Undo::Readings(count) => self.readings.forget_newest(count),
            }
        }
    }
}

/// Remembers the fingerprints of the readings among an accepted command's `events` (its
/// meter in `slot`), not yet trimmed to the bound (see [`Planner::plan_request`]); returns
/// how many were added.
fn remember_readings(readings: &mut RecentReadings, slot: EntitySlot, events: &[Event]) -> usize {
    let mut added = 0;
    for event in events {
        if let Event::ReadingRecorded(r) = event {
            readings.insert_unbounded((slot, r.time_ms, reading_fingerprint(r)));
            added += 1;
        }
    }
    added
}

/// Encodes `events` one after another at the end of `buf`; returns their byte ranges.
fn encode_all(events: &[StoredEvent], buf: &mut Vec<u8>) -> Vec<(usize, usize)> {
    let mut ranges = Vec::with_capacity(events.len());
    for event in events {
        let start = buf.len();
        buf.resize(start + STORED_EVENT_BYTES_MAX, 0);
        let used = match encode_event(event, &mut buf[start..]) {
            Ok(bytes) => bytes.len(),
            Err(_) => {
                // Not expected (a test pins the bound); encode with room to spare.
                let bytes = gridlog_common::domain::encode_event_vec(event);
                buf.truncate(start);
                buf.extend_from_slice(&bytes);
                bytes.len()
            }
        };
        buf.truncate(start + used);
        ranges.push((start, start + used));
    }
    ranges
}

/// The planner's loop; spawns the applier and returns when the queue closes and every
/// planned batch has been answered.
pub(super) fn run(inner: &Inner, jobs: Receiver<Job>, mut planner: Planner) {
    let (to_applier, applier_jobs) = mpsc::sync_channel::<InFlight>(BATCHES_IN_FLIGHT - 1);
    std::thread::scope(|scope| {
        let applier = std::thread::Builder::new()
            .name("gridlog-applier".into())
            .spawn_scoped(scope, || run_applier(inner, applier_jobs));
        if let Err(e) = applier {
            inner
                .commit
                .fail(EngineFailure::ApplierSpawn(std::sync::Arc::new(e)));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            let mut commands = batch[0].request.commands.len();
            while commands < inner.batch_commands {
                match jobs.try_recv() {
                    Ok(job) => {
                        commands += job.request.commands.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            inner
                .counters
                .queued
                .fetch_sub(batch.len(), Ordering::Relaxed);
            inner.counters.batches.fetch_add(1, Ordering::Relaxed);
            if let Some(failed) = inner.commit.failure() {
                reply_all(batch, &failed);
                continue;
            }
            buf.clear();
            let planned = planner.plan(inner, &batch, &mut buf);
            match append(inner, &planned, &buf) {
                Ok((first_offsets, durable_at)) => {
                    let bytes = planned.iter().map(Planned::encoded_bytes).sum();
                    let flight = InFlight {
                        jobs: batch,
                        planned,
                        first_offsets,
                        durable_at,
                        bytes,
                    };
                    if let Err(mpsc::SendError(flight)) = to_applier.send(flight) {
                        let error = inner.commit.fail(EngineFailure::ApplierStopped);
                        reply_all(flight.jobs, &error);
                    }
                }
                Err(error) => {
                    let error = inner.commit.fail(error.into());
                    reply_all(batch, &error);
                }
            }
        }
        drop(to_applier);
    });
}

/// The applier's loop: durable point, apply, answer; batch after batch, in order.
///
/// After a storage failure no batch is answered as if it succeeded: the planner planned it
/// against states that held the failed batches, so even a batch that appended nothing (every
/// request a replay or a duplicate of a request that was in flight) would acknowledge what
/// is stored nowhere. A batch whose frames spanned several write rounds, of which a later
/// one failed, is applied and answered up to what is durable; the rest get the error.
fn run_applier(inner: &Inner, batches: Receiver<InFlight>) {
    while let Ok(mut flight) = batches.recv() {
        let failed = match flight.durable_at {
            Some(at) => inner.wal.wait_durable(at).err().map(EngineFailure::from),
            None => None,
        };
        let failure = match failed {
            Some(error) => Some(inner.commit.fail(error)),
            None => inner.commit.failure(),
        };
        let failed_jobs = failure.map(|error| {
            let durable = durable_requests(&flight, inner.wal.next_offset());
            let jobs = flight.jobs.split_off(durable);
            flight.planned.truncate(durable);
            flight.first_offsets.truncate(durable);
            flight.bytes = flight.planned.iter().map(Planned::encoded_bytes).sum();
            (jobs, error)
        });
        apply(inner, &flight.planned, &flight.first_offsets, flight.bytes);
        for ((job, plan), first_offset) in flight
            .jobs
            .into_iter()
            .zip(flight.planned)
            .zip(flight.first_offsets)
        {
            let response = respond(inner, plan, first_offset);
            note_rejections(inner, &job, &response);
            (job.reply)(Ok(response));
        }
        if let Some((jobs, error)) = failed_jobs {
            reply_all(jobs, &error);
        }
        inner.maintenance.wait_for_rollup_room();
    }
}

/// How many of the batch's requests, from its start, are durable when the log's durable end
/// is `durable_end`: those whose events all lie below it. A request without events counts
/// only while every request before it does (it may answer from one of theirs), and none
/// does unless everything before the batch is durable: it may answer from an earlier batch
/// (see [`run_applier`]).
fn durable_requests(flight: &InFlight, durable_end: Offset) -> usize {
    let batch_start = flight
        .planned
        .iter()
        .zip(&flight.first_offsets)
        .find(|(plan, _)| !plan.events.is_empty())
        .map(|(_, &first)| first);
    match batch_start {
        Some(first) if first <= durable_end => {}
        _ => return 0,
    }
    flight
        .planned
        .iter()
        .zip(&flight.first_offsets)
        .take_while(|(plan, &first)| {
            plan.events.is_empty() || first + plan.events.len() as u64 <= durable_end
        })
        .count()
}

fn reply_all(jobs: Vec<Job>, error: &EngineFailure) {
    for job in jobs {
        (job.reply)(Err(SubmitError::Storage(error.clone())));
    }
}

/// Appends every request's frame without waiting, all in one hand-over to the log's writer
/// (so a batch's frames share a write round). Returns each request's first offset (0 for
/// requests without events) and one past the batch's last offset.
fn append(
    inner: &Inner,
    planned: &[Planned],
    buf: &[u8],
) -> Result<(Vec<Offset>, Option<Offset>), AppendError> {
    let records: Vec<Vec<&[u8]>> = planned
        .iter()
        .filter(|plan| !plan.ranges.is_empty())
        .map(|plan| plan.ranges.iter().map(|&(s, e)| &buf[s..e]).collect())
        .collect();
    let frames: Vec<&[&[u8]]> = records.iter().map(Vec::as_slice).collect();
    if frames.is_empty() {
        return Ok((vec![0; planned.len()], None));
    }
    let acks = inner.wal.append_frames_nowait(&frames)?;
    // Offsets become durable in order: the last frame's durable point covers all.
    let durable_at = acks.last().map(|ack| ack.next_offset);
    let mut acks = acks.into_iter();
    let first_offsets = planned
        .iter()
        .map(|plan| {
            if plan.ranges.is_empty() {
                0
            } else {
                acks.next().map_or(0, |ack| ack.first_offset)
            }
        })
        .collect();
    Ok((first_offsets, durable_at))
}

fn apply(inner: &Inner, planned: &[Planned], first_offsets: &[Offset], bytes: u64) {
    let mut image = inner.image.write().unwrap_or_else(|e| e.into_inner());
    let mut next = None;
    let mut events = 0u64;
    for (plan, &first) in planned.iter().zip(first_offsets) {
        image.apply_all(&plan.slots, (first..).zip(&plan.events));
        let count = plan.events.len() as u64;
        if count > 0 {
            next = Some(first + count);
            events += count;
        }
    }
    let sealed_bytes = image.sealed.bytes();
    drop(image);
    if let Some(next) = next {
        inner.commit.publish(next);
    }
    inner
        .maintenance
        .note_committed(events, bytes, sealed_bytes);
}

/// Counts rejections per entity, for entities the image knows (so the map stays bounded by
/// the number of entities, whatever ids a client sends).
fn note_rejections(inner: &Inner, job: &Job, response: &Response) {
    let rejected: Vec<&EntityId> = job
        .request
        .commands
        .iter()
        .zip(&response.results)
        .filter(|(_, r)| matches!(r, ItemResult::Rejected(_)))
        .map(|(c, _)| c.command.entity())
        .collect();
    if rejected.is_empty() {
        return;
    }
    let now = inner.clock.now_ms();
    let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
    let mut windows = inner.rejections.lock().unwrap_or_else(|e| e.into_inner());
    for entity in rejected {
        if image.entity(entity.as_str()).is_some() {
            windows.entry(entity.clone()).or_default().add(now);
        }
    }
}

/// True if these encoded events do not fit in one log frame.
/// Whether the events of a request of `commands` commands might not fit in one frame of
/// `frame_max` bytes: every command at its most events, every event at its longest.
pub(crate) fn may_exceed_a_frame(commands: usize, frame_max: usize) -> bool {
    batch_frame_len_bound(
        commands.saturating_mul(EVENTS_PER_COMMAND_MAX),
        STORED_EVENT_BYTES_MAX,
    ) > frame_max
}

fn too_large_for_a_frame(ranges: &[(usize, usize)], buf: &[u8], frame_max: usize) -> bool {
    let records: Vec<&[u8]> = ranges.iter().map(|&(s, e)| &buf[s..e]).collect();
    !records.is_empty() && batch_frame_len(u64::MAX, &records) > frame_max
}

fn internal(message: &str) -> Rejection {
    Rejection {
        code: RejectionCode::Internal,
        field: None,
        message: message.to_string(),
        current_seq: None,
    }
}

fn respond(inner: &Inner, plan: Planned, first_offset: u64) -> Response {
    let results: Vec<ItemResult> = plan
        .results
        .into_iter()
        .map(|r| match r {
            Ok((index, seq)) => ItemResult::Accepted {
                offset: first_offset + index as u64,
                seq,
            },
            Err(result) => result,
        })
        .collect();
    for r in &results {
        let counter = match r {
            ItemResult::Accepted { .. } => &inner.counters.accepted,
            ItemResult::Duplicate | ItemResult::Replayed => &inner.counters.duplicates,
            ItemResult::Rejected(_) => &inner.counters.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Response {
        results,
        replayed: plan.replayed,
    }
}
