//! Helpers shared by the black-box tests in `tests/tests/`.
//!
//! [`gridlog_bin`] finds the `gridlog` binary for tests that run it as an operator would.
//! Cargo's `CARGO_BIN_EXE_<name>` only names binaries of the test's own package, and
//! `gridlog` belongs to `gridlog-host`, so the helper builds it with the same cargo, profile
//! and target directory as the running test, once per test process: a no-op when it is
//! fresh, and never a stale binary from an earlier build.

pub mod influxd;
pub mod kill;
pub mod mosquitto;
pub mod server;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A free loopback port (bound and released: for a server a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Environment variable naming a `gridlog` binary to test instead of building one (for
/// example a release build, or an installed package).
pub const GRIDLOG_BIN_ENV: &str = "GRIDLOG_BIN";

/// The target directory this test executable was built in (`<target dir>/<profile>/deps/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("test executable in <target>/<profile>/deps")
        .to_path_buf()
}

/// The path of the `gridlog` binary, built (once per process) if needed.
///
/// Panics with cargo's output if the build fails: every test that needs the binary would
/// fail anyway, and this says why.
pub fn gridlog_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os(GRIDLOG_BIN_ENV) {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // Test executables live in `<target dir>/<profile>/deps/`.
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("profile directory inside a target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name");
        build_gridlog(target_dir, profile);
        let bin = profile_dir.join(format!("gridlog{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "cargo built gridlog but {} is not there",
            bin.display()
        );
        bin
    })
}

fn build_gridlog(target_dir: &Path, profile: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", "gridlog-host", "--bin", "gridlog"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // The `dev` profile's directory is `debug`; every other profile's is its name.
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let output = command
        .output()
        .expect("run cargo to build the gridlog binary");
    assert!(
        output.status.success(),
        "cargo build -p gridlog-host failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `gridlog` command that sees only the configuration a test gives it: every `GRIDLOG_*`
/// (config, log level, this harness's own knobs) and `AWS_*` variable the test process
/// inherited is removed.
pub fn gridlog_command() -> Command {
    let mut command = Command::new(gridlog_bin());
    for (key, _) in std::env::vars_os() {
        let inherited = key.to_string_lossy();
        if inherited.starts_with("GRIDLOG_") || inherited.starts_with("AWS_") {
            command.env_remove(&key);
        }
    }
    command
}

/// Runs `gridlog` with `args` and returns what it printed and its exit status.
pub fn run_gridlog<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    gridlog_command()
        .args(args)
        .output()
        .expect("run the gridlog binary")
}

/// Lowercase hex of `bytes`, written independently of the binary's own encoder.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Byte positions of every frame of a segment file's bytes (round commits and footer
/// included), from the end of its header to the first byte that is not a frame.
pub fn all_frame_positions(segment: &[u8]) -> Vec<usize> {
    use gridlog_common::frame;
    let mut pos = gridlog_common::segment::SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while let Ok(f) = frame::decode(&segment[pos..]) {
        out.push(pos);
        pos += f.encoded_len();
    }
    out
}

/// Byte positions of every batch and footer frame of a segment file's bytes (not the
/// round commits).
pub fn frame_positions(segment: &[u8]) -> Vec<usize> {
    use gridlog_common::batch::{decode_body, Body};
    all_frame_positions(segment)
        .into_iter()
        .filter(|&p| {
            let body = gridlog_common::frame::decode(&segment[p..]).unwrap().body;
            !matches!(decode_body(body), Ok(Body::Commit(_)))
        })
        .collect()
}

/// Waits until `done` holds, polling every 50 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
