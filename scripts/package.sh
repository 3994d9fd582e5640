#!/usr/bin/env bash
# scripts/package.sh - builds target/debian/cladnet_<version>_<arch>.deb with
# cargo-deb: /usr/bin/cladnet, the systemd unit (lib/systemd/system/), man
# pages (usr/share/man/man1/) and bash, zsh and fish completions, the last
# two generated from the binary itself.
#
#   scripts/package.sh                          # release build (fat LTO: several minutes)
#   CLADNET_PACKAGE_PROFILE=dev scripts/package.sh   # debug build (what the tests package)
#   CLADNET_PACKAGE_NO_BUILD=1 ...              # package the binary already built
#
# Installs cargo-deb (cargo install, pinned) when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[package.sh] %s\n' "$*" >&2; }

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
	log "installing cargo-deb $CARGO_DEB_VERSION (cargo install, a minute or two)"
	cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

profile=${CLADNET_PACKAGE_PROFILE:-release}
case $profile in
dev) out=target/debug ;;
*) out=target/$profile ;;
esac
if [[ ${CLADNET_PACKAGE_NO_BUILD:-0} != 1 ]]; then
	log "cargo build -p cladnet --profile $profile"
	cargo build -p cladnet --profile "$profile"
fi
[[ -x $out/cladnet ]] || { log "$out/cladnet is missing: build it first"; exit 1; }

assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$out/cladnet" manpages --out "$assets/man"
"$out/cladnet" completions bash >"$assets/completions/cladnet.bash"
"$out/cladnet" completions zsh >"$assets/completions/_cladnet"
"$out/cladnet" completions fish >"$assets/completions/cladnet.fish"

log "cargo deb -p cladnet"
strip=()
[[ $profile == dev ]] && strip=(--no-strip --fast) # a debug build is for tests: as built, quickly compressed
deb=$(cargo deb -p cladnet --no-build --profile "$profile" "${strip[@]}" 2>/dev/null | tail -n 1)
[[ -f $deb ]] || { log "cargo deb did not report a package"; exit 1; }
echo "$deb"
