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
CIGT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm")  # what cigt's folder reader takes
_ORDER_SEED = 0xF01DE12  # src/io/folder.c ORDER_SEED: the fixed shuffle of a folder's images
_M64 = (1 << 64) - 1


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


class Rng:
    """cigt's generator (src/common/util.c): xoshiro256** seeded by splitmix64, and
    below(n), Lemire's unbiased multiply-shift; the same numbers as cigt_rng_* for a seed."""

    def __init__(self, seed):
        self.s = []
        x = seed & _M64
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & _M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & _M64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & _M64, 7) * 9) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        m = (self.next() >> 32) * n
        low = m & 0xFFFFFFFF
        if low < n:
            t = ((1 << 32) - n) % n
            while low < t:
                m = (self.next() >> 32) * n
                low = m & 0xFFFFFFFF
        return m >> 32


def _visible(d):
    """A directory's entries not starting with '.', in byte order: (dirs, files) as paths."""
    names = sorted((n for n in os.listdir(d) if not n.startswith(".")), key=os.fsencode)
    paths = [os.path.join(d, n) for n in names]
    return [p for p in paths if os.path.isdir(p)], [p for p in paths if not os.path.isdir(p)]


def folder_files(root):
    """The image files of an image folder in the order cigt reads them (src/io/folder.c):
    class folders in byte order (names starting with '.' ignored), every .png .jpg .jpeg .pgm
    .ppm file under each (any case; a folder's files, then its sub-folders, each in byte
    order), then the fixed pseudo-random shuffle cigt applies, so that the last N are the
    validation split `cigt train` holds out. -> (paths, labels, classes)."""
    classes = [os.path.basename(d) for d in _visible(root)[0]]
    if len(classes) < 2:
        raise ValueError("%s: an image folder needs at least 2 class folders, found %d"
                         % (root, len(classes)))
    files, labels = [], []

    def walk(d, label, depth):
        dirs, names = _visible(d)
        for p in names:
            b = os.path.basename(p)
            if any(len(b) > len(e) and b.lower().endswith(e) for e in CIGT_EXTENSIONS):
                files.append(p)
                labels.append(label)
        if depth < 8:
            for sub in dirs:
                walk(sub, label, depth + 1)

    for k, c in enumerate(classes):
        before = len(files)
        walk(os.path.join(root, c), k, 0)
        if len(files) == before:
            raise ValueError("%s: empty class folder" % os.path.join(root, c))
    order = list(range(len(files)))
    r = Rng(_ORDER_SEED)
    for i in range(len(files) - 1, 0, -1):
        j = r.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return [files[i] for i in order], [labels[i] for i in order], classes


def load_folder_split(root, channels, height, width, log=None):
    """An image folder read as `cigt train --data ROOT` reads it: ROOT/train when it exists,
    else ROOT itself, its images in cigt's order (folder_files), unreadable ones reported
    through log and skipped. -> (images uint8 (N, H, W, C), labels int64 (N,), classes, the
    folder read)."""
    d = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    paths, labels, classes = folder_files(d)
    xs, ys = [], []
    for p, k in zip(paths, labels):
        try:
            xs.append(load_image(p, channels, height, width))
        except Exception as e:  # PIL raises many kinds; a bad file is skipped, not fatal
            if log:
                log("skipping %s: %s" % (p, e))
            continue
        ys.append(k)
    if not xs:
        raise ValueError("%s: no readable image" % d)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes, d
