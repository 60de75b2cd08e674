#!/usr/bin/python3
"""fit_data.py -- the first N Fashion-MNIST test images cropped or padded to another size.

Writes OUT/t10k-{images-idx3,labels-idx1}-ubyte.gz of grey HEIGHT x WIDTH images: each source
image centre-cropped or zero-padded (cigt_format.fit_images; no resampling), so a model of that
input size reads them as they are (`cigt eval --data OUT`: grey replicated to its channels,
spec section 3) and check_forward.py --images/--labels reads the same pixels. Standard library
only.

  fit_data.py OUT --size HEIGHT WIDTH [--images N] [--data DIR]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to write the IDX pair to (created)")
    ap.add_argument("--size", type=int, nargs=2, required=True, metavar=("HEIGHT", "WIDTH"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--data", default=cigt_format.FASHION_DIR, help="source IDX directory")
    a = ap.parse_args()
    h, w = a.size
    if a.images < 1 or not 1 <= h <= 4096 or not 1 <= w <= 4096:
        print("fit_data: --images must be >= 1 and the size in 1..4096", file=sys.stderr)
        return 2
    try:
        n, rows, cols, raw = cigt_format.read_idx_images(
            os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), a.images)
        labels = cigt_format.read_idx_labels(
            os.path.join(a.data, "t10k-labels-idx1-ubyte.gz"), n)
        cigt_format.write_idx(a.out, "t10k", cigt_format.fit_images(raw, n, rows, cols, h, w),
                              n, h, w, labels)
    except (cigt_format.FormatError, OSError) as e:
        print("fit_data: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
