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
one_insn=-one-insn-per-tb
qemu-aarch64-static -h | grep -q -- '-one-insn-per-tb' || one_insn=-singlestep
ir_arm() { # executed guest instructions for COUNT packets (log kept for the symbol list)
	qemu-aarch64-static $one_insn -d exec,nochain -D "$work/q.$1" "$arm" "$1" >/dev/null
	grep -c '^Trace' "$work/q.$1"
}

x_lo=$(ir_x86 "$lo") x_hi=$(ir_x86 "$hi")
a_lo=$(ir_arm "$lo") a_hi=$(ir_arm "$hi")
n=$((hi - lo))
printf '| architecture | instructions per 1,420-byte packet (seal + open) | per byte |\n|---|---|---|\n'
printf '| x86_64 (callgrind Ir) | %d | %.2f |\n' $(((x_hi - x_lo) / n)) "$(echo "($x_hi - $x_lo) / $n / 1420" | bc -l)"
printf '| aarch64 (qemu-user, executed) | %d | %.2f |\n' $(((a_hi - a_lo) / n)) "$(echo "($a_hi - $a_lo) / $n / 1420" | bc -l)"

# Where the aarch64 instructions go: the load address of the example (from
# its first executed instruction, _start) turns addresses into functions.
start=$(aarch64-linux-gnu-nm "$arm" | awk '$3 == "_start" { print $1 }')
first=$(grep -m1 -o '/[0-9a-f]\{16\}/' "$work/q.$hi" | tr -d /)
echo
echo "aarch64: functions with the most executed instructions ($hi packets)"
python3 - "$arm" "$work/q.$hi" "$start" <<'EOF'
import bisect, collections, re, subprocess, sys
binary, log, start = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
syms = []
for line in subprocess.run(["aarch64-linux-gnu-nm", "-C", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[1] in "tTwW":
        syms.append((int(parts[0], 16), parts[2]))
syms.sort()
addrs = [a for a, _ in syms]
pcs = collections.Counter()
pat = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
base = None
with open(log) as f:
    for line in f:
        m = pat.match(line)
        if m:
            pc = int(m.group(1), 16)
            if base is None:
                base = pc - start  # the first instruction the example runs is ld.so's; fixed below
            pcs[pc] += 1
# The example is a PIE: find the load bias that maps the most PCs onto text.
lo_text = syms[0][0]
best = max({pc - a for pc in list(pcs)[:2000] for a, n in syms if n == "main"} or {0}, key=lambda b: 0)
counts = collections.Counter()
total = sum(pcs.values())
def name_of(pc, bias):
    i = bisect.bisect_right(addrs, pc - bias) - 1
    return syms[i][1] if i >= 0 else "?"
# bias: qemu maps a PIE at 0x5500000000 unless told otherwise
bias = 0x5500000000
for pc, n in pcs.items():
    counts[name_of(pc, bias) if pc >= bias else "(libc, loader)"] += n
for name, n in counts.most_common(8):
    print(f"  {100 * n / total:5.1f} %  {name[:90]}")
EOF
