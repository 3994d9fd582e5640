#!/usr/bin/env bash
# testbed/bench/instructions.sh - instructions per 1,420-byte packet sealed
# and opened (encapsulate + decapsulate, netstack's `packets` example) on
# x86_64 and on aarch64, and where the aarch64 ones run:
#
#   sudo testbed/bench/instructions.sh
#
# x86_64: valgrind's callgrind counts the instructions (Ir) of the release
# example. aarch64: the example cross-built with scripts/build-arm64.sh's
# toolchain runs under qemu-user with one instruction per translation block
# and the execution log on (-one-insn-per-tb/-singlestep -d exec,nochain): one
# log line per guest instruction, with its address, which names the function
# it belongs to. Each side runs at two packet counts and the difference is
# divided, so setup (keys, handshake) cancels out. A portable (non-NEON)
# ChaCha20-Poly1305 on ARM would show as several times the instructions and
# as ring's generic C functions in the list instead of its armv8 assembly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
lo=${LO:-50} hi=${HI:-250}
work=$(mktemp -d /tmp/cladnet-insn.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null 2>&1 || apt-get install -y --no-install-recommends valgrind >/dev/null
bash scripts/build-arm64.sh --fast >/dev/null # toolchain check (and the agent)

cargo build -q --release -p netstack --example packets
x86=target/release/examples/packets
RUSTC=/usr/bin/rustc CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
	CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	/usr/bin/cargo build -q --release --target aarch64-unknown-linux-gnu -p netstack --example packets
arm=target/aarch64-unknown-linux-gnu/release/examples/packets

ir_x86() { # callgrind's total instruction count for COUNT packets
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "$x86" "$1" >/dev/null 2>&1
	awk '/^summary:/ { print $2 }' "$work/cg.$1"
}
pcs_arm() { # executed guest instructions per address for COUNT packets, in $work/pcs.COUNT
	rm -f "$work/fifo" && mkfifo "$work/fifo"
	awk -F'[][/]' '/^Trace/ { c[$3]++ } END { for (k in c) print k, c[k] }' "$work/fifo" >"$work/pcs.$1" &
	qemu-aarch64-static -singlestep -d exec,nochain -D "$work/fifo" "$arm" "$1" >/dev/null
	wait
	awk '{ s += $2 } END { print s }' "$work/pcs.$1"
}

x_lo=$(ir_x86 "$lo") x_hi=$(ir_x86 "$hi")
a_lo=$(pcs_arm "$lo") a_hi=$(pcs_arm "$hi")
n=$((hi - lo))
echo "| architecture | instructions per 1,420-byte packet (seal + open) | per byte |"
echo "|---|---|---|"
awk -v d=$((x_hi - x_lo)) -v n=$n 'BEGIN { printf "| x86_64 (callgrind) | %d | %.1f |\n", d / n, d / n / 1420 }'
awk -v d=$((a_hi - a_lo)) -v n=$n 'BEGIN { printf "| aarch64 (qemu-user, executed) | %d | %.1f |\n", d / n, d / n / 1420 }'

echo
echo "x86_64: the AEAD functions run ($hi packets)"
callgrind_annotate "$work/cg.$hi" 2>/dev/null | grep -o '[0-9,]* ([ 0-9.]*%) .*chacha20_poly1305_[a-z_0-9]*' | sed 's/ .*:/ /' | head -4
echo "aarch64: functions with the most executed instructions ($hi packets)"
# qemu-user maps a position-independent executable at 0x5500000000.
aarch64-linux-gnu-nm -C --defined-only "$arm" | awk '$2 ~ /^[tTwW]$/' | sort >"$work/syms"
python3 - "$work/syms" "$work/pcs.$hi" <<'EOF2' | tee "$work/top"
import bisect, collections, sys
syms = sorted((int(a, 16), n) for a, _, n in (l.rstrip("\n").split(" ", 2) for l in open(sys.argv[1])))
addrs = [a for a, _ in syms]
count, total = collections.Counter(), 0
for pc, n in (l.split() for l in open(sys.argv[2])):
    off, n = int(pc, 16) - 0x5500000000, int(n)
    total += n
    i = bisect.bisect_right(addrs, off) - 1
    inside = 0 <= off < addrs[-1] + 0x10000 and i >= 0
    count[syms[i][1][:90] if inside else "(C library, loader)"] += n
for name, n in count.most_common(8):
    print(f"  {100 * n / total:5.1f} %  {n:>9}  {name}")
EOF2
# ring's armv8 assembly (NEON) is what seals and opens; its portable C
# fallback would be ChaCha20_ctr32_nohw / CRYPTO_poly1305_*.
grep -q 'chacha20_poly1305_seal' "$work/top" && grep -q 'chacha20_poly1305_open' "$work/top" ||
	{ echo "aarch64 does not run ring's assembly ChaCha20-Poly1305" >&2; exit 1; }
