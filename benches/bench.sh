#!/usr/bin/env bash
# Benchmark tokenledger against DuckDB, and against the scan floor, on
# generated days.
#   benches/bench.sh [ROWS ...]          (default: 5000000 10000000)
#   LAYOUTS="one many" ROUNDS=3 benches/bench.sh 5000000 10000000 50000000
# For each size and layout it writes a day with `tokenledger gen` (once,
# kept under target/bench): `one` is the day in one big Parquet object,
# `many` in objects of 500K rows. Both carry ~0.5% duplicate deliveries
# (some across objects) and ~2% late rows in the D+1 partition (duplicates
# across partitions). Then, ROUNDS times, alternating the order, it runs
# `tokenledger run`, DuckDB doing the same SPEC work (installed from PyPI
# into a virtualenv), and the floor (benches/floor.rs: DataFusion's scan of
# the columns read plus a de-dup on the 64-bit trace key), and prints the
# medians: wall, peak RSS, tokenledger/DuckDB and tokenledger/floor ratios
# (and the same ratios of CPU seconds, which a noisy host moves far less),
# and whether DuckDB's finance numbers equal ours. A JSON summary line per
# day ends in target/bench/summary.jsonl.
set -euo pipefail
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(5000000 10000000)
LAYOUTS=${LAYOUTS:-one many}
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"
FLOOR=$(cargo bench --bench floor --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "floor":
        print(m["executable"])' | tail -1)

if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet duckdb
fi

bench_machine
for ROWS in "${SIZES[@]}"; do
  for LAYOUT in $LAYOUTS; do
    case $LAYOUT in
      one) PER_FILE=$ROWS ;;
      many) PER_FILE=500000 ;;
      *) echo "unknown layout $LAYOUT (one, many)" >&2; exit 2 ;;
    esac
    LAKE="$WORK/lake-$ROWS-$LAYOUT"
    bench_day "$LAKE" "$ROWS" --rows-per-file "$PER_FILE"
    echo "== $ROWS rows, $LAYOUT =="
    "$WORK/venv/bin/python" benches/bench.py --bin "$BIN" --floor "$FLOOR" --lake "$LAKE" --date "$DATE" \
      --config config/tokenledger.toml --rounds "$ROUNDS" --label "$ROWS-$LAYOUT" \
      | tee "$WORK/last.txt"
    grep '^SUMMARY ' "$WORK/last.txt" | sed 's/^SUMMARY //' >> "$WORK/summary.jsonl"
  done
done
