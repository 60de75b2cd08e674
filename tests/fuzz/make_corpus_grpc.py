#!/usr/bin/python3
"""make_corpus_grpc.py -- regenerates tests/fuzz/corpus/grpc/, the seeds of the grpc target
(fuzz_grpc.c: byte 0 picks the decoder, the rest is its input).

ModelInferRequests are built with the Python messages protoc generates from proto/ (as the gRPC
tests do: grpc_common.stubs), never by hand: raw and typed, UINT8 and FP32, the dial and the
other parameters, selected outputs, and near-valid ones that stop at each check. Plus framed
message streams and header values. Deterministic. Needs protoc, grpc_python_plugin and Debian's
python3-grpcio / python3-protobuf; run from anywhere: /usr/bin/python3 make_corpus_grpc.py
"""
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
import grpc_common as G  # noqa: E402


def main():
    pb, _, _ = G.stubs()
    out = os.path.join(HERE, "corpus", "grpc")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    imgs = G.load_images(3)
    small = [bytes(im[i] for i in range(784)) for im in imgs]
    seeds = {}

    def req(name, q, sel=0):
        seeds[name] = bytes([sel]) + q.SerializeToString()

    req("raw-1", G.infer_request(pb, small[:1]))
    req("raw-2-id", G.infer_request(pb, small[:2], rid="r1"), 1)
    req("typed-1", G.infer_request(pb, small[:1], typed=True), 2)
    req("fp32-raw", G.infer_request(pb, small[:1], fp32=True), 3)
    req("fp32-typed", G.infer_request(pb, small[:1], fp32=True, typed=True))
    req("outputs", G.infer_request(pb, small[:1], outputs=["class", "paths"]))
    req("typed-out", G.infer_request(pb, small[:1], params={"binary_data_output": False}), 1)
    req("compute", G.infer_request(pb, small[:1], params={"compute": "multi-1-0.3"}))
    req("max-macs", G.infer_request(pb, small[:1], params={"max_macs": 7000000}), 2)
    req("timeout", G.infer_request(pb, small[:1], params={"timeout_ms": 100}), 3)
    req("both-dial", G.infer_request(pb, small[:1], params={"compute": "x", "max_macs": 9}))
    q = G.infer_request(pb, small[:1])
    del q.inputs[0].shape[1]
    req("shape-3", q)
    q = G.infer_request(pb, small[:1])
    q.inputs[0].shape[2] = 27
    req("bad-shape", q)
    q = G.infer_request(pb, small[:1])
    q.raw_input_contents[0] = small[0][:100]
    req("short-raw", q)
    q = G.infer_request(pb, small[:1], typed=True)
    q.inputs[0].contents.uint_contents[0] = 300
    req("uint-300", q)
    q = G.infer_request(pb, small[:1], typed=True)
    q.raw_input_contents.append(small[0])
    req("raw-and-typed", q)
    q = G.infer_request(pb, small[:1])
    q.inputs[0].datatype = "INT8"
    req("datatype", q)
    q = G.infer_request(pb, small[:1])
    q.parameters["timeout_ms"].string_param = "x"
    req("param-type", q)
    req("empty", pb.ModelInferRequest())
    seeds["not-protobuf"] = b"\x00\x0a\xff\xff\xff\xff"
    msg = G.infer_request(pb, small[:1]).SerializeToString()

    def framed(m, flag=0, length=None):
        return bytes([flag]) + struct.pack(">I", len(m) if length is None else length) + m
    seeds["frames-2"] = b"\x04" + framed(b"abc") + framed(b"")
    seeds["frames-partial"] = b"\x04" + framed(b"abc", length=10)
    seeds["frames-big"] = b"\x04" + framed(b"", length=1 << 20)
    seeds["frames-compressed"] = b"\x04" + framed(b"x", flag=1)
    seeds["frames-infer"] = b"\x04" + framed(msg[:3000])
    for i, h in enumerate([b"100m", b"1S", b"0m", b"99999999H", b"5x", b"",
                           b"/inference.GRPCInferenceService/ModelInfer",
                           b"/grpc.health.v1.Health/Check", b"bad \x01\xff% message"]):
        seeds["header-%d" % i] = b"\x05" + h
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
