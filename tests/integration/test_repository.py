#!/usr/bin/python3
"""Integration tests for cigtd's model repository (--model-repository DIR): layouts good and bad,
every repository endpoint with its errors, load and unload under concurrent traffic with every
answer checked against the engine, poll mode while a file is being written, and fairness between
a busy model and a quiet one.

The repository holds the shipped models: fashion_mnist (version 1 = models/fashion_mnist, version
2 = models/fashion_mnist_authors), fashion_mnist_thin and fashion_mnist_thick; each answer is
compared with `cigt eval --dump` of the file of the version the answer says computed it.
Run one group: test_repository.py --group layouts|endpoints|rollout|poll|fairness
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cigtd_common as T  # noqa: E402
from cigtd_common import check, metric, wait_for  # noqa: E402

MODELS = {  # (name, version) -> file under models/
    ("fashion_mnist", 1): "fashion_mnist.safetensors",
    ("fashion_mnist", 2): "fashion_mnist_authors.safetensors",
    ("fashion_mnist_thin", 1): "thin.safetensors",
    ("fashion_mnist_thick", 1): "thick.safetensors",
}
NIMG = 64


class RDaemon(T.Daemon):
    """cigtd with arbitrary flags (no --model)."""

    def __init__(self, *args):
        super().__init__(None, *args, start_timeout=60)


def put(repo, name, version, src=None):
    """A version folder; with src, its model file, and the second models src's operating points
    escalate to (cigtd loads them from beside the file: models/thick.safetensors)."""
    d = os.path.join(repo, name, str(version))
    os.makedirs(d, exist_ok=True)
    if src:
        shutil.copy(src, os.path.join(d, "model.safetensors"))
        thick = os.path.join(os.path.dirname(src), "thick.safetensors")
        if os.path.basename(src) == "fashion_mnist.safetensors" and os.path.exists(thick):
            shutil.copy(thick, os.path.join(d, "thick.safetensors"))
    return d


def standard_repo(env, root, with_v2=True):
    for (name, v), f in MODELS.items():
        if v == 2 and not with_v2:
            continue
        put(root, name, v, env["files"][(name, v)])
    return root


def infer(d, name, img, version=None, conn=None):
    path = "/v2/models/%s%s/infer" % (name, "/versions/%d" % version if version else "")
    st, _, body = d.post_json(path, {"inputs": [{"name": "image", "datatype": "UINT8",
                                                 "shape": [1, 1, 28, 28], "data": list(img)}]},
                              conn=conn)
    return st, (json.loads(body) if body else None)


def infer_many(d, name, imgs, version=None):
    """One OIP request carrying every image of imgs."""
    path = "/v2/models/%s%s/infer" % (name, "/versions/%d" % version if version else "")
    data = [px for img in imgs for px in img]
    st, _, body = d.post_json(path, {"inputs": [{"name": "image", "datatype": "UINT8",
                                                 "shape": [len(imgs), 1, 28, 28],
                                                 "data": data}]})
    return st, (json.loads(body) if body else None)


def check_v2_many(env, j, first, n, what):
    """Answer k of j against the engine's answer to image first + k, k < n."""
    outs = {o["name"]: o["data"] for o in j["outputs"]}
    key = (j["model_name"], int(j["model_version"]))
    if not check(len(outs["class"]) == n, "%s: %d answers" % (what, n)):
        return False
    L, K = len(outs["route"]) // n, len(outs["probabilities"]) // n
    ok = True
    for k in range(n):
        got = {"class": outs["class"][k], "route": outs["route"][k * L:(k + 1) * L],
               "probabilities": outs["probabilities"][k * K:(k + 1) * K]}
        ok &= T.same_answer(got, env["ref"][key][first + k], "%s #%d (%s v%d)" % (what, k, *key))
    return ok


def check_batch_stats(s, want, what):
    """Triton's batch_stats of one model_stats entry s: the (batch_size, executions) pairs of
    want, ascending; compute_infer's ns > 0 and summing to the aggregate's; compute_input and
    compute_output counting the same executions with 0 ns; counts summing to execution_count
    and batch_size * count to inference_count."""
    bs = s["batch_stats"]
    got = [(b["batch_size"], b["compute_infer"]["count"]) for b in bs]
    ok = check(got == want, "%s: batch_stats sizes/counts %s, expected %s" % (what, got, want))
    ok &= check(all(sorted(b) == ["batch_size", "compute_infer", "compute_input",
                                  "compute_output"]
                    and b["compute_infer"]["ns"] > 0
                    and b["compute_input"] == {"count": b["compute_infer"]["count"], "ns": 0}
                    and b["compute_output"] == {"count": b["compute_infer"]["count"], "ns": 0}
                    for b in bs), "%s: batch_stats entries in Triton's shape: %s" % (what, bs))
    ok &= check(sum(c for _, c in got) == s["execution_count"]
                and sum(n * c for n, c in got) == s["inference_count"]
                and sum(b["compute_infer"]["ns"] for b in bs)
                == s["inference_stats"]["compute_infer"]["ns"],
                "%s: batch_stats add up to the aggregate: %s" % (what, s))
    return ok


def v2_answer(j):
    outs = {o["name"]: o["data"] for o in j["outputs"]}
    return {"class": outs["class"][0], "route": outs["route"],
            "probabilities": outs["probabilities"]}


def check_v2(env, j, i, what):
    key = (j["model_name"], int(j["model_version"]))
    return T.same_answer(v2_answer(j), env["ref"][key][i], "%s (%s v%d)" % (what, *key))


def error_of(body):
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------- groups

def group_layouts(env):
    repo = os.path.join(env["work"], "layouts")
    standard_repo(env, repo, with_v2=False)
    f1 = env["files"][("fashion_mnist", 1)]
    # Version folders that are not versions: ignored, with a log line.
    for bad in ("0", "007", "abc", "-1", "1.5"):
        os.makedirs(os.path.join(repo, "fashion_mnist", bad), exist_ok=True)
    # A name mismatch: the thin model in a folder called wrong_name.
    put(repo, "wrong_name", 1, env["files"][("fashion_mnist_thin", 1)])
    # A version folder without the file, and one whose file is truncated.
    os.makedirs(os.path.join(repo, "nofile", "1"))
    put(repo, "truncated", 1)
    with open(f1, "rb") as f, open(os.path.join(repo, "truncated", "1", "model.safetensors"),
                                    "wb") as g:
        g.write(f.read()[:100000])
    # Symlinks leaving the repository: a model file and a whole model folder.
    outside = os.path.join(env["work"], "outside")
    put(outside, "fashion_mnist", 1, f1)
    os.makedirs(os.path.join(repo, "escape", "1"))
    os.symlink(os.path.join(outside, "fashion_mnist", "1", "model.safetensors"),
               os.path.join(repo, "escape", "1", "model.safetensors"))
    os.symlink(os.path.join(outside, "fashion_mnist"), os.path.join(repo, "linked_out"))
    # A symlink inside the repository is fine.
    os.makedirs(os.path.join(repo, "fashion_mnist_thick", "2"))
    os.symlink(os.path.join(repo, "fashion_mnist_thick", "1", "model.safetensors"),
               os.path.join(repo, "fashion_mnist_thick", "2", "model.safetensors"))
    # A FIFO where the file should be must not block the loader.
    os.makedirs(os.path.join(repo, "fifo", "1"))
    os.mkfifo(os.path.join(repo, "fifo", "1", "model.safetensors"))
    # Bad config.json files.
    for name, text, words in (("cfg_syntax", "{", "config.json: line"),
                              ("cfg_key", '{"max_batch": 4}', "unknown key 'max_batch'"),
                              ("cfg_policy", '{"version_policy": {"newest": {}}}',
                               "version_policy: unknown key 'newest'"),
                              ("cfg_range", '{"max_batch_size": 0}',
                               "max_batch_size: expected an integer in [1, 4096]")):
        put(repo, name, 1, f1)
        with open(os.path.join(repo, name, "config.json"), "w") as f:
            f.write(text)
        env.setdefault("cfg_words", {})[name] = words
    # 10,000 empty version folders.
    many = os.path.join(repo, "many")
    for v in range(1, 10001):
        os.makedirs(os.path.join(many, str(v)))
    with open(os.path.join(many, "config.json"), "w") as f:
        f.write('{"version_policy": {"all": {}}}')
    # Not model names: ignored.
    os.makedirs(os.path.join(repo, ".hidden", "1"))
    os.makedirs(os.path.join(repo, "sp ace", "1"))

    t0 = time.monotonic()
    d = RDaemon("--model-repository", repo)
    try:
        check(any("fashion_mnist/abc ignored: not a version" in l for l in d.lines),
              "non-numeric version folder logged")
        check(any("fashion_mnist/0 ignored" in l for l in d.lines), "version 0 logged")
        check(any("fashion_mnist/007 ignored" in l for l in d.lines), "leading zero logged")
        check(any("sp ace ignored: not a model name" in l for l in d.lines),
              "bad model name logged")
        st, _, body = d.request("POST", "/v2/repository/index", b"{}")
        idx = json.loads(body)
        check(st == 200, "index -> 200")
        state = {}
        for e in idx:
            state.setdefault(e["name"], []).append(e)

        def reason(name):
            return " | ".join(e["reason"] for e in state.get(name, []))
        check([e["version"] for e in state["fashion_mnist"]] == ["1"]
              and state["fashion_mnist"][0]["state"] == "READY",
              "fashion_mnist: only version 1 listed and ready: %s" % state["fashion_mnist"])
        check("does not match its folder 'wrong_name'" in reason("wrong_name")
              and "fashion_mnist_thin" in reason("wrong_name"),
              "name mismatch reported: %s" % reason("wrong_name"))
        check("no model.safetensors" in reason("nofile"), "missing file: %s" % reason("nofile"))
        check(state["truncated"][0]["state"] == "UNAVAILABLE" and reason("truncated"),
              "truncated file refused: %s" % reason("truncated"))
        check("outside the repository" in reason("escape"),
              "symlinked file leaving the repository refused: %s" % reason("escape"))
        check("linked_out" not in state, "symlinked model folder leaving the repository ignored")
        check(any("linked_out ignored" in l for l in d.lines), "that folder is logged")
        check("not a regular file" in reason("fifo"), "FIFO refused: %s" % reason("fifo"))
        for name, words in env["cfg_words"].items():
            check(words in reason(name), "%s: reason %r should mention %r" % (name, reason(name),
                                                                              words))
        check(len(state["many"]) == 10000 and all(e["state"] == "UNAVAILABLE"
                                                  for e in state["many"]),
              "10,000 empty version folders listed as unavailable")
        check(".hidden" not in state and "sp ace" not in state, "hidden and bad names ignored")
        # Thick: version 2 is a symlink to version 1 inside the repository; latest 1 -> v2.
        st, j = infer(d, "fashion_mnist_thick", env["images"][0])
        check(st == 200 and j["model_version"] == "2", "symlink inside the repository serves")
        # Readiness: models that should load did not, so the server is not ready; the
        # models that did are.
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 400, "not ready while some models failed to load")
        st, _, _ = d.request("GET", "/v2/models/fashion_mnist/ready")
        check(st == 200, "a loaded model is ready")
        st, _, body = d.request("GET", "/v2/models/nofile/ready")
        check(st == 404 and "'nofile' not found" in (error_of(body) or ""),
              "a failed model is 404 naming it")
        for i in range(8):
            st, j = infer(d, "fashion_mnist", env["images"][i])
            check(st == 200, "infer on the good model") and check_v2(env, j, i, "layouts")
    finally:
        d.stop()
    check(time.monotonic() - t0 < 120, "layouts daemon ran and stopped")
    # Unreadable files: as root everything is readable, so the check runs as nobody.
    unread = os.path.join(env["work"], "unread")
    put(unread, "fashion_mnist", 1, f1)
    os.chmod(os.path.join(unread, "fashion_mnist", "1", "model.safetensors"), 0)
    for p in (env["work"], unread):
        os.chmod(p, 0o755)
    cmd = [T.CIGTD, "--check-config", "--model-repository", unread]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    check(out.returncode == 1 and "Permission denied" in out.stderr,
          "unreadable file refused by --check-config: %d %s" % (out.returncode, out.stderr))
    out = subprocess.run([T.CIGTD, "--check-config", "--model-repository",
                          os.path.join(env["work"], "missing")], capture_output=True, text=True)
    check(out.returncode == 1 and "is not a readable folder" in out.stderr,
          "missing repository refused: %s" % out.stderr)
    return 0


def group_endpoints(env):
    repo = standard_repo(env, os.path.join(env["work"], "ep"))
    with open(os.path.join(repo, "fashion_mnist", "config.json"), "w") as f:
        f.write('{"version_policy": {"specific": {"versions": [1, 2]}}, "max_batch_size": 8,'
                ' "dynamic_batching": {"max_queue_delay_microseconds": 500}}')
    imgs = env["images"]
    d = RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                "--load-model", "fashion_mnist", "--load-model", "fashion_mnist_thin")
    try:
        st, _, body = d.request("GET", "/v2")
        check("model_repository" in json.loads(body)["extensions"], "/v2 lists model_repository")
        # Per-version and unversioned inference; each answer checked for the version it names.
        for i in range(4):
            st, j = infer(d, "fashion_mnist", imgs[i], version=1)
            check(st == 200 and j["model_version"] == "1", "v1 infer") and \
                check_v2(env, j, i, "versioned v1")
            st, j = infer(d, "fashion_mnist", imgs[i])
            check(st == 200 and j["model_version"] == "2", "unversioned = highest (2)") and \
                check_v2(env, j, i, "unversioned")
            st, j = infer(d, "fashion_mnist_thin", imgs[i])
            check(st == 200 and j["model_name"] == "fashion_mnist_thin", "thin infer") and \
                check_v2(env, j, i, "thin")
        st, j = infer(d, "fashion_mnist", imgs[0], version=3)
        st, _, body = d.post_json("/v2/models/fashion_mnist/versions/3/infer", {})
        check(st == 404 and "version 3 not found" in error_of(body), "404 for a missing version")
        st, _, body = d.post_json("/v2/models/fashion_mnist/versions/x1/infer", {})
        check(st == 404 and "not a version" in error_of(body), "404 for a non-numeric version")
        st, _, body = d.post_json("/v2/models/fashion_mnist_thick/infer", {})
        check(st == 404 and "'fashion_mnist_thick' not found" in error_of(body),
              "404 naming an unloaded model: %s" % error_of(body))
        # Native API.
        st, _, body = d.post_json("/v1/models/fashion_mnist_thin/classify", {"image": list(imgs[5])})
        j = json.loads(body)
        check(st == 200 and j["model"] == "fashion_mnist_thin" and j["model_version"] == "1",
              "native per-model classify") and \
            T.same_answer(j, env["ref"][("fashion_mnist_thin", 1)][5], "native thin")
        st, _, body = d.post_json("/v1/models/fashion_mnist/versions/1/classify",
                                  {"images": [list(imgs[6]), list(imgs[7])]})
        j = json.loads(body)
        check(st == 200 and j["model_version"] == "1" and j["count"] == 2, "native batch v1")
        for k, r in enumerate(j.get("results", [])):
            T.same_answer(r, env["ref"][("fashion_mnist", 1)][6 + k], "native batch v1")
        st, _, body = d.post_json("/v1/classify", {"image": list(imgs[0])})
        check(st == 400 and "fashion_mnist, fashion_mnist_thin" in error_of(body)
              and "--default-model" in error_of(body),
              "/v1/classify with two models and no default: 400 naming them: %s" % error_of(body))
        st, _, body = d.request("GET", "/v1/model")
        check(st == 400, "/v1/model ambiguous -> 400")
        st, _, body = d.request("GET", "/v1/models/fashion_mnist/versions/1")
        j = json.loads(body)
        check(st == 200 and j["name"] == "fashion_mnist" and j["version"] == "1",
              "GET /v1/models/{name}/versions/{v}")
        st, _, body = d.request("GET", "/v1/models")
        j = json.loads(body)
        check(st == 200 and [m["name"] for m in j["models"]] == ["fashion_mnist",
                                                                  "fashion_mnist_thin"]
              and j["default"] is None, "GET /v1/models: %s" % j)
        # Batches of known sizes, one request at a time (each answer awaited): a request's
        # samples are queued together and run as one batch when they fit max_batch (thin: 16,
        # so 3 images are one batch of 3), else as batches of max_batch and the rest
        # (fashion_mnist version 2: max_batch_size 8, so 10 images are a batch of 8 and one of
        # 2). The single requests above were batches of 1, the native pair one batch of 2.
        st, j = infer_many(d, "fashion_mnist_thin", imgs[10:13])
        check(st == 200, "thin: 3 images in one request") and \
            check_v2_many(env, j, 10, 3, "thin 3 images")
        st, j = infer_many(d, "fashion_mnist", imgs[20:30], version=2)
        check(st == 200, "v2: 10 images in one request") and \
            check_v2_many(env, j, 20, 10, "v2 10 images")
        # Metadata, config, stats.
        st, _, body = d.request("GET", "/v2/models/fashion_mnist")
        check(st == 200 and json.loads(body)["versions"] == ["2", "1"], "metadata lists versions")
        st, _, body = d.request("GET", "/v2/models/fashion_mnist/versions/2/config")
        c = json.loads(body)
        check(st == 200 and c["name"] == "fashion_mnist" and c["max_batch_size"] == 8
              and c["input"][0]["dims"] == [1, 28, 28]
              and c["dynamic_batching"]["max_queue_delay_microseconds"] == 500
              and c["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 4096
              and c["version_policy"] == {"specific": {"versions": [1, 2]}}
              and [o["name"] for o in c["output"]] == ["probabilities", "class", "route", "macs",
                                                       "paths", "escalated"]
              and c["output"][4] == {"name": "paths", "data_type": "TYPE_BOOL", "dims": [8]},
              "Triton config: %s" % c)
        st, _, body = d.request("GET", "/v2/models/fashion_mnist_thin/stats")
        s = json.loads(body)["model_stats"]
        check(st == 200 and len(s) == 1 and s[0]["version"] == "1"
              and s[0]["inference_stats"]["success"]["count"] == 6
              and s[0]["inference_count"] == 8 and s[0]["execution_count"] == 6
              and s[0]["inference_stats"]["compute_infer"]["ns"] > 0,
              "thin stats count its 6 answered requests, 8 samples, 6 batches: %s" % s) and \
            check_batch_stats(s[0], [(1, 5), (3, 1)], "thin")
        st, _, body = d.request("GET", "/v2/models/fashion_mnist/stats")
        s = {e["version"]: e for e in json.loads(body)["model_stats"]}
        check(st == 200 and sorted(s) == ["1", "2"], "fashion_mnist stats: both versions") and \
            check_batch_stats(s["1"], [(1, 4), (2, 1)], "fashion_mnist v1") and \
            check_batch_stats(s["2"], [(1, 4), (2, 1), (8, 1)], "fashion_mnist v2")
        st, _, body = d.request("GET", "/v2/models/fashion_mnist_thin/config")
        c = json.loads(body)
        check(st == 200 and c["max_batch_size"] == 16 and c["version_policy"] ==
              {"latest": {"num_versions": 1}}, "defaults in a config without config.json")
        st, _, body = d.request("GET", "/v2/models/stats")
        check(st == 200 and len(json.loads(body)["model_stats"]) == 3, "all stats")
        m = d.metrics()
        check(metric(m, "cigt_model_requests_total", model="fashion_mnist_thin", version="1",
                     result="success") == 6, "per-version request metric")
        check(metric(m, "cigt_model_samples_total", model="fashion_mnist", version="1") == 6,
              "per-version samples metric")
        check(metric(m, "cigt_model_ready", model="fashion_mnist", version="2") == 1,
              "ready gauge")
        # Repository API: index filters, bad bodies, load, unload.
        st, _, body = d.post_json("/v2/repository/index", {"ready": True})
        idx = json.loads(body)
        check(st == 200 and sorted((e["name"], e["version"]) for e in idx) ==
              [("fashion_mnist", "1"), ("fashion_mnist", "2"), ("fashion_mnist_thin", "1")], "index ready=true: %s" % idx)
        st, _, body = d.post_json("/v2/repository/index", {})
        idx = json.loads(body)
        check(("fashion_mnist_thick", "1", "UNAVAILABLE") in
              [(e["name"], e.get("version"), e["state"]) for e in idx], "index lists unloaded")
        for bad, words in ((b"[", "not JSON"), (b'{"ready": 1}', "true or false"),
                           (b'{"ready": true, "x": 1}', "unknown key"), (b'[]', "object")):
            st, _, body = d.request("POST", "/v2/repository/index", bad)
            check(st == 400 and words in (error_of(body) or ""), "index %r -> 400 %r" % (bad,
                                                                                    words))
        st, _, body = d.request("GET", "/v2/repository/index")
        check(st == 405, "GET index -> 405")
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist_thick/load",
                                  {"parameters": {"config": "{}"}})
        check(st == 400 and "not supported" in error_of(body), "load parameters refused")
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 200, "explicit mode: ready with the --load-model models loaded")
        st, _, body = d.post_json("/v2/repository/models/nosuch/load", {})
        check(st == 404 and "nosuch" in error_of(body), "load unknown -> 404: %s" % body)
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 200, "a failed API load is dropped: still ready")
        st, _, body = d.post_json("/v2/repository/models/..%2Fx/load", {})
        check(st in (400, 404), "load '../x' refused (%d)" % st)
        st, _, body = d.request("POST", "/v2/repository/models/fashion_mnist_thick/load")
        check(st == 200, "load thick -> 200 %s" % body)
        st, j = infer(d, "fashion_mnist_thick", imgs[9])
        check(st == 200, "thick serves after load") and check_v2(env, j, 9, "thick")
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist_thin/unload", {})
        check(st == 200, "unload thin -> 200")
        st, j = infer(d, "fashion_mnist_thin", imgs[0])
        check(st == 404, "thin 404 after unload")
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 200, "an unloaded model is not waited for: still ready")
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist_thin/unload", {})
        check(st == 404 and "not loaded" in error_of(body), "second unload -> 404")
        # SIGHUP in explicit mode rescans the loaded models only.
        d.signal(T.signal.SIGHUP)
        check(wait_for(lambda: any("SIGHUP: rescanning" in l for l in d.lines)), "SIGHUP logged")
        st, j = infer(d, "fashion_mnist_thin", imgs[0])
        check(st == 404, "SIGHUP does not load an unloaded model in explicit mode")
        # Loaded again, a version starts from empty statistics (a new holder).
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist_thin/load", {})
        check(st == 200, "load thin again -> 200 %s" % body)
        st, _, body = d.request("GET", "/v2/models/fashion_mnist_thin/versions/1/stats")
        s = json.loads(body)["model_stats"]
        check(st == 200 and len(s) == 1 and s[0]["inference_count"] == 0
              and s[0]["execution_count"] == 0
              and s[0]["inference_stats"]["success"]["count"] == 0
              and s[0]["batch_stats"] == [], "reloaded thin starts from empty stats: %s" % s)
        st, j = infer(d, "fashion_mnist_thin", imgs[4])
        check(st == 200, "reloaded thin serves") and check_v2(env, j, 4, "reloaded thin")
        st, _, body = d.request("GET", "/v2/models/fashion_mnist_thin/versions/1/stats")
        s = json.loads(body)["model_stats"]
        check(st == 200 and len(s) == 1, "reloaded thin stats") and \
            check_batch_stats(s[0], [(1, 1)], "reloaded thin")
    finally:
        d.stop()
    # none mode refuses load/unload; --default-model picks the default.
    d = RDaemon("--model-repository", repo, "--default-model", "fashion_mnist_thick")
    try:
        for op in ("load", "unload"):
            st, _, body = d.post_json("/v2/repository/models/fashion_mnist/%s" % op, {})
            check(st == 400 and "control mode is none" in error_of(body)
                  and "explicit" in error_of(body), "%s refused in none mode" % op)
        st, _, body = d.post_json("/v1/classify", {"image": list(imgs[3])})
        j = json.loads(body)
        check(st == 200 and j["model"] == "fashion_mnist_thick", "default model serves /v1") \
            and T.same_answer(j, env["ref"][("fashion_mnist_thick", 1)][3], "default")
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 200, "ready with every model loaded")
        # none mode ignores changes until SIGHUP, which rescans.
        put(repo, "fashion_mnist_thick", 2, env["files"][("fashion_mnist_thick", 1)])
        time.sleep(1.5)
        st, j = infer(d, "fashion_mnist_thick", imgs[0])
        check(st == 200 and j["model_version"] == "1", "none mode: a new version waits")
        d.signal(T.signal.SIGHUP)
        check(wait_for(lambda: infer(d, "fashion_mnist_thick", imgs[0])[1]["model_version"]
                       == "2"), "none mode: SIGHUP loads the new version")
        st, j = infer(d, "fashion_mnist_thick", imgs[0], version=1)
        check(st == 404, "latest 1: version 1 unloaded after version 2 loaded")
        shutil.rmtree(os.path.join(repo, "fashion_mnist_thick", "2"))
    finally:
        d.stop()
    # The same settings from a --config file (one table drives flags and file).
    cfgfile = os.path.join(env["work"], "cigtd.json")
    with open(cfgfile, "w") as f:
        json.dump({"model_repository": repo, "model_control_mode": "explicit",
                   "load_model": ["fashion_mnist_thin", "fashion_mnist_thick"],
                   "default_model": "fashion_mnist_thin"}, f)
    d = RDaemon("--config", cfgfile)
    try:
        st, _, body = d.post_json("/v1/classify", {"image": list(imgs[1])})
        j = json.loads(body)
        check(st == 200 and j["model"] == "fashion_mnist_thin", "config file: default model")
        st, _, body = d.post_json("/v2/repository/index", {"ready": True})
        check(sorted(e["name"] for e in json.loads(body)) == ["fashion_mnist_thick",
                                                             "fashion_mnist_thin"],
              "config file: load_model list loaded: %s" % body)
    finally:
        d.stop()
    # A --load-model that cannot load keeps the server not ready, and says why.
    d = RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                "--load-model", "nosuch", "--load-model", "fashion_mnist_thin")
    try:
        st, _, _ = d.request("GET", "/v2/health/ready")
        check(st == 400, "not ready while a --load-model model is missing")
        st, _, body = d.post_json("/v2/repository/index", {})
        e = [x for x in json.loads(body) if x["name"] == "nosuch"]
        check(e and e[0]["state"] == "UNAVAILABLE" and "no such model" in e[0]["reason"],
              "index says why: %s" % e)
        check(any("--load-model nosuch: no such model" in l for l in d.lines), "logged")
        st, j = infer(d, "fashion_mnist_thin", imgs[0])
        check(st == 200, "the other model serves")
    finally:
        d.stop()
    # --model PATH: a one-model repository named after the file's model; a reload with a
    # model of another name is refused and the old one keeps serving.
    live = os.path.join(env["work"], "live.safetensors")
    shutil.copy(env["files"][("fashion_mnist", 1)], live)
    shutil.copy(env["files"][("fashion_mnist_thick", 1)],
                os.path.join(env["work"], "thick.safetensors"))
    d = RDaemon("--model", live)
    try:
        st, _, body = d.request("GET", "/v1/models")
        check(json.loads(body) == {"default": "fashion_mnist", "models": [
            {"name": "fashion_mnist", "versions": ["1"]}]}, "--model: one model, version 1")
        shutil.copy(env["files"][("fashion_mnist_thin", 1)], live)
        d.signal(T.signal.SIGHUP)
        check(wait_for(lambda: any("differs from 'fashion_mnist'" in l for l in d.lines)),
              "--model: a reload with another model's name is refused")
        st, j = infer(d, "fashion_mnist", imgs[0])
        check(st == 200, "--model: the old model still serves") and check_v2(env, j, 0, "old")
        st, _, _ = d.request("GET", "/v2/models/fashion_mnist_thin")
        check(st == 404, "--model: the refused model is not served")
    finally:
        d.stop()
    out = subprocess.run([T.CIGTD, "--model-repository", repo, "--model", "x"],
                         capture_output=True, text=True)
    check(out.returncode != 0 and "exclude each other" in out.stderr, "--model with a repository")
    out = subprocess.run([T.CIGTD, "--model-repository", repo, "--load-model", "x"],
                         capture_output=True, text=True)
    check(out.returncode != 0 and "explicit" in out.stderr, "--load-model needs explicit")
    out = subprocess.run([T.CIGTD, "--model-control-mode", "sometimes"], capture_output=True,
                         text=True)
    check(out.returncode != 0 and "none, poll or explicit" in out.stderr, "bad control mode")
    return 0


def traffic(d, env, stop, results, name, version, seed):
    """One client thread: requests until stop, recording (asked version, status, answer)."""
    conn = d.conn()
    i = seed
    while not stop.is_set():
        k = i % NIMG
        try:
            st, j = infer(d, name, env["images"][k], version=version, conn=conn)
        except OSError as e:
            results.append((version, "error %s" % e, None, k))
            conn = d.conn()
            continue
        results.append((version, st, j, k))
        i += 7


def group_rollout(env):
    """Versions load and unload in a loop while clients ask for each version and for the
    highest: nothing is lost, and every answer comes from the version asked for."""
    repo = os.path.join(env["work"], "roll")
    put(repo, "fashion_mnist", 1, env["files"][("fashion_mnist", 1)])
    with open(os.path.join(repo, "fashion_mnist", "config.json"), "w") as f:
        f.write('{"version_policy": {"all": {}}}')
    d = RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                "--load-model", "fashion_mnist")
    stop = threading.Event()
    results = []
    threads = [threading.Thread(target=traffic, args=(d, env, stop, results, "fashion_mnist",
                                                      v, s))
               for s, v in enumerate([1, 1, None, None, 2, 2])]
    try:
        for t in threads:
            t.start()
        v2dir = os.path.join(repo, "fashion_mnist", "2")
        staging = os.path.join(env["work"], "staging2")
        rounds = 6
        for _ in range(rounds):
            # Publish version 2 atomically, load, serve a while, then remove and rescan.
            put(env["work"], "staging2", "x")
            shutil.copy(env["files"][("fashion_mnist", 2)], os.path.join(staging, "x",
                                                                         "model.safetensors"))
            os.rename(os.path.join(staging, "x"), v2dir)
            st, _, body = d.post_json("/v2/repository/models/fashion_mnist/load", {})
            check(st == 200, "load with version 2 -> 200 (%s)" % body)
            time.sleep(0.5)
            shutil.rmtree(v2dir)
            st, _, body = d.post_json("/v2/repository/models/fashion_mnist/load", {})
            check(st == 200, "reload without version 2 -> 200")
            time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(60)
        by = {}
        wrong = 0
        for version, st, j, k in results:
            by[(version, st)] = by.get((version, st), 0) + 1
            if st != 200:
                continue
            if version is not None and j["model_version"] != str(version):
                wrong += 1
            if not check_v2(env, j, k, "rollout"):
                break
        print("rollout answers by (asked version, status):", by)
        check(wrong == 0, "%d answers from a version other than the one asked for" % wrong)
        check(by.get((1, 200), 0) > 0 and not [k for k in by if k[0] == 1 and k[1] != 200],
              "version 1 (always loaded) answered every request 200: %s" % by)
        check(not [k for k in by if k[0] is None and k[1] != 200],
              "unversioned requests all answered 200: %s" % by)
        check(by.get((2, 200), 0) > 0 and not [k for k in by if k[0] == 2 and k[1] not in
                                               (200, 404)],
              "version 2 answered 200 while loaded, 404 otherwise: %s" % by)
        m = d.metrics()
        check(metric(m, "cigt_model_loads_total", model="fashion_mnist", result="success")
              == 1 + rounds, "loads counted")
        check(metric(m, "cigt_requests_in_flight") <= 1, "nothing left in flight")
    finally:
        stop.set()
        d.stop()
    return 0


def group_poll(env):
    """Poll mode: a version folder whose file is still being written is never served half-read;
    it serves once complete; a removed folder unloads."""
    repo = os.path.join(env["work"], "poll")
    put(repo, "fashion_mnist", 1, env["files"][("fashion_mnist", 1)])
    d = RDaemon("--model-repository", repo, "--model-control-mode", "poll",
                "--repository-poll-secs", "1")
    try:
        st, _, body = d.post_json("/v2/repository/models/fashion_mnist/load", {})
        check(st == 400 and "control mode is poll" in error_of(body), "load refused in poll")
        src = open(env["files"][("fashion_mnist", 2)], "rb").read()
        vdir = os.path.join(repo, "fashion_mnist", "2")
        os.makedirs(vdir)
        # Written in place, slowly, over several polls: the non-atomic way.
        chunks = 8
        with open(os.path.join(vdir, "model.safetensors"), "wb") as f:
            for c in range(chunks):
                f.write(src[c * len(src) // chunks:(c + 1) * len(src) // chunks])
                f.flush()
                if c == chunks - 1:
                    break  # complete now
                t_end = time.monotonic() + 0.6
                while time.monotonic() < t_end:
                    st, j = infer(d, "fashion_mnist", env["images"][c])
                    check(st == 200 and j["model_version"] == "1",
                          "half-written version 2 never serves (chunk %d: %s)" % (c, st))
                    time.sleep(0.05)
        check(wait_for(lambda: infer(d, "fashion_mnist", env["images"][0])[1]["model_version"]
                       == "2", 15), "version 2 serves once complete")
        st, j = infer(d, "fashion_mnist", env["images"][1])
        check(st == 200, "infer v2") and check_v2(env, j, 1, "poll v2")
        check(any("fashion_mnist version 2" in l and "truncated" in l.lower() or
                  "fashion_mnist version 2:" in l for l in d.lines),
              "the partial file's failed load is logged")
        shutil.rmtree(vdir)
        check(wait_for(lambda: infer(d, "fashion_mnist", env["images"][0])[1]["model_version"]
                       == "1", 15), "removing version 2 falls back to version 1")
        st, j = infer(d, "fashion_mnist", env["images"][0], version=2)
        check(st == 404, "version 2 is 404 after its folder went")
        # A changed file of a serving version reloads (published by rename over the old one).
        tmp = os.path.join(repo, "fashion_mnist", "1", ".new")
        shutil.copy(env["files"][("fashion_mnist", 2)], tmp)
        os.rename(tmp, os.path.join(repo, "fashion_mnist", "1", "model.safetensors"))

        r1, r2 = env["ref"][("fashion_mnist", 1)], env["ref"][("fashion_mnist", 2)]
        k = max(range(NIMG), key=lambda i: max(abs(a - b) for a, b in zip(r1[i]["probs"],
                                                                           r2[i]["probs"])))

        def answers_like_v2_file():
            st, j = infer(d, "fashion_mnist", env["images"][k])
            got = v2_answer(j)["probabilities"] if st == 200 else r1[k]["probs"]
            return max(abs(a - b) for a, b in zip(got, r2[k]["probs"])) < 1e-5
        check(wait_for(answers_like_v2_file, 15), "a replaced file of version 1 reloads")
        check(any("fashion_mnist version 1 reloaded" in l for l in d.lines), "reload logged: %s"
              % [l for l in d.lines if "version 1 " in l])
        # A new model folder appears.
        staging = put(env["work"], "pstage", 1, env["files"][("fashion_mnist_thin", 1)])
        os.rename(os.path.join(env["work"], "pstage"), os.path.join(repo, "fashion_mnist_thin"))
        check(wait_for(lambda: infer(d, "fashion_mnist_thin", env["images"][0])[0] == 200, 15),
              "a new model folder loads")
        del staging
    finally:
        d.stop()
    return 0


def group_fairness(env):
    """A busy model must not starve another's requests past their deadlines: while many
    clients flood fashion_mnist_thick with 64-image requests, every single-image request to
    fashion_mnist_thin with a 2 s deadline is answered 200 (none 504)."""
    repo = standard_repo(env, os.path.join(env["work"], "fair"), with_v2=False)
    d = RDaemon("--model-repository", repo, "--workers", "2")
    stop = threading.Event()
    flood = []

    def busy(seed):
        conn = d.conn()
        body = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [64, 1, 28, 28],
                            "data": [list(env["images"][(seed + i) % NIMG]) for i in range(64)]}]}
        while not stop.is_set():
            st, _, _ = d.post_json("/v2/models/fashion_mnist_thick/infer", body, conn=conn)
            flood.append(st)
    threads = [threading.Thread(target=busy, args=(s,)) for s in range(12)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        quiet = []
        conn = d.conn()
        for i in range(40):
            st, _, body = d.post_json("/v1/models/fashion_mnist_thin/classify?timeout_ms=2000",
                                      {"image": list(env["images"][i])}, conn=conn)
            quiet.append(st)
            if st == 200:
                T.same_answer(json.loads(body), env["ref"][("fashion_mnist_thin", 1)][i],
                              "quiet model under flood")
        stop.set()
        for t in threads:
            t.join(60)
        check(quiet == [200] * 40, "quiet model answered every request: %s" % quiet)
        check(len(flood) > 0 and set(flood) == {200}, "flood answered: %s" % set(flood))
        m = d.metrics()
        check(metric(m, "cigt_samples_expired_total") == 0, "no sample expired")
    finally:
        stop.set()
        d.stop()
    return 0


def group_page(env):
    """The page's model picker: #model=NAME chooses the model the page classifies with."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium is not installed (apt-get install chromium)")
        return 77
    repo = standard_repo(env, os.path.join(env["work"], "page"), with_v2=False)
    d = RDaemon("--model-repository", repo)
    try:
        png = base64.b64encode(T.png_gray(env["images"][0], 28, 28)).decode()
        profile = tempfile.mkdtemp(dir=env["work"])
        for name in ("fashion_mnist_thin", "fashion_mnist_thick"):
            url = "http://127.0.0.1:%d/#model=%s&png=%s" % (d.port, name, png)
            out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                  "--no-first-run", "--user-data-dir=" + profile,
                                  "--virtual-time-budget=10000", "--dump-dom", url],
                                 capture_output=True, text=True, timeout=120)
            dom = out.stdout
            label = env["classes"][env["ref"][(name, 1)][0]["class"]]
            check("(%s version 1)" % name in dom, "page says %s computed the answer" % name)
            check('id="label">%s<' % label in dom, "page shows %s's label %r" % (name, label))
            check(re.search(r'<option value="%s"[^>]*>' % name, dom) is not None,
                  "picker lists %s" % name)
        m = d.metrics()
        for name in ("fashion_mnist_thin", "fashion_mnist_thick"):
            check(metric(m, "cigt_model_requests_total", model=name, version="1",
                         result="success") == 1, "the page's request reached %s" % name)
    finally:
        d.stop()
    return 0


GROUPS = {"page": group_page, "layouts": group_layouts, "endpoints": group_endpoints, "rollout": group_rollout,
          "poll": group_poll, "fairness": group_fairness}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = tempfile.mkdtemp(prefix="cigtd-repo-test-")
    env = {"work": work, "images": T.load_images(NIMG), "files": {}, "ref": {}}
    for key, f in MODELS.items():
        env["files"][key] = os.path.join(T.SRCDIR, "models", f)
        env["ref"][key] = T.reference(env["files"][key], work, NIMG)
    # The symlinked thick version 2 is the same file as version 1.
    env["ref"][("fashion_mnist_thick", 2)] = env["ref"][("fashion_mnist_thick", 1)]
    env["classes"] = json.load(open(os.path.join(T.SRCDIR, "models", "fashion_mnist.json")))[
        "classes"]
    try:
        rc = GROUPS[args.group](env)
        if rc == 77:
            return 77
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("%s: %s" % (args.group, "FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
