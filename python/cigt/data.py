"""Datasets for the PyTorch side, as uint8 arrays (N, H, W, C) plus labels: IDX files (what
`cigt train --data DIR` reads, e.g. Debian's dataset-fashion-mnist) and image folders
(ROOT/<class>/*.png|jpg, torchvision's ImageFolder layout; class names sorted). numpy, gzip
and, for image folders, PIL (Debian's python3-pil)."""

import gzip
import os
import struct

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_idx(path):
    """One IDX file (gzip or plain) -> uint8 numpy array of its shape. ValueError if bad."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 8:
        raise ValueError("%s: not an IDX file of unsigned bytes" % path)
    nd = buf[3]
    if nd < 1 or len(buf) < 4 + 4 * nd:
        raise ValueError("%s: bad IDX header" % path)
    dims = struct.unpack(">%dI" % nd, buf[4:4 + 4 * nd])
    n = int(np.prod(dims))
    if len(buf) - 4 - 4 * nd != n:
        raise ValueError("%s: %d data bytes for shape %s" % (path, len(buf) - 4 - 4 * nd, dims))
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load_idx_dir(root, prefix="train", limit=None):
    """DIR/{prefix}-images-idx3-ubyte(.gz) and labels -> (images uint8 (N, H, W, 1), labels
    int64 (N,)), the first `limit` of them when given."""
    def find(kind):
        for suf in (".gz", ""):
            p = os.path.join(root, "%s-%s%s" % (prefix, kind, suf))
            if os.path.exists(p):
                return p
        raise FileNotFoundError("%s: no %s-%s(.gz)" % (root, prefix, kind))
    x = read_idx(find("images-idx3-ubyte"))
    y = read_idx(find("labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError("%s: images %s and labels %s do not match" % (root, x.shape, y.shape))
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x[..., None].copy(), y.astype(np.int64)


def image_folder_classes(root):
    """Sorted class folder names under root (ImageFolder's rule). ValueError when fewer than 2
    or a class folder has no image."""
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if len(classes) < 2:
        raise ValueError("%s: an image folder needs at least 2 class folders, found %d"
                         % (root, len(classes)))
    for c in classes:
        if not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(os.path.join(root, c))):
            raise ValueError("%s: class folder has no .png/.jpg image" % os.path.join(root, c))
    return classes


def load_image(path, channels, height, width):
    """An image file -> uint8 (height, width, channels): colour converted to gray with PIL's
    ITU-R BT.601 weights or gray replicated to three channels, resized bilinearly when its size
    differs."""
    from PIL import Image  # python3-pil; only image folders need it

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (width, height):
            im = im.resize((width, height), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a.reshape(height, width, channels)


def load_image_folder(root, channels, height, width, classes=None, log=None):
    """ROOT/<class>/*.png|jpg -> (images uint8 (N, H, W, C), labels int64 (N,), classes).
    A file that cannot be decoded is reported through log (a callable taking a line) with its
    path and skipped."""
    classes = classes or image_folder_classes(root)
    xs, ys = [], []
    for k, c in enumerate(classes):
        d = os.path.join(root, c)
        for f in sorted(os.listdir(d)):
            if not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            p = os.path.join(d, f)
            try:
                xs.append(load_image(p, channels, height, width))
            except Exception as e:  # PIL raises many kinds; a bad file is skipped, not fatal
                if log:
                    log("skipping %s: %s" % (p, e))
                continue
            ys.append(k)
    if not xs:
        raise ValueError("%s: no readable image" % root)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes
