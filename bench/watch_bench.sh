#!/usr/bin/env bash
# Live ranked lists: the server's CPU and each subscriber's delay with SUBSCRIBERS watching the
# top LIMIT of LEADS leads while CHANGES score changes a second are written; the same writes
# with no subscriber first, so the watchers' own cost shows. The delay is a marker lead's,
# from its write to the diff that lists it, at each subscriber.
# Usage: bench/watch_bench.sh   (LEADS, SUBSCRIBERS, LIMIT, CHANGES, SECONDS_EACH, WORKERS
# override the defaults; LEADSCORE_BIN runs another build of the server)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-1000000}
SUBSCRIBERS=${SUBSCRIBERS:-100}
LIMIT=${LIMIT:-100}
CHANGES=${CHANGES:-5000}
SECONDS_EACH=${SECONDS_EACH:-30}
WORKERS=${WORKERS:-2}
LEADSCORE_ADDR=127.0.0.1:25078

build
refuse_taken "$LEADSCORE_ADDR"
load() { $bin/watch-load --worker-threads 1 "$@"; }

echo "== machine: $(nproc) cores; server runtime threads: $WORKERS; $(date -u +%FT%TZ)"
serve
wait_for "$LEADSCORE_ADDR"
load seed "$LEADSCORE_ADDR" --leads "$LEADS"
for subscribers in 0 "$SUBSCRIBERS"; do
    load run "$LEADSCORE_ADDR" --leads "$LEADS" --subscribers "$subscribers" --limit "$LIMIT" \
        --changes-per-second "$CHANGES" --seconds "$SECONDS_EACH" --server-pid "$serving"
done
