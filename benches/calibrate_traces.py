#!/usr/bin/env python3
"""Calibrate tokenledger's synthetic traffic (src/synth.rs) on real LLM traces.

Run by hand when recalibrating; neither the build, the tests nor the demo read
the traces. Prints the quantile tables and arrival statistics that
src/synth.rs embeds as constants.

Traces (see ../shared/data/README.md):
  AzureLLMInferenceTrace_conv.csv, AzureLLMInferenceTrace_code.csv
      Azure/AzurePublicDataset, CC-BY-4.0: TIMESTAMP, ContextTokens, GeneratedTokens
  mooncake_conversation_trace.jsonl
      kvcache-ai/Mooncake, Apache-2.0: timestamp (ms), input_length, output_length,
      hash_ids (512-token prefix blocks; a block seen before is a prompt-cache hit)

usage: benches/calibrate_traces.py DATA_DIR
"""
import csv
import json
import statistics
import sys
from datetime import datetime

QS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]


def quantiles(values):
    v = sorted(values)
    out = []
    for q in QS:
        i = q * (len(v) - 1)
        lo = int(i)
        hi = min(lo + 1, len(v) - 1)
        out.append(round(v[lo] + (i - lo) * (v[hi] - v[lo])))
    return out


def arrivals_cv(times):
    gaps = [b - a for a, b in zip(times, times[1:]) if b >= a]
    return statistics.pstdev(gaps) / statistics.mean(gaps), len(times) / (times[-1] - times[0])


def azure(path):
    ts, inp, out = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            t = datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f")
            ts.append(t.timestamp())
            inp.append(int(row["ContextTokens"]))
            out.append(int(row["GeneratedTokens"]))
    return ts, inp, out


def mooncake(path):
    ts, inp, out, seen, hit_blocks, all_blocks = [], [], [], set(), 0, 0
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            ts.append(r["timestamp"] / 1000.0)
            inp.append(r["input_length"])
            out.append(r["output_length"])
            for h in r["hash_ids"]:
                all_blocks += 1
                if h in seen:
                    hit_blocks += 1
                seen.add(h)
    return ts, inp, out, hit_blocks / all_blocks


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    for name in ["conv", "code"]:
        ts, inp, out = azure(f"{d}/AzureLLMInferenceTrace_{name}.csv")
        cv, rate = arrivals_cv(ts)
        print(f"azure {name}: n={len(ts)} rate={rate:.2f}/s inter-arrival cv={cv:.2f}")
        print(f"  input  {quantiles(inp)}")
        print(f"  output {quantiles(out)}")
    ts, inp, out, reuse = mooncake(f"{d}/mooncake_conversation_trace.jsonl")
    cv, rate = arrivals_cv(sorted(ts))
    print(f"mooncake: n={len(ts)} rate={rate:.2f}/s inter-arrival cv={cv:.2f} prefix-block reuse={reuse:.3f}")
    print(f"  input  {quantiles(inp)}")
    print(f"  output {quantiles(out)}")


if __name__ == "__main__":
    main()
