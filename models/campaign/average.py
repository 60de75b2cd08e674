#!/usr/bin/env python3
"""Weight averaging after the fact, for the a15_* runs (make_configs.py: a finished model
trained 15 more epochs at its schedule's final learning rate, with `--snapshots-from 1`).
For each RUN (OUTDIR/<config>_s<seed>, the queue's output prefix):
  - `cigt average` of every snapshot RUN.eNNN.safetensors into OUTDIR/avg/<name>.safetensors,
    the run's finished model (evaluate.py reads the test set for it, once);
  - the validation accuracy of the source model, of every snapshot (the control: the same extra
    training without averaging) and of the average, on the validation split the source was
    trained with (the last N training images, N from the provenance), through `cigt eval --data`
    on a folder whose t10k files are those images. The test set is not read here.
Writes logs/<name>.average.json. Usage: average.py [--cigt BIN] [--threads N] RUN...
"""
import argparse, glob, gzip, json, os, struct, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evaluate import run  # noqa: E402
LOGS = os.path.join(HERE, "logs")
DATA = "/usr/share/datasets/fashion-mnist"


def validation_folder(tmp, n):
    """An IDX folder whose test files are the last n training images (the validation split)."""
    img = gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz")).read()
    lab = gzip.open(os.path.join(DATA, "train-labels-idx1-ubyte.gz")).read()
    total, h, w = struct.unpack(">III", img[4:16])
    if not 0 < n < total:
        sys.exit("average.py: a validation split of %d images of %d" % (n, total))
    with gzip.open(os.path.join(tmp, "t10k-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, h, w) + img[16 + (total - n) * h * w:])
    with gzip.open(os.path.join(tmp, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + lab[8 + total - n:])
    return tmp


def info(cigt, model):
    return json.loads(run([cigt, "info", model, "--json"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cigt", default="build/cigt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    for prefix in a.runs:
        name = os.path.basename(prefix)
        snaps = sorted(glob.glob(prefix + ".e[0-9][0-9][0-9].safetensors"))
        prov = info(a.cigt, prefix + ".safetensors")["provenance"]
        epochs = prov["config"]["train"]["epochs"]
        if len(snaps) != epochs:
            sys.exit("average.py: %s: %d snapshots, the run has %d epochs (unfinished, or "
                     "not run with --snapshots-from 1)" % (name, len(snaps), epochs))
        source = os.path.join(HERE, prov["config"]["train"]["init"]["from"])
        out = os.path.join(os.path.dirname(prefix), "avg", name + ".safetensors")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        run([a.cigt, "average", "-o", out, *snaps])
        with tempfile.TemporaryDirectory() as tmp:
            val = validation_folder(tmp, prov["data"]["validation"])

            def acc(model):
                return json.loads(run([a.cigt, "eval", model, "--data", val, "--json",
                                       "--threads", str(a.threads)]))["accuracy"]
            res = {"run": name, "source": os.path.relpath(source, HERE),
                   "source_validation": acc(source),
                   "snapshots_validation": [acc(s) for s in snaps],
                   "average": os.path.relpath(out, HERE), "average_validation": acc(out)}
        with open(os.path.join(LOGS, name + ".average.json"), "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        s = res["snapshots_validation"]
        print("%s: validation: source %.2f%%, snapshots %.2f-%.2f%% (last %.2f%%), average "
              "%.2f%%" % (name, 100 * res["source_validation"], 100 * min(s), 100 * max(s),
                          100 * s[-1], 100 * res["average_validation"]))


if __name__ == "__main__":
    main()
