#!/usr/bin/env bash
# shellcheck disable=SC2016 # PB_OURS_* are expanded later, by peers/ours.sh
# testbed/bench/run.sh - cladnet side by side with the reference tunnels, using
# the shared benchmark harness (peers/run-all.sh; see peers/README.md):
# same two namespaces, same iperf3/ping/CPU/RSS measurements.
#
#   sudo testbed/bench/run.sh                      # raw wireguard-go boringtun ours, 2 runs
#   sudo testbed/bench/run.sh -r 3 raw boringtun ours
#   sudo PB_PIN=1 PB_T=5 testbed/bench/run.sh
#
# Arguments pass through to run-all.sh (default tunnel list: raw wireguard-go
# boringtun ours). PEERS_DIR overrides where the harness lives (default:
# <repo>/../shared/peers). Builds target/release/cladnet first and runs
# peers/install.sh if a tool is missing.
set -euo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd))"
peers="${PEERS_DIR:-$root/../shared/peers}"
[[ -x $peers/run-all.sh ]] || { echo "bench: $peers/run-all.sh not found (set PEERS_DIR)" >&2; exit 1; }
peers="$(cd "$peers" && pwd)"
[[ $(id -u) == 0 ]] || { echo "bench: run as root (sudo $0)" >&2; exit 1; }

need_install=0
for c in iperf3 ping jq wg wireguard-go ip ss; do command -v "$c" >/dev/null 2>&1 || need_install=1; done
command -v boringtun-cli >/dev/null 2>&1 || [[ -x $HOME/.cargo/bin/boringtun-cli ]] || need_install=1
if ((need_install)); then
	echo "bench: installing missing tools with $peers/install.sh" >&2
	bash "$peers/install.sh"
fi

echo "bench: building the release binary" >&2
(cd "$root" && cargo build --release -p cladnet)
bin="$root/target/release/cladnet"
[[ -x $bin ]] || { echo "bench: $bin missing after the build" >&2; exit 1; }

export PB_OURS_NAME=${PB_OURS_NAME:-cladnet}
# Once, host namespace, cwd $PB_SHARED: keys and the two sides' wg-quick configs.
export PB_OURS_SETUP='
set -e
for s in a b; do "'"$bin"'" genkey >"$PB_SHARED/$s.key"; "'"$bin"'" pubkey <"$PB_SHARED/$s.key" >"$PB_SHARED/$s.pub"; done
for s in a b; do
	if [ "$s" = a ]; then p=b me=1 peer=2; else p=a me=2 peer=1; fi
	{
		echo "[Interface]"
		echo "PrivateKey = $(cat "$PB_SHARED/$s.key")"
		echo "ListenPort = $PB_PORT"
		echo "Address = 100.64.0.$me/$PB_OV_PREFIX"
		echo "MTU = 1420"
		echo
		echo "[Peer]"
		echo "PublicKey = $(cat "$PB_SHARED/$p.pub")"
		echo "Endpoint = 198.18.0.$peer:$PB_PORT" # = peers/lib.sh PB_UL_A/PB_UL_B
		echo "AllowedIPs = 100.64.0.$peer/32"
	} >"$PB_SHARED/$s.conf"
done'
# Per side, in its namespace, in the foreground.
export PB_OURS_START="$bin"' agent --wg-config "$PB_SHARED/$PB_SIDE.conf" --iface "$PB_IFNAME" --api-socket "$PB_WORKDIR/api.sock"'

# default tunnel list unless names were given (options -r N / -o DIR pass through)
has_names=0 skip=0
for a in "$@"; do
	if ((skip)); then skip=0; continue; fi
	case $a in
	-r | -o) skip=1 ;;
	-*) ;;
	*) has_names=1 ;;
	esac
done
((has_names)) || set -- "$@" raw wireguard-go boringtun ours
exec "$peers/run-all.sh" "$@"
