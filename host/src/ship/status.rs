//! What the shipper is doing, for `/api/v1/status` (and the dashboard, which reads it) and
//! `/metrics`: backlog, progress, retries, the last error and alarms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

/// Alarms kept for status (the newest; older ones are in the log).
pub const ALARMS_KEPT: usize = 16;

/// The shipper's state, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct ShipStatus {
    state: Mutex<State>,
    /// Objects confirmed in the store (segments, snapshots, manifests).
    pub objects_shipped: AtomicU64,
    /// Their bytes.
    pub bytes_shipped: AtomicU64,
    /// Uploads whose object was already there with the same content.
    pub duplicates: AtomicU64,
    /// Requests sent to the store.
    pub requests: AtomicU64,
    /// Bytes sent to the store (request bodies).
    pub bytes_sent: AtomicU64,
    /// Bytes read back from the store (verification, reconciliation).
    pub bytes_read: AtomicU64,
    /// Failed requests that were retried.
    pub retries: AtomicU64,
    /// Alarms raised (an object in the store differs from ours).
    pub alarms_total: AtomicU64,
    /// Manifests written.
    pub manifests: AtomicU64,
    /// The recovery-point bound, `ship.max_lag_s`.
    pub max_lag_s: AtomicU64,
    /// The fleet tables written.
    pub tables: TablesCounters,
}

/// What the fleet tables stage did since start.
#[derive(Debug, Default)]
pub struct TablesCounters {
    /// Segments whose tables were confirmed.
    pub segments: AtomicU64,
    /// Files verified in the store (written now, or found there with the same bytes).
    pub files: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Their rows.
    pub rows: AtomicU64,
    /// Bytes of log the tables were made from.
    pub log_bytes: AtomicU64,
    /// CPU time spent making them (thread time, µs).
    pub cpu_us: AtomicU64,
    /// Segments read back from central storage (no local copy left) to fold baselines or
    /// make tables.
    pub history_fetched_segments: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct State {
    store: String,
    lineage: String,
    phase: &'static str,
    backlog_objects: u64,
    backlog_bytes: u64,
    oldest_first_offset: Option<u64>,
    oldest_created_unix_ms: Option<u64>,
    last_error: Option<(u64, String)>,
    last_success_unix_ms: Option<u64>,
    manifest_sequence: u64,
    covered_next_offset: u64,
    recovery_next_offset: u64,
    recovery_verified_unix_ms: Option<u64>,
    unshipped_since_unix_ms: Option<u64>,
    alarms: Vec<(u64, String)>,
    /// `None` while `ship.tables` is off.
    tables_waiting: Option<u64>,
}

/// The backlog as status shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Objects waiting.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// First offset of the oldest waiting segment.
    pub oldest_first_offset: Option<u64>,
    /// When the oldest waiting object was written locally.
    pub oldest_created_unix_ms: Option<u64>,
}

/// What central storage holds of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// One past the newest offset central storage holds without a gap.
    pub next_offset: u64,
    /// When the newest chunk was verified there.
    pub verified_unix_ms: Option<u64>,
    /// Since when the oldest acknowledged event not yet there has waited.
    pub unshipped_since_unix_ms: Option<u64>,
}

impl RecoveryPoint {
    /// Seconds the oldest acknowledged event not in central storage has waited; 0 when it
    /// holds everything.
    pub fn lag_s(&self, now_unix_ms: u64) -> u64 {
        self.unshipped_since_unix_ms
            .map_or(0, |t| now_unix_ms.saturating_sub(t) / 1000)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ShipStatus {
    /// Status for shipping to `store` (shown without credentials) as `lineage`.
    pub fn new(store: &str, lineage: &str) -> ShipStatus {
        let status = ShipStatus::default();
        {
            let mut s = status.lock();
            s.store = store.to_string();
            s.lineage = lineage.to_string();
            s.phase = "starting";
        }
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `starting`, `reconciling`, `idle`, `shipping`, `retrying`, `stopped`.
    pub fn set_phase(&self, phase: &'static str) {
        self.lock().phase = phase;
    }

    /// Sets the backlog.
    pub fn set_backlog(&self, backlog: Backlog) {
        let mut s = self.lock();
        s.backlog_objects = backlog.objects;
        s.backlog_bytes = backlog.bytes;
        s.oldest_first_offset = backlog.oldest_first_offset;
        s.oldest_created_unix_ms = backlog.oldest_created_unix_ms;
    }

    /// The backlog.
    pub fn backlog(&self) -> Backlog {
        let s = self.lock();
        Backlog {
            objects: s.backlog_objects,
            bytes: s.backlog_bytes,
            oldest_first_offset: s.oldest_first_offset,
            oldest_created_unix_ms: s.oldest_created_unix_ms,
        }
    }

    /// The recovery point: one past the newest offset central storage holds without a gap,
    /// when the newest chunk was verified, and since when the oldest acknowledged event not
    /// yet in central storage has waited (none: the store holds everything).
    pub fn set_recovery_point(&self, point: RecoveryPoint) {
        let mut s = self.lock();
        s.recovery_next_offset = point.next_offset;
        s.recovery_verified_unix_ms = point.verified_unix_ms;
        s.unshipped_since_unix_ms = point.unshipped_since_unix_ms;
    }

    /// The recovery point as last set.
    pub fn recovery_point(&self) -> RecoveryPoint {
        let s = self.lock();
        RecoveryPoint {
            next_offset: s.recovery_next_offset,
            verified_unix_ms: s.recovery_verified_unix_ms,
            unshipped_since_unix_ms: s.unshipped_since_unix_ms,
        }
    }

    /// Records a failure.
    pub fn error(&self, message: String) {
        self.lock().last_error = Some((unix_ms_now(), message));
    }

    /// Records a success (a confirmed object): the store is reachable again.
    pub fn success(&self) {
        self.lock().last_success_unix_ms = Some(unix_ms_now());
    }

    /// Counts a round whose manifest was verified: `objects` (the manifest included) and
    /// their `bytes`; the store is reachable.
    pub fn round_shipped(&self, objects: u64, bytes: u64) {
        self.objects_shipped.fetch_add(objects, Ordering::Relaxed);
        self.bytes_shipped.fetch_add(bytes, Ordering::Relaxed);
        self.manifests.fetch_add(1, Ordering::Relaxed);
        self.success();
    }

    /// Raises an alarm: something in the store is not what the gateway shipped.
    pub fn alarm(&self, message: String) {
        tracing::error!(alarm = %message, "shipping alarm");
        self.alarms_total.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.alarms.push((unix_ms_now(), message));
        if s.alarms.len() > ALARMS_KEPT {
            s.alarms.remove(0);
        }
    }

    /// The alarms kept.
    pub fn alarms(&self) -> Vec<String> {
        self.lock().alarms.iter().map(|(_, m)| m.clone()).collect()
    }

    /// Shipped segments whose tables are not written yet (`ship.tables` on).
    pub fn set_tables_waiting(&self, segments: u64) {
        self.lock().tables_waiting = Some(segments);
    }

    /// The chain's head.
    pub fn set_chain(&self, sequence: u64, covered_next_offset: u64) {
        let mut s = self.lock();
        s.manifest_sequence = sequence;
        s.covered_next_offset = s.covered_next_offset.max(covered_next_offset);
    }

    /// The `"shipping"` object of `/api/v1/status`.
    pub fn body(&self) -> ShippingBody {
        let s = self.lock().clone();
        let now = unix_ms_now();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let age_s = |t: u64| now.saturating_sub(t) / 1000;
        let message = |(t, m): &(u64, String)| ShipMessage {
            message: m.clone(),
            age_s: age_s(*t),
        };
        ShippingBody {
            enabled: true,
            detail: Some(ShippingDetail {
                store: s.store,
                lineage: s.lineage,
                state: s.phase,
                backlog: BacklogBody {
                    objects: s.backlog_objects,
                    bytes: s.backlog_bytes,
                    oldest_first_offset: s.oldest_first_offset,
                    oldest_age_s: s.oldest_created_unix_ms.map(age_s),
                },
                shipped: ShippedBody {
                    objects: load(&self.objects_shipped),
                    bytes: load(&self.bytes_shipped),
                    duplicates: load(&self.duplicates),
                    manifests: load(&self.manifests),
                    manifest_sequence: s.manifest_sequence,
                    covered_next_offset: s.covered_next_offset,
                },
                recovery_point: RecoveryPointBody {
                    next_offset: s.recovery_next_offset,
                    newest_offset: s.recovery_next_offset.checked_sub(1).filter(|o| *o > 0),
                    verified_age_s: s.recovery_verified_unix_ms.map(age_s),
                    lag_s: s.unshipped_since_unix_ms.map_or(0, age_s),
                    max_lag_s: load(&self.max_lag_s),
                },
                requests: load(&self.requests),
                retries: load(&self.retries),
                bytes_sent: load(&self.bytes_sent),
                bytes_read: load(&self.bytes_read),
                last_success_age_s: s.last_success_unix_ms.map(age_s),
                last_error: s.last_error.as_ref().map(message),
                alarms: s.alarms.iter().map(message).collect(),
                alarms_total: load(&self.alarms_total),
                tables: TablesBody {
                    enabled: s.tables_waiting.is_some(),
                    waiting_segments: s.tables_waiting.unwrap_or(0),
                    segments: load(&self.tables.segments),
                    files: load(&self.tables.files),
                    bytes: load(&self.tables.bytes),
                    rows: load(&self.tables.rows),
                    log_bytes: load(&self.tables.log_bytes),
                    cpu_ms: load(&self.tables.cpu_us) / 1000,
                    history_fetched_segments: load(&self.tables.history_fetched_segments),
                },
            }),
        }
    }
}

/// `shipping` in `/api/v1/status`: `{"enabled": false}` when no store is configured, else
/// every field of [`ShippingDetail`] beside `"enabled": true`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShippingBody {
    /// Whether a store is configured.
    pub enabled: bool,
    /// What the shipper is doing (absent when shipping is off).
    #[serde(flatten)]
    pub detail: Option<ShippingDetail>,
}

impl ShippingBody {
    /// Shipping off.
    pub fn disabled() -> ShippingBody {
        ShippingBody {
            enabled: false,
            detail: None,
        }
    }
}

/// What the shipper is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShippingDetail {
    /// The store URL.
    pub store: String,
    /// The lineage shipped under.
    pub lineage: String,
    /// `starting`, `reconciling`, `shipping`, `retrying`, `idle`, `stopped`, ...
    pub state: &'static str,
    /// What waits to be shipped.
    pub backlog: BacklogBody,
    /// What central storage confirmed.
    pub shipped: ShippedBody,
    /// The newest offset central storage holds without a gap, and how far behind it is.
    pub recovery_point: RecoveryPointBody,
    /// Requests sent to the store.
    pub requests: u64,
    /// Failed requests that were retried.
    pub retries: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Seconds since the last successful round.
    pub last_success_age_s: Option<u64>,
    /// The last error, if the last round failed.
    pub last_error: Option<ShipMessage>,
    /// The newest alarms (an object in the store differs from ours), at most [`ALARMS_KEPT`].
    pub alarms: Vec<ShipMessage>,
    /// Alarms raised since start.
    pub alarms_total: u64,
    /// The fleet tables (`ship.tables`).
    pub tables: TablesBody,
}

/// The fleet tables in `/api/v1/status`: what was written since start.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TablesBody {
    /// `ship.tables`.
    pub enabled: bool,
    /// Shipped segments whose tables are not written yet.
    pub waiting_segments: u64,
    /// Segments whose tables were confirmed.
    pub segments: u64,
    /// Files verified in the store.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Their rows.
    pub rows: u64,
    /// Bytes of log they were made from.
    pub log_bytes: u64,
    /// CPU time spent making them, ms (thread time).
    pub cpu_ms: u64,
    /// Segments read back from central storage (no local copy left).
    pub history_fetched_segments: u64,
}

/// The backlog in `/api/v1/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacklogBody {
    /// Objects waiting.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// First offset of the oldest waiting segment.
    pub oldest_first_offset: Option<u64>,
    /// Seconds the oldest waiting object has waited.
    pub oldest_age_s: Option<u64>,
}

/// What central storage confirmed, in `/api/v1/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShippedBody {
    /// Objects confirmed.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Uploads found already there with the same content.
    pub duplicates: u64,
    /// Manifests written.
    pub manifests: u64,
    /// The newest manifest's sequence number.
    pub manifest_sequence: u64,
    /// One past the highest offset a manifest covers.
    pub covered_next_offset: u64,
}

/// The recovery point in `/api/v1/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecoveryPointBody {
    /// One past the newest offset central storage holds without a gap.
    pub next_offset: u64,
    /// That newest offset (absent when it holds nothing).
    pub newest_offset: Option<u64>,
    /// Seconds since the newest chunk was verified there.
    pub verified_age_s: Option<u64>,
    /// Seconds the oldest acknowledged event not yet there has waited (0: none waits).
    pub lag_s: u64,
    /// The bound on that, `ship.max_lag_s`.
    pub max_lag_s: u64,
}

/// An error or alarm with its age.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipMessage {
    /// What happened.
    pub message: String,
    /// Seconds ago.
    pub age_s: u64,
}
