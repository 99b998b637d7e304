//! The polled Modbus devices on the dashboard's System page, in a real browser: one row per
//! device with its state, and a device whose configuration is unusable shown unavailable
//! with the error that names its register; a device that stops answering turns
//! unavailable on the page too.

#[allow(dead_code)]
mod browser_support;
mod modbus_support;

use browser_support::*;
use modbus_support::{gateway, sunspec_device, wait_reading, Device};

/// The row of device `name`: its cells' text, or null while it is not on the page.
fn row(name: &str) -> String {
    format!(
        "const r = document.querySelector('#view-system [data-part=devices] tr[data-device=\"{name}\"]'); \
         return r && !document.querySelector('#view-system').hidden ? Array.from(r.cells, c => c.textContent) : null"
    )
}

#[test]
fn the_system_page_lists_the_devices_and_their_failures() {
    let chromium = executable("chromium");
    let chromedriver = executable("chromedriver");
    let tmp = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start(&chromedriver, tmp.path());
    let mut device = Device::start(&["--models", "203"]);
    let config = sunspec_device("roof", &device.url(), "failures_max = 1")
        + "[[modbus.device]]\nname = \"typo\"\nurl = \"tcp://127.0.0.1:1\"\nid = \"x\"\n\
           registers = [ { field = \"import_wh\", address = 7, type = \"u24\" } ]\n";
    let (server, _dir) = gateway(&config);
    wait_reading(&server, "Acme-SN42", "a first reading", |_| true);
    let base = server.url("/#/system");

    in_desktop_browser(&driver, &chromium, |c| async move {
        c.goto(&base).await.expect("open the System page");
        let roof = wait_js(&c, &row("roof"), WAIT, "the device's row").await;
        assert_eq!(roof[1], "connected", "{roof}");
        let typo = wait_js(&c, &row("typo"), WAIT, "the bad device's row").await;
        assert_eq!(typo[1], "unavailable", "{typo}");
        let last_error = typo[6].as_str().unwrap_or_default();
        assert!(
            last_error.contains("register 7: unknown type \"u24\""),
            "{typo}"
        );
        device.mode("silent", 0);
        wait_js(
            &c,
            "const r = document.querySelector('#view-system [data-part=devices] tr[data-device=\"roof\"]'); \
             return r && r.cells[1].textContent === 'unavailable'",
            WAIT,
            "the silent device unavailable on the page",
        )
        .await;
    });
}
