//! `gridlog`: the one binary of a gridlog gateway.
//!
//! For now it inspects a data directory's log (`verify`, `dump`); the HTTP API, dashboard,
//! ingestion and shipping join it as they land. Modules: [`cli`] (arguments and help),
//! [`commands`] (one file per subcommand, and the exit status).
//!
//! Exit status, for every command: 0 done and clean, 1 done and the log is damaged, 2 the
//! command could not run (usage, I/O).
#![forbid(unsafe_code)]

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let outcome = match &cli.command {
        Command::Verify(args) => commands::verify::run(args),
        Command::Dump(args) => commands::dump::run(args),
    };
    outcome.exit_code()
}

/// Logs go to stderr, so stdout carries only the command's output (reports, JSON lines).
fn init_logging(filter: &str) {
    // The filter was validated while parsing the arguments.
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
