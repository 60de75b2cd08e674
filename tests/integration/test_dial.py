#!/usr/bin/python3
"""Integration tests for the compute dial in cigtd (issue 12): per-request operating points
("compute") and MAC budgets ("max_macs") in the native API (body and query) and as OIP request
parameters, the server default (--compute), second models loaded with the version, the answer
fields (paths, escalated, compute), every error, and the metrics.

The model is the shipped models/fashion_mnist.safetensors with its 15 operating points (the
escalating ones load models/thick.safetensors from beside it). Every answer is compared with
`cigt eval MODEL --compute NAME --dump` on the same test images: class, argmax route, the paths
that ran, escalation, MACs and probabilities.
Run one group: test_dial.py --group answers|budgets|errors|loading|page
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check, metric  # noqa: E402

NIMG = 64
# Points compared image by image with cigt eval: the single path, multipath (one router, all),
# escalation, and both together.
POINTS = ["single", "multi-0.49-1", "all-paths", "escalate-0.8", "mix-0.3-1-c0.95"]


def model_path():
    return os.path.join(T.SRCDIR, "models", "fashion_mnist.safetensors")


def dump(env, point):
    """cigt eval --compute point --dump on the first NIMG test images, one dict per image."""
    f = os.path.join(env["work"], "%s.dump" % point)
    args = [T.CIGT, "eval", model_path(), "--limit", str(NIMG), "--dump", f, "--threads", "1"]
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

def group_answers(env):
    imgs = env["images"]
    refs = {p: dump(env, p) for p in POINTS}
    d = T.Daemon(model_path(), "--max-delay-us", "20000")
    try:
        st, _, raw = d.request("GET", "/v1/model")
        info = json.loads(raw)
        names = [p["name"] for p in info["points"]]
        check(st == 200 and len(names) == 15 and names[:3] == ["single", "multi-0.49-1",
                                                               "all-paths"]
              and info["compute"] is None, "GET /v1/model lists the 15 points, no default")
        allp = info["points"][2]
        check(allp["thresholds"] == [0, 0] and allp["mean_macs"] == 11442944
              and allp["worst_macs"] == 11442944 and allp["second"] is None
              and abs(allp["val_accuracy"] - 0.9328) < 1e-9, "all-paths point metadata")
        esc = info["points"][names.index("escalate-0.8")]
        check(esc["second"] == "thick" and esc["confidence"] == 0.8, "escalating point names "
              "its second model")
        # Without a dial: today's answer plus the new fields.
        st, j = v1(d, imgs[:8])
        check(st == 200, "v1 without a dial")
        for i, r in enumerate(j["results"]):
            same(r, refs["single"][i], "default[%d]" % i)
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
        check(any(r["escalated"] for r in refs["escalate-0.8"]), "some images escalate at 0.8")
        check(all(len(r["paths"]) == 8 for r in refs["all-paths"]), "all-paths runs 8 paths")
        # compute_saved below zero when a request buys more than dense.
        st, j = v1(d, imgs[:1], compute="all-paths")
        check(j["results"][0]["compute_saved"] < 0, "compute_saved goes below zero")
        # Single-image form and the query parameter; the body wins over the query.
        st, raw_h, raw = d.post_json("/v1/classify?compute=all-paths", {"image": list(imgs[3])})
        j = json.loads(raw)
        check(st == 200 and j["compute"] == "all-paths", "query compute")
        same(j, refs["all-paths"][3], "query compute[3]")
        st, _, raw = d.post_json("/v1/classify?compute=all-paths",
                                 {"image": list(imgs[4]), "compute": "escalate-0.8"})
        j = json.loads(raw)
        check(st == 200 and j["compute"] == "escalate-0.8", "the body's compute wins")
        same(j, refs["escalate-0.8"][4], "body over query[4]")
        st, _, raw = d.post_json("/v1/models/fashion_mnist/versions/1/classify?compute="
                                 "mix-0.3-1-c0.95", {"image": list(imgs[5])})
        j = json.loads(raw)
        check(st == 200, "versioned classify with a query dial")
        same(j, refs["mix-0.3-1-c0.95"][5], "versioned query[5]")
        # OIP: parameters, the paths and escalated outputs, the point in the answer.
        for p in ("escalate-0.8", "all-paths"):
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
             "parameters": {"compute": "all-paths"},
             "outputs": [{"name": "paths", "parameters": {"binary_data": True}},
                         {"name": "escalated", "parameters": {"binary_data": True}}]}).encode(),
            {"Content-Type": "application/json"})
        hl = int(h.get("inference-header-content-length", -1))
        check(st == 200 and hl > 0 and raw[hl:] == bytes([1] * 16 + [0, 0]),
              "binary paths/escalated: %r" % raw[hl:])
        # Concurrent requests at different dials share batches: each still gets its own.
        errs = []

        def client(t):
            p = POINTS[t % len(POINTS)]
            c = d.conn()
            for k in range(6):
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
        ths = [threading.Thread(target=client, args=(t,)) for t in range(10)]
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
        check(metric(m, "cigt_model_point_samples_total", **lab, point="escalate-0.8")
              == NIMG + 1 + 16 + 12, "samples at escalate-0.8: %s" % metric(
                  m, "cigt_model_point_samples_total", **lab, point="escalate-0.8"))
        check(metric(m, "cigt_model_point_samples_total", **lab, point="(single)") == 8 + 2,
              "samples without a point")
        check(sum(got_paths.values()) == samples, "paths counters add up to the samples")
        check(got_paths[8] >= NIMG + 1 + 1 + 16 + 2 + 12, "8-path samples counted")
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
    ref = dump(env, "escalate-0.8")
    cfg = os.path.join(env["work"], "cfg.json")
    with open(cfg, "w") as f:
        json.dump({"compute": "escalate-0.8"}, f)
    for args in (["--compute", "escalate-0.8"], ["--config", cfg]):
        d = T.Daemon(model_path(), *args)
        try:
            st, _, raw = d.request("GET", "/v1/model")
            check(json.loads(raw)["compute"] == "escalate-0.8", "%s: model says its default"
                  % args[0])
            st, j = v1(d, imgs[:NIMG])
            for i, r in enumerate(j["results"]):
                same(r, ref[i], "%s default[%d]" % (args[0], i))
                check(r["compute"] == "escalate-0.8", "default point named")
            st, j = v1(d, imgs[:4], compute="single")
            check(all(r["compute"] == "single" and r["macs"] == T.PATH_MACS
                      for r in j["results"]), "a request overrides the default")
        finally:
            d.stop()
    return 0


def group_budgets(env):
    imgs = env["images"]
    d = T.Daemon(model_path())
    try:
        info = json.loads(d.request("GET", "/v1/model")[2])
        pts = info["points"]
        budgets = [T.PATH_MACS, T.PATH_MACS + 1, 5786482, 6000000, 7000000, 10867712,
                   11054848, 11442944, 11600000, 13000000, 20000000, 10 ** 12]
        for b in budgets:
            st, j = v1(d, imgs, max_macs=b)
            check(st == 200, "max_macs=%d -> 200 (%s)" % (b, error_of(j)))
            over = [r["macs"] for r in j["results"] if r["macs"] > b]
            check(not over, "max_macs=%d is a hard cap (samples at %s)" % (b, over[:3]))
            name = j["results"][0]["compute"]
            fit = [p for p in pts if p["worst_macs"] <= b]
            best = max(fit, key=lambda p: p["val_accuracy"])
            check(name == best["name"], "max_macs=%d picks %s, the most accurate point that "
                  "fits (got %s)" % (b, best["name"], name))
            # The answers are those of the point it picked.
            ref = dump(env, name)
            for i, r in enumerate(j["results"]):
                same(r, ref[i], "max_macs=%d[%d]" % (b, i))
        # Query and OIP forms.
        st, _, raw = d.post_json("/v1/classify?max_macs=11442944", {"image": list(imgs[0])})
        j = json.loads(raw)
        check(st == 200 and j["macs"] <= 11442944 and j["compute"] is not None, "query max_macs")
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
    src = os.path.join(T.SRCDIR, "models")
    # No second model beside the file: a load error naming it, not a request-time one.
    lone = os.path.join(work, "lone")
    os.makedirs(lone)
    shutil.copy(model_path(), lone)
    start_fails(["--model", os.path.join(lone, "fashion_mnist.safetensors")],
                "thick.safetensors")
    # A mismatched one (another file under its name): refused by its sha256.
    shutil.copy(os.path.join(src, "thin.safetensors"), os.path.join(lone, "thick.safetensors"))
    start_fails(["--model", os.path.join(lone, "fashion_mnist.safetensors")], "sha256")
    # An unknown default point.
    start_fails(["--model", model_path(), "--compute", "nosuch"], "--compute nosuch")
    start_fails(["--model", os.path.join(src, "thin.safetensors"), "--compute", "single"],
                "no such operating point")
    # In a repository: the second model beside model.safetensors; a version without it is
    # unavailable with the reason, the others serve.
    repo = os.path.join(work, "repo")
    for v, with_thick in ((1, True), (2, False)):
        vd = os.path.join(repo, "fashion_mnist", str(v))
        os.makedirs(vd)
        shutil.copy(model_path(), os.path.join(vd, "model.safetensors"))
        if with_thick:
            shutil.copy(os.path.join(src, "thick.safetensors"), vd)
    from test_repository import RDaemon
    d = RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                "--load-model", "fashion_mnist")
    try:
        st, _, raw = d.request("POST", "/v2/repository/index", b"{}")
        idx = {int(e["version"]): e for e in json.loads(raw)}
        check(idx[1]["state"] == "READY", "version with its second model is ready")
        check(idx[2]["state"] == "UNAVAILABLE" and "thick" in idx[2]["reason"],
              "version without it is unavailable, naming it: %s" % idx[2])
        st, j = v1(d, env["images"][:4], compute="escalate-0.8")
        check(st == 200 and j["model_version"] == "1", "version 1 escalates")
        # Unload frees the second model's engine too (checked by ASan's leak report at exit).
        st, _, _ = d.request("POST", "/v2/repository/models/fashion_mnist/unload", b"")
        check(st == 200, "unload")
    finally:
        d.stop()
    return 0


def group_page(env):
    """The page's dial, sample images and paths, in headless Chromium (#compute=NAME sets the
    dial, #sample=K clicks sample image K: test image 16 is sample 10)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium is not installed (apt-get install chromium)")
        return 77
    import re
    d = T.Daemon(model_path())
    try:
        profile = tempfile.mkdtemp(dir=env["work"])
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=10000"]
        refs = {p: dump(env, p) for p in ("all-paths", "escalate-0.8")}
        for p in ("all-paths", "escalate-0.8"):
            ref = refs[p][16]
            url = "http://127.0.0.1:%d/#compute=%s&sample=10" % (d.port, p)
            dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                                 timeout=120).stdout
            check(len(re.findall(r'<canvas [^>]*title="test image \d+"', dom)) == 14,
                  "%s: a row of 14 sample images" % p)
            check('<b id="dialname">%s (validation' % p in dom, "%s: the dial shows it" % p)
            check(len(re.findall(r'<div data-i="\d+"', dom)) == 15, "%s: the dial lists the 15 points" % p)
            lit = re.findall(r'class="node lit" data-node="(\d+)-(\d+)"', dom)
            want = [(str(l), str(e)) for l, e in enumerate(ref["route"])]
            check(lit == want, "%s: the argmax route is lit (%s, want %s)" % (p, lit, want))
            alt = re.findall(r'class="node alt" data-node="(\d+)-(\d+)"', dom)
            nodes = {(str(l), str(q[l])) for q in ref["paths"] for l in range(3)}
            check(set(lit) | set(alt) == nodes, "%s: every node on a path that ran is shown "
                  "(%s)" % (p, sorted(set(lit) | set(alt))))
            check(('id="esc">escalated: thick ran too<' in dom) == ref["escalated"],
                  "%s: escalation shown iff cigt eval escalates (%s)" % (p, ref["escalated"]))
            check("; point %s)" % p in dom, "%s: the answer names its point" % p)
        check(refs["escalate-0.8"][16]["escalated"], "test image 16 escalates at 0.8")
        shot = os.path.join(env["work"], "dial.png")
        subprocess.run(base + ["--window-size=1200,1000", "--screenshot=" + shot,
                               "http://127.0.0.1:%d/#compute=all-paths&sample=10" % d.port],
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
    try:
        rc = GROUPS[args.group](env)
    finally:
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("%s: %s" % (args.group, "FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else rc


if __name__ == "__main__":
    sys.exit(main())
