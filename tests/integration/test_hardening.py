#!/usr/bin/python3
"""Issue 16 against the real cigtd, over raw sockets (a client library would normalise what
matters here): HTTP/1.1 framing (every case of framing_cases.py: the answer, exactly one status
line, the connection closed after a refusal, the smuggled follow-up never answered, the refusals
counted in cigt_requests_total), images the PNG and Netpbm specifications forbid (400 naming the
problem; their valid neighbours 200 with the engine's class), the messages of item 8, and every
signal in `kill -l` 1-31 but KILL, STOP and the fault signals (the daemon keeps serving, or
drains with a log line and exits 0, answering the request in flight).

Run one group: test_hardening.py --group framing|images|messages|signals. Environment as
test_cigtd.py (CIGTD, CIGT, SRCDIR, WORKDIR). Exit 0 pass, 1 fail, 77 skipped.
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

import framing_cases as F
import cigtd_common as T

check = T.check


def counts(d):
    """cigt_requests_total summed over endpoints, by code."""
    out = {}
    for k, v in d.metrics().items():
        if k.startswith("cigt_requests_total{"):
            code = k.split('code="')[1].split('"')[0]
            out[code] = out.get(code, 0) + v
    return out


# ------------------------------------------------------------------------------- framing

def group_framing(env):
    tok = os.path.join(env["work"], "token")
    open(tok, "w").write(F.TOKEN + "\n")
    d = T.Daemon(env["model"], "--auth-token-file", tok, "--read-timeout-ms", "8000")
    try:
        before = counts(d)
        want = {}
        for name, data, status, keep, mhd_double in F.CASES:
            out, closed, secs = F.send(d.port, data, 1.5 if keep else 6)
            codes = F.status_lines(out)
            what = "framing: %s" % name
            check(codes[:1] == [status], "%s: answered %s, expected %d" % (what, codes, status))
            check(b"smuggled" not in out, "%s: the smuggled request was answered" % what)
            if mhd_double:
                # libmicrohttpd's own refusal: status line and headers twice, one body.
                check(codes == [status, status], "%s: %s (libmicrohttpd writes its headers "
                      "twice here)" % (what, codes))
            else:
                check(len(codes) == 1, "%s: %d answers %s" % (what, len(codes), codes))
            check(closed != keep, "%s: connection %s" % (what, "closed" if closed else
                                                        "left open after the answer"))
            check(keep or secs < 5, "%s: closed only after %.1f s" % (what, secs))
            if not keep and status >= 400:
                check(b"Connection: close" in out, "%s: no 'Connection: close'" % what)
            if status != 200 or not mhd_double:
                want[str(status)] = want.get(str(status), 0) + 1
            print("ok? %-50s -> %s %s %.2fs" % (name, codes, "closed" if closed else "open",
                                               secs), flush=True)
        # A keep-alive neighbour really serves the next request on the same connection.
        out, _, _ = F.send(d.port, F.HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                           + F.chunked(F.PGM) + F.LIVE + b"Host: x\r\n\r\n", 1.5)
        check(F.status_lines(out) == [200, 200], "framing: chunked request then a GET on the "
              "same connection: %s" % F.status_lines(out))
        after = counts(d)
        for code in ("400", "501"):
            got = after.get(code, 0) - before.get(code, 0)
            check(got == want.get(code, 0), "framing: cigt_requests_total code=%s grew by %d, "
                  "expected %d (one per refusal)" % (code, got, want.get(code, 0)))
        check(after.get("404", 0) == before.get("404", 0), "framing: a 404 was counted (the "
              "smuggled GET /smuggled was answered)")
        st, _, body = d.request("POST", "/v1/classify", bytes(T.png_gray(env["images"][0], 28,
                                                                           28)),
                                {"Content-Type": "image/png",
                                 "Authorization": "Bearer " + F.TOKEN})
        check(st == 200 and json.loads(body)["class"] == env["ref"][0]["class"],
              "framing: still serving after the cases (%d)" % st)
    finally:
        d.stop()
    check(not any("smuggled" in l for l in d.lines), "framing: cigtd logged /smuggled")
    return 0


# -------------------------------------------------------------------------------- images

def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I",
                                                                 zlib.crc32(t + data) & 0xffffffff)


def png(w, h, depth, ctype, rows, extra=b"", plte=None, after=b""):
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0,
                                                            0))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    out += extra + chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in rows)))
    return out + after + chunk(b"IEND", b"")


def indexed(img, entries, shift=0):
    """The test image as an 8-bit indexed PNG whose palette maps index i to gray i (index =
    pixel + shift, so a shift puts indices beyond a short palette)."""
    plte = b"".join(bytes([i, i, i]) for i in range(entries))
    rows = [bytes(min(255, p + shift) for p in img[28 * y:28 * y + 28]) for y in range(28)]
    return png(28, 28, 8, 3, rows, plte=plte)


def group_images(env):
    d = T.Daemon(env["model"])
    img = env["images"][0]
    gray_rows = [bytes(img[28 * y:28 * y + 28]) for y in range(28)]
    try:
        def post(name, data, ctype, want, words):
            st, _, body = d.request("POST", "/v1/classify", data, {"Content-Type": ctype})
            j = json.loads(body) if body else {}
            if want == 200:
                check(st == 200 and j.get("class") == env["ref"][0]["class"],
                      "images: %s: %d %s, expected 200 and class %d" % (
                          name, st, j, env["ref"][0]["class"]))
            else:
                check(st == want and words in j.get("error", ""), "images: %s: %d %s, expected "
                      "%d naming '%s'" % (name, st, j.get("error"), want, words))
            print("%-48s -> %d %s" % (name, st, j.get("error", "class %s" % j.get("class"))),
                  flush=True)
        P, G = "image/png", "image/x-portable-graymap"
        # 5. Palette indices beyond PLTE, and the other chunk rules libspng lets through.
        post("indexed PNG, 256 entries (neighbour)", indexed(img, 256), P, 200, "")
        post("indexed PNG, 10 entries, pixels up to 255", indexed(img, 10), P, 400,
             "palette index")
        post("indexed PNG, index one past the last entry", png(
            2, 1, 8, 3, [b"\x00\x02"], plte=bytes(6)), P, 400,
            "pixel (1, 0) has palette index 2, beyond the 2 entries of PLTE")
        post("2-bit indexed PNG, index 3 of 3 entries", png(4, 1, 2, 3, [b"\x1b"], plte=bytes(9)),
             P, 400, "pixel (3, 0) has palette index 3")
        post("tRNS longer than PLTE", png(28, 28, 8, 3, gray_rows, plte=bytes(range(256)) * 3,
                                          extra=chunk(b"tRNS", bytes(257))), P, 400,
             "tRNS has 257 entries, more than the 256 of PLTE")
        post("tRNS as long as PLTE (neighbour)", png(
            28, 28, 8, 3, gray_rows, plte=b"".join(bytes([i, i, i]) for i in range(256)),
            extra=chunk(b"tRNS", b"\xff" * 256)), P, 200, "")
        post("tRNS before PLTE", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
            ">IIBBBBB", 2, 1, 8, 3, 0, 0, 0)) + chunk(b"tRNS", b"\x00") + chunk(b"PLTE", bytes(6))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x01")) + chunk(b"IEND", b""), P, 400,
            "tRNS before PLTE")
        post("tRNS in gray+alpha", png(2, 1, 8, 4, [bytes(4)], extra=chunk(b"tRNS", b"\x00\x01")),
             P, 400, "tRNS in an image with an alpha channel")
        post("tRNS of 1 byte in gray", png(2, 1, 8, 0, [bytes(2)], extra=chunk(b"tRNS", b"\x00")),
             P, 400, "tRNS of 1 bytes for colour type 0")
        post("tRNS value beyond 4-bit gray", png(2, 1, 4, 0, [bytes(1)],
                                                 extra=chunk(b"tRNS", b"\x00\x10")), P, 400,
             "tRNS value 16 is beyond 4-bit")
        post("gray PNG with bit depth 3", png(2, 1, 3, 0, [bytes(1)]), P, 400, "bit depth")
        post("RGB PNG with bit depth 4", png(2, 1, 4, 2, [bytes(3)]), P, 400, "bit depth")
        post("indexed PNG with bit depth 16", png(2, 1, 16, 3, [bytes(4)], plte=bytes(6)), P, 400,
             "bit depth")
        post("PLTE in a gray PNG", png(28, 28, 8, 0, gray_rows, plte=bytes(30)), P, 400,
             "PLTE in a grayscale image")
        post("PLTE with 5 entries at bit depth 2", png(4, 1, 2, 3, [b"\x00"], plte=bytes(15)),
             P, 400, "PLTE has 5 entries, more than 2-bit indices reach")
        post("two PLTE", png(2, 1, 8, 3, [bytes(2)], plte=bytes(6),
                             extra=chunk(b"PLTE", bytes(6))), P, 400, "a second PLTE")
        post("bKGD index beyond PLTE", png(2, 1, 8, 3, [bytes(2)], plte=bytes(6),
                                           extra=chunk(b"bKGD", b"\x05")), P, 400,
             "bKGD palette index 5")
        post("sBIT of 9 in an 8-bit gray PNG", png(2, 1, 8, 0, [bytes(2)],
                                                   extra=chunk(b"sBIT", b"\x09")), P, 400,
             "sBIT value 9 is outside 1..8")
        post("IDAT split by another chunk", png(2, 1, 8, 0, [bytes(2)],
                                                after=chunk(b"tEXt", b"a\x00b")
                                                + chunk(b"IDAT", b"")), P, 400,
             "IDAT chunks are not consecutive")
        post("bytes after IEND", png(28, 28, 8, 0, gray_rows) + b"junk", P, 400,
             "4 bytes after the IEND chunk")
        post("gray PNG (neighbour)", png(28, 28, 8, 0, gray_rows), P, 200, "")
        # 6. PGM: exactly one whitespace byte after maxval.
        raster = bytes(img)
        post("PGM with '#c' right after maxval", b"P5 28 28 255#c\n" + raster, G, 400,
             "byte 0x23 after maxval 255")
        post("PGM with a digit glued after maxval", b"P5 28 28 2550" + raster, G, 400,
             "maxval 2550")
        post("PGM ending right after maxval", b"P5 28 28 255", G, 400, "truncated")
        post("PGM with '\\n' after maxval (neighbour)", b"P5 28 28 255\n" + raster, G, 200, "")
        post("PGM with '\\r' after maxval (neighbour)", b"P5 28 28 255\r" + raster, G, 200, "")
        post("PGM with a comment before maxval (neighbour)", b"P5 28 28\n# c\n255 " + raster, G,
             200, "")
    finally:
        d.stop()
    return 0


# ------------------------------------------------------------------------------ messages

def group_messages(env):
    d = T.Daemon(env["model"])
    try:
        def err(data, ctype):
            st, _, body = d.request("POST", "/v1/classify", data, {"Content-Type": ctype})
            return st, json.loads(body).get("error", "")
        st, e = err(b"P5 4294967296 4294967296 255\n" + bytes(784), "image/x-portable-graymap")
        check(st == 413 and "4294967296x4294967296" in e, "messages: huge PGM: %d %s" % (st, e))
        st, e = err(b"P5 99999999999999999999999 2 255\n" + bytes(784),
                    "image/x-portable-graymap")
        check(st == 413 and "at least 9223372036854775807x2" in e,
              "messages: PGM beyond 2^63: %d %s" % (st, e))
        st, e = err(json.dumps({"png": "!!!notbase64"}).encode(), "application/json")
        check(st == 400 and e == "png: invalid base64: byte 0x21 at offset 0 is not a base64 "
              "character", "messages: bad base64: %d %s" % (st, e))
        st, e = err(json.dumps({"images": [{"png": "QQ=x"}]}).encode(),
                    "application/json")
        check(st == 400 and e == "images[0].png: invalid base64: data after the '=' padding at offset 3",
              "messages: base64 data after padding: %d %s" % (st, e))
        st, e = err(json.dumps({"png": "QUJDR"}).encode(), "application/json")
        check(st == 400 and "lone one" in e, "messages: base64 of 5 characters: %d %s" % (st, e))
    finally:
        d.stop()
    for text, words in [("\ntoken\n", "starts with a line break"), ("", "is empty")]:
        tok = os.path.join(env["work"], "tok")
        open(tok, "w").write(text)
        p = subprocess.run([T.CIGTD, "--model", env["model"], "--auth-token-file", tok,
                            "--check-config"], capture_output=True, text=True, timeout=60)
        check(p.returncode == 1 and words in p.stderr,
              "messages: token file %r: rc %d %s" % (text, p.returncode, p.stderr.strip()))
    return 0


# ------------------------------------------------------------------------------- signals

# Every signal in `kill -l` 1-31 an operator might send: what cigtd must do.
DRAIN = ["SIGINT", "SIGQUIT", "SIGTERM", "SIGXCPU", "SIGPWR"]
SERVE = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
         "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXFSZ", "SIGVTALRM", "SIGPROF",
         "SIGWINCH", "SIGIO"]
FATAL = ["SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP",
         "SIGSYS"]


def group_signals(env):
    names = {getattr(signal, n).value for n in DRAIN + SERVE + FATAL}
    check(names == set(range(1, 32)), "signals: the lists cover 1..31 (%s missing)" %
          sorted(set(range(1, 32)) - names))
    helptext = subprocess.run([T.CIGTD, "--help"], capture_output=True, text=True).stdout
    check("Signals:" in helptext, "signals: cigtd --help has no Signals section")
    helptext = helptext[helptext.find("Signals:"):] if "Signals:" in helptext else ""
    missing = [n for n in DRAIN + SERVE + FATAL if not re.search(r"\b%s\b" % n[3:], helptext)]
    check(not missing, "signals: cigtd --help does not say what %s do" % missing)
    img = list(env["images"][1])
    d = T.Daemon(env["model"])
    try:
        for name in SERVE:
            n0 = len(d.lines)
            d.signal(getattr(signal, name))
            try:
                st, _, body = d.post_json("/v1/classify", {"image": img})
            except OSError as e:
                st, body = "error: %s" % e, b"{}"
            ok = st == 200 and json.loads(body)["class"] == env["ref"][1]["class"]
            if not check(ok and d.proc.poll() is None, "signals: %s: serving %s, alive %s" % (
                    name, st, d.proc.poll() is None)):
                return 0
            quiet = name in ("SIGPIPE", "SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH")
            if not quiet:
                check(T.wait_for(lambda: any(name in l for l in d.lines[n0:]), 5),
                      "signals: %s: no log line" % name)
            print("%-10s served %d, %s" % (name, st, "logged" if not quiet else "default"),
                  flush=True)
        check(any("SIGUSR1: ready" in l for l in d.lines), "signals: SIGUSR1 status line")
    finally:
        d.stop()
    # A drain with a request in flight, two ways. Queued: --max-delay-us holds the batch (1 s;
    # --eager-dispatch=false, or the lone request would run at once) so the request waits in the scheduler when the signal arrives. Body after the signal:
    # the head is sent first, the body once the drain has begun; the head made it a request in
    # flight, so it is accepted too. Either way the drain line counts it, it is answered 200 and
    # cigtd exits 0.
    body = json.dumps({"image": img}).encode()
    for i, name in enumerate(DRAIN):
        late = i % 2 == 1
        d = T.Daemon(env["model"], "--max-batch", "64", "--max-delay-us", "1000000",
                     "--eager-dispatch=false", "--workers", "1")
        res = {}
        c = d.conn(30)
        if late:
            c.putrequest("POST", "/v1/classify")
            c.putheader("Content-Type", "application/json")
            c.putheader("Content-Length", str(len(body)))
            c.endheaders()
        else:
            def inflight():
                res["r"] = d.request("POST", "/v1/classify", body,
                                     {"Content-Type": "application/json"}, conn=c)
            t = threading.Thread(target=inflight)
            t.start()
        check(T.wait_for(lambda: T.metric(d.metrics(), "cigt_requests_in_flight") >= 2, 10),
              "signals: %s: the request did not get in flight" % name)
        d.signal(getattr(signal, name))
        if late:
            check(T.wait_for(lambda: any(name + ": draining" in l for l in d.lines), 10),
                  "signals: %s: no drain log line" % name)
            try:
                c.send(body)
                r = c.getresponse()
                r.read()
                res["r"] = (r.status,)
            except OSError as e:
                res["r"] = ("error: %s" % e,)
        else:
            t.join(30)
        c.close()
        st = res.get("r", (None,))[0]
        try:
            d.proc.wait(30)  # it exits by itself; stop() only collects the status
        except subprocess.TimeoutExpired:
            check(False, "signals: %s: cigtd still running 30 s after the drain" % name)
        rc = d.stop(0)
        how = "body after the signal" if late else "queued"
        check(st == 200, "signals: %s: the request in flight (%s) got %s" % (name, how, st))
        check(any(name + ": draining 1 requests" in l for l in d.lines),
              "signals: %s: no drain log line with the request in flight" % name)
        print("%-10s drained: in-flight request (%s) %s, exit %s" % (name, how, st, rc),
              flush=True)
    return 0


GROUPS = {"framing": group_framing, "images": group_images, "messages": group_messages,
          "signals": group_signals}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigtd-hardening-")
    os.makedirs(work, exist_ok=True)
    env = {"work": work, "images": T.load_images(8)}
    env["model"] = os.path.join(work, "model.safetensors")
    T.make_model(env["model"], 5)
    env["ref"] = T.reference(env["model"], work, 8)
    try:
        GROUPS[args.group](env)
    finally:
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("%s: %s" % (args.group, "FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
