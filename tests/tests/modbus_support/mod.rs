//! Modbus tests' plumbing: a real SunSpec device (`sunspec_device.py`: pymodbus serving a
//! register image pysunspec2 encodes) on a free loopback port with a control port, gridlog
//! configured to poll it, and `mbpoll` to read the device as an installer would.
//!
//! A device that cannot start fails the test (pymodbus and pysunspec2 are installed by
//! `scripts/test.sh`), it never skips.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridlog_tests::free_port;
use gridlog_tests::server::Server;
use serde_json::{json, Value};

/// Starts of a device tried before a test fails.
const START_ATTEMPTS: usize = 3;
/// How long a test waits for the gateway to reach a state it polls for.
pub const SETTLE: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus_support/sunspec_device.py")
}

/// A running SunSpec device, stopped on drop.
#[derive(Debug)]
pub struct Device {
    child: Child,
    /// Its Modbus TCP port (0 for a serial device).
    pub port: u16,
    control: BufReader<TcpStream>,
}

impl Device {
    /// A device on a free loopback port with `extra` arguments (`--models 203`, `--base 0`).
    pub fn start(extra: &[&str]) -> Device {
        Device::retrying(extra, || {
            let port = free_port();
            (vec!["--port".into(), port.to_string()], port)
        })
    }

    /// `count` devices in one process, each on its own free loopback port (serial numbers
    /// `SN42-0` …); the ports, in that order.
    pub fn start_many(count: usize) -> (Device, Vec<u16>) {
        let mut ports = Vec::new();
        let device = Device::retrying(&[], || {
            ports = (0..count).map(|_| free_port()).collect();
            let list = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            (vec!["--port".into(), list], ports[0])
        });
        (device, ports)
    }

    /// A device on the serial port `path` (RTU).
    pub fn start_serial(path: &Path, extra: &[&str]) -> Device {
        Device::retrying(extra, || {
            (vec!["--serial".into(), path.display().to_string()], 0)
        })
    }

    /// Starts the device with the link arguments `link` gives, again with new ports if it
    /// does not start (another test may take a free port before the device binds it).
    fn retrying(extra: &[&str], mut link: impl FnMut() -> (Vec<String>, u16)) -> Device {
        let mut why = String::new();
        for _ in 0..START_ATTEMPTS {
            let (args, port) = link();
            match Device::try_spawn(&args, extra, port) {
                Ok(device) => return device,
                Err(e) => why = e,
            }
        }
        panic!(
            "the SunSpec device did not start in {START_ATTEMPTS} attempts (pymodbus==3.6.9 and pysunspec2 installed?): {why}"
        )
    }

    fn try_spawn(link: &[String], extra: &[&str], port: u16) -> Result<Device, String> {
        let control_port = free_port();
        let mut child = Command::new("python3")
            .arg(script())
            .args(link)
            .args(["--control-port", &control_port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs pymodbus and pysunspec2)");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let _ = out.read_line(&mut line);
        let control = TcpStream::connect(("127.0.0.1", control_port));
        let control = match (line.trim(), control) {
            ("ready", Ok(control)) => control,
            (said, control) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it said {said:?}; control port: {:?}",
                    control.err()
                ));
            }
        };
        control
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Ok(Device {
            child,
            port,
            control: BufReader::new(control),
        })
    }

    /// Sends one control command; the answer after `ok`.
    pub fn control(&mut self, command: Value) -> String {
        let stream = self.control.get_mut();
        writeln!(stream, "{command}").expect("control write");
        let mut line = String::new();
        self.control.read_line(&mut line).expect("control answer");
        let answer = line.trim().to_string();
        assert!(answer.starts_with("ok"), "{command}: {answer}");
        answer.trim_start_matches("ok").trim().to_string()
    }

    /// Sets points of `model` to raw values (`null` = not implemented), all at once.
    pub fn set(&mut self, model: u16, points: Value) {
        self.control(json!({"op": "set", "model": model, "points": points}));
    }

    /// How the device answers: `normal`, `silent`, `slow` (after `delay_ms`), `short`.
    pub fn mode(&mut self, mode: &str, delay_ms: u64) {
        self.control(json!({"op": "mode", "mode": mode, "delay_ms": delay_ms}));
    }

    /// Writes registers as they are.
    pub fn raw(&mut self, address: u16, words: &[u16]) {
        self.control(json!({"op": "raw", "address": address, "words": words}));
    }

    /// `tcp://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gridlog serve` with `config` (TOML) on a new data directory; the directory is kept with
/// the server's temporary directory.
pub fn gateway(config: &str) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("gridlog.toml");
    std::fs::write(&path, config).expect("write config");
    let data = tmp.path().join("data");
    let server = Server::start_in(&data, "serve", &["--config", &path.display().to_string()]);
    (server, tmp)
}

/// A `[[modbus.device]]` polling `url` for SunSpec every 200 ms.
pub fn sunspec_device(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[modbus.device]]\nname = \"{name}\"\nurl = \"{url}\"\nsunspec = true\nrated_power_w = 10000\ninterval_ms = 200\ntimeout_ms = 150\n{extra}\n"
    )
}

/// Polls `check` until it gives `Some`, for at most [`SETTLE`]; panics naming `what`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The device `name` in `/api/v1/status`.
pub fn device_status(server: &Server, name: &str) -> Value {
    let (status, body) = server.get("/api/v1/status");
    assert_eq!(status, 200, "{body}");
    body["modbus"]
        .as_array()
        .expect("modbus devices")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no device {name} in {}", body["modbus"]))
        .clone()
}

/// The `reading_recorded` events of `meter`, oldest first.
pub fn readings(server: &Server, meter: &str) -> Vec<Value> {
    events(server, meter)
        .into_iter()
        .filter(|e| e["type"] == "reading_recorded")
        .map(|e| e["data"].clone())
        .collect()
}

/// Every event of `entity`, oldest first.
pub fn events(server: &Server, entity: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/entities/{entity}/events?limit=10000"));
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until `meter` has a reading satisfying `check`; returns it.
pub fn wait_reading(
    server: &Server,
    meter: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, || {
        readings(server, meter).into_iter().rev().find(|r| check(r))
    })
}

/// Registers read with Debian's `mbpoll` (holding registers, 0-based `address`).
pub fn mbpoll(port: u16, unit: u8, address: u16, count: u16) -> Vec<u16> {
    let out = Command::new("mbpoll")
        .args([
            "-m",
            "tcp",
            "-p",
            &port.to_string(),
            "-a",
            &unit.to_string(),
        ])
        .args(["-r", &address.to_string(), "-c", &count.to_string()])
        .args(["-0", "-1", "-t", "4:hex", "127.0.0.1"])
        .output()
        .expect("mbpoll runs (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mbpoll failed: {text}");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix('['))
        .filter_map(|l| l.split_once(':'))
        .map(|(_, v)| u16::from_str_radix(v.trim().trim_start_matches("0x"), 16).expect("hex"))
        .collect()
}

/// A pair of connected pseudo-terminals from Debian's `socat` (a serial line with a device
/// at each end), stopped on drop.
#[derive(Debug)]
pub struct SerialPair {
    child: Child,
    /// The gateway's end.
    pub gateway: PathBuf,
    /// The device's end.
    pub device: PathBuf,
}

impl SerialPair {
    /// Links both ends under `dir`.
    pub fn start(dir: &Path) -> SerialPair {
        let (gateway, device) = (dir.join("gateway-tty"), dir.join("device-tty"));
        let end = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let child = Command::new("socat")
            .args([end(&gateway), end(&device)])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("socat runs (scripts/test.sh installs it)");
        let pair = SerialPair {
            child,
            gateway,
            device,
        };
        wait_for("socat's pty links", || {
            (pair.gateway.exists() && pair.device.exists()).then_some(())
        });
        pair
    }
}

impl Drop for SerialPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
