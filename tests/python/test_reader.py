"""Both readers refuse the same bad files for the same reason: a small valid model is edited
into each kind of invalid state (container, header JSON, metadata, architecture, tensor entries,
data layout, values), and `cigt info FILE` (the C reader) and cigt.format.load (the Python
package) must both refuse it with the same one-line message. Also: the valid file loads in
both, and serialize() refuses what the C reader would refuse.
Run: CIGT=build/cigt PYTHONPATH=python /usr/bin/python3 tests/python/test_reader.py"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from cigt import format as cf
from cigt import points as cp

CIGT = os.environ.get("CIGT", "build/cigt")

ARCH = {
    "name": "tiny",
    "input": {"channels": 1, "height": 8, "width": 8, "range": [0.0, 1.0]},
    "classes": ["a", "b", "c"],
    "layers": [
        {"experts": 1, "ops": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"type": "batchnorm"}, {"type": "relu"},
                               {"type": "maxpool", "kernel": 2}],
         "router": {"pool": 4, "hidden": 5}},
        {"experts": 2, "ops": [{"type": "flatten"}, {"type": "linear", "out": 6},
                               {"type": "dropout", "p": 0.1}, {"type": "linear", "out": 3}]},
    ],
}


# Residual blocks (identity and 1x1-conv shortcuts, one without the ReLU), globalavgpool and a
# router op chain holding a block (proto/model-format.md section 2).
CONV = lambda out, k=3, **kw: dict({"type": "conv", "out": out, "kernel": k,  # noqa: E731
                                    "padding": k // 2}, **kw)
RES_ARCH = {
    "name": "tiny_res",
    "input": {"channels": 3, "height": 8, "width": 8},
    "classes": ["a", "b", "c"],
    "layers": [
        {"experts": 1,
         "ops": [CONV(4), {"type": "batchnorm"}, {"type": "relu"},
                 {"type": "residual", "main": [CONV(4), {"type": "batchnorm"}, {"type": "relu"},
                                               CONV(4, bias=False), {"type": "batchnorm"}]},
                 {"type": "residual", "main": [CONV(6, stride=2), {"type": "batchnorm"}],
                  "shortcut": [CONV(6, 1, stride=2), {"type": "batchnorm"}], "relu": False}],
         "router": {"ops": [CONV(4), {"type": "relu"},
                            {"type": "residual", "main": [CONV(4), {"type": "batchnorm"}],
                             "shortcut": []}],
                    "pool": 2, "hidden": 5}},
        {"experts": 2,
         "ops": [{"type": "residual", "main": [CONV(6), {"type": "dropout", "p": 0.2}]},
                 {"type": "globalavgpool"}, {"type": "linear", "out": 3}]},
    ],
}


def valid_parts(arch=ARCH):
    """(header dict, data bytes) of a valid tiny model with random tensors."""
    a = cf.parse_arch(arch)
    rng = np.random.default_rng(3)
    t = {n: rng.uniform(0.5, 1.5, s).astype(np.float32) for n, s, _ in cf.tensor_list(a)}
    buf = cf.serialize(arch, t, {"tool": "test"})
    hlen = struct.unpack("<Q", buf[:8])[0]
    return json.loads(buf[8:8 + hlen]), buf[8 + hlen:]


def pack(header, data):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def with_arch(edit, arch=ARCH):
    """A file whose architecture is arch after edit(arch_copy) (edit may return a text)."""
    h, d = valid_parts(arch)
    a = json.loads(json.dumps(arch))
    r = edit(a)
    h["__metadata__"]["architecture"] = r if isinstance(r, str) else json.dumps(a)
    return pack(h, d)


def with_res_arch(edit):
    return with_arch(edit, RES_ARCH)


def with_header(edit, arch=ARCH):
    h, d = valid_parts(arch)
    r = edit(h, d)
    return pack(*(r if r is not None else (h, d)))


def first_tensor(h):
    return next(k for k in h if k != "__metadata__")


def set_value(name, idx, value):
    def edit(h, d):
        b = h[name]["data_offsets"][0] + 4 * idx
        return h, d[:b] + struct.pack("<f", value) + d[b + 4:]
    return edit


def drop_tensor(name):
    def edit(h, d):
        b, e = h.pop(name)["data_offsets"]
        for k, v in h.items():
            if k != "__metadata__" and v["data_offsets"][0] >= e:
                v["data_offsets"] = [v["data_offsets"][0] - (e - b), v["data_offsets"][1] - (e - b)]
        return h, d[:b] + d[e:]
    return edit


def rename(old, new):
    def edit(h, d):
        h[new] = h.pop(old)
        return h, d
    return edit


def put(path, value):
    """edit for with_arch: set a nested key (list of keys/indices) to value."""
    def edit(a):
        o = a
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
    return edit


def delete(path):
    def edit(a):
        o = a
        for k in path[:-1]:
            o = o[k]
        del o[path[-1]]
    return edit


SHA = "0123456789abcdef" * 4
POINT = {"name": "p", "thresholds": [0.5], "val_accuracy": 0.9, "mean_macs": 1000}
SECOND = {"confidence": 0.5, "second": "thick", "second_sha256": SHA}


def with_points(points):
    """A file whose __metadata__.operating_points is points (a list, dumped as JSON, or a
    text). The tiny architecture has one router."""
    def edit(h, d):
        h["__metadata__"]["operating_points"] = (points if isinstance(points, str)
                                                 else json.dumps(points))
    return with_header(edit)


def point(**kw):
    """POINT with keys replaced (a value of None drops the key)."""
    o = dict(POINT, **kw)
    return {k: v for k, v in o.items() if v is not None}


def extra_tensor(h, d, name="zzz.extra"):
    h[name] = {"dtype": "F32", "shape": [2], "data_offsets": [len(d), len(d) + 8]}
    return h, d + b"\0" * 8


def many_blocks(a):
    """Layer 0 of RES_ARCH with 108 more blocks of 16 ReLUs, 19 ops each once expanded: the
    2,049th op falls in the main branch of the last of them."""
    blk = {"type": "residual", "main": [{"type": "relu"}] * 16}
    a["layers"][0]["ops"][3:3] = [blk] * 108


L0 = ["layers", 0, "ops"]
R0 = ["layers", 0, "router"]
B3 = L0 + [3]  # layer 0's first block (identity shortcut)
B4 = L0 + [4]  # its second (1x1-conv shortcut)
RB = R0 + ["ops", 2]  # the block in router 0's chain


CASES = [
    # container
    ("too short", lambda: b"\x05\0\0\0"),
    ("header length 0", lambda: struct.pack("<Q", 0) + b"{}"),
    ("header length over 16 MiB", lambda: struct.pack("<Q", (16 << 20) + 1) + b"{}"),
    ("truncated header", lambda: struct.pack("<Q", 100) + b'{"a": 1}'),
    ("header not an object", lambda: pack(b"[1, 2]", b"")),
    ("no __metadata__", lambda: pack(b'{"x": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}',
                                      b"\0" * 4)),
    ("metadata value not a string", lambda: with_header(
        lambda h, d: h["__metadata__"].update(provenance={"a": 1}))),
    ("format missing", lambda: with_header(lambda h, d: h["__metadata__"].pop("format") and None)),
    ("format wrong", lambda: with_header(lambda h, d: h["__metadata__"].update(format="cigt-2"))),
    ("architecture missing", lambda: with_header(
        lambda h, d: h["__metadata__"].pop("architecture") and None)),
    # architecture
    ("arch not an object", lambda: with_arch(lambda a: "[1]")),
    ("arch unknown key", lambda: with_arch(put(["version"], 2))),
    ("arch name missing", lambda: with_arch(delete(["name"]))),
    ("arch bad name", lambda: with_arch(put(["name"], "a b"))),
    ("input missing", lambda: with_arch(delete(["input"]))),
    ("input unknown key", lambda: with_arch(put(["input", "depth"], 3))),
    ("input channels 0", lambda: with_arch(put(["input", "channels"], 0))),
    ("input height real", lambda: with_arch(put(["input", "height"], 8.0))),
    ("input height missing", lambda: with_arch(delete(["input", "height"]))),
    ("input range equal", lambda: with_arch(put(["input", "range"], [0.5, 0.5]))),
    ("input range shape", lambda: with_arch(put(["input", "range"], [0.5]))),
    ("input too large", lambda: with_arch(put(["input", "channels"], 4096))),
    ("classes empty", lambda: with_arch(put(["classes"], []))),
    ("class label empty", lambda: with_arch(put(["classes", 1], ""))),
    ("layers empty", lambda: with_arch(put(["layers"], []))),
    ("layer 0 two experts", lambda: with_arch(put(["layers", 0, "experts"], 2))),
    ("experts 65", lambda: with_arch(put(["layers", 1, "experts"], 65))),
    ("layer unknown key", lambda: with_arch(put(["layers", 1, "gate"], 1))),
    ("ops empty", lambda: with_arch(put(["layers", 0, "ops"], []))),
    ("unknown op", lambda: with_arch(put(["layers", 0, "ops", 2, "type"], "gelu"))),
    ("op type missing", lambda: with_arch(put(["layers", 0, "ops", 2], {"kind": "relu"}))),
    ("op not an object", lambda: with_arch(put(["layers", 0, "ops", 2], "relu"))),
    ("conv out missing", lambda: with_arch(delete(["layers", 0, "ops", 0, "out"]))),
    ("conv unknown key", lambda: with_arch(put(["layers", 0, "ops", 0, "groups"], 2))),
    ("conv kernel too big", lambda: with_arch(put(["layers", 0, "ops", 0, "kernel"], 11))),
    ("conv kernel pair bad", lambda: with_arch(put(["layers", 0, "ops", 0, "kernel"], [3]))),
    ("conv stride pair out of range", lambda: with_arch(put(["layers", 0, "ops", 0, "stride"],
                                                             [1, 0]))),
    ("conv bias not bool", lambda: with_arch(put(["layers", 0, "ops", 0, "bias"], 1))),
    ("batchnorm eps 0", lambda: with_arch(put(["layers", 0, "ops", 1, "eps"], 0))),
    ("batchnorm momentum text", lambda: with_arch(put(["layers", 0, "ops", 1, "momentum"], "x"))),
    ("two batchnorms", lambda: with_arch(put(["layers", 0, "ops", 2], {"type": "batchnorm"}))),
    ("pool padding over half", lambda: with_arch(put(["layers", 0, "ops", 3, "padding"], 2))),
    ("dropout p 1", lambda: with_arch(put(["layers", 1, "ops", 2, "p"], 1.0))),
    ("linear out 0", lambda: with_arch(put(["layers", 1, "ops", 3, "out"], 0))),
    ("router missing", lambda: with_arch(delete(["layers", 0, "router"]))),
    ("router on last layer", lambda: with_arch(put(["layers", 1, "router"],
                                                   {"pool": 1, "hidden": 2}))),
    ("router pool too large", lambda: with_arch(put(["layers", 0, "router", "pool"], 5))),
    ("router unknown key", lambda: with_arch(put(["layers", 0, "router", "relu"], True))),
    ("router bn_eps out of range", lambda: with_arch(put(["layers", 0, "router", "bn_eps"], 2))),
    ("wrong class count", lambda: with_arch(put(["classes"], ["a", "b"]))),
    # tensor entries
    ("tensor name too long", lambda: with_header(rename("routers.0.fc2.bias", "x" * 100))),
    ("tensor unknown key", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(offset=0))),
    ("tensor not an object", lambda: with_header(
        lambda h, d: h.update({first_tensor(h): [1]}))),
    ("dtype F16", lambda: with_header(lambda h, d: h[first_tensor(h)].update(dtype="F16"))),
    ("dtype missing", lambda: with_header(lambda h, d: h[first_tensor(h)].pop("dtype") and None)),
    ("five dimensions", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(shape=[1, 1, 1, 1, 36]))),
    ("negative dimension", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(shape=[-4, 1, 3, 3]))),
    ("offsets not a pair", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(data_offsets=[0]))),
    ("offsets reversed", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(data_offsets=[8, 4]))),
    ("offsets past the data", lambda: with_header(
        lambda h, d: (h, d[:-4]))),
    ("byte count wrong", lambda: with_header(
        lambda h, d: h[first_tensor(h)].update(shape=[4, 1, 3, 2]))),
    # data layout
    ("overlap", lambda: with_header(
        lambda h, d: h["layers.0.experts.0.ops.0.bias"].update(data_offsets=[0, 16]))),
    ("hole", lambda: with_header(drop_tensor_keep_bytes)),
    ("bytes after the last tensor", lambda: with_header(lambda h, d: (h, d + b"\0" * 8))),
    ("parameters exceed the data", lambda: with_header(drop_tensor("routers.0.fc1.weight"))),
    # tensors against the architecture
    ("missing tensor", lambda: with_header(rename("layers.0.experts.0.ops.1.weight",
                                                  "layers.0.experts.0.ops.1.gamma"))),
    ("unexpected tensor", lambda: with_header(extra_tensor)),
    ("shape mismatch", lambda: with_header(
        lambda h, d: h["routers.0.fc1.weight"].update(shape=[16, 5]))),
    ("NaN value", lambda: with_header(set_value("layers.1.experts.1.ops.3.weight", 7,
                                                float("nan")))),
    ("infinite value", lambda: with_header(set_value("routers.0.fc2.bias", 1, float("inf")))),
    ("negative variance", lambda: with_header(set_value("routers.0.bn.running_var", 3, -0.5))),
    # residual blocks, globalavgpool and router op chains
    ("residual unknown key", lambda: with_res_arch(put(B3 + ["skip"], []))),
    ("residual relu not bool", lambda: with_res_arch(put(B4 + ["relu"], 0))),
    ("residual main missing", lambda: with_res_arch(delete(B3 + ["main"]))),
    ("residual main empty", lambda: with_res_arch(put(B3 + ["main"], []))),
    ("residual main null", lambda: with_res_arch(put(B3 + ["main"], None))),
    ("residual main an object", lambda: with_res_arch(put(B3 + ["main"], {"type": "relu"}))),
    ("residual main 17 ops", lambda: with_res_arch(put(B3 + ["main"], [{"type": "relu"}] * 17))),
    ("residual shortcut null", lambda: with_res_arch(put(B3 + ["shortcut"], None))),
    ("residual shortcut 17 ops", lambda: with_res_arch(put(B4 + ["shortcut"],
                                                           [{"type": "relu"}] * 17))),
    ("residual in a branch", lambda: with_res_arch(put(B3 + ["main", 2], {
        "type": "residual", "main": [{"type": "relu"}]}))),
    ("flatten in a branch", lambda: with_res_arch(put(B3 + ["main", 2], {"type": "flatten"}))),
    ("linear in a shortcut", lambda: with_res_arch(put(B4 + ["shortcut", 1], {
        "type": "linear", "out": 4}))),
    ("globalavgpool in a branch", lambda: with_res_arch(put(B3 + ["main", 2],
                                                            {"type": "globalavgpool"}))),
    ("unknown op in a branch", lambda: with_res_arch(put(B3 + ["main", 2, "type"], "gelu"))),
    ("branch op not an object", lambda: with_res_arch(put(B3 + ["main", 2], 7))),
    ("branch conv key unknown", lambda: with_res_arch(put(B3 + ["main", 0, "dilation"], 2))),
    ("branch kernel does not fit", lambda: with_res_arch(put(B4 + ["main", 0, "kernel"], 11))),
    ("two batchnorms in a branch", lambda: with_res_arch(put(B3 + ["main", 2],
                                                             {"type": "batchnorm"}))),
    ("main against identity", lambda: with_res_arch(delete(B4 + ["shortcut"]))),
    ("main against shortcut", lambda: with_res_arch(put(B4 + ["shortcut", 0, "out"], 5))),
    ("main against shortcut size", lambda: with_res_arch(put(B4 + ["shortcut", 0, "stride"],
                                                             1))),
    ("more than 2048 ops expanded", lambda: with_res_arch(many_blocks)),
    ("globalavgpool key", lambda: with_res_arch(put(["layers", 1, "ops", 1, "kernel"], 2))),
    ("globalavgpool then 3 classes", lambda: with_res_arch(delete(["layers", 1, "ops", 2]))),
    ("router ops empty", lambda: with_res_arch(put(R0 + ["ops"], []))),
    ("router ops an object", lambda: with_res_arch(put(R0 + ["ops"], {"type": "relu"}))),
    ("router ops 17", lambda: with_res_arch(put(R0 + ["ops"], [{"type": "relu"}] * 17))),
    ("router ops before pool", lambda: with_res_arch(
        lambda a: a["layers"][0]["router"].update(ops=[], pool=None))),
    ("dropout in a router chain", lambda: with_res_arch(put(R0 + ["ops", 1],
                                                            {"type": "dropout"}))),
    ("flatten in a router chain", lambda: with_res_arch(put(R0 + ["ops", 1],
                                                            {"type": "flatten"}))),
    ("globalavgpool in a router chain", lambda: with_res_arch(put(R0 + ["ops", 1],
                                                                  {"type": "globalavgpool"}))),
    ("linear in a router chain", lambda: with_res_arch(put(R0 + ["ops", 1],
                                                           {"type": "linear", "out": 2}))),
    ("unknown op in a router chain", lambda: with_res_arch(put(R0 + ["ops", 1, "type"], "elu"))),
    ("flatten in a router block", lambda: with_res_arch(put(RB + ["main", 1],
                                                            {"type": "flatten"}))),
    ("router block main against identity", lambda: with_res_arch(put(RB + ["main", 0, "out"],
                                                                     5))),
    ("router pool larger than its chain's output", lambda: with_res_arch(
        put(R0 + ["ops", 0, "stride"], 4))),
    ("router pool larger than the layer output", lambda: with_res_arch(
        lambda a: (a["layers"][0]["router"].pop("ops"), a["layers"][0]["router"].update(pool=5))
    )),
    ("branch tensor missing", lambda: with_header(
        rename("layers.0.experts.0.ops.3.main.3.weight", "layers.0.experts.0.ops.3.main.3.w"),
        RES_ARCH)),
    ("shortcut tensor missing", lambda: with_header(
        rename("layers.0.experts.0.ops.4.shortcut.1.running_var",
               "layers.0.experts.0.ops.4.shortcut.1.var"), RES_ARCH)),
    ("router chain tensor missing", lambda: with_header(
        rename("routers.0.ops.2.main.0.bias", "routers.0.ops.2.main.0.b"), RES_ARCH)),
    ("identity shortcut tensor", lambda: with_header(
        lambda h, d: extra_tensor(h, d, "layers.1.experts.1.ops.0.shortcut.0.bias"), RES_ARCH)),
    ("conv without bias has none", lambda: with_header(
        lambda h, d: extra_tensor(h, d, "layers.0.experts.0.ops.3.main.3.bias"), RES_ARCH)),
    ("shortcut tensor shape", lambda: with_header(
        lambda h, d: h["layers.0.experts.0.ops.4.shortcut.0.weight"].update(shape=[4, 6, 1, 1]),
        RES_ARCH)),
    ("branch variance negative", lambda: with_header(
        set_value("layers.0.experts.0.ops.3.main.4.running_var", 2, -1.0), RES_ARCH)),
    ("router chain variance negative", lambda: with_header(
        set_value("routers.0.ops.2.main.1.running_var", 0, -2.0), RES_ARCH)),
    ("router chain value NaN", lambda: with_header(
        set_value("routers.0.ops.0.weight", 5, float("nan")), RES_ARCH)),
    # operating points (proto/model-format.md section 6, src/model/points.c)
    ("points an object", lambda: with_points('{"name": "p"}')),
    ("points 33", lambda: with_points([point(name="p%d" % i) for i in range(33)])),
    ("point not an object", lambda: with_points([POINT, "p"])),
    ("point unknown key", lambda: with_points([point(budget=5)])),
    ("point unknown key before a bad name", lambda: with_points([point(name="", tau=1)])),
    ("point name missing", lambda: with_points([point(name=None)])),
    ("point name a number", lambda: with_points([point(name=5)])),
    ("point name empty", lambda: with_points([point(name="")])),
    ("point name 32 characters", lambda: with_points([point(name="n" * 32)])),
    ("point name starting with a dot", lambda: with_points([point(name=".p")])),
    ("point name with a space", lambda: with_points([point(name="a b")])),
    ("point name with a slash", lambda: with_points([point(name="a/b")])),
    ("point name not ASCII", lambda: with_points([point(name="caf\u00e9")])),
    ("point name used twice", lambda: with_points([point(name="a"), point(name="b"),
                                                   point(name="a")])),
    ("thresholds missing", lambda: with_points([point(thresholds=None)])),
    ("thresholds a number", lambda: with_points([point(thresholds=0.5)])),
    ("thresholds empty", lambda: with_points([point(thresholds=[])])),
    ("thresholds two for one router", lambda: with_points([point(thresholds=[0.5, 0.5])])),
    ("threshold above 1", lambda: with_points([point(thresholds=[1.5])])),
    ("threshold below 0", lambda: with_points([point(thresholds=[-0.01])])),
    ("threshold a string", lambda: with_points([point(thresholds=["0.5"])])),
    ("threshold true", lambda: with_points([point(thresholds=[True])])),
    ("threshold null", lambda: with_points([point(thresholds=[None])])),
    ("threshold 2 (integer)", lambda: with_points([point(thresholds=[2])])),
    ("bad threshold before a missing accuracy", lambda: with_points(
        [point(thresholds=[3], val_accuracy=None)])),
    ("confidence a string", lambda: with_points([point(confidence="0.5")])),
    ("confidence null", lambda: with_points([point(confidence=None), dict(POINT, name="q",
                                                                         confidence=None)])),
    ("confidence above 1", lambda: with_points([point(**dict(SECOND, confidence=1.5))])),
    ("confidence below 0", lambda: with_points([point(confidence=-0.5)])),
    ("confidence without a second model", lambda: with_points([point(confidence=0.5)])),
    ("second without sha256", lambda: with_points([point(**dict(SECOND, second_sha256=None))])),
    ("sha256 without second", lambda: with_points([point(**dict(SECOND, second=None))])),
    ("second null", lambda: with_points([dict(point(**SECOND), second=None)])),
    ("second a number", lambda: with_points([point(**dict(SECOND, second=7))])),
    ("second empty", lambda: with_points([point(**dict(SECOND, second=""))])),
    ("second a path", lambda: with_points([point(**dict(SECOND, second="../thick"))])),
    ("second starting with a dot", lambda: with_points([point(**dict(SECOND, second=".thick"))])),
    ("second 64 characters", lambda: with_points([point(**dict(SECOND, second="s" * 64))])),
    ("sha256 uppercase", lambda: with_points([point(**dict(SECOND, second_sha256=SHA.upper()))])),
    ("sha256 63 digits", lambda: with_points([point(**dict(SECOND, second_sha256=SHA[:63]))])),
    ("sha256 not hex", lambda: with_points([point(**dict(SECOND, second_sha256="g" * 64))])),
    ("sha256 a number", lambda: with_points([point(**dict(SECOND, second_sha256=1))])),
    ("second with confidence 0", lambda: with_points([point(**dict(SECOND, confidence=0))])),
    ("second without confidence", lambda: with_points([point(**dict(SECOND,
                                                                    confidence=None))])),
    ("second with a confidence below float32's least",
     lambda: with_points([point(**dict(SECOND, confidence=1e-50))])),
    ("val_accuracy missing", lambda: with_points([point(val_accuracy=None)])),
    ("val_accuracy a string", lambda: with_points([point(val_accuracy="0.9")])),
    ("val_accuracy above 1", lambda: with_points([point(val_accuracy=1.25)])),
    ("val_accuracy below 0", lambda: with_points([point(val_accuracy=-1)])),
    ("mean_macs missing", lambda: with_points([point(mean_macs=None)])),
    ("mean_macs 0", lambda: with_points([point(mean_macs=0)])),
    ("mean_macs negative", lambda: with_points([point(mean_macs=-5.5)])),
    ("mean_macs above 1e18", lambda: with_points([point(mean_macs=2e18)])),
    ("mean_macs true", lambda: with_points([point(mean_macs=True)])),
    ("second point bad", lambda: with_points([point(name="a"), point(name="b", mean_macs=0)])),
]


def drop_tensor_keep_bytes(h, d):
    """Removes a tensor's entry but not its bytes: a hole or bytes after the last tensor."""
    h.pop("layers.0.experts.0.ops.1.running_mean")
    return h, d


# JSON syntax: jansson and Python word the parser's complaint differently; the reason before it
# must be the same.
JSON_CASES = [
    ("header not JSON", lambda: pack(b"{not json}", b""), "header is not valid JSON"),
    ("header duplicate key", lambda: pack(b'{"__metadata__": {}, "__metadata__": {}}', b""),
     "header is not valid JSON"),
    ("header a number", lambda: pack(b"55", b""), "header is not valid JSON"),
    ("architecture a string", lambda: with_arch(lambda a: '"x"'),
     "__metadata__.architecture: architecture JSON"),
    ("header NaN literal", lambda: pack(b'{"__metadata__": {"format": NaN}}', b""),
     "header is not valid JSON"),
    ("architecture not JSON", lambda: with_arch(lambda a: "{\"name\": "),
     "__metadata__.architecture: architecture JSON"),
    ("architecture duplicate key", lambda: with_arch(
        lambda a: '{"name": "a", "name": "b"}'), "__metadata__.architecture: architecture JSON"),
    ("points not JSON", lambda: with_points("[{"),
     "__metadata__.operating_points is not valid JSON"),
    ("points a number", lambda: with_points("5"),
     "__metadata__.operating_points is not valid JSON"),
    ("points empty text", lambda: with_points(""),
     "__metadata__.operating_points is not valid JSON"),
    ("point duplicate key", lambda: with_points(
        '[{"name": "a", "name": "b", "thresholds": [1], "val_accuracy": 1, "mean_macs": 1}]'),
     "__metadata__.operating_points is not valid JSON"),
    ("point NaN", lambda: with_points(
        '[{"name": "a", "thresholds": [NaN], "val_accuracy": 1, "mean_macs": 1}]'),
     "__metadata__.operating_points is not valid JSON"),
    ("point mean_macs 1e999", lambda: with_points(
        '[{"name": "a", "thresholds": [1], "val_accuracy": 1, "mean_macs": 1e999}]'),
     "__metadata__.operating_points is not valid JSON"),
]

# Tables at the edges of every rule, which both readers take, with the same values.
GOOD_POINTS = [
    [],
    [point(name="n" * 31, thresholds=[0]), point(name="A-z_0.9", thresholds=[1],
                                                  val_accuracy=0, mean_macs=1e18)],
    [point(name="p%d" % i, thresholds=[i / 32]) for i in range(32)],
    [point(**dict(SECOND, confidence=1, second="s" * 63)),
     point(name="q", thresholds=[0.3], confidence=0, val_accuracy=1, mean_macs=1e-300),
     point(name="r", thresholds=[0.1], **dict(SECOND, confidence=1e-30))],
]


def c_reason(path):
    r = subprocess.run([CIGT, "info", path], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        return None
    line = r.stderr.strip().splitlines()[-1]
    prefix = "cigt: %s: " % path
    return line[len(prefix):] if line.startswith(prefix) else line


def py_reason(path):
    try:
        cf.load(path)
    except cf.FormatError as e:
        return str(e)
    return None


class Readers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, buf):
        p = os.path.join(self.tmp.name, name.replace(" ", "_") + ".safetensors")
        with open(p, "wb") as f:
            f.write(buf)
        return p

    def test_valid_file_loads_in_both(self):
        p = self.write("valid", pack(*valid_parts()))
        self.assertIsNone(c_reason(p))
        mf = cf.load(p)
        self.assertEqual(len(mf.tensors), len(cf.tensor_list(mf.arch)))

    def test_residual_same_numbers(self):
        """Residual architectures (RES_ARCH, a router chain's block after an identity block,
        batchnorm right after a block that ends in one, a shortcut of 16 ops, the CIFAR
        ResNet-110 trellis) load in both readers with the same parameters, MACs (convs and
        linears inside blocks and router chains counted, section 3), output shapes, router
        costs and canonical JSON."""
        edge = json.loads(json.dumps(RES_ARCH))
        edge["layers"][0]["ops"].insert(4, {"type": "batchnorm"})
        edge["layers"][0]["ops"][5]["shortcut"] = [CONV(6, 1, stride=2)] + [{"type": "relu"}] * 15
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "models",
                               "cifar10_resnet110_trellis.json")) as f:
            cifar = json.load(f)
        for name, buf in (("res", pack(*valid_parts(RES_ARCH))),
                          ("res_edge", pack(*valid_parts(edge))), ("cifar", None)):
            with self.subTest(name):
                if buf is None:
                    a = cf.parse_arch(cifar)
                    t = {n: np.ones(s, np.float32) for n, s, _ in cf.tensor_list(a)}
                    buf = cf.serialize(cifar, t)
                p = self.write(name, buf)
                self.assertIsNone(c_reason(p))
                r = subprocess.run([CIGT, "info", "--json", p], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                c = json.loads(r.stdout)
                a = cf.load(p).arch
                self.assertEqual((a["params"], a["npaths"], a["path_macs"], a["dense_macs"]),
                                 (c["parameters"], c["paths"], c["path_macs"], c["dense_macs"]))
                for L, cl in zip(a["layers"], c["layers"]):
                    self.assertEqual((L["experts"], L["expert_macs"], L["expert_params"],
                                      list(L["out"])),
                                     (cl["experts"], cl["expert_macs"], cl["expert_params"],
                                      cl["output"]))
                    r = L["router"]
                    self.assertEqual(r and {"macs": r["macs"], "params": r["params"],
                                            "outputs": r["out"]}, cl.get("router"))
                # cigt writes the architecture canonically; it parses to the same numbers here
                b = cf.parse_arch(c["architecture"])
                self.assertEqual(cf.tensor_list(b), cf.tensor_list(a))
                self.assertEqual((b["params"], b["path_macs"]), (a["params"], a["path_macs"]))
        # hand-counted: RES_ARCH's MACs per route (convs at their output sizes, section 3)
        a = cf.parse_arch(RES_ARCH)
        l0 = (64 * 4 * 3 * 9 + 2 * 64 * 4 * 4 * 9  # stem conv, identity block's two convs
              + 16 * 6 * 4 * 9 + 16 * 6 * 4)  # strided block: main 3x3 and shortcut 1x1
        router = 16 * 4 * 6 * 9 + 16 * 4 * 4 * 9 + (4 * 2 * 2) * 5 + 5 * 2
        l1 = 16 * 6 * 6 * 9 + 6 * 3
        self.assertEqual(a["path_macs"], l0 + router + l1)
        self.assertEqual(a["dense_macs"], l0 + router + 2 * l1)

    def test_same_reason(self):
        for name, make in CASES:
            with self.subTest(name):
                p = self.write(name, make())
                c, py = c_reason(p), py_reason(p)
                self.assertIsNotNone(c, "cigt info accepted it")
                self.assertEqual(py, c)

    def test_same_reason_json_syntax(self):
        for name, make, prefix in JSON_CASES:
            with self.subTest(name):
                p = self.write(name, make())
                c, py = c_reason(p), py_reason(p)
                self.assertIsNotNone(c, "cigt info accepted it")
                self.assertIsNotNone(py, "cigt.format accepted it")
                self.assertTrue(c.startswith(prefix + ": "), c)
                self.assertTrue(py.startswith(prefix + ": "), py)

    def test_good_points_same_values(self):
        """Tables at the edges of the rules load in both readers with the same values (cigt info
        --json prints the C reader's: thresholds and confidence as float32, the others as
        doubles), and cigt.points.to_json writes each back as the same points."""
        for k, pts in enumerate(GOOD_POINTS):
            with self.subTest(k):
                p = self.write("good_points_%d" % k, with_points(pts))
                r = subprocess.run([CIGT, "info", "--json", p], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                c = json.loads(r.stdout)["operating_points"]
                mf = cf.load(p)
                py = mf.operating_points
                self.assertEqual(len(py), len(pts))
                self.assertEqual(len(c), len(pts))
                for a, b in zip(py, c):
                    self.assertEqual((a.name, list(a.thresholds), a.confidence, a.second,
                                      a.second_sha256, a.val_accuracy, a.mean_macs),
                                     (b["name"], b["thresholds"], b["confidence"],
                                      b.get("second"), b.get("second_sha256"),
                                      b["val_accuracy"], b["mean_macs"]))
                self.assertEqual(cp.parse(cp.to_json(py, mf.arch), mf.arch), py)

    def test_writer_refuses_bad_points(self):
        """serialize() refuses a table the C reader refuses, with its reason, whether given as
        points or as a metadata text."""
        a = cf.parse_arch(ARCH)
        t = {n: np.ones(s, np.float32) for n, s, _ in cf.tensor_list(a)}
        dup = [cp.OperatingPoint("a", (0.5,), 0.9, 10.0), cp.OperatingPoint("a", (1.0,), 0.9,
                                                                              10.0)]
        with self.assertRaisesRegex(cf.FormatError, r"^__metadata__\.operating_points\[1\]\."
                                    r"name 'a' is used twice$"):
            cf.serialize(ARCH, t, operating_points=dup)
        with self.assertRaisesRegex(cf.FormatError, r"^__metadata__\.operating_points\[0\]\."
                                    r"thresholds must be an array of 1 numbers"):
            cf.serialize(ARCH, t, operating_points=[point(thresholds=[1, 1])])
        with self.assertRaisesRegex(cf.FormatError, r"^__metadata__\.operating_points\[0\]\."
                                    r"mean_macs is missing$"):
            cf.serialize(ARCH, t, metadata={"operating_points": json.dumps([point(
                mean_macs=None)])})
        with self.assertRaisesRegex(cf.FormatError, "given both"):
            cf.serialize(ARCH, t, metadata={"operating_points": "[]"},
                         operating_points=[POINT])
        buf = cf.serialize(ARCH, t, operating_points=[POINT, point(name="e", **SECOND)])
        p = self.write("written_points", buf)
        self.assertIsNone(c_reason(p))
        self.assertEqual([q.name for q in cf.load(p).operating_points], ["p", "e"])

    def test_missing_file(self):
        p = os.path.join(self.tmp.name, "absent.safetensors")
        r = subprocess.run([CIGT, "info", p], capture_output=True, text=True)
        self.assertEqual(r.stderr.strip(), "cigt: " + py_reason(p))

    def test_mean_std_rules(self):
        """input.mean/std, read by the Python side now; the rules and wording are those of the
        colour-input work on the C reader (issue 15), which this branch's C reader predates."""
        def reason(inp):
            a = json.loads(json.dumps(ARCH))
            a["input"] = dict(a["input"], **inp)
            a["input"] = {k: v for k, v in a["input"].items() if v is not None}
            try:
                return cf.parse_arch(a)
            except cf.FormatError as e:
                return str(e)
        self.assertEqual(reason({"range": None, "mean": [0.5]}),
                         "input: 'mean' and 'std' go together")
        self.assertEqual(reason({"mean": [0.5], "std": [0.2]}),
                         "input: give either 'range' or 'mean' and 'std', not both")
        self.assertEqual(reason({"range": None, "channels": 3, "mean": [0.5, 0.5], "std": [1]}),
                         "input.mean: expected an array of 3 numbers (one per channel) or of 1")
        self.assertEqual(reason({"range": None, "mean": [0.5], "std": [0]}),
                         "input.std[0]: 0 is outside [1e-6, 1000]")
        self.assertEqual(reason({"range": None, "mean": ["x"], "std": [1]}),
                         "input.mean[0]: expected a number")
        self.assertEqual(reason({"range": None, "channels": 17, "mean": [0], "std": [1]}),
                         "input: mean/std describe at most 16 channels, not 17")
        a = reason({"range": None, "channels": 3, "mean": [0.25], "std": [0.5, 0.25, 2]})
        self.assertEqual(a["mean"], (0.25, 0.25, 0.25))
        self.assertEqual(a["std"], (0.5, 0.25, 2.0))

    def test_writer_refuses_invalid(self):
        a = cf.parse_arch(ARCH)
        t = {n: np.ones(s, np.float32) for n, s, _ in cf.tensor_list(a)}
        t["routers.0.bn.running_var"][0] = -1
        with self.assertRaisesRegex(cf.FormatError, "variance 0 is negative"):
            cf.serialize(ARCH, t)
        t["routers.0.bn.running_var"][0] = 1
        t.pop("routers.0.fc2.bias")
        with self.assertRaisesRegex(cf.FormatError, "missing tensor 'routers.0.fc2.bias'"):
            cf.serialize(ARCH, t)
        a = cf.parse_arch(RES_ARCH)
        t = {n: np.ones(s, np.float32) for n, s, _ in cf.tensor_list(a)}
        t["routers.0.ops.2.main.1.running_var"][1] = -1
        with self.assertRaisesRegex(cf.FormatError, r"^tensor 'routers\.0\.ops\.2\.main\.1\."
                                    r"running_var': variance 1 is negative$"):
            cf.serialize(RES_ARCH, t)
        t["routers.0.ops.2.main.1.running_var"][1] = 1
        t["layers.0.experts.0.ops.3.shortcut.0.weight"] = np.ones((4, 4, 1, 1), np.float32)
        with self.assertRaisesRegex(cf.FormatError, r"^unexpected tensor 'layers\.0\.experts\.0"
                                    r"\.ops\.3\.shortcut\.0\.weight' \(not in the architecture\)$"):
            cf.serialize(RES_ARCH, t)


if __name__ == "__main__":
    unittest.main(verbosity=2)
