//! MQTT ingest through a real mosquitto: publishers send QoS 1 readings as devices do, the
//! release `gridlog serve` subscribes (QoS 1, acknowledging each message only after its
//! batch is durable), and a reader of gridlog's event stream notes when each reading is
//! committed. Reports readings/s durable and publish → durable latency, with mosquitto's
//! default in-flight window (20) and a raised one (1000) with everything published at once,
//! and at a steady offered rate, in the same run.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench mqtt
//! ```
//!
//! Env: `GRIDLOG_BIN` (default: the release build, built first if missing or stale),
//! `GRIDLOG_BENCH_PUBLISHERS` (4), `GRIDLOG_BENCH_MESSAGES` (25000) per publisher,
//! `GRIDLOG_BENCH_RATE` (10000 readings/s offered in the paced row),
//! `GRIDLOG_BENCH_DIR` (`target/bench-data`). Tables to stdout.

use std::io::{BufRead as _, BufReader};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridlog_benches::report::{fmt_count, load_average};
use gridlog_benches::tables::{bench_base_dir, cpu_secs, env_u64, invoked_as_bench, ms, pct};
use gridlog_tests::mosquitto::Mosquitto;
use gridlog_tests::server::{unix_now, Server};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

fn main() -> ExitCode {
    if invoked_as_bench("mqtt") {
        run();
    }
    ExitCode::SUCCESS
}

struct Measured {
    readings_per_s: f64,
    p50: Duration,
    p99: Duration,
    stored: u64,
    cpu_percent: f64,
}

/// When each publisher's k-th message left it (publish call), by publisher.
type Sent = Arc<Vec<Mutex<Vec<Instant>>>>;

/// Publisher `p`: `messages` readings, as fast as its client goes, or `per_s` a second.
fn publisher(
    port: u16,
    p: usize,
    messages: u64,
    per_s: f64,
    t0_ms: i64,
    sent: Sent,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut options = MqttOptions::new(format!("bench-pub-{p}"), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000);
        let (client, mut connection) = Client::new(options, 2000);
        let acked = Arc::new(AtomicU64::new(0));
        let counter = acked.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => return,
                    _ => {}
                }
            }
        });
        let start = Instant::now();
        for k in 0..messages {
            if per_s > 0.0 {
                let due = start + Duration::from_secs_f64(k as f64 / per_s);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            let time_ms = t0_ms + k as i64 * 1000;
            let payload = format!(
                r#"{{"t":{time_ms},"in":{},"out":0,"p":3600,"v":230.1}}"#,
                1000 + k
            );
            sent[p].lock().unwrap().push(Instant::now());
            client
                .publish(
                    format!("bench/q{p}/energy"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .expect("publish");
        }
        while acked.load(Ordering::Relaxed) < messages {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = client.disconnect();
    })
}

/// Reads the gateway's event stream until `expected` readings were seen; returns when each
/// publisher's k-th reading was committed.
fn stream_reader(
    url: String,
    publishers: usize,
    expected: u64,
) -> std::thread::JoinHandle<Vec<Vec<Instant>>> {
    std::thread::spawn(move || {
        let response = ureq::get(&url).call().expect("stream");
        let mut seen: Vec<Vec<Instant>> = vec![Vec::new(); publishers];
        let mut total = 0;
        for line in BufReader::new(response.into_reader()).lines() {
            let line = line.expect("stream line");
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            if !data.contains("reading_recorded") {
                continue;
            }
            let now = Instant::now();
            if let Some(p) = (0..publishers).find(|p| data.contains(&format!("\"q{p}\""))) {
                seen[p].push(now);
                total += 1;
            }
            if total >= expected {
                break;
            }
        }
        seen
    })
}

fn measure(inflight: u32, publishers: usize, messages: u64, rate_per_s: f64) -> Measured {
    let base = bench_base_dir();
    let broker = Mosquitto::start(&[&format!("max_inflight_messages {inflight}")]);
    let dir = tempfile::Builder::new()
        .prefix("gridlog-mqtt-")
        .tempdir_in(&base)
        .expect("dir");
    let config = dir.path().join("gridlog.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nauto_register = \"grid\"\n[mqtt]\nurl = \"{}\"\n[[mqtt.source]]\ntopic = \"bench/{{device}}/energy\"\nid = \"{{device}}\"\ntime = \"/t\"\ntime_format = \"unix_ms\"\nfields.import_wh = {{ pointer = \"/in\" }}\nfields.export_wh = {{ pointer = \"/out\" }}\nfields.power_w = {{ pointer = \"/p\" }}\nfields.voltage_v = {{ pointer = \"/v\" }}\n",
            broker.url()
        ),
    )
    .expect("config");
    let server = Server::start_in(
        &dir.path().join("data"),
        "serve",
        &["--config", &config.display().to_string()],
    );
    // Wait for the subscription.
    while server.get("/api/v1/status").1["mqtt"]["connected"] != true {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let expected = publishers as u64 * messages;
    let reader = stream_reader(server.url("/api/v1/stream"), publishers, expected);
    std::thread::sleep(Duration::from_millis(300));
    let sent: Sent = Arc::new((0..publishers).map(|_| Mutex::new(Vec::new())).collect());
    let t0_ms = (unix_now() - 86_400 * 30) * 1000;
    let cpu_before = server_cpu_s(&server);
    let start = Instant::now();
    let handles: Vec<_> = (0..publishers)
        .map(|p| {
            publisher(
                broker.port,
                p,
                messages,
                rate_per_s / publishers as f64,
                t0_ms,
                sent.clone(),
            )
        })
        .collect();
    for h in handles {
        h.join().expect("publisher");
    }
    let seen = reader.join().expect("reader");
    let elapsed = start.elapsed();
    let cpu = server_cpu_s(&server) - cpu_before;
    let mut latencies = Vec::new();
    for (p, times) in seen.iter().enumerate() {
        let sent = sent[p].lock().unwrap();
        latencies.extend(
            times
                .iter()
                .zip(sent.iter())
                .map(|(d, s)| d.saturating_duration_since(*s)),
        );
    }
    latencies.sort();
    let stored: u64 = seen.iter().map(|s| s.len() as u64).sum();
    drop(server);
    drop(broker);
    Measured {
        readings_per_s: stored as f64 / elapsed.as_secs_f64(),
        p50: pct(&latencies, 0.50),
        p99: pct(&latencies, 0.99),
        stored,
        cpu_percent: cpu / elapsed.as_secs_f64() * 100.0,
    }
}

/// The gateway's user + system CPU seconds so far.
fn server_cpu_s(server: &Server) -> f64 {
    cpu_secs(std::path::Path::new(&format!(
        "/proc/{}/stat",
        server.pid()
    )))
}

fn run() {
    let publishers = env_u64("GRIDLOG_BENCH_PUBLISHERS", 4) as usize;
    let messages = env_u64("GRIDLOG_BENCH_MESSAGES", 25_000);
    println!("Load average at start: {}", load_average());
    let paced = env_u64("GRIDLOG_BENCH_RATE", 10_000) as f64;
    let rows: Vec<(u32, f64, Measured)> = [(20, 0.0), (1000, 0.0), (20, paced)]
        .into_iter()
        .map(|(inflight, rate)| {
            eprintln!(
                "[mqtt] max_inflight_messages {inflight}, rate {rate}/s (0: as fast as possible)"
            );
            (
                inflight,
                rate,
                measure(inflight, publishers, messages, rate),
            )
        })
        .collect();
    println!(
        "\n{publishers} publishers × {messages} QoS 1 messages (one reading each), mosquitto on loopback, {}",
        bench_base_dir().display()
    );
    println!("\n| mosquitto max_inflight_messages | offered | readings/s durable | publish → durable p50 | p99 | stored | gateway CPU (% of one core) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (inflight, rate, m) in &rows {
        let offered = if *rate > 0.0 {
            format!("{}/s", fmt_count(*rate))
        } else {
            "all at once".into()
        };
        println!(
            "| {inflight} | {offered} | {} | {} | {} | {} | {:.0} % |",
            fmt_count(m.readings_per_s),
            ms(m.p50),
            ms(m.p99),
            m.stored,
            m.cpu_percent
        );
    }
    println!("\nLoad average at end: {}", load_average());
}
