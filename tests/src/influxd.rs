//! A real InfluxDB 1.6 (`influxd` from Debian's `influxdb`) on loopback, for the line
//! protocol tests and benchmark: its own config file (`reporting-disabled`, temporary
//! `meta`/`data`/`wal` directories, HTTP and RPC on free loopback ports, every other
//! listener off). It is never the packaged service.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `influxd` may take to answer `/ping` after start.
pub const INFLUXD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `influxd` with its own configuration and directories, stopped on drop.
#[derive(Debug)]
pub struct Influxd {
    child: Option<Child>,
    /// `http://127.0.0.1:port`.
    pub base: String,
    dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts `influxd` on free loopback ports in a temporary directory; panics (the test
    /// fails) if it cannot.
    pub fn start() -> Influxd {
        Influxd::start_in(tempfile::tempdir().expect("temp dir"))
    }

    /// Like [`Influxd::start`], with its data in `dir` (a benchmark's disk).
    pub fn start_in(dir: tempfile::TempDir) -> Influxd {
        let (http, rpc) = (crate::free_port(), crate::free_port());
        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{meta}"
[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
  auth-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[[udp]]
  enabled = false
[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
"#,
            meta = path("meta"),
            data = path("data"),
            wal = path("wal"),
        );
        let config_path: PathBuf = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).expect("write influxdb.conf");
        let log = std::fs::File::create(dir.path().join("influxd.log")).expect("log file");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "influxd cannot start ({e}): install Debian's influxdb (scripts/test.sh does)"
                )
            });
        let mut influxd = Influxd {
            child: Some(child),
            base: format!("http://127.0.0.1:{http}"),
            dir,
        };
        influxd.wait_ready();
        influxd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + INFLUXD_START_TIMEOUT;
        while Instant::now() < deadline {
            let ping = ureq::get(&format!("{}/ping", self.base))
                .timeout(Duration::from_secs(5))
                .call();
            if ping.is_ok_and(|r| r.status() == 204) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("influxd exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "influxd did not answer /ping within {INFLUXD_START_TIMEOUT:?}: {}",
            self.log()
        );
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
