//! A `gridlog serve` (or `demo`) process for black-box tests: started on a free loopback
//! port with a temporary data directory, stopped or killed at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to print its address and become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a just-spawned `gridlog serve|demo`'s stdout (which must be piped) until it prints
/// `gridlog listening on http://ADDR/` (or `https://`), and returns ADDR. The rest of its output keeps being
/// read (and dropped), so the server never blocks on a full pipe.
pub fn listening_address(child: &mut Child, timeout: Duration) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("its stdout is not piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(line.clone());
            line.clear();
        }
    });
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| {
            let status = child.try_wait().ok().flatten();
            format!("did not print its address within {timeout:?} (exit: {status:?})")
        })?;
        let line = line.trim();
        let rest = line
            .strip_prefix("gridlog listening on http://")
            .or_else(|| line.strip_prefix("gridlog listening on https://"));
        if let Some(rest) = rest {
            let addr = rest.split('/').next().unwrap_or_default();
            return addr
                .parse()
                .map_err(|e| format!("printed a bad address {addr:?}: {e}"));
        }
    }
}

/// A running gridlog server.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// `gridlog serve` on a new temporary data directory.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, "serve", extra);
        s._tmp = Some(tmp);
        s
    }

    /// `gridlog <command>` (serve or demo) on `data_dir`.
    pub fn start_in(data_dir: &Path, command: &str, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, command, extra, &[])
    }

    /// Like [`Server::start_in`], with extra environment variables (`GRIDLOG_*` config).
    pub fn start_with_env(
        data_dir: &Path,
        command: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(data_dir, command, extra, env.iter().copied())
    }

    /// `gridlog <command>` on `data_dir` with `extra` arguments and `env` on top of a clean
    /// environment (`GRIDLOG_LOG=warn` unless `env` says otherwise); waits until ready.
    pub fn spawn<K, V>(
        data_dir: &Path,
        command: &str,
        extra: &[&str],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Server
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        // Only the configuration this server is given: nothing the test process inherited.
        Server::spawn_program(crate::gridlog_command(), data_dir, command, extra, env)
    }

    /// Like [`Server::spawn`], with `program` in place of the test build's `gridlog`: another
    /// build of it (an installed package, another target's binary under qemu), already
    /// holding its leading arguments.
    pub fn spawn_program<K, V>(
        mut program: std::process::Command,
        data_dir: &Path,
        command: &str,
        extra: &[&str],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Server
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut child = program
            .arg(command)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("GRIDLOG_LOG", "warn")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start gridlog");
        let addr = listening_address(&mut child, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("gridlog {command}: {e}"));
        let server = Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
        };
        server.wait_ready();
        server
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path`: status and JSON (or the text as a JSON string); `(0, Null)` if the
    /// server does not answer at all (stopped, killed).
    pub fn get(&self, path: &str) -> (u16, Value) {
        try_get(&self.url(path)).unwrap_or((0, Value::Null))
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok((200, _)) = try_get(&self.url("/readyz")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gridlog at {} never became ready", self.addr);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILL, as a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gridlog did not stop within {START_TIMEOUT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a test waits for shipping to settle.
pub const SHIP_SETTLE: Duration = Duration::from_secs(120);

/// A [`Server`] seen as a shipping gateway: `gridlog serve` configured by environment, with
/// the shipping part of its status at hand. The process is the `Server`'s (start, readiness,
/// kill, stop); this adds the call style of the ship tests.
#[derive(Debug)]
pub struct Gateway {
    server: Server,
    /// Its HTTP address.
    pub addr: Option<SocketAddr>,
}

impl Gateway {
    /// `gridlog serve` on `dir` with `env` (errors only in its log); waits until ready.
    pub fn serve(dir: &Path, env: &[(String, String)]) -> Gateway {
        let env = std::iter::once(("GRIDLOG_LOG", "error"))
            .chain(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let server = Server::spawn(dir, "serve", &[], env);
        Gateway {
            addr: Some(server.addr),
            server,
        }
    }

    /// GET `path`: status and JSON; `(0, Null)` if it does not answer.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.server.get(path)
    }

    /// POST JSON to `path`: the JSON answer; panics unless it is a 2xx.
    pub fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = post(&self.server.url(path), &body);
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {answer}"
        );
        answer
    }

    /// CPU time the process has used so far, all its threads, user and system (from
    /// `/proc/PID/stat`, whose clock ticks `getconf CLK_TCK` gives), in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.server.pid()))
            .expect("/proc/PID/stat");
        // After the command name (in parentheses, which may hold spaces): state is field 3,
        // utime and stime fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf");
        let ticks_per_s: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("CLK_TCK");
        (fields[11] + fields[12]) * 1_000_000_000 / ticks_per_s
    }

    /// The `"shipping"` object of status.
    pub fn shipping(&self) -> Value {
        self.get("/api/v1/status").1["shipping"].clone()
    }

    /// Waits until the backlog is empty and nothing is in flight; panics after
    /// [`SHIP_SETTLE`].
    pub fn wait_shipped(&self) -> Value {
        let deadline = Instant::now() + SHIP_SETTLE;
        loop {
            let s = self.shipping();
            if s["backlog"]["objects"] == 0 && s["state"] == "idle" {
                return s;
            }
            assert!(Instant::now() < deadline, "shipping did not settle: {s:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// SIGTERM and wait; returns the exit code (-1 for a signal).
    pub fn stop(&mut self) -> i32 {
        self.server.stop().code().unwrap_or(-1)
    }
}

impl std::ops::Deref for Gateway {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

pub use crate::kill::signal;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

fn read(response: ureq::Response) -> (u16, Value) {
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn try_get(url: &str) -> Result<(u16, Value), String> {
    match agent().get(url).call() {
        Ok(r) => Ok(read(r)),
        Err(ureq::Error::Status(_, r)) => Ok(read(r)),
        Err(e) => Err(e.to_string()),
    }
}

/// GET; returns status and JSON (or the text as a JSON string).
pub fn get(url: &str) -> (u16, Value) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// POST a raw body with a content type and extra headers.
pub fn post_raw(
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut request = agent().post(url).set("Content-Type", content_type);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    match request.send_bytes(body) {
        Ok(r) => read(r),
        Err(ureq::Error::Status(_, r)) => read(r),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

/// POST JSON.
pub fn post(url: &str, body: &Value) -> (u16, Value) {
    post_raw(url, "application/json", &[], body.to_string().as_bytes())
}

/// RFC 3339 UTC with milliseconds for milliseconds since the epoch (see [`rfc3339`]).
pub fn rfc3339_ms(ms: i64) -> String {
    let base = rfc3339(ms.div_euclid(1000));
    base.replace('Z', &format!(".{:03}Z", ms.rem_euclid(1000)))
}

/// RFC 3339 UTC for seconds since the epoch, computed independently of the server's own
/// formatter (days-from-civil, Howard Hinnant's algorithm).
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
