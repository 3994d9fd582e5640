#!/usr/bin/env bash
# Churn soak: members join, leave, crash and restart around four long-lived
# ones for N minutes; their memory and descriptors must stay flat, the
# network whole, and no log may hold a panic.
#
#   sudo testbed/soak.sh [--minutes N]        # default: 60 (CI runs 2)
#
# Release build. See agent/tests/soak.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=60
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
        *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
    esac
done
export CLADNET_SOAK_MINUTES="$minutes"
exec cargo test --release -p cladnet --test soak -- --nocapture
