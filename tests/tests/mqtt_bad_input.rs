//! Bad MQTT input, each through a real mosquitto: payloads that are not JSON, lack the
//! pointer, are 512 KiB, a unit mistake, a retained message replayed at every reconnection,
//! a packet over `mqtt.packet_bytes_max` (the broker drops it for gridlog: MQTT 5 told it the
//! limit, so it cannot hold up the messages behind it).
//! Each is refused or judged by the engine's rules, counted by its reason, acknowledged
//! (so the broker does not deliver it forever), and the gateway goes on storing good ones;
//! the oversized packet never reaches gridlog, so nothing counts it.

mod mqtt_support;

use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, meter, samples, wait_status, Publisher, TASMOTA_UTC};

/// Besides [`TASMOTA_UTC`].
const OTHER_SOURCES: &str = r#"
[[mqtt.source]]
preset = "shelly_pro_3em"
prefix = "shellies/{device}"
id = "{device}"

[[mqtt.source]]
name = "wrong-unit"
topic = "kwh-as-wh/{device}"
id = "{device}"
time = "/t"
fields.import_wh = { pointer = "/kwh", unit = "Wh" }
fields.export_wh = { pointer = "/out", default = 0 }
fields.power_w = { pointer = "/p" }
"#;

fn sources() -> String {
    format!("{TASMOTA_UTC}{OTHER_SOURCES}")
}

fn tasmota(time: &str, total_kwh: f64) -> String {
    format!(r#"{{"Time":"{time}","ENERGY":{{"Total":{total_kwh},"Power":100}}}}"#)
}

#[test]
fn bad_payloads_are_refused_by_reason_and_the_gateway_goes_on() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gw = gateway(&data, &broker.url(), "", &sources());
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let mut device = Publisher::connect(broker.port, "devices");

    device.publish("tele/a/SENSOR", "this is not json");
    device.publish(
        "tele/a/SENSOR",
        r#"{"Time":"2026-07-01T12:00:00","ENERGY":{"Power":5}}"#,
    );
    device.publish(
        "tele/a/SENSOR",
        r#"{"Time":"noon","ENERGY":{"Total":1,"Power":5}}"#,
    );
    device.publish("tele/a/SENSOR", vec![b'{'; 512 * 1024]);
    device.publish("tele/bad id!/SENSOR", tasmota("2026-07-01T12:00:00", 1.0));
    device.publish("tele/a/SENSOR", tasmota("2026-07-01T12:00:00", 1.0));
    device.wait_acked();
    let status = wait_status(&gw, "five refused, one stored", |s| {
        s["sources"][0]["messages"] == 6 && s["sources"][0]["stored"] == 1
    });
    let refused = &status["sources"][0]["refused"];
    assert_eq!(refused["bad_payload"], 2, "{status:#}");
    assert_eq!(refused["incomplete"], 1, "{status:#}");
    assert_eq!(refused["payload_too_large"], 1, "{status:#}");
    assert_eq!(refused["bad_id"], 1, "{status:#}");
    assert_eq!(meter(&gw, "plug-a")["latest"]["import_wh"], 1000.0);

    // A kWh register configured as Wh: the values arrive 1000× too small and the engine's
    // rules judge them as any reading; a later fix of the unit is a drop it refuses.
    device.publish(
        "kwh-as-wh/meter-x",
        r#"{"t":1782900000,"kwh":1523.4,"p":10}"#,
    );
    device.publish(
        "kwh-as-wh/meter-x",
        r#"{"t":1782900060,"kwh":1200.0,"p":10}"#,
    );
    device.wait_acked();
    let status = wait_status(&gw, "the drop rejected", |s| {
        s["sources"][2]["messages"] == 2
    });
    assert_eq!(status["sources"][2]["stored"], 1, "{status:#}");
    assert_eq!(
        status["sources"][2]["rejected"]["register_decreased"], 1,
        "{status:#}"
    );
    assert_eq!(meter(&gw, "meter-x")["latest"]["import_wh"], 1523.4);
}

#[test]
fn a_retained_message_replayed_at_each_reconnection_is_never_stored_twice() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut device = Publisher::connect(broker.port, "devices");
    // Retained before gridlog subscribes: the broker sends them at every subscription.
    device.publish_with("tele/r/SENSOR", tasmota("2026-07-01T12:00:00", 2.0), true);
    device.publish_with("shellies/s/status/em:0", samples::SHELLY_EM, true);
    device.publish_with("shellies/s/status/emdata:0", samples::SHELLY_EMDATA, true);
    device.wait_acked();

    let mut gw = gateway(&data, &broker.url(), "", &sources());
    let status = wait_status(&gw, "retained seen", |s| {
        s["sources"][0]["stored"] == 1 && s["sources"][1]["messages"] == 2
    });
    // Shelly's payloads carry no time: a retained one is of unknown age, not a reading of now.
    assert_eq!(
        status["sources"][1]["refused"]["retained_without_time"], 2,
        "{status:#}"
    );
    gw.stop();
    drop(gw);

    // Restarted: subscribed again, the retained messages come again. Tasmota's carries its
    // time, so it is the same reading: a duplicate, not a second one.
    let gw = gateway(&data, &broker.url(), "", &sources());
    let status = wait_status(&gw, "retained seen again", |s| {
        s["sources"][0]["messages"].as_u64() >= Some(1)
    });
    assert_eq!(status["sources"][0]["duplicates"], 1, "{status:#}");
    assert_eq!(status["sources"][0]["stored"], 0, "{status:#}");
    assert_eq!(meter(&gw, "plug-r")["readings"], 1);
    let (code, _) = gw.get("/api/v1/meters/s");
    assert_eq!(
        code, 404,
        "nothing stored for the Shelly from retained messages"
    );
}

#[test]
fn a_packet_over_packet_bytes_max_never_holds_up_the_messages_behind_it() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Keys of [mqtt] come before the sources.
    let config = format!("packet_bytes_max = 65536\n{}", sources());
    let gw = gateway(&data, &broker.url(), "", &config);
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let mut device = Publisher::connect(broker.port, "devices");
    device.publish("tele/a/SENSOR", tasmota("2026-07-01T12:00:00", 1.0));
    device.wait_acked();
    wait_status(&gw, "the reading stored", |s| {
        s["sources"][0]["stored"] == 1
    });
    // Under MQTT 3.1.1 this packet dropped the connection at every delivery, and the
    // persistent session delivered it again first after every reconnection: nothing behind
    // it ever arrived. The broker now knows gridlog's limit and drops it for gridlog.
    device.publish("tele/a/SENSOR", vec![b'{'; 100 * 1024]);
    device.wait_acked();
    device.publish("tele/a/SENSOR", tasmota("2026-07-01T12:01:00", 1.5));
    device.wait_acked();
    let status = wait_status(&gw, "the reading behind the oversized packet stored", |s| {
        s["sources"][0]["stored"] == 2
    });
    assert_eq!(status["connected"], true, "{status:#}");
    assert!(status["last_error"].is_null(), "{status:#}");
    assert_eq!(meter(&gw, "plug-a")["latest"]["import_wh"], 1500.0);
    assert_eq!(gw.get("/healthz").0, 200);
}
