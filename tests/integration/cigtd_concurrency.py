"""cigtd integration tests, group concurrency: many parallel clients with mixed request kinds and
bad requests, each answer equal to the engine's; a backlog split over idle workers; workers
still computing under a wrk flood. Run by test_cigtd.py.
"""

import json
import os
import random
import shutil
import subprocess
import threading

from cigtd_common import NREF, check, Daemon, metric


def group_concurrency(env):
    """Many parallel clients, mixed request kinds and interleaved bad requests: every answer
    must equal the engine's answer for its image."""
    d = Daemon(env["model"], "--max-delay-us", "500")
    imgs, ref = env["images"], env["ref"]
    nthreads, per_thread = 16, 30
    sent = {"ok_samples": 0, "classify": 0, "v2": 0, "bad": 0}
    lock = threading.Lock()
    errors = []

    def client(tid):
        rng = random.Random(tid)
        conn = d.conn()
        try:
            for it in range(per_thread):
                kind = rng.choice(["single", "batch", "v2", "v2bin", "bad"])
                idx = [rng.randrange(NREF) for _ in range(rng.randint(1, 12))]
                if kind == "single":
                    st, _, body = d.post_json("/v1/classify", {"image": list(imgs[idx[0]])},
                                              conn=conn)
                    res = [json.loads(body)] if st == 200 else None
                    idx = idx[:1]
                elif kind == "batch":
                    st, _, body = d.post_json("/v1/classify",
                                              {"images": [list(imgs[i]) for i in idx]}, conn=conn)
                    res = json.loads(body)["results"] if st == 200 else None
                elif kind in ("v2", "v2bin"):
                    pix = b"".join(imgs[i] for i in idx)
                    inp = {"name": "image", "shape": [len(idx), 1, 28, 28], "datatype": "UINT8"}
                    if kind == "v2":
                        inp["data"] = list(pix)
                        st, _, body = d.post_json("/v2/models/fashion_mnist/infer",
                                                  {"inputs": [inp]}, conn=conn)
                        j = json.loads(body)
                    else:
                        inp["parameters"] = {"binary_data_size": len(pix)}
                        hdr = json.dumps({"inputs": [inp]}).encode()
                        st, _, body = d.request("POST", "/v2/models/fashion_mnist/infer",
                                                hdr + pix,
                                                {"Inference-Header-Content-Length": str(len(hdr))},
                                                conn=conn)
                        j = json.loads(body)
                    res = None
                    if st == 200:
                        o = {x["name"]: x["data"] for x in j["outputs"]}
                        res = [{"class": o["class"][k], "route": o["route"][3 * k:3 * k + 3],
                                "probabilities": o["probabilities"][10 * k:10 * k + 10]}
                               for k in range(len(idx))]
                else:
                    bad = list(imgs[idx[0]])
                    bad[rng.randrange(784)] = 999
                    st, _, body = d.post_json("/v1/classify", {"image": bad}, conn=conn)
                    with lock:
                        sent["bad"] += 1
                    if st != 400:
                        errors.append("bad request got %d" % st)
                    continue
                with lock:
                    sent["classify" if kind in ("single", "batch") else "v2"] += 1
                if st != 200:
                    errors.append("%s got %d: %r" % (kind, st, body[:200]))
                    continue
                for k, i in enumerate(idx):
                    r = res[k]
                    p = r["probabilities"]
                    if r["class"] != ref[i]["class"] or r["route"] != ref[i]["route"] or \
                            max(abs(a - b) for a, b in zip(p, ref[i]["probs"])) > 1e-5:
                        errors.append("thread %d %s image %d: got %s/%s, engine %s/%s" %
                                      (tid, kind, i, r["class"], r["route"], ref[i]["class"],
                                       ref[i]["route"]))
                with lock:
                    sent["ok_samples"] += len(idx)
        except Exception as e:  # noqa: BLE001 -- any client failure is a test failure
            errors.append("thread %d: %r" % (tid, e))
        finally:
            conn.close()

    try:
        before = d.metrics()
        threads = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        check(not errors, "concurrent answers: %d problems, first: %s" % (len(errors),
                                                                        errors[:3]))
        m = d.metrics()
        check(metric(m, "cigt_samples_total") - metric(before, "cigt_samples_total")
              == sent["ok_samples"], "samples_total equals the samples sent (%d)" %
              sent["ok_samples"])
        check(metric(m, "cigt_requests_total", endpoint="classify", code="200") == sent["classify"],
              "classify 200 count")
        check(metric(m, "cigt_requests_total", endpoint="classify", code="400") == sent["bad"],
              "classify 400 count")
        check(metric(m, "cigt_requests_total", endpoint="v2_infer", code="200") == sent["v2"],
              "v2 200 count")
        hist = [(k, v) for k, v in m.items() if k.startswith("cigt_batch_size_bucket")]
        check(metric(m, 'cigt_batch_size_bucket{le="+Inf"}') > 0, "batches counted")
        print("batch size histogram:", hist)
    finally:
        d.stop()

    # A backlog is split across the idle workers: one 64-image request with two workers and
    # --max-batch 64 must not run as a single batch of 64 on one core. The first worker to
    # take from the queue sees 64 samples and two idle workers, so no batch exceeds 32.
    d = Daemon(env["model"], "--workers", "2", "--max-batch", "64")
    try:
        st, _, body = d.post_json("/v1/classify", {"images": [list(imgs[i]) for i in range(64)]})
        check(st == 200 and len(json.loads(body)["results"]) == 64, "64-image request: %d" % st)
        m = d.metrics()
        n = metric(m, "cigt_batch_size_count")
        check(metric(m, "cigt_batch_size_sum") == 64, "64 samples batched, got %s"
              % metric(m, "cigt_batch_size_sum"))
        check(n >= 2 and metric(m, 'cigt_batch_size_bucket{le="32"}') == n,
              "the 64-sample backlog was split over both workers (no batch above 32): %d "
              "batches, %d of at most 32" % (n, metric(m, 'cigt_batch_size_bucket{le="32"}')))
    finally:
        d.stop()

    # A flood of 64-image requests from more clients than the queue holds (wrk, 64
    # connections; the queue takes 4 such requests): workers must keep running batches rather
    # than spend all their time parsing requests that a full queue then refuses. The
    # scheduler that parsed first computed 0 samples in this test (every request 503).
    wrk = shutil.which("wrk")
    check(wrk is not None, "wrk is installed (Makefile PKGS)")
    if wrk:
        body = os.path.join(env["work"], "flood.json")
        with open(body, "w") as f:
            json.dump({"images": [list(imgs[i]) for i in range(64)]}, f)
        lua = os.path.join(env["work"], "flood.lua")
        with open(lua, "w") as f:
            f.write('local f = io.open("%s", "rb")\nwrk.method = "POST"\n'
                    'wrk.body = f:read("*a")\nf:close()\n'
                    'wrk.headers["Content-Type"] = "application/json"\n' % body)
        d = Daemon(env["model"], "--workers", "1", "--queue-limit", "256",
                   "--max-connections-per-ip", "0")
        try:
            subprocess.run([wrk, "-t2", "-c64", "-d3s", "--timeout", "10s", "-s", lua,
                            "http://127.0.0.1:%d/v1/classify" % d.port],
                           capture_output=True, timeout=60)
            m = d.metrics()
            ok = metric(m, "cigt_requests_total", endpoint="classify", code="200")
            check(ok >= 10 and metric(m, "cigt_samples_total") >= 64 * ok,
                  "under a flood the workers kept computing: %d requests answered 200, %d "
                  "samples computed, %d refused 503" % (ok, metric(m, "cigt_samples_total"),
                                                       metric(m, "cigt_queue_full_total")))
        finally:
            d.stop()

    # Eager dispatch (--eager-dispatch, on by default): a lone request does not wait out the
    # batching delay, but a request whose head has arrived is waited for. With a 1 s delay:
    # request A alone is answered long before 2 s; then B's head is sent (body held back) and
    # A' sent in full: A' is not answered while B is in flight, and once B's body goes out both
    # run as one batch of 2 (cigt_batch_size on /metrics).
    import socket
    import time
    d = Daemon(env["model"], "--max-delay-us", "1000000", "--max-batch", "64",
               "--workers", "1")
    try:
        body = json.dumps({"image": list(imgs[0])}).encode()
        t0 = time.monotonic()
        st, _, got = d.post_json("/v1/classify", {"image": list(imgs[0])})
        lone = time.monotonic() - t0
        check(st == 200 and json.loads(got)["class"] == ref[0]["class"] and lone < 0.5,
              "a lone request is answered without the 1 s delay (%.3f s)" % lone)
        m0 = d.metrics()
        b = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        b.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.2)  # B's head is read: B is in flight
        a = d.conn(10)
        a.request("POST", "/v1/classify", body=body,
                  headers={"Content-Type": "application/json"})
        a.sock.settimeout(0.4)
        try:
            a.getresponse()
            early = True
        except socket.timeout:
            early = False
        check(not early, "a request waits for one whose head has arrived")
        b.sendall(body)
        b.settimeout(10)
        resp = b""
        while b"\r\n\r\n" not in resp or not resp.rstrip().endswith(b"}"):
            chunk = b.recv(65536)
            if not chunk:
                break
            resp += chunk
        check(resp.startswith(b"HTTP/1.1 200"), "B answered: %r" % resp[:40])
        b.close()
        a.close()
        m1 = d.metrics()
        batches = m1["cigt_batch_size_count"] - m0["cigt_batch_size_count"]
        samples = m1["cigt_batch_size_sum"] - m0["cigt_batch_size_sum"]
        check(batches == 1 and samples == 2,
              "A' and B ran as one batch (%d batches, %d samples)" % (batches, samples))
    finally:
        d.stop()
