//! Shared by the `ship_*` tests: a real S3-compatible server (moto's `moto_server`) on a free
//! loopback port, a signed S3 client to look into its bucket, a fault-injecting HTTP proxy,
//! data directories with real archived segments and snapshots (made by the engine), and a
//! `gridlog` process with shipping configured by environment.
//!
//! A test that cannot start `moto_server` fails: `scripts/test.sh` installs it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridlog_common::domain::{
    decode_event, Command as DomainCommand, MeterKind, Reading, StoredEvent,
};
use gridlog_common::id::EntityId;
use gridlog_firmware::engine::{
    Engine, EngineOptions, Image, ItemResult, Request, RollupOptions, StorageOptions,
};
use gridlog_firmware::wal::WalOptions;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The bucket every test ships to.
pub const BUCKET: &str = "gridlog-ship";
/// The site id the tests' gateways use.
pub const SITE: &str = "plant-7";
/// Segment size of the tests' logs: small, so many segments exist quickly.
pub const SEGMENT_BYTES: u64 = 16 * 1024;
/// How long a test waits for shipping to settle.
pub const SETTLE: Duration = gridlog_tests::server::SHIP_SETTLE;

pub use gridlog_tests::free_port;

/// A shipping benchmark's setting: the variable `name` if set, else `bench` when
/// `GRIDLOG_SHIP_BENCH=1` (a full run for docs/BENCHMARKS.md) and `ci` otherwise.
pub fn bench_knob(name: &str, bench: u64, ci: u64) -> u64 {
    let full = std::env::var("GRIDLOG_SHIP_BENCH").is_ok_and(|v| v == "1");
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { bench } else { ci })
}

/// A running `moto_server`.
#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

impl Moto {
    /// Starts on a free port with the test bucket; panics (the test fails) if it cannot.
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// Starts on `port` with the test bucket.
    pub fn start_on(port: u16) -> Moto {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server (pip install 'moto[server]'; scripts/test.sh does): {e}"));
        let mut moto = Moto {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((code, _)) = http("PUT", port, &format!("/{BUCKET}"), b"") {
                assert!(
                    code == 200 || code == 409,
                    "moto_server answered {code} to creating the bucket"
                );
                break;
            }
            if let Some(status) = moto
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("moto_server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client for its bucket.
    pub fn bucket(&self) -> Bucket {
        Bucket::new(&self.endpoint())
    }

    /// Stops it (the store goes down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One plain HTTP/1.1 request; returns status and body.
fn http(method: &str, port: u16, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Vec::new(), |i| out[i + 4..].to_vec());
    Ok((code, body))
}

/// A signed S3 client for the test bucket.
#[derive(Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    fn new(endpoint: &str) -> Bucket {
        // object_store's client has no crypto provider of its own (as in the gateway).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .expect("an S3 client");
        Bucket {
            store: Arc::new(store),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    /// Every object under `prefix`: key → bytes.
    pub fn objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        self.runtime.block_on(async {
            use futures_util::StreamExt;
            let prefix = Key::from(prefix);
            let mut keys = Vec::new();
            let mut list = self.store.list(Some(&prefix));
            while let Some(meta) = list.next().await {
                keys.push(meta.expect("list").location);
            }
            let mut out = BTreeMap::new();
            for key in keys {
                let bytes = self
                    .store
                    .get(&key)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body");
                out.insert(key.to_string(), bytes.to_vec());
            }
            out
        })
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix).into_keys().collect()
    }

    /// The `sha256` metadata of an object.
    pub fn metadata_sha256(&self, key: &str) -> Option<String> {
        self.runtime.block_on(async {
            let r = self.store.get(&Key::from(key)).await.expect("get");
            r.attributes
                .get(&object_store::Attribute::Metadata("sha256".into()))
                .map(|v| v.to_string())
        })
    }

    /// Overwrites an object (tampering; the shipper never overwrites).
    pub fn overwrite(&self, key: &str, bytes: Vec<u8>) {
        self.runtime
            .block_on(self.store.put(&Key::from(key), PutPayload::from(bytes)))
            .expect("put");
    }

    /// Deletes an object.
    pub fn delete(&self, key: &str) {
        self.runtime
            .block_on(self.store.delete(&Key::from(key)))
            .expect("delete");
    }
}

/// What the fault proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer this status without forwarding.
    Status(u16),
    /// Forward it, then answer this status instead of the store's answer.
    ForwardThenStatus(u16),
    /// Read the head and part of the body, then reset the connection.
    ResetMidBody,
    /// Forward it, then say nothing for this long, then close.
    ForwardThenStall(Duration),
    /// Say nothing for this long, then close.
    Stall(Duration),
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path (with query).
    pub path: String,
    /// What it did.
    pub fault: Fault,
    /// The store's status, if it was forwarded.
    pub store_status: Option<u16>,
}

/// The proxy's script: a fault for the next request of a method (`None`: any).
pub type Script = Vec<(Option<&'static str>, Fault)>;

/// A script whose faults also name part of the request's path (`""`: any path), such as
/// `"/chunks/"` or `"/manifests/"`.
pub type PathScript = Vec<(Option<&'static str>, &'static str, Fault)>;

/// A loopback HTTP proxy in front of the store that injects faults from a script, one per
/// request, then passes everything through.
#[derive(Debug)]
pub struct FaultProxy {
    /// Its port.
    pub port: u16,
    script: Arc<Mutex<PathScript>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxies to `upstream_port`. Each request takes the first fault of `script` meant for
    /// its method (`None`: any method); when none is left, requests pass.
    pub fn start(upstream_port: u16, script: Script) -> FaultProxy {
        let script = script.into_iter().map(|(m, f)| (m, "", f)).collect();
        FaultProxy::start_with_paths(upstream_port, script)
    }

    /// As [`FaultProxy::start`], each fault taken by the first request of its method whose
    /// path contains its path part.
    pub fn start_with_paths(upstream_port: u16, script: PathScript) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let proxy = FaultProxy {
            port,
            script: Arc::new(Mutex::new(script)),
            seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let (script, seen, stop) = (proxy.script.clone(), proxy.seen.clone(), proxy.stop.clone());
        let down = proxy.down.clone();
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) if down.load(Ordering::Relaxed) => {
                        // The uplink is down: the connection is closed at once, unanswered.
                        drop(client);
                    }
                    Ok((client, _)) => {
                        let (script, seen) = (script.clone(), seen.clone());
                        std::thread::spawn(move || {
                            let _ = serve_one(client, upstream_port, &script, &seen);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Takes the uplink down (every new connection is closed at once, unanswered) or up again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Faults not yet used.
    pub fn faults_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    client: TcpStream,
    upstream: u16,
    script: &Mutex<PathScript>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = head[0].trim().to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let length: usize = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    assert!(
        !head
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding")),
        "the proxy does not handle chunked requests"
    );
    let fault = {
        let mut script = script.lock().unwrap();
        match script
            .iter()
            .position(|(m, p, _)| m.is_none_or(|m| m == method) && path.contains(p))
        {
            Some(i) => script.remove(i).2,
            None => Fault::Pass,
        }
    };
    let mut record = Seen {
        method: method.clone(),
        path,
        fault,
        store_status: None,
    };
    if fault == Fault::ResetMidBody {
        let mut part = vec![0u8; length / 2];
        reader.read_exact(&mut part)?;
        seen.lock().unwrap().push(record);
        // Unread bytes in the receive buffer make close() send a reset.
        drop(reader);
        drop(client);
        return Ok(());
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let forward = |head: &[String], body: &[u8]| -> std::io::Result<(u16, Vec<u8>)> {
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.set_read_timeout(Some(Duration::from_secs(30)))?;
        for h in head {
            if h.to_ascii_lowercase().starts_with("connection:") || h == "\r\n" {
                continue;
            }
            up.write_all(h.as_bytes())?;
        }
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(body)?;
        let mut out = Vec::new();
        up.read_to_end(&mut out)?;
        let code = String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((code, out))
    };
    let mut client = client;
    match fault {
        Fault::Pass => {
            let (code, response) = forward(&head, &body)?;
            record.store_status = Some(code);
            seen.lock().unwrap().push(record);
            client.write_all(&response)?;
        }
        Fault::Status(code) => {
            seen.lock().unwrap().push(record);
            client.write_all(error_response(code).as_bytes())?;
        }
        Fault::ForwardThenStatus(code) => {
            let (store, _) = forward(&head, &body)?;
            record.store_status = Some(store);
            seen.lock().unwrap().push(record);
            client.write_all(error_response(code).as_bytes())?;
        }
        Fault::ForwardThenStall(d) => {
            let (store, _) = forward(&head, &body)?;
            record.store_status = Some(store);
            seen.lock().unwrap().push(record);
            std::thread::sleep(d);
        }
        Fault::Stall(d) => {
            seen.lock().unwrap().push(record);
            std::thread::sleep(d);
        }
        Fault::ResetMidBody => unreachable!(),
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn error_response(code: u16) -> String {
    let (reason, s3) = match code {
        429 => ("Too Many Requests", "SlowDown"),
        503 => ("Service Unavailable", "SlowDown"),
        _ => ("Internal Server Error", "InternalError"),
    };
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3}</Code><Message>injected by the test proxy</Message></Error>");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A data directory made by the engine: meters, readings, snapshots and archived segments.
#[derive(Debug)]
pub struct Fixture {
    /// The data directory.
    pub dir: PathBuf,
    /// One past the last offset.
    pub next_offset: u64,
    /// Archived segments `(first, next)`.
    pub archived: Vec<(u64, u64)>,
}

/// The engine options of the tests' logs (rollups as the binary's defaults).
pub fn engine_options() -> EngineOptions {
    let mut storage = StorageOptions::default();
    storage.snapshot_every_events = u64::MAX;
    storage.snapshot_every_bytes = u64::MAX;
    storage.snapshots_keep = 1;
    EngineOptions::default()
        .wal(WalOptions::default().segment_bytes(SEGMENT_BYTES))
        .rollups(RollupOptions::default())
        .storage(storage)
}

/// Adds `readings` readings of `meters` meters to `dir` (creating it), then takes a
/// snapshot, which archives every sealed segment below it.
pub fn grow(dir: &Path, meters: usize, readings: usize) -> Fixture {
    let engine = Engine::open(dir, engine_options()).expect("open the engine");
    let ids: Vec<EntityId> = (0..meters)
        .map(|m| EntityId::new(&format!("meter-{m}")).unwrap())
        .collect();
    let known = engine.read(|i| i.entity(ids[0].as_str()).is_some());
    if !known {
        let register = ids.iter().map(|id| DomainCommand::RegisterMeter {
            meter: id.clone(),
            kind: MeterKind::Load,
            register_bits: None,
        });
        submit(&engine, register.collect());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = engine.read(|i| {
        ids.iter()
            .filter_map(|id| match i.entity(id.as_str()).map(|e| &e.state) {
                Some(gridlog_firmware::engine::state::EntityState::Meter(m)) => {
                    m.latest.map(|l| (l.time_ms, l.import_wh))
                }
                _ => None,
            })
            .max_by_key(|(t, _)| *t)
    });
    // A day back, a second apart: later calls continue where the last one stopped.
    let (t0, wh0) = start.unwrap_or((now - 86_400_000, 0.0));
    for chunk in (0..readings).collect::<Vec<_>>().chunks(10) {
        let commands = chunk
            .iter()
            .flat_map(|&r| {
                ids.iter().map(move |id| DomainCommand::RecordReading {
                    meter: id.clone(),
                    reading: Reading {
                        time_ms: t0 + (r as i64 + 1) * 1000,
                        import_wh: wh0 + (r + 1) as f64 * 2.5,
                        export_wh: 0.0,
                        power_w: 9000.0 + r as f64,
                        voltage_v: Some(230.0),
                        current_a: None,
                        reactive_power_var: None,
                    },
                })
            })
            .collect();
        submit(&engine, commands);
    }
    engine.snapshot_now().expect("snapshot and archive");
    let next_offset = engine.committed_offset();
    engine.shutdown();
    let (archives, damage) = gridlog_firmware::archive::list(dir).expect("archive list");
    assert!(damage.is_empty(), "{damage:?}");
    Fixture {
        dir: dir.to_path_buf(),
        next_offset,
        archived: archives
            .iter()
            .map(|a| (a.header.first_offset, a.header.next_offset))
            .collect(),
    }
}

fn submit(engine: &Engine, commands: Vec<DomainCommand>) {
    let response = engine.submit(Request::of(commands)).expect("submit");
    for r in response.results {
        assert!(
            matches!(
                r,
                ItemResult::Accepted { .. } | ItemResult::Duplicate | ItemResult::Replayed
            ),
            "{r:?}"
        );
    }
}

/// Every event of a data directory's log from `from` on (archive, then hot log).
pub fn events(dir: &Path, from: u64) -> Vec<(u64, StoredEvent)> {
    let mut out = Vec::new();
    let oldest = first_hot_offset(dir);
    if from < oldest {
        let mut cursor =
            gridlog_firmware::archive::ArchiveCursor::new(dir, from, oldest).expect("archive");
        while let Some(r) = cursor.next_record() {
            let (offset, bytes) = r.expect("archive record");
            out.push((offset, decode_event(&bytes).expect("event")));
        }
    }
    gridlog_firmware::wal::dump::read_records(dir, from.max(oldest), |offset, bytes| {
        out.push((offset, decode_event(bytes).expect("event")));
        ControlFlow::Continue(())
    })
    .expect("read the log");
    out
}

/// The first offset of the hot log.
pub fn first_hot_offset(dir: &Path) -> u64 {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
        .first()
        .and_then(|n| n.trim_end_matches(".seg").parse().ok())
        .expect("a segment")
}

/// The image digest of a log's events below `until`, replayed from offset 1.
pub fn digest_until(dir: &Path, until: u64) -> u64 {
    let mut image = Image::new(RollupOptions::default());
    for (offset, event) in events(dir, 1) {
        if offset < until {
            image.apply(offset, &event);
        }
    }
    image.digest()
}

#[allow(unused_imports)] // not every ship test runs a gateway
pub use gridlog_tests::server::Gateway;

/// Environment for shipping to `endpoint`. The fleet tables are off (the shipping tests
/// count requests and objects of segment shipping); the `tables_*` tests use
/// [`ship_env_with_tables`].
pub fn ship_env(endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    let mut env = ship_env_with_tables(endpoint, prefix);
    env.push(("GRIDLOG_SHIP__TABLES".into(), "false".into()));
    env
}

/// Environment for shipping to `endpoint` with the fleet tables at their default (on).
pub fn ship_env_with_tables(endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("GRIDLOG_SITE_ID", SITE.to_string()),
        ("GRIDLOG_WAL__SEGMENT_BYTES", SEGMENT_BYTES.to_string()),
        ("GRIDLOG_SHIP__STORE", format!("s3://{BUCKET}/{prefix}")),
        ("GRIDLOG_SHIP__ENDPOINT", endpoint.to_string()),
        ("GRIDLOG_SHIP__ALLOW_HTTP", "true".into()),
        ("GRIDLOG_SHIP__ACCESS_KEY_ID", "test".into()),
        ("GRIDLOG_SHIP__SECRET_ACCESS_KEY", "test".into()),
        ("GRIDLOG_SHIP__INTERVAL_S", "1".into()),
        ("GRIDLOG_SHIP__RETRY_MIN_MS", "50".into()),
        ("GRIDLOG_SHIP__RETRY_MAX_MS", "1000".into()),
        ("GRIDLOG_SHIP__REQUEST_TIMEOUT_MS", "3000".into()),
        ("GRIDLOG_SHIP__CONNECT_TIMEOUT_MS", "1000".into()),
        ("GRIDLOG_SHIP__CONCURRENCY", "4".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn gridlog(args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = gridlog_tests::gridlog_command();
    command.args(args).env("GRIDLOG_LOG", "error");
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

/// `gridlog ship --once` on `dir`; returns exit code, stdout and stderr.
pub fn ship_once(dir: &Path, env: &[(String, String)]) -> (i32, String, String) {
    let out = gridlog(
        &["ship", "--once", "--data-dir", &dir.display().to_string()],
        env,
    )
    .output()
    .expect("run gridlog ship");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gridlog ship --check` (the read-only audit of the store); exit code and its output.
pub fn audit(env: &[(String, String)]) -> (i32, String) {
    let out = gridlog(&["ship", "--check"], env)
        .output()
        .expect("run gridlog ship --check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `gridlog export` of the site shipped under `from` to `to` (prefixes of the test bucket),
/// with `extra` arguments; returns exit code and the output (stdout, then stderr).
pub fn export_tables(endpoint: &str, from: &str, to: &str, extra: &[&str]) -> (i32, String) {
    let from_url = format!("s3://{BUCKET}/{from}");
    let to_url = format!("s3://{BUCKET}/{to}");
    let mut args = vec![
        "export", "--from", &from_url, "--site", SITE, "--to", &to_url,
    ];
    args.extend(extra);
    let out = gridlog(&args, &ship_env(endpoint, from))
        .output()
        .expect("run gridlog export");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `gridlog restore`; returns exit code, stdout and stderr.
pub fn restore(prefix: &str, dir: &Path, endpoint: &str, extra: &[&str]) -> (i32, String, String) {
    let from = format!("s3://{BUCKET}/{prefix}");
    let mut args = vec!["restore", "--from", &from, "--site", SITE];
    let dir_s = dir.display().to_string();
    args.extend(["--data-dir", &dir_s]);
    args.extend(extra);
    let out = gridlog(&args, &ship_env(endpoint, prefix))
        .output()
        .expect("run gridlog restore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks what a lineage prefix holds against a data directory's archive: every archived
/// segment is there exactly once with the local file's segment (SHA-256 of the original), every manifest is valid JSON
/// chaining to the one before, and every object a manifest lists is there with its hash.
/// Returns the number of segments and manifests.
pub fn check_store(bucket: &Bucket, prefix: &str, dir: &Path) -> (usize, usize) {
    let lineage = std::fs::read_to_string(dir.join("LINEAGE"))
        .expect("LINEAGE")
        .trim()
        .to_string();
    let root = format!("{prefix}/{SITE}/{lineage}");
    let objects = bucket.objects(&root);
    let (archives, _) = gridlog_firmware::archive::list(dir).expect("archive");
    let mut segments = 0;
    for a in &archives {
        let key = format!(
            "{root}/segments/{:020}-{:020}.seg.zst",
            a.header.first_offset,
            a.header.next_offset - 1
        );
        let stored = objects
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the store"));
        // Shipped from the archive file (the same bytes) or, when it was sealed, from the
        // hot log (the same segment, with another creation time in the header).
        let header = gridlog_common::archive::ArchiveHeader::decode(stored)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(
            (header.first_offset, header.next_offset, header.sha256),
            (a.header.first_offset, a.header.next_offset, a.header.sha256),
            "{key} holds another segment than the local archive"
        );
        segments += 1;
    }
    // Every sealed segment still in the hot log is there too, as an archive of its bytes.
    for (first, bytes) in sealed_segments_in_hot_log(dir) {
        let prefix = format!("{root}/segments/{first:020}-");
        let (key, stored) = objects
            .iter()
            .find(|(k, _)| k.starts_with(&prefix))
            .unwrap_or_else(|| panic!("sealed segment {first} is not in the store"));
        let header = gridlog_common::archive::ArchiveHeader::decode(stored)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let original = bytes
            .get(..header.original_bytes as usize)
            .unwrap_or_else(|| panic!("{key} claims more bytes than segment {first} has"));
        assert_eq!(
            header.sha256,
            gridlog_firmware::archive::sha256(original),
            "{key} holds other bytes than sealed segment {first}"
        );
        segments += 1;
    }
    let manifests: Vec<(&String, serde_json::Value)> = objects
        .iter()
        .filter(|(k, _)| k.contains("/manifests/"))
        .map(|(k, v)| (k, serde_json::from_slice(v).expect("manifest JSON")))
        .collect();
    let mut listed = std::collections::BTreeSet::new();
    for (i, (key, m)) in manifests.iter().enumerate() {
        assert_eq!(
            m["sequence"].as_u64().unwrap() as usize,
            first_sequence(&manifests) + i,
            "{key}: manifest sequence numbers have a gap"
        );
        if i > 0 {
            let (prev_key, _) = &manifests[i - 1];
            assert_eq!(m["previous"]["key"], prev_key.as_str(), "{key}");
            assert_eq!(
                m["previous"]["sha256"],
                sha(&objects[*prev_key]).as_str(),
                "{key} names the wrong hash of {prev_key}"
            );
        }
        for s in m["segments"].as_array().unwrap() {
            let k = s["key"].as_str().unwrap();
            assert!(listed.insert(k.to_string()), "{k} is listed twice");
            let stored = objects
                .get(k)
                .unwrap_or_else(|| panic!("{k} listed but missing"));
            assert_eq!(sha(stored), s["object_sha256"].as_str().unwrap(), "{k}");
        }
    }
    for k in objects.keys().filter(|k| k.contains("/segments/")) {
        assert!(listed.contains(k), "{k} is in no manifest");
    }
    (segments, manifests.len())
}

/// The sealed segments of `dir`'s hot log (every segment file but the newest) by first
/// offset, with their bytes: these ship when sealed, before they are archived.
pub fn sealed_segments_in_hot_log(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .expect("wal directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files.pop(); // the active segment
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read a segment");
            let header = gridlog_common::segment::SegmentHeader::decode(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (header.first_offset, bytes)
        })
        .collect()
}

/// How many sealed segments the hot log of `dir` holds.
pub fn sealed_in_hot_log(dir: &Path) -> usize {
    sealed_segments_in_hot_log(dir).len()
}

fn first_sequence(manifests: &[(&String, serde_json::Value)]) -> usize {
    manifests
        .first()
        .map_or(1, |(_, m)| m["sequence"].as_u64().unwrap() as usize)
}

/// SHA-256, hex.
pub fn sha(bytes: &[u8]) -> String {
    gridlog_tests::hex(&gridlog_firmware::archive::sha256(bytes))
}

/// A `POST /api/v1/readings` body of one reading of `meter` (export 0, 500 W).
pub fn reading(meter: &str, time_ms: i64, import_wh: f64) -> serde_json::Value {
    let time = gridlog_tests::server::rfc3339_ms(time_ms);
    serde_json::json!({"readings": [{
        "meter": meter, "time": time, "import_wh": import_wh, "export_wh": 0.0, "power_w": 500.0,
    }]})
}
