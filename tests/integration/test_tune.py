#!/usr/bin/python3
"""`cigt tune` end to end: the operating points it writes are checked against `cigt eval` run on
the very images tune chose them on, and its refusals leave nothing behind.

Tune picks points on the last N images of DIR/train (the model's validation split). The test
builds a data directory whose train files are the real ones and whose t10k files hold the last
N training images, so `cigt eval --data DIR --compute NAME` measures each point on the same N
images: its accuracy must be the point's val_accuracy and its mean MACs the point's mean_macs.
Escalation is simulated inside tune from the two posteriors; eval runs the real second model,
so the escalating points check that simulation. Also: the table's shape (single first, all
paths at the architecture's 11,442,944 MACs, each front more accurate at every step up in
cost), --out leaving the source untouched, the same table from 1 and 2 threads and in place,
and every refusal (a split larger than the model's, a second model not beside it or of other
classes, too few images, no provenance) with its message and no file written.
Held-out validation (issue 29): --validation-data DIR, an IDX directory whose train files hold
the same last N training images, gives the very table tune chose on them from --data; a model
whose provenance records no held-out split (cigt init's, or the old train_folder.py form with
data as a path) is refused, with --validation N too, naming --validation-data; so is data of
another size than the provenance's split, the training data itself as --validation-data, and
an --escalate model without a split, with a smaller one or trained elsewhere.
Environment as test_cigtd.py (CIGT, SRCDIR). Exit 0 pass, 1 fail, 77 without the dataset.
"""

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check  # noqa: E402

N = 300  # validation images tune runs on (the last 300 of the model's 5,000)
ALL_PATHS_MACS = 11442944  # proto/model-format.md section 6


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(*args):
    return subprocess.run([T.CIGT, *args], capture_output=True, text=True, timeout=600)


def make_data(work):
    """DIR with the real train files and t10k files holding the last N training images; HELD,
    an IDX directory whose train files hold those same N images (held out by the shipped
    models); SMALL, one whose train files hold the first 200."""
    d = os.path.join(work, "data")
    os.makedirs(d)
    for kind in ("images-idx3", "labels-idx1"):
        os.symlink(os.path.join(T.DATA, "train-%s-ubyte.gz" % kind),
                   os.path.join(d, "train-%s-ubyte.gz" % kind))
    with gzip.open(os.path.join(T.DATA, "train-images-idx3-ubyte.gz")) as f:
        imgs = f.read()
    with gzip.open(os.path.join(T.DATA, "train-labels-idx1-ubyte.gz")) as f:
        labels = f.read()
    total = struct.unpack(">I", imgs[4:8])[0]
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">IIII", 0x803, N, 28, 28) + imgs[16 + 784 * (total - N):])
    with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">II", 0x801, N) + labels[8 + total - N:])
    held = os.path.join(work, "held")
    os.makedirs(held)
    for kind in ("images-idx3", "labels-idx1"):
        os.symlink(os.path.join(d, "t10k-%s-ubyte.gz" % kind),
                   os.path.join(held, "train-%s-ubyte.gz" % kind))
    # A directory with too few training images for N (its train files hold 200).
    small = os.path.join(work, "small")
    os.makedirs(small)
    with gzip.open(os.path.join(small, "train-images-idx3-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">IIII", 0x803, 200, 28, 28) + imgs[16:16 + 784 * 200])
    with gzip.open(os.path.join(small, "train-labels-idx1-ubyte.gz"), "wb", 1) as f:
        f.write(struct.pack(">II", 0x801, 200) + labels[8:208])
    return d, held, small


def points(path):
    out = run("info", path, "--json")
    if not check(out.returncode == 0, "cigt info %s: %s" % (path, out.stderr.strip())):
        return []
    return json.loads(out.stdout).get("operating_points") or []


def increasing(name, pts):
    """Mean MACs and val_accuracy both strictly increasing along pts (a Pareto front's spread)."""
    ok = all(a["mean_macs"] < b["mean_macs"] and a["val_accuracy"] < b["val_accuracy"]
             for a, b in zip(pts, pts[1:]))
    return check(ok, "%s: each step up in MACs is more accurate: %s" % (
        name, [(p["name"], p["val_accuracy"], round(p["mean_macs"])) for p in pts]))


def refused(what, args, frag, out):
    r = run("tune", *args, "--out", out)
    check(r.returncode != 0 and frag in r.stderr and not os.path.exists(out),
          "%s: refused naming '%s', nothing written (rc %d, %s)" % (what, frag, r.returncode,
                                                                    r.stderr.strip()[-300:]))
    if os.path.exists(out):  # so that the next case is judged on its own
        os.remove(out)


def main():
    if not os.path.exists(os.path.join(T.DATA, "train-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = tempfile.mkdtemp(prefix="cigt-tune-")
    try:
        data, held, small = make_data(work)
        m = os.path.join(work, "m")
        os.makedirs(m)
        for f in ("fashion_mnist.safetensors", "thick.safetensors"):
            shutil.copy(os.path.join(T.SRCDIR, "models", f), m)
        src = os.path.join(m, "fashion_mnist.safetensors")
        thick = os.path.join(m, "thick.safetensors")
        tuned = os.path.join(m, "tuned.safetensors")
        before = sha(src)

        r = run("tune", src, "--escalate", thick, "--data", data, "--validation", str(N),
                "--threads", "1", "--out", tuned)
        check(r.returncode == 0, "tune: rc %d %s" % (r.returncode, r.stderr.strip()[-300:]))
        check("%d validation images" % N in r.stderr, "tune says it used %d images" % N)
        check(sha(src) == before, "--out leaves the source file unchanged")
        pts = points(tuned)
        names = [p["name"] for p in pts]
        print("points: %s" % ", ".join(names))
        check(2 <= len(pts) <= 32 and len(set(names)) == len(names), "2-32 uniquely named points")
        single = pts[0] if pts else {}
        check(single.get("name") == "single" and all(t == 1 for t in single["thresholds"])
              and not single.get("second"), "the single path comes first")
        allp = [p for p in pts if p["name"] == "all-paths"]
        check(len(allp) == 1 and all(t == 0 for t in allp[0]["thresholds"])
              and allp[0]["mean_macs"] == ALL_PATHS_MACS,
              "all-paths opens every expert: %d MACs on every image" % ALL_PATHS_MACS)
        multi = sorted((p for p in pts if not p.get("second") and p["name"] != "all-paths"),
                       key=lambda p: p["mean_macs"])
        esc = sorted((p for p in pts if p.get("second")
                      and all(t >= 1 for t in p["thresholds"])), key=lambda p: p["mean_macs"])
        # Which kind escalates depends on the model and these N images (on the shipped model
        # and its last 300 validation images only mixed points do); some point must.
        check(any(p.get("second") for p in pts), "points that escalate written for --escalate")
        check(all(p["second"] == "thick" and p.get("second_sha256") == sha(thick)
                  for p in pts if p.get("second")),
              "escalating points name thick.safetensors and its sha256")
        increasing("multipath front", multi)
        increasing("escalation front", [single] + esc)

        # Each point measured again by cigt eval on the same N images.
        for p in pts:
            e = run("eval", tuned, "--data", data, "--compute", p["name"], "--json",
                    "--threads", "1")
            if not check(e.returncode == 0, "eval --compute %s: %s" % (p["name"],
                                                                     e.stderr.strip())):
                continue
            j = json.loads(e.stdout)
            check(j["samples"] == N and abs(j["accuracy"] - p["val_accuracy"]) < 1e-9
                  and abs(j["mean_macs"] - p["mean_macs"]) < 0.5,
                  "%s: tune says %.4f at %.1f MACs, eval on the same images %.4f at %.1f"
                  % (p["name"], p["val_accuracy"], p["mean_macs"], j["accuracy"],
                     j["mean_macs"]))
        plain = json.loads(run("eval", tuned, "--data", data, "--json", "--threads", "1").stdout)
        check(abs(plain["accuracy"] - single.get("val_accuracy", -1)) < 1e-9,
              "the single point's accuracy is eval's without a dial")

        # The same table from two threads, written in place.
        inplace = os.path.join(m, "inplace.safetensors")
        shutil.copy(src, inplace)
        r = run("tune", inplace, "--escalate", thick, "--data", data, "--validation", str(N),
                "--threads", "2")
        check(r.returncode == 0 and points(inplace) == pts,
              "in place with 2 threads: the same points (rc %d)" % r.returncode)

        # Refusals: a message naming the problem, no file written.
        out = os.path.join(m, "refused.safetensors")
        refused("a split larger than the model's", [src, "--validation", "5001", "--data",
                                                     data], "trained on", out)
        other_dir = os.path.join(work, "elsewhere")
        os.makedirs(other_dir)
        shutil.copy(thick, other_dir)
        refused("a second model not beside the first",
                [src, "--escalate", os.path.join(other_dir, "thick.safetensors"),
                 "--validation", str(N), "--data", data], "must lie beside", out)
        shutil.copy(thick, os.path.join(m, "thick.bin"))
        refused("a second model not named .safetensors",
                [src, "--escalate", os.path.join(m, "thick.bin"), "--validation", str(N),
                 "--data", data], "expected NAME.safetensors", out)
        cfg = json.load(open(os.path.join(T.SRCDIR, "models", "fashion_mnist.json")))
        cfg["classes"][0] = "Tee"
        cfg_path = os.path.join(work, "other.json")
        json.dump(cfg, open(cfg_path, "w"))
        other = os.path.join(m, "other.safetensors")
        r = run("init", cfg_path, "-o", other, "--seed", "1")
        check(r.returncode == 0, "cigt init of a model with another class name")
        refused("a second model with other classes",
                [src, "--escalate", other, "--validation", str(N), "--data", data], "class",
                out)
        refused("data of another size than the provenance's split",
                [src, "--validation", str(N), "--data", small],
                "training split has 200 images but %s was trained and validated on one of "
                "60000" % src, out)
        refused("too few held-out images", [src, "--validation", str(N), "--validation-data",
                                            small], "fewer than the %d" % N, out)
        refused("no provenance", [other, "--data", data],
                "records no held-out validation split in its provenance (data.validation)",
                out)
        refused("no provenance, with --validation N", [other, "--data", data, "--validation",
                                                       str(N)], "give --validation-data DIR",
                out)

        # --validation-data: the same N images from a held-out directory, the same table.
        heldout = os.path.join(m, "heldout.safetensors")
        r = run("tune", src, "--escalate", thick, "--validation-data", held, "--threads", "1",
                "--out", heldout)
        check(r.returncode == 0 and "%d validation images (the last of --validation-data"
              % N in r.stderr, "--validation-data: rc %d %s" % (r.returncode,
                                                                r.stderr.strip()[-300:]))
        check(points(heldout) == pts, "--validation-data HELD (the last %d training images) "
              "gives the table --data chose on the same images" % N)
        refused("the training data as --validation-data", [src, "--validation-data", T.DATA],
                "it may be that data", out)

        # A folder-trained model of the old python/examples/train_folder.py: data is a path.
        folder = os.path.join(m, "folder.safetensors")
        T.with_provenance(src, folder, {"tool": "cigt.torch examples/train_folder.py",
                                        "data": data, "images": 60000, "steps": 10})
        refused("a model trained on every image (train_folder.py)", [folder, "--data", data],
                "%s records no held-out validation split in its provenance (data.validation), "
                "so it may have trained on any image of %s; give --validation-data DIR, an "
                "image folder or IDX directory it was not trained on" % (folder, data), out)
        refused("--validation-data is the folder it was trained on",
                [folder, "--validation-data", data], "was trained on it", out)
        r = run("tune", folder, "--validation-data", held, "--validation", "100", "--threads",
                "1", "--out", out)
        check(r.returncode == 0 and "100 validation images" in r.stderr,
              "the folder-trained model tunes on --validation-data (rc %d %s)"
              % (r.returncode, r.stderr.strip()[-200:]))
        if os.path.exists(out):
            os.remove(out)
        # A provenance that names its data: other data is refused.
        prov = T.provenance(src)
        named = os.path.join(m, "named.safetensors")
        T.with_provenance(src, named, dict(prov, data=dict(prov["data"], images=60000,
                                                           dir=T.DATA)))
        r = run("tune", named, "--validation", "50", "--threads", "1", "--out", out)
        check(r.returncode == 0, "the data the provenance names (%s) is accepted (rc %d %s)"
              % (T.DATA, r.returncode, r.stderr.strip()[-200:]))
        if os.path.exists(out):
            os.remove(out)
        refused("other data than the provenance names", [named, "--data", small],
                "was trained on %s, not on --data %s" % (T.DATA, small), out)

        # The --escalate model's provenance, checked the same way.
        for what, p2, frag in [
                ("no split", {"tool": "cigt.torch examples/train_folder.py", "data": data},
                 "--escalate %s records no held-out validation split"),
                ("a smaller split", dict(prov, data={"train": 59800, "validation": 200}),
                 "--validation 300: --escalate %s was validated on the last 200"),
                ("another dataset", dict(prov, data=dict(prov["data"], dir=small)),
                 "--escalate %s was trained on " + small)]:
            second = os.path.join(m, "second.safetensors")
            T.with_provenance(thick, second, p2)
            refused("--escalate with %s" % what, [src, "--escalate", second, "--validation",
                                                  str(N), "--data", data], frag % second, out)
        T.with_provenance(thick, second, dict(prov, data=dict(prov["data"], dir=held)))
        refused("--validation-data the --escalate model trained on",
                [src, "--escalate", second, "--validation-data", held],
                "--validation-data %s: --escalate %s was trained on it" % (held, second), out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("tune: %s" % ("FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
