//! Devices that fail while gridlog polls them — stop answering, answer late, answer the
//! wrong length, have a broken SunSpec chain or an unusable configuration — are reported by
//! name and register, marked unavailable (an availability event for an inverter), and never
//! keep gridlog from polling the others. A late answer never lands in another request.

mod modbus_support;

use modbus_support::{
    device_status, events, gateway, readings, sunspec_device, wait_for, wait_reading, Device,
};
use serde_json::{json, Value};

fn error_count(d: &Value, kind: &str) -> u64 {
    d["errors"][kind].as_u64().unwrap_or(0)
}

fn availability(server: &gridlog_tests::server::Server, asset: &str) -> Vec<bool> {
    events(server, asset)
        .into_iter()
        .filter(|e| e["type"] == "availability_changed")
        .map(|e| e["data"]["available"].as_bool().expect("available"))
        .collect()
}

#[test]
fn a_device_that_stops_answering_is_unavailable_while_the_others_are_polled_and_comes_back() {
    let mut down = Device::start(&[]);
    let other = Device::start(&["--models", "203", "--sn", "OTHER"]);
    let config = sunspec_device("down", &down.url(), "failures_max = 2")
        + &sunspec_device("other", &other.url(), "");
    let (server, _tmp) = gateway(&config);
    wait_reading(&server, "Acme-SN42-meter", "a first reading", |_| true);

    down.mode("silent", 0);
    wait_for("the silent device to be unavailable", || {
        let d = device_status(&server, "down");
        (d["unavailable"] == true).then_some(d)
    });
    wait_for("the asset's availability event", || {
        (availability(&server, "Acme-SN42") == [false]).then_some(())
    });
    let before = readings(&server, "Acme-OTHER").len();
    wait_for("the other device to go on", || {
        (readings(&server, "Acme-OTHER").len() >= before + 5).then_some(())
    });

    down.set(203, json!({"W": 777}));
    down.mode("normal", 0);
    wait_reading(
        &server,
        "Acme-SN42-meter",
        "readings after it is back",
        |r| r["power_w"] == 777.0,
    );
    wait_for("the asset available again", || {
        (availability(&server, "Acme-SN42") == [false, true]).then_some(())
    });
    let d = device_status(&server, "down");
    assert_eq!(d["unavailable"], false, "{d}");
    assert!(error_count(&d, "timeout") >= 2, "{d}");
}

#[test]
fn a_slow_device_whose_answers_come_after_the_timeout_never_desynchronises_values() {
    let mut device = Device::start(&[]);
    let (server, _tmp) = gateway(&sunspec_device("slow", &device.url(), "failures_max = 100"));
    wait_reading(&server, "Acme-SN42-meter", "a first reading", |_| true);
    // Answers arrive 300 ms after each request, past the 150 ms timeout.
    device.mode("slow", 300);
    wait_for("timeouts", || {
        let d = device_status(&server, "slow");
        (error_count(&d, "timeout") >= 3).then_some(())
    });
    device.set(203, json!({"W": 321}));
    device.mode("normal", 0);
    wait_reading(&server, "Acme-SN42-meter", "the new value", |r| {
        r["power_w"] == 321.0
    });
    // Wait a few more polls: a late answer taken for a later request would show here.
    let n = readings(&server, "Acme-SN42-meter").len();
    wait_for("more readings", || {
        (readings(&server, "Acme-SN42-meter").len() >= n + 5).then_some(())
    });
    for r in readings(&server, "Acme-SN42-meter") {
        assert!(r["power_w"] == 1500.0 || r["power_w"] == 321.0, "{r}");
        assert_eq!(r["import_wh"], 1_000_000.0, "{r}");
    }
    let (_, asset) = server.get("/api/v1/assets/Acme-SN42");
    assert_eq!(asset["telemetry"]["power_w"], 4200.0, "{asset}");
}

#[test]
fn an_answer_of_the_wrong_length_is_an_error_naming_the_register() {
    let mut device = Device::start(&["--models", "203"]);
    let (server, _tmp) = gateway(&sunspec_device("short", &device.url(), ""));
    wait_reading(&server, "Acme-SN42", "a first reading", |_| true);
    device.mode("short", 0);
    let d = wait_for("a wrong length", || {
        let d = device_status(&server, "short");
        (error_count(&d, "wrong_length") + error_count(&d, "transport") >= 1).then_some(d)
    });
    let last = d["last_error"].as_str().expect("last_error");
    assert!(last.contains("register 40072"), "{last}");
    device.mode("normal", 0);
    let n = readings(&server, "Acme-SN42").len();
    wait_for("readings again", || {
        (readings(&server, "Acme-SN42").len() > n).then_some(())
    });
}

#[test]
fn broken_maps_and_configurations_are_reported_and_the_others_are_polled() {
    // Model 203's length runs past the 16-bit address space.
    let mut past_space = Device::start(&["--models", "203"]);
    past_space.raw(40071, &[60000]);
    // Model 203's length runs past the device's map: the next header is an illegal address.
    let mut past_map = Device::start(&["--models", "203"]);
    past_map.raw(40071, &[2000]);
    // No SunSpec marker anywhere.
    let mut no_marker = Device::start(&["--models", "203"]);
    no_marker.raw(40000, &[0, 0]);
    let good = Device::start(&["--models", "203", "--base", "50000", "--sn", "GOOD"]);
    let bad_config =
        "[[modbus.device]]\nname = \"typo\"\nurl = \"tcp://127.0.0.1:1\"\nid = \"x\"\n\
        registers = [\n { field = \"import_wh\", address = 0, type = \"u32\" },\n\
         { field = \"export_wh\", address = 2, type = \"u24\" },\n\
         { field = \"power_w\", address = 4, type = \"i16\" },\n]\n";
    let config = sunspec_device("past_space", &past_space.url(), "")
        + &sunspec_device("past_map", &past_map.url(), "")
        + &sunspec_device("no_marker", &no_marker.url(), "")
        + &sunspec_device("good", &good.url(), "")
        + bad_config;
    let (server, _tmp) = gateway(&config);
    let expect = [
        ("past_space", "chain", "model 203 at register 40070"),
        ("past_map", "exception", "register 42072"),
        ("no_marker", "no_sunspec", "no SunSpec marker"),
        (
            "typo",
            "config",
            "device typo: register 2: unknown type \"u24\"",
        ),
    ];
    for (name, kind, text) in expect {
        let d = wait_for(name, || {
            let d = device_status(&server, name);
            (d["unavailable"] == true).then_some(d)
        });
        assert!(error_count(&d, kind) >= 1, "{name}: {d}");
        let last = d["last_error"].as_str().unwrap_or_default();
        assert!(last.contains(text), "{name}: {last:?} should name {text:?}");
    }
    // The same in /metrics, per device.
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text");
    for line in [
        "gridlog_modbus_device_up{device=\"typo\"} 0",
        "gridlog_modbus_poll_errors_total{device=\"typo\",kind=\"config\"} 1",
        "gridlog_modbus_device_up{device=\"good\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    // The device at base 50000 is found and polled all along.
    let n = readings(&server, "Acme-GOOD").len();
    assert!(n >= 1, "the good device was not polled");
    wait_for("the good device to go on", || {
        (readings(&server, "Acme-GOOD").len() >= n + 3).then_some(())
    });
}

#[test]
fn an_inverter_left_unavailable_before_a_restart_is_available_once_it_answers() {
    let mut device = Device::start(&["--models", "103"]);
    let config = sunspec_device("inv", &device.url(), "failures_max = 1");
    let (mut server, tmp) = gateway(&config);
    wait_reading(&server, "Acme-SN42-pv", "a first reading", |_| true);
    device.mode("silent", 0);
    wait_for("the asset unavailable", || {
        (availability(&server, "Acme-SN42") == [false]).then_some(())
    });
    assert!(server.stop().success());
    device.mode("normal", 0);
    let restarted = gridlog_tests::server::Server::start_in(
        &server.data_dir,
        "serve",
        &[
            "--config",
            &tmp.path().join("gridlog.toml").display().to_string(),
        ],
    );
    wait_for("the asset available again", || {
        (availability(&restarted, "Acme-SN42") == [false, true]).then_some(())
    });
}
