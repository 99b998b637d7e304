//! A storage failure while a request is in flight: a retry of it that the engine planned
//! meanwhile (a replay of its command id, or a duplicate of its reading) is answered with
//! the failure, never as stored — the original is stored nowhere.

mod engine_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine_support::*;
use gridlog_common::domain::MeterKind;
use gridlog_firmware::engine::{Request, SubmitError};
use gridlog_firmware::wal::{IoHook, IoOp, WalOptions};

const NOW_MS: i64 = T0_MS + 86_400_000;

/// How long the failing sync takes: the retry arrives while it runs.
const SLOW_SYNC: Duration = Duration::from_millis(400);

#[test]
fn a_retry_planned_while_its_original_fails_is_not_answered_as_stored() {
    for with_command_id in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::at(NOW_MS);
        let armed = Arc::new(AtomicBool::new(false));
        let hook: IoHook = {
            let armed = armed.clone();
            Arc::new(move |op: &IoOp<'_>| {
                if matches!(op, IoOp::SyncData { .. }) && armed.load(Ordering::SeqCst) {
                    std::thread::sleep(SLOW_SYNC);
                    return Err(std::io::Error::other("injected sync failure"));
                }
                Ok(())
            })
        };
        let options = options(&clock).wal(WalOptions::default().io_hook(hook));
        let engine = Arc::new(open(dir.path(), options));
        engine
            .submit(Request::of(vec![register_meter(
                "m",
                MeterKind::Grid,
                None,
            )]))
            .unwrap();
        let request = Request {
            commands: vec![record("m", reading_values(T0_MS, 1000.0, 0.0, 100.0)).into()],
            command_id: with_command_id.then(|| command_id("req-1")),
        };
        armed.store(true, Ordering::SeqCst);
        let first = {
            let (engine, request) = (engine.clone(), request.clone());
            std::thread::spawn(move || engine.submit(request))
        };
        std::thread::sleep(SLOW_SYNC / 4);
        let retry = engine.submit(request);
        let first = first.join().unwrap();
        assert!(
            matches!(first, Err(SubmitError::Storage(_))),
            "the original failed: {first:?}"
        );
        assert!(
            matches!(retry, Err(SubmitError::Storage(_))),
            "a retry planned while its original was in flight is not stored either \
             (command id: {with_command_id}): {retry:?}"
        );
    }
}
