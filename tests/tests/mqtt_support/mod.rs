//! MQTT tests' plumbing: a gateway configured for a broker, a publisher that behaves like a
//! device (QoS 1, persistent session, re-sends what the broker has not acknowledged), and
//! waiting on status. The broker itself is `gridlog_tests::mosquitto`.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_tests::server::Server;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// A Tasmota plug source in UTC (`tele/<device>/SENSOR` → meter `plug-<device>`), the source
/// most tests subscribe with.
pub const TASMOTA_UTC: &str = r#"
[[mqtt.source]]
preset = "tasmota"
prefix = "tele/{device}"
id = "plug-{device}"
time_zone = "UTC"
"#;

/// How long a test waits for what it published to be stored.
pub const SETTLE: Duration = Duration::from_secs(60);

/// `gridlog serve` on `dir` with `[mqtt]` pointing at `broker_url`, the `sources` TOML
/// (`[[mqtt.source]]` entries) and `extra` TOML before them (top-level keys and sections).
pub fn gateway(dir: &Path, broker_url: &str, extra: &str, sources: &str) -> Server {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.with_extension("toml");
    let text = format!(
        "{extra}\n[engine]\nauto_register = \"grid\"\n[mqtt]\nurl = \"{broker_url}\"\nclient_id = \"gridlog-test\"\nreconnect_max_s = 1\n{sources}\n"
    );
    std::fs::write(&config, text).expect("config");
    let config = config.display().to_string();
    Server::spawn(
        dir,
        "serve",
        &["--config", &config],
        [("GRIDLOG_LOG", "warn")],
    )
}

/// The `mqtt` part of status.
pub fn mqtt_status(server: &Server) -> Value {
    server.get("/api/v1/status").1["mqtt"].clone()
}

/// Waits until `done` holds of the `mqtt` status; panics with it after [`SETTLE`].
pub fn wait_status(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = mqtt_status(server);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of a counter over the sources.
pub fn total(status: &Value, counter: &str) -> u64 {
    status["sources"].as_array().map_or(0, |s| {
        s.iter().map(|s| s[counter].as_u64().unwrap_or(0)).sum()
    })
}

/// A meter as the API shows it.
pub fn meter(server: &Server, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/meters/{id}"));
    assert_eq!(status, 200, "meter {id}: {body}");
    body
}

/// A device-like publisher: QoS 1, persistent session, unacknowledged messages re-sent
/// after a reconnection (rumqttc keeps them).
pub struct Publisher {
    client: Client,
    acked: Arc<AtomicU64>,
    sent: u64,
    _connection: std::thread::JoinHandle<()>,
}

impl Publisher {
    /// Connects to 127.0.0.1:`port` as `id`.
    pub fn connect(port: u16, id: &str) -> Publisher {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(false)
            .set_max_packet_size(32 * 1024 * 1024, 32 * 1024 * 1024)
            .set_inflight(100);
        let (client, mut connection) = Client::new(options, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let counter = acked.clone();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    // The broker is away (a restart): rumqttc reconnects on the next poll.
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        Publisher {
            client,
            acked,
            sent: 0,
            _connection: thread,
        }
    }

    /// Publishes at QoS 1.
    pub fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_with(topic, payload, false);
    }

    /// Publishes at QoS 1, retained if `retain`.
    pub fn publish_with(&mut self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .expect("publish");
        self.sent += 1;
    }

    /// Waits until the broker has acknowledged everything published.
    pub fn wait_acked(&self) {
        let deadline = Instant::now() + SETTLE;
        while self.acked.load(Ordering::Relaxed) < self.sent {
            assert!(
                Instant::now() < deadline,
                "broker acknowledged {} of {}",
                self.acked.load(Ordering::Relaxed),
                self.sent
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Messages acknowledged by the broker so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Disconnects.
    pub fn disconnect(self) {
        let _ = self.client.disconnect();
    }
}

/// Recorded device payloads (the same as README "Feeding gridlog").
pub mod samples {
    /// Shelly Pro 3EM, `<prefix>/status/em:0`.
    pub const SHELLY_EM: &str = r#"{"id":0,"a_current":4.029,"a_voltage":236.1,"a_act_power":951.2,"a_aprt_power":951.9,"a_pf":1,"b_current":4.027,"b_voltage":236.2,"b_act_power":-951.1,"b_aprt_power":951.9,"b_pf":1,"c_current":3.03,"c_voltage":236.3,"c_act_power":715.8,"c_aprt_power":716.1,"c_pf":1,"n_current":null,"total_current":11.086,"total_act_power":715.9,"total_aprt_power":2619.8}"#;
    /// Shelly Pro 3EM, `<prefix>/status/emdata:0`.
    pub const SHELLY_EMDATA: &str = r#"{"id":0,"a_total_act_energy":2834.35,"a_total_act_ret_energy":0,"b_total_act_energy":0.42,"b_total_act_ret_energy":2680.26,"c_total_act_energy":2136.45,"c_total_act_ret_energy":0,"total_act":4971.22,"total_act_ret":2680.26}"#;
    /// Tasmota, `tele/<topic>/SENSOR` (local time, no offset).
    pub const TASMOTA_SENSOR: &str = r#"{"Time":"2026-07-01T12:00:00","ENERGY":{"TotalStartTime":"2025-01-01T00:00:00","Total":12.345,"Yesterday":0.5,"Today":0.25,"Period":1,"Power":123,"ApparentPower":130,"ReactivePower":40,"Factor":0.95,"Voltage":231,"Current":0.56}}"#;
}
