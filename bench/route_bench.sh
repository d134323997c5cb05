#!/usr/bin/env bash
# Routing against its peer, on this machine, in one session:
#   1. Route through `leadscore serve` (LEADS leads in 50 time zones, AGENTS agents, the default
#      rules) and through a bare tonic echo server answering the same service (plain, then with
#      a canned decision the size of Leadscore's), at concurrency 1, 16 and 64, with the same
#      runtime settings on all; then at 64 over 8 connections, leadscore and the bare echo;
#   2. decisions in process, without gRPC, each timed.
# Usage: bench/route_bench.sh   (LEADS, AGENTS, SECONDS_EACH, WORKERS override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-1000000}
AGENTS=${AGENTS:-1000}
SECONDS_EACH=${SECONDS_EACH:-8}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25081
ECHO_ADDR=127.0.0.1:25082
CANNED_ADDR=127.0.0.1:25083

build
# A server left over from an earlier run would answer in place of the one started here.
refuse_taken "$LEADSCORE_ADDR" "$ECHO_ADDR" "$CANNED_ADDR"
load() { $bin/route-load --worker-threads "$WORKERS" "$@"; }

echo "== machine: $(nproc) cores; runtime worker threads per process: $WORKERS"
$bin/dialer-load fill "$work/data" "$LEADS"
serve
# The binary itself, not the `load` function: a function put in the background runs in a
# subshell, and killing that would leave the server running.
$bin/route-load --worker-threads "$WORKERS" echo "$ECHO_ADDR" >/dev/null 2>&1 &
pids+=($!)
$bin/route-load --worker-threads "$WORKERS" echo "$CANNED_ADDR" --canned >/dev/null 2>&1 &
pids+=($!)
# Registering waits for start-up (replay, scoring every lead).
until_up "$serving" load agents "$LEADSCORE_ADDR" "$AGENTS"
grep -E "every lead scored" "$work/serve.log" | sed 's/^/   /'

echo "== unary: leadscore"
load unary "$LEADSCORE_ADDR" --leads "$LEADS" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary: bare tonic echo"
load unary "$ECHO_ADDR" --leads "$LEADS" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary: echo answering with a canned decision the size of leadscore's"
load unary "$CANNED_ADDR" --leads "$LEADS" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary over 8 connections (many clients, not one multiplexing all): leadscore, then bare echo"
load unary "$LEADSCORE_ADDR" --leads "$LEADS" --concurrency 64 --connections 8 --seconds "$SECONDS_EACH"
load unary "$ECHO_ADDR" --leads "$LEADS" --concurrency 64 --connections 8 --seconds "$SECONDS_EACH"

echo "== decisions in process, no gRPC (the engine's own cost, one thread)"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
$bin/route-load inproc "$LEADS" "$AGENTS"
