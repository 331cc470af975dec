#!/usr/bin/env bash
# gwctl apply of a 10,000-route file against a real control plane (release build, SQLite userdb):
# time and API calls for the first apply, an unchanged re-apply, and a diff.
#
#   bench/gwctl/apply.sh [ROUTES]        # default 10000; loopback ports 18700/18701
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N="${1:-10000}"
RUN="${GW_BENCH_RUN:-/tmp/gw-bench-gwctl}"
mkdir -p "$RUN"
cargo build --release -q -p gw-control-plane -p gwctl --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release"
rm -f "$RUN"/userdb.sqlite*
"$BIN/gw-control-plane" --db "sqlite://$RUN/userdb.sqlite" --grpc 127.0.0.1:18700 --http 127.0.0.1:18701 \
  >"$RUN/cp.out" 2>"$RUN/cp.log" &
CP=$!
trap 'kill $CP 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fs http://127.0.0.1:18701/healthz >/dev/null && break; sleep 0.1; done

python3 - "$N" >"$RUN/routes.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: bench}")
for c in range(n // 5):
    print(f"---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: c{c}, tenant: bench}}\n"
          f"spec: {{endpoints: [{{address: 127.0.0.1, port: {20000 + c % 1000}}}]}}")
for r in range(n):
    print(f"---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: r{r}, tenant: bench}}\n"
          f"spec: {{match: {{pathPrefix: /svc/{r}}}, cluster: c{r % (n // 5)}, timeout: 5s}}")
PY
export GW_SERVER=http://127.0.0.1:18700
echo "objects: 1 tenant, $((N / 5)) clusters, $N routes ($(wc -c <"$RUN/routes.yaml") bytes of YAML)"
for step in "apply (create)" "apply (unchanged)"; do
  start=$(date +%s.%N)
  "$BIN/gwctl" apply -f "$RUN/routes.yaml" -v >"$RUN/out.txt" 2>"$RUN/err.txt"
  end=$(date +%s.%N)
  printf '%-18s %6.2f s  %s\n' "$step" "$(echo "$end - $start" | bc)" "$(grep -i 'call' "$RUN/err.txt" "$RUN/out.txt" | tail -1 | sed 's/^[^:]*://')"
done
start=$(date +%s.%N)
"$BIN/gwctl" diff -f "$RUN/routes.yaml" >/dev/null && rc=0 || rc=$?
end=$(date +%s.%N)
printf '%-18s %6.2f s  exit %s\n' "diff (no change)" "$(echo "$end - $start" | bc)" "$rc"
