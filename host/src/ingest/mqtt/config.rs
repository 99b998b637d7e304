//! `[mqtt]` and its `[[mqtt.source]]` entries as configured (TOML), with their defaults.
//! Checked and compiled into sources by [`super::source::Sources::new`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::payload::TimeFormat;
use crate::ingest::fields::Target;

/// `[mqtt]`: the broker gridlog subscribes to, and what it takes from it. Off while `url`
/// is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    /// Default empty: MQTT off.
    pub url: String,
    /// The client id. The session is persistent (QoS 1 messages wait at the broker while
    /// gridlog is away), so it must be stable and unique on the broker. Default
    /// `gridlog-<site_id>`.
    pub client_id: String,
    /// User name, if the broker wants one. Default none.
    pub username: String,
    /// Password for `username`. Default none.
    pub password: String,
    /// PEM file of the CA that signed the broker's certificate (`mqtts://`). Default: the
    /// system's roots.
    pub ca_file: PathBuf,
    /// Seconds between keep-alive pings. Default 30.
    pub keep_alive_s: u64,
    /// Most messages received and not yet durable, and the Receive Maximum gridlog
    /// announces (capped at 65,535): the broker has at most this many unacknowledged
    /// messages in flight to gridlog. With `payload_bytes_max` this bounds the memory
    /// messages take: 1024 × 16 KiB = 16 MiB. Default 1024.
    pub queue_messages: usize,
    /// Largest payload read; a larger one is refused (counted, acknowledged so it is not
    /// redelivered forever). Default 16384.
    pub payload_bytes_max: usize,
    /// Largest MQTT packet gridlog reads, announced to the broker at CONNECT (MQTT 5
    /// Maximum Packet Size): the broker drops a larger message for gridlog rather than send
    /// it (the message is lost to gridlog, uncounted; the broker's log names it). A broker
    /// that sends one anyway drops the connection, named in status. The client (rumqttc 0.25)
    /// reads up to 10 packets before they are handed on, so a burst holds up to 10 × this.
    /// Default 1048576 (1 MiB).
    pub packet_bytes_max: usize,
    /// Longest wait between reconnection attempts (it doubles from 1 s). Default 30.
    pub reconnect_max_s: u64,
    /// What to read: topics, ids and fields, or a preset.
    pub source: Vec<SourceConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            ca_file: PathBuf::new(),
            keep_alive_s: 30,
            queue_messages: 1024,
            payload_bytes_max: 16 * 1024,
            packet_bytes_max: 1024 * 1024,
            reconnect_max_s: 30,
            source: Vec::new(),
        }
    }
}

/// A device family whose topics and payloads gridlog knows (README "Feeding gridlog").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Shelly Pro 3EM (Gen2): `<prefix>/status/em:0` (power) and `…/emdata:0` (Wh).
    #[serde(rename = "shelly_pro_3em")]
    ShellyPro3em,
    /// Shelly Pro EM (Gen2): `<prefix>/status/em1:0` and `…/em1data:0`.
    ShellyProEm,
    /// Tasmota: `<prefix>/SENSOR`, `ENERGY.Total` in kWh, local time.
    Tasmota,
    /// Victron Venus OS grid meter: `N/<portal>/grid/<instance>/Ac/…`, `{"value":…}`.
    VictronGrid,
}

/// One `[[mqtt.source]]`: either a `preset` with its `prefix`, or a `topic` with `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Its name in status and logs. Default: the preset and prefix, or the topic.
    #[serde(default)]
    pub name: String,
    /// A device family; then `prefix` says where its topics are.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The preset's topic prefix; may hold named wildcards (`tele/{device}`).
    #[serde(default)]
    pub prefix: String,
    /// The topic pattern, with named one-level wildcards (`site/{device}/energy`).
    #[serde(default)]
    pub topic: String,
    /// `meter` or `asset`. Default meter.
    #[serde(default = "default_target")]
    pub target: Target,
    /// The entity id: a template over the topic's wildcards (`pv-{device}`).
    pub id: String,
    /// Swap import and export and negate power (sites wired the other way). Default false.
    #[serde(default)]
    pub invert: bool,
    /// Per gridlog field (`import_wh`, `power_w`, …) where its value is in the payload.
    #[serde(default)]
    pub fields: BTreeMap<String, PointerSource>,
    /// JSON pointer to the payload's time. Default: the time the message is received.
    #[serde(default)]
    pub time: Option<String>,
    /// How that time is written. Default `unix_s`.
    #[serde(default)]
    pub time_format: Option<TimeFormat>,
    /// The IANA zone of `local` times (`Europe/Berlin`). Default: the system's zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Values from another topic of the device (Shelly's power beside its energy) are
    /// used in a reading only if at most this old. Default 120000.
    #[serde(default = "default_value_age_max_ms")]
    pub value_age_max_ms: u64,
}

fn default_target() -> Target {
    Target::Meter
}

fn default_value_age_max_ms() -> u64 {
    120_000
}

/// Where one gridlog field is in a payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointerSource {
    /// RFC 6901 JSON pointer (`/ENERGY/Total`); `""` is the whole (plain) payload.
    pub pointer: String,
    /// Its unit (`Wh`, `kWh`, `W`, `kW`, `V`, `A`, `var`, `kvar`, `%`). Default: the
    /// field's own.
    #[serde(default)]
    pub unit: Option<String>,
    /// A factor instead of a unit. Default none.
    #[serde(default)]
    pub scale: Option<f64>,
    /// The value when the payload lacks it (a meter without an export register: 0).
    /// Default none: a required field missing refuses the message.
    #[serde(default)]
    pub default: Option<f64>,
}
