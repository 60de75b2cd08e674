#!/usr/bin/python3
"""colour_folder.py -- an image folder of colour PPMs, one image per class, for a colour model.

Writes DIR/<class>/0.ppm (binary P6, 8-bit RGB) at the model's input height and width, one
image per class of the architecture, so `cigt eval --data DIR` reads them without resizing and
each dump record is known by its label alone (an image folder is read in an order of cigt's own,
proto/options.md; check_forward.py --folder puts the records back in class order). Images are
smooth random colour fields (per-channel gradients plus noise), so the three channels differ and
routes vary between images. Standard library only.

  colour_folder.py CONFIG DIR [--seed S]
"""

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402


def colour_images(n, height, width, seed):
    """n images as bytes, row-major HWC RGB."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = [rng.uniform(-96.0, 96.0) for _ in range(9)]
        px = bytearray()
        for y in range(height):
            for x in range(width):
                for c in range(3):
                    v = 128 + a[c] * (x / width - 0.5) + a[3 + c] * (y / height - 0.5) \
                        + a[6 + c] * 0.4 + rng.gauss(0, 20)
                    px.append(max(0, min(255, int(v))))
        out.append(bytes(px))
    return out


def write_folder(arch, directory, seed):
    C, H, W = arch.input
    if C != 3:
        raise cigt_format.FormatError("colour_folder: the model has %d channels, not 3" % C)
    for name, px in zip(arch.classes, colour_images(len(arch.classes), H, W, seed)):
        d = os.path.join(directory, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "0.ppm"), "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (W, H) + px)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="architecture/config JSON of a 3-channel model")
    ap.add_argument("out", help="directory to write DIR/<class>/0.ppm to (created)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    try:
        write_folder(cigt_format.load_config(a.config), a.out, a.seed)
    except (cigt_format.FormatError, OSError) as e:
        print("colour_folder: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
