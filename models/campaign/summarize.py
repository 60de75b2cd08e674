#!/usr/bin/env python3
"""Prints the campaign's table (markdown) from the training logs and the test evaluations kept
beside them: one row per configuration, its seeds, the best validation accuracy of each run (the
epoch validation chose), and, where evaluate.py has read the test set for the finished model,
the test accuracy and, for trellises, the multipath point validation chose within 1.2x a single
path with its test accuracy. Means are over seeds, ± the sample standard deviation.
Then McNemar's exact test between each configuration and the thin network of its schedule
(`s30_thin`, `f150_thin`, or `a15_thin` for the weight averages), each on the seed whose test
accuracy is closest to its configuration's mean. Then each weight average (`a15_*`, whose
logs/CONFIG_sSEED.average.json average.py wrote) against the model it continued from.
Last, how much validation moves from epoch to epoch in the final learning-rate stage of each
schedule, and how far the best reading (the epoch validation chose) lies above that stage's
mean: the lift that choosing the best of many noisy readings gives a model on validation and
not on the test set.
Usage: summarize.py [LOGDIR] (default: logs/ beside this file; files CONFIG_sSEED.train.jsonl
and CONFIG_sSEED.eval.json)."""
import collections, json, math, os, re, statistics, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def mean_sd(v, scale=100):
    v = [x * scale for x in v]
    if len(v) == 1:
        return "%.2f" % v[0]
    return "%.2f ± %.2f" % (statistics.mean(v), statistics.stdev(v))


def mcnemar(wrong_a, wrong_b):
    """Exact two-sided McNemar test: (right only in A, right only in B, p)."""
    a, b = set(wrong_a), set(wrong_b)
    only_a, only_b = len(b - a), len(a - b)  # A right where B wrong, and the reverse
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return only_a, only_b, p


def main():
    logs = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "logs")
    runs = collections.defaultdict(dict)
    averages = collections.defaultdict(dict)
    for f in sorted(os.listdir(logs)):
        m = re.fullmatch(r"(.+)_s(\d+)\.train\.jsonl", f)
        if not m:
            continue
        with open(os.path.join(logs, f)) as fh:
            log = [json.loads(line) for line in fh if line.strip()]
        cfg = json.load(open(os.path.join(HERE, m.group(1) + ".json")))
        # a15_X_fromN (run with seed N) continues f150_X seed N: one configuration, a15_X
        name, seed = re.sub(r"^(a15_.+)_from\d+$", r"\1", m.group(1)), int(m.group(2))
        if len(log) < cfg["train"]["epochs"]:
            continue  # unfinished
        best = max(log, key=lambda d: d["validation_accuracy"])
        avg = os.path.join(logs, "%s_s%s.average.json" % m.groups())
        if os.path.exists(avg):  # weight averaging (average.py): the average is the model
            avg = json.load(open(avg))
            best = {"validation_accuracy": avg["average_validation"], "epoch": "avg"}
            averages[name][seed] = avg
        tail = [d["validation_accuracy"] for d in log if d["lr"] == log[-1]["lr"]]
        ev = os.path.join(logs, "%s_s%s.eval.json" % m.groups())
        runs[name][seed] = {
            "val": best["validation_accuracy"], "epoch": best["epoch"],
            "minutes": sum(d["seconds"] for d in log) / 60, "tail": tail,
            "eval": json.load(open(ev)) if os.path.exists(ev) else None}

    print("| configuration | seeds | MACs per sample | validation per seed (epoch) | validation "
          "| test per seed | test | multipath within 1.2x (validation's choice): point, x single, "
          "test | minutes per run |")
    print("|---|---|---|---|---|---|---|---|---|")
    closest = {}
    for name, by_seed in runs.items():
        seeds = sorted(by_seed)
        r = [by_seed[s] for s in seeds]
        per = ", ".join("%.2f (%s)" % (x["val"] * 100, x["epoch"]) for x in r)
        ev = [x["eval"] for x in r if x["eval"]]
        test_per = ", ".join("%.2f" % (x["eval"]["test"]["accuracy"] * 100) if x["eval"] else "—"
                             for x in r)
        test = mean_sd([e["test"]["accuracy"] for e in ev]) if ev else "—"
        mp = "—"
        mps = [e["multipath"] for e in ev if "multipath" in e]
        if mps:
            mp = "; ".join("%s, %.3f, %.2f" % (m["name"], m["x_single"], m["test"]["accuracy"] * 100)
                           for m in mps)
            if len(mps) > 1:
                mp += " (mean %s)" % mean_sd([m["test"]["accuracy"] for m in mps])
        if ev:
            mu = statistics.mean(e["test"]["accuracy"] for e in ev)
            closest[name] = min(ev, key=lambda e: abs(e["test"]["accuracy"] - mu))
        macs = "{:,}".format(round(ev[0]["test"]["mean_macs"])) if ev else "—"
        print("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, ",".join(map(str, seeds)), macs, per, mean_sd([x["val"] for x in r]), test_per, test,
            mp, ", ".join("%.0f" % x["minutes"] for x in r)))

    # Each run against the thin network of its own schedule: f150_* against f150_thin, the
    # weight averages a15_* against a15_thin, the 30-epoch screening and the runs continued
    # from it against s30_thin.
    def base_of(name):
        return {"f150": "f150_thin", "a15": "a15_thin"}.get(name.split("_")[0], "s30_thin")
    for base in ("s30_thin", "f150_thin", "a15_thin"):
        if base not in closest:
            continue
        thin = closest[base]
        rows = [e for name, e in closest.items() if name != base and base_of(name) == base]
        if not rows:
            continue
        print("\nMcNemar against `%s` (%s), each on its seed closest to the mean:\n"
              % (base, thin["run"]))
        print("| run | right only in it | right only in thin | p |")
        print("|---|---|---|---|")
        for e in rows:
            a, b, p = mcnemar(e["test"]["wrong"], thin["test"]["wrong"])
            print("| `%s` | %d | %d | %.3f |" % (e["run"], a, b, p))

    # Weight averaging (average.py): each average against the model it continued from.
    rows = [(name, seed, av) for name, by_seed in averages.items() for seed, av in sorted(by_seed.items())]
    if rows:
        print("\nWeight averaging: the model validation chose, trained 15 more epochs at the "
              "final learning rate; validation of the source, of the last snapshot (the same "
              "training, no averaging), the snapshots' mean and the average; test of the "
              "source and the average, and McNemar between them:\n")
        print("| run | validation: source | last snapshot | snapshots' mean | average | "
              "test: source | average | right only in average / in source, p |")
        print("|---|---|---|---|---|---|---|---|")
        gains = collections.defaultdict(lambda: ([], []))
        for name, seed, av in rows:
            src = os.path.basename(av["source"])[:-len(".safetensors")]
            se = os.path.join(logs, src + ".eval.json")
            se = json.load(open(se)) if os.path.exists(se) else None
            ae = runs[name][seed]["eval"]
            sv = av["snapshots_validation"]
            cells = ["`%s` (seed %d)" % (name, seed)] + ["%.2f" % (100 * v) for v in (
                av["source_validation"], sv[-1], statistics.mean(sv), av["average_validation"])]
            cells.append("%.2f" % (100 * se["test"]["accuracy"]) if se else "—")
            cells.append("%.2f" % (100 * ae["test"]["accuracy"]) if ae else "—")
            if se and ae:
                a, b, p = mcnemar(ae["test"]["wrong"], se["test"]["wrong"])
                cells.append("%d / %d, p = %.3f" % (a, b, p))
                gains[name][0].append(av["average_validation"] - av["source_validation"])
                gains[name][1].append(ae["test"]["accuracy"] - se["test"]["accuracy"])
            else:
                cells.append("—")
            print("| " + " | ".join(cells) + " |")
        if gains:
            print()
        for name, (gv, gt) in gains.items():
            print("- `%s`: the average minus its source, validation %s, test %s points (%d "
                  "seed%s)" % (name, mean_sd(gv), mean_sd(gt), len(gt), "s" * (len(gt) > 1)))

    print("\nValidation in the final learning-rate stage of each schedule: its mean, its epoch-to-epoch movement "
          "(standard deviation of successive differences / sqrt 2) and the best reading's lift "
          "above the mean (points, mean over seeds):\n")
    print("| configuration | epochs | mean | epoch-to-epoch | best - mean |")
    print("|---|---|---|---|---|")
    for name, by_seed in runs.items():
        if name in averages:
            continue  # their validation is the average's, not one epoch's
        r = list(by_seed.values())
        move = [statistics.pstdev([b - a for a, b in zip(x["tail"], x["tail"][1:])]) / math.sqrt(2)
                for x in r]
        print("| `%s` | %d | %s | %.2f | %.2f |" % (
            name, len(r[0]["tail"]), mean_sd([statistics.mean(x["tail"]) for x in r]),
            100 * statistics.mean(move),
            100 * statistics.mean(x["val"] - statistics.mean(x["tail"]) for x in r)))


if __name__ == "__main__":
    main()
