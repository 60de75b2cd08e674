"""python/examples/train_folder.py on a tiny image folder: 3 classes of Fashion-MNIST images
tinted per class (red, green, blue), saved as PNG and JPEG in class folders, 40 each.
  * one process, 3-channel input, 6 steps: the file is valid for the C reader (`cigt info`),
    `cigt classify` on every PNG gives the class and route the saved module gives, and cigtd
    serving the file answers /v1/classify with them too;
  * two processes (DistributedDataParallel on gloo over 127.0.0.1, started with the variables
    torchrun sets: Debian 12's torchrun fails under Python 3.11 before starting any worker),
    3 steps: rank 0 writes a valid file and both ranks end with the same weights;
  * --input-stats writes input.mean/std, which the Python loader applies as
    (pixel / 255 - mean[c]) / std[c];
  * held-out validation (issue 29): the example holds out the last 12 of the 120 images in
    cigt's order (cigt.data.folder_files is the order `cigt eval` reads the folder in) and
    records its provenance with cigt train's keys (data.train 108, validation 12, images 120,
    dir); `cigt tune --data ROOT` then tunes on those 12, `cigt eval --data ROOT` refuses the
    folder it trained on (and scores it with --allow-training-data).
Run: CIGT=build/cigt /usr/bin/python3 tests/python/test_example.py"""

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import numpy as np

import common
import torch
import cigt.torch as ct
from cigt import data, format as cf

EXAMPLE = os.path.join(common.SRC, "python", "examples", "train_folder.py")
TINT = {"tshirt": (0, (1.0, 0.3, 0.3)), "trouser": (1, (0.3, 1.0, 0.3)),
        "sneaker": (7, (0.3, 0.3, 1.0))}


def make_folder(root, per_class=40):
    from PIL import Image
    x, y = data.load_idx_dir(common.DATA, "train", 600)
    for name, (label, tint) in TINT.items():
        os.makedirs(os.path.join(root, name))
        for j, i in enumerate(np.flatnonzero(y == label)[:per_class]):
            rgb = (x[i].astype(np.float64) * np.array(tint)).astype(np.uint8)
            Image.fromarray(rgb).save(os.path.join(root, name, "%04d.%s"
                                                   % (i, "png" if j % 2 else "jpg")))


def run(args, **kw):
    env = dict(os.environ, PYTHONPATH=os.path.join(common.SRC, "python"), OMP_NUM_THREADS="1")
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (args, r.returncode, r.stdout,
                                                          r.stderr))
    return r.stdout


class Example(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = os.path.join(cls.tmp.name, "folder")
        make_folder(cls.root)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_one_process_then_cigt_classify(self):
        out = os.path.join(self.tmp.name, "one.safetensors")
        log = run([sys.executable, EXAMPLE, self.root, "--out", out, "--size", "28",
                   "--batch", "16", "--steps", "6"])
        self.assertIn("wrote %s (6 steps)" % out, log)
        self.assertIn("cigtd --model %s" % out, log)
        info = json.loads(common.cigt("info", out, "--json"))
        self.assertEqual(info["architecture"]["input"]["channels"], 3)
        self.assertEqual(info["architecture"]["classes"], ["sneaker", "trouser", "tshirt"])
        m = ct.load(out)
        pngs = sorted(os.path.join(self.root, c, f) for c in TINT
                      for f in os.listdir(os.path.join(self.root, c)) if f.endswith(".png"))
        x = np.stack([data.load_image(p, 3, 28, 28) for p in pngs])
        with torch.no_grad():
            logits, routes = m(m.preprocess(x)).single()
        lines = common.cigt("classify", out, *pngs).strip().splitlines()
        self.assertEqual(len(lines), len(pngs))
        for line, k, r in zip(lines, logits.argmax(1).tolist(), routes.tolist()):
            f = line.split("\t")
            self.assertEqual(f[1], m.classes[k], line)
            self.assertEqual(f[3], "-".join(map(str, r)), line)
        self.serve_and_compare(out, pngs[:6], logits.argmax(1).tolist(), routes.tolist(),
                               m.classes)
        self.held_out(out, log)

    def held_out(self, out, log):
        """The split the example held out is cigt train's: same keys, same images."""
        prov = json.loads(cf.load(out).provenance)
        self.assertEqual(list(prov)[:8], ["tool", "version", "seed", "epoch", "epochs",
                                          "validation_accuracy", "data", "config"])
        self.assertEqual(prov["data"], {"train": 108, "validation": 12, "images": 120,
                                        "dir": os.path.realpath(self.root)})
        self.assertEqual((prov["epoch"], prov["epochs"]), (1, 1))
        self.assertEqual(prov["config"]["train"]["validation_samples"], 12)
        self.assertIn("validation accuracy %.4f on 12 held-out images"
                      % prov["validation_accuracy"], log)
        # cigt reads the folder in folder_files' order: the last 12 there are cigt's split.
        dump = os.path.join(self.tmp.name, "folder.jsonl")
        r = subprocess.run([common.CIGT, "eval", out, "--data", self.root, "--dump", dump],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("was trained on this folder", r.stderr)
        self.assertIn("--allow-training-data", r.stderr)
        common.cigt("eval", out, "--data", self.root, "--dump", dump, "--allow-training-data")
        with open(dump) as f:
            labels = [json.loads(line)["label"] for line in f]
        paths, want, classes = data.folder_files(self.root)
        self.assertEqual(labels, want)
        self.assertEqual(len(paths), 120)
        tuned = os.path.join(self.tmp.name, "tuned.safetensors")
        r = subprocess.run([common.CIGT, "tune", out, "--data", self.root, "--out", tuned,
                            "--threads", "1"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("12 validation images", r.stderr)

    def serve_and_compare(self, model, pngs, classes, routes, names):
        """cigtd serves the file (as the example prints): POST each PNG to /v1/classify."""
        cigtd = os.path.join(os.path.dirname(common.CIGT), "cigtd")
        d = subprocess.Popen([cigtd, "--model", model, "--listen", "127.0.0.1:0", "--workers",
                              "1"], stderr=subprocess.PIPE, text=True)
        try:
            url = None
            for line in d.stderr:  # the 'serving model ... on http://...' line
                mt = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
                if mt:
                    url = mt.group(1)
                    break
            self.assertIsNotNone(url, "cigtd did not start")
            for p, k, r in zip(pngs, classes, routes):
                with open(p, "rb") as f:
                    req = urllib.request.Request(url + "/v1/classify", data=f.read(),
                                                 headers={"Content-Type": "image/png"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    ans = json.loads(resp.read())
                self.assertEqual((ans["class"], ans["label"], ans["route"]), (k, names[k], r))
        finally:
            d.terminate()
            d.wait(timeout=30)
            d.stderr.close()

    def test_ddp_two_processes(self):
        out = os.path.join(self.tmp.name, "ddp.safetensors")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for rank in range(2):
            env = dict(os.environ, PYTHONPATH=os.path.join(common.SRC, "python"),
                       OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(
                [sys.executable, EXAMPLE, self.root, "--out", out, "--size", "28",
                 "--batch", "8", "--steps", "3", "--channels", "1", "--save-all-ranks"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        logs = []
        for p in procs:
            try:
                logs.append(p.communicate(timeout=300)[0])
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise
            self.assertEqual(p.returncode, 0, logs[-1])
        self.assertIn("wrote %s0 (3 steps)" % out, logs[0])
        prov = json.loads(cf.load(out + "0").provenance)
        self.assertEqual(prov["processes"], 2)
        common.cigt("info", out + "0")
        a, b = cf.load(out + "0").tensors, cf.load(out + "1").tensors
        for k in a:  # gradients averaged across ranks: the weights stay identical
            if "running" not in k:
                self.assertEqual(a[k].tobytes(), b[k].tobytes(), k)

    def test_input_stats(self):
        out = os.path.join(self.tmp.name, "stats.safetensors")
        run([sys.executable, EXAMPLE, self.root, "--out", out, "--size", "28", "--batch", "16",
             "--steps", "1", "--input-stats"])
        m = ct.load(out)
        inp = json.loads(m.architecture)["input"]
        self.assertNotIn("range", inp)
        mean, std = np.array(inp["mean"]), np.array(inp["std"])
        self.assertEqual(len(mean), 3)
        self.assertTrue((mean[1:] < mean[0] + 1).all() and (std > 0).all())
        px = np.full((1, 28, 28, 3), 200, np.uint8)
        want = (200 / 255.0 - mean) / std
        got = m.preprocess(px)[0, :, 5, 5].numpy()
        self.assertLess(np.abs(got - want).max(), 1e-5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
