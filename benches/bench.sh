#!/usr/bin/env bash
# Benchmark tokenledger against DuckDB on one generated day.
#   benches/bench.sh [ROWS]        (default 10000000)
# Builds the release binary, writes a day with `tokenledger gen`, installs
# DuckDB from PyPI into a virtualenv, and prints both wall times, both peak
# RSS, the ratios, and how closely the two engines' numbers agree.
set -euo pipefail
ROWS=${1:-10000000}
DATE=2026-10-15
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"

cargo build --release --quiet
BIN=target/release/tokenledger

if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet duckdb
fi

LAKE="$WORK/lake-$ROWS"
if [ ! -f "$LAKE/prices.csv" ]; then
  "$BIN" gen --rows "$ROWS" --date "$DATE" --out "$LAKE"
fi
"$WORK/venv/bin/python" benches/bench.py --bin "$BIN" --lake "$LAKE" --date "$DATE" --config config/tokenledger.toml
