#!/usr/bin/python3
"""make_corpus.py CIGT -- regenerates the seed corpora of the fuzz targets in tests/fuzz/corpus/.

Small valid inputs of every form each parser accepts, and near-valid ones that stop at each of
its checks, so the fuzzer starts deep inside the parsers instead of at their first byte. CIGT is
the built `cigt` tool (tiny model files come from `cigt init`). Deterministic: rerunning it gives
the same files. Also writes json.dict, the libFuzzer dictionary of the JSON keys and tokens.

Input layouts (see each fuzz_<target>.c):
  v1:     1 byte Content-Type selector (0 json, 1 png, 2 pgm, 3 json;charset, 4 none, 5 text)
          + body
  v2:     1 byte (bits 0-1 Content-Type: 0 json, 1 octet-stream, 2 none, 3 json variant;
          bit 2: Inference-Header-Content-Length present) + 2 bytes LE length + body
  image, model, config, arch: the bytes themselves
  http:   the bytes a client sends on one connection (fuzz_http.c serves the tiny model
          fuzz_http, 1x8x8, 3 classes, with framing_cases.TOKEN): every case of
          tests/integration/framing_cases.py, and requests to every route
"""
import base64
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..")
DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def images(n):
    if os.path.exists(DATA):
        with gzip.open(DATA) as f:
            raw = f.read(16 + 784 * n)
        return [raw[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)]
    return [bytes((x * 7 + y * 3 + i * 11) % 256 for y in range(28) for x in range(28))
            for i in range(n)]


# ------------------------------------------------------------------------------------ PNG

def chunk(t, data):
    c = struct.pack(">I", len(data)) + t + data
    return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png(w, h, ctype=0, depth=8, interlace=0, extra=b"", pix=None, plte=None, trns=None):
    """Samples pix[y][x] -> list of channel values; packed at any bit depth."""
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    if pix is None:
        pix = [[[(x * 37 + y * 11 + c * 50) % (1 << depth) for c in range(ch)]
                for x in range(w)] for y in range(h)]

    def rows(xs, ys):
        out = b""
        for y in ys:
            bits, acc, line = 0, 0, bytearray()
            for x in xs:
                for v in pix[y][x]:
                    if depth == 16:
                        line += struct.pack(">H", v)
                    elif depth == 8:
                        line.append(v)
                    else:
                        acc = acc << depth | v
                        bits += depth
                        if bits == 8:
                            line.append(acc)
                            acc = bits = 0
            if bits:
                line.append(acc << (8 - bits))
            out += b"\x00" + bytes(line)
        return out
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = list(range(x0, w, dx)), list(range(y0, h, dy))
            if xs and ys:
                raw += rows(xs, ys)
    else:
        raw = rows(range(w), range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0,
                                                               0, interlace))
    out += extra
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_gray(px, w, h):
    return png(w, h, 0, 8, pix=[[[px[y * w + x]] for x in range(w)] for y in range(h)])


# ------------------------------------------------------------------------------- writers

def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def j(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def v1_corpus(imgs):
    img = list(imgs[0])
    rows = [img[r * 28:(r + 1) * 28] for r in range(28)]
    small_png = png_gray(imgs[1], 28, 28)
    seeds = {
        "flat": (0, j({"image": img})),
        "flat_spaces": (0, json.dumps({"image": img, "top_k": 3}).encode()),
        "rows": (0, j({"image": rows})),
        "batch": (0, j({"images": [img, list(imgs[1])], "top_k": 2, "timeout_ms": 500})),
        "batch_mixed": (0, j({"images": [img, {"png": base64.b64encode(small_png).decode()}]})),
        "png_b64": (0, j({"png": base64.b64encode(small_png).decode()})),
        "png_b64_tiny": (3, j({"png": base64.b64encode(png(2, 3)).decode()})),
        "png_b64_urlsafe_nopad": (0, j({"png": base64.urlsafe_b64encode(png(5, 1)).decode()
                                        .rstrip("=")})),
        "real_pixels": (0, j({"image": [float(v) for v in img]})),
        "raw_png": (1, small_png),
        "raw_png_rgb": (1, png(3, 2, 2)),
        "raw_pgm": (2, b"P5\n# c\n28 28\n255\n" + imgs[2]),
        "raw_pgm_small": (2, b"P2 2 2 15 0 5 10 15"),
        "bad_count": (0, j({"image": img[:-1]})),
        "bad_pixel": (0, j({"image": [256] + img[1:]})),
        "bad_key": (0, j({"image": img, "x": 1})),
        "bad_topk": (0, j({"image": img, "top_k": 0})),
        "bad_rows": (0, j({"image": rows[:-1] + [rows[0][:27]]})),
        "bad_b64": (0, j({"png": "@@@@"})),
        "dup": (0, b'{"image":[1],"image":[2]}'),
        "empty_images": (0, b'{"images":[]}'),
        "nested": (0, b'{"image":' + b"[" * 40 + b"]" * 40 + b"}"),
        "ctype_none": (4, j({"image": img})),
        "bad_base64": (0, j({"png": "!!!notbase64"})),
        "base64_after_padding": (0, j({"images": [{"png": "QQ=x"}]})),
        "ctype_text": (5, b"{}"),
        # The compute dial (issue 12): a point name or a MAC budget, never both.
        "dial_compute": (0, j({"image": img, "compute": "escalate-0.7"})),
        "dial_max_macs": (0, j({"images": [img], "max_macs": 6000000, "top_k": 1})),
        "dial_bad_both": (0, j({"image": img, "compute": "single", "max_macs": 6000000})),
        "dial_bad_compute_type": (0, j({"image": img, "compute": 3})),
        "dial_bad_compute_chars": (0, j({"image": img, "compute": "a b/\u0000"})),
        "dial_bad_compute_long": (0, j({"image": img, "compute": "x" * 40})),
        "dial_bad_compute_empty": (0, j({"image": img, "compute": ""})),
        "dial_bad_max_macs_zero": (0, j({"image": img, "max_macs": 0})),
        "dial_bad_max_macs_neg": (0, j({"image": img, "max_macs": -5})),
        "dial_bad_max_macs_real": (0, j({"image": img, "max_macs": 6e6})),
        "dial_bad_max_macs_huge": (0, b'{"max_macs":99999999999999999999999,"image":[1]}'),
    }
    for name, (sel, body) in seeds.items():
        write("v1", name, bytes([sel]) + body)


def v2_corpus(imgs):
    img = list(imgs[0])

    def inp(**kw):
        d = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": img}
        d.update(kw)
        return {k: v for k, v in d.items() if v is not None}
    nested = [[[v / 255 for v in imgs[1][r * 28:(r + 1) * 28]] for r in range(28)]]

    def jbody(obj, sel=0):
        return bytes([sel, 0, 0]) + j(obj)

    def binbody(hdr, payload, sel=5):
        h = j(hdr)
        return bytes([sel]) + struct.pack("<H", len(h)) + h + payload
    seeds = {
        "uint8": jbody({"inputs": [inp()]}),
        "uint8_id_outputs": jbody({"id": "x1", "inputs": [inp()],
                                   "outputs": [{"name": "class"}, {"name": "route",
                                               "parameters": {"binary_data": True}}]}),
        "fp32_nested": jbody({"inputs": [inp(shape=[1, 28, 28], datatype="FP32", data=nested)],
                              "parameters": {"binary_data_output": True, "timeout_ms": 100}}),
        "batch2": jbody({"inputs": [inp(shape=[2, 1, 28, 28], data=img + list(imgs[1]))]}),
        "ctype_none": jbody({"inputs": [inp()]}, 2),
        "ctype_variant": jbody({"inputs": [inp()]}, 3),
        "bin_uint8": binbody({"inputs": [inp(data=None, parameters={"binary_data_size": 784})]},
                             imgs[2]),
        "bin_fp32": binbody({"inputs": [inp(data=None, datatype="FP32",
                                            parameters={"binary_data_size": 3136})],
                             "outputs": [{"name": "probabilities"}]},
                            struct.pack("<784f", *[v / 255 for v in imgs[3]]), sel=4),
        "bin_nan": binbody({"inputs": [inp(data=None, datatype="FP32",
                                           parameters={"binary_data_size": 3136})]},
                           struct.pack("<f", float("nan")) + bytes(3132)),
        "bin_short": binbody({"inputs": [inp(data=None, parameters={"binary_data_size": 784})]},
                             bytes(700)),
        "shape_overflow": jbody({"inputs": [inp(shape=[2 ** 62, 1, 2 ** 62, 28])]}),
        "shape_negative": jbody({"inputs": [inp(shape=[-1, 1, 28, 28])]}),
        "shape_huge_n": jbody({"inputs": [inp(shape=[10 ** 9, 1, 28, 28])]}),
        "bad_dtype": jbody({"inputs": [inp(datatype="INT8")]}),
        "bad_output": jbody({"inputs": [inp()], "outputs": [{"name": "x"}]}),
        "deep": jbody({"inputs": [inp(data=[[[[[[[[[[1]]]]]]]]]])]}),
        # Forms for the fast path of JSON data (srv_v2_data_scan) and its fall-backs.
        "uint8_nested": jbody({"inputs": [inp(data=[[[img[r * 28:(r + 1) * 28]
                                                      for r in range(28)]]])]}),
        "uint8_nhw_rows": jbody({"inputs": [inp(shape=[1, 28, 28],
                                                data=[img[r * 28:(r + 1) * 28]
                                                      for r in range(28)])]}),
        "uint8_spaces": bytes([0, 0, 0]) + json.dumps(
            {"inputs": [inp(data=[img[:392], img[392:]])]}, indent="\t").encode(),
        "uint8_data_first": bytes([0, 0, 0]) + j(
            {"inputs": [{"data": img, "datatype": "UINT8", "shape": [1, 1, 28, 28],
                         "name": "image"}]}),
        "data_in_strings": jbody({"id": "\"data\": [300]}", "parameters": {
            "data": [[1, "]"]], "timeout_ms": 7}, "inputs": [inp(parameters={
                "data": "[\\\"x", "n": {"data": [999]}})]}),
        "two_inputs": jbody({"inputs": [inp(), inp(data=img[:10])]}),
        "dup_data": bytes([0, 0, 0]) + j({"inputs": [inp()]})[:-3] + b',"data":[1]}]}',
        "escaped_data_key": bytes([0, 0, 0]) + j({"inputs": [inp()]}).replace(
            b'"data"', b'"d\\u0061ta"'),
        "fp32_ints": jbody({"inputs": [inp(datatype="FP32", data=[0, 1] * 391 + [1, 2])]}),
        "uint8_reals": jbody({"inputs": [inp(data=[float(v) for v in img])]}),
        "uint8_exp": bytes([0, 0, 0]) + j({"inputs": [inp(data=[7] * 784)]}).replace(
            b"[7,", b"[7e0,", 1),
        "uint8_leading_zero": bytes([0, 0, 0]) + j({"inputs": [inp(data=[7] * 784)]}).replace(
            b"[7,", b"[07,", 1),
        "uint8_minus_zero": bytes([0, 0, 0]) + j({"inputs": [inp(data=[7] * 784)]}).replace(
            b"[7,", b"[-0,", 1),
        "nine_levels": jbody({"inputs": [inp(data=[[[[[[[[img]]]]]]]])]}),
        "ten_levels": jbody({"inputs": [inp(data=[[[[[[[[[img]]]]]]]]])]}),
        "empty_arrays": jbody({"inputs": [inp(data=[[], [img[:700], []], img[700:]])]}),
        "too_many": jbody({"inputs": [inp(data=img + [1])]}),
        "too_few_fp32": jbody({"inputs": [inp(datatype="FP32", data=[0] * 783)]}),
        "trailing_garbage": jbody({"inputs": [inp()]}) + b"x",
        "data_and_binary": binbody({"inputs": [inp(parameters={"binary_data_size": 784})]},
                                   imgs[2]),
        # The compute dial (issue 12) as request parameters, and the new outputs.
        "dial_compute": jbody({"inputs": [inp()], "parameters": {"compute": "all-paths"},
                               "outputs": [{"name": "paths"}, {"name": "escalated",
                                           "parameters": {"binary_data": True}}]}),
        "dial_max_macs": jbody({"inputs": [inp()], "parameters": {"max_macs": 11442944,
                                                                  "timeout_ms": 9}}),
        "dial_bad_both": jbody({"inputs": [inp()], "parameters": {"compute": "single",
                                                                  "max_macs": 1}}),
        "dial_bad_compute": jbody({"inputs": [inp()], "parameters": {"compute": ["single"]}}),
        "dial_bad_max_macs": jbody({"inputs": [inp()], "parameters": {"max_macs": "7"}}),
        "dial_bad_max_macs_neg": jbody({"inputs": [inp()], "parameters": {"max_macs": -1}}),
    }
    for name, body in seeds.items():
        write("v2", name, body)


def image_corpus(imgs):
    seeds = {
        "gray8_28": png_gray(imgs[0], 28, 28),
        "gray1": png(9, 3, 0, 1),
        "gray2": png(5, 5, 0, 2),
        "gray4": png(3, 7, 0, 4),
        "gray16": png(4, 4, 0, 16),
        "rgb8": png(6, 5, 2, 8),
        "rgb16": png(3, 3, 2, 16),
        "palette": png(4, 4, 3, 2, plte=bytes(range(12)), trns=b"\x00\x80"),
        "gray_alpha": png(4, 3, 4, 8),
        "rgba8": png(5, 4, 6, 8),
        "rgba16": png(2, 2, 6, 16),
        "interlaced": png(11, 9, 2, 8, interlace=1),
        "trns_gray": png(3, 3, 0, 8, trns=b"\x00\x05"),
        "chunks": png(2, 2, 0, 8, extra=chunk(b"gAMA", struct.pack(">I", 45455)) +
                      chunk(b"tEXt", b"k\x00v") +
                      chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"text" * 20))),
        "one_px": png(1, 1),
        "pgm_p5": b"P5\n# comment\n28 28\n255\n" + imgs[1],
        "pgm_p5_16": b"P5 3 2 65535\n" + bytes(range(12)),
        "pgm_p2": b"P2\n3 2\n# c\n7\n0 1 2\n3 4 7\n",
        "pgm_big_hdr": b"P5 4096 4096 255\n" + bytes(10),
        "png_big_hdr": png(1, 1)[:16] + struct.pack(">II", 5000, 5000) + png(1, 1)[24:],
        "png_truncated": png_gray(imgs[2], 28, 28)[:60],
        "png_bad_crc": png(2, 2)[:-16] + b"\x00\x00\x00\x00" + png(2, 2)[-12:],
        # What the PNG and Netpbm specifications forbid and libspng lets through (issue 16).
        "palette_index_beyond": png(6, 4, 3, 8, plte=bytes(range(30))),
        "trns_longer_than_plte": png(2, 2, 3, 8, pix=[[[0], [1]]] * 2, plte=bytes(6),
                                     trns=bytes(5)),
        "plte_in_gray": png(2, 2, 0, 8, plte=bytes(6)),
        "sbit_beyond_depth": png(2, 2, 0, 8, extra=chunk(b"sBIT", b"\x09")),
        "bytes_after_iend": png(2, 2) + b"junk",
        "pgm_hash_after_maxval": b"P5 28 28 255#c\n" + imgs[1],
        "pgm_huge_sides": b"P5 4294967296 4294967296 255\n" + bytes(16),
    }
    for name, data in seeds.items():
        write("image", name, data)


TINY = {
    "name": "tiny",
    "input": {"channels": 1, "height": 4, "width": 4},
    "classes": ["a", "b", "c"],
    "layers": [
        {"experts": 1, "ops": [{"type": "conv", "out": 2, "kernel": 3, "padding": 1},
                               {"type": "batchnorm"}, {"type": "relu"},
                               {"type": "maxpool", "kernel": 2}],
         "router": {"pool": 2, "hidden": 3}},
        {"experts": 2, "ops": [{"type": "flatten"}, {"type": "linear", "out": 3}]},
    ],
}
TINY2 = {
    "name": "tiny2",
    "input": {"channels": 2, "height": 3, "width": 5, "range": [-1, 1]},
    "classes": ["x", "y"],
    "layers": [
        {"experts": 1, "ops": [{"type": "avgpool", "kernel": [1, 2], "stride": 1,
                                "padding": [0, 1]},
                               {"type": "dropout", "p": 0.1}],
         "router": {"pool": [3, 2], "hidden": 2, "bn_eps": 0.001}},
        {"experts": 3, "ops": [{"type": "conv", "out": 1, "kernel": [3, 1], "stride": [1, 2],
                                "bias": False}, {"type": "relu"}],
         "router": {"pool": 1, "hidden": 2}},
        {"experts": 2, "ops": [{"type": "linear", "out": 2, "bias": False}]},
    ],
}

# Residual blocks (identity and projection shortcuts, relu false), global pooling and a router
# with its own chain (a conv and a block): every piece of the format issue 26 added.
TINY_RES = {
    "name": "tiny_res",
    "input": {"channels": 3, "height": 6, "width": 6},
    "classes": ["a", "b", "c"],
    "layers": [
        {"experts": 1,
         "ops": [{"type": "conv", "out": 2, "kernel": 3, "padding": 1, "bias": False},
                 {"type": "residual", "main": [
                     {"type": "conv", "out": 2, "kernel": 3, "padding": 1, "bias": False},
                     {"type": "batchnorm"}, {"type": "relu"},
                     {"type": "conv", "out": 2, "kernel": 3, "padding": 1, "bias": False},
                     {"type": "batchnorm"}]}],
         "router": {"ops": [{"type": "conv", "out": 2, "kernel": 3, "stride": 2,
                             "padding": 1},
                            {"type": "residual", "main": [{"type": "relu"}],
                             "relu": False}],
                    "pool": 3, "hidden": 3}},
        {"experts": 2,
         "ops": [{"type": "residual",
                  "main": [{"type": "conv", "out": 3, "kernel": 3, "stride": 2,
                            "padding": 1, "bias": False}, {"type": "batchnorm"},
                           {"type": "maxpool", "kernel": 1}],
                  "shortcut": [{"type": "conv", "out": 3, "kernel": 1, "stride": 2},
                               {"type": "batchnorm"}],
                  "relu": False},
                 {"type": "globalavgpool"}, {"type": "linear", "out": 3}]},
    ],
}


def arch_corpus():
    for f in ("fashion_mnist.json", "thin.json", "thick.json", "fashion_mnist_resnet.json"):
        p = os.path.join(SRC, "models", f)
        if os.path.exists(p):
            write("arch", f[:-5], open(p, "rb").read())
    write("arch", "tiny", j(TINY))
    write("arch", "tiny2", j(TINY2))
    write("arch", "tiny_res", j(TINY_RES))
    bad = json.loads(json.dumps(TINY_RES))
    bad["layers"][1]["ops"][0]["shortcut"] = []
    write("arch", "bad_res_shapes", j(bad))
    bad = json.loads(json.dumps(TINY_RES))
    bad["layers"][0]["router"]["ops"].append({"type": "linear", "out": 2})
    write("arch", "bad_router_op", j(bad))
    bad = json.loads(json.dumps(TINY))
    bad["layers"][0]["ops"][0]["kernal"] = 3
    write("arch", "bad_key", j(bad))
    bad = json.loads(json.dumps(TINY))
    bad["layers"][1]["ops"][1]["out"] = 4
    write("arch", "bad_classes", j(bad))
    bad = json.loads(json.dumps(TINY))
    bad["layers"][0]["ops"][0]["kernel"] = 9
    write("arch", "bad_fit", j(bad))


def config_corpus():
    good = {"model": "m.safetensors", "listen": "127.0.0.1:0", "workers": 2, "max_batch": 32,
            "max-delay-us": 100, "queue_limit": 64, "timeout_ms": 1000, "max_images": 8,
            "max_body_bytes": 100000, "max_image_pixels": 4096, "max_connections": 10,
            "max_connections_per_ip": 5, "read_timeout_ms": 500, "idle_timeout_s": 5,
            "drain_timeout_ms": 100, "auth_token_file": "/t", "log_level": "debug",
            "compute": "escalate-0.7",
            "access_log": True}
    write("config", "all_keys", j(good))
    write("config", "small", b'{"max_batch": 32, "access_log": false}')
    write("config", "empty", b"{}")
    write("config", "bad_bound", b'{"max_batch": 0}')
    write("config", "bad_type", b'{"workers": "2"}')
    write("config", "bad_key", b'{"max_bach": 3}')
    write("config", "bad_level", b'{"log_level": "off"}')
    write("config", "huge_int", b'{"max_body_bytes": 99999999999999999}')
    write("config", "not_object", b"[1]")
    write("config", "repository", j({"model_repository": "/srv/models",
                                      "model_control_mode": "explicit",
                                      "load_model": ["a", "b"], "repository_poll_secs": 5,
                                      "default_model": "a"}))


def repo_corpus():
    """Byte 0 picks the parser (fuzz_repo.c): 0 config.json, 1 index body, 2 load body,
    3 request path, 4 folder name."""
    seeds = {
        "cfg_full": (0, j({"version_policy": {"latest": {"num_versions": 2}},
                           "max_batch_size": 8,
                           "dynamic_batching": {"max_queue_delay_microseconds": 0,
                                                "default_queue_policy": {
                                                    "max_queue_size": 10,
                                                    "default_timeout_microseconds": 5000}}})),
        "cfg_specific": (0, j({"version_policy": {"specific": {"versions": [1, 3]}}})),
        "cfg_all": (0, j({"version_policy": {"all": {}}, "name": "x"})),
        "cfg_bad": (0, j({"version_policy": {"latest": {}}})),
        "index_ready": (1, b'{"ready": true}'), "index_empty": (1, b""),
        "index_bad": (1, b'{"ready": 3}'),
        "load_params": (2, b'{"parameters": {"unload_dependents": false}}'),
        "load_bad": (2, b'{"parameters": {"config": "{}"}}'),
        "route_infer": (3, b"/v2/models/fashion_mnist/versions/12/infer"),
        "route_load": (3, b"/v2/repository/models/x/load"),
        "route_v0": (3, b"/v1/models/a/versions/0/classify"),
        "route_empty": (3, b"/v2/models//versions/"), "route_stats": (3, b"/v2/models/stats"),
        "name_version": (4, b"123"), "name_dotdot": (4, b".."), "name_zero": (4, b"007"),
    }
    for name, (sel, data) in seeds.items():
        write("repo", name, bytes([sel]) + data)


def http_corpus(imgs):
    """Whole connections for fuzz_http.c: the fixed framing cases first, then a request for
    every route (GET, HEAD and POST bodies sized for its 1x8x8 model), pipelines, chunked
    bodies, Expect: 100-continue, and the refusals (no token, bad version, wrong method, body
    over the limit)."""
    sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
    import framing_cases as F
    for i, (name, data, _, _, _) in enumerate(F.CASES):
        write("http", "framing_%02d" % i, data)
    auth = b"Authorization: Bearer " + F.TOKEN.encode() + b"\r\n"

    def req(method, path, body=b"", ctype=None, extra=b"", version=b"HTTP/1.1"):
        h = b"%s %s %s\r\nHost: x\r\n" % (method, path, version) + auth + extra
        if ctype:
            h += b"Content-Type: " + ctype + b"\r\n"
        if body or method == b"POST":
            h += b"Content-Length: %d\r\n" % len(body)
        return h + b"\r\n" + body
    px = bytes(imgs[0][y * 28 * 3 + x * 3] for y in range(8) for x in range(8))
    pgm = b"P5 8 8 255\n" + px
    pixels = list(px)
    m = b"fuzz_http"
    gets = [b"/", b"/index.html", b"/metrics", b"/v1/model", b"/v1/models", b"/v1/models/" + m,
            b"/v1/models/" + m + b"/versions/1", b"/v2", b"/v2/health/live",
            b"/v2/health/ready", b"/v2/models/stats", b"/v2/models/" + m,
            b"/v2/models/" + m + b"/versions/1", b"/v2/models/" + m + b"/ready",
            b"/v2/models/" + m + b"/versions/1/ready", b"/v2/models/" + m + b"/config",
            b"/v2/models/" + m + b"/versions/1/config", b"/v2/models/" + m + b"/stats",
            b"/v2/models/" + m + b"/versions/1/stats"]
    for i, path in enumerate(gets):
        write("http", "get_%02d" % i, req(b"GET", path))
    write("http", "head_model", req(b"HEAD", b"/v1/model"))
    jh = b"application/json"
    seeds = {
        "classify_pgm": req(b"POST", b"/v1/classify", pgm, b"image/x-portable-graymap"),
        "classify_png": req(b"POST", b"/v1/classify?top_k=2", png_gray(px, 8, 8), b"image/png"),
        "classify_json": req(b"POST", b"/v1/models/" + m + b"/classify", j({"image": pixels}),
                             jh),
        "classify_batch": req(b"POST", b"/v1/models/" + m + b"/versions/1/classify",
                              j({"images": [pixels, {"png": base64.b64encode(
                                  png_gray(px, 8, 8)).decode()}], "top_k": 3}), jh),
        "classify_expired": req(b"POST", b"/v1/classify?timeout_ms=0", pgm,
                                b"image/x-portable-graymap"),
        "classify_compute": req(b"POST", b"/v1/classify?compute=x", pgm,
                                b"image/x-portable-graymap"),
        "classify_chunked": req(b"POST", b"/v1/classify", b"", b"image/x-portable-graymap",
                                b"Transfer-Encoding: chunked\r\n").replace(
                                    b"Content-Length: 0\r\n", b"") + F.chunked(pgm, 20),
        "classify_continue": req(b"POST", b"/v1/classify", pgm, b"image/x-portable-graymap",
                                 b"Expect: 100-continue\r\n"),
        "infer_json": req(b"POST", b"/v2/models/" + m + b"/infer",
                          j({"id": "a", "inputs": [{"name": "image", "shape": [1, 8, 8],
                                                    "datatype": "UINT8", "data": pixels}],
                             "outputs": [{"name": "class"}, {"name": "paths"}]}), jh),
        "infer_fp32": req(b"POST", b"/v2/models/" + m + b"/versions/1/infer",
                          j({"parameters": {"binary_data_output": True},
                             "inputs": [{"name": "image", "shape": [1, 1, 8, 8],
                                         "datatype": "FP32", "data": [v / 255 for v in pixels]}]}),
                          jh),
        "repo_index": req(b"POST", b"/v2/repository/index", b'{"ready": true}', jh),
        "repo_load": req(b"POST", b"/v2/repository/models/" + m + b"/load", b"", jh),
        "repo_unload": req(b"POST", b"/v2/repository/models/" + m + b"/unload", b"{}", jh),
        "no_token": req(b"GET", b"/v1/model").replace(auth, b""),
        "bad_version": req(b"GET", b"/v2/models/" + m + b"/versions/007"),
        "wrong_method": req(b"DELETE", b"/v1/classify"),
        "too_large": req(b"POST", b"/v1/classify", b"", jh).replace(b"Content-Length: 0",
                                                                    b"Content-Length: 99999"),
        "http10": req(b"GET", b"/v2", version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"),
        "close": req(b"GET", b"/v2", extra=b"Connection: close\r\n") + req(b"GET", b"/v2"),
    }
    hdr = j({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "UINT8",
                         "parameters": {"binary_data_size": 64}}]})
    seeds["infer_binary"] = req(b"POST", b"/v2/models/" + m + b"/infer", hdr + px,
                                b"application/octet-stream",
                                b"Inference-Header-Content-Length: %d\r\n" % len(hdr))
    seeds["pipeline"] = (req(b"GET", b"/v2/health/live") + seeds["classify_pgm"]
                         + req(b"HEAD", b"/metrics") + seeds["infer_json"] + F.SMUGGLED)
    for name, data in seeds.items():
        write("http", name, data)


def model_corpus(cigt):
    tmp = tempfile.mkdtemp()
    try:
        blobs = {}
        for name, arch in (("tiny", TINY), ("tiny2", TINY2), ("tiny_res", TINY_RES)):
            cfg = os.path.join(tmp, name + ".json")
            out = os.path.join(tmp, name + ".safetensors")
            json.dump(arch, open(cfg, "w"))
            subprocess.run([cigt, "init", cfg, "-o", out, "--seed", "1", "--random-bn"],
                           check=True, stdout=subprocess.DEVNULL)
            blobs[name] = open(out, "rb").read()
    finally:
        shutil.rmtree(tmp)
    for name, b in blobs.items():
        write("model", name, b)
    b = blobs["tiny"]
    hlen = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + hlen])
    data = b[8 + hlen:]

    def rebuild(h, d=data):
        hb = json.dumps(h).encode()
        return struct.pack("<Q", len(hb)) + hb + d
    write("model", "truncated", b[:len(b) - 7])
    write("model", "huge_hlen", struct.pack("<Q", 1 << 40) + b[8:])
    write("model", "bad_json", b[:8] + b"x" + b[9:])
    nan = bytearray(data)
    nan[0:4] = struct.pack("<f", float("nan"))
    write("model", "nan", rebuild(header, bytes(nan)))
    h = json.loads(json.dumps(header))
    first = sorted(k for k in h if k != "__metadata__")[0]
    h[first]["shape"] = [2 ** 31, 2 ** 31]
    write("model", "bad_shape", rebuild(h))
    h = json.loads(json.dumps(header))
    h["extra"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    write("model", "extra_tensor", rebuild(h, data + bytes(4)))
    h = json.loads(json.dumps(header))
    h["__metadata__"]["format"] = "cigt-0"
    write("model", "bad_format", rebuild(h))
    h = json.loads(json.dumps(header))
    h["__metadata__"]["architecture"] = json.dumps(TINY2)
    write("model", "wrong_arch", rebuild(h))
    # Operating points (proto/model-format.md section 6): one valid table, and a bad one.
    nr = len(TINY["layers"]) - 1
    pts = [{"name": "single", "thresholds": [1] * nr, "val_accuracy": 0.9, "mean_macs": 100},
           {"name": "mix", "thresholds": [0.25] * nr, "confidence": 0.7, "second": "thick",
            "second_sha256": "ab" * 32, "val_accuracy": 0.95, "mean_macs": 321.5}]
    h = json.loads(json.dumps(header))
    h["__metadata__"]["operating_points"] = json.dumps(pts)
    write("model", "points", rebuild(h))
    pts[1]["thresholds"] = [1.5] * nr
    h["__metadata__"]["operating_points"] = json.dumps(pts)
    write("model", "points_bad_threshold", rebuild(h))
    # The int8 calibration table (section 7): a valid one, and one with a range turned round.
    q = {"format": "cigt-int8-1", "method": "max", "samples": 9, "split": "validation",
         "inputs": {"layers.0.experts.0.ops.0": [0, 1], "layers.1.experts.0.ops.1": [0, 2.5],
                    "layers.1.experts.1.ops.1": [0, 4]}}
    h = json.loads(json.dumps(header))
    h["__metadata__"]["quantization"] = json.dumps(q)
    write("model", "quant", rebuild(h))
    q["inputs"]["layers.1.experts.0.ops.1"] = [3, 2.5]
    h["__metadata__"]["quantization"] = json.dumps(q)
    write("model", "quant_bad_range", rebuild(h))


def dictionary():
    toks = ["image", "images", "png", "top_k", "timeout_ms", "id", "inputs", "outputs", "name",
            "shape", "datatype", "data", "parameters", "binary_data_size", "binary_data",
            "binary_data_output", "UINT8", "FP32", "probabilities", "class", "route", "macs",
            "__metadata__", "format", "cigt-1", "architecture", "provenance", "dtype", "F32",
            "quantization", "cigt-int8-1", "method", "samples", "split",
            "data_offsets", "input", "channels", "height", "width", "range", "classes",
            "layers", "experts", "ops", "router", "pool", "hidden", "bn_eps", "bn_momentum",
            "type", "conv", "batchnorm", "relu", "maxpool", "avgpool", "flatten", "linear",
            "dropout", "out", "kernel", "stride", "padding", "bias", "eps", "momentum", "p",
            "model", "listen", "workers", "max_batch", "max_delay_us", "queue_limit",
            "max_images", "max_body_bytes", "max_image_pixels", "max_connections",
            "max_connections_per_ip", "read_timeout_ms", "idle_timeout_s", "drain_timeout_ms",
            "auth_token_file", "tls_cert", "tls_key", "log_level", "access_log", "compute",
            "max_macs", "paths", "escalated", "all-paths", "single", "residual", "main",
            "shortcut", "globalavgpool", "ops"]
    lines = ['kw_%d="\\"%s\\""' % (i, t) for i, t in enumerate(toks)]
    lines += ['png_sig="\\x89PNG\\x0d\\x0a\\x1a\\x0a"', 'ihdr="IHDR"', 'idat="IDAT"',
              'iend="IEND"', 'plte="PLTE"', 'trns="tRNS"', 'p5="P5"', 'p2="P2"',
              'true="true"', 'false="false"', 'null="null"', 'big="4294967296"',
              'neg="-1"', 'exp="1e999"']
    # HTTP/1.1 (fuzz_http)
    lines += ['crlf="\\x0d\\x0a"', 'eoh="\\x0d\\x0a\\x0d\\x0a"', 'http11="HTTP/1.1"',
              'http10="HTTP/1.0"', 'get="GET "', 'head="HEAD "', 'post="POST "',
              'host="Host:"', 'cl="Content-Length:"', 'te="Transfer-Encoding:"',
              'chunked="chunked"', 'ctype="Content-Type:"', 'authz="Authorization: Bearer "',
              'expect="Expect: 100-continue"', 'conn="Connection:"', 'close="close"',
              'keepalive="keep-alive"', 'ihcl="Inference-Header-Content-Length:"',
              'ct_json="application/json"', 'ct_pgm="image/x-portable-graymap"',
              'ct_oct="application/octet-stream"', 'v1c="/v1/classify"',
              'v2m="/v2/models/"', 'infer="/infer"', 'versions="/versions/"']
    with open(os.path.join(HERE, "json.dict"), "w") as f:
        f.write("# libFuzzer dictionary for every target (written by make_corpus.py)\n")
        f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cigt = sys.argv[1]
    corpus = os.path.join(HERE, "corpus")
    if os.path.isdir(corpus):
        shutil.rmtree(corpus)
    imgs = images(4)
    v1_corpus(imgs)
    v2_corpus(imgs)
    image_corpus(imgs)
    arch_corpus()
    config_corpus()
    repo_corpus()
    http_corpus(imgs)
    model_corpus(cigt)
    dictionary()
    for t in sorted(os.listdir(corpus)):
        print("%-7s %d seeds" % (t, len(os.listdir(os.path.join(corpus, t)))))


if __name__ == "__main__":
    main()
