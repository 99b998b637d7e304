#!/usr/bin/env bash
# gridlog's whole check, the same on a laptop and in CI (.ci/run calls exactly this):
#
#   ./scripts/test.sh
#
# 1. installs what is missing, idempotently and quietly (Rust targets and components, the
#    ARM cross compilers and qemu-user, cargo-deb, then the system dependencies of later
#    test suites);
# 2. formatting, clippy with warnings as errors, the no_std build of `common` for a
#    microcontroller;
# 3. the gateway builds (profile `gateway`) for x86-64, aarch64 and armv7, each packaged as a
#    .deb (scripts/package.sh), and the tests of `common` and `firmware` (the log's crash and
#    power-loss tests, the engine's) on aarch64 and armv7 under qemu-user;
# 4. every test of the workspace (nextest if installed), the ARM binaries' smoke test and the
#    package's tests among them.
#
# The fuzz crate (fuzz/) is not built here: it needs a nightly toolchain. The proptests in
# common/src/*.rs cover the same decoders.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A whole check is one pass, not an edit loop: incremental compilation only adds its cache
# (gigabytes across the test binaries) to the target dir.
export CARGO_INCREMENTAL=0

MCU_TARGET=thumbv7em-none-eabihf
# The gateways' targets besides this machine's (see README, "Supported targets").
ARM_TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
# The version of cargo-deb the packages are built with.
CARGO_DEB_VERSION=3.8.0

# Each step says how far into the run it starts (minutes:seconds), so a CI log shows where
# the time goes.
STARTED_S=$(date +%s)
step() {
    local elapsed=$(($(date +%s) - STARTED_S))
    printf '\n==> [%d:%02d] %s\n' $((elapsed / 60)) $((elapsed % 60)) "$*" >&2
}

# ---------------------------------------------------------------------------------------
# Rust toolchain pieces
# ---------------------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    installed_targets=$(rustup target list --installed)
    for target in "$MCU_TARGET" "${ARM_TARGETS[@]}"; do
        if ! grep -qx "$target" <<<"$installed_targets"; then
            step "installing Rust target $target"
            rustup target add "$target" >/dev/null
        fi
    done
    installed_components=$(rustup component list --installed)
    for component in rustfmt clippy; do
        if ! grep -q "^${component}" <<<"$installed_components"; then
            step "installing Rust component $component"
            rustup component add "$component" >/dev/null
        fi
    done
else
    step "rustup not found: assuming the toolchain has $MCU_TARGET, rustfmt and clippy"
fi

# ---------------------------------------------------------------------------------------
# System dependencies
#
# Each is installed only when missing (`command -v` or an import check first), so a
# machine that has them pays nothing. Later issues add theirs here, for example:
#   have chromium || have chromium-browser || apt_install chromium
#   python3 -c 'import moto' 2>/dev/null || pip_install 'moto[server]'
# ---------------------------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif have sudo; then sudo "$@"; else
        echo "need root to run: $*" >&2
        return 1
    fi
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    step "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pip_install() {
    step "pip install $*"
    python3 -m pip install --quiet "$@" 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages "$@"
}

# The ARM gateways: Debian's cross compilers link the binaries (and build the C code of ring
# and zstd), qemu-user runs them and their tests (.cargo/config.toml names both per target).
have aarch64-linux-gnu-gcc || apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
have arm-linux-gnueabihf-gcc || apt_install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
{ have qemu-aarch64-static && have qemu-arm-static; } || apt_install qemu-user-static
# The .deb: cargo-deb packs it, dpkg installs it into a scratch root, systemd-analyze checks
# the unit, systemd-sysusers makes the user (tests/tests/package_deb.rs).
cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION" ||
    { step "cargo install cargo-deb $CARGO_DEB_VERSION"; cargo install --quiet --locked --no-default-features "cargo-deb@$CARGO_DEB_VERSION"; }
{ have systemd-analyze && have systemd-sysusers; } || apt_install systemd

# A real S3-compatible server for the shipping tests (tests/tests/ship_*.rs start and stop it).
have moto_server || pip_install 'moto[server]'
# DuckDB reads the fleet tables from that server over S3 (tests/tests/tables_duckdb.rs): the
# httpfs extension comes from a wheel pinned to the same version, so nothing is downloaded
# at run time (the two pins move together).
python3 -c 'import duckdb, duckdb_extension_httpfs; assert duckdb.__version__ == "1.5.5"' 2>/dev/null ||
    pip_install --only-binary=:all: 'duckdb==1.5.5' 'duckdb-extension-httpfs==1.5.5'

# Debian's headless Chromium and its WebDriver for the dashboard's browser test
# (tests/tests/dashboard_browser.rs starts chromedriver itself on a loopback port).
if ! have chromium || ! have chromedriver; then apt_install chromium chromium-driver; fi

# Debian's InfluxDB 1.6 for the line protocol tests (tests/tests/ingest_*.rs start `influxd`
# themselves with their own config on loopback ports; the packaged service is not used).
have influxd || apt_install influxdb
# Debian's mosquitto for the MQTT tests (tests/tests/mqtt_*.rs start their own broker on a
# free loopback port with their own config; the packaged service is not used).
[ -x /usr/sbin/mosquitto ] || have mosquitto || apt_install mosquitto
# openssl makes the CA and certificate of the mqtts:// test (tests/tests/mqtt_tls.rs).
have openssl || apt_install openssl
# HTTPS tests (http_tls.rs) talk to the gateway with a real TLS client.
have curl || apt_install curl

# The Modbus tests (tests/tests/modbus_*.rs): a SunSpec device served by pymodbus from a
# register image pysunspec2 encodes, socat for the RTU test's pty pair, and mbpoll to read a
# device the way an installer would, side by side with gridlog.
have socat || apt_install socat
have mbpoll || apt_install mbpoll
python3 -c 'import pymodbus, serial, sunspec2; assert pymodbus.__version__ == "3.6.9"' 2>/dev/null ||
    pip_install 'pymodbus==3.6.9' 'pyserial==3.5' 'pysunspec2==1.1.5'

# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------
step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "gridlog-common builds for $MCU_TARGET (no_std, no alloc)"
cargo build -p gridlog-common --target "$MCU_TARGET" --no-default-features

step "gateway builds and packages (amd64 arm64 armhf)"
./scripts/package.sh amd64 arm64 armhf

# The integration tests that drive the log and the engine in-process (crash at every I/O
# call, torn writes, bit flips, full disks, round damage, recovery, validation): the same
# code on the gateways' CPUs, 32-bit armv7 included. (The rest start servers or the native
# binary; the ARM binaries have their own smoke test, tests/tests/gateway_targets.rs.)
LOG_AND_ENGINE_TESTS=(wal_corruption wal_crash_prefix wal_round_damage wal_upgrade_format_1
    wal_disk_full storage_recovery engine_validation engine_duplicates_history engine_upcast
    archive_readers archive_allocation_bound engine_rollup_store engine_snapshot_v4)
for target in "${ARM_TARGETS[@]}"; do
    step "common and firmware tests, and the log's and engine's integration tests, on $target (qemu-user)"
    cargo test --quiet -p gridlog-common -p gridlog-firmware --target "$target"
    # The every-round damage battery on a recycled segment is the fresh-segment battery again
    # through the same code (the unit tests of the recycled tail's decision run above):
    # natively only, which keeps two minutes of emulation out of CI.
    cargo test --quiet -p gridlog-tests --target "$target" "${LOG_AND_ENGINE_TESTS[@]/#/--test=}" \
        -- --skip in_a_recycled_segment_damage_in_any_round_but_the_last_is_damage_too
done

if cargo nextest --version >/dev/null 2>&1; then
    # Doc tests first: nextest's summary ("N tests run: N passed") is then the run's last line.
    step "cargo test --doc --workspace"
    cargo test --doc --workspace
    step "cargo nextest run --workspace"
    cargo nextest run --workspace
else
    step "cargo test --workspace"
    cargo test --workspace
fi
