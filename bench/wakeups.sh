#!/usr/bin/env bash
# bench/wakeups.sh PORT [SECONDS] — what one request costs the proxy on PORT and the two processes
# that share CPU 0 in the peer kit (the upstream nginx worker and wrk), under `wrk -t1 -c64`:
# sleeps (voluntary context switches) and user/system CPU µs per request. Start the kit's upstream
# and the proxy first, pinned as the kit pins (bench/ab.sh does both). This is how the wake-up
# figures in data-plane/README.md were measured. Requests in the window = wrk's rate × its length.
set -euo pipefail
PORT="$1"; SECS="${2:-4}"
pids_of() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
last_child() { local c; c=$(for p in "$@"; do pgrep -P "$p" || true; done | tail -1); echo "${c:-${*: -1}}"; }
UP=$(last_child $(pids_of 18081))   # the upstream nginx worker
PX=$(last_child $(pids_of "$PORT")) # the proxy (its worker, when it has one)
OUT=$(mktemp)
taskset -c 0 wrk -t1 -c64 -d$((SECS + 2))s "http://127.0.0.1:$PORT/" >"$OUT" &
WP=$!
sleep 1
# sleeps summed over a process's threads, then user and system ticks
snap() {
  for p in "$PX" "$UP" "$WP"; do
    cat /proc/"$p"/task/*/status | awk '/^voluntary_ctxt_switches/{s+=$2} END{printf "%d ", s}'
    awk '{printf "%d %d ", $14, $15}' "/proc/$p/stat"
  done
  date +%s%N
}
A=$(snap); sleep "$SECS"; B=$(snap)
wait "$WP"
RPS=$(awk '/Requests\/sec/{print $2}' "$OUT"); rm -f "$OUT"
python3 - "$PORT" "$RPS" "$(getconf CLK_TCK)" "$A" "$B" <<'PY'
import sys
port, rps, hz = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
a, b = (list(map(int, s.split())) for s in sys.argv[4:6])
n = rps * (b[9] - a[9]) / 1e9
print(f"port {port}: {rps:.0f} req/s")
for i, name in enumerate(["proxy", "upstream", "wrk"]):
    sl, ut, st = ((b[3 * i + k] - a[3 * i + k]) for k in range(3))
    print(f"  {name:8} sleeps/req {sl / n:.3f}  user {ut * 1e6 / hz / n:5.2f} µs/req  sys {st * 1e6 / hz / n:5.2f} µs/req")
PY
