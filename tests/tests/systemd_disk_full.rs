//! The systemd watchdog on a really full disk: `gridlog serve` under a notify socket with a
//! watchdog, its data directory on a small tmpfs that fills while clients keep writing.
//! Writes wait (nothing acknowledged that is not durable) and the watchdog keeps being
//! pinged: a restart would only replay the log and wait again, a restart loop. When space is
//! freed, every waiting write is stored and answered.
//!
//! Needs root to mount tmpfs (CI and developer machines of this project run as root); it
//! fails, not skips, when the mount is refused.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_tests::server::{post, rfc3339_ms, unix_now, Server};
use gridlog_tests::tmpfs::Tmpfs;
use gridlog_tests::wait_until;
use serde_json::{json, Value};

/// Clients writing at once until the disk is full.
const CLIENTS: usize = 8;
/// Clients that start writing once it is full: the engine took the first clients' requests
/// in hand before it stalled, these stay in its queue (as a site's retries and pollers would).
const LATE_CLIENTS: usize = 4;
/// Readings per request.
const READINGS_PER_REQUEST: usize = 2_000;

/// Messages from the gateway until `deadline`.
fn receive_until(socket: &UnixDatagram, deadline: Instant) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buffer = [0_u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            seen.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn a_full_disk_keeps_the_watchdog_pinged_and_the_writes_waiting() {
    let fs = Tmpfs::mount("16m");
    let work = tempfile::tempdir().unwrap();
    let socket_path = work.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let env = [
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        // Pinged every half of it: twice a second.
        ("WATCHDOG_USEC", "1000000"),
        ("GRIDLOG_WAL__SEGMENT_BYTES", "524288"),
    ];
    let mut server = Server::spawn(&fs.path().join("data"), "serve", &[], env);
    for client in 0..CLIENTS + LATE_CLIENTS {
        let (status, body) = post(
            &server.url("/api/v1/meters"),
            &json!({"id": format!("m{client}"), "kind": "grid"}),
        );
        assert_eq!(status, 201, "{body}");
    }

    // Leave room for two more segments, not three.
    let filler = fs.path().join("filler");
    std::fs::write(
        &filler,
        vec![1u8; (fs.free_bytes() - 1_100 * 1024) as usize],
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(AtomicU64::new(0));
    let client = |meter: usize| {
        let (url, stop, stored) = (server.url("/api/v1/readings"), stop.clone(), stored.clone());
        // Each client its own meter, its readings a millisecond apart from an hour ago.
        let (meter, start_ms) = (format!("m{meter}"), (unix_now() - 3_600) * 1_000);
        std::thread::spawn(move || {
            let mut n = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                let readings: Vec<Value> = (0..READINGS_PER_REQUEST)
                    .map(|_| {
                        n += 1;
                        json!({"meter": meter, "time": rfc3339_ms(start_ms + n),
                               "import_wh": n as f64, "export_wh": 0.0, "power_w": 1.0})
                    })
                    .collect();
                let (status, body) = post(&url, &json!({ "readings": readings }));
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["accepted"], json!(READINGS_PER_REQUEST), "{body}");
                stored.fetch_add(READINGS_PER_REQUEST as u64, Ordering::SeqCst);
            }
        })
    };
    let mut clients: Vec<_> = (0..CLIENTS).map(client).collect();

    let log = |server: &Server| server.get("/api/v1/status").1;
    wait_until(
        "the disk to be reported full",
        Duration::from_secs(60),
        || log(&server)["log"]["disk_full"] == json!(true),
    );
    clients.extend((CLIENTS..CLIENTS + LATE_CLIENTS).map(client));
    wait_until("requests queued", Duration::from_secs(60), || {
        log(&server)["queue"]["depth"].as_u64() > Some(0)
    });
    let stalled_at = stored.load(Ordering::SeqCst);

    // Three seconds of a full disk with requests queued: six watchdog periods.
    let before = receive_until(&socket, Instant::now() + Duration::from_millis(300));
    let seen = receive_until(&socket, Instant::now() + Duration::from_secs(3));
    let status = log(&server);
    assert_eq!(status["log"]["disk_full"], json!(true), "{status}");
    assert!(status["queue"]["depth"].as_u64() > Some(0), "{status}");
    assert_eq!(
        stored.load(Ordering::SeqCst),
        stalled_at,
        "writes were acknowledged while the disk was full"
    );
    let pings = seen
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(
        pings >= 4,
        "the watchdog was pinged {pings} times in 3 s: {seen:?}"
    );
    assert!(
        before
            .iter()
            .chain(&seen)
            .any(|m| m.contains("STATUS=") && m.contains("disk space")),
        "the unit's status does not say why writes wait: {before:?} {seen:?}"
    );

    // Space comes back: every waiting write is stored and answered.
    std::fs::remove_file(&filler).unwrap();
    wait_until("writes to resume", Duration::from_secs(60), || {
        stored.load(Ordering::SeqCst) > stalled_at
    });
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client's write failed");
    }
    let status = log(&server);
    assert_eq!(status["log"]["disk_full"], json!(false), "{status}");
    let seqs: u64 = (0..CLIENTS + LATE_CLIENTS)
        .map(|client| {
            let meter = server.get(&format!("/api/v1/meters/m{client}")).1;
            meter["seq"].as_u64().expect("a seq") - 1
        })
        .sum();
    assert_eq!(
        seqs,
        stored.load(Ordering::SeqCst),
        "every acknowledged reading stored"
    );
    assert!(server.stop().success());
}
