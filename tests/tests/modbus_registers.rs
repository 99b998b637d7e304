//! A device polled through an explicit register map (`registers = [...]`) instead of SunSpec
//! discovery: the points are read where the configuration says, each value with its scale
//! register in the same request, holding and input registers each from their own table in
//! their own requests, and recorded as a meter's readings; an asset target gets telemetry.

mod modbus_support;

use modbus_support::{device_status, gateway, wait_for, wait_reading, Device};
use serde_json::json;

#[test]
fn an_explicit_register_map_is_read_scaled_and_recorded() {
    let mut device = Device::start(&["--models", "203"]);
    device.set(
        203,
        json!({"W": -4321, "W_SF": -1, "TotWhImp": 777_777, "TotWhExp": 12, "TotWh_SF": 1,
               "PhV": 2999}),
    );
    // PhV changed in the holding registers only: the input register keeps 2301.
    // Model 203's body starts at 40072: W +16, W_SF +20, PhV +5, TotWhExp +36,
    // TotWhImp +44, TotWh_SF +52.
    let config = format!(
        "[[modbus.device]]\nname = \"raw\"\nurl = \"{}\"\nid = \"main\"\nmeter_kind = \"load\"\n\
         interval_ms = 200\ntimeout_ms = 150\nregisters = [\n\
         {{ field = \"import_wh\", address = 40116, type = \"acc32\", scale_register = 40124 }},\n\
         {{ field = \"export_wh\", address = 40108, type = \"acc32\", scale_register = 40124 }},\n\
         {{ field = \"power_w\", address = 40088, type = \"i16\", scale_register = 40092 }},\n\
         {{ field = \"voltage_v\", address = 40077, type = \"i16\", scale = 0.1, input = true }},\n]\n\
         [[modbus.device]]\nname = \"raw-asset\"\nurl = \"{}\"\nid = \"inverter\"\n\
         target = \"asset\"\nrated_power_w = 5000\ninterval_ms = 200\ntimeout_ms = 150\n\
         registers = [ {{ field = \"power_w\", address = 40088, type = \"i16\", unit = \"kW\" }} ]\n",
        device.url(),
        device.url()
    );
    let (server, _tmp) = gateway(&config);
    let r = wait_reading(&server, "main", "a reading", |r| r["power_w"] == -432.1);
    assert_eq!(r["import_wh"], 7_777_770.0);
    assert_eq!(r["export_wh"], 120.0);
    assert_eq!(
        r["voltage_v"].as_f64().map(|v| (v * 10.0).round()),
        Some(2301.0)
    );
    let (_, meter) = server.get("/api/v1/meters/main");
    assert_eq!(meter["kind"], "load");
    // acc32 registers scaled by a scale register (TotWh_SF = 1: 10 Wh counts) wrap at
    // 2^32 counts, not 2^32 Wh: a 32-bit registration would refuse readings from 4.3 GWh
    // on, so the meter is registered without a width.
    assert!(
        meter["register_bits"].is_null(),
        "scaled acc32 registers get no Wh width: {meter}"
    );
    // The asset device shares the bus and polls after the meter.
    let asset = wait_for("the asset's telemetry", || {
        let (status, asset) = server.get("/api/v1/assets/inverter");
        (status == 200 && !asset["telemetry"].is_null()).then_some(asset)
    });
    assert_eq!(asset["telemetry"]["power_w"], -4_321_000.0, "{asset}");
    assert_eq!(asset["available"], true, "{asset}");
    let d = device_status(&server, "raw");
    assert_eq!(d["entities"], json!(["main"]));
    assert_eq!(d["unavailable"], false);
}
