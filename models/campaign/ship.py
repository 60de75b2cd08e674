#!/usr/bin/env python3
"""Ships the campaign's result into models/ (issue 13): for the trellis configuration and the
thin and thick baselines trained with its recipe, picks the seed whose test accuracy is closest
to its configuration's mean (evaluate.py's logs/<config>_s<seed>.eval.json; ties go to the lower
seed) and installs that run as the shipped file:
  - RUNS/<thin>_sK.safetensors  -> DEST/thin.safetensors   (+ thin.train.jsonl; a run is
    looked for in RUNS and then in each folder in it, as queue.sh's OUTDIRs)
  - RUNS/<thick>_sK.safetensors -> DEST/thick.safetensors  (+ thick.train.jsonl)
  - RUNS/<trellis>_sK.safetensors -> DEST/fashion_mnist.safetensors (+ fashion_mnist.train.jsonl),
    then `cigt tune` chooses its operating points afresh on its validation split (escalating to
    DEST/thick.safetensors) and `cigt eval --routes-png` draws DEST/fashion_mnist.routes.png.
Each run's config, with the chosen seed as its train.seed, is written as DEST/thin.json,
DEST/thick.json and DEST/TRELLIS_JSON, so that `cigt train --config` on the shipped file alone
retrains the shipped model. The text keeps the layout of the models/ file the campaign config
was made from (make_configs.py: thin.json, thick.json, --trellis-base), with only the train
values that differ rewritten; the result must parse to the campaign config exactly.
Prints what it chose and the McNemar table between the shipped trellis and each baseline (on
those seeds) for models/README.md. Nothing is written with --dry-run. A configuration with fewer
than --min-seeds evaluated runs is refused.
Usage: ship.py --trellis CONFIG --thin CONFIG --thick CONFIG --trellis-json NAME
               [--trellis-base FILE] [--runs DIR] [--dest DIR] [--cigt BIN] [--threads N]
               [--min-seeds N] [--dry-run]
"""
import argparse, glob, json, os, re, shutil, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from summarize import mcnemar  # noqa: E402


def evaluated(logs, config):
    """{seed: eval.json} for every evaluated run of config."""
    out = {}
    for f in glob.glob(os.path.join(logs, config + "_s*.eval.json")):
        m = re.fullmatch(re.escape(config) + r"_s(\d+)\.eval\.json", os.path.basename(f))
        if m:
            with open(f) as fh:
                out[int(m.group(1))] = json.load(fh)
    return out


def closest_seed(by_seed):
    """The seed whose test accuracy is closest to the mean over seeds (lower seed on a tie)."""
    mu = statistics.mean(e["test"]["accuracy"] for e in by_seed.values())
    return min(sorted(by_seed), key=lambda s: abs(by_seed[s]["test"]["accuracy"] - mu)), mu


def shipped_config(base_path, want):
    """The text of base_path with every scalar of its train section that differs from want's
    rewritten in place (want: a campaign config, e.g. with another seed or routing
    randomisation); refuses anything else that differs."""
    with open(base_path) as f:
        text = f.read()
    base = json.loads(text)
    for k, v in want["train"].items():
        if base["train"].get(k) != v and isinstance(v, (int, float)) and not isinstance(v, bool):
            text, n = re.subn(r'("%s":\s*)-?[0-9.eE+-]+' % re.escape(k),
                              lambda m: m.group(1) + json.dumps(v), text)
            if n != 1:
                sys.exit("ship.py: %s has %d \"%s\" keys to rewrite, not one" % (base_path, n, k))
    if json.loads(text) != want:
        sys.exit("ship.py: %s differs from the campaign config beyond train's numbers; write "
                 "the shipped config by hand" % base_path)
    return text


def main():
    ap = argparse.ArgumentParser()
    for k in ("trellis", "thin", "thick"):
        ap.add_argument("--" + k, required=True, help="campaign config name, e.g. f150_" + k)
    ap.add_argument("--trellis-json", required=True,
                    help="file name under DEST for the shipped trellis's config")
    ap.add_argument("--trellis-base", default=os.path.join(os.path.dirname(HERE),
                                                           "fashion_mnist_regularized.json"),
                    help="the models/ config the trellis's campaign config was made from")
    ap.add_argument("--runs", default=os.path.join(HERE, "runs"))
    ap.add_argument("--logs", default=os.path.join(HERE, "logs"))
    ap.add_argument("--dest", default=os.path.dirname(HERE))
    ap.add_argument("--cigt", default="build/cigt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seeds", type=int, default=3)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()

    chosen = {}
    for role, dest_name in (("thin", "thin"), ("thick", "thick"), ("trellis", "fashion_mnist")):
        config = getattr(a, role)
        runs = evaluated(a.logs, config)
        if len(runs) < a.min_seeds:
            sys.exit("ship.py: %s has %d evaluated run(s) (%s), --min-seeds is %d"
                     % (config, len(runs), ",".join(map(str, sorted(runs))) or "none",
                        a.min_seeds))
        seed, mu = closest_seed(runs)
        name = "%s_s%d" % (config, seed)
        found = [d for d in [a.runs] + sorted(glob.glob(os.path.join(a.runs, "*/")))
                 if all(os.path.exists(os.path.join(d, name + ext))
                        for ext in (".safetensors", ".train.jsonl"))]
        if not found:
            sys.exit("ship.py: %s.safetensors and .train.jsonl are not in %s or a folder in it"
                     % (name, a.runs))
        src = os.path.join(found[0], name)
        chosen[role] = (config, seed, runs[seed], src, dest_name)
        print("%s: %s seed %d (test %.2f%%; mean over seeds %s %.2f%%) -> %s.safetensors"
              % (role, config, seed, 100 * runs[seed]["test"]["accuracy"],
                 ",".join(map(str, sorted(runs))), 100 * mu, dest_name))

    configs, models = {}, os.path.dirname(HERE)
    for role, base, name in (("thin", os.path.join(models, "thin.json"), "thin.json"),
                             ("thick", os.path.join(models, "thick.json"), "thick.json"),
                             ("trellis", a.trellis_base, a.trellis_json)):
        with open(os.path.join(HERE, chosen[role][0] + ".json")) as f:
            want = json.load(f)
        want["train"]["seed"] = chosen[role][1]
        configs[name] = shipped_config(base, want)

    tr = chosen["trellis"][2]["test"]
    print("\n| shipped trellis against | right only in the trellis | right only in it | p |")
    print("|---|---|---|---|")
    for role in ("thin", "thick"):
        config, seed, ev, _, _ = chosen[role]
        x, y, p = mcnemar(tr["wrong"], ev["test"]["wrong"])
        print("| %s (`%s` seed %d) | %d | %d | %.3f |" % (role, config, seed, x, y, p))
    if a.dry_run:
        return

    for role in ("thin", "thick", "trellis"):
        _, _, _, src, name = chosen[role]
        shutil.copyfile(src + ".safetensors", os.path.join(a.dest, name + ".safetensors"))
        shutil.copyfile(src + ".train.jsonl", os.path.join(a.dest, name + ".train.jsonl"))
    for name, text in configs.items():
        with open(os.path.join(a.dest, name), "w") as f:
            f.write(text)
    model = os.path.join(a.dest, "fashion_mnist.safetensors")
    for cmd in ([a.cigt, "tune", model, "--escalate", os.path.join(a.dest, "thick.safetensors"),
                 "--threads", str(a.threads)],
                [a.cigt, "eval", model, "--threads", str(a.threads), "--routes",
                 "--routes-png", os.path.join(a.dest, "fashion_mnist.routes.png")]):
        print("\n$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode:
            sys.exit("ship.py: %s failed" % " ".join(cmd[:2]))


if __name__ == "__main__":
    main()
