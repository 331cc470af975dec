#!/usr/bin/env bash
# bench/ab.sh BIN_A [BIN_B …] — quick A/B of one or more gw-bench-proxy builds against the peer kit's
# HAProxy and nginx: ROUNDS rounds of `wrk -t1 -c64 -d$D`, targets rotating, pinned as the kit pins
# (wrk + upstream on CPU 0, proxies on CPU 1). Prints each round (req/s, p99, CPU µs/request, and
# that split into user and system time) and the medians as ratios to the faster peer. For trying a change in minutes; bench/proxy.sh is the
# full, reported benchmark. Environment for a binary: wrap it in a script.
#
#   cargo build --profile dist -p gw-bench-proxy && cp target/dist/gw-bench-proxy /tmp/a
#   ... change, build, cp to /tmp/b ...
#   ROUNDS=6 D=4s bash bench/ab.sh /tmp/a /tmp/b
#
# Every build runs for the whole script, pinned to CPU 1 with the peers: a build that burns CPU
# while it is not being measured (a busy-polling loop, HAProxy's `busy-polling`) slows every other
# target's rounds and so looks faster than it is. Compare such builds one at a time.
#
# W=N (N > 1) compares N workers each: gw-bench-proxy builds with N workers, nginx with
# `worker_processes N` (and `reuseport`) and HAProxy with `nbthread N` (the kit's configs
# otherwise, on ports 18210 and 18310), nothing pinned: on a 2-core machine the proxies share the
# cores with wrk and the upstream, so compare CPU per request as much as req/s.
#   W=2 ROUNDS=6 bash bench/ab.sh /tmp/a /tmp/b
set -euo pipefail
PEERS="${PEERS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/peers}"
ROUNDS="${ROUNDS:-5}"; D="${D:-5s}"; W="${W:-1}"
OUT="$(mktemp -d)"
# `on CPUS CMD…`: CMD pinned to CPUS with one worker each, unpinned with more.
on() { if ((W == 1)); then taskset -c "$@"; else "${@:2}"; fi; }
"$PEERS/upstream.sh" start >/dev/null
pids_of() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
with_children() { for p in "$@"; do echo "$p"; pgrep -P "$p" || true; done | sort -u; }
T=() PIDS=()
if ((W == 1)); then
  PROXY_CPUS=1 "$PEERS/proxies.sh" start haproxy >/dev/null
  PROXY_CPUS=1 "$PEERS/proxies.sh" start nginx >/dev/null
  declare -A PORT=([haproxy]=18300 [nginx]=18200)
else
  mkdir -p "$OUT/nginx/logs" "$OUT/nginx/tmp"
  sed -e "s/^worker_processes 1;/worker_processes $W;/" -e '/18201/d' \
    -e 's/listen 127.0.0.1:18200 backlog=4096;/listen 127.0.0.1:18210 reuseport backlog=4096;/' \
    "$PEERS/conf/nginx-proxy.conf" >"$OUT/nginx.conf"
  nginx -p "$OUT/nginx/" -c "$OUT/nginx.conf" -e "$OUT/nginx/logs/error.log" &
  PIDS+=($!)
  sed -e "s/nbthread 1/nbthread $W/" -e 's/127.0.0.1:18300/127.0.0.1:18310/' \
    "$PEERS/conf/haproxy.cfg" >"$OUT/haproxy.cfg"
  haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
  PIDS+=($!)
  declare -A PORT=([haproxy]=18310 [nginx]=18210)
  # Unpinned: an upstream a W=1 run left on CPU 0 is let go.
  for p in $(with_children $(pids_of 18081)); do taskset -a -p -c 0-$(($(nproc) - 1)) "$p" >/dev/null; done
fi
# gwA, gwB, … on 18601, 18602, …
n=0 NAMES=ABCDEFGH
for bin in "$@"; do
  name="gw${NAMES:n:1}"; port=$((18601 + n)); n=$((n + 1))
  args=("127.0.0.1:$port" 127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083 "$W")
  # Started directly, not through `on`, so that $! is the proxy's own PID for the EXIT trap.
  if ((W == 1)); then taskset -c 1 "$bin" "${args[@]}" >"$OUT/$name.log" 2>&1 &
  else "$bin" "${args[@]}" >"$OUT/$name.log" 2>&1 &
  fi
  PIDS+=($!); PORT[$name]=$port; T+=("$name")
done
T+=(haproxy nginx)
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
for t in "${T[@]}"; do
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:${PORT[$t]}/" && break; sleep 0.1; done
done
if ((W == 1)); then
  for p in $(with_children $(pids_of 18081)); do taskset -a -p -c 0 "$p" >/dev/null; done
  for t in haproxy nginx; do for p in $(with_children $(pids_of "${PORT[$t]}")); do taskset -a -p -c 1 "$p" >/dev/null; done; done
fi
# User and system CPU ticks of a target's processes (each counted once).
ticks() {
  local u=0 s=0 pu ps
  for p in $(with_children $(pids_of "$1")); do
    read -r pu ps < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + pu)); s=$((s + ps))
  done
  echo "$u $s"
}
HZ=$(getconf CLK_TCK)
for t in "${T[@]}"; do on 0 wrk -t1 -c64 -d1s "http://127.0.0.1:${PORT[$t]}/" >/dev/null; done
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < ${#T[@]}; i++)); do
    t=${T[$(((i + r) % ${#T[@]}))]}
    read -r u0 s0 < <(ticks "${PORT[$t]}")
    out=$(on 0 wrk -t1 -c64 -d"$D" --latency "http://127.0.0.1:${PORT[$t]}/")
    read -r u1 s1 < <(ticks "${PORT[$t]}")
    awk -v t="$t" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$HZ" '
      /Requests\/sec/ {rps=$2} $1=="99%" {p99=$2} /requests in/ {n=$1}
      END {printf "%s %.0f %s cpu_us/r=%.2f user=%.2f sys=%.2f\n", t, rps, p99, (u+s)*1e6/hz/n, u*1e6/hz/n, s*1e6/hz/n}' <<<"$out"
  done
done | tee "$OUT/rounds.txt"
python3 - "$OUT/rounds.txt" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
cpu = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split(); d[f[0]].append(float(f[1]))
    for kv in f[3:]:
        k, v = kv.split("=")
        cpu[f[0]][k].append(float(v))
best = max(statistics.median(v) for k, v in d.items() if not k.startswith("gw"))
for k, v in d.items():
    c = " ".join(f"{n} {statistics.median(x):.2f}" for n, x in cpu[k].items())
    print(f"{k:8} median {statistics.median(v):9.0f}  x_faster_peer {statistics.median(v) / best:.3f}  {c}  rounds {sorted(int(x) for x in v)}")
PY
