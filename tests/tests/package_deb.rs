//! The amd64 .deb (built by `scripts/package.sh`, which `scripts/test.sh` runs first): its
//! control fields and files as `dpkg-deb` reads them, the unit as `systemd-analyze verify`
//! reads it, an installation into a scratch root by `dpkg` itself (maintainer scripts
//! included: the system user is created there), and the installed binary run as systemd
//! would run it, talking the notify protocol on a socket this test holds.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gridlog_tests::server::{post, Server};
use serde_json::json;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const UNIT: &str = "usr/lib/systemd/system/gridlog.service";

/// The newest amd64 package cargo-deb wrote into this target directory.
fn deb() -> PathBuf {
    let dir = gridlog_tests::target_dir().join(TRIPLE).join("debian");
    let newest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| {
        panic!(
            "no .deb in {}: build it with `scripts/package.sh amd64` (scripts/test.sh does)",
            dir.display()
        )
    })
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_package_has_its_fields_files_and_conffile() {
    let deb = deb();
    let deb = deb.to_str().expect("utf-8 path");
    let field = |name: &str| {
        text(&run("dpkg-deb", &["--field", deb, name]))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "gridlog");
    assert_eq!(field("Architecture"), "amd64");
    assert!(field("Version").starts_with(env!("CARGO_PKG_VERSION")));
    assert!(field("Depends").contains("libc6"));

    let contents = text(&run("dpkg-deb", &["--contents", deb]));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/gridlog"),
        ("-rw-r--r--", "./usr/lib/systemd/system/gridlog.service"),
        ("-rw-r--r--", "./usr/lib/sysusers.d/gridlog.conf"),
        ("-rw-r--r--", "./etc/gridlog/gridlog.toml"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} ({mode}) not in the package:\n{contents}"
        );
    }
    let conffiles = text(&run("dpkg-deb", &["--info", deb, "conffiles"]));
    assert_eq!(conffiles.trim(), "/etc/gridlog/gridlog.toml");
}

/// A root with an empty dpkg database.
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let admin = root.path().join("var/lib/dpkg");
    for dir in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(dir)).expect("dpkg dirs");
    }
    std::fs::write(admin.join("status"), "").expect("dpkg status");
    root
}

/// `dpkg --install` into `root`, maintainer scripts run outside a chroot with `DPKG_ROOT`
/// (the root has no shell of its own); the root's database has no libc6, so dependencies
/// are not checked there.
fn install(root: &Path, deb: &Path) {
    let root_arg = format!("--root={}", root.display());
    run(
        "dpkg",
        &[
            &root_arg,
            "--force-script-chrootless",
            "--force-depends",
            "--install",
            deb.to_str().expect("utf-8 path"),
        ],
    );
}

#[test]
fn dpkg_installs_it_into_a_scratch_root_with_its_user_and_a_unit_systemd_accepts() {
    let root = scratch_root();
    install(root.path(), &deb());
    let bin = root.path().join("usr/bin/gridlog");
    assert_eq!(
        bin.metadata()
            .expect("installed binary")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("etc/passwd");
    assert!(
        passwd.lines().any(|l| l.starts_with("gridlog:")),
        "postinst made no gridlog user:\n{passwd}"
    );
    let etc = root.path().join("etc/gridlog");
    assert_eq!(
        etc.metadata().expect("etc/gridlog").permissions().mode() & 0o777,
        0o750
    );
    let status = std::fs::read_to_string(root.path().join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: gridlog\nStatus: install ok installed"),
        "{status}"
    );

    // What the gateway's base system has besides the package: systemd's own units (the
    // targets the unit orders itself after) and procps' `kill` (ExecReload).
    let units = root.path().join("usr/lib/systemd/system");
    run(
        "cp",
        &["-rn", "/usr/lib/systemd/system/.", units.to_str().unwrap()],
    );
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).expect("copy kill");
    let root_arg = format!("--root={}", root.path().display());
    let verify = Command::new("systemd-analyze")
        .args(["verify", &root_arg, &format!("/{UNIT}")])
        .output()
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains("gridlog.service:"),
        "systemd-analyze verify: {}\n{said}",
        verify.status
    );

    let version = text(&run(bin.to_str().unwrap(), &["--version"]));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

/// What the gateway told "systemd" until `until` was among it, or the deadline passed.
fn notifications(socket: &UnixDatagram, until: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buffer = [0_u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == until)) {
        assert!(
            Instant::now() < deadline,
            "no {until} from the gateway; it said {seen:?}"
        );
        if let Ok(n) = socket.recv(&mut buffer) {
            seen.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
    }
}

#[test]
fn the_installed_binary_speaks_the_notify_protocol_and_serves() {
    let root = scratch_root();
    install(root.path(), &deb());
    let work = tempfile::tempdir().expect("temp dir");
    let socket_path = work.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut program = Command::new(root.path().join("usr/bin/gridlog"));
    program.env_clear();
    let config = root.path().join("etc/gridlog/gridlog.toml");
    let config = config.to_str().unwrap();
    let data_dir = work.path().join("data");
    let env = [
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        // Pinged every half of it: twice a second.
        ("WATCHDOG_USEC", "1000000"),
        ("GRIDLOG_LOG", "warn"),
    ];
    let mut server = Server::spawn_program(program, &data_dir, "serve", &["--config", config], env);

    let mut seen = Vec::new();
    notifications(&socket, "READY=1", &mut seen);
    let first = seen.concat();
    let extend = first
        .find("EXTEND_TIMEOUT_USEC=")
        .expect("start timeout extended");
    assert!(extend < first.find("READY=1").unwrap(), "{seen:?}");

    let (status, body) = post(
        &server.url("/api/v1/meters"),
        &json!({"id": "m1", "kind": "grid"}),
    );
    assert_eq!(status, 201, "{body}");
    notifications(&socket, "WATCHDOG=1", &mut seen);

    assert!(server.stop().success());
    notifications(&socket, "STOPPING=1", &mut seen);
}
