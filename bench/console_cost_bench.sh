#!/usr/bin/env bash
# What open consoles cost the dialer: NextLead + ReportOutcome loops through `leadscore serve`
# with no console open, then with three consoles on their live panels (each holding the
# wallboard, alerts and routing event streams a browser on those pages holds, read with curl so
# that no browser competes for the two cores), each mode on a fresh store of LEADS leads,
# alternated ROUNDS times. Reports loops/s, the server's resident memory after the run, and the
# bytes the consoles received.
# Usage: bench/console_cost_bench.sh   (LEADS, SECONDS_EACH, ROUNDS, CONCURRENCY, WORKERS override)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-300000}
SECONDS_EACH=${SECONDS_EACH:-8}
ROUNDS=${ROUNDS:-2}
CONCURRENCY=${CONCURRENCY:-16}
WORKERS=${WORKERS:-1}
LEADSCORE_ADDR=127.0.0.1:25095
CONSOLE_ADDR=127.0.0.1:25096

build
refuse_taken "$LEADSCORE_ADDR" "$CONSOLE_ADDR"
settings=('[console]' "listen = \"$CONSOLE_ADDR\"")

run() {
    local consoles=$1
    rm -rf "$work/data" "$work"/stream-*
    $bin/dialer-load fill "$work/data" "$LEADS" >/dev/null
    serve "${settings[@]}"
    until_up "$serving" $bin/dialer-load unary "$LEADSCORE_ADDR" --concurrency 1 --seconds 1
    local streams=()
    for console in $(seq "$consoles"); do
        curl -s "http://$CONSOLE_ADDR/" "http://$CONSOLE_ADDR/app.js" "http://$CONSOLE_ADDR/chart.js" >/dev/null
        for panel in wallboard scores routing; do
            curl -sN "http://$CONSOLE_ADDR/api/watch/$panel" >"$work/stream-$console-$panel" &
            streams+=($!)
        done
    done
    printf '%-12s ' "$consoles consoles"
    $bin/dialer-load --worker-threads "$WORKERS" unary "$LEADSCORE_ADDR" \
        --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH" | tr -d '\n'
    printf '; server RSS %s MB' "$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$serving/status")"
    if ((consoles)); then
        printf '; consoles received %s KB' "$(cat "$work"/stream-* | wc -c | awk '{printf "%.0f", $1 / 1024}')"
    fi
    echo
    for pid in "${streams[@]}"; do kill "$pid" 2>/dev/null || true; done
    kill "$serving"
    wait "$serving" 2>/dev/null || true
}

echo "== $(nproc) cores, $LEADS leads, concurrency $CONCURRENCY, $SECONDS_EACH s each, $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
    run 0
    run 3
done
