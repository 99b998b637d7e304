//! `[modbus]`: the devices the gateway polls, one `[[modbus.device]]` each, and their check.
//!
//! The file is read whole at start (unknown keys are an error there, as everywhere in the
//! configuration). Each device is then checked on its own ([`DeviceConfig::check`]): a
//! device whose register map overlaps, names an unknown type or field, or has a bad URL is
//! reported by name and register and marked unavailable, while the others are polled.

use std::time::Duration;

use gridlog_common::domain::{AssetKind, MeterKind};
use serde::{Deserialize, Serialize};

use super::registers::{RegisterMap, RegisterMapError};
use crate::ingest::fields::Target;
use crate::ingest::template::Template;

/// Most `[[modbus.device]]` entries.
pub const DEVICES_MAX: usize = 1_024;
/// Shortest poll interval accepted.
pub const INTERVAL_MS_MIN: u64 = 100;
/// Shortest reply timeout accepted.
pub const TIMEOUT_MS_MIN: u64 = 10;
/// The unit ids a device on a serial line can have (0 is a broadcast, 248-255 reserved).
pub const RTU_UNIT_IDS: std::ops::RangeInclusive<u8> = 1..=247;

/// `[modbus]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModbusConfig {
    /// The devices. Default none (the poller does not run).
    pub device: Vec<DeviceConfig>,
}

impl ModbusConfig {
    /// What the types cannot say about the whole section (each device is checked later,
    /// on its own).
    pub fn check(&self) -> Result<(), String> {
        if self.device.len() > DEVICES_MAX {
            return Err(format!(
                "modbus.device: {} devices; the maximum is {DEVICES_MAX}",
                self.device.len()
            ));
        }
        Ok(())
    }
}

/// One `[[modbus.device]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Its name in logs and status. Default: `url` and `unit_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp://host:502` or `rtu:///dev/ttyUSB0?baud=9600&parity=N`.
    pub url: String,
    /// The Modbus unit (slave) id. Default 1.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// Poll interval, aligned to the wall clock. Default 1000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// How long to wait for each reply. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed polls in a row after which the device is unavailable. Default 3.
    #[serde(default = "default_failures_max")]
    pub failures_max: u32,
    /// Discover a SunSpec map and map its models. Default false.
    #[serde(default)]
    pub sunspec: bool,
    /// Explicit points, for a device without SunSpec. Default none.
    #[serde(default)]
    pub registers: Vec<RegisterConfig>,
    /// The entity id: for SunSpec a template over the common model (`{Mn}`, `{SN}`),
    /// default `{Mn}-{SN}`; for registers the id itself (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// With `registers`: `meter` or `asset`. Default `meter`.
    #[serde(default = "default_target")]
    pub target: Target,
    /// The kind of the meter it registers (a SunSpec meter model, or `target = "meter"`).
    /// Default `grid`.
    #[serde(default = "default_meter_kind")]
    pub meter_kind: String,
    /// The kind of asset (`target = "asset"`). Default `pv_inverter`.
    #[serde(default = "default_asset_kind")]
    pub asset_kind: String,
    /// The asset's rated power (an inverter model, or `target = "asset"`). Required for
    /// assets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rated_power_w: Option<f64>,
    /// Swap import and export and negate power. Default false.
    #[serde(default)]
    pub invert: bool,
}

fn default_unit_id() -> u8 {
    1
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_failures_max() -> u32 {
    3
}
fn default_target() -> Target {
    Target::Meter
}
fn default_meter_kind() -> String {
    "grid".into()
}
fn default_asset_kind() -> String {
    "pv_inverter".into()
}

/// One point of `registers = [...]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The gridlog field it fills (`import_wh`, `power_w`, `voltage_v`, `soc_pct` …).
    pub field: String,
    /// The first register (0-based, as on the wire).
    pub address: u16,
    /// `u16`, `i16`, `u32`, `i32`, `u64`, `f32` or `acc32`.
    #[serde(rename = "type")]
    pub ty: String,
    /// `ABCD` (default), `CDAB`, `BADC` or `DCBA`.
    #[serde(default = "default_byte_order")]
    pub byte_order: String,
    /// A factor the value is multiplied by. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// A register holding a SunSpec scale factor (power of ten) for this value; read in the
    /// same request as the value. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_register: Option<u16>,
    /// The value's unit (`Wh`, `kWh`, `W`, `kW`, `V`, `A`, `var`, `%` …). Default: the
    /// field's own unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// An input register (function 4) instead of a holding register (function 3); its
    /// `scale_register` is an input register too. Default false.
    #[serde(default)]
    pub input: bool,
}

fn default_byte_order() -> String {
    "ABCD".into()
}

/// Where a device is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Modbus TCP: `host:port`.
    Tcp(String),
    /// Modbus RTU on a serial port.
    Rtu {
        /// The device path.
        path: String,
        /// Bits per second.
        baud: u32,
        /// `N`, `E` or `O`.
        parity: Parity,
    },
}

impl Endpoint {
    /// The bus: a TCP address or a serial port's path. Devices on one bus share its one
    /// connection and take turns.
    pub fn bus(&self) -> &str {
        match self {
            Endpoint::Tcp(address) => address,
            Endpoint::Rtu { path, .. } => path,
        }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Parity {
    /// None.
    None,
    /// Even.
    Even,
    /// Odd.
    Odd,
}

/// What a device is read for.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A SunSpec map, discovered at connect.
    SunSpec {
        /// The id template.
        id: Template,
        /// The kind of its meter.
        meter_kind: MeterKind,
        /// An inverter's rated power, if given.
        rated_power_w: Option<f64>,
    },
    /// Explicit points.
    Registers(RegisterMap),
}

/// A device whose configuration is usable.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Its name in logs and status.
    pub name: String,
    /// Where.
    pub endpoint: Endpoint,
    /// The unit id.
    pub unit_id: u8,
    /// Poll interval.
    pub interval_ms: u64,
    /// Reply timeout.
    pub timeout: Duration,
    /// Failures before it is unavailable.
    pub failures_max: u32,
    /// What it is read for.
    pub source: Source,
    /// Swap import and export, negate power.
    pub invert: bool,
}

/// Why a device's configuration cannot be used. Each names the device.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceConfigError {
    /// The URL is not `tcp://host:port` or `rtu:///path?baud=…&parity=…`.
    #[error("device {device}: url {url:?}: {reason}")]
    BadUrl {
        /// The device.
        device: String,
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Neither or both of `sunspec = true` and `registers`.
    #[error("device {device}: give either sunspec = true or registers, not {given}")]
    NoSource {
        /// The device.
        device: String,
        /// What was given.
        given: &'static str,
    },
    /// A setting out of its range.
    #[error("device {device}: {setting} {reason}")]
    BadSetting {
        /// The device.
        device: String,
        /// The key.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A serial port another device uses at other settings (baud, parity).
    #[error("device {device}: {bus} is already polled at other settings ({url})")]
    BusSettings {
        /// The device.
        device: String,
        /// The port.
        bus: String,
        /// The URL of the device that set them first.
        url: String,
    },
    /// The register map is not usable.
    #[error("device {device}: {source}")]
    Registers {
        /// The device.
        device: String,
        /// What is wrong, naming the register.
        source: RegisterMapError,
    },
}

impl DeviceConfig {
    /// The name used for the device at `index` in logs and status.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}#{}", self.url, self.unit_id))
    }

    /// Checks the device's configuration.
    pub fn check(&self) -> Result<Device, DeviceConfigError> {
        let device = self.display_name();
        let bad = |setting: &'static str, reason: String| DeviceConfigError::BadSetting {
            device: device.clone(),
            setting,
            reason,
        };
        if self.interval_ms < INTERVAL_MS_MIN {
            return Err(bad(
                "interval_ms",
                format!("must be at least {INTERVAL_MS_MIN}"),
            ));
        }
        if self.timeout_ms < TIMEOUT_MS_MIN || self.timeout_ms > self.interval_ms {
            return Err(bad(
                "timeout_ms",
                format!(
                    "must be in {TIMEOUT_MS_MIN}..=interval_ms ({})",
                    self.interval_ms
                ),
            ));
        }
        let meter_kind = MeterKind::from_name(&self.meter_kind).ok_or_else(|| {
            bad(
                "meter_kind",
                format!("{:?} is not a meter kind", self.meter_kind),
            )
        })?;
        if let Some(p) = self.rated_power_w.filter(|p| !(p.is_finite() && *p > 0.0)) {
            return Err(bad("rated_power_w", format!("must be positive, not {p}")));
        }
        let endpoint = parse_url(&self.url).map_err(|reason| DeviceConfigError::BadUrl {
            device: device.clone(),
            url: self.url.clone(),
            reason,
        })?;
        // On a serial line unit 0 is a broadcast, which no device answers.
        if matches!(endpoint, Endpoint::Rtu { .. }) && !RTU_UNIT_IDS.contains(&self.unit_id) {
            return Err(bad(
                "unit_id",
                format!("must be in 1..=247 on a serial line, not {}", self.unit_id),
            ));
        }
        let source = match (self.sunspec, self.registers.is_empty()) {
            (true, true) => {
                let template = self.id.as_deref().unwrap_or("{Mn}-{SN}");
                let id = Template::parse(template)
                    .filter(|t| t.holes().all(|hole| hole == "Mn" || hole == "SN"))
                    .ok_or_else(|| {
                        bad(
                            "id",
                            format!("{template:?}: only {{Mn}} and {{SN}} may be used"),
                        )
                    })?;
                Source::SunSpec {
                    id,
                    meter_kind,
                    rated_power_w: self.rated_power_w,
                }
            }
            (false, false) => Source::Registers(self.register_map(&device, meter_kind)?),
            (true, false) => {
                return Err(DeviceConfigError::NoSource {
                    device,
                    given: "both",
                })
            }
            (false, true) => {
                return Err(DeviceConfigError::NoSource {
                    device,
                    given: "neither",
                })
            }
        };
        Ok(Device {
            name: device,
            endpoint,
            unit_id: self.unit_id,
            interval_ms: self.interval_ms,
            timeout: Duration::from_millis(self.timeout_ms),
            failures_max: self.failures_max,
            source,
            invert: self.invert,
        })
    }

    fn register_map(
        &self,
        device: &str,
        meter_kind: MeterKind,
    ) -> Result<RegisterMap, DeviceConfigError> {
        let bad = |setting: &'static str, reason: String| DeviceConfigError::BadSetting {
            device: device.into(),
            setting,
            reason,
        };
        let id = self
            .id
            .as_deref()
            .ok_or_else(|| bad("id", "is required with registers".into()))?;
        let id = gridlog_common::id::EntityId::new(id)
            .map_err(|e| bad("id", format!("{id:?} is not a valid entity id: {e}")))?;
        let asset_kind = match self.target {
            Target::Meter => None,
            Target::Asset => {
                let kind = AssetKind::from_name(&self.asset_kind).ok_or_else(|| {
                    bad(
                        "asset_kind",
                        format!("{:?} is not an asset kind", self.asset_kind),
                    )
                })?;
                let rated = self
                    .rated_power_w
                    .ok_or_else(|| bad("rated_power_w", "is required for an asset".into()))?;
                Some((kind, rated))
            }
        };
        RegisterMap::new(id, self.target, meter_kind, asset_kind, &self.registers).map_err(
            |source| DeviceConfigError::Registers {
                device: device.into(),
                source,
            },
        )
    }
}

/// Most characters of a URL.
const URL_BYTES_MAX: usize = 256;

/// Parses a device URL.
pub fn parse_url(url: &str) -> Result<Endpoint, &'static str> {
    if url.len() > URL_BYTES_MAX {
        return Err("is longer than 256 bytes");
    }
    if let Some(rest) = url.strip_prefix("tcp://") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or("needs a port (tcp://host:502)")?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err("needs a host and a port number (tcp://host:502)");
        }
        return Ok(Endpoint::Tcp(rest.into()));
    }
    let rest = url
        .strip_prefix("rtu://")
        .ok_or("must start with tcp:// or rtu://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err("needs a device path (rtu:///dev/ttyUSB0)");
    }
    let (mut baud, mut parity) = (9600, Parity::None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("baud", v)) => baud = v.parse().map_err(|_| "baud is not a number")?,
            Some(("parity", "N")) => parity = Parity::None,
            Some(("parity", "E")) => parity = Parity::Even,
            Some(("parity", "O")) => parity = Parity::Odd,
            Some(("parity", _)) => return Err("parity must be N, E or O"),
            _ => return Err("only baud and parity may follow ?"),
        }
    }
    Ok(Endpoint::Rtu {
        path: path.into(),
        baud,
        parity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(toml_text: &str) -> DeviceConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn the_readme_examples_are_usable_devices() {
        let readme = include_str!("../../../README.md");
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.contains("[[modbus.device]]"))
            .collect();
        assert_eq!(blocks.len(), 2, "a SunSpec and a register example");
        for block in blocks {
            #[derive(Deserialize)]
            struct File {
                modbus: ModbusConfig,
            }
            let file: File = toml::from_str(block).unwrap();
            for d in &file.modbus.device {
                d.check().unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("tcp://10.0.0.5:502"),
            Ok(Endpoint::Tcp("10.0.0.5:502".into()))
        );
        assert_eq!(
            parse_url("rtu:///dev/ttyUSB0?baud=19200&parity=E"),
            Ok(Endpoint::Rtu {
                path: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::Even
            })
        );
        assert_eq!(
            parse_url("rtu:///dev/ttyUSB0"),
            Ok(Endpoint::Rtu {
                path: "/dev/ttyUSB0".into(),
                baud: 9600,
                parity: Parity::None
            })
        );
        assert!(parse_url("tcp://host").is_err());
        assert!(parse_url("udp://host:502").is_err());
        assert!(parse_url("rtu://dev?baud=9600").is_err());
        assert!(parse_url("rtu:///dev/x?parity=X").is_err());
    }

    #[test]
    fn a_sunspec_device_takes_the_defaults() {
        let d = device("url = \"tcp://127.0.0.1:1502\"\nsunspec = true\n")
            .check()
            .unwrap();
        assert_eq!(d.name, "tcp://127.0.0.1:1502#1");
        assert_eq!(d.interval_ms, 1000);
        assert_eq!(d.timeout, Duration::from_millis(1000));
        assert!(matches!(
            d.source,
            Source::SunSpec {
                meter_kind: MeterKind::Grid,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_device_and_the_setting() {
        let e = device("name = \"roof\"\nurl = \"tcp://h:502\"\n")
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device roof: give either sunspec = true or registers, not neither"
        );
        let e = device("name = \"roof\"\nurl = \"tcp://h:502\"\nsunspec = true\nid = \"{Md}\"\n")
            .check()
            .unwrap_err();
        assert!(e.to_string().starts_with("device roof: id"), "{e}");
        let e = device("name = \"roof\"\nurl = \"tcp://h\"\nsunspec = true\n")
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("url \"tcp://h\""), "{e}");
        let e = device("name = \"bus\"\nurl = \"rtu:///dev/ttyS0\"\nunit_id = 0\nsunspec = true\n")
            .check()
            .unwrap_err();
        assert!(e.to_string().starts_with("device bus: unit_id"), "{e}");
        let e = device("name = \"roof\"\nurl = \"tcp://h:1\"\nsunspec = true\ntimeout_ms = 5000\n")
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("timeout_ms"), "{e}");
    }

    #[test]
    fn a_register_map_error_names_the_device_and_register() {
        let text = "name = \"pump\"\nurl = \"tcp://h:502\"\nid = \"pump\"\nregisters = [\n\
            { field = \"import_wh\", address = 0, type = \"u32\" },\n\
            { field = \"export_wh\", address = 1, type = \"u32\" },\n\
            { field = \"power_w\", address = 4, type = \"i16\" },\n]\n";
        let e = device(text).check().unwrap_err();
        assert!(e.to_string().starts_with("device pump: register 1"), "{e}");
        let text = text.replace("address = 1, type = \"u32\"", "address = 2, type = \"u24\"");
        let e = device(&text).check().unwrap_err();
        assert!(
            e.to_string().contains("register 2") && e.to_string().contains("u24"),
            "{e}"
        );
    }
}
