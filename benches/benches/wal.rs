//! The issue-2 benchmark: prints the Markdown tables of `docs/BENCHMARKS.md`.
//!
//! ```text
//! cargo bench -p gridlog-benches --bench wal --features peers
//! ```
//!
//! `GRIDLOG_BENCH_SECS` (default 3) sets each row's measurement window,
//! `GRIDLOG_BENCH_REPLAY_MIB` (default 1024) the replayed log's size, and `GRIDLOG_BENCH_DIR`
//! (default `target/bench-data`) where the data lives — which decides the disk measured.
//! `GRIDLOG_BENCH_PREALLOCATION` (`fallocate`, default, or `zero-fill`) sets how gridlog's
//! fresh segments are made; `GRIDLOG_BENCH_SEGMENTS=recycled` runs gridlog as a gateway
//! whose archiving keeps up: its rows land in recycled segment files (see
//! `stores::gridlog::GridlogStore`).
//! Progress goes to stderr, the tables to stdout.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes test-harness flags and
    // expects a quick exit, which it gets: this benchmark runs only under `cargo bench`.
    if !gridlog_benches::tables::invoked_as_bench("wal") {
        return ExitCode::SUCCESS;
    }
    let config = match gridlog_benches::BenchConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gridlog-benches: {e}");
            return ExitCode::FAILURE;
        }
    };
    match gridlog_benches::run(&config) {
        Ok(report) => {
            println!("{}", report.to_markdown());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gridlog-benches: benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
