#!/usr/bin/python3
"""make_bodies.py OUTDIR [N] -- request bodies from the first N Fashion-MNIST test images for wrk:
  single.txt   one /v1/classify JSON body per line, one image each
  batch64.txt  one /v1/classify JSON body per line, 64 images each
  v2bin64/     Open Inference Protocol binary requests of 64 UINT8 images (NNN.bin), with
               index.txt lines "NNN.bin HEADER_LENGTH"
  png/         the same images as raw PNG files, index.txt lines "NNN.png 0"
Standard library only."""
import gzip
import json
import os
import struct
import sys
import zlib

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    raw = f.read(16 + 784 * n)
imgs = [raw[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)]
os.makedirs(os.path.join(out, "v2bin64"), exist_ok=True)
os.makedirs(os.path.join(out, "png"), exist_ok=True)
with open(os.path.join(out, "single.txt"), "w") as f:
    for im in imgs:
        f.write(json.dumps({"image": list(im)}, separators=(",", ":")) + "\n")
with open(os.path.join(out, "batch64.txt"), "w") as f:
    for b in range(0, n - 63, 64):
        f.write(json.dumps({"images": [list(im) for im in imgs[b:b + 64]]},
                           separators=(",", ":")) + "\n")
with open(os.path.join(out, "v2bin64", "index.txt"), "w") as idx:
    for k, b in enumerate(range(0, n - 63, 64)):
        pix = b"".join(imgs[b:b + 64])
        hdr = json.dumps({"inputs": [{"name": "image", "shape": [64, 1, 28, 28],
                                      "datatype": "UINT8",
                                      "parameters": {"binary_data_size": len(pix)}}],
                          "outputs": [{"name": "class"}, {"name": "route"}]}).encode()
        name = "%03d.bin" % k
        open(os.path.join(out, "v2bin64", name), "wb").write(hdr + pix)
        idx.write("%s %d\n" % (name, len(hdr)))


def png(px, w, h):
    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    rows = b"".join(b"\x00" + px[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


with open(os.path.join(out, "png", "index.txt"), "w") as idx:
    for k, im in enumerate(imgs):
        name = "%04d.png" % k
        open(os.path.join(out, "png", name), "wb").write(png(im, 28, 28))
        idx.write("%s 0\n" % name)
