#!/usr/bin/env bash
# scripts/demo.sh - watch cladnet work: three nodes on a private namespace LAN.
#
#   sudo scripts/demo.sh            build (release), start 3 agents, show, ping, clean up
#   sudo scripts/demo.sh --hold     same, but wait for Enter before cleaning up, so
#                                   you can poke around, e.g.
#                                   sudo ip netns exec cl-<pid>-d-a ping 100.64.0.3
#
# Topology (everything inside namespaces this script creates and deletes):
#   cl-<pid>-d-sw : bridge br0
#   cl-<pid>-d-a  : eth0 198.18.0.1/24   cladnet cl-a 100.64.0.1/24
#   cl-<pid>-d-b  : eth0 198.18.0.2/24   cladnet cl-b 100.64.0.2/24
#   cl-<pid>-d-c  : eth0 198.18.0.3/24   cladnet cl-c 100.64.0.3/24
# The namespaces have no route to the host or anywhere else.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hold=0
[[ ${1:-} == --hold ]] && hold=1
[[ $(id -u) == 0 ]] || { echo "run as root: sudo $0" >&2; exit 1; }
for c in ip ping cargo; do command -v "$c" >/dev/null || { echo "missing: $c (sudo scripts/test.sh installs the tools)" >&2; exit 1; }; done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pfx="cl-$$-d"
nodes=(a b c)
work=$(mktemp -d /tmp/cladnet-demo.XXXXXX)
pids=()
made=()

cleanup() {
	local rc=$? p i
	set +e
	trap - EXIT INT TERM
	say "cleaning up"
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for ((i = ${#made[@]} - 1; i >= 0; i--)); do ip netns del "${made[$i]}" 2>/dev/null; done
	rm -rf -- "$work"
	echo "removed namespaces ${made[*]:-none} and $work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building cladnet (release)"
(cd "$root" && cargo build --release -p cladnet)
bin="$root/target/release/cladnet"

say "creating the lab: a switch and three nodes"
ip netns add "$pfx-sw"; made+=("$pfx-sw")
ip -n "$pfx-sw" link add br0 type bridge
ip -n "$pfx-sw" link set br0 up
for i in "${!nodes[@]}"; do
	n=${nodes[$i]} ns="$pfx-${nodes[$i]}"
	ip netns add "$ns"; made+=("$ns")
	ip -n "$ns" link set lo up
	ip -n "$pfx-sw" link add "v-$n" type veth peer name eth0 netns "$ns"
	ip -n "$pfx-sw" link set "v-$n" master br0 up
	ip -n "$ns" addr add "198.18.0.$((i + 1))/24" dev eth0
	ip -n "$ns" link set eth0 up
	echo "  $ns: eth0 198.18.0.$((i + 1))/24"
done

say "keys (cladnet genkey | cladnet pubkey) and wg-quick configs"
for n in "${nodes[@]}"; do
	(umask 077 && "$bin" genkey >"$work/$n.key")
	"$bin" pubkey <"$work/$n.key" >"$work/$n.pub"
	echo "  $n: $(cat "$work/$n.pub")"
done
for i in "${!nodes[@]}"; do
	n=${nodes[$i]}
	{
		echo "[Interface]"
		echo "PrivateKey = $(cat "$work/$n.key")"
		echo "ListenPort = 51820"
		echo "Address = 100.64.0.$((i + 1))/24"
		for j in "${!nodes[@]}"; do
			((j == i)) && continue
			echo
			echo "[Peer]"
			echo "PublicKey = $(cat "$work/${nodes[$j]}.pub")"
			echo "Endpoint = 198.18.0.$((j + 1)):51820"
			echo "AllowedIPs = 100.64.0.$((j + 1))/32"
		done
	} >"$work/cl-$n.conf"
	chmod 600 "$work/cl-$n.conf"
done
sed 's/^PrivateKey = .*/PrivateKey = (hidden)/' "$work/cl-a.conf" | sed 's/^/    /'

say "starting three agents"
for n in "${nodes[@]}"; do
	RUST_LOG=${RUST_LOG:-info} ip netns exec "$pfx-$n" "$bin" agent --wg-config "$work/cl-$n.conf" \
		--iface "cl-$n" --api-socket "$work/$n.sock" >"$work/$n.log" 2>&1 &
	pids+=($!)
	echo "  node $n: pid $!, log $work/$n.log"
done
for n in "${nodes[@]}"; do
	for ((i = 0; i < 100; i++)); do
		ip -n "$pfx-$n" -o addr show dev "cl-$n" 2>/dev/null | grep -q inet && [[ -S $work/$n.sock ]] && break
		sleep 0.1
	done
	ip -n "$pfx-$n" -br addr show dev "cl-$n" || { tail -n 20 "$work/$n.log"; exit 1; }
done

say "pinging every node from every node over the overlay"
fail=0
for i in "${!nodes[@]}"; do
	for j in "${!nodes[@]}"; do
		((i == j)) && continue
		if ip netns exec "$pfx-${nodes[$i]}" ping -c 3 -i 0.2 -W 2 -q "100.64.0.$((j + 1))" >"$work/ping.txt" 2>&1; then
			echo "  ${nodes[$i]} -> ${nodes[$j]} (100.64.0.$((j + 1))): $(grep -E '^rtt' "$work/ping.txt" | cut -d= -f2)"
		else
			echo "  ${nodes[$i]} -> ${nodes[$j]} (100.64.0.$((j + 1))): FAILED"; fail=1
		fi
	done
done

for n in "${nodes[@]}"; do
	say "cladnet show (node $n)"
	ip netns exec "$pfx-$n" "$bin" show --api-socket "$work/$n.sock" ||
		ip netns exec "$pfx-$n" "$bin" show --api-socket "$work/$n.sock" --json
done

if ((hold)); then
	say "holding: namespaces $pfx-{a,b,c}; press Enter to clean up (auto after 10 min)"
	read -r -t 600 || true
fi
((fail == 0)) || { echo "some pings failed; agent logs in $work (shown below)"; tail -n 20 "$work"/*.log; exit 1; }
