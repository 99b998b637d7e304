//! Real kills: a child process appends with many threads and prints each acknowledged batch;
//! the parent `SIGKILL`s it at random moments, reopens the log, and checks that every
//! acknowledged record is present and intact. The same data directory is used for every
//! cycle, so recovery runs on a growing log with many rotated segments.
//!
//! `GRIDLOG_KILL_CYCLES` sets the number of cycles (default 100).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gridlog_firmware::lock::LockError;
use gridlog_firmware::wal::{OpenError, Wal, WalOptions};
use gridlog_tests::kill::{complete_lines, sigkill, KillRng};

#[path = "../src/bin/wal_appender.rs"]
#[allow(dead_code)]
mod appender;

const APPENDER: &str = env!("CARGO_BIN_EXE_wal-appender");

#[test]
fn sigkill_during_concurrent_appends_loses_no_acknowledged_record() {
    let cycles: u32 = std::env::var("GRIDLOG_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    eprintln!("{cycles} cycles");
    let mut rng = KillRng::from_env_or_clock("kill test");
    let dir = tempfile::tempdir().unwrap();
    // offset -> (run, thread, seq, index) of every acknowledged record so far.
    let mut acked: BTreeMap<u64, (u32, u32, u64, u32)> = BTreeMap::new();
    let mut total_killed_mid_flight = 0;
    for run in 0..cycles {
        let threads = 1 + (rng.next_u64() % 8) as u32;
        let mut child = Command::new(APPENDER)
            .args([
                "append",
                dir.path().to_str().unwrap(),
                &run.to_string(),
                &threads.to_string(),
                "65536",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn appender");
        let reader = complete_lines(child.stdout.take().unwrap());
        std::thread::sleep(Duration::from_millis(5 + rng.next_u64() % 120));
        sigkill(child.id());
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut new_acks = 0;
        for line in lines.iter().filter(|l| l.starts_with("A ")) {
            let f: Vec<u64> = line[2..].split(' ').map(|x| x.parse().unwrap()).collect();
            let (first, count, run, thread, seq) = (f[0], f[1], f[2] as u32, f[3] as u32, f[4]);
            for i in 0..count {
                let previous = acked.insert(first + i, (run, thread, seq, i as u32));
                assert!(
                    previous.is_none(),
                    "offset {} acknowledged twice",
                    first + i
                );
            }
            new_acks += 1;
        }
        if new_acks > 0 {
            total_killed_mid_flight += 1;
        }
        // Reopen and check every acknowledged record, and the integrity of every record.
        let wal = Wal::open(dir.path(), WalOptions::default().segment_bytes(65536))
            .unwrap_or_else(|e| panic!("cycle {run}: reopen failed: {e}"));
        let mut cursor = wal.read_from(1).unwrap();
        let mut expected = acked.iter().peekable();
        let mut count = 0u64;
        while let Some(record) = cursor.next() {
            let record = record.unwrap_or_else(|e| panic!("cycle {run}: {e}"));
            count += 1;
            assert_eq!(record.offset, count, "gap-free offsets");
            let b = record.bytes;
            let (r, t, s, i) = (
                u32::from_le_bytes(b[0..4].try_into().unwrap()),
                u32::from_le_bytes(b[4..8].try_into().unwrap()),
                u64::from_le_bytes(b[8..16].try_into().unwrap()),
                u32::from_le_bytes(b[16..20].try_into().unwrap()),
            );
            assert_eq!(
                b,
                appender::record(r, t, s, i).as_slice(),
                "cycle {run}: record at {} is damaged",
                record.offset
            );
            if let Some((&offset, &want)) = expected.peek() {
                if offset == record.offset {
                    assert_eq!(
                        (r, t, s, i),
                        want,
                        "cycle {run}: offset {offset} holds another record"
                    );
                    expected.next();
                }
            }
        }
        assert!(
            expected.peek().is_none(),
            "cycle {run}: acknowledged offset {:?} missing (log has {count})",
            expected.peek()
        );
        let report = wal.recovery_report().clone();
        drop(wal);
        if run % 20 == 0 {
            eprintln!(
                "cycle {run}: {count} records, {} acknowledged, recovery {report:?}",
                acked.len()
            );
        }
    }
    assert!(
        total_killed_mid_flight > cycles / 2,
        "most cycles should acknowledge something before the kill"
    );
    let report = gridlog_firmware::wal::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.segments.len() > 3,
        "expected rotations, got {} segments",
        report.segments.len()
    );
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(APPENDER)
        .args(["hold", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let started = Instant::now();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "READY",
        "child did not start within {:?}",
        started.elapsed()
    );
    match Wal::open(dir.path(), WalOptions::default()) {
        Err(OpenError::Locked(LockError::Held { pid, .. })) => assert_eq!(pid, Some(child.id())),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    sigkill(child.id());
    child.wait().unwrap();
    // The kernel released the lock with the process: a restart is not blocked.
    Wal::open(dir.path(), WalOptions::default()).expect("open after the holder died");
}
