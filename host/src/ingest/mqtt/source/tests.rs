//! Sources against recorded sample payloads of each preset, and the rules of plain ones.

use gridlog_common::domain::{Command, Reading};

use super::*;
use crate::ingest::mqtt::config::{MqttConfig, Preset, SourceConfig};

/// Recorded payloads (README "Feeding gridlog" shows the same).
pub(crate) const SHELLY_EM: &str = r#"{"id":0,"a_current":4.029,"a_voltage":236.1,"a_act_power":951.2,"a_aprt_power":951.9,"a_pf":1,"b_current":4.027,"b_voltage":236.2,"b_act_power":-951.1,"b_aprt_power":951.9,"b_pf":1,"c_current":3.03,"c_voltage":236.3,"c_act_power":715.8,"c_aprt_power":716.1,"c_pf":1,"n_current":null,"total_current":11.086,"total_act_power":715.9,"total_aprt_power":2619.8}"#;
pub(crate) const SHELLY_EMDATA: &str = r#"{"id":0,"a_total_act_energy":2834.35,"a_total_act_ret_energy":0,"b_total_act_energy":0.42,"b_total_act_ret_energy":2680.26,"c_total_act_energy":2136.45,"c_total_act_ret_energy":0,"total_act":4971.22,"total_act_ret":2680.26}"#;
pub(crate) const TASMOTA_SENSOR: &str = r#"{"Time":"2026-07-01T12:00:00","ENERGY":{"TotalStartTime":"2025-01-01T00:00:00","Total":12.345,"Yesterday":0.5,"Today":0.25,"Period":1,"Power":123,"ApparentPower":130,"ReactivePower":40,"Factor":0.95,"Voltage":231,"Current":0.56}}"#;

fn preset(preset: Preset, prefix: &str, id: &str) -> SourceConfig {
    SourceConfig {
        name: String::new(),
        preset: Some(preset),
        prefix: prefix.into(),
        topic: String::new(),
        target: Target::Meter,
        id: id.into(),
        invert: false,
        fields: Default::default(),
        time: None,
        time_format: None,
        time_zone: Some("Europe/Berlin".into()),
        value_age_max_ms: 120_000,
    }
}

fn sources(configs: Vec<SourceConfig>) -> Sources {
    Sources::new(&MqttConfig {
        url: "mqtt://127.0.0.1".into(),
        source: configs,
        ..MqttConfig::default()
    })
    .unwrap()
}

fn message<'a>(topic: &'a str, payload: &'a str, received_ms: i64) -> Message<'a> {
    Message {
        topic,
        payload: payload.as_bytes(),
        retained: false,
        received_ms,
    }
}

fn reading(decoded: Option<(usize, Result<Decoded, MessageError>)>) -> (String, Reading) {
    match decoded {
        Some((_, Ok(Decoded::Command(Command::RecordReading { meter, reading })))) => {
            (meter.to_string(), reading)
        }
        other => panic!("not a reading: {other:?}"),
    }
}

#[test]
fn shelly_combines_power_and_energy_of_one_device() {
    let mut s = sources(vec![preset(
        Preset::ShellyPro3em,
        "shellies/{device}",
        "shelly-{device}",
    )]);
    assert_eq!(
        s.filters(),
        ["shellies/+/status/em:0", "shellies/+/status/emdata:0"]
    );
    // Energy before any power: nothing to store yet.
    let early = s.decode(&message(
        "shellies/pro3em-1/status/emdata:0",
        SHELLY_EMDATA,
        1_000,
    ));
    assert_eq!(
        early.map(|(_, r)| r),
        Some(Err(MessageError::Incomplete { field: "power_w" }))
    );
    let power = s.decode(&message("shellies/pro3em-1/status/em:0", SHELLY_EM, 2_000));
    assert_eq!(power.map(|(_, r)| r), Some(Ok(Decoded::Held)));
    let (meter, r) = reading(s.decode(&message(
        "shellies/pro3em-1/status/emdata:0",
        SHELLY_EMDATA,
        3_000,
    )));
    assert_eq!(meter, "shelly-pro3em-1");
    assert_eq!(
        (r.time_ms, r.import_wh, r.export_wh, r.power_w),
        (3_000, 4971.22, 2680.26, 715.9)
    );
    assert_eq!((r.voltage_v, r.current_a), (Some(236.1), Some(11.086)));
    // Another device's power does not stand in for this one's; stale power is not used.
    let other = s.decode(&message(
        "shellies/pro3em-2/status/emdata:0",
        SHELLY_EMDATA,
        3_000,
    ));
    assert_eq!(
        other.map(|(_, r)| r),
        Some(Err(MessageError::Incomplete { field: "power_w" }))
    );
    let stale = s.decode(&message(
        "shellies/pro3em-1/status/emdata:0",
        SHELLY_EMDATA,
        2_000 + 120_001,
    ));
    assert_eq!(
        stale.map(|(_, r)| r),
        Some(Err(MessageError::Incomplete { field: "power_w" }))
    );
}

#[test]
fn tasmota_reads_kwh_and_local_time_in_the_configured_zone() {
    let mut s = sources(vec![preset(Preset::Tasmota, "tele/{device}", "{device}")]);
    let (meter, r) = reading(s.decode(&message("tele/plug-7/SENSOR", TASMOTA_SENSOR, 0)));
    assert_eq!(meter, "plug-7");
    // 12:00 in Berlin in July is 10:00 UTC.
    assert_eq!(r.time_ms, 1_782_900_000_000);
    assert_eq!(
        (r.import_wh, r.export_wh, r.power_w),
        (12_345.0, 0.0, 123.0)
    );
    assert_eq!(r.reactive_power_var, Some(40.0));
}

#[test]
fn victron_takes_value_payloads_with_null_as_invalid() {
    let mut s = sources(vec![preset(
        Preset::VictronGrid,
        "N/c0619ab1c2d3",
        "grid-{instance}",
    )]);
    assert_eq!(s.keepalive_topics(), ["R/c0619ab1c2d3/keepalive"]);
    let base = "N/c0619ab1c2d3/grid/30/Ac";
    let held = s.decode(&message(
        &format!("{base}/Power"),
        r#"{"value": 850}"#,
        1_000,
    ));
    assert_eq!(held.map(|(_, r)| r), Some(Ok(Decoded::Held)));
    // Forward without Reverse yet: incomplete.
    let first = s.decode(&message(
        &format!("{base}/Energy/Forward"),
        r#"{"value": 1234.5}"#,
        1_100,
    ));
    assert_eq!(
        first.map(|(_, r)| r),
        Some(Err(MessageError::Incomplete { field: "export_wh" }))
    );
    let (meter, r) = reading(s.decode(&message(
        &format!("{base}/Energy/Reverse"),
        r#"{"value": 12.0}"#,
        1_200,
    )));
    assert_eq!(meter, "grid-30");
    assert_eq!(
        (r.import_wh, r.export_wh, r.power_w),
        (1_234_500.0, 12_000.0, 850.0)
    );
    // null is Victron's "invalid": the held value stays as it was, never becomes 0.
    let (_, r) = reading(s.decode(&message(
        &format!("{base}/Energy/Forward"),
        r#"{"value": null}"#,
        1_300,
    )));
    assert_eq!(r.import_wh, 1_234_500.0);
}

#[test]
fn a_plain_source_maps_fields_units_invert_and_payload_time() {
    let config: SourceConfig = toml::from_str(
        r#"
        topic = "site/{device}/energy"
        id = "m-{device}"
        invert = true
        time = "/ts"
        time_format = "unix_ms"
        fields.import_wh = { pointer = "/in", unit = "kWh" }
        fields.export_wh = { pointer = "/out", unit = "kWh" }
        fields.power_w = { pointer = "/p", unit = "kW" }
        "#,
    )
    .unwrap();
    let mut s = sources(vec![config]);
    let (meter, r) = reading(s.decode(&message(
        "site/a1/energy",
        r#"{"ts":5000,"in":2,"out":1,"p":0.5}"#,
        9,
    )));
    assert_eq!(meter, "m-a1");
    assert_eq!(
        (r.time_ms, r.import_wh, r.export_wh, r.power_w),
        (5_000, 1_000.0, 2_000.0, -500.0)
    );
    // Each bad payload is refused with the pointer at fault.
    let mut refused = |payload: &str| match s.decode(&message("site/a1/energy", payload, 9)) {
        Some((0, Err(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(r#"{"ts":5000,"in":2,"p":1}"#),
        MessageError::Incomplete { field: "export_wh" }
    );
    // Not JSON: read as text, which has no time.
    assert!(matches!(
        refused("{not json"),
        MessageError::Payload(PayloadError::MissingTime { .. })
    ));
    assert!(matches!(
        refused(r#"{"ts":"x","in":2,"out":1,"p":1}"#),
        MessageError::Payload(PayloadError::BadTime { .. })
    ));
    assert!(matches!(
        refused(r#"{"ts":1,"in":"two","out":1,"p":1}"#),
        MessageError::Payload(PayloadError::NotANumber { .. })
    ));
    assert!(s.decode(&message("site/a1/other", "{}", 9)).is_none());
    assert!(s.decode(&message("site/a1/energy/x", "{}", 9)).is_none());
}

#[test]
fn retained_messages_without_a_payload_time_are_not_readings_of_now() {
    let mut s = sources(vec![preset(
        Preset::ShellyPro3em,
        "shellies/{device}",
        "{device}",
    )]);
    let retained = Message {
        retained: true,
        ..message("shellies/d/status/em:0", SHELLY_EM, 0)
    };
    assert_eq!(
        s.decode(&retained).map(|(_, r)| r),
        Some(Err(MessageError::RetainedWithoutTime))
    );
    // With a time in the payload, a retained message is a reading of that time.
    let mut t = sources(vec![preset(Preset::Tasmota, "tele/{device}", "{device}")]);
    let retained = Message {
        retained: true,
        ..message("tele/p/SENSOR", TASMOTA_SENSOR, 0)
    };
    reading(t.decode(&retained));
}

#[test]
fn bad_ids_and_too_many_devices_are_refused() {
    let mut s = sources(vec![preset(Preset::Tasmota, "tele/{device}", "{device}")]);
    let bad = s.decode(&message("tele/bad id!/SENSOR", TASMOTA_SENSOR, 0));
    assert!(matches!(bad, Some((0, Err(MessageError::BadId { .. })))));
    let mut shelly = sources(vec![preset(Preset::ShellyPro3em, "s/{device}", "{device}")]);
    for i in 0..DEVICES_PER_SOURCE_MAX {
        let topic = format!("s/d{i}/status/em:0");
        assert_eq!(
            shelly
                .decode(&message(&topic, SHELLY_EM, 0))
                .map(|(_, r)| r),
            Some(Ok(Decoded::Held))
        );
    }
    let one_more = shelly.decode(&message("s/new/status/em:0", SHELLY_EM, 0));
    assert_eq!(
        one_more.map(|(_, r)| r),
        Some(Err(MessageError::TooManyDevices))
    );
}

#[test]
fn configurations_that_cannot_work_are_refused_naming_the_source() {
    let check = |toml_text: &str| {
        let config: SourceConfig = toml::from_str(toml_text).unwrap();
        Sources::new(&MqttConfig {
            source: vec![config],
            ..MqttConfig::default()
        })
        .unwrap_err()
    };
    assert_eq!(check(r#"id = "x""#), SourceError::PresetOrTopic(0));
    assert_eq!(
        check(
            r#"preset = "tasmota"
prefix = "tele/x"
topic = "a"
id = "x""#
        ),
        SourceError::PresetWithFields(0)
    );
    assert!(matches!(
        check(
            r#"topic = "a/{d}"
id = "{e}"
fields.import_wh = { pointer = "/i" }
fields.export_wh = { pointer = "/e" }
fields.power_w = { pointer = "/p" }"#
        ),
        SourceError::BadId { .. }
    ));
    assert!(matches!(
        check(
            r#"topic = "a"
id = "x"
fields.import_wh = { pointer = "/i" }
fields.power_w = { pointer = "/p" }"#
        ),
        SourceError::MissingField {
            field: "export_wh",
            ..
        }
    ));
    assert!(matches!(
        check(
            r#"topic = "a"
id = "x"
fields.import_wh = { pointer = "/i", unit = "kW" }
fields.export_wh = { pointer = "/e" }
fields.power_w = { pointer = "/p" }"#
        ),
        SourceError::Unit { .. }
    ));
    assert!(matches!(
        check(
            r#"topic = "a"
id = "x"
fields.soc_pct = { pointer = "/i" }"#
        ),
        SourceError::UnknownField { .. }
    ));
    assert!(matches!(
        check(
            r#"topic = "a/+"
id = "x""#
        ),
        SourceError::Pattern { .. }
    ));
    assert!(matches!(
        check(
            r#"preset = "tasmota"
prefix = "tele/x"
id = "x"
time_zone = "Mars/Olympus""#
        ),
        SourceError::TimeZone { .. }
    ));
}
