#!/usr/bin/env bash
# Runs a crate's fuzz targets, each until FUZZ_RUNS executions (default
# 10,000,000) or SECONDS, whichever comes first; called by
# netstack/fuzz/run.sh and federation/fuzz/run.sh.
#
#   scripts/fuzz.sh FUZZ_DIR "PARSERS" "STRUCTURED" [SECONDS] [TARGET...]
#
# PARSERS are targets whose inputs start short, STRUCTURED those that read
# a sequence of operations or a structure from the input (long inputs from
# the start). Without TARGETs, all of both run (default 60 s each).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Uses the nightly
# toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP=1.
# Builds are release + debug assertions, no sanitizer (the crates are safe
# Rust; set FUZZ_SANITIZER=address to turn ASan back on). Corpora are kept in
# FUZZ_DIR/corpus/<target>, crashes and hangs in FUZZ_DIR/artifacts/<target>;
# checked-in inputs in FUZZ_DIR/seeds/<target> and FUZZ_DIR/regressions/<target>
# are read as extra corpora. A finding makes the script exit non-zero. Extra
# libFuzzer flags: FUZZ_ARGS.
set -euo pipefail
cd "$1"
read -r -a parsers <<<"$2"
read -r -a structured <<<"$3"
shift 3

secs="${1:-60}"
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=("${parsers[@]}" "${structured[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo fuzz)
fi
sanitizer="${FUZZ_SANITIZER:-none}"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    extra=()
    for d in "seeds/$t" "regressions/$t"; do
        if [ -d "$d" ]; then extra+=("$d"); fi
    done
    len=()
    for s in "${structured[@]}"; do
        if [ "$s" = "$t" ]; then len=(-len_control=0 -max_len=1024); fi
    done
    echo "=== $t: ${secs}s" >&2
    # shellcheck disable=SC2086
    if ! "${cargo[@]}" run --sanitizer "$sanitizer" "$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$secs" -runs="${FUZZ_RUNS:-10000000}" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 "${len[@]}" ${FUZZ_ARGS:-}; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "findings in: ${failed[*]} (see $1/artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets ran ${secs}s without findings" >&2
