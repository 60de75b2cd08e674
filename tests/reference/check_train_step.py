#!/usr/bin/python3
"""check_train_step.py -- independent PyTorch autograd reference for ONE training step.

Written from DESIGN.md section 2 ("The method") and proto/model-format.md alone, never from the
C sources (src/train, src/nn). It recomputes, with torch autograd in float64, one training step
of a cigt trellis on the first N Fashion-MNIST training images (pixels/255), exactly as
`cigt grad` runs it (dropout off, no random re-routing), and compares with the file `cigt grad`
wrote: the loss (and its CE and per-router IG parts), the gradient of every trainable tensor and
the batch-norm running statistics after the step.

The step, as implemented here:
  * expert batch norm in training mode over the rows that expert actually received (biased
    variance to normalise; running stats <- (1-m)*running + m*batch with the UNBIASED variance);
    an expert that received fewer than 2 rows normalises with its running statistics and leaves
    them unchanged; an expert that received no row is skipped;
  * router: avgpool(kernel = stride = pool) -> flatten (channels first) -> fc1 -> batchnorm1d
    (training mode over all the rows at that router) -> fc2 -> a;  p = softmax(a / T);
  * warm-up: every row goes to every expert of the next layer (rows multiply); argmax: each row
    goes to argmax(a), the lowest index winning a tie; the hard choice carries no gradient;
  * leaves: mean cross-entropy over the rows each last-layer expert received, summed over the
    non-empty experts;
  * IG per router over its M rows: p(c,n) = 1/M sum_i onehot(c_i)[c] p_i(n), p(n) = sum_c,
    p(c) = sum_n, H(q) = -sum q log(q + 1e-30), IG = beta H(p(n)) + H(p(c)) - H(p(c,n));
  * L = sum CE - lambda * sum IG; router inputs are not detached.
  * with train.label_smoothing eps (provenance "label_smoothing"): each leaf's CE is torch's
    F.cross_entropy(..., label_smoothing=eps);
  * with train.distill (provenance "distill": teacher, temperature T, weight alpha): the teacher
    model runs in eval mode (check_forward.Trellis) on the same images, q = softmax(logits / T),
    and each leaf's loss is, as the authors' CigtIgWithKnowledgeDistillation writes it,
      nn.KLDivLoss()(log_softmax(z / T), q[rows]) * (alpha * T * T) + CE * (1 - alpha)
    (KLDivLoss's default reduction 'mean': over rows and classes); L = that sum - lambda sum IG.

  check_train_step.py MODEL GRADS [--config CONFIG] [--data DIR] [--dtype float64|float32]
                      [--show K] [--tol-loss R] [--tol-grad R] [--tol-stats A]

MODEL is the model `cigt grad` read; GRADS the file it wrote. Batch, mode, temperature, lambda
and beta are taken from GRADS' provenance; lambda and beta are also checked against CONFIG's
`train` member when --config is given.

Pass criteria: |loss_c - loss_t| <= tol_loss*|loss_t| (1e-5), likewise CE and each IG (abs
floor 1e-7 for IG); per gradient tensor max|g_c - g_t| <= tol_grad * max|g_t of its op|
(1e-3), where the scale is taken over the op the tensor belongs to (a conv's or linear's
weight and bias, a batch norm's gamma and beta): a conv bias feeding a training-mode batch norm
has an exact gradient of zero, and its float32 value in C is rounding noise of the size of
eps32 * sum|dL/dy|, to be judged against the conv's weight gradient, not against zero. Running
statistics max|r_c - r_t| <= tol_stats * max|r_t| per tensor (1e-4).
Exit status: 0 pass, 1 mismatch, 2 bad input or usage.
"""

import argparse
import json
import math
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402
import check_forward  # noqa: E402
from cigt_format import FormatError  # noqa: E402

# torch warns that KLDivLoss's 'mean' averages over classes too: that is the authors' loss.
warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")

# One thread: the step's many small float64 convolutions (im2col) are faster on one (2.7 s
# against 4.4 s for the argmax check on 2 cores), and with two, libgomp's spinning barriers
# stalled the check past meson's 300 s timeout whenever another process held a core.
torch.set_num_threads(1)

LOG_EPS = 1e-30
# Deliberate deviations from the spec (--mutate), each of which the comparison must detect.
MUTATIONS = ["detach-router-input", "biased-running-var", "ce-sum", "router-bn-running",
             "ig-first-expert-rows", "kd-batchmean"]


# ----------------------------------------------------------------------------------------------
# Data and tensors
# ----------------------------------------------------------------------------------------------

def load_train_batch(arch, n, data_dir, dtype):
    """First n training images scaled to the input range (N x C x H x W) and their labels."""
    images = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
    labels = os.path.join(data_dir, "train-labels-idx1-ubyte.gz")
    cnt, rows, cols, raw = cigt_format.read_idx_images(images, n)
    if cnt != n:
        raise FormatError("%s holds only %d images, %d asked" % (images, cnt, n))
    if arch.input != (1, rows, cols):
        raise FormatError("model input %r does not match the %dx%d grey images"
                          % (arch.input, rows, cols))
    ys = cigt_format.read_idx_labels(labels, n)
    p = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.float64)
    lo, hi = arch.range
    x = (lo + (hi - lo) * p / 255.0).to(dtype).reshape(n, 1, rows, cols)
    return x, torch.tensor(ys, dtype=torch.long)


def tensor_of(model, name, dtype=torch.float64):
    shape, vals = model.tensors[name]
    t = torch.frombuffer(bytearray(vals.tobytes()), dtype=torch.float32).clone()
    return t.reshape(shape).to(dtype)


def op_of(name):
    """'layers.0.experts.0.ops.0.bias' -> 'layers.0.experts.0.ops.0'; 'routers.1.bn.weight' ->
    'routers.1.bn'."""
    return name.rsplit(".", 1)[0]


def is_stat(name):
    return name.endswith(".running_mean") or name.endswith(".running_var")


# ----------------------------------------------------------------------------------------------
# The step, functionally, on a dict of leaf tensors
# ----------------------------------------------------------------------------------------------

class Step:
    def __init__(self, model, dtype, mutate=None, bn_guard="values"):
        self.arch = model.arch
        self.dtype = dtype
        self.mutate = mutate   # a deliberate deviation from the spec (to see the check fail)
        self.bn_guard = bn_guard
        self.params = {}     # trainable name -> leaf tensor (requires_grad)
        self.stats = {}      # running stat name -> tensor (updated in place, no grad)
        for name, _ in self.arch.tensor_specs():
            t = tensor_of(model, name, dtype)
            if is_stat(name):
                self.stats[name] = t
            else:
                self.params[name] = t.requires_grad_(True)
        self.counts = []     # per layer: rows received by each expert
        self.small = []      # (expert prefix, rows) of experts normalised with running stats
        self.margins = []    # per router: smallest top1-top2 gap of a (argmax mode)
        self.pool_windows = 0  # max-pooling windows with a positive maximum
        self.pool_near = 0     # ... of them with a relative top1-top2 gap below 1e-6

    # -- batch norm -------------------------------------------------------------------------
    def batchnorm(self, x, pre, eps, momentum, running=False):
        """Training-mode BN over the rows of x (N x C x H x W; flat vectors are N x F x 1 x 1).
        running: normalise with the running statistics (a mutation only)."""
        w, b = self.params[pre + "weight"], self.params[pre + "bias"]
        rm, rv = self.stats[pre + "running_mean"], self.stats[pre + "running_var"]
        shp = (1, -1, 1, 1)
        n = x.shape[0]
        cnt = x.shape[0] * x.shape[2] * x.shape[3]
        if (cnt < 2 if self.bn_guard == "values" else n < 2) or running:
            # too few rows (--bn-guard values: values per channel) for batch statistics:
            # inference normalisation, running statistics untouched
            self.small.append((pre, n))
            return (x - rm.reshape(shp)) / torch.sqrt(rv.reshape(shp) + eps) * w.reshape(shp) \
                + b.reshape(shp)
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.reshape(shp)) ** 2).mean(dim=(0, 2, 3))          # biased
        with torch.no_grad():
            unbiased = var * cnt / (cnt - 1) if cnt > 1 and self.mutate != "biased-running-var" \
                else var
            rm.mul_(1.0 - momentum).add_(momentum * mean)
            rv.mul_(1.0 - momentum).add_(momentum * unbiased)
        return (x - mean.reshape(shp)) / torch.sqrt(var.reshape(shp) + eps) * w.reshape(shp) \
            + b.reshape(shp)

    # -- ops ----------------------------------------------------------------------------------
    def pool(self, kind, x, op):
        k, s, p = op.p["kernel"], op.p["stride"], op.p["padding"]
        if p != (0, 0):
            # pad explicitly: -inf for max (padding never wins), 0 for avg (padding counted)
            x = F.pad(x, (p[1], p[1], p[0], p[0]),
                      value=float("-inf") if kind == "maxpool" else 0.0)
        if kind == "maxpool":
            self.pool_ties(x, k, s)
        return (F.max_pool2d if kind == "maxpool" else F.avg_pool2d)(x, k, s)

    def pool_ties(self, x, k, s):
        """Counts max-pooling windows whose two largest values are within 1e-6 of the
        largest's magnitude, among windows with a positive maximum (a non-positive one feeds
        a ReLU that passes no gradient). At such a near-tie the gradient may go to either
        element, and float32 rounding decides which: a float32 step can then differ from
        this reference by far more than rounding (tests/reference/README.md)."""
        with torch.no_grad():
            u = F.unfold(x.detach().reshape(-1, 1, x.shape[2], x.shape[3]), k, stride=s)
            if u.shape[1] < 2 or u.numel() == 0:
                return
            top = u.topk(2, dim=1).values
            pos = top[:, 0] > 0
            gap = (top[:, 0] - top[:, 1])[pos] / top[:, 0][pos]
            self.pool_windows += int(pos.sum())
            self.pool_near += int((gap < 1e-6).sum())

    def expert(self, l, e, x):
        L = self.arch.layers[l]
        for op in L.ops:
            pre = "layers.%d.experts.%d.ops.%d." % (l, e, op.index)
            if op.type == "conv":
                x = F.conv2d(x, self.params[pre + "weight"],
                             self.params[pre + "bias"] if op.p["bias"] else None,
                             op.p["stride"], op.p["padding"])
            elif op.type == "batchnorm":
                x = self.batchnorm(x, pre, op.p["eps"], op.p["momentum"])
            elif op.type == "relu":
                x = torch.relu(x)
            elif op.type in ("maxpool", "avgpool"):
                x = self.pool(op.type, x, op)
            elif op.type == "flatten":
                x = x.reshape(x.shape[0], -1, 1, 1)
            elif op.type == "linear":
                n = x.shape[0]
                y = x.reshape(n, -1) @ self.params[pre + "weight"].t()
                if op.p["bias"]:
                    y = y + self.params[pre + "bias"]
                x = y.reshape(n, -1, 1, 1)
            elif op.type == "dropout":
                pass                        # dropout off in `cigt grad`
            else:
                raise FormatError("unknown op %r" % op.type)
        return x

    def router(self, l, s):
        R = self.arch.layers[l].router
        pre = "routers.%d." % l
        z = F.avg_pool2d(s, R.pool, R.pool).reshape(s.shape[0], -1)
        h = z @ self.params[pre + "fc1.weight"].t() + self.params[pre + "fc1.bias"]
        h = self.batchnorm(h.reshape(h.shape[0], -1, 1, 1), pre + "bn.", R.eps, R.momentum,
                           running=self.mutate == "router-bn-running")
        h = h.reshape(h.shape[0], -1)
        return h @ self.params[pre + "fc2.weight"].t() + self.params[pre + "fc2.bias"]

    # -- information gain ------------------------------------------------------------------
    @staticmethod
    def entropy(q):
        return -(q * torch.log(q + LOG_EPS)).sum()

    def information_gain(self, p, labels, nclasses, beta):
        M = p.shape[0]
        onehot = F.one_hot(labels, nclasses).to(p.dtype)            # M x C
        pcn = onehot.t() @ p / M                                      # C x K
        pn, pc = pcn.sum(dim=0), pcn.sum(dim=1)
        return beta * self.entropy(pn) + self.entropy(pc) - self.entropy(pcn)

    # -- the whole step ---------------------------------------------------------------------
    def run(self, x, y, mode, T, lam, beta, smoothing=0.0, teacher=None, kd_t=1.0, kd_w=0.0):
        """Returns (loss, ce, [ig per router]) as 0-d tensors; call loss.backward() after.
        teacher: N x classes teacher posteriors at kd_t (distillation) or None; self.kd then
        holds the summed distillation term."""
        nclasses = len(self.arch.classes)
        nl = len(self.arch.layers)
        # groups: rows each expert of the current layer receives, as (input, labels, samples)
        groups = [(x, y, torch.arange(x.shape[0]))]
        ce = torch.zeros((), dtype=self.dtype)
        self.kd = torch.zeros((), dtype=self.dtype)
        igs = []
        for l, L in enumerate(self.arch.layers):
            self.counts.append([g[0].shape[0] for g in groups])
            outs = []
            for e, (xin, yin, iin) in enumerate(groups):
                if xin.shape[0] == 0:
                    outs.append(None)
                    continue
                outs.append((self.expert(l, e, xin), yin, iin))
            if l == nl - 1:
                for o in outs:
                    if o is None:
                        continue
                    z = o[0].reshape(o[0].shape[0], -1)
                    ce = ce + F.cross_entropy(z, o[1], label_smoothing=smoothing,
                                              reduction="sum" if self.mutate == "ce-sum"
                                              else "mean")
                    if teacher is not None:
                        kl = nn.KLDivLoss(reduction="batchmean" if self.mutate == "kd-batchmean"
                                          else "mean")
                        self.kd = self.kd + kl(F.log_softmax(z / kd_t, dim=1),
                                               teacher.index_select(0, o[2])) * (kd_t * kd_t)
                break
            # all rows that reach router l (the outputs of the experts they went through)
            s = torch.cat([o[0] for o in outs if o is not None])
            ys = torch.cat([o[1] for o in outs if o is not None])
            idx_s = torch.cat([o[2] for o in outs if o is not None])
            a = self.router(l, s.detach() if self.mutate == "detach-router-input" else s)
            p = torch.softmax(a / T, dim=1)
            if self.mutate == "ig-first-expert-rows":
                first = next(o for o in outs if o is not None)[0].shape[0]
                igs.append(self.information_gain(p[:first], ys[:first], nclasses, beta))
            else:
                igs.append(self.information_gain(p, ys, nclasses, beta))
            K = self.arch.layers[l + 1].experts
            if mode == "warmup":
                groups = [(s, ys, idx_s) for _ in range(K)]
            else:
                with torch.no_grad():
                    choice = argmax_lowest(a)
                    if K > 1:
                        top2 = torch.topk(a, 2, dim=1).values
                        self.margins.append(float((top2[:, 0] - top2[:, 1]).min()))
                    else:
                        self.margins.append(math.inf)
                groups = []
                for k in range(K):
                    idx = (choice == k).nonzero().flatten()
                    groups.append((s.index_select(0, idx), ys.index_select(0, idx),
                                   idx_s.index_select(0, idx)))
        cls = (1 - kd_w) * ce + kd_w * self.kd if teacher is not None else ce
        loss = cls - lam * sum(igs) if igs else cls
        return loss, ce, igs


def argmax_lowest(a):
    """Row-wise argmax, the lowest index winning a tie."""
    best = a.max(dim=1, keepdim=True).values
    idx = torch.arange(a.shape[1]).expand_as(a)
    return torch.where(a == best, idx, torch.full_like(idx, a.shape[1])).min(dim=1).values


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------

def compare(step, grads, prov, loss, ce, igs, tol_loss, tol_grad, tol_stats, show,
            out=sys.stdout):
    failures = []

    def rel(c, t):
        return abs(c - t) / max(abs(t), 1e-300)

    lt, ct = float(loss), float(ce)
    lc, cc = float(prov["loss"]), float(prov["ce"])
    if not abs(lc - lt) <= tol_loss * abs(lt):
        failures.append("loss: C %.9g, torch %.9g (rel %.2e > %.0e)" % (lc, lt, rel(lc, lt),
                                                                        tol_loss))
    if not abs(cc - ct) <= tol_loss * abs(ct):
        failures.append("ce: C %.9g, torch %.9g (rel %.2e)" % (cc, ct, rel(cc, ct)))
    if "distill" in prov:
        kc, kt = float(prov["distill"]["term"]), float(step.kd)
        if not abs(kc - kt) <= tol_loss * abs(kt):
            failures.append("distill: C %.9g, torch %.9g (rel %.2e)" % (kc, kt, rel(kc, kt)))
    igc = prov.get("ig", [])
    if len(igc) != len(igs):
        failures.append("ig: C has %d routers, torch %d" % (len(igc), len(igs)))
    ig_worst = 0.0
    for r, (c, t) in enumerate(zip(igc, igs)):
        t = float(t)
        d = abs(float(c) - t)
        ig_worst = max(ig_worst, d / max(abs(t), 1e-7))
        if not d <= max(tol_loss * abs(t), 1e-7):
            failures.append("ig[%d]: C %.9g, torch %.9g" % (r, float(c), t))

    # gradients
    gmax = {n: float(p.grad.abs().max()) if p.grad is not None else 0.0
            for n, p in step.params.items()}
    # the scale of a tensor is the largest reference gradient of its op (the weight and bias
    # of one conv / linear / batch norm / router part)
    opmax = {}
    for n, g in gmax.items():
        opmax[op_of(n)] = max(opmax.get(op_of(n), 0.0), g)
    rows = []   # (ratio to tolerance, name, max|diff|, scale, worst elementwise rel, kind)
    for name, p in step.params.items():
        gt = p.grad if p.grad is not None else torch.zeros_like(p)
        gc = tensor_of(grads, name)
        diff = (gc - gt).abs()
        scale = opmax[op_of(name)]
        md = float(diff.max())
        # worst elementwise relative error among the elements that matter (|g| >= 1% of max)
        mask = gt.abs() >= 0.01 * scale
        ew = float((diff[mask] / gt.abs()[mask]).max()) if bool(mask.any()) else 0.0
        ratio = md / (tol_grad * scale) if scale > 0 else (0.0 if md == 0 else math.inf)
        rows.append((ratio, name, md, scale, ew, "grad"))
    for name, t in step.stats.items():
        c = tensor_of(grads, name)
        md = float((c - t).abs().max())
        scale = float(t.abs().max())
        ratio = md / (tol_stats * scale) if scale > 0 else (0.0 if md == 0 else math.inf)
        rows.append((ratio, name, md, scale, 0.0, "stat"))
    nbad = 0
    for ratio, name, md, scale, ew, kind in rows:
        if not ratio <= 1.0:
            nbad += 1
            failures.append("%s %s: max|diff| %.3g vs scale %.3g (%.1fx the tolerance)"
                            % (kind, name, md, scale, ratio))
    grows = sorted([r for r in rows if r[5] == "grad"], reverse=True)
    srows = sorted([r for r in rows if r[5] == "stat"], reverse=True)
    worst_grad = grows[0] if grows else None
    worst_ew = max(grows, key=lambda r: r[4]) if grows else None
    status = "PASS" if not failures else "FAIL"
    print("%s %s T=%g batch %d: loss C %.8f torch %.8f (rel %.1e); ce rel %.1e; ig %s "
          "(worst rel %.1e); %d gradient tensors, worst max|dg|/max|g| %.2e (%s); "
          "worst elementwise rel %.2e (%s); running stats worst %.1e (%s); %d failing"
          % (status, prov["mode"], float(prov["temperature"]), int(prov["batch"]), lc, lt,
             rel(lc, lt), rel(cc, ct), "/".join("%.6f" % float(v) for v in igs), ig_worst,
             len(grows), worst_grad[0] * tol_grad, worst_grad[1], worst_ew[4], worst_ew[1],
             srows[0][0] * tol_stats if srows else 0.0, srows[0][1] if srows else "-", nbad),
          file=out)
    print("  rows per expert: %s" % "  ".join("L%d %s" % (l, c)
                                                for l, c in enumerate(step.counts)), file=out)
    if step.small:
        print("  experts normalised with running statistics (< 2 rows): %s"
              % ", ".join("%s(%d)" % s for s in step.small), file=out)
    print("  worst gradient tensors (max|dg| / max|g| of the op):", file=out)
    for ratio, name, md, scale, ew, _ in grows[:show]:
        print("    %-40s %.2e  (max|g| %.3g, op %.3g; worst elementwise rel %.1e)"
              % (name, ratio * tol_grad, gmax[name], scale, ew), file=out)
    for f in failures[:show * 2]:
        print("  FAIL " + f, file=out)
    if len(failures) > show * 2:
        print("  ... %d more" % (len(failures) - show * 2), file=out)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the model `cigt grad` read")
    ap.add_argument("grads", help="the file `cigt grad` wrote")
    ap.add_argument("--config", help="config whose train member must match lambda and beta")
    ap.add_argument("--data", default=cigt_format.FASHION_DIR, help="IDX directory")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="precision of the reference (default float64)")
    ap.add_argument("--show", type=int, default=5, help="worst tensors to list (default 5)")
    ap.add_argument("--tol-loss", type=float, default=1e-5)
    ap.add_argument("--tol-grad", type=float, default=1e-3)
    ap.add_argument("--tol-stats", type=float, default=1e-4)
    ap.add_argument("--bn-guard", choices=["rows", "values"], default="values",
                    help="when an expert's batch norm falls back to its running statistics: "
                         "fewer than 2 values per channel (rows*H*W < 2, the project's rule "
                         "and torch's BatchNorm2d: a single image's feature map gives batch "
                         "statistics over its H*W positions; default) or fewer than 2 rows")
    ap.add_argument("--mutate", choices=MUTATIONS,
                    help="deviate from the spec on purpose: the check must then FAIL")
    a = ap.parse_args()
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    try:
        model = cigt_format.read_model(a.model)
        grads = cigt_format.read_model(a.grads)
        prov = grads.provenance
        if not isinstance(prov, dict):
            raise FormatError("%s: no provenance" % a.grads)
        for k in ("loss", "ce", "ig", "mode", "temperature", "ig_lambda", "ig_beta", "batch"):
            if k not in prov:
                raise FormatError("%s: provenance lacks %r" % (a.grads, k))
        if json.dumps(grads.arch.obj, sort_keys=True) != json.dumps(model.arch.obj,
                                                                     sort_keys=True):
            # numbers may be re-printed (1e-5 as 9.99999975e-6): compare the resolved shapes
            if grads.arch.tensor_specs() != model.arch.tensor_specs():
                raise FormatError("%s and %s have different architectures" % (a.model, a.grads))
        mode, T = prov["mode"], float(prov["temperature"])
        lam, beta, n = float(prov["ig_lambda"]), float(prov["ig_beta"]), int(prov["batch"])
        if mode not in ("warmup", "argmax"):
            raise FormatError("provenance mode %r" % mode)
        if a.config:
            with open(a.config) as f:
                tr = json.load(f).get("train", {})
            for key, v in (("information_gain_weight", lam), ("information_gain_beta", beta)):
                if key in tr and abs(float(tr[key]) - v) > 1e-12 * abs(v):
                    raise FormatError("provenance %s %r differs from the config's %r"
                                      % (key, v, tr[key]))
        x, y = load_train_batch(model.arch, n, a.data, dtype)
    except (FormatError, OSError, ValueError) as e:
        print("check_train_step: %s" % e, file=sys.stderr)
        return 2

    teacher, kd_t, kd_w = None, 1.0, 0.0
    if "distill" in prov:
        d = prov["distill"]
        kd_t, kd_w = float(d["temperature"]), float(d["weight"])
        try:
            tm = cigt_format.read_model(d["teacher"])
        except (FormatError, OSError, ValueError) as e:
            print("check_train_step: teacher: %s" % e, file=sys.stderr)
            return 2
        tx, _ = load_train_batch(tm.arch, n, a.data, torch.float32)
        tlogits = check_forward.Trellis(tm)(tx)[0].to(dtype)
        teacher = torch.softmax(tlogits / kd_t, dim=1)
        print("  distillation: teacher %s, T %g, weight %g"
              % (os.path.basename(d["teacher"]), kd_t, kd_w))
    step = Step(model, dtype, a.mutate, a.bn_guard)
    loss, ce, igs = step.run(x, y, mode, T, lam, beta,
                             smoothing=float(prov.get("label_smoothing", 0.0)),
                             teacher=teacher, kd_t=kd_t, kd_w=kd_w)
    loss.backward()
    failures = compare(step, grads, prov, loss, ce, igs, a.tol_loss, a.tol_grad, a.tol_stats,
                       a.show)
    if mode == "argmax" and step.margins:
        tight = min(step.margins)
        print("  argmax mode: smallest router logit margin %.3g%s"
              % (tight, " (a near-tie: float rounding may route a row differently)"
                 if tight < 1e-4 else ""))
    if step.pool_windows:
        print("  max pooling: %d of %d windows with a positive maximum are near-ties (top two "
              "within 1e-6 relative)%s"
              % (step.pool_near, step.pool_windows,
                 "; rounding (float32 above all) may send their gradient to the other element"
                 if step.pool_near else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
