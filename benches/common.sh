# Shared by the bench scripts (sourced, not run): the work directory, the
# binary under test and the generated days.
#   BENCH_DIR= keeps the generated lakes elsewhere (default target/bench);
#   BENCH_BIN= times a given binary (e.g. an earlier build) instead of this
#   tree's release build.
DATE=2026-10-15
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$(realpath "$BENCH_BIN")
else
  cargo build --release --quiet
  BIN=$(realpath "${CARGO_TARGET_DIR:-target}/release/tokenledger")
fi

# bench_day LAKE ROWS [GEN_ARGS...]: write the day with `tokenledger gen`
# unless the lake already has it.
bench_day() {
  local lake=$1 rows=$2
  shift 2
  if [ ! -f "$lake/prices.csv" ]; then
    "$BIN" gen --rows "$rows" --date "$DATE" --out "$lake" "$@"
  fi
}

bench_machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%F)"
}
