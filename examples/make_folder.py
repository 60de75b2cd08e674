#!/usr/bin/python3
"""Writes a small colour image-folder dataset for `make example-folder` and the tests.

Fashion-MNIST images (Debian's dataset-fashion-mnist) are tinted with a colour per class plus a
random hue jitter, and saved in torchvision's ImageFolder layout, ROOT/{train,test}/<class>/,
alternately as JPEG (at 40x40, so the reader shrinks them) and PNG (at 28x28). With --synthetic
it draws coloured shapes instead (no dataset package needed; the integration test uses it).

usage: make_folder.py ROOT [--train N] [--test N] [--synthetic] [--classes K] [--seed S]
                      [--size S] [--jpeg-size S]
  --train N / --test N   images per class in each split (default 300 / 100)
  --size S               side of the PNGs (default 28)
  --jpeg-size S          side of the JPEGs (default 40)
"""
import argparse
import gzip
import os
import random
import sys

from PIL import Image

FMNIST = "/usr/share/datasets/fashion-mnist"
# Folder names (a class name is a folder name, so no '/').
NAMES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
TINTS = [(230, 60, 60), (60, 200, 60), (70, 90, 240), (230, 200, 40), (200, 60, 220),
         (40, 210, 210), (240, 140, 30), (150, 150, 150), (140, 90, 40), (250, 250, 250)]


def read_idx(path, ndim):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return dims, data[4 + 4 * ndim:]


def fmnist(split):
    prefix = "train" if split == "train" else "t10k"
    (n, h, w), px = read_idx(f"{FMNIST}/{prefix}-images-idx3-ubyte.gz", 3)
    _, lb = read_idx(f"{FMNIST}/{prefix}-labels-idx1-ubyte.gz", 1)
    for i in range(n):
        yield lb[i], Image.frombytes("L", (w, h), px[i * h * w:(i + 1) * h * w])


def synthetic(rng, label, size=28):
    """A filled shape per class (square, disc, bar...) in the class tint, on a dark field."""
    img = Image.new("L", (size, size), rng.randint(0, 30))
    px = img.load()
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    r = size * rng.uniform(0.25, 0.35)
    for y in range(size):
        for x in range(size):
            dx, dy = x - cx, y - cy
            inside = [abs(dx) < r and abs(dy) < r, dx * dx + dy * dy < r * r,
                      abs(dx) < r / 3 and abs(dy) < r, abs(dy) < r / 3 and abs(dx) < r,
                      abs(dx) + abs(dy) < r][label % 5]
            if inside:
                px[x, y] = 200 + rng.randint(0, 55)
    return img


def tint(img, label, rng):
    r, g, b = (max(0, min(255, c + rng.randint(-25, 25))) for c in TINTS[label])
    gray = img.convert("L")
    return Image.merge("RGB", [gray.point(lambda p, c=c: p * c // 255) for c in (r, g, b)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--jpeg-size", type=int, default=40)
    a = ap.parse_args()
    if not 2 <= a.classes <= 10:
        sys.exit("make_folder.py: --classes must be 2..10")
    rng = random.Random(a.seed)
    for split, per in (("train", a.train), ("test", a.test)):
        counts = [0] * a.classes
        source = ((k % a.classes, synthetic(rng, k % a.classes, a.size))
                  for k in range(per * a.classes)) if a.synthetic else fmnist(split)
        for label, img in source:
            if label >= a.classes or counts[label] >= per:
                if all(c >= per for c in counts):
                    break
                continue
            d = os.path.join(a.root, split, NAMES[label])
            os.makedirs(d, exist_ok=True)
            rgb = tint(img, label, rng)
            i = counts[label]
            if i % 2:
                if rgb.size != (a.size, a.size):
                    rgb = rgb.resize((a.size, a.size), Image.BILINEAR)
                rgb.save(os.path.join(d, f"{i:05d}.png"))
            else:
                if rgb.size != (a.jpeg_size, a.jpeg_size):
                    rgb = rgb.resize((a.jpeg_size, a.jpeg_size), Image.BILINEAR)
                rgb.save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
            counts[label] += 1
    print(f"{a.root}: {a.classes} classes, {a.train} train and {a.test} test images each "
          f"({'synthetic shapes' if a.synthetic else 'Fashion-MNIST'}, tinted, JPEG and PNG)")


if __name__ == "__main__":
    main()
