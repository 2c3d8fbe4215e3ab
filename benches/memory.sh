#!/usr/bin/env bash
# Run one generated day under a hard memory limit, as a Kubernetes container
# with `resources.limits.memory` would, and report the peak.
#   benches/memory.sh [ROWS] [LIMIT_MIB]     (defaults: 10000000 512)
# BENCH_BIN=path runs that binary instead of building the release one;
# BENCH_LAKE=dir uses an existing generated lake.
# The limit is a cgroup (v2 or v1) created under this shell's own cgroup,
# which needs write access to it (root, or a delegated cgroup). The job sees
# the limit itself (run.memory_limit = auto: 60% of it for query operators,
# spilling beyond). Prints wall time, peak RSS, the cgroup's peak charge
# (page cache included) and whether the kernel had to OOM-kill.
set -euo pipefail
ROWS=${1:-10000000}
LIMIT_MIB=${2:-512}
source "$(dirname "$0")/common.sh"
LAKE=${BENCH_LAKE:-"$WORK/lake-$ROWS"}
bench_day "$LAKE" "$ROWS"
rm -rf "$LAKE/reports" "$LAKE/rollups"

own=$(grep -E '^0::|:memory:' /proc/self/cgroup | head -1)
if [[ $own == 0::* ]]; then
  CG=/sys/fs/cgroup${own#0::}/tokenledger-bench-$$
  mkdir "$CG"
  echo $((LIMIT_MIB * 1024 * 1024)) > "$CG/memory.max"
  echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
  PEAK_FILE=memory.peak
else
  CG=/sys/fs/cgroup/memory${own#*:memory:}/tokenledger-bench-$$
  mkdir "$CG"
  echo $((LIMIT_MIB * 1024 * 1024)) > "$CG/memory.limit_in_bytes"
  echo $((LIMIT_MIB * 1024 * 1024)) > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
  PEAK_FILE=memory.max_usage_in_bytes
fi
trap 'rmdir "$CG" 2>/dev/null || true' EXIT

SPILL=$(mktemp -d)
set +e
/usr/bin/time -f '%e %M' -o "$WORK/memory.time" \
  sh -c "echo \$\$ > '$CG/cgroup.procs' && exec '$BIN' run --lake '$LAKE' --date $DATE --log-format json" \
  > "$WORK/memory.out" 2> "$WORK/memory.err"
code=$?
set -e
rm -rf "$SPILL"
read -r wall rss_kib < <(tail -1 "$WORK/memory.time")
peak=$(cat "$CG/$PEAK_FILE" 2>/dev/null || echo 0)
oom=$(grep -E '^(oom_kill|oom_kill_disable|under_oom) ' "$CG/memory.oom_control" 2>/dev/null | tr '\n' ' ' || true)
[ -f "$CG/memory.events" ] && oom=$(grep oom "$CG/memory.events" | tr '\n' ' ')
pool=$(grep -o '"memory_limit_bytes":[0-9]*' "$WORK/memory.err" | head -1 | cut -d: -f2)
echo "rows: $ROWS, limit: $LIMIT_MIB MiB (cgroup $CG)"
echo "exit code: $code"
echo "wall: ${wall} s"
echo "peak RSS: $((rss_kib / 1024)) MiB"
echo "cgroup peak charge (incl. page cache): $((peak / 1024 / 1024)) MiB"
echo "query memory pool: $((${pool:-0} / 1024 / 1024)) MiB"
echo "oom: ${oom:-none}"
grep '"message":"finished"' "$WORK/memory.err" || tail -5 "$WORK/memory.err"
