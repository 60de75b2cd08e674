#!/usr/bin/python3
"""request_bodies.py -- bodies of real Fashion-MNIST test images for the wrk scripts of bench/run.

Writes one directory per (format, images per request), each with index.txt (one line per body:
FILE [INFERENCE_HEADER_LENGTH]) and the body files, consecutive test images in order:

  native_json-N  POST /v1/classify  {"image": [784 ints]}  (N = 1)  or {"images": [[...], ...]}
  oip_json-N     POST /v2/models/M/infer  {"inputs": [{"name": "image", "shape": [N,1,28,28],
                 "datatype": "UINT8", "data": [...]}]}
  oip_binary-N   the same with "parameters": {"binary_data_size": N*784} instead of "data",
                 then the raw pixels (Triton's binary tensor extension)
  png-1          one grayscale PNG (raw PNG bodies carry one image each)

  request_bodies.py OUTDIR [--images-per-request 1,64] [--bodies 200] [--formats ...]

Standard library only (the PNG encoder is the few lines below); the IDX reader is the
independent one in tests/reference/cigt_format.py.
"""

import argparse
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "reference"))

import cigt_format  # noqa: E402

FORMATS = ("native_json", "oip_json", "oip_binary", "png")


def png(pixels, w, h, channels=1):
    """A minimal 8-bit PNG, grayscale (channels 1) or RGB (3, pixels interleaved), filter 0 on
    every row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    row = w * channels
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(h))
    ctype = {1: 0, 3: 2}[channels]
    return b"\x89PNG\r\n\x1a\n" + \
        chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def body(fmt, imgs, rows, cols):
    """-> (bytes, inference header length or None)."""
    n = len(imgs)
    if fmt == "native_json":
        if n == 1:
            obj = {"image": list(imgs[0])}
        else:
            obj = {"images": [list(im) for im in imgs]}
        return json.dumps(obj, separators=(",", ":")).encode(), None
    shape = [n, 1, rows, cols]
    if fmt == "oip_json":
        obj = {"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8",
                           "data": [p for im in imgs for p in im]}]}
        return json.dumps(obj, separators=(",", ":")).encode(), None
    if fmt == "oip_binary":
        raw = b"".join(imgs)
        hdr = json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8",
                                      "parameters": {"binary_data_size": len(raw)}}]},
                         separators=(",", ":")).encode()
        return hdr + raw, len(hdr)
    if fmt == "png":
        if n != 1:
            raise ValueError("png bodies hold one image")
        return png(imgs[0], cols, rows), None
    raise ValueError("unknown format %r" % fmt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--images-per-request", default="1,64",
                    help="comma list (default 1,64; png only 1)")
    ap.add_argument("--bodies", type=int, default=200,
                    help="distinct bodies per directory (default 200)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--images", default=cigt_format.TEST_IMAGES, help="IDX images (.gz)")
    a = ap.parse_args()
    per = [int(v) for v in a.images_per_request.split(",") if v]
    fmts = [f for f in a.formats.split(",") if f]
    for f in fmts:
        if f not in FORMATS:
            ap.error("unknown format %r" % f)
    need = a.bodies * max(per)
    try:
        n, rows, cols, raw = cigt_format.read_idx_images(a.images, min(need, 10000))
    except (cigt_format.FormatError, OSError) as e:
        print("request_bodies: %s" % e, file=sys.stderr)
        return 2
    size = rows * cols
    images = [raw[i * size:(i + 1) * size] for i in range(n)]
    made = []
    for fmt in fmts:
        for k in per:
            if fmt == "png" and k != 1:
                continue
            d = os.path.join(a.outdir, "%s-%d" % (fmt, k))
            os.makedirs(d, exist_ok=True)
            lines = []
            for b in range(a.bodies):
                start = (b * k) % max(n - k + 1, 1)
                data, hlen = body(fmt, images[start:start + k], rows, cols)
                name = "%04d.body" % b
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                lines.append(name if hlen is None else "%s %d" % (name, hlen))
            with open(os.path.join(d, "index.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
            made.append(os.path.basename(d))
    print("request_bodies: %s in %s" % (", ".join(made), a.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
