#!/usr/bin/python3
"""make_model.py -- write a random cigt-1 model file with an independent safetensors writer.

Written from proto/model-format.md alone, so the C reader can be tested on files it did not
write itself. Standard library only (no torch/numpy): the same seed gives the same bytes on
every machine.

Weights: conv/linear/router-linear weights and biases U(-1/sqrt(fan_in), +1/sqrt(fan_in)) (the
torch default scale, so activations stay O(1)); every batch norm (expert and router) gets
non-trivial statistics: gamma U(0.5,1.5), beta U(-0.2,0.2), running_mean U(-0.2,0.2),
running_var U(0.5,1.5).

--calibrate N instead sets every router's batch-norm running statistics from the fc1 outputs
over the first N Fashion-MNIST *training* images (needs torch; uses check_forward.py), so routes
spread over the experts instead of nearly all samples taking one path. For a model whose input
is not 1x28x28 the grey images are centre-cropped or zero-padded to its height and width and
replicated to its channels.

Residual architectures (blocks, globalavgpool, router op chains) are written like any other:
every conv/linear inside a block or a router's op chain gets the fan-in scale, every batch norm
the statistics above, under the names of spec section 4 (`...ops.{i}.main.{j}.weight`,
`...ops.{i}.shortcut.{j}.`, `routers.{l}.ops.{i}.`).

Test options: --order writes the tensors in another order (readers must not depend on it),
--tie-routers makes every router's fc2 rows equal in pairs (2j+1 copies 2j) so the
lowest-index tie rule is exercised on every sample, --corrupt writes a deliberately invalid file.

  make_model.py CONFIG OUT [--seed S] [--calibrate N] [--order spec|reverse|random]
                [--tie-routers] [--no-pad] [--corrupt KIND]
"""

import argparse
import array
import json
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigt_format  # noqa: E402  (architecture parsing shared with check_forward.py)

CORRUPTIONS = [
    "header-too-long",   # header length > 16 MiB
    "header-past-eof",   # header length runs past the end of the file
    "bad-json",          # header is not JSON
    "no-metadata",       # no __metadata__
    "bad-format",        # __metadata__.format is not "cigt-1"
    "unknown-arch-key",  # architecture has an unknown key
    "dtype-f16",         # a tensor claims dtype F16
    "shape-mismatch",    # a tensor's shape differs from the architecture's
    "offsets-size",      # data_offsets span does not match 4*prod(shape)
    "overlap",           # two tensors overlap (and a byte is left at the end)
    "hole",              # a gap between two tensors
    "trailing",          # extra bytes after the last tensor
    "nan",               # a NaN value
    "inf",               # an infinite value
    "missing-tensor",    # one tensor left out
    "extra-tensor",      # one tensor too many
    "five-dims",         # a tensor with 5 dimensions
    "long-name",         # a tensor name of 96 bytes
]


def _uniform(rng, n, lo, hi):
    return [rng.uniform(lo, hi) for _ in range(n)]


def random_tensors(arch, seed, tie_routers=False):
    """-> {name: (shape, list of floats)} for every tensor the architecture implies."""
    rng = random.Random(seed)
    out = {}
    for name, shape in arch.tensor_specs():
        n = 1
        for d in shape:
            n *= d
        leaf = name.rsplit(".", 1)[1]
        # batch norm tensors (expert ops and router bn) vs. conv/linear tensors
        is_bn = ".bn." in name or _op_type(arch, name) == "batchnorm"
        if is_bn:
            lo, hi = {"weight": (0.5, 1.5), "bias": (-0.2, 0.2), "running_mean": (-0.2, 0.2),
                      "running_var": (0.5, 1.5)}[leaf]
            vals = _uniform(rng, n, lo, hi)
        else:
            fan_in = _fan_in(arch, name)
            b = 1.0 / math.sqrt(fan_in)
            vals = _uniform(rng, n, -b, b)
        out[name] = (shape, vals)
    if tie_routers:
        for L in arch.layers:
            if L.router is None:
                continue
            K, H = L.router.K, L.router.hidden
            w = out["routers.%d.fc2.weight" % L.index][1]
            bias = out["routers.%d.fc2.bias" % L.index][1]
            for j in range(1, K, 2):
                w[j * H:(j + 1) * H] = w[(j - 1) * H:j * H]
                bias[j] = bias[j - 1]
    return out


def _op_type(arch, name):
    op = arch.op_of_tensor(name)     # layers.{l}.experts.{e}.ops.{i}[.main|.shortcut.{j}].{leaf}
    return op.type if op is not None else None


def _fan_in(arch, name):
    parts = name.split(".")
    if parts[0] == "routers" and parts[2] in ("fc1", "fc2"):
        R = arch.layers[int(parts[1])].router
        return R.P if parts[2] == "fc1" else R.hidden
    op = arch.op_of_tensor(name)
    C, H, W = op.in_shape
    if op.type == "conv":
        return C * op.p["kernel"][0] * op.p["kernel"][1]
    return C * H * W


def _f32le(vals):
    a = array.array("f", vals)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def serialize(arch_obj, tensors, order, provenance=None, pad=True, corrupt=None):
    """Build the bytes of a safetensors file. `order`: tensor names in data order."""
    arch_obj = dict(arch_obj)
    meta = {"format": cigt_format.FORMAT, "architecture": json.dumps(arch_obj)}
    if provenance is not None:
        meta["provenance"] = json.dumps(provenance)
    tensors = dict(tensors)
    order = list(order)

    # Corruptions that change the content before the layout is computed.
    if corrupt == "bad-format":
        meta["format"] = "cigt-0"
    elif corrupt == "unknown-arch-key":
        arch_obj["colour"] = "blue"
        meta["architecture"] = json.dumps(arch_obj)
    elif corrupt in ("nan", "inf"):
        shape, vals = tensors[order[0]]
        vals = list(vals)
        vals[len(vals) // 2] = float("nan") if corrupt == "nan" else float("inf")
        tensors[order[0]] = (shape, vals)
    elif corrupt == "missing-tensor":
        order.pop(len(order) // 2)
    elif corrupt == "extra-tensor":
        tensors["layers.0.experts.0.ops.99.weight"] = ([2], [0.5, 0.25])
        order.append("layers.0.experts.0.ops.99.weight")
    elif corrupt == "long-name":
        name = "x" * 96
        tensors[name] = ([1], [0.0])
        order.append(name)

    header = {"__metadata__": meta}
    chunks = []
    pos = 0
    for name in order:
        shape, vals = tensors[name]
        raw = _f32le(vals)
        ent = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        header[name] = ent
        chunks.append(raw)
        pos += len(raw)
    first = header[order[0]]
    if corrupt == "dtype-f16":
        first["dtype"] = "F16"
    elif corrupt == "shape-mismatch":
        # same element count, different shape: only the architecture check can catch it
        first["shape"] = [int(first["data_offsets"][1] - first["data_offsets"][0]) // 4]
    elif corrupt == "five-dims":
        first["shape"] = list(first["shape"]) + [1] * (5 - len(first["shape"]))
    elif corrupt == "offsets-size":
        first["data_offsets"][1] -= 4
        header[order[1]]["data_offsets"][0] -= 4      # tiling intact, sizes no longer match
    elif corrupt == "overlap":
        # move the second tensor 4 bytes back onto the first (leaving a hole after it)
        b, e = header[order[1]]["data_offsets"]
        header[order[1]]["data_offsets"] = [b - 4, e - 4]
    elif corrupt == "hole":
        # leave 4 bytes between the first two tensors
        chunks.insert(1, b"\0\0\0\0")
        for name in order[1:]:
            header[name]["data_offsets"] = [o + 4 for o in header[name]["data_offsets"]]
    elif corrupt == "trailing":
        chunks.append(b"\0\0\0\0")

    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if corrupt == "bad-json":
        text = text[:-1]
    if pad:
        text += b" " * (-(8 + len(text)) % 8)   # data section starts 8-byte aligned
    n = len(text)
    if corrupt == "header-too-long":
        n = cigt_format.MAX_HEADER + 1
    data = b"".join(chunks)
    if corrupt == "header-past-eof":
        n = len(text) + len(data) + 1
    out = struct.pack("<Q", n) + text + data
    if corrupt == "no-metadata":
        h = dict(header)
        del h["__metadata__"]
        t = json.dumps(h, separators=(",", ":")).encode("utf-8")
        out = struct.pack("<Q", len(t)) + t + data
    return out


def calibrate(arch, tensors, n):
    """Router batch-norm statistics from n training images (torch, via check_forward.py)."""
    import check_forward
    M = cigt_format.Model()
    M.arch = arch
    M.tensors = {k: (list(s), array.array("f", v)) for k, (s, v) in tensors.items()}
    x, _ = check_forward.load_images(arch, n, cigt_format.TRAIN_IMAGES, cigt_format.TRAIN_LABELS,
                                     fit=True)
    check_forward.calibrate_routers(M, x)
    return {k: (s, list(v)) for k, (s, v) in M.tensors.items()}


def make_model(config_path, out_path, seed=1, order="spec", tie_routers=False, pad=True,
               corrupt=None, calibrate_n=0):
    """Write a random model; returns (Architecture, tensors dict) for self-tests."""
    arch = cigt_format.load_config(config_path)
    tensors = random_tensors(arch, seed, tie_routers)
    if calibrate_n:
        tensors = calibrate(arch, tensors, calibrate_n)
    names = [n for n, _ in arch.tensor_specs()]
    if order == "reverse":
        names.reverse()
    elif order == "random":
        random.Random(seed + 1).shuffle(names)
    prov = {"tool": "tests/reference/make_model.py", "seed": seed, "order": order,
            "tie_routers": tie_routers, "calibrate": calibrate_n}
    blob = serialize(arch.obj, tensors, names, prov, pad, corrupt)
    with open(out_path, "wb") as f:
        f.write(blob)
    return arch, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="architecture/config JSON (a `train` member is dropped)")
    ap.add_argument("out", help="model file to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="router BN statistics from N training images (needs torch)")
    ap.add_argument("--order", choices=["spec", "reverse", "random"], default="spec",
                    help="tensor order in the data section (default: the spec's order)")
    ap.add_argument("--tie-routers", action="store_true",
                    help="fc2 rows equal in pairs: odd experts only reachable by breaking the "
                         "lowest-index tie rule")
    ap.add_argument("--no-pad", action="store_true", help="do not pad the header with spaces")
    ap.add_argument("--corrupt", choices=CORRUPTIONS, help="write an invalid file of this kind")
    a = ap.parse_args()
    try:
        arch, tensors = make_model(a.config, a.out, a.seed, a.order, a.tie_routers,
                                   not a.no_pad, a.corrupt, a.calibrate)
    except (cigt_format.FormatError, OSError) as e:
        print("make_model: %s" % e, file=sys.stderr)
        return 2
    nparam = sum(len(v) for _, v in tensors.values())
    print("wrote %s: %s, %d tensors, %d parameters, seed %d%s"
          % (a.out, arch.name, len(tensors), nparam, a.seed,
             ", CORRUPT (%s)" % a.corrupt if a.corrupt else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
