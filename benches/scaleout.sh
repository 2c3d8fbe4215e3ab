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
source "$(dirname "$0")/common.sh"
LAKE="$WORK/lake-$ROWS-scale"
bench_day "$LAKE" "$ROWS"
bench_machine
echo "== $ROWS rows, local vs $WORKERS workers on loopback =="
python3 benches/scaleout.py --bin "$BIN" --lake "$LAKE" --date "$DATE" --rows "$ROWS" \
  --workers "$WORKERS" --rounds "$ROUNDS"
