//! The device families gridlog knows: each preset is topics, pointers and units, expanded
//! into the same parts a hand-written `[[mqtt.source]]` compiles to. Sample payloads are
//! in README "Feeding gridlog" and in the tests below.

use super::config::Preset;
use super::payload::TimeFormat;

/// One topic of a device and the fields its payload gives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartSpec {
    /// Topic pattern.
    pub topic: String,
    /// (gridlog field, JSON pointer, unit, default when absent).
    pub fields: Vec<(&'static str, &'static str, &'static str, Option<f64>)>,
    /// A message here makes a reading (of this and the device's other fresh values).
    pub completes: bool,
}

/// A preset expanded for one prefix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expanded {
    /// Its topics.
    pub parts: Vec<PartSpec>,
    /// Where the time is, if the payload carries one.
    pub time: Option<(&'static str, TimeFormat)>,
    /// A topic to publish to regularly so the device keeps publishing.
    pub keepalive: Option<String>,
}

/// Why a preset's prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresetError {
    /// No prefix.
    #[error("preset {0:?} needs a prefix")]
    NoPrefix(Preset),
    /// Victron's prefix must be `N/<portal id>` (the keep-alive goes to `R/<portal id>`).
    #[error("preset victron_grid needs the prefix N/<portal id>, not {0:?}")]
    NotVictronPrefix(String),
}

fn part(
    topic: String,
    fields: &[(&'static str, &'static str, &'static str, Option<f64>)],
    completes: bool,
) -> PartSpec {
    PartSpec {
        topic,
        fields: fields.to_vec(),
        completes,
    }
}

/// The topics and fields of `preset` under `prefix`.
pub(crate) fn expand(preset: Preset, prefix: &str) -> Result<Expanded, PresetError> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Err(PresetError::NoPrefix(preset));
    }
    let shelly = |power: &str, energy: &str, names: [&'static str; 5]| Expanded {
        parts: vec![
            part(
                format!("{prefix}/status/{power}"),
                &[
                    ("power_w", names[0], "W", None),
                    ("voltage_v", names[1], "V", None),
                    ("current_a", names[2], "A", None),
                ],
                false,
            ),
            part(
                format!("{prefix}/status/{energy}"),
                &[
                    ("import_wh", names[3], "Wh", None),
                    ("export_wh", names[4], "Wh", None),
                ],
                true,
            ),
        ],
        time: None,
        keepalive: None,
    };
    Ok(match preset {
        Preset::ShellyPro3em => shelly(
            "em:0",
            "emdata:0",
            [
                "/total_act_power",
                "/a_voltage",
                "/total_current",
                "/total_act",
                "/total_act_ret",
            ],
        ),
        Preset::ShellyProEm => shelly(
            "em1:0",
            "em1data:0",
            [
                "/act_power",
                "/voltage",
                "/current",
                "/total_act_energy",
                "/total_act_ret_energy",
            ],
        ),
        Preset::Tasmota => Expanded {
            parts: vec![part(
                format!("{prefix}/SENSOR"),
                &[
                    ("import_wh", "/ENERGY/Total", "kWh", None),
                    ("export_wh", "/ENERGY/ExportActive", "kWh", Some(0.0)),
                    ("power_w", "/ENERGY/Power", "W", None),
                    ("voltage_v", "/ENERGY/Voltage", "V", None),
                    ("current_a", "/ENERGY/Current", "A", None),
                    ("reactive_power_var", "/ENERGY/ReactivePower", "var", None),
                ],
                true,
            )],
            time: Some(("/Time", TimeFormat::Local)),
            keepalive: None,
        },
        Preset::VictronGrid => {
            let portal = match prefix.split('/').collect::<Vec<_>>()[..] {
                ["N", portal] if !portal.is_empty() && !portal.contains(['{', '+', '#']) => portal,
                _ => return Err(PresetError::NotVictronPrefix(prefix.into())),
            };
            let ac = format!("{prefix}/grid/{{instance}}/Ac");
            Expanded {
                parts: vec![
                    part(
                        format!("{ac}/Energy/Forward"),
                        &[("import_wh", "/value", "kWh", None)],
                        true,
                    ),
                    part(
                        format!("{ac}/Energy/Reverse"),
                        &[("export_wh", "/value", "kWh", None)],
                        true,
                    ),
                    part(
                        format!("{ac}/Power"),
                        &[("power_w", "/value", "W", None)],
                        false,
                    ),
                ],
                time: None,
                keepalive: Some(format!("R/{portal}/keepalive")),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victron_needs_a_portal_prefix_and_keeps_it_alive() {
        let e = expand(Preset::VictronGrid, "N/c0619ab1c2d3").unwrap();
        assert_eq!(e.keepalive.as_deref(), Some("R/c0619ab1c2d3/keepalive"));
        assert_eq!(
            e.parts[0].topic,
            "N/c0619ab1c2d3/grid/{instance}/Ac/Energy/Forward"
        );
        for bad in ["victron", "N/{portal}", "N/a/b", "N/"] {
            assert!(expand(Preset::VictronGrid, bad).is_err(), "{bad}");
        }
        assert_eq!(
            expand(Preset::Tasmota, ""),
            Err(PresetError::NoPrefix(Preset::Tasmota))
        );
    }

    #[test]
    fn shelly_makes_a_reading_when_its_energy_arrives() {
        let e = expand(Preset::ShellyPro3em, "shellypro3em-a8032ab12345/").unwrap();
        assert_eq!(e.parts[0].topic, "shellypro3em-a8032ab12345/status/em:0");
        assert!(!e.parts[0].completes);
        assert_eq!(
            e.parts[1].topic,
            "shellypro3em-a8032ab12345/status/emdata:0"
        );
        assert!(e.parts[1].completes);
    }
}
