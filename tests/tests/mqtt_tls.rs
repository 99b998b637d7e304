//! `mqtts://`: gridlog reaches a mosquitto listener that speaks only TLS, checking the
//! broker's certificate against the CA in `mqtt.ca_file`, and stores what a device
//! publishes; with the system's roots instead (which do not hold the test's CA) it does not
//! connect, and says why in status.

mod mqtt_support;

use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, meter, samples, wait_status, Publisher, TASMOTA_UTC};

#[test]
fn a_tls_broker_is_reached_with_its_ca_and_refused_without_it() {
    let (broker, tls_port, ca) = Mosquitto::start_tls();
    let url = format!("mqtts://localhost:{tls_port}");
    let tmp = tempfile::tempdir().unwrap();

    let untrusted = gateway(&tmp.path().join("untrusted"), &url, "", TASMOTA_UTC);
    let status = wait_status(&untrusted, "a certificate error", |s| {
        s["last_error"].is_string()
    });
    assert_eq!(status["connected"], false, "{status:#}");
    let error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("tls"),
        "{status:#}"
    );
    drop(untrusted);

    // The `[mqtt]` key goes before the sources, still inside that section.
    let sources = format!("ca_file = \"{}\"\n{TASMOTA_UTC}", ca.display());
    let gw = gateway(&tmp.path().join("trusted"), &url, "", &sources);
    wait_status(&gw, "connected over TLS", |s| s["connected"] == true);
    // The device publishes on the broker's plain listener; gridlog receives over TLS.
    let mut device = Publisher::connect(broker.port, "plug");
    device.publish("tele/tls/SENSOR", samples::TASMOTA_SENSOR);
    device.wait_acked();
    wait_status(&gw, "stored", |s| s["sources"][0]["stored"] == 1);
    assert_eq!(meter(&gw, "plug-tls")["latest"]["import_wh"], 12345.0);
}
