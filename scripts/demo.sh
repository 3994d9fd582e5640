#!/usr/bin/env bash
# scripts/demo.sh - watch cladnet work: three nodes on a private namespace LAN.
#
#   sudo scripts/demo.sh            build (release), start 3 agents, show, ping, clean up
#   sudo scripts/demo.sh --hold     same, but wait for Enter before cleaning up, so
#                                   you can poke around, e.g.
#                                   sudo ip netns exec cl-<pid>-d-a cladnet members --state /tmp/cladnet-demo.*/a
#
# What it shows: `cladnet init` creates a network on node a; b joins with an
# invite from a, c with an invite from b; every node lists every member and
# reaches every other over the overlay (addresses chosen by the nodes).
#
# Topology (everything inside namespaces this script creates and deletes):
#   cl-<pid>-d-sw : bridge br0
#   cl-<pid>-d-a  : eth0 198.18.0.1/24   cladnet cl-a, overlay 100.64.0.0/24
#   cl-<pid>-d-b  : eth0 198.18.0.2/24   cladnet cl-b
#   cl-<pid>-d-c  : eth0 198.18.0.3/24   cladnet cl-c
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

ip_of() { echo "198.18.0.$(($1 + 1))"; }
run_in() { local n=$1; shift; ip netns exec "$pfx-$n" "$@"; }
start_agent() {
	local n=$1 i
	# Not through run_in: a backgrounded function would leave $! naming a
	# subshell, and cleanup would miss the agent. `ip netns exec` execs the
	# agent in place, so $! is the agent itself.
	RUST_LOG=${RUST_LOG:-info} ip netns exec "$pfx-$n" "$bin" agent --state "$work/$n" --iface "cl-$n" >"$work/$n.log" 2>&1 &
	pids+=($!)
	echo "  node $n: agent pid $!, log $work/$n.log"
	for ((i = 0; i < 100; i++)); do
		run_in "$n" "$bin" status --state "$work/$n" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -n 20 "$work/$n.log"; return 1
}
node_args() { echo "--name $1 --listen $(ip_of "$2"):51820 --control-listen $(ip_of "$2"):51821 --state $work/$1"; }

say "node a: cladnet init (a new network and its authority)"
# shellcheck disable=SC2046
run_in a "$bin" init $(node_args a 0) --cidr 100.64.0.0/24
start_agent a

say "node b joins with an invite from a"
token=$(run_in a "$bin" invite --state "$work/a")
echo "  token: ${token:0:60}... (one line, valid 1 h, one use)"
# shellcheck disable=SC2046
run_in b "$bin" join "$token" $(node_args b 1)
start_agent b

say "node c joins with an invite from b (any member can admit)"
token=$(run_in b "$bin" invite --state "$work/b")
# shellcheck disable=SC2046
run_in c "$bin" join "$token" $(node_args c 2)
start_agent c

say "cladnet members (asked on node c)"
for ((i = 0; i < 100; i++)); do
	[[ $(run_in c "$bin" members --state "$work/c" --json | grep -o '"state":"alive"' | wc -l) == 3 ]] && break
	sleep 0.2
done
run_in c "$bin" members --state "$work/c"

say "pinging every node from every node over the overlay"
declare -A addr
for n in "${nodes[@]}"; do
	addr[$n]=$(run_in "$n" "$bin" status --state "$work/$n" --json | sed -E 's/.*"address":"([^"]+)".*/\1/')
done
fail=0
for i in "${nodes[@]}"; do
	for j in "${nodes[@]}"; do
		[[ $i == "$j" ]] && continue
		if run_in "$i" ping -c 3 -i 0.2 -W 2 -q "${addr[$j]}" >"$work/ping.txt" 2>&1; then
			echo "  $i -> $j (${addr[$j]}): $(grep -E '^rtt' "$work/ping.txt" | cut -d= -f2)"
		else
			echo "  $i -> $j (${addr[$j]}): FAILED"; fail=1
		fi
	done
done

say "cladnet status (node a)"
run_in a "$bin" status --state "$work/a"

if ((hold)); then
	say "holding: namespaces $pfx-{a,b,c}, state dirs $work/{a,b,c}; press Enter to clean up (auto after 10 min)"
	read -r -t 600 || true
fi
((fail == 0)) || { echo "some pings failed; agent logs in $work (shown below)"; tail -n 20 "$work"/*.log; exit 1; }
