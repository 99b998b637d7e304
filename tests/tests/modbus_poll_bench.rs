//! Polling figures for docs/BENCHMARKS.md: `gridlog serve` polling SunSpec devices (models 1,
//! 203, 103, each on its own loopback port) every second; the gateway's CPU time per second of
//! polling, and each poll's time from its slot to durable (the p50 and p99 every device
//! reports in `/api/v1/status`).
//!
//! The devices: by default a tokio-modbus server in the test process serves the register
//! image pysunspec2 encodes (`sunspec_device.py --dump`), each device with its own serial
//! number; it answers in microseconds, so the figures are the gateway's. With
//! `GRIDLOG_MODBUS_BENCH_DEVICES_BY=pymodbus` one pymodbus process serves them all instead:
//! it answers the 400 requests of a slot one after the other, and the poll times are then
//! mostly its queue.
//!
//! By default (CI) 10 devices for 5 s: it checks only that every device is polled every
//! slot and the figures are computed. With `GRIDLOG_MODBUS_BENCH=1` it runs 200 devices for
//! 60 s and prints a table (use a release binary through `GRIDLOG_BIN`):
//!
//! ```text
//! cargo build --release -p gridlog-host
//! GRIDLOG_BIN=target/release/gridlog GRIDLOG_MODBUS_BENCH=1 \
//!   cargo test --release -p gridlog-tests --test modbus_poll_bench -- --nocapture
//! ```
//!
//! (`--release` also for the devices: served unoptimized, they answer a slot's 400 requests
//! several times slower than devices do, and their queue becomes the p99.)
//!
//! Knobs: `GRIDLOG_MODBUS_BENCH_DEVICES` (default 200), `GRIDLOG_MODBUS_BENCH_S` (60),
//! `GRIDLOG_MODBUS_BENCH_DEVICES_BY` (`pymodbus`; default the in-process server),
//! `GRIDLOG_MODBUS_BENCH_SPLIT_CPUS=1`: the in-process devices run on the last CPU and the
//! gateway on the others (on a 2-core machine: one core each), so that the devices, which
//! on a site are machines of their own, do not take the gateway's CPU in the slot's burst.
//!
//! The RTU line's limit, for comparison (no pty throttles to a baud rate, so it is
//! computed, not measured): at 9600 baud 8N1 a character is 10 bits, 1.04 ms; a read of 53
//! registers is an 8-byte request and a 111-byte answer plus two 3.5-character gaps, about
//! 126 characters, 131 ms; at most about 7 such reads a second.

mod modbus_support;

use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::sync::Arc;

use gridlog_tests::server::Gateway;
use modbus_support::{wait_for, Device};
use serde_json::Value;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Model 1's `SN` in the image: 16 registers at body offset 48, the body at base + 4.
const SERIAL_OFFSET: usize = 4 + 48;

/// One device's registers, answered from memory.
#[derive(Debug, Clone)]
struct Image {
    base: u16,
    words: Arc<Vec<u16>>,
}

impl tokio_modbus::server::Service for Image {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let answer = match req.request {
            Request::ReadHoldingRegisters(address, count) => {
                let start = usize::from(address.wrapping_sub(self.base));
                address
                    .checked_sub(self.base)
                    .and_then(|_| self.words.get(start..start + usize::from(count)))
                    .map(|w| Response::ReadHoldingRegisters(w.to_vec()))
                    .ok_or(ExceptionCode::IllegalDataAddress)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(answer)
    }
}

/// The image pysunspec2 encodes, from `sunspec_device.py --dump`.
fn encoded_image() -> (u16, Vec<u16>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/modbus_support/sunspec_device.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--dump", "--control-port", "0"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the image as JSON");
    let words = v["words"].as_array().expect("words");
    (
        u16::try_from(v["base"].as_u64().expect("base")).expect("base"),
        words
            .iter()
            .map(|w| u16::try_from(w.as_u64().expect("word")).expect("word"))
            .collect(),
    )
}

/// Binds the calling thread, and the threads and processes it starts from now on, to `cpus`.
fn pin_to(cpus: std::ops::Range<usize>) {
    // SAFETY: `set` is a plain bit set owned by this frame; sched_setaffinity(0, …) changes
    // only the calling thread's own mask.
    #[allow(unsafe_code)]
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// `count` devices served by tokio-modbus in this process (a runtime on its own thread, kept
/// for the test's life); their ports.
fn serve_in_process(count: usize) -> Vec<u16> {
    let (base, words) = encoded_image();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut ports = Vec::with_capacity(count);
    for i in 0..count {
        let mut image = words.clone();
        let serial = format!("SN42-{i}");
        for (k, pair) in serial.as_bytes().chunks(2).enumerate() {
            image[SERIAL_OFFSET + k] = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        }
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        ports.push(listener.local_addr().expect("addr").port());
        let image = Image {
            base,
            words: Arc::new(image),
        };
        runtime.spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream: tokio::net::TcpStream, _: SocketAddr| {
                let image = image.clone();
                // As a device's own stack: each answer goes out at once.
                let nodelay = stream.set_nodelay(true);
                async move { nodelay.map(|()| Some((image, stream))) }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
    }
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
    ports
}

fn knob(name: &str, bench: u64, ci: u64) -> u64 {
    let full = std::env::var("GRIDLOG_MODBUS_BENCH").is_ok_and(|v| v == "1");
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { bench } else { ci })
}

fn devices(gateway: &Gateway) -> Vec<Value> {
    gateway.get("/api/v1/status").1["modbus"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn polls(devices: &[Value]) -> u64 {
    devices
        .iter()
        .map(|d| d["polls"].as_u64().unwrap_or(0))
        .sum()
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[test]
fn many_sunspec_devices_polled_every_second() {
    let count = usize::try_from(knob("GRIDLOG_MODBUS_BENCH_DEVICES", 200, 10)).unwrap();
    let seconds = knob("GRIDLOG_MODBUS_BENCH_S", 60, 5);
    let by_pymodbus =
        std::env::var("GRIDLOG_MODBUS_BENCH_DEVICES_BY").is_ok_and(|v| v == "pymodbus");
    let split_cpus =
        std::env::var("GRIDLOG_MODBUS_BENCH_SPLIT_CPUS").is_ok_and(|v| v == "1") && !by_pymodbus;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if split_cpus {
        assert!(
            cpus >= 2,
            "GRIDLOG_MODBUS_BENCH_SPLIT_CPUS needs two CPUs, found {cpus}"
        );
        pin_to(cpus - 1..cpus); // the device server's runtime is started from here
    }
    let (_device, ports) = if by_pymodbus {
        let (device, ports) = Device::start_many(count);
        (Some(device), ports)
    } else {
        (None, serve_in_process(count))
    };
    if split_cpus {
        pin_to(0..cpus - 1); // the gateway process inherits this mask
    }
    let tmp = tempfile::tempdir().unwrap();
    let config: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "[[modbus.device]]\nname = \"d{i}\"\nurl = \"tcp://127.0.0.1:{port}\"\nsunspec = true\n\
                 rated_power_w = 10000\ninterval_ms = 1000\ntimeout_ms = 500\n"
            )
        })
        .collect();
    let config_path = tmp.path().join("gridlog.toml");
    std::fs::write(&config_path, config).unwrap();
    let env = [(
        "GRIDLOG_CONFIG".to_string(),
        config_path.display().to_string(),
    )];
    let gateway = Gateway::serve(&tmp.path().join("data"), &env);
    // Discovery done and every device polled.
    wait_for("every device polled", || {
        let d = devices(&gateway);
        d.iter()
            .all(|d| d["polls"].as_u64() >= Some(2))
            .then_some(())
    });
    let (cpu_before, polls_before, start) =
        (gateway.cpu_ns(), polls(&devices(&gateway)), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu_after, after, elapsed) = (gateway.cpu_ns(), devices(&gateway), start.elapsed());
    let polled = polls(&after) - polls_before;
    let cpu_pct = (cpu_after - cpu_before) as f64 / elapsed.as_nanos() as f64 * 100.0;
    let of = |key: &str| -> Vec<f64> { after.iter().filter_map(|d| d[key].as_f64()).collect() };
    let (mut p50, mut p99) = (of("poll_duration_ms_p50"), of("poll_duration_ms_p99"));
    let (mut read_p50, mut read_p99) = (of("read_duration_ms_p50"), of("read_duration_ms_p99"));
    assert_eq!(p99.len(), count, "every device has durations");
    let errors: u64 = after
        .iter()
        .flat_map(|d| d["errors"].as_object().cloned().unwrap_or_default())
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    let expected = count as f64 * elapsed.as_secs_f64();
    println!(
        "| devices | seconds | polls (of slots) | errors | gateway CPU, % of a core | p50 of devices' p50 | p99 of devices' p99 | worst p99 | of which read: p50, p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {count} | {:.0} | {polled} ({:.1} %) | {errors} | {cpu_pct:.1} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms, {:.1} ms |",
        elapsed.as_secs_f64(),
        polled as f64 / expected * 100.0,
        quantile(&mut p50, 0.5),
        quantile(&mut p99, 0.99),
        quantile(&mut p99, 1.0),
        quantile(&mut read_p50, 0.5),
        quantile(&mut read_p99, 0.99),
    );
    // Every slot polled but the ones at the window's edges.
    assert!(
        polled as f64 >= expected - 2.0 * count as f64,
        "{polled} polls of {expected:.0} slots"
    );
}
