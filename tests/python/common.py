"""Shared by the tests of the Python package (tests/python/): where cigt, the source tree and
Fashion-MNIST are, a temporary directory, and running cigt."""

import os
import subprocess
import sys

SRC = os.environ.get("SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
CIGT = os.environ.get("CIGT", os.path.join(SRC, "build", "cigt"))
DATA = os.environ.get("CIGT_DATA", "/usr/share/datasets/fashion-mnist")
MODEL = os.path.join(SRC, "models", "fashion_mnist.safetensors")
CONFIG = os.path.join(SRC, "models", "fashion_mnist.json")
sys.path.insert(0, os.path.join(SRC, "python"))

import torch  # noqa: E402

torch.set_num_threads(1)  # the machine has two cores and meson runs tests side by side


def cigt(*args, timeout=300):
    """Runs cigt with args; returns its stdout, raises AssertionError with stderr on failure."""
    r = subprocess.run([CIGT, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if r.returncode != 0:
        raise AssertionError("cigt %s failed (%d): %s" % (" ".join(map(str, args)),
                                                          r.returncode, r.stderr.strip()))
    return r.stdout
