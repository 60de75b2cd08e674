#!/usr/bin/python3
"""check_multipath.py -- independent PyTorch reference of multipath routing and escalation.

Written from proto/model-format.md section 6 alone (never from the C sources), on top of the
torch trellis of check_forward.py. For an operating point of a model file (or explicit
thresholds) it expands every test image into its tree of opened paths (argmax expert plus every
expert whose routing probability softmax(a) reaches the router's threshold, at most
floor(1.0001 / threshold) of them), averages the leaves' softmax posteriors, escalates to the
second model found beside the file (sha256 checked) when the top probability is below the
point's confidence, counts the MACs of everything that ran, and compares with the C engine's dump
(`cigt eval MODEL --compute NAME --limit N --dump FILE`): classes, argmax route, the set of paths,
MACs, escalation must be identical for every sample and posteriors within 1e-5. A difference is
excused only when the reference puts the deciding quantity within 1e-5 of its threshold (a
routing probability against tau, a top probability against c, or a posterior tie), and reported.

  check_multipath.py MODEL --dump FILE (--compute NAME | --thresholds T,...) [--limit N]

Exit status: 0 all equal, 1 mismatches, 2 bad input or usage.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402
from cigt_format import FormatError  # noqa: E402
from check_forward import Trellis, argmax_lowest, load_images, read_dump  # noqa: E402

NEAR = 1e-5
PROB_TOL = 1e-5


def fan_limit(tau, k):
    if not tau > 0:
        return k
    return max(1, min(k, int(math.floor(1.0001 / tau))))


@torch.no_grad()
def multipath(net, x, thresholds):
    """Per sample: (posterior, class, argmax route, set of paths, MACs, nearest |p - tau|)."""
    arch = net.arch
    n = x.shape[0]
    samp = list(range(n))                # sample of each row
    path = [(0,) for _ in range(n)]      # experts so far of each row
    main = [True] * n                    # row on the argmax path
    cur = torch.zeros(n, dtype=torch.long)
    macs = [0] * n
    near = [math.inf] * n
    route = [[0] for _ in range(n)]
    h = x
    for l, L in enumerate(arch.layers):
        rows = len(samp)
        out = torch.empty((rows,) + tuple(L.out_shape), dtype=torch.float32)
        for e in range(L.experts):
            idx = (cur == e).nonzero().flatten()
            if idx.numel():
                out.index_copy_(0, idx, net.experts[l][e](h.index_select(0, idx)))
        for r in range(rows):
            macs[samp[r]] += L.expert_macs
        h = out
        if L.router is None:
            break
        a = net.routers[l](h)
        p = torch.softmax(a, dim=1)
        top = argmax_lowest(a)
        tau = thresholds[l]
        limit = fan_limit(tau, L.router.K)
        parent, nsamp, npath, nmain, ncur = [], [], [], [], []
        for r in range(rows):
            s = samp[r]
            macs[s] += L.router.macs
            t = int(top[r])
            opened = [t]
            for k in range(L.router.K):
                if k == t:
                    continue
                pk = float(p[r, k])
                near[s] = min(near[s], abs(pk - tau))
                if pk >= tau and len(opened) < limit:
                    opened.append(k)
            if main[r]:
                route[s].append(t)
            for k in sorted(opened):
                parent.append(r)
                nsamp.append(s)
                npath.append(path[r] + (k,))
                nmain.append(main[r] and k == t)
                ncur.append(k)
        h = h.index_select(0, torch.tensor(parent, dtype=torch.long))
        samp, path, main = nsamp, npath, nmain
        cur = torch.tensor(ncur, dtype=torch.long)
    logits = h.reshape(len(samp), -1)
    probs = torch.softmax(logits, dim=1)
    K = logits.shape[1]
    acc = torch.zeros(n, K, dtype=torch.float32)
    count = [0] * n
    cls = [0] * n
    paths = [set() for _ in range(n)]
    for r, s in enumerate(samp):
        acc[s] += probs[r]
        count[s] += 1
        paths[s].add("-".join(str(v) for v in path[r]))
        if main[r]:
            cls[s] = int(argmax_lowest(logits[r:r + 1])[0])
    res = []
    for s in range(n):
        post = acc[s] / count[s]
        if count[s] > 1:
            cls[s] = int(argmax_lowest(post.unsqueeze(0))[0])
        res.append({"post": post, "cls": cls[s], "route": route[s], "paths": paths[s],
                    "macs": macs[s], "near": near[s]})
    return res


def load_second(model_path, point):
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)),
                        point["second"] + ".safetensors")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != point["second_sha256"]:
        raise FormatError("%s: sha256 %s, the point expects %s" % (path, digest,
                                                                  point["second_sha256"]))
    return cigt_format.read_model(path)


def gap2(v):
    top = torch.topk(v, 2).values
    return float(top[0] - top[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--dump", required=True)
    ap.add_argument("--compute")
    ap.add_argument("--thresholds")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--show", type=int, default=10)
    a = ap.parse_args()
    try:
        M = cigt_format.read_model(a.model)
        nr = len(M.arch.layers) - 1
        point = {"thresholds": [1.0] * nr, "confidence": 0.0, "second": None}
        if a.compute:
            found = [p for p in M.points if p["name"] == a.compute]
            if not found:
                raise FormatError("no operating point %r" % a.compute)
            point = found[0]
        elif a.thresholds:
            point["thresholds"] = [float(v) for v in a.thresholds.split(",")]
            if len(point["thresholds"]) != nr:
                raise FormatError("--thresholds: expected %d values" % nr)
        x, ys = load_images(M.arch, a.limit)
        dump = read_dump(a.dump)
        second = load_second(a.model, point) if point["confidence"] > 0 else None
    except (FormatError, OSError, ValueError) as e:
        print("check_multipath: %s" % e, file=sys.stderr)
        return 2
    # float32 thresholds, as the engine holds them
    taus = [float(torch.tensor(t, dtype=torch.float32)) for t in point["thresholds"]]
    conf = float(torch.tensor(point["confidence"], dtype=torch.float32))
    ref = multipath(Trellis(M), x, taus)
    esc = [False] * len(ref)
    near_c = [math.inf] * len(ref)
    if second is not None:
        s_logits, s_routes, _ = Trellis(second)(x)
        s_probs = torch.softmax(s_logits, dim=1)
        for i, r in enumerate(ref):
            topp = float(r["post"].max())
            near_c[i] = abs(topp - conf)
            if topp < conf:
                esc[i] = True
                r["post"] = 0.5 * (r["post"] + s_probs[i])
                r["cls"] = int(argmax_lowest(r["post"].unsqueeze(0))[0])
                r["macs"] += second.arch.route_macs([int(v) for v in s_routes[i]])
    if len(dump) != len(ref):
        print("FAIL: dump has %d records, reference %d" % (len(dump), len(ref)))
        return 1
    bad, excused, npaths_total, nesc = [], [], 0, 0
    for i, (d, r) in enumerate(zip(dump, ref)):
        msgs = []
        if d["class"] != r["cls"]:
            msgs.append("class C %d ref %d" % (d["class"], r["cls"]))
        if d["route"] != r["route"]:
            msgs.append("route C %s ref %s" % (d["route"], r["route"]))
        if set(d.get("paths", [])) != r["paths"]:
            msgs.append("paths C %s ref %s" % (sorted(d.get("paths", [])), sorted(r["paths"])))
        if d.get("macs") != r["macs"]:
            msgs.append("macs C %s ref %d" % (d.get("macs"), r["macs"]))
        if d.get("escalated") != esc[i]:
            msgs.append("escalated C %s ref %s" % (d.get("escalated"), esc[i]))
        dp = d.get("probs", [])
        if len(dp) != r["post"].numel() or max(
                abs(u - float(v)) for u, v in zip(dp, r["post"])) > PROB_TOL:
            msgs.append("posterior differs by more than %g" % PROB_TOL)
        npaths_total += len(r["paths"])
        nesc += esc[i]
        if msgs:
            why = [w for w, c in (("routing probability %.2g from tau" % r["near"],
                                   r["near"] < NEAR),
                                  ("top probability %.2g from c" % near_c[i], near_c[i] < NEAR),
                                  ("posterior near-tie", gap2(r["post"]) < NEAR)) if c]
            (excused if why else bad).append((i, "; ".join(msgs) + (
                " (" + ", ".join(why) + ")" if why else "")))
    n = len(ref)
    acc = sum(1 for i in range(n) if ref[i]["cls"] == ys[i])
    print("multipath reference: %d samples, thresholds %s, confidence %g%s: %.2f paths per "
          "sample, %d escalated, mean MACs %.0f, accuracy %.2f%%; %d differ, %d near-ties"
          % (n, point["thresholds"], point["confidence"],
             " -> %s" % point["second"] if second is not None else "", npaths_total / n, nesc,
             sum(r["macs"] for r in ref) / n, 100.0 * acc / n, len(bad), len(excused)))
    for i, text in excused[:a.show]:
        print("  near-tie sample %d: %s" % (i, text))
    for i, text in bad[:a.show]:
        print("  FAIL sample %d: %s" % (i, text))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
