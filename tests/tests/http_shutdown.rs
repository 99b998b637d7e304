//! Shutdown with a deadline: SIGTERM closes idle and half-sent connections and the process
//! exits cleanly within `http.shutdown_timeout_s`, however clients behave; a second signal
//! stops it at once.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gridlog_tests::server::{listening_address, post, signal, START_TIMEOUT};
use serde_json::json;

/// Far beyond the 2 s deadline the servers below get, and far below the 30 s request
/// timeout plus the 10 s header timeout a half-sent request would otherwise keep it for.
const EXIT_WAIT: Duration = Duration::from_secs(25);

fn start(
    shutdown_timeout_s: &str,
) -> (std::process::Child, std::net::SocketAddr, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = gridlog_tests::gridlog_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("GRIDLOG_LOG", "warn")
        .env("GRIDLOG_HTTP__SHUTDOWN_TIMEOUT_S", shutdown_timeout_s)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_address(&mut child, START_TIMEOUT).unwrap();
    let deadline = Instant::now() + START_TIMEOUT;
    while ureq::get(&format!("http://{addr}/readyz")).call().is_err() {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr, tmp)
}

/// Connections a careless client leaves: a request whose body is half sent, one whose
/// headers are half sent, and an idle keep-alive connection.
fn careless_clients(addr: std::net::SocketAddr) -> Vec<TcpStream> {
    let mut half_body = TcpStream::connect(addr).unwrap();
    write!(
        half_body,
        "POST /api/v1/meters HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    )
    .unwrap();
    let mut half_head = TcpStream::connect(addr).unwrap();
    write!(
        half_head,
        "GET /api/v1/meters HTTP/1.1\r\nHost: {addr}\r\nAcc"
    )
    .unwrap();
    let idle = TcpStream::connect(addr).unwrap();
    // The server has read what they sent before the signal comes.
    std::thread::sleep(Duration::from_millis(300));
    vec![half_body, half_head, idle]
}

fn wait_exit(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + EXIT_WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn sigterm_with_half_sent_requests_exits_cleanly_by_the_deadline() {
    let (mut child, addr, _tmp) = start("2");
    let url = format!("http://{addr}/api/v1/meters");
    assert_eq!(post(&url, &json!({"id": "m1", "kind": "grid"})).0, 201);
    let clients = careless_clients(addr);
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child).expect("still running with half-sent requests");
    assert_eq!(status.code(), Some(0), "{status:?}");
    drop(clients);
}

#[test]
fn a_second_signal_stops_at_once() {
    // A deadline far beyond the test: only the second signal can end it in time.
    let (mut child, addr, _tmp) = start("3600");
    let clients = careless_clients(addr);
    signal(child.id(), libc::SIGTERM);
    // Bounded wait until the first signal has been acted on (the listener is closed).
    let deadline = Instant::now() + EXIT_WAIT;
    while TcpStream::connect(addr).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited on the first signal"
    );
    signal(child.id(), libc::SIGINT);
    let status = wait_exit(&mut child).expect("still running after a second signal");
    assert_eq!(status.code(), Some(130), "{status:?}");
    drop(clients);
}
