#!/usr/bin/env bash
# A generated day, local vs a coordinator with WORKERS workers on loopback
# (benches/scaleout.py says what is measured).
#   benches/scaleout.sh [ROWS] [WORKERS]     (defaults: 20000000 2)
# ROUNDS=2 by default; BENCH_BIN= times a given binary; BENCH_DIR= keeps the
# generated lake elsewhere (default target/bench).
set -euo pipefail
ROWS=${1:-20000000}
WORKERS=${2:-2}
ROUNDS=${ROUNDS:-2}
DATE=2026-10-15
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/tokenledger
fi
LAKE="$WORK/lake-$ROWS-scale"
if [ ! -f "$LAKE/prices.csv" ]; then
  "$BIN" gen --rows "$ROWS" --date "$DATE" --out "$LAKE"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%F)"
echo "== $ROWS rows, local vs $WORKERS workers on loopback =="
python3 benches/scaleout.py --bin "$BIN" --lake "$LAKE" --date "$DATE" --rows "$ROWS" \
  --workers "$WORKERS" --rounds "$ROUNDS"
