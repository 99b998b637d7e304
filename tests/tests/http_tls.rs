//! HTTPS: a pair from `gridlog tls-selfsigned`, a real client (curl with `--cacert`, and
//! `openssl s_client` to read the served certificate), tokens over TLS, the dashboard's
//! page; plain HTTP to the TLS port fails and the server stays up; SIGHUP swaps the
//! certificate for new connections and a broken new pair keeps the old one (logged,
//! naming the file); a client that connects and sends nothing is dropped after
//! `tls.handshake_timeout_s` and does not keep others out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridlog_tests::server::{listening_address, START_TIMEOUT};

const READ: &str = "r3ad-token";
const WRITE: &str = "wr1te-token";
/// Longest wait for a change the test causes (a reload, a dropped connection).
const WAIT: Duration = Duration::from_secs(60);

/// A `gridlog serve` over TLS, its log in a file.
struct TlsGateway {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsGateway {
    /// Makes a pair in a new directory, serves with it and `env`, waits until ready.
    fn start(env: &[(&str, &str)]) -> TlsGateway {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        selfsigned(&cert, &key, false);
        let log = dir.path().join("gridlog.log");
        let mut child = gridlog_tests::gridlog_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(["--read-token", READ, "--write-token", WRITE])
            .env("GRIDLOG_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr = listening_address(&mut child, START_TIMEOUT).unwrap();
        let gateway = TlsGateway {
            child,
            addr,
            log,
            dir,
        };
        gateway.wait_until("ready", || gateway.curl(&["/readyz"]).0 == 200);
        gateway
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// curl trusting `cacert` (`None`: the system's roots), `args` with the first being
    /// the path: (HTTP status, 0 if curl failed; body).
    fn curl_with(&self, cacert: Option<&Path>, args: &[&str]) -> (u16, String) {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"]);
        if let Some(cacert) = cacert {
            command.arg("--cacert").arg(cacert);
        }
        command.arg(self.url(args[0])).args(&args[1..]);
        let output = command
            .output()
            .expect("curl (scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let code = if output.status.success() {
            code.trim().parse().unwrap_or(0)
        } else {
            0
        };
        (code, body.to_string())
    }

    fn curl(&self, args: &[&str]) -> (u16, String) {
        self.curl_with(Some(&self.cert()), args)
    }

    /// The SHA-256 fingerprint of the certificate a new connection is served.
    fn served_fingerprint(&self) -> String {
        let client = Command::new("openssl")
            .args(["s_client", "-connect", &self.addr.to_string()])
            .args(["-servername", "localhost"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("openssl");
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        x509.stdin
            .take()
            .unwrap()
            .write_all(&client.stdout)
            .unwrap();
        let output = x509.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn hangup(&self) {
        gridlog_tests::kill::signal(self.child.id(), libc::SIGHUP);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gridlog tls-selfsigned` for localhost and 127.0.0.1.
fn selfsigned(cert: &Path, key: &Path, force: bool) {
    let mut command = gridlog_tests::gridlog_command();
    command
        .arg("tls-selfsigned")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--name", "localhost", "--name", "127.0.0.1", "--days", "30"]);
    if force {
        command.arg("--force");
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn https_serves_the_api_and_the_dashboard_and_plain_http_fails_cleanly() {
    let gateway = TlsGateway::start(&[]);
    let mode = std::fs::metadata(gateway.key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    // A second run does not overwrite the pair.
    let again = gridlog_tests::gridlog_command()
        .arg("tls-selfsigned")
        .arg("--cert")
        .arg(gateway.cert())
        .arg("--key")
        .arg(gateway.key())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let meter = r#"{"id":"m1","kind":"grid"}"#;
    let json = "Content-Type: application/json";
    let post = |token: &str| {
        gateway.curl(&[
            "/api/v1/meters",
            "-H",
            &bearer(token),
            "-H",
            json,
            "-d",
            meter,
        ])
    };
    assert_eq!(post(READ).0, 403, "a read token does not write");
    assert_eq!(post(WRITE).0, 201);
    let (status, body) = gateway.curl(&["/api/v1/meters", "-H", &bearer(READ)]);
    assert_eq!(status, 200);
    assert!(body.contains("\"m1\""), "{body}");
    assert_eq!(gateway.curl(&["/api/v1/meters"]).0, 401);
    let (status, page) = gateway.curl(&["/"]);
    assert_eq!(status, 200);
    assert!(page.contains("<title>gridlog</title>"), "{page}");
    // A client that does not trust the pair refuses it.
    assert_eq!(gateway.curl_with(None, &["/healthz"]).0, 0);

    // Plain HTTP to the TLS port: no HTTP answer, and the server goes on.
    let mut plain = TcpStream::connect(gateway.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert_eq!(gateway.curl(&["/healthz"]).0, 200);

    // The certificate's expiry, for monitoring.
    let (status, body) = gateway.curl(&["/api/v1/status", "-H", &bearer(READ)]);
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status["tls"]["not_after"].is_string(), "{body}");
    let (_, metrics) = gateway.curl(&["/metrics", "-H", &bearer(READ)]);
    assert!(
        metrics.contains("gridlog_tls_certificate_not_after_seconds "),
        "{metrics}"
    );
}

#[test]
fn sighup_swaps_the_certificate_and_a_broken_pair_keeps_the_one_in_force() {
    let gateway = TlsGateway::start(&[]);
    let first = gateway.served_fingerprint();
    assert!(first.contains("Fingerprint="), "{first}");
    let old_cert = gateway.dir.path().join("old-cert.pem");
    std::fs::copy(gateway.cert(), &old_cert).unwrap();

    selfsigned(&gateway.cert(), &gateway.key(), true);
    gateway.hangup();
    gateway.wait_until("the new certificate served", || {
        gateway.served_fingerprint() != first
    });
    let second = gateway.served_fingerprint();
    assert_eq!(
        gateway.curl(&["/healthz"]).0,
        200,
        "the new pair is trusted"
    );
    assert_eq!(
        gateway.curl_with(Some(&old_cert), &["/healthz"]).0,
        0,
        "the old certificate is no longer served"
    );

    // A key that is not PEM: refused, logged naming the file; the pair in force stays.
    std::fs::write(gateway.key(), "not a key\n").unwrap();
    gateway.hangup();
    let key_name = gateway.key().display().to_string();
    gateway.wait_until("the refused reload logged", || {
        gateway.log_text().contains(&key_name)
    });
    assert!(
        gateway.log_text().contains("not reloaded"),
        "{}",
        gateway.log_text()
    );
    assert_eq!(gateway.served_fingerprint(), second);
    assert_eq!(gateway.curl(&["/healthz"]).0, 200);

    // A key of another pair: refused, naming both files.
    let other = gateway.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    selfsigned(&other.join("cert.pem"), &other.join("key.pem"), false);
    std::fs::copy(other.join("key.pem"), gateway.key()).unwrap();
    gateway.hangup();
    gateway.wait_until("the mismatched pair refused", || {
        gateway.log_text().contains("cannot serve the certificate")
    });
    assert_eq!(gateway.served_fingerprint(), second);
    assert_eq!(gateway.curl(&["/healthz"]).0, 200);
}

/// Whether the server closed `socket` (EOF or reset), reading for at most [`WAIT`].
fn closed_by_server(socket: &mut TcpStream) -> bool {
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_client_that_sends_nothing_is_dropped_and_does_not_keep_others_out() {
    const CONNECTIONS_MAX: usize = 3;
    let gateway = TlsGateway::start(&[
        ("GRIDLOG_TLS__HANDSHAKE_TIMEOUT_S", "1"),
        ("GRIDLOG_HTTP__CONNECTIONS_MAX", "3"),
    ]);
    // Idle clients below the cap: another is served while they idle.
    let mut idle: Vec<TcpStream> = (0..CONNECTIONS_MAX - 1)
        .map(|_| TcpStream::connect(gateway.addr).unwrap())
        .collect();
    assert_eq!(gateway.curl(&["/healthz"]).0, 200);
    for socket in &mut idle {
        assert!(closed_by_server(socket), "an idle client was not dropped");
    }
    // Idle clients holding every slot: they are dropped, so the next client is served.
    let mut idle: Vec<TcpStream> = (0..CONNECTIONS_MAX)
        .map(|_| TcpStream::connect(gateway.addr).unwrap())
        .collect();
    assert_eq!(gateway.curl(&["/healthz"]).0, 200);
    for socket in &mut idle {
        assert!(closed_by_server(socket), "an idle client was not dropped");
    }
    // And a stop is not held up by a client in its handshake.
    let _idle = TcpStream::connect(gateway.addr).unwrap();
    let mut gateway = gateway;
    gridlog_tests::kill::signal(gateway.child.id(), libc::SIGTERM);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
