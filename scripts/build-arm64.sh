#!/usr/bin/env bash
# scripts/build-arm64.sh - cross-builds cladnet for 64-bit ARM (aarch64) on
# an x86_64 Debian 12 machine:        sudo scripts/build-arm64.sh [--fast] [--tests]
#
# Installs what it needs when it is missing (the arm64 architecture in dpkg,
# Debian's rustc-web/cargo-web 1.96 with the aarch64 standard library, the
# aarch64 C cross compiler and libc, Debian's arm64 C library, qemu-user-static),
# then builds with Debian's cargo and leaves the binary at
#   target/aarch64-unknown-linux-gnu/release/cladnet
# Copy it to an ARM box and run it there, or run it here under emulation:
#   qemu-aarch64-static target/aarch64-unknown-linux-gnu/release/cladnet --version
# (no -L: the binary then loads Debian's arm64 libc6 through
# /lib/ld-linux-aarch64.so.1, as on an ARM Debian box. With
# `-L /usr/aarch64-linux-gnu` the cross loader picks the multiarch libc.so.6
# from the host's ld.so.cache, a different build of glibc, and the first
# pthread_create spins for ever: the "agent stalls after its TUN" symptom.)
#
#   --fast    no link-time optimisation, 16 codegen units: a third of the
#             build time for a slightly bigger, slightly slower binary (what
#             the tests use; ship the default build)
#   --tests   also run the sans-IO crates' unit tests (netstack, federation)
#             for aarch64 under qemu-user
# Environment: CLADNET_SKIP_INSTALL=1 installs nothing (fails if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[build-arm64.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

fast=0 tests=0
for arg in "$@"; do
	case $arg in
	--fast) fast=1 ;;
	--tests) tests=1 ;;
	*) die "unknown argument $arg: use --fast and/or --tests" ;;
	esac
done

target=aarch64-unknown-linux-gnu

# --- what the cross build needs (Debian 12 packages) ---
need=()
[[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || need+=(rustc-web cargo-web)
[[ -d /usr/lib/rustlib/$target ]] || need+=(libstd-rust-web-dev:arm64)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
[[ -e /usr/aarch64-linux-gnu/lib/libc.so ]] || need+=(libc6-dev-arm64-cross)
[[ -e /lib/ld-linux-aarch64.so.1 ]] || need+=(libc6:arm64)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
if ((${#need[@]})); then
	[[ ${CLADNET_SKIP_INSTALL:-0} == 1 ]] && die "missing packages: ${need[*]}"
	[[ $(id -u) == 0 ]] || die "installing ${need[*]} needs root: run with sudo"
	log "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
	apt-get update
	apt-get install -y --no-install-recommends "${need[@]}"
fi

# Debian's cargo with Debian's rustc (rustup's, first on PATH, has no
# aarch64 standard library: "can't find crate for `core`").
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
if ((fast)); then
	export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi

log "cargo build --release --target $target -p cladnet$( ((fast)) && echo ' (fast: no LTO)')"
/usr/bin/cargo build --release --target "$target" -p cladnet
bin=target/$target/release/cladnet
qemu-aarch64-static "$bin" --version >/dev/null ||
	die "$bin does not run under qemu-aarch64-static"
log "built $bin ($(stat -c %s "$bin") bytes)"

if ((tests)); then
	log "sans-IO unit tests for $target under qemu-user (netstack, federation)"
	/usr/bin/cargo test --release --target "$target" -p netstack -p federation --lib
fi
