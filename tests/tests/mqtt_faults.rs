//! MQTT under faults, with a real mosquitto: a broker restart in the middle of a run loses
//! nothing, and a gateway killed between receiving messages and making them durable gets
//! them again from the broker (it had not acknowledged them) and stores each once.

mod mqtt_support;

use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, meter, total, wait_status, Publisher};

const METERS: u64 = 10;

const SOURCE: &str = r#"
[[mqtt.source]]
topic = "site/{device}/energy"
id = "m-{device}"
time = "/t"
time_format = "unix_ms"
fields.import_wh = { pointer = "/in", unit = "Wh" }
fields.export_wh = { pointer = "/out", unit = "Wh" }
fields.power_w = { pointer = "/p", unit = "W" }
"#;

/// Reading `n` of the run: meter `n % METERS`, one minute apart per meter, import rising.
fn publish_reading(device: &mut Publisher, n: u64) {
    let meter = n % METERS;
    let step = n / METERS;
    let time_ms = 1_764_547_200_000 + step * 60_000;
    let payload = format!(
        r#"{{"t":{time_ms},"in":{},"out":0,"p":{}}}"#,
        1000 + step * 10,
        600 + meter
    );
    device.publish(&format!("site/{meter}/energy"), payload);
}

/// Every meter holds exactly `per_meter` readings: none lost, none twice.
fn assert_each_meter_has(gw: &gridlog_tests::server::Server, per_meter: u64) {
    for m in 0..METERS {
        let body = meter(gw, &format!("m-{m}"));
        assert_eq!(body["readings"], per_meter, "meter m-{m}: {body}");
        let last_step = per_meter - 1;
        assert_eq!(
            body["latest"]["import_wh"],
            (1000 + last_step * 10) as f64,
            "{body}"
        );
    }
}

#[test]
fn a_broker_restart_in_the_middle_of_a_run_loses_nothing() {
    let mut broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway(&tmp.path().join("data"), &broker.url(), "", SOURCE);
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let mut device = Publisher::connect(broker.port, "device");
    let total_readings = 2_000;
    for n in 0..total_readings / 2 {
        publish_reading(&mut device, n);
    }
    device.wait_acked();
    broker.restart();
    for n in total_readings / 2..total_readings {
        publish_reading(&mut device, n);
    }
    device.wait_acked();
    let status = wait_status(&gw, "every reading stored", |s| {
        total(s, "stored") >= total_readings && s["connected"] == true
    });
    assert!(
        status["connections"].as_u64().unwrap() >= 2,
        "the gateway reconnected: {status:#}"
    );
    assert_each_meter_has(&gw, total_readings / METERS);
}

#[test]
fn a_gateway_killed_before_durability_gets_the_messages_again_and_stores_each_once() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Half a second between receipt and the sync that makes a batch durable: the kill
    // below lands inside that window for the messages still waiting.
    let slow_commit = "[wal]\ncommit_delay_ms = 500";
    let mut gw = gateway(&data, &broker.url(), slow_commit, SOURCE);
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let mut device = Publisher::connect(broker.port, "device");
    let total_readings = 1_000;
    for n in 0..total_readings {
        publish_reading(&mut device, n);
    }
    device.wait_acked();
    std::thread::sleep(std::time::Duration::from_millis(200));
    gw.kill();
    drop(gw);

    // The same client id: the broker still holds the session and what it did not get
    // acknowledged.
    let gw = gateway(&data, &broker.url(), "", SOURCE);
    wait_status(&gw, "every reading stored after the restart", |s| {
        s["connected"] == true && stored_readings(&gw) >= total_readings
    });
    assert_each_meter_has(&gw, total_readings / METERS);
}

fn stored_readings(gw: &gridlog_tests::server::Server) -> u64 {
    (0..METERS)
        .map(|m| {
            let (status, body) = gw.get(&format!("/api/v1/meters/m-{m}"));
            if status == 200 {
                body["readings"].as_u64().unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn every_message_of_a_flood_is_acknowledged_once_stored() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut gw = gateway(&data, &broker.url(), "", SOURCE);
    wait_status(&gw, "connected", |s| s["connected"] == true);
    // Far more than the client's request channel holds: acknowledgements that found it
    // full were once dropped, and the broker then waited for them forever.
    let total_readings = 20_000;
    let mut device = Publisher::connect(broker.port, "device");
    for n in 0..total_readings {
        publish_reading(&mut device, n);
    }
    device.wait_acked();
    wait_status(&gw, "every reading stored", |s| {
        total(s, "stored") >= total_readings
    });
    assert_each_meter_has(&gw, total_readings / METERS);
    // Stopped and started again: a message the broker still waits for an
    // acknowledgement of would come again now.
    std::thread::sleep(std::time::Duration::from_secs(1));
    gw.stop();
    drop(gw);
    let gw = gateway(&data, &broker.url(), "", SOURCE);
    wait_status(&gw, "connected again", |s| s["connected"] == true);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = mqtt_support::mqtt_status(&gw);
    assert_eq!(
        total(&status, "messages"),
        0,
        "redelivered after the restart: {status:#}"
    );
}

/// With small log segments a batch of messages can be larger than one log frame: it is
/// stored in as many frames as it takes, never refused whole (and then acknowledged as
/// refused, which would lose every message in it).
#[test]
fn a_batch_larger_than_a_log_frame_is_stored_in_several() {
    let broker = Mosquitto::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway(
        &tmp.path().join("data"),
        &broker.url(),
        "[wal]\nsegment_bytes = 4096",
        SOURCE,
    );
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let total_readings = 3_000;
    let mut device = Publisher::connect(broker.port, "device");
    for n in 0..total_readings {
        publish_reading(&mut device, n);
    }
    device.wait_acked();
    let status = wait_status(&gw, "every reading stored or refused", |s| {
        total(s, "stored") + total(s, "duplicates") >= total_readings
            || s["sources"][0]["rejected"]
                .as_object()
                .is_some_and(|r| !r.is_empty())
    });
    assert_eq!(
        status["sources"][0]["rejected"],
        serde_json::json!({}),
        "{status:#}"
    );
    assert_each_meter_has(&gw, total_readings / METERS);
}
