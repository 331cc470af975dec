#!/usr/bin/env bash
# One command, one machine: control plane on an embedded SQLite userdb, two demo upstreams,
# one gw-proxy, and the quickstart manifest applied. Ctrl-C stops everything.
#
#   deploy/dev/run.sh
#   curl -H 'x-tenant-id: acme' http://127.0.0.1:8080/users/1      # round robin over 18081/18082
#   target/release/gwctl get routes; target/release/gwctl proxies
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
cargo build --release -q -p gw-control-plane -p gw-proxy -p gwctl
BIN="$ROOT/target/release"
DATA="${GW_DATA:-$ROOT/target/gw-dev}"
mkdir -p "$DATA"

for port in 18000 18001 18081 18082 8080 19000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use on 127.0.0.1; stop what holds it (see: ss -ltnp | grep :$port)" >&2
    exit 1
  fi
done

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/gw-demo-upstream" --listen 127.0.0.1:18081 --name users-1 & pids+=($!)
"$BIN/gw-demo-upstream" --listen 127.0.0.1:18082 --name users-2 & pids+=($!)
"$BIN/gw-control-plane" --db "sqlite://$DATA/userdb.sqlite" --grpc 127.0.0.1:18000 --http 127.0.0.1:18001 & pids+=($!)
for _ in $(seq 100); do "$BIN/gwctl" --server http://127.0.0.1:18000 get tenants >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/gwctl" --server http://127.0.0.1:18000 apply -f examples/quickstart.yaml
"$BIN/gw-proxy" --xds http://127.0.0.1:18000 --node-id edge-1 --listen 127.0.0.1:8080 --admin 127.0.0.1:19000 \
  --config-cache "$DATA/proxy-cache" & pids+=($!)
echo
echo "gw is up: traffic on http://127.0.0.1:8080, admin on http://127.0.0.1:19000, API on http://127.0.0.1:18000"
echo "try: curl -H 'x-tenant-id: acme' http://127.0.0.1:8080/users/1"
wait
