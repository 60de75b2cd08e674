#!/usr/bin/python3
"""grpc_body.py OUT [INDEX] -- one gRPC ModelInfer request body for h2load (bench/run, issue 28):
the framed ModelInferRequest (5-byte length prefix, then the message) for Fashion-MNIST test
image INDEX (default 0) as one UINT8 [1, 1, 28, 28] tensor in raw_input_contents, as Triton's
client sends it. The message is built with the Python classes protoc generates from proto/
at run time (tests/grpc/grpc_common.stubs), never by hand.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "grpc"))
import grpc_common as G  # noqa: E402


def main():
    out, index = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    pb, _, _ = G.stubs()
    img = G.load_images(index + 1)[index]
    msg = G.infer_request(pb, [img]).SerializeToString()
    with open(out, "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(msg)) + msg)
    print("%s: %d bytes (image %d)" % (out, 5 + len(msg), index))


if __name__ == "__main__":
    main()
