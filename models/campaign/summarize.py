#!/usr/bin/env python3
"""Prints the campaign's table (markdown) from the training logs: one row per configuration,
its seeds, the best validation accuracy of each run (the epoch validation chose), mean and
spread. Validation only: exploration runs never read the test set.
Usage: summarize.py [LOGDIR] (default: logs/ beside this file; files CONFIG_sSEED.train.jsonl)."""
import collections, json, os, re, statistics, sys

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "logs")

runs = collections.defaultdict(dict)
for f in sorted(os.listdir(LOGS)):
    m = re.fullmatch(r"(.+)_s(\d+)\.train\.jsonl", f)
    if not m:
        continue
    with open(os.path.join(LOGS, f)) as fh:
        log = [json.loads(line) for line in fh if line.strip()]
    cfg = json.load(open(os.path.join(HERE, m.group(1) + ".json")))
    if len(log) < cfg["train"]["epochs"]:
        continue  # unfinished
    best = max(log, key=lambda d: d["validation_accuracy"])
    runs[m.group(1)][int(m.group(2))] = (best["validation_accuracy"], best["epoch"], len(log),
                                         sum(d["seconds"] for d in log) / 60)

print("| configuration | seeds | validation per seed (epoch) | mean | spread (max-min) | minutes per run |")
print("|---|---|---|---|---|---|")
for name, by_seed in runs.items():
    v = [by_seed[s][0] * 100 for s in sorted(by_seed)]
    per = ", ".join("%.2f%% (%d)" % (by_seed[s][0] * 100, by_seed[s][1]) for s in sorted(by_seed))
    mins = ", ".join("%.0f" % by_seed[s][3] for s in sorted(by_seed))
    print("| `%s` | %s | %s | %.2f%% | %s | %s |" % (
        name, ",".join(map(str, sorted(by_seed))), per, statistics.mean(v),
        "%.2f" % (max(v) - min(v)) if len(v) > 1 else "—", mins))
