"""Residual trellises in cigt.format and cigt.torch (proto/model-format.md: residual blocks,
globalavgpool, router op chains).
  * C -> PyTorch -> file: a random CIFAR ResNet-110 trellis (cigt init --random-bn) loaded with
    cigt.torch.load and written back with cigt.torch.save holds the same tensors bit for bit, in
    the same order at the same offsets (the data sections are equal), with the same metadata;
    cigt info takes the file with the architecture's numbers, and `cigt average` of the file
    with itself (the C reader reading it, the C writer writing what it read) gives those
    tensors back. A module fresh from from_config goes the same way (saved, read by C, loaded
    again: equal state dicts).
  * The forward pass of a small residual trellis (3x16x16 input; a block with a strided 1x1-conv
    shortcut, blocks with the identity shortcut, one without the ReLU after the add; a router
    op chain holding a block; maxpool and globalavgpool; two experts) agrees in eval mode with
    the computation written out here in numpy (float64): every logit within 1e-4 and the
    routes equal, both experts of layer 1 taken by some sample.
  * Training as today: one warm-up step gives every parameter a gradient (the router chain's
    through the information gain), moves the running statistics inside blocks, and the module
    saves to a file both readers take; python/examples/train_folder.py trains a residual config
    in two DDP processes (gloo) to identical weights that cigt info reads.
Run: CIGT=build/cigt /usr/bin/python3 tests/python/test_residual.py"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import common
import torch
import cigt.torch as ct
from cigt import format as cf
from test_example import EXAMPLE, make_folder

CIFAR = os.path.join(common.SRC, "models", "cifar10_resnet110_trellis.json")

CONV = lambda out, k=3, **kw: dict({"type": "conv", "out": out, "kernel": k,  # noqa: E731
                                    "padding": k // 2}, **kw)
BN = {"type": "batchnorm"}
RELU = {"type": "relu"}
SMALL = {
    "name": "small_res",
    "input": {"channels": 3, "height": 16, "width": 16, "range": [-1.0, 1.0]},
    "classes": ["a", "b", "c", "d", "e"],
    "layers": [
        {"experts": 1,
         "ops": [CONV(8), BN, RELU,
                 {"type": "residual", "main": [CONV(8, stride=2), BN, RELU, CONV(8), BN],
                  "shortcut": [CONV(8, 1, stride=2, bias=False), {"type": "batchnorm",
                                                                  "eps": 1e-3}]}],
         "router": {"ops": [CONV(4), BN, RELU,
                            {"type": "residual", "main": [CONV(4, bias=False), BN],
                             "relu": False}],
                    "pool": 4, "hidden": 6, "bn_eps": 1e-4}},
        {"experts": 2,
         "ops": [{"type": "residual", "main": [CONV(8), BN, RELU, CONV(8), BN], "shortcut": []},
                 {"type": "maxpool", "kernel": 2}, {"type": "globalavgpool"},
                 {"type": "linear", "out": 5}]},
    ],
}

# For the example's folder of 28x28 gray images (its last linear gets the folder's class count).
FOLDER = {
    "name": "folder_res",
    "input": {"channels": 1, "height": 28, "width": 28},
    "classes": ["x"],
    "layers": [
        {"experts": 1,
         "ops": [CONV(8), BN, RELU,
                 {"type": "residual", "main": [CONV(8, stride=2), BN, RELU, CONV(8), BN],
                  "shortcut": [CONV(8, 1, stride=2), BN]}],
         "router": {"ops": [CONV(4, stride=2), BN, RELU], "pool": 7, "hidden": 16}},
        {"experts": 2,
         "ops": [{"type": "residual", "main": [CONV(8), BN, RELU, CONV(8), BN]},
                 {"type": "globalavgpool"}, {"type": "linear", "out": 1}]},
    ],
}


def data_section(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    return header, buf[8 + n:]


def randomize(module, seed):
    """Random batch-norm parameters and running statistics (not the identity they start as)."""
    g = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            pre, suf = name.rsplit(".", 1)
            if suf == "running_var":
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif suf == "running_mean":
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif pre + ".running_var" in sd:  # a batch norm's weight (gamma) or bias (beta)
                t.copy_(torch.randn(t.shape, generator=g) * 0.3 + (suf == "weight"))


# ------------------------------------------------------------- the forward pass, by hand
def conv(x, w, b, stride, pad):
    """2-D cross-correlation of x (C, H, W) with w (O, C, kh, kw), zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    o, c, kh, kw = w.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, i, j] = np.tensordot(w, win, axes=([1, 2, 3], [0, 1, 2]))
    return y + (b[:, None, None] if b is not None else 0)


def bn(x, t, pre, eps):
    eps = float(np.float32(eps))
    s = (t[pre + ".weight"] / np.sqrt(t[pre + ".running_var"] + eps))
    if x.ndim == 3:
        return ((x - t[pre + ".running_mean"][:, None, None]) * s[:, None, None]
                + t[pre + ".bias"][:, None, None])
    return (x - t[pre + ".running_mean"]) * s + t[pre + ".bias"]


def relu(x):
    return np.maximum(x, 0)


def pool(x, k, fn):
    c, h, w = x.shape
    return fn(x[:, :h // k * k, :w // k * k].reshape(c, h // k, k, w // k, k), axis=(2, 4))


def by_hand(t, x):
    """SMALL's logits and route for one input (3, 16, 16), written out op by op."""
    W = lambda p: t[p + ".weight"]  # noqa: E731
    B = lambda p: t.get(p + ".bias")  # noqa: E731
    e = "layers.0.experts.0.ops."
    s = relu(bn(conv(x, W(e + "0"), B(e + "0"), 1, 1), t, e + "1", 1e-5))
    m = relu(bn(conv(s, W(e + "3.main.0"), B(e + "3.main.0"), 2, 1), t, e + "3.main.1", 1e-5))
    m = bn(conv(m, W(e + "3.main.3"), B(e + "3.main.3"), 1, 1), t, e + "3.main.4", 1e-5)
    sc = bn(conv(s, W(e + "3.shortcut.0"), None, 2, 0), t, e + "3.shortcut.1", 1e-3)
    s = relu(m + sc)  # 8 x 8 x 8
    r = "routers.0."
    z = relu(bn(conv(s, W(r + "ops.0"), B(r + "ops.0"), 1, 1), t, r + "ops.1", 1e-5))
    z = z + bn(conv(z, W(r + "ops.3.main.0"), None, 1, 1), t, r + "ops.3.main.1", 1e-5)
    z = pool(z, 4, np.mean).reshape(-1)  # 4 x 2 x 2
    h = bn(W(r + "fc1") @ z + B(r + "fc1"), t, r + "bn", 1e-4)
    k = int(np.argmax(W(r + "fc2") @ h + B(r + "fc2")))
    e = "layers.1.experts.%d.ops." % k
    m = relu(bn(conv(s, W(e + "0.main.0"), B(e + "0.main.0"), 1, 1), t, e + "0.main.1", 1e-5))
    m = bn(conv(m, W(e + "0.main.3"), B(e + "0.main.3"), 1, 1), t, e + "0.main.4", 1e-5)
    s = relu(m + s)
    g = pool(s, 2, np.max).mean(axis=(1, 2))
    return W(e + "3") @ g + B(e + "3"), [0, k]


class Residual(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def c_rewrite(self, src):
        """The tensors of src as the C reader reads them: cigt average of src with itself."""
        out = self.path("avg-" + os.path.basename(src))
        common.cigt("average", "-o", out, src, src)
        return cf.load(out).tensors

    def check_c_info(self, path, arch):
        info = json.loads(common.cigt("info", "--json", path))
        self.assertEqual((info["parameters"], info["path_macs"], info["dense_macs"]),
                         (arch["params"], arch["path_macs"], arch["dense_macs"]))
        return info

    def test_cifar_c_to_torch_to_file_identical(self):
        src = self.path("cifar-c.safetensors")
        common.cigt("init", CIFAR, "-o", src, "--seed", 7, "--random-bn")
        a = cf.load(src)
        m = ct.load(src)
        out = self.path("cifar-torch.safetensors")
        ct.save(m, out)
        b = cf.load(out)
        self.assertEqual(len(a.tensors), 1429)
        self.assertEqual(list(a.tensors), list(b.tensors))
        self.assertEqual(list(b.tensors), [n for n, _, _ in cf.tensor_list(b.arch)])
        for k in a.tensors:
            self.assertEqual(a.tensors[k].tobytes(), b.tensors[k].tobytes(), k)
        self.assertEqual(a.metadata, b.metadata)
        ha, da = data_section(src)
        hb, db = data_section(out)
        self.assertEqual(da, db)
        for k in a.tensors:
            self.assertEqual(ha[k], hb[k], k)
        # running statistics inside blocks and router chains are not the identity (--random-bn)
        for k in ("layers.1.experts.1.ops.0.shortcut.1.running_var",
                  "layers.2.experts.3.ops.17.main.4.running_mean", "routers.1.ops.1.running_var"):
            self.assertIn(k, b.tensors)
            self.assertFalse(np.all(b.tensors[k] == b.tensors[k].flat[0]), k)
        info = self.check_c_info(out, b.arch)
        self.assertEqual(info["parameters"], 865390)
        self.assertEqual([L["expert_macs"] for L in info["layers"]],
                         [L["expert_macs"] for L in b.arch["layers"]])
        c = self.c_rewrite(out)
        self.assertEqual(list(c), list(b.tensors))
        for k in c:
            self.assertEqual(c[k].tobytes(), b.tensors[k].tobytes(), k)
        # and loaded again, the module's state is the same
        m2 = ct.load(out)
        sd, sd2 = m.state_dict(), m2.state_dict()
        self.assertEqual(list(sd), list(sd2))
        for k in sd:
            self.assertTrue(torch.equal(sd[k], sd2[k]), k)
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            o1, o2 = m(x), m2(x)
        self.assertTrue(torch.equal(o1.logits, o2.logits))

    def test_fresh_module_to_file_to_c(self):
        m = ct.from_config(CIFAR, seed=11)
        randomize(m, 5)
        out = self.path("cifar-fresh.safetensors")
        ct.save(m, out)
        self.check_c_info(out, cf.load(out).arch)
        want = m.tensors()
        c = self.c_rewrite(out)
        self.assertEqual(list(c), list(want))
        for k in want:
            self.assertEqual(c[k].tobytes(), want[k].tobytes(), k)
        sd, sd2 = m.state_dict(), ct.load(out).state_dict()
        self.assertEqual(set(sd), set(sd2))
        for k in sd:
            self.assertTrue(torch.equal(sd[k], sd2[k]), k)

    def small(self, seed=3, split=None):
        """SMALL with random weights, saved; split (a batch) moves router 0's fc2 bias so that
        half the batch goes to each expert of layer 1, none of it near a tie."""
        m = ct.from_config(SMALL, seed=seed)
        randomize(m, seed)
        if split is not None:
            with torch.no_grad():
                a = m.eval()(split).routers[0].logits
                d = torch.sort(a[:, 0] - a[:, 1]).values
                n = len(d) // 2
                m.routers[0].fc2.bias[1] += (d[n - 1] + d[n]) / 2
        out = self.path("small-%d.safetensors" % seed)
        ct.save(m, out)
        return out

    def test_small_module_structure(self):
        m = ct.from_config(SMALL, seed=1)
        want = [(n, s) for n, s, _ in cf.tensor_list(m.arch)]
        sd = m.state_dict()
        self.assertEqual(sorted(sd), sorted(n for n, _ in want))
        for n, s in want:
            self.assertEqual(tuple(sd[n].shape), s, n)
        self.assertIn("layers.0.experts.0.ops.3.shortcut.0.weight", sd)
        self.assertNotIn("layers.0.experts.0.ops.3.shortcut.0.bias", sd)
        self.assertEqual(tuple(sd["routers.0.ops.3.main.0.weight"].shape), (4, 4, 3, 3))
        self.assertFalse(any(".shortcut." in n for n in sd if n.startswith("layers.1.")))
        self.assertEqual(m.routers[0].bn.eps, np.float32(1e-4))
        self.assertEqual(m.layers[0].experts[0].ops[3].shortcut[1].eps, np.float32(1e-3))
        self.assertFalse(m.routers[0].ops[3].relu)
        self.assertTrue(m.layers[1].experts[1].ops[0].relu)

    def test_small_forward_by_hand(self):
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (24, 3, 16, 16))
        path = self.small(split=torch.from_numpy(x).float())
        common.cigt("info", path)
        m = ct.load(path).double()
        t = {k: v.astype(np.float64) for k, v in cf.load(path).tensors.items()}
        with torch.no_grad():
            out = m(torch.from_numpy(x))
        logits, routes = out.single()
        seen = []
        for i in range(x.shape[0]):
            want, route = by_hand(t, x[i])
            self.assertEqual(routes[i].tolist(), route, i)
            np.testing.assert_allclose(logits[i].numpy(), want, rtol=0, atol=1e-4)
            self.assertGreater(np.abs(want).max(), 1e-2)  # not a degenerate all-zero output
            seen.append(route[1])
        self.assertEqual(sorted(seen), [0] * 12 + [1] * 12)
        # float32, as loaded: the same within float rounding
        m32 = ct.load(path)
        with torch.no_grad():
            l32, r32 = m32(torch.from_numpy(x).float()).single()
        self.assertTrue(torch.equal(r32, routes))
        np.testing.assert_allclose(l32.numpy(), logits.numpy(), rtol=0, atol=1e-4)

    def test_training_step(self):
        path = self.small(seed=4)
        m = ct.load(path).train()
        before = {k: v.clone() for k, v in m.state_dict().items()}
        x = torch.rand(16, 3, 16, 16) * 2 - 1
        y = torch.arange(16) % 5
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        out = m(x, routing="warmup", temperature=2.0)
        self.assertEqual(out.logits.shape, (32, 5))
        ct.loss(out, y, 0.5, 1.0).backward()
        for name, p in m.named_parameters():
            self.assertIsNotNone(p.grad, name)
            self.assertGreater(p.grad.abs().max().item(), 0, name)
        opt.step()
        sd = m.state_dict()
        for k in ("layers.0.experts.0.ops.3.shortcut.1.running_mean",
                  "layers.1.experts.1.ops.0.main.4.running_var",
                  "routers.0.ops.3.main.1.running_mean",
                  "layers.0.experts.0.ops.3.main.0.weight", "routers.0.ops.0.weight"):
            self.assertFalse(torch.equal(sd[k], before[k]), k)
        out = self.path("small-trained.safetensors")
        ct.save(m, out)
        common.cigt("info", out)
        b = cf.load(out)
        for k, v in m.tensors().items():
            self.assertEqual(b.tensors[k].tobytes(), v.tobytes(), k)
        # argmax routing with re-routing runs too (experts may get no rows)
        m(x, routing="argmax", rho=0.5)

    def test_ddp_example(self):
        root = self.path("folder")
        make_folder(root, per_class=24)
        cfg = self.path("folder_res.json")
        with open(cfg, "w") as f:
            json.dump(FOLDER, f)
        out = self.path("ddp.safetensors")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for rank in range(2):
            env = dict(os.environ, PYTHONPATH=os.path.join(common.SRC, "python"),
                       OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(
                [sys.executable, EXAMPLE, root, "--out", out, "--config", cfg, "--batch", "8",
                 "--steps", "3", "--save-all-ranks"],
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
        a, b = cf.load(out + "0"), cf.load(out + "1")
        self.assertEqual(a.arch["classes"], ["sneaker", "trouser", "tshirt"])
        self.check_c_info(out + "0", a.arch)
        init = ct.from_config(json.loads(a.architecture), seed=1).tensors()  # the example's
        for k in a.tensors:  # gradients averaged across ranks: the weights stay identical
            if "running" not in k:
                self.assertEqual(a.tensors[k].tobytes(), b.tensors[k].tobytes(), k)
        # the steps moved the weights inside blocks and the router chain
        for k in ("layers.0.experts.0.ops.3.shortcut.0.weight", "routers.0.ops.0.weight",
                  "layers.0.experts.0.ops.3.main.3.bias"):
            self.assertFalse(np.array_equal(a.tensors[k], init[k]), k)


if __name__ == "__main__":
    unittest.main(verbosity=2)
