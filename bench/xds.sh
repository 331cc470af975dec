#!/usr/bin/env bash
# xDS benchmark (issue 3): N simulated Delta ADS clients against one gw-control-plane process
# holding 10,000 routes / 2,000 clusters / 20,000 endpoints.
#
#   bench/xds.sh                      # defaults: 1000 clients, 20 route writes
#   bench/xds.sh --clients 200 --changes 50
#
# Builds in release mode, runs tests/examples/xds_bench, and tees the report to
# bench/results/xds-<UTC timestamp>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gw-control-plane --bin gw-control-plane
cargo build --release -p gw-e2e --example xds_bench
mkdir -p bench/results
out="bench/results/xds-$(date -u +%Y%m%dT%H%M%SZ).md"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
{
  echo "<!-- $(uname -srm), $(nproc) cores, $(git rev-parse --short HEAD) -->"
  target/release/examples/xds_bench --control-plane target/release/gw-control-plane "$@"
} | tee "$out"
echo "report: $out"
