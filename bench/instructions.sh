#!/usr/bin/env bash
# bench/instructions.sh [BIN...] — user-space instructions per proxied request, by callgrind.
#
# Wall-clock A/Bs on this VM swing by several percent between rounds; an instruction count does
# not. Each BIN (default: gw-bench-proxy built with the dist profile) serves 5,000 and then
# 25,000 requests (`h2load --h1 -c64`, the kit's upstream) under `valgrind --tool=callgrind`;
# the difference over 20,000 is the marginal count per request (start-up cancels out). Kernel
# work is not counted: this measures the proxy's own code only. For what each function costs:
#   valgrind --tool=callgrind --callgrind-out-file=cg.out BIN 127.0.0.1:PORT; callgrind_annotate cg.out
#
#   bash bench/instructions.sh                      # the current code
#   bash bench/instructions.sh /tmp/a /tmp/b        # two builds (cp target/dist/gw-bench-proxy /tmp/a)
#   ARGS="127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083 2" bash bench/instructions.sh   # 2 workers
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$(cd "$ROOT/.." && pwd)/shared/peers}"
PORT="${PORT:-18651}"
# More arguments for gw-bench-proxy after its listen address: upstreams, workers, strategy.
read -r -a ARGS <<<"${ARGS:-}"
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load is needed (the peer kit's install.sh puts it in)" >&2; exit 2; }
if [[ $# -eq 0 ]]; then
  (cd "$ROOT" && cargo build --profile dist -q -p gw-bench-proxy)
  set -- "$ROOT/target/dist/gw-bench-proxy"
fi
"$PEERS/upstream.sh" start >/dev/null
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# Total instructions of $1 serving $2 requests.
count() {
  local bin=$1 n=$2
  taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" "$bin" "127.0.0.1:$PORT" "${ARGS[@]}" >"$OUT/log" 2>&1 &
  local vp=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
  local said
  said=$(taskset -c 0 h2load --h1 -n "$n" -c 64 -t 1 "http://127.0.0.1:$PORT/")
  grep -q " $n succeeded" <<<"$said" \
    || { echo "h2load did not get $n answers from $bin" >&2; kill "$vp"; exit 1; }
  kill -INT "$vp"; wait "$vp" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$OUT/cg"
}

for bin in "$@"; do
  a=$(count "$bin" 5000); b=$(count "$bin" 25000)
  echo "$bin: $(( (b - a) / 20000 )) instructions per request"
done
