#!/usr/bin/env bash
# Hostile load on the data plane: a flood of invalid datagrams (default
# 1,000,000 over 22 s) at a member while a 20 s iperf3 runs through it; the
# throughput ratio against clean runs, and every datagram counted.
#
#   sudo testbed/hostile_load.sh [DATAGRAMS [SECONDS]]
#
# Release build (cargo bench profile). See agent/benches/hostile_load.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p cladnet --bench hostile_load -- "$@"
