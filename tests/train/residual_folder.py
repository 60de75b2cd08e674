#!/usr/bin/python3
"""A residual trellis learns (issue 26): examples/make_folder.py --synthetic writes 3 classes of
tinted shapes at 16x16; `cigt train --data FOLDER` trains a trellis of residual blocks (an
identity and a 1x1-conv + BN shortcut, a pre-activation block), global average pooling and a
router with its own op chain for a few epochs. The checks:
- every epoch's log line has a finite loss and one information gain per router;
- the loss of one `cigt grad` warm-up step on the first 60 training images falls, and its
  cross-entropy to at most 0.8x, from the initial model (`cigt init --seed` of the same seed) to the trained one;
- `cigt eval --data` on the trained model is above chance (1/3) on the test split;
- two runs with --threads 2 (the first layer's ops split their rows) give the same tensors,
  bit for bit.
usage: residual_folder.py CIGT_BINARY SOURCE_ROOT
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

CLASSES = ["tshirt_top", "trouser", "pullover"]
CONFIG = {
    "name": "residual_colour",
    "input": {"channels": 3, "height": 16, "width": 16},
    "classes": CLASSES,
    "layers": [
        {"experts": 1, "ops": [
            {"type": "conv", "out": 6, "kernel": 3, "padding": 1, "bias": False},
            {"type": "batchnorm"}, {"type": "relu"},
            {"type": "residual", "main": [
                {"type": "conv", "out": 6, "kernel": 3, "padding": 1, "bias": False},
                {"type": "batchnorm"}, {"type": "relu"},
                {"type": "conv", "out": 6, "kernel": 3, "padding": 1, "bias": False},
                {"type": "batchnorm"}]}],
         "router": {"ops": [{"type": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1},
                            {"type": "batchnorm"}, {"type": "relu"}],
                    "pool": 4, "hidden": 8}},
        {"experts": 2, "ops": [
            {"type": "residual", "main": [
                {"type": "conv", "out": 8, "kernel": 3, "stride": 2, "padding": 1,
                 "bias": False},
                {"type": "batchnorm"}, {"type": "relu"},
                {"type": "conv", "out": 8, "kernel": 3, "padding": 1, "bias": False},
                {"type": "batchnorm"}],
             "shortcut": [{"type": "conv", "out": 8, "kernel": 1, "stride": 2, "bias": False},
                          {"type": "batchnorm"}]}],
         "router": {"pool": 4, "hidden": 8}},
        {"experts": 2, "ops": [
            {"type": "residual", "main": [
                {"type": "batchnorm"}, {"type": "relu"},
                {"type": "conv", "out": 8, "kernel": 3, "padding": 1}], "relu": False},
            {"type": "relu"}, {"type": "globalavgpool"}, {"type": "linear", "out": 3}]},
    ],
    "train": {"epochs": 5, "warmup_epochs": 2, "batch_size": 20, "lr": 0.05,
              "lr_schedule": [[0, 1.0]], "momentum": 0.9, "weight_decay": 0.0,
              "information_gain_weight": 0.06, "information_gain_beta": 2.0,
              "temperature": {"initial": 25.0, "decay": 0.99, "min": 0.01},
              "routing_randomization": 0.5, "validation_samples": 0, "seed": 5},
}
failures = 0


def check(cond, what):
    global failures
    if cond:
        print("ok  ", what, flush=True)
    else:
        failures += 1
        print("FAIL:", what, flush=True)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=240)
    if p.returncode != 0:
        sys.exit("FAIL: %s exited %d:\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p.stdout + p.stderr


def tensors(path):
    """{name: raw bytes} of a safetensors file's tensors."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    head.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in head.items()}


def grad_loss(cigt, model, cfg, root, tmp):
    """Loss and cross-entropy of one cigt grad warm-up step on the first 60 training images."""
    out = os.path.join(tmp, os.path.basename(model) + ".grad")
    run(cigt, "grad", model, "--config", cfg, "--data", root, "--out", out, "--batch", "60",
        "--mode", "warmup", "--temperature", "25")
    b = open(out, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    p = json.loads(json.loads(b[8:8 + n])["__metadata__"]["provenance"])
    return p["loss"], p["ce"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cigt, src = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="cigt-resfolder-")
    try:
        root = os.path.join(tmp, "data")
        run("/usr/bin/python3", os.path.join(src, "examples", "make_folder.py"), root,
            "--synthetic", "--classes", "3", "--train", "40", "--test", "12", "--size", "16",
            "--jpeg-size", "16", "--seed", "2")
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(CONFIG, f)
        init = os.path.join(tmp, "init.safetensors")
        model = os.path.join(tmp, "model.safetensors")
        log = os.path.join(tmp, "log.jsonl")
        run(cigt, "init", cfg, "-o", init, "--seed", str(CONFIG["train"]["seed"]))
        run(cigt, "train", "--config", cfg, "--data", root, "--out", model, "--threads", "1",
            "--log", log)
        lines = [json.loads(l) for l in open(log) if l.strip()]
        check(len(lines) == CONFIG["train"]["epochs"], "%d log lines" % len(lines))
        check(all(math.isfinite(r["loss"]) and len(r["ig"]) == 2 and
                  all(math.isfinite(v) for v in r["ig"]) for r in lines),
              "finite losses and two information gains: %s"
              % ", ".join("%.4f" % r["loss"] for r in lines))
        (l0, ce0), (l1, ce1) = (grad_loss(cigt, m, cfg, root, tmp) for m in (init, model))
        check(l1 < l0 and ce1 <= 0.8 * ce0, "warm-up step on the first 60 images: loss %.4f -> "
              "%.4f, cross-entropy %.4f -> %.4f" % (l0, l1, ce0, ce1))
        ev = json.loads(run(cigt, "eval", model, "--data", root, "--json"))
        check(ev["accuracy"] > 0.5, "test accuracy %.1f%% on %d images (chance 33%%)"
              % (100 * ev["accuracy"], ev["samples"]))
        runs = []
        for k in range(2):
            runs.append(os.path.join(tmp, "t2_%d.safetensors" % k))
            run(cigt, "train", "--config", cfg, "--data", root, "--out", runs[-1], "--threads",
                "2")
        a, b = tensors(runs[0]), tensors(runs[1])
        check(a == b, "two --threads 2 runs: %d of %d tensors differ"
              % (sum(a[k] != b.get(k) for k in a), len(a)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
