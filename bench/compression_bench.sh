#!/usr/bin/env bash
# What compression costs and saves on loopback: ScoreBatch (a hundred inline leads of ten
# attributes and five events) and TopLeads (the hundred best stored leads) through
# `leadscore serve`, the clients asking for no compression, then gzip, then zstd, both ways;
# the three alternated ROUNDS times, since the machine drifts. Prints calls per second, latency
# and the loopback bytes of a call (request and answer, with HTTP/2 framing).
# Usage: bench/compression_bench.sh   (SECONDS_EACH, ROUNDS, WORKERS override the defaults;
# LEADSCORE_BIN runs another build of the server)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECONDS_EACH=${SECONDS_EACH:-8}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25077

build
refuse_taken "$LEADSCORE_ADDR"
load() { $bin/score-load --worker-threads "$WORKERS" "$@"; }

echo "== machine: $(nproc) cores; runtime worker threads per process: $WORKERS; $(date -u +%FT%TZ)"
serve
wait_for "$LEADSCORE_ADDR"
load seed "$LEADSCORE_ADDR"
for round in $(seq "$ROUNDS"); do
    for rpc in batch top; do
        for compression in none gzip zstd; do
            load load "$LEADSCORE_ADDR" --rpc "$rpc" --compression "$compression" --concurrency 1,16 \
                --seconds "$SECONDS_EACH"
        done
    done
done
