//! Modbus RTU: gridlog polls a SunSpec device (pymodbus's serial server) at the other end of
//! a serial line (a `socat` pty pair), discovers its map and stores what it reads, exactly as
//! over TCP. A second device asking for the same port at another baud rate is refused.

mod modbus_support;

use modbus_support::{device_status, gateway, wait_reading, Device, SerialPair};
use serde_json::json;

#[test]
fn a_sunspec_device_on_a_serial_line_is_discovered_and_polled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let line = SerialPair::start(dir.path());
    let mut device = Device::start_serial(&line.device, &["--unit", "7"]);
    let config = format!(
        "[[modbus.device]]\nname = \"rs485\"\nurl = \"rtu://{}?baud=9600&parity=N\"\nunit_id = 7\n\
         sunspec = true\nrated_power_w = 10000\ninterval_ms = 500\ntimeout_ms = 400\n\
         [[modbus.device]]\nname = \"other-baud\"\nurl = \"rtu://{}?baud=19200\"\nunit_id = 8\n\
         sunspec = true\nrated_power_w = 10000\n",
        line.gateway.display(),
        line.gateway.display()
    );
    let (server, _tmp) = gateway(&config);
    let first = wait_reading(&server, "Acme-SN42-meter", "a reading over RTU", |_| true);
    assert_eq!(first["import_wh"], 1_000_000.0, "{first}");
    assert_eq!(
        first["voltage_v"].as_f64().map(|v| (v * 10.0).round()),
        Some(2301.0)
    );
    device.set(203, json!({"W": -2500, "W_SF": 0}));
    wait_reading(&server, "Acme-SN42-meter", "the changed power", |r| {
        r["power_w"] == -2500.0
    });
    let d = device_status(&server, "rs485");
    assert_eq!(d["connected"], true, "{d}");
    assert_eq!(d["unavailable"], false, "{d}");
    // One serial port is one bus at one setting: a device asking for another is refused.
    let other = device_status(&server, "other-baud");
    assert_eq!(other["unavailable"], true, "{other}");
    let last = other["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("already polled at other settings"), "{last}");
    let (_, asset) = server.get("/api/v1/assets/Acme-SN42");
    assert_eq!(asset["telemetry"]["status"], "mppt", "{asset}");
}
