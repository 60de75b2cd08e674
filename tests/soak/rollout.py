#!/usr/bin/python3
"""A rollout under load (issue 14): 64 keep-alive connections send inference requests to a
repository served in explicit mode while version 2 of fashion_mnist is published (atomic
rename) and loaded with the default policy (latest 1), so version 2 replaces version 1; later
version 1 is rolled back in the same way (version 2's folder removed, load again).

    rollout.py [SECONDS]        # default 12; the figures in tests/RELIABILITY.md

Connections: 32 send unversioned requests, 16 ask for version 1, 16 for version 2. Pass: no
request lost (every request gets an HTTP answer; no 5xx, no connection error); every 200 comes
from the version asked for (unversioned: either) and equals the engine's answer for that
version's file (`cigt eval --dump`); unversioned requests are all 200; versioned ones 200
while their version serves and 404 otherwise; after the load returns, unversioned answers come
from the new version only. Prints the counts and the switch-over. Environment as
tests/integration/test_cigtd.py. Exit 0 pass, 1 fail, 77 skipped.
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cigtd_common as T  # noqa: E402
import test_repository as R  # noqa: E402

CONNS = 64


def client(d, env, k, version, stop, out):
    conn = d.conn()
    i = k
    while not stop.is_set():
        img = i % R.NIMG
        t0 = time.monotonic()
        try:
            st, j = R.infer(d, "fashion_mnist", env["images"][img], version=version, conn=conn)
        except OSError as e:
            out.append((version, "error: %s" % e, None, img, t0, time.monotonic()))
            conn = d.conn()
            continue
        out.append((version, st, j, img, t0, time.monotonic()))
        if st == 404:
            time.sleep(0.005)  # a client told "not loaded" does not spin
        i += 13
    conn.close()


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 12.0
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = tempfile.mkdtemp(prefix="cigt-rollout-")
    env = {"images": T.load_images(R.NIMG), "ref": {}}
    files = {1: os.path.join(T.SRCDIR, "models", "fashion_mnist.safetensors"),
             2: os.path.join(T.SRCDIR, "models", "fashion_mnist_authors.safetensors")}
    for v, f in files.items():
        env["ref"][("fashion_mnist", v)] = T.reference(f, work, R.NIMG)
    repo = os.path.join(work, "repo")
    R.put(repo, "fashion_mnist", 1, files[1])
    d = R.RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                  "--load-model", "fashion_mnist", "--max-connections-per-ip", "0")
    stop = threading.Event()
    out = []
    kinds = [None] * 32 + [1] * 16 + [2] * 16
    threads = [threading.Thread(target=client, args=(d, env, k, v, stop, out))
               for k, v in enumerate(kinds)]
    marks = {}
    try:
        for t in threads:
            t.start()
        time.sleep(secs / 3)
        stage = os.path.join(work, "stage")
        R.put(work, "stage", 2, files[2])
        marks["publish"] = time.monotonic()
        os.rename(os.path.join(stage, "2"), os.path.join(repo, "fashion_mnist", "2"))
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist/load", {})
        marks["rolled out"] = time.monotonic()
        T.check(st == 200, "load of version 2 -> 200 (%s)" % body)
        time.sleep(secs / 3)
        marks["rollback"] = time.monotonic()
        shutil.rmtree(os.path.join(repo, "fashion_mnist", "2"))
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist/load", {})
        marks["rolled back"] = time.monotonic()
        T.check(st == 200, "load after removing version 2 -> 200 (%s)" % body)
        time.sleep(secs / 3)
        stop.set()
        for t in threads:
            t.join(60)
        counts, wrong, mismatched, lost = {}, 0, 0, 0
        late_old = 0  # unversioned answers from the old version after a load returned
        for version, st, j, img, t0, t1 in out:
            counts[(version, st)] = counts.get((version, st), 0) + 1
            if st != 200:
                lost += not isinstance(st, int) or st >= 500
                continue
            got = int(j["model_version"])
            if version and got != version:
                wrong += 1
            ref = env["ref"][("fashion_mnist", got)][img]
            if R.v2_answer(j)["class"] != ref["class"] or R.v2_answer(j)["route"] != ref["route"]:
                mismatched += 1
            if version is None and ((marks["rolled out"] < t0 < marks["rollback"] and got == 1)
                                    or (t0 > marks["rolled back"] and got == 2)):
                late_old += 1
        total = len(out)
        print("requests %d over %.0f s on %d connections; by (version asked, status): %s"
              % (total, secs, CONNS, dict(sorted(counts.items(), key=str))))
        print("load of version 2 took %.0f ms, the rollback %.0f ms"
              % (1000 * (marks["rolled out"] - marks["publish"]),
                 1000 * (marks["rolled back"] - marks["rollback"])))
        unv = sorted((t0, int(j["model_version"])) for v, st, j, img, t0, t1 in out
                     if v is None and st == 200)
        first2 = next((t for t, g in unv if g == 2), None)
        last1 = max((t for t, g in unv if g == 1 and t < marks["rollback"]), default=None)
        if first2 and last1:
            print("unversioned: last version-1 answer sent %+.0f ms, first version-2 answer "
                  "sent %+.0f ms from the publish" % (1000 * (last1 - marks["publish"]),
                                                      1000 * (first2 - marks["publish"])))
        T.check(lost == 0, "%d requests lost (5xx or connection error)" % lost)
        T.check(wrong == 0, "%d answers from a version other than the one asked for" % wrong)
        T.check(mismatched == 0, "%d answers differ from the engine's" % mismatched)
        T.check(late_old == 0, "%d unversioned answers from the old version after a load "
                               "returned" % late_old)
        T.check(all(st == 200 for v, st, *_ in out if v is None), "unversioned all 200")
        T.check(all(st in (200, 404) for v, st, *_ in out if v), "versioned 200 or 404")
        T.check(counts.get((2, 200), 0) > 0 and counts.get((1, 404), 0) > 0,
                "both versions were switched")
    finally:
        stop.set()
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("rollout: %s" % ("FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
