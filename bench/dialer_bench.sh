#!/usr/bin/env bash
# The dialer against its peers, on this machine, in one session:
#   1. NextLead + ReportOutcome through `leadscore serve` (LEADS leads in 50 time zones, every
#      rule on) and through a bare tonic echo server answering the same service, at
#      concurrency 1, 16 and 64, with the same runtime settings on both; then at 64 over 8
#      connections;
#   2. claims per second through DialerSession streams, and Redis sorted-set ZPOPMAX run with
#      redis-benchmark (50 clients, then pipelined x16);
#   3. the same claim-and-report loop in process, without gRPC: what the engine itself costs,
#      on a clock moved to Monday 15:00 UTC, so that the same calling windows are open at
#      any time of day (the runs through gRPC use the real time).
# Usage: bench/dialer_bench.sh   (LEADS, SECONDS_EACH, WORKERS, SESSIONS override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-1000000}
SECONDS_EACH=${SECONDS_EACH:-8}
WORKERS=${WORKERS:-1}
SESSIONS=${SESSIONS:-50}
LEADSCORE_ADDR=127.0.0.1:25071
ECHO_ADDR=127.0.0.1:25072
CANNED_ADDR=127.0.0.1:25073
REDIS_PORT=6399

build
refuse_taken "$LEADSCORE_ADDR" "$ECHO_ADDR" "$CANNED_ADDR" "127.0.0.1:$REDIS_PORT"
bench_cleanup() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
load() { $bin/dialer-load --worker-threads "$WORKERS" "$@"; }

# A leadscore server on LEADS fresh leads (every run claims leads, so each starts anew), its
# pid in $serving; the first claim waits for start-up (replay, scoring every lead) and builds
# the queue.
serving=
serve_fresh() {
    if [ -n "$serving" ]; then kill "$serving"; wait "$serving" 2>/dev/null || true; fi
    rm -rf "$work/data"
    $bin/dialer-load fill "$work/data" "$LEADS"
    serve
    until_up "$serving" load unary "$LEADSCORE_ADDR" --concurrency 1 --seconds 1
    grep -E "every lead scored|dialer queue built" "$work/serve.log" | sed 's/^/   /'
}

echo "== machine: $(nproc) cores; runtime worker threads per process: $WORKERS"
serve_fresh
$bin/dialer-load --worker-threads "$WORKERS" echo "$ECHO_ADDR" >/dev/null 2>&1 &
pids+=($!)
$bin/dialer-load --worker-threads "$WORKERS" echo "$CANNED_ADDR" --canned-claim >/dev/null 2>&1 &
pids+=($!)

echo "== unary: leadscore (every rule on)"
load unary "$LEADSCORE_ADDR" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary: bare tonic echo"
load unary "$ECHO_ADDR" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary: echo answering with a canned claim the size of leadscore's"
load unary "$CANNED_ADDR" --concurrency 1,16,64 --seconds "$SECONDS_EACH"
echo "== unary over 8 connections (many dialers, not one multiplexing all): leadscore, then bare echo"
# On fresh leads: the runs above claimed most of those whose calling window is open at some hours.
serve_fresh
load unary "$LEADSCORE_ADDR" --concurrency 64 --connections 8 --seconds "$SECONDS_EACH"
load unary "$ECHO_ADDR" --concurrency 64 --connections 8 --seconds "$SECONDS_EACH"
echo "== DialerSession, full claims (the lead and the score's breakdown), then brief ones"
serve_fresh
load session "$LEADSCORE_ADDR" --sessions "$SESSIONS" --seconds "$SECONDS_EACH"
serve_fresh
load session "$LEADSCORE_ADDR" --sessions "$SESSIONS" --seconds "$SECONDS_EACH" --brief

echo "== the same loop in process, no gRPC (the engine's own cost, one thread)"
kill "$serving"; wait "$serving" 2>/dev/null || true
$bin/dialer-load inproc "$LEADS" --seconds "$SECONDS_EACH"

echo "== Redis ZPOPMAX"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes >/dev/null
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
fill_redis() {
    redis-cli -p "$REDIS_PORT" del queue >/dev/null
    python3 -c "
import sys
for i in range($LEADS):
    sys.stdout.write(f'ZADD queue {(i * 7919) % 100000} lead-{i}\r\n')
" | redis-cli -p "$REDIS_PORT" --pipe >/dev/null
}
# redis-benchmark redraws its progress with carriage returns; keep the summary line.
summary() { tr '\r' '\n' | grep "requests per second" | tail -1; }
fill_redis
echo "50 clients: $(redis-benchmark -p "$REDIS_PORT" -c 50 -n "$LEADS" -q ZPOPMAX queue | summary)"
fill_redis
echo "50 clients, pipelined x16: $(redis-benchmark -p "$REDIS_PORT" -c 50 -n "$LEADS" -P 16 -q ZPOPMAX queue | summary)"
