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
    // The scheme's name is case-insensitive.
    let (s, b) = post_raw(
        &url,
        "application/json",
        &[("Authorization", "bearer s3cret-token")],
        br#"{"id":"m1","kind":"grid"}"#,
    );
    assert_eq!(s, 200, "{b}");
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

#[test]
fn a_token_with_spaces_or_non_ascii_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for token in ["s3cret ", " s3cret", "s3cr\u{e9}t"] {
        let output = gridlog_tests::gridlog_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--write-token", token])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{token:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("write_token") && stderr.contains("visible ASCII"),
            "{token:?}: {stderr}"
        );
    }
}

#[test]
fn the_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let server = Server::start(&["--write-token-file", &file]);
    let url = server.url("/api/v1/meters");
    let body = br#"{"id":"m1","kind":"grid"}"#;
    assert_eq!(post_raw(&url, "application/json", &[], body).0, 401);
    let (s, b) = post_raw(
        &url,
        "application/json",
        &[("Authorization", "Bearer from-a-file")],
        body,
    );
    assert_eq!(s, 201, "{b}");
}
