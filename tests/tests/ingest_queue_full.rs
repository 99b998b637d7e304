//! A full engine queue answers line protocol writes 503 with `Retry-After` (never 429,
//! which Telegraf's v1 output would drop), and what was answered 204 is stored, also after
//! the gateway is killed and restarted; what was answered 503 is not.

mod ingest_support;

use std::collections::BTreeSet;

use gridlog_tests::server::{unix_now, Server};
use ingest_support::{post_lines, stored_readings};

/// Writers posting at once, far more than the queue holds.
const WRITERS: usize = 12;
/// Writes of each writer, one line each.
const WRITES: usize = 20;

fn meter(writer: usize) -> String {
    format!("q{writer}")
}

/// The import registers of `meter`'s stored readings (each write has its own).
fn stored_imports(gridlog: &Server, meter: &str) -> BTreeSet<u64> {
    stored_readings(gridlog, meter)
        .iter()
        .map(|r| r["import_wh"].as_f64().expect("import_wh") as u64)
        .collect()
}

#[test]
fn a_full_engine_queue_answers_503_with_retry_after_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let env = [
        ("GRIDLOG_ENGINE__AUTO_REGISTER", "grid"),
        ("GRIDLOG_ENGINE__QUEUE_DEPTH", "1"),
        // Rounds that take a while, so the one queue place is taken while writers post.
        ("GRIDLOG_WAL__COMMIT_DELAY_MS", "20"),
    ];
    let mut gridlog = Server::start_with_env(&data, "serve", &[], &env);
    let url = gridlog.url("/write?db=site&precision=s");
    let t0 = unix_now() - 3_600;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut stored: BTreeSet<u64> = BTreeSet::new();
                let mut busy = 0;
                for i in 0..WRITES {
                    let (time_s, import_wh) = (t0 + i as i64, 100 + i as u64);
                    let line = format!(
                        "meter,id={} import_wh={import_wh},export_wh=0,power_w=1 {time_s}\n",
                        meter(w)
                    );
                    let answer = post_lines(&url, &[], line.as_bytes());
                    match answer.status {
                        204 => {
                            stored.insert(import_wh);
                        }
                        503 => {
                            assert!(answer.retry_after.is_some(), "{answer:?}");
                            assert!(answer.body["error"].is_string(), "{answer:?}");
                            assert!(answer.error_header.is_some(), "{answer:?}");
                            // The engine's queue, not the HTTP write slots (32 > WRITERS).
                            let text = answer.body["error"].as_str().unwrap_or("");
                            assert!(text.contains("engine busy"), "{answer:?}");
                            busy += 1;
                        }
                        _ => panic!("neither stored nor busy: {answer:?}"),
                    }
                }
                (stored, busy)
            })
        })
        .collect();
    let answers: Vec<(BTreeSet<u64>, usize)> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    let busy: usize = answers.iter().map(|(_, b)| b).sum();
    assert!(busy > 0, "the queue never filled: no 503 to check");

    // Exactly the acknowledged readings are stored, before and after a kill.
    for round in ["running", "after a kill"] {
        for (w, (acked, _)) in answers.iter().enumerate() {
            assert_eq!(
                &stored_imports(&gridlog, &meter(w)),
                acked,
                "{round}: {}",
                meter(w)
            );
        }
        if round == "running" {
            gridlog.kill();
            gridlog = Server::start_with_env(&data, "serve", &[], &env);
        }
    }
}
