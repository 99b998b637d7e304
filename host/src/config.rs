//! Configuration: defaults, then a TOML file, then `GRIDLOG_*` environment variables, then
//! command-line flags — each overriding the one before. Unknown keys are an error, in the
//! file and in the environment, so a typo never silently keeps a default.
//!
//! Environment variables name a key by its path in upper case, sections joined by a double
//! underscore: `GRIDLOG_LISTEN`, `GRIDLOG_WAL__SEGMENT_BYTES`, `GRIDLOG_HTTP__BODY_BYTES_MAX`.
//! Values are parsed as TOML (`123`, `true`, `"text"`; bare text is taken as a string).
//! `GRIDLOG_LOG` is the log filter, not a config key.
//!
//! This file is the configuration's one schema: each section's struct beside its documented
//! defaults and its checks, which the README's configuration table mirrors line by line.
//! How the values arrive (the layering above, the token files) is `config/load.rs`; the
//! tests are in `config/tests.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration. Every key has a default; see README "Configuration".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the log, snapshots and archive live. Default `./gridlog-data`.
    pub data_dir: PathBuf,
    /// HTTP listen address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Bearer token required for writes; empty = none (loopback only). Default empty.
    /// Visible ASCII only (`!`..`~`, no spaces): HTTP trims a header's surrounding
    /// whitespace, so a token with spaces or other bytes could never match.
    pub write_token: String,
    /// A file whose content (one trailing newline removed) is the write token, so the token
    /// never appears in the process list or the environment. Default empty (none).
    pub write_token_file: PathBuf,
    /// Bearer token required for every read (the API's GET routes, the live stream, status,
    /// limits, the OpenAPI document, `/query`, and `/metrics` unless `metrics_public`); the
    /// write token grants reads too. Empty = reads are open. Same rules as `write_token`.
    /// Default empty.
    pub read_token: String,
    /// A file holding the read token, like `write_token_file`. Default empty (none).
    pub read_token_file: PathBuf,
    /// Serve `/metrics` without the read token (a Prometheus on the site network that holds
    /// no token). Default false.
    pub metrics_public: bool,
    /// Allow listening on a non-loopback address without a write token. Default false.
    pub insecure: bool,
    /// `[tls]`: HTTPS for the API and dashboard (off unless `tls.cert_file` is set).
    pub tls: TlsConfig,
    /// This site's id (object keys, status). Default `site`.
    pub site_id: String,
    /// The log.
    pub wal: WalConfig,
    /// The engine.
    pub engine: EngineConfig,
    /// The HTTP server.
    pub http: HttpConfig,
    /// The demo site (`gridlog demo`).
    pub demo: DemoConfig,
    /// Snapshots and the local archive.
    pub storage: StorageConfig,
    /// Shipping to central storage.
    pub ship: ShipConfig,
    /// Line protocol ingest (`/write`, `/api/v2/write`).
    pub ingest: IngestConfig,
    /// `[mqtt]`: the MQTT subscriber (off unless `mqtt.url` is set).
    pub mqtt: crate::ingest::mqtt::MqttConfig,
    /// Modbus devices polled by the gateway (`[[modbus.device]]`).
    pub modbus: crate::modbus::config::ModbusConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./gridlog-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            write_token: String::new(),
            write_token_file: PathBuf::new(),
            read_token: String::new(),
            read_token_file: PathBuf::new(),
            metrics_public: false,
            insecure: false,
            tls: TlsConfig::default(),
            site_id: "site".into(),
            wal: WalConfig::default(),
            engine: EngineConfig::default(),
            http: HttpConfig::default(),
            demo: DemoConfig::default(),
            storage: StorageConfig::default(),
            ship: ShipConfig::default(),
            ingest: IngestConfig::default(),
            mqtt: crate::ingest::mqtt::MqttConfig::default(),
            modbus: crate::modbus::config::ModbusConfig::default(),
        }
    }
}

/// `[tls]`: the certificate and key the listener serves HTTPS with; re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file holding the server's certificate, followed by its chain (if any). Empty =
    /// plain HTTP. Default empty.
    pub cert_file: PathBuf,
    /// PEM file holding the private key (PKCS#8, RSA or SEC1). Default empty.
    pub key_file: PathBuf,
    /// A TLS handshake must finish within this after the connection is accepted, or the
    /// connection is closed (a client that opens a socket and sends nothing holds a
    /// connection slot no longer). Default 10 s.
    pub handshake_timeout_s: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            handshake_timeout_s: 10,
        }
    }
}

impl TlsConfig {
    /// Whether HTTPS is on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// Checks the section on its own: both files or neither, and a handshake timeout.
    pub fn check(&self) -> Result<(), String> {
        if self.cert_file.as_os_str().is_empty() != self.key_file.as_os_str().is_empty() {
            return Err("tls.cert_file and tls.key_file must be set together".into());
        }
        if self.handshake_timeout_s == 0 {
            return Err("tls.handshake_timeout_s must be at least 1".into());
        }
        Ok(())
    }
}

/// `[ingest]`: InfluxDB line protocol (`POST /write`, `POST /api/v2/write`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest body after gzip decompression; a larger one (a gzip bomb included) is
    /// refused with 413 once this many bytes have been inflated. The body as sent is
    /// bounded by `http.body_bytes_max`. With `http.writes_max` writes at once, inflated
    /// bodies hold at most `writes_max` × this (128 MiB by default). Default 4194304
    /// (4 MiB: 10,000 lines of 400 bytes).
    pub body_bytes_max: usize,
    /// Most lines in one body (comments and blank lines aside); more is refused with 413
    /// and nothing is stored. Telegraf sends 1000 by default. Default 10000.
    pub lines_max: usize,
    /// Mappings of measurements to meters and assets, tried in order before the defaults
    /// (`meter`, `asset`). See README "Feeding gridlog".
    pub mapping: Vec<crate::ingest::mapping::MappingConfig>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            body_bytes_max: 4 * 1024 * 1024,
            lines_max: 10_000,
            mapping: Vec::new(),
        }
    }
}

impl IngestConfig {
    /// Checks the section on its own.
    pub fn check(&self) -> Result<(), String> {
        let max = gridlog_firmware::engine::REQUEST_COMMANDS_MAX;
        if !(1..=max).contains(&self.lines_max) {
            return Err(format!(
                "ingest.lines_max must be in 1..={max}, not {}",
                self.lines_max
            ));
        }
        if self.body_bytes_max == 0 {
            return Err("ingest.body_bytes_max must be above 0".into());
        }
        crate::ingest::mapping::Mapper::new(&self.mapping)
            .map(|_| ())
            .map_err(|e| format!("ingest.mapping: {e}"))
    }
}

/// `[storage]`: snapshots and the local archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Snapshot after this many events. Default 1000000.
    pub snapshot_every_events: u64,
    /// Snapshot after this many bytes of log. Default 134217728 (128 MiB).
    pub snapshot_every_bytes: u64,
    /// Snapshots kept. Default 3.
    pub snapshots_keep: usize,
    /// Move sealed segments below the oldest kept snapshot into `archive/`. Default true.
    pub archive: bool,
    /// Most bytes the archive may hold; 0 = no budget. Default 0.
    pub archive_budget_bytes: u64,
    /// Let the budget evict segments central storage has not confirmed. Default false.
    pub archive_evict_unshipped: bool,
    /// Bytes of sealed rollup days queued in memory before they are written to
    /// `rollups/`. Default 4194304 (4 MiB).
    pub rollup_spill_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let d = gridlog_firmware::engine::StorageOptions::default();
        StorageConfig {
            snapshot_every_events: d.snapshot_every_events,
            snapshot_every_bytes: d.snapshot_every_bytes,
            snapshots_keep: d.snapshots_keep,
            archive: d.archive,
            archive_budget_bytes: d.archive_budget_bytes,
            archive_evict_unshipped: d.archive_evict_unshipped,
            rollup_spill_bytes: d.rollup_spill_bytes,
        }
    }
}

/// `[wal]`: the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// Segment file size in bytes. Default 67108864 (64 MiB).
    pub segment_bytes: u64,
    /// Wait this long to gather more writes into one sync (trades latency for flash wear).
    /// Default 0.
    pub commit_delay_ms: u64,
    /// `strict` (refuse to open on damage) or `quarantine-corrupt`. Default `strict`.
    pub recovery: gridlog_firmware::wal::RecoveryMode,
    /// How segment files get their size: `fallocate` (blocks reserved, nothing written: each
    /// byte of the log reaches the flash once) or `zero-fill` (zeros written first). Default
    /// `fallocate`; file systems without it fall back to zeros.
    pub preallocation: PreallocationConfig,
}

/// `wal.preallocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreallocationConfig {
    /// Reserve the blocks (`fallocate`).
    #[default]
    Fallocate,
    /// Write zeros.
    ZeroFill,
}

impl From<PreallocationConfig> for gridlog_firmware::wal::Preallocation {
    fn from(value: PreallocationConfig) -> Self {
        match value {
            PreallocationConfig::Fallocate => gridlog_firmware::wal::Preallocation::Fallocate,
            PreallocationConfig::ZeroFill => gridlog_firmware::wal::Preallocation::ZeroFill,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: gridlog_firmware::wal::SEGMENT_BYTES_DEFAULT,
            commit_delay_ms: 0,
            recovery: gridlog_firmware::wal::RecoveryMode::Strict,
            preallocation: PreallocationConfig::default(),
        }
    }
}

/// `[engine]`: validation and read models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Requests that may wait for the processor. Default 1024.
    pub queue_depth: usize,
    /// Register unknown meters on their first reading with this kind (`grid`, `pv`, `load`,
    /// `ev`, `battery`, `submeter`); empty = reject them. Default empty.
    pub auto_register: String,
    /// How far a measurement time may be ahead of the gateway clock. Default 300 s.
    pub future_skew_s: i64,
    /// Most entities (meters, assets, the gateway's own) the image holds; registering one
    /// more is rejected with `too_many_entities`. Default 20000.
    pub entities_max: usize,
    /// Readings whose values the gateway remembers (the newest, across meters) to answer a
    /// retried reading as `duplicate` wherever it lies in its meter's history; a retry of
    /// an older one is `conflicting_duplicate` (nothing is stored either way). 24 bytes each
    /// in a ring, twice, plus an index while retries are answered (see README). Default
    /// 65536.
    pub duplicate_recent_readings: usize,
    /// Days of 15-minute and hourly rollups per meter. Default 7.
    pub rollup_quarter_hour_days: u32,
    /// Days of daily rollups per meter. Default 400.
    pub rollup_day_days: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            queue_depth: gridlog_firmware::engine::QUEUE_DEPTH_DEFAULT,
            auto_register: String::new(),
            future_skew_s: gridlog_firmware::engine::FUTURE_SKEW_MS_DEFAULT / 1000,
            entities_max: gridlog_firmware::engine::ENTITIES_MAX_DEFAULT,
            duplicate_recent_readings: gridlog_firmware::engine::RECENT_READINGS_DEFAULT,
            rollup_quarter_hour_days: 7,
            rollup_day_days: 400,
        }
    }
}

/// `[http]`: limits of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body. Default 4194304 (4 MiB).
    pub body_bytes_max: usize,
    /// Most readings in one `POST /api/v1/readings`. Default 5000.
    pub readings_per_request_max: usize,
    /// A request (body included) must finish within this. Default 30 s.
    pub request_timeout_s: u64,
    /// Requests handled at once; more get 503. Default 512.
    pub concurrency_max: usize,
    /// Live streams (`/api/v1/stream`) at once; more get 503. Default 64.
    pub streams_max: usize,
    /// Writes (requests with a body) at once; more get 503. Bounds the memory of request
    /// bodies to `writes_max` × `body_bytes_max` (128 MiB by default) plus what they decode
    /// to, whatever `concurrency_max` allows. Default 32.
    pub writes_max: usize,
    /// Queries that scan the log (an entity's events, its state at a time, event pages) at
    /// once; more wait for a turn within `request_timeout_s`. A query keeps its turn until
    /// its scan ends, even past the timeout, so this bounds the CPU and memory they take.
    /// Default 4.
    pub log_queries_max: usize,
    /// Seconds between SSE heartbeats. Default 15.
    pub stream_heartbeat_s: u64,
    /// Connections open at once; beyond it the server stops accepting (new ones wait in
    /// the kernel's backlog). Lowered at start to the open-file limit less the descriptors
    /// kept for the log. Default 512.
    pub connections_max: usize,
    /// A request's head (request line and headers) must arrive within this. Default 10 s.
    pub header_read_timeout_s: u64,
    /// A connection whose client reads nothing of an answer for this long is closed,
    /// freeing the answer. Default 30 s.
    pub send_timeout_s: u64,
    /// Bytes that large answers (64 KiB and more, e.g. event pages) may hold at once while
    /// they are sent; one more that does not fit is dropped and answered 503 `overloaded`
    /// (retry). Bounds the memory non-reading clients can pin. Default 33554432 (32 MiB).
    pub answer_bytes_max: u64,
    /// At shutdown, connections still open this long after the listener closed (half-sent
    /// requests, non-reading clients) are dropped. Default 10 s.
    pub shutdown_timeout_s: u64,
    /// Host names (besides IP addresses and `localhost`) that requests may carry in `Host`:
    /// the names the gateway is reached by, e.g. `["gateway.site.example"]`. Any other name
    /// is refused (421), which stops DNS rebinding. Default empty.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_bytes_max: 4 * 1024 * 1024,
            readings_per_request_max: 5000,
            request_timeout_s: 30,
            concurrency_max: 512,
            streams_max: 64,
            writes_max: 32,
            log_queries_max: 4,
            stream_heartbeat_s: 15,
            connections_max: 512,
            header_read_timeout_s: 10,
            send_timeout_s: 30,
            answer_bytes_max: 32 * 1024 * 1024,
            shutdown_timeout_s: 10,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Most `http.concurrency_max`, `streams_max`, `writes_max` and `log_queries_max` accepted (far above what a gateway
/// serves; beyond it a semaphore of that size is no limit at all).
pub const HTTP_CONCURRENCY_LIMIT: usize = 65_536;

impl HttpConfig {
    /// Checks the section on its own: a zero would refuse every request or stream.
    pub fn check(&self) -> Result<(), String> {
        let max_readings = gridlog_firmware::engine::REQUEST_COMMANDS_MAX;
        if !(1..=max_readings).contains(&self.readings_per_request_max) {
            return Err(format!(
                "http.readings_per_request_max must be in 1..={max_readings}, not {}",
                self.readings_per_request_max
            ));
        }
        for (name, value) in [
            ("http.concurrency_max", self.concurrency_max),
            ("http.streams_max", self.streams_max),
            ("http.writes_max", self.writes_max),
            ("http.log_queries_max", self.log_queries_max),
            ("http.connections_max", self.connections_max),
        ] {
            if !(1..=HTTP_CONCURRENCY_LIMIT).contains(&value) {
                return Err(format!(
                    "{name} must be in 1..={HTTP_CONCURRENCY_LIMIT}, not {value}"
                ));
            }
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }) {
            return Err(format!(
                "http.allowed_hosts entries must be host names (letters, digits, - and .; no port), not {bad:?}"
            ));
        }
        for (name, value) in [
            ("http.header_read_timeout_s", self.header_read_timeout_s),
            ("http.send_timeout_s", self.send_timeout_s),
            ("http.answer_bytes_max", self.answer_bytes_max),
        ] {
            if value == 0 {
                return Err(format!("{name} must be above 0"));
            }
        }
        if self.request_timeout_s == 0 || self.body_bytes_max == 0 {
            return Err("http.request_timeout_s and http.body_bytes_max must be above 0".into());
        }
        Ok(())
    }
}

/// `[demo]`: the simulated site of `gridlog demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Simulated seconds per real second. Default 1.
    pub speed: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig { speed: 1.0 }
    }
}

/// `[ship]`: shipping archived segments and snapshots to central object storage
/// (`crate::ship`). Shipping is off while `store` is empty.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShipConfig {
    /// Where to ship: `s3://BUCKET/PREFIX` (S3 or an S3-compatible server) or
    /// `file:///PATH` (a local or mounted directory). Empty = shipping off. Default empty.
    pub store: String,
    /// S3 endpoint URL for S3-compatible servers (requests are path-style then); empty =
    /// AWS. Default empty.
    pub endpoint: String,
    /// S3 region. Default `us-east-1`.
    pub region: String,
    /// S3 access key id; empty = `AWS_ACCESS_KEY_ID` from the environment. Default empty.
    pub access_key_id: String,
    /// S3 secret access key; empty = `AWS_SECRET_ACCESS_KEY` from the environment. Never
    /// shown in status or logs. Default empty.
    pub secret_access_key: String,
    /// Allow a plain `http://` endpoint (a local test server). Default false.
    pub allow_http: bool,
    /// Seconds between looks for new archived segments and snapshots (the archive also
    /// wakes the shipper when it records one). Default 10.
    pub interval_s: u64,
    /// Uploads in flight at once. Default 2.
    pub concurrency: usize,
    /// Average upload bandwidth cap in bytes per second; 0 = none. Default 0.
    pub bandwidth_bytes_per_s: u64,
    /// One request (the whole body included) must finish within this. Default 300000
    /// (5 min: a 64 MiB segment compresses to a few MiB, which a slow cellular uplink moves
    /// in well under that).
    pub request_timeout_ms: u64,
    /// Connecting must finish within this. Default 10000.
    pub connect_timeout_ms: u64,
    /// First retry delay bound after a failed request; each further failure doubles the
    /// bound, and the delay is drawn uniformly below it (full jitter). Default 500.
    pub retry_min_ms: u64,
    /// Largest retry delay bound. Default 300000 (5 min).
    pub retry_max_ms: u64,
    /// Ship the newest snapshot at most once per this many seconds. Default 21600 (6 h).
    pub snapshot_interval_s: u64,
    /// The recovery-point bound: while the uplink is up, every acknowledged event is
    /// verified in the store within this many seconds (the log's durable tail goes up as
    /// chunk objects before its segment is sealed). Default 60.
    pub max_lag_s: u64,
    /// An object of this gateway's lineage that no manifest names (an upload a crash left
    /// before its manifest) is removed by the shipper once it is this old; it looks at start
    /// and then every `orphan_grace_s`. Default 86400 (a day: far longer than any upload or
    /// round).
    pub orphan_grace_s: u64,
    /// Write the fleet tables (Parquet, README "Fleet analytics") of every shipped segment
    /// under `PREFIX/tables/`. Default true (only while shipping is on).
    pub tables: bool,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            store: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            interval_s: 10,
            concurrency: 2,
            bandwidth_bytes_per_s: 0,
            request_timeout_ms: 300_000,
            connect_timeout_ms: 10_000,
            retry_min_ms: 500,
            retry_max_ms: 300_000,
            snapshot_interval_s: 6 * 3600,
            max_lag_s: 60,
            orphan_grace_s: 86_400,
            tables: true,
        }
    }
}

impl std::fmt::Debug for ShipConfig {
    // By hand, so the secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShipConfig")
            .field("store", &self.store)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .field("interval_s", &self.interval_s)
            .field("concurrency", &self.concurrency)
            .field("bandwidth_bytes_per_s", &self.bandwidth_bytes_per_s)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("retry_min_ms", &self.retry_min_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("snapshot_interval_s", &self.snapshot_interval_s)
            .field("max_lag_s", &self.max_lag_s)
            .field("orphan_grace_s", &self.orphan_grace_s)
            .field("tables", &self.tables)
            .finish()
    }
}

impl ShipConfig {
    /// Checks the section on its own.
    pub fn check(&self) -> Result<(), String> {
        if !self.store.is_empty() {
            crate::ship::StoreUrl::parse(&self.store).map_err(|e| format!("ship.store: {e}"))?;
        }
        if !(1..=crate::ship::CONCURRENCY_MAX).contains(&self.concurrency) {
            return Err(format!(
                "ship.concurrency must be in 1..={}, not {}",
                crate::ship::CONCURRENCY_MAX,
                self.concurrency
            ));
        }
        if self.retry_min_ms == 0 || self.retry_min_ms > self.retry_max_ms {
            return Err(format!(
                "ship.retry_min_ms must be in 1..=retry_max_ms ({}), not {}",
                self.retry_max_ms, self.retry_min_ms
            ));
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 || self.interval_s == 0 {
            return Err(
                "ship.request_timeout_ms, ship.connect_timeout_ms and ship.interval_s must be above 0"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Why the configuration is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// Which file or variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A non-loopback listen address without a write token, and not `insecure`.
    #[error(
        "refusing to listen on {listen} without a write token: anyone on the network could write. Set write_token (--write-token-file, GRIDLOG_WRITE_TOKEN_FILE or GRIDLOG_WRITE_TOKEN), or pass --insecure if the network is trusted"
    )]
    Exposed {
        /// The address.
        listen: std::net::SocketAddr,
    },
}

impl Config {
    /// Checks relations the types cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                origin: "configuration".into(),
                message,
            })
        };
        if !self.engine.auto_register.is_empty()
            && gridlog_common::domain::MeterKind::from_name(&self.engine.auto_register).is_none()
        {
            return bad(format!(
                "engine.auto_register {:?} is not a meter kind",
                self.engine.auto_register
            ));
        }
        if self.engine.entities_max == 0 {
            return bad("engine.entities_max must be at least 1".into());
        }
        let days_max = gridlog_firmware::engine::rollup::ROLLUP_DAYS_MAX;
        for (name, days) in [
            (
                "engine.rollup_quarter_hour_days",
                self.engine.rollup_quarter_hour_days,
            ),
            ("engine.rollup_day_days", self.engine.rollup_day_days),
        ] {
            if !(1..=days_max).contains(&days) {
                return bad(format!("{name} must be in 1..={days_max}, not {days}"));
            }
        }
        let (min, max) = (
            gridlog_firmware::wal::SEGMENT_BYTES_MIN,
            gridlog_firmware::wal::SEGMENT_BYTES_MAX,
        );
        if !(min..=max).contains(&self.wal.segment_bytes) {
            return bad(format!(
                "wal.segment_bytes must be in {min}..={max} on this target, not {}",
                self.wal.segment_bytes
            ));
        }
        if !(self.demo.speed > 0.0 && self.demo.speed <= 10_000.0) {
            return bad(format!(
                "demo.speed must be in (0, 10000], not {}",
                self.demo.speed
            ));
        }
        if let Err(message) = self.ship.check() {
            return bad(message);
        }
        if let Err(message) = self.http.check() {
            return bad(message);
        }
        if let Err(message) = self.ingest.check() {
            return bad(message);
        }
        if let Err(e) = crate::ingest::mqtt::check(&self.mqtt) {
            return bad(e.to_string());
        }
        if let Err(message) = self.modbus.check() {
            return bad(message);
        }
        if let Err(message) = self.tls.check() {
            return bad(message);
        }
        if let Err(message) = check_token(&self.write_token) {
            return bad(format!("write_token {message}"));
        }
        if let Err(message) = check_token(&self.read_token) {
            return bad(format!("read_token {message}"));
        }
        if gridlog_common::id::EntityId::new(&self.site_id).is_err() {
            return bad(format!(
                "site_id {:?} must be 1-64 characters of A-Z a-z 0-9 - _ . :",
                self.site_id
            ));
        }
        if !self.ship.store.is_empty() && self.site_id == crate::tables::TABLES_DIR {
            return bad(format!(
                "site_id {:?} is the fleet tables' folder in the store; choose another",
                self.site_id
            ));
        }
        Ok(())
    }

    /// Refuses a non-loopback listen address without a write token unless `insecure`.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.write_token.is_empty() && !self.insecure {
            return Err(ConfigError::Exposed {
                listen: self.listen,
            });
        }
        Ok(())
    }
}

/// A token (write or read) must be visible ASCII (`!`..=`~`): a client's `Authorization` header is
/// trimmed by HTTP and holds only visible ASCII in practice, so any other byte — a space at
/// either end, a newline from a file, a non-ASCII letter — makes a token that can never match
/// and every write 403. Empty means no token.
fn check_token(token: &str) -> Result<(), String> {
    match token.bytes().position(|b| !b.is_ascii_graphic()) {
        None => Ok(()),
        Some(at) => Err(format!(
            "must be visible ASCII without spaces (! to ~), but byte {at} is {:?}",
            token[at..].chars().next().unwrap_or(' ')
        )),
    }
}

mod load;
#[cfg(test)]
mod tests;
