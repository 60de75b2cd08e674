"""The trellis as a torch.nn.Module, built from a cigt architecture (proto/model-format.md):
experts, routers, input scaling, and a forward pass that follows rows (a sample on a partial
path) as `cigt train` does (src/train/trellis.c): warm-up full routing, argmax routing with
random re-routing, multipath routing with per-layer thresholds, batch norm over the rows each
expert received. Parameter and buffer names are the file's tensor names."""

import json
from typing import List, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import format as cfmt

ROUTINGS = ("warmup", "argmax", "multipath")


class BatchNorm(nn.Module):
    """Batch norm over channels (dim 1) with cigt's training rule: batch statistics of the rows
    given, running statistics updated with the unbiased variance (PyTorch's rule); with fewer
    than two values per channel the running statistics normalise and stay unchanged."""

    def __init__(self, c, eps, momentum):
        super().__init__()
        self.eps, self.momentum = cfmt._f32(eps), cfmt._f32(momentum)
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x, batch_stats):
        values = x.numel() // max(x.shape[1], 1)
        use = batch_stats and values >= 2
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use, self.momentum if use else 0.0, self.eps)


class Op(nn.Module):
    """A parameterless op (relu, maxpool, avgpool, globalavgpool, flatten, dropout): keeps the
    op's index in its chain's ModuleList so parameter names match the file."""

    def __init__(self, desc):
        super().__init__()
        self.kind = desc["type"]
        self.kernel = desc.get("kernel")
        self.stride = desc.get("stride")
        self.padding = desc.get("padding")
        self.p = desc.get("p", 0.0)

    def forward(self, x, dropout):
        if self.kind == "relu":
            return F.relu(x)
        if self.kind == "maxpool":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if self.kind == "avgpool":
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding,
                                count_include_pad=True)
        if self.kind == "globalavgpool":
            return x.mean(dim=(2, 3), keepdim=True)
        if self.kind == "flatten":
            return x.reshape(x.shape[0], -1, 1, 1)
        return F.dropout(x, self.p, training=dropout) if self.p > 0 else x

    def extra_repr(self):
        return self.kind


def chain(ops):
    """An op chain's modules (a ModuleList, entry i the chain's op i): a residual block is a
    Residual holding its branches."""
    out = nn.ModuleList()
    for d in ops:
        c, h, w = d["in"]
        if d["type"] == "conv":
            m = nn.Conv2d(c, d["out"], d["kernel"], d["stride"], d["padding"], bias=d["bias"])
        elif d["type"] == "linear":
            m = nn.Linear(c * h * w, d["out"], bias=d["bias"])
        elif d["type"] == "batchnorm":
            m = BatchNorm(c, d["eps"], d["momentum"])
        elif d["type"] == "residual":
            m = Residual(d)
        else:
            m = Op(d)
        out.append(m)
    return out


def run_chain(mods, x, batch_stats, dropout):
    """Runs a chain built by chain() on (rows, C, H, W) x (a flat vector is (rows, F, 1, 1))."""
    for m in mods:
        if isinstance(m, nn.Linear):
            x = m(x.reshape(x.shape[0], -1)).reshape(x.shape[0], -1, 1, 1)
        elif isinstance(m, nn.Conv2d):
            x = m(x)
        elif isinstance(m, Residual):
            x = m(x, batch_stats, dropout)
        elif isinstance(m, BatchNorm):
            x = m(x, batch_stats)
        else:
            x = m(x, dropout)
    return x


class Residual(nn.Module):
    """A residual block: main(x) + shortcut(x) (an empty shortcut is the identity), then a ReLU
    when relu. Its branches are the ModuleLists main and shortcut, so the file's
    ....ops.{i}.main.{j}.weight names are its parameters'."""

    def __init__(self, desc):
        super().__init__()
        self.main = chain(desc["main"])
        self.shortcut = chain(desc["shortcut"])
        self.relu = desc["relu"]

    def forward(self, x, batch_stats, dropout):
        y = run_chain(self.main, x, batch_stats, dropout)
        y = y + (run_chain(self.shortcut, x, batch_stats, dropout) if len(self.shortcut) else x)
        return F.relu(y) if self.relu else y

    def extra_repr(self):
        return "relu after the add" if self.relu else ""


class Expert(nn.Module):
    """One expert: the layer's op chain with its own weights, on (rows, C, H, W) tensors (a flat
    vector is (rows, F, 1, 1))."""

    def __init__(self, ops):
        super().__init__()
        self.ops = chain(ops)

    def forward(self, x, batch_stats, dropout):
        return run_chain(self.ops, x, batch_stats, dropout)


class Layer(nn.Module):
    def __init__(self, desc):
        super().__init__()
        self.experts = nn.ModuleList(Expert(desc["ops"]) for _ in range(desc["experts"]))


class Router(nn.Module):
    """Its own op chain (ops, often empty) -> avgpool(pool) -> flatten -> fc1 -> batch norm ->
    fc2: the next layer's logits."""

    def __init__(self, desc):
        super().__init__()
        c, h, w = desc["pooled"]
        self.ops = chain(desc["ops"])
        self.pool = desc["pool"]
        self.fc1 = nn.Linear(c * h * w, desc["hidden"])
        self.bn = BatchNorm(desc["hidden"], desc["bn_eps"], desc["bn_momentum"])
        self.fc2 = nn.Linear(desc["hidden"], desc["out"])

    def forward(self, s, batch_stats, dropout=False):
        s = run_chain(self.ops, s, batch_stats, dropout)
        z = F.avg_pool2d(s, self.pool, self.pool).reshape(s.shape[0], -1)
        return self.fc2(self.bn(self.fc1(z), batch_stats))


class RouterRows(NamedTuple):
    """What router l saw: its logits a [M, K], soft routes p = softmax(a / T) [M, K], the
    choice made for each row (argmax, or re-routed) [M], and each row's sample index [M]."""
    logits: torch.Tensor
    probs: torch.Tensor
    choice: torch.Tensor
    sample: torch.Tensor


class TrellisOutput(NamedTuple):
    """The rows that reached the last layer: logits [R, classes], the sample each row belongs
    to [R], its path [R, layers] (expert per layer, layer 0 included), whether the row is on
    its sample's main path (the router's choice at every layer) [R], plus every router's rows. With argmax routing R = batch; warm-up multiplies rows, multipath adds some.
    A NamedTuple, so DistributedDataParallel finds its tensors."""
    logits: torch.Tensor
    sample: torch.Tensor
    path: torch.Tensor
    main: torch.Tensor
    routers: List[RouterRows]
    batch: int

    def probs(self):
        """[batch, classes]: the mean softmax over each sample's rows (one row: its softmax)."""
        p = torch.softmax(self.logits, dim=1)
        out = torch.zeros(self.batch, p.shape[1], dtype=p.dtype, device=p.device)
        out.index_add_(0, self.sample, p)
        cnt = torch.bincount(self.sample, minlength=self.batch).clamp(min=1)
        return out / cnt.unsqueeze(1).to(p.dtype)

    def single(self):
        """For one row per sample: (logits [batch, classes], routes [batch, layers]) in sample
        order. ValueError otherwise."""
        if self.sample.numel() != self.batch:
            raise ValueError("%d rows for %d samples: not single-path routing"
                             % (self.sample.numel(), self.batch))
        order = torch.argsort(self.sample)
        return self.logits[order], self.path[order]

    def routes(self):
        """[batch, layers]: each sample's main path (argmax at every router; the route cigt
        reports under multipath too)."""
        rows = torch.nonzero(self.main).flatten()
        out = torch.zeros(self.batch, self.path.shape[1], dtype=torch.long,
                          device=self.path.device)
        out[self.sample[rows]] = self.path[rows]
        return out

    def classes(self):
        """[batch]: a sample with one path: argmax of its logits (cigt's rule); with several:
        argmax of the mean softmax (the multipath rule). Ties go to the lowest index."""
        if self.sample.numel() == self.batch:
            return self.single()[0].argmax(1)
        cls = self.probs().argmax(1)
        count = torch.bincount(self.sample, minlength=self.batch)
        one = count[self.sample] == 1
        cls[self.sample[one]] = self.logits[one].argmax(1)
        return cls

    def paths(self):
        """A list per sample of the paths (tuples) it took."""
        out = [[] for _ in range(self.batch)]
        for s, p in zip(self.sample.tolist(), self.path.tolist()):
            out[s].append(tuple(p))
        return out


class Trellis(nn.Module):
    """A Conditional Information Gain Trellis. Attributes that steer forward() (each can be
    overridden per call):
      routing      in train mode: "warmup" (every row to every expert) or "argmax"
      temperature  T of the soft routes softmax(a / T) the loss reads (train mode)
      rho          in train mode with argmax routing: share of rows re-routed uniformly
      thresholds   in eval mode: None (argmax) or one tau per router: multipath routing
    eval(): running batch-norm statistics, no dropout, argmax (or multipath) at every router.
    """

    def __init__(self, arch, provenance=None):
        super().__init__()
        if isinstance(arch, (str, bytes)):
            arch = cfmt.parse_arch_text(arch)
        elif "layers" in arch and isinstance(arch["layers"], list) and "json" not in arch:
            arch = cfmt.parse_arch(arch)
        self.arch = arch
        self.architecture = cfmt.dumps_json({k: v for k, v in arch["json"].items()
                                             if k != "train"})
        self.classes = list(arch["classes"])
        self.provenance = provenance
        self.layers = nn.ModuleList(Layer(L) for L in arch["layers"])
        self.routers = nn.ModuleList(Router(L["router"]) for L in arch["layers"]
                                     if L["router"] is not None)
        c = arch["input"][0]
        if arch["mean"] is not None:
            scale = [1.0 / (255.0 * s) for s in arch["std"]]
            shift = [-m / s for m, s in zip(arch["mean"], arch["std"])]
        else:
            lo, hi = arch["range"]
            scale, shift = [(hi - lo) / 255.0] * c, [lo] * c
        self.register_buffer("input_scale", torch.tensor(scale).view(1, c, 1, 1),
                             persistent=False)
        self.register_buffer("input_shift", torch.tensor(shift).view(1, c, 1, 1),
                             persistent=False)
        self.routing = "warmup"
        self.temperature = 1.0
        self.rho = 0.0
        self.thresholds = None

    # -------------------------------------------------------------------------- input
    def preprocess(self, pixels):
        """uint8 pixels -> the model's input: (N, H, W, C) or (N, C, H, W) with C matching, or
        (N, H, W) for one channel; scaled by input.range (lo + (hi - lo) p / 255) or by
        input.mean/std ((p / 255 - mean[c]) / std[c]). Returns float (N, C, H, W) in the
        module's dtype and device."""
        x = torch.as_tensor(pixels)
        c, h, w = self.arch["input"]
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        if x.dim() != 4:
            raise ValueError("expected images of shape (N, H, W, C) or (N, C, H, W)")
        if tuple(x.shape[1:]) == (h, w, c):
            x = x.permute(0, 3, 1, 2)
        elif tuple(x.shape[1:]) != (c, h, w):
            raise ValueError("images of shape %s do not fit the input %dx%dx%d"
                             % (tuple(x.shape[1:]), c, h, w))
        ref = self.input_scale
        x = x.to(device=ref.device, dtype=ref.dtype)
        if self.arch["mean"] is not None:
            mean = torch.tensor(self.arch["mean"], dtype=ref.dtype, device=ref.device)
            std = torch.tensor(self.arch["std"], dtype=ref.dtype, device=ref.device)
            return (x / 255.0 - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)
        lo, hi = self.arch["range"]
        return lo + (hi - lo) * x / 255.0  # cigt: lo + span * p / 255 in float32

    # ------------------------------------------------------------------------ forward
    def forward(self, x, *, routing=None, temperature=None, rho=None, thresholds=None,
                dropout=None):
        """x: (N, C, H, W) input (see preprocess). Returns a TrellisOutput.

        routing: "warmup", "argmax" or "multipath" (default: self.routing in train mode;
        "multipath" in eval mode when thresholds are set, else "argmax"). multipath: at router
        l a row goes to its argmax expert and to the other experts, in index order, whose
        probability softmax(a / T) reaches thresholds[l] (in [0, 1]), at most
        floor(1.0001 / tau) in all; rows are copied (a tree), and probs() is the mean softmax
        over each sample's leaves. dropout defaults to train mode."""
        train = self.training
        if thresholds is None:
            thresholds = self.thresholds
        if routing is None:
            routing = self.routing if train else ("multipath" if thresholds is not None
                                                  else "argmax")
        if routing not in ROUTINGS:
            raise ValueError("routing must be one of %s" % (ROUTINGS,))
        if routing == "multipath":
            if thresholds is None or len(thresholds) != len(self.routers):
                raise ValueError("multipath routing needs one threshold per router (%d)"
                                 % len(self.routers))
            for l, tau in enumerate(thresholds):
                if not 0.0 <= float(tau) <= 1.0:
                    raise ValueError("threshold of router %d is %g, not in [0, 1]" % (l, tau))
        T = float(temperature if temperature is not None else (self.temperature if train
                                                               else 1.0))
        rho = float(rho if rho is not None else (self.rho if train else 0.0))
        dropout = train if dropout is None else bool(dropout)
        n = x.shape[0]
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.arch["input"]) or n == 0:
            raise ValueError("expected a non-empty batch of shape (N, %d, %d, %d), got %s"
                             % (*self.arch["input"], tuple(x.shape)))
        dev = x.device
        sample = torch.arange(n, device=dev)
        path = torch.zeros(n, 0, dtype=torch.long, device=dev)
        main = torch.ones(n, dtype=torch.bool, device=dev)
        top = None
        rows = x
        assign = [sample]
        routers = []
        for l, layer in enumerate(self.layers):
            outs, samp, paths, mains = [], [], [], []
            for e, idx in enumerate(assign):
                if idx.numel() == 0:
                    continue
                outs.append(layer.experts[e](rows[idx], train, dropout))
                samp.append(sample[idx])
                mains.append(main[idx] & (top[idx] == e) if top is not None else main[idx])
                paths.append(torch.cat([path[idx], torch.full((idx.numel(), 1), e,
                                                              dtype=torch.long, device=dev)], 1))
            rows, sample, path = torch.cat(outs), torch.cat(samp), torch.cat(paths)
            main = torch.cat(mains)
            if l == len(self.layers) - 1:
                break
            a = self.routers[l](rows, train, dropout)
            p = torch.softmax(a / T, dim=1)
            M, K = a.shape
            choice = a.argmax(1)
            if routing == "argmax" and train and rho > 0:
                flip = torch.rand(M, device=dev) < rho
                choice = torch.where(flip, torch.randint(0, K, (M,), device=dev), choice)
            routers.append(RouterRows(a, p, choice, sample))
            top = choice
            allrows = torch.arange(M, device=dev)
            if routing == "warmup":
                assign = [allrows] * K
            elif routing == "argmax":
                assign = [allrows[choice == k] for k in range(K)]
            else:
                # cigt's rule (src/engine/multipath.c): the argmax, then the other experts in
                # index order whose p reaches tau, at most floor(1.0001 / tau) in all.
                tau = float(thresholds[l])
                fan = K if tau <= 0 else max(1, min(K, int(1.0001 // tau)))
                first = F.one_hot(choice, K).bool()
                cand = (p.detach() >= tau) & ~first
                cand &= torch.cumsum(cand.long(), 1) <= fan - 1
                active = cand | first
                assign = [allrows[active[:, k]] for k in range(K)]
        logits = rows.reshape(rows.shape[0], -1)
        return TrellisOutput(logits, sample, path, main, routers, n)

    # ------------------------------------------------------------------------- export
    def tensors(self):
        """name -> float32 numpy array: the file's tensors (the state dict)."""
        sd = self.state_dict()
        return {name: sd[name].detach().cpu().float().numpy()
                for name, _, _ in cfmt.tensor_list(self.arch)}


def schedule_temperature(train, iteration):
    """T at global step `iteration` (from 0), as cigt train computes it:
    max(initial * decay^(iteration + 1), min)."""
    t = train["temperature"]
    return max(t["initial"] * t["decay"] ** (iteration + 1), t["min"])


def schedule_lr(train, epoch):
    """lr0 times the factor of the last lr_schedule step at or before epoch (from 0)."""
    f = 1.0
    for e0, factor in train["lr_schedule"]:
        if epoch >= e0:
            f = factor
    return train["lr"] * f


def apply_schedule(module, train, epoch, iteration, optimizer=None):
    """Sets what cigt train sets for a step: routing (warm-up for the first warmup_epochs,
    then argmax), temperature, rho (routing_randomization), and the optimizer's lr."""
    module.routing = "warmup" if epoch < train["warmup_epochs"] else "argmax"
    module.temperature = schedule_temperature(train, iteration)
    module.rho = float(train.get("routing_randomization", 0.0))
    if optimizer is not None:
        for g in optimizer.param_groups:
            g["lr"] = schedule_lr(train, epoch)
