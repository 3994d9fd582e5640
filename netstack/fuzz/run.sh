#!/usr/bin/env bash
# Runs every netstack fuzz target (or the ones named) for a bounded time
# each (see scripts/fuzz.sh):
#
#   netstack/fuzz/run.sh [SECONDS] [TARGET...]      # default: 60 s each, all targets
#
# The device targets read a sequence of operations from the input.
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../scripts/fuzz.sh" "$here" \
    "parse_message echo_parse" \
    "decapsulate decapsulate_session handshake_responder node_datagram" "$@"
