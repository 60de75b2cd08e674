"""What the gRPC tests share (issue 28): Python stubs generated now, from proto/ alone, by protoc
and grpc_python_plugin (Debian's protobuf-compiler and protobuf-compiler-grpc; nothing generated
is committed), the real cigtd with --grpc-listen on free loopback ports (cigtd_common.Daemon),
and helpers that build the requests Triton's and KServe's clients send.

Imported by test_grpc.py (the grpcio groups) and hostile.py (raw HTTP/2). Needs Debian's
/usr/bin/python3 with python3-grpcio and python3-protobuf.
"""

import atexit
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from cigtd_common import (CIGT, CIGTD, DATA, DENSE_MACS, FAILURES, NREF, PATH_MACS,  # noqa: E402,F401
                          SRCDIR, Daemon, check, load_images, metric, reference, wait_for)

PROTOC = os.environ.get("PROTOC", "protoc")
PLUGIN = os.environ.get("GRPC_PYTHON_PLUGIN", shutil.which("grpc_python_plugin") or
                        "/usr/bin/grpc_python_plugin")


def stubs():
    """Generates the Python messages and stub from proto/ into a temporary directory and imports
    them: (pb, pb_grpc, grpc)."""
    out = tempfile.mkdtemp(prefix="cigt-grpc-stubs-")
    atexit.register(shutil.rmtree, out, True)
    proto = os.path.join(SRCDIR, "proto")
    subprocess.run([PROTOC, "-I", proto, "--python_out=" + out, "--grpc_python_out=" + out,
                    "--plugin=protoc-gen-grpc_python=" + PLUGIN,
                    os.path.join(proto, "grpc_service.proto"),
                    os.path.join(proto, "model_config.proto")], check=True)
    sys.path.insert(0, out)
    import grpc  # noqa: E402
    import grpc_service_pb2 as pb  # noqa: E402
    import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
    return pb, pb_grpc, grpc


class GrpcDaemon(Daemon):
    """cigtd serving HTTP and gRPC, each on a port the kernel picked."""

    def __init__(self, model, *args, **kw):
        super().__init__(model, "--grpc-listen", "127.0.0.1:0", *args, **kw)
        self.grpc_port = None
        for line in self.lines:
            m = re.search(r"gRPC \(inference\.GRPCInferenceService\) on [^ ]*:(\d+)$", line)
            if m:
                self.grpc_port = int(m.group(1))
        if not self.grpc_port:
            self.proc.kill()
            raise RuntimeError("cigtd did not say where gRPC listens:\n" + "\n".join(self.lines))

    @property
    def target(self):
        return "127.0.0.1:%d" % self.grpc_port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """A group stops its daemon itself (stop() checks the exit); this only makes sure no
        daemon outlives a failed group."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def infer_request(pb, images, model="fashion_mnist", typed=False, fp32=False, outputs=None,
                  params=None, rid=None, version=""):
    """A ModelInferRequest for UINT8 (or FP32 scaled to [0, 1]) images of 784 bytes each, raw
    (raw_input_contents, as tritonclient sends) or typed (contents, as KServe's SDK can)."""
    q = pb.ModelInferRequest(model_name=model, model_version=version)
    if rid is not None:
        q.id = rid
    inp = q.inputs.add()
    inp.name = "image"
    inp.datatype = "FP32" if fp32 else "UINT8"
    inp.shape.extend([len(images), 1, 28, 28])
    if fp32:
        vals = [b / 255.0 for img in images for b in img]
        if typed:
            inp.contents.fp32_contents.extend(vals)
        else:
            q.raw_input_contents.append(struct.pack("<%df" % len(vals), *vals))
    elif typed:
        inp.contents.uint_contents.extend(b for img in images for b in img)
    else:
        q.raw_input_contents.append(b"".join(images))
    for o in outputs or []:
        q.outputs.add().name = o
    for k, v in (params or {}).items():
        p = q.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        else:
            p.string_param = v
    return q


_FMT = {"FP32": ("f", 4), "INT64": ("q", 8), "INT32": ("i", 4), "BOOL": ("?", 1)}


def outputs_of(resp):
    """{name: flat list of values} of a ModelInferResponse, raw or typed."""
    out = {}
    for i, t in enumerate(resp.outputs):
        if resp.raw_output_contents:
            code, size = _FMT[t.datatype]
            raw = resp.raw_output_contents[i]
            out[t.name] = list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))
        else:
            c = t.contents
            out[t.name] = list({"FP32": c.fp32_contents, "INT64": c.int64_contents,
                                "INT32": c.int_contents, "BOOL": c.bool_contents}[t.datatype])
    return out


def answers(resp):
    """Per sample {class, route, macs, probabilities, paths, escalated} of a ModelInferResponse."""
    o = outputs_of(resp)
    shape = {t.name: list(t.shape) for t in resp.outputs}
    n = shape[resp.outputs[0].name][0]
    res = []
    for i in range(n):
        a = {}
        for name, vals in o.items():
            inner = shape[name][1] if len(shape[name]) > 1 else 0
            a[name] = vals[i * inner:(i + 1) * inner] if inner else vals[i]
        res.append(a)
    return res


def param(p):
    """The value of an InferParameter."""
    return getattr(p, p.WhichOneof("parameter_choice"))
