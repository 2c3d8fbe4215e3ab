#!/usr/bin/env python3
"""Time tokenledger and DuckDB on the same SPEC work over the same day.

Each engine runs in its own process; wall time and peak RSS come from
os.wait4 on that process. DuckDB does what SPEC 1-3 ask of one day: read the
partitions D-1..D+1, keep the day by ts, de-duplicate (latest ts, then most
tokens, then greatest object key and row number), price each request by the
row in force at its ts (range join), and compute ops_daily, ops_by_model and
finance_by_dimension with quantile_cont percentiles, written as CSV.
Its finance numbers are then compared cell by cell with tokenledger's: the
bench doubles as a second-engine check at scale.

The second engine takes nothing from tokenledger's outputs: it resolves the
logged model names by applying the config's `[[pricing.aliases]]` rules
itself (first matching rule; `model` exact, `model_regex` anchored, `$1`,
`${name}` and `$0` expansions), and chooses each currency's FX rate itself
(the latest on or before the report date). What it does not check is printed
at the end.

usage: bench.py --bin target/release/tokenledger --lake DIR --date YYYY-MM-DD [--config FILE]
       [--floor FLOOR_BIN] [--rounds N] [--label NAME]

The engines alternate, round by round; the figures printed are medians.
"""
import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import ROUND_HALF_EVEN, Decimal, getcontext

getcontext().prec = 60

DUCKDB_SCRIPT = r"""
import duckdb, json, sys
import re, tomllib
lake, date, out, config, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
d = __import__('datetime').date.fromisoformat(date)
days = [(d + __import__('datetime').timedelta(days=k)).isoformat() for k in (-1, 0, 1)]
import glob
files = sorted(f for day in days for f in glob.glob(f"{lake}/requests/date={day}/*.parquet"))
file_list = ", ".join(f"'{f}'" for f in files)
# Alias rules from the config, applied here to every logged pair.
rules = tomllib.load(open(config, "rb")).get("pricing", {}).get("aliases", []) if config else []
def expand(template, m):
    # $1, ${name}, $0 as the regex crate expands them
    return re.sub(r"\$(\{(\w+)\}|(\d+))", lambda g: m.group(int(g.group(3)) if g.group(3) else g.group(2)) or "", template)
def resolve(provider, model):
    for r in rules:
        if "provider" in r and r["provider"] != provider:
            continue
        if "model" in r:
            if r["model"] != model:
                continue
            target = r["price_model"]
        else:
            m = re.fullmatch(r["model_regex"], model)
            if not m:
                continue
            target = expand(r["price_model"], m)
        return [provider, model, r.get("price_provider", provider), target]
    return [provider, model, provider, model]
pairs = con.execute(f"SELECT DISTINCT provider, model FROM read_parquet([{file_list}], union_by_name=true)").fetchall()
con.execute("CREATE TABLE alias(provider VARCHAR, model VARCHAR, price_provider VARCHAR, price_model VARCHAR)")
if pairs:
    con.executemany("INSERT INTO alias VALUES (?, ?, ?, ?)", [resolve(p, m) for p, m in pairs])
# Per-token prices, and operand widths whose products fit 38 digits: DuckDB
# computes wider decimal products and decimal quotients in floating point.
con.execute(f'''
CREATE TABLE prices AS SELECT provider, model,
  CAST(CAST(input_usd_per_1k AS DECIMAL(24,20)) * CAST('0.001' AS DECIMAL(4,3)) AS DECIMAL(24,23)) AS pin,
  CAST(CAST(output_usd_per_1k AS DECIMAL(24,20)) * CAST('0.001' AS DECIMAL(4,3)) AS DECIMAL(24,23)) AS pout,
  CAST(CAST(coalesce(cache_read_usd_per_1k, input_usd_per_1k) AS DECIMAL(24,20)) * CAST('0.001' AS DECIMAL(4,3)) AS DECIMAL(24,23)) AS pcr,
  CAST(CAST(coalesce(cache_write_usd_per_1k, input_usd_per_1k) AS DECIMAL(24,20)) * CAST('0.001' AS DECIMAL(4,3)) AS DECIMAL(24,23)) AS pcw,
  CAST(valid_from AS TIMESTAMPTZ) AS vf, coalesce(CAST(valid_to AS TIMESTAMPTZ), TIMESTAMPTZ '9999-01-01') AS vt
FROM read_csv('{lake}/prices.csv', all_varchar=true)''')
# Each currency's rate: the latest on or before the report date; USD is 1.
import os.path
con.execute("CREATE TABLE fx(currency VARCHAR, rate DECIMAL(18,12))")
con.execute("INSERT INTO fx VALUES ('USD', 1)")
if os.path.exists(f"{lake}/fx.csv"):
    con.execute(f'''INSERT INTO fx SELECT upper(trim(currency)), CAST(arg_max(usd_per_unit, CAST(date AS DATE)) AS DECIMAL(18,12))
      FROM read_csv('{lake}/fx.csv', all_varchar=true) WHERE CAST(date AS DATE) <= DATE '{date}' AND upper(trim(currency)) <> 'USD' GROUP BY 1''')
con.execute(f'''
CREATE TEMP TABLE priced AS
WITH raw AS (
  SELECT ts, trace_id, tags, provider, model, latency_ms, error, cache_hit, citation_rate, human_reviewed,
    human_approved, input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens,
    cost_actual, currency, filename, file_row_number
  FROM read_parquet([{file_list}], filename=true, file_row_number=true, union_by_name=true)
  WHERE ts >= TIMESTAMPTZ '{date} 00:00:00+00' AND ts < TIMESTAMPTZ '{date} 00:00:00+00' + INTERVAL 1 DAY
),
kept AS (
  SELECT * EXCLUDE (filename, file_row_number, trace_id), count(*) OVER (PARTITION BY trace_id) - 1 AS dropped FROM raw
  QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY ts DESC, input_tokens + output_tokens DESC, filename DESC, file_row_number DESC) = 1
),
t AS (
  SELECT k.*,
    CAST(greatest(k.input_tokens - coalesce(k.cache_read_input_tokens,0) - coalesce(k.cache_creation_input_tokens,0), 0) AS DECIMAL(12,0)) AS u,
    CAST(coalesce(k.cache_read_input_tokens,0) AS DECIMAL(12,0)) AS r,
    CAST(coalesce(k.cache_creation_input_tokens,0) AS DECIMAL(12,0)) AS w,
    CAST(k.output_tokens AS DECIMAL(12,0)) AS o
  FROM kept k
)
SELECT k.* EXCLUDE (tags, u, r, w, o), coalesce(k.tags.dept, '(untagged)') AS dept, coalesce(k.tags.project, '(untagged)') AS project,
  coalesce(k.tags.task, '(untagged)') AS task, p.pin IS NOT NULL AS priced,
  CASE WHEN p.pin IS NULL THEN NULL WHEN k.cache_hit THEN CAST(0 AS DECIMAL(38,23)) ELSE
    CAST(k.u * p.pin AS DECIMAL(38,23)) + CAST(k.r * p.pcr AS DECIMAL(38,23))
    + CAST(k.w * p.pcw AS DECIMAL(38,23)) + CAST(k.o * p.pout AS DECIMAL(38,23)) END AS cost,
  CASE WHEN p.pin IS NULL THEN NULL WHEN NOT k.cache_hit THEN CAST(0 AS DECIMAL(38,23)) ELSE
    CAST(k.u * p.pin AS DECIMAL(38,23)) + CAST(k.r * p.pcr AS DECIMAL(38,23))
    + CAST(k.w * p.pcw AS DECIMAL(38,23)) + CAST(k.o * p.pout AS DECIMAL(38,23)) END AS savings,
  -- narrow operands: DuckDB's product of two wide decimals is not exact;
  -- a negative or absurd logged cost is invalid, not a credit
  CAST(CASE WHEN k.cost_actual >= 0 AND k.cost_actual < 1e15
       THEN CAST(k.cost_actual AS DECIMAL(18,11)) * fx.rate END
    AS DECIMAL(38,23)) AS logged
FROM t k
LEFT JOIN fx ON fx.currency = upper(trim(k.currency))
LEFT JOIN alias a ON k.provider = a.provider AND k.model = a.model
LEFT JOIN prices p ON p.provider = coalesce(a.price_provider, k.provider) AND p.model = coalesce(a.price_model, k.model)
  AND k.ts >= p.vf AND k.ts < p.vt
''')
con.execute(f'''
COPY (SELECT DATE '{date}' AS date, dept, project, task, provider, model, count(*) AS requests,
  sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
  CAST(sum(cost) AS VARCHAR) AS cost_usd, CAST(sum(savings) AS VARCHAR) AS cache_savings_usd,
  CAST(sum(logged) AS VARCHAR) AS logged_cost_usd,
  CAST(sum(cost) FILTER (WHERE priced AND NOT cache_hit) AS VARCHAR) AS priced_cost,
  sum(input_tokens + output_tokens) FILTER (WHERE priced AND NOT cache_hit) AS priced_tokens,
  count(*) FILTER (WHERE NOT priced) AS unpriced_requests
FROM priced GROUP BY ALL ORDER BY ALL) TO '{out}/finance_by_dimension.csv' (HEADER)''')
con.execute(f'''
COPY (SELECT provider, model, count(*) AS requests, count(*) FILTER (WHERE error) / count(*) AS error_rate,
  quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.95) AS p95, quantile_cont(latency_ms, 0.99) AS p99,
  count(*) FILTER (WHERE cache_hit) / count(*) AS cache_hit_rate, avg(citation_rate) AS citation_rate_mean,
  count(*) FILTER (WHERE human_reviewed) AS human_reviewed,
  count(*) FILTER (WHERE human_reviewed AND human_approved) / nullif(count(*) FILTER (WHERE human_reviewed), 0) AS pass_rate,
  sum(dropped) AS duplicates_dropped
FROM priced GROUP BY ALL ORDER BY ALL) TO '{out}/ops_by_model.csv' (HEADER)''')
con.execute(f'''
COPY (SELECT count(*) AS requests, count(*) / 86400 AS qps_avg,
  (SELECT max(n) FROM (SELECT count(*) n FROM priced GROUP BY date_trunc('minute', ts))) / 60 AS qps_peak,
  quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.95) AS p95, quantile_cont(latency_ms, 0.99) AS p99,
  sum(dropped) AS duplicates_dropped
FROM priced) TO '{out}/ops_daily.csv' (HEADER)''')
"""


def timed(cmd, env=None):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} failed with {code}:\n{out}\n{err}")
    return wall, usage.ru_maxrss / 1024.0, out, usage.ru_utime + usage.ru_stime


def read_csv(path, key):
    with open(path) as f:
        return {tuple(r[k] for k in key): r for r in csv.DictReader(f)}


def half_even(x, places=6):
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def compare(ours_dir, duck_dir):
    """Every finance cell must equal DuckDB's exact value rounded half to even."""
    key = ["dept", "project", "task", "provider", "model"]
    ours = read_csv(f"{ours_dir}/finance_by_dimension.csv", key)
    duck = read_csv(f"{duck_dir}/finance_by_dimension.csv", key)
    assert set(ours) == set(duck), f"row keys differ: {set(ours) ^ set(duck)}"
    cells = 0
    for k, o in ours.items():
        d = duck[k]
        for col in ["requests", "input_tokens", "output_tokens", "unpriced_requests"]:
            assert int(o[col]) == int(d[col]), (k, col, o[col], d[col])
        for col in ["cost_usd", "cache_savings_usd", "logged_cost_usd"]:
            if o[col] == "" or d[col] == "":
                assert o[col] == d[col] == "", (k, col, o[col], d[col])
            else:
                assert Decimal(o[col]) == half_even(Decimal(d[col])), (k, col, o[col], d[col])
            cells += 1
        if d["priced_tokens"] and int(d["priced_tokens"]) > 0:
            exact = Decimal(d["priced_cost"]) * 1000 / Decimal(d["priced_tokens"])
            assert Decimal(o["cost_per_1k_usd"]) == half_even(exact), (k, o["cost_per_1k_usd"], exact)
        else:
            assert o["cost_per_1k_usd"] == "", k
        cells += 1
    key = ["provider", "model"]
    ours = read_csv(f"{ours_dir}/ops_by_model.csv", key)
    duck = read_csv(f"{duck_dir}/ops_by_model.csv", key)
    worst_lat = 0.0
    for k, o in ours.items():
        d = duck[k]
        assert int(o["requests"]) == int(d["requests"]) and int(o["duplicates_dropped"]) == int(d["duplicates_dropped"]), k
        for ours_col, duck_col in [("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99")]:
            rel = abs(float(o[ours_col]) - float(d[duck_col])) / max(float(d[duck_col]), 1e-9)
            worst_lat = max(worst_lat, rel)
            assert rel <= 0.01, (k, ours_col, o[ours_col], d[duck_col])
    return cells, worst_lat


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def clear_outputs(lake):
    """Each round starts from the same lake: no reports, rollups or records of earlier rounds."""
    import shutil
    for d in ["reports", "rollups", "incidents", "outbox", "deliveries"]:
        shutil.rmtree(os.path.join(lake, d), ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--floor", help="the floor bench's executable (cargo bench --bench floor --no-run)")
    ap.add_argument("--lake", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs the engines one after the other")
    ap.add_argument("--label", default="", help="a name for this day in the summary line")
    ap.add_argument("--config", default="", help="the config both engines read (its alias rules)")
    a = ap.parse_args()

    env = dict(os.environ, TOKENLEDGER_RUN__THREADS=str(a.threads), TOKENLEDGER_LOG="warn")
    cmd = [a.bin, "run", "--lake", a.lake, "--date", a.date] + (["--config", a.config] if a.config else [])
    tl, dk, fl = [], [], []
    # CPU seconds (user + system) of each process: on a host that loses
    # time to steal or neighbours, their ratios move far less than wall's.
    tl_cpu, dk_cpu, fl_cpu = [], [], []
    floor_info = {}
    with tempfile.TemporaryDirectory() as duck_out:
        script = os.path.join(duck_out, "duck.py")
        open(script, "w").write(DUCKDB_SCRIPT)
        for r in range(a.rounds):
            # Alternate who goes first, so that neither always meets a warm page cache.
            order = ["tl", "dk", "fl"] if r % 2 == 0 else ["fl", "dk", "tl"]
            for who in order:
                if who == "tl":
                    clear_outputs(a.lake)
                    wall, rss, _, cpu = timed(cmd, env)
                    tl.append((wall, rss))
                    tl_cpu.append(cpu)
                elif who == "dk":
                    wall, rss, _, cpu = timed([sys.executable, script, a.lake, a.date, duck_out, a.config, str(a.threads)])
                    dk.append((wall, rss))
                    dk_cpu.append(cpu)
                elif a.floor:
                    wall, rss, out, cpu = timed([a.floor, "--lake", a.lake, "--date", a.date, "--threads", str(a.threads)])
                    floor_info = json.loads(out.strip().splitlines()[-1])
                    fl.append((floor_info["floor_seconds"], rss))
                    fl_cpu.append(cpu)
            line = f"round {r + 1}: tokenledger {tl[-1][0]:6.2f} s {tl[-1][1]:6.0f} MiB | duckdb {dk[-1][0]:6.2f} s {dk[-1][1]:6.0f} MiB"
            if fl:
                line += f" | floor {fl[-1][0]:6.2f} s"
            print(line, flush=True)
        cells, worst_latency = compare(f"{a.lake}/reports/date={a.date}", duck_out)
    manifest = json.load(open(f"{a.lake}/reports/date={a.date}/manifest.json"))
    rows = manifest["rows"]
    print(f"rows listed {rows['listed']:,}, kept {rows['kept']:,}, duplicates dropped {rows['duplicates_dropped']:,}; "
          f"objects read {len(manifest['inputs']['requests'])}")
    tl_wall, tl_rss = median([w for w, _ in tl]), median([m for _, m in tl])
    dk_wall, dk_rss = median([w for w, _ in dk]), median([m for _, m in dk])
    print(f"tokenledger: {tl_wall:7.2f} s  peak RSS {tl_rss:7.0f} MiB  (median of {len(tl)})")
    print(f"duckdb:      {dk_wall:7.2f} s  peak RSS {dk_rss:7.0f} MiB")
    print(f"ratio tokenledger/duckdb: wall {tl_wall / dk_wall:.2f}x (goal <= 0.35x), RSS {tl_rss / dk_rss:.2f}x (goal <= 0.20x)")
    tl_c, dk_c = median(tl_cpu), median(dk_cpu)
    print(f"CPU seconds (user + system, medians): tokenledger {tl_c:.2f}, duckdb {dk_c:.2f}: {tl_c / dk_c:.2f}x")
    summary = {"label": a.label, "rows": rows["listed"], "objects": len(manifest["inputs"]["requests"]),
               "tokenledger_s": round(tl_wall, 2), "tokenledger_mib": round(tl_rss), "duckdb_s": round(dk_wall, 2),
               "duckdb_mib": round(dk_rss), "wall_ratio": round(tl_wall / dk_wall, 2), "rss_ratio": round(tl_rss / dk_rss, 2),
               "tokenledger_cpu_s": round(tl_c, 2), "duckdb_cpu_s": round(dk_c, 2), "cpu_ratio": round(tl_c / dk_c, 2)}
    if fl:
        fl_wall = median([w for w, _ in fl])
        print(f"floor (DataFusion scan of the {floor_info['columns']} columns read + 64-bit key de-dup): {fl_wall:7.2f} s; "
              f"tokenledger/floor {tl_wall / fl_wall:.2f}x (goal <= 2x); {floor_info['trace_keys']:,} trace keys, {floor_info['rows_with_a_repeated_key']:,} rows with a repeated key")
        summary.update({"floor_s": round(fl_wall, 2), "floor_ratio": round(tl_wall / fl_wall, 2)})
        fl_c = median(fl_cpu)
        print(f"CPU seconds of the floor process {fl_c:.2f}: tokenledger/floor {tl_c / fl_c:.2f}x")
        summary.update({"floor_cpu_s": round(fl_c, 2), "floor_cpu_ratio": round(tl_c / fl_c, 2)})
    print(f"agreement: {cells} money cells equal to DuckDB's exact values rounded half to even; worst latency percentile difference {worst_latency * 100:.3f}%")
    print("derived by DuckDB itself: day window, de-duplication, alias resolution from the config's rules, price versions by ts, FX rate per currency")
    print("not checked here: reconciliation, anomalies, data-quality counts, qps, cache/citation/review rates, rollups and dashboards (the test suite pins those on hand-computed fixtures)")
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
