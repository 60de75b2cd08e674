#!/usr/bin/env python3
"""Reads the test set once for each finished campaign run and keeps what it said beside the
run's log, so the campaign table can report test accuracy without reading it again.
For every MODEL given (OUTDIR/<config>_s<seed>.safetensors from queue.sh):
  - `cigt eval MODEL --json --dump`: test accuracy, mean MACs and the indices of the test images
    it gets wrong (for McNemar's test between any two runs);
  - for a trellis, `cigt tune MODEL --out TUNED` picks multipath thresholds on the validation
    split the run was trained with; the point with the highest validation accuracy whose mean
    MACs stay within 1.2x a single path (issue 13's budget; `single` when no multipath point
    beats it) is then evaluated on the test set, once.
Writes logs/<config>_s<seed>.eval.json. Runs that already have one are skipped (the test set is
read once per finished model). Usage: evaluate.py [--cigt BIN] [--threads N] MODEL...
"""
import argparse, json, os, re, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(HERE, "logs")
BUDGET = 1.2  # multipath may cost at most this many single paths (issue 13)


def run(cmd):
    """cmd's standard output; exits naming the calling script and cmd when cmd fails (the
    campaign's scripts share it)."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.exit("%s: %s failed (%d): %s" % (os.path.basename(sys.argv[0]), " ".join(cmd),
                                             r.returncode, r.stderr.strip()[-500:]))
    return r.stdout


def test_eval(cigt, model, threads, extra=()):
    """One pass over the test set: accuracy, mean MACs and the wrongly classified indices."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as dump:
        out = json.loads(run([cigt, "eval", model, "--json", "--threads", str(threads),
                              "--dump", dump.name, *extra]))
        wrong = []
        with open(dump.name) as f:
            for line in f:
                d = json.loads(line)
                if d["class"] != d["label"]:
                    wrong.append(d["index"])
    return {"accuracy": out["accuracy"], "samples": out["samples"],
            "mean_macs": out["mean_macs"], "wrong": wrong}


POINT = re.compile(r"^\s+(\S+)\s+thresholds (\S+)\s+([\d.]+)%\s+(\d+) \(([\d.]+)x a path\)(.*)$")


def multipath_points(cigt, model):
    """The operating points `cigt info` lists: name, thresholds, validation accuracy, MACs."""
    pts = []
    for line in run([cigt, "info", model]).splitlines():
        m = POINT.match(line)
        if m and "escalates" not in m.group(6):  # no second model: the trellis alone
            pts.append({"name": m.group(1), "thresholds": m.group(2),
                        "validation_accuracy": float(m.group(3)) / 100,
                        "mean_macs": int(m.group(4)), "x_single": float(m.group(5))})
    return pts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cigt", default="build/cigt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    for model in a.models:
        name = os.path.basename(model)[:-len(".safetensors")]
        dest = os.path.join(LOGS, name + ".eval.json")
        if os.path.exists(dest):
            print("%s: already evaluated (%s), skipped" % (name, dest))
            continue
        res = {"run": name, "test": test_eval(a.cigt, model, a.threads)}
        paths = re.search(r"^paths\s+(\d+)", run([a.cigt, "info", model]), re.M)
        if paths and int(paths.group(1)) > 1:
            with tempfile.TemporaryDirectory() as tmp:
                tuned = os.path.join(tmp, "tuned.safetensors")
                run([a.cigt, "tune", model, "--threads", str(a.threads), "--out", tuned])
                pts = multipath_points(a.cigt, tuned)
                fits = [p for p in pts if p["x_single"] <= BUDGET]
                best = max(fits, key=lambda p: (p["validation_accuracy"], -p["mean_macs"]))
                mp = dict(best, points=pts)
                if best["name"] != "single":
                    mp["test"] = test_eval(a.cigt, tuned, a.threads, ("--compute", best["name"]))
                else:
                    mp["test"] = res["test"]
                res["multipath"] = mp
        with open(dest, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        t = res["test"]
        line = "%s: test %.2f%% at %.0f MACs" % (name, 100 * t["accuracy"], t["mean_macs"])
        if "multipath" in res:
            mp = res["multipath"]
            line += "; multipath %s (val %.2f%%, %.3fx) test %.2f%% at %.0f MACs" % (
                mp["name"], 100 * mp["validation_accuracy"], mp["x_single"],
                100 * mp["test"]["accuracy"], mp["test"]["mean_macs"])
        print(line)


if __name__ == "__main__":
    main()
