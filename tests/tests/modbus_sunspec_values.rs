//! gridlog polls a real SunSpec device (pymodbus serving models 1, 203 and 103 encoded by
//! pysunspec2) and stores exactly what the device means: values scaled by the scale factor
//! read with them, "not implemented" values absent (never 0), an acc32 wrap and a
//! scale-factor change without a spike in the rollups. Debian's `mbpoll` reads the same
//! registers beside gridlog.

mod modbus_support;

use modbus_support::{
    device_status, events, gateway, mbpoll, readings, sunspec_device, wait_for, wait_reading,
    Device,
};
use serde_json::json;

/// Model 203's body in the default image: marker at 40000, model 1 (66) at 40002.
const METER_BODY: u16 = 40072;
const METER: &str = "Acme-SN42-meter";

#[test]
fn readings_are_stored_with_the_exact_scaled_values_and_match_mbpoll() {
    let mut device = Device::start(&[]);
    device.set(
        203,
        json!({"W": 12345, "W_SF": -1, "TotWhImp": 1234567, "TotWhExp": 89, "TotWh_SF": -1,
               "PhV": 2305, "V_SF": -1, "A": 75, "A_SF": -2, "VAR": -12, "VAR_SF": 2}),
    );
    let (server, _tmp) = gateway(&sunspec_device("dev", &device.url(), ""));
    let r = wait_reading(&server, METER, "the scaled reading", |r| {
        r["power_w"] == 1234.5
    });
    assert_eq!(r["import_wh"], 123456.7);
    assert_eq!(r["export_wh"], 8.9);
    assert_eq!(r["voltage_v"], 230.5);
    assert_eq!(
        r["current_a"].as_f64().map(|a| (a * 100.0).round()),
        Some(75.0)
    );
    assert_eq!(r["reactive_power_var"], -1200.0);

    // The same registers through mbpoll: W and W_SF (body offsets 16 and 20).
    let words = mbpoll(device.port, 1, METER_BODY + 16, 5);
    let (w, sf) = (words[0] as i16, words[4] as i16);
    assert_eq!((w, sf), (12345, -1));
    assert_eq!(r["power_w"], f64::from(w) / 10f64.powi(-i32::from(sf)));

    // The inverter: telemetry, and its lifetime energy as a PV meter.
    let (status, asset) = server.get("/api/v1/assets/Acme-SN42");
    assert_eq!(status, 200, "{asset}");
    assert_eq!(asset["kind"], "pv_inverter");
    assert_eq!(asset["telemetry"]["power_w"], 4200.0);
    assert_eq!(asset["telemetry"]["status"], "mppt");
    let pv = wait_reading(&server, "Acme-SN42-pv", "a PV reading", |_| true);
    assert_eq!(
        (pv["export_wh"].clone(), pv["power_w"].clone()),
        (json!(250000.0), json!(-4200.0))
    );

    // Readings fall on the interval's slots (200 ms): the poll's start, not its end.
    for r in readings(&server, METER) {
        let time = r["time"].as_str().expect("time");
        // RFC 3339 with the fraction's trailing zeros left out: ".2Z" is 200 ms.
        let ms: u32 = time.rsplit_once('.').map_or(0, |(_, frac)| {
            format!("{:0<3}", frac.trim_end_matches('Z'))
                .parse()
                .expect("ms")
        });
        assert_eq!(ms % 200, 0, "{time}");
    }
}

#[test]
fn an_acc32_wrap_and_a_scale_factor_change_leave_no_spike_in_the_rollups() {
    let mut device = Device::start(&["--models", "203"]);
    device.set(203, json!({"TotWhImp": 4_294_967_000u64, "TotWh_SF": 0}));
    let (server, _tmp) = gateway(&sunspec_device("dev", &device.url(), ""));
    let meter = "Acme-SN42";
    wait_reading(&server, meter, "the reading before the wrap", |r| {
        r["import_wh"] == 4_294_967_000.0
    });
    // The raw counter wraps at 2^32: 296 Wh to the wrap, 500 after it.
    device.set(203, json!({"TotWhImp": 500}));
    wait_reading(&server, meter, "the reading after the wrap", |r| {
        r["import_wh"] == 500.0
    });
    // The device changes its scale factor with the value: 150 × 10 = 1,500 Wh.
    device.set(203, json!({"TotWhImp": 150, "TotWh_SF": 1}));
    wait_reading(
        &server,
        meter,
        "the reading after the scale factor change",
        |r| r["import_wh"] == 1500.0,
    );
    let rolled: Vec<_> = events(&server, meter)
        .into_iter()
        .filter(|e| e["type"] == "register_rolled_over")
        .collect();
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    let (status, meter_state) = server.get(&format!("/api/v1/meters/{meter}"));
    assert_eq!(status, 200);
    assert_eq!(meter_state["register_bits"], 32);
    assert_eq!(
        meter_state["rejected_last_hour"], 0,
        "nothing refused: {meter_state}"
    );
    let (status, rollups) = server.get(&format!("/api/v1/meters/{meter}/rollups?step=15m"));
    assert_eq!(status, 200, "{rollups}");
    let total: f64 = rollups["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["import_wh"].as_f64().expect("import_wh"))
        .sum();
    assert_eq!(total, 296.0 + 500.0 + 1000.0, "{rollups}");
}

#[test]
fn not_implemented_values_are_absent_and_never_reach_the_engine_as_zero() {
    let mut device = Device::start(&["--models", "203"]);
    let (server, _tmp) = gateway(&sunspec_device("dev", &device.url(), ""));
    let meter = "Acme-SN42";
    wait_reading(&server, meter, "a first reading", |r| {
        r["reactive_power_var"] == 200.0
    });
    // VAR 0x8000: the reading goes on without it.
    device.set(203, json!({"VAR": null}));
    wait_reading(&server, meter, "a reading without VAR", |r| {
        r["reactive_power_var"].is_null()
    });
    // TotWhImp acc32 0 ("not implemented"): nothing is recorded, nothing is rejected.
    device.set(203, json!({"TotWhImp": null}));
    wait_for("polls counted as absent", || {
        let d = device_status(&server, "dev");
        (d["errors"]["absent"].as_u64() >= Some(3)).then_some(d)
    });
    device.set(203, json!({"TotWhImp": 1_000_100}));
    wait_reading(&server, meter, "readings again", |r| {
        r["import_wh"] == 1_000_100.0
    });
    let all = readings(&server, meter);
    assert!(
        all.iter().all(|r| r["import_wh"] != 0.0),
        "an absent register stored as 0"
    );
    let (_, state) = server.get(&format!("/api/v1/meters/{meter}"));
    assert_eq!(state["rejected_last_hour"], 0, "{state}");
    let d = device_status(&server, "dev");
    assert!(d["errors"].get("rejected").is_none(), "{d}");
    assert_eq!(
        d["unavailable"], false,
        "an absent value is not a failed device: {d}"
    );
}

/// An acc32 meter whose energy counts 10 Wh each (`TotWh_SF` 1) is registered without a
/// register width: 2^32 counts are 4.3 × 10^10 Wh, and a 32-bit registration (in Wh) would
/// refuse its readings from 4.3 GWh on. Its readings past 2^32 Wh are stored.
#[test]
fn an_acc32_meter_counting_coarser_than_wh_is_not_a_32_bit_register() {
    let mut device = Device::start(&["--models", "203"]);
    device.set(203, json!({"TotWhImp": 500_000_000u64, "TotWh_SF": 1}));
    let (server, _tmp) = gateway(&sunspec_device("dev", &device.url(), ""));
    let meter = "Acme-SN42";
    wait_reading(&server, meter, "a reading of 5 GWh", |r| {
        r["import_wh"] == 5_000_000_000.0
    });
    let (status, meter_state) = server.get(&format!("/api/v1/meters/{meter}"));
    assert_eq!(status, 200);
    assert!(
        meter_state["register_bits"].is_null(),
        "10 Wh counts get no Wh width: {meter_state}"
    );
    assert_eq!(meter_state["rejected_last_hour"], 0, "{meter_state}");
}
