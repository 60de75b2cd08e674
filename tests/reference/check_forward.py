#!/usr/bin/python3
"""check_forward.py -- independent PyTorch reference forward pass for cigt model files.

Written from proto/model-format.md alone (never from the C sources). It reads a cigt-1 model
file with its own safetensors reader (cigt_format.py), builds the trellis as torch modules in
eval mode (residual blocks, globalavgpool and router op chains included), runs routed
(gather-scatter) inference on the first N Fashion-MNIST test images, and compares the result
with the C engine's dump (`cigt eval MODEL --limit N --dump FILE`, JSON lines: {"index",
"label", "class", "route", "logits", "macs"}): routes and classes must be identical for every
sample, logits within max(1e-4, 1e-4*|x|), MACs (when the dump has them) those of section 3.

A model of another input size reads grey IDX images of its size (--images/--labels, e.g. from
fit_data.py; grey is replicated to its channels, as section 3 says); --folder reads one colour
PPM per class (colour_folder.py) and matches the dump's records by label. --info checks `cigt
info MODEL --json` (MACs per expert, router, route and dense; shapes; parameters).

  check_forward.py MODEL --dump FILE [--limit N] [--margin] [--show K] [--info FILE]
  check_forward.py MODEL --dump FILE --images IDX --labels IDX | --folder DIR
  check_forward.py MODEL [--limit N] [--write-dump FILE]     # reference only
  check_forward.py --self-test [--config CONFIG]             # needs no C engine
  check_forward.py --write-config NAME FILE                  # a self-test architecture

Exit status: 0 all equal, 1 mismatches (the first ones are listed), 2 bad input or usage.
Runs on Debian's python3-torch 1.13 (/usr/bin/python3); numpy only for --self-test.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402
from cigt_format import FormatError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CONFIG = os.path.join(REPO, "models", "fashion_mnist.json")
RESNET110 = os.path.join(REPO, "models", "cifar10_resnet110_trellis.json")
TINY_RESIDUAL = os.path.join(HERE, "residual_tiny.json")
TOL = 1e-4

torch.set_num_threads(2)


# ----------------------------------------------------------------------------------------------
# Torch trellis. Activations stay 4-D NCHW throughout; a flat vector is N x F x 1 x 1.
# ----------------------------------------------------------------------------------------------

class Flatten4(nn.Module):
    """`flatten`: C x H x W -> (C*H*W) x 1 x 1, index c*H*W + h*W + w (C order)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1, 1, 1)


class Linear4(nn.Module):
    """`linear`: y = W x + b on the flattened input (flattening implied)."""

    def __init__(self, fin, fout, bias):
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=bias)

    def forward(self, x):
        n = x.shape[0]
        return self.fc(x.reshape(n, -1)).reshape(n, -1, 1, 1)


class BatchNorm4(nn.Module):
    """`batchnorm`: BatchNorm1d on flat vectors, BatchNorm2d on feature maps (eval mode)."""

    def __init__(self, C, flat, eps, momentum):
        super().__init__()
        self.flat = flat
        self.bn = (nn.BatchNorm1d if flat else nn.BatchNorm2d)(C, eps=eps, momentum=momentum)

    def forward(self, x):
        if self.flat:
            return self.bn(x.reshape(x.shape[0], -1)).reshape(x.shape)
        return self.bn(x)


class PadPool(nn.Module):
    """Pooling whose padding exceeds half the kernel, which torch's pooling modules refuse:
    pad explicitly (-inf for max: padding never wins; 0 for avg: padded zeros counted)."""

    def __init__(self, kind, kernel, stride, padding):
        super().__init__()
        self.kind, self.kernel, self.stride, self.padding = kind, kernel, stride, padding

    def forward(self, x):
        ph, pw = self.padding
        fill = float("-inf") if self.kind == "maxpool" else 0.0
        x = F.pad(x, (pw, pw, ph, ph), value=fill)
        f = F.max_pool2d if self.kind == "maxpool" else F.avg_pool2d
        return f(x, self.kernel, self.stride)


def _pool(op):
    k, s, p = op.p["kernel"], op.p["stride"], op.p["padding"]
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        return PadPool(op.type, k, s, p)
    if op.type == "maxpool":
        return nn.MaxPool2d(k, s, p, ceil_mode=False)
    return nn.AvgPool2d(k, s, p, ceil_mode=False, count_include_pad=True)


def _t(model, name):
    shape, vals = model.tensors[name]
    t = torch.frombuffer(bytearray(vals.tobytes()), dtype=torch.float32).clone()
    return t.reshape(shape)


class GlobalAvgPool4(nn.Module):
    """`globalavgpool`: C x H x W -> C x 1 x 1, the mean of each channel's H*W values."""

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True)


class Residual(nn.Module):
    """`residual`: y = main(x) + shortcut(x) (an empty shortcut is x itself), then max(y, 0)
    when `relu` is true. Both branches read the block's input."""

    def __init__(self, main, shortcut, relu):
        super().__init__()
        self.main = main
        self.shortcut = shortcut          # None: the identity
        self.relu = relu

    def forward(self, x):
        y = self.main(x) + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(y) if self.relu else y


def build_op(model, pre, op):
    """The torch module of one op whose tensors are named `pre` + leaf."""
    C, H, W = op.in_shape
    if op.type == "conv":
        m = nn.Conv2d(C, op.p["out"], op.p["kernel"], op.p["stride"], op.p["padding"],
                      bias=op.p["bias"])
        m.weight.data.copy_(_t(model, pre + "weight"))
        if op.p["bias"]:
            m.bias.data.copy_(_t(model, pre + "bias"))
    elif op.type == "batchnorm":
        m = BatchNorm4(C, (H, W) == (1, 1), op.p["eps"], op.p["momentum"])
        m.bn.weight.data.copy_(_t(model, pre + "weight"))
        m.bn.bias.data.copy_(_t(model, pre + "bias"))
        m.bn.running_mean.copy_(_t(model, pre + "running_mean"))
        m.bn.running_var.copy_(_t(model, pre + "running_var"))
    elif op.type == "relu":
        m = nn.ReLU()
    elif op.type in ("maxpool", "avgpool"):
        m = _pool(op)
    elif op.type == "flatten":
        m = Flatten4()
    elif op.type == "linear":
        m = Linear4(C * H * W, op.p["out"], op.p["bias"])
        m.fc.weight.data.copy_(_t(model, pre + "weight"))
        if op.p["bias"]:
            m.fc.bias.data.copy_(_t(model, pre + "bias"))
    elif op.type == "dropout":
        m = nn.Dropout(op.p["p"])          # identity in eval mode
    elif op.type == "globalavgpool":
        m = GlobalAvgPool4()
    elif op.type == "residual":
        m = Residual(build_chain(model, pre + "main.", op.main),
                     build_chain(model, pre + "shortcut.", op.shortcut) if op.shortcut
                     else None, op.p["relu"])
    else:
        raise FormatError("unknown op %r" % op.type)
    return m


def build_chain(model, pre, ops):
    """An op chain as nn.Sequential; op i's tensors are `pre` + "{i}." + leaf."""
    return nn.Sequential(*[build_op(model, "%s%d." % (pre, op.index), op) for op in ops])


def build_expert(model, L, e):
    return build_chain(model, "layers.%d.experts.%d.ops." % (L.index, e), L.ops)


class RouterNet(nn.Module):
    """[op chain] -> avgpool(kernel = stride = pool) -> flatten -> fc1 -> bn1d -> fc2 (no
    activation)."""

    def __init__(self, model, R):
        super().__init__()
        pre = "routers.%d." % R.layer
        self.ops = build_chain(model, pre + "ops.", R.ops)      # empty: the identity
        self.pool = nn.AvgPool2d(R.pool, R.pool)
        self.fc1 = nn.Linear(R.P, R.hidden)
        self.bn = nn.BatchNorm1d(R.hidden, eps=R.eps, momentum=R.momentum)
        self.fc2 = nn.Linear(R.hidden, R.K)
        for mod, part in ((self.fc1, "fc1"), (self.fc2, "fc2")):
            mod.weight.data.copy_(_t(model, pre + part + ".weight"))
            mod.bias.data.copy_(_t(model, pre + part + ".bias"))
        self.bn.weight.data.copy_(_t(model, pre + "bn.weight"))
        self.bn.bias.data.copy_(_t(model, pre + "bn.bias"))
        self.bn.running_mean.copy_(_t(model, pre + "bn.running_mean"))
        self.bn.running_var.copy_(_t(model, pre + "bn.running_var"))

    def hidden(self, s):
        """fc1's output (before the batch norm) for the layer output s."""
        s = self.ops(s)
        return self.fc1(self.pool(s).reshape(s.shape[0], -1))

    def forward(self, s):
        return self.fc2(self.bn(self.hidden(s)))


def argmax_lowest(a):
    """Row-wise argmax, the lowest index winning a tie (not left to torch's tie behaviour)."""
    best = a.max(dim=1, keepdim=True).values
    idx = torch.arange(a.shape[1]).expand_as(a)
    return torch.where(a == best, idx, torch.full_like(idx, a.shape[1])).min(dim=1).values


class Trellis(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.arch = model.arch
        self.experts = nn.ModuleList(
            nn.ModuleList(build_expert(model, L, e) for e in range(L.experts))
            for L in self.arch.layers)
        self.routers = nn.ModuleList(RouterNet(model, L.router)
                                     for L in self.arch.layers if L.router is not None)
        self.eval()

    @torch.no_grad()
    def forward(self, x, forced=None, features=None):
        """Routed inference (spec section 3), gather-scatter per expert.

        x: N x C x H x W float32. forced: optional N x L route to follow instead of the routers'
        choice (diagnostics). features: optional list that receives every layer's output.
        Returns (logits N x classes, routes N x L, [router logits N x K]).
        """
        n = x.shape[0]
        nl = len(self.arch.layers)
        routes = torch.zeros(n, nl, dtype=torch.long)
        cur = torch.zeros(n, dtype=torch.long)        # layer 0 has one expert
        if forced is not None:
            cur = forced[:, 0].clone()
        rlogits = []
        h = x
        for l, L in enumerate(self.arch.layers):
            out = torch.empty((n,) + L.out_shape, dtype=torch.float32)
            for e in range(L.experts):
                idx = (cur == e).nonzero().flatten()
                if idx.numel():
                    out.index_copy_(0, idx, self.experts[l][e](h.index_select(0, idx)))
            routes[:, l] = cur
            h = out
            if features is not None:
                features.append(h)
            if L.router is not None:
                a = self.routers[l](h)
                rlogits.append(a)
                cur = forced[:, l + 1].clone() if forced is not None else argmax_lowest(a)
        return h.reshape(n, -1), routes, rlogits


@torch.no_grad()
def calibrate_routers(model, x):
    """Set each router's batch-norm running statistics to the statistics of its fc1 output over
    the images x (router by router, since each one changes the routes the next one sees).

    Random weights otherwise send nearly every sample down the same path; calibrated routers
    spread the samples over the experts, so a routed engine is really exercised.
    Updates model.tensors in place.
    """
    import array
    for L in model.arch.layers:
        if L.router is None:
            continue
        net = Trellis(model)
        feats = []
        net(x, features=feats)
        R = net.routers[L.index]
        h = R.hidden(feats[L.index])
        for leaf, v in (("running_mean", h.mean(0)), ("running_var", h.var(0, unbiased=False))):
            name = "routers.%d.bn.%s" % (L.index, leaf)
            model.tensors[name] = (model.tensors[name][0], array.array("f", v.tolist()))


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def load_images(arch, limit, images=cigt_format.TEST_IMAGES, labels=cigt_format.TEST_LABELS,
                fit=False):
    """First `limit` test images scaled to the architecture's input range, N x C x H x W.

    The IDX images are grey: a model of C channels gets them replicated to its C channels
    (spec section 3). They must have the model's height and width, since the reference does not
    resize; fit=True instead centre-crops or zero-pads them to it (fit_images; router
    calibration only, where any images will do)."""
    n, rows, cols, raw = cigt_format.read_idx_images(images, limit)
    C, H, W = arch.input
    if fit:
        raw = cigt_format.fit_images(raw, n, rows, cols, H, W)
        rows, cols = H, W
    if (rows, cols) != (H, W):
        raise FormatError("model input %dx%dx%d does not match the %dx%d grey images"
                          % (C, H, W, rows, cols))
    ys = cigt_format.read_idx_labels(labels, n)
    p = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.float64)
    lo, hi = arch.range
    x = (lo + (hi - lo) * p / 255.0).to(torch.float32).reshape(n, 1, rows, cols)
    return x.expand(n, C, rows, cols).contiguous(), ys


def load_folder(arch, directory):
    """An image folder of one colour PPM per class (colour_folder.py): DIR/<class>/0.ppm at the
    model's size, in class order. Returns (N x 3 x H x W, labels)."""
    C, H, W = arch.input
    xs, ys = [], []
    lo, hi = arch.range
    for k, name in enumerate(arch.classes):
        path = os.path.join(directory, name, "0.ppm")
        if not os.path.exists(path):
            continue
        w, h, px = cigt_format.read_ppm(path)
        if (C, h, w) != (3, H, W):
            raise FormatError("%s: %dx%d RGB, the model takes %dx%dx%d" % (path, w, h, C, H, W))
        p = torch.frombuffer(bytearray(px), dtype=torch.uint8).to(torch.float64)
        xs.append((lo + (hi - lo) * p / 255.0).to(torch.float32).reshape(H, W, 3)
                  .permute(2, 0, 1))
        ys.append(k)
    if not xs:
        raise FormatError("%s: no <class>/0.ppm images" % directory)
    return torch.stack(xs).contiguous(), ys


def dump_by_label(dump, labels):
    """The records of an image-folder dump in the order of `labels` (one image per class),
    renumbered 0..n-1: cigt reads a folder in an order of its own."""
    by = {}
    for r in dump:
        if r["label"] in by:
            raise FormatError("dump: label %r twice (one image per class expected)" % r["label"])
        by[r["label"]] = r
    if sorted(by) != sorted(labels):
        raise FormatError("dump labels %s, the folder's %s" % (sorted(by), sorted(labels)))
    return [dict(by[y], index=i) for i, y in enumerate(labels)]


# ----------------------------------------------------------------------------------------------
# Reference run and comparison with the C dump
# ----------------------------------------------------------------------------------------------

class RefResult:
    def __init__(self, net, x, labels, chunk=250):
        self.net, self.x, self.labels = net, x, labels
        # in chunks, to bound memory (the routed result does not depend on the batch split)
        parts = [net(x[i:i + chunk]) for i in range(0, max(x.shape[0], 1), chunk)]
        self.logits = torch.cat([p[0] for p in parts])
        self.routes = torch.cat([p[1] for p in parts])
        self.rlogits = [torch.cat([p[2][r] for p in parts]) for r in range(len(parts[0][2]))]
        self.classes = argmax_lowest(self.logits)
        self.n = x.shape[0]

    def router_margin(self, i, r):
        """Top-1 minus top-2 router logit of sample i at router r (inf with one choice)."""
        a = self.rlogits[r][i]
        if a.numel() < 2:
            return math.inf
        top = torch.topk(a, 2).values
        return float(top[0] - top[1])

    def min_margin(self, i):
        if not self.rlogits:
            return math.inf, -1
        return min((self.router_margin(i, r), r) for r in range(len(self.rlogits)))

    def records(self):
        for i in range(self.n):
            route = [int(v) for v in self.routes[i]]
            yield {"index": i, "label": self.labels[i], "class": int(self.classes[i]),
                   "route": route, "logits": [float(v) for v in self.logits[i]],
                   "macs": self.net.arch.route_macs(route)}


def read_dump(path):
    recs = []
    with open(path, "r", encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise FormatError("%s:%d: not JSON: %s" % (path, ln, e))
            for k in ("index", "label", "class", "route", "logits"):
                if not isinstance(r, dict) or k not in r:
                    raise FormatError("%s:%d: missing %r" % (path, ln, k))
            recs.append(r)
    return recs


def _fmt_route(r):
    return "-".join(str(int(v)) for v in r)


def route_distribution(arch, routes):
    """'0-0-1 123, ...' path counts and per-layer expert counts."""
    paths = {}
    for r in routes:
        k = _fmt_route(r)
        paths[k] = paths.get(k, 0) + 1
    per = []
    for l, L in enumerate(arch.layers):
        c = [0] * L.experts
        for r in routes:
            if 0 <= int(r[l]) < L.experts:
                c[int(r[l])] += 1
        per.append("L%d %s" % (l, c))
    return (", ".join("%s: %d" % (k, paths[k]) for k in sorted(paths)), "  ".join(per))


def compare(ref, dump, show=10, margin_report=False, tol=TOL, out=sys.stdout):
    """Compare the reference with the C dump records. Returns the number of failing samples."""
    arch = ref.net.arch
    nl = len(arch.layers)
    ncls = len(arch.classes)
    problems = []            # (index, text)
    structural = 0
    if len(dump) != ref.n:
        problems.append((-1, "dump has %d records, reference ran %d samples (--limit %d?)"
                         % (len(dump), ref.n, len(dump))))
        structural += 1
    n = min(len(dump), ref.n)
    route_eq = cls_eq = logit_ok = macs_eq = macs_n = 0
    max_d = 0.0
    bad_routes = []
    for i in range(n):
        d = dump[i]
        msgs = []
        if d["index"] != i:
            msgs.append("index %r, expected %d" % (d["index"], i))
        if d["label"] != ref.labels[i]:
            msgs.append("label %r, expected %d" % (d["label"], ref.labels[i]))
        droute = d["route"]
        route_valid = isinstance(droute, list) and len(droute) == nl and all(
            isinstance(v, int) and 0 <= v < L.experts for v, L in zip(droute, arch.layers))
        rroute = [int(v) for v in ref.routes[i]]
        if route_valid and droute == rroute:
            route_eq += 1
        else:
            bad_routes.append(i)
            if not route_valid:
                msgs.append("route %r is not a valid route" % (droute,))
            else:
                first = next(l for l in range(nl) if droute[l] != rroute[l])
                r = first - 1          # the router that chose differently
                a = ref.rlogits[r][i]
                gap = float(a[rroute[first]] - a[droute[first]])
                # Follow C's route in the reference: do the logits then agree?
                flog, _, _ = ref.net(ref.x[i:i + 1], torch.tensor([droute]))
                fd = max(abs(float(u) - float(v)) for u, v in zip(flog[0], d["logits"])) \
                    if isinstance(d["logits"], list) and len(d["logits"]) == ncls else math.nan
                extra = "; along C's route max|dlogit| %.2g" % fd
                # float32 rounding differences are ~1e-6 relative; much larger gaps are bugs
                scale = max(1.0, float(a.abs().max()))
                hint = "near-tie: float rounding" if gap <= 1e-4 * scale else \
                    "NOT a near-tie: likely a bug"
                msgs.append("route C %s ref %s: router %d logit gap a[%d]-a[%d] = %.3g, "
                            "ref margin %.3g (%s)%s"
                            % (_fmt_route(droute), _fmt_route(rroute), r, rroute[first],
                               droute[first], gap, ref.router_margin(i, r), hint, extra))
        rc = int(ref.classes[i])
        if d["class"] == rc:
            cls_eq += 1
        else:
            top = torch.topk(ref.logits[i], min(2, ncls)).values
            cm = float(top[0] - top[1]) if ncls > 1 else math.inf
            msgs.append("class C %r ref %d (ref logit margin %.3g)" % (d["class"], rc, cm))
        lg = d["logits"]
        if not isinstance(lg, list) or len(lg) != ncls:
            msgs.append("logits: expected %d values" % ncls)
        elif route_valid and droute == rroute:
            worst = None
            ok = True
            for j, (c, x) in enumerate(zip(lg, ref.logits[i].tolist())):
                dd = abs(c - x) if isinstance(c, (int, float)) else math.inf
                max_d = max(max_d, dd)
                if not dd <= max(tol, tol * abs(x)):
                    ok = False
                    if worst is None or dd > worst[1]:
                        worst = (j, dd, c, x)
            if ok:
                logit_ok += 1
            else:
                msgs.append("logit %d: C %.9g ref %.9g |d| %.3g" % (worst[0], worst[2],
                                                                    worst[3], worst[1]))
        if "macs" in d:
            # section 3: the MACs of the route the sample took (the dump's own route, so a route
            # difference is not counted twice)
            macs_n += 1
            want = arch.route_macs(droute if route_valid else rroute)
            if d["macs"] == want:
                macs_eq += 1
            else:
                msgs.append("macs C %r, spec %d for route %s"
                            % (d["macs"], want, _fmt_route(droute if route_valid else rroute)))
        if msgs:
            problems.append((i, "; ".join(msgs)))

    print("reference forward: %d samples, routes %d/%d equal, classes %d/%d equal, "
          "logits %d/%d within %g, max |dlogit| %.2g%s"
          % (ref.n, route_eq, ref.n, cls_eq, ref.n, logit_ok, ref.n, tol, max_d,
             ", MACs %d/%d equal" % (macs_eq, macs_n) if macs_n else ""), file=out)
    acc = sum(1 for i in range(ref.n) if int(ref.classes[i]) == ref.labels[i])
    print("reference accuracy %d/%d = %.2f%%" % (acc, ref.n, 100.0 * acc / max(ref.n, 1)),
          file=out)
    paths, per = route_distribution(arch, ref.routes.tolist())
    print("route distribution (reference): %s" % paths, file=out)
    print("  per layer: %s" % per, file=out)
    if bad_routes:
        paths, per = route_distribution(arch, [dump[i]["route"] for i in range(n)
                                               if isinstance(dump[i]["route"], list)
                                               and len(dump[i]["route"]) == nl])
        print("route distribution (C dump):    %s" % paths, file=out)
    if margin_report:
        margin_summary(ref, bad_routes, out)
    if problems:
        print("FAIL: %d sample(s) differ; first %d:" % (len(problems), min(show, len(problems))),
              file=out)
        for i, text in problems[:show]:
            print("  sample %d: %s" % (i, text) if i >= 0 else "  %s" % text, file=out)
    return len(problems)


def compare_info(arch, info, out=sys.stdout):
    """Compare `cigt info MODEL --json` with the MACs of spec section 3 (per expert, per router,
    a route, dense), each layer's output shape and the parameter count (every tensor but the
    batch norms' running statistics). Returns the number of differing fields."""
    bad = []

    def eq(what, c, ref):
        if c != ref:
            bad.append("%s: cigt info %r, reference %r" % (what, c, ref))

    routes = [[]]
    for L in arch.layers:
        routes = [r + [e] for r in routes for e in range(L.experts)]
    per_route = sorted({arch.route_macs(r) for r in routes})
    eq("name", info.get("name"), arch.name)
    eq("paths", info.get("paths"), len(routes))
    # every expert of a layer has the same ops, so every route costs the same
    eq("path_macs", info.get("path_macs"), per_route[0] if len(per_route) == 1 else per_route)
    eq("dense_macs", info.get("dense_macs"), arch.dense_macs())
    eq("parameters", info.get("parameters"),
       sum(math.prod(sh) for n, sh in arch.tensor_specs()
           if not n.endswith((".running_mean", ".running_var"))))
    layers = info.get("layers")
    if not isinstance(layers, list) or len(layers) != len(arch.layers):
        bad.append("layers: expected %d entries" % len(arch.layers))
        layers = []
    for L, li in zip(arch.layers, layers):
        eq("layers[%d].experts" % L.index, li.get("experts"), L.experts)
        eq("layers[%d].expert_macs" % L.index, li.get("expert_macs"), L.expert_macs)
        eq("layers[%d].output" % L.index, li.get("output"), list(L.out_shape))
        if L.router is not None:
            r = li.get("router") or {}
            eq("layers[%d].router.macs" % L.index, r.get("macs"), L.router.macs)
            eq("layers[%d].router.outputs" % L.index, r.get("outputs"), L.router.K)
    print("cigt info: route MACs %s, dense %d, %d layers: %s"
          % ("/".join(map(str, per_route)), arch.dense_macs(), len(arch.layers),
             "%d field(s) differ" % len(bad) if bad else "all equal"), file=out)
    for b in bad:
        print("  %s" % b, file=out)
    return len(bad)


def margin_summary(ref, bad_routes, out):
    """How close the reference's routing decisions came to ties (router-logit margins)."""
    if not ref.rlogits:
        print("margins: no routers", file=out)
        return
    m = [ref.min_margin(i) for i in range(ref.n)]
    order = sorted(range(ref.n), key=lambda i: m[i][0])
    counts = ["< %g: %d" % (t, sum(1 for v, _ in m if v < t)) for t in (1e-5, 1e-4, 1e-3, 1e-2)]
    print("router margins (top1 - top2, smallest over the route): %s" % ", ".join(counts),
          file=out)
    print("  nearest ties: %s" % ", ".join("sample %d router %d %.3g" % (i, m[i][1], m[i][0])
                                           for i in order[:5]), file=out)
    for i in bad_routes:
        ms = ", ".join("r%d %.3g" % (r, ref.router_margin(i, r)) for r in range(len(ref.rlogits)))
        print("  differing sample %d: margins %s" % (i, ms), file=out)


# ----------------------------------------------------------------------------------------------
# Self-test: exercise the reader, the torch trellis and the comparator without the C engine
# ----------------------------------------------------------------------------------------------

# A copy of the DESIGN.md section 2 architecture, used when models/fashion_mnist.json is absent
# and to check the MAC arithmetic against the figures DESIGN.md states.
FM_DESIGN = {
    "name": "fashion_mnist",
    "input": {"channels": 1, "height": 28, "width": 28, "range": [0.0, 1.0]},
    "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                "Sneaker", "Bag", "Ankle boot"],
    "layers": [
        {"experts": 1,
         "ops": [{"type": "conv", "out": 32, "kernel": 5, "stride": 1, "padding": 2},
                 {"type": "batchnorm"}, {"type": "relu"},
                 {"type": "maxpool", "kernel": 2, "stride": 2}],
         "router": {"pool": 14, "hidden": 128}},
        {"experts": 2,
         "ops": [{"type": "conv", "out": 32, "kernel": 5, "stride": 1, "padding": 2},
                 {"type": "batchnorm"}, {"type": "relu"},
                 {"type": "maxpool", "kernel": 2, "stride": 2}],
         "router": {"pool": 7, "hidden": 128}},
        {"experts": 4,
         "ops": [{"type": "conv", "out": 32, "kernel": 1}, {"type": "batchnorm"},
                 {"type": "relu"}, {"type": "maxpool", "kernel": 2, "stride": 2},
                 {"type": "flatten"}, {"type": "linear", "out": 128}, {"type": "relu"},
                 {"type": "dropout", "p": 0.185}, {"type": "linear", "out": 64},
                 {"type": "relu"}, {"type": "dropout", "p": 0.185},
                 {"type": "linear", "out": 10}]},
    ],
}

# Every op and option the spec allows, in shapes that are not the common case.
ODD = {
    "name": "odd-ops.v1",
    "input": {"channels": 1, "height": 28, "width": 28, "range": [-1.0, 1.0]},
    "classes": ["c%d" % i for i in range(7)],
    "layers": [
        {"experts": 1,
         "ops": [{"type": "conv", "out": 6, "kernel": [3, 5], "stride": [1, 2],
                  "padding": [1, 0], "bias": False},
                 {"type": "batchnorm", "eps": 1e-3, "momentum": 0.2},
                 {"type": "relu"},
                 {"type": "avgpool", "kernel": 3, "stride": 2, "padding": 1}],
         "router": {"pool": [3, 2], "hidden": 16, "bn_eps": 1e-3, "bn_momentum": 0.05}},
        {"experts": 3,
         "ops": [{"type": "conv", "out": 8, "kernel": 3, "padding": 1},
                 {"type": "maxpool", "kernel": 3, "stride": [2, 1], "padding": 1},
                 {"type": "relu"},
                 {"type": "maxpool", "kernel": [3, 2], "stride": 1, "padding": [2, 1]}],
         "router": {"pool": 4, "hidden": 8}},
        {"experts": 1,
         "ops": [{"type": "conv", "out": 4, "kernel": 1, "stride": 2},
                 {"type": "avgpool", "kernel": 2, "padding": 1}],
         "router": {"pool": 2, "hidden": 12}},
        {"experts": 5,
         "ops": [{"type": "linear", "out": 20, "bias": False},
                 {"type": "batchnorm"}, {"type": "dropout", "p": 0.5},
                 {"type": "relu"}, {"type": "flatten"},
                 {"type": "linear", "out": 7}]},
    ],
}

SINGLE = {
    "name": "single",
    "input": {"channels": 1, "height": 28, "width": 28},
    "classes": ["a", "b", "c"],
    "layers": [{"experts": 1, "ops": [{"type": "avgpool", "kernel": 4},
                                      {"type": "flatten"}, {"type": "linear", "out": 3}]}],
}


# Residual blocks, global pooling and router op chains in shapes that are not the common case
# (1x28x28, so it runs on the Fashion-MNIST images as they are): non-square kernels and strides,
# a shortcut of a conv and a pooling, a block without the final relu, a router chain holding an
# identity block, global pooling in the middle of a chain, blocks on 1x1 maps, dropout's
# default p, logits from a conv.
RESIDUAL_ODD = {
    "name": "residual-odd.v1",
    "input": {"channels": 1, "height": 28, "width": 28, "range": [-0.5, 1.5]},
    "classes": ["r%d" % i for i in range(6)],
    "layers": [
        {"experts": 1,
         "ops": [{"type": "conv", "out": 5, "kernel": [3, 5], "stride": [1, 2],
                  "padding": [1, 2]},
                 {"type": "residual", "relu": False,
                  "main": [{"type": "batchnorm"}, {"type": "relu"},
                           {"type": "conv", "out": 5, "kernel": 3, "padding": 1}]},
                 {"type": "residual",
                  "main": [{"type": "conv", "out": 7, "kernel": [3, 1], "stride": [2, 1],
                            "padding": [1, 0]},
                           {"type": "relu"},
                           {"type": "avgpool", "kernel": 3, "stride": 1, "padding": 1}],
                  "shortcut": [{"type": "conv", "out": 7, "kernel": 1, "stride": [2, 1],
                                "bias": False},
                               {"type": "maxpool", "kernel": 3, "stride": 1, "padding": 1}]}],
         "router": {"ops": [{"type": "residual",
                             "main": [{"type": "conv", "out": 7, "kernel": 3, "padding": 1},
                                      {"type": "batchnorm"}, {"type": "relu"}]}],
                    "pool": [3, 2], "hidden": 10, "bn_eps": 1e-3}},
        {"experts": 3,
         "ops": [{"type": "residual",
                  "main": [{"type": "conv", "out": 9, "kernel": 3, "stride": 2, "padding": 1,
                            "bias": False},
                           {"type": "batchnorm", "eps": 1e-4}, {"type": "dropout", "p": 0.2}],
                  "shortcut": [{"type": "avgpool", "kernel": 2},
                               {"type": "conv", "out": 9, "kernel": 1}]},
                 {"type": "globalavgpool"}],
         "router": {"ops": [{"type": "batchnorm"}, {"type": "relu"}], "pool": 1, "hidden": 5}},
        {"experts": 2,
         "ops": [{"type": "residual",
                  "main": [{"type": "conv", "out": 9, "kernel": 1}, {"type": "batchnorm"},
                           {"type": "dropout"}]},
                 {"type": "residual", "relu": False,
                  "main": [{"type": "conv", "out": 4, "kernel": 1}],
                  "shortcut": [{"type": "conv", "out": 4, "kernel": 1, "bias": False},
                               {"type": "batchnorm"}]},
                 {"type": "conv", "out": 6, "kernel": 1}]},
    ],
}


BUILTIN = {"fm_design": FM_DESIGN, "odd": ODD, "single": SINGLE, "residual_odd": RESIDUAL_ODD}


def numpy_forward(arch, model, x):
    """A second, loop-level float64 forward straight from the spec's formulas, one sample at a
    time (no torch modules, no batching). x: C x H x W. Returns (logits, route, router logits)."""
    import numpy as np

    def T(name):
        shape, vals = model.tensors[name]
        return np.array(vals, dtype=np.float64).reshape(shape)

    def window_slices(n_out, k, s):
        return [slice(d, d + s * (n_out - 1) + 1, s) for d in range(k)]

    def run(ops, pre, x):
        """An op chain; op i's tensors are pre + "{i}." + leaf."""
        for op in ops:
            x = run_op(op, "%s%d." % (pre, op.index), x)
        return x

    def run_op(op, pre, x):
        _, oh, ow = op.out_shape
        if op.type == "conv":
            (kh, kw), (sh, sw), (ph, pw) = op.p["kernel"], op.p["stride"], op.p["padding"]
            xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
            w = T(pre + "weight")
            y = np.zeros(op.out_shape)
            for di, si in enumerate(window_slices(oh, kh, sh)):
                for dj, sj in enumerate(window_slices(ow, kw, sw)):
                    y += np.einsum("oc,chw->ohw", w[:, :, di, dj], xp[:, si, sj])
            if op.p["bias"]:
                y += T(pre + "bias")[:, None, None]
            return y
        if op.type == "batchnorm":
            sh3 = (-1, 1, 1)
            return (x - T(pre + "running_mean").reshape(sh3)) / \
                np.sqrt(T(pre + "running_var").reshape(sh3) + op.p["eps"]) * \
                T(pre + "weight").reshape(sh3) + T(pre + "bias").reshape(sh3)
        if op.type == "relu":
            return np.maximum(x, 0.0)
        if op.type in ("maxpool", "avgpool"):
            (kh, kw), (sh, sw), (ph, pw) = op.p["kernel"], op.p["stride"], op.p["padding"]
            fill = -np.inf if op.type == "maxpool" else 0.0
            xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=fill)
            wins = [xp[:, si, sj] for si in window_slices(oh, kh, sh)
                    for sj in window_slices(ow, kw, sw)]
            return np.max(wins, axis=0) if op.type == "maxpool" else np.sum(wins, 0) / (kh * kw)
        if op.type == "flatten":
            return x.reshape(-1, 1, 1)
        if op.type == "linear":
            y = T(pre + "weight") @ x.reshape(-1)
            if op.p["bias"]:
                y = y + T(pre + "bias")
            return y.reshape(-1, 1, 1)
        if op.type == "globalavgpool":
            C, H, W = x.shape
            return np.array([sum(float(v) for v in x[c].reshape(-1)) / (H * W)
                             for c in range(C)]).reshape(C, 1, 1)
        if op.type == "residual":
            y = run(op.main, pre + "main.", x)
            y = y + (run(op.shortcut, pre + "shortcut.", x) if op.shortcut else x)
            return np.maximum(y, 0.0) if op.p["relu"] else y
        return x                                          # dropout: identity

    route, rl, e = [], [], 0
    x = np.asarray(x, dtype=np.float64)
    for L in arch.layers:
        route.append(e)
        x = run(L.ops, "layers.%d.experts.%d.ops." % (L.index, e), x)
        if L.router is not None:
            R = L.router
            pre = "routers.%d." % L.index
            s = run(R.ops, pre + "ops.", x)
            C, H, W = s.shape
            ph, pw = R.pool
            hh, ww = H // ph, W // pw
            z = s[:, :hh * ph, :ww * pw].reshape(C, hh, ph, ww, pw).mean(axis=(2, 4)).reshape(-1)
            h = T(pre + "fc1.weight") @ z + T(pre + "fc1.bias")
            h = (h - T(pre + "bn.running_mean")) / np.sqrt(T(pre + "bn.running_var") + R.eps) * \
                T(pre + "bn.weight") + T(pre + "bn.bias")
            a = T(pre + "fc2.weight") @ h + T(pre + "fc2.bias")
            rl.append(a)
            e = int(np.flatnonzero(a == a.max())[0])      # lowest index on a tie
    return x.reshape(-1), route, rl


class BasicBlockTV(nn.Module):
    """torchvision's BasicBlock written out by hand (conv1 3x3 stride s, bn1, relu, conv2 3x3,
    bn2, + identity or downsample = conv 1x1 stride s + bn, relu), the block the spec says
    `residual` with main [conv, batchnorm, relu, conv, batchnorm] is. A check of the reference's
    Residual module that shares none of its code (build_op/build_chain); `mutate` drops a piece
    on purpose ("no-add": no shortcut term, "no-relu": no final relu), so the check can fail."""

    def __init__(self, model, pre, op, mutate=None):
        super().__init__()
        self.mutate = mutate

        def conv(o, name):
            m = nn.Conv2d(o.in_shape[0], o.p["out"], o.p["kernel"], o.p["stride"],
                          o.p["padding"], bias=o.p["bias"])
            m.weight.data.copy_(_t(model, name + ".weight"))
            if o.p["bias"]:
                m.bias.data.copy_(_t(model, name + ".bias"))
            return m

        def bn(o, name):
            m = nn.BatchNorm2d(o.in_shape[0], eps=o.p["eps"])
            for leaf in ("weight", "bias"):
                getattr(m, leaf).data.copy_(_t(model, "%s.%s" % (name, leaf)))
            m.running_mean.copy_(_t(model, name + ".running_mean"))
            m.running_var.copy_(_t(model, name + ".running_var"))
            return m

        self.conv1, self.bn1 = conv(op.main[0], pre + "main.0"), bn(op.main[1], pre + "main.1")
        self.conv2, self.bn2 = conv(op.main[3], pre + "main.3"), bn(op.main[4], pre + "main.4")
        self.final_relu = op.p["relu"]
        self.downsample = None
        if op.shortcut:
            self.downsample = nn.Sequential(conv(op.shortcut[0], pre + "shortcut.0"),
                                            bn(op.shortcut[1], pre + "shortcut.1"))
        self.eval()

    @staticmethod
    def matches(op):
        return op.type == "residual" and \
            [o.type for o in op.main] == ["conv", "batchnorm", "relu", "conv", "batchnorm"] and \
            [o.type for o in op.shortcut] in ([], ["conv", "batchnorm"])

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = torch.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        if self.mutate != "no-add":
            out = out + identity
        if self.final_relu and self.mutate != "no-relu":
            out = torch.relu(out)
        return out


def basic_block_check(model, mutate=None, n=3, seed=0):
    """Every BasicBlock-shaped `residual` of expert 0 of each layer and of each router's chain:
    the reference module (build_op) against BasicBlockTV on the same weights and random inputs.
    Returns (blocks checked, blocks differing, worst max|d| relative to the output's scale)."""
    g = torch.Generator().manual_seed(seed)
    checked = bad = 0
    worst = 0.0
    for L in model.arch.layers:
        chains = [("layers.%d.experts.0.ops." % L.index, L.ops)]
        if L.router is not None:
            chains.append(("routers.%d.ops." % L.index, L.router.ops))
        for base, ops in chains:
            for op in ops:
                if not BasicBlockTV.matches(op):
                    continue
                pre = "%s%d." % (base, op.index)
                x = torch.randn((n,) + tuple(op.in_shape), generator=g)
                with torch.no_grad():
                    ref = build_op(model, pre, op).eval()(x)
                    hand = BasicBlockTV(model, pre, op, mutate)(x)
                d = float((ref - hand).abs().max()) / max(1.0, float(hand.abs().max()))
                worst = max(worst, d)
                checked += 1
                bad += not d <= 1e-5
    return checked, bad, worst


def self_test(config_path):
    """Returns the number of failed checks."""
    import numpy as np          # noqa: F401  (numpy_forward needs it)
    import make_model

    fails = []

    def check(cond, what):
        print("  %s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            fails.append(what)

    tmp = tempfile.mkdtemp(prefix="cigt-ref-")
    cfgs = []
    for name, obj in (("fm_design", FM_DESIGN), ("odd", ODD), ("single", SINGLE),
                      ("residual_odd", RESIDUAL_ODD)):
        p = os.path.join(tmp, name + ".json")
        with open(p, "w") as f:
            json.dump(obj, f)
        cfgs.append((name, p))
    if config_path and os.path.exists(config_path):
        cfgs.insert(0, ("config", config_path))
    else:
        print("note: %s not found; using the DESIGN.md copy only" % config_path)
    cfgs.append(("residual_tiny", TINY_RESIDUAL))
    if os.path.exists(RESNET110):
        cfgs.append(("resnet110", RESNET110))
    else:
        print("note: %s not found; the ResNet-110 trellis is not checked" % RESNET110)

    print("MAC arithmetic of residual trellises (spec section 3, by hand)")
    A = cigt_format.load_config(RESNET110) if os.path.exists(RESNET110) else None
    if A is not None:
        # stem conv 3->16 at 32x32, then 9 BasicBlocks of two 16->16 3x3 convs at 32x32
        want = 32 * 32 * 16 * 3 * 9 + 9 * 2 * (32 * 32 * 16 * 16 * 9)
        check(A.layers[0].expert_macs == want, "ResNet-110 trellis layer 0: %d MACs (%d)"
              % (want, A.layers[0].expert_macs))
        # router 0: its op chain's conv 16->16 3x3 stride 2 -> 16x16, pool 2 -> P = 16*8*8
        want = 16 * 16 * 16 * 16 * 9 + 16 * 8 * 8 * 128 + 128 * 2
        check(A.layers[0].router.macs == want and A.layers[0].router.P == 1024,
              "ResNet-110 trellis router 0: op chain + linears %d MACs (%d), P %d"
              % (want, A.layers[0].router.macs, A.layers[0].router.P))
    A = cigt_format.load_config(TINY_RESIDUAL)
    # layer 2: block 1 (bn, relu, conv 16->24 3x3 s2 -> 4x4 biased, bn, relu, conv 24->24 3x3;
    # shortcut conv 1x1 s2 16->24), block 2 (conv 24->24 3x3), globalavgpool, linear 24->10
    want = 16 * 24 * 16 * 9 + 16 * 24 * 24 * 9 + 16 * 24 * 16 + 16 * 24 * 24 * 9 + 24 * 10
    check(A.layers[2].expert_macs == want, "residual_tiny layer 2: %d MACs (%d)"
          % (want, A.layers[2].expert_macs))
    # router 1: conv 16->6 3x3 at 8x8, maxpool 2 -> 6x4x4, pool [2, 1] -> P = 6*2*4 = 48
    want = 64 * 6 * 16 * 9 + 48 * 12 + 12 * 3
    check(A.layers[1].router.macs == want and A.layers[1].router.P == 48,
          "residual_tiny router 1: %d MACs (%d), P %d"
          % (want, A.layers[1].router.macs, A.layers[1].router.P))
    names = [n for n, _ in A.tensor_specs()]
    for nm in ("layers.0.experts.0.ops.3.main.4.running_var",
               "layers.1.experts.1.ops.0.shortcut.1.weight",
               "routers.0.ops.0.shortcut.0.weight", "routers.1.ops.0.weight"):
        check(nm in names, "tensor %s implied" % nm)
    for nm in ("routers.1.ops.3.weight", "layers.1.experts.0.ops.1.shortcut.0.weight",
               "layers.0.experts.0.ops.0.bias", "layers.2.experts.0.ops.2.weight"):
        check(nm not in names, "tensor %s not implied" % nm)
    i, j = names.index("layers.1.experts.0.ops.0.main.4.running_var"), \
        names.index("layers.1.experts.0.ops.0.shortcut.0.weight")
    k = names.index("routers.1.ops.0.weight")
    check(i < j and names[k + 1:k + 6] == ["routers.1.ops.1.weight", "routers.1.ops.1.bias",
                                           "routers.1.ops.1.running_mean",
                                           "routers.1.ops.1.running_var",
                                           "routers.1.fc1.weight"],
          "tensor order: main before shortcut, a router's op chain before fc1")

    print("MAC arithmetic (DESIGN.md section 2)")
    A = cigt_format.parse_architecture(FM_DESIGN)
    check(A.route_macs([0, 0, 0]) == 5749632, "one route = 5,749,632 MACs (%d)"
          % A.route_macs([0, 0, 0]))
    check(A.dense_macs() == 11054848, "dense = 11,054,848 MACs (%d)" % A.dense_macs())
    nparam = sum(math.prod(s) for _, s in A.tensor_specs())
    print("  parameters: %d" % nparam)

    for name, cfg in cfgs:
        variants = (("spec", False, 0), ("random", False, 256), ("reverse", True, 256))
        if name == "resnet110":
            variants = (("random", False, 0),)      # 95 M MACs a sample: one model only
        for order, tie, calib in variants:
            if tie and name not in ("config", "fm_design"):
                continue
            print("%s: %s, order %s%s%s" % (name, cfg, order, ", tied routers" if tie else "",
                                            ", routers calibrated" if calib else ""))
            path = os.path.join(tmp, "%s-%s.cigt" % (name, order))
            t0 = time.time()
            arch, tensors = make_model.make_model(cfg, path, seed=7, order=order,
                                                  tie_routers=tie, pad=(order != "reverse"),
                                                  calibrate_n=calib)
            M = cigt_format.read_model(path)
            check(M.metadata.get("format") == "cigt-1" and M.arch.obj == arch.obj,
                  "metadata and architecture read back")
            same = set(M.tensors) == set(tensors) and all(
                M.tensors[k][0] == list(tensors[k][0]) and
                M.tensors[k][1].tobytes() == make_model._f32le(tensors[k][1])
                for k in tensors)
            check(same, "%d tensors read back bit-identical" % len(tensors))
            expect_order = [n for n, _ in M.arch.tensor_specs()]
            if order == "reverse":
                expect_order.reverse()
            if order != "random":
                check(M.order == expect_order, "data order is the %s order" % order)

            net = Trellis(M)
            x, ys = load_images(M.arch, 64 if name != "resnet110" else 16, fit=True)
            ref = RefResult(net, x, ys)
            # (a) the numpy loop implementation agrees
            nd, nr = 0.0, 0
            k = 12 if name != "resnet110" else 1
            for i in range(k):
                lg, rt, _ = numpy_forward(M.arch, M, x[i].double().numpy())
                nr += rt == ref.routes[i].tolist()
                nd = max(nd, float(np.max(np.abs(lg - ref.logits[i].double().numpy()))))
            check(nr == k and nd < 1e-4,
                  "numpy float64 loop forward: routes %d/%d, max |dlogit| %.2g" % (nr, k, nd))
            # (b) one sample at a time agrees with the gather-scatter batch
            ok = True
            for i in range(0, x.shape[0], 9):
                lg, rt, _ = net(x[i:i + 1])
                ok &= rt[0].tolist() == ref.routes[i].tolist() and \
                    torch.allclose(lg[0], ref.logits[i], atol=1e-5, rtol=1e-5)
            check(ok, "per-sample forward equals the batched routed forward")
            # (c) forcing the chosen routes reproduces the run
            lg, rt, _ = net(x, ref.routes)
            check(torch.equal(rt, ref.routes) and torch.allclose(lg, ref.logits, atol=1e-6),
                  "forced routes reproduce the routed run")
            paths, per = route_distribution(M.arch, ref.routes.tolist())
            print("  routes: %s | %s" % (paths, per))
            # (e) residual blocks against a hand-written torchvision BasicBlock
            nb, nbad, worst = basic_block_check(M)
            if nb:
                check(nbad == 0, "%d BasicBlock-shaped blocks equal a hand-written torchvision "
                                 "BasicBlock (max rel |d| %.2g)" % (nb, worst))
                for mut in ("no-add", "no-relu"):
                    nb2, nbad2, _ = basic_block_check(M, mut)
                    check(nbad2 == nb2, "the BasicBlock check fails with %s (%d/%d differ)"
                          % (mut, nbad2, nb2))
            if calib and not tie and len(M.arch.layers) > 1:
                npaths = len(set(map(tuple, ref.routes.tolist())))
                check(npaths > 1, "calibrated routers spread samples over %d paths" % npaths)
            if tie:
                odd = sum(1 for r in ref.routes.tolist() for v in r[1:] if v % 2)
                check(odd == 0, "tied routers: lowest index wins (odd experts used %d times)"
                      % odd)
            # (d) the comparator: passes on itself, fails on perturbations
            dump = list(ref.records())
            sink = open(os.devnull, "w")
            check(compare(ref, dump, out=sink) == 0, "comparator accepts the reference's dump")
            bad = json.loads(json.dumps(dump))
            bad[3]["logits"][1] += 2e-3 + 2e-3 * abs(bad[3]["logits"][1])
            check(compare(ref, bad, out=sink) == 1, "comparator rejects a perturbed logit")
            if len(M.arch.layers) > 1:
                bad = json.loads(json.dumps(dump))
                L = M.arch.layers[-1]
                bad[5]["route"][-1] = (bad[5]["route"][-1] + 1) % L.experts
                # a different route (or an invalid one with a single expert): a failure either way
                check(compare(ref, bad, out=sink) == 1, "comparator rejects a changed route")
            bad = json.loads(json.dumps(dump))
            bad[7]["class"] = (bad[7]["class"] + 1) % len(M.arch.classes)
            check(compare(ref, bad, out=sink) == 1, "comparator rejects a changed class")
            bad = json.loads(json.dumps(dump))
            bad[9]["macs"] += 1
            check(compare(ref, bad, out=sink) == 1, "comparator rejects a changed MAC count")
            check(compare(ref, dump[:-1], out=sink) >= 1, "comparator rejects a short dump")
            sink.close()
            print("  (%.2f s)" % (time.time() - t0))
        if name == "config":
            # whole-test-set timing on the real config
            M = cigt_format.read_model(os.path.join(tmp, "config-random.cigt"))
            t0 = time.time()
            x, ys = load_images(M.arch, 1000)
            RefResult(Trellis(M), x, ys)
            print("  1000 images: load + forward %.2f s" % (time.time() - t0))

    print("reader rejects invalid files")
    base = cfgs[0][1]
    for kind in make_model.CORRUPTIONS:
        p = os.path.join(tmp, "bad-%s.cigt" % kind)
        make_model.make_model(base, p, seed=3, corrupt=kind)
        try:
            cigt_format.read_model(p)
            check(False, "%s: accepted" % kind)
        except FormatError as e:
            check(True, "%-17s -> %s" % (kind, str(e)[:80]))
    for bad in ({"experts": 2}, {"unknown": 1}):
        obj = json.loads(json.dumps(FM_DESIGN))
        obj["layers"][0].update(bad)
        try:
            cigt_format.parse_architecture(obj)
            check(False, "architecture %r accepted" % bad)
        except FormatError as e:
            check(True, "architecture %r -> %s" % (bad, e))
    # each case edits layer 0 of RESIDUAL_ODD (output 7x14x14) in one way the spec forbids
    conv = {"type": "conv", "out": 7, "kernel": 3, "padding": 1}
    block = {"type": "residual", "main": [conv]}
    big = {"type": "residual", "main": [{"type": "relu"}] * 16,         # 35 ops toward 2,048
           "shortcut": [{"type": "relu"}] * 16}
    for what, edit in (
            ("a block inside a block", lambda L: L["ops"].append(
                {"type": "residual", "main": [conv, dict(block)]})),
            ("flatten in a branch", lambda L: L["ops"].append(
                {"type": "residual", "main": [conv, {"type": "flatten"}]})),
            ("globalavgpool in a shortcut", lambda L: L["ops"].append(
                {"type": "residual", "main": [conv], "shortcut": [{"type": "globalavgpool"}]})),
            ("branch shapes differ", lambda L: L["ops"].append(
                {"type": "residual", "main": [dict(conv, stride=2)]})),
            ("an empty main branch", lambda L: L["ops"].append(
                {"type": "residual", "main": []})),
            ("17 shortcut ops", lambda L: L["ops"].append(
                {"type": "residual", "main": [conv], "shortcut": [{"type": "relu"}] * 17})),
            ("a block without main", lambda L: L["ops"].append({"type": "residual"})),
            ("relu: 1", lambda L: L["ops"].append(dict(block, relu=1))),
            ("an unknown block key", lambda L: L["ops"].append(dict(block, add=True))),
            ("globalavgpool with a key", lambda L: L["ops"].append(
                {"type": "globalavgpool", "kernel": 2})),
            ("dropout p 0.9995", lambda L: L["ops"].append({"type": "dropout", "p": 0.9995})),
            ("257 entries", lambda L: L["ops"].extend([{"type": "relu"}] * 254)),
            ("2,080 ops", lambda L: L["ops"].extend([big] * 59)),
            ("a router op chain with linear", lambda L: L["router"].update(
                ops=[{"type": "linear", "out": 4}])),
            ("a router op chain with dropout", lambda L: L["router"].update(
                ops=[{"type": "dropout"}])),
            ("an empty router op chain", lambda L: L["router"].update(ops=[])),
            ("17 router ops", lambda L: L["router"].update(ops=[{"type": "relu"}] * 17)),
            ("ops checked before pool", lambda L: L["router"].update(
                ops=[{"type": "flatten"}], pool=99))):
        obj = json.loads(json.dumps(RESIDUAL_ODD))
        edit(obj["layers"][0])
        try:
            cigt_format.parse_architecture(obj)
            check(False, "residual architecture with %s accepted" % what)
        except FormatError as e:
            ok = "ops" in str(e) if what == "ops checked before pool" else True
            check(ok, "%s -> %s" % (what, e))
    # and the same edits within the rules are accepted
    obj = json.loads(json.dumps(RESIDUAL_ODD))
    obj["layers"][0]["ops"] += [dict(block, shortcut=[{"type": "relu"}] * 16, relu=False),
                                {"type": "dropout", "p": 0.999}] + [{"type": "relu"}] * 251
    obj["layers"][0]["router"]["ops"] += [{"type": "relu"}] * 15
    try:
        A = cigt_format.parse_architecture(obj)
        check(len(A.layers[0].ops) == 256 and len(A.layers[0].router.ops) == 16,
              "256 entries in a layer, 16 shortcut ops, 16 router ops accepted")
    except FormatError as e:
        check(False, "a valid residual architecture refused: %s" % e)
    obj = json.loads(json.dumps(RESIDUAL_ODD))
    obj["layers"][0]["ops"] += [big] * 58                       # 15 + 58 * 35 = 2,045 ops
    try:
        cigt_format.parse_architecture(obj)
        check(True, "2,045 ops in a layer accepted")
    except FormatError as e:
        check(False, "2,045 ops in a layer refused: %s" % e)

    if fails:
        print("self-test: FAIL (%d failed check(s)); files kept in %s" % (len(fails), tmp))
    else:
        shutil.rmtree(tmp)
        print("self-test: PASS")
    return len(fails)


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description="Independent PyTorch reference forward pass for cigt model files.")
    ap.add_argument("model", nargs="?", help="cigt-1 model file")
    ap.add_argument("--dump", help="C engine dump (JSON lines) to compare with")
    ap.add_argument("--limit", type=int, default=1000,
                    help="first N test images (default 1000)")
    ap.add_argument("--margin", action="store_true",
                    help="report router-logit margins (near-ties), per differing sample too")
    ap.add_argument("--show", type=int, default=10, help="mismatches to list (default 10)")
    ap.add_argument("--tol", type=float, default=TOL,
                    help="logit tolerance: |d| <= max(tol, tol*|x|) (default 1e-4)")
    ap.add_argument("--info", metavar="FILE",
                    help="`cigt info MODEL --json` output to check the MACs and shapes against")
    ap.add_argument("--write-dump", metavar="FILE",
                    help="write the reference's own results in the dump format")
    ap.add_argument("--images", default=cigt_format.TEST_IMAGES, help="IDX images (.gz)")
    ap.add_argument("--folder", metavar="DIR",
                    help="instead of IDX images: DIR/<class>/0.ppm, one colour image per class "
                         "(colour_folder.py); the dump is matched by label")
    ap.add_argument("--labels", default=cigt_format.TEST_LABELS, help="IDX labels (.gz)")
    ap.add_argument("--self-test", action="store_true",
                    help="test the reader, forward and comparator on make_model.py files")
    ap.add_argument("--write-config", nargs=2, metavar=("NAME", "FILE"),
                    help="write one of the self-test's architectures (%s) to FILE"
                         % ", ".join(sorted(BUILTIN)))
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help="architecture for --self-test (default models/fashion_mnist.json)")
    a = ap.parse_args()

    if a.write_config:
        name, path = a.write_config
        if name not in BUILTIN:
            ap.error("--write-config: no architecture %r" % name)
        with open(path, "w") as f:
            json.dump(BUILTIN[name], f, indent=1)
        return 0
    if a.self_test:
        return 1 if self_test(a.config) else 0
    if not a.model:
        ap.error("a model file is required (or --self-test)")
    try:
        t0 = time.time()
        M = cigt_format.read_model(a.model)
        if a.folder:
            x, ys = load_folder(M.arch, a.folder)
        else:
            x, ys = load_images(M.arch, a.limit, a.images, a.labels)
        ref = RefResult(Trellis(M), x, ys)
        dump = read_dump(a.dump) if a.dump else None
        if dump is not None and a.folder:
            dump = dump_by_label(dump, ys)
        info = None
        if a.info:
            with open(a.info, "r", encoding="utf-8") as f:
                info = json.load(f)
    except (FormatError, OSError, ValueError) as e:
        print("check_forward: %s" % e, file=sys.stderr)
        return 2
    info_bad = compare_info(M.arch, info) if info is not None else 0
    if a.write_dump:
        with open(a.write_dump, "w") as f:
            for r in ref.records():
                f.write(json.dumps(r) + "\n")
    if dump is None:
        acc = sum(1 for i in range(ref.n) if int(ref.classes[i]) == ys[i])
        print("reference forward: %d samples (no dump to compare), accuracy %d/%d = %.2f%%, "
              "%.2f s" % (ref.n, acc, ref.n, 100.0 * acc / max(ref.n, 1), time.time() - t0))
        paths, per = route_distribution(M.arch, ref.routes.tolist())
        print("route distribution (reference): %s" % paths)
        print("  per layer: %s" % per)
        if a.margin:
            margin_summary(ref, [], sys.stdout)
        return 1 if info_bad else 0
    return 1 if compare(ref, dump, a.show, a.margin, a.tol) or info_bad else 0


if __name__ == "__main__":
    sys.exit(main())
