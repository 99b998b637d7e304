//! Messages → the engine → acknowledgements, in batches: every message the connection
//! hands over is decoded by the sources, the commands of a batch go to the engine as one
//! request, and only when its events are durable (or refused) is each message of the
//! batch acknowledged (PUBACK), in the order received. A gateway that dies before that
//! never acknowledged the batch: the broker delivers it again, and the engine's duplicate
//! rule stores nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gridlog_firmware::engine::{CommandRequest, Engine, ItemResult, SubmitError};
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::{mpsc, watch};

use super::source::{Decoded, Message, MessageError, Sources};
use super::status::{MqttStatus, SourceCounts};
use crate::submit::{submit_in_frames, SubmitWaitError};

/// Most messages in one batch (one engine request).
pub const BATCH_MESSAGES_MAX: usize = 1000;
/// First wait before a refused batch is submitted again (doubling to [`RESUBMIT_MAX_MS`]).
pub const RESUBMIT_MIN_MS: u64 = 50;
/// Longest wait between submissions of a refused batch (engine busy, disk full).
pub const RESUBMIT_MAX_MS: u64 = 5_000;

/// A message as the connection received it.
#[derive(Debug)]
pub struct Received {
    /// The packet (acknowledged by its id); a payload over `mqtt.payload_bytes_max` is
    /// dropped on arrival, only its size kept.
    pub publish: Publish,
    /// The payload's size as received.
    pub payload_bytes: usize,
    /// The connection it came on ([`MqttStatus::generation`]).
    pub generation: u64,
    /// Gateway time it arrived.
    pub received_ms: i64,
    /// Wall-clock time it arrived (ms since the Unix epoch), for status.
    pub received_unix_ms: i64,
}

/// A batch decoded: the commands for the engine, and per source what happened so far.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The commands, in message order.
    pub commands: Vec<CommandRequest>,
    /// The source of each command.
    pub command_sources: Vec<usize>,
    /// Per source (by index).
    pub deltas: BTreeMap<usize, SourceCounts>,
    /// Messages no source takes.
    pub unmatched: u64,
    /// The first refusal of the batch (source, topic, error), for the log.
    pub first_refusal: Option<(usize, String, MessageError)>,
}

/// Decodes a batch (pure apart from the sources' held values).
pub fn prepare(sources: &mut Sources, batch: &[Received], payload_bytes_max: usize) -> Prepared {
    let mut prepared = Prepared::default();
    for received in batch {
        let p = &received.publish;
        // MQTT requires UTF-8 topics; bytes that are not are replaced (U+FFFD), which no
        // entity id admits, so such a message stores nothing. (No copy for a valid topic.)
        let topic = String::from_utf8_lossy(&p.topic);
        let message = Message {
            topic: &topic,
            payload: &p.payload,
            retained: p.retain,
            received_ms: received.received_ms,
        };
        let decoded = if received.payload_bytes > payload_bytes_max {
            // Too large to read: still counted against the source that takes the topic.
            let index = sources.source_of(&topic);
            index.map(|i| {
                (
                    i,
                    Err(MessageError::PayloadTooLarge {
                        bytes: received.payload_bytes,
                        max: payload_bytes_max,
                    }),
                )
            })
        } else {
            sources.decode(&message)
        };
        let Some((index, result)) = decoded else {
            prepared.unmatched += 1;
            continue;
        };
        let delta = prepared.deltas.entry(index).or_default();
        delta.messages += 1;
        delta.last_message_unix_ms = Some(received.received_unix_ms);
        match result {
            Ok(Decoded::Command(command)) => {
                prepared.commands.push(CommandRequest {
                    command,
                    expected_seq: None,
                });
                prepared.command_sources.push(index);
            }
            Ok(Decoded::Held) => {}
            Err(e) => {
                *delta.refused.entry(e.code().to_string()).or_default() += 1;
                if prepared.first_refusal.is_none() {
                    prepared.first_refusal = Some((index, topic.to_string(), e));
                }
            }
        }
    }
    prepared
}

impl Prepared {
    /// Counts the engine's results (one per command) against their sources.
    pub fn count(&mut self, results: &[ItemResult]) {
        for (result, index) in results.iter().zip(&self.command_sources) {
            let delta = self.deltas.entry(*index).or_default();
            match result {
                ItemResult::Accepted { .. } => delta.stored += 1,
                ItemResult::Duplicate | ItemResult::Replayed => delta.duplicates += 1,
                ItemResult::Rejected(r) => {
                    *delta
                        .rejected
                        .entry(r.code.as_str().to_string())
                        .or_default() += 1;
                }
            }
        }
    }
}

/// What the processor works with.
#[derive(Debug)]
pub struct Processor {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Where finished messages go to be acknowledged (by the connection task).
    pub done: mpsc::UnboundedSender<super::session::Done>,
    /// The sources.
    pub sources: Sources,
    /// Counters.
    pub status: Arc<MqttStatus>,
    /// `mqtt.payload_bytes_max`.
    pub payload_bytes_max: usize,
}

impl Processor {
    /// Runs until `stop` or until the connection's side closes the queue.
    pub async fn run(
        mut self,
        mut queue: mpsc::Receiver<Received>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                m = queue.recv() => m,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < BATCH_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if !self.process(&batch, &mut stop).await {
                // Stopping before the batch was durable: it is not acknowledged, so the
                // broker delivers it again to the next run.
                return;
            }
            for received in batch {
                // The connection acknowledges it, if it is still the one that brought it.
                if self
                    .done
                    .send((received.generation, received.publish))
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    /// Decodes and stores one batch; false if stopping before it was durable.
    async fn process(&mut self, batch: &[Received], stop: &mut watch::Receiver<bool>) -> bool {
        let mut prepared = prepare(&mut self.sources, batch, self.payload_bytes_max);
        for _ in 0..prepared.unmatched {
            self.status.unmatched();
        }
        if let Some((index, topic, error)) = &prepared.first_refusal {
            let source = self
                .sources
                .sources()
                .get(*index)
                .map_or("", |s| s.name.as_str());
            tracing::warn!(source, topic, code = error.code(), %error, "mqtt message refused");
        }
        if !prepared.commands.is_empty() {
            let commands = std::mem::take(&mut prepared.commands);
            let Some(results) = self.submit_until_durable(commands, stop).await else {
                return false;
            };
            prepared.count(&results);
        }
        self.status.add(&prepared.deltas);
        true
    }

    /// Submits `commands` until the engine answers with durable results, waiting between
    /// refusals (busy, disk full); `None` if stopping first.
    async fn submit_until_durable(
        &self,
        commands: Vec<CommandRequest>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<ItemResult>> {
        let mut wait_ms = RESUBMIT_MIN_MS;
        loop {
            // In as many log frames as it takes: a batch too large for one frame (small
            // segments) is split, never refused whole and then acknowledged as refused.
            match submit_in_frames(&self.engine, commands.clone()).await {
                Ok(results) => return Some(results),
                Err(SubmitWaitError::Submit(SubmitError::Stopped) | SubmitWaitError::Stopped) => {
                    return None
                }
                Err(e) => {
                    tracing::warn!(error = %e, wait_ms, "mqtt batch not stored yet; submitting again");
                    self.status.error(format!("engine: {e}"), false);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            wait_ms = (wait_ms * 2).min(RESUBMIT_MAX_MS);
        }
    }
}
