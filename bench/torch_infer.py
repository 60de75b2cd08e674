#!/usr/bin/python3
"""torch_infer.py -- PyTorch inference throughput on a cigt model file, the peer of `cigt bench`.

The model is read and built by the independent reference in tests/reference/ (cigt_format.py
reads the file, check_forward.Trellis is the eval-mode torch trellis), so PyTorch runs exactly the
weights the C engine runs. Two executions:

  routed  check_forward.Trellis.forward: gather-scatter, each expert runs once on the samples
          routed to it (index_select / index_copy_), argmax at every router;
  masked  every expert of every layer on every sample, then each sample keeps the output of the
          expert its router chose (what a framework without routing does; same predictions).

Inputs are the Fashion-MNIST test images scaled as the model says, taken batch after batch in
order (as `cigt bench` does). Each (mode, batch) warms up, then runs whole batches until
--seconds have passed; GFLOPS = 2 x MACs executed per second (routers included, as cigt counts).

  torch_infer.py MODEL [--mode routed,masked] [--batch 1,8,64,256] [--threads 1,2]
                 [--seconds S] [--check]

Lists run every combination (threads outermost, set with torch.set_num_threads) in one process.
Prints one JSON object: {"torch_version", "model", "rows": [{mode, batch, threads,
samples_per_second, gflops, macs_per_sample, seconds, calls}]}.
Run with Debian's /usr/bin/python3 (python3-torch 1.13).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "reference"))

import torch  # noqa: E402

import cigt_format  # noqa: E402
import check_forward  # noqa: E402  (sets 2 threads on import; main() sets the asked count)


@torch.no_grad()
def masked_forward(net, x):
    """Every expert on every sample, then select by route. Returns (logits, routes)."""
    n = x.shape[0]
    rows = torch.arange(n)
    cur = torch.zeros(n, dtype=torch.long)
    routes = []
    h = x
    for l, L in enumerate(net.arch.layers):
        outs = torch.stack([net.experts[l][e](h) for e in range(L.experts)])
        h = outs[cur, rows] if L.experts > 1 else outs[0]
        routes.append(cur)
        if L.router is not None:
            cur = check_forward.argmax_lowest(net.routers[l](h))
    return h.reshape(n, -1), torch.stack(routes, 1)


def measure(fn, x, batch, seconds):
    """Runs fn on consecutive batches: a warm-up of max(1 call, 10% of the time), then whole
    batches until `seconds` have passed. Returns (samples/s, measured seconds, calls)."""
    n = x.shape[0]
    pos = 0

    def next_batch():
        nonlocal pos
        if pos + batch > n:
            pos = 0
        b = x[pos:pos + batch]
        pos += batch
        return b

    t0 = time.perf_counter()
    calls = 0
    while calls < 1 or time.perf_counter() - t0 < 0.1 * seconds:
        fn(next_batch())
        calls += 1
    calls = 0
    t0 = time.perf_counter()
    while True:
        fn(next_batch())
        calls += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            break
    return calls * batch / t, t, calls


def ints(s):
    return [int(v) for v in s.split(",") if v]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="cigt-1 model file")
    ap.add_argument("--mode", default="routed,masked",
                    help="comma list of routed, masked (default both)")
    ap.add_argument("--batch", default="1,8,64,256", type=ints,
                    help="comma list of batch sizes (default 1,8,64,256)")
    ap.add_argument("--threads", default="2", type=ints,
                    help="comma list of torch.set_num_threads values (default 2)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="measuring time per row after the warm-up (default 2)")
    ap.add_argument("--images", type=int, default=10000, help="test images to cycle through")
    ap.add_argument("--check", action="store_true",
                    help="first check that routed and masked agree on 256 images")
    a = ap.parse_args()
    modes = [m for m in a.mode.split(",") if m]
    for m in modes:
        if m not in ("routed", "masked"):
            ap.error("unknown mode %r (routed, masked)" % m)

    try:
        M = cigt_format.read_model(a.model)
        x, _ = check_forward.load_images(M.arch, max(a.images, max(a.batch)))
    except (cigt_format.FormatError, OSError) as e:
        print("torch_infer: %s" % e, file=sys.stderr)
        return 2
    net = check_forward.Trellis(M)
    net.eval()
    arch = M.arch

    def routed(b):
        return net(b)

    def masked(b):
        return masked_forward(net, b)

    if a.check:
        lr, rr, _ = net(x[:256])
        lm, rm = masked_forward(net, x[:256])
        if not torch.equal(rr, rm) or not torch.allclose(lr, lm, atol=1e-4, rtol=1e-4):
            print("torch_infer: routed and masked executions disagree", file=sys.stderr)
            return 1

    # MACs per sample: the routed mean over the routes the test images take (every path of the
    # reference architecture has the same MACs, but other trellises need not).
    with torch.no_grad():
        _, routes, _ = net(x[:256])
    route_macs = sum(arch.route_macs(r) for r in routes.tolist()) / routes.shape[0]
    dense_macs = arch.dense_macs()

    rows = []
    for th in a.threads:
        torch.set_num_threads(th)
        for mode in modes:
            fn = routed if mode == "routed" else masked
            macs = route_macs if mode == "routed" else dense_macs
            for b in a.batch:
                sps, secs, calls = measure(fn, x, b, a.seconds)
                rows.append({"mode": mode, "batch": b, "threads": th,
                             "samples_per_second": sps, "gflops": 2.0 * macs * sps * 1e-9,
                             "macs_per_sample": macs, "seconds": secs, "calls": calls})
    print(json.dumps({"torch_version": torch.__version__, "model": arch.name, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
