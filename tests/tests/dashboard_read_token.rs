//! The dashboard on a gateway with a read token, in a real browser: the page loads (its
//! files are open), its first reads answer 401 and it asks for the token in a form (not a
//! dialog); a wrong token is shown as refused with the gateway's words and asked for again;
//! the right one shows the data and the live stream, and is kept in the tab's
//! sessionStorage only.

#[allow(dead_code)]
mod browser_support;

use browser_support::*;
use fantoccini::{Client, Locator};
use gridlog_tests::server::{post_raw, Server};

const READ: &str = "r3ad-token";
const METER: &str = "m-token";

/// Types `token` into the form and submits it.
async fn enter(c: &Client, token: &str) {
    let input = c.find(Locator::Css("#auth-token")).await.expect("input");
    input.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("#auth button[type=submit]"))
        .await
        .expect("submit button")
        .click()
        .await
        .expect("submit");
}

#[test]
fn the_page_asks_for_the_read_token_once_then_shows_data() {
    let chromium = executable("chromium");
    let chromedriver = executable("chromedriver");
    let tmp = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start(&chromedriver, tmp.path());
    let server = Server::start(&["--read-token", READ]);
    let meter = format!(r#"{{"id":"{METER}","kind":"grid"}}"#);
    let (status, _) = post_raw(
        &server.url("/api/v1/meters"),
        "application/json",
        &[],
        meter.as_bytes(),
    );
    assert_eq!(status, 201);
    let base = server.url("/#/meters");

    in_desktop_browser(&driver, &chromium, |c| async move {
        c.goto(&base).await.expect("open the page");
        wait_js(
            &c,
            "const f = document.querySelector('#auth'); return f && !f.hidden",
            WAIT,
            "the token form",
        )
        .await;
        let forms = js(
            &c,
            "return document.querySelectorAll('form#auth:not([hidden])').length",
        )
        .await;
        assert_eq!(forms, 1);
        let banner = wait_js(
            &c,
            "const b = document.querySelector('#banner'); return !b.hidden && b.textContent.includes('401') && b.textContent",
            WAIT,
            "the refused reads in the banner",
        )
        .await;
        assert!(
            banner.as_str().unwrap_or_default().contains("unauthorized"),
            "{banner}"
        );

        enter(&c, "not-the-token").await;
        let error = wait_js(
            &c,
            "const e = document.querySelector('#auth-error'); return !e.hidden && !document.querySelector('#auth').hidden && e.textContent",
            WAIT,
            "the wrong token refused",
        )
        .await;
        assert!(
            error.as_str().unwrap_or_default().contains("403 forbidden"),
            "{error}"
        );

        enter(&c, READ).await;
        wait_js(
            &c,
            &format!("return document.querySelector('#meters-table tbody').textContent.includes('{METER}')"),
            WAIT,
            "the meters shown",
        )
        .await;
        wait_js(
            &c,
            "return document.querySelector('#auth').hidden",
            WAIT,
            "the form closed",
        )
        .await;
        wait_js(
            &c,
            "return document.querySelector('#conn').dataset.state === 'live'",
            WAIT,
            "the live stream",
        )
        .await;
        let kept = js(
            &c,
            "return [sessionStorage.getItem('gridlog.readToken'), Object.keys(localStorage).filter(k => localStorage.getItem(k) === 'r3ad-token').length]",
        )
        .await;
        assert_eq!(kept, serde_json::json!([READ, 0]));
    });
}
