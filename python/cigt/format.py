"""The cigt model file (proto/model-format.md), read and written without torch: a strict
safetensors reader that validates everything the C reader validates (src/model/safetensors.c,
arch.c, model.c, points.c; the operating points in cigt.points) and refuses a bad file with the
same one-line reason, the architecture's resolved shapes and canonical tensor list, and a writer
of float32 little-endian files. Only the standard library and numpy."""

import math
import os
import stat
import struct

import numpy as np

from . import points
from ._common import (MODEL_NAME_LEN, FormatError, _JSONError, _f32, _is_int, _is_num, _is_obj,
                      _loads, _trunc, dumps_json, model_name_ok)

FORMAT = "cigt-1"
MAX_HEADER = 16 << 20
MAX_TENSORS = 4096
MAX_FILE = 2 << 30
TENSOR_NAME_MAX = 96
NAME_MAX = MODEL_NAME_LEN + 1  # bytes with the terminating NUL, as C counts them
MAX_LAYERS = 16
MAX_EXPERTS = 64
MAX_OPS = 256  # entries of a layer's op chain (a residual block is one)
MAX_EXPANDED = 2048  # ops of one chain once every block counts as its branches plus 3
MAX_BRANCH = 16  # ops of a residual block's main or shortcut branch
MAX_ROUTER_OPS = 16  # entries of a router's own op chain
MAX_CLASSES = 4096
MAX_NORM_CHANNELS = 16
OP_COST_MAX = 1 << 40
OP_NAMES = ("conv", "batchnorm", "relu", "maxpool", "avgpool", "flatten", "linear", "dropout",
            "globalavgpool", "residual")
# Which ops a chain may hold (src/model/arch.c, kind_allowed): an expert's chain every kind, a
# residual block's branches and a router's chain only those that keep a feature map (a router's
# chain may hold blocks, a branch may not), and what the refusal lists for each.
FEATURE_OPS = ("conv", "batchnorm", "relu", "maxpool", "avgpool")
CHAINS = {
    "expert": (OP_NAMES, "conv, batchnorm, relu, maxpool, avgpool, globalavgpool, flatten, "
                         "linear, dropout or residual"),
    "branch": (FEATURE_OPS + ("dropout",), "conv, batchnorm, relu, maxpool, avgpool or dropout "
                                           "(a residual branch)"),
    "router": (FEATURE_OPS + ("residual",), "conv, batchnorm, relu, maxpool, avgpool or residual "
                                            "(a router's chain)"),
}


# ----------------------------------------------------------------------------- architecture
def _check_keys(obj, allowed, path):
    for k in obj:
        if k not in allowed:
            raise FormatError("%s: unknown key '%s'" % (path, k))


def _get_int(obj, key, default, required, lo, hi, path):
    if key not in obj:
        if required:
            raise FormatError("%s: missing key '%s'" % (path, key))
        return default
    v = obj[key]
    if not _is_int(v):
        raise FormatError("%s.%s: expected an integer" % (path, key))
    if v < lo or v > hi:
        raise FormatError("%s.%s: %d is out of range [%d, %d]" % (path, key, v, lo, hi))
    return v


def _get_num(obj, key, default, lo, hi, path):
    if key not in obj:
        return default
    v = obj[key]
    if not _is_num(v):
        raise FormatError("%s.%s: expected a number" % (path, key))
    x = float(v)
    if not math.isfinite(x) or x < lo or x > hi:
        raise FormatError("%s.%s: %g is out of range [%g, %g]" % (path, key, x, lo, hi))
    return x


def _get_pair(obj, key, default, required, lo, hi, path):
    v = obj.get(key)
    if isinstance(v, list):
        if len(v) != 2 or not _is_int(v[0]) or not _is_int(v[1]):
            raise FormatError("%s.%s: expected an integer or [h, w]" % (path, key))
        a, b = v
        if a < lo or a > hi or b < lo or b > hi:
            raise FormatError("%s.%s: [%d, %d] is out of range [%d, %d]" % (path, key, a, b,
                                                                           lo, hi))
        return a, b
    x = _get_int(obj, key, default, required, lo, hi, path)
    return x, x


def _get_bool(obj, key, default, path):
    if key not in obj:
        return default
    v = obj[key]
    if not isinstance(v, bool):
        raise FormatError("%s.%s: expected true or false" % (path, key))
    return v


def _window_out(n, k, s, p):
    span = n + 2 * p - k
    return None if span < 0 else span // s + 1


def _parse_chain(arr, path, ctx, lo, hi, shape, count):
    """An op chain (a list of lo..hi entries) -> (resolved ops, output shape). count is a
    one-element list: the ops the chain it belongs to holds so far with every residual block
    expanded (its ops, plus 3 for its markers, as the C reader counts them)."""
    if not isinstance(arr, list) or not lo <= len(arr) <= hi:
        raise FormatError("%s: expected an array of %d to %d ops" % (path, lo, hi))
    ops = []
    for i, jo in enumerate(arr):
        p = "%s[%d]" % (path, i)
        op = _parse_op(jo, p, ctx, shape, count)
        shape = op["out_shape"]
        if op["type"] == "batchnorm" and i > 0 and ops[-1]["type"] == "batchnorm":
            raise FormatError("%s: two batchnorms in a row" % p)
        ops.append(op)
    return ops, shape


def _shape_text(s):
    return "%dx%dx%d" % s


def _parse_residual(j, path, shape, count):
    """A residual block: main and shortcut chains on the block's input, added, then a ReLU
    when relu. Its macs and params are its branches'."""
    _check_keys(j, ("type", "main", "shortcut", "relu"), path)
    relu = _get_bool(j, "relu", True, path)
    if "main" not in j:
        raise FormatError("%s: missing key 'main'" % path)
    main, mo = _parse_chain(j["main"], path + ".main", "branch", 1, MAX_BRANCH, shape, count)
    count[0] += 1  # the SHORTCUT marker
    short, so = [], shape
    sc = j.get("shortcut")
    if "shortcut" in j and not (isinstance(sc, list) and not sc):
        short, so = _parse_chain(sc, path + ".shortcut", "branch", 0, MAX_BRANCH, shape, count)
    if mo != so:
        if short:
            raise FormatError("%s: the main branch outputs %s but the shortcut %s"
                              % (path, _shape_text(mo), _shape_text(so)))
        raise FormatError("%s: the main branch outputs %s but the identity shortcut passes the "
                          "input %s (give a shortcut chain, such as a 1x1 conv with the main "
                          "branch's stride, and a batchnorm)" % (path, _shape_text(mo),
                                                                 _shape_text(so)))
    count[0] += 1  # the ADD marker
    sub = main + short
    return {"type": "residual", "in": shape, "main": main, "shortcut": short, "relu": relu,
            "out_shape": mo, "macs": sum(o["macs"] for o in sub),
            "params": sum(o["params"] for o in sub)}


def _parse_op(j, path, ctx, shape, count):
    """One op dict -> resolved op (dict with kind, settings, in/out shapes, macs, params; a
    residual block also main and shortcut, lists of resolved ops, and relu)."""
    if not _is_obj(j):
        raise FormatError("%s: expected an object" % path)
    t = j.get("type")
    if not isinstance(t, str):
        raise FormatError("%s: missing string key 'type'" % path)
    if t not in OP_NAMES:
        raise FormatError("%s.type: unknown op '%s' (expected %s)" % (path, t,
                                                                     CHAINS["expert"][1]))
    allowed, expected = CHAINS[ctx]
    if t not in allowed:
        raise FormatError("%s.type: '%s' cannot go here (expected %s)" % (path, t, expected))
    if count[0] >= MAX_EXPANDED:
        raise FormatError("%s: more than %d ops once residual blocks are expanded"
                          % (path, MAX_EXPANDED))
    count[0] += 1
    if t == "residual":
        return _parse_residual(j, path, shape, count)
    c, h, w = shape
    op = {"type": t, "in": shape}
    o = shape
    if t == "conv":
        _check_keys(j, ("type", "out", "kernel", "stride", "padding", "bias"), path)
        op["out"] = _get_int(j, "out", 0, True, 1, 65536, path)
        op["kernel"] = _get_pair(j, "kernel", 0, True, 1, 1024, path)
        op["stride"] = _get_pair(j, "stride", 1, False, 1, 1024, path)
        op["padding"] = _get_pair(j, "padding", 0, False, 0, 1024, path)
        op["bias"] = _get_bool(j, "bias", True, path)
        (kh, kw), (sh, sw), (ph, pw) = op["kernel"], op["stride"], op["padding"]
        oh, ow = _window_out(h, kh, sh, ph), _window_out(w, kw, sw, pw)
        if oh is None or ow is None:
            raise FormatError("%s: kernel %dx%d does not fit the %dx%d input" % (path, kh, kw,
                                                                               h, w))
        o = (op["out"], oh, ow)
        per_out = c * kh * kw
        if per_out > OP_COST_MAX // (o[0] * oh * ow) or per_out > OP_COST_MAX // o[0]:
            raise FormatError("%s: more than 2^40 multiply-accumulates or parameters" % path)
        op["macs"] = oh * ow * o[0] * c * kh * kw
        op["params"] = o[0] * c * kh * kw + (o[0] if op["bias"] else 0)
    elif t == "batchnorm":
        _check_keys(j, ("type", "eps", "momentum"), path)
        op["eps"] = _get_num(j, "eps", 1e-5, 1e-12, 1.0, path)
        op["momentum"] = _get_num(j, "momentum", 0.1, 0.0, 1.0, path)
        op["params"] = 2 * c
    elif t in ("relu", "flatten", "globalavgpool"):
        _check_keys(j, ("type",), path)
        if t == "flatten":
            o = (c * h * w, 1, 1)
        elif t == "globalavgpool":
            o = (c, 1, 1)
    elif t in ("maxpool", "avgpool"):
        _check_keys(j, ("type", "kernel", "stride", "padding"), path)
        kh, kw = _get_pair(j, "kernel", 0, True, 1, 1024, path)
        sh, sw = _get_pair(j, "stride", 0, False, 0, 1024, path)
        ph, pw = _get_pair(j, "padding", 0, False, 0, 1024, path)
        sh, sw = sh or kh, sw or kw
        if 2 * ph > kh or 2 * pw > kw:
            raise FormatError("%s: padding must be at most half the kernel" % path)
        oh, ow = _window_out(h, kh, sh, ph), _window_out(w, kw, sw, pw)
        if oh is None or ow is None:
            raise FormatError("%s: kernel %dx%d does not fit the %dx%d input" % (path, kh, kw,
                                                                               h, w))
        op["kernel"], op["stride"], op["padding"] = (kh, kw), (sh, sw), (ph, pw)
        o = (c, oh, ow)
    elif t == "linear":
        _check_keys(j, ("type", "out", "bias"), path)
        op["out"] = _get_int(j, "out", 0, True, 1, 1 << 20, path)
        op["bias"] = _get_bool(j, "bias", True, path)
        n = c * h * w
        if n * op["out"] > OP_COST_MAX:
            raise FormatError("%s: more than 2^40 multiply-accumulates or parameters" % path)
        o = (op["out"], 1, 1)
        op["macs"] = n * op["out"]
        op["params"] = n * op["out"] + (op["out"] if op["bias"] else 0)
    elif t == "dropout":
        _check_keys(j, ("type", "p"), path)
        op["p"] = _get_num(j, "p", 0.5, 0.0, 0.999, path)
    if o[0] * o[1] * o[2] > (1 << 26):
        raise FormatError("%s: output %dx%dx%d is too large" % (path, o[0], o[1], o[2]))
    op.setdefault("macs", 0)
    op.setdefault("params", 0)
    op["out_shape"] = o
    return op


def _parse_router(j, path, shape, next_k):
    if not _is_obj(j):
        raise FormatError("%s: expected an object" % path)
    _check_keys(j, ("ops", "pool", "hidden", "bn_eps", "bn_momentum"), path)
    ops, s = [], shape
    if "ops" in j:  # checked before pool: the pool reads the chain's output
        ops, s = _parse_chain(j["ops"], path + ".ops", "router", 1, MAX_ROUTER_OPS, shape, [0])
    ph, pw = _get_pair(j, "pool", 0, True, 1, 4096, path)
    hidden = _get_int(j, "hidden", 0, True, 1, 65536, path)
    eps = _get_num(j, "bn_eps", 1e-5, 1e-12, 1.0, path)
    mom = _get_num(j, "bn_momentum", 0.1, 0.0, 1.0, path)
    c, h, w = s
    if ph > h or pw > w:
        raise FormatError("%s.pool: %dx%d is larger than the %s %dx%d"
                          % (path, ph, pw, "router chain's output" if ops else "layer output",
                             h, w))
    pooled = (c, h // ph, w // pw)
    p = pooled[0] * pooled[1] * pooled[2]
    return {"ops": ops, "chain_out": s, "pool": (ph, pw), "hidden": hidden, "bn_eps": eps,
            "bn_momentum": mom, "in": shape, "pooled": pooled, "out": next_k,
            "macs": sum(o["macs"] for o in ops) + p * hidden + hidden * next_k,
            "params": (sum(o["params"] for o in ops) + p * hidden + hidden + 2 * hidden
                       + hidden * next_k + next_k)}


def _parse_input(j, a):
    """input: channels/height/width, and either range [lo, hi] or per-channel mean/std (the
    torchvision convention: x = (pixel/255 - mean[c]) / std[c])."""
    _check_keys(j, ("channels", "height", "width", "range", "mean", "std"), "input")
    c = _get_int(j, "channels", 0, True, 1, 4096, "input")
    h = _get_int(j, "height", 0, True, 1, 4096, "input")
    w = _get_int(j, "width", 0, True, 1, 4096, "input")
    a["input"] = (c, h, w)
    a["range"] = (0.0, 1.0)
    a["mean"] = a["std"] = None
    if "range" in j:
        r = j["range"]
        if not isinstance(r, list) or len(r) != 2 or not _is_num(r[0]) or not _is_num(r[1]):
            raise FormatError("input.range: expected [lo, hi]")
        lo, hi = float(r[0]), float(r[1])
        if (not math.isfinite(lo) or not math.isfinite(hi) or abs(lo) > 1e6 or abs(hi) > 1e6
                or lo == hi):
            raise FormatError("input.range: [%g, %g] must be finite, distinct and within 1e6"
                              % (lo, hi))
        a["range"] = (_f32(lo), _f32(hi))
    # input.mean / input.std (the colour-input work's rules and wording, issue 15): arrays of one
    # number per channel (or one for all), both or neither, never with range.
    if "mean" in j or "std" in j:
        if "mean" not in j or "std" not in j:
            raise FormatError("input: 'mean' and 'std' go together")
        if "range" in j:
            raise FormatError("input: give either 'range' or 'mean' and 'std', not both")
        if c > MAX_NORM_CHANNELS:
            raise FormatError("input: mean/std describe at most %d channels, not %d"
                              % (MAX_NORM_CHANNELS, c))
        for k in ("mean", "std"):
            v = j[k]
            n = len(v) if isinstance(v, list) else 0
            if n != 1 and n != c:
                raise FormatError("input.%s: expected an array of %d number%s (one per channel)%s"
                                  % (k, c, "" if c == 1 else "s", "" if c == 1 else " or of 1"))
            vals = []
            for ch in range(c):
                x = v[0 if n == 1 else ch]
                if not _is_num(x):
                    raise FormatError("input.%s[%d]: expected a number" % (k, ch))
                x = float(x)
                ok = (math.isfinite(x) and abs(x) <= 1e3) if k == "mean" else 1e-6 <= x <= 1e3
                if not ok:
                    raise FormatError("input.%s[%d]: %g is outside %s"
                                      % (k, ch, x, "[-1000, 1000]" if k == "mean"
                                         else "[1e-6, 1000]"))
                vals.append(_f32(x))
            a[k] = tuple(vals)
    if c * h * w > (1 << 24):
        raise FormatError("input: %dx%dx%d is too large" % (c, h, w))


def parse_arch(root):
    """Validates an architecture (a dict, as parsed from JSON) as cigt_arch_from_json does and
    returns the resolved architecture: a dict with name, input (C, H, W), range or mean/std,
    classes, layers (experts, ops with shapes, router), path_macs, dense_macs, params, npaths,
    and 'json' (the dict given). Raises FormatError with the C reader's reason."""
    if not _is_obj(root):
        raise FormatError("architecture: expected a JSON object")
    _check_keys(root, ("name", "input", "classes", "layers", "train"), "architecture")
    a = {"json": root}
    name = root.get("name")
    if not isinstance(name, str):
        raise FormatError("name: missing string key 'name'")
    if not model_name_ok(name):
        raise FormatError("name: '%s' must be 1-63 characters of [A-Za-z0-9_.-]" % name)
    a["name"] = name
    inp = root.get("input")
    if not _is_obj(inp):
        raise FormatError("input: missing object key 'input'")
    _parse_input(inp, a)
    classes = root.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
        raise FormatError("classes: expected an array of 1 to %d labels" % MAX_CLASSES)
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not 1 <= len(c.encode()) <= 255:
            raise FormatError("classes[%d]: expected a label of 1 to 255 characters" % i)
    a["classes"] = list(classes)
    layers = root.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise FormatError("layers: expected an array of 1 to %d layers" % MAX_LAYERS)
    experts = []
    for l, jl in enumerate(layers):
        path = "layers[%d]" % l
        if not _is_obj(jl):
            raise FormatError("%s: expected an object" % path)
        _check_keys(jl, ("experts", "ops", "router"), path)
        experts.append(_get_int(jl, "experts", 0, True, 1, MAX_EXPERTS, path))
    if experts[0] != 1:
        raise FormatError("layers[0].experts: the first layer must have exactly 1 expert")
    shape = a["input"]
    a["layers"], a["path_macs"], a["dense_macs"], a["params"], a["npaths"] = [], 0, 0, 0, 1
    for l, jl in enumerate(layers):
        L = {"experts": experts[l], "in": shape, "router": None}
        L["ops"], shape = _parse_chain(jl.get("ops"), "layers[%d].ops" % l, "expert", 1, MAX_OPS,
                                       shape, [0])
        L["out"] = shape
        L["expert_macs"] = sum(op["macs"] for op in L["ops"])
        L["expert_params"] = sum(op["params"] for op in L["ops"])
        path = "layers[%d].router" % l
        if l + 1 < len(layers):
            if "router" not in jl:
                raise FormatError("%s: missing (every layer but the last needs a router)" % path)
            L["router"] = _parse_router(jl["router"], path, shape, experts[l + 1])
        elif "router" in jl:
            raise FormatError("%s: the last layer cannot have a router" % path)
        r = L["router"]
        a["path_macs"] += L["expert_macs"] + (r["macs"] if r else 0)
        a["dense_macs"] += L["experts"] * L["expert_macs"] + (r["macs"] if r else 0)
        a["params"] += L["experts"] * L["expert_params"] + (r["params"] if r else 0)
        a["npaths"] *= L["experts"]
        a["layers"].append(L)
    if shape[1] != 1 or shape[2] != 1 or shape[0] != len(a["classes"]):
        n = len(a["classes"])
        raise FormatError("layers[%d]: the last layer outputs %dx%dx%d but there are %d classes "
                          "(end with a linear of %d outputs)" % (len(layers) - 1, shape[0],
                                                                 shape[1], shape[2], n, n))
    return a


def parse_arch_text(text):
    """An architecture JSON text -> parse_arch(...); JSON errors are FormatError too."""
    try:
        root = _loads(text)
    except _JSONError as e:
        raise FormatError("architecture JSON: %s" % e) from None
    return parse_arch(root)


def _op_tensors(out, pre, op):
    """The tensors of one op (none for ops without parameters) under the name prefix pre."""
    c, h, w = op["in"]
    if op["type"] == "conv":
        kh, kw = op["kernel"]
        out.append((pre + ".weight", (op["out"], c, kh, kw), "weight"))
        if op["bias"]:
            out.append((pre + ".bias", (op["out"],), "bias"))
    elif op["type"] == "linear":
        out.append((pre + ".weight", (op["out"], c * h * w), "weight"))
        if op["bias"]:
            out.append((pre + ".bias", (op["out"],), "bias"))
    elif op["type"] == "batchnorm":
        for suf, role in (("weight", "bn_weight"), ("bias", "bn_bias"),
                          ("running_mean", "running_mean"), ("running_var", "running_var")):
            out.append(("%s.%s" % (pre, suf), (c,), role))


def _chain_tensors(out, base, ops):
    """The tensors of an op chain whose names start with base (".../ops"): entry i's under
    base.{i}, a residual block's main branch under base.{i}.main.{j}, then its shortcut under
    base.{i}.shortcut.{j}."""
    for i, op in enumerate(ops):
        pre = "%s.%d" % (base, i)
        if op["type"] != "residual":
            _op_tensors(out, pre, op)
            continue
        for branch in ("main", "shortcut"):
            for j, sub in enumerate(op[branch]):
                _op_tensors(out, "%s.%s.%d" % (pre, branch, j), sub)


def tensor_list(a):
    """The canonical tensors of a resolved architecture, in file order: a list of
    (name, shape tuple, role) with role weight, bias, bn_weight, bn_bias, running_mean or
    running_var (proto/model-format.md section 4)."""
    out = []
    for l, L in enumerate(a["layers"]):
        for e in range(L["experts"]):
            _chain_tensors(out, "layers.%d.experts.%d.ops" % (l, e), L["ops"])
        r = L["router"]
        if r is None:
            continue
        _chain_tensors(out, "routers.%d.ops" % l, r["ops"])
        p = r["pooled"][0] * r["pooled"][1] * r["pooled"][2]
        hd, k, pre = r["hidden"], r["out"], "routers.%d" % l
        out += [(pre + ".fc1.weight", (hd, p), "weight"), (pre + ".fc1.bias", (hd,), "bias"),
                (pre + ".bn.weight", (hd,), "bn_weight"), (pre + ".bn.bias", (hd,), "bn_bias"),
                (pre + ".bn.running_mean", (hd,), "running_mean"),
                (pre + ".bn.running_var", (hd,), "running_var"),
                (pre + ".fc2.weight", (k, hd), "weight"), (pre + ".fc2.bias", (k,), "bias")]
    return out


# ------------------------------------------------------------------------------------ files
def _shape_str(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _parse_entry(name, v, datalen):
    if len(name.encode()) >= TENSOR_NAME_MAX:
        raise FormatError("tensor name '%s...' is longer than %d bytes"
                          % (name.encode()[:40].decode(errors="ignore"), TENSOR_NAME_MAX - 1))
    if not _is_obj(v):
        raise FormatError("tensor '%s': expected an object" % name)
    for k in v:
        if k not in ("dtype", "shape", "data_offsets"):
            raise FormatError("tensor '%s': unknown key '%s'" % (name, k))
    dt, sh, off = v.get("dtype"), v.get("shape"), v.get("data_offsets")
    if not isinstance(dt, str):
        raise FormatError("tensor '%s': missing string 'dtype'" % name)
    if dt != "F32":
        raise FormatError("tensor '%s': dtype %s is not supported (F32 only)" % (name, dt))
    if not isinstance(sh, list) or len(sh) > 4:
        raise FormatError("tensor '%s': 'shape' must be an array of at most 4 dimensions" % name)
    numel = 1
    for i, d in enumerate(sh):
        if not _is_int(d) or d < 0 or d > (1 << 32):
            raise FormatError("tensor '%s': shape[%d] is not a valid dimension" % (name, i))
        numel *= d
        if numel > (1 << 40):
            raise FormatError("tensor '%s': shape product overflows" % name)
    if (not isinstance(off, list) or len(off) != 2 or not _is_int(off[0])
            or not _is_int(off[1])):
        raise FormatError("tensor '%s': 'data_offsets' must be [begin, end]" % name)
    b, en = off
    if b < 0 or en < b:
        raise FormatError("tensor '%s': data_offsets [%d, %d] are not ordered" % (name, b, en))
    if en > datalen:
        raise FormatError("tensor '%s': data_offsets end %d is past the %d data bytes "
                          "(file truncated?)" % (name, en, datalen))
    if en - b != numel * 4:
        raise FormatError("tensor '%s': %d data bytes for %d float32 values"
                          % (name, en - b, numel))
    return {"name": name, "shape": tuple(sh), "begin": b, "end": en}


class ModelFile:
    """A validated model file: .arch (parse_arch result), .architecture (its JSON text),
    .provenance (text or None), .metadata (the __metadata__ dict, the operating points' text
    included), .tensors (name -> float32 numpy array, canonical order), .operating_points (a
    list of cigt.points.OperatingPoint, empty when the file has none)."""

    def __init__(self, arch, architecture, provenance, metadata, tensors, operating_points=()):
        self.arch = arch
        self.architecture = architecture
        self.provenance = provenance
        self.metadata = metadata
        self.tensors = tensors
        self.operating_points = list(operating_points)


POINTS_KEY = "operating_points"


def _points_of(text, arch):
    """The operating points of a __metadata__ text, or FormatError as the C reader words it."""
    try:
        return points.parse(text, arch)
    except FormatError as e:
        raise FormatError("__metadata__.%s" % e) from None


def _load_buffer(buf):
    n = len(buf)
    if n < 8:
        raise FormatError("file is %d bytes, too short for the 8-byte header length" % n)
    hlen = struct.unpack("<Q", buf[:8])[0]
    if hlen < 2 or hlen > MAX_HEADER:
        raise FormatError("header length %d is not in [2, %d]" % (hlen, MAX_HEADER))
    if hlen > n - 8:
        raise FormatError("truncated: header length is %d bytes but only %d follow"
                          % (hlen, n - 8))
    datalen = n - 8 - hlen
    data = memoryview(buf)[8 + hlen:]
    try:
        root = _loads(bytes(buf[8:8 + hlen]))
    except _JSONError as e:
        raise FormatError("header is not valid JSON: %s" % e) from None
    if not _is_obj(root):
        raise FormatError("header is not a JSON object")
    meta = root.get("__metadata__")
    if not _is_obj(meta):
        raise FormatError("header has no __metadata__ object (not a cigt model)")
    for k, v in meta.items():
        if not isinstance(v, str):
            raise FormatError("__metadata__.%s: values must be strings" % k)
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise FormatError('__metadata__.format is %s, expected "%s"'
                          % ('"%s"' % fmt if fmt is not None else "missing", FORMAT))
    if "architecture" not in meta:
        raise FormatError("__metadata__.architecture is missing")
    try:
        arch = parse_arch_text(meta["architecture"])
    except FormatError as e:
        raise FormatError("__metadata__.architecture: %s" % _trunc(str(e), 200)) from None
    pts = _points_of(meta[POINTS_KEY], arch) if POINTS_KEY in meta else []
    prov = meta.get("provenance")
    ents = [(k, v) for k, v in root.items() if k != "__metadata__"]
    if len(ents) > MAX_TENSORS:
        raise FormatError("header lists %d tensors, more than %d" % (len(ents), MAX_TENSORS))
    ents = [_parse_entry(k, v, datalen) for k, v in ents]
    ents.sort(key=lambda e: e["begin"])
    pos = 0
    for i, e in enumerate(ents):
        if e["begin"] < pos:
            raise FormatError("tensors '%s' and '%s' overlap" % (ents[i - 1]["name"], e["name"]))
        if e["begin"] > pos:
            raise FormatError("data bytes %d..%d belong to no tensor" % (pos, e["begin"]))
        pos = e["end"]
    if pos != datalen:
        raise FormatError("%d bytes after the last tensor" % (datalen - pos))
    if arch["params"] > datalen // 4:
        raise FormatError("the architecture has %d parameters but the file holds %d bytes of "
                          "tensor data (missing tensors)" % (arch["params"], datalen))
    byname = {}
    for e in ents:
        byname.setdefault(e["name"], e)
    used, tensors = set(), {}
    for name, shape, role in tensor_list(arch):
        e = byname.get(name)
        if e is None:
            raise FormatError("missing tensor '%s'" % name)
        used.add(name)
        if e["shape"] != shape:
            raise FormatError("tensor '%s' has shape %s but the architecture needs %s"
                              % (name, _shape_str(e["shape"]), _shape_str(shape)))
        x = np.frombuffer(data[e["begin"]:e["end"]], dtype="<f4").reshape(shape)
        bad = ~np.isfinite(x.reshape(-1))
        if bad.any():
            raise FormatError("tensor '%s': value %d is not finite" % (name, int(np.argmax(bad))))
        if role == "running_var":
            neg = x.reshape(-1) < 0
            if neg.any():
                raise FormatError("tensor '%s': variance %d is negative"
                                  % (name, int(np.argmax(neg))))
        tensors[name] = x.astype(np.float32).copy()
    for e in ents:
        if e["name"] not in used:
            raise FormatError("unexpected tensor '%s' (not in the architecture)" % e["name"])
    return ModelFile(arch, meta["architecture"], prov, meta, tensors, pts)


def load_bytes(buf):
    """Validates a model file held in memory; returns a ModelFile or raises FormatError with
    the reason the C reader gives (cigt_model_load_buffer)."""
    try:
        return _load_buffer(buf)
    except FormatError as e:
        raise FormatError(_trunc(str(e), 256)) from None


def load(path):
    """Reads and validates the model file at path (ModelFile), or raises FormatError whose text
    is what `cigt info PATH` prints after 'cigt: PATH: ' (or after 'cigt: ' for I/O errors,
    which name the path themselves)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FormatError("%s: %s" % (path, e.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError("%s: not a regular file" % path)
        if st.st_size > MAX_FILE:
            raise FormatError("%s: %d bytes is over the %d limit" % (path, st.st_size, MAX_FILE))
        with os.fdopen(os.dup(fd), "rb") as f:
            buf = f.read()
    finally:
        os.close(fd)
    return load_bytes(buf)


def serialize(architecture, tensors, provenance=None, metadata=None, operating_points=None):
    """A model file's bytes: architecture (JSON text or dict, validated here), tensors (name ->
    array-like; exactly the architecture's tensors, any float dtype, stored as float32
    little-endian in canonical order), provenance (JSON text, dict or None), metadata (more
    __metadata__ strings, written as given; an operating_points text is validated),
    operating_points (a list of cigt.points.OperatingPoint or of dicts with the file's keys,
    written as cigt writes the table; an empty list writes none; not with a metadata
    operating_points). Raises FormatError for anything the C reader would refuse."""
    text = architecture if isinstance(architecture, str) else dumps_json(architecture)
    arch = parse_arch_text(text)
    if isinstance(provenance, (dict, list)):
        provenance = dumps_json(provenance)
    meta = {"format": FORMAT, "architecture": text}
    if provenance is not None:
        meta["provenance"] = str(provenance)
    if operating_points:
        if POINTS_KEY in (metadata or {}):
            raise FormatError("__metadata__.%s: given both as operating_points and in metadata"
                              % POINTS_KEY)
        try:
            meta[POINTS_KEY] = points.to_json(operating_points, arch)
        except FormatError as e:
            raise FormatError("__metadata__.%s" % e) from None
    for k, v in (metadata or {}).items():
        if k in meta or not isinstance(v, str):
            raise FormatError("__metadata__.%s: extra metadata must be new keys with string "
                              "values" % k)
        if k == POINTS_KEY:
            _points_of(v, arch)
        meta[k] = v
    want = tensor_list(arch)
    extra = set(tensors) - {n for n, _, _ in want}
    if extra:
        raise FormatError("unexpected tensor '%s' (not in the architecture)" % sorted(extra)[0])
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, shape, role in want:
        if name not in tensors:
            raise FormatError("missing tensor '%s'" % name)
        x = np.ascontiguousarray(np.asarray(tensors[name], dtype="<f4"))
        if tuple(x.shape) != shape:
            raise FormatError("tensor '%s' has shape %s but the architecture needs %s"
                              % (name, _shape_str(x.shape), _shape_str(shape)))
        flat = x.reshape(-1)
        bad = ~np.isfinite(flat)
        if bad.any():
            raise FormatError("tensor '%s': value %d is not finite" % (name, int(np.argmax(bad))))
        if role == "running_var" and (flat < 0).any():
            raise FormatError("tensor '%s': variance %d is negative"
                              % (name, int(np.argmax(flat < 0))))
        b = flat.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hdr = dumps_json(header).encode()
    hdr += b" " * ((-len(hdr)) % 8)  # keep the data 8-byte aligned, as cigt does
    return struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs)


def save(path, architecture, tensors, provenance=None, metadata=None, operating_points=None):
    """Writes serialize(...) to path atomically (a temporary file renamed over it)."""
    buf = serialize(architecture, tensors, provenance, metadata, operating_points)
    path = os.fspath(path)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(buf)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
