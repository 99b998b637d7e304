//! A flood of idle connections under a low open-file limit cannot take the log's file
//! handles: the server accepts at most the limit less what it keeps for the log, so segment
//! rotations still succeed, writes are acknowledged and `/readyz` stays 200.

use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gridlog_tests::server::{listening_address, START_TIMEOUT};
use serde_json::{json, Value};

/// The open-file limit the gateway runs with (`prlimit --nofile`).
const NOFILE: u64 = 256;
/// Idle connections opened: more than the limit.
const FLOOD: usize = 400;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn call(request: ureq::Request, body: Option<&Value>) -> (u16, Value) {
    let result = match body {
        Some(body) => request.send_json(body.clone()),
        None => request.call(),
    };
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            (status, r.into_json().unwrap_or(Value::Null))
        }
        Err(e) => panic!("{e}"),
    }
}

/// Kills the server however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connection_flood_under_a_low_open_file_limit_leaves_the_log_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(gridlog_tests::gridlog_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GRIDLOG_LOG", "warn")
        // Small segments: every few requests rotate, and a rotation opens files.
        .env("GRIDLOG_WAL__SEGMENT_BYTES", "65536")
        // Idle connections are closed after 2 s without a request head.
        .env("GRIDLOG_HTTP__HEADER_READ_TIMEOUT_S", "2")
        .stdout(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs gridlog");
    let addr = listening_address(&mut child, START_TIMEOUT).unwrap();
    let _server = Killed(child);
    let url = |path: &str| format!("http://{addr}{path}");
    let deadline = Instant::now() + START_TIMEOUT;
    while !matches!(call(agent().get(&url("/readyz")), None).0, 200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = call(
        agent().post(&url("/api/v1/meters")),
        Some(&json!({"id": "m1", "kind": "grid"})),
    );
    assert_eq!(status, 201, "{body}");

    let flood: Vec<TcpStream> = (0..FLOOD)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        flood.len() > NOFILE as usize,
        "only {} connected",
        flood.len()
    );

    // Writes that rotate segments many times, while the flood holds the connections it can.
    let start = gridlog_tests::server::unix_now() - 10_000;
    for batch in 0..30 {
        let readings: Vec<Value> = (0..200)
            .map(|i| {
                let n = batch * 200 + i;
                json!({"meter": "m1", "time": gridlog_tests::server::rfc3339(start + n),
                    "import_wh": n as f64, "export_wh": 0.0, "power_w": 100.0})
            })
            .collect();
        let (status, body) = call(
            agent().post(&url("/api/v1/readings")),
            Some(&json!({ "readings": readings })),
        );
        assert_eq!(status, 200, "batch {batch}: {body}");
        assert_eq!(body["accepted"], 200, "batch {batch}: {body}");
    }
    let (status, ready) = call(agent().get(&url("/readyz")), None);
    assert_eq!(status, 200, "{ready}");
    let (_, status_body) = call(agent().get(&url("/api/v1/status")), None);
    let log = &status_body["log"];
    assert!(log["rotations"].as_u64().unwrap_or(0) >= 3, "{log}");
    assert_eq!(log["resources_exhausted"], false, "{log}");
    drop(flood);
}
