#!/usr/bin/python3
"""colour_images.py -- colour PNG test images for a colour model, for bench/run's scale section.

There is no CIFAR-10 on this machine, so the colour models are benchmarked on Fashion-MNIST
test images made colour: each centre-padded (or cropped) to the model's height and width (as
make_model.py --calibrate feeds the routers it calibrates, so routes spread alike), then every
channel scaled by its own random gain in [0.5, 1] (the channels differ). Writes

  DIR/images/<class>/NNNN.png  an image folder (`cigt bench --data DIR/images`), PER per class,
                               classes from the model's config, images in test-set order
  DIR/png-1/                   the same PNGs as wrk bodies (index.txt, bench/http/png.lua)

  colour_images.py CONFIG DIR [--per-class 30] [--seed 1]

Standard library only; the PNG encoder is request_bodies.py's.
"""

import argparse
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "reference"))
sys.path.insert(0, os.path.join(HERE, "http"))

import cigt_format  # noqa: E402
import request_bodies  # noqa: E402


def colour(gray, gains):
    """Grey pixels (bytes) -> interleaved RGB bytes, channel c scaled by gains[c]."""
    luts = [bytes(min(255, int(v * g + 0.5)) for v in range(256)) for g in gains]
    planes = [gray.translate(lut) for lut in luts]
    out = bytearray(len(gray) * 3)
    for c in range(3):
        out[c::3] = planes[c]
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the model's config (input size and classes)")
    ap.add_argument("dir")
    ap.add_argument("--per-class", type=int, default=30, help="images per class (default 30)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    inp, classes = cfg["input"], cfg["classes"]
    h, w = inp["height"], inp["width"]
    if inp["channels"] != 3:
        print("colour_images: %s has %d channels, not 3" % (a.config, inp["channels"]),
              file=sys.stderr)
        return 2
    n = a.per_class * len(classes)
    try:
        k, rows, cols, raw = cigt_format.read_idx_images(cigt_format.TEST_IMAGES, n)
    except (cigt_format.FormatError, OSError) as e:
        print("colour_images: %s" % e, file=sys.stderr)
        return 2
    if k < n:
        print("colour_images: only %d test images" % k, file=sys.stderr)
        return 2
    fitted = cigt_format.fit_images(raw, n, rows, cols, h, w)
    rng = random.Random(a.seed)
    for sub in ("images", "png-1"):
        shutil.rmtree(os.path.join(a.dir, sub), ignore_errors=True)
    bodies = os.path.join(a.dir, "png-1")
    os.makedirs(bodies)
    lines = []
    for i in range(n):
        gray = fitted[i * h * w:(i + 1) * h * w]
        rgb = colour(gray, [rng.uniform(0.5, 1.0) for _ in range(3)])
        png = request_bodies.png(rgb, w, h, 3)
        cls = os.path.join(a.dir, "images", classes[i % len(classes)])
        os.makedirs(cls, exist_ok=True)
        name = "%04d.png" % i
        for path in (os.path.join(cls, name), os.path.join(bodies, name)):
            with open(path, "wb") as f:
                f.write(png)
        lines.append(name)
    with open(os.path.join(bodies, "index.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("colour_images: %d %dx%d colour PNGs in %s" % (n, w, h, a.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
