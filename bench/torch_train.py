#!/usr/bin/python3
"""torch_train.py -- PyTorch training throughput of a trellis, the peer of `cigt train`.

Same architecture (built from the config by the independent reference in tests/reference/:
make_model.random_tensors for the initial weights, check_forward.Trellis for the modules, switched
to training mode), same batch size and the same step semantics as DESIGN.md section 2:

  warmup  every row goes to every expert, so rows multiply (N, 2N, 8N rows at the leaves);
  routed  argmax routing on softmax(a/T), then a random share rho (0.491) of the rows at each
          router re-routed uniformly at random; the hard route carries no gradient;

training-mode batch norm over the rows each expert received; dropout as configured (0.185);
loss = sum over leaves of the leaf's mean cross-entropy - lambda * sum over routers of
IG = beta*H(p(n)) + H(p(c)) - H(p(c,n)) from the soft routes of every row at that router;
SGD with the config's lr, momentum and weight decay; T = max(T0 * r^(t+1), Tmin) per step.

Rows are kept grouped by expert (sorted by route, labels permuted with them), as a regrouping
engine does, so each expert runs once per step on a contiguous block.

Why not tests/reference/check_train_step.Step: that one mirrors the spec operation by operation
for gradient checks (hand-written batch norm, float64, dropout and re-routing off). A speed peer
should be PyTorch written the way a PyTorch user writes it: nn.Conv2d / nn.BatchNorm / nn.Dropout
modules in float32, which is what check_forward.Trellis builds. (One difference that does not
matter for speed: an expert that receives a single row normalises with nn.BatchNorm's batch
statistics here, where cigt's guard uses the running statistics.)

  torch_train.py CONFIG [--mode warmup,routed] [--threads N] [--seconds S] [--batch N]
                 [--train-samples N] [--warmup-steps N] [--seed N]

Prints one JSON object: {"torch_version", "threads", "batch", "rows": [{mode, steps,
samples_per_second, seconds, loss_first, loss_last}]}; samples/s counts training images (the
batch), not the multiplied rows. Run with Debian's /usr/bin/python3 (python3-torch 1.13).
"""

import argparse
import array
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "reference"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import cigt_format  # noqa: E402
import check_forward  # noqa: E402
import make_model  # noqa: E402


def entropy(q):
    return -(q * torch.log(q + 1e-30)).sum()


def information_gain(p, y, nclasses, beta):
    """IG = beta*H(p(n)) + H(p(c)) - H(p(c,n)) over the M rows at a router (p: M x K soft
    routes, y: M labels)."""
    onehot = F.one_hot(y, nclasses).to(p.dtype)
    pcn = onehot.t() @ p / p.shape[0]          # classes x K
    return beta * entropy(pcn.sum(0)) + entropy(pcn.sum(1)) - entropy(pcn)


class Trainer:
    def __init__(self, config_path, seed):
        with open(config_path, "rb") as f:
            cfg = json.loads(f.read().decode("utf-8"))
        self.hp = cfg.get("train", {})
        arch = cigt_format.parse_architecture(cfg, allow_train=True)
        M = cigt_format.Model()
        M.arch = arch
        M.tensors = {k: (list(s), array.array("f", v))
                     for k, (s, v) in make_model.random_tensors(arch, seed).items()}
        self.arch = arch
        self.net = check_forward.Trellis(M)
        self.net.train()
        for p in self.net.parameters():
            p.requires_grad_(True)
        hp = self.hp
        self.opt = torch.optim.SGD(self.net.parameters(), lr=hp.get("lr", 0.02726),
                                   momentum=hp.get("momentum", 0.9),
                                   weight_decay=hp.get("weight_decay", 0.0))
        self.lam = hp.get("information_gain_weight", 0.06344)
        self.beta = hp.get("information_gain_beta", 2.115)
        self.rho = hp.get("routing_randomization", 0.491)
        t = hp.get("temperature", {})
        self.t0, self.tdecay, self.tmin = t.get("initial", 25.0), t.get("decay", 0.999848), \
            t.get("min", 0.01)
        self.step_no = 0
        self.gen = torch.Generator().manual_seed(seed)

    def step(self, x, y, warmup):
        """One SGD step on the batch (x, y). Returns the loss."""
        net, arch = self.net, self.arch
        ncls = len(arch.classes)
        T = max(self.t0 * self.tdecay ** (self.step_no + 1), self.tmin)
        h, lab = x, y
        cur = torch.zeros(x.shape[0], dtype=torch.long)   # expert of each row at this layer
        ig = 0.0
        for l, L in enumerate(arch.layers):
            if warmup or L.experts == 1:
                # every row to every expert (one expert: the same thing)
                outs = [net.experts[l][e](h) for e in range(L.experts)]
                h = torch.cat(outs) if L.experts > 1 else outs[0]
                leaf = torch.arange(L.experts).repeat_interleave(lab.shape[0])
                lab = lab.repeat(L.experts)
            else:
                order = torch.argsort(cur, stable=True)
                h, lab, cur = h[order], lab[order], cur[order]
                counts = torch.bincount(cur, minlength=L.experts).tolist()
                outs, start = [], 0
                for e, c in enumerate(counts):
                    if c:
                        outs.append(net.experts[l][e](h[start:start + c]))
                    start += c
                h = torch.cat(outs)
                leaf = cur
            if L.router is not None:
                a = net.routers[l](h)
                ig = ig + information_gain(F.softmax(a / T, dim=1), lab, ncls, self.beta)
                if not warmup:
                    cur = a.detach().argmax(1)
                    m = cur.shape[0]
                    k = int(round(self.rho * m))
                    pick = torch.randperm(m, generator=self.gen)[:k]
                    cur[pick] = torch.randint(0, L.router.K, (k,), generator=self.gen)
        logits = h.reshape(h.shape[0], -1)
        ce = 0.0
        for j in range(arch.layers[-1].experts):
            sel = (leaf == j).nonzero().flatten()
            if sel.numel():
                ce = ce + F.cross_entropy(logits[sel], lab[sel])
        loss = ce - self.lam * ig
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step_no += 1
        return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config",
                    help="architecture + training config JSON (models/fashion_mnist.json)")
    ap.add_argument("--mode", default="warmup,routed", help="comma list of warmup, routed")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="measuring time per mode after the warm-up steps (default 10)")
    ap.add_argument("--batch", type=int, default=0,
                    help="batch size (default: the config's batch_size, else 125)")
    ap.add_argument("--train-samples", type=int, default=6000,
                    help="first N training images to cycle through (default 6000)")
    ap.add_argument("--warmup-steps", type=int, default=2,
                    help="untimed steps before measuring each mode (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    modes = [m for m in a.mode.split(",") if m]
    for m in modes:
        if m not in ("warmup", "routed"):
            ap.error("unknown mode %r (warmup, routed)" % m)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)          # dropout masks
    rows = []
    try:
        probe = Trainer(a.config, a.seed)
        x, y = check_forward.load_images(probe.arch, a.train_samples, cigt_format.TRAIN_IMAGES,
                                         cigt_format.TRAIN_LABELS)
    except (cigt_format.FormatError, OSError, ValueError) as e:
        print("torch_train: %s" % e, file=sys.stderr)
        return 2
    y = torch.tensor(y, dtype=torch.long)
    batch = a.batch or probe.hp.get("batch_size", 125)
    nb = x.shape[0] // batch
    if nb < 1:
        print("torch_train: --train-samples %d is less than one batch of %d"
              % (x.shape[0], batch), file=sys.stderr)
        return 2
    for mode in modes:
        tr = probe if mode == modes[0] else Trainer(a.config, a.seed)
        perm = torch.randperm(nb * batch, generator=tr.gen)
        i = 0

        def batch_at(i):
            idx = perm[(i % nb) * batch:(i % nb + 1) * batch]
            return x[idx], y[idx]

        first = None
        for _ in range(max(a.warmup_steps, 1)):    # untimed (allocator, first-call costs)
            loss = tr.step(*batch_at(i), warmup=(mode == "warmup"))
            first = loss if first is None else first
            i += 1
        steps, t0 = 0, time.perf_counter()
        while True:
            last = tr.step(*batch_at(i), warmup=(mode == "warmup"))
            i += 1
            steps += 1
            t = time.perf_counter() - t0
            if t >= a.seconds:
                break
        rows.append({"mode": mode, "steps": steps, "samples_per_second": steps * batch / t,
                     "seconds": t, "loss_first": first, "loss_last": last})
    print(json.dumps({"torch_version": torch.__version__, "threads": a.threads, "batch": batch,
                      "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
