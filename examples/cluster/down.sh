#!/usr/bin/env bash
# Stops the cluster examples/cluster/up.sh started from FOLDER (default: target/cluster): the
# nodes first (SIGTERM: each gives its shards back and leaves), then the NATS servers. The
# folder and its data stay.
set -euo pipefail
cd "$(dirname "$0")/../.."
folder=$(realpath -m "${1:-target/cluster}")
[ -e "$folder/pids" ] || { echo "down.sh: no cluster runs from $folder" >&2; exit 1; }
mapfile -t pids < "$folder/pids"
# Nodes were started after the NATS servers: stop them first, newest first.
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
done
rm "$folder/pids"
echo "stopped; data and logs stay in $folder"
