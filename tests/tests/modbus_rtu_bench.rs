//! RTU throughput for docs/BENCHMARKS.md: one SunSpec device (models 203 and 103, pymodbus's
//! serial server) on a line paced at 9600 baud (`modbus_support/paced_line.py`: 10 bits a
//! character, each direction), polled by `gridlog serve` as often as the line allows
//! (`interval_ms` 250, just above a poll's ~220 ms on the wire, so the bus is rarely idle). Reports polls per second
//! achieved and how busy the line was (bytes × 10 bits / 9600 bit/s), so achieved / busy is
//! what the poller would reach on a line it kept busy all the time.
//!
//! By default (CI) 10 s, checking that polls happen over the paced line; with
//! `GRIDLOG_MODBUS_BENCH=1` 60 s and a table on stdout:
//!
//! ```text
//! GRIDLOG_BIN=target/release/gridlog GRIDLOG_MODBUS_BENCH=1 \
//!   cargo test -p gridlog-tests --test modbus_rtu_bench -- --nocapture
//! ```

mod modbus_support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modbus_support::{device_status, gateway, wait_for, Device};

const BAUD: u64 = 9600;

#[test]
fn polls_per_second_on_a_9600_baud_line() {
    let full = std::env::var_os("GRIDLOG_MODBUS_BENCH").is_some();
    let measure = Duration::from_secs(if full { 60 } else { 10 });
    let dir = tempfile::tempdir().expect("temp dir");
    let (gw_tty, dev_tty) = (
        dir.path().join("gateway-tty"),
        dir.path().join("device-tty"),
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus_support/paced_line.py");
    let mut line = Command::new("python3")
        .arg(&script)
        .args([
            "--gateway",
            &gw_tty.display().to_string(),
            "--device",
            &dev_tty.display().to_string(),
        ])
        .args(["--baud", &BAUD.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the paced line");
    let mut lines = BufReader::new(line.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("ready"),
        "the paced line did not start"
    );
    let counts = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let reader_counts = counts.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let n: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [to_device, to_gateway] = n[..] {
                *reader_counts.lock().unwrap() = (to_device, to_gateway);
            }
        }
    });
    let _device = Device::start_serial(&dev_tty, &["--unit", "3", "--baud", &BAUD.to_string()]);
    let config = format!(
        "[[modbus.device]]\nname = \"bus\"\nurl = \"rtu://{}?baud={BAUD}&parity=N\"\nunit_id = 3\n\
         sunspec = true\nrated_power_w = 10000\ninterval_ms = 250\ntimeout_ms = 250\n",
        gw_tty.display()
    );
    let (server, _tmp) = gateway(&config);
    wait_for("the first poll over the paced line", || {
        (device_status(&server, "bus")["polls"].as_u64() >= Some(2)).then_some(())
    });
    let polls_of = || device_status(&server, "bus")["polls"].as_u64().unwrap_or(0);
    let bytes_of = || {
        let (a, b) = *counts.lock().unwrap();
        a + b
    };
    let (polls_0, bytes_0, start) = (polls_of(), bytes_of(), Instant::now());
    std::thread::sleep(measure);
    let (polls_1, bytes_1, elapsed) = (polls_of(), bytes_of(), start.elapsed());
    let _ = line.kill();
    let _ = line.wait();
    let polls = polls_1 - polls_0;
    let secs = elapsed.as_secs_f64();
    assert!(polls > 0, "no poll over the paced line in {secs:.0} s");
    let polls_per_s = polls as f64 / secs;
    let busy = (bytes_1 - bytes_0) as f64 * 10.0 / BAUD as f64 / secs;
    let status = device_status(&server, "bus");
    println!(
        "\n| line | polls/s achieved | line busy | polls/s at a full line | poll p50 | poll p99 | errors |\n|---|---:|---:|---:|---:|---:|---|\n| RTU {BAUD} 8N1, one SunSpec meter + inverter, {secs:.0} s | {polls_per_s:.2} | {:.0} % | {:.2} | {} ms | {} ms | {} |",
        busy * 100.0,
        polls_per_s / busy.max(f64::EPSILON),
        status["poll_duration_ms_p50"],
        status["poll_duration_ms_p99"],
        status["errors"]
    );
}
