//! The connection to the broker: connect (TLS for `mqtts://`), subscribe whenever the
//! broker has no session for us, hand every message to the processor, publish the
//! keep-alives some devices need, and reconnect with a doubling wait after any error.
//!
//! MQTT 5 (any broker of the last years: mosquitto ≥ 1.6, EMQX, HiveMQ, FlashMQ, VerneMQ):
//! the session is persistent (clean start off, a session that never expires) and
//! acknowledgements are manual, so the broker keeps what gridlog has not acknowledged,
//! across gateway restarts and broker restarts (with persistence on the broker). The
//! CONNECT tells the broker the largest packet gridlog reads (`mqtt.packet_bytes_max`: the
//! broker drops a larger message for gridlog instead of sending it, so one oversized message
//! cannot hold up the ones behind it, as it could under MQTT 3.1.1) and how many
//! unacknowledged messages it may send at once (`mqtt.queue_messages`).

use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use gridlog_firmware::engine::{Clock, SystemClock};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Filter, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};

use super::config::MqttConfig;
use super::processor::Received;
use super::status::MqttStatus;

/// Seconds between publishes to a keep-alive topic (Victron wants one at least every 30).
pub const KEEPALIVE_EVERY_S: u64 = 20;
/// First wait before reconnecting, in milliseconds (doubling to `mqtt.reconnect_max_s`).
pub const RECONNECT_MIN_MS: u64 = 1_000;
/// Most QoS 1 messages gridlog may have in flight to the broker. It publishes only QoS 0
/// (keep-alives), but rumqttc's MQTT 5 client sizes a table by this limit (65,535 entries,
/// ~13.5 MiB, unless set), and 0 would stop it sending anything.
pub const OUTGOING_INFLIGHT_MAX: u16 = 10;
/// The session's expiry interval sent in CONNECT: `u32::MAX` is "never expires" in MQTT 5,
/// as a persistent session of MQTT 3.1.1 was (the broker keeps what gridlog has not
/// acknowledged however long the gateway is away; its own limits, such as mosquitto's
/// `persistent_client_expiration`, still apply).
pub const SESSION_EXPIRY_S: u32 = u32::MAX;

/// Why the broker's address or TLS set-up cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("mqtt.url {0:?} is not mqtt://host[:port] or mqtts://host[:port]")]
    BadUrl(String),
    /// The CA file cannot be read.
    #[error("cannot read mqtt.ca_file {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Host, port and TLS of a broker URL.
pub fn parse_url(url: &str) -> Result<(String, u16, bool), BrokerError> {
    let bad = || BrokerError::BadUrl(url.into());
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        return Err(bad());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    // `[v6 address]:port`, `[v6 address]`, `host:port` or `host`.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, default_port),
            _ => (
                host,
                after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            ),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (rest, default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.into(), port, tls))
}

/// The client options for `config` (client id already resolved).
pub fn options(config: &MqttConfig, client_id: &str) -> Result<MqttOptions, BrokerError> {
    let (host, port, tls) = parse_url(&config.url)?;
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
        .set_manual_acks(true)
        .set_max_packet_size(Some(
            u32::try_from(config.packet_bytes_max).unwrap_or(u32::MAX),
        ))
        .set_receive_maximum(Some(receive_maximum(config.queue_messages)))
        .set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT_MAX);
    // No Topic Alias Maximum: the broker must then send every topic in full. (rumqttc 0.25
    // hands a message on before it resolves an alias, so an aliased one would arrive with
    // an empty topic.)
    if !config.username.is_empty() {
        options.set_credentials(config.username.clone(), config.password.clone());
    }
    if tls {
        let transport = if config.ca_file.as_os_str().is_empty() {
            Transport::tls_with_default_config()
        } else {
            let ca = std::fs::read(&config.ca_file).map_err(|source| BrokerError::CaFile {
                path: config.ca_file.display().to_string(),
                source,
            })?;
            Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            })
        };
        options.set_transport(transport);
    }
    Ok(options)
}

/// The Receive Maximum gridlog sends: how many unacknowledged QoS 1 messages the broker may
/// have in flight to it, at most `mqtt.queue_messages` (MQTT 5 allows 1 to 65,535).
fn receive_maximum(queue_messages: usize) -> u16 {
    u16::try_from(queue_messages).unwrap_or(u16::MAX).max(1)
}

/// The connection's side: polls the event loop until `stop`.
#[derive(Debug)]
pub struct Session {
    /// The client (subscriptions, keep-alives).
    pub client: AsyncClient,
    /// Subscription filters.
    pub filters: Vec<String>,
    /// Topics to publish keep-alives to.
    pub keepalive_topics: Vec<String>,
    /// Counters.
    pub status: Arc<MqttStatus>,
    /// `mqtt.reconnect_max_s` in milliseconds.
    pub reconnect_max_ms: u64,
    /// `mqtt.payload_bytes_max`.
    pub payload_bytes_max: usize,
    /// `mqtt.packet_bytes_max`.
    pub packet_bytes_max: usize,
    /// The engine, whose clock times arrivals.
    pub clock: Arc<gridlog_firmware::engine::Engine>,
}

/// Most messages the connection holds while the processor's queue is full; at this many it
/// stops reading the broker until the processor catches up.
pub const INBOX_MESSAGES_MAX: usize = 64;

/// A message the processor is done with, to acknowledge: the connection it came on, and
/// the packet.
pub type Done = (u64, Publish);

/// What the connection task holds between polls.
#[derive(Debug, Default)]
struct Waiting {
    /// Received, not yet in the processor's queue.
    inbox: VecDeque<Received>,
    /// Done, not yet taken by the client's request channel (which only the event loop's
    /// poll drains): kept, in order, never dropped.
    unsent: VecDeque<Publish>,
}

impl Session {
    /// Runs the event loop, handing messages to `queue` and acknowledging what comes back
    /// on `done`, until `stop`.
    ///
    /// The loop never waits for the processor: acknowledgements reach rumqttc only through
    /// its request channel, which only `poll` drains, so a connection task blocked on a
    /// full queue while the processor waited for room in that channel would deadlock, and
    /// an acknowledgement dropped for want of room would leave the broker waiting for it
    /// until the next connection.
    pub async fn run(
        self,
        mut events: EventLoop,
        queue: mpsc::Sender<Received>,
        mut done: mpsc::UnboundedReceiver<Done>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Keep-alives go out from a task of their own.
        let keepalive = (!self.keepalive_topics.is_empty()).then(|| {
            tokio::spawn(keep_alive(
                self.client.clone(),
                self.keepalive_topics.clone(),
                self.status.clone(),
            ))
        });
        let mut held = Waiting::default();
        let mut wait_ms = RECONNECT_MIN_MS;
        loop {
            self.hand_over_acks(&mut held.unsent);
            let connected = self.status.is_connected();
            // While connecting, `poll` is raced only against stopping: a poll cancelled
            // while connecting drops the connection.
            let event = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                permit = queue.reserve(), if connected && !held.inbox.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(received) = held.inbox.pop_front() {
                        permit.send(received);
                    }
                    continue;
                }
                finished = done.recv(), if connected => {
                    self.take_done(finished, &mut done, &mut held.unsent);
                    continue;
                }
                e = events.poll(), if held.inbox.len() < INBOX_MESSAGES_MAX => e,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let received = self.received(publish);
                    match queue.try_reserve() {
                        Ok(permit) if held.inbox.is_empty() => permit.send(received),
                        _ => held.inbox.push_back(received),
                    }
                }
                Ok(event) => self.on_event(event, &mut wait_ms),
                Err(e) => {
                    // Set at CONNACK: false if this connection never got one.
                    let answered = self.status.is_connected();
                    if let Some(message) = refused_protocol_message(&e, answered) {
                        tracing::error!("{message}");
                        self.status.error(message, true);
                    } else if let Some(bytes) = oversized_packet_bytes(&e) {
                        let message = oversized_packet_message(bytes, self.packet_bytes_max);
                        tracing::error!(bytes, "{message}");
                        self.status.error(message, true);
                    } else {
                        tracing::warn!(error = %e, wait_ms, "mqtt connection lost; reconnecting");
                        self.status.error(format!("connection: {e}"), true);
                    }
                    // The client drops queued acknowledgements at a disconnection: the
                    // broker sends those messages again.
                    held.unsent.clear();
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    wait_ms = (wait_ms * 2).min(self.reconnect_max_ms.max(RECONNECT_MIN_MS));
                }
            }
        }
        if let Some(task) = keepalive {
            task.abort();
        }
        let _ = self.client.try_disconnect();
    }

    /// A message as the processor takes it (a payload over the limit dropped, its size kept).
    fn received(&self, mut publish: Publish) -> Received {
        let payload_bytes = publish.payload.len();
        if payload_bytes > self.payload_bytes_max {
            // Only its size is kept: the queue holds at most queue_messages ×
            // payload_bytes_max of payloads, whatever the broker sends.
            publish.payload = bytes::Bytes::new();
        }
        Received {
            publish,
            payload_bytes,
            generation: self.status.generation(),
            received_ms: self.clock.now_ms(),
            received_unix_ms: SystemClock.now_ms(),
        }
    }

    /// Every finished message of this connection joins the acknowledgements to send; one of
    /// an earlier connection is not acknowledged on this one (the broker sends it again,
    /// and an acknowledgement of the old copy could arrive after its packet id was given
    /// to another message).
    fn take_done(
        &self,
        first: Option<Done>,
        done: &mut mpsc::UnboundedReceiver<Done>,
        unsent: &mut VecDeque<Publish>,
    ) {
        let generation = self.status.generation();
        let mut next = first;
        while let Some((of, publish)) = next {
            if of == generation {
                unsent.push_back(publish);
            }
            next = done.try_recv().ok();
        }
    }

    /// Moves acknowledgements into the client's request channel while it has room.
    fn hand_over_acks(&self, unsent: &mut VecDeque<Publish>) {
        while let Some(publish) = unsent.front() {
            if self.client.try_ack(publish).is_err() {
                return;
            }
            unsent.pop_front();
        }
    }

    /// A connection, a subscription's answer, or anything else from the broker.
    fn on_event(&self, event: Event, wait_ms: &mut u64) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                *wait_ms = RECONNECT_MIN_MS;
                self.status.connected();
                tracing::info!(session_present = ack.session_present, "mqtt connected");
                // Subscribing again to a session that has the subscriptions changes
                // nothing, and covers a session the broker created but whose subscriptions
                // were never made (a connection lost before SUBACK).
                self.subscribe();
                // A device waiting for a keep-alive starts publishing now, not in 20 s.
                for topic in &self.keepalive_topics {
                    let _ = self.client.try_publish(
                        topic.clone(),
                        QoS::AtMostOnce,
                        false,
                        Vec::<u8>::new(),
                    );
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Code;
                let refused = ack
                    .return_codes
                    .iter()
                    .find(|c| !matches!(c, Code::Success(_)));
                if let Some(code) = refused {
                    tracing::error!(?code, "mqtt broker refused a subscription");
                    self.status.error(
                        format!("the broker refused a subscription: {code:?}"),
                        false,
                    );
                }
            }
            _ => {}
        }
    }

    fn subscribe(&self) {
        let filters = self
            .filters
            .iter()
            .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(filters) {
            tracing::error!(error = %e, "cannot subscribe");
            self.status.error(format!("subscribe: {e}"), false);
        }
    }
}

/// Publishes to every keep-alive topic every [`KEEPALIVE_EVERY_S`] while connected (none
/// pile up in the client while the broker is away).
async fn keep_alive(client: AsyncClient, topics: Vec<String>, status: Arc<MqttStatus>) {
    let mut every = tokio::time::interval(Duration::from_secs(KEEPALIVE_EVERY_S));
    loop {
        every.tick().await;
        if !status.is_connected() {
            continue;
        }
        for topic in &topics {
            let _ = client.try_publish(topic.clone(), QoS::AtMostOnce, false, Vec::<u8>::new());
        }
    }
}

/// The size of the packet the connection was lost to, if it was lost because a packet was
/// larger than `mqtt.packet_bytes_max`.
///
/// An MQTT 5 broker never sends one (CONNECT told it the limit); a broker that ignores the
/// limit does, and the connection is dropped.
fn oversized_packet_bytes(error: &ConnectionError) -> Option<usize> {
    use rumqttc::v5::mqttbytes::Error;
    match error {
        ConnectionError::MqttState(StateError::Deserialization(
            Error::PayloadSizeLimitExceeded { pkt_size, .. },
        ))
        | ConnectionError::MqttState(StateError::IncomingPacketTooLarge { pkt_size, .. }) => {
            Some(*pkt_size)
        }
        _ => None,
    }
}

/// What status and the log say about a packet over `mqtt.packet_bytes_max` from a broker
/// that ignored the limit gridlog announced: with a persistent session it sends the packet
/// again at every reconnection, and nothing after it arrives until someone acts.
fn oversized_packet_message(bytes: usize, packet_bytes_max: usize) -> String {
    format!(
        "the broker sent a packet of {bytes} bytes, over mqtt.packet_bytes_max ({packet_bytes_max}), \
         although gridlog announced that limit; it sends it again at every reconnection and no \
         message after it arrives: remove it at the broker (or raise mqtt.packet_bytes_max)"
    )
}

/// What status and the log say when the broker refused MQTT 5: it answered CONNECT with
/// "unsupported protocol version", or (`answered` false: no CONNACK on this connection)
/// closed the connection instead — an MQTT 3.1.1 broker answers a version-5 CONNECT with a
/// 3.1.1 CONNACK that the MQTT 5 client cannot read, then closes.
fn refused_protocol_message(error: &ConnectionError, answered: bool) -> Option<String> {
    let refused = match error {
        ConnectionError::ConnectionRefused(code)
        | ConnectionError::MqttState(StateError::ConnFail { reason: code }) => matches!(
            code,
            ConnectReturnCode::RefusedProtocolVersion
                | ConnectReturnCode::UnsupportedProtocolVersion
        ),
        ConnectionError::MqttState(StateError::ConnectionAborted)
        | ConnectionError::NotConnAck(_) => !answered,
        ConnectionError::MqttState(StateError::Io(e)) | ConnectionError::Io(e) => {
            !answered
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                )
        }
        _ => false,
    };
    refused.then(|| {
        "the broker closed the connection or refused it before accepting MQTT 5: gridlog \
         speaks MQTT 5 only (mosquitto 1.6 or later, or any current broker); check the \
         broker's version and its log"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_over_the_limit_is_named_with_its_size_and_the_setting() {
        let oversized = ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded {
                pkt_size: 20_000_000,
                max: 16_777_216,
            },
        ));
        assert_eq!(oversized_packet_bytes(&oversized), Some(20_000_000));
        let too_large = ConnectionError::MqttState(StateError::IncomingPacketTooLarge {
            pkt_size: 20_000_000,
            max: 16_777_216,
        });
        assert_eq!(oversized_packet_bytes(&too_large), Some(20_000_000));
        let io = ConnectionError::Io(std::io::Error::other("reset"));
        assert_eq!(oversized_packet_bytes(&io), None);
        let message = oversized_packet_message(20_000_000, 16_777_216);
        assert!(message.contains("20000000 bytes") && message.contains("mqtt.packet_bytes_max"));
    }

    #[test]
    fn a_broker_refusing_mqtt_5_is_named_as_such() {
        let refused =
            ConnectionError::ConnectionRefused(ConnectReturnCode::UnsupportedProtocolVersion);
        assert!(refused_protocol_message(&refused, false).is_some_and(|m| m.contains("MQTT 5")));
        let auth = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(refused_protocol_message(&auth, false), None);
        // A connection lost after CONNACK is not about the protocol version.
        let aborted = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert_eq!(refused_protocol_message(&aborted, true), None);
    }

    /// An MQTT 3.1.1 broker as mosquitto 1.x is one: it answers a version-5 CONNECT with a
    /// 3.1.1 CONNACK "unacceptable protocol version" (`20 02 00 01`) and closes.
    #[tokio::test]
    async fn an_mqtt_3_broker_closing_the_connection_is_named() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut connect = [0u8; 256];
            let _ = socket.read(&mut connect).await;
            let _ = socket.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            let _ = socket.shutdown().await;
        });
        let config = MqttConfig {
            url: format!("mqtt://127.0.0.1:{port}"),
            ..MqttConfig::default()
        };
        let (_client, mut events) = AsyncClient::new(options(&config, "t").unwrap(), 10);
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => break e,
                Err(_) => panic!("no error within 10 s"),
            }
        };
        let message = refused_protocol_message(&error, false);
        assert!(
            message.as_deref().is_some_and(|m| m.contains("MQTT 5")),
            "{error:?}"
        );
    }

    #[test]
    fn the_options_keep_topic_aliases_off_and_the_outgoing_table_small() {
        let config = MqttConfig {
            url: "mqtt://broker".into(),
            ..MqttConfig::default()
        };
        let options = options(&config, "t").unwrap();
        assert_eq!(options.topic_alias_max(), None);
        assert_eq!(options.max_packet_size(), Some(1024 * 1024));
        assert_eq!(options.receive_maximum(), Some(1024));
        assert_eq!(options.session_expiry_interval(), Some(u32::MAX));
    }

    #[test]
    fn the_receive_maximum_follows_the_queue_within_mqtt_5s_range() {
        assert_eq!(receive_maximum(1024), 1024);
        assert_eq!(receive_maximum(0), 1);
        assert_eq!(receive_maximum(1 << 20), u16::MAX);
    }

    #[test]
    fn broker_urls_give_host_port_and_tls() {
        assert_eq!(
            parse_url("mqtt://broker").unwrap(),
            ("broker".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://broker:8884/").unwrap(),
            ("broker".into(), 8884, true)
        );
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1999").unwrap(),
            ("127.0.0.1".into(), 1999, false)
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1999").unwrap(),
            ("::1".into(), 1999, false)
        );
        for bad in [
            "",
            "broker:1883",
            "http://b",
            "mqtt://",
            "mqtt://b:x",
            "mqtt://b:0",
            "mqtt://u@b",
            "mqtt://b/t",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
