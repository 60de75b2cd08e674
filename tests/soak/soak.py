#!/usr/bin/python3
"""Soak test for cigtd (issue 7): DURATION seconds of mixed traffic against one daemon.

    soak.py DURATION            # 600 locally, 90 in CI (.ci/run)
    soak.py DURATION --repository   # the model repository (issue 14), below

Clients, all at once, until DURATION is over:
  - valid requests of every form (v1 pixels, batches, base64 PNG, raw PNG, v2 JSON, v2 binary),
    each answer checked sample by sample against the engine (`cigt eval --dump`);
  - invalid requests (the integration tests' list of ~50 bad inputs), each with its status;
  - clients that go away mid-body, after sending a whole request without reading the answer,
    before finishing their headers, or right after connecting;
  - slow clients that trickle a valid request (answered) and slowloris clients that trickle
    headers forever (cut off by --read-timeout-ms);
  - SIGHUP every few seconds, alternating a good model file (model A, then model B, ...) and a
    corrupt one (truncated, garbage, NaN weight, wrong architecture, absurd header length).
Pass: no crash and exit 0 on SIGTERM at the end; no wrong answer (every answer is model A's or
model B's for all its samples, and the model known to be serving between reloads); every request
a client waited for was answered; each failed reload counted and the old model kept serving;
resident memory at the end (median of the last fifth of the samples) within 5% of the level
reached after warm-up (highest sample of the first fifth after it; skipped under ASan, whose
quarantine holds freed memory on purpose); cigt_requests_total equals the requests sent
(a request = complete headers; connections that never finish their headers are not requests);
no 500, no 504; no sanitizer report. Environment as tests/integration/test_cigtd.py (CIGTD,
CIGT, SRCDIR, WORKDIR). Exit 0 pass, 1 fail, 77 skipped.

--repository: a repository in explicit mode with fashion_mnist version 1 (always there) and
fashion_mnist_thin; every --reload-every seconds version 2 of fashion_mnist is published
(atomic rename) and loaded, or removed and unloaded, and fashion_mnist_thin is unloaded or
loaded, while clients ask for version 1, version 2, the highest version and thin. Pass: every
answer comes from the version asked for and equals the engine's answer for that version's file;
version 1 and the highest version always answer 200, version 2 and thin 200 or 404 (never 5xx,
never a dropped connection); every load counted; resident memory flat after warm-up (as above).
"""

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cigtd_common as T  # noqa: E402  (the integration tests' daemon and reference helpers)
from cigtd_errors import bad_inputs  # noqa: E402  (the integration tests' bad requests)

check = T.check
V2 = "/v2/models/fashion_mnist/infer"
NETERR = (OSError, http.client.HTTPException)


def is_asan(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"libasan.so" in data


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0           # requests with complete headers
        self.codes = {}         # status -> count, as received by clients that waited
        self.abandoned = 0      # requests sent whose answer the client did not wait for
        self.nonrequests = 0    # connections closed before their headers were complete
        self.samples_ok = 0
        self.errors = []
        self.answers = []       # (t_start, t_end, frozenset of models consistent)

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def code(self, st):
        with self.lock:
            self.sent += 1
            self.codes[st] = self.codes.get(st, 0) + 1

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(msg)


def consistent(results, idx, refs):
    """The models (names in refs) whose answers equal every sample's result."""
    ok = set()
    for name, ref in refs.items():
        good = True
        for r, i in zip(results, idx):
            want = ref[i]
            if r["class"] != want["class"] or r["route"] != want["route"]:
                good = False
                break
            p = r.get("probabilities")
            if p is not None and max(abs(a - b) for a, b in zip(p, want["probs"])) > 1e-5:
                good = False
                break
        if good:
            ok.add(name)
    return frozenset(ok)


def valid_client(d, env, st, stop, seed):
    rng = random.Random(seed)
    imgs, refs = env["images"], env["refs"]
    conn = None
    while not stop.is_set():
        if conn is None or rng.random() < 0.1:
            if conn:
                conn.close()
            conn = d.conn(timeout=60)
        kind = rng.choice(["single", "batch", "png", "rawpng", "v2", "v2bin"])
        idx = [rng.randrange(T.NREF) for _ in range(rng.randint(1, 16))]
        t0 = time.monotonic()
        try:
            if kind == "single":
                idx = idx[:1]
                s, h, body = d.post_json("/v1/classify", {"image": list(imgs[idx[0]])}, conn=conn)
                res = [json.loads(body)] if s == 200 else None
            elif kind == "batch":
                s, h, body = d.post_json("/v1/classify", {"images": [list(imgs[i]) for i in idx],
                                                          "top_k": 2}, conn=conn)
                res = json.loads(body)["results"] if s == 200 else None
            elif kind == "png":
                idx = idx[:4]
                s, h, body = d.post_json("/v1/classify", {"images": [
                    {"png": base64.b64encode(T.png_gray(imgs[i], 28, 28)).decode()}
                    for i in idx]}, conn=conn)
                res = json.loads(body)["results"] if s == 200 else None
            elif kind == "rawpng":
                idx = idx[:1]
                s, h, body = d.request("POST", "/v1/classify", T.png_gray(imgs[idx[0]], 28, 28),
                                       {"Content-Type": "image/png"}, conn=conn)
                res = [json.loads(body)] if s == 200 else None
            else:
                pix = b"".join(imgs[i] for i in idx)
                inp = {"name": "image", "shape": [len(idx), 1, 28, 28], "datatype": "UINT8"}
                if kind == "v2":
                    inp["data"] = list(pix)
                    s, h, body = d.post_json(V2, {"inputs": [inp]}, conn=conn)
                    jb = json.loads(body) if s == 200 else None
                else:
                    inp["parameters"] = {"binary_data_size": len(pix)}
                    hdr = json.dumps({"inputs": [inp]}).encode()
                    s, h, body = d.request("POST", V2, hdr + pix,
                                           {"Inference-Header-Content-Length": str(len(hdr))},
                                           conn=conn)
                    jb = json.loads(body) if s == 200 else None
                res = None
                if jb:
                    o = {x["name"]: x["data"] for x in jb["outputs"]}
                    res = [{"class": o["class"][k], "route": o["route"][3 * k:3 * k + 3],
                            "probabilities": o["probabilities"][10 * k:10 * k + 10]}
                           for k in range(len(idx))]
        except NETERR as e:
            st.error("%s request got no answer: %r" % (kind, e))
            st.add(sent=1)
            conn.close()
            conn = None
            continue
        t1 = time.monotonic()
        st.code(s)
        if s == 503 and h.get("retry-after"):
            continue
        if s != 200:
            st.error("%s request: status %d %r" % (kind, s, body[:200]))
            continue
        if len(res) != len(idx):
            st.error("%s: %d results for %d images" % (kind, len(res), len(idx)))
            continue
        models = consistent(res, idx, refs)
        if not models:
            st.error("%s: wrong answer for images %s: %s" % (kind, idx,
                                                            [(r["class"], r["route"]) for r in res]))
        with st.lock:
            st.samples_ok += len(idx)
            st.answers.append((t0, t1, models))
    if conn:
        conn.close()


def invalid_client(d, env, st, stop, seed):
    rng = random.Random(seed)
    cases = bad_inputs(env["images"])
    while not stop.is_set():
        name, method, path, body, headers, status, words = rng.choice(cases)
        try:
            s, h, resp = d.request(method, path, body, headers)
        except NETERR as e:
            st.add(sent=1)
            st.error("bad input %s got no answer: %r" % (name, e))
            continue
        st.code(s)
        if s != status:
            st.error("bad input %s: status %d, expected %d" % (name, s, status))
        time.sleep(rng.random() * 0.01)


def raw_request(path, body, ctype="application/json", extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), ctype.encode(), len(body), extra) + body)


def disconnect_client(d, env, st, stop, seed):
    rng = random.Random(seed)
    imgs = env["images"]
    while not stop.is_set():
        kind = rng.choice(["midbody", "noread", "midheader", "connect"])
        body = json.dumps({"images": [list(imgs[rng.randrange(T.NREF)]) for _ in range(4)]}).encode()
        req = raw_request("/v1/classify", body)
        try:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            hdr_end = req.index(b"\r\n\r\n") + 4
            if kind == "midbody":
                s.sendall(req[:hdr_end + rng.randrange(1, len(body))])
                time.sleep(0.02)
                st.add(sent=1, abandoned=1)
            elif kind == "noread":
                s.sendall(req)
                st.add(sent=1, abandoned=1)
            elif kind == "midheader":
                s.sendall(req[:rng.randrange(1, hdr_end - 2)])
                time.sleep(0.02)
                st.add(nonrequests=1)
            else:
                st.add(nonrequests=1)
            s.close()
        except OSError as e:
            st.error("disconnecting client could not connect: %r" % e)
        time.sleep(rng.random() * 0.05)


def slow_client(d, env, st, stop, seed):
    """Trickles valid requests (about 0.5 s each, well inside --read-timeout-ms) and, now and
    then, a slowloris that never finishes its headers and must be cut off."""
    rng = random.Random(seed)
    imgs, refs = env["images"], env["refs"]
    n = 0
    while not stop.is_set():
        n += 1
        if n % 5 == 0:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.settimeout(0.25)
            cut = False
            end = time.monotonic() + 20
            msg = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10000
            k = 0
            while not cut and time.monotonic() < end and not stop.is_set():
                try:
                    s.send(msg[k:k + 1])
                    k += 1
                    if s.recv(100) == b"":
                        cut = True
                except socket.timeout:
                    pass
                except OSError:
                    cut = True
            s.close()
            st.add(nonrequests=1)
            if not cut and not stop.is_set():
                st.error("slowloris connection was not cut off within 20 s")
            continue
        i = rng.randrange(T.NREF)
        body = json.dumps({"image": list(imgs[i])}).encode()
        req = raw_request("/v1/classify", body, extra=b"Connection: close\r\n")
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            pieces = 10
            step = len(req) // pieces + 1
            for k in range(0, len(req), step):
                s.sendall(req[k:k + step])
                time.sleep(0.05)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError as e:
            st.add(sent=1)
            st.error("slow client got no answer: %r" % e)
            continue
        head, _, resp = data.partition(b"\r\n\r\n")
        try:
            code = int(head.split(b" ")[1])
        except (IndexError, ValueError):
            st.add(sent=1)
            st.error("slow client: no status line in %r" % data[:100])
            continue
        st.code(code)
        if code != 200:
            st.error("slow client: status %d %r" % (code, resp[:200]))
            continue
        models = consistent([json.loads(resp)], [i], refs)
        if not models:
            st.error("slow client: wrong answer for image %d" % i)
        with st.lock:
            st.samples_ok += 1
            st.answers.append((t0, time.monotonic(), models))


def corrupt_files(env, work):
    a = open(env["models"]["A"], "rb").read()
    hlen = struct.unpack("<Q", a[:8])[0]
    nan = bytearray(a)
    nan[8 + hlen + 40:8 + hlen + 44] = struct.pack("<f", float("nan"))
    wrong_cfg = json.load(open(os.path.join(T.SRCDIR, "models", "fashion_mnist.json")))
    wrong_cfg["layers"][2]["experts"] = 2
    cfgp, wrongp = os.path.join(work, "wrong.json"), os.path.join(work, "wrong.safetensors")
    json.dump(wrong_cfg, open(cfgp, "w"))
    subprocess.run([T.CIGT, "init", cfgp, "-o", wrongp, "--seed", "3"], check=True,
                   stdout=subprocess.DEVNULL)
    return [("truncated", a[:len(a) // 2]), ("garbage", b"\x08" + bytes(100)),
            ("NaN weight", bytes(nan)), ("wrong architecture", open(wrongp, "rb").read()),
            ("header length 2^40", struct.pack("<Q", 1 << 40) + a[8:])]


def reloader(d, env, live, st, stop, every, log):
    """Alternates good and corrupt files; log gets (t_from, t_to, model) intervals during which
    the serving model is known."""
    corrupt = env["corrupt"]
    good = ["B", "A"]
    known_from, serving = time.monotonic(), "A"
    nk, ng = 0, 0
    expect = {"success": 0, "failure": 0}
    scrapes = 0
    while every > 0 and not stop.wait(every):
        if (nk + ng) % 2 == 0:
            name = good[ng % 2]
            data = open(env["models"][name], "rb").read()
            ng += 1
            what, result = "good model " + name, "success"
            log.append((known_from, time.monotonic(), serving))  # until this SIGHUP
        else:
            what, data = corrupt[nk % len(corrupt)]
            nk += 1
            result = "failure"
        tmp = live + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, live)
        d.signal(signal.SIGHUP)
        expect[result] += 1

        def done():
            nonlocal scrapes
            scrapes += 1
            m = d.metrics()
            return (T.metric(m, "cigt_model_reloads_total", result="success") == expect["success"]
                    and T.metric(m, "cigt_model_reloads_total", result="failure")
                    == expect["failure"])
        if not T.wait_for(done, 30):
            st.error("reload of %s not counted as %s within 30 s" % (what, result))
        if result == "success":
            serving, known_from = name, time.monotonic()
    stop.wait()
    log.append((known_from, time.monotonic(), serving))
    st.add(sent=scrapes)
    return expect


def monitor(d, st, stop, rss, every=1.0):
    while not stop.wait(every):
        if d.proc.poll() is not None:
            st.error("cigtd exited during the soak (status %s)" % d.proc.returncode)
            return
        rss.append((time.monotonic(), rss_kb(d.proc.pid)))


# ------------------------------------------------------------------ repository soak

def repo_client(d, env, st, stop, seed, name, version):
    """Requests for one model (and version, None = the highest) until stop; every answer must
    come from the version asked for and match the engine's answer for that version's file."""
    rng = random.Random(seed)
    conn = d.conn()
    path = "/v2/models/%s%s/infer" % (name, "/versions/%d" % version if version else "")
    while not stop.is_set():
        i = rng.randrange(T.NREF)
        body = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8",
                                       "shape": [1, 1, 28, 28],
                                       "data": list(env["images"][i])}]}).encode()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except NETERR as e:
            st.error("%s: %s" % (path, e))
            conn = d.conn()
            continue
        st.add(sent=1)
        with st.lock:
            st.codes[(name, version, r.status)] = st.codes.get((name, version, r.status), 0) + 1
        if r.status != 200:
            continue
        j = json.loads(data)
        got = (j["model_name"], int(j["model_version"]))
        if got[0] != name or (version and got[1] != version):
            st.error("%s answered by %s version %d" % (path, *got))
            continue
        outs = {o["name"]: o["data"] for o in j["outputs"]}
        ref = env["refs"][got][i]
        err = max(abs(a - b) for a, b in zip(outs["probabilities"], ref["probs"]))
        if outs["class"][0] != ref["class"] or outs["route"] != ref["route"] or err > 1e-5:
            st.error("%s image %d: answer differs from %s v%d's engine answer" % (path, i, *got))
        else:
            st.add(samples_ok=1)


def repo_roller(d, env, repo, st, stop, every, done):
    """Alternately publishes and removes fashion_mnist version 2 (atomic rename, then load),
    and loads and unloads fashion_mnist_thin, every `every` seconds."""
    stage = os.path.join(os.path.dirname(repo), "stage")
    k = 0
    while not stop.wait(every):
        v2 = os.path.join(repo, "fashion_mnist", "2")
        try:
            if k % 2 == 0:
                os.makedirs(os.path.join(stage, "2"), exist_ok=True)
                shutil.copy(env["files"][("fashion_mnist", 2)],
                            os.path.join(stage, "2", "model.safetensors"))
                os.rename(os.path.join(stage, "2"), v2)
                thin = "unload"
            else:
                shutil.rmtree(v2)
                thin = "load"
            s1, _, b1 = d.post_json("/v2/repository/models/fashion_mnist/load", {})
            s2, _, b2 = d.post_json("/v2/repository/models/fashion_mnist_thin/%s" % thin, {})
        except NETERR as e:
            st.error("roller: %s" % e)
            continue
        if s1 != 200 or s2 != 200:
            st.error("roller: load %d %s, thin %s %d %s" % (s1, b1[:100], thin, s2, b2[:100]))
        done["loads"] = done.get("loads", 0) + (k % 2 == 0) + (thin == "load")
        done["rounds"] = k + 1
        k += 1


def repository_soak(args, warmup, asan):
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigt-soak-repo-")
    os.makedirs(work, exist_ok=True)
    env = {"images": T.load_images(T.NREF), "files": {}, "refs": {}}
    for key, f in ((("fashion_mnist", 1), "fashion_mnist.safetensors"),
                   (("fashion_mnist", 2), "fashion_mnist_authors.safetensors"),
                   (("fashion_mnist_thin", 1), "thin.safetensors")):
        env["files"][key] = os.path.join(T.SRCDIR, "models", f)
        env["refs"][key] = T.reference(env["files"][key], work)
    repo = os.path.join(work, "repo")
    for (name, v), f in env["files"].items():
        if v == 1:
            os.makedirs(os.path.join(repo, name, "1"))
            shutil.copy(f, os.path.join(repo, name, "1", "model.safetensors"))
    # The trellis's escalating operating points load thick.safetensors from beside its file.
    shutil.copy(os.path.join(T.SRCDIR, "models", "thick.safetensors"),
                os.path.join(repo, "fashion_mnist", "1"))
    with open(os.path.join(repo, "fashion_mnist", "config.json"), "w") as f:
        f.write('{"version_policy": {"all": {}}}')
    d = RepoDaemon(repo)
    st = Stats()
    stop = threading.Event()
    rss, done = [], {}
    who = [("fashion_mnist", 1), ("fashion_mnist", None), ("fashion_mnist", 2),
           ("fashion_mnist_thin", None)]
    threads = [threading.Thread(target=repo_client, args=(d, env, st, stop, 10 + k, *who[k % 4]))
               for k in range(max(4, args.clients))]
    threads.append(threading.Thread(target=monitor, args=(d, st, stop, rss)))
    threads.append(threading.Thread(target=repo_roller, args=(d, env, repo, st, stop,
                                                              args.reload_every, done)))
    t_start = time.monotonic()
    try:
        for t in threads:
            t.start()
        stop.wait(args.duration)
        stop.set()
        for t in threads:
            t.join(120)
            check(not t.is_alive(), "a client thread did not finish")
        check(d.proc.poll() is None, "cigtd is still running after the soak")
        m = d.metrics()
        print("answers by (model, version asked, status):", dict(sorted(
            st.codes.items(), key=lambda kv: str(kv[0]))))
        print("requests %d, answers checked against the engine %d, rounds %d"
              % (st.sent, st.samples_ok, done.get("rounds", 0)))
        check(done.get("rounds", 0) >= 2, "versions were loaded and unloaded")
        for (name, version, code), n in st.codes.items():
            allowed = (200,) if (name, version) in (("fashion_mnist", 1), ("fashion_mnist", None)) \
                else (200, 404)
            check(code in allowed, "%s v%s: %d answers with status %d" % (name, version, n, code))
        for key in (("fashion_mnist", 1, 200), ("fashion_mnist", 2, 200),
                    ("fashion_mnist_thin", None, 200), ("fashion_mnist_thin", None, 404)):
            check(st.codes.get(key, 0) > 0, "some answers %s" % (key,))
        check(not st.errors, "%d client problems, first: %s" % (len(st.errors), st.errors[:5]))
        loads = sum(T.metric(m, "cigt_model_loads_total", model=n, result="success")
                    for n in ("fashion_mnist", "fashion_mnist_thin"))
        check(loads == 2 + done.get("loads", 0), "loads counted: %d, expected %d"
              % (loads, 2 + done.get("loads", 0)))
        check(T.metric(m, "cigt_requests_in_flight") == 1, "nothing in flight but the scrape")
        after = [kb for t, kb in rss if t - t_start >= warmup]
        if asan:
            print("RSS check skipped: ASan build (its quarantine keeps freed memory)")
        elif len(after) < 5:
            check(False, "too few RSS samples after warm-up (run longer than %.0f s)" % warmup)
        else:
            k = max(1, len(after) // 5)
            base = max(after[:k])
            end = sorted(after[-k:])[k // 2]
            growth = end / base - 1
            print("RSS every 10 s (kB):", [kb for t, kb in rss][::10])
            print("RSS after warm-up %d kB (highest of %d samples), at the end %d kB (median "
                  "of %d; %+.2f%%), peak %d kB"
                  % (base, k, end, k, 100 * growth, max(kb for _, kb in rss)))
            check(growth < 0.05, "RSS grew %.1f%% after warm-up (limit 5%%)" % (100 * growth))
    finally:
        stop.set()
        d.stop()
        if not args.keep and not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("repository soak %.0f s: %s" % (args.duration, "FAILED (%d)" % len(T.FAILURES)
                                           if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


def RepoDaemon(repo):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "integration"))
    import test_repository as R
    return R.RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                     "--load-model", "fashion_mnist", "--load-model", "fashion_mnist_thin",
                     "--read-timeout-ms", "2000")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("duration", type=float, help="seconds of traffic (600 locally, 90 in CI)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the RSS baseline (default: 25%% of the run, 30..90 s)")
    ap.add_argument("--reload-every", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=4, help="threads sending valid requests")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repository", action="store_true",
                    help="the repository soak: versions and models loaded and unloaded in a "
                         "loop under traffic (--reload-every seconds apart)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    # RSS climbs for the first ~30 s while the arenas reach the high-water mark of the
    # requests in flight (a 240 s run at 773444b: 17.0 MB at 0 s, 23.3 at 10 s, 24.2 at
    # 20 s, then 24.0-26.4 MB to the end with no trend); a baseline taken before that reads the
    # ramp as growth.
    warmup = args.warmup if args.warmup is not None else min(90, max(30, args.duration / 4))
    asan = is_asan(T.CIGTD)
    if args.repository:
        return repository_soak(args, warmup, asan)
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigt-soak-")
    os.makedirs(work, exist_ok=True)
    env = {"images": T.load_images(T.NREF), "models": {}, "refs": {}}
    for name, seed in (("A", 5), ("B", 6)):
        p = os.path.join(work, "model%s.safetensors" % name)
        T.make_model(p, seed)
        env["models"][name] = p
        env["refs"][name] = T.reference(p, work)
    differ = sum(1 for i in range(T.NREF)
                 if env["refs"]["A"][i]["class"] != env["refs"]["B"][i]["class"]
                 or env["refs"]["A"][i]["route"] != env["refs"]["B"][i]["route"])
    print("models A and B answer differently on %d of %d images" % (differ, T.NREF))
    env["corrupt"] = corrupt_files(env, work)
    live = os.path.join(work, "live.safetensors")
    shutil.copy(env["models"]["A"], live)
    d = T.Daemon(live, "--read-timeout-ms", "2000", "--max-delay-us", "500")
    st = Stats()
    stop = threading.Event()
    rss = []
    intervals = []
    result = {}
    threads = [threading.Thread(target=valid_client, args=(d, env, st, stop, 10 + k))
               for k in range(args.clients)]
    threads += [threading.Thread(target=f, args=(d, env, st, stop, 100 + k))
                for k, f in enumerate([invalid_client, disconnect_client, slow_client])]
    threads.append(threading.Thread(target=monitor, args=(d, st, stop, rss)))

    def rel():
        result.update(reloader(d, env, live, st, stop, args.reload_every, intervals))
    threads.append(threading.Thread(target=rel))
    t_start = time.monotonic()
    try:
        for t in threads:
            t.start()
        stop.wait(args.duration)
        stop.set()
        for t in threads:
            t.join(120)
            check(not t.is_alive(), "a client thread did not finish")
        check(d.proc.poll() is None, "cigtd is still running after the soak")

        # Counters: wait for abandoned requests to be noticed, then compare.
        scrapes = [0]

        def settled():
            m = d.metrics()
            scrapes[0] += 1
            total = sum(v for k, v in m.items() if k.startswith("cigt_requests_total{"))
            return m, total
        expected = None
        end = time.monotonic() + 30
        while True:
            m, total = settled()
            expected = st.sent + scrapes[0] - 1
            if total == expected or time.monotonic() > end:
                break
            time.sleep(0.2)
        codes = {}
        for k, v in m.items():
            if k.startswith("cigt_requests_total{"):
                c = int(k.split('code="')[1].split('"')[0])
                codes[c] = codes.get(c, 0) + int(v)
        print("requests sent %d (+%d metric scrapes at the end), cigt_requests_total %d"
              % (st.sent, scrapes[0] - 1, total))
        print("server codes:", dict(sorted(codes.items())), " client codes:",
              dict(sorted(st.codes.items())))
        print("abandoned %d, non-requests %d, samples checked %d, answers %d"
              % (st.abandoned, st.nonrequests, st.samples_ok, len(st.answers)))
        print("reloads expected", result, " measured",
              {r: T.metric(m, "cigt_model_reloads_total", result=r)
               for r in ("success", "failure")})
        check(total == expected, "cigt_requests_total %d equals the requests sent %d"
              % (total, expected))
        check(codes.get(500, 0) == 0 and codes.get(504, 0) == 0, "no 500 or 504 answers")
        check(codes.get(499, 0) <= st.abandoned,
              "499s (%d) only for the %d requests whose client went away"
              % (codes.get(499, 0), st.abandoned))
        for c in (400, 404, 405, 415):
            check(codes.get(c, 0) == st.codes.get(c, 0), "server counted %d %ds, clients got %d"
                  % (codes.get(c, 0), c, st.codes.get(c, 0)))
        check(T.metric(m, "cigt_queue_depth") == 0, "queue empty at the end")
        check(T.metric(m, "cigt_requests_in_flight") == 1, "nothing in flight but the scrape")
        check(result.get("success", 0) >= 1 and result.get("failure", 0) >= 1,
              "both good and corrupt reloads happened")
        check(len(st.answers) > 0, "answers were checked")
        check(not st.errors, "%d client problems, first: %s" % (len(st.errors), st.errors[:5]))
        # The model known to serve between reloads is the one that answered.
        bad = 0
        for t0, t1, models in st.answers:
            for a, b, name in intervals:
                if a <= t0 and t1 <= b and name not in models:
                    bad += 1
        check(bad == 0, "%d answers came from a model other than the one serving" % bad)
        # Resident memory after warm-up: the median of the last fifth of the samples against
        # the highest sample of the first fifth after warm-up. One sample swings by a few
        # percent with the requests in flight at that instant, and the arenas' high-water mark
        # still creeps up by a few percent while rarer bursts of large requests arrive
        # (24.0-26.4 MB over 240 s at 773444b, no trend), so the end is held to the level
        # already reached, not to a typical sample; a leak lifts the whole end window above it.
        after = [kb for t, kb in rss if t - t_start >= warmup]
        if asan:
            print("RSS check skipped: ASan build (its quarantine keeps freed memory)")
        elif len(after) < 5:
            check(False, "too few RSS samples after warm-up (run longer than %.0f s)" % warmup)
        else:
            k = max(1, len(after) // 5)
            base = max(after[:k])
            end = sorted(after[-k:])[k // 2]
            growth = end / base - 1
            print("RSS every 10 s (kB):", [kb for t, kb in rss][::10])
            print("RSS after warm-up %d kB (highest of %d samples), at the end %d kB (median "
                  "of %d; %+.2f%%), peak %d kB"
                  % (base, k, end, k, 100 * growth, max(kb for _, kb in rss)))
            check(growth < 0.05, "RSS grew %.1f%% after warm-up (limit 5%%)" % (100 * growth))
    finally:
        stop.set()
        d.stop()
        if not args.keep and not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("soak %.0f s: %s" % (args.duration, "FAILED (%d)" % len(T.FAILURES) if T.FAILURES
                                else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
