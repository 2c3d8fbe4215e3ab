#!/usr/bin/env python3
"""One generated day, local vs a coordinator with N workers on loopback.

    benches/scaleout.sh [ROWS] [WORKERS]       (defaults: 20000000 2)

Runs `tokenledger run` locally and with `--workers`, ROUNDS times
alternating the order, each worker a real `tokenledger worker --listen
127.0.0.1:PORT` process started for the round and stopped with SIGTERM
after it. Prints the medians of: wall time, peak RSS of the coordinator and
of each worker (from wait4), the bytes that crossed the loopback interface
during the distributed run (/proc/net/dev: the shuffle, the plans and the
results; nothing else runs on the machine), and rows per second per worker.
Every CSV of the distributed run must equal the local run's byte for byte,
and every worker must have run tasks (manifest engine.tasks_by_worker).
A JSON summary line goes to stdout prefixed SUMMARY.
"""

import argparse
import filecmp
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time


def loopback_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                fields = rest.split()
                return int(fields[0])  # received == sent on lo
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"worker on {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"worker on {port} did not listen within {seconds} s")


def run(cmd, env):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed with {code}:\n{out}\n{err[-4000:]}")
    return wall, usage.ru_maxrss / 1024.0


def manifest(lake, date):
    with open(f"{lake}/reports/date={date}/manifest.json") as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rows", type=int, required=True)
    a = ap.parse_args()

    env = dict(os.environ, TOKENLEDGER_LOG="warn")
    base = ["run", "--lake", a.lake, "--date", a.date, "--log-format", "json"]
    keep = f"{a.lake}.local-reports"
    dist = f"{a.lake}.distributed-reports"
    local_walls, local_rss = [], []
    dist_walls, coord_rss, worker_rss, shuffled = [], [], [], []
    tasks = None
    for r in range(a.rounds):
        order = ["local", "dist"] if r % 2 == 0 else ["dist", "local"]
        for mode in order:
            for d in ("reports", "rollups", "_leases"):
                shutil.rmtree(f"{a.lake}/{d}", ignore_errors=True)
            if mode == "local":
                wall, rss = run([a.bin] + base, env)
                local_walls.append(wall)
                local_rss.append(rss)
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(f"{a.lake}/reports/date={a.date}", keep)
                continue
            ports = [free_port() for _ in range(a.workers)]
            workers = []
            for p in ports:
                w = subprocess.Popen(
                    [a.bin, "worker", "--listen", f"127.0.0.1:{p}", "--lake", a.lake,
                     "--log-format", "json"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                workers.append(w)
            for p, w in zip(ports, workers):
                wait_listening(p, w)
            urls = ",".join(f"http://127.0.0.1:{p}" for p in ports)
            before = loopback_bytes()
            wall, rss = run([a.bin] + base + ["--workers", urls], env)
            shuffled.append(loopback_bytes() - before)
            dist_walls.append(wall)
            coord_rss.append(rss)
            peaks = []
            for w in workers:
                w.send_signal(signal.SIGTERM)
                _, status, usage = os.wait4(w.pid, 0)
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    sys.exit(f"a worker exited {code} on SIGTERM: {w.stderr.read().decode()[-2000:]}")
                peaks.append(usage.ru_maxrss / 1024.0)
            worker_rss.append(peaks)
            engine = manifest(a.lake, a.date)["engine"]
            tasks = engine["tasks_by_worker"]
            if engine["mode"] != "distributed" or not all(n > 0 for n in tasks.values()):
                sys.exit(f"not every worker ran tasks: {engine}")
            shutil.rmtree(dist, ignore_errors=True)
            shutil.copytree(f"{a.lake}/reports/date={a.date}", dist)
        names = sorted(f for f in os.listdir(keep) if f.endswith(".csv"))
        if not names or names != sorted(f for f in os.listdir(dist) if f.endswith(".csv")):
            sys.exit(f"the runs published different CSV lists: {names}")
        for f in names:
            if not filecmp.cmp(f"{keep}/{f}", f"{dist}/{f}", shallow=False):
                sys.exit(f"{f} differs between the local and the distributed run")

    med = statistics.median
    lw, dw = med(local_walls), med(dist_walls)
    per_worker = [med(p[i] for p in worker_rss) for i in range(a.workers)]
    rate = a.rows / dw / a.workers
    print(f"local:       {lw:7.2f} s  {med(local_rss):7.0f} MiB peak")
    print(f"distributed: {dw:7.2f} s  coordinator {med(coord_rss):7.0f} MiB peak, "
          f"workers {', '.join(f'{x:.0f}' for x in per_worker)} MiB peak")
    print(f"ratio:       {dw / lw:.2f}x local wall (goal <= 1.3x on loopback); "
          f"coordinator {med(coord_rss):.0f} MiB (goal <= 256)")
    print(f"loopback:    {med(shuffled) / 1e6:.1f} MB per distributed run; tasks {tasks}")
    print(f"rate:        {rate / 1e6:.2f} M rows/s per worker (both on this machine's cores)")
    print("bytes:       every CSV identical to the local run's")
    print("SUMMARY " + json.dumps({
        "rows": a.rows, "workers": a.workers, "rounds": a.rounds,
        "local_wall_s": round(lw, 2), "local_rss_mib": round(med(local_rss)),
        "dist_wall_s": round(dw, 2), "coordinator_rss_mib": round(med(coord_rss)),
        "worker_rss_mib": [round(x) for x in per_worker],
        "loopback_mb": round(med(shuffled) / 1e6, 1), "ratio": round(dw / lw, 3),
        "rows_per_s_per_worker": round(rate), "tasks_by_worker": tasks,
    }))


if __name__ == "__main__":
    main()
