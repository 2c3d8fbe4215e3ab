#!/usr/bin/env python3
"""What history costs a run: the same day with and without N days of rollups.

usage: history.py --bin target/release/tokenledger --lake DIR --date YYYY-MM-DD
                  [--config FILE] [--days 90] [--rounds 3]

A run reads the rollups of the days before it (the 30-day comparisons and
route mix, the anomaly window, the budgets' month), never their request
logs. This bench first runs the day once on an empty history to get its
own rollups, then stores a copy of both rollup objects (daily and latency)
under each of the DAYS dates before it: a history of days as large as the
day itself (a run keys a rollup by its partition's date, not by the date
column inside, so the copies read as DAYS distinct days). Then, ROUNDS
times and alternating the order, it times the day with no history and
with that history in the lake, and prints the medians of wall time and
peak RSS, the ratio (the performance issue's goal: <= 1.1x), the ratio of
CPU seconds, and the pipeline's stage times of each, so that a change in
the ratio points at its stage. Every run must exit 0.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def clear_outputs(lake):
    for d in ["reports", "rollups", "incidents", "outbox", "deliveries"]:
        shutil.rmtree(os.path.join(lake, d), ignore_errors=True)


def run_measured(cmd, env):
    """Wall time, peak RSS (MiB) and stage times of one run, via wait4."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} failed with exit code {code}:\n{err.decode()[-4000:]}")
    stages = {}
    for line in err.decode().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("message") == "stage done":
            stages[event["stage"]] = stages.get(event["stage"], 0.0) + float(event["seconds"])
        elif event.get("message") == "queries done":
            for part in event["stages"].split():
                name, secs = part.split("=")
                stages["queries." + name] = float(secs.rstrip("s"))
    stages["cpu"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024.0, stages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--config", default="")
    ap.add_argument("--days", type=int, default=90, help="days of rollups before the day")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    env = dict(os.environ, TOKENLEDGER_LOG="tokenledger=info")
    cmd = [a.bin, "run", "--lake", a.lake, "--date", a.date, "--log-format", "json"]
    cmd += ["--config", a.config] if a.config else []

    # The day's own rollups, copied under each earlier date.
    clear_outputs(a.lake)
    run_measured(cmd, env)
    day = date.fromisoformat(a.date)
    store = a.lake.rstrip("/") + f".history-{a.days}"
    shutil.rmtree(store, ignore_errors=True)
    for kind in ["daily", "latency"]:
        src = os.path.join(a.lake, "rollups", kind, f"date={a.date}", "part-0.parquet")
        for i in range(1, a.days + 1):
            d = day - timedelta(days=i)
            dst = os.path.join(store, kind, f"date={d.isoformat()}")
            os.makedirs(dst)
            shutil.copyfile(src, os.path.join(dst, "part-0.parquet"))
    sizes = {kind: os.path.getsize(os.path.join(a.lake, "rollups", kind, f"date={a.date}", "part-0.parquet"))
             for kind in ["daily", "latency"]}
    print(f"history: {a.days} days before {a.date}, each a daily rollup of {sizes['daily']:,} B "
          f"and a latency rollup of {sizes['latency']:,} B (copies of the day's own)", flush=True)

    runs = {"none": [], "history": []}
    for r in range(a.rounds):
        order = ["none", "history"] if r % 2 == 0 else ["history", "none"]
        for who in order:
            clear_outputs(a.lake)
            if who == "history":
                shutil.copytree(store, os.path.join(a.lake, "rollups"))
            runs[who].append(run_measured(cmd, env))
        print(f"round {r + 1}: " + " | ".join(
            f"{who} {runs[who][-1][0]:6.2f} s {runs[who][-1][1]:6.0f} MiB" for who in ["none", "history"]), flush=True)
    clear_outputs(a.lake)

    med = {who: (median([w for w, _, _ in rs]), median([m for _, m, _ in rs])) for who, rs in runs.items()}
    for who in ["none", "history"]:
        stages = sorted({s for _, _, st in runs[who] for s in st})
        per = ", ".join(f"{s}={median([st.get(s, 0.0) for _, _, st in runs[who]]):.2f}s" for s in stages)
        print(f"{who:8} {med[who][0]:7.2f} s  peak RSS {med[who][1]:6.0f} MiB  (median of {len(runs[who])}; {per})")
    ratio = med["history"][0] / med["none"][0]
    cpu = {who: median([st["cpu"] for _, _, st in rs]) for who, rs in runs.items()}
    print(f"ratio with {a.days} days of history / none: wall {ratio:.2f}x (goal <= 1.1x), "
          f"RSS {med['history'][1] / med['none'][1]:.2f}x, CPU seconds {cpu['history'] / cpu['none']:.2f}x "
          "(user + system: on a noisy host it moves far less than wall)")
    print("SUMMARY " + json.dumps({"days": a.days, "none_s": round(med["none"][0], 2),
                                   "history_s": round(med["history"][0], 2), "wall_ratio": round(ratio, 3),
                                   "none_mib": round(med["none"][1]), "history_mib": round(med["history"][1]),
                                   "cpu_ratio": round(cpu["history"] / cpu["none"], 3)}))


if __name__ == "__main__":
    main()
