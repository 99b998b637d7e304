//! Rollups on real data: a week of measured PV power (NREL SERF East, 15 min) and a week of
//! the BDEW household load profile (h0, 15 min), integrated into cumulative registers and fed
//! to the engine as the readings of a PV meter and a load meter. See `tests/data/README.md`
//! for sources and licences.
//!
//! What "the energy of a bucket" means here is the engine's documented rule
//! (`firmware/src/engine/rollup.rs`): the register delta since the previous reading is booked
//! into the bucket of the reading's time. So a bucket's energy is the register at its last
//! reading minus the register at the last reading before it, and an interval without
//! readings has no bucket at all — a gap in the data stays a gap.

mod engine_support;

use engine_support::*;
use gridlog_common::domain::{Command, MeterKind, Reading};
use gridlog_firmware::engine::rollup::{Bucket, RollupOptions, Step};
use gridlog_firmware::engine::{Engine, ItemResult, Request, SiteTotals};

const PV_CSV: &str = include_str!("../data/pvanalytics/serf_east_15min_ac_power.csv");
const LOAD_CSV: &str = include_str!("../data/demandlib/selp_series.csv");
/// The normalised h0 profile times this is the load in watts.
const LOAD_SCALE_W: f64 = 5000.0;
/// The registers' values at the first reading: meters are not new.
const PV_EXPORT_START_WH: f64 = 1_234_567.0;
const LOAD_IMPORT_START_WH: f64 = 7_654_321.0;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS` with an optional `±HH:MM` offset (none = UTC) to UTC ms.
fn parse_time_ms(s: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 { s[range].parse().unwrap() };
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    let local_ms = ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000;
    let offset_ms = match s.len() {
        19 => 0,
        25 => {
            let minutes = n(20..22) * 60 + n(23..25);
            let sign = if &s[19..20] == "-" { -1 } else { 1 };
            sign * minutes * 60_000
        }
        _ => panic!("unexpected time {s:?}"),
    };
    local_ms - offset_ms
}

#[test]
fn time_parsing_knows_the_calendar() {
    assert_eq!(parse_time_ms("1970-01-01 00:00:00"), 0);
    assert_eq!(parse_time_ms("2000-03-01 00:00:00"), 951_868_800_000);
    assert_eq!(
        parse_time_ms("2016-07-01 00:00:00-07:00"),
        1_467_356_400_000
    );
}

/// One meter's data: (time, power in W) samples and the readings built from them.
struct Series {
    meter: &'static str,
    readings: Vec<Reading>,
}

impl Series {
    /// Integrates `samples` (time, W ≥ 0) into a register: each sample's power is the mean
    /// over the interval that ends at its time (the first sample is the baseline).
    fn integrate(
        meter: &'static str,
        samples: &[(i64, f64)],
        start_wh: f64,
        export: bool,
    ) -> Series {
        let mut register_wh = start_wh;
        let mut previous_ms = None;
        let readings = samples
            .iter()
            .map(|&(time_ms, power_w)| {
                assert!(power_w >= 0.0);
                if let Some(previous_ms) = previous_ms {
                    register_wh += power_w * (time_ms - previous_ms) as f64 / 3_600_000.0;
                }
                previous_ms = Some(time_ms);
                Reading {
                    time_ms,
                    import_wh: if export { 0.0 } else { register_wh },
                    export_wh: if export { register_wh } else { 0.0 },
                    // Positive = import: production is negative.
                    power_w: if export { 0.0 - power_w } else { power_w },
                    voltage_v: None,
                    current_a: None,
                    reactive_power_var: None,
                }
            })
            .collect();
        Series { meter, readings }
    }

    fn register(r: &Reading) -> f64 {
        r.import_wh + r.export_wh // one of them is 0 for these meters
    }

    /// The buckets the engine must hold for `step`, from the readings as fed.
    fn expected(&self, step: Step) -> Vec<Expected> {
        let period = step.millis();
        let mut out: Vec<Expected> = Vec::new();
        let mut before_bucket_wh = Series::register(&self.readings[0]);
        for r in &self.readings {
            let index = r.time_ms.div_euclid(period);
            if out.last().is_none_or(|b| b.index != index) {
                if let Some(last) = out.last() {
                    before_bucket_wh = last.last_register_wh;
                }
                out.push(Expected {
                    index,
                    register_before_wh: before_bucket_wh,
                    last_register_wh: 0.0,
                    powers: Vec::new(),
                });
            }
            let bucket = out.last_mut().unwrap();
            bucket.last_register_wh = Series::register(r);
            bucket.powers.push(r.power_w as f32);
        }
        out
    }
}

/// What one bucket must hold.
#[derive(Debug)]
struct Expected {
    index: i64,
    /// The register at the last reading before the bucket (the first reading's, for the
    /// bucket holding the first reading: it is the baseline).
    register_before_wh: f64,
    last_register_wh: f64,
    powers: Vec<f32>,
}

impl Expected {
    fn energy_wh(&self) -> f64 {
        self.last_register_wh - self.register_before_wh
    }
}

fn assert_close(actual: f64, expected: f64, relative: f64, what: &str) {
    let tolerance = relative * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} != {expected} (tolerance {tolerance})"
    );
}

fn buckets(engine: &Engine, meter: &str, step: Step) -> Vec<Bucket> {
    engine
        .rollups(meter, step, 0, i64::MAX)
        .expect("rollups")
        .expect("a meter")
}

fn check_rollups(engine: &Engine, series: &Series, exported: bool) {
    for step in [Step::QuarterHour, Step::Hour, Step::Day] {
        let what = |index: i64| format!("{} {step:?} bucket {index}", series.meter);
        let actual = buckets(engine, series.meter, step);
        let expected = series.expected(step);
        assert_eq!(
            actual.iter().map(|b| b.index).collect::<Vec<_>>(),
            expected.iter().map(|b| b.index).collect::<Vec<_>>(),
            "{} {step:?}: the buckets with readings, and only those",
            series.meter
        );
        let mut sum_wh = 0.0;
        for (a, e) in actual.iter().zip(&expected) {
            let (energy_wh, other_wh) = if exported {
                (a.export_wh, a.import_wh)
            } else {
                (a.import_wh, a.export_wh)
            };
            assert_close(energy_wh, e.energy_wh(), 1e-6, &what(a.index));
            assert_eq!(other_wh, 0.0, "{}", what(a.index));
            sum_wh += energy_wh;
            assert_eq!(a.count as usize, e.powers.len(), "{}", what(a.index));
            let min = e.powers.iter().copied().fold(f32::MAX, f32::min);
            let max = e.powers.iter().copied().fold(f32::MIN, f32::max);
            let mean = e.powers.iter().map(|&p| f64::from(p)).sum::<f64>() / e.powers.len() as f64;
            assert_eq!((a.min_w, a.max_w), (min, max), "{}", what(a.index));
            // The engine keeps a running f32 mean: close, not exact.
            assert!(
                (f64::from(a.mean_w) - mean).abs() <= 1e-4 * mean.abs().max(10.0),
                "{}: mean {} != {mean}",
                what(a.index),
                a.mean_w
            );
        }
        let first = Series::register(&series.readings[0]);
        let last = Series::register(series.readings.last().unwrap());
        assert_close(
            sum_wh,
            last - first,
            1e-9,
            &format!("{} {step:?}: sum over buckets", series.meter),
        );
    }
}

#[test]
fn rollups_of_real_pv_and_load_profiles_match_their_registers() {
    // PV: measured AC power, -07:00 local time; the standby draw at night is not production.
    let pv_samples: Vec<(i64, f64)> = PV_CSV
        .lines()
        .skip(1)
        .map(|line| {
            let (time, power) = line.split_once(',').unwrap();
            (parse_time_ms(time), power.parse::<f64>().unwrap().max(0.0))
        })
        .collect();
    assert_eq!(pv_samples.len(), 672);
    let start_ms = pv_samples[0].0;
    // Load: the h0 column, in watts, moved to start with the PV data.
    let mut lines = LOAD_CSV.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let h0 = header.iter().position(|c| *c == "h0").unwrap();
    let load_rows: Vec<(i64, f64)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (
                parse_time_ms(fields[0]),
                fields[h0].parse::<f64>().unwrap() * LOAD_SCALE_W,
            )
        })
        .collect();
    let shift_ms = start_ms - load_rows[0].0;
    let load_samples: Vec<(i64, f64)> = load_rows.iter().map(|&(t, w)| (t + shift_ms, w)).collect();
    assert_eq!(load_samples.len(), 672);

    let pv_all = Series::integrate("pv", &pv_samples, PV_EXPORT_START_WH, true);
    let load = Series::integrate("load", &load_samples, LOAD_IMPORT_START_WH, false);
    // Cut out four hours around noon of the fourth day (local 10:00-14:00): the uplink was
    // down. The meter kept counting, so the reading after the gap carries its energy.
    let gap_from_ms = parse_time_ms("2016-07-04 10:00:00-07:00");
    let gap_to_ms = parse_time_ms("2016-07-04 14:00:00-07:00");
    let pv = Series {
        meter: "pv",
        readings: pv_all
            .readings
            .iter()
            .filter(|r| !(gap_from_ms..gap_to_ms).contains(&r.time_ms))
            .copied()
            .collect(),
    };
    assert_eq!(pv.readings.len(), 672 - 16);

    let dir = tempfile::tempdir().unwrap();
    let last_ms = pv
        .readings
        .last()
        .unwrap()
        .time_ms
        .max(load.readings.last().unwrap().time_ms);
    let clock = FakeClock::at(last_ms + HOUR_MS);
    let rollups = RollupOptions {
        quarter_hour_days: 10,
        day_days: 400,
    };
    let engine_options = || options(&clock).rollups(rollups);
    let engine = open(dir.path(), engine_options());
    accept(&engine, register_meter("pv", MeterKind::Pv, None));
    accept(&engine, register_meter("load", MeterKind::Load, None));
    // The site sends both meters' readings in time order, a few hours per request.
    let mut feed: Vec<(i64, Command)> = pv
        .readings
        .iter()
        .map(|r| (r.time_ms, record("pv", *r)))
        .chain(
            load.readings
                .iter()
                .map(|r| (r.time_ms, record("load", *r))),
        )
        .collect();
    feed.sort_by_key(|(t, _)| *t);
    for chunk in feed.chunks(50) {
        let results = engine
            .submit(Request::of(chunk.iter().map(|(_, c)| c.clone())))
            .unwrap()
            .results;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, ItemResult::Accepted { .. })),
            "{results:?}"
        );
    }

    check_rollups(&engine, &pv, true);
    check_rollups(&engine, &load, false);

    // The gap is missing buckets, not zero buckets.
    let quarters = buckets(&engine, "pv", Step::QuarterHour);
    assert!(quarters.iter().all(|b| b.count > 0));
    let in_gap = |b: &&Bucket, period: i64| (gap_from_ms..gap_to_ms).contains(&(b.index * period));
    assert_eq!(
        quarters.iter().filter(|b| in_gap(b, 900_000)).count(),
        0,
        "no quarter-hour bucket inside the gap"
    );
    let hours = buckets(&engine, "pv", Step::Hour);
    assert_eq!(
        hours.iter().filter(|b| in_gap(b, HOUR_MS)).count(),
        0,
        "no hour bucket inside the gap"
    );
    assert_eq!(hours.len(), 7 * 24 - 4);
    // The first reading after the gap books the four hours of noon production at once.
    let after_gap = quarters
        .iter()
        .find(|b| b.index * 900_000 == gap_to_ms)
        .unwrap();
    let before = pv_all
        .readings
        .iter()
        .rfind(|r| r.time_ms < gap_from_ms)
        .unwrap();
    let at = pv_all
        .readings
        .iter()
        .find(|r| r.time_ms == gap_to_ms)
        .unwrap();
    assert_close(
        after_gap.export_wh,
        at.export_wh - before.export_wh,
        1e-6,
        "energy across the gap",
    );
    assert!(
        after_gap.export_wh > 4000.0,
        "four sunny noon hours of a ~5 kW system: {} Wh",
        after_gap.export_wh
    );
    // The day with the gap still has its whole energy.
    let day = buckets(&engine, "pv", Step::Day)
        .into_iter()
        .find(|b| b.index == gap_from_ms.div_euclid(DAY_MS))
        .unwrap();
    assert_eq!(day.count, 96 - 16);

    // Site totals: PV production is the PV meter's export delta; a load meter is part of
    // the consumption the balance already counts, so it adds nothing.
    let totals: SiteTotals = engine.read(|image| image.site_totals());
    let pv_delta = pv.readings.last().unwrap().export_wh - pv.readings[0].export_wh;
    assert_close(totals.all_time.pv_wh, pv_delta, 1e-9, "all-time PV");
    assert_close(
        totals.all_time.consumption_wh,
        pv_delta,
        1e-9,
        "consumption",
    );
    assert_eq!(totals.all_time.grid_import_wh, 0.0);
    assert_eq!(totals.day_index, last_ms.div_euclid(DAY_MS));
    let today_pv: f64 = pv
        .readings
        .windows(2)
        .filter(|w| w[1].time_ms.div_euclid(DAY_MS) == totals.day_index)
        .map(|w| w[1].export_wh - w[0].export_wh)
        .sum();
    assert_close(totals.today.pv_wh, today_pv, 1e-9, "today's PV");

    // The rollups are rebuilt exactly by a replay.
    let all_buckets = |engine: &Engine| {
        [Step::QuarterHour, Step::Hour, Step::Day]
            .map(|step| (buckets(engine, "pv", step), buckets(engine, "load", step)))
    };
    let live = (all_buckets(&engine), totals, engine.digest());
    drop(engine);
    let replayed = open(dir.path(), engine_options());
    assert_eq!(
        (
            all_buckets(&replayed),
            replayed.read(|image| image.site_totals()),
            replayed.digest()
        ),
        live
    );
}
