//! The real profiles behind the demo site, embedded in the binary (see `host/data/README.md`):
//! measured PV power of NREL's SERF East inverter (pvanalytics) and the BDEW standard load
//! profiles h0 and g0..g6 (demandlib), both in 15-minute steps, interpolated linearly.
//!
//! Simulated time is UTC milliseconds. The site has a fixed place and clock
//! ([`SITE_LATITUDE_DEG`], [`SITE_SOLAR_NOON_UTC_MS`], [`SITE_UTC_OFFSET_MS`]): loads follow
//! its local standard time, PV follows the sun.

use std::sync::OnceLock;

use time::{Date, Month, Weekday};

/// The PV profile: 4 weeks measured at SERF East, 2016-08-22 .. 2016-09-18
/// (`host/data/pvanalytics/`, gzipped by `build.rs`).
const PV_CSV_GZ: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/demo/serf_east_15min_ac_power.csv.gz"
));
/// BDEW typical days (working day, Saturday, Sunday per season), columns h0, g0..g6
/// (`host/data/demandlib/`, gzipped by `build.rs`).
const SELP_CSV_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo/selp_series.csv.gz"));
/// More than either profile's CSV, inflated (each is about 90 KB).
const PROFILE_CSV_BYTES_MAX: u64 = 1024 * 1024;

/// An embedded profile's CSV, inflated (see `files::inflate_embedded`).
fn inflate(gz: &[u8]) -> String {
    let bytes = crate::files::inflate_embedded(gz, PROFILE_CSV_BYTES_MAX, "demo profile");
    String::from_utf8(bytes).expect("the embedded profile is UTF-8")
}

/// One profile step: 15 minutes.
pub(crate) const SLOT_MS: i64 = 15 * 60 * 1000;
/// Steps per day.
const SLOTS_PER_DAY: usize = 96;
/// One day.
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const _: () = assert!(SLOT_MS * SLOTS_PER_DAY as i64 == DAY_MS);

/// The demo site's latitude (central Germany, where the load profiles come from).
pub(crate) const SITE_LATITUDE_DEG: f64 = 50.1;
/// When the sun is highest over the site, as time of the UTC day (longitude 8.7° E).
pub(crate) const SITE_SOLAR_NOON_UTC_MS: i64 = (11 * 60 + 25) * 60 * 1000;
/// The site's local standard time (CET, all year: load profiles are in standard time).
pub(crate) const SITE_UTC_OFFSET_MS: i64 = 60 * 60 * 1000;
/// Latitude of the PV profile's site (NREL SERF, Golden, Colorado).
const PV_PROFILE_LATITUDE_DEG: f64 = 39.74;
/// The PV profile's clock is local standard time (-07:00); Golden lies almost on the 105° W
/// meridian, so its solar noon is close to 12:00 on that clock.
const PV_PROFILE_SOLAR_NOON_MS: i64 = 12 * 60 * 60 * 1000;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The calendar date of a day number (days since 1970-01-01), clamped to what `time` knows.
pub(crate) fn civil_date(day: i64) -> Date {
    let min = i64::from(Date::MIN.to_julian_day());
    let max = i64::from(Date::MAX.to_julian_day());
    let julian = (UNIX_EPOCH_JULIAN_DAY + day).clamp(min, max);
    // Clamped to the valid range above, so this cannot fail.
    Date::from_julian_day(julian as i32).unwrap_or(Date::MIN)
}

/// The sun's declination in degrees on day of year `ordinal` (Cooper's formula).
fn declination_deg(ordinal: u16) -> f64 {
    23.44 * (std::f64::consts::TAU * (284.0 + f64::from(ordinal)) / 365.0).sin()
}

/// Hours from sunrise to sunset.
fn day_length_h(latitude_deg: f64, ordinal: u16) -> f64 {
    let cos_half = -latitude_deg.to_radians().tan() * declination_deg(ordinal).to_radians().tan();
    2.0 * cos_half.clamp(-1.0, 1.0).acos().to_degrees() / 15.0
}

/// Sine of the sun's elevation at solar noon.
fn noon_elevation_sin(latitude_deg: f64, ordinal: u16) -> f64 {
    (90.0 - (latitude_deg - declination_deg(ordinal)).abs())
        .to_radians()
        .sin()
}

/// The measured PV days, one row of 96 values (W) per day.
#[derive(Debug)]
pub(crate) struct PvProfile {
    days: Vec<[f64; SLOTS_PER_DAY]>,
    /// Day of year of each measured day.
    ordinals: Vec<u16>,
    /// The largest value: maps to the inverter's rating.
    peak_w: f64,
}

impl PvProfile {
    /// The embedded profile.
    pub(crate) fn get() -> &'static PvProfile {
        static PROFILE: OnceLock<PvProfile> = OnceLock::new();
        PROFILE.get_or_init(|| {
            // The file is part of the binary and checked by the tests: a parse error is a
            // build mistake, not something a user can fix.
            PvProfile::parse(&inflate(PV_CSV_GZ)).expect("the embedded PV profile is well-formed")
        })
    }

    /// Parses `measured_on,ac_power` rows: whole days of consecutive 15-minute values.
    pub(crate) fn parse(csv: &str) -> Result<PvProfile, String> {
        let mut days: Vec<[f64; SLOTS_PER_DAY]> = Vec::new();
        let mut ordinals = Vec::new();
        let mut expected_slot = 0usize;
        let mut current_date = None;
        for (n, line) in csv.lines().enumerate().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("PV profile line {}: {what}: {line:?}", n + 1);
            let (time, value) = line.split_once(',').ok_or_else(|| bad("no comma"))?;
            // "2016-08-22 00:15:00-07:00"
            let date = time.get(..10).ok_or_else(|| bad("short time"))?;
            let hour: usize = time
                .get(11..13)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad hour"))?;
            let minute: usize = time
                .get(14..16)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad minute"))?;
            let slot = hour * 4 + minute / 15;
            if !minute.is_multiple_of(15) || slot != expected_slot {
                return Err(bad("not the next 15-minute step"));
            }
            if slot == 0 {
                let ordinal = parse_date(date).ok_or_else(|| bad("bad date"))?.ordinal();
                if current_date == Some(date) {
                    return Err(bad("date repeats"));
                }
                current_date = Some(date);
                days.push([0.0; SLOTS_PER_DAY]);
                ordinals.push(ordinal);
            } else if current_date != Some(date) {
                return Err(bad("date changes within a day"));
            }
            let watts: f64 = value.trim().parse().map_err(|_| bad("bad value"))?;
            if !watts.is_finite() {
                return Err(bad("value is not finite"));
            }
            if let Some(day) = days.last_mut() {
                day[slot] = watts;
            }
            expected_slot = (slot + 1) % SLOTS_PER_DAY;
        }
        if days.is_empty() || expected_slot != 0 {
            return Err("PV profile must hold whole days".into());
        }
        let peak_w = days.iter().flatten().copied().fold(0.0, f64::max);
        if peak_w <= 0.0 {
            return Err("PV profile has no production".into());
        }
        Ok(PvProfile {
            days,
            ordinals,
            peak_w,
        })
    }

    /// PV output at `time_ms` (UTC) as a fraction of the inverter's rating, in `0..=1`.
    ///
    /// The measured days repeat in turn. The simulated day is mapped onto the measured one
    /// around solar noon: squeezed or stretched by the ratio of their day lengths, and
    /// scaled by the ratio of the sun's noon elevation (never above the profile's own).
    pub(crate) fn fraction(&self, time_ms: i64) -> f64 {
        let solar_ms = time_ms + (DAY_MS / 2 - SITE_SOLAR_NOON_UTC_MS);
        let day = solar_ms.div_euclid(DAY_MS);
        let since_noon_ms = (solar_ms.rem_euclid(DAY_MS) - DAY_MS / 2) as f64;
        let ordinal = civil_date(day).ordinal();
        let index = day.rem_euclid(self.days.len() as i64) as usize;
        let profile_ordinal = self.ordinals[index];
        let stretch = day_length_h(PV_PROFILE_LATITUDE_DEG, profile_ordinal)
            / day_length_h(SITE_LATITUDE_DEG, ordinal).max(1.0);
        let profile_ms = PV_PROFILE_SOLAR_NOON_MS as f64 + since_noon_ms * stretch;
        if !(0.0..DAY_MS as f64).contains(&profile_ms) {
            return 0.0;
        }
        let position = profile_ms / SLOT_MS as f64;
        let slot = (position as usize).min(SLOTS_PER_DAY - 1);
        let frac = position - slot as f64;
        let row = &self.days[index];
        let next = row[(slot + 1).min(SLOTS_PER_DAY - 1)];
        let watts = row[slot] + (next - row[slot]) * frac;
        let season = (noon_elevation_sin(SITE_LATITUDE_DEG, ordinal)
            / noon_elevation_sin(PV_PROFILE_LATITUDE_DEG, profile_ordinal))
        .clamp(0.0, 1.0);
        // Night values are the inverter's standby draw: no production.
        (watts.max(0.0) / self.peak_w * season).clamp(0.0, 1.0)
    }
}

fn parse_date(s: &str) -> Option<Date> {
    let year: i32 = s.get(0..4)?.parse().ok()?;
    let month: u8 = s.get(5..7)?.parse().ok()?;
    let day: u8 = s.get(8..10)?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// A BDEW standard load profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Household.
    H0,
    /// Commercial, general.
    G0,
    /// Commercial, working days 8–18 h.
    G1,
    /// Commercial, mostly evening.
    G2,
    /// Commercial, continuous.
    G3,
    /// Shops, barbers.
    G4,
    /// Bakery with bakehouse.
    G5,
    /// Weekend business.
    G6,
}

impl Shape {
    /// All shapes, in the column order of the file.
    pub(crate) const ALL: [Shape; 8] = [
        Shape::H0,
        Shape::G0,
        Shape::G1,
        Shape::G2,
        Shape::G3,
        Shape::G4,
        Shape::G5,
        Shape::G6,
    ];
    const COUNT: usize = Shape::ALL.len();

    fn column(self) -> usize {
        self as usize
    }
}

/// BDEW seasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Season {
    Summer,
    Winter,
    Transition,
}

impl Season {
    /// BDEW: winter 1 Nov – 20 Mar, summer 15 May – 14 Sep, transition otherwise.
    fn of(date: Date) -> Season {
        let md = (u8::from(date.month()), date.day());
        if md >= (11, 1) || md <= (3, 20) {
            Season::Winter
        } else if ((5, 15)..=(9, 14)).contains(&md) {
            Season::Summer
        } else {
            Season::Transition
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// BDEW day types (public holidays are not modelled: they count as their weekday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayType {
    Workday,
    Saturday,
    Sunday,
}

impl DayType {
    fn of(date: Date) -> DayType {
        match date.weekday() {
            Weekday::Saturday => DayType::Saturday,
            Weekday::Sunday => DayType::Sunday,
            _ => DayType::Workday,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// BDEW's dynamisation of h0 over the year (households use more in winter): a factor near
/// 1.24 in January and 0.8 in summer.
fn h0_dynamisation(ordinal: u16) -> f64 {
    let d = f64::from(ordinal);
    -3.92e-10 * d.powi(4) + 3.2e-7 * d.powi(3) - 7.02e-5 * d.powi(2) + 2.1e-3 * d + 1.24
}

/// The typical days of every shape, normalised so each shape's mean over a year is 1.
#[derive(Debug)]
pub(crate) struct LoadProfiles {
    /// `[season][day type][slot][shape]`, raw values.
    values: [[[[f64; Shape::COUNT]; SLOTS_PER_DAY]; 3]; 3],
    /// Annual mean of each shape (with h0's dynamisation).
    annual_mean: [f64; Shape::COUNT],
}

impl LoadProfiles {
    /// The embedded profiles.
    pub(crate) fn get() -> &'static LoadProfiles {
        static PROFILES: OnceLock<LoadProfiles> = OnceLock::new();
        PROFILES.get_or_init(|| {
            // Part of the binary and checked by the tests (see `PvProfile::get`).
            LoadProfiles::parse(&inflate(SELP_CSV_GZ))
                .expect("the embedded load profiles are well-formed")
        })
    }

    /// Parses the trimmed `selp_series.csv`: `time,period,weekday,h0,g0..g6`, with weekday
    /// 1 (standing for every working day), 6 and 7 of each season.
    pub(crate) fn parse(csv: &str) -> Result<LoadProfiles, String> {
        let mut values = [[[[f64::NAN; Shape::COUNT]; SLOTS_PER_DAY]; 3]; 3];
        let mut rows = 0usize;
        for (n, line) in csv.lines().enumerate().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("load profile line {}: {what}: {line:?}", n + 1);
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 3 + Shape::COUNT {
                return Err(bad("wrong number of fields"));
            }
            // "2007-01-01 00:15:00"
            let hour: usize = fields[0]
                .get(11..13)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad hour"))?;
            let minute: usize = fields[0]
                .get(14..16)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad minute"))?;
            if !minute.is_multiple_of(15) || hour >= 24 {
                return Err(bad("not a 15-minute step"));
            }
            let season = match fields[1] {
                "summer" => Season::Summer,
                "winter" => Season::Winter,
                "transition" => Season::Transition,
                _ => return Err(bad("unknown period")),
            };
            let day_type = match fields[2] {
                "1" => DayType::Workday,
                "6" => DayType::Saturday,
                "7" => DayType::Sunday,
                _ => return Err(bad("unexpected weekday")),
            };
            let cell = &mut values[season.index()][day_type.index()][hour * 4 + minute / 15];
            for (shape, field) in cell.iter_mut().zip(&fields[3..]) {
                let v: f64 = field.parse().map_err(|_| bad("bad value"))?;
                if !v.is_finite() || v < 0.0 {
                    return Err(bad("value must be finite and not negative"));
                }
                *shape = v;
            }
            rows += 1;
        }
        if rows != 3 * 3 * SLOTS_PER_DAY
            || values
                .iter()
                .flatten()
                .flatten()
                .flatten()
                .any(|v| v.is_nan())
        {
            return Err(format!(
                "load profiles need every slot of 9 typical days ({} rows), got {rows} rows",
                3 * 3 * SLOTS_PER_DAY
            ));
        }
        let mut profiles = LoadProfiles {
            values,
            annual_mean: [1.0; Shape::COUNT],
        };
        // The mean over a whole (non-leap) year, day by day, weighs seasons and day types
        // as the calendar does.
        let mut sum = [0.0; Shape::COUNT];
        let first = Date::from_calendar_date(2023, Month::January, 1)
            .map_err(|e| e.to_string())?
            .to_julian_day();
        for julian in first..first + 365 {
            let date = Date::from_julian_day(julian).map_err(|e| e.to_string())?;
            for slot in 0..SLOTS_PER_DAY {
                let raw = profiles.raw(date, slot);
                for shape in Shape::ALL {
                    sum[shape.column()] += raw[shape.column()];
                }
            }
        }
        for shape in Shape::ALL {
            let mean = sum[shape.column()] / (365 * SLOTS_PER_DAY) as f64;
            if mean <= 0.0 {
                return Err(format!("load profile {shape:?} is all zero"));
            }
            profiles.annual_mean[shape.column()] = mean;
        }
        Ok(profiles)
    }

    /// Values of every shape for one slot of a date, h0 dynamised, not normalised.
    fn raw(&self, date: Date, slot: usize) -> [f64; Shape::COUNT] {
        let mut out = self.values[Season::of(date).index()][DayType::of(date).index()][slot];
        out[Shape::H0.column()] *= h0_dynamisation(date.ordinal());
        out
    }

    /// Every shape's factor (annual mean 1) at the 15-minute point starting at local time
    /// `local_ms` (a multiple of [`SLOT_MS`]).
    fn at_slot(&self, local_ms: i64) -> [f64; Shape::COUNT] {
        let date = civil_date(local_ms.div_euclid(DAY_MS));
        let slot = (local_ms.rem_euclid(DAY_MS) / SLOT_MS) as usize;
        let mut out = self.raw(date, slot);
        for shape in Shape::ALL {
            out[shape.column()] /= self.annual_mean[shape.column()];
        }
        out
    }
}

/// Load factors of every shape over time, interpolated between 15-minute points. Keeps the
/// two points around the last asked-for time, so the simulator's one-second steps cost no
/// calendar arithmetic.
#[derive(Debug)]
pub(crate) struct LoadCurve {
    profiles: &'static LoadProfiles,
    /// Local start of the cached slot, and the factors at its start and end.
    cached: Option<(i64, [f64; Shape::COUNT], [f64; Shape::COUNT])>,
}

impl LoadCurve {
    pub(crate) fn new() -> LoadCurve {
        LoadCurve {
            profiles: LoadProfiles::get(),
            cached: None,
        }
    }

    /// The factor (annual mean 1) of `shape` at `time_ms` (UTC).
    pub(crate) fn factor(&mut self, shape: Shape, time_ms: i64) -> f64 {
        let local_ms = time_ms + SITE_UTC_OFFSET_MS;
        let start = local_ms.div_euclid(SLOT_MS) * SLOT_MS;
        let (_, from, to) = match self.cached {
            Some(cached) if cached.0 == start => cached,
            _ => {
                let cached = (
                    start,
                    self.profiles.at_slot(start),
                    self.profiles.at_slot(start + SLOT_MS),
                );
                self.cached = Some(cached);
                cached
            }
        };
        let frac = (local_ms - start) as f64 / SLOT_MS as f64;
        let (a, b) = (from[shape.column()], to[shape.column()]);
        a + (b - a) * frac
    }
}

/// Local (site) hour of day and whether the day is a working day, for behaviour that is not
/// in the profiles (EV arrivals).
pub(crate) fn local_hour_and_workday(time_ms: i64) -> (f64, bool) {
    let local_ms = time_ms + SITE_UTC_OFFSET_MS;
    let date = civil_date(local_ms.div_euclid(DAY_MS));
    let hour = local_ms.rem_euclid(DAY_MS) as f64 / 3_600_000.0;
    (hour, DayType::of(date) == DayType::Workday)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-21 00:00 UTC, a Friday near midsummer.
    const MIDSUMMER_MS: i64 = 1_718_928_000_000;
    /// 2024-12-21 00:00 UTC, a Saturday near midwinter.
    const MIDWINTER_MS: i64 = 1_734_739_200_000;
    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn embedded_files_parse_whole() {
        let pv = PvProfile::get();
        assert_eq!(pv.days.len(), 28);
        assert_eq!(pv.ordinals[0], 235); // 2016-08-22 (leap year)
        assert!(pv.peak_w > 4000.0 && pv.peak_w < 6000.0, "{}", pv.peak_w);
        let loads = LoadProfiles::get();
        assert!(loads.annual_mean.iter().all(|m| *m > 0.0));
        assert_eq!(
            civil_date(0),
            Date::from_calendar_date(1970, Month::January, 1).unwrap()
        );
    }

    #[test]
    fn malformed_profiles_are_errors_not_panics() {
        assert!(PvProfile::parse("h\n2016-08-22 00:15:00-07:00,1\n").is_err());
        assert!(PvProfile::parse("h\n2016-08-22 00:00:00-07:00,x\n").is_err());
        assert!(PvProfile::parse("h\n").is_err());
        assert!(LoadProfiles::parse("h\n2007-01-01 00:00:00,summer,2,1,1,1,1,1,1,1,1\n").is_err());
        assert!(LoadProfiles::parse("h\n").is_err());
    }

    #[test]
    fn pv_is_zero_at_night_and_follows_the_seasons() {
        let pv = PvProfile::get();
        let energy = |day_start: i64| -> f64 {
            (0..24 * 60)
                .map(|m| pv.fraction(day_start + m * 60_000))
                .sum::<f64>()
                / 60.0
        };
        for day in 0..28 {
            let start = MIDSUMMER_MS + day * DAY_MS;
            assert_eq!(pv.fraction(start), 0.0, "midnight of day {day}");
            assert_eq!(pv.fraction(start + 23 * HOUR_MS), 0.0);
            for m in 0..24 * 60 {
                let f = pv.fraction(start + m * 60_000);
                assert!((0.0..=1.0).contains(&f));
            }
        }
        let summer: f64 = (0..28).map(|d| energy(MIDSUMMER_MS + d * DAY_MS)).sum();
        let winter: f64 = (0..28).map(|d| energy(MIDWINTER_MS + d * DAY_MS)).sum();
        // Full-load hours per day: a few in summer, much less in winter.
        assert!(
            summer / 28.0 > 4.0 && summer / 28.0 < 9.0,
            "{}",
            summer / 28.0
        );
        assert!(winter < summer * 0.4, "winter {winter} summer {summer}");
        assert!(winter > 0.0);
        // Around solar noon it produces; in winter the day is short.
        assert!(pv.fraction(MIDSUMMER_MS + SITE_SOLAR_NOON_UTC_MS) > 0.0);
        assert_eq!(pv.fraction(MIDWINTER_MS + 6 * HOUR_MS), 0.0);
    }

    #[test]
    fn loads_average_one_and_interpolate_smoothly() {
        let mut curve = LoadCurve::new();
        for shape in Shape::ALL {
            // A year in 15-minute steps averages 1 (2023, as the normalisation).
            let start = 1_672_531_200_000 - SITE_UTC_OFFSET_MS; // 2023-01-01 00:00 local
            let n = 365 * 96;
            let mean = (0..n)
                .map(|i| curve.factor(shape, start + i * SLOT_MS))
                .sum::<f64>()
                / n as f64;
            assert!((mean - 1.0).abs() < 1e-9, "{shape:?} mean {mean}");
            // Within one step, values lie between the two points.
            let t = MIDSUMMER_MS + 10 * HOUR_MS;
            let a = curve.factor(shape, t);
            let b = curve.factor(shape, t + SLOT_MS);
            let mid = curve.factor(shape, t + SLOT_MS / 2);
            assert!(mid >= a.min(b) - 1e-12 && mid <= a.max(b) + 1e-12);
            assert!(a >= 0.0);
        }
        // g1 (working days 8-18 h) is busy on a Friday morning, quiet on a Saturday night.
        let friday_10 = curve.factor(Shape::G1, MIDSUMMER_MS + 9 * HOUR_MS);
        let saturday_night = curve.factor(Shape::G1, MIDSUMMER_MS + DAY_MS + 22 * HOUR_MS);
        assert!(friday_10 > 2.0 * saturday_night);
    }
}
