#!/usr/bin/env bash
# Builds gridlog for a gateway and packages it as a .deb:
#
#   scripts/package.sh [amd64|arm64|armhf]...      (default: amd64)
#
# `cargo build --profile gateway` for each architecture's Rust target (cross-linked with
# Debian's gcc for ARM, see .cargo/config.toml), then cargo-deb packages each binary with the
# systemd unit, the sysusers entry and the conffile (host/Cargo.toml, [package.metadata.deb]).
# Prints each package's path on stdout. Needs cargo-deb (scripts/test.sh installs it) and,
# for ARM, the cross compilers (ditto).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rust_target() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
        *)
            echo "unknown architecture $1 (amd64, arm64, armhf)" >&2
            return 2
            ;;
    esac
}

[ "$#" -gt 0 ] || set -- amd64
targets=()
for arch in "$@"; do
    targets+=("$(rust_target "$arch")")
done
# One cargo run for every target: while one target's link-time optimisation runs on one core,
# the next target's dependencies compile on the other.
printf '==> gridlog, profile gateway, for %s\n' "${targets[*]}" >&2
cargo build --quiet --locked --profile gateway -p gridlog-host --bin gridlog \
    "${targets[@]/#/--target=}"
for target in "${targets[@]}"; do
    # The profile strips the binary already.
    cargo deb --no-build --no-strip --profile gateway -p gridlog-host --target "$target"
done
