"""cigt_format.py -- an independent, stdlib-only reading of the cigt-1 model format.

Written from proto/model-format.md alone (not from the C sources), as the shared base of the
reference tools in this directory:

  * parse_architecture(): validates the architecture JSON (spec section 2), fills in defaults and
    infers every activation shape, every tensor name/shape (section 4) and the MACs (section 3),
    residual blocks, `globalavgpool` and router op chains included;
  * read_model(): a strict safetensors reader enforcing the container rules and limits of
    section 1 and the exact tensor set of section 4;
  * parse_operating_points(): the operating-point table of section 6, fully validated;
  * read_idx_images() / read_idx_labels(): gzip'd IDX readers for the Fashion-MNIST test set.

Tensors are returned as flat array('f') in host byte order (row-major, as stored).
"""

import array
import gzip
import json
import math
import re
import struct
import sys

FORMAT = "cigt-1"
MAX_HEADER = 16 * 1024 * 1024
MAX_TENSORS = 4096
MAX_NAME = 95
MAX_DIMS = 4


class FormatError(ValueError):
    """A model file or architecture that violates the cigt-1 spec."""


# ----------------------------------------------------------------------------------------------
# Architecture (spec section 2)
# ----------------------------------------------------------------------------------------------

def _is_int(v):
    # JSON true/false arrive as bool, a subclass of int: never accept them as integers.
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v, what, lo=None, hi=None):
    if not _is_int(v):
        raise FormatError("%s: expected an integer, got %r" % (what, v))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FormatError("%s: %d out of range [%s, %s]" % (what, v, lo, hi))
    return v


def _num(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise FormatError("%s: expected a finite number, got %r" % (what, v))
    return float(v)


def _pair(v, what, lo):
    """`kernel`, `stride`, `padding`, `pool`: an integer or [h, w]."""
    if isinstance(v, list):
        if len(v) != 2:
            raise FormatError("%s: expected an integer or [h, w], got %r" % (what, v))
        return (_int(v[0], what, lo), _int(v[1], what, lo))
    x = _int(v, what, lo)
    return (x, x)


def _keys(obj, allowed, required, what):
    if not isinstance(obj, dict):
        raise FormatError("%s: expected an object" % what)
    for k in obj:
        if k not in allowed:
            raise FormatError("%s: unknown key %r" % (what, k))
    for k in required:
        if k not in obj:
            raise FormatError("%s: missing key %r" % (what, k))


class Op:
    """One op of an expert's (or a router's) chain, with its resolved parameters and shapes.

    A `residual` block carries its branches in `main` and `shortcut` (lists of Op, indexed by j
    within the branch); its `tensors` are its branches' with the suffixes `main.{j}.{leaf}` and
    `shortcut.{j}.{leaf}`, main branch first; its MACs are the sum of its branches'.
    """

    def __init__(self, index, kind):
        self.index = index
        self.type = kind
        self.p = {}              # resolved parameters (defaults applied)
        self.in_shape = None     # (C, H, W)
        self.out_shape = None
        self.tensors = []        # [(suffix, shape)] in the spec's order
        self.macs = 0
        self.main = []           # residual: the main branch's ops
        self.shortcut = []       # residual: the shortcut's ops ([] = identity)


class Router:
    def __init__(self, layer):
        self.layer = layer
        self.ops = []            # op chain run on the layer output before the pool (Op)
        self.pool = None         # (ph, pw)
        self.hidden = None
        self.eps = 1e-5
        self.momentum = 0.1
        self.in_shape = None     # (C, H, W) of the layer output
        self.s_shape = None      # (C, H, W) after the op chain (= in_shape without one)
        self.P = None            # flattened pooled size
        self.K = None            # experts of layer l+1
        self.tensors = []        # [(suffix, shape)]: ops.{i}.*, then fc1, bn, fc2
        self.macs = 0            # op chain + both linears


class Layer:
    def __init__(self, index):
        self.index = index
        self.experts = None
        self.ops = []
        self.router = None
        self.in_shape = None
        self.out_shape = None
        self.expert_macs = 0


class Architecture:
    def __init__(self):
        self.obj = None          # the JSON object as given (without `train`)
        self.name = None
        self.input = None        # (C, H, W)
        self.range = (0.0, 1.0)
        self.classes = []
        self.layers = []

    def tensor_specs(self):
        """[(name, shape)] of every tensor, in the order the spec says cigt writes them."""
        out = []
        for L in self.layers:
            for e in range(L.experts):
                for op in L.ops:
                    for suffix, shape in op.tensors:
                        out.append(("layers.%d.experts.%d.ops.%d.%s" % (L.index, e, op.index, suffix),
                                    shape))
            if L.router is not None:
                for suffix, shape in L.router.tensors:
                    out.append(("routers.%d.%s" % (L.index, suffix), shape))
        return out

    def op_of_tensor(self, name):
        """The Op (a branch's op inside a block) that owns tensor `name`, or None for a
        router's fc1/bn/fc2. Raises KeyError for a name the architecture does not imply."""
        parts = name.split(".")
        if parts[0] == "layers" and parts[2] == "experts" and parts[4] == "ops":
            ops, rest = self.layers[int(parts[1])].ops, parts[5:]
        elif parts[0] == "routers" and parts[2] == "ops":
            ops, rest = self.layers[int(parts[1])].router.ops, parts[3:]
        elif parts[0] == "routers":
            return None
        else:
            raise KeyError(name)
        op = ops[int(rest[0])]
        if len(rest) == 4:                # {i}.main|shortcut.{j}.{leaf}
            op = getattr(op, rest[1])[int(rest[2])]
        return op

    def route_macs(self, route):
        """MACs of one routed sample following `route` (one expert index per layer)."""
        total = 0
        for L, _ in zip(self.layers, route):
            total += L.expert_macs
            if L.router is not None:
                total += L.router.macs
        return total

    def dense_macs(self):
        return sum(L.expert_macs * L.experts + (L.router.macs if L.router else 0)
                   for L in self.layers)


_OP_KEYS = {
    # op type -> {key: default}; a default of None marks a required key
    "conv": {"out": None, "kernel": None, "stride": 1, "padding": 0, "bias": True},
    "batchnorm": {"eps": 1e-5, "momentum": 0.1},
    "relu": {},
    "maxpool": {"kernel": None, "stride": "kernel", "padding": 0},
    "avgpool": {"kernel": None, "stride": "kernel", "padding": 0},
    "flatten": {},
    "linear": {"out": None, "bias": True},
    "dropout": {"p": 0.5},
    "globalavgpool": {},
    "residual": {"main": None, "shortcut": [], "relu": True},
}
# What a residual branch and a router's op chain may hold (spec section 2).
_BRANCH_OPS = ("conv", "batchnorm", "relu", "maxpool", "avgpool", "dropout")
_ROUTER_OPS = ("conv", "batchnorm", "relu", "maxpool", "avgpool", "residual")
MAX_LAYER_ENTRIES = 256
MAX_LAYER_OPS = 2048      # a block counts as its branches' ops plus 3
MAX_BRANCH = 16
MAX_ROUTER_OPS = 16
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}\Z")


def _conv_out(n, k, s, p, what):
    o = (n + 2 * p - k) // s + 1 if n + 2 * p - k >= 0 else 0
    if o < 1:
        raise FormatError("%s: output size < 1 (in %d, kernel %d, stride %d, padding %d)"
                          % (what, n, k, s, p))
    return o


def _parse_chain(objs, shape, what, allowed, lo, hi):
    """An op chain (a branch, a router's ops): -> ([Op], out shape, MACs)."""
    if not isinstance(objs, list) or not lo <= len(objs) <= hi:
        raise FormatError("%s: expected a list of %d..%d ops" % (what, lo, hi))
    ops, macs = [], 0
    for j, oobj in enumerate(objs):
        op = _parse_op(oobj, j, shape, "%s[%d]" % (what, j), allowed)
        shape = op.out_shape
        macs += op.macs
        ops.append(op)
    return ops, shape, macs


def _op_count(op):
    """Ops toward a layer's 2,048: a block is its branches plus 3."""
    return len(op.main) + len(op.shortcut) + 3 if op.type == "residual" else 1


def _parse_op(obj, index, shape, what, allowed=None):
    if not isinstance(obj, dict) or "type" not in obj:
        raise FormatError("%s: expected an object with a \"type\"" % what)
    kind = obj["type"]
    if kind not in _OP_KEYS:
        raise FormatError("%s: unknown op type %r" % (what, kind))
    if allowed is not None and kind not in allowed:
        raise FormatError("%s: op %r not allowed here (expected one of %s)"
                          % (what, kind, ", ".join(allowed)))
    spec = _OP_KEYS[kind]
    _keys(obj, set(spec) | {"type"}, [k for k, d in spec.items() if d is None], what)
    op = Op(index, kind)
    op.in_shape = shape
    C, H, W = shape
    if kind == "conv":
        out = _int(obj["out"], what + ".out", 1)
        kh, kw = _pair(obj["kernel"], what + ".kernel", 1)
        sh, sw = _pair(obj.get("stride", 1), what + ".stride", 1)
        ph, pw = _pair(obj.get("padding", 0), what + ".padding", 0)
        bias = obj.get("bias", True)
        if not isinstance(bias, bool):
            raise FormatError("%s.bias: expected true or false" % what)
        oh = _conv_out(H, kh, sh, ph, what)
        ow = _conv_out(W, kw, sw, pw, what)
        op.p = dict(out=out, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), bias=bias)
        op.out_shape = (out, oh, ow)
        op.tensors = [("weight", [out, C, kh, kw])] + ([("bias", [out])] if bias else [])
        op.macs = oh * ow * out * C * kh * kw
    elif kind == "batchnorm":
        eps = _num(obj.get("eps", 1e-5), what + ".eps")
        mom = _num(obj.get("momentum", 0.1), what + ".momentum")
        if eps <= 0:
            raise FormatError("%s.eps: must be > 0" % what)
        op.p = dict(eps=eps, momentum=mom)
        op.out_shape = shape
        op.tensors = [(s, [C]) for s in ("weight", "bias", "running_mean", "running_var")]
    elif kind in ("relu", "dropout"):
        if kind == "dropout":
            p = _num(obj.get("p", 0.5), what + ".p")
            if not 0.0 <= p <= 0.999:
                raise FormatError("%s.p: must be in [0, 0.999]" % what)
            op.p = dict(p=p)
        op.out_shape = shape
    elif kind == "globalavgpool":
        op.out_shape = (C, 1, 1)
    elif kind == "residual":
        relu = obj.get("relu", True)
        if not isinstance(relu, bool):
            raise FormatError("%s.relu: expected true or false" % what)
        op.p = dict(relu=relu)
        op.main, mshape, mmacs = _parse_chain(obj["main"], shape, what + ".main", _BRANCH_OPS,
                                              1, MAX_BRANCH)
        op.shortcut, sshape, smacs = _parse_chain(obj.get("shortcut", []), shape,
                                                  what + ".shortcut", _BRANCH_OPS, 0,
                                                  MAX_BRANCH)
        if mshape != sshape:
            raise FormatError("%s: main branch gives %dx%dx%d, shortcut %dx%dx%d"
                              % ((what,) + tuple(mshape) + tuple(sshape)))
        op.out_shape = mshape
        op.macs = mmacs + smacs
        op.tensors = [("%s.%d.%s" % (branch, b.index, suffix), tshape)
                      for branch, ops in (("main", op.main), ("shortcut", op.shortcut))
                      for b in ops for suffix, tshape in b.tensors]
    elif kind in ("maxpool", "avgpool"):
        kh, kw = _pair(obj["kernel"], what + ".kernel", 1)
        sh, sw = _pair(obj["stride"], what + ".stride", 1) if "stride" in obj else (kh, kw)
        ph, pw = _pair(obj.get("padding", 0), what + ".padding", 0)
        op.p = dict(kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw))
        op.out_shape = (C, _conv_out(H, kh, sh, ph, what), _conv_out(W, kw, sw, pw, what))
    elif kind == "flatten":
        op.out_shape = (C * H * W, 1, 1)
    elif kind == "linear":
        out = _int(obj["out"], what + ".out", 1)
        bias = obj.get("bias", True)
        if not isinstance(bias, bool):
            raise FormatError("%s.bias: expected true or false" % what)
        op.p = dict(out=out, bias=bias)
        op.out_shape = (out, 1, 1)
        op.tensors = [("weight", [out, C * H * W])] + ([("bias", [out])] if bias else [])
        op.macs = C * H * W * out
    return op


def parse_architecture(obj, allow_train=False):
    """Validate an architecture object and resolve defaults and shapes.

    allow_train: accept (and drop) the `train` member a config file carries (models/README.md);
    section 2 lets a model file's architecture carry it too (readers ignore it).
    """
    if isinstance(obj, (str, bytes)):
        obj = json.loads(obj)
    if not isinstance(obj, dict):
        raise FormatError("architecture: expected a JSON object")
    obj = dict(obj)
    if allow_train:
        obj.pop("train", None)
    _keys(obj, {"name", "input", "classes", "layers"}, ["name", "input", "classes", "layers"],
          "architecture")
    A = Architecture()
    A.obj = obj
    if not isinstance(obj["name"], str) or not _NAME_RE.match(obj["name"]):
        raise FormatError("architecture.name: must match [A-Za-z0-9_.-]{1,63}")
    A.name = obj["name"]

    inp = obj["input"]
    _keys(inp, {"channels", "height", "width", "range"}, ["channels", "height", "width"], "input")
    A.input = tuple(_int(inp[k], "input." + k, 1, 4096) for k in ("channels", "height", "width"))
    if "range" in inp:
        r = inp["range"]
        if not isinstance(r, list) or len(r) != 2:
            raise FormatError("input.range: expected [lo, hi]")
        A.range = (_num(r[0], "input.range[0]"), _num(r[1], "input.range[1]"))

    cls = obj["classes"]
    if not isinstance(cls, list) or not 1 <= len(cls) <= 4096 \
            or not all(isinstance(c, str) for c in cls):
        raise FormatError("classes: expected 1..4096 strings")
    A.classes = list(cls)

    layers = obj["layers"]
    if not isinstance(layers, list) or not 1 <= len(layers) <= 16:
        raise FormatError("layers: expected 1..16 layers")
    shape = A.input
    for l, lobj in enumerate(layers):
        what = "layers[%d]" % l
        last = l == len(layers) - 1
        _keys(lobj, {"experts", "ops", "router"}, ["experts", "ops"], what)
        L = Layer(l)
        L.experts = _int(lobj["experts"], what + ".experts", 1, 64)
        if l == 0 and L.experts != 1:
            raise FormatError("layers[0].experts: must be 1")
        if not isinstance(lobj["ops"], list) or not 1 <= len(lobj["ops"]) <= MAX_LAYER_ENTRIES:
            raise FormatError(what + ".ops: expected a list of 1..%d entries" % MAX_LAYER_ENTRIES)
        L.in_shape = shape
        for i, oobj in enumerate(lobj["ops"]):
            op = _parse_op(oobj, i, shape, "%s.ops[%d]" % (what, i))
            shape = op.out_shape
            L.ops.append(op)
            L.expert_macs += op.macs
        if sum(_op_count(op) for op in L.ops) > MAX_LAYER_OPS:
            raise FormatError("%s.ops: more than %d ops (a block counts as its branches + 3)"
                              % (what, MAX_LAYER_OPS))
        L.out_shape = shape
        if last and "router" in lobj:
            raise FormatError(what + ".router: forbidden on the last layer")
        if not last and "router" not in lobj:
            raise FormatError(what + ".router: required on every layer but the last")
        A.layers.append(L)
    for l, lobj in enumerate(layers[:-1]):
        what = "layers[%d].router" % l
        robj = lobj["router"]
        _keys(robj, {"ops", "pool", "hidden", "bn_eps", "bn_momentum"}, ["pool", "hidden"], what)
        R = Router(l)
        C, H, W = A.layers[l].out_shape
        R.in_shape = (C, H, W)
        # the op chain first (the spec: "a reader checks ops before pool")
        ops_macs = 0
        if "ops" in robj:
            R.ops, R.s_shape, ops_macs = _parse_chain(robj["ops"], R.in_shape, what + ".ops",
                                                      _ROUTER_OPS, 1, MAX_ROUTER_OPS)
        else:
            R.s_shape = R.in_shape
        R.pool = _pair(robj["pool"], what + ".pool", 1)
        R.hidden = _int(robj["hidden"], what + ".hidden", 1)
        R.eps = _num(robj.get("bn_eps", 1e-5), what + ".bn_eps")
        R.momentum = _num(robj.get("bn_momentum", 0.1), what + ".bn_momentum")
        if R.eps <= 0:
            raise FormatError(what + ".bn_eps: must be > 0")
        C, H, W = R.s_shape
        hp, wp = H // R.pool[0], W // R.pool[1]
        if hp < 1 or wp < 1:
            raise FormatError("%s.pool: %r larger than the %dx%d feature map"
                              % (what, R.pool, H, W))
        R.P = C * hp * wp
        R.K = A.layers[l + 1].experts
        R.tensors = [("ops.%d.%s" % (op.index, suffix), tshape)
                     for op in R.ops for suffix, tshape in op.tensors] + \
                    [("fc1.weight", [R.hidden, R.P]), ("fc1.bias", [R.hidden])] + \
                    [("bn." + s, [R.hidden]) for s in ("weight", "bias", "running_mean",
                                                       "running_var")] + \
                    [("fc2.weight", [R.K, R.hidden]), ("fc2.bias", [R.K])]
        R.macs = ops_macs + R.P * R.hidden + R.hidden * R.K
        A.layers[l].router = R
    C, H, W = A.layers[-1].out_shape
    if (H, W) != (1, 1) or C != len(A.classes):
        raise FormatError("last layer: output %dx%dx%d is not a flat vector of %d logits"
                          % (C, H, W, len(A.classes)))
    return A


def load_config(path):
    """Read an architecture/config JSON file (a `train` member is allowed and dropped)."""
    with open(path, "rb") as f:
        return parse_architecture(json.loads(f.read().decode("utf-8")), allow_train=True)


# ----------------------------------------------------------------------------------------------
# Model file (spec sections 1 and 4)
# ----------------------------------------------------------------------------------------------

def _no_dup_pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError("header: duplicate key %r" % k)
        d[k] = v
    return d


class Model:
    def __init__(self):
        self.arch = None         # Architecture
        self.metadata = {}       # __metadata__ (strings)
        self.provenance = None   # parsed provenance JSON or None
        self.tensors = {}        # name -> (shape list, array('f') flat, host order)
        self.order = []          # names in data-offset order
        self.points = []         # operating points (section 6)


def read_model(path):
    """Read and fully validate a cigt-1 model file. Raises FormatError on any violation."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise FormatError("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER:
        raise FormatError("header length %d exceeds 16 MiB" % n)
    if 8 + n > len(blob):
        raise FormatError("header length %d runs past the end of the file" % n)
    try:
        text = blob[8:8 + n].decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_dup_pairs)
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError("header is not UTF-8 JSON: %s" % e)
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    data = memoryview(blob)[8 + n:]

    M = Model()
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError("__metadata__: missing or not a map of strings to strings")
    M.metadata = meta
    if meta.get("format") != FORMAT:
        raise FormatError("__metadata__.format: expected %r, got %r" % (FORMAT, meta.get("format")))
    if "architecture" not in meta:
        raise FormatError("__metadata__.architecture: missing")
    try:
        arch_obj = json.loads(meta["architecture"], object_pairs_hook=_no_dup_pairs)
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError("__metadata__.architecture: not JSON: %s" % e)
    M.arch = parse_architecture(arch_obj, allow_train=True)
    if "provenance" in meta:
        try:
            M.provenance = json.loads(meta["provenance"])
        except ValueError as e:
            raise FormatError("__metadata__.provenance: not JSON: %s" % e)

    if len(header) > MAX_TENSORS:
        raise FormatError("%d tensors (limit %d)" % (len(header), MAX_TENSORS))
    spans = []
    for name, ent in header.items():
        if len(name.encode("utf-8")) > MAX_NAME:
            raise FormatError("tensor name longer than %d bytes: %r" % (MAX_NAME, name))
        _keys(ent, {"dtype", "shape", "data_offsets"}, ["dtype", "shape", "data_offsets"],
              "tensor %r" % name)
        if ent["dtype"] != "F32":
            raise FormatError("tensor %r: dtype %r (only F32)" % (name, ent["dtype"]))
        shape = ent["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_DIMS \
                or not all(_is_int(d) and d >= 0 for d in shape):
            raise FormatError("tensor %r: bad shape %r" % (name, shape))
        offs = ent["data_offsets"]
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs) \
                or not 0 <= offs[0] <= offs[1]:
            raise FormatError("tensor %r: bad data_offsets %r" % (name, offs))
        count = 1
        for d in shape:
            count *= d
        if offs[1] - offs[0] != 4 * count:
            raise FormatError("tensor %r: data_offsets %r do not hold %d values"
                              % (name, offs, count))
        spans.append((offs[0], offs[1], name, shape))
    # Together the tensors must tile the data section exactly: no overlap, no hole, no tail.
    spans.sort()
    pos = 0
    for b, e, name, _ in spans:
        if b != pos:
            raise FormatError("tensor %r starts at %d, expected %d (%s)"
                              % (name, b, pos, "overlap" if b < pos else "hole"))
        pos = e
    if pos != len(data):
        raise FormatError("tensors cover %d bytes of a %d-byte data section" % (pos, len(data)))

    # Exactly the tensors the architecture implies, with the implied shapes.
    want = dict(M.arch.tensor_specs())
    for b, e, name, shape in spans:
        if name not in want:
            raise FormatError("unexpected tensor %r" % name)
        if list(shape) != list(want[name]):
            raise FormatError("tensor %r: shape %r, expected %r" % (name, shape, want[name]))
        vals = array.array("f")
        vals.frombytes(bytes(data[b:e]))
        if sys.byteorder == "big":
            vals.byteswap()
        for v in vals:
            if not math.isfinite(v):
                raise FormatError("tensor %r: non-finite value %r" % (name, v))
        M.tensors[name] = (list(shape), vals)
        M.order.append(name)
    missing = [k for k in want if k not in M.tensors]
    if missing:
        raise FormatError("missing tensor(s): %s" % ", ".join(missing[:5]))
    M.points = parse_operating_points(meta.get("operating_points"), M.arch)
    return M


# ----------------------------------------------------------------------------------------------
# Operating points (spec section 6)
# ----------------------------------------------------------------------------------------------

_POINT_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,30}\Z")
_SECOND_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}\Z")
_SHA_RE = re.compile(r"[0-9a-f]{64}\Z")


def parse_operating_points(text, arch):
    """[{name, thresholds, confidence, second, second_sha256, val_accuracy, mean_macs}] from the
    JSON text of __metadata__.operating_points (None: no table). Raises FormatError."""
    if text is None:
        return []
    try:
        pts = json.loads(text, object_pairs_hook=_no_dup_pairs)
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError("operating_points: not JSON: %s" % e)
    if not isinstance(pts, list) or len(pts) > 32:
        raise FormatError("operating_points: expected an array of at most 32 points")
    routers = len(arch.layers) - 1
    out, names = [], set()
    for i, p in enumerate(pts):
        what = "operating_points[%d]" % i
        _keys(p, {"name", "thresholds", "confidence", "second", "second_sha256",
                  "val_accuracy", "mean_macs"}, ["name", "thresholds", "val_accuracy",
                                                 "mean_macs"], what)
        if not isinstance(p["name"], str) or not _POINT_NAME_RE.match(p["name"]) \
                or p["name"] in names:
            raise FormatError("%s.name: bad or repeated %r" % (what, p["name"]))
        names.add(p["name"])
        t = p["thresholds"]
        if not isinstance(t, list) or len(t) != routers:
            raise FormatError("%s.thresholds: expected %d numbers" % (what, routers))
        t = [_num(v, what + ".thresholds") for v in t]
        if not all(0.0 <= v <= 1.0 for v in t):
            raise FormatError("%s.thresholds: outside [0, 1]: %r" % (what, t))
        c = _num(p.get("confidence", 0), what + ".confidence")
        if not 0.0 <= c <= 1.0:
            raise FormatError("%s.confidence: %r outside [0, 1]" % (what, c))
        second = p.get("second")
        sha = p.get("second_sha256")
        if c > 0 or second is not None or sha is not None:
            if not (isinstance(second, str) and _SECOND_RE.match(second)):
                raise FormatError("%s.second: bad %r" % (what, second))
            if not (isinstance(sha, str) and _SHA_RE.match(sha)):
                raise FormatError("%s.second_sha256: bad %r" % (what, sha))
            if not c > 0:
                raise FormatError("%s: a second model needs a confidence above 0" % what)
        acc = _num(p["val_accuracy"], what + ".val_accuracy")
        macs = _num(p["mean_macs"], what + ".mean_macs")
        if not 0.0 <= acc <= 1.0 or not macs > 0:
            raise FormatError("%s: val_accuracy or mean_macs out of range" % what)
        out.append({"name": p["name"], "thresholds": t, "confidence": c, "second": second,
                    "second_sha256": sha, "val_accuracy": acc, "mean_macs": macs})
    return out


# ----------------------------------------------------------------------------------------------
# Dataset (IDX, gzip'd)
# ----------------------------------------------------------------------------------------------

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TEST_IMAGES = FASHION_DIR + "/t10k-images-idx3-ubyte.gz"
TEST_LABELS = FASHION_DIR + "/t10k-labels-idx1-ubyte.gz"
TRAIN_IMAGES = FASHION_DIR + "/train-images-idx3-ubyte.gz"
TRAIN_LABELS = FASHION_DIR + "/train-labels-idx1-ubyte.gz"


def read_idx_images(path, limit=None):
    """-> (count, rows, cols, bytes): the first `limit` 8-bit images, row-major."""
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 0x00000803:
            raise FormatError("%s: bad IDX image magic 0x%08x" % (path, magic))
        if limit is not None:
            n = min(n, limit)
        raw = f.read(n * rows * cols)
    if len(raw) != n * rows * cols:
        raise FormatError("%s: truncated" % path)
    return n, rows, cols, raw


def fit_images(raw, n, rows, cols, height, width):
    """n row-major rows x cols images centre-cropped or zero-padded to height x width (no
    resampling: every pixel is a source pixel or 0). The crop/pad offset of each axis is
    (in - out) // 2 (negative: padding)."""
    out = bytearray(n * height * width)
    r0, c0 = (rows - height) // 2, (cols - width) // 2
    for i in range(n):
        src = raw[i * rows * cols:(i + 1) * rows * cols]
        for y in range(height):
            sy = y + r0
            if not 0 <= sy < rows:
                continue
            for x in range(width):
                sx = x + c0
                if 0 <= sx < cols:
                    out[(i * height + y) * width + x] = src[sy * cols + sx]
    return bytes(out)


def write_idx(directory, prefix, raw, n, rows, cols, labels):
    """Write DIR/{prefix}-images-idx3-ubyte.gz and DIR/{prefix}-labels-idx1-ubyte.gz."""
    import os
    os.makedirs(directory, exist_ok=True)
    with gzip.open(os.path.join(directory, prefix + "-images-idx3-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">IIII", 0x00000803, n, rows, cols) + bytes(raw))
    with gzip.open(os.path.join(directory, prefix + "-labels-idx1-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">II", 0x00000801, n) + bytes(labels))


def read_ppm(path):
    """-> (width, height, bytes HWC RGB) of a binary P6 PPM with maxval 255 (no comments)."""
    with open(path, "rb") as f:
        blob = f.read()
    parts = blob.split(None, 4)
    if len(parts) < 5 or parts[0] != b"P6" or parts[3] != b"255":
        raise FormatError("%s: not an 8-bit P6 PPM" % path)
    w, h = int(parts[1]), int(parts[2])
    # exactly one whitespace byte after maxval
    start = blob.index(b"255", len(parts[0]) + len(parts[1]) + len(parts[2])) + 4
    px = blob[start:]
    if len(px) != w * h * 3:
        raise FormatError("%s: %d pixel bytes, expected %d" % (path, len(px), w * h * 3))
    return w, h, px


def read_idx_labels(path, limit=None):
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic != 0x00000801:
            raise FormatError("%s: bad IDX label magic 0x%08x" % (path, magic))
        if limit is not None:
            n = min(n, limit)
        raw = f.read(n)
    if len(raw) != n:
        raise FormatError("%s: truncated" % path)
    return list(raw)
