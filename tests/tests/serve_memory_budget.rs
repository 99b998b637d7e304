//! `gridlog serve` warns at start when the engine at its configured limits could outgrow the
//! memory the process may use (every meter with a whole day in memory), naming the numbers
//! and the settings that lower them; at limits that fit, it says nothing of the kind. Its
//! log to a pipe (journald's, under systemd) carries no terminal colour codes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gridlog_tests::gridlog_command;

/// Starts `gridlog serve` with `env`, reads its stderr until it listens and has recovered
/// (its "ready" log line), then stops it; returns what it wrote.
fn serve_and_read_the_log(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child: Child = gridlog_command()
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("GRIDLOG_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gridlog serve");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("ready") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("ready"), "serve did not become ready:\n{log}");
    log
}

#[test]
fn limits_no_machine_holds_are_named_at_start() {
    // 100 million meters with a whole day of quarter hours each: ~720 GB, beyond any gateway.
    let log = serve_and_read_the_log(&[("GRIDLOG_ENGINE__ENTITIES_MAX", "100000000")]);
    let warning = log
        .lines()
        .find(|l| l.contains("engine.entities_max = 100000000"))
        .unwrap_or_else(|| panic!("no memory warning:\n{log}"));
    for part in ["WARN", "or fewer", "storage.rollup_spill_bytes", "MiB"] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    // stderr is a pipe here, as journald's is under systemd: no colour codes in the lines.
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log:\n{log}"
    );
}

#[test]
fn limits_that_fit_are_not_warned_about() {
    let log = serve_and_read_the_log(&[("GRIDLOG_ENGINE__ENTITIES_MAX", "10")]);
    assert!(!log.contains("engine.entities_max ="), "{log}");
}
