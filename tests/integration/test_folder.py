#!/usr/bin/python3
"""End to end on a tiny colour image folder (issue 15): examples/make_folder.py --synthetic
writes 3 classes of tinted shapes as JPEG and PNG in train/ and test/ (plus a corrupt JPEG and
a README.txt here); `cigt train --data FOLDER --input-stats` trains a 3-channel trellis for two
epochs; the checks are against answers computed here independently:
- the model's input mean/std equal the per-channel statistics numpy computes from the training
  images decoded by PIL (all at the model's size and validation 0: nothing is resized or held
  out; PIL's JPEG decoder is the same libjpeg-turbo);
- the corrupt file is reported with its path and skipped, the text file ignored;
- `cigt eval --data FOLDER` reports the accuracy that `cigt classify` of every test file
  against its folder name gives;
- cigtd answers JPEG and PNG bodies exactly as `cigt classify` does, and an OIP request of
  shape [N,3,H,W] (UINT8 pixels decoded here with PIL) exactly as the PNG body; [N,1,H,W] is
  refused naming the expected shape;
- and --input-stats on the Fashion-MNIST IDX training file matches numpy's mean and std.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import numpy as np
from PIL import Image

CIGT, CIGTD, SRC = os.environ["CIGT"], os.environ["CIGTD"], os.environ["SRCDIR"]
CLASSES = ["tshirt_top", "trouser", "pullover"]
CONFIG = {
    "name": "tiny_colour",
    "input": {"channels": 3, "height": 16, "width": 16},
    "classes": CLASSES,
    "layers": [
        {"experts": 1, "ops": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"type": "batchnorm"}, {"type": "relu"},
                               {"type": "maxpool", "kernel": 2}],
         "router": {"pool": 8, "hidden": 8}},
        {"experts": 2, "ops": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"type": "relu"}, {"type": "maxpool", "kernel": 2},
                               {"type": "flatten"}, {"type": "linear", "out": 3}]},
    ],
    "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 10, "lr": 0.05,
              "lr_schedule": [[0, 1.0]], "momentum": 0.9, "weight_decay": 0.0,
              "information_gain_weight": 0.06, "information_gain_beta": 2.0,
              "temperature": {"initial": 25.0, "decay": 0.99, "min": 0.01},
              "routing_randomization": 0.5, "validation_samples": 0, "seed": 3},
}
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=240)
    if p.returncode:
        sys.exit("%s failed (%d):\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p.stdout + p.stderr


def classify_files(model, files):
    out = {}
    for line in run(CIGT, "classify", model, *files).splitlines():
        f, label, prob, route, _ = line.split("\t")
        out[f] = (label, route)
    return out


class Daemon:
    def __init__(self, model):
        self.proc = subprocess.Popen([CIGTD, "--model", model, "--listen", "127.0.0.1:0"],
                                     stderr=subprocess.PIPE, text=True)
        self.port, got, self.lines = None, threading.Event(), []

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"on https?://[^ ]*:(\d+)/", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    got.set()
            got.set()
        threading.Thread(target=reader, daemon=True).start()
        got.wait(30)
        if not self.port:
            self.proc.kill()
            sys.exit("cigtd did not start:\n" + "".join(self.lines))

    def post(self, path, body, ctype):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        check(self.proc.wait(60) == 0, "cigtd exit status")


def idx_input_stats():
    """--input-stats on an IDX directory: Fashion-MNIST's 60,000 training images (validation 0)
    against numpy over the same file (the familiar 0.2860 / 0.3530)."""
    import gzip
    path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    if not os.path.exists(path):
        sys.exit("%s is missing: apt-get install dataset-fashion-mnist" % path)
    with gzip.open(path) as f:
        px = np.frombuffer(f.read()[16:], dtype=np.uint8).astype(np.float64) / 255.0
    tmp = tempfile.mkdtemp(prefix="cigt-idx-stats-")
    try:
        model = os.path.join(tmp, "m.safetensors")
        run(CIGT, "train", "--config", os.path.join(SRC, "models", "fashion_mnist.json"),
            "--out", model, "--input-stats", "--validation", "0", "--train-samples", "10",
            "--epochs", "1", "--threads", "1")
        inp = json.loads(run(CIGT, "info", model, "--json"))
        inp = inp.get("architecture", inp)["input"]
        check(abs(inp["mean"][0] - px.mean()) < 1e-6 and abs(inp["std"][0] - px.std()) < 1e-6,
              "IDX input stats %s %s, numpy %s %s" % (inp["mean"], inp["std"], px.mean(),
                                                      px.std()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    tmp = tempfile.mkdtemp(prefix="cigt-folder-")
    try:
        root = os.path.join(tmp, "data")
        run("/usr/bin/python3", os.path.join(SRC, "examples", "make_folder.py"), root,
            "--synthetic", "--classes", "3", "--train", "12", "--test", "6", "--size", "16",
            "--jpeg-size", "16")
        with open(os.path.join(root, "train", "trouser", "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 cut short")
        with open(os.path.join(root, "train", "pullover", "README.txt"), "w") as f:
            f.write("not an image\n")
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(CONFIG, f)
        model = os.path.join(tmp, "model.safetensors")

        # Training, with the statistics computed here from the same (PNG) training files.
        out = run(CIGT, "train", "--config", cfg, "--data", root, "--out", model,
                  "--input-stats", "--threads", "1")
        check(re.search(r"skipping \S*/train/trouser/broken\.jpg: JPEG", out),
              "corrupt JPEG reported with its path:\n" + out)
        check("ignored 1 file that is not" in out and "README.txt" in out,
              "README.txt ignored and counted:\n" + out)
        check("36 train / 0 validation images" in out, "36 training images:\n" + out)
        pix = []
        for c in CLASSES:
            d = os.path.join(root, "train", c)
            for name in sorted(os.listdir(d)):
                if name.endswith((".png", ".jpg")) and name != "broken.jpg":
                    pix.append(np.asarray(Image.open(os.path.join(d, name)).convert("RGB")))
        pix = np.stack(pix).astype(np.float64) / 255.0
        check(len(pix) == 36, "36 training files")
        info = json.loads(run(CIGT, "info", model, "--json"))
        arch = info.get("architecture", info)
        inp = arch["input"]
        mean, std = pix.mean(axis=(0, 1, 2)), pix.std(axis=(0, 1, 2))
        check(np.allclose(inp["mean"], mean, atol=1e-6) and np.allclose(inp["std"], std,
                                                                         atol=1e-6),
              "input mean/std %s %s, numpy says %s %s" % (inp["mean"], inp["std"], mean, std))
        check("range" not in inp, "mean/std form only")

        # Evaluation against classify, file by file.
        tests = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "test"))
                       for f in fs)
        got = classify_files(model, tests)
        right = sum(got[f][0] == os.path.basename(os.path.dirname(f)) for f in tests)
        ev = run(CIGT, "eval", model, "--data", root, "--json")
        evj = json.loads(ev[ev.index("{"):])
        check(evj["samples"] == len(tests) == 18, "eval read %s images" % evj["samples"])
        check(abs(evj["accuracy"] - right / len(tests)) < 1e-9,
              "eval accuracy %s, classify gives %d/%d" % (evj["accuracy"], right, len(tests)))

        # cigtd: JPEG and PNG bodies, OIP [N,3,H,W].
        d = Daemon(model)
        try:
            for f in tests[:4] + [t for t in tests if t.endswith(".jpg")][:2]:
                ctype = "image/jpeg" if f.endswith(".jpg") else "image/png"
                with open(f, "rb") as fh:
                    st, body = d.post("/v1/classify", fh.read(), ctype)
                check(st == 200, "%s: status %d %s" % (f, st, body))
                check(body.get("label") == got[f][0] and
                      "-".join(map(str, body.get("route", []))) == got[f][1],
                      "%s: cigtd %s / %s, classify %s" % (f, body.get("label"),
                                                         body.get("route"), got[f]))
            pngs = [t for t in tests if t.endswith(".png")][:2]
            x = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                          for p in pngs])
            req = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "UINT8",
                               "data": x.reshape(-1).tolist()}]}
            st, body = d.post("/v2/models/tiny_colour/infer", json.dumps(req).encode(),
                              "application/json")
            check(st == 200, "OIP [2,3,16,16]: %d %s" % (st, body))
            probs = next(o for o in body["outputs"] if o["name"] == "probabilities")["data"]
            for i, p in enumerate(pngs):
                with open(p, "rb") as fh:
                    _, one = d.post("/v1/classify", fh.read(), "image/png")
                check(probs[3 * i:3 * i + 3] == one["probabilities"],
                      "OIP sample %d %s vs PNG body %s" % (i, probs[3 * i:3 * i + 3],
                                                          one["probabilities"]))
            req["inputs"][0]["shape"] = [6, 1, 16, 16]
            st, body = d.post("/v2/models/tiny_colour/infer", json.dumps(req).encode(),
                              "application/json")
            check(st == 400 and "[N, 3, 16, 16]" in body.get("error", ""),
                  "[N,1,H,W] refused: %d %s" % (st, body))
        finally:
            d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    idx_input_stats()
    if failures:
        sys.exit("%d check(s) failed" % failures)
    print("folder end to end: ok")


if __name__ == "__main__":
    main()
