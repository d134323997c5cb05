#!/usr/bin/env bash
# Overload: NextLead + ReportOutcome loops, then Score calls, through `leadscore serve` with a
# bound on calls in flight. First the loads it serves within a 10 ms p99 (closed loops, concurrency rising; the
# default SWEEP ends at the highest that stays within 10 ms on a 2-core machine); then ten
# times the last of them, where the excess must be refused at once (RESOURCE_EXHAUSTED,
# offered again at once by the loop) while the calls admitted keep a bounded p99 and Health,
# probed every 50 ms on its own connection, answers in under 100 ms.
# Usage: bench/overload_bench.sh   (LEADS, SECONDS_EACH, MAX_IN_FLIGHT, SWEEP, WORKERS override)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-1000000}
SECONDS_EACH=${SECONDS_EACH:-8}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-32}
SWEEP=${SWEEP:-1,16,32}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25091

build
refuse_taken "$LEADSCORE_ADDR"
$bin/dialer-load fill "$work/data" "$LEADS" >/dev/null
serve '[limits]' "max_in_flight = $MAX_IN_FLIGHT"
until_up "$serving" $bin/dialer-load unary "$LEADSCORE_ADDR" --concurrency 1 --seconds 1
load() { $bin/dialer-load --worker-threads "$WORKERS" unary "$LEADSCORE_ADDR" --seconds "$SECONDS_EACH" "$@"; }
score() { $bin/score-load --worker-threads "$WORKERS" load "$LEADSCORE_ADDR" --rpc score --seconds "$SECONDS_EACH" "$@"; }

echo "== $(nproc) cores, $LEADS leads, limits.max_in_flight = $MAX_IN_FLIGHT, $SECONDS_EACH s each, $(date -u +%FT%TZ)"
echo "== rising load"
load --concurrency "$SWEEP"
knee=${SWEEP##*,}
echo "== ten times the highest ($((knee * 10)) loops, over 8 connections as many dialers would be)"
load --concurrency "$((knee * 10))" --connections 8
echo "== Score (a lead given inline), rising, then ten times the highest over 8 connections"
score --concurrency "$SWEEP"
score --concurrency "$((knee * 10))" --connections 8
