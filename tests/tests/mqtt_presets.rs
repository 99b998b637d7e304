//! MQTT presets end to end: a real mosquitto, gridlog subscribed to it, and recorded
//! payloads of each device family published as the device does. The readings stored carry
//! exactly the payloads' values in gridlog's units.

mod mqtt_support;

use std::time::Duration;

use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, meter, samples, total, wait_status, Publisher};

const SOURCES: &str = r#"
[[mqtt.source]]
preset = "shelly_pro_3em"
prefix = "shellies/{device}"
id = "shelly-{device}"

[[mqtt.source]]
preset = "tasmota"
prefix = "tele/{device}"
id = "plug-{device}"
time_zone = "Europe/Berlin"

[[mqtt.source]]
preset = "victron_grid"
prefix = "N/c0619ab1c2d3"
id = "victron-grid-{instance}"
"#;

#[test]
fn each_preset_stores_the_exact_values_of_its_recorded_payloads() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway(&tmp.path().join("data"), &broker.url(), "", SOURCES);
    wait_status(&gw, "connected", |s| s["connected"] == true);

    // Victron's keep-alive arrives (R/<portal>/keepalive), or the device stops publishing.
    let keepalive = keepalive_listener(broker.port);

    let mut device = Publisher::connect(broker.port, "devices");
    device.publish("shellies/pro3em-a1/status/em:0", samples::SHELLY_EM);
    device.publish("shellies/pro3em-a1/status/emdata:0", samples::SHELLY_EMDATA);
    device.publish("tele/kitchen/SENSOR", samples::TASMOTA_SENSOR);
    let victron = "N/c0619ab1c2d3/grid/30/Ac";
    device.publish(&format!("{victron}/Power"), r#"{"value": 850}"#);
    device.publish(&format!("{victron}/Energy/Forward"), r#"{"value": 1234.5}"#);
    device.publish(&format!("{victron}/Energy/Reverse"), r#"{"value": 12.25}"#);
    // null is Victron's "invalid": it must not become a reading of 0 kWh.
    device.publish(&format!("{victron}/Energy/Forward"), r#"{"value": null}"#);
    device.wait_acked();

    let status = wait_status(&gw, "all stored", |s| {
        total(s, "messages") == 7 && total(s, "stored") >= 3
    });
    let shelly = meter(&gw, "shelly-pro3em-a1");
    let latest = &shelly["latest"];
    assert_eq!(latest["import_wh"], 4971.22, "{shelly}");
    assert_eq!(latest["export_wh"], 2680.26);
    assert_eq!(latest["power_w"], 715.9);
    assert_eq!(latest["voltage_v"].as_f64().map(|v| v as f32), Some(236.1));

    let plug = meter(&gw, "plug-kitchen");
    assert_eq!(plug["latest"]["import_wh"], 12345.0, "{plug}");
    assert_eq!(plug["latest"]["export_wh"], 0.0);
    assert_eq!(plug["latest"]["power_w"], 123.0);
    // 12:00 local time in Berlin in July is 10:00 UTC.
    assert_eq!(plug["latest"]["time"], "2026-07-01T10:00:00Z");

    let grid = meter(&gw, "victron-grid-30");
    assert_eq!(grid["latest"]["import_wh"], 1_234_500.0, "{grid}");
    assert_eq!(grid["latest"]["export_wh"], 12_250.0);
    assert_eq!(grid["latest"]["power_w"], 850.0);
    // Forward-then-Reverse: one incomplete (no Reverse yet), then readings; the null one
    // repeats the held value, never 0 (the engine would have refused a drop to 0 anyway).
    let victron_source = &status["sources"][2];
    assert_eq!(victron_source["refused"]["incomplete"], 1, "{status:#}");
    assert!(grid["readings"].as_u64().unwrap() >= 1);
    assert_eq!(
        status["sources"][0]["refused"],
        serde_json::json!({}),
        "{status:#}"
    );

    let got = keepalive.recv_timeout(Duration::from_secs(60));
    assert_eq!(got.as_deref(), Ok("R/c0619ab1c2d3/keepalive"));
}

/// The topic of the first keep-alive a subscriber to `R/+/keepalive` sees.
fn keepalive_listener(port: u16) -> std::sync::mpsc::Receiver<String> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let (tx, rx) = std::sync::mpsc::channel();
    let (client, mut connection) =
        Client::new(MqttOptions::new("victron-listener", "127.0.0.1", port), 16);
    client.subscribe("R/+/keepalive", QoS::AtMostOnce).unwrap();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            if let Ok(Event::Incoming(Packet::Publish(p))) = event {
                let _ = tx.send(p.topic);
                return;
            }
        }
    });
    rx
}
