#!/usr/bin/env bash
# Runs every netstack fuzz target (or the ones named) for a bounded time each.
#
#   netstack/fuzz/run.sh [SECONDS] [TARGET...]      # default: 60 s each, all targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Uses the nightly
# toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP=1.
# Builds are release + debug assertions, no sanitizer (netstack is safe Rust;
# set FUZZ_SANITIZER=address to turn ASan back on). Corpora are kept in
# fuzz/corpus/<target>, crashes and hangs in fuzz/artifacts/<target>; a
# finding makes the script exit non-zero. Extra libFuzzer flags: FUZZ_ARGS.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(parse_message decapsulate decapsulate_session handshake_responder echo_parse)
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
    echo "=== $t: ${secs}s" >&2
    # The stateful targets read a sequence of operations from the input: let
    # inputs be long from the start instead of growing them slowly.
    case "$t" in
        parse_message) len=() ;;
        *) len=(-len_control=0 -max_len=1024) ;;
    esac
    # shellcheck disable=SC2086
    if ! "${cargo[@]}" run --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 "${len[@]}" ${FUZZ_ARGS:-}; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "findings in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets ran ${secs}s without findings" >&2
