//! The simulated site: its meters and assets, their physics, and one simulated interval at
//! a time turned into ordinary commands, exactly as a real gateway's ingestion would send
//! them.
//!
//! ```text
//!            grid meter ── import − export = Σ sub-meters + Σ EV − PV + battery
//!                 │
//!   ┌──────┬──────┴──┬───────────┬──────────────┐
//!   pv   battery   ev-1, ev-2   sub-01 .. sub-20
//!   │      │          │
//!   pv-inverter  battery-storage  ev-charger-1, ev-charger-2   (assets)
//! ```
//!
//! Powers are constant over an interval `(t − interval, t]`; the reading at `t` carries
//! the registers after it. Every meter's registers count exactly the energy of its own
//! power, so the balance holds at the registers to their rounding.
//!
//! One file on purpose: the simulated site is one model (meters, assets and the controller
//! share one clock and one energy balance per interval); split, each part would need the
//! others' private state.

use gridlog_common::domain::{AssetKind, Command, MeterKind, Reading, Telemetry};
use gridlog_common::id::{EntityId, Label};
use gridlog_firmware::engine::state::{AssetState, EntityState};
use gridlog_firmware::engine::Engine;

use super::profiles::{local_hour_and_workday, LoadCurve, PvProfile, Shape};
use super::rng::{Rng, Wander};

/// The grid connection meter.
pub const GRID_METER: &str = "grid";
/// The PV generation meter.
pub const PV_METER: &str = "pv";
/// The PV inverter asset.
pub const PV_ASSET: &str = "pv-inverter";
/// The battery's meter.
pub const BATTERY_METER: &str = "battery";
/// The battery asset. Not `battery`: meters and assets share one id space, and the meter
/// has that name.
pub const BATTERY_ASSET: &str = "battery-storage";
/// The PV inverter's rating.
pub const PV_RATED_W: f64 = 30_000.0;
/// The battery's rated power, charging and discharging.
pub const BATTERY_RATED_W: f64 = 20_000.0;
/// The battery's capacity.
pub const BATTERY_CAPACITY_WH: f64 = 50_000.0;
/// The controller keeps the state of charge at or above this.
pub const SOC_MIN_PCT: f64 = 5.0;
/// The controller keeps the state of charge at or below this.
pub const SOC_MAX_PCT: f64 = 95.0;
/// The sub-meter whose communication drops out regularly.
pub const OUTAGE_METER: &str = "sub-20";
/// The outage repeats this often (simulated time) ...
pub const OUTAGE_EVERY_MS: i64 = 6 * 60 * 60 * 1000;
/// ... lasts this long ...
pub const OUTAGE_MS: i64 = 30 * 60 * 1000;
/// ... and starts this long after each multiple of [`OUTAGE_EVERY_MS`] (UTC): 02:00,
/// 08:00, 14:00, 20:00.
pub const OUTAGE_PHASE_MS: i64 = 2 * 60 * 60 * 1000;
const _: () = assert!(OUTAGE_PHASE_MS + OUTAGE_MS <= OUTAGE_EVERY_MS);

/// Most commands one interval produces: 3 setpoint confirmations, 25 readings, 4
/// telemetry records, 3 setpoint requests.
pub(crate) const COMMANDS_PER_INTERVAL_MAX: usize = 35;

/// One-way efficiency of the battery (charge and discharge each; ~90 % round trip).
const BATTERY_EFFICIENCY: f64 = 0.95;
/// How often the battery controller looks at the site.
const CONTROL_PERIOD_MS: i64 = 10_000;
/// The controller changes the setpoint only if the new one differs by at least this, so
/// small load flicker does not flood the log with setpoints.
const SETPOINT_DEADBAND_W: f64 = 300.0;
/// Setpoints are whole multiples of this.
const SETPOINT_STEP_W: f64 = 100.0;
/// Once at a state-of-charge limit, the battery is used towards it again only after it has
/// moved this far away from it (no flapping at the limit).
const SOC_HYSTERESIS_PCT: f64 = 0.5;
/// Within this of a limit, the battery counts as at the limit.
const SOC_LIMIT_TOLERANCE_PCT: f64 = 0.01;
/// Below this magnitude an asset counts as idle.
const IDLE_W: f64 = 50.0;
/// Nominal line-to-neutral voltage.
const NOMINAL_V: f64 = 230.0;
/// Resolution of reported registers (Wh), power (W) and voltage (V): 0.1; current (A): 0.01.
const REGISTER_SCALE: f64 = 10.0;

/// A sub-meter: id, load profile, mean power over a year, phases, power factor.
struct SubmeterSpec(&'static str, Shape, f64, u8, f64);

/// The 20 sub-meters: 12 commercial units of different kinds and sizes, and 8 flats.
const SUBMETERS: [SubmeterSpec; 20] = [
    SubmeterSpec("sub-01", Shape::G0, 1_100.0, 3, 0.95), // offices
    SubmeterSpec("sub-02", Shape::G1, 1_500.0, 3, 0.90), // workshop, weekdays 8-18
    SubmeterSpec("sub-03", Shape::G3, 700.0, 3, 0.97),   // server room, continuous
    SubmeterSpec("sub-04", Shape::G4, 900.0, 3, 0.95),   // shop
    SubmeterSpec("sub-05", Shape::G2, 500.0, 3, 0.96),   // canteen, evenings
    SubmeterSpec("sub-06", Shape::G5, 700.0, 3, 0.93),   // bakery
    SubmeterSpec("sub-07", Shape::G6, 400.0, 3, 0.95),   // weekend café
    SubmeterSpec("sub-08", Shape::G0, 550.0, 3, 0.95),   // second office floor
    SubmeterSpec("sub-09", Shape::G1, 900.0, 3, 0.88),   // assembly, weekdays
    SubmeterSpec("sub-10", Shape::G3, 450.0, 3, 0.97),   // cold store
    SubmeterSpec("sub-11", Shape::G4, 300.0, 1, 0.95),   // kiosk
    SubmeterSpec("sub-12", Shape::G1, 500.0, 3, 0.92),   // lab, weekdays
    SubmeterSpec("sub-13", Shape::H0, 420.0, 1, 0.97),   // flats
    SubmeterSpec("sub-14", Shape::H0, 380.0, 1, 0.97),
    SubmeterSpec("sub-15", Shape::H0, 520.0, 1, 0.97),
    SubmeterSpec("sub-16", Shape::H0, 300.0, 1, 0.97),
    SubmeterSpec("sub-17", Shape::H0, 610.0, 1, 0.97),
    SubmeterSpec("sub-18", Shape::H0, 450.0, 1, 0.97),
    SubmeterSpec("sub-19", Shape::H0, 350.0, 1, 0.97),
    SubmeterSpec("sub-20", Shape::H0, 480.0, 1, 0.97),
];

/// An EV charger: meter id, asset id, rated power.
struct ChargerSpec(&'static str, &'static str, f64);

const CHARGERS: [ChargerSpec; 2] = [
    ChargerSpec("ev-1", "ev-charger-1", 11_000.0),
    ChargerSpec("ev-2", "ev-charger-2", 22_000.0),
];

/// Maximum charging power of the cars that come by (AC, one to three phases).
const CAR_MAX_W: [f64; 5] = [3_700.0, 7_400.0, 11_000.0, 11_000.0, 22_000.0];

/// Every meter and asset id of the site.
pub(crate) fn entity_ids() -> impl Iterator<Item = &'static str> {
    [GRID_METER, PV_METER, PV_ASSET, BATTERY_METER, BATTERY_ASSET]
        .into_iter()
        .chain(CHARGERS.iter().flat_map(|c| [c.0, c.1]))
        .chain(SUBMETERS.iter().map(|s| s.0))
}

/// True while [`OUTAGE_METER`] does not report.
pub(crate) fn in_outage(time_ms: i64) -> bool {
    (time_ms - OUTAGE_PHASE_MS).rem_euclid(OUTAGE_EVERY_MS) < OUTAGE_MS
}

fn id(s: &'static str) -> EntityId {
    // The site's ids are constants of the allowed alphabet; the tests register them all.
    EntityId::new(s).expect("demo ids are valid")
}

fn label(s: &'static str) -> Label {
    Label::new(s).expect("demo labels are valid")
}

fn round(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

/// A meter's registers and electrical character.
#[derive(Debug)]
struct Meter {
    id: EntityId,
    kind: MeterKind,
    import_wh: f64,
    export_wh: f64,
    phases: u8,
    power_factor: f64,
    /// Power at which the feeder drop reaches [`Meter::FEEDER_DROP_V`].
    full_w: f64,
    /// Fixed offset of this point of the site's network from the transformer.
    offset_v: f64,
}

impl Meter {
    const FEEDER_DROP_V: f64 = 3.0;

    fn new(id: EntityId, kind: MeterKind, phases: u8, power_factor: f64, full_w: f64) -> Meter {
        Meter {
            id,
            kind,
            import_wh: 0.0,
            export_wh: 0.0,
            phases,
            power_factor,
            full_w,
            offset_v: 0.0,
        }
    }

    /// Books `power_w` (positive = import) over `dt_s` seconds.
    fn account(&mut self, power_w: f64, dt_s: f64) {
        if power_w >= 0.0 {
            self.import_wh += power_w * dt_s / 3600.0;
        } else {
            self.export_wh -= power_w * dt_s / 3600.0;
        }
    }

    fn reading(&self, time_ms: i64, power_w: f64, site_v: f64, rng: &mut Rng) -> Command {
        let load = (power_w / self.full_w).clamp(-1.0, 1.0);
        let voltage_v = site_v + self.offset_v - Self::FEEDER_DROP_V * load + 0.15 * rng.normal();
        let current_a = power_w.abs() / (f64::from(self.phases) * voltage_v * self.power_factor);
        // Q = |P| tan(acos(pf)): the meter's reactive power at its power factor.
        let reactive_var =
            power_w.abs() * (1.0 / (self.power_factor * self.power_factor) - 1.0).sqrt();
        Command::RecordReading {
            meter: self.id.clone(),
            reading: Reading {
                time_ms,
                // Rounding is monotonic, so the reported registers never go down either.
                import_wh: round(self.import_wh, REGISTER_SCALE),
                export_wh: round(self.export_wh, REGISTER_SCALE),
                power_w: round(power_w, REGISTER_SCALE),
                voltage_v: Some(round(voltage_v, 10.0) as f32),
                current_a: Some(round(current_a, 100.0) as f32),
                reactive_power_var: Some(round(reactive_var, 10.0) as f32),
            },
        }
    }

    /// A register value for a meter that has been in service for a while before the demo.
    fn seed_registers(&mut self, import_wh: f64, export_wh: f64) {
        self.import_wh = round(import_wh, REGISTER_SCALE);
        self.export_wh = round(export_wh, REGISTER_SCALE);
    }
}

/// A setpoint on its way: requested in one interval, confirmed by the asset in the next.
#[derive(Debug, Default)]
struct SetpointLink {
    applied_w: f64,
    pending_w: Option<f64>,
}

impl SetpointLink {
    fn request(&mut self, asset: &EntityId, power_w: f64, out: &mut Vec<Command>) {
        out.push(Command::RequestSetpoint {
            asset: asset.clone(),
            power_w,
        });
        self.pending_w = Some(power_w);
    }

    fn confirm(&mut self, asset: &EntityId, out: &mut Vec<Command>) {
        if let Some(power_w) = self.pending_w.take() {
            out.push(Command::ConfirmSetpoint {
                asset: asset.clone(),
                power_w,
            });
            self.applied_w = power_w;
        }
    }

    /// Continues from the stored state: a request the asset had not confirmed yet is
    /// confirmed in the first interval.
    fn restore(&mut self, asset: &AssetState) {
        self.applied_w = asset.setpoint_applied_w.unwrap_or(0.0);
        self.pending_w = asset
            .setpoint_requested_w
            .filter(|requested| Some(*requested) != asset.setpoint_applied_w);
    }
}

#[derive(Debug)]
struct Submeter {
    meter: Meter,
    shape: Shape,
    mean_w: f64,
    drift: Wander,
    /// An appliance switched on (a machine, a kettle, a compressor): until, extra power.
    appliance: Option<(i64, f64)>,
    power_w: f64,
}

impl Submeter {
    /// Appliances switch on about this often per sub-meter.
    const APPLIANCE_EVERY_S: f64 = 900.0;

    fn power(&mut self, time_ms: i64, dt_s: f64, curve: &mut LoadCurve, rng: &mut Rng) -> f64 {
        let profile_w = self.mean_w * curve.factor(self.shape, time_ms);
        let drift = self.drift.step(dt_s, rng);
        if self.appliance.is_some_and(|(until, _)| time_ms >= until) {
            self.appliance = None;
        }
        if self.appliance.is_none() && rng.chance(dt_s / Self::APPLIANCE_EVERY_S) {
            let until = time_ms + (rng.range(20.0, 600.0) * 1000.0) as i64;
            self.appliance = Some((until, self.mean_w * rng.range(0.1, 0.6)));
        }
        let appliance_w = self.appliance.map_or(0.0, |(_, w)| w);
        let flicker_w = 0.01 * self.mean_w * rng.normal();
        (profile_w * (1.0 + drift) + appliance_w + flicker_w).max(0.02 * self.mean_w)
    }
}

#[derive(Debug)]
struct PvPlant {
    meter: Meter,
    asset: EntityId,
    profile: &'static PvProfile,
    clouds: Wander,
    power_w: f64,
}

impl PvPlant {
    fn power(&mut self, time_ms: i64, dt_s: f64, rng: &mut Rng) -> f64 {
        let fraction = self.profile.fraction(time_ms);
        let clouds = self.clouds.step(dt_s, rng);
        if fraction <= 0.0 {
            return 0.0;
        }
        (PV_RATED_W * fraction * (1.0 + clouds)).clamp(0.0, PV_RATED_W)
    }
}

#[derive(Debug)]
struct Battery {
    meter: Meter,
    asset: EntityId,
    soc_pct: f64,
    /// At the upper limit: no charging (see [`Battery::update_limits`]).
    full: bool,
    /// At the lower limit: no discharging.
    empty: bool,
    setpoint: SetpointLink,
    next_control_ms: i64,
    power_w: f64,
}

impl Battery {
    /// The power it runs at over the next `dt_s`: the applied setpoint, cut where the state
    /// of charge would leave its limits (the battery's own management does that).
    fn power(&self, dt_s: f64) -> f64 {
        let p = self.setpoint.applied_w;
        if p > 0.0 {
            let room_wh = ((SOC_MAX_PCT - self.soc_pct) / 100.0 * BATTERY_CAPACITY_WH).max(0.0);
            p.min(room_wh / BATTERY_EFFICIENCY * 3600.0 / dt_s)
        } else {
            let stored_wh = ((self.soc_pct - SOC_MIN_PCT) / 100.0 * BATTERY_CAPACITY_WH).max(0.0);
            p.max(-stored_wh * BATTERY_EFFICIENCY * 3600.0 / dt_s)
        }
    }

    fn run(&mut self, power_w: f64, dt_s: f64) {
        let ac_wh = power_w * dt_s / 3600.0;
        let stored_wh = if ac_wh > 0.0 {
            ac_wh * BATTERY_EFFICIENCY
        } else {
            ac_wh / BATTERY_EFFICIENCY
        };
        self.soc_pct = (self.soc_pct + stored_wh / BATTERY_CAPACITY_WH * 100.0)
            .clamp(SOC_MIN_PCT, SOC_MAX_PCT);
        self.update_limits();
    }

    /// Full at the upper limit until it has discharged [`SOC_HYSTERESIS_PCT`] below it;
    /// empty likewise at the lower limit.
    fn update_limits(&mut self) {
        if self.soc_pct >= SOC_MAX_PCT - SOC_LIMIT_TOLERANCE_PCT {
            self.full = true;
        } else if self.soc_pct < SOC_MAX_PCT - SOC_HYSTERESIS_PCT {
            self.full = false;
        }
        if self.soc_pct <= SOC_MIN_PCT + SOC_LIMIT_TOLERANCE_PCT {
            self.empty = true;
        } else if self.soc_pct > SOC_MIN_PCT + SOC_HYSTERESIS_PCT {
            self.empty = false;
        }
    }

    /// Self-consumption: charge what PV produces beyond the site's demand, cover demand
    /// beyond PV, within rated power and the state-of-charge limits.
    fn control(&mut self, time_ms: i64, demand_w: f64, pv_w: f64, out: &mut Vec<Command>) {
        if time_ms < self.next_control_ms || self.setpoint.pending_w.is_some() {
            return;
        }
        self.next_control_ms = time_ms + CONTROL_PERIOD_MS;
        let mut target = (pv_w - demand_w).clamp(-BATTERY_RATED_W, BATTERY_RATED_W);
        if (target > 0.0 && self.full) || (target < 0.0 && self.empty) {
            target = 0.0;
        }
        let target = (target / SETPOINT_STEP_W).round() * SETPOINT_STEP_W;
        let applied = self.setpoint.applied_w;
        if (target - applied).abs() >= SETPOINT_DEADBAND_W || (target == 0.0 && applied != 0.0) {
            self.setpoint.request(&self.asset, target, out);
        }
    }

    fn telemetry(&self, time_ms: i64) -> Command {
        let status = if self.power_w > IDLE_W {
            "charging"
        } else if self.power_w < -IDLE_W {
            "discharging"
        } else {
            "idle"
        };
        Command::RecordTelemetry {
            asset: self.asset.clone(),
            telemetry: Telemetry {
                time_ms,
                power_w: round(self.power_w, REGISTER_SCALE),
                soc_pct: Some(round(self.soc_pct, 100.0)),
                status: label(status),
            },
        }
    }
}

/// A car at a charger.
#[derive(Debug)]
struct Session {
    need_wh: f64,
    delivered_wh: f64,
}

#[derive(Debug)]
struct Charger {
    meter: Meter,
    asset: EntityId,
    rated_w: f64,
    setpoint: SetpointLink,
    session: Option<Session>,
    /// No new car before this time (the bay is being vacated).
    free_from_ms: i64,
    power_w: f64,
}

impl Charger {
    /// Cars arriving per hour at local `hour`: commuters in the morning, fewer at lunch and
    /// after work, almost none at night; weekends a third of that.
    fn arrivals_per_hour(hour: f64, workday: bool) -> f64 {
        let rate = match hour {
            h if h < 6.0 => 0.03,
            h if h < 7.0 => 0.4,
            h if h < 9.0 => 1.2,
            h if h < 12.0 => 0.5,
            h if h < 14.0 => 0.7,
            h if h < 17.0 => 0.4,
            h if h < 20.0 => 0.35,
            _ => 0.08,
        };
        if workday {
            rate
        } else {
            rate * 0.35
        }
    }

    fn power(&self, rng: &mut Rng) -> f64 {
        let Some(session) = &self.session else {
            return 0.0;
        };
        let setpoint = self.setpoint.applied_w;
        if setpoint <= 0.0 {
            return 0.0;
        }
        // The car's battery management tapers the last tenth of the charge.
        let remaining = (session.need_wh - session.delivered_wh).max(0.0);
        let taper = (remaining / (0.1 * session.need_wh)).clamp(0.3, 1.0);
        (setpoint * taper * (0.985 + 0.01 * rng.unit())).min(self.rated_w)
    }

    fn sessions(&mut self, time_ms: i64, dt_s: f64, rng: &mut Rng, out: &mut Vec<Command>) {
        if let Some(session) = &mut self.session {
            session.delivered_wh += self.power_w * dt_s / 3600.0;
            if session.delivered_wh >= session.need_wh {
                self.session = None;
                self.free_from_ms = time_ms + (rng.range(120.0, 1200.0) * 1000.0) as i64;
                self.setpoint.request(&self.asset, 0.0, out);
            }
            return;
        }
        if self.setpoint.pending_w.is_some() || time_ms < self.free_from_ms {
            return;
        }
        if self.setpoint.applied_w != 0.0 {
            // No car, but still a setpoint (e.g. from before a restart): release it.
            self.setpoint.request(&self.asset, 0.0, out);
            return;
        }
        let (hour, workday) = local_hour_and_workday(time_ms);
        if rng.chance(Self::arrivals_per_hour(hour, workday) * dt_s / 3600.0) {
            let car_max_w = CAR_MAX_W[(rng.next_u64() % CAR_MAX_W.len() as u64) as usize];
            self.session = Some(Session {
                need_wh: rng.range(5_000.0, 45_000.0),
                delivered_wh: 0.0,
            });
            self.setpoint
                .request(&self.asset, car_max_w.min(self.rated_w), out);
        }
    }

    fn telemetry(&self, time_ms: i64) -> Command {
        Command::RecordTelemetry {
            asset: self.asset.clone(),
            telemetry: Telemetry {
                time_ms,
                power_w: round(self.power_w, REGISTER_SCALE),
                soc_pct: None,
                status: label(if self.power_w > IDLE_W {
                    "charging"
                } else {
                    "idle"
                }),
            },
        }
    }
}

/// The whole site and its simulated time.
#[derive(Debug)]
pub(crate) struct Site {
    interval_ms: i64,
    /// Time of the next reading.
    next_ms: i64,
    rng: Rng,
    curve: LoadCurve,
    site_voltage: Wander,
    grid: Meter,
    pv: PvPlant,
    battery: Battery,
    chargers: Vec<Charger>,
    submeters: Vec<Submeter>,
}

impl Site {
    /// A site whose first reading is at the first multiple of `interval_ms` at or after
    /// `start_ms`. Registers start at plausible values of meters that have been in service
    /// for a while; [`Site::restore`] replaces them with the stored ones.
    pub(crate) fn new(interval_ms: i64, start_ms: i64, seed: u64) -> Site {
        assert!(interval_ms > 0, "the reading interval must be positive");
        let mut rng = Rng::new(seed);
        let mut grid = Meter::new(id(GRID_METER), MeterKind::Grid, 3, 0.97, 100_000.0);
        grid.seed_registers(rng.range(2e8, 6e8), rng.range(2e7, 8e7));
        let mut pv_meter = Meter::new(id(PV_METER), MeterKind::Pv, 3, 0.99, PV_RATED_W);
        pv_meter.seed_registers(rng.range(10.0, 200.0), rng.range(5e7, 1.5e8));
        let mut battery_meter = Meter::new(
            id(BATTERY_METER),
            MeterKind::Battery,
            3,
            0.99,
            BATTERY_RATED_W,
        );
        let charged = rng.range(1e7, 3e7);
        battery_meter.seed_registers(charged, charged * 0.88);
        let chargers = CHARGERS
            .iter()
            .map(|ChargerSpec(meter, asset, rated_w)| {
                let mut m = Meter::new(id(meter), MeterKind::Ev, 3, 0.99, *rated_w);
                m.seed_registers(rng.range(2e6, 2e7), 0.0);
                m.offset_v = -rng.range(0.5, 2.0);
                Charger {
                    meter: m,
                    asset: id(asset),
                    rated_w: *rated_w,
                    setpoint: SetpointLink::default(),
                    session: None,
                    free_from_ms: i64::MIN,
                    power_w: 0.0,
                }
            })
            .collect();
        let submeters = SUBMETERS
            .iter()
            .map(|SubmeterSpec(meter, shape, mean_w, phases, power_factor)| {
                let mut m = Meter::new(
                    id(meter),
                    MeterKind::Submeter,
                    *phases,
                    *power_factor,
                    mean_w * 4.0,
                );
                // One to four years of service.
                m.seed_registers(mean_w * rng.range(8_760.0, 35_040.0), 0.0);
                m.offset_v = -rng.range(0.0, 2.5);
                Submeter {
                    meter: m,
                    shape: *shape,
                    mean_w: *mean_w,
                    drift: Wander::new(0.08, 300.0),
                    appliance: None,
                    power_w: 0.0,
                }
            })
            .collect();
        Site {
            interval_ms,
            next_ms: align_up(start_ms, interval_ms),
            curve: LoadCurve::new(),
            site_voltage: Wander::new(1.2, 600.0),
            grid,
            pv: PvPlant {
                meter: pv_meter,
                asset: id(PV_ASSET),
                profile: PvProfile::get(),
                clouds: Wander::new(0.04, 90.0),
                power_w: 0.0,
            },
            battery: Battery {
                meter: battery_meter,
                asset: id(BATTERY_ASSET),
                soc_pct: 50.0,
                full: false,
                empty: false,
                setpoint: SetpointLink::default(),
                next_control_ms: i64::MIN,
                power_w: 0.0,
            },
            chargers,
            submeters,
            rng,
        }
    }

    /// Registration of every meter and asset. Idempotent: on a restart each comes back as a
    /// duplicate.
    pub(crate) fn registrations(&self) -> Vec<Command> {
        let meters = self.meters().map(|m| Command::RegisterMeter {
            meter: m.id.clone(),
            kind: m.kind,
            register_bits: None,
        });
        let assets = [
            (&self.pv.asset, AssetKind::PvInverter, PV_RATED_W, None),
            (
                &self.battery.asset,
                AssetKind::Battery,
                BATTERY_RATED_W,
                Some(BATTERY_CAPACITY_WH),
            ),
        ]
        .into_iter()
        .chain(
            self.chargers
                .iter()
                .map(|c| (&c.asset, AssetKind::EvCharger, c.rated_w, None)),
        )
        .map(
            |(asset, kind, rated_power_w, capacity_wh)| Command::RegisterAsset {
                asset: asset.clone(),
                kind,
                rated_power_w,
                capacity_wh,
            },
        );
        meters.chain(assets).collect()
    }

    fn meters(&self) -> impl Iterator<Item = &Meter> {
        [&self.grid, &self.pv.meter, &self.battery.meter]
            .into_iter()
            .chain(self.chargers.iter().map(|c| &c.meter))
            .chain(self.submeters.iter().map(|s| &s.meter))
    }

    fn meters_mut(&mut self) -> impl Iterator<Item = &mut Meter> {
        [&mut self.grid, &mut self.pv.meter, &mut self.battery.meter]
            .into_iter()
            .chain(self.chargers.iter_mut().map(|c| &mut c.meter))
            .chain(self.submeters.iter_mut().map(|s| &mut s.meter))
    }

    /// Continues from what the engine holds: registers from each meter's newest reading, the
    /// battery's state of charge, setpoints, cars that were charging; and moves the next
    /// reading past the newest stored time.
    pub(crate) fn restore(&mut self, engine: &Engine) {
        let mut newest = i64::MIN;
        engine.read(|image| {
            for meter in self.meters_mut() {
                if let Some(EntityState::Meter(state)) =
                    image.entity(meter.id.as_str()).map(|e| &e.state)
                {
                    if let Some(latest) = state.latest {
                        meter.import_wh = latest.import_wh;
                        meter.export_wh = latest.export_wh;
                        newest = newest.max(latest.time_ms);
                    }
                }
            }
            let asset = |id: &EntityId| match image.entity(id.as_str()).map(|e| &e.state) {
                Some(EntityState::Asset(a)) => Some(a.clone()),
                _ => None,
            };
            if let Some(a) = asset(&self.pv.asset) {
                if let Some(t) = &a.telemetry {
                    newest = newest.max(t.time_ms);
                }
            }
            if let Some(a) = asset(&self.battery.asset) {
                self.battery.setpoint.restore(&a);
                if let Some(t) = &a.telemetry {
                    newest = newest.max(t.time_ms);
                    if let Some(soc) = t.soc_pct {
                        self.battery.soc_pct = soc.clamp(SOC_MIN_PCT, SOC_MAX_PCT);
                        self.battery.update_limits();
                    }
                }
            }
            for charger in &mut self.chargers {
                let Some(a) = asset(&charger.asset) else {
                    continue;
                };
                charger.setpoint.restore(&a);
                let setpoint_w = charger
                    .setpoint
                    .pending_w
                    .unwrap_or(charger.setpoint.applied_w);
                if let Some(t) = &a.telemetry {
                    newest = newest.max(t.time_ms);
                    if t.status.as_str() == "charging" && setpoint_w > 0.0 {
                        // The car is still plugged in; how much it still wants was never
                        // recorded, so it gets a plausible rest.
                        charger.session = Some(Session {
                            need_wh: self.rng.range(3_000.0, 15_000.0),
                            delivered_wh: 0.0,
                        });
                    }
                }
            }
        });
        if newest > i64::MIN {
            self.next_ms = self
                .next_ms
                .max(align_up(newest.saturating_add(1), self.interval_ms));
        }
    }

    /// Time of the next reading.
    pub(crate) fn next_ms(&self) -> i64 {
        self.next_ms
    }

    /// The commands of every interval whose reading time is at or before `until_ms`, at most
    /// `max_intervals` of them; later intervals wait for the next call.
    pub(crate) fn step(&mut self, until_ms: i64, max_intervals: usize) -> Vec<Command> {
        let mut out = Vec::new();
        let mut intervals = 0;
        while self.next_ms <= until_ms && intervals < max_intervals {
            let before = out.len();
            self.interval(self.next_ms, &mut out);
            debug_assert!(out.len() - before <= COMMANDS_PER_INTERVAL_MAX);
            self.next_ms += self.interval_ms;
            intervals += 1;
        }
        out
    }

    /// One interval ending at `time_ms`.
    fn interval(&mut self, time_ms: i64, out: &mut Vec<Command>) {
        let dt_s = self.interval_ms as f64 / 1000.0;
        let rng = &mut self.rng;

        // Setpoints requested in the previous interval: the assets confirm and run them.
        self.battery.setpoint.confirm(&self.battery.asset, out);
        for charger in &mut self.chargers {
            charger.setpoint.confirm(&charger.asset, out);
        }

        // Powers over the interval.
        let mut demand_w = 0.0;
        for sub in &mut self.submeters {
            sub.power_w = sub.power(time_ms, dt_s, &mut self.curve, rng);
            demand_w += sub.power_w;
        }
        for charger in &mut self.chargers {
            charger.power_w = charger.power(rng);
            demand_w += charger.power_w;
        }
        self.pv.power_w = self.pv.power(time_ms, dt_s, rng);
        self.battery.power_w = self.battery.power(dt_s);
        let grid_w = demand_w - self.pv.power_w + self.battery.power_w;

        // Energy: every register counts its own power, so the balance holds by construction.
        for sub in &mut self.submeters {
            sub.meter.account(sub.power_w, dt_s);
        }
        for charger in &mut self.chargers {
            charger.meter.account(charger.power_w, dt_s);
        }
        self.pv.meter.account(-self.pv.power_w, dt_s);
        self.battery.meter.account(self.battery.power_w, dt_s);
        self.battery.run(self.battery.power_w, dt_s);
        self.grid.account(grid_w, dt_s);

        // Readings. Import lowers the voltage at the connection point, export raises it.
        let site_v = NOMINAL_V + self.site_voltage.step(dt_s, rng) - grid_w * 2e-5;
        out.push(self.grid.reading(time_ms, grid_w, site_v, rng));
        out.push(
            self.pv
                .meter
                .reading(time_ms, -self.pv.power_w, site_v, rng),
        );
        out.push(
            self.battery
                .meter
                .reading(time_ms, self.battery.power_w, site_v, rng),
        );
        for charger in &self.chargers {
            out.push(charger.meter.reading(time_ms, charger.power_w, site_v, rng));
        }
        for sub in &self.submeters {
            if sub.meter.id.as_str() == OUTAGE_METER && in_outage(time_ms) {
                continue; // its modem is down; the meter itself keeps counting
            }
            out.push(sub.meter.reading(time_ms, sub.power_w, site_v, rng));
        }

        // Telemetry.
        out.push(Command::RecordTelemetry {
            asset: self.pv.asset.clone(),
            telemetry: Telemetry {
                time_ms,
                power_w: round(self.pv.power_w, REGISTER_SCALE),
                soc_pct: None,
                status: label(if self.pv.power_w > IDLE_W {
                    "producing"
                } else {
                    "standby"
                }),
            },
        });
        out.push(self.battery.telemetry(time_ms));
        for charger in &self.chargers {
            out.push(charger.telemetry(time_ms));
        }

        // Control: cars come and go; the battery follows the site.
        for charger in &mut self.chargers {
            charger.sessions(time_ms, dt_s, rng, out);
        }
        self.battery
            .control(time_ms, demand_w, self.pv.power_w, out);
    }
}

/// The first multiple of `step` at or after `time_ms`.
fn align_up(time_ms: i64, step: i64) -> i64 {
    time_ms.div_euclid(step) * step
        + if time_ms.rem_euclid(step) == 0 {
            0
        } else {
            step
        }
}

#[cfg(test)]
pub(crate) mod probe {
    //! Read access to the model's state for the tests.
    use super::*;

    impl Site {
        pub(crate) fn battery_soc_pct(&self) -> f64 {
            self.battery.soc_pct
        }
        pub(crate) fn set_battery_soc_pct(&mut self, soc_pct: f64) {
            self.battery.soc_pct = soc_pct;
            self.battery.update_limits();
        }
    }
}
