#!/usr/bin/python3
"""The README's gRPC example, run as printed (issue 28): the block of README.md that starts
`./build/cigtd --grpc-listen 127.0.0.1:8001 &` and ends at its EOF, in a scratch directory with
boot.pgm made as the README makes it and proto/ beside it. The daemon line is replaced by a
cigtd the test starts (the same flags, free ports), 8001 by its gRPC port; the rest runs
unchanged in bash and must print what the README says it prints.
"""
import gzip
import os
import re
import subprocess
import sys
import tempfile

import grpc_common as G
from grpc_common import FAILURES, check


def main():
    if not os.path.exists(os.path.join(G.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    text = open(os.path.join(G.SRCDIR, "README.md")).read()
    m = re.search(r"\n    (\./build/cigtd --grpc-listen 127\.0\.0\.1:8001 &.*?\n    EOF)\n", text,
                  re.S)
    if not check(m, "README.md has the gRPC example"):
        return 1
    lines = [line[4:] for line in m.group(1).split("\n")]
    said = re.search(r"prints `(ready: True)` and `(class [^`]*)`", text, re.S)
    check(said, "README.md says what the example prints")
    work = tempfile.mkdtemp(prefix="cigt-grpc-readme-")
    os.symlink(os.path.join(G.SRCDIR, "proto"), os.path.join(work, "proto"))
    with gzip.open(os.path.join(G.DATA, "t10k-images-idx3-ubyte.gz")) as f:
        d = f.read(16 + 784)
    with open(os.path.join(work, "boot.pgm"), "wb") as f:
        f.write(b"P5 28 28 255\n" + d[16:16 + 784])
    model = os.path.join(G.SRCDIR, "models", "fashion_mnist.safetensors")
    with G.GrpcDaemon(model) as dm:
        script = "\n".join(lines[1:]).replace("127.0.0.1:8001", dm.target)
        r = subprocess.run(["bash", "-e", "-c", script], cwd=work, capture_output=True,
                           text=True, timeout=120)
        out = " ".join(r.stdout.split())
        check(r.returncode == 0, "the example ran (exit %d): %s" % (r.returncode, r.stderr[-500:]))
        if said:
            want = " ".join((said.group(1) + " " + said.group(2)).split())
            check(out == want, "the example prints %r; the README says %r" % (out, want))
        dm.stop()
    print("readme: %s" % ("FAILED (%d)" % len(FAILURES) if FAILURES else "ok"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
