//! Write tokens: 401 without, 403 wrong, accepted right; reads need none. Listening beyond
//! loopback without a token is refused unless the operator says --insecure.

use std::process::Stdio;
use std::time::Duration;

use gridlog_tests::server::{get, post_raw, Server};

#[test]
fn writes_need_the_token_and_reads_do_not() {
    let server = Server::start(&["--write-token", "s3cret-token"]);
    let url = server.url("/api/v1/meters");
    let body = br#"{"id":"m1","kind":"grid"}"#;
    let (s, b) = post_raw(&url, "application/json", &[], body);
    assert_eq!(
        (s, b["error"]["code"].as_str(), b["error"]["field"].as_str()),
        (401, Some("unauthorized"), Some("Authorization"))
    );
    let (s, b) = post_raw(
        &url,
        "application/json",
        &[("Authorization", "Bearer wrong")],
        body,
    );
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, b) = post_raw(
        &url,
        "application/json",
        &[("Authorization", "Basic czNjcmV0LXRva2Vu")],
        body,
    );
    assert_eq!(s, 401, "{b}");
    let (s, b) = post_raw(
        &url,
        "application/json",
        &[("Authorization", "Bearer s3cret-token")],
        body,
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(get(&server.url("/api/v1/meters")).0, 200);
    assert_eq!(
        get(&server.url("/api/v1/meters"))
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_public_address_without_a_token_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = gridlog_tests::gridlog_command()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("write token") && stderr.contains("--insecure"),
        "{stderr}"
    );

    let mut child = gridlog_tests::gridlog_command()
        .args(["serve", "--insecure", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "--insecure should start the server"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
