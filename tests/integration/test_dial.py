#!/usr/bin/python3
"""Integration tests for the compute dial in cigtd (issue 12): per-request operating points
("compute") and MAC budgets ("max_macs") in the native API (body and query) and as OIP request
parameters, the server default (--compute), second models loaded with the version, the answer
fields (paths, escalated, compute), every error, and the metrics.

The model is the shipped models/fashion_mnist.safetensors with the operating points `cigt tune`
wrote into it (the escalating ones load their second model, models/thick.safetensors, from
beside it). Nothing here knows which points a tuning chose: the test reads them with
`cigt info MODEL --json` and picks one point of each kind (pick_points), so a retrained and
re-tuned model of the same architecture passes. When tune's front lacks a kind (no multipath
point, say), the test serves a copy of the model with a point of that kind added
(every_kind). Every answer is compared with
`cigt eval MODEL --compute NAME --dump` on the same test images: class, argmax route, the paths
that ran, escalation, MACs and probabilities; GET /v1/model is compared point by point with
`cigt info --json`, and each point's worst_macs with the worst case the architecture and the
thresholds imply (proto/model-format.md section 6).

CIGT_TEST_MODELS=DIR takes fashion_mnist.safetensors, thin.safetensors and the second models
from DIR instead of models/ (to run the test against another tuning of the model).
Run one group: test_dial.py --group answers|budgets|errors|loading|page
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check, metric  # noqa: E402

NIMG = 64
MODELS = os.environ.get("CIGT_TEST_MODELS") or os.path.join(T.SRCDIR, "models")
# The reference architecture's MACs (DESIGN.md section 2): per layer the MACs of one expert, of
# its router, and the next layer's expert count. All paths open cost 11,442,944 MACs
# (proto/model-format.md section 6).
LAYER_MACS = [(627200, 4352, 2), (5017600, 4608, 4), (95872, 0, 0)]
ALL_PATHS_MACS = 11442944
# The kinds of operating point the test compares image by image with cigt eval, in this order:
# the single path, multipath (some routers open more experts), every path, escalation to a
# second model, and multipath with escalation.
KINDS = ["single", "multi", "all-paths", "escalate", "mix"]
# The escalating point: the one whose confidence is closest to this (about one image in ten
# escalates there on the shipped model, so the 64 test images include some).
ESCALATE_NEAR = 0.8


class MissingKind(Exception):
    pass


def model_path():
    return os.path.join(MODELS, "fashion_mnist.safetensors")


_INFO = {}


def cigt_info(path):
    """`cigt info PATH --json`, read once per file."""
    if path not in _INFO:
        out = subprocess.run([T.CIGT, "info", path, "--json"], check=True,
                             capture_output=True, text=True).stdout
        _INFO[path] = json.loads(out)
    return _INFO[path]


def file_points():
    """The model's operating points as `cigt info --json` reads them from the file."""
    pts = cigt_info(model_path()).get("operating_points") or []
    if not pts:
        raise MissingKind("%s has no operating points (cigt tune writes them)" % model_path())
    return pts


def kind(p):
    """A point's kind from its fields, as `cigt tune` names them: single, multi-T1-T2,
    all-paths, escalate-C, mix-T1-T2-cC."""
    th, esc = p["thresholds"], bool(p.get("second"))
    if all(t >= 1 for t in th):
        return "escalate" if esc else "single"
    if not esc and all(t == 0 for t in th):
        return "all-paths"
    return "mix" if esc else "multi"


def escalate_order(p):
    """Escalating points, closest confidence to ESCALATE_NEAR first (the higher on a tie)."""
    return (abs(p["confidence"] - ESCALATE_NEAR), -p["confidence"])


def pick_points(need=KINDS):
    """{kind: name} for the kinds in need: the single path; the costliest multipath point (by
    mean MACs: the one where most images open several paths); all paths; the escalating point
    whose confidence is closest to ESCALATE_NEAR (the higher one on a tie); the costliest mixed
    point. Raises MissingKind naming every needed kind the model lacks."""
    by = {k: [p for p in file_points() if kind(p) == k] for k in KINDS}
    missing = [k for k in need if not by[k]]
    if missing:
        raise MissingKind("%s has no operating point of kind %s (its points: %s); this test "
                          "needs one of each of %s" % (model_path(), ", ".join(missing),
                                                       ", ".join(p["name"] for p in
                                                                 file_points()),
                                                       ", ".join(need)))
    costliest = lambda ps: max(ps, key=lambda p: p["mean_macs"])  # noqa: E731
    pick = {"single": lambda ps: ps[0], "multi": costliest, "all-paths": lambda ps: ps[0],
            "escalate": lambda ps: sorted(ps, key=escalate_order)[0],
            "mix": costliest}
    return {k: pick[k](by[k])["name"] for k in need}


def every_kind(work):
    """MODELS when the model's point table has a point of every kind in KINDS; otherwise a copy
    of the model in WORK/models whose table gains one point of each missing kind, appended
    after the tuned ones and named added-KIND. Which points `cigt tune` keeps on its Pareto
    front depends on the trained weights; the daemon must serve any valid point, and that is
    what this test checks. An added point's val_accuracy is below every tuned point's (so a MAC
    budget prefers it only when nothing else fits) and its mean_macs is its worst case (the
    field is metadata). Escalating kinds use the second model the tuned points name, or
    thick.safetensors beside the file; without one, pick_points fails naming the kind."""
    pts = cigt_info(model_path()).get("operating_points") or []
    have = {kind(p) for p in pts}
    missing = [k for k in KINDS if k not in have]
    if not missing:
        return MODELS
    second = next((p["second"] for p in pts if p.get("second")), "thick")
    sfile = os.path.join(MODELS, second + ".safetensors")
    shapes = {"single": {"thresholds": [1, 1]}, "multi": {"thresholds": [0.3, 0.3]},
              "all-paths": {"thresholds": [0, 0]}}
    if os.path.exists(sfile):
        with open(sfile, "rb") as f:
            esc = {"second": second, "second_sha256": hashlib.sha256(f.read()).hexdigest()}
        shapes["escalate"] = dict(esc, thresholds=[1, 1], confidence=ESCALATE_NEAR)
        shapes["mix"] = dict(esc, thresholds=[0.3, 1], confidence=0.9)
    missing = [k for k in missing if k in shapes]
    if not missing:
        return MODELS
    low = min([p["val_accuracy"] for p in pts] + [1.0])
    added = []
    for i, k in enumerate(missing):
        q = dict(shapes[k], name="added-" + k,
                 val_accuracy=round(max(0.0, low - 0.001 * (i + 1)), 6))
        q["mean_macs"] = worst_macs(q)
        added.append(q)
    out = os.path.join(work, "models")
    os.makedirs(out, exist_ok=True)
    with open(model_path(), "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header["__metadata__"]
    meta["operating_points"] = json.dumps(json.loads(meta.get("operating_points", "[]")) + added)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(out, "fashion_mnist.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + buf[8 + n:])
    for other in {"thin", second} | {p["second"] for p in pts if p.get("second")}:
        if os.path.exists(os.path.join(MODELS, other + ".safetensors")):
            shutil.copy(os.path.join(MODELS, other + ".safetensors"), out)
    print("%s has no point of kind %s: testing a copy with %s added"
          % (model_path(), ", ".join(missing), ", ".join(q["name"] for q in added)))
    return out


def escalate_points():
    """The escalating points, closest to ESCALATE_NEAR first (as pick_points chooses)."""
    return [p["name"] for p in sorted((p for p in file_points() if kind(p) == "escalate"),
                                      key=escalate_order)]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def worst_macs(p):
    """The most a sample can run at point p (proto/model-format.md section 6), worked out from
    the architecture's MACs, not by cigt: every router opens m = min(K, floor(1.0001 / t))
    experts (K for t = 0; t as float32), every opened copy runs its expert and router, and an
    escalating point adds its second model's path (from `cigt info SECOND --json`)."""
    rows, macs = 1, 0
    for l, (expert, router, k) in enumerate(LAYER_MACS):
        macs += rows * expert
        if k:
            t = f32(p["thresholds"][l])
            m = k if not t > 0 else min(k, max(1, int(math.floor(1.0001 / t))))
            macs += rows * router
            rows *= m
    if p.get("second") and p.get("confidence", 0) > 0:
        second = os.path.join(os.path.dirname(model_path()), p["second"] + ".safetensors")
        macs += cigt_info(second)["path_macs"]
    return macs


def dump(env, point, limit=NIMG):
    """cigt eval --compute point --dump on the first limit test images, one dict per image."""
    f = os.path.join(env["work"], "%s-%d.dump" % (point, limit))
    args = [T.CIGT, "eval", model_path(), "--limit", str(limit), "--dump", f, "--threads", "1"]
    if point != "(single)":
        args += ["--compute", point]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    out = []
    with open(f) as fh:
        for line in fh:
            d = json.loads(line)
            d["paths"] = [[int(x) for x in p.split("-")] for p in d["paths"]]
            out.append(d)
    return out


def same(got, ref, what):
    """A v1 sample (or the same fields from OIP) against a cigt eval --dump line."""
    ok = check(got["class"] == ref["class"] and got["route"] == ref["route"]
               and got["paths"] == ref["paths"] and got["escalated"] == ref["escalated"]
               and got["macs"] == ref["macs"],
               "%s: class/route/paths/escalated/macs %s/%s/%s/%s/%s, cigt eval says "
               "%s/%s/%s/%s/%s" % (what, got["class"], got["route"], got["paths"],
                                   got["escalated"], got["macs"], ref["class"], ref["route"],
                                   ref["paths"], ref["escalated"], ref["macs"]))
    err = max(abs(a - b) for a, b in zip(got["probabilities"], ref["probs"]))
    return ok and check(err < 1e-5, "%s: probabilities differ by %g" % (what, err))


def v1(d, imgs, query="", **keys):
    body = dict(keys, images=[list(im) for im in imgs])
    st, _, raw = d.post_json("/v1/classify" + query, body)
    return st, json.loads(raw)


def v2(d, imgs, params=None, outputs=None):
    body = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [len(imgs), 1, 28, 28],
                        "data": [p for im in imgs for p in im]}]}
    if params is not None:
        body["parameters"] = params
    if outputs is not None:
        body["outputs"] = outputs
    st, _, raw = d.post_json("/v2/models/fashion_mnist/infer", body)
    return st, json.loads(raw)


def v2_samples(j, n):
    outs = {o["name"]: o for o in j["outputs"]}
    P = outs["paths"]["shape"][1]
    res = []
    for i in range(n):
        mask = outs["paths"]["data"][P * i:P * (i + 1)]
        paths = [[r // 8, r // 4 % 2, r % 4] for r in range(P) if mask[r]]
        res.append({"class": outs["class"]["data"][i],
                    "route": outs["route"]["data"][3 * i:3 * i + 3], "paths": paths,
                    "escalated": outs["escalated"]["data"][i],
                    "macs": outs["macs"]["data"][i],
                    "probabilities": outs["probabilities"]["data"][10 * i:10 * i + 10]})
    return res


def error_of(j):
    return j.get("error", "") if isinstance(j, dict) else ""


# ---------------------------------------------------------------------------------- groups

def same_point(got, ref, what):
    """A point of GET /v1/model against the same point from `cigt info --json` (the daemon
    prints thresholds and confidence with 7 digits, val_accuracy with 6, mean MACs rounded),
    and its worst_macs against worst_macs()."""
    want = worst_macs(ref)
    return check(got["name"] == ref["name"]
                 and len(got["thresholds"]) == len(ref["thresholds"])
                 and all(abs(a - b) <= 1e-6 for a, b in zip(got["thresholds"],
                                                             ref["thresholds"]))
                 and abs(got["confidence"] - ref.get("confidence", 0)) <= 1e-6
                 and got["second"] == ref.get("second")
                 and abs(got["val_accuracy"] - ref["val_accuracy"]) <= 1e-6
                 and abs(got["mean_macs"] - ref["mean_macs"]) <= 0.5
                 and got["worst_macs"] == want,
                 "%s: GET /v1/model says %s; cigt info says %s, worst case %d MACs"
                 % (what, got, {k: ref.get(k) for k in ("name", "thresholds", "confidence",
                                                         "second", "val_accuracy",
                                                         "mean_macs")}, want))


def group_answers(env):
    imgs = env["images"]
    P = pick_points()
    POINTS = [P[k] for k in KINDS]
    SINGLE, ALLP, ESC, MIX = P["single"], P["all-paths"], P["escalate"], P["mix"]
    print("points compared with cigt eval: %s" % ", ".join(POINTS))
    refs = {p: dump(env, p) for p in POINTS}
    fpts = file_points()
    d = T.Daemon(model_path(), "--max-delay-us", "20000")
    try:
        st, _, raw = d.request("GET", "/v1/model")
        info = json.loads(raw)
        names = [p["name"] for p in info["points"]]
        check(st == 200 and names == [p["name"] for p in fpts] and info["compute"] is None,
              "GET /v1/model lists the file's %d points in its order, no default (%s)"
              % (len(fpts), names))
        for got, ref in zip(info["points"], fpts):
            same_point(got, ref, "point %s" % ref["name"])
        # The architecture's own numbers, whatever the tuning: all paths open on every sample.
        allp = info["points"][names.index(ALLP)]
        check(allp["thresholds"] == [0, 0] and allp["mean_macs"] == ALL_PATHS_MACS
              and allp["worst_macs"] == ALL_PATHS_MACS and allp["second"] is None,
              "all-paths point metadata: %s" % allp)
        esc = info["points"][names.index(ESC)]
        check(esc["second"] is not None and esc["confidence"] > 0
              and os.path.exists(os.path.join(MODELS, esc["second"] + ".safetensors")),
              "escalating point %s names its second model, found beside the file" % ESC)
        # Without a dial: today's answer plus the new fields.
        st, j = v1(d, imgs[:8])
        check(st == 200, "v1 without a dial")
        for i, r in enumerate(j["results"]):
            same(r, refs[SINGLE][i], "default[%d]" % i)
            check(r["compute"] is None and r["paths"] == [r["route"]] and not r["escalated"]
                  and r["macs"] == T.PATH_MACS, "default[%d]: one path, no point" % i)
        # Every point, native batch form, against cigt eval.
        total = {"macs": 0, "esc": 0, "paths": {}}
        for p in POINTS:
            st, j = v1(d, imgs, compute=p)
            check(st == 200, "v1 compute=%s -> 200 (%s)" % (p, error_of(j)))
            for i, r in enumerate(j["results"]):
                same(r, refs[p][i], "v1 %s[%d]" % (p, i))
                check(r["compute"] == p, "v1 %s[%d] says its point" % (p, i))
                check(abs(r["compute_saved"] - (1 - r["macs"] / T.DENSE_MACS)) < 1e-4,
                      "compute_saved relative to dense MACs")
            check(j["macs"] == sum(r["macs"] for r in j["results"]), "batch macs is the sum")
        for p in POINTS:
            for r in refs[p]:
                total["macs"] += r["macs"]
                total["esc"] += r["escalated"]
                total["paths"][r["npaths"]] = total["paths"].get(r["npaths"], 0) + 1
        check(any(r["escalated"] for r in refs[ESC]), "some of the %d images escalate at %s"
              % (NIMG, ESC))
        check(all(len(r["paths"]) == 8 for r in refs[ALLP]), "all-paths runs 8 paths")
        # compute_saved below zero when a request buys more than dense.
        st, j = v1(d, imgs[:1], compute=ALLP)
        check(j["results"][0]["compute_saved"] < 0, "compute_saved goes below zero")
        # Single-image form and the query parameter; the body wins over the query.
        st, raw_h, raw = d.post_json("/v1/classify?compute=" + ALLP, {"image": list(imgs[3])})
        j = json.loads(raw)
        check(st == 200 and j["compute"] == ALLP, "query compute")
        same(j, refs[ALLP][3], "query compute[3]")
        st, _, raw = d.post_json("/v1/classify?compute=" + ALLP,
                                 {"image": list(imgs[4]), "compute": ESC})
        j = json.loads(raw)
        check(st == 200 and j["compute"] == ESC, "the body's compute wins")
        same(j, refs[ESC][4], "body over query[4]")
        st, _, raw = d.post_json("/v1/models/fashion_mnist/versions/1/classify?compute=" + MIX,
                                 {"image": list(imgs[5])})
        j = json.loads(raw)
        check(st == 200, "versioned classify with a query dial")
        same(j, refs[MIX][5], "versioned query[5]")
        # OIP: parameters, the paths and escalated outputs, the point in the answer.
        for p in (ESC, ALLP):
            st, j = v2(d, imgs[:16], {"compute": p})
            check(st == 200 and j.get("parameters") == {"compute": p}, "v2 compute=%s" % p)
            outs = {o["name"]: o for o in j["outputs"]}
            check(outs["paths"]["datatype"] == "BOOL" and outs["paths"]["shape"] == [16, 8]
                  and outs["escalated"]["shape"] == [16], "v2 paths/escalated shapes")
            for i, r in enumerate(v2_samples(j, 16)):
                same(r, refs[p][i], "v2 %s[%d]" % (p, i))
        st, j = v2(d, imgs[:2])
        check(st == 200 and "parameters" not in j, "v2 without a dial names no point")
        # Binary outputs of the new tensors: one byte per value.
        st, h, raw = d.request("POST", "/v2/models/fashion_mnist/infer", json.dumps(
            {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 1, 28, 28],
                         "data": list(imgs[0]) + list(imgs[1])}],
             "parameters": {"compute": ALLP},
             "outputs": [{"name": "paths", "parameters": {"binary_data": True}},
                         {"name": "escalated", "parameters": {"binary_data": True}}]}).encode(),
            {"Content-Type": "application/json"})
        hl = int(h.get("inference-header-content-length", -1))
        check(st == 200 and hl > 0 and raw[hl:] == bytes([1] * 16 + [0, 0]),
              "binary paths/escalated: %r" % raw[hl:])
        # Concurrent requests at different dials share batches: each still gets its own.
        errs = []
        nthreads, per_thread = 10, 6
        at = {p: per_thread * sum(POINTS[t % len(POINTS)] == p for t in range(nthreads))
              for p in POINTS}  # requests each point gets from the clients

        def client(t):
            p = POINTS[t % len(POINTS)]
            c = d.conn()
            for k in range(per_thread):
                i = (t * 7 + k) % NIMG
                st, _, raw = d.post_json("/v1/classify", {"image": list(imgs[i]), "compute": p},
                                         conn=c)
                r = json.loads(raw)
                if st != 200 or r["paths"] != refs[p][i]["paths"] or \
                        r["macs"] != refs[p][i]["macs"] or r["class"] != refs[p][i]["class"]:
                    errs.append((p, i, st, r))
                else:
                    total["macs"] += r["macs"]
                    total["esc"] += r["escalated"]
                    n = len(r["paths"])
                    total["paths"][n] = total["paths"].get(n, 0) + 1
            c.close()
        ths = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        check(not errs, "mixed dials under concurrency: %s" % errs[:2])
        # Metrics: by point, by paths, escalated, MACs (every answer above is counted).
        m = d.metrics()
        lab = {"model": "fashion_mnist", "version": "1"}
        got_paths = {k: metric(m, "cigt_model_paths_samples_total", **lab, paths=str(k))
                     for k in range(1, 9)}
        samples = metric(m, "cigt_model_samples_total", **lab)
        # ESC: the batch, body over query, OIP, the clients.
        check(metric(m, "cigt_model_point_samples_total", **lab, point=ESC)
              == NIMG + 1 + 16 + at[ESC], "samples at %s: %s, expected %d" % (
                  ESC, metric(m, "cigt_model_point_samples_total", **lab, point=ESC),
                  NIMG + 1 + 16 + at[ESC]))
        check(metric(m, "cigt_model_point_samples_total", **lab, point="(single)") == 8 + 2,
              "samples without a point")
        check(sum(got_paths.values()) == samples, "paths counters add up to the samples")
        # All paths: the batch, compute_saved, the query, OIP, binary, the clients (other
        # points may open 8 paths too).
        check(got_paths[8] >= NIMG + 1 + 1 + 16 + 2 + at[ALLP], "8-path samples counted")
        esc_total = metric(m, "cigt_model_escalated_samples_total", **lab)
        check(esc_total >= total["esc"], "escalated counter %s >= %s" % (esc_total,
                                                                          total["esc"]))
        check(metric(m, "cigt_macs_total") == metric(m, "cigt_model_macs_total", **lab),
              "global and per-version MACs agree")
        check(metric(m, "cigt_model_macs_total", **lab) >= total["macs"],
              "MACs counter counts every path and the second model")
        # Route counters count expert runs: layer 0 once per sample; layer 2 once per path.
        l0 = metric(m, "cigt_route_samples_total", layer="0", expert="0")
        l2 = sum(metric(m, "cigt_route_samples_total", layer="2", expert=str(e))
                 for e in range(4))
        check(l0 == samples, "layer 0 runs once per sample (%s, %s)" % (l0, samples))
        check(l2 == sum(k * v for k, v in got_paths.items()), "leaves run once per path")
    finally:
        d.stop()
    # The server default: --compute NAME from a flag and from a --config file.
    ref = refs[ESC]
    cfg = os.path.join(env["work"], "cfg.json")
    with open(cfg, "w") as f:
        json.dump({"compute": ESC}, f)
    for args in (["--compute", ESC], ["--config", cfg]):
        d = T.Daemon(model_path(), *args)
        try:
            st, _, raw = d.request("GET", "/v1/model")
            check(json.loads(raw)["compute"] == ESC, "%s: model says its default" % args[0])
            st, j = v1(d, imgs[:NIMG])
            for i, r in enumerate(j["results"]):
                same(r, ref[i], "%s default[%d]" % (args[0], i))
                check(r["compute"] == ESC, "default point named")
            st, j = v1(d, imgs[:4], compute=SINGLE)
            check(all(r["compute"] == SINGLE and r["macs"] == T.PATH_MACS
                      for r in j["results"]), "a request overrides the default")
        finally:
            d.stop()
    return 0


def budgets_for(pts):
    """MAC budgets around the points' worst cases and means: each worst case exactly, one MAC
    above and below it, half-way between neighbouring worst cases, each mean (rounded), a
    million above the costliest; and one path exactly and plus one, the dense MACs, a huge
    budget. Budgets below one path are errors (group errors)."""
    ws = sorted({worst_macs(p) for p in pts})
    b = {T.PATH_MACS, T.PATH_MACS + 1, T.DENSE_MACS, 10 ** 12, ws[-1] + 10 ** 6}
    b |= {w + dw for w in ws for dw in (-1, 0, 1)}
    b |= {(lo + hi) // 2 for lo, hi in zip(ws, ws[1:])}
    b |= {int(round(p["mean_macs"])) for p in pts}
    return sorted(x for x in b if x >= T.PATH_MACS)


def group_budgets(env):
    imgs = env["images"]
    pts = file_points()
    budgets = budgets_for(pts)
    print("%d budgets: %s" % (len(budgets), budgets))
    refs = {}
    d = T.Daemon(model_path())
    try:
        for b in budgets:
            st, j = v1(d, imgs, max_macs=b)
            check(st == 200, "max_macs=%d -> 200 (%s)" % (b, error_of(j)))
            over = [r["macs"] for r in j["results"] if r["macs"] > b]
            check(not over, "max_macs=%d is a hard cap (samples at %s)" % (b, over[:3]))
            name = j["results"][0]["compute"]
            # The expected pick from the file's points (cigt info) and worst cases worked out
            # from the architecture: the first of the most accurate that fit.
            fit = [p for p in pts if worst_macs(p) <= b]
            best = max(fit, key=lambda p: p["val_accuracy"])
            check(name == best["name"], "max_macs=%d picks %s, the most accurate point that "
                  "fits (got %s)" % (b, best["name"], name))
            # The answers are those of the point it picked.
            if not any(p["name"] == name for p in pts):
                continue
            if name not in refs:
                refs[name] = dump(env, name)
            for i, r in enumerate(j["results"]):
                same(r, refs[name][i], "max_macs=%d[%d]" % (b, i))
        # Query and OIP forms.
        st, _, raw = d.post_json("/v1/classify?max_macs=%d" % ALL_PATHS_MACS,
                                 {"image": list(imgs[0])})
        j = json.loads(raw)
        check(st == 200 and j["macs"] <= ALL_PATHS_MACS and j["compute"] is not None,
              "query max_macs")
        st, j = v2(d, imgs[:8], {"max_macs": 6000000})
        check(st == 200 and all(m <= 6000000 for m in {o["name"]: o for o in j["outputs"]}
                                ["macs"]["data"]), "v2 max_macs is a hard cap")
    finally:
        d.stop()
    return 0


def group_errors(env):
    img = list(env["images"][0])
    d = T.Daemon(model_path())
    try:
        cases = [  # (body extra keys, query, message fragment)
            ({"compute": "nosuch"}, "", "has no operating point 'nosuch'"),
            ({"compute": ""}, "", "compute must be the name of an operating point"),
            ({"compute": 7}, "", "compute must be the name of an operating point"),
            ({"compute": "a b"}, "", "compute must be the name of an operating point"),
            ({"compute": "x" * 40}, "", "compute must be the name of an operating point"),
            ({"compute": None}, "", "compute must be the name of an operating point"),
            ({"max_macs": 0}, "", "max_macs must be a positive integer"),
            ({"max_macs": -5}, "", "max_macs must be a positive integer"),
            ({"max_macs": 6e6}, "", "max_macs must be a positive integer"),
            ({"max_macs": "6000000"}, "", "max_macs must be a positive integer"),
            ({"max_macs": 1000}, "", "less than one path"),
            ({"max_macs": T.PATH_MACS - 1}, "", "less than one path"),
            ({"compute": "single", "max_macs": 6000000}, "", "not both"),
            ({}, "?compute=nosuch", "has no operating point 'nosuch'"),
            ({}, "?compute=", "compute must be the name of an operating point"),
            ({}, "?compute=a%20b", "compute must be the name of an operating point"),
            ({}, "?max_macs=0", "max_macs must be a positive integer"),
            ({}, "?max_macs=-1", "max_macs must be a positive integer"),
            ({}, "?max_macs=abc", "max_macs must be a positive integer"),
            ({}, "?max_macs=12x", "max_macs must be a positive integer"),
            ({}, "?max_macs=99999999999999999999999", "max_macs must be a positive integer"),
            ({}, "?max_macs=10", "less than one path"),
            ({}, "?compute=single&max_macs=6000000", "not both"),
        ]
        for extra, q, frag in cases:
            st, _, raw = d.post_json("/v1/classify" + q, dict(extra, image=img))
            check(st == 400 and frag in error_of(json.loads(raw)),
                  "v1 %s %s -> 400 '%s' (got %d %s)" % (extra, q, frag, st, raw[:200]))
        for params, frag in [({"compute": "nosuch"}, "has no operating point"),
                             ({"compute": ["single"]}, "parameters.compute must be"),
                             ({"max_macs": -1}, "parameters.max_macs must be a positive"),
                             ({"max_macs": 1.5}, "parameters.max_macs must be a positive"),
                             ({"max_macs": 5}, "less than one path"),
                             ({"compute": "single", "max_macs": 6000000}, "not both")]:
            st, j = v2(d, [img], params)
            check(st == 400 and frag in error_of(j), "v2 %s -> 400 '%s' (got %d %s)"
                  % (params, frag, st, error_of(j)))
        st, j = v2(d, [img], outputs=[{"name": "pathz"}])
        check(st == 400 and "paths, escalated" in error_of(j), "v2 unknown output lists paths")
        # A refused request changes nothing: the daemon still answers the single path.
        st, j = v1(d, [img])
        check(st == 200 and j["results"][0]["macs"] == T.PATH_MACS, "still serving")
        m = d.metrics()
        check(metric(m, "cigt_model_samples_total", model="fashion_mnist", version="1") == 1,
              "refused requests computed nothing")
    finally:
        d.stop()
    return 0


def start_fails(args, frag):
    p = subprocess.run([T.CIGTD, "--listen", "127.0.0.1:0"] + args, capture_output=True,
                       text=True, timeout=120)
    ok = check(p.returncode != 0 and frag in p.stderr, "cigtd %s fails to start naming '%s' "
               "(rc %d: %s)" % (" ".join(args[-2:]), frag, p.returncode, p.stderr[-300:]))
    return ok


def group_loading(env):
    work = env["work"]
    src = MODELS
    ESC = pick_points(["escalate"])["escalate"]
    # The escalating point's second model (thick when tuned with --escalate thick.safetensors);
    # any other second models the points name are put beside the file, so that this one is
    # the one missing.
    second = [p["second"] for p in file_points() if p["name"] == ESC][0]
    others = {p["second"] for p in file_points() if p.get("second")} - {second}
    # No second model beside the file: a load error naming it, not a request-time one.
    lone = os.path.join(work, "lone")
    os.makedirs(lone)
    shutil.copy(model_path(), lone)
    for o in others:
        shutil.copy(os.path.join(src, o + ".safetensors"), lone)
    start_fails(["--model", os.path.join(lone, "fashion_mnist.safetensors")],
                second + ".safetensors")
    # A mismatched one (another file under its name): refused by its sha256.
    shutil.copy(os.path.join(src, "thin.safetensors"), os.path.join(lone,
                                                                   second + ".safetensors"))
    start_fails(["--model", os.path.join(lone, "fashion_mnist.safetensors")], "sha256")
    # An unknown default point.
    start_fails(["--model", model_path(), "--compute", "nosuch"], "--compute nosuch")
    start_fails(["--model", os.path.join(src, "thin.safetensors"), "--compute", "single"],
                "no such operating point")
    # In a repository: the second model beside model.safetensors; a version without it is
    # unavailable with the reason, the others serve.
    repo = os.path.join(work, "repo")
    for v, with_second in ((1, True), (2, False)):
        vd = os.path.join(repo, "fashion_mnist", str(v))
        os.makedirs(vd)
        shutil.copy(model_path(), os.path.join(vd, "model.safetensors"))
        for o in others | ({second} if with_second else set()):
            shutil.copy(os.path.join(src, o + ".safetensors"), vd)
    from test_repository import RDaemon
    d = RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                "--load-model", "fashion_mnist")
    try:
        st, _, raw = d.request("POST", "/v2/repository/index", b"{}")
        idx = {int(e["version"]): e for e in json.loads(raw)}
        check(idx[1]["state"] == "READY", "version with its second model is ready")
        check(idx[2]["state"] == "UNAVAILABLE" and second in idx[2]["reason"],
              "version without it is unavailable, naming it: %s" % idx[2])
        st, j = v1(d, env["images"][:4], compute=ESC)
        check(st == 200 and j["model_version"] == "1", "version 1 escalates")
        # Unload frees the second model's engine too (checked by ASan's leak report at exit).
        st, _, _ = d.request("POST", "/v2/repository/models/fashion_mnist/unload", b"")
        check(st == 200, "unload")
    finally:
        d.stop()
    return 0


def page_samples():
    """The t10k indices of the page's sample images, in the order #sample=K clicks them (the
    SAMPLES table of src/server/page.html)."""
    with open(os.path.join(T.SRCDIR, "src", "server", "page.html")) as f:
        page = f.read()
    table = page[page.index("const SAMPLES = ["):]
    table = table[:table.index("];")]
    return [int(i) for i in re.findall(r'^\s*\[(\d+), "', table, re.M)]


def group_page(env):
    """The page's dial, sample images and paths, in headless Chromium (#compute=NAME sets the
    dial, #sample=K clicks sample image K). The image shown is the first of the page's samples
    that escalates at the escalating point pick_points chooses (or, if none does there, at the
    next closest to ESCALATE_NEAR), as cigt eval --dump says."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium is not installed (apt-get install chromium)")
        return 77
    samples = page_samples()
    check(len(samples) == 14, "page.html has 14 sample images (%s)" % samples)
    ALLP, npoints = pick_points(["all-paths", "escalate"])["all-paths"], len(file_points())
    limit = max(samples) + 1
    esc, k = None, None
    for p in escalate_points():
        ref = dump(env, p, limit)
        hit = [j for j, i in enumerate(samples) if ref[i]["escalated"]]
        if hit:
            esc, k = p, hit[0]
            break
    if esc is None:
        check(False, "none of the page's sample images (test images %s) escalates at any of "
              "%s (cigt eval --dump): the page cannot show an escalation; give it one "
              "(src/server/page.html, SAMPLES)" % (samples, ", ".join(escalate_points())))
        return 1
    print("page: %s at sample %d (test image %d)" % (esc, k, samples[k]))
    d = T.Daemon(model_path())
    try:
        profile = tempfile.mkdtemp(dir=env["work"])
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=10000"]
        second = [p["second"] for p in file_points() if p["name"] == esc][0]
        refs = {p: dump(env, p, limit) for p in (ALLP, esc)}
        for p in (ALLP, esc):
            ref = refs[p][samples[k]]
            url = "http://127.0.0.1:%d/#compute=%s&sample=%d" % (d.port, p, k)
            dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                                 timeout=120).stdout
            check(len(re.findall(r'<canvas [^>]*title="test image \d+"', dom)) == 14,
                  "%s: a row of 14 sample images" % p)
            check('<b id="dialname">%s (validation' % p in dom, "%s: the dial shows it" % p)
            check(len(re.findall(r'<div data-i="\d+"', dom)) == npoints,
                  "%s: the dial lists the %d points" % (p, npoints))
            lit = re.findall(r'class="node lit" data-node="(\d+)-(\d+)"', dom)
            want = [(str(l), str(e)) for l, e in enumerate(ref["route"])]
            check(lit == want, "%s: the argmax route is lit (%s, want %s)" % (p, lit, want))
            alt = re.findall(r'class="node alt" data-node="(\d+)-(\d+)"', dom)
            nodes = {(str(l), str(q[l])) for q in ref["paths"] for l in range(3)}
            check(set(lit) | set(alt) == nodes, "%s: every node on a path that ran is shown "
                  "(%s)" % (p, sorted(set(lit) | set(alt))))
            check(('id="esc">escalated: %s ran too<' % second in dom) == ref["escalated"],
                  "%s: escalation shown iff cigt eval escalates (%s)" % (p, ref["escalated"]))
            check("; point %s)" % p in dom, "%s: the answer names its point" % p)
        check(refs[esc][samples[k]]["escalated"], "test image %d escalates at %s"
              % (samples[k], esc))
        shot = os.path.join(env["work"], "dial.png")
        subprocess.run(base + ["--window-size=1200,1000", "--screenshot=" + shot,
                               "http://127.0.0.1:%d/#compute=%s&sample=%d" % (d.port, ALLP, k)],
                       capture_output=True, timeout=120)
        check(os.path.exists(shot) and os.path.getsize(shot) > 5000, "screenshot taken")
    finally:
        d.stop()
    return 0


GROUPS = {"answers": group_answers, "budgets": group_budgets, "errors": group_errors,
          "loading": group_loading, "page": group_page}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigtd-dial-")
    os.makedirs(work, exist_ok=True)
    env = {"work": work, "images": T.load_images(NIMG)}
    global MODELS
    try:
        MODELS = every_kind(work)
        rc = GROUPS[args.group](env)
    except MissingKind as e:
        check(False, str(e))
        rc = 1
    finally:
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("%s: %s" % (args.group, "FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else rc


if __name__ == "__main__":
    sys.exit(main())
