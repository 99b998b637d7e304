//! Upgrading a gateway from the MQTT 3.1.1 client to MQTT 5 loses nothing the broker holds
//! for it: a persistent session an MQTT 3.1.1 client left (subscribed, offline) with
//! messages queued while the gateway was down is taken over by `gridlog serve` under the same
//! client id, and every queued message is stored.

mod mqtt_support;

use std::time::Duration;

use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, meter, wait_status, Publisher, TASMOTA_UTC};
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

/// The client id `mqtt_support::gateway` configures.
const GATEWAY_CLIENT_ID: &str = "gridlog-test";

/// Leaves at the broker the session an MQTT 3.1.1 gateway had: persistent, subscribed to
/// `filter` at QoS 1, now offline.
fn leave_an_mqtt_3_session(port: u16, filter: &str) {
    let mut options = MqttOptions::new(GATEWAY_CLIENT_ID, "127.0.0.1", port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 10);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .expect("subscribe");
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("the MQTT 3.1.1 session: {e}"),
        }
    }
    client.disconnect().expect("disconnect");
    for event in connection.iter() {
        match event {
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn messages_queued_for_an_mqtt_3_session_are_stored_by_the_mqtt_5_gateway() {
    let broker = Mosquitto::start(&[]);
    leave_an_mqtt_3_session(broker.port, "tele/+/SENSOR");
    let mut device = Publisher::connect(broker.port, "plug");
    for (minute, total_kwh) in [(0, 1.0), (1, 1.25), (2, 1.5)] {
        device.publish(
            "tele/a/SENSOR",
            format!(
                r#"{{"Time":"2026-07-01T12:0{minute}:00","ENERGY":{{"Total":{total_kwh},"Power":100}}}}"#
            ),
        );
    }
    device.wait_acked();

    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway(&tmp.path().join("data"), &broker.url(), "", TASMOTA_UTC);
    let status = wait_status(&gw, "the three queued readings stored", |s| {
        s["sources"][0]["stored"] == 3
    });
    assert_eq!(status["connected"], true, "{status:#}");
    let plug = meter(&gw, "plug-a");
    assert_eq!(plug["readings"], 3, "{plug:#}");
    assert_eq!(plug["latest"]["import_wh"], 1500.0, "{plug:#}");
}
