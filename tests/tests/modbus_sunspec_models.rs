//! The other SunSpec models gridlog maps, with registers pysunspec2 encodes: a float meter
//! (213, no scale factors, registers that do not wrap) and a DER inverter (701: `W` with
//! `W_SF`, `TotWhInj` uint64 with `TotWh_SF`, `St` on/off), checking gridlog's offsets
//! against pysunspec2's model definitions.

mod modbus_support;

use modbus_support::{gateway, sunspec_device, wait_reading, Device};

#[test]
fn a_float_meter_and_a_der_inverter_are_mapped_by_their_models() {
    let device = Device::start(&["--models", "213,701"]);
    let (server, _tmp) = gateway(&sunspec_device("der", &device.url(), ""));
    let r = wait_reading(&server, "Acme-SN42-meter", "a float reading", |_| true);
    assert_eq!(r["power_w"], -1500.5, "{r}");
    assert_eq!(r["import_wh"], 123456.5, "{r}");
    assert_eq!(r["export_wh"], 789.25, "{r}");
    assert_eq!(r["voltage_v"], 230.25, "{r}");
    assert_eq!(r["current_a"], 12.5, "{r}");
    assert_eq!(r["reactive_power_var"], 20.0, "{r}");
    let (_, meter) = server.get("/api/v1/meters/Acme-SN42-meter");
    assert!(
        meter["register_bits"].is_null(),
        "float registers do not wrap: {meter}"
    );

    let pv = wait_reading(&server, "Acme-SN42-pv", "the DER's energy", |_| true);
    assert_eq!(pv["export_wh"], 5_000_000_000.0, "{pv}");
    assert_eq!(pv["power_w"], -3100.0, "{pv}");
    let (_, asset) = server.get("/api/v1/assets/Acme-SN42");
    assert_eq!(asset["telemetry"]["power_w"], 3100.0, "{asset}");
    assert_eq!(asset["telemetry"]["status"], "on", "{asset}");
    let (_, pv_meter) = server.get("/api/v1/meters/Acme-SN42-pv");
    assert_eq!(pv_meter["kind"], "pv");
    assert!(pv_meter["register_bits"].is_null(), "{pv_meter}");
}
