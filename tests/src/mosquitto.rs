//! A real MQTT broker (`mosquitto` from Debian's package) on loopback for the MQTT tests and
//! benchmark: its own config file (one listener on a free loopback port, anonymous access,
//! persistence in a temporary directory so a restart keeps sessions and queued messages).
//! It is never the packaged service.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `mosquitto` may take to accept connections after start.
pub const MOSQUITTO_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian installs the broker (not on a user's PATH).
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// A running broker, stopped on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker on a free loopback port; panics (the test fails) if it cannot.
    /// `extra` lines go into its config (e.g. `max_inflight_messages 1000`). Its queue per
    /// client is unbounded (`max_queued_messages 0`): mosquitto's default of 1000 drops
    /// QoS 1 messages it has acknowledged to their publisher once a subscriber is that far
    /// behind, which is the broker's loss, not the gateway's.
    pub fn start(extra: &[&str]) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        // Started as root, mosquitto drops to its own user: it must still be able to write
        // its persistence file and log here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod temp dir");
        let port = crate::free_port();
        let config = dir.path().join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence true\npersistence_location {}/\nautosave_interval 0\nlog_dest file {}\n{}\n",
            dir.path().display(),
            dir.path().join("mosquitto.log").display(),
            extra.join("\n")
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut broker = Mosquitto {
            child: None,
            port,
            config,
            dir,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let bin = if Path::new(MOSQUITTO_BIN).exists() {
            MOSQUITTO_BIN
        } else {
            "mosquitto"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (apt install mosquitto): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + MOSQUITTO_START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mosquitto exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A broker with a second listener that speaks TLS (MQTT over TLS, `mqtts://`) with a
    /// server certificate for `localhost` signed by a CA made for the test (Debian's
    /// `openssl`); returns the broker (its `port` is the plain listener, for publishers),
    /// the TLS listener's port and the CA's PEM file.
    pub fn start_tls() -> (Mosquitto, u16, PathBuf) {
        let pki = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(
            pki.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let p = |name: &str| pki.path().join(name).display().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl (apt install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gridlog test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        std::fs::write(p("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("server.pem"),
        ]);
        for file in ["server.key", "server.pem", "ca.pem"] {
            std::fs::set_permissions(
                pki.path().join(file),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .expect("chmod");
        }
        let tls_port = crate::free_port();
        let tls = [
            format!("listener {tls_port} 127.0.0.1"),
            format!("cafile {}", p("ca.pem")),
            format!("certfile {}", p("server.pem")),
            format!("keyfile {}", p("server.key")),
        ];
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        let broker = Mosquitto::start(&tls);
        let ca = broker.dir.path().join("ca.pem");
        std::fs::copy(p("ca.pem"), &ca).expect("copy ca");
        (broker, tls_port, ca)
    }

    /// `mqtt://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker as its service would be (SIGTERM: it saves its sessions and
    /// queued messages) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::kill::signal(child.id(), libc::SIGTERM);
            let _ = child.wait();
        }
    }

    /// True if the broker's log shows it restored sessions from its persistence file.
    pub fn restored(&self) -> bool {
        self.log().contains("Restored")
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
