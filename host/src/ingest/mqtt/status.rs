//! What the MQTT subscriber did since start, per source: `/api/v1/status` → `mqtt`,
//! `/metrics` (`gridlog_mqtt_*`) and the dashboard's System page.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// One source's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SourceCounts {
    /// Its name (`[[mqtt.source]]` `name`, or preset and prefix, or topic).
    pub name: String,
    /// Messages received on its topics.
    pub messages: u64,
    /// Readings and telemetry stored.
    pub stored: u64,
    /// Readings already stored (a redelivery): not stored again.
    pub duplicates: u64,
    /// Commands the engine refused, by rejection code.
    pub rejected: BTreeMap<String, u64>,
    /// Messages that made no command, by reason (`bad_payload`, `incomplete`, …).
    pub refused: BTreeMap<String, u64>,
    /// When its last message arrived (ms since the Unix epoch), if one did.
    pub last_message_unix_ms: Option<i64>,
}

impl SourceCounts {
    /// Adds `delta` (one batch's counts; its name is not used).
    pub fn add(&mut self, delta: &SourceCounts) {
        self.messages += delta.messages;
        self.stored += delta.stored;
        self.duplicates += delta.duplicates;
        for (code, n) in &delta.rejected {
            *self.rejected.entry(code.clone()).or_default() += n;
        }
        for (code, n) in &delta.refused {
            *self.refused.entry(code.clone()).or_default() += n;
        }
        if delta.last_message_unix_ms.is_some() {
            self.last_message_unix_ms = delta.last_message_unix_ms;
        }
    }
}

/// The subscriber's state (`/api/v1/status` → `mqtt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MqttCounts {
    /// The broker (`mqtt.url`).
    pub broker: String,
    /// Connected to it now.
    pub connected: bool,
    /// Connections made since start (1 + reconnections).
    pub connections: u64,
    /// Messages on a topic no source takes.
    pub unmatched_messages: u64,
    /// The last connection or engine error, if any since the last connection.
    pub last_error: Option<String>,
    /// Per source, in configuration order.
    pub sources: Vec<SourceCounts>,
}

/// Live counters, shared by the connection and the processor.
#[derive(Debug)]
pub struct MqttStatus {
    broker: String,
    connected: AtomicBool,
    connections: AtomicU64,
    /// Bumped at every connection: a message is acknowledged only on the connection that
    /// brought it (the broker sends it again on the next one, with the same packet id).
    generation: AtomicU64,
    unmatched: AtomicU64,
    last_error: Mutex<Option<String>>,
    sources: Mutex<Vec<SourceCounts>>,
}

impl MqttStatus {
    /// Counters at zero for `broker` and these sources.
    pub fn new(broker: &str, source_names: impl IntoIterator<Item = String>) -> MqttStatus {
        MqttStatus {
            broker: broker.into(),
            connected: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            last_error: Mutex::new(None),
            sources: Mutex::new(
                source_names
                    .into_iter()
                    .map(|name| SourceCounts {
                        name,
                        ..SourceCounts::default()
                    })
                    .collect(),
            ),
        }
    }

    /// Connected (the broker accepted the session).
    pub fn connected(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.connected.store(true, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Disconnected, or an error worth showing (`connection_lost` says which).
    pub fn error(&self, message: String, connection_lost: bool) {
        if connection_lost {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.connected.store(false, Ordering::Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    /// The connection's number (changes when it is lost and when a new one is made).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A message on a topic no source takes.
    pub fn unmatched(&self) {
        self.unmatched.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one batch's counts.
    pub fn add(&self, deltas: &BTreeMap<usize, SourceCounts>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        for (index, delta) in deltas {
            if let Some(counts) = sources.get_mut(*index) {
                counts.add(delta);
            }
        }
    }

    /// The counters now.
    pub fn counts(&self) -> MqttCounts {
        MqttCounts {
            broker: self.broker.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            unmatched_messages: self.unmatched.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            sources: self
                .sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
