//! `gridlog`: the one binary of a gridlog gateway.
//!
//! `serve` and `demo` run the appliance (HTTP API, live stream, metrics, demo site);
//! `verify` and `dump` inspect a data directory's log. Modules: [`cli`] (arguments and
//! help), [`commands`] (one file per subcommand, and the exit status), [`config`] (file,
//! environment, defaults), [`server`] (the HTTP side), [`demo`] (the simulated site).
//!
//! Exit status, for every command: 0 done and clean, 1 done and the log is damaged, 2 the
//! command could not run (usage, I/O).
#![forbid(unsafe_code)]

mod cli;
mod commands;
#[cfg(test)]
mod conffile_tests;
mod config;
mod demo;
mod files;
mod ingest;
mod memory_budget;
mod modbus;
mod server;
mod ship;
mod submit;
mod systemd;
mod tables;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::filter::Targets;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    install_crypto_provider();
    let outcome = match &cli.command {
        Command::Verify(args) => commands::verify::run(args),
        Command::Dump(args) => commands::dump::run(args),
        Command::Import(args) => commands::import::run(
            &args.csv,
            &commands::serve::Overrides {
                config: args.config.clone(),
                data_dir: args.data_dir.clone(),
                ..Default::default()
            },
        ),
        Command::Snapshot(args) => commands::snapshot::run(&commands::serve::Overrides {
            config: args.config.clone(),
            data_dir: args.data_dir.clone(),
            ..Default::default()
        }),
        Command::Serve(args) => commands::serve::run(&overrides(args, None), false),
        Command::Demo(args) => commands::serve::run(&overrides(&args.serve, args.speed), true),
        Command::Ship(args) if args.check => commands::ship::check(&commands::serve::Overrides {
            config: args.config.clone(),
            data_dir: args.data_dir.clone(),
            ..Default::default()
        }),
        Command::Ship(args) => commands::ship::run(&commands::serve::Overrides {
            config: args.config.clone(),
            data_dir: args.data_dir.clone(),
            ..Default::default()
        }),
        Command::TlsSelfSigned(args) => commands::tls_selfsigned::run(args),
        Command::Restore(args) => commands::restore::run(
            &ship::restore::RestoreOptions {
                from: args.from.clone(),
                site: args.site.clone(),
                data_dir: args.data_dir.clone(),
                full: args.full,
                lineage: args.lineage.clone(),
            },
            args.config.clone(),
        ),
        Command::Export(args) => commands::export::run(args),
    };
    outcome.exit_code()
}

fn overrides(args: &cli::ServeArgs, speed: Option<f64>) -> commands::serve::Overrides {
    commands::serve::Overrides {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        write_token: args.write_token.clone(),
        write_token_file: args.write_token_file.clone(),
        read_token: args.read_token.clone(),
        read_token_file: args.read_token_file.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        insecure: args.insecure,
        speed,
    }
}

/// Colours in the log: only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org).
fn colours_wanted() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs rustls' one crypto provider for every TLS client of the process (object storage,
/// `mqtts://`), before any TLS is set up: ring. The crates are built without a provider of
/// their own, so none can pull in a second one (aws-lc-rs) behind our back; the server's TLS
/// names ring itself.
fn install_crypto_provider() {
    // Err only if a provider is installed already: then that one stays, as intended.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Logs go to stderr, so stdout carries only the command's output (reports, JSON lines).
/// Colours only on a terminal (see [`colours_wanted`]): under systemd stderr is journald's pipe, and escape codes
/// there would end up in every journal line.
fn init_logging(filter: &str) {
    // The filter was validated while parsing the arguments.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter: Targets = filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::WARN));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(colours_wanted())
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}
