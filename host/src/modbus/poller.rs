//! The bus tasks: one per bus (a TCP endpoint or a serial port), whose devices take turns on
//! its one connection. Each task sleeps until the earliest device's slot, polls it, submits
//! what it read through [`crate::submit::submit_and_wait`] and waits until that is durable,
//! then schedules the device's next slot. A device that fails is marked unavailable after
//! `failures_max` failures (an availability event for its asset) and backs off, so a dead
//! device costs its bus one timeout per backoff and the others keep their slots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridlog_common::domain::Command;
use gridlog_firmware::engine::{Engine, ItemResult, Request};

use super::config::{Device, DeviceConfig, DeviceConfigError, Endpoint, Source};
use super::discovery::{self, Entities, Naming, Plan, PlanError};
use super::link::{Link, ReadError};
use super::mapping::{self, Values};
use super::registers::RegisterMap;
use super::schedule::{next_slot_ms, Change, Health};
use super::status::{DeviceStatus, ModbusStatus};
use super::sunspec::{self, ChainError, ChainWalk, Step};
use crate::submit::{submit_and_wait, SubmitWaitError};

/// Why a poll stored nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// A read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// No `SunS` marker at any of the base addresses.
    #[error("no SunSpec marker at registers 40000, 0 or 50000")]
    NoSunSpec,
    /// The model chain is unusable.
    #[error("SunSpec model chain: {0}")]
    Chain(#[from] ChainError),
    /// The models found cannot be polled.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The engine did not take the records.
    #[error("the engine did not store the poll: {0}")]
    Submit(#[from] SubmitWaitError),
}

impl PollError {
    /// The error's kind, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Read(e) => e.kind(),
            PollError::NoSunSpec => "no_sunspec",
            PollError::Chain(_) => "chain",
            PollError::Plan(_) => "plan",
            PollError::Submit(_) => "engine",
        }
    }

    /// Whether it is the device's fault (counts towards unavailable).
    fn is_device_failure(&self) -> bool {
        !matches!(self, PollError::Submit(_))
    }
}

/// What the poller knows of a device after discovery and registration.
#[derive(Debug)]
enum Known {
    SunSpec(Box<SunSpecDevice>),
    Registers,
}

/// A discovered SunSpec device.
#[derive(Debug)]
struct SunSpecDevice {
    plan: Plan,
    entities: Entities,
    pv_registered: bool,
}

/// One device on a bus.
#[derive(Debug)]
struct Polled {
    device: Device,
    status: Arc<DeviceStatus>,
    health: Health,
    next_slot_ms: i64,
    known: Option<Known>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Checks every device and starts one task per bus. Devices whose configuration is unusable
/// are reported (log and status) and left out; the others are polled.
pub fn spawn(
    configs: &[DeviceConfig],
    engine: Arc<Engine>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Arc<ModbusStatus>, Vec<tokio::task::JoinHandle<()>>) {
    // By bus, with the settings of its first device and that device's URL.
    let mut buses: BTreeMap<String, (Endpoint, String, Vec<Polled>)> = BTreeMap::new();
    let mut status = ModbusStatus::default();
    let now_ms = now_us() / 1000;
    for config in configs {
        let device_status =
            DeviceStatus::new(config.display_name(), config.url.clone(), config.unit_id);
        status.devices.push(device_status.clone());
        let checked = config.check().and_then(|device| {
            let bus = buses
                .entry(device.endpoint.bus().to_string())
                .or_insert_with(|| (device.endpoint.clone(), config.url.clone(), Vec::new()));
            if bus.0 != device.endpoint {
                return Err(DeviceConfigError::BusSettings {
                    device: device.name,
                    bus: device.endpoint.bus().to_string(),
                    url: bus.1.clone(),
                });
            }
            Ok((bus, device))
        });
        match checked {
            Ok((bus, device)) => bus.2.push(Polled {
                health: Health::new(device.failures_max),
                next_slot_ms: next_slot_ms(now_ms, device.interval_ms),
                device,
                status: device_status,
                known: None,
            }),
            Err(e) => {
                tracing::error!(error = %e, "modbus device not polled");
                let _ = device_status.failed("config", e.to_string());
                device_status.set_link(false, true);
            }
        }
    }
    let tasks = buses
        .into_values()
        .map(|(endpoint, _, devices)| {
            tokio::spawn(run_bus(
                Link::new(endpoint),
                devices,
                engine.clone(),
                stop.clone(),
            ))
        })
        .collect();
    (Arc::new(status), tasks)
}

async fn run_bus(
    mut link: Link,
    mut devices: Vec<Polled>,
    engine: Arc<Engine>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Some(d) = devices.iter_mut().min_by_key(|d| d.next_slot_ms) else {
            return;
        };
        let slot_ms = d.next_slot_ms;
        let wait_us = slot_ms.saturating_mul(1000) - now_us();
        if wait_us > 0 {
            let sleep = tokio::time::sleep(Duration::from_micros(wait_us.unsigned_abs()));
            tokio::select! {
                () = sleep => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        if *stop.borrow() {
            return;
        }
        let result = poll(&mut link, d, slot_ms, &engine).await;
        let done_us = now_us();
        let change = match result {
            Ok(read_us) => {
                let slot_us = slot_ms.saturating_mul(1000);
                let ms = |us: i64| us as f64 / 1000.0;
                d.status
                    .polled(slot_ms, ms(read_us - slot_us), ms(done_us - slot_us));
                d.health.succeeded()
            }
            Err(e) => {
                if d.status.failed(e.kind(), e.to_string()) {
                    tracing::warn!(device = d.status.name(), error = %e, "modbus poll failed");
                }
                if e.is_device_failure() {
                    d.health.failed()
                } else {
                    Change::None
                }
            }
        };
        availability(d, change, &engine).await;
        d.status.set_link(link.connected(), d.health.unavailable());
        d.next_slot_ms = d
            .health
            .next_poll_ms(slot_ms, done_us / 1000, d.device.interval_ms);
    }
}

/// Records a change of availability for the device's asset (if it has one) and forgets
/// an unavailable device's discovery, so its map is found again when it is back.
async fn availability(d: &mut Polled, change: Change, engine: &Engine) {
    let available = match change {
        Change::None => return,
        Change::Available => true,
        Change::Unavailable => false,
    };
    tracing::warn!(
        device = d.status.name(),
        available,
        "modbus device availability changed"
    );
    let asset = match &d.known {
        Some(Known::SunSpec(known)) => known.entities.inverter.as_ref().map(|(a, _, _)| a.clone()),
        Some(Known::Registers) => match &d.device.source {
            Source::Registers(map) if map.asset.is_some() => Some(map.id.clone()),
            _ => None,
        },
        None => None,
    };
    if !available {
        d.known = None;
    }
    if let Some(asset) = asset {
        let command = Command::ChangeAvailability { asset, available };
        submit(engine, vec![command], &d.status)
            .await
            .unwrap_or_else(|e| {
                let _ = d.status.failed(e.kind(), e.to_string());
            });
    }
}

/// One poll of `d`: read, map, submit and wait until durable; when the reads were done
/// (µs since the epoch).
async fn poll(
    link: &mut Link,
    d: &mut Polled,
    slot_ms: i64,
    engine: &Engine,
) -> Result<i64, PollError> {
    if let Source::Registers(map) = &d.device.source {
        let registered = d.known.is_some();
        let read_us =
            poll_registers(link, &d.device, map, registered, &d.status, slot_ms, engine).await?;
        d.known = Some(Known::Registers);
        return Ok(read_us);
    }
    poll_sunspec(link, d, slot_ms, engine).await
}

async fn poll_registers(
    link: &mut Link,
    device: &Device,
    map: &RegisterMap,
    registered: bool,
    status: &DeviceStatus,
    slot_ms: i64,
    engine: &Engine,
) -> Result<i64, PollError> {
    let mut answers = Vec::with_capacity(map.reads().len());
    for read in map.reads() {
        let words = link.read_table(
            device.unit_id,
            read.table,
            read.address,
            read.count,
            device.timeout,
        );
        answers.push(words.await?);
    }
    let mut commands = Vec::new();
    if !registered {
        commands.extend(register_commands(map));
    }
    let values = map.values(&answers);
    match register_record(map, slot_ms, &values, device.invert) {
        Ok(command) => commands.push(command),
        Err(absent) => {
            let _ = status.failed("absent", format!("{}: {absent}", map.id));
        }
    }
    let read_us = now_us();
    submit(engine, commands, status).await?;
    status.set_entities(vec![map.id.to_string()]);
    Ok(read_us)
}

async fn poll_sunspec(
    link: &mut Link,
    d: &mut Polled,
    slot_ms: i64,
    engine: &Engine,
) -> Result<i64, PollError> {
    let (unit, timeout) = (d.device.unit_id, d.device.timeout);
    if d.known.is_none() {
        let (plan, entities, registrations) = discover(link, &d.device).await?;
        let mut names: Vec<String> = entities.meter.iter().map(|(m, _)| m.to_string()).collect();
        if let Some((asset, pv, _)) = &entities.inverter {
            names.extend([asset.to_string(), pv.to_string()]);
        }
        submit(engine, registrations, &d.status).await?;
        d.status.set_entities(names);
        d.known = Some(Known::SunSpec(Box::new(SunSpecDevice {
            plan,
            entities,
            pv_registered: false,
        })));
    }
    let Some(Known::SunSpec(known)) = &mut d.known else {
        return Ok(now_us());
    };
    let SunSpecDevice {
        plan,
        entities,
        pv_registered,
    } = known.as_mut();
    // One request per model: its values and their scale factors from one answer.
    let meter_words = match plan.meter {
        Some((w, _)) => Some(link.read(unit, w.address, w.count, timeout).await?),
        None => None,
    };
    let inverter_words = match plan.inverter {
        Some((w, _)) => Some(link.read(unit, w.address, w.count, timeout).await?),
        None => None,
    };
    let (mut commands, absent) = discovery::poll_commands(
        entities,
        slot_ms,
        d.device.invert,
        meter_words.as_deref(),
        inverter_words.as_deref(),
    );
    for a in absent {
        let _ = d.status.failed("absent", a.to_string());
    }
    let mut registering_pv = false;
    if let (Some((pv, model)), false) = (pv_meter(entities, plan), *pv_registered) {
        if commands.iter().any(|c| c.entity() == &pv) {
            let whole = match (inverter_words.as_deref(), plan.inverter) {
                (Some(words), Some((_, p))) => sunspec::counts_at_most_wh(words, p.energy_wh),
                _ => true,
            };
            commands.insert(0, discovery::register_pv_meter(&pv, model, whole));
            registering_pv = true;
        }
    }
    let read_us = now_us();
    submit(engine, commands, &d.status).await?;
    // Only once the engine answered (accepted, a duplicate, or refused for good): a
    // registration lost to a busy or failed engine goes again with the next poll.
    *pv_registered |= registering_pv;
    Ok(read_us)
}

fn pv_meter(entities: &Entities, plan: &Plan) -> Option<(gridlog_common::id::EntityId, u16)> {
    let (_, pv, _) = entities.inverter.as_ref()?;
    Some((pv.clone(), plan.inverter?.0.model))
}

/// The registration of a register map's entity (an asset is also marked available: it
/// answers).
fn register_commands(map: &RegisterMap) -> Vec<Command> {
    match map.asset {
        Some((kind, rated_power_w)) => vec![
            Command::RegisterAsset {
                asset: map.id.clone(),
                kind,
                rated_power_w,
                capacity_wh: None,
            },
            Command::ChangeAvailability {
                asset: map.id.clone(),
                available: true,
            },
        ],
        None => vec![Command::RegisterMeter {
            meter: map.id.clone(),
            kind: map.meter_kind,
            register_bits: map.wraps_at_32_bits().then_some(32),
        }],
    }
}

fn register_record(
    map: &RegisterMap,
    time_ms: i64,
    values: &Values,
    invert: bool,
) -> Result<Command, mapping::Absent> {
    match map.asset {
        Some(_) => mapping::telemetry(&map.id, time_ms, values, "ok", invert),
        None => mapping::reading(&map.id, time_ms, values, invert),
    }
}

/// Finds the SunSpec map, walks its chain, reads the common model and names the entities.
async fn discover(
    link: &mut Link,
    device: &Device,
) -> Result<(Plan, Entities, Vec<Command>), PollError> {
    let (unit, timeout) = (device.unit_id, device.timeout);
    let Source::SunSpec {
        id,
        meter_kind,
        rated_power_w,
    } = &device.source
    else {
        return Err(PollError::NoSunSpec);
    };
    let mut base = None;
    for address in sunspec::BASE_ADDRESSES {
        match link.read(unit, address, 2, timeout).await {
            Ok(words) if words == sunspec::MARKER => {
                base = Some(address);
                break;
            }
            Ok(_) | Err(ReadError::Exception { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut walk = base.and_then(ChainWalk::new).ok_or(PollError::NoSunSpec)?;
    loop {
        let header = link.read(unit, walk.header_address(), 2, timeout).await?;
        if walk.step(header[0], header[1])? == Step::End {
            break;
        }
    }
    let plan = discovery::plan(walk.models())?;
    let common = link
        .read(unit, plan.common.address, plan.common.count, timeout)
        .await?;
    let field = |(offset, len): (u16, u16)| {
        let range = usize::from(offset)..usize::from(offset + len);
        sunspec::text(common.get(range).unwrap_or_default())
    };
    let naming = Naming {
        template: id,
        meter_kind: *meter_kind,
        rated_power_w: *rated_power_w,
    };
    let manufacturer = field(sunspec::COMMON_MANUFACTURER);
    let serial = field(sunspec::COMMON_SERIAL);
    // An acc32 meter model is a 32-bit register only if its counts are whole Wh or finer:
    // one read of its window at discovery tells (`TotWh_SF`).
    let meter_counts_at_most_wh = match plan.meter {
        Some((w, p)) if discovery::wraps_at_32_bits(w.model) => {
            let words = link.read(unit, w.address, w.count, timeout).await?;
            sunspec::counts_at_most_wh(&words, p.import_wh)
                && sunspec::counts_at_most_wh(&words, p.export_wh)
        }
        _ => true,
    };
    let (entities, registrations) = discovery::entities(
        &plan,
        naming,
        &manufacturer,
        &serial,
        meter_counts_at_most_wh,
    )?;
    tracing::info!(device = %device.name, models = ?walk.models().iter().map(|m| m.id).collect::<Vec<_>>(), "SunSpec map found");
    Ok((plan, entities, registrations))
}

/// Submits `commands` and waits until they are durable; a command the engine rejects is
/// counted and logged with its entity (the poll itself went through).
async fn submit(
    engine: &Engine,
    commands: Vec<Command>,
    status: &DeviceStatus,
) -> Result<(), PollError> {
    if commands.is_empty() {
        return Ok(());
    }
    let entities: Vec<String> = commands.iter().map(|c| c.entity().to_string()).collect();
    let response = submit_and_wait(engine, Request::of(commands)).await?;
    for (result, entity) in response.results.iter().zip(entities) {
        if let ItemResult::Rejected(r) = result {
            let message = format!("{entity}: rejected ({}): {}", r.code, r.message);
            if status.failed("rejected", message.clone()) {
                tracing::warn!(device = status.name(), %message, "modbus record rejected");
            }
        }
    }
    Ok(())
}
