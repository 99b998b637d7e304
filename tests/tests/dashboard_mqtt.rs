//! The MQTT card of the System page in a real browser: a gateway subscribed to a real
//! mosquitto shows each source's counts (stored, refused by reason) and the broker
//! connection as a badge, which turns bad while the broker is down and good once the
//! gateway has reconnected.

#[allow(dead_code)]
mod browser_support;
mod mqtt_support;

use std::time::Duration;

use browser_support::*;
use gridlog_tests::mosquitto::Mosquitto;
use mqtt_support::{gateway, samples, total, wait_status, Publisher, TASMOTA_UTC};

/// Longest wait for the page to show a change (the status refresh, a reconnection).
const CHANGE_WAIT: Duration = Duration::from_secs(60);

fn badge_script(class: &str) -> String {
    format!(
        "const b = document.querySelector('#view-system [data-part=mqtt-connection]'); \
         return b && b.classList.contains('{class}') ? b.textContent : null"
    )
}

#[test]
fn the_system_page_shows_mqtt_sources_and_the_broker_connection() {
    let chromium = executable("chromium");
    let chromedriver = executable("chromedriver");
    let tmp = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start(&chromedriver, tmp.path());
    let mut broker = Mosquitto::start(&[]);
    let gw = gateway(&tmp.path().join("data"), &broker.url(), "", TASMOTA_UTC);
    wait_status(&gw, "connected", |s| s["connected"] == true);
    let mut device = Publisher::connect(broker.port, "plug");
    device.publish("tele/kitchen/SENSOR", samples::TASMOTA_SENSOR);
    device.publish("tele/kitchen/SENSOR", "not json");
    device.wait_acked();
    device.disconnect();
    wait_status(&gw, "both seen", |s| total(s, "messages") == 2);
    let base = format!("http://{}/#/system", gw.addr);

    in_desktop_browser(&driver, &chromium, |c| async move {
        c.goto(&base).await.expect("open the System page");
        let card = wait_js(
            &c,
            "const m = document.querySelector('#view-system [data-part=mqtt]'); return m && m.innerText",
            WAIT,
            "the MQTT card",
        )
        .await;
        let card = card.as_str().unwrap_or_default();
        assert!(card.contains("tasmota:tele/{device}"), "{card}");
        assert!(
            card.contains("bad payload 1"),
            "the refusal by its reason: {card}"
        );
        let ok = wait_js(&c, &badge_script("ok"), WAIT, "a good MQTT badge").await;
        assert!(
            ok.as_str().unwrap_or_default().contains("connected"),
            "{ok}"
        );

        broker.stop();
        let bad = wait_js(
            &c,
            &badge_script("bad"),
            CHANGE_WAIT,
            "a bad badge while the broker is down",
        )
        .await;
        assert!(
            bad.as_str().unwrap_or_default().contains("disconnected"),
            "{bad}"
        );

        broker.restart();
        wait_js(
            &c,
            &badge_script("ok"),
            CHANGE_WAIT,
            "a good badge once reconnected",
        )
        .await;
    });
}
