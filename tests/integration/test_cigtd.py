#!/usr/bin/python3
"""Integration tests for cigtd: start the real daemon on a free loopback port and talk HTTP to it.

Every answer is checked against the engine's own answer for the same image, taken from
`cigt eval --dump` (class, route, logits) or `cigt classify` (resized images). Standard library
only. Run one group: test_cigtd.py --group api|errors|concurrency|lifecycle|limits|page
This file sets up and runs a group; the groups are in cigtd_api.py (api, page), cigtd_errors.py
(errors, limits), cigtd_concurrency.py and cigtd_lifecycle.py, the shared daemon and fixtures in
cigtd_common.py.

Environment: CIGTD, CIGT (the binaries), SRCDIR (the source tree), WORKDIR (scratch; default a
temporary directory). Exit 0 = pass, 1 = fail, 77 = skipped (meson's convention).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

from cigtd_api import group_api, group_page
from cigtd_common import DATA, FAILURES, NREF, SRCDIR, load_images, make_model, reference
from cigtd_concurrency import group_concurrency
from cigtd_errors import group_errors, group_limits
from cigtd_lifecycle import group_lifecycle


GROUPS = {"api": group_api, "errors": group_errors, "concurrency": group_concurrency,
          "lifecycle": group_lifecycle, "limits": group_limits, "page": group_page}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigtd-test-")
    os.makedirs(work, exist_ok=True)
    env = {"work": work, "images": load_images(NREF)}
    env["model"] = os.path.join(work, "model.safetensors")
    make_model(env["model"], 5)
    env["ref"] = reference(env["model"], work)
    if args.group == "lifecycle":
        env["model2"] = os.path.join(work, "model2.safetensors")
        make_model(env["model2"], 6)
        env["ref2"] = reference(env["model2"], work)
    cfg = json.load(open(os.path.join(SRCDIR, "models", "fashion_mnist.json")))
    env["classes"] = cfg["classes"]
    try:
        rc = GROUPS[args.group](env)
    finally:
        if not args.keep and not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    if rc == 77:
        return 77
    print("%s: %s" % (args.group, "FAILED (%d)" % len(FAILURES) if FAILURES else "ok"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
