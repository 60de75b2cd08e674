"""Datasets for the PyTorch side, as uint8 arrays (N, H, W, C) plus labels: IDX files (what
`cigt train --data DIR` reads, e.g. Debian's dataset-fashion-mnist) and image folders
(ROOT/<class>/*.png|jpg, torchvision's ImageFolder layout; class names sorted), images converted
to the model's input as cigt converts them. numpy, gzip and, for image files, PIL (Debian's
python3-pil)."""

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


def decode_image(path):
    """An image file -> uint8 (H, W, 1) for gray or (H, W, 3) for colour, as cigt decodes it:
    alpha composited over black, palettes expanded. PIL (python3-pil) reads the file."""
    from PIL import Image  # only image files need it

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA")
            mode = "RGBA"
        if mode in ("L", "1", "I", "I;16", "F"):
            return np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
        if mode in ("LA", "RGBA"):
            a = np.asarray(im, dtype=np.float64)
            c = a[..., :-1] * a[..., -1:] / 255.0
            return np.clip(np.floor(c + 0.5), 0, 255).astype(np.uint8)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _area_weights(n_in, n_out):
    """[n_out, n_in]: how much of source pixel i output pixel o covers (scale >= 1)."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        a0, a1 = o * s, o * s + s
        for i in range(int(a0), min(int(np.ceil(a1)), n_in)):
            w[o, i] = min(i + 1, a1) - max(i, a0)
    return w


def _bilinear_weights(n_in, n_out):
    """[n_out, n_in]: bilinear with pixel centres aligned (align_corners = False), clamped."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        f = min(max((o + 0.5) * s - 0.5, 0.0), n_in - 1)
        i0 = int(f)
        i1 = i0 + 1 if i0 + 1 < n_in else i0
        w[o, i0] += 1 - (f - i0)
        w[o, i1] += f - i0
    return w


def to_input(img, channels, height, width):
    """uint8 (H, W, C) -> uint8 (height, width, channels) by cigt's rule (proto/model-format.md
    section 3): gray replicated to three channels, colour to ITU-R BT.601 luma
    (0.299 R + 0.587 G + 0.114 B); resized by area averaging when neither side grows, else
    bilinearly with pixel centres aligned; rounded to the nearest integer."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    h0, w0, c0 = img.shape
    if c0 == channels:
        src = img.astype(np.float64)
    elif channels == 1:
        src = (np.float32(0.299) * img[..., 0:1].astype(np.float32)
               + np.float32(0.587) * img[..., 1:2].astype(np.float32)
               + np.float32(0.114) * img[..., 2:3].astype(np.float32)).astype(np.float64)
    else:
        src = np.repeat(img[..., :1], channels, axis=2).astype(np.float64)
    if (h0, w0) == (height, width):
        v = src
    elif w0 >= width and h0 >= height:
        wy, wx = _area_weights(h0, height), _area_weights(w0, width)
        v = np.einsum("oi,ijc,pj->opc", wy, src, wx)
        v /= np.outer(wy.sum(1), wx.sum(1))[..., None]
    else:
        wy, wx = _bilinear_weights(h0, height), _bilinear_weights(w0, width)
        v = np.einsum("oi,ijc,pj->opc", wy, src, wx)
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def load_image(path, channels, height, width):
    """An image file -> uint8 (height, width, channels), decoded and converted as cigt
    converts the images it classifies (decode_image, then to_input)."""
    return to_input(decode_image(path), channels, height, width)


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
