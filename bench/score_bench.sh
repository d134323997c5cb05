#!/usr/bin/env bash
# Synchronous scoring calls against a bare peer, on this machine, in one session: Score (one
# inline lead of ten attributes and five events), ScoreBatch (a hundred), Explain and GetLead
# (stored leads) through `leadscore serve` and through a bare tonic echo that replays
# leadscore's own answers (same code, codec, transport and message sizes), at concurrency 1,
# 16 and 64 over CONNECTIONS connections, the same runtime settings on both.
# Usage: bench/score_bench.sh   (SECONDS_EACH, WORKERS, CONNECTIONS override the defaults;
# LEADSCORE_BIN runs another build of the server, e.g. an earlier commit's; OPS=1 serves as
# production does, with the metrics port on and a bearer token checked on every call, the
# same token sent to the echo so that requests are the same size)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECONDS_EACH=${SECONDS_EACH:-8}
WORKERS=${WORKERS:-1}
CONNECTIONS=${CONNECTIONS:-4}
LEADSCORE_ADDR=127.0.0.1:25075
ECHO_ADDR=127.0.0.1:25076
METRICS_ADDR=127.0.0.1:25077

build
LEADSCORE_BIN=${LEADSCORE_BIN:-$bin/leadscore}
refuse_taken "$LEADSCORE_ADDR" "$ECHO_ADDR" "$METRICS_ADDR"
ops=()
if [ "${OPS:-}" = 1 ]; then
    export LEADSCORE_TOKEN=ls_score-bench
    digest=$(printf %s "$LEADSCORE_TOKEN" | sha256sum | cut -d' ' -f1)
    ops=('[metrics]' "listen = \"$METRICS_ADDR\"" '[[auth.tokens]]' 'name = "bench"' "sha256 = \"$digest\""
        'roles = ["ingest", "reader", "scorer"]')
fi
load() { $bin/score-load --worker-threads "$WORKERS" "$@"; }

echo "== machine: $(nproc) cores; runtime worker threads per process: $WORKERS; metrics and token: ${OPS:-0}"
serve "${ops[@]}"
wait_for "$LEADSCORE_ADDR"
load seed "$LEADSCORE_ADDR"
# The binary itself, not through `load`: a backgrounded function runs in a subshell, and
# killing that would leave the echo running.
$bin/score-load --worker-threads "$WORKERS" echo "$ECHO_ADDR" --like "$LEADSCORE_ADDR" &
pids+=($!)
wait_for "$ECHO_ADDR" "$!"
for rpc in score batch explain get; do
    echo "== $rpc: leadscore, then the echo"
    load load "$LEADSCORE_ADDR" --rpc "$rpc" --connections "$CONNECTIONS" --seconds "$SECONDS_EACH"
    load load "$ECHO_ADDR" --rpc "$rpc" --connections "$CONNECTIONS" --seconds "$SECONDS_EACH"
done
