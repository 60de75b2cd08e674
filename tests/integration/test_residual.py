#!/usr/bin/env python3
"""Residual trellises served end to end (issue 26): a random-weight CIFAR-10 ResNet-110 trellis
(models/cifar10_resnet110_trellis.json, random batch norm so folding is exercised) behind cigtd,
fed 32x32 colour PNGs and a 48x40 one (resized), answers compared with `cigt classify` (the
engine through the CLI) on class, route and MACs, over /v1/classify (PNG), the Open Inference
Protocol in JSON (UINT8 [N, 3, 32, 32]) and its binary extension; the per-request accounting
(macs, dense_macs, compute_saved) against `cigt info --json`; the route counters on /metrics.
Standard library only.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check  # noqa: E402

CONFIG = os.path.join(T.SRCDIR, "models", "cifar10_resnet110_trellis.json")


def png_rgb(px, w, h):
    """Minimal 8-bit RGB PNG encoder (px: h*w*3 bytes, row-major HWC)."""
    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    rows = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def images(n, w, h, seed):
    """Smooth random colour images (gradients plus noise), so routes differ between them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = [rng.uniform(-4, 4) for _ in range(9)]
        px = bytearray()
        for y in range(h):
            for x in range(w):
                for c in range(3):
                    v = 128 + a[c] * (x - w / 2) + a[3 + c] * (y - h / 2) + a[6 + c] * 20
                    px.append(max(0, min(255, int(v + rng.gauss(0, 12)))))
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


def main():
    work = tempfile.mkdtemp(prefix="cigt-residual-")
    d = None
    try:
        model = os.path.join(work, "cifar.safetensors")
        subprocess.run([T.CIGT, "init", CONFIG, "-o", model, "--seed", "3", "--random-bn"],
                       check=True, stdout=subprocess.DEVNULL)
        info = json.loads(subprocess.run([T.CIGT, "info", model, "--json"], capture_output=True,
                                         text=True, check=True).stdout)
        name, path_macs, dense = info["name"], info["path_macs"], info["dense_macs"]
        check(path_macs == 95339424 and dense == 156976512,
              "cigt info: %d / %d MACs" % (path_macs, dense))
        imgs = images(12, 32, 32, 7)
        files = []
        for i, px in enumerate(imgs):
            files.append(os.path.join(work, "%02d.png" % i))
            with open(files[-1], "wb") as f:
                f.write(png_rgb(px, 32, 32))
        big = images(1, 48, 40, 9)[0]
        files.append(os.path.join(work, "big.png"))
        with open(files[-1], "wb") as f:
            f.write(png_rgb(big, 48, 40))
        ref = classify(model, files)  # the engine through the CLI
        d = T.Daemon(model, "--workers", "2")
        routes = set()
        answers = {}
        for f in files:
            with open(f, "rb") as fh:
                st, _, body = d.request("POST", "/v1/classify", fh.read(),
                                        {"Content-Type": "image/png"})
            if not check(st == 200, "v1 PNG %s -> %d %r" % (os.path.basename(f), st, body[:200])):
                continue
            j = json.loads(body)
            answers[f] = j
            routes.add(tuple(j["route"]))
            check(j["macs"] == path_macs and j["dense_macs"] == dense,
                  "v1 %s accounting %s / %s" % (f, j["macs"], j["dense_macs"]))
            check(abs(j["compute_saved"] - (1 - path_macs / dense)) < 1e-3,
                  "v1 compute_saved %s" % j["compute_saved"])
            check((j["label"], j["route"], j["macs"]) == ref[f],
                  "v1 %s: %s %s %s, cigt classify says %s" % (
                      os.path.basename(f), j["label"], j["route"], j["macs"], ref[f]))
        check(len(answers) == len(files), "every PNG answered")
        # OIP JSON, a batch of the 32x32 images as UINT8 [N, 3, 32, 32] (CHW)
        n = 4
        data = []
        for px in imgs[:n]:
            data += chw(px, 32, 32)
        st, _, body = d.post_json("/v2/models/%s/infer" % name, {"inputs": [
            {"name": "image", "shape": [n, 3, 32, 32], "datatype": "UINT8", "data": data}]})
        if check(st == 200, "v2 JSON -> %d %r" % (st, body[:300])):
            j = json.loads(body)
            outs = {o["name"]: o for o in j["outputs"]}
            for i in range(n):
                a = answers.get(files[i])
                if a:
                    check(outs["class"]["data"][i] == a["class"]
                          and outs["route"]["data"][3 * i:3 * i + 3] == a["route"],
                          "v2 JSON [%d] agrees with v1" % i)
            check(outs["macs"]["data"] == [path_macs] * n, "v2 macs %s" % outs["macs"]["data"])
        # the binary extension
        pix = bytes(data)
        hdr = json.dumps({"inputs": [{"name": "image", "shape": [n, 3, 32, 32],
                                      "datatype": "UINT8",
                                      "parameters": {"binary_data_size": len(pix)}}],
                          "outputs": [{"name": "probabilities",
                                       "parameters": {"binary_data": True}},
                                      {"name": "class"}]}).encode()
        st, h, body = d.request("POST", "/v2/models/%s/infer" % name, hdr + pix,
                                {"Content-Type": "application/octet-stream",
                                 "Inference-Header-Content-Length": str(len(hdr))})
        if check(st == 200, "v2 binary -> %d" % st):
            hl = int(h.get("inference-header-content-length", 0))
            j = json.loads(body[:hl])
            probs = struct.unpack("<%df" % (10 * n), body[hl:hl + 40 * n])
            cls = {o["name"]: o for o in j["outputs"]}["class"]["data"]
            for i in range(n):
                best = max(range(10), key=lambda k: probs[10 * i + k])
                a = answers.get(files[i])
                check(best == cls[i] and (not a or cls[i] == a["class"]),
                      "v2 binary [%d]: argmax %d, class %d" % (i, best, cls[i]))
                check(abs(sum(probs[10 * i:10 * i + 10]) - 1) < 1e-4, "v2 binary probs sum")
        m = d.metrics()
        runs = sum(v for k, v in m.items() if k.startswith("cigt_route_samples_total{"))
        check(runs >= 3 * (len(files) + 2 * n), "route counters moved: %s" % runs)
        print("ok   %d PNGs and %d OIP samples through a ResNet-110 trellis; %d routes seen"
              % (len(files), 2 * n, len(routes)))
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
