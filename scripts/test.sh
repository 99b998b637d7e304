#!/usr/bin/env bash
# gridlog's whole check, the same on a laptop and in CI (.ci/run calls exactly this):
#
#   ./scripts/test.sh
#
# 1. installs what is missing, idempotently and quietly (Rust target and components, then
#    the system dependencies of later test suites);
# 2. formatting, clippy with warnings as errors, the no_std build of `common` for a
#    microcontroller, and every test of the workspace (nextest if installed).
#
# The fuzz crate (fuzz/) is not built here: it needs a nightly toolchain. The proptests in
# common/src/*.rs cover the same decoders.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MCU_TARGET=thumbv7em-none-eabihf

step() { printf '\n==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------
# Rust toolchain pieces
# ---------------------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    installed_targets=$(rustup target list --installed)
    if ! grep -qx "$MCU_TARGET" <<<"$installed_targets"; then
        step "installing Rust target $MCU_TARGET"
        rustup target add "$MCU_TARGET" >/dev/null
    fi
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

# A real S3-compatible server for the shipping tests (tests/tests/ship_*.rs start and stop it).
have moto_server || pip_install 'moto[server]'

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
