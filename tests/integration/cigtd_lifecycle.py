"""cigtd integration tests, group lifecycle: SIGHUP reloads (good, truncated, garbage, wrong
architecture) with the sd_notify sequence and watchdog, and the SIGTERM drain under load.
Run by test_cigtd.py.
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

from cigtd_common import CIGT, SRCDIR, NREF, check, Daemon, metric, same_answer, wait_for


def group_lifecycle(env):
    """SIGHUP reload (good, corrupt, wrong architecture) and SIGTERM drain under load."""
    work = env["work"]
    live = os.path.join(work, "live.safetensors")
    shutil.copy(env["model"], live)
    # sd_notify: a datagram socket of ours stands in for systemd.
    sock_path = os.path.join(work, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(0.2)
    messages = []
    notify_stop = threading.Event()

    def read_notify():
        while not notify_stop.is_set():
            try:
                messages.append(notify.recv(4096).decode())
            except socket.timeout:
                pass
    reader = threading.Thread(target=read_notify, daemon=True)
    reader.start()
    d = Daemon(live, "--workers", "1", env={"NOTIFY_SOCKET": sock_path,
                                            "WATCHDOG_USEC": "200000"})
    imgs, ref, ref2 = env["images"], env["ref"], env["ref2"]
    differs = [i for i in range(NREF) if ref[i]["class"] != ref2[i]["class"]
               or ref[i]["route"] != ref2[i]["route"]]

    def answer(i):
        st, _, body = d.post_json("/v1/classify", {"image": list(imgs[i])})
        return json.loads(body) if st == 200 else None

    def reloads(result):
        return metric(d.metrics(), "cigt_model_reloads_total", result=result)
    try:
        same_answer(answer(0), ref[0], "before reload")
        # Good reload: atomically replace the file, then SIGHUP.
        tmp = live + ".tmp"
        shutil.copy(env["model2"], tmp)
        os.replace(tmp, live)
        d.signal(signal.SIGHUP)
        check(wait_for(lambda: reloads("success") == 1), "reload counted as success")
        for i in [0, 1, 2] + differs[:3]:
            a = answer(i)
            check(a is not None, "answer after reload") and same_answer(a, ref2[i],
                                                                        "after reload, image %d" % i)
        # Bad files keep the second model serving.
        bad = os.path.join(work, "bad.safetensors")
        data = open(env["model2"], "rb").read()
        cases = [("truncated", data[:len(data) // 2]), ("garbage", b"\x08" + bytes(100))]
        wrong = os.path.join(work, "wrong.json")
        cfg = json.load(open(os.path.join(SRCDIR, "models", "fashion_mnist.json")))
        cfg["layers"][2]["experts"] = 2
        json.dump(cfg, open(wrong, "w"))
        subprocess.run([CIGT, "init", wrong, "-o", bad, "--seed", "3"], check=True,
                       stdout=subprocess.DEVNULL)
        cases.append(("wrong architecture", open(bad, "rb").read()))
        for k, (what, blob) in enumerate(cases):
            open(tmp, "wb").write(blob)
            os.replace(tmp, live)
            d.signal(signal.SIGHUP)
            check(wait_for(lambda: reloads("failure") == k + 1), "%s reload counted as failure"
                  % what)
            a = answer(differs[0] if differs else 0)
            check(a is not None, "still serving after %s reload" % what) and \
                same_answer(a, ref2[differs[0] if differs else 0], "after %s reload" % what)
        check(any("still serving the previous model" in l for l in d.lines), "reload failure logged")
        check(wait_for(lambda: "WATCHDOG=1" in messages, 10), "watchdog pings sent")
    finally:
        d.stop()
    time.sleep(0.5)  # let the reader take the last datagrams
    notify_stop.set()
    reader.join(5)
    notify.close()
    states = [m.split("\n")[0] for m in messages if not m.startswith("WATCHDOG")]
    check(states[:1] == ["READY=1"] and states[-1:] == ["STOPPING=1"]
          and states[1:3] == ["RELOADING=1", "READY=1"]
          and states.count("RELOADING=1") == 4 and states.count("READY=1") == 5,
          "sd_notify sequence: %s" % states)
    check(any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in messages),
          "RELOADING carries MONOTONIC_USEC")

    # Drain: SIGTERM while clients keep sending; every answer received is 200 (correct) or 503;
    # every 200 the server logged reached its client; exit status 0.
    d = Daemon(env["model"], "--workers", "1", "--max-batch", "32")
    got = {"200": 0, "503": 0, "refused": 0, "other": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client(tid):
        rng = random.Random(100 + tid)
        while not stop.is_set():
            idx = [rng.randrange(NREF) for _ in range(32)]
            try:
                st, h, body = d.request("POST", "/v1/classify",
                                        json.dumps({"images": [list(imgs[i]) for i in idx]}).encode(),
                                        {"Content-Type": "application/json", "Connection": "close"})
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected,
                    BrokenPipeError):
                with lock:
                    got["refused"] += 1
                if d.proc.poll() is not None:
                    return
                time.sleep(0.01)
                continue
            with lock:
                if st == 200:
                    res = json.loads(body)["results"]
                    if any(r["class"] != ref[i]["class"] for r, i in zip(res, idx)):
                        got["other"].append("wrong answer during drain")
                    got["200"] += 1
                elif st == 503 and h.get("retry-after") and b"shutting down" in body:
                    got["503"] += 1
                else:
                    got["other"].append("%d %r" % (st, body[:100]))
    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: got["200"] >= 20, 60)
    d.signal(signal.SIGTERM)
    rc = d.proc.wait(60)
    stop.set()
    for t in threads:
        t.join(60)
    d.thread.join(5)
    check(rc == 0, "drain exit status %s" % rc)
    logged = sum(1 for l in d.lines if '"POST /v1/classify" 200' in l)
    check(not got["other"], "drain: unexpected answers %s" % got["other"][:3])
    check(logged == got["200"], "drain: the server answered %d requests with 200 and clients "
          "received %d" % (logged, got["200"]))
    check(any("drained: every accepted request answered" in l for l in d.lines),
          "drain completed")
    print("drain:", {k: v for k, v in got.items() if k != "other"},
          [l for l in d.lines if "draining" in l])
