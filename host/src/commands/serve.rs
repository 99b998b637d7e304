//! `gridlog serve` and `gridlog demo`: the appliance.
//!
//! Start-up order: load and check the configuration, bind the listen address (so a busy
//! port fails fast), start answering HTTP (`/healthz` at once, `/readyz` 503 while the log
//! is recovered), open the engine in the background, then (demo) start the simulated site.
//! SIGINT/SIGTERM: stop accepting, finish in-flight requests and their commits, stop the
//! simulator, drain the processor, close the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gridlog_firmware::engine::{
    Clock, Engine, EngineOpenError, EngineOptions, RollupOptions, SystemClock,
};
use gridlog_firmware::wal::{OpenError, WalOptions};

use super::Outcome;
use crate::config::{Config, ConfigError};
use crate::demo::{self, DemoClock, DemoOptions};

use crate::server::{self, AppState};

/// What `serve` and `demo` take from the command line (on top of file and environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--write-token`.
    pub write_token: Option<String>,
    /// `--write-token-file`.
    pub write_token_file: Option<PathBuf>,
    /// `--read-token`.
    pub read_token: Option<String>,
    /// `--read-token-file`.
    pub read_token_file: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--speed` (demo).
    pub speed: Option<f64>,
}

/// Loads the configuration: defaults, file, environment, then these flags.
pub fn load_config(o: &Overrides) -> Result<Config, ConfigError> {
    let mut config = Config::load(o.config.as_deref(), std::env::vars())?;
    if let Some(d) = &o.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = o.listen {
        config.listen = l;
    }
    if let Some(t) = &o.write_token {
        config.write_token = t.clone();
    }
    if let Some(f) = &o.write_token_file {
        config.write_token_file = f.clone();
    }
    if let Some(t) = &o.read_token {
        config.read_token = t.clone();
    }
    if let Some(f) = &o.read_token_file {
        config.read_token_file = f.clone();
    }
    if let Some(f) = &o.tls_cert {
        config.tls.cert_file = f.clone();
    }
    if let Some(f) = &o.tls_key {
        config.tls.key_file = f.clone();
    }
    config.read_token_files()?;
    config.insecure |= o.insecure;
    if let Some(s) = o.speed {
        config.demo.speed = s;
    }
    config.check()?;
    config.check_exposure()?;
    Ok(config)
}

/// The engine options a configuration asks for.
pub fn engine_options(config: &Config, clock: Arc<dyn Clock>) -> EngineOptions {
    let wal = WalOptions::default()
        .segment_bytes(config.wal.segment_bytes)
        .commit_delay(Duration::from_millis(config.wal.commit_delay_ms))
        .preallocation(config.wal.preallocation.into())
        .recovery(config.wal.recovery);
    let mut options = EngineOptions::default()
        .wal(wal)
        .clock(clock)
        .queue_depth(config.engine.queue_depth)
        .recent_readings_max(config.engine.duplicate_recent_readings)
        .auto_register(gridlog_common::domain::MeterKind::from_name(
            &config.engine.auto_register,
        ))
        .rollups(rollup_options(config));
    options.rules.future_skew_ms = config.engine.future_skew_s * 1000;
    options.rules.entities_max = config.engine.entities_max;
    let s = &config.storage;
    options.storage.snapshot_every_events = s.snapshot_every_events.max(1);
    options.storage.snapshot_every_bytes = s.snapshot_every_bytes.max(1);
    options.storage.snapshots_keep = s.snapshots_keep.max(1);
    options.storage.archive = s.archive;
    options.storage.archive_budget_bytes = s.archive_budget_bytes;
    options.storage.archive_evict_unshipped = s.archive_evict_unshipped;
    options.storage.rollup_spill_bytes = s.rollup_spill_bytes.max(1);
    options
}

/// Runs the appliance until SIGINT/SIGTERM. `demo` adds the simulated site.
pub fn run(overrides: &Overrides, demo: bool) -> Outcome {
    let config = match load_config(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridlog: {e}");
            return Outcome::Failed;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gridlog-http")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gridlog: cannot start the runtime: {e}");
            return Outcome::Failed;
        }
    };
    runtime.block_on(serve(config, demo))
}

async fn serve(config: Config, demo: bool) -> Outcome {
    // SIGHUP from the start: its default action would end the process, and
    // `systemctl reload` sends it whether or not TLS is on.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let tls = match server::tls::Tls::load(&config.tls) {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            eprintln!("gridlog: tls: {e}");
            return Outcome::Failed;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gridlog: cannot listen on {}: {e}", config.listen);
            return Outcome::Failed;
        }
    };
    let address = listener.local_addr().map_or(config.listen, |a| a);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One line on stdout that scripts and tests can wait for.
    println!(
        "gridlog listening on {scheme}://{address}/ (data in {})",
        config.data_dir.display()
    );
    tracing::info!(%address, data_dir = %config.data_dir.display(), demo, "gridlog starting");
    warn_of_exposure(&config);
    warn_of_memory(&config);

    // Listening for SIGINT/SIGTERM from here on: a signal during recovery is kept, and the
    // second one is seen however soon it follows the first.
    let mut signals = StopSignals::new();
    let state = AppState::new(config.clone());
    if let Some(tls) = &tls {
        state.attach_tls(tls.clone());
    }
    if let Some(hangups) = hangups {
        tokio::spawn(reload_on_hangup(hangups, tls));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let state = state.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(server::serve(listener, state, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }))
    };

    // The demo's simulated clock is the gateway's clock, so readings are never "in the
    // future"; demo::start moves it past the history already in the log.
    let demo_clock =
        demo.then(|| Arc::new(DemoClock::new(SystemClock.now_ms(), config.demo.speed)));
    let clock: Arc<dyn Clock> = match &demo_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let extending = crate::systemd::keep_extending_start();
    let opened = open_engine(&config, clock).await;
    extending.abort();
    let engine = match opened {
        Ok(engine) => engine,
        Err(outcome) => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            return outcome;
        }
    };
    let demo_stop = Arc::new(AtomicBool::new(false));
    let mut demo_thread = None;
    if let Some(clock) = demo_clock {
        let options = DemoOptions {
            speed: config.demo.speed,
            ..DemoOptions::default()
        };
        match demo::start(engine.clone(), clock, options, demo_stop.clone()) {
            Ok(handle) => demo_thread = Some(handle),
            Err(e) => {
                eprintln!("gridlog: cannot start the demo site: {e}");
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Outcome::Failed;
            }
        }
    }
    // The devices are in the status before the gateway says it is ready.
    let pollers = if config.modbus.device.is_empty() {
        Vec::new()
    } else {
        let (status, tasks) =
            crate::modbus::poller::spawn(&config.modbus.device, engine.clone(), stop_rx.clone());
        state.attach_modbus(status);
        tasks
    };
    state.attach(engine.clone());
    let shipper = start_shipping(&config, &engine, &state, stop_rx.clone());
    let mqtt = start_mqtt(&config, &engine, &state, stop_rx.clone());
    tracing::info!(offset = engine.committed_offset(), "ready");
    crate::systemd::ready();
    let watchdog = crate::systemd::spawn_watchdog(engine.clone());

    signals.next().await;
    tracing::info!("shutting down: finishing in-flight requests");
    crate::systemd::stopping();
    if let Some(watchdog) = watchdog {
        // It holds the engine, which close_engine must have alone.
        watchdog.abort();
        let _ = watchdog.await;
    }
    // A second signal stops at once: the log is then as after a power cut, which the next
    // start recovers (nothing acknowledged is lost).
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("gridlog: second signal: stopping at once");
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
    let _ = stop_tx.send(true);
    let outcome = match server.await {
        Ok(Ok(())) => Outcome::Clean,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "server error");
            Outcome::Failed
        }
        Err(e) => {
            tracing::error!(error = %e, "server task failed");
            Outcome::Failed
        }
    };
    if let Some(shipper) = shipper {
        let _ = shipper.await;
    }
    if let Some(mqtt) = mqtt {
        let _ = mqtt.await;
    }
    for poller in pollers {
        let _ = poller.await;
    }
    demo_stop.store(true, Ordering::Relaxed);
    if let Some(thread) = demo_thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    drop(state);
    close_engine(engine).await;
    tracing::info!("stopped");
    outcome
}

/// Warns of what a listener beyond loopback exposes: without TLS, tokens and readings
/// cross the site network in clear text; without a read token, anyone there reads.
fn warn_of_exposure(config: &Config) {
    if config.listen.ip().is_loopback() {
        return;
    }
    if !config.tls.enabled() {
        tracing::warn!(
            listen = %config.listen,
            "listening beyond loopback without TLS: tokens and readings cross the site network in clear text (set tls.cert_file and tls.key_file; `gridlog tls-selfsigned` makes a pair)"
        );
    }
    if config.read_token.is_empty() {
        tracing::warn!(
            listen = %config.listen,
            "listening beyond loopback without a read token: anyone on the site network can read every reading (set read_token)"
        );
    }
}

/// The rollup horizons of `engine.rollup_*`.
fn rollup_options(config: &Config) -> RollupOptions {
    RollupOptions {
        quarter_hour_days: config.engine.rollup_quarter_hour_days,
        day_days: config.engine.rollup_day_days,
    }
}

/// Warns if the engine at its configured limits could outgrow the memory this process may
/// use (see `memory_budget`).
fn warn_of_memory(config: &Config) {
    let Some(limit_bytes) = crate::memory_budget::limit_bytes() else {
        return;
    };
    let entities_max = config.engine.entities_max;
    let rollups = rollup_options(config);
    let spill_bytes = config.storage.rollup_spill_bytes;
    if let Some(budget) =
        crate::memory_budget::check(entities_max, &rollups, spill_bytes, limit_bytes)
    {
        tracing::warn!(
            worst_case_bytes = budget.worst_case_bytes,
            limit_bytes,
            "{}",
            crate::memory_budget::warning(&budget, entities_max)
        );
    }
}

/// Re-reads the certificate and key on every SIGHUP (`systemctl reload`): connections
/// accepted afterwards use the new pair; a bad new pair is logged, naming the file and the
/// problem, and the pair in force stays. Without TLS there is nothing to reload.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    tls: Option<Arc<server::tls::Tls>>,
) {
    while hangups.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: TLS is off, nothing to reload");
            continue;
        };
        match tls.reload() {
            Ok(loaded) => tracing::info!(
                cert_file = %tls.cert_file().display(),
                not_after_unix_s = loaded.not_after_unix_s,
                "SIGHUP: TLS certificate reloaded; new connections use it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: TLS certificate not reloaded; the previous one stays in force"
            ),
        }
    }
}

/// The exit status of a start that could not open the data directory: 1 (damaged) when the
/// history itself is at fault, 2 (could not be done) for a lock another process holds, log
/// options out of range or an I/O error, which no repair of the data would change.
fn open_failure(error: &EngineOpenError) -> Outcome {
    match error {
        EngineOpenError::Log(
            OpenError::Locked(_) | OpenError::InvalidOptions(_) | OpenError::Io { .. },
        ) => Outcome::Failed,
        _ => Outcome::Damaged,
    }
}

/// Recovers the data directory off the runtime's threads; the outcome to exit with if it
/// cannot (a damaged directory, or a recovery task that died).
async fn open_engine(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Engine>, Outcome> {
    let options = engine_options(config, clock);
    let data_dir = config.data_dir.clone();
    match tokio::task::spawn_blocking(move || Engine::open(&data_dir, options)).await {
        Ok(Ok(engine)) => Ok(Arc::new(engine)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot open the data directory");
            eprintln!("gridlog: cannot open {}: {e}", config.data_dir.display());
            Err(open_failure(&e))
        }
        Err(e) => {
            eprintln!("gridlog: recovery task failed: {e}");
            Err(Outcome::Failed)
        }
    }
}

/// Starts the shipper if `ship.store` is set. A shipper that cannot start is logged and
/// left off: the gateway keeps recording, and the backlog waits for a fixed configuration.
fn start_shipping(
    config: &Config,
    engine: &Arc<Engine>,
    state: &AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if let Err(e) = crate::ship::lineage::ensure(&config.data_dir) {
        tracing::error!(error = %e, "cannot read or create the data directory's LINEAGE");
    }
    match crate::ship::shipper::spawn(config, engine.clone(), stop) {
        Ok(Some((status, handle))) => {
            state.attach_shipping(status);
            Some(handle)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "shipping is configured but cannot start");
            eprintln!("gridlog: shipping cannot start: {e}");
            None
        }
    }
}

/// Starts the MQTT subscriber if `mqtt.url` is set (the configuration was checked, so
/// only a CA file that became unreadable can stop it: logged, and the gateway runs on).
fn start_mqtt(
    config: &Config,
    engine: &Arc<Engine>,
    state: &AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match crate::ingest::mqtt::spawn(&config.mqtt, &config.site_id, engine.clone(), stop) {
        Ok(Some((status, handle))) => {
            state.attach_mqtt(status);
            Some(handle)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "mqtt is configured but cannot start");
            eprintln!("gridlog: mqtt cannot start: {e}");
            None
        }
    }
}

/// Shuts the engine down off the runtime's threads (its last batches become durable), unless
/// something still holds it (a query finishing): then its drop closes the log.
async fn close_engine(engine: Arc<Engine>) {
    match Arc::try_unwrap(engine) {
        Ok(engine) => {
            let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
        }
        Err(engine) => drop(engine),
    }
}

/// The exit status after a second SIGINT/SIGTERM (128 + SIGINT, as shells report an
/// interrupted process).
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// SIGINT and SIGTERM, listened for from creation on (each delivery is kept until read).
pub(crate) struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn new() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next SIGINT or SIGTERM.
    pub(crate) async fn next(&mut self) {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(self.interrupt.as_mut()) => {},
            () = recv(self.terminate.as_mut()) => {},
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
