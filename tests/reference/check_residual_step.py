#!/usr/bin/python3
"""check_residual_step.py -- one training step of a residual trellis against PyTorch autograd.

check_train_step.py reads chain models through cigt_format.py, which does not parse residual
blocks; this checker carries its own reader for the ops it needs, written from
proto/model-format.md (residual blocks, globalavgpool, router op chains, tensor names) and
DESIGN.md section 2 (the step), never from src/train. It builds a small residual trellis
(3x8x8 input, K = [1, 2, 2]: identity and 1x1-conv + BN shortcuts, a pre-activation block, a
block ending in ReLU + max pool, global average pooling, a router with its own op chain of a
strided conv, batch norm, ReLU and a residual block), draws a folder of 8x8 RGB PNGs, has
`cigt init` write the model and `cigt grad --precision double --batch ALL` take one step on
every training image, and recomputes that step with torch autograd in float64. Using every
image makes the step independent of the order the folder reader shuffles them into (batch
norm, the leaf means and the information gain are sums over rows).

Checks, in warm-up at T = 1 and in argmax mode at T = 1: the loss and its cross-entropy part
(1e-6 relative), every gradient tensor (1e-4 of the largest gradient of its op; measured
~1e-7, the float32 file's rounding) and every running statistic after the step (1e-5 of its
largest value). Then the reference is run with deliberate deviations (a shortcut branch's
output detached, a router chain's input detached) and the comparison must fail.

With ARCH_CONFIG (a square RGB input), that config's architecture is checked instead, in
warm-up only, on one image per class: the CIFAR-10 ResNet-110 trellis, about 150 ops per
expert (measured: 6e-8 of each op's gradient scale).

  usage: check_residual_step.py CIGT_BINARY [ARCH_CONFIG]
Exit status: 0 pass, 1 mismatch, 2 usage or a tool failed, 77 torch or PIL missing.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
    from PIL import Image
except ImportError as e:
    print("check_residual_step: %s (apt-get install python3-torch python3-pil)" % e)
    sys.exit(77)

torch.set_num_threads(1)

CLASSES = ["a", "b", "c"]
PER_CLASS = 8


def conv(out, k, s=1, p=0, bias=True):
    return {"type": "conv", "out": out, "kernel": k, "stride": s, "padding": p, "bias": bias}


BN, RELU = {"type": "batchnorm"}, {"type": "relu"}
ARCH = {
    "name": "resstep", "input": {"channels": 3, "height": 8, "width": 8}, "classes": CLASSES,
    "layers": [
        {"experts": 1,
         "ops": [{"type": "residual", "main": [conv(3, 3, p=1), BN]},
                 conv(4, 3, p=1, bias=False), BN, RELU],
         "router": {"ops": [conv(4, 3, s=2, p=1), BN, RELU,
                            {"type": "residual", "main": [conv(4, 3, p=1)], "relu": False}],
                    "pool": 2, "hidden": 4}},
        {"experts": 2,
         "ops": [{"type": "residual",
                  "main": [conv(5, 3, s=2, p=1, bias=False), BN, RELU,
                           conv(5, 3, p=1, bias=False), BN],
                  "shortcut": [conv(5, 1, s=2, bias=False), BN]},
                 {"type": "residual", "main": [BN, RELU, conv(5, 3, p=1)], "relu": False},
                 RELU],
         "router": {"pool": [2, 1], "hidden": 5}},
        {"experts": 2,
         "ops": [{"type": "residual",
                  "main": [conv(5, 3, p=1), BN, RELU,
                           {"type": "maxpool", "kernel": 3, "stride": 1, "padding": 1}]},
                 {"type": "globalavgpool"}, {"type": "linear", "out": 3}]},
    ],
    "train": {"epochs": 1, "warmup_epochs": 1, "batch_size": 24, "lr": 0.05,
              "lr_schedule": [[0, 1.0]], "momentum": 0.9, "weight_decay": 0.0,
              "information_gain_weight": 0.5, "information_gain_beta": 2.115,
              "temperature": {"initial": 1.0, "decay": 1.0, "min": 0.01},
              "routing_randomization": 0.5, "validation_samples": 0, "seed": 7},
}


def use_arch(path):
    """Checks the architecture of a config file instead (one image per class, warm-up only)."""
    global ARCH, CLASSES, PER_CLASS
    train = ARCH["train"]
    with open(path) as f:
        ARCH = json.load(f)
    ARCH["train"] = dict(train, batch_size=len(ARCH["classes"]))
    CLASSES = ARCH["classes"]
    PER_CLASS = 1


def read_safetensors(path):
    """{name: float64 tensor} and the metadata of a safetensors file (float32 tensors)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for name, t in head.items():
        lo, hi = t["data_offsets"]
        v = torch.frombuffer(bytearray(b[8 + n + lo:8 + n + hi]), dtype=torch.float32)
        out[name] = v.clone().reshape(t["shape"]).to(torch.float64)
    return out, meta


def pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


class Step:
    """The step of DESIGN.md section 2, functionally, on the tensors of a model file."""

    def __init__(self, tensors, mutate=None):
        self.mutate = mutate  # a deliberate deviation (the check must then fail)
        self.rows = []        # argmax mode: rows each expert of layers 1.. received
        self.p, self.stats = {}, {}
        for name, t in tensors.items():
            if name.endswith((".running_mean", ".running_var")):
                self.stats[name] = t.clone()
            else:
                self.p[name] = t.clone().requires_grad_(True)

    def batchnorm(self, x, pre, eps=1e-5, momentum=0.1):
        w, b = self.p[pre + "weight"], self.p[pre + "bias"]
        rm, rv = self.stats[pre + "running_mean"], self.stats[pre + "running_var"]
        shp = (1, -1, 1, 1)
        cnt = x.shape[0] * x.shape[2] * x.shape[3]
        if cnt < 2:
            return (x - rm.reshape(shp)) / torch.sqrt(rv.reshape(shp) + eps) * w.reshape(shp) \
                + b.reshape(shp)
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.reshape(shp)) ** 2).mean(dim=(0, 2, 3))
        with torch.no_grad():
            rm.mul_(1 - momentum).add_(momentum * mean)
            rv.mul_(1 - momentum).add_(momentum * var * cnt / (cnt - 1))
        return (x - mean.reshape(shp)) / torch.sqrt(var.reshape(shp) + eps) * w.reshape(shp) \
            + b.reshape(shp)

    def op(self, x, op, pre):
        t = op["type"]
        if t == "residual":
            sc = self.chain(x, op.get("shortcut", []), pre + "shortcut.")
            if self.mutate == "shortcut-detached":
                sc = sc.detach()
            y = self.chain(x, op["main"], pre + "main.") + sc
            return torch.relu(y) if op.get("relu", True) else y
        if t == "conv":
            return F.conv2d(x, self.p[pre + "weight"],
                            self.p[pre + "bias"] if op.get("bias", True) else None,
                            pair(op.get("stride", 1)), pair(op.get("padding", 0)))
        if t == "batchnorm":
            return self.batchnorm(x, pre, op.get("eps", 1e-5), op.get("momentum", 0.1))
        if t == "relu":
            return torch.relu(x)
        if t == "maxpool":
            k = pair(op["kernel"])
            ph, pw = pair(op.get("padding", 0))
            x = F.pad(x, (pw, pw, ph, ph), value=float("-inf"))
            return F.max_pool2d(x, k, pair(op.get("stride", op["kernel"])))
        if t == "globalavgpool":
            return x.mean(dim=(2, 3), keepdim=True)
        if t == "linear":
            y = x.reshape(x.shape[0], -1) @ self.p[pre + "weight"].t()
            if op.get("bias", True):
                y = y + self.p[pre + "bias"]
            return y.reshape(x.shape[0], -1, 1, 1)
        raise ValueError("op %r not in this checker" % t)

    def chain(self, x, ops, pre):
        for i, op in enumerate(ops):
            x = self.op(x, op, "%s%d." % (pre, i))
        return x

    def router(self, l, s):
        R = ARCH["layers"][l]["router"]
        pre = "routers.%d." % l
        if self.mutate == "router-chain-detached":
            s = s.detach()
        s = self.chain(s, R.get("ops", []), pre + "ops.")
        k = pair(R["pool"])
        z = F.avg_pool2d(s, k, k).reshape(s.shape[0], -1)
        h = z @ self.p[pre + "fc1.weight"].t() + self.p[pre + "fc1.bias"]
        h = self.batchnorm(h.reshape(h.shape[0], -1, 1, 1), pre + "bn.").reshape(h.shape[0], -1)
        return h @ self.p[pre + "fc2.weight"].t() + self.p[pre + "fc2.bias"]

    @staticmethod
    def ig(p, y, beta):
        pcn = F.one_hot(y, len(CLASSES)).to(p.dtype).t() @ p / p.shape[0]

        def H(q):
            return -(q * torch.log(q + 1e-30)).sum()
        return beta * H(pcn.sum(0)) + H(pcn.sum(1)) - H(pcn)

    def run(self, x, y, warmup, T, lam, beta):
        groups, ce, igs = [(x, y)], torch.zeros((), dtype=torch.float64), []
        layers = ARCH["layers"]
        for l, L in enumerate(layers):
            outs = [(self.chain(g[0], L["ops"], "layers.%d.experts.%d.ops." % (l, e)), g[1])
                    for e, g in enumerate(groups) if g[0].shape[0] > 0]
            if l == len(layers) - 1:
                for z, yz in outs:
                    ce = ce + F.cross_entropy(z.reshape(z.shape[0], -1), yz)
                break
            s = torch.cat([o[0] for o in outs])
            ys = torch.cat([o[1] for o in outs])
            a = self.router(l, s)
            igs.append(self.ig(torch.softmax(a / T, dim=1), ys, beta))
            K = layers[l + 1]["experts"]
            if warmup:
                groups = [(s, ys)] * K
            else:
                c = a.detach().argmax(dim=1)  # torch returns the first maximum
                groups = [(s[c == k], ys[c == k]) for k in range(K)]
                self.rows.append([int((c == k).sum()) for k in range(K)])
        return ce - lam * sum(igs), ce


def write_folder(root):
    rng = random.Random(3)
    tints = [((97 * k) % 256, (57 * k + 120) % 256, (181 * k + 30) % 256)
             for k in range(len(CLASSES))]
    S = ARCH["input"]["height"]
    for split, n in (("train", PER_CLASS), ("test", 2)):
        for k, c in enumerate(CLASSES):
            d = os.path.join(root, split, c)
            os.makedirs(d)
            for i in range(n):
                im = Image.new("RGB", (S, S))
                im.putdata([tuple(min(255, max(0, t + rng.randint(-90, 90))) for t in tints[k])
                            for _ in range(S * S)])
                im.save(os.path.join(d, "%d.png" % i))


def load_folder(root):
    xs, ys, S = [], [], ARCH["input"]["height"]
    for k, c in enumerate(CLASSES):
        d = os.path.join(root, "train", c)
        for f in sorted(os.listdir(d)):
            px = torch.tensor(list(Image.open(os.path.join(d, f)).convert("RGB").getdata()),
                              dtype=torch.float64)
            # the float32 value cigt computes (cigt_arch_pixel_value), then in double: deep
            # residual trellises are chaotic enough that a 1e-8 input rounding difference
            # moves gradients by 1e-2 (measured on the CIFAR ResNet-110 trellis)
            xs.append((px / 255.0).float().double().t().reshape(3, S, S))
            ys.append(k)
    return torch.stack(xs), torch.tensor(ys)


def check(cigt, tmp, root, model, warmup, T, mutate=None):
    name = "warmup" if warmup else "argmax"
    out = os.path.join(tmp, name + ".grad")
    cfg = os.path.join(tmp, "config.json")
    p = subprocess.run([cigt, "grad", model, "--config", cfg, "--out", out, "--batch",
                        str(PER_CLASS * len(CLASSES)), "--mode", name, "--temperature", str(T),
                        "--precision", "double", "--data", root],
                       capture_output=True, text=True)
    if p.returncode:
        print(p.stdout + p.stderr)
        sys.exit(2)
    cg, meta = read_safetensors(out)
    prov = json.loads(meta["provenance"])
    tensors, _ = read_safetensors(model)
    step = Step(tensors, mutate)
    x, y = load_folder(root)
    tr = ARCH["train"]
    loss, ce = step.run(x, y, warmup, T, tr["information_gain_weight"],
                        tr["information_gain_beta"])
    loss.backward()
    bad = []
    for what, c, t in (("loss", prov["loss"], float(loss)), ("ce", prov["ce"], float(ce))):
        if abs(c - t) > 1e-6 * abs(t):
            bad.append("%s: C %.10g, torch %.10g" % (what, c, t))
    scale = {}
    for n, t in step.p.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        op = n.rsplit(".", 1)[0]
        scale[op] = max(scale.get(op, 0.0), float(g.abs().max()))
    worst = 0.0
    for n, t in step.p.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        s = max(scale[n.rsplit(".", 1)[0]], 1e-12)
        err = float((cg[n] - g).abs().max()) / s
        worst = max(worst, err)
        if err > 1e-4:
            bad.append("%s: gradient off by %.2e of its op's scale %.3g" % (n, err, s))
    for n, t in step.stats.items():
        err = float((cg[n] - t).abs().max()) / max(float(t.abs().max()), 1e-12)
        if err > 1e-5:
            bad.append("%s: running statistic off by %.2e" % (n, err))
    if mutate:
        print("%s checker with the deviation %s: %s" % ("ok  " if bad else "FAIL", mutate,
                                                    bad[0] if bad else "no difference found"))
        return not bad
    print("%s %s T=%g: loss C %.8f torch %.8f, %d gradient tensors (worst %.1e of the op's "
          "scale), %d running statistics%s" % ("ok  " if not bad else "FAIL", name, T,
                                               prov["loss"], float(loss), len(step.p), worst,
                                               len(step.stats),
                                               ", rows per expert %s" % step.rows
                                               if step.rows else ""))
    for b in bad[:20]:
        print("   ", b)
    return not bad


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    cigt = sys.argv[1]
    if len(sys.argv) == 3:
        use_arch(sys.argv[2])
    tmp = tempfile.mkdtemp(prefix="cigt-resstep-")
    try:
        root = os.path.join(tmp, "data")
        write_folder(root)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(ARCH, f)
        model = os.path.join(tmp, "model.safetensors")
        p = subprocess.run([cigt, "init", os.path.join(tmp, "config.json"), "-o", model,
                            "--seed", "7"], capture_output=True, text=True)
        if p.returncode:
            print(p.stdout + p.stderr)
            sys.exit(2)
        ok = check(cigt, tmp, root, model, True, 1.0)
        if len(sys.argv) == 2:
            ok = check(cigt, tmp, root, model, False, 1.0) and ok
            # The comparison must be able to fail: deviations it has to detect.
            for m in ("shortcut-detached", "router-chain-detached"):
                ok = check(cigt, tmp, root, model, True, 1.0, m) is False and ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
