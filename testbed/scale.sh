#!/usr/bin/env bash
# Sixty real agents on one machine (and twelve, to compare): formation time,
# idle RSS/CPU/fds, control bytes per node per second, sampled pings.
#
#   sudo testbed/scale.sh [SIZES…]        # default: 12 60
#
# Release build (cargo bench profile). See agent/benches/scale.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p cladnet --bench scale -- "$@"
