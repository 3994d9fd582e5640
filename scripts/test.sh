#!/usr/bin/env bash
# scripts/test.sh - THE test command of cladnet:   sudo scripts/test.sh
#
# On a fresh Debian 12 machine it installs what the tests need (once), then
#   1. cargo build --workspace --all-targets
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo test: every crate except the agent in parallel
#   4. the aarch64 cross-build (scripts/build-arm64.sh --fast --tests: installs
#      the cross toolchain and qemu-user, runs the sans-IO unit tests under
#      qemu-user)
#   5. the agent's namespace-lab integration tests (agent/tests/) one at a
#      time, the mixed x86/ARM lab among them.
# Exits non-zero on any failure. Needs root: the lab tests create network
# namespaces, veth pairs and TUN devices (all inside namespaces they create
# and remove; see testbed/src/lib.rs).
#
# Environment:
#   CLADNET_SKIP_INSTALL=1   do not install anything (just check and run)
#   CLADNET_SKIP_CLIPPY=1    skip step 2
#   CLADNET_TESTBED_KEEP=1   keep every lab's temp dir (logs, configs)
#   TEST_ARGS="..."          extra arguments for the test binaries
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[test.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (sudo scripts/test.sh): the lab tests need network namespaces and TUN devices"

# --- toolchain (sudo resets PATH: look in the invoking user's ~/.cargo too) ---
if ! command -v cargo >/dev/null 2>&1; then
	for d in "$HOME/.cargo" ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo"}; do
		if [[ -x $d/bin/cargo ]]; then
			export PATH="$d/bin:$PATH" CARGO_HOME="$d"
			[[ -d $(dirname "$d")/.rustup ]] && export RUSTUP_HOME="$(dirname "$d")/.rustup"
			break
		fi
	done
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup first)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

# --- system packages (command -> Debian package) ---
declare -A pkg_of=(
	[ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [nft]=nftables [iperf3]=iperf3
	[wireguard-go]=wireguard-go [wg]=wireguard-tools [curl]=curl [python3]=python3
	[ps]=procps [sha256sum]=coreutils [dig]=bind9-dnsutils [systemd-analyze]=systemd
	[dpkg-deb]=dpkg [chromium]=chromium [setpriv]=util-linux [faketime]=faketime
)
missing=()
for c in "${!pkg_of[@]}"; do
	command -v "$c" >/dev/null 2>&1 || missing+=("${pkg_of[$c]}")
done
if ((${#missing[@]})); then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	[[ ${CLADNET_SKIP_INSTALL:-0} == 1 ]] && die "missing packages: ${missing[*]}"
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# --no-install-recommends: wireguard-tools recommends a whole kernel image
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
bt=$(command -v boringtun-cli || true)
[[ -z $bt && -x ${CARGO_HOME:-$HOME/.cargo}/bin/boringtun-cli ]] && bt=${CARGO_HOME:-$HOME/.cargo}/bin/boringtun-cli
if [[ -z $bt ]]; then
	[[ ${CLADNET_SKIP_INSTALL:-0} == 1 ]] && die "boringtun-cli missing"
	log "installing boringtun-cli 0.7.1 (cargo install, a few minutes)"
	cargo install boringtun-cli --version 0.7.1 --locked
fi
if ! cargo deb --version >/dev/null 2>&1; then
	[[ ${CLADNET_SKIP_INSTALL:-0} == 1 ]] && die "cargo-deb missing"
	log "installing cargo-deb 3.8.0 (cargo install, about a minute)"
	cargo install cargo-deb --version 3.8.0 --locked
fi
[[ -c /dev/net/tun ]] || die "/dev/net/tun missing: this machine cannot create TUN devices"

export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
unset CLADNET_TESTBED_STANDIN # the tests must exercise cladnet itself

log "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

if [[ ${CLADNET_SKIP_CLIPPY:-0} != 1 ]]; then
	log "cargo clippy --workspace --all-targets -- -D warnings"
	cargo clippy --workspace --all-targets -- -D warnings
fi

rc=0
log "cargo test (all crates but the agent)"
# shellcheck disable=SC2086
cargo test --workspace --exclude cladnet --no-fail-fast -- ${TEST_ARGS:-} || rc=1
# The aarch64 build: the sans-IO crates' unit tests under qemu-user, and the
# binary the mixed-architecture lab (agent/tests/arm.rs) runs. --fast skips
# link-time optimisation (a third of the build time).
log "scripts/build-arm64.sh --fast --tests"
bash scripts/build-arm64.sh --fast --tests || rc=1
log "cargo test -p cladnet (namespace labs, one at a time)"
# shellcheck disable=SC2086
cargo test -p cladnet --no-fail-fast -- --test-threads=1 ${TEST_ARGS:-} || rc=1

leftover=$(ip netns list 2>/dev/null | awk '/^cl-/ { print $1 }' | tr '\n' ' ')
[[ -z $leftover ]] || log "WARNING: namespaces left behind: $leftover"
if ((rc)); then
	log "FAILED"
	exit 1
fi
log "all tests passed"
