#!/usr/bin/python3
"""Issue 16's cross-check with a second, independent HTTP/1.1 parser: Debian's nginx with
deploy/nginx.conf in front of one cigtd (both upstream lines pointed at it), and every framing
case of tests/integration/framing_cases.py sent to nginx as exact bytes over a raw socket.

Each case must end one of three ways: refused by nginx (its own status, no X-Cigt-Upstream
header, cigtd logs nothing), refused by cigtd (its status passed on by nginx), or answered once
by both. Never twice: the client gets exactly one status line, cigtd's access log gains at most
one line, and the smuggled follow-up (GET /smuggled) reaches neither the client nor cigtd.
Prints one row per case (the table in tests/RELIABILITY.md).
"""

import os
import signal
import subprocess
import sys
import time

import deploylib as dl

sys.path.insert(0, os.path.join(dl.SRCDIR, "tests", "integration"))
import framing_cases as F  # noqa: E402


def main():
    nginx = dl.need_tool("nginx", "nginx")
    model = dl.need_model()
    work = dl.scratch("cigt-nginx-framing-")
    pc, pn = dl.free_port(), dl.free_port()
    text = open(os.path.join(dl.SRCDIR, "deploy", "nginx.conf")).read()
    for old, new in [("server 127.0.0.1:8081", "server 127.0.0.1:%d" % pc),
                     ("server 127.0.0.1:8082", "server 127.0.0.1:%d" % pc),
                     ("listen 127.0.0.1:8080", "listen 127.0.0.1:%d" % pn),
                     # the gRPC server (not used here) on a free port, not Triton's 8001
                     ("listen 127.0.0.1:8001", "listen 127.0.0.1:%d" % dl.free_port())]:
        if text.count(old) != 1:
            dl.die("deploy/nginx.conf: expected one '%s'" % old)
        text = text.replace(old, new)
    conf = os.path.join(work, "nginx.conf")
    open(conf, "w").write(text)
    tok = os.path.join(work, "token")
    open(tok, "w").write(F.TOKEN + "\n")
    c = dl.Cigtd("--model", model, "--workers", "1", "--access-log", "--auth-token-file", tok,
                 listen="127.0.0.1:%d" % pc)
    ngx = subprocess.Popen([nginx, "-p", work, "-c", conf, "-g", "daemon off;"],
                           stderr=subprocess.STDOUT, stdout=open(work + "/nginx.out", "w"))
    tally = {"nginx": 0, "cigtd": 0, "both": 0}
    try:
        up = dl.wait_for(lambda: dl.http_request(pn, "GET", "/v2/health/ready")[0] == 200, 10)
        if not dl.check(up, "nginx on 127.0.0.1:%d answers ready" % pn):
            return
        # The probes' access lines are in before the first case counts lines.
        dl.wait_for(lambda: any("/v2/health/ready\" 200" in l for l in c.lines), 5)
        for name, data, direct, keep, _ in F.CASES:
            n0 = sum(1 for l in c.lines if " access " in l)
            out, _, _ = F.send(pn, data, 2.5)
            codes = F.status_lines(out)
            head = out.split(b"\r\n\r\n", 1)[0].lower()
            via = b"x-cigt-upstream:" in head
            dl.wait_for(lambda: sum(1 for l in c.lines if " access " in l) > n0, 0.5)
            logged = [l for l in c.lines if " access " in l][n0:]
            if not via:
                who = "nginx"
            elif codes and codes[0] >= 400:
                who = "cigtd"
            else:
                who = "both"
            tally[who] += 1
            ok = dl.check(len(codes) == 1, "%s: one answer to the client (%s)" % (name, codes))
            ok &= dl.check(b"smuggled" not in out and not any("/smuggled" in l for l in logged),
                           "%s: the smuggled request reached nobody" % name)
            ok &= dl.check(len(logged) <= 1, "%s: cigtd answered %d times" % (name, len(logged)))
            if who == "nginx":
                ok &= dl.check(not logged, "%s: nginx refused it (%s) and cigtd saw nothing"
                               % (name, codes))
            else:
                ok &= dl.check(len(logged) == 1 and codes and
                               (" %d " % codes[0]) in logged[0],
                               "%s: cigtd's one answer (%s) is the client's (%s)"
                               % (name, logged, codes))
            print("ROW %-48s direct %d | via nginx %s, answered by %s" % (
                name, direct, codes, who), flush=True)
        print("TALLY refused by nginx %d, refused by cigtd %d, answered once by both %d" % (
            tally["nginx"], tally["cigtd"], tally["both"]))
        st, _, _ = dl.http_request(pn, "GET", "/v2/health/ready")
        dl.check(st == 200, "cigtd behind nginx still serving after the cases (%d)" % st)
    finally:
        ngx.send_signal(signal.SIGQUIT)
        try:
            ngx.wait(30)
        except subprocess.TimeoutExpired:
            ngx.kill()
        dl.check(c.stop() == 0, "cigtd exits 0")
    dl.finish("nginx-framing")


if __name__ == "__main__":
    main()
