#!/usr/bin/env python3
"""Reads the test set once per operating point of a tuned model and prints models/README.md's
operating-point table: for every point `cigt info --json MODEL` lists, `cigt eval MODEL
--compute NAME --json` on the 10,000 test images gives its test accuracy, mean MACs, the MAC
distribution and how many samples took several paths or escalated; the validation accuracy is
the one `cigt tune` stored in the point. A last row gives the second model alone (validation
from its provenance, test from `cigt eval SECOND`), the model the escalating points call.
Usage: points.py MODEL [--second FILE] [--cigt BIN] [--threads N]
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import run  # noqa: E402


def cigt_json(cigt, *args):
    return json.loads(run([cigt, *args, "--json"]))


def mega(n):
    return "%.2f M" % (n / 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--second", help="the model the escalating points call "
                    "(default: thick.safetensors beside MODEL)")
    ap.add_argument("--cigt", default="build/cigt")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    second = a.second or os.path.join(os.path.dirname(a.model), "thick.safetensors")

    info = cigt_json(a.cigt, "info", a.model)
    points = info["operating_points"]
    if not points:
        sys.exit("points.py: %s has no operating points (cigt tune writes them)" % a.model)
    single = info["path_macs"]
    thick = cigt_json(a.cigt, "info", second)
    thick_macs = thick["path_macs"]
    print("| point | thresholds | c | validation | **test** | mean MACs | x single | x thick "
          "| several paths / escalated | MACs p50 / p90 / max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in points:
        ev = cigt_json(a.cigt, "eval", a.model, "--compute", p["name"],
                       "--threads", str(a.threads))
        th = ", ".join("%g" % round(t, 4) for t in p["thresholds"])
        c = "%g" % round(p["confidence"], 4) if p["confidence"] > 0 else "—"
        m = ev["macs"]
        print("| `%s` | %s | %s | %.2f%% | %.2f%% | {:,} | %.3f | %.3f | {:,} / {:,} | %s / %s / %s |"
              .format(round(ev["mean_macs"]), ev["multipath_samples"], ev["escalated_samples"])
              % (p["name"], th, c, 100 * p["val_accuracy"], 100 * ev["accuracy"],
                 ev["mean_macs"] / single, ev["mean_macs"] / thick_macs,
                 mega(m["p50"]), mega(m["p90"]), mega(m["max"])), flush=True)
    ev = cigt_json(a.cigt, "eval", second, "--threads", str(a.threads))
    val = thick.get("provenance", {}).get("validation_accuracy")
    print("| *%s alone* | | | %s | %.2f%% | {:,} | %.3f | 1 | | |".format(thick_macs)
          % (thick["name"], "%.2f%%" % (100 * val) if val is not None else "—",
             100 * ev["accuracy"], thick_macs / single))


if __name__ == "__main__":
    main()
