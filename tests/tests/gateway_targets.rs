//! The gateway builds for ARM run: the aarch64 and armv7 `gridlog` binaries (profile
//! `gateway`, built by `scripts/test.sh` through `scripts/package.sh`) under qemu-user serve,
//! register a meter, take readings, stop, and start again with the same image digest. The
//! data directory an ARM build wrote opens in this machine's build with that same digest:
//! the formats do not depend on the word size or the byte order of the CPU that wrote them.

use std::path::{Path, PathBuf};
use std::process::Command;

use gridlog_tests::server::{post, rfc3339, unix_now, Server};
use serde_json::json;

/// The gateway build of `gridlog` for Rust target `triple`; panics (naming the command that
/// builds it) if it is not there.
fn gateway_binary(triple: &str) -> PathBuf {
    let bin = gridlog_tests::target_dir()
        .join(triple)
        .join("gateway")
        .join("gridlog");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --profile gateway -p gridlog-host \
         --target {triple}` (scripts/test.sh does)",
        bin.display(),
    );
    bin
}

/// A gateway target: its Rust triple, and how this machine runs its binaries.
struct Target {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
}

const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64-static",
    sysroot: "/usr/aarch64-linux-gnu",
};

const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm-static",
    sysroot: "/usr/arm-linux-gnueabihf",
};

impl Target {
    fn binary(&self) -> PathBuf {
        gateway_binary(self.triple)
    }

    /// `gridlog` for this target, run by qemu-user.
    fn command(&self) -> Command {
        let mut command = Command::new(self.qemu);
        command.arg("-L").arg(self.sysroot).arg(self.binary());
        command
    }

    fn serve(&self, data_dir: &Path) -> Server {
        Server::spawn_program(
            self.command(),
            data_dir,
            "serve",
            &[],
            [("GRIDLOG_LOG", "warn")],
        )
    }
}

fn digest_and_offset(server: &Server) -> (String, u64) {
    let (status, body) = server.get("/api/v1/status");
    assert_eq!(status, 200, "{body}");
    let digest = body["digest"].as_str().expect("digest").to_string();
    let offset = body["last_offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no last_offset in {body}"));
    (digest, offset)
}

/// Registers a meter and posts `batches` of readings, each answered 200 (durable).
fn record(server: &Server, batches: i64) {
    let (status, body) = post(
        &server.url("/api/v1/meters"),
        &json!({"id": "m1", "kind": "grid"}),
    );
    assert_eq!(status, 201, "{body}");
    let start = unix_now() - 3600;
    for batch in 0..batches {
        let readings: Vec<_> = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                json!({"meter": "m1", "time": rfc3339(start + n),
                       "import_wh": 1000.0 + n as f64 * 0.5, "export_wh": 0.0,
                       "power_w": 1800.0 + (n % 7) as f64})
            })
            .collect();
        let (status, body) = post(
            &server.url("/api/v1/readings"),
            &json!({"readings": readings, "command_id": format!("b-{batch}")}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 50, "{body}");
    }
}

fn serve_record_restart(target: &Target) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let mut server = target.serve(&dir);
    record(&server, 4);
    let written = digest_and_offset(&server);
    assert!(
        server.stop().success(),
        "{} did not stop cleanly",
        target.triple
    );

    let mut again = target.serve(&dir);
    assert_eq!(
        digest_and_offset(&again),
        written,
        "{}: the restart changed the image",
        target.triple
    );
    assert!(again.stop().success());

    // This machine's build reads what the ARM build wrote, to the same image.
    let native = Server::start_in(&dir, "serve", &[]);
    assert_eq!(
        digest_and_offset(&native),
        written,
        "{} wrote a log this machine reads differently",
        target.triple
    );
}

#[test]
fn the_aarch64_gateway_build_serves_restarts_and_keeps_its_digest() {
    serve_record_restart(&AARCH64);
}

#[test]
fn the_armv7_gateway_build_serves_restarts_and_keeps_its_digest() {
    serve_record_restart(&ARMV7);
}

/// The size target for the gateway binary of every 64-bit gateway target (x86_64 and
/// aarch64), stripped, with every default feature: 10 MiB.
const GATEWAY_BINARY_BYTES_MAX: u64 = 10 * 1024 * 1024;

/// Whether the ELF file `bytes` has a symbol table section (`SHT_SYMTAB`): a stripped binary
/// has none. Reads the section headers of a 32- or 64-bit little-endian ELF file.
fn has_symbol_table(bytes: &[u8]) -> bool {
    const SHT_SYMTAB: u32 = 2;
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (table, entry_bytes, count) = match bytes[4] {
        1 => (u32_at(0x20) as usize, u16_at(0x2e), u16_at(0x30)),
        2 => (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c)),
        class => panic!("ELF class {class}"),
    };
    (0..count).any(|i| u32_at(table + i * entry_bytes + 4) == SHT_SYMTAB)
}

/// The `strip = true` of the gateway profile really strips (a per-package override of the
/// binary's own package once made cargo link with `strip = "debuginfo"`, keeping ~1.9 MB of
/// symbols), and the 64-bit binaries stay within the size target.
#[test]
fn the_gateway_binaries_are_stripped_and_within_the_size_target() {
    for (triple, size_target) in [
        ("x86_64-unknown-linux-gnu", true),
        (AARCH64.triple, true),
        (ARMV7.triple, false),
    ] {
        let path = gateway_binary(triple);
        let bytes = std::fs::read(&path).expect("read the gateway binary");
        assert!(
            !has_symbol_table(&bytes),
            "{} has a symbol table: the gateway profile did not strip it",
            path.display()
        );
        let size = bytes.len() as u64;
        eprintln!("{triple}: {size} bytes");
        if size_target {
            assert!(
                size <= GATEWAY_BINARY_BYTES_MAX,
                "{} is {size} bytes, over the gateway target of {GATEWAY_BINARY_BYTES_MAX}",
                path.display()
            );
        }
    }
}
