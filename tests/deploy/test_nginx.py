#!/usr/bin/python3
"""Scale-out: Debian's nginx with deploy/nginx.conf balances two cigtd replicas on loopback.

Under steady load (a few keep-alive clients classifying real test images through nginx),
replica A gets SIGTERM: it drains (503 to new requests, answers the accepted ones) and exits 0.
Asserted: every client request got 200 with the class replica A gave for that image before the
test; both replicas served traffic before the stop; after A exited every answer came from B;
B's own /metrics counts exactly the successful answers that nginx says B gave (so B took
over, and nothing was answered twice or lost). Prints the failover figures.
"""

import http.client
import os
import signal
import subprocess
import threading
import time

import deploylib as dl

CLIENTS = 4
BEFORE_S, AFTER_S = 1.5, 1.5  # load before SIGTERM, and after replica A has exited


def client(port, imgs, ref, stop, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        k = i % len(imgs)
        i += 1
        t = time.monotonic()
        try:
            conn.request("POST", "/v1/classify", dl.pgm(imgs[k]),
                         {"Content-Type": "image/x-portable-graymap"})
            r = conn.getresponse()
            body = r.read()
            up = r.getheader("X-Cigt-Upstream", "")
            good = r.status == 200 and dl.json.loads(body)["class"] == ref[k]
            out.append((t, time.monotonic(), r.status, good, up))
        except (OSError, http.client.HTTPException) as e:
            out.append((t, time.monotonic(), "error: %s" % e, False, ""))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def main():
    nginx = dl.need_tool("nginx", "nginx")
    model = dl.need_model()
    work = dl.scratch("cigt-nginx-")
    pa, pb, pn = dl.free_port(), dl.free_port(), dl.free_port()
    text = open(os.path.join(dl.SRCDIR, "deploy", "nginx.conf")).read()
    for old, new in [("server 127.0.0.1:8081", "server 127.0.0.1:%d" % pa),
                     ("server 127.0.0.1:8082", "server 127.0.0.1:%d" % pb),
                     ("listen 127.0.0.1:8080", "listen 127.0.0.1:%d" % pn)]:
        if text.count(old) != 1:
            dl.die("deploy/nginx.conf: expected one '%s'" % old)
        text = text.replace(old, new)
    conf = os.path.join(work, "nginx.conf")
    open(conf, "w").write(text)
    r = subprocess.run([nginx, "-t", "-p", work, "-c", conf], capture_output=True, text=True)
    dl.check(r.returncode == 0, "nginx -t accepts deploy/nginx.conf" + ("" if r.returncode == 0 else ": " + r.stderr))

    a = dl.Cigtd("--model", model, "--workers", "1", listen="127.0.0.1:%d" % pa)
    b = dl.Cigtd("--model", model, "--workers", "1", listen="127.0.0.1:%d" % pb)
    ngx = subprocess.Popen([nginx, "-p", work, "-c", conf, "-g", "daemon off;"],
                           stderr=subprocess.STDOUT, stdout=open(work + "/nginx.out", "w"))
    threads, stop, out = [], threading.Event(), []
    try:
        imgs, _ = dl.load_images(64)
        ref = [dl.classify(pa, im)[1]["class"] for im in imgs]
        up = dl.wait_for(lambda: dl.http_request(pn, "GET", "/v2/health/ready")[0] == 200, 10)
        if not dl.check(up, "nginx on 127.0.0.1:%d answers ready" % pn):
            return
        st, _, _ = dl.http_request(pn, "GET", "/metrics")
        dl.check(st == 404, "nginx hides the replicas' /metrics (%d)" % st)
        b0 = dl.metrics(pb).get('cigt_requests_total{endpoint="classify",code="200"}', 0)

        threads = [threading.Thread(target=client, args=(pn, imgs, ref, stop, out))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(BEFORE_S)
        t_kill = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        try:
            rc_a = a.proc.wait(30)
        except subprocess.TimeoutExpired:
            rc_a = "hung"
        t_gone = time.monotonic()
        time.sleep(AFTER_S)
        stop.set()
        for t in threads:
            t.join(60)
        a.stop()
        dl.check(rc_a == 0, "replica A drained and exited 0 (%s) %.2f s after SIGTERM"
                 % (rc_a, t_gone - t_kill))

        addr_a, addr_b = "127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb
        last = [o[4].split(", ")[-1] for o in out]
        fails = [o for o in out if not o[3]]
        dl.check(len(out) > 100, "%d requests through nginx during the test" % len(out))
        dl.check(not fails, "no request failed (%d failed: %s)" % (len(fails), fails[:5]))
        before = [l for o, l in zip(out, last) if o[1] < t_kill]
        dl.check(before.count(addr_a) > 0 and before.count(addr_b) > 0,
                 "before SIGTERM both replicas answered (A %d, B %d)"
                 % (before.count(addr_a), before.count(addr_b)))
        after = [l for o, l in zip(out, last) if o[0] > t_gone]
        dl.check(len(after) > 10 and all(l == addr_b for l in after),
                 "after A exited, B answered all %d requests" % len(after))
        b_served = last.count(addr_b)
        b1 = dl.metrics(pb).get('cigt_requests_total{endpoint="classify",code="200"}', 0)
        dl.check(b1 - b0 == b_served, "B's metrics count the %d answers nginx got from B (%d)"
                 % (b_served, b1 - b0))
        retried = sum(1 for o in out if ", " in o[4])
        during = [o for o in out if o[1] >= t_kill and o[0] <= t_gone]
        print("FAILOVER requests=%d failed=%d before_kill A=%d B=%d during_drain=%d retried=%d "
              "after_exit=%d all_B=%s drain_s=%.2f"
              % (len(out), len(fails), before.count(addr_a), before.count(addr_b), len(during),
                 retried, len(after), all(l == addr_b for l in after), t_gone - t_kill))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        ngx.send_signal(signal.SIGQUIT)  # graceful stop
        try:
            ngx.wait(30)
        except subprocess.TimeoutExpired:
            ngx.kill()
        a.stop()
        rc_b = b.stop()
    dl.check(rc_b == 0, "replica B exits 0")
    dl.finish("nginx-failover")


if __name__ == "__main__":
    main()
