//! The write path: one thread validates, persists, applies and answers, batch by batch.
//!
//! A batch is every request that queued up while the previous batch was being synced, so
//! batches grow by themselves under load. Validation sees the image plus an overlay holding
//! the effects of earlier commands of the same batch, which are not durable yet and so not
//! in the image ("persist, then apply"). Each request's accepted events are one log frame
//! (atomic); the batch's frames share one durable point.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use gridlog_common::batch::batch_frame_len;
use gridlog_common::domain::{encode_event, StoredEvent};
use gridlog_common::id::{CommandId, EntityId};

use super::image::EntityState;
use super::validate::{kind_after, validate, Overlay, Rejection, Verdict};
use super::{Inner, ItemResult, Job, Response, SubmitError};

/// Encoded bytes reserved per event while encoding; an event that needs more is encoded
/// again into a larger space.
const EVENT_BYTES_GUESS: usize = 256;

/// A request after validation.
struct Planned {
    /// Per command: Ok(index of its last event in `events`, seq) or a final result.
    results: Vec<Result<(usize, u64), ItemResult>>,
    events: Vec<StoredEvent>,
    /// Byte ranges of the encoded events in the batch buffer.
    ranges: Vec<(usize, usize)>,
    replayed: bool,
}

pub(super) fn run(inner: &Inner, jobs: Receiver<Job>) {
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
        inner.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        inner.batches.fetch_add(1, Ordering::Relaxed);
        if let Some(failed) = inner
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            for job in batch {
                (job.reply)(Err(SubmitError::Storage(failed.clone())));
            }
            continue;
        }
        buf.clear();
        let planned = plan(inner, &batch, &mut buf);
        match persist(inner, &planned, &buf) {
            Ok(first_offsets) => {
                apply(inner, &planned, &first_offsets);
                for ((job, plan), first_offset) in batch.into_iter().zip(planned).zip(first_offsets)
                {
                    let response = respond(inner, plan, first_offset);
                    note_rejections(inner, &job, &response);
                    (job.reply)(Ok(response));
                }
            }
            Err(error) => {
                tracing::error!(%error, "log append failed; the engine stops accepting writes");
                *inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
                for job in batch {
                    (job.reply)(Err(SubmitError::Storage(error.clone())));
                }
            }
        }
    }
}

fn plan(inner: &Inner, batch: &[Job], buf: &mut Vec<u8>) -> Vec<Planned> {
    let now_ms = inner.clock.now_ms();
    let frame_max = inner.wal.batch_frame_bytes_max();
    let image = inner.image.read().unwrap_or_else(|e| e.into_inner());
    let mut overlay = Overlay::new(&image);
    let mut ids_in_batch: HashSet<CommandId> = HashSet::new();
    let mut planned = Vec::with_capacity(batch.len());
    for job in batch {
        let request = &job.request;
        if let Some(id) = &request.command_id {
            if image.command_ids.contains_key(id) || ids_in_batch.contains(id) {
                let results = request
                    .commands
                    .iter()
                    .map(|_| Err(ItemResult::Duplicate))
                    .collect();
                planned.push(Planned {
                    results,
                    events: vec![],
                    ranges: vec![],
                    replayed: true,
                });
                continue;
            }
        }
        let buf_start = buf.len();
        let mut undo: Vec<(EntityId, Option<EntityState>)> = Vec::new();
        let mut plan = Planned {
            results: Vec::with_capacity(request.commands.len()),
            events: vec![],
            ranges: vec![],
            replayed: false,
        };
        for item in &request.commands {
            let entity = item.command.entity();
            let state = overlay.state(entity.as_str());
            match validate(
                &item.command,
                item.expected_seq,
                state,
                &inner.rules,
                now_ms,
            ) {
                Verdict::Accept(events) => {
                    let Some(kind) = kind_after(state, &events, entity) else {
                        plan.results.push(Err(ItemResult::Rejected(internal(
                            "event without an entity kind",
                        ))));
                        continue;
                    };
                    undo.push((entity.clone(), state.cloned()));
                    let mut next = state.cloned();
                    for event in events {
                        let seq = next.as_ref().map_or(0, EntityState::seq) + 1;
                        let stored = StoredEvent {
                            entity: entity.clone(),
                            kind,
                            seq,
                            gateway_ms: now_ms,
                            command_id: None,
                            event,
                        };
                        next = EntityState::evolve(next.as_ref(), &stored);
                        plan.events.push(stored);
                    }
                    let seq = next.as_ref().map_or(0, EntityState::seq);
                    if let Some(next) = next {
                        overlay.set(entity, next);
                    }
                    plan.results.push(Ok((plan.events.len() - 1, seq)));
                }
                Verdict::Duplicate => plan.results.push(Err(ItemResult::Duplicate)),
                Verdict::Reject(rejection) => {
                    plan.results.push(Err(ItemResult::Rejected(rejection)))
                }
            }
        }
        if let (Some(first), Some(id)) = (plan.events.first_mut(), &request.command_id) {
            first.command_id = Some(id.clone());
        }
        for event in &plan.events {
            let start = buf.len();
            buf.resize(start + EVENT_BYTES_GUESS, 0);
            let used = match encode_event(event, &mut buf[start..]) {
                Ok(bytes) => bytes.len(),
                Err(_) => {
                    // Rare: an event larger than the guess. Encode with room to spare.
                    let bytes = gridlog_common::domain::encode_event_vec(event);
                    buf.truncate(start);
                    buf.extend_from_slice(&bytes);
                    bytes.len()
                }
            };
            buf.truncate(start + used);
            plan.ranges.push((start, start + used));
        }
        let records: Vec<&[u8]> = plan.ranges.iter().map(|&(s, e)| &buf[s..e]).collect();
        if !records.is_empty() && batch_frame_len(u64::MAX, &records) > frame_max {
            // Too large for one atomic frame: refuse the whole request and forget its effects.
            for (entity, state) in undo.into_iter().rev() {
                match state {
                    Some(state) => overlay.set(&entity, state),
                    None => overlay.forget(&entity),
                }
            }
            buf.truncate(buf_start);
            let rejection = Rejection {
                code: "request_too_large",
                field: None,
                message: format!("the request's events exceed one log frame of {frame_max} bytes; send fewer commands per request"),
                current_seq: None,
            };
            plan.results = plan
                .results
                .into_iter()
                .map(|_| Err(ItemResult::Rejected(rejection.clone())))
                .collect();
            plan.events.clear();
            plan.ranges.clear();
        } else if let Some(id) = &request.command_id {
            if !plan.events.is_empty() {
                ids_in_batch.insert(id.clone());
            }
        }
        planned.push(plan);
    }
    planned
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

fn internal(message: &str) -> Rejection {
    Rejection {
        code: "internal",
        field: None,
        message: message.to_string(),
        current_seq: None,
    }
}

/// Appends every request's frame and waits for the batch's durable point. Returns each
/// request's first offset (0 for requests without events).
fn persist(inner: &Inner, planned: &[Planned], buf: &[u8]) -> Result<Vec<u64>, String> {
    let mut first_offsets = Vec::with_capacity(planned.len());
    let mut last_ticket = None;
    for plan in planned {
        if plan.ranges.is_empty() {
            first_offsets.push(0);
            continue;
        }
        let records: Vec<&[u8]> = plan.ranges.iter().map(|&(s, e)| &buf[s..e]).collect();
        let ticket = inner
            .wal
            .append_nowait(&records)
            .map_err(|e| e.to_string())?;
        first_offsets.push(ticket.ack().first_offset);
        last_ticket = Some(ticket);
    }
    if let Some(ticket) = last_ticket {
        // Offsets become durable in order, so the last frame's durability covers all.
        ticket.wait().map_err(|e| e.to_string())?;
    }
    Ok(first_offsets)
}

fn apply(inner: &Inner, planned: &[Planned], first_offsets: &[u64]) {
    let mut image = inner.image.write().unwrap_or_else(|e| e.into_inner());
    let mut next = None;
    let events: u64 = planned.iter().map(|p| p.events.len() as u64).sum();
    let bytes: u64 = planned
        .iter()
        .flat_map(|p| p.ranges.iter())
        .map(|(s, e)| (e - s) as u64)
        .sum();
    for (plan, &first) in planned.iter().zip(first_offsets) {
        for (i, event) in plan.events.iter().enumerate() {
            image.apply(first + i as u64, event);
            next = Some(first + i as u64 + 1);
        }
    }
    drop(image);
    if let Some(next) = next {
        inner.publish_commit(next);
    }
    inner.note_committed(events, bytes);
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
            ItemResult::Accepted { .. } => &inner.accepted,
            ItemResult::Duplicate => &inner.duplicates,
            ItemResult::Rejected(_) => &inner.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Response {
        results,
        replayed: plan.replayed,
    }
}
