//! The recovery point on the dashboard, in a real browser: a gateway ships to a real
//! S3-compatible server (moto) through a proxy; the System page shows what central storage
//! holds as a badge, which turns bad once the uplink has been down longer than
//! `ship.max_lag_s` while readings arrive, and good again once the shipper has caught up.

#[allow(dead_code)]
mod browser_support;
#[allow(dead_code)]
mod ship_support;

use std::time::Duration;

use browser_support::*;
use fantoccini::Client;
use ship_support::*;

const METER: &str = "meter-badge";
const MAX_LAG_S: u64 = 2;
/// Longest wait for the badge to change: the lag must pass the bound, then the page's
/// status refresh must see it.
const BADGE_WAIT: Duration = Duration::from_secs(90);

/// The badge's class and text, or null while it is not on the page.
const BADGE: &str = "const b = document.querySelector('#view-system [data-part=recovery-point]'); \
                     return b && !document.querySelector('#view-system').hidden ? [b.className, b.textContent] : null";

async fn badge_when(c: &Client, class: &str, what: &str) -> String {
    let script = format!(
        "const b = document.querySelector('#view-system [data-part=recovery-point]'); \
         return b && b.classList.contains('{class}') ? b.textContent : null"
    );
    wait_js(c, &script, BADGE_WAIT, what)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_system_page_shows_the_recovery_point_and_when_it_lags() {
    let chromium = executable("chromium");
    let chromedriver = executable("chromedriver");
    let tmp = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start(&chromedriver, tmp.path());
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port, vec![]);
    let mut env = ship_env(&proxy.endpoint(), "badge");
    env.push(("GRIDLOG_SHIP__MAX_LAG_S".into(), MAX_LAG_S.to_string()));
    let gateway = Gateway::serve(&tmp.path().join("gateway"), &env);
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": METER, "kind": "load"}),
    );
    let mut k = 0i64;
    let mut reading = |gateway: &Gateway| {
        k += 1;
        let time = gridlog_tests::server::rfc3339_ms(1_767_225_600_000 + k * 1000);
        let response = gateway.post(
            "/api/v1/readings",
            serde_json::json!({"readings": [{"meter": METER, "time": time,
                "import_wh": k as f64, "export_wh": 0.0, "power_w": 1.0}]}),
        );
        assert_eq!(response["results"][0]["status"], "accepted", "{response}");
    };
    reading(&gateway);
    let base = format!("http://{}/#/system", gateway.addr.unwrap());

    in_desktop_browser(&driver, &chromium, |c| async move {
        c.goto(&base).await.expect("open the System page");
        wait_js(&c, BADGE, WAIT, "the recovery-point badge").await;
        let ok = badge_when(&c, "ok", "a good badge once the reading is shipped").await;
        assert!(ok.contains("central storage holds to offset"), "{ok}");

        // The uplink goes down while readings arrive: the badge turns bad.
        proxy.set_down(true);
        for _ in 0..3 {
            reading(&gateway);
        }
        let bad = badge_when(&c, "bad", "a bad badge while the uplink is down").await;
        assert!(bad.contains("lag"), "{bad}");

        // Back up: the shipper catches up and the badge is good again.
        proxy.set_down(false);
        let ok = badge_when(&c, "ok", "a good badge once the shipper caught up").await;
        assert!(ok.contains("central storage holds to offset"), "{ok}");
    });
}
