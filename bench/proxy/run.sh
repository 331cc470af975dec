#!/usr/bin/env bash
# gw-proxy vs Envoy 1.40, nginx and HAProxy: one worker each, same upstreams, same run,
# alternating rounds. Uses the peer kit (PEERS, default ../shared/peers next to the repository) for
# the upstream nginx, the three peers and the load generator; starts a gw control plane on
# SQLite and one gw-proxy (--workers 1) configured over xDS with the same three upstreams.
#
#   bench/proxy/run.sh            # prints the kit's table with a `gw` row; ~5 minutes
#
# Ports: control plane 18400/18401, gw-proxy 18500 (admin 19500). Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
[[ -x "$PEERS/bench.sh" ]] || { echo "peer kit not found at $PEERS (set PEERS=...)" >&2; exit 2; }
RUN="${GW_BENCH_RUN:-/tmp/gw-bench-proxy}"
mkdir -p "$RUN"

cargo build --release -q -p gw-control-plane -p gw-proxy -p gwctl --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release"

"$PEERS/install.sh" >/dev/null
"$PEERS/upstream.sh" start
"$PEERS/proxies.sh" start

cleanup() {
  [[ -n "${PROXY_PID:-}" ]] && kill "$PROXY_PID" 2>/dev/null || true
  [[ -n "${CP_PID:-}" ]] && kill "$CP_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  "$PEERS/proxies.sh" stop >/dev/null 2>&1 || true
  "$PEERS/upstream.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

rm -f "$RUN/userdb.sqlite"*
"$BIN/gw-control-plane" --db "sqlite://$RUN/userdb.sqlite" --grpc 127.0.0.1:18400 --http 127.0.0.1:18401 \
  >"$RUN/cp.out" 2>"$RUN/cp.log" &
CP_PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:18401/healthz >/dev/null && break; sleep 0.1; done

cat >"$RUN/bench.yaml" <<'YAML'
apiVersion: gw/v1
kind: Tenant
metadata: {name: bench}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: upstream, tenant: bench}
spec:
  lb: round_robin
  endpoints:
    - {address: 127.0.0.1, port: 18081}
    - {address: 127.0.0.1, port: 18082}
    - {address: 127.0.0.1, port: 18083}
---
apiVersion: gw/v1
kind: Route
metadata: {name: all, tenant: bench}
spec: {match: {pathPrefix: /}, cluster: upstream}
YAML
"$BIN/gwctl" --server http://127.0.0.1:18400 apply -f "$RUN/bench.yaml"

"$BIN/gw-proxy" --xds http://127.0.0.1:18400 --node-id bench --workers 1 \
  --listen 127.0.0.1:18500 --admin 127.0.0.1:19500 --access-log-sample 0 >"$RUN/proxy.out" 2>"$RUN/proxy.log" &
PROXY_PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:19500/ready >/dev/null && break; sleep 0.1; done
curl -fs http://127.0.0.1:19500/ready >/dev/null || { echo "gw-proxy never became ready" >&2; exit 1; }

EXTRA_TARGET=gw=127.0.0.1:18500 "$PEERS/bench.sh" | tee "$RUN/table.txt"
echo "gw-proxy RSS after load: $(awk '/VmRSS/{print $2" "$3}' /proc/$PROXY_PID/status)" | tee -a "$RUN/table.txt"
