#!/usr/bin/python3
"""Held-out validation on image folders (issue 29), end to end with `cigt train`, `cigt eval`
and `cigt tune` on a tiny synthetic folder (examples/make_folder.py: ROOT/train and ROOT/test,
3 classes):
- `cigt train --data F` on a single-split folder F (ROOT/train, 36 images, 6 held out) records
  its split in the provenance: data.train 30, data.validation 6, data.images 36, data.dir F
  resolved;
- `cigt eval --data F` refuses, one line naming F and --allow-training-data, nothing on
  stdout; with --allow-training-data it scores all 36 and says so on stderr; another
  single-split folder (ROOT/test) is scored whole with the one-line note and no refusal; the
  split folder ROOT (its test/ part) without either;
- `cigt tune --data F` tunes on the 6 held out; --data ROOT/test (not the data the provenance
  names) is refused; --validation-data ROOT/test tunes on its 18 images, --validation-data F
  and --validation-data ROOT (it has train/) are refused;
- a model with the provenance python/examples/train_folder.py wrote before it held images out
  (data: the folder's path) is refused by tune, with --validation N too, and by eval on F;
  --validation-data ROOT/test tunes it; an --escalate model with that provenance is refused.
Environment as test_cigtd.py (CIGT, SRCDIR). Exit 0 pass, 1 fail.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check  # noqa: E402

CONFIG = {
    "name": "tiny_heldout",
    "input": {"channels": 3, "height": 16, "width": 16},
    "classes": ["tshirt_top", "trouser", "pullover"],
    "layers": [
        {"experts": 1, "ops": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"type": "batchnorm"}, {"type": "relu"},
                               {"type": "maxpool", "kernel": 2}],
         "router": {"pool": 8, "hidden": 8}},
        {"experts": 2, "ops": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"type": "relu"}, {"type": "maxpool", "kernel": 2},
                               {"type": "flatten"}, {"type": "linear", "out": 3}]},
    ],
    "train": {"epochs": 1, "warmup_epochs": 1, "batch_size": 10, "lr": 0.05,
              "lr_schedule": [[0, 1.0]], "momentum": 0.9, "weight_decay": 0.0,
              "information_gain_weight": 0.06, "information_gain_beta": 2.0,
              "temperature": {"initial": 25.0, "decay": 0.99, "min": 0.01},
              "routing_randomization": 0.5, "validation_samples": 6, "seed": 3},
}
REFUSE_EVAL = ("cigt: %s: %s was trained on this folder (its provenance's data): its accuracy "
               "here is not a test result; evaluate on held-out images, or give "
               "--allow-training-data\n")
WHOLE = "is an image folder without a train/ and test/ split: scoring every image in it"


def run(*args):
    return subprocess.run([T.CIGT, *args], capture_output=True, text=True, timeout=300)


def refused(what, args, frag, out=None):
    r = run(*args)
    check(r.returncode != 0 and frag in r.stderr and (out is None or not os.path.exists(out)),
          "%s: refused naming '%s' (rc %d, %s)" % (what, frag, r.returncode,
                                                   r.stderr.strip()[-300:]))
    return r


def main():
    work = tempfile.mkdtemp(prefix="cigt-heldout-")
    try:
        root = os.path.join(work, "data")
        subprocess.run(["/usr/bin/python3", os.path.join(T.SRCDIR, "examples", "make_folder.py"),
                        root, "--synthetic", "--classes", "3", "--train", "12", "--test", "6",
                        "--size", "16", "--jpeg-size", "16"], check=True,
                       stdout=subprocess.DEVNULL)
        folder, test = os.path.join(root, "train"), os.path.join(root, "test")
        cfg = os.path.join(work, "config.json")
        with open(cfg, "w") as f:
            json.dump(CONFIG, f)
        model = os.path.join(work, "model.safetensors")
        r = run("train", "--config", cfg, "--data", folder, "--out", model, "--threads", "1")
        if not check(r.returncode == 0, "cigt train: %s" % r.stderr.strip()[-300:]):
            return 1
        prov = T.provenance(model)
        check(prov["data"] == {"train": 30, "validation": 6, "images": 36,
                               "dir": os.path.realpath(folder)},
              "cigt train records its split and folder: %s" % prov["data"])

        # cigt eval on the folder it was trained on, on another single-split folder, on a split.
        r = refused("eval on the training folder", ["eval", model, "--data", folder],
                    REFUSE_EVAL % (folder, model))
        check(r.stderr == REFUSE_EVAL % (folder, model) and r.stdout == "",
              "one line on stderr, nothing on stdout: %r" % r.stderr)
        r = run("eval", model, "--data", folder, "--allow-training-data", "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["samples"] == 36
              and "%s %s, images the model was trained on included (--allow-training-data)"
              % (folder, WHOLE) in r.stderr,
              "--allow-training-data scores all 36 and says so (rc %d %s)"
              % (r.returncode, r.stderr.strip()))
        r = run("eval", model, "--data", test, "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["samples"] == 18
              and r.stderr.count("\n") == 1 and "%s %s\n" % (test, WHOLE) in r.stderr,
              "another single-split folder: scored whole, said in one line (%s)"
              % r.stderr.strip())
        r = run("eval", model, "--data", root, "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["samples"] == 18
              and WHOLE not in r.stderr, "a split folder's test/ part: no note (%s)"
              % r.stderr.strip())

        # cigt tune: the provenance's split, another folder, --validation-data.
        out = os.path.join(work, "tuned.safetensors")
        r = run("tune", model, "--data", folder, "--threads", "1", "--out", out)
        check(r.returncode == 0 and "6 validation images" in r.stderr,
              "tune --data F tunes on the 6 held out (rc %d %s)" % (r.returncode,
                                                                   r.stderr.strip()[-300:]))
        os.path.exists(out) and os.remove(out)
        refused("tune on other data than the provenance's",
                ["tune", model, "--data", test, "--out", out],
                "was trained on %s, not on --data %s" % (os.path.realpath(folder), test), out)
        r = run("tune", model, "--validation-data", test, "--threads", "1", "--out", out)
        check(r.returncode == 0 and "18 validation images (the last of --validation-data %s)"
              % test in r.stderr, "--validation-data ROOT/test (rc %d %s)"
              % (r.returncode, r.stderr.strip()[-300:]))
        os.path.exists(out) and os.remove(out)
        refused("--validation-data the training folder",
                ["tune", model, "--validation-data", folder, "--out", out],
                "--validation-data %s: %s was trained on it" % (folder, model), out)
        refused("--validation-data a split folder",
                ["tune", model, "--validation-data", root, "--out", out],
                "--validation-data %s has a train/ folder" % root, out)

        # The old train_folder.py provenance: trained on every image, data is the path.
        old = os.path.join(work, "old.safetensors")
        T.with_provenance(model, old, {"tool": "cigt.torch examples/train_folder.py",
                                       "data": os.path.abspath(folder), "images": 36})
        msg = ("cigt: %s records no held-out validation split in its provenance "
               "(data.validation), so it may have trained on any image of %s; give "
               "--validation-data DIR, an image folder or IDX directory it was not trained "
               "on\n" % (old, folder))
        r = refused("tune of a folder-trained model", ["tune", old, "--data", folder, "--out",
                                                        out], msg, out)
        check(r.stderr == msg, "the refusal is that one line: %r" % r.stderr)
        refused("the same with --validation N", ["tune", old, "--data", folder, "--validation",
                                                 "3", "--out", out], msg, out)
        refused("eval of a folder-trained model on its folder", ["eval", old, "--data", folder],
                REFUSE_EVAL % (folder, old))
        r = run("tune", old, "--validation-data", test, "--threads", "1", "--out", out)
        check(r.returncode == 0, "--validation-data tunes the folder-trained model (rc %d %s)"
              % (r.returncode, r.stderr.strip()[-300:]))
        os.path.exists(out) and os.remove(out)
        refused("an --escalate model trained on every image",
                ["tune", model, "--escalate", old, "--data", folder, "--out", out],
                "--escalate %s records no held-out validation split" % old, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("heldout: %s" % ("FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
