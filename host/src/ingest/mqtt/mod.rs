//! The MQTT subscriber: a broker's messages → sources → the engine's commands, each
//! message acknowledged only after what it became is durable.
//!
//! - [`config`]: `[mqtt]` and `[[mqtt.source]]` as configured;
//! - [`topic`]: topic patterns with named wildcards (pure);
//! - [`payload`]: values and times out of a payload (pure);
//! - [`presets`]: Shelly, Tasmota and Victron as topics and pointers;
//! - [`source`]: a message → a command, holding values across a device's topics;
//! - [`session`]: the connection (subscribe, reconnect, keep-alives);
//! - [`processor`]: batches → one engine request each → acknowledgements;
//! - [`status`]: counters per source.
//!
//! Architecture invariant (as for line protocol): the subscriber converts and never
//! judges; validation, duplicates and counter rules are the engine's.

pub mod config;
pub mod payload;
pub mod presets;
pub mod processor;
pub mod session;
pub mod source;
pub mod status;
pub mod topic;

use std::sync::Arc;

use gridlog_firmware::engine::Engine;
use tokio::sync::{mpsc, watch};

pub use config::MqttConfig;
pub use status::{MqttCounts, MqttStatus};

use processor::{Processor, BATCH_MESSAGES_MAX};
use session::{BrokerError, Session};
use source::{SourceError, Sources};

/// Why the subscriber cannot start (the configuration is refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// A source that cannot be used.
    #[error("mqtt.source: {0}")]
    Source(#[from] SourceError),
    /// The broker's address or CA file.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// No sources: nothing to subscribe to.
    #[error("mqtt.url is set but there is no [[mqtt.source]]")]
    NoSources,
    /// A limit of 0.
    #[error("mqtt.{0} must be above 0")]
    Zero(&'static str),
}

/// Checks `[mqtt]` as far as can be without connecting.
pub fn check(config: &MqttConfig) -> Result<(), MqttError> {
    if config.url.is_empty() {
        return Ok(());
    }
    session::parse_url(&config.url)?;
    if config.source.is_empty() {
        return Err(MqttError::NoSources);
    }
    for (value, name) in [
        (config.queue_messages, "queue_messages"),
        (config.payload_bytes_max, "payload_bytes_max"),
        (config.packet_bytes_max, "packet_bytes_max"),
    ] {
        if value == 0 {
            return Err(MqttError::Zero(name));
        }
    }
    Sources::new(config)?;
    Ok(())
}

/// A started subscriber: its counters, and the task that ends when it has stopped.
pub type Running = (Arc<MqttStatus>, tokio::task::JoinHandle<()>);

/// Starts the subscriber if `mqtt.url` is set: the connection and the processor, until
/// `stop`. The handle ends when both have.
pub fn spawn(
    config: &MqttConfig,
    site_id: &str,
    engine: Arc<Engine>,
    stop: watch::Receiver<bool>,
) -> Result<Option<Running>, MqttError> {
    if config.url.is_empty() {
        return Ok(None);
    }
    let sources = Sources::new(config)?;
    let client_id = match config.client_id.as_str() {
        "" => format!("gridlog-{site_id}"),
        id => id.to_string(),
    };
    let options = session::options(config, &client_id)?;
    // Room for an acknowledgement of every message the gateway holds (queued, in the
    // inbox, in the batch being stored) and the subscriptions and keep-alives; more wait in
    // the connection task (never dropped).
    let requests = config.queue_messages + session::INBOX_MESSAGES_MAX + BATCH_MESSAGES_MAX + 64;
    let (client, events) = rumqttc::v5::AsyncClient::new(options, requests);
    let status = Arc::new(MqttStatus::new(
        &config.url,
        sources.sources().iter().map(|s| s.name.clone()),
    ));
    let (queue_tx, queue_rx) = mpsc::channel(config.queue_messages);
    // Unbounded in type; holds at most the messages received and not yet acknowledged,
    // which the queue and the batch bound.
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let session = Session {
        client: client.clone(),
        filters: sources.filters(),
        keepalive_topics: sources.keepalive_topics(),
        status: status.clone(),
        reconnect_max_ms: config.reconnect_max_s.saturating_mul(1000),
        payload_bytes_max: config.payload_bytes_max,
        packet_bytes_max: config.packet_bytes_max,
        clock: engine.clone(),
    };
    let processor = Processor {
        engine,
        done: done_tx,
        sources,
        status: status.clone(),
        payload_bytes_max: config.payload_bytes_max,
    };
    let connection = tokio::spawn(session.run(events, queue_tx, done_rx, stop.clone()));
    let handle = tokio::spawn(async move {
        processor.run(queue_rx, stop).await;
        let _ = connection.await;
    });
    Ok(Some((status, handle)))
}
