"""cigt.torch's forward pass against the C engine on residual trellises (issue 26): one model
file, written by tests/reference/make_model.py (every batch norm random, so the engine's folding
is exercised; router batch norm calibrated so that routes spread), loaded by ct.load and
evaluated by `cigt eval --dump` on the same images; routes, classes and logits must agree.
  * residual_tiny (tests/reference/residual_tiny.json, 3x16x16; identity, 1x1-conv and pooling
    shortcuts, a block without the final ReLU, router op chains, three layers of 1, 2, 3
    experts) on 300 Fashion-MNIST test images fitted to 16x16 (grey, replicated to the three
    channels by both sides) and 20 colour PNGs (tinted Fashion-MNIST images, one per class in
    two folders, matched by label since cigt reads a folder in an order of its own);
  * the CIFAR-10 ResNet-110 trellis (models/cifar10_resnet110_trellis.json, 3x32x32) on 48 grey
    and 20 colour images the same way.
The module runs in float32 (as loaded) and in float64. Tolerance: the engine computes in float32
with batch norm folded into the convolutions and its own summation order, so its logits differ
from the float64 forward by float32 rounding accumulated through the net: measured at most
5.3e-8 (tiny) and 5.3e-7 (110 layers; the float32 module 6.0e-8 and 7.2e-7). The bound is
1e-5 absolute plus 1e-5 of the largest logit: about 20 times the worst seen, 10 times tighter
than the reference's 1e-4 (tests/reference/check_forward.py), far below what a wrong op gives.
Every router must pick the same expert unless its top two logits are within 1e-4 (a float32
tie; at most a tenth of the samples); at least two routes must occur, and every sample that the float64 module routes like the
engine must get the engine's class unless its top two logits are within the tolerance.
Run: CIGT=build/cigt /usr/bin/python3 tests/python/test_torch_engine.py"""

import collections
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import numpy as np

import common
import torch
import cigt.torch as ct

REF = os.path.join(common.SRC, "tests", "reference")
TINY = os.path.join(REF, "residual_tiny.json")
CIFAR = os.path.join(common.SRC, "models", "cifar10_resnet110_trellis.json")
ATOL = RTOL = 1e-5  # logits: ATOL + RTOL * max |logit| (see above)
TIE = 1e-4          # router logits this close are a float32 tie: either expert is right
WORST = {}          # model -> (worst |C - float64|, worst |C - float32|), printed at the end


def png_rgb(px, w, h):
    """8-bit RGB PNG (px: h*w*3 bytes, HWC)."""
    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    rows = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def fashion(n, size):
    """The first n Fashion-MNIST test images centre-cropped or zero-padded to size x size:
    uint8 (n, size, size)."""
    with gzip.open(os.path.join(common.DATA, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(16 + 784 * n)[16:], np.uint8).reshape(n, 28, 28)
    out = np.zeros((n, size, size), np.uint8)
    d = (28 - size) // 2
    if d >= 0:
        out[:] = raw[:, d:d + size, d:d + size]
    else:
        out[:, -d:-d + 28, -d:-d + 28] = raw
    return out


def read_dump(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class TorchEngine(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        for k, (w64, w32) in sorted(WORST.items()):
            print("%s: worst |logit difference| C vs float64 %.3g, vs float32 %.3g"
                  % (k, w64, w32), file=sys.stderr)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def make(self, config, name, calibrate):
        out = self.path(name + ".safetensors")
        subprocess.run(["/usr/bin/python3", os.path.join(REF, "make_model.py"), config, out,
                        "--seed", "5", "--calibrate", str(calibrate)], check=True,
                       stdout=subprocess.DEVNULL)
        return out

    def grey(self, size, n):
        """IDX directory of n grey size x size images -> (dir, pixels uint8 (n, 3, s, s))."""
        d = self.path("grey%d" % size)
        px = fashion(n, size)
        os.makedirs(d, exist_ok=True)
        with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz"), "wb", 1) as f:
            f.write(struct.pack(">IIII", 0x803, n, size, size) + px.tobytes())
        with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb", 1) as f:
            f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
        return d, np.repeat(px[:, None], 3, axis=1)

    def colour(self, size, classes, seed):
        """An image folder DIR/<class>/0.png, one tinted Fashion-MNIST image per class
        -> (dir, pixels uint8 (classes, 3, s, s) in class order)."""
        rng = random.Random(seed)
        d = self.path("colour%d-%d" % (size, seed))
        g = fashion(100, size)[rng.sample(range(100), len(classes))]
        tint = np.array([[rng.uniform(0.4, 1.0) for _ in range(3)] for _ in classes])
        px = np.minimum(255, g[:, None].astype(np.float64) * tint[:, :, None, None])
        px = px.astype(np.uint8)
        for k, name in enumerate(classes):
            os.makedirs(os.path.join(d, name), exist_ok=True)
            with open(os.path.join(d, name, "0.png"), "wb") as f:
                f.write(png_rgb(px[k].transpose(1, 2, 0).tobytes(), size, size))
        return d, px

    def engine(self, model, data, n=None):
        """`cigt eval --dump` records."""
        dump = self.path("dump.jsonl")
        args = ["eval", model, "--data", data, "--dump", dump]
        if n is not None:
            args += ["--limit", n]
        common.cigt(*args)
        return read_dump(dump)

    def compare(self, m32, m64, pixels, recs, what):
        """recs[i] is the engine's answer for pixels[i]. -> (routes seen, worst differences)."""
        x = torch.from_numpy(pixels)
        with torch.no_grad():
            o64 = m64(m64.preprocess(x))
            o32 = m32(m32.preprocess(x))
        l64, r64 = o64.single()
        l32, r32 = o32.single()
        routers = [(r.logits, r.sample) for r in o64.routers]
        worst64 = worst32 = 0.0
        routes = collections.Counter()
        ties = 0
        for i, rec in enumerate(recs):
            route = rec["route"]
            routes[tuple(route)] += 1
            if r64[i].tolist() != route:
                ties += 1
                self.assertTrue(self.near_tie(routers, i, r64[i].tolist(), route),
                                "%s %d: cigt.torch route %s, the engine %s"
                                % (what, i, r64[i].tolist(), route))
                continue
            c = np.array(rec["logits"])
            tol = ATOL + RTOL * np.abs(c).max()
            d64 = np.abs(c - l64[i].numpy()).max()
            worst64 = max(worst64, d64)
            self.assertLessEqual(d64, tol, "%s %d: logits %s vs %s" % (what, i, c, l64[i]))
            top = np.sort(l64[i].numpy())
            if top[-1] - top[-2] > 2 * tol:
                self.assertEqual(int(torch.argmax(l64[i])), rec["class"], "%s %d" % (what, i))
            if r32[i].tolist() == route:
                worst32 = max(worst32, np.abs(c - l32[i].numpy()).max())
        self.assertLessEqual(ties, len(recs) // 10, "%s: %d ties" % (what, ties))
        return routes, worst64, worst32

    @staticmethod
    def near_tie(routers, i, got, want):
        """The first router where got and want part has its two experts within TIE."""
        for l, (logits, sample) in enumerate(routers):
            if got[l + 1] != want[l + 1]:
                row = logits[(sample == i).nonzero().flatten()[0]]
                return abs(float(row[got[l + 1]] - row[want[l + 1]])) < TIE
        return False

    def check_model(self, config, name, size, calibrate, ngrey):
        model = self.make(config, name, calibrate)
        m32 = ct.load(model).eval()
        m64 = ct.load(model).double().eval()
        classes = m32.classes
        d, px = self.grey(size, ngrey)
        recs = self.engine(model, d, ngrey)
        self.assertEqual(len(recs), ngrey)
        routes, w64, w32 = self.compare(m32, m64, px, recs, name + " grey")
        for seed in (1, 2):
            d, px = self.colour(size, classes, seed)
            recs = self.engine(model, d)
            by_label = {r["label"]: r for r in recs}
            self.assertEqual(sorted(by_label), list(range(len(classes))))
            r, a, b = self.compare(m32, m64, px, [by_label[k] for k in range(len(classes))],
                                   "%s colour%d" % (name, seed))
            routes += r
            w64, w32 = max(w64, a), max(w32, b)
        self.assertGreaterEqual(len(routes), 2, "%s: routes %s" % (name, routes))
        WORST[name] = (w64, w32)
        print("%s: %d routes seen %s, worst logit difference %.3g (float64), %.3g (float32)"
              % (name, len(routes), sorted(routes.items()), w64, w32), file=sys.stderr)

    def test_tiny(self):
        self.check_model(TINY, "residual_tiny", 16, 200, 300)

    def test_resnet110(self):
        self.check_model(CIFAR, "cifar10_resnet110_trellis", 32, 64, 48)


if __name__ == "__main__":
    unittest.main(verbosity=2)
