#!/usr/bin/env bash
# Acknowledged durable writes against Redis, on this machine, in one session: leadscore with
# fsync `always` (group commit) under write-load, and Redis with `appendonly yes` and
# `appendfsync always` under redis-benchmark SET, each with 1, 8 and 64 concurrent writers, and
# the same load against a bare gRPC echo (what the transport allows on this machine).
# Usage: bench/write_bench.sh   (SECONDS_EACH, WORKERS override the defaults; LEADSCORE_BIN runs
# another build of the server, e.g. an earlier commit's, against the same load)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECONDS_EACH=${SECONDS_EACH:-8}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25074
ECHO_ADDR=127.0.0.1:25075
REDIS_PORT=6398

build
LEADSCORE_BIN=${LEADSCORE_BIN:-$bin/leadscore}
refuse_taken "$LEADSCORE_ADDR" "$ECHO_ADDR" "127.0.0.1:$REDIS_PORT"
bench_cleanup() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

echo "== machine: $(nproc) cores, $(df -h "$work" | awk 'NR==2 {print $1}') under $work; runtime worker threads: $WORKERS"
serve 'fsync = "always"'
wait_for "$LEADSCORE_ADDR"
echo "== leadscore ($LEADSCORE_BIN), fsync always: RecordEvents of one event each"
$bin/write-load "$LEADSCORE_ADDR" --writers 1,8,64 --seconds "$SECONDS_EACH" --worker-threads "$WORKERS"

# The same load against a bare tonic server that answers at once: what gRPC itself allows here.
# The echo copies its other answers (Score, Explain, GetLead) from a seeded leadscore.
$bin/score-load --worker-threads "$WORKERS" seed "$LEADSCORE_ADDR"
$bin/score-load --worker-threads "$WORKERS" echo "$ECHO_ADDR" --like "$LEADSCORE_ADDR" &
echoing=$!
pids+=("$echoing")
wait_for "$ECHO_ADDR" "$echoing"
kill "$serving"; wait "$serving" 2>/dev/null || true
echo "== the same-size echo: RecordEvents answered at once"
$bin/write-load "$ECHO_ADDR" --writers 1,8,64 --seconds "$SECONDS_EACH" --worker-threads "$WORKERS"
kill "$echoing"; wait "$echoing" 2>/dev/null || true

echo "== Redis, appendonly yes, appendfsync always: SET"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
mkdir -p "$work/redis"
redis-server --port "$REDIS_PORT" --dir "$work/redis" --save "" --appendonly yes --appendfsync always --daemonize yes >/dev/null
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
summary() { tr '\r' '\n' | grep "requests per second" | tail -1; }
for clients in 1 8 64; do
    n=$((clients * 2000 * SECONDS_EACH / 8 + 20000))
    echo "$clients clients: $(redis-benchmark -p "$REDIS_PORT" -c "$clients" -n "$n" -r 100000 -q -t set | summary)"
done
