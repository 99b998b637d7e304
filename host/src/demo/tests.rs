//! The demo against a real engine in a temporary directory. The simulation is driven by
//! calling `Site::step` directly with a hand-set engine clock: two simulated hours take a
//! few seconds, not two hours.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlog_common::domain::{Command, Reading};
use gridlog_firmware::engine::{Clock, Engine, EngineOptions, Request, SystemClock};

use super::profiles::DAY_MS;
use super::site::{
    self, Site, BATTERY_METER, BATTERY_RATED_W, GRID_METER, OUTAGE_METER, PV_METER, SOC_MAX_PCT,
    SOC_MIN_PCT,
};
use super::*;

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// An engine clock the test sets by hand.
#[derive(Debug)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn new(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }
    fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn open(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Engine {
    Engine::open(dir, EngineOptions::default().clock(clock)).expect("engine opens")
}

/// Everything the simulator sent, for the checks.
#[derive(Debug, Default)]
struct Record {
    readings: HashMap<String, Vec<Reading>>,
    soc_pct: Vec<f64>,
    setpoints: Vec<(String, f64)>,
    outcome: Outcome,
}

impl Record {
    fn add(&mut self, commands: &[Command]) {
        for command in commands {
            match command {
                Command::RecordReading { meter, reading } => self
                    .readings
                    .entry(meter.to_string())
                    .or_default()
                    .push(*reading),
                Command::RecordTelemetry { asset, telemetry }
                    if asset.as_str() == site::BATTERY_ASSET =>
                {
                    self.soc_pct.extend(telemetry.soc_pct);
                }
                Command::RequestSetpoint { asset, power_w }
                | Command::ConfirmSetpoint { asset, power_w } => {
                    self.setpoints.push((asset.to_string(), *power_w));
                }
                _ => {}
            }
        }
    }

    fn delta(&self, meter: &str) -> (f64, f64) {
        let r = &self.readings[meter];
        let (first, last) = (r.first().unwrap(), r.last().unwrap());
        (
            last.import_wh - first.import_wh,
            last.export_wh - first.export_wh,
        )
    }
}

/// Runs the site from its next reading to `until_ms` in requests of
/// [`INTERVALS_PER_REQUEST_MAX`] intervals, moving the engine clock along.
fn simulate(engine: &Engine, clock: &ManualClock, site: &mut Site, until_ms: i64) -> Record {
    let stop = AtomicBool::new(false);
    let mut record = Record::default();
    while site.next_ms() <= until_ms {
        let batch_end = (site.next_ms()
            + (INTERVALS_PER_REQUEST_MAX as i64 - 1) * READING_INTERVAL_MS_DEFAULT)
            .min(until_ms);
        clock.set(batch_end);
        let commands = site.step(batch_end, INTERVALS_PER_REQUEST_MAX);
        assert!(!commands.is_empty());
        assert!(commands.len() <= INTERVALS_PER_REQUEST_MAX * COMMANDS_PER_INTERVAL_MAX);
        record.add(&commands);
        let outcome = submit(engine, &Request::of(commands), &stop).expect("engine takes it");
        record.outcome.accepted += outcome.accepted;
        record.outcome.duplicates += outcome.duplicates;
        record.outcome.rejected += outcome.rejected;
    }
    record
}

fn register(engine: &Engine, site: &Site) -> Outcome {
    let stop = AtomicBool::new(false);
    submit(engine, &Request::of(site.registrations()), &stop).expect("engine takes it")
}

/// 07:30 UTC a few days from now: after real time (so a restart resumes from the stored
/// readings, not from real now), and the window holds sub-20's 08:00-08:30 outage.
fn future_morning_ms() -> i64 {
    let today = SystemClock.now_ms().div_euclid(DAY_MS) * DAY_MS;
    today + 3 * DAY_MS + 7 * HOUR_MS + 30 * MINUTE_MS
}

#[test]
fn clock_runs_at_its_speed_and_never_goes_back() {
    let clock = DemoClock::new(1_000_000, 50.0);
    assert_eq!(clock.speed(), 50.0);
    let real = Instant::now();
    let t0 = clock.now_ms();
    std::thread::sleep(Duration::from_millis(200));
    let t1 = clock.now_ms();
    let real_ms = real.elapsed().as_secs_f64() * 1000.0;
    let simulated = (t1 - t0) as f64;
    assert!(simulated >= 200.0 * 50.0 - 50.0, "{simulated}");
    assert!(
        simulated <= real_ms * 50.0 + 50.0,
        "{simulated} in {real_ms} ms"
    );
    assert!((1_000_000..1_005_000).contains(&t0), "{t0}");

    // advance_to moves forward only.
    clock.advance_to(5_000_000);
    let t2 = clock.now_ms();
    assert!((5_000_000..5_010_000).contains(&t2), "{t2}");
    clock.advance_to(2_000_000);
    assert!(clock.now_ms() >= t2);

    // Out-of-range speeds are clamped, not trusted.
    assert_eq!(DemoClock::new(0, 0.0).speed(), SPEED_MIN);
    assert_eq!(DemoClock::new(0, 1e9).speed(), SPEED_MAX);
    assert_eq!(DemoClock::new(0, f64::NAN).speed(), 1.0);
}

#[test]
fn options_are_checked() {
    assert!(DemoOptions::default().check().is_ok());
    let bad = DemoOptions {
        reading_interval_ms: 0,
        ..DemoOptions::default()
    };
    assert_eq!(
        bad.check().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let bad = DemoOptions {
        speed: -1.0,
        ..DemoOptions::default()
    };
    assert!(bad.check().is_err());
}

#[test]
fn two_hours_of_site_then_a_restart_that_continues() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions::default();
    let start = future_morning_ms();
    let end = start + 2 * HOUR_MS;
    let clock = ManualClock::new(start);
    let engine = open(dir.path(), clock.clone());

    // A new site starts at real now.
    let before = SystemClock.now_ms();
    let resume = resume_time_ms(&engine, &options);
    assert!(resume >= before && resume <= SystemClock.now_ms());

    let mut site = Site::new(options.reading_interval_ms, start, 42);
    let registered = register(&engine, &site);
    assert_eq!(registered.accepted, 29, "25 meters and 4 assets");
    assert_eq!(registered.rejected, 0);
    site.restore(&engine); // nothing stored yet: changes nothing
    assert_eq!(site.next_ms(), start);

    let first = simulate(&engine, &clock, &mut site, end);
    assert_eq!(first.outcome.rejected, 0, "no command was rejected");
    assert_eq!(first.outcome.duplicates, 0);
    assert_eq!(engine.stats().rejected, 0);

    // Every reading interval has its readings; registers never decrease.
    let intervals = (2 * HOUR_MS / options.reading_interval_ms + 1) as usize;
    assert_eq!(first.readings.len(), 25);
    for (meter, readings) in &first.readings {
        for pair in readings.windows(2) {
            assert!(pair[1].time_ms > pair[0].time_ms, "{meter}: time");
            assert!(pair[1].import_wh >= pair[0].import_wh, "{meter}: import");
            assert!(pair[1].export_wh >= pair[0].export_wh, "{meter}: export");
        }
        assert!(readings.iter().all(|r| r.time_ms <= end));
        if meter == OUTAGE_METER {
            // 08:00-08:30 is missing: a real gap.
            assert_eq!(readings.len(), intervals - 30 * 60);
            assert!(readings.iter().all(|r| !site::in_outage(r.time_ms)));
            let gap = readings
                .windows(2)
                .map(|p| p[1].time_ms - p[0].time_ms)
                .max()
                .unwrap();
            assert_eq!(gap, 30 * MINUTE_MS + options.reading_interval_ms);
        } else {
            assert_eq!(readings.len(), intervals, "{meter}");
        }
    }

    // The site's energy balance at the registers: grid import − export = sub-meters + EV −
    // PV − battery discharge + battery charge.
    let (grid_import, grid_export) = first.delta(GRID_METER);
    let (_, pv) = first.delta(PV_METER);
    let (charged, discharged) = first.delta(BATTERY_METER);
    let mut consumption = 0.0;
    for meter in first.readings.keys() {
        if meter.starts_with("sub-") || meter.starts_with("ev-") {
            consumption += first.delta(meter).0;
        }
    }
    let balance = grid_import - grid_export - (consumption - pv - discharged + charged);
    assert!(
        balance.abs() < 5.0,
        "imbalance {balance} Wh: grid {grid_import}/{grid_export}, loads {consumption}, pv {pv}, battery {charged}/{discharged}"
    );
    assert!(
        consumption > 10_000.0,
        "two hours of a site: {consumption} Wh"
    );
    // The engine's site totals agree (they count from each meter's first reading, too).
    let totals = engine.read(|image| image.site_totals().all_time);
    assert!(
        (totals.consumption_wh - consumption).abs() < 5.0,
        "{totals:?} vs {consumption}"
    );

    // The battery stays within its limits, and so do the setpoints.
    assert!(!first.soc_pct.is_empty());
    assert!(first
        .soc_pct
        .iter()
        .all(|soc| (SOC_MIN_PCT..=SOC_MAX_PCT).contains(soc)));
    assert!(first
        .setpoints
        .iter()
        .all(|(_, p)| p.abs() <= BATTERY_RATED_W));

    // Restart: a new engine on the same directory, a new site resumed from it.
    let last_time = first.readings[GRID_METER].last().unwrap().time_ms;
    let last: HashMap<String, Reading> = first
        .readings
        .iter()
        .map(|(m, r)| (m.clone(), *r.last().unwrap()))
        .collect();
    engine.shutdown();
    let clock = ManualClock::new(SystemClock.now_ms());
    let engine = open(dir.path(), clock.clone());
    let resume = resume_time_ms(&engine, &options);
    assert_eq!(resume, last_time + options.reading_interval_ms);
    clock.set(resume);
    let mut site = Site::new(options.reading_interval_ms, resume, 43);
    let again = register(&engine, &site);
    assert_eq!(
        (again.accepted, again.duplicates, again.rejected),
        (0, 29, 0)
    );
    site.restore(&engine);
    assert_eq!(site.next_ms(), resume);

    let second = simulate(&engine, &clock, &mut site, resume + 10 * MINUTE_MS);
    assert_eq!(second.outcome.rejected, 0);
    assert_eq!(engine.stats().rejected, 0);
    for (meter, readings) in &second.readings {
        let before = &last[meter];
        let after = &readings[0];
        assert!(after.time_ms > before.time_ms, "{meter}");
        assert!(
            after.import_wh >= before.import_wh,
            "{meter}: import continues"
        );
        assert!(
            after.export_wh >= before.export_wh,
            "{meter}: export continues"
        );
        // One interval's worth at most (sub-20 may have been in an outage before).
        if meter != OUTAGE_METER {
            assert!(after.import_wh - before.import_wh < 100.0, "{meter}");
        }
    }
    assert!(second
        .soc_pct
        .iter()
        .all(|soc| (SOC_MIN_PCT..=SOC_MAX_PCT).contains(soc)));
}

/// 2024-06-23, a Sunday: 00:00 UTC. A sunny day of the PV profile comes up.
const SUNDAY_MS: i64 = 1_719_100_800_000;

fn soc_over(site: &mut Site, until_ms: i64) -> (f64, f64, usize) {
    let mut record = Record::default();
    while site.next_ms() <= until_ms {
        record.add(&site.step(until_ms, INTERVALS_PER_REQUEST_MAX));
    }
    let min = record.soc_pct.iter().copied().fold(f64::MAX, f64::min);
    let max = record.soc_pct.iter().copied().fold(f64::MIN, f64::max);
    let battery_setpoints = record
        .setpoints
        .iter()
        .filter(|(asset, _)| asset == site::BATTERY_ASSET)
        .count();
    (min, max, battery_setpoints)
}

#[test]
fn the_battery_fills_on_surplus_and_empties_on_demand_within_its_limits() {
    // A summer Sunday midday: PV beyond the site's demand; the battery starts nearly full.
    let start = SUNDAY_MS + 9 * HOUR_MS;
    let mut site = Site::new(1000, start, 7);
    site.set_battery_soc_pct(90.0);
    let (_, max, setpoints) = soc_over(&mut site, start + 3 * HOUR_MS);
    assert!(max <= SOC_MAX_PCT, "{max}");
    assert!(
        max >= SOC_MAX_PCT - 0.01,
        "it charged up to the limit: {max}"
    );
    // The deadband keeps setpoints rare: a few per hour, not one per reading.
    assert!(setpoints < 3 * 3600 / 10, "{setpoints} setpoint commands");
    assert!(site.battery_soc_pct() <= SOC_MAX_PCT);

    // The evening: no PV; the battery starts nearly empty.
    let start = SUNDAY_MS + 20 * HOUR_MS;
    let mut site = Site::new(1000, start, 8);
    site.set_battery_soc_pct(8.0);
    let (min, _, _) = soc_over(&mut site, start + HOUR_MS);
    assert!(min >= SOC_MIN_PCT, "{min}");
    assert!(
        min <= SOC_MIN_PCT + 0.01,
        "it discharged down to the limit: {min}"
    );
}

#[test]
fn start_runs_on_its_thread_and_continues_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        speed: 600.0,
        ..DemoOptions::default()
    };
    // The clock starts at real now; start() moves it on if history lies ahead.
    let clock = Arc::new(DemoClock::new(SystemClock.now_ms(), options.speed));
    let engine = Arc::new(open(dir.path(), clock.clone()));
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let before = engine.read(|image| match image.entity(GRID_METER).map(|e| &e.state) {
            Some(EntityState::Meter(m)) => m.latest,
            _ => None,
        });
        let thread = start(engine.clone(), clock.clone(), options, stop.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let stats = engine.stats();
        assert_eq!(stats.rejected, 0, "round {round}");
        let grid = engine.read(|image| match image.entity(GRID_METER).map(|e| &e.state) {
            Some(EntityState::Meter(m)) => Some((m.readings, m.latest.unwrap())),
            _ => None,
        });
        let (readings, latest) = grid.expect("the grid meter reported");
        // ~900 simulated seconds ran; allow for a slow debug engine.
        assert!(
            readings >= 100 * (round + 1),
            "round {round}: {readings} readings"
        );
        assert!(latest.time_ms <= clock.now_ms(), "never in the future");
        if let Some(before) = before {
            assert!(latest.time_ms > before.time_ms);
            assert!(latest.import_wh >= before.import_wh);
        }
    }
    let bad = DemoOptions {
        reading_interval_ms: 1,
        ..options
    };
    assert!(start(engine, clock, bad, Arc::new(AtomicBool::new(false))).is_err());
}
