#!/usr/bin/python3
"""Scale-out: Debian's nginx with deploy/nginx.conf balances two cigtd replicas on loopback.

Under steady load (a few keep-alive clients classifying real test images through nginx),
replica A gets SIGTERM: it drains (503 to new requests, answers the accepted ones) and exits 0.
Asserted: every client request got 200 with the class replica A gave for that image before the
test; both replicas served traffic before the stop; after A exited every answer came from B;
B's own /metrics counts exactly the successful answers that nginx says B gave (so B took
over, and nothing was answered twice or lost). The same for gRPC (issue 28) through nginx's
grpc_pass server beside it, with grpcio clients on one connection each: every ModelInfer OK
with the right class, both replicas answering before the stop, only B after A exited (nginx's
X-Cigt-Upstream in the initial metadata), B's gRPC counter equal to nginx's count for B. Prints
the failover figures.
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


def grpc_client(port, imgs, ref, stop, out, G, pb, pb_grpc, grpc):
    """ModelInfer through nginx's gRPC server until stop; (t0, t1, code, good, upstream)."""
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        s = pb_grpc.GRPCInferenceServiceStub(ch)
        i = 0
        while not stop.is_set():
            k = i % len(imgs)
            i += 1
            t = time.monotonic()
            try:
                resp, call = s.ModelInfer.with_call(G.infer_request(pb, [imgs[k]]), timeout=30)
                up = dict(call.initial_metadata()).get("x-cigt-upstream", "")
                good = G.answers(resp)[0]["class"] == ref[k]
                out.append((t, time.monotonic(), "OK", good, up))
            except grpc.RpcError as e:
                out.append((t, time.monotonic(), e.code().name + ": " + str(e.details()), False,
                            ""))


def grpc_stubs():
    """The gRPC stubs from proto/ (tests/grpc), or None when they cannot be made here."""
    import sys
    sys.path.insert(0, os.path.join(dl.SRCDIR, "tests", "grpc"))
    try:
        import grpc_common as G
        pb, pb_grpc, grpc = G.stubs()
        return G, pb, pb_grpc, grpc
    except Exception as e:  # noqa: BLE001
        print("note: no gRPC stubs here (%s): the gRPC failover is not tested" % e)
        return None


def grpc_ok(m):
    return m.get('cigt_grpc_requests_total{method="ModelInfer",code="OK"}', 0)


def main():
    nginx = dl.need_tool("nginx", "nginx")
    model = dl.need_model()
    work = dl.scratch("cigt-nginx-")
    pa, pb, pn = dl.free_port(), dl.free_port(), dl.free_port()
    ga, gb, gn = dl.free_port(), dl.free_port(), dl.free_port()
    text = open(os.path.join(dl.SRCDIR, "deploy", "nginx.conf")).read()
    for old, new in [("server 127.0.0.1:8081", "server 127.0.0.1:%d" % pa),
                     ("server 127.0.0.1:8082", "server 127.0.0.1:%d" % pb),
                     ("listen 127.0.0.1:8080", "listen 127.0.0.1:%d" % pn),
                     ("server 127.0.0.1:8011", "server 127.0.0.1:%d" % ga),
                     ("server 127.0.0.1:8012", "server 127.0.0.1:%d" % gb),
                     ("listen 127.0.0.1:8001", "listen 127.0.0.1:%d" % gn)]:
        if text.count(old) != 1:
            dl.die("deploy/nginx.conf: expected one '%s'" % old)
        text = text.replace(old, new)
    conf = os.path.join(work, "nginx.conf")
    open(conf, "w").write(text)
    r = subprocess.run([nginx, "-t", "-p", work, "-c", conf], capture_output=True, text=True)
    dl.check(r.returncode == 0, "nginx -t accepts deploy/nginx.conf" + ("" if r.returncode == 0 else ": " + r.stderr))

    a = dl.Cigtd("--model", model, "--workers", "1", "--grpc-listen", "127.0.0.1:%d" % ga,
                 listen="127.0.0.1:%d" % pa)
    b = dl.Cigtd("--model", model, "--workers", "1", "--grpc-listen", "127.0.0.1:%d" % gb,
                 listen="127.0.0.1:%d" % pb)
    stubs = grpc_stubs()
    gout = []
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
        gb0 = grpc_ok(dl.metrics(pb))

        threads = [threading.Thread(target=client, args=(pn, imgs, ref, stop, out))
                   for _ in range(CLIENTS)]
        if stubs:
            threads += [threading.Thread(target=grpc_client,
                                         args=(gn, imgs, ref, stop, gout) + stubs)
                        for _ in range(2)]
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
        if stubs:
            gaddr_a, gaddr_b = "127.0.0.1:%d" % ga, "127.0.0.1:%d" % gb
            glast = [o[4].split(", ")[-1] for o in gout]
            gfails = [o for o in gout if not o[3]]
            dl.check(len(gout) > 50, "%d gRPC calls through nginx" % len(gout))
            dl.check(not gfails, "no gRPC call failed (%d: %s)" % (len(gfails), gfails[:5]))
            gbefore = [l for o, l in zip(gout, glast) if o[1] < t_kill]
            dl.check(gbefore.count(gaddr_a) > 0 and gbefore.count(gaddr_b) > 0,
                     "gRPC: before SIGTERM both replicas answered (A %d, B %d)"
                     % (gbefore.count(gaddr_a), gbefore.count(gaddr_b)))
            gafter = [l for o, l in zip(gout, glast) if o[0] > t_gone]
            dl.check(len(gafter) > 5 and all(l == gaddr_b for l in gafter),
                     "gRPC: after A exited, B answered all %d calls" % len(gafter))
            gb1 = grpc_ok(dl.metrics(pb))
            dl.check(gb1 - gb0 == glast.count(gaddr_b),
                     "B's gRPC counter counts the %d calls nginx got from B (%d)"
                     % (glast.count(gaddr_b), gb1 - gb0))
            print("GRPC_FAILOVER calls=%d failed=%d before_kill A=%d B=%d retried=%d after_exit=%d"
                  % (len(gout), len(gfails), gbefore.count(gaddr_a), gbefore.count(gaddr_b),
                     sum(1 for o in gout if ", " in o[4]), len(gafter)))
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
