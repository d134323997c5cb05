#!/usr/bin/env bash
# What running in production costs the dialer: NextLead + ReportOutcome loops through
# `leadscore serve` with metrics off, with metrics on, and with metrics and a bearer token
# checked on every call, each mode on a fresh store of LEADS leads, the modes alternated
# ROUNDS times so that drift on a noisy machine shows.
# Usage: bench/ops_cost_bench.sh   (LEADS, SECONDS_EACH, ROUNDS, CONCURRENCY, WORKERS override)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-300000}
SECONDS_EACH=${SECONDS_EACH:-8}
ROUNDS=${ROUNDS:-2}
CONCURRENCY=${CONCURRENCY:-16}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25081
METRICS_ADDR=127.0.0.1:25082
TOKEN=ls_ops-cost-bench

build
refuse_taken "$LEADSCORE_ADDR" "$METRICS_ADDR"
digest=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
metrics=('[metrics]' "listen = \"$METRICS_ADDR\"")
auth=('[[auth.tokens]]' 'name = "bench"' "sha256 = \"$digest\"" 'roles = ["dialer"]')

run() {
    local mode=$1
    shift
    rm -rf "$work/data"
    $bin/dialer-load fill "$work/data" "$LEADS" >/dev/null
    serve "$@"
    local token=()
    [ "$mode" = "metrics+auth" ] && token=(--token "$TOKEN")
    until_up "$serving" $bin/dialer-load "${token[@]}" unary "$LEADSCORE_ADDR" --concurrency 1 --seconds 1
    printf '%-14s ' "$mode"
    $bin/dialer-load --worker-threads "$WORKERS" "${token[@]}" unary "$LEADSCORE_ADDR" \
        --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH"
    kill "$serving"
    wait "$serving" 2>/dev/null || true
}

echo "== $(nproc) cores, $LEADS leads, concurrency $CONCURRENCY, $SECONDS_EACH s each, $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
    run plain
    run metrics "${metrics[@]}"
    run metrics+auth "${metrics[@]}" "${auth[@]}"
done
