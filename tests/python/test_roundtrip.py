"""Round trips between cigt and PyTorch.
  * C-trained -> PyTorch -> file: every shipped model (trained by cigt train) loaded with
    cigt.torch.load and written back with cigt.torch.save holds identical tensors (bit for bit)
    and equivalent metadata (same format, the same architecture JSON, the same provenance).
  * The loaded module computes what cigt eval computes on the first 1,000 test images (classes
    and routes equal, logits within 1e-4).
  * PyTorch-trained -> file -> cigt: a trellis trained for 40 steps in PyTorch (warm-up, then
    argmax with re-routing, the schedule of cigt train) and saved; `cigt eval --limit 1000
    --dump` gives the same class and route as the module on each of the 1,000 test images.
  * Operating points after fine-tuning: cigt.torch.save keeps the loaded file's points while
    the weights are as loaded, drops them with a warning once a training step changed them
    (running statistics included), and keeps them with keep_points=True.
  * Multipath (the C engine's rule): thresholds of 1 give the argmax answer; thresholds of 0 run
    every path, and the answer is the mean of the softmax over all of them, computed here path
    by path; at 0.3 at most 3 experts open per router and the main route is the argmax route.
Run: CIGT=build/cigt /usr/bin/python3 tests/python/test_roundtrip.py"""

import itertools
import json
import os
import tempfile
import unittest
import warnings

import numpy as np

import common
import torch
import cigt.torch as ct
from cigt import data, format as cf

STEPS = 40  # of 64 images: enough for routes to spread over the leaves
SHIPPED = ["fashion_mnist", "fashion_mnist_authors", "thin", "thick"]


def dump(model, path, n=1000):
    common.cigt("eval", model, "--limit", n, "--dump", path, "--data", common.DATA, "--threads", 1)
    with open(path) as f:
        return [json.loads(line) for line in f]


class RoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        x, y = data.load_idx_dir(common.DATA, "t10k", 1000)
        cls.x, cls.y = x, y

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_c_trained_to_torch_to_file_identical(self):
        for name in SHIPPED:
            with self.subTest(name):
                src = os.path.join(common.SRC, "models", name + ".safetensors")
                a = cf.load(src)
                m = ct.load(src)
                out = self.path(name + ".safetensors")
                ct.save(m, out)
                b = cf.load(out)
                self.assertEqual(list(a.tensors), list(b.tensors))
                for k in a.tensors:
                    self.assertEqual(a.tensors[k].tobytes(), b.tensors[k].tobytes(), k)
                self.assertEqual(b.metadata["format"], "cigt-1")
                self.assertEqual(a.metadata, b.metadata)  # architecture text, provenance
                common.cigt("info", out)  # the C reader takes it

    def test_save_classes_and_provenance(self):
        m = ct.load(common.MODEL)
        out = self.path("renamed.safetensors")
        names = ["c%d" % i for i in range(10)]
        ct.save(m, out, classes=names, provenance={"tool": "test", "note": "renamed"})
        b = cf.load(out)
        self.assertEqual(b.arch["classes"], names)
        self.assertEqual(json.loads(b.provenance)["note"], "renamed")
        info = json.loads(common.cigt("info", out, "--json"))
        self.assertEqual(info["architecture"]["classes"], names)
        with self.assertRaises(ValueError):
            ct.save(m, out, classes=["a"])

    def test_operating_points_round_trip(self):
        """The shipped model's operating points: read (cigt.format), written back as points
        (serialize(operating_points=...)) and read again, tensor for tensor and point for
        point; the table's text is the one cigt tune wrote, and the C reader sees in the written
        file exactly the points it sees in the shipped one."""
        a = cf.load(common.MODEL)
        c_src = json.loads(common.cigt("info", common.MODEL, "--json"))["operating_points"]
        self.assertGreater(len(c_src), 1, "the shipped model has no tuned operating points")
        self.assertEqual([p.name for p in a.operating_points], [q["name"] for q in c_src])
        out = self.path("points_back.safetensors")
        cf.save(out, a.architecture, a.tensors, a.provenance,
                operating_points=a.operating_points)
        b = cf.load(out)
        self.assertEqual(list(a.tensors), list(b.tensors))
        for k in a.tensors:
            self.assertEqual(a.tensors[k].tobytes(), b.tensors[k].tobytes(), k)
        self.assertEqual(b.operating_points, a.operating_points)
        self.assertEqual(b.metadata, a.metadata)
        c_out = json.loads(common.cigt("info", out, "--json"))["operating_points"]
        self.assertEqual(c_out, c_src)
        self.assertEqual([(p.name, list(p.thresholds), p.confidence, p.second, p.second_sha256,
                           p.val_accuracy, p.mean_macs) for p in b.operating_points],
                         [(q["name"], q["thresholds"], q["confidence"], q.get("second"),
                           q.get("second_sha256"), q["val_accuracy"], q["mean_macs"])
                          for q in c_out])

    def test_extra_metadata_kept(self):
        a = cf.load(common.MODEL)
        src = self.path("points.safetensors")
        points = ('[{"name": "single", "thresholds": [1, 1], "val_accuracy": 0.9, '
                  '"mean_macs": 5749632}]')
        cf.save(src, a.architecture, a.tensors, a.provenance, {"operating_points": points})
        m = ct.load(src)
        kept, dropped = self.path("kept.safetensors"), self.path("dropped.safetensors")
        ct.save(m, kept)
        ct.save(m, dropped, metadata={})
        self.assertEqual(cf.load(kept).metadata["operating_points"], points)
        self.assertNotIn("operating_points", cf.load(dropped).metadata)

    def test_save_drops_stale_points(self):
        """Points are measurements of the weights they were tuned on (proto/model-format.md
        section 6): a fine-tuned module must not carry them silently."""
        npoints = len(cf.load(common.MODEL).operating_points)
        self.assertGreater(npoints, 1, "the shipped model has no tuned operating points")
        m = ct.load(common.MODEL)
        same = self.path("same.safetensors")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ct.save(m, same)
        self.assertEqual(w, [], "no warning while the weights are as loaded")
        self.assertEqual(len(cf.load(same).operating_points), npoints)
        # One step in train mode: weights and running statistics change.
        arch, train = ct.read_config(common.CONFIG)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        m.train()
        loss = ct.loss(m(m.preprocess(self.x[:32])), torch.from_numpy(self.y[:32]),
                       train["information_gain_weight"], train["information_gain_beta"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.eval()
        tuned = self.path("fine_tuned.safetensors")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ct.save(m, tuned)
        self.assertEqual(len(w), 1)
        self.assertIn("dropped the %d operating points" % npoints, str(w[0].message))
        self.assertIn("keep_points=True", str(w[0].message))
        self.assertEqual(cf.load(tuned).operating_points, [])
        info = json.loads(common.cigt("info", tuned, "--json"))
        self.assertFalse(info.get("operating_points"))
        kept = self.path("fine_tuned_kept.safetensors")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ct.save(m, kept, keep_points=True)
        self.assertEqual(w, [])
        self.assertEqual(len(cf.load(kept).operating_points), npoints)
        # Running statistics alone count: a forward pass in train mode, no step.
        m2 = ct.load(common.MODEL).train()
        with torch.no_grad():
            m2(m2.preprocess(self.x[:32]))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ct.save(m2.eval(), self.path("bn_only.safetensors"))
        self.assertEqual(len(w), 1, "changed running statistics make the points stale too")

    def test_c_trained_forward_matches_cigt_eval(self):
        c = dump(common.MODEL, self.path("shipped.jsonl"))
        m = ct.load(common.MODEL)
        with torch.no_grad():
            logits, routes = m(m.preprocess(self.x)).single()
        self.assertEqual([r["class"] for r in c], logits.argmax(1).tolist())
        self.assertEqual([r["route"] for r in c], routes.tolist())
        diff = np.abs(np.array([r["logits"] for r in c]) - logits.numpy())
        self.assertLess(diff.max(), 1e-4 * max(1.0, np.abs(logits.numpy()).max()))

    def test_torch_trained_to_file_to_cigt_eval(self):
        arch, train = ct.read_config(common.CONFIG)
        m = ct.from_config(arch, seed=11)
        xt, yt = data.load_idx_dir(common.DATA, "train", STEPS * 64)
        opt = torch.optim.SGD(m.parameters(), lr=train["lr"], momentum=train["momentum"])
        m.train()
        torch.manual_seed(5)
        for it in range(STEPS):
            ct.apply_schedule(m, train, epoch=0 if it < 4 else train["warmup_epochs"],
                              iteration=it, optimizer=opt)
            xb = m.preprocess(xt[it * 64:(it + 1) * 64])
            yb = torch.from_numpy(yt[it * 64:(it + 1) * 64])
            loss = ct.loss(m(xb), yb, train["information_gain_weight"],
                           train["information_gain_beta"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.assertTrue(np.isfinite(loss.item()))
        out = self.path("torch_trained.safetensors")
        ct.save(m, out, provenance={"tool": "test_roundtrip", "steps": STEPS})
        m.eval()
        with torch.no_grad():
            logits, routes = m(m.preprocess(self.x)).single()
        c = dump(out, self.path("torch_trained.jsonl"))
        self.assertEqual(len(c), 1000)
        self.assertEqual([r["class"] for r in c], logits.argmax(1).tolist())
        self.assertEqual([r["route"] for r in c], routes.tolist())
        # the file read back is the module's tensors exactly
        back = ct.load(out)
        for k, v in m.state_dict().items():
            self.assertTrue(torch.equal(back.state_dict()[k], v), k)
        # a few steps already beat chance (10 classes) and use several paths: a trained model
        self.assertGreater(len(set(map(tuple, routes.tolist()))), 1)
        self.assertGreater(np.mean(logits.argmax(1).numpy() == self.y), 0.3)

    def test_image_conversion_matches_cigt_classify(self):
        """Colour PNGs of other sizes (upscaled 40x36, downscaled 20x20, 3 channels) fed to the
        gray 28x28 model: cigt.data converts them as cigt classify does (BT.601 luma, bilinear
        up, area average down), so class, route and probability agree."""
        from PIL import Image
        m = ct.load(common.MODEL)
        paths, rng = [], np.random.default_rng(4)
        for i in range(24):
            g = self.x[i, :, :, 0].astype(np.float64)
            tint = rng.uniform(0.4, 1.0, 3)
            rgb = (g[..., None] * tint).astype(np.uint8)
            size = (40, 36) if i % 2 else (20, 20)
            p = self.path("conv%02d.png" % i)
            Image.fromarray(rgb).resize(size, Image.NEAREST).save(p)
            paths.append(p)
        x = np.stack([data.load_image(p, 1, 28, 28) for p in paths])
        with torch.no_grad():
            out = m(m.preprocess(x))
        logits, routes = out.single()
        probs = torch.softmax(logits, 1)
        lines = common.cigt("classify", common.MODEL, *paths).strip().splitlines()
        self.assertEqual(len(lines), len(paths))
        for line, k, r, p in zip(lines, logits.argmax(1).tolist(), routes.tolist(), probs):
            f = line.split("\t")
            self.assertEqual(f[1], m.classes[k], line)
            self.assertEqual(f[3], "-".join(map(str, r)), line)
            self.assertLessEqual(abs(float(f[2]) - p[k].item()), 6e-5, line)

    def test_multipath(self):
        m = ct.load(common.MODEL)
        x = m.preprocess(self.x[:200])
        with torch.no_grad():
            arg = m(x)
            hi = m(x, thresholds=[1.0, 1.0])
            full = m(x, thresholds=[0.0, 0.0])
            # every path of the trellis, expert by expert, with the eval-mode modules
            K = [len(L.experts) for L in m.layers]
            probs = []
            for p in itertools.product(*[range(k) for k in K]):
                h = x
                for l, e in enumerate(p):
                    h = m.layers[l].experts[e](h, False, False)
                probs.append(torch.softmax(h.reshape(len(x), -1), 1))
            want = torch.stack(probs).mean(0)
        self.assertTrue(torch.equal(hi.classes(), arg.classes()))
        self.assertEqual(hi.logits.shape[0], 200)
        self.assertEqual(full.logits.shape[0], 200 * int(np.prod(K)))
        self.assertLess((full.probs() - want).abs().max().item(), 1e-5)
        self.assertTrue(all(len(set(ps)) == int(np.prod(K)) for ps in full.paths()))
        # a middle threshold: each sample's argmax path is among its paths
        mid = m(x, thresholds=[0.3, 0.3])
        _, routes = arg.single()
        self.assertTrue(torch.equal(mid.routes(), routes))
        self.assertTrue(torch.equal(full.routes(), routes))
        for ps, r in zip(mid.paths(), routes.tolist()):
            self.assertIn(tuple(r), ps)
            self.assertLessEqual(len(ps), 2 * 3)  # router 0 has 2 experts, router 1 opens <= 3
        with self.assertRaises(ValueError):
            m(x, thresholds=[1.5, 0.5])


if __name__ == "__main__":
    unittest.main(verbosity=2)
