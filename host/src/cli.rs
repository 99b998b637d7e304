//! The command line: every subcommand, its arguments and the help that teaches them.
//!
//! Only parsing lives here; each command's work is in [`crate::commands`].

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use gridlog_common::{Offset, FIRST_OFFSET};

/// The environment variable every subcommand reads the data directory from when
/// `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "GRIDLOG_DATA_DIR";

const ABOUT: &str = "gridlog: the event store of an energy site gateway";

const LONG_ABOUT: &str = "\
gridlog keeps every change reported by the meters and energy assets of a site (PV inverters,
batteries, EV chargers, loads) as an immutable event in a local write-ahead log, and ships
sealed log segments to central storage.

`gridlog demo` runs the appliance with a simulated site (PV, battery, EV chargers, 20
sub-meters) and its dashboard on http://127.0.0.1:8080/; `gridlog serve` runs it for real
devices. `verify` and `dump` inspect a data directory's log: they only read, take no lock
and repair nothing, so they are safe beside a running gateway (whose newest bytes may then
show as a torn tail).";

const AFTER_HELP: &str = "\
Examples:
  gridlog demo                                 the demo site on ./gridlog-data, http://127.0.0.1:8080/
  gridlog demo --speed 60                      the same, one simulated minute per second
  gridlog serve --config /etc/gridlog.toml     the gateway, configured by a file
  gridlog verify --data-dir /var/lib/gridlog   check every frame; exit 1 if damaged
  gridlog verify --json --data-dir /var/lib/gridlog   the same report as JSON, for monitoring
  gridlog dump --data-dir /var/lib/gridlog --from 1000   records from offset 1000, one JSON line each
  gridlog ship --once                          ship pending segments to ship.store and exit
  gridlog restore --from s3://b/p --site s --data-dir DIR   rebuild a data directory from storage

Every subcommand takes the data directory as --data-dir DIR or GRIDLOG_DATA_DIR (default
./gridlog-data where the configuration does not say otherwise).
Logs go to stderr; set their level with --log or GRIDLOG_LOG (e.g. `info`, `gridlog=debug`).";

/// `gridlog`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "gridlog",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Which log lines to print on stderr, as a tracing filter (`warn`, `info`,
    /// `gridlog_firmware=debug`, ...).
    #[arg(
        long,
        global = true,
        env = "GRIDLOG_LOG",
        default_value = "warn",
        value_name = "FILTER",
        value_parser = parse_log_filter
    )]
    pub log: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: HTTP API, live stream, metrics and dashboard over the data directory.
    #[command(
        long_about = "\
Run the gateway: recover the log, then serve the HTTP API, the live event stream
(/api/v1/stream), Prometheus metrics (/metrics) and the dashboard (/).

Configuration comes from defaults, then the --config file (TOML), then GRIDLOG_*
environment variables (GRIDLOG_LISTEN, GRIDLOG_WAL__SEGMENT_BYTES, ...), then these flags.
Every key and its default is listed in the README. Unknown keys are an error.

Writes need `Authorization: Bearer <token>` when a write token is set, reads when a read
token is set (the write token reads too). Listening on an address other than loopback
without a write token is refused unless --insecure is given. With --tls-cert/--tls-key the
listener speaks only HTTPS; SIGHUP re-reads the pair (a bad new pair keeps the old one).

SIGINT or SIGTERM stops it cleanly: no new requests, in-flight writes finish and are
acknowledged, connections still open after http.shutdown_timeout_s (10 s) are closed, the
log is closed. A second signal stops at once (exit status 130). Exit status: 0 stopped cleanly, 1 the data directory
could not be opened (damage: see `gridlog verify`), 2 configuration or address error.",
        after_help = "\
Examples:
  gridlog serve
  gridlog serve --data-dir /var/lib/gridlog --listen 0.0.0.0:8080 --write-token-file /etc/gridlog/token
  gridlog serve --listen 0.0.0.0:8443 --tls-cert /etc/gridlog/cert.pem --tls-key /etc/gridlog/key.pem \\
      --write-token-file /etc/gridlog/token --read-token-file /etc/gridlog/read-token
  GRIDLOG_WAL__COMMIT_DELAY_MS=5 gridlog serve --config /etc/gridlog.toml"
    )]
    Serve(ServeArgs),

    /// Run the gateway with a simulated demo site driven by real PV and load profiles.
    #[command(
        long_about = "\
Run the gateway exactly as `serve` does, plus a simulated site feeding it through the same
engine API as real devices: a grid meter, a 30 kW PV inverter and meter, a 20 kW / 50 kWh
battery with a self-consumption controller issuing setpoints, two EV chargers with charging
sessions, and 20 sub-meters with commercial and household load shapes — 1-second readings
built from real measured PV power (NREL) and BDEW standard load profiles.

Restarting the demo continues its history from the data directory. To start fresh, stop it
and delete the data directory (default ./gridlog-data).",
        after_help = "\
Examples:
  gridlog demo                      open http://127.0.0.1:8080/
  gridlog demo --speed 60           one simulated minute per real second
  rm -rf ./gridlog-data && gridlog demo   start a new history"
    )]
    Demo(DemoArgs),

    /// Write a self-signed certificate and key for `serve --tls-cert/--tls-key`.
    #[command(
        long_about = "\
Write a self-signed certificate and its private key (PEM) for the gateway's HTTPS listener
(`tls.cert_file`, `tls.key_file`). Clients must be told to trust this certificate (curl
--cacert FILE, or the browser's exception); for a site with its own CA, install a pair it
signed instead.

The key file is created with mode 0600. Existing files are not replaced unless --force.
Exit status: 0 written, 2 a file exists or cannot be written.",
        after_help = "\
Examples:
  gridlog tls-selfsigned --cert /etc/gridlog/cert.pem --key /etc/gridlog/key.pem
  gridlog tls-selfsigned --cert c.pem --key k.pem --name gateway.site.example --name 192.0.2.10 --days 825"
    )]
    #[command(name = "tls-selfsigned")]
    TlsSelfSigned(TlsSelfSignedArgs),

    /// Load meter readings from a CSV file into the data directory (gateway stopped).
    #[command(
        long_about = "\
Load meter readings from a CSV file, offline (the gateway must not be running on the same
data directory: the lock refuses a second writer).

The file starts with the header `meter,time,import_wh,export_wh,power_w`; times are RFC 3339.
Rows go through the same validation as HTTP ingestion, in durable batches. A malformed row
stops the import and is reported with its line number: everything before it is durable,
nothing after it is stored. Rows the engine rejects (unknown meter, a register going down,
a time in the future …) are reported with their line numbers and skipped. Unknown meters
are registered only if `engine.auto_register` is configured.

Exit status: 0 done, 1 stopped at a malformed row, 2 configuration or I/O error.",
        after_help = "\
Example:
  gridlog import --csv readings.csv --data-dir /var/lib/gridlog"
    )]
    Import(ImportArgs),

    /// Take a snapshot of a stopped gateway's data directory now.
    #[command(
        long_about = "\
Take a snapshot of the image now, then keep the newest snapshots and move sealed segments
below the oldest kept one into the archive, as the gateway does by itself every
storage.snapshot_every_events events. For a stopped gateway (it takes the data directory's
lock); a running one takes a snapshot on `POST /api/v1/snapshot`.",
        after_help = "\
Examples:
  gridlog snapshot --data-dir /var/lib/gridlog
  curl -X POST http://127.0.0.1:8080/api/v1/snapshot     (a running gateway)"
    )]
    Snapshot(StoreArgs),

    /// Check every frame of every log segment and report damage with file and byte position.
    #[command(
        long_about = "\
Check every frame of every log segment, read-only, and report what is wrong with file and
byte position.

verify reads each segment under the data directory's wal/ and checks its header, the CRC and body of every
frame, that offsets run on without a gap from frame to frame and segment to segment, that
every sealed segment's footer agrees with its frames, and that all segments belong to one
log. It changes nothing and takes no lock.

A torn tail of the last segment (a write that was in flight when the power went, never
acknowledged to anyone) is not damage: it is shown as a note, and the next open zeroes it.
Anything else is damage a crash cannot explain; the log then refuses to open until an
operator decides (the gateway's quarantine-corrupt recovery mode cuts the log at the first
damage and moves the damaged files to wal/quarantine/, never deleting them).

Exit status: 0 clean (a torn tail included), 1 damaged, 2 usage or I/O error.",
        after_help = "\
Examples:
  gridlog verify --data-dir /var/lib/gridlog
  GRIDLOG_DATA_DIR=/var/lib/gridlog gridlog verify --json | jq '.damage[]'"
    )]
    Verify(VerifyArgs),

    /// Print the log's records from an offset, one JSON line each.
    #[command(
        long_about = "\
Print the log's records from an offset, one JSON line each:

  {\"offset\":42,\"len\":3,\"hex\":\"616263\"}

Records are opaque bytes at this layer, so they are printed as hex. dump reads the segment
files directly: it takes no lock and repairs nothing, so it works on a stopped gateway's
directory, on a copy, and beside a running gateway. It checks every frame it reads as
verify does. It stops cleanly at the end of the log or at a torn tail of the last segment
(noted on stderr); at damage it prints what is wrong, with file and byte position, on
stderr after every record before it.

With --rounds, the end of every write round of the hot log (what one fdatasync made durable,
closed by a commit) follows its records as a line of its own:

  {\"round\":{\"segment\":\"00000000000000000001.seg\",\"start\":64,\"end\":512,\"next_offset\":4}}

Exit status: 0 read to the end (a torn tail included), 1 damaged, 2 usage or I/O error.",
        after_help = "\
Examples:
  gridlog dump --data-dir /var/lib/gridlog
  gridlog dump --data-dir /var/lib/gridlog --from 1000 | head -n 5
  gridlog dump --data-dir /var/lib/gridlog | jq -r .hex | xxd -r -p   # raw record bytes
  gridlog dump --data-dir /var/lib/gridlog --rounds | jq -c 'select(.round)'   # write rounds"
    )]
    Dump(DumpArgs),

    /// Ship archived segments and snapshots to central storage, then exit.
    #[command(
        long_about = "\
Ship what is pending to central storage and exit: every archived segment not yet confirmed,
the newest snapshot when it is due, and the rest of the log (its durable tail) as chunk
objects. For installs that ship from cron or a timer rather
than from inside `gridlog serve` (which ships continuously when ship.store is set).

The store comes from the configuration: ship.store (GRIDLOG_SHIP__STORE) is
s3://BUCKET/PREFIX (with ship.endpoint for S3-compatible servers, credentials from
ship.access_key_id / ship.secret_access_key or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or
file:///PATH. Objects go to PREFIX/SITE_ID/LINEAGE/segments/FIRST-LAST.seg.zst, a manifest per
round to .../manifests/. Uploads are create-only and read back; an object that exists with
other content is an alarm and the local copy is kept. Failed requests are retried with
backoff until they succeed or the command is stopped (SIGINT/SIGTERM).

The gateway must not be running on the same data directory (the lock refuses).
Exit status: 0 nothing left to ship, 1 objects left (alarms), 2 configuration, store or I/O
error.

--check audits the site's history in the store instead, read-only (it may run beside a
running gateway): it walks the manifest chain and lists every object that is missing, extra
(an upload no manifest names, such as one a crash left) or tampered (its bytes do not hash to
what its manifest says). Chunks a shipped segment supersedes may be gone by design. Exit
status: 0 clean, 1 findings, 2 configuration or store error.",
        after_help = "\
Examples:
  GRIDLOG_SHIP__STORE=s3://fleet/eu gridlog ship --once --data-dir /var/lib/gridlog
  gridlog ship --check --config /etc/gridlog.toml
  gridlog ship --once --config /etc/gridlog.toml"
    )]
    Ship(ShipArgs),

    /// Rebuild a data directory from central storage.
    #[command(
        long_about = "\
Rebuild a working data directory from central storage: the site's newest lineage, its
manifest chain verified back to the first manifest, the newest shipped snapshot that the
shipped segments continue, every segment after it and every chunk of the log's tail after
those (or, with --full, every segment from offset 1, then the chunks). Every object's SHA-256 is
checked against its manifest and every segment's checksums after decompression; a missing or
tampered object is an error naming its key, and nothing is written under the data directory
then.

The data directory (--data-dir) must be empty or absent. The rebuilt directory gets a new
lineage, so the restored gateway ships under a new prefix and never overwrites the history
it came from; its first manifest names the last one restored, so the chain runs on.

Store settings other than the URL (endpoint, region, credentials, allow_http, timeouts) come
from the configuration as for `serve` (GRIDLOG_SHIP__ENDPOINT, ...).
Exit status: 0 rebuilt, 1 history missing, tampered or inconsistent, 2 usage, store or I/O
error.",
        after_help = "\
Examples:
  gridlog restore --from s3://fleet/eu --site plant-7 --data-dir /var/lib/gridlog
  gridlog restore --from file:///mnt/backup --site plant-7 --data-dir ./restored --full"
    )]
    Restore(RestoreArgs),

    /// Write the fleet tables (Parquet) from shipped history.
    #[command(
        long_about = "\
Write the fleet tables (Parquet: readings, asset_telemetry, events, intervals; README \"Fleet
analytics\") from the history gateways shipped, for one or more sites: the newest lineage's
manifest chain verified back to the first manifest, every segment it lists downloaded and
checked, and one file per segment, table and UTC day written create-only to
TO/tables/<table>/site=<SITE>/date=<YYYY-MM-DD>/<FIRST>-<LAST>-<LINEAGE>.parquet, the same
bytes a gateway with ship.tables writes. A file already there with the same bytes is kept (a
second run resumes); different bytes are an error.

Store settings other than the URLs (endpoint, region, credentials, allow_http) come from the
configuration as for `serve`. Exit status: 0 every site exported, 1 a site's history is
missing, tampered or inconsistent, 2 usage, store or I/O error.",
        after_help = "\
Examples:
  gridlog export --from s3://fleet/eu --site plant-7 --to s3://fleet-tables/eu
  gridlog export --from file:///mnt/backup --site plant-7 --site plant-8 --to ./tables --jobs 4"
    )]
    Export(ExportArgs),
}

/// Arguments of `gridlog export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The store the gateways shipped to: s3://BUCKET/PREFIX or file:///PATH.
    #[arg(long, value_name = "URL")]
    pub from: String,

    /// A site's id, as its gateway shipped it (repeat for several sites).
    #[arg(long, value_name = "SITE", required = true)]
    pub site: Vec<String>,

    /// Write files only for segments ending at or after this offset (earlier segments are
    /// still read, for the meters' energy baselines).
    #[arg(long, value_name = "OFFSET", default_value_t = 1)]
    pub from_offset: u64,

    /// Where the tables go: s3://BUCKET/PREFIX, file:///PATH or a directory.
    #[arg(long, value_name = "URL|DIR")]
    pub to: String,

    /// Sites exported at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,

    /// A TOML configuration file (store endpoint and credentials).
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `gridlog ship`.
#[derive(Debug, Clone, Args)]
pub struct ShipArgs {
    /// Ship what is pending, then exit (`serve` ships continuously).
    #[arg(long, required_unless_present = "check", conflicts_with = "check")]
    pub once: bool,

    /// Audit central storage against the manifests, read-only: objects missing, extra
    /// (named by no manifest) or tampered. Does not open the data directory.
    #[arg(long)]
    pub check: bool,

    /// A TOML configuration file.
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data directory (default ./gridlog-data, or `data_dir` in the configuration).
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of `gridlog restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The store: s3://BUCKET/PREFIX or file:///PATH.
    #[arg(long, value_name = "URL")]
    pub from: String,

    /// The site's id, as its gateway shipped it.
    #[arg(long, value_name = "SITE")]
    pub site: String,

    /// The data directory to create (empty or absent). `--data` is the old spelling.
    #[arg(long, alias = "data", env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Restore every segment from offset 1 instead of the newest snapshot and what follows.
    #[arg(long)]
    pub full: bool,

    /// Restore this lineage instead of the newest.
    #[arg(long, value_name = "ID")]
    pub lineage: Option<String>,

    /// A TOML configuration file (store endpoint and credentials).
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `gridlog serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see README "Configuration").
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data directory (default ./gridlog-data, or `data_dir` in the configuration).
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to serve HTTP on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    /// Require `Authorization: Bearer TOKEN` on writes. Visible in the process list:
    /// prefer --write-token-file or GRIDLOG_WRITE_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub write_token: Option<String>,

    /// Read the write token from FILE (one trailing newline removed).
    #[arg(long, value_name = "FILE", conflicts_with = "write_token")]
    pub write_token_file: Option<PathBuf>,

    /// Require `Authorization: Bearer TOKEN` (or the write token) on every read. Visible in
    /// the process list: prefer --read-token-file or GRIDLOG_READ_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub read_token: Option<String>,

    /// Read the read token from FILE (one trailing newline removed).
    #[arg(long, value_name = "FILE", conflicts_with = "read_token")]
    pub read_token_file: Option<PathBuf>,

    /// Serve HTTPS with the certificate (and chain) in this PEM file (`tls.cert_file`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, a PEM file (`tls.key_file`).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Allow a non-loopback address without a write token (trusted networks only).
    #[arg(long)]
    pub insecure: bool,
}

/// Arguments of `gridlog tls-selfsigned`.
#[derive(Debug, Clone, Args)]
pub struct TlsSelfSignedArgs {
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,

    /// Where to write the private key (PEM, PKCS#8; created with mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,

    /// A DNS name or IP address the certificate is for; repeat for more (default:
    /// localhost, 127.0.0.1, ::1 and this host's name).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,

    /// Days the certificate is valid from now.
    #[arg(long, value_name = "N", default_value_t = crate::commands::tls_selfsigned::DAYS_DEFAULT,
        value_parser = clap::value_parser!(u32).range(1..=crate::commands::tls_selfsigned::DAYS_MAX as i64))]
    pub days: u32,

    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `gridlog demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Everything `serve` takes.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Simulated seconds per real second (default 1).
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,
}

/// Arguments of `gridlog import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,

    /// A TOML configuration file.
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data directory (default ./gridlog-data, or `data_dir` in the configuration).
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of commands that open a stopped gateway's data directory.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// A TOML configuration file.
    #[arg(long, short = 'c', env = "GRIDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data directory (default ./gridlog-data, or `data_dir` in the configuration).
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The data directory of `verify` and `dump`, which read it without a configuration.
#[derive(Debug, Clone, Args)]
pub struct LogDirArgs {
    /// The data directory: the one that holds `wal/` and `LOCK`.
    #[arg(
        long = "data-dir",
        env = DATA_DIR_ENV,
        value_name = "DIR",
        required_unless_present = "data_dir_positional"
    )]
    data_dir: Option<PathBuf>,

    /// The old spelling, a positional DIR, kept so scripts keep working.
    #[arg(value_name = "DIR", hide = true)]
    data_dir_positional: Option<PathBuf>,
}

impl LogDirArgs {
    /// The data directory: the positional DIR if given, else `--data-dir` or its variable.
    pub fn path(&self) -> &Path {
        self.data_dir_positional
            .as_deref()
            .or(self.data_dir.as_deref())
            .expect("clap requires one of the two")
    }
}

/// Arguments of `gridlog verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[command(flatten)]
    pub dir: LogDirArgs,

    /// Print the report as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gridlog dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The data directory.
    #[command(flatten)]
    pub dir: LogDirArgs,

    /// The first offset to print (inclusive). Offsets start at 1 and have no gaps.
    #[arg(long, value_name = "OFFSET", default_value_t = FIRST_OFFSET)]
    pub from: Offset,

    /// Also print a line for the end of every write round of the hot log, after its records:
    /// {"round":{"segment":…,"start":BYTE,"end":BYTE,"next_offset":N}}.
    #[arg(long)]
    pub rounds: bool,
}

fn parse_log_filter(filter: &str) -> Result<String, String> {
    filter
        .parse::<tracing_subscriber::filter::Targets>()
        .map(|_| filter.to_string())
        .map_err(|e| format!("not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dump_starts_at_the_first_offset_by_default() {
        let cli = Cli::try_parse_from(["gridlog", "dump", "/data"]).unwrap();
        match cli.command {
            Command::Dump(args) => assert_eq!(args.from, FIRST_OFFSET),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// The data directory a parsed subcommand names.
    fn data_dir_of(command: &Command) -> Option<PathBuf> {
        match command {
            Command::Serve(a) => a.data_dir.clone(),
            Command::Demo(a) => a.serve.data_dir.clone(),
            Command::Import(a) => a.data_dir.clone(),
            Command::Snapshot(a) => a.data_dir.clone(),
            Command::Ship(a) => a.data_dir.clone(),
            Command::Verify(a) => Some(a.dir.path().to_path_buf()),
            Command::Dump(a) => Some(a.dir.path().to_path_buf()),
            Command::Restore(a) => Some(a.data_dir.clone()),
            Command::TlsSelfSigned(_) | Command::Export(_) => None,
        }
    }

    /// Each subcommand with the arguments it needs besides the data directory.
    const SUBCOMMANDS: &[&[&str]] = &[
        &["serve"],
        &["demo"],
        &["import", "--csv", "r.csv"],
        &["snapshot"],
        &["ship", "--once"],
        &["verify"],
        &["dump"],
        &["restore", "--from", "file:///b", "--site", "s"],
    ];

    #[test]
    fn every_subcommand_takes_data_dir() {
        for sub in SUBCOMMANDS {
            let args = [&["gridlog"][..], sub, &["--data-dir", "/d"]].concat();
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(data_dir_of(&cli.command), Some("/d".into()), "{args:?}");
        }
    }

    #[test]
    fn every_subcommand_reads_the_data_dir_variable() {
        let command = Cli::command();
        for sub in SUBCOMMANDS {
            let sub = command.find_subcommand(sub[0]).expect(sub[0]);
            let arg = sub
                .get_arguments()
                .find(|a| a.get_long() == Some("data-dir"))
                .unwrap_or_else(|| panic!("{} has no --data-dir", sub.get_name()));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(DATA_DIR_ENV),
                "{}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn the_old_spellings_still_parse() {
        for args in [
            &["gridlog", "verify", "/d"][..],
            &["gridlog", "verify", "--json", "/d"][..],
            &["gridlog", "dump", "/d", "--from", "3"][..],
            &[
                "gridlog",
                "restore",
                "--from",
                "file:///b",
                "--site",
                "s",
                "--data",
                "/d",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(data_dir_of(&cli.command), Some("/d".into()), "{args:?}");
        }
    }

    #[test]
    fn the_old_spellings_are_hidden_from_help() {
        let mut command = Cli::command();
        for sub in ["verify", "dump", "restore"] {
            let help = command
                .find_subcommand_mut(sub)
                .expect(sub)
                .render_long_help()
                .to_string();
            assert!(help.contains("--data-dir"), "{sub}: {help}");
            assert!(!help.contains("--data "), "{sub}: {help}");
            assert!(!help.contains("[DIR]"), "{sub}: {help}");
        }
    }

    #[test]
    fn a_bad_log_filter_is_a_usage_error() {
        let err = Cli::try_parse_from(["gridlog", "--log", "=[", "verify", "/d"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
