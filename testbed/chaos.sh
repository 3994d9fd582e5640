#!/usr/bin/env bash
# The chaos lab at size: kill -9 of agents at random moments during joins
# (some while a join goes through them), then a cut in two halves with a
# join on each side; nothing acknowledged may be lost.
#
#   sudo testbed/chaos.sh [MEMBERS] [KILLS] [CUT_SECONDS]   # default: 40 50 30
#
# CI runs the same test small (12 members, 8 kills, 20 s). Release build.
# See agent/tests/chaos.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLADNET_CHAOS_MEMBERS="${1:-40}" CLADNET_CHAOS_KILLS="${2:-50}" CLADNET_CHAOS_CUT_SECS="${3:-30}"
exec cargo test --release -p cladnet --test chaos -- --nocapture
