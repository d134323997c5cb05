#!/usr/bin/env bash
# A three-node cluster beside a single node, on this machine, in one run. The cluster is
# examples/cluster/up.sh's: three nats-server 2.15.1 (sync_interval always, streams R3) and
# three `leadscore serve` nodes on SHARDS shards; the single node logs with fsync `always`, so
# both acknowledge a write only once it is durable. Each load goes to node-a, which serves a
# third of the shards and forwards the rest:
#   1. DialerSession: 8 hoppers kept topped up with credits, full claims, on the fresh leads;
#      then NextLead + ReportOutcome loops (LEADS callable leads stored through the node);
#   2. acknowledged RecordEvents, 1, 8 and 64 writers;
#   3. GetLead (a stored lead with its events) and TopLeads (100 best, every shard merged),
#      one at a time: the latency a forwarded or gathered call adds.
# After each load, the CPU seconds the single node, the cluster's nodes and its NATS servers
# used: two cores cannot show scaling, CPU per operation can.
# Usage: bench/cluster_node_bench.sh   (LEADS, SECONDS_EACH, SHARDS override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
LEADS=${LEADS:-20000}
SECONDS_EACH=${SECONDS_EACH:-8}
SHARDS=${SHARDS:-$([ "${SMOKE:-}" = 1 ] && echo 8 || echo 64)}
WORKERS=0
LEADSCORE_ADDR=127.0.0.1:25081

build
refuse_taken "$LEADSCORE_ADDR"
cluster=$work/cluster
bench_cleanup() { examples/cluster/down.sh "$cluster" >/dev/null 2>&1 || true; }
LEADSCORE_BIN=$bin/leadscore SHARDS=$SHARDS examples/cluster/up.sh "$cluster" >"$work/up.txt"
node_a=$(awk '/^node-a/ {print $3}' "$work/up.txt")
mapfile -t cluster_pids <"$cluster/pids"
serve 'fsync = "always"'
wait_for "$LEADSCORE_ADDR"

# CPU seconds used so far by the given processes (user + system).
ticks=$(getconf CLK_TCK)
cpu() { for pid in "$@"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | awk -v t="$ticks" '{s += $1} END {printf "%.2f", s / t}'; }
nats=("${cluster_pids[@]:0:3}") nodes=("${cluster_pids[@]:3:3}")
# Runs a load against the single node, then the cluster, with the cluster's CPU beside it.
both() {
    local what=$1
    shift
    echo "-- single node: $what"
    local single_before
    single_before=$(cpu "$serving")
    "$@" "$LEADSCORE_ADDR"
    awk -v n="$(cpu "$serving")" -v n0="$single_before" 'BEGIN { printf "   single node CPU: %.2f s\n", n - n0 }'
    echo "-- cluster through node-a: $what"
    local nodes_before nats_before
    nodes_before=$(cpu "${nodes[@]}") nats_before=$(cpu "${nats[@]}")
    "$@" "$node_a"
    awk -v n="$(cpu "${nodes[@]}")" -v n0="$nodes_before" -v s="$(cpu "${nats[@]}")" -v s0="$nats_before" \
        'BEGIN { printf "   cluster CPU: nodes %.2f s, NATS %.2f s\n", n - n0, s - s0 }'
}
seed() { $bin/dialer-load seed "$1" "$LEADS" && $bin/score-load seed "$1"; }
unary() { $bin/dialer-load unary "$1" --concurrency 1,16 --seconds "$SECONDS_EACH"; }
writes() { $bin/write-load "$1" --writers 1,8,64 --seconds "$SECONDS_EACH"; }
gets() { $bin/score-load load "$1" --rpc get --concurrency 1 --seconds "$SECONDS_EACH"; }
tops() { $bin/score-load load "$1" --rpc top --concurrency 1 --seconds "$SECONDS_EACH"; }
# The closed sessions hand their leases back one by one: the loops after them start once done.
sessions() { $bin/dialer-load session "$1" --sessions 8 --seconds "$SECONDS_EACH" && sleep 5; }

echo "== machine: $(nproc) cores; $SHARDS shards over 3 nodes; $LEADS callable leads"
both "storing the leads" seed
echo "== DialerSession x8, full claims, until every lead is claimed or the time is up (leases handed back on close)"
both "hoppers" sessions
echo "== NextLead + ReportOutcome, concurrency 1 and 16"
both "loops" unary
echo "== RecordEvents acknowledged, 1, 8 and 64 writers"
both "writes" writes
echo "== GetLead, one at a time"
both "reads" gets
echo "== TopLeads (100), one at a time"
both "rankings" tops
