#!/usr/bin/python3
"""torch_trellis.py -- PyTorch inference throughput of any cigt model file through the cigt.torch
module (python/cigt), the peer of `cigt bench` in bench/run's scale and precision sections.

cigt.torch.load builds the file's network (residual blocks, router op chains and all) as an
nn.Module in eval mode holding the file's weights, so PyTorch runs what the engine runs. Two
executions:

  routed  Trellis.forward with argmax routing: gather-scatter, each expert runs once on the
          rows routed to it (index by route, concatenate);
  dense   every expert of every layer on every sample, then each sample keeps the output of the
          expert its router chose (what `cigt bench --dense` does; same predictions).

Precisions (--precision, a comma list): fp32, and bf16 = the same module and float32 inputs
under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's own mixed precision (convs and
linears in bf16 through oneDNN, the rest as autocast decides) -- the peer of
`cigt bench --backend onednn --precision bf16`.

Inputs: DATA is an IDX directory (its t10k images) or an image folder (ROOT/<class>/*.png, as
`cigt bench --data` reads it), scaled by the model's input rule (Trellis.preprocess), taken
batch after batch in order. Timing is torch_infer.py's: a warm-up of max(1 call, 10% of the
time), then whole batches until --seconds have passed. GFLOPS = 2 x MACs executed per second,
with the MACs per sample given (bench/run passes `cigt info --json`'s path_macs and dense_macs,
the figures `cigt bench` uses).

  torch_trellis.py MODEL --macs ROUTED,DENSE [--data DIR] [--mode routed,dense]
                   [--precision fp32,bf16] [--batch 1,8,64,256] [--threads 1,2]
                   [--seconds S] [--check]
  torch_trellis.py --jobs FILE [--mode ...] [--precision ...] [--threads ...] [--check]

--jobs runs several models in one process (bench/run's scale section: one torch import instead
of four; each row's own command is the MODEL form). Prints one JSON object: {"torch_version",
"cpu_capability" (the ISA PyTorch's own kernels were built for), "rows": [{model, mode,
precision, batch, threads, samples_per_second, gflops, macs_per_sample, seconds, calls}]}, a
model's rows threads outermost, then precision. --check compares routed and dense in fp32 only
(bf16 rounding may send a sample down another route).
"""

import argparse
import contextlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import torch  # noqa: E402

import cigt.torch as ct  # noqa: E402
from cigt import data as cdata  # noqa: E402
from cigt import format as cfmt  # noqa: E402
from torch_infer import ints, measure  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"


@torch.no_grad()
def dense_forward(m, x):
    """Every expert on every sample, then select by route. Returns (logits, routes)."""
    n = x.shape[0]
    rows = torch.arange(n)
    cur = torch.zeros(n, dtype=torch.long)
    routes = []
    h = x
    for l, layer in enumerate(m.layers):
        outs = [e(h, False, False) for e in layer.experts]
        h = torch.stack(outs)[cur, rows] if len(outs) > 1 else outs[0]
        routes.append(cur)
        if l < len(m.routers):
            cur = m.routers[l](h, False).argmax(1)
    return h.reshape(n, -1), torch.stack(routes, 1)


def load_inputs(m, directory, limit):
    """The first `limit` inputs of an IDX directory or an image folder, scaled for m."""
    c, h, w = m.arch["input"]
    if any(f.startswith("t10k-images") for f in os.listdir(directory)):
        px, _ = cdata.load_idx_dir(directory, "t10k", limit)
    else:
        px, _, _ = cdata.load_image_folder(directory, c, h, w, classes=m.classes)
        px = px[:limit]
    with torch.no_grad():
        return m.preprocess(px).contiguous()


def precision_context(precision):
    """The context a row runs in: autocast to bf16 on the CPU, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_capability():
    """The 'CPU capability usage' line of torch.__config__.show() (e.g. AVX2), or None."""
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return None


def run_model(model, data, macs, modes, batches, threads, seconds, images, check,
              precisions=("fp32",)):
    """Rows of one model file (see the top of this file); raises ValueError on a bad input."""
    m = ct.load(model)
    x = load_inputs(m, data, max(images, max(batches)))
    if x.shape[0] < max(batches):
        raise ValueError("%s: %d inputs, fewer than a batch of %d"
                         % (data, x.shape[0], max(batches)))
    if check:
        torch.set_num_threads(threads[0])
        k = min(64, max(8, max(batches)))
        with torch.no_grad():
            lr, rr = m(x[:k]).single()
            ld, rd = dense_forward(m, x[:k])
        if not torch.equal(rr, rd) or not torch.allclose(lr, ld, atol=1e-3, rtol=1e-3):
            raise ValueError("%s: routed and dense executions disagree" % model)
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        for prec in precisions:
            for mode in modes:
                fn = (lambda b: m(b)) if mode == "routed" else (lambda b: dense_forward(m, b))
                mc = macs[0] if mode == "routed" else macs[1]
                for b in batches:
                    with torch.no_grad(), precision_context(prec):
                        sps, secs, calls = measure(fn, x, b, seconds)
                    rows.append({"model": model, "mode": mode, "precision": prec, "batch": b,
                                 "threads": th, "samples_per_second": sps,
                                 "gflops": 2.0 * mc * sps * 1e-9, "macs_per_sample": mc,
                                 "seconds": secs, "calls": calls})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="cigt-1 model file")
    ap.add_argument("--data", default=FASHION,
                    help="IDX directory or image folder (default %s)" % FASHION)
    ap.add_argument("--mode", default="routed,dense",
                    help="comma list of routed, dense (default both)")
    ap.add_argument("--precision", default="fp32",
                    help="comma list of fp32, bf16 (torch.autocast to bfloat16; default fp32)")
    ap.add_argument("--batch", default="1,8,64,256", type=ints,
                    help="comma list of batch sizes (default 1,8,64,256)")
    ap.add_argument("--threads", default="2", type=ints,
                    help="comma list of torch.set_num_threads values (default 2)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="measuring time per row after the warm-up (default 2)")
    ap.add_argument("--images", type=int, default=10000, help="inputs to cycle through")
    ap.add_argument("--check", action="store_true",
                    help="first check that routed and dense agree (on the largest batch's "
                         "inputs, 8 to 64)")
    ap.add_argument("--macs",
                    help="MACs per sample as ROUTED,DENSE (cigt info's path_macs,dense_macs)")
    ap.add_argument("--jobs", help="JSON list of {model, data, macs: [R, D], batch: [...], "
                                   "seconds} run in this one process instead of MODEL (one "
                                   "torch import for several models)")
    a = ap.parse_args()
    modes = [md for md in a.mode.split(",") if md]
    for md in modes:
        if md not in ("routed", "dense"):
            ap.error("unknown mode %r (routed, dense)" % md)
    precisions = [p for p in a.precision.split(",") if p]
    for p in precisions:
        if p not in ("fp32", "bf16"):
            ap.error("unknown precision %r (fp32, bf16)" % p)
    if a.jobs:
        with open(a.jobs) as f:
            jobs = json.load(f)
    elif a.model and a.macs:
        macs = [float(v) for v in a.macs.split(",")]
        if len(macs) != 2:
            ap.error("--macs takes ROUTED,DENSE")
        jobs = [{"model": a.model, "data": a.data, "macs": macs, "batch": a.batch,
                 "seconds": a.seconds}]
    else:
        ap.error("give MODEL --macs ROUTED,DENSE, or --jobs FILE")
    rows = []
    try:
        for j in jobs:
            rows += run_model(j["model"], j.get("data", FASHION), j["macs"], modes, j["batch"],
                              a.threads, j["seconds"], a.images, a.check, precisions)
    except (cfmt.FormatError, OSError, ValueError) as e:
        print("torch_trellis: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps({"torch_version": torch.__version__, "cpu_capability": cpu_capability(),
                      "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
