"""cigt.torch.loss and one training step agree with `cigt grad` on the same batch: the shipped
model, the first 125 training images, in warm-up mode at T = 25, argmax mode at T = 1 and
warm-up at T = 1 (no dropout, no re-routing: what cigt grad runs); and argmax on batches of 5
and 1 (experts with 0 or 1 rows, routers' batch norm on a single row). The C step runs in double
(--precision double) and the module in float64, so the comparison is of the algorithm (the
file stores float32: ~1e-7 relative). Checked: loss, cross-entropy and each router's IG within
1e-6 relative; every gradient within 1e-4 of its op's largest gradient; the batch-norm running
statistics after the step within 1e-5; and one SGD step (momentum 0.9, as cigt train) from the
two sets of gradients. A deliberately wrong loss (beta 1 instead of the config's) must fail.
Run: CIGT=build/cigt /usr/bin/python3 tests/python/test_grad.py"""

import json
import os
import tempfile
import unittest

import numpy as np

import common
import torch
import cigt.torch as ct
from cigt import data, format as cf


def op_of(name):
    return name.rsplit(".", 1)[0]


class Grad(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        _, cls.train = ct.read_config(common.CONFIG)
        x, y = data.load_idx_dir(common.DATA, "train", 125)
        cls.x, cls.y = x, torch.from_numpy(y)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def step(self, mode, T, beta=None, batch=125):
        g = os.path.join(self.tmp.name, "g-%s-%g-%d.safetensors" % (mode, T, batch))
        if not os.path.exists(g):
            common.cigt("grad", common.MODEL, "--config", common.CONFIG, "--out", g, "--batch",
                        batch, "--mode", mode, "--temperature", T, "--precision", "double",
                        "--data", common.DATA)
        ref = cf.load(g)
        m = ct.load(common.MODEL).double().train()
        out = m(m.preprocess(self.x[:batch]), routing=mode, temperature=T, rho=0.0,
                dropout=False)
        self.out = out
        lam = self.train["information_gain_weight"]
        beta = self.train["information_gain_beta"] if beta is None else beta
        loss, ce, igs = ct.loss(out, self.y[:batch], lam, beta, parts=True)
        loss.backward()
        return m, ref, json.loads(ref.provenance), loss, ce, igs

    def check(self, mode, T, batch=125):
        m, ref, prov, loss, ce, igs = self.step(mode, T, batch=batch)
        rel = lambda a, b: abs(a - b) / max(abs(b), 1e-12)
        self.assertLess(rel(loss.item(), prov["loss"]), 1e-6, (loss.item(), prov["loss"]))
        self.assertLess(rel(ce.item(), prov["ce"]), 1e-6)
        self.assertEqual(len(igs), len(prov["ig"]))
        for a, b in zip(igs, prov["ig"]):
            self.assertLess(rel(a.item(), b), 1e-6)
        params = dict(m.named_parameters())
        for p in params.values():  # an expert no row reached: no gradient, cigt writes zeros
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        scale = {}
        for name, p in params.items():
            scale[op_of(name)] = max(scale.get(op_of(name), 0), p.grad.abs().max().item())
        for name, p in params.items():
            d = np.abs(p.grad.numpy() - ref.tensors[name]).max()
            self.assertLessEqual(d, 1e-4 * max(scale[op_of(name)], 1e-12), name)
        for name, b in m.named_buffers():
            if name in ref.tensors:
                d = np.abs(b.numpy() - ref.tensors[name]).max()
                self.assertLessEqual(d, 1e-5 * max(np.abs(b.numpy()).max(), 1e-12), name)
        # One SGD step (cigt train's form: v = mu v + g + wd w; w -= lr v) from both gradients.
        lr, mu = self.train["lr"], self.train["momentum"]
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=mu,
                              weight_decay=self.train["weight_decay"])
        before = {k: v.detach().clone() for k, v in params.items()}
        opt.step()
        for name, p in params.items():
            w = before[name].numpy()
            c_step = w - lr * (ref.tensors[name] + self.train["weight_decay"] * w)
            d = np.abs(p.detach().numpy() - c_step).max()
            self.assertLessEqual(d, lr * 1e-4 * max(scale[op_of(name)], 1e-12), name)

    def test_warmup_T25(self):
        self.check("warmup", 25.0)

    def test_argmax_T1(self):
        self.check("argmax", 1.0)

    def test_warmup_T1(self):
        self.check("warmup", 1.0)

    def test_argmax_batch5(self):
        # experts receive 0, 1 or a few rows
        self.check("argmax", 1.0, batch=5)
        leaves = torch.bincount(self.out.path[:, -1], minlength=4).tolist()
        self.assertIn(1, leaves + torch.bincount(self.out.path[:, 1], minlength=2).tolist())

    def test_argmax_batch1(self):
        # one row: the routers' batch norm has one value per channel and uses (and keeps) its
        # running statistics; the experts' feature maps still give batch statistics
        self.check("argmax", 1.0, batch=1)

    def test_wrong_beta_is_detected(self):
        _, _, prov, loss, _, _ = self.step("argmax", 1.0, beta=1.0)
        self.assertGreater(abs(loss.item() - prov["loss"]) / abs(prov["loss"]), 1e-3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
