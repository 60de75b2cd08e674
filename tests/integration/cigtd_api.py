"""cigtd integration tests, groups api and page: every endpoint and body form of the native API and
the Open Inference Protocol v2 answered as the engine answers, the metrics they move,
--healthcheck and --check-config; the web page in headless chromium. Run by test_cigtd.py.
"""

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile

from cigtd_common import (CIGTD, CIGT, PATH_MACS, DENSE_MACS, check, png_gray, Daemon, metric,
                          same_answer)


def group_api(env):
    d = Daemon(env["model"])
    imgs, ref = env["images"], env["ref"]
    try:
        st, h, body = d.request("GET", "/")
        check(st == 200 and h["content-type"].startswith("text/html") and b"<html" in body,
              "GET / serves the page")
        st, h, body = d.request("GET", "/v2")
        j = json.loads(body)
        check(st == 200 and j["name"] == "cigtd" and "binary_tensor_data" in j["extensions"],
              "GET /v2 server metadata")
        for p in ("/v2/health/live", "/v2/health/ready", "/v2/models/fashion_mnist/ready",
                  "/v2/models/fashion_mnist/versions/1/ready"):
            st, _, body = d.request("GET", p)
            check(st == 200 and body == b"", "GET %s -> 200, empty body" % p)
        st, _, body = d.request("GET", "/v2/models/fashion_mnist")
        j = json.loads(body)
        check(st == 200 and j["name"] == "fashion_mnist" and j["inputs"][0]["name"] == "image"
              and j["inputs"][0]["shape"] == [-1, 1, 28, 28]
              and [o["name"] for o in j["outputs"]] == ["probabilities", "class", "route", "macs",
                                                     "paths", "escalated"]
              and j["outputs"][4]["shape"] == [-1, 8] and j["outputs"][4]["datatype"] == "BOOL",
              "GET /v2/models/fashion_mnist metadata")
        st, _, body = d.request("GET", "/v1/model")
        j = json.loads(body)
        check(st == 200 and j["experts"] == [1, 2, 4] and j["dense_macs"] == DENSE_MACS
              and len(j["classes"]) == 10, "GET /v1/model")
        st, h, body = d.request("HEAD", "/v2")
        check(st == 200 and body == b"", "HEAD /v2")

        # /v1/classify, every body form.
        st, _, body = d.post_json("/v1/classify", {"image": list(imgs[0])})
        j = json.loads(body)
        check(st == 200, "classify flat JSON -> 200")
        same_answer(j, ref[0], "classify flat JSON")
        check(j["macs"] == PATH_MACS and j["dense_macs"] == DENSE_MACS
              and abs(j["compute_saved"] - (1 - PATH_MACS / DENSE_MACS)) < 1e-4
              and j["label"] == env["classes"][j["class"]], "classify: macs, label, saved")
        rows = [list(imgs[1][r * 28:(r + 1) * 28]) for r in range(28)]
        st, _, body = d.post_json("/v1/classify", {"image": rows})
        check(st == 200, "classify nested rows -> 200") and same_answer(json.loads(body), ref[1],
                                                                      "classify rows")
        b64 = base64.b64encode(png_gray(imgs[2], 28, 28)).decode()
        st, _, body = d.post_json("/v1/classify", {"png": b64})
        check(st == 200, "classify base64 PNG -> 200") and same_answer(json.loads(body), ref[2],
                                                                      "classify png")
        st, _, body = d.request("POST", "/v1/classify", png_gray(imgs[3], 28, 28),
                                {"Content-Type": "image/png"})
        check(st == 200, "classify raw PNG -> 200") and same_answer(json.loads(body), ref[3],
                                                                  "raw png")
        pgm = b"P5\n# comment\n28 28\n255\n" + imgs[4]
        st, _, body = d.request("POST", "/v1/classify?top_k=3", pgm,
                                {"Content-Type": "image/x-portable-graymap"})
        j = json.loads(body)
        check(st == 200, "classify raw PGM -> 200") and same_answer(j, ref[4], "raw pgm")
        top = sorted(range(10), key=lambda k: -ref[4]["probs"][k])[:3]
        check([t["class"] for t in j.get("top_k", [])] == top, "top_k=3 query: %s" % j.get("top_k"))
        # A 56x56 image is resized to 28x28: compare with `cigt classify` on the same file.
        big = bytes(imgs[5][(y // 2) * 28 + x // 2] for y in range(56) for x in range(56))
        f = os.path.join(env["work"], "big.png")
        open(f, "wb").write(png_gray(big, 56, 56))
        out = subprocess.run([CIGT, "classify", env["model"], f], check=True,
                             capture_output=True, text=True).stdout.split("\t")
        st, _, body = d.request("POST", "/v1/classify", open(f, "rb").read(),
                                {"Content-Type": "image/png"})
        j = json.loads(body)
        check(st == 200 and j["label"] == out[1]
              and "-".join(map(str, j["route"])) == out[3],
              "56x56 PNG resized like cigt classify: %s vs %s" % (j.get("label"), out[1:4]))
        # Batch: request order, totals.
        batch = [list(imgs[i]) for i in range(6, 26)]
        batch[3] = {"png": base64.b64encode(png_gray(imgs[9], 28, 28)).decode()}
        st, _, body = d.post_json("/v1/classify", {"images": batch, "top_k": 2})
        j = json.loads(body)
        check(st == 200 and j["count"] == 20, "classify images batch -> 200")
        for i, res in enumerate(j["results"]):
            same_answer(res, ref[6 + i], "batch[%d]" % i)
            check(len(res["top_k"]) == 2, "batch top_k")
        check(j["macs"] == sum(r["macs"] for r in j["results"])
              and j["dense_macs"] == 20 * DENSE_MACS, "batch totals")

        # Open Inference Protocol v2.
        n = 5
        pix = b"".join(imgs[30:30 + n])
        req = {"id": "req-42", "inputs": [{"name": "image", "shape": [n, 1, 28, 28],
                                            "datatype": "UINT8", "data": list(pix)}]}
        st, _, body = d.post_json("/v2/models/fashion_mnist/infer", req)
        j = json.loads(body)
        check(st == 200 and j["id"] == "req-42" and j["model_name"] == "fashion_mnist",
              "v2 infer UINT8 -> 200 with id")
        outs = {o["name"]: o for o in j.get("outputs", [])}
        check(set(outs) == {"probabilities", "class", "route", "macs", "paths", "escalated"},
              "v2 all outputs")
        check(outs["probabilities"]["shape"] == [n, 10] and outs["probabilities"]["datatype"]
              == "FP32" and outs["class"]["datatype"] == "INT64" and outs["route"]["shape"]
              == [n, 3] and outs["route"]["datatype"] == "INT32", "v2 output shapes/datatypes")
        for i in range(n):
            same_answer({"class": outs["class"]["data"][i],
                         "route": outs["route"]["data"][3 * i:3 * i + 3],
                         "probabilities": outs["probabilities"]["data"][10 * i:10 * i + 10]},
                        ref[30 + i], "v2 uint8[%d]" % i)
        check(outs["macs"]["data"] == [PATH_MACS] * n, "v2 macs")
        # [N,H,W] nested, FP32, outputs selection, versioned path.
        nested = [[[v / 255.0 for v in imgs[40 + i][r * 28:(r + 1) * 28]] for r in range(28)]
                  for i in range(2)]
        req = {"inputs": [{"name": "image", "shape": [2, 28, 28], "datatype": "FP32",
                           "data": nested}], "outputs": [{"name": "class"}]}
        st, _, body = d.post_json("/v2/models/fashion_mnist/versions/1/infer", req)
        j = json.loads(body)
        check(st == 200 and [o["name"] for o in j["outputs"]] == ["class"]
              and "id" not in j, "v2 FP32 [N,H,W] with outputs selection")
        check(j["outputs"][0]["data"] == [ref[40]["class"], ref[41]["class"]], "v2 FP32 classes")
        # JSON data in other forms (the fast scan of "data" and what it leaves to jansson):
        # nested [N][C][H][W]; pretty-printed, whitespace inside data; "data" inside the id, in
        # parameters and as a key of nested objects; data first, written as reals.
        def rows(im):
            return [list(im[r * 28:(r + 1) * 28]) for r in range(28)]

        def inp(k, n, data, **kw):
            d = {"name": "image", "shape": [n, 1, 28, 28], "datatype": "UINT8", "data": data}
            d.update(kw)
            return {k2: d[k2] for k2 in k}
        order = ("name", "shape", "datatype", "data")
        forms = [
            ("nested [N][C][H][W]", [70, 71], json.dumps({"inputs": [inp(
                order, 2, [[rows(imgs[70])], [rows(imgs[71])]])]}).encode(), None),
            ("pretty-printed", [72], json.dumps({"inputs": [inp(order, 1, list(imgs[72]))]},
                                                indent="\t", separators=(" ,\r\n", " :\t"))
             .encode(), None),
            ("data in strings", [73], json.dumps({
                "id": '"data": [300], \\', "parameters": {"data": [[1, "]"]], "x": {"data": []}},
                "inputs": [inp(("parameters",) + order, 1, list(imgs[73]),
                               parameters={"data": '{["', "inputs": [{"data": [1]}]})]})
             .encode(), '"data": [300], \\'),
            ("data first as reals", [74], json.dumps({"inputs": [inp(
                ("data", "datatype", "shape", "name"), 1, [float(v) for v in imgs[74]])]})
             .encode(), None),
        ]
        for what, idx, req, rid in forms:
            st, _, body = d.request("POST", "/v2/models/fashion_mnist/infer", req,
                                    {"Content-Type": "application/json"})
            j = json.loads(body)
            if not check(st == 200 and j.get("id") == rid, "v2 %s -> 200 (%r)" % (what,
                                                                                 body[:200])):
                continue
            outs = {o["name"]: o for o in j["outputs"]}
            for i, r in enumerate(idx):
                same_answer({"class": outs["class"]["data"][i],
                             "route": outs["route"]["data"][3 * i:3 * i + 3],
                             "probabilities": outs["probabilities"]["data"][10 * i:10 * i + 10]},
                            ref[r], "v2 %s [%d]" % (what, i))
        # Binary tensor extension, both ways.
        n = 4
        pix = b"".join(imgs[50:50 + n])
        hdr = json.dumps({"inputs": [{"name": "image", "shape": [n, 1, 28, 28],
                                      "datatype": "UINT8",
                                      "parameters": {"binary_data_size": len(pix)}}],
                          "outputs": [{"name": "probabilities",
                                       "parameters": {"binary_data": True}},
                                      {"name": "route"}]}).encode()
        st, h, body = d.request("POST", "/v2/models/fashion_mnist/infer", hdr + pix,
                                {"Content-Type": "application/octet-stream",
                                 "Inference-Header-Content-Length": str(len(hdr))})
        check(st == 200 and "inference-header-content-length" in h, "v2 binary -> 200")
        hl = int(h.get("inference-header-content-length", 0))
        j = json.loads(body[:hl])
        outs = {o["name"]: o for o in j["outputs"]}
        check(outs["probabilities"]["parameters"]["binary_data_size"] == n * 40
              and "data" not in outs["probabilities"] and len(body) == hl + n * 40,
              "v2 binary output layout")
        probs = struct.unpack("<%df" % (10 * n), body[hl:hl + 40 * n])
        for i in range(n):
            same_answer({"class": max(range(10), key=lambda k: probs[10 * i + k]),
                         "route": outs["route"]["data"][3 * i:3 * i + 3],
                         "probabilities": probs[10 * i:10 * i + 10]}, ref[50 + i],
                        "v2 binary[%d]" % i)
        # FP32 binary input.
        fp = struct.pack("<784f", *[v / 255.0 for v in imgs[60]])
        hdr = json.dumps({"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                                      "parameters": {"binary_data_size": len(fp)}}]}).encode()
        st, h, body = d.request("POST", "/v2/models/fashion_mnist/infer", hdr + fp,
                                {"Inference-Header-Content-Length": str(len(hdr))})
        j = json.loads(body)
        check(st == 200 and "inference-header-content-length" not in h, "v2 FP32 binary input")
        check(j["outputs"][1]["data"] == [ref[60]["class"]], "v2 FP32 binary class")

        # Metrics: text format and the counters these requests moved.
        st, h, body = d.request("GET", "/metrics")
        check(st == 200 and h["content-type"].startswith("text/plain; version=0.0.4"),
              "metrics content type")
        text = body.decode()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                check(re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+$', line)
                      is not None, "metrics line format: %r" % line)
        for name in ("cigt_requests_total", "cigt_request_duration_seconds_bucket",
                     "cigt_queue_duration_seconds_bucket", "cigt_batch_size_bucket",
                     "cigt_expert_group_size_bucket", "cigt_route_samples_total",
                     "cigt_macs_total", "cigt_dense_macs_total", "cigt_queue_depth",
                     "cigt_model_reloads_total", "cigt_build_info", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds"):
            check(re.search(r"^%s[ {]" % name, text, re.M) is not None, "metric %s" % name)
        m = d.metrics()
        samples = 1 + 1 + 1 + 1 + 1 + 1 + 20 + 5 + 2 + 5 + 4 + 1
        check(metric(m, "cigt_samples_total") == samples, "cigt_samples_total %s == %d" %
              (metric(m, "cigt_samples_total"), samples))
        check(metric(m, "cigt_dense_macs_total") == samples * DENSE_MACS, "dense macs total")
        check(metric(m, "cigt_macs_total") == samples * PATH_MACS, "macs total")
        routed = sum(v for k, v in m.items() if k.startswith('cigt_route_samples_total{layer="2"'))
        check(routed == samples, "route samples at the last layer add up")
        check(metric(m, "cigt_requests_total", endpoint="classify", code="200") == 7,
              "requests_total classify 200: %s" % metric(m, "cigt_requests_total",
                                                         endpoint="classify", code="200"))
        check(metric(m, "cigt_requests_total", endpoint="v2_infer", code="200") == 8,
              "requests_total v2_infer 200")
        check(metric(m, "cigt_build_info", version="0.1.0", model="fashion_mnist") == 1,
              "build_info")
        # The stages of those 15 requests (7 native, 8 OIP), all answered 200: Triton's
        # compute_input counts each request decoded once, queue each sample, compute_infer each
        # engine call, compute_output each answer encoded, and each took time; /metrics' stage
        # counters are the same numbers. Receiving, waiting for a worker, decoding and encoding
        # happen inside a request's life, one after the other.
        def stats():
            st, _, body = d.request("GET", "/v2/models/fashion_mnist/stats")
            return json.loads(body)["model_stats"][0] if st == 200 else None
        s = stats()
        inf = s["inference_stats"]
        check(s["execution_count"] >= 15, "one engine call or more per request: %s" % s)
        for key, stage, n in (("compute_input", "decode", 15), ("queue", "queue", samples),
                              ("compute_infer", "engine", s["execution_count"]),
                              ("compute_output", "encode", 15)):
            check(inf[key]["count"] == n and inf[key]["ns"] > 0,
                  "stats %s: %s, expected count %d and ns > 0" % (key, inf[key], n))
            lab = {"model": "fashion_mnist", "version": "1", "stage": stage}
            check(metric(m, "cigt_model_stage_runs_total", **lab) == inf[key]["count"]
                  and abs(metric(m, "cigt_model_stage_seconds_total", **lab) * 1e9
                          - inf[key]["ns"]) < 1, "metrics stage %s: runs %s, seconds %s vs %s"
                  % (stage, metric(m, "cigt_model_stage_runs_total", **lab),
                     metric(m, "cigt_model_stage_seconds_total", **lab), inf[key]))
        # The stages before decoding, in /metrics only: once per request decoded, with time.
        for stage in ("receive", "wait"):
            lab = {"model": "fashion_mnist", "version": "1", "stage": stage}
            check(metric(m, "cigt_model_stage_runs_total", **lab) == 15
                  and metric(m, "cigt_model_stage_seconds_total", **lab) > 0,
                  "metrics stage %s: runs %s, seconds %s" % (
                      stage, metric(m, "cigt_model_stage_runs_total", **lab),
                      metric(m, "cigt_model_stage_seconds_total", **lab)))
        before = sum(metric(m, "cigt_model_stage_seconds_total", model="fashion_mnist",
                            version="1", stage=k) for k in ("receive", "wait")) * 1e9
        check(inf["success"]["count"] == 15 and before + inf["compute_input"]["ns"]
              + inf["compute_output"]["ns"] < inf["success"]["ns"],
              "receive + wait + decode + encode within the requests' durations: %.0f ns "
              "before decoding, %s" % (before, inf))
        # A request refused while decoding is decoded (and counted) but never encoded.
        st, _, _ = d.post_json("/v2/models/fashion_mnist/infer", {"inputs": [{
            "name": "image", "shape": [1, 1, 27, 28], "datatype": "UINT8",
            "data": [0] * 756}]})
        s2 = stats()["inference_stats"]
        check(st == 400 and s2["compute_input"]["count"] == 16
              and s2["compute_input"]["ns"] > inf["compute_input"]["ns"]
              and s2["compute_output"] == inf["compute_output"] and s2["fail"]["count"] == 1,
              "a 400 counts in compute_input only: %s" % s2)
        # --healthcheck against the live server, and against a closed port.
        url = "http://127.0.0.1:%d/v2/health/ready" % d.port
        check(subprocess.run([CIGTD, "--healthcheck", url]).returncode == 0, "--healthcheck ok")
        check(subprocess.run([CIGTD, "--healthcheck", url.replace("ready", "nope")],
                             stderr=subprocess.DEVNULL).returncode == 1, "--healthcheck 404 -> 1")
    finally:
        d.stop()
    # Closed port.
    check(subprocess.run([CIGTD, "--healthcheck", "http://127.0.0.1:%d/" % d.port],
                         stderr=subprocess.DEVNULL).returncode == 1, "--healthcheck refused -> 1")
    # --check-config: good and bad configurations.
    cfgf = os.path.join(env["work"], "good.json")
    json.dump({"max_batch": 32, "workers": 1, "model": env["model"]}, open(cfgf, "w"))
    r = subprocess.run([CIGTD, "--config", cfgf, "--check-config"], capture_output=True, text=True)
    check(r.returncode == 0 and "max batch 32" in r.stdout, "--check-config good: %s" % r.stderr)
    for bad, why in (({"max_batch": 0}, "config: max_batch: expected an integer in [1, 4096]"),
                     ({"max_bach": 3}, "unknown key 'max_bach'"),
                     ({"model": "/nonexistent"}, "/nonexistent"),
                     ({"workers": "2"}, "config: workers: expected an integer in [0, 64]")):
        json.dump(bad, open(cfgf, "w"))
        r = subprocess.run([CIGTD, "--config", cfgf, "--check-config", "--model",
                            bad.get("model", env["model"])], capture_output=True, text=True)
        check(r.returncode != 0 and why in r.stderr, "--check-config rejects %s: %s" %
              (bad, r.stderr.strip()))
    r = subprocess.run([CIGTD, "--model", env["model"], "--max-delay-us", "-1", "--check-config"],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "max-delay-us" in r.stderr, "flag bounds checked")


def group_page(env):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium is not installed (apt-get install chromium)")
        return 77
    d = Daemon(env["model"])
    try:
        png = base64.b64encode(png_gray(env["images"][0], 28, 28)).decode()
        url = "http://127.0.0.1:%d/#png=%s" % (d.port, png)
        profile = tempfile.mkdtemp(dir=env["work"])
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=10000"]
        out = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=120)
        dom = out.stdout
        label = env["classes"][env["ref"][0]["class"]]
        check('id="label">%s<' % label in dom, "page shows the engine's label %r" % label)
        lit = re.findall(r'class="node lit" data-node="(\d+)-(\d+)"', dom)
        want = [(str(l), str(e)) for l, e in enumerate(env["ref"][0]["route"])]
        check(lit == want, "page lights the route %s (lit: %s)" % (want, lit))
        check("47.99%" in dom, "page shows compute saved")
        shot = os.path.join(env["work"], "page.png")
        subprocess.run(base + ["--window-size=1000,760", "--screenshot=" + shot, url],
                       capture_output=True, timeout=120)
        check(os.path.exists(shot) and os.path.getsize(shot) > 5000, "screenshot taken")
        print("screenshot:", shot)
        m = d.metrics()
        check(metric(m, "cigt_requests_total", endpoint="classify", code="200") >= 1,
              "the page's request reached the server")
    finally:
        d.stop()
    return 0
