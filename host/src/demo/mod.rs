//! `gridlog demo`: a simulated energy site that feeds the engine through the ordinary write
//! path, so the dashboard, queries and shipping have something real-looking to show.
//!
//! The site ([`site`]) is a grid connection, 30 kW of PV, a 20 kW / 50 kWh battery run by a
//! self-consumption controller, two EV chargers with charging sessions, and 20 sub-meters
//! with the BDEW commercial and household load shapes, all driven by real profiles
//! ([`profiles`], data in `host/data/`). Time is simulated ([`DemoClock`]): at speed 60 an
//! hour passes per real minute, and every simulated interval still gets its readings.
//!
//! The simulator is an ordinary client: one request per tick holding the readings and
//! telemetry of every interval due, `Busy` answered with back-off and retry (nothing is
//! dropped silently), every rejection logged. After a restart it continues from the
//! registers and times the engine holds.
//!
//! Files: `clock` (simulated time), `site` (the model), `profiles` (embedded data), `rng`
//! (noise).

mod clock;
mod profiles;
mod rng;
mod site;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridlog_firmware::engine::state::EntityState;
use gridlog_firmware::engine::{
    Clock, Engine, ItemResult, Request, SubmitError, SystemClock, REQUEST_COMMANDS_MAX,
};

pub use clock::{DemoClock, SPEED_MAX, SPEED_MIN};

use site::{Site, COMMANDS_PER_INTERVAL_MAX};

/// Default time between two readings of a meter (simulated): one second.
pub const READING_INTERVAL_MS_DEFAULT: i64 = 1000;
/// Shortest reading interval: ten readings per second per meter.
pub const READING_INTERVAL_MS_MIN: i64 = 100;
/// Longest reading interval: one reading per quarter hour.
pub const READING_INTERVAL_MS_MAX: i64 = 15 * 60 * 1000;
/// Most simulated intervals in one request, when the simulator has several to send (high
/// speed, or catching up after the engine was busy): bounds the request below the engine's
/// command limit and well inside one log frame (~2,000 commands, ~150 kB).
pub const INTERVALS_PER_REQUEST_MAX: usize = 60;
const _: () =
    assert!(INTERVALS_PER_REQUEST_MAX * COMMANDS_PER_INTERVAL_MAX <= REQUEST_COMMANDS_MAX);
/// Shortest real pause between two ticks: at high speed the simulator sends several
/// intervals per request instead of waking up for each (keeps CPU and fsyncs modest).
const TICK_MIN: Duration = Duration::from_millis(100);
/// Longest real sleep before the stop flag is looked at again.
const STOP_POLL: Duration = Duration::from_millis(200);
/// First and longest wait before a request refused as `Busy` is tried again.
const BUSY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const BUSY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// After `stop`, how long a last request may still wait for a busy engine.
const STOP_FLUSH: Duration = Duration::from_secs(5);
/// The simulator says so when it is this far (simulated) behind its clock ...
const LAG_WARN_MS: i64 = 60_000;
/// ... at most this often (real time).
const LAG_WARN_EVERY: Duration = Duration::from_secs(60);
/// Base seed of the noise; mixed with the start time so each run differs.
const SEED: u64 = 0x6772_6964_6c6f_6721; // "gridlog!"

/// How the demo runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoOptions {
    /// Simulated seconds per real second (the [`DemoClock`]'s speed). Default 1.
    pub speed: f64,
    /// Time between two readings of a meter, simulated. Default
    /// [`READING_INTERVAL_MS_DEFAULT`]; [`READING_INTERVAL_MS_MIN`]..=
    /// [`READING_INTERVAL_MS_MAX`].
    pub reading_interval_ms: i64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            speed: 1.0,
            reading_interval_ms: READING_INTERVAL_MS_DEFAULT,
        }
    }
}

impl DemoOptions {
    fn check(&self) -> std::io::Result<()> {
        let invalid =
            |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
        if !(READING_INTERVAL_MS_MIN..=READING_INTERVAL_MS_MAX).contains(&self.reading_interval_ms)
        {
            return Err(invalid(format!(
                "demo reading interval is {} ms; it must be {READING_INTERVAL_MS_MIN}..={READING_INTERVAL_MS_MAX} ms",
                self.reading_interval_ms
            )));
        }
        if !(SPEED_MIN..=SPEED_MAX).contains(&self.speed) {
            return Err(invalid(format!(
                "demo speed is {}; it must be {SPEED_MIN}..={SPEED_MAX}",
                self.speed
            )));
        }
        Ok(())
    }
}

/// Where the simulated clock should start so history continues after a restart:
/// max(real now, newest reading/telemetry time of the demo site's entities in the engine's
/// image + `reading_interval_ms`).
pub fn resume_time_ms(engine: &Engine, options: &DemoOptions) -> i64 {
    let real_now = SystemClock.now_ms();
    let newest = engine.read(|image| {
        site::entity_ids()
            .filter_map(|id| match &image.entity(id)?.state {
                EntityState::Meter(m) => m.latest.map(|r| r.time_ms),
                EntityState::Asset(a) => a.telemetry.as_ref().map(|t| t.time_ms),
                EntityState::System(_) => None,
            })
            .max()
    });
    newest.map_or(real_now, |newest| {
        real_now.max(newest.saturating_add(options.reading_interval_ms))
    })
}

/// Registers the site (idempotent: on restart registrations come back as Duplicate) and
/// runs the simulation on its own std thread until `stop` is set; returns the thread.
///
/// The clock is moved forward to [`resume_time_ms`] first if it is behind it, so it may be
/// created at any time at or before that (e.g. at real now, to open the engine with it).
/// Options outside their documented ranges are an `InvalidInput` error; the clock's own
/// speed is the one that counts.
pub fn start(
    engine: Arc<Engine>,
    clock: Arc<DemoClock>,
    options: DemoOptions,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    options.check()?;
    if options.speed != clock.speed() {
        tracing::warn!(
            options = options.speed,
            clock = clock.speed(),
            "demo speed differs from the clock's; the clock's wins"
        );
    }
    clock.advance_to(resume_time_ms(&engine, &options));
    std::thread::Builder::new()
        .name("gridlog-demo".into())
        .spawn(move || run(&engine, &clock, &options, &stop))
}

/// What became of a request's commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) accepted: usize,
    pub(crate) duplicates: usize,
    pub(crate) rejected: usize,
}

/// Submits `request`, waiting and retrying while the engine is busy. Rejections are logged.
/// Gives up on `Busy` only once `stop` has been set for [`STOP_FLUSH`].
pub(crate) fn submit(
    engine: &Engine,
    request: &Request,
    stop: &AtomicBool,
) -> Result<Outcome, SubmitError> {
    let mut backoff = BUSY_BACKOFF_MIN;
    let mut stopping_since: Option<Instant> = None;
    let mut busy_logged = false;
    loop {
        match engine.submit(request.clone()) {
            Ok(response) => {
                let mut outcome = Outcome::default();
                for (result, command) in response.results.iter().zip(&request.commands) {
                    match result {
                        ItemResult::Accepted { .. } => outcome.accepted += 1,
                        ItemResult::Duplicate | ItemResult::Replayed => outcome.duplicates += 1,
                        ItemResult::Rejected(rejection) => {
                            outcome.rejected += 1;
                            tracing::warn!(
                                entity = %command.command.entity(),
                                code = rejection.code.as_str(),
                                field = rejection.field,
                                "demo command rejected: {}",
                                rejection.message
                            );
                        }
                    }
                }
                return Ok(outcome);
            }
            Err(SubmitError::Busy { queue_depth }) => {
                if stop.load(Ordering::Relaxed) {
                    let since = *stopping_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STOP_FLUSH {
                        return Err(SubmitError::Busy { queue_depth });
                    }
                }
                if !busy_logged {
                    tracing::debug!(queue_depth, "engine busy; the demo backs off and retries");
                    busy_logged = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BUSY_BACKOFF_MAX);
            }
            Err(error) => return Err(error),
        }
    }
}

fn run(engine: &Engine, clock: &DemoClock, options: &DemoOptions, stop: &AtomicBool) {
    let start_ms = clock.now_ms();
    let mut site = Site::new(
        options.reading_interval_ms,
        start_ms,
        SEED ^ start_ms as u64,
    );
    match submit(engine, &Request::of(site.registrations()), stop) {
        Ok(outcome) => tracing::info!(
            registered = outcome.accepted,
            already = outcome.duplicates,
            rejected = outcome.rejected,
            "demo site registered"
        ),
        Err(error) => {
            tracing::error!(%error, "demo site could not register; the demo stops");
            return;
        }
    }
    site.restore(engine);
    tracing::info!(
        start_ms = site.next_ms(),
        speed = clock.speed(),
        interval_ms = options.reading_interval_ms,
        "demo site running"
    );
    let mut lag_warned: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now_ms();
        let first_ms = site.next_ms();
        let commands = site.step(now, INTERVALS_PER_REQUEST_MAX);
        if !commands.is_empty() {
            match submit(engine, &Request::of(commands), stop) {
                Ok(_) => {}
                Err(SubmitError::Stopped) => {
                    tracing::info!("engine stopped; the demo stops");
                    return;
                }
                Err(SubmitError::Busy { .. }) => {
                    tracing::warn!(
                        from_ms = first_ms,
                        until_ms = site.next_ms() - options.reading_interval_ms,
                        "demo stopping while the engine is busy: these readings were not stored"
                    );
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "demo request failed; the demo stops");
                    return;
                }
            }
        }
        let behind_ms = clock.now_ms() - site.next_ms();
        if behind_ms >= 0 {
            // More intervals are due already: go on without sleeping.
            if behind_ms > LAG_WARN_MS && lag_warned.is_none_or(|t| t.elapsed() >= LAG_WARN_EVERY) {
                tracing::warn!(
                    behind_s = behind_ms / 1000,
                    "the demo falls behind its clock: the engine takes its readings slower than they are simulated"
                );
                lag_warned = Some(Instant::now());
            }
            continue;
        }
        let until_next = Duration::from_secs_f64(-behind_ms as f64 / 1000.0 / clock.speed());
        sleep_unless_stopped(until_next.max(TICK_MIN), stop);
    }
    tracing::info!("demo stopped");
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    loop {
        let now = Instant::now();
        if now >= until || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((until - now).min(STOP_POLL));
    }
}
