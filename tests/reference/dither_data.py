#!/usr/bin/python3
"""dither_data.py -- the first N Fashion-MNIST training images with every pixel moved by 1..M
grey levels, written as a gzip'd IDX pair that `cigt grad --data` and `check_train_step.py
--data` both read.

Why: max pooling has no unique gradient where a window holds two equal maxima, and real images
have many (flat black backgrounds, saturated areas: 128,489 of the first layer's positive
pooling windows for the first 125 images are exact ties). The float32 C step and the float64
reference then break the tie on rounding noise at the last bit, which depends on the GEMM
kernel (OpenBLAS's Haswell kernels on one machine, Sandybridge's on another), and the two
gradients differ by up to 1.2% of their scale through no fault of either. Dithering keeps the
images real (3% of the grey range at most) and makes such ties as rare as in any random input.

Each pixel p becomes p + d if p < 128, else p - d, with d uniform in 1..M from Python's
random.Random(seed): no clamping, so no new flat regions; the same seed gives the same bytes on
every machine.

  dither_data.py OUT_DIR [--data DIR] [--images N] [--max M] [--seed S]
"""

import argparse
import gzip
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to write the IDX pair to (created)")
    ap.add_argument("--data", default=cigt_format.FASHION_DIR, help="source IDX directory")
    ap.add_argument("--images", type=int, default=125)
    ap.add_argument("--max", type=int, default=8, help="largest shift in grey levels (1..64)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.images < 1 or not 1 <= a.max <= 64:
        print("dither_data: --images must be >= 1 and --max in 1..64", file=sys.stderr)
        return 2
    try:
        n, rows, cols, raw = cigt_format.read_idx_images(
            os.path.join(a.data, "train-images-idx3-ubyte.gz"), a.images)
        labels = cigt_format.read_idx_labels(
            os.path.join(a.data, "train-labels-idx1-ubyte.gz"), a.images)
    except (cigt_format.FormatError, OSError) as e:
        print("dither_data: %s" % e, file=sys.stderr)
        return 2
    if n != a.images or len(labels) != a.images:
        print("dither_data: the source holds only %d images" % n, file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    out = bytearray(raw)
    for i, p in enumerate(raw):
        d = rng.randint(1, a.max)
        out[i] = p + d if p < 128 else p - d
    os.makedirs(a.out, exist_ok=True)
    with gzip.open(os.path.join(a.out, "train-images-idx3-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">IIII", 0x00000803, n, rows, cols) + bytes(out))
    with gzip.open(os.path.join(a.out, "train-labels-idx1-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">II", 0x00000801, n) + bytes(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
