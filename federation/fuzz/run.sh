#!/usr/bin/env bash
# Runs every federation fuzz target (or the ones named) for a bounded time
# each (see scripts/fuzz.sh):
#
#   federation/fuzz/run.sh [SECONDS] [TARGET...]      # default: 60 s each, all targets
#
# fuzz/seeds/<target> holds well-formed bodies and tokens the fuzzer would
# take long to find; sync_plan reads a structure from the input.
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../scripts/fuzz.sh" "$here" \
    "ledger_ingest token_decode offer_decode" \
    "sync_plan" "$@"
