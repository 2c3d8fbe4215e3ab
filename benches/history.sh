#!/usr/bin/env bash
# What 90 days of history cost a run (the performance issue's goal: <= 1.1x
# a run with none).
#   benches/history.sh [ROWS] [DAYS]        (defaults: 10000000 90)
#   ROUNDS=5 benches/history.sh 5000000
# Writes the day with `tokenledger gen` (once, in one object, kept under
# target/bench like bench.sh's), then runs benches/history.py: the day
# alone, then with DAYS earlier days of rollups as large as its own,
# alternated ROUNDS times; prints both medians, the ratio and the stage
# times. BENCH_BIN= times a given binary instead of this tree's release
# build; BENCH_DIR= keeps the lakes elsewhere.
set -euo pipefail
ROWS=${1:-10000000}
DAYS=${2:-90}
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"
LAKE="$WORK/lake-$ROWS-one"
bench_day "$LAKE" "$ROWS" --rows-per-file "$ROWS"
bench_machine
echo "== $ROWS rows, one object, $DAYS days of history =="
python3 benches/history.py --bin "$BIN" --lake "$LAKE" --date "$DATE" \
  --config config/tokenledger.toml --days "$DAYS" --rounds "$ROUNDS"
