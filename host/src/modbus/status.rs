//! What each polled device is doing, for `/api/v1/status`, `/metrics` and the log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many recent poll durations each device keeps for its percentiles.
pub const DURATION_SAMPLES: usize = 1_024;

/// One device's state, shared by its bus task and the readers.
#[derive(Debug)]
pub struct DeviceStatus {
    name: String,
    url: String,
    unit_id: u8,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    connected: bool,
    unavailable: bool,
    polls: u64,
    last_poll_ms: Option<i64>,
    last_error: Option<String>,
    errors: BTreeMap<&'static str, u64>,
    durations_ms: VecDeque<f64>,
    read_durations_ms: VecDeque<f64>,
    entities: Vec<String>,
}

/// A device's status as `/api/v1/status` shows it (`modbus.devices`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceStatusBody {
    /// The device's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its unit id.
    pub unit_id: u8,
    /// Whether its bus is connected.
    pub connected: bool,
    /// Whether it failed `failures_max` polls in a row (or its configuration is unusable).
    pub unavailable: bool,
    /// Polls that stored (or found already stored) what they read.
    pub polls: u64,
    /// The slot (ms since the epoch) of the last poll that succeeded.
    pub last_poll_ms: Option<i64>,
    /// Median time from the poll's slot until its records were durable, over the last
    /// polls.
    pub poll_duration_ms_p50: Option<f64>,
    /// 99th percentile of the same.
    pub poll_duration_ms_p99: Option<f64>,
    /// The part of it until the device's last answer (the rest is making the records
    /// durable): median.
    pub read_duration_ms_p50: Option<f64>,
    /// 99th percentile of the same.
    pub read_duration_ms_p99: Option<f64>,
    /// Failures by kind (`timeout`, `exception`, `chain`, `config`, `rejected` …).
    pub errors: BTreeMap<String, u64>,
    /// The newest failure, naming the register.
    pub last_error: Option<String>,
    /// The meters and assets it feeds.
    pub entities: Vec<String>,
}

impl DeviceStatus {
    /// A device not yet polled.
    pub fn new(name: String, url: String, unit_id: u8) -> Arc<DeviceStatus> {
        Arc::new(DeviceStatus {
            name,
            url,
            unit_id,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A poll of slot `slot_ms` had its answers `read_ms` and its records durable
    /// `duration_ms` after its slot.
    pub fn polled(&self, slot_ms: i64, read_ms: f64, duration_ms: f64) {
        let mut s = self.state();
        s.polls += 1;
        s.last_poll_ms = Some(slot_ms);
        keep_newest(&mut s.durations_ms, duration_ms);
        keep_newest(&mut s.read_durations_ms, read_ms);
    }

    /// A failure of kind `kind`; whether its message differs from the last failure's (a
    /// failure that repeats every poll is logged once, and counted every time).
    pub fn failed(&self, kind: &'static str, message: String) -> bool {
        let mut s = self.state();
        *s.errors.entry(kind).or_default() += 1;
        let new = s.last_error.as_deref() != Some(message.as_str());
        s.last_error = Some(message);
        new
    }

    /// Whether its bus is connected, and whether it is unavailable.
    pub fn set_link(&self, connected: bool, unavailable: bool) {
        let mut s = self.state();
        s.connected = connected;
        s.unavailable = unavailable;
    }

    /// The entities it feeds.
    pub fn set_entities(&self, entities: Vec<String>) {
        self.state().entities = entities;
    }

    /// Its status now.
    pub fn body(&self) -> DeviceStatusBody {
        let s = self.state();
        let polls = sorted(&s.durations_ms);
        let reads = sorted(&s.read_durations_ms);
        DeviceStatusBody {
            name: self.name.clone(),
            url: self.url.clone(),
            unit_id: self.unit_id,
            connected: s.connected,
            unavailable: s.unavailable,
            polls: s.polls,
            last_poll_ms: s.last_poll_ms,
            poll_duration_ms_p50: percentile(&polls, 50),
            poll_duration_ms_p99: percentile(&polls, 99),
            read_duration_ms_p50: percentile(&reads, 50),
            read_duration_ms_p99: percentile(&reads, 99),
            errors: s
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            last_error: s.last_error.clone(),
            entities: s.entities.clone(),
        }
    }
}

/// Appends `value`, forgetting the oldest beyond [`DURATION_SAMPLES`].
fn keep_newest(samples: &mut VecDeque<f64>, value: f64) {
    if samples.len() >= DURATION_SAMPLES {
        samples.pop_front();
    }
    samples.push_back(value);
}

/// The samples in ascending order.
fn sorted(samples: &VecDeque<f64>) -> Vec<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The `pct` percentile of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], pct: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Every device of the poller.
#[derive(Debug, Default)]
pub struct ModbusStatus {
    /// The devices, in configuration order.
    pub devices: Vec<Arc<DeviceStatus>>,
}

impl ModbusStatus {
    /// Every device's status.
    pub fn bodies(&self) -> Vec<DeviceStatusBody> {
        self.devices.iter().map(|d| d.body()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), Some(50.0));
        assert_eq!(percentile(&v, 99), Some(99.0));
        assert_eq!(percentile(&[7.0], 99), Some(7.0));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn a_device_keeps_its_newest_durations_and_counts_errors_by_kind() {
        let d = DeviceStatus::new("m".into(), "tcp://h:1".into(), 1);
        for i in 0..(DURATION_SAMPLES + 10) {
            d.polled(i as i64, 1.0, 1000.0 + i as f64);
        }
        assert!(d.failed("timeout", "register 40000: no answer".into()));
        assert!(
            !d.failed("timeout", "register 40000: no answer".into()),
            "a repeat"
        );
        assert!(d.failed("timeout", "again".into()));
        let b = d.body();
        assert_eq!(b.polls, (DURATION_SAMPLES + 10) as u64);
        assert_eq!(
            b.poll_duration_ms_p50,
            Some(1010.0 + (DURATION_SAMPLES / 2 - 1) as f64)
        );
        assert_eq!(b.read_duration_ms_p99, Some(1.0));
        assert_eq!(b.errors.get("timeout"), Some(&3));
        assert_eq!(b.last_error.as_deref(), Some("again"));
    }
}
