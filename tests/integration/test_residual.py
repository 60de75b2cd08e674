#!/usr/bin/env python3
"""Residual trellises served end to end (issue 26): a random-weight CIFAR-10 ResNet-110 trellis
(models/cifar10_resnet110_trellis.json) written by tests/reference/make_model.py with every
batch norm random (folding exercised) and the routers' batch norm calibrated (--calibrate), so
that samples take different routes (at least 2 are required). Behind cigtd it is fed 32x32
colour images (Fashion-MNIST test images padded to 32x32 and tinted per channel, the kind of
input the routers were calibrated on) as PNG and JPEG bodies, and a 48x40 PNG (resized).
Answers are compared with `cigt classify` (the engine through the CLI) on class, route and
per-request MACs over /v1/classify, the Open Inference Protocol in JSON (UINT8 [N, 3, 32, 32])
and its binary extension; concurrent requests (batched: the daemon waits for batches to fill)
must give the single requests' answers; the accounting (macs, dense_macs, compute_saved)
against `cigt info --json`; the route counters on /metrics; the web page in headless chromium
(label, lit route, preview at 32x32) on a PNG of each of two routes. Needs /usr/bin/python3 with torch
(calibration) and PIL (JPEG encoding).
"""
import base64
import collections
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check  # noqa: E402

CONFIG = os.path.join(T.SRCDIR, "models", "cifar10_resnet110_trellis.json")
MAKE_MODEL = os.path.join(T.SRCDIR, "tests", "reference", "make_model.py")
TINTS = [(1.0, 1.0, 1.0), (1.0, 0.8, 0.6), (0.6, 0.9, 1.0), (0.9, 1.0, 0.7)]


def png_rgb(px, w, h):
    """Minimal 8-bit RGB PNG encoder (px: h*w*3 bytes, row-major HWC)."""
    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    rows = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def jpeg_rgb(px, w, h):
    from PIL import Image
    out = io.BytesIO()
    Image.frombytes("RGB", (w, h), bytes(px)).save(out, "JPEG", quality=90)
    return out.getvalue()


def images(n, w, h):
    """n Fashion-MNIST test images centred on a w x h black field, tinted: HWC RGB bytes."""
    out = []
    for i, g in enumerate(T.load_images(n)):
        tint = TINTS[i % len(TINTS)]
        px = bytearray(w * h * 3)
        y0, x0 = (h - 28) // 2, (w - 28) // 2
        for y in range(28):
            for x in range(28):
                o = ((y0 + y) * w + x0 + x) * 3
                for c in range(3):
                    px[o + c] = min(255, int(g[y * 28 + x] * tint[c]))
        out.append(bytes(px))
    return out


def classify(model, files):
    """`cigt classify`'s answer per file (its lines: FILE, label, probability, route a-b-c,
    MACs, tab-separated): {file: (label, route, macs)}."""
    r = subprocess.run([T.CIGT, "classify", model] + files, capture_output=True, text=True,
                       check=True)
    out = {}
    for line in r.stdout.splitlines():
        f, label, _, route, macs = line.split("\t")
        out[f] = (label, [int(x) for x in route.split("-")], int(macs))
    return out


def chw(px, w, h):
    return [px[(y * w + x) * 3 + c] for c in range(3) for y in range(h) for x in range(w)]


def post_image(d, f, conn=None):
    """POST the file f to /v1/classify -> (status, parsed answer or raw body)."""
    with open(f, "rb") as fh:
        body = fh.read()
    ctype = "image/jpeg" if f.endswith(".jpg") else "image/png"
    st, _, resp = d.request("POST", "/v1/classify", body, {"Content-Type": ctype}, conn=conn)
    return st, (json.loads(resp) if st == 200 else resp[:200])


def write_inputs(work):
    """The test images as files: 12 PNGs, 5 JPEGs (of other images), one 48x40 PNG.
    -> (files, 32x32 pixels of the PNGs in file order)."""
    imgs = images(17, 32, 32)
    files = []
    for i, px in enumerate(imgs):
        jpg = i >= 12
        files.append(os.path.join(work, "%02d.%s" % (i, "jpg" if jpg else "png")))
        with open(files[-1], "wb") as f:
            f.write(jpeg_rgb(px, 32, 32) if jpg else png_rgb(px, 32, 32))
    big = images(1, 48, 40)[0]
    files.append(os.path.join(work, "big.png"))
    with open(files[-1], "wb") as f:
        f.write(png_rgb(big, 48, 40))
    return files, imgs[:12]


def check_v1(d, files, ref, path_macs, dense, classes):
    """Every file alone over /v1/classify -> {file: answer}."""
    answers = {}
    for f in files:
        st, j = post_image(d, f)
        if not check(st == 200, "v1 %s -> %d %r" % (os.path.basename(f), st, j)):
            continue
        answers[f] = j
        check(j["macs"] == ref[f][2] == path_macs and j["dense_macs"] == dense,
              "v1 %s accounting %s / %s" % (f, j["macs"], j["dense_macs"]))
        check(abs(j["compute_saved"] - (1 - path_macs / dense)) < 1e-3,
              "v1 compute_saved %s" % j["compute_saved"])
        check((j["label"], j["route"], j["macs"]) == ref[f] and classes[j["class"]] == j["label"],
              "v1 %s: %s %s %s, cigt classify says %s" % (
                  os.path.basename(f), j["label"], j["route"], j["macs"], ref[f]))
    check(len(answers) == len(files), "every image answered")
    return answers


def check_concurrent(d, files, answers):
    """All files at once from 6 connections, three rounds: the single answers again, and the
    daemon batched some of them (batches fewer than samples). -> the number of batches."""
    m0 = d.metrics()
    got, errs, lock = [], [], threading.Lock()

    def worker(k):
        c = d.conn()
        try:
            for f in (files * 3)[k::6]:
                st, j = post_image(d, f, conn=c)
                with lock:
                    (got if st == 200 else errs).append((f, j))
        finally:
            c.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errs and len(got) == 3 * len(files), "concurrent: %d answers, errors %s" % (
        len(got), errs[:2]))
    for f, j in got:
        a = answers.get(f)
        check(a is not None and (j["class"], j["route"], j["macs"]) ==
              (a["class"], a["route"], a["macs"])
              and max(abs(p - q) for p, q in zip(j["probabilities"], a["probabilities"])) < 1e-5,
              "concurrent %s: %s %s, alone %s %s" % (os.path.basename(f), j["class"], j["route"],
                                                     a and a["class"], a and a["route"]))
    m1 = d.metrics()
    samples = T.metric(m1, "cigt_batch_size_sum") - T.metric(m0, "cigt_batch_size_sum")
    batches = T.metric(m1, "cigt_batch_size_count") - T.metric(m0, "cigt_batch_size_count")
    check(samples == 3 * len(files) and batches < samples,
          "concurrent requests batched: %d samples in %d batches" % (samples, batches))
    return batches


def check_oip(d, name, imgs, files, ref, path_macs):
    """A batch of the 32x32 PNGs' pixels as OIP UINT8 [N, 3, 32, 32] (CHW), JSON then binary."""
    n = len(imgs)
    data = []
    for px in imgs:
        data += chw(px, 32, 32)
    want_cls = [None] * n
    st, _, body = d.post_json("/v2/models/%s/infer" % name, {"inputs": [
        {"name": "image", "shape": [n, 3, 32, 32], "datatype": "UINT8", "data": data}]})
    if check(st == 200, "v2 JSON -> %d %r" % (st, body[:300])):
        outs = {o["name"]: o for o in json.loads(body)["outputs"]}
        for i in range(n):
            label, route, macs = ref[files[i]]
            want_cls[i] = outs["class"]["data"][i]
            check(outs["route"]["data"][3 * i:3 * i + 3] == route
                  and outs["macs"]["data"][i] == macs == path_macs,
                  "v2 JSON [%d]: route %s macs %s, cigt classify says %s %s" % (
                      i, outs["route"]["data"][3 * i:3 * i + 3], outs["macs"]["data"][i],
                      route, macs))
    pix = bytes(data)
    hdr = json.dumps({"inputs": [{"name": "image", "shape": [n, 3, 32, 32], "datatype": "UINT8",
                                  "parameters": {"binary_data_size": len(pix)}}],
                      "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                                  {"name": "class"}, {"name": "route"}, {"name": "macs"}]}
                     ).encode()
    st, h, body = d.request("POST", "/v2/models/%s/infer" % name, hdr + pix,
                            {"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(hdr))})
    if check(st == 200, "v2 binary -> %d" % st):
        hl = int(h.get("inference-header-content-length", 0))
        outs = {o["name"]: o for o in json.loads(body[:hl])["outputs"]}
        probs = struct.unpack("<%df" % (10 * n), body[hl:hl + 40 * n])
        for i in range(n):
            best = max(range(10), key=lambda k: probs[10 * i + k])
            cls = outs["class"]["data"][i]
            _, route, macs = ref[files[i]]
            check(best == cls and cls == want_cls[i]
                  and outs["route"]["data"][3 * i:3 * i + 3] == route
                  and outs["macs"]["data"][i] == macs,
                  "v2 binary [%d]: argmax %d, class %d, route %s, macs %s; cigt classify %s %s"
                  % (i, best, cls, outs["route"]["data"][3 * i:3 * i + 3],
                     outs["macs"]["data"][i], route, macs))
            check(abs(sum(probs[10 * i:10 * i + 10]) - 1) < 1e-4, "v2 binary probs sum")


def check_page(d, work, files, ref, path_macs, dense):
    """The web page in headless chromium on two PNGs of different routes: the engine's label,
    the route lit, compute saved, and the preview at the model's 32x32 (not 28x28)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP page: chromium is not installed (apt-get install chromium)")
        return 0
    byroute = {}
    for f in files:
        if f.endswith(".png") and "big" not in f:
            byroute.setdefault(tuple(ref[f][1]), f)
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + tempfile.mkdtemp(dir=work), "--virtual-time-budget=10000"]
    for route, f in sorted(byroute.items())[:2]:
        with open(f, "rb") as fh:
            url = "http://127.0.0.1:%d/#png=%s" % (d.port, base64.b64encode(fh.read()).decode())
        dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        what = "page, %s" % os.path.basename(f)
        check('id="label">%s<' % ref[f][0] in dom, "%s: label %r" % (what, ref[f][0]))
        lit = re.findall(r'class="node lit" data-node="(\d+)-(\d+)"', dom)
        check(lit == [(str(l), str(e)) for l, e in enumerate(route)],
              "%s: route %s lit (%s)" % (what, route, lit))
        check("%.2f%%" % (100 * (1 - path_macs / dense)) in dom, "%s: compute saved" % what)
        check(re.search(r'<canvas id="preview" width="32" height="32"', dom),
              "%s: preview at the model's 32x32" % what)
    return len(byroute)


def main():
    work = tempfile.mkdtemp(prefix="cigt-residual-")
    d = None
    try:
        model = os.path.join(work, "cifar.safetensors")
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, CONFIG, model, "--seed", "5",
                        "--calibrate", "64"], check=True, stdout=subprocess.DEVNULL)
        info = json.loads(subprocess.run([T.CIGT, "info", model, "--json"], capture_output=True,
                                         text=True, check=True).stdout)
        name, path_macs, dense = info["name"], info["path_macs"], info["dense_macs"]
        check(path_macs == 95339424 and dense == 156976512,
              "cigt info: %d / %d MACs" % (path_macs, dense))
        with open(CONFIG) as f:
            classes = json.load(f)["classes"]
        files, imgs = write_inputs(work)
        ref = classify(model, files)  # the engine through the CLI
        ref_routes = {tuple(r[1]) for r in ref.values()}
        check(len(ref_routes) >= 2, "calibrated routers: cigt classify sees %d routes"
              % len(ref_routes))
        # batches wait up to 20 ms to fill, so concurrent requests share them
        d = T.Daemon(model, "--workers", "2", "--max-batch", "8", "--max-delay-us", "20000",
                     "--eager-dispatch=false")
        answers = check_v1(d, files, ref, path_macs, dense, classes)
        seen = collections.Counter(tuple(j["route"]) for j in answers.values())
        routes = set(seen)
        check(len(routes) >= 2, "cigtd: %d routes seen" % len(routes))
        batches = check_concurrent(d, files, answers)
        check_oip(d, name, imgs, files, ref, path_macs)
        check_page(d, work, files, ref, path_macs, dense)
        m = d.metrics()
        runs = sum(v for k, v in m.items() if k.startswith("cigt_route_samples_total{"))
        check(runs >= 3 * (4 * len(files) + 2 * len(imgs)), "route counters moved: %s" % runs)
        print("ok   %d images (PNG, JPEG) alone and concurrently (%d batches), %d OIP samples "
              "through a ResNet-110 trellis; %d routes seen %s"
              % (len(files), batches, 2 * len(imgs), len(routes), sorted(seen.items())))
        d.stop()
        d = None
    finally:
        if d:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)
    if T.FAILURES:
        print("%d failures" % len(T.FAILURES))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
