#!/usr/bin/python3
"""Files that are not models, given to cigt and cigtd where a model goes (issue 29): each answer
names what the file is and the command that takes it, on one line, with a failing exit status.
The cases: the training config models/fashion_mnist.json (cigt eval used to say "header length
7881701915721992827 is not in [2, 16777216]"), PNG, JPEG and PGM images, an empty file, a model
repository and its folders, and cigtd --model on a config and on a repository. (A training
checkpoint is checked on a real one in tests/train/determinism.sh; every case is also a
Criterion test on the loader, tests/unit/test_model_file.c.)

Environment as test_cigtd.py (CIGTD, CIGT, SRCDIR).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import cigtd_common as T

check = T.check


def refused(argv, *want):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    err = p.stderr.strip()
    what = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))
    check(p.returncode != 0, "%s: exit 0" % what)
    lines = [l for l in err.splitlines() if l.strip()]
    last = lines[-1] if lines else ""
    for w in want:
        check(w in last, "%s: '%s' does not say '%s'" % (what, last, w))
    check("header length" not in last, "%s: still the safetensors header message: %s"
          % (what, last))
    print("ok  ", what, "->", last[:160])


def main():
    work = tempfile.mkdtemp(prefix="cigt-not-a-model-")
    try:
        config = os.path.join(T.SRCDIR, "models", "fashion_mnist.json")
        refused([T.CIGT, "eval", config], "a JSON config", "cigt train --config %s" % config)
        # cigt info takes a config too: its architecture, the same figures as a model of it
        shown = subprocess.run([T.CIGT, "info", config], capture_output=True, text=True,
                               timeout=60)
        model = subprocess.run([T.CIGT, "info", os.path.join(T.SRCDIR, "models",
                                                             "fashion_mnist.safetensors")],
                               capture_output=True, text=True, timeout=60)
        macs = [l for l in model.stdout.splitlines() if l.startswith("MACs/route")]
        check(shown.returncode == 0 and shown.stdout.startswith("config      fashion_mnist")
              and macs and macs[0] in shown.stdout,
              "cigt info on a config: %r / %r" % (shown.stdout[:200], shown.stderr))
        print("ok   cigt info fashion_mnist.json ->", macs[0] if macs else "")
        px = T.load_images(1)[0]
        png = os.path.join(work, "boot.png")
        with open(png, "wb") as f:
            f.write(T.png_gray(list(px), 28, 28))
        pgm = os.path.join(work, "boot.pgm")
        with open(pgm, "wb") as f:
            f.write(b"P5 28 28 255\n" + px)
        jpg = os.path.join(work, "boot.jpg")
        with open(jpg, "wb") as f:
            f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00")
        for path, kind in ((png, "a PNG image"), (pgm, "a PGM image"), (jpg, "a JPEG image")):
            refused([T.CIGT, "eval", path], kind, "cigt classify MODEL %s" % path)
        # The image given first to classify, where the model goes.
        refused([T.CIGT, "classify", png, pgm], "a PNG image", "cigt classify MODEL")
        empty = os.path.join(work, "model.safetensors")
        open(empty, "w").close()
        refused([T.CIGT, "eval", empty], "empty (0 bytes)")
        repo = os.path.join(work, "repo")
        os.makedirs(os.path.join(repo, "fashion_mnist_thin", "1"))
        model = os.path.join(repo, "fashion_mnist_thin", "1", "model.safetensors")
        shutil.copy(os.path.join(T.SRCDIR, "models", "thin.safetensors"), model)
        refused([T.CIGT, "eval", repo], "a model repository",
                "cigtd --model-repository %s" % repo)
        refused([T.CIGT, "info", os.path.dirname(model)], "version folder", model)
        refused([T.CIGT, "info", os.path.join(repo, "fashion_mnist_thin")], "a model's folder")
        listen = ["--listen", "127.0.0.1:0"]
        refused([T.CIGTD, "--model", repo] + listen, "a model repository",
                "cigtd --model-repository")
        refused([T.CIGTD, "--model", config] + listen, "a JSON config", "cigt train --config")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if T.FAILURES:
        print("%d failures" % len(T.FAILURES))
        sys.exit(1)


if __name__ == "__main__":
    main()
