#!/usr/bin/python3
"""Hostile input and resource-exhaustion cases for cigtd (issue 7) that the integration tests
(tests/integration/test_cigtd.py) do not already cover: oversized headers and URLs, malformed
framing, deeply nested JSON, huge and overflowing shapes, negative sizes, NaN/Inf values,
PNG decompression bombs, huge batches under the default limits, bearer-token variants, the
default bind address, thousands of idle connections and slow bodies, and (issue 16) every
HTTP/1.1 framing case of tests/integration/framing_cases.py sent in pieces. Each case expects a
bounded, clear answer (a status and message, or a closed connection within the read timeout),
a server that keeps answering correctly afterwards, resident memory that stays bounded, and a
clean exit with no sanitizer report.

Environment as test_cigtd.py (CIGTD, CIGT, SRCDIR, WORKDIR); CIGT_TEST_MODELS=DIR serves group
dial's fashion_mnist.safetensors (and its second models) from DIR instead of models/. Prints one
line per case (the rows of tests/RELIABILITY.md). Exit 0 pass, 1 fail, 77 skipped.
"""

import base64
import http.client
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import framing_cases as F  # noqa: E402
import cigtd_common as T  # noqa: E402
import test_repository as R  # noqa: E402

V2 = "/v2/models/fashion_mnist/infer"
J = {"Content-Type": "application/json"}
ROWS = []


def case(name, ok, detail=""):
    T.check(ok, "%s: %s" % (name, detail))
    ROWS.append((name, "ok" if ok else "FAIL", detail))
    print("%-4s %s -- %s" % ("ok" if ok else "FAIL", name, detail), flush=True)


def raw(d, data, timeout=10):
    """Sends bytes, reads until the server closes or `timeout` passes: (status or None, bytes,
    seconds until the close)."""
    s = socket.create_connection(("127.0.0.1", d.port))
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            k = s.recv(65536)
            if not k:
                break
            out += k
    except socket.timeout:
        out += b"<timeout>"
    except OSError:
        pass
    s.close()
    st = None
    if out.startswith(b"HTTP/1."):
        try:
            st = int(out.split(b" ", 2)[1])
        except ValueError:
            pass
    return st, out, time.monotonic() - t0


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def serving(d, env, i=3, path="/v1/classify"):
    st, _, body = d.post_json(path, {"image": list(env["images"][i])})
    return st == 200 and json.loads(body)["class"] == env["ref"][i]["class"]


def png_chunk(t, data):
    c = struct.pack(">I", len(data)) + t + data
    return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)


def png_raw(w, h, idat, extra=b"", depth=8, ctype=0):
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype,
                                                                   0, 0, 0))
            + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def zeros_deflated(n):
    c = zlib.compressobj(9)
    out = b""
    block = bytes(1 << 20)
    while n > 0:
        out += c.compress(block[:min(n, len(block))])
        n -= len(block)
    return out + c.flush()


# ------------------------------------------------------------------------------- groups

def group_protocol(env):
    d = T.Daemon(env["model"], "--read-timeout-ms", "1500")
    img = list(env["images"][0])
    try:
        st, out, _ = raw(d, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000
                         + b"\r\n\r\n")
        case("header line of 100 kB", st == 431, "-> %s" % st)
        st, out, _ = raw(d, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-H%d: %s\r\n" % (i, b"b" * 50) for i in range(2000)) + b"\r\n")
        case("2000 header lines", st == 431, "-> %s" % st)
        st, out, _ = raw(d, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        case("URL of 70 kB", st == 414, "-> %s" % st)
        st, out, secs = raw(d, b"\x00\x01\x02garbage\r\n\r\n", 10)
        case("binary garbage instead of a request line", secs < 4
             and b"<timeout>" not in out, "closed after %.1f s, status %s" % (secs, st))
        st, out, _ = raw(d, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n"
                         b"Content-Type: application/json\r\n\r\n")
        case("Content-Length: -1", st == 400, "-> %s (libmicrohttpd's own answer)" % st)
        st, out, _ = raw(d, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         b"99999999999999999999999\r\nContent-Type: application/json\r\n\r\n")
        case("Content-Length: 10^23", st == 413, "-> %s" % st)
        st, out, _ = raw(d, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                         b"chunked\r\nContent-Type: application/json\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nab")
        case("chunk size 2^72", st == 413, "-> %s" % st)
        body = json.dumps({"image": img}).encode()
        st, out, _ = raw(d, (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                         * 2 + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close"
                         b"\r\n\r\n", 10)
        case("three pipelined requests", out.count(b"HTTP/1.1 200") == 3,
             "%d answers of 200" % out.count(b"HTTP/1.1 200"))
        # Slow body: complete headers, then a byte every 200 ms: cut at --read-timeout-ms.
        m0 = d.metrics()
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        s.settimeout(0.2)
        t0, cut, k = time.monotonic(), False, 0
        while time.monotonic() - t0 < 10 and not cut:
            try:
                s.send(body[k:k + 1])
                k += 1
                if s.recv(100) == b"":
                    cut = True
            except socket.timeout:
                pass
            except OSError:
                cut = True
        s.close()
        secs = time.monotonic() - t0
        ok = T.wait_for(lambda: T.metric(d.metrics(), "cigt_requests_total", endpoint="classify",
                                         code="499") == T.metric(m0, "cigt_requests_total",
                                                                 endpoint="classify",
                                                                 code="499") + 1, 5)
        case("slow body (1 byte / 200 ms)", cut and secs < 4 and ok,
             "cut after %.1f s, counted as 499: %s" % (secs, ok))
        # Content-Length promises more than is sent.
        st, out, secs = raw(d, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: "
                            b"application/json\r\nContent-Length: 5000\r\n\r\n{\"image\": [", 10)
        case("body shorter than its Content-Length", b"<timeout>" not in out and secs < 4,
             "closed after %.1f s" % secs)
        case("still serving after protocol abuse", serving(d, env), "")
    finally:
        d.stop()


def group_json(env):
    d = T.Daemon(env["model"])
    img = list(env["images"][0])

    def v2in(**kw):
        x = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": img}
        x.update(kw)
        return json.dumps({"inputs": [{k: v for k, v in x.items() if v is not None}]}).encode()

    def v2raw(data, dtype=b"UINT8"):
        return (b'{"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "' + dtype
                + b'", "data": ' + data + b"}]}")

    def expect(name, path, body, status, words, headers=J):
        t0 = time.monotonic()
        st, h, resp = d.request("POST", path, body, headers)
        secs = time.monotonic() - t0
        try:
            msg = json.loads(resp)["error"]
        except (ValueError, KeyError, TypeError):
            msg = resp[:80]
        ok = st == status and isinstance(msg, str) and words.lower() in msg.lower()
        case(name, ok, "-> %d %s (%.2f s)" % (st, str(msg)[:90], secs))
    try:
        deep = b"[" * 100000 + b"]" * 100000
        expect("JSON nested 100,000 deep (v1)", "/v1/classify", b'{"image": ' + deep + b"}",
               400, "depth")
        expect("JSON nested 100,000 deep (v2)", V2, b'{"inputs": ' + deep + b"}", 400, "depth")
        expect("v2 data nested 1000 deep", V2, v2raw(b"[" * 1000 + b"1" + b"]" * 1000),
               400, "nested more than 8")
        expect("1 MB of '['", "/v1/classify", b"[" * (1 << 20), 400, "JSON")
        expect("v2 shape [2^31,1,28,28]", V2, v2in(shape=[2 ** 31, 1, 28, 28]), 413,
               "more than the 1024 allowed")
        expect("v2 shape [10^12,1,28,28]", V2, v2in(shape=[10 ** 12, 1, 28, 28]), 413,
               "more than the 1024 allowed")
        expect("v2 shape [2^63-1,...] product overflows", V2,
               v2in(shape=[2 ** 63 - 1, 1, 28, 2 ** 63 - 1]), 400, "overflows")
        expect("v2 shape [1,1,28,2^40]", V2, v2in(shape=[1, 1, 28, 2 ** 40]), 400, "shape")
        expect("v2 shape with a fraction", V2, v2in(shape=[1.5, 1, 28, 28]), 400, "integer")
        expect("v2 shape of 9 dimensions", V2, v2in(shape=[1] * 9), 400, "shape")
        expect("v2 shape []", V2, v2in(shape=[]), 400, "shape")
        expect("v2 shape 2^64 (beyond int64)", V2,
               b'{"inputs":[{"name":"image","shape":[18446744073709551616,1,28,28],'
               b'"datatype":"UINT8","data":[1]}]}', 400, "")
        bin_hdr = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 28, 28],
                                          "datatype": "UINT8",
                                          "parameters": {"binary_data_size": -784}}]}).encode()
        expect("binary_data_size -784", V2, bin_hdr + bytes(784), 400, "binary_data_size",
               {"Inference-Header-Content-Length": str(len(bin_hdr))})
        expect("Inference-Header-Content-Length -5", V2, bin_hdr + bytes(784), 400, "byte count",
               {"Inference-Header-Content-Length": "-5"})
        expect("timeout_ms=-1 (query)", "/v1/classify?timeout_ms=-1",
               json.dumps({"image": img}).encode(), 400, "timeout_ms")
        expect("timeout_ms -1 (body)", "/v1/classify",
               json.dumps({"image": img, "timeout_ms": -1}).encode(), 400, "timeout_ms")
        expect("top_k=-3", "/v1/classify?top_k=-3", json.dumps({"image": img}).encode(), 400,
               "top_k")
        for what, val in (("+Inf", float("inf")), ("-Inf", float("-inf")),
                          ("NaN", float("nan"))):
            hdr = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 28, 28],
                                          "datatype": "FP32",
                                          "parameters": {"binary_data_size": 3136}}]}).encode()
            expect("binary FP32 %s pixel" % what, V2,
                   hdr + struct.pack("<783f", *([0.5] * 783)) + struct.pack("<f", val), 400,
                   "outside the model's input range",
                   {"Inference-Header-Content-Length": str(len(hdr))})
        expect("JSON FP32 1e400", V2,
               v2raw(b"[1e400" + b", 0" * 783 + b"]", b"FP32"), 400, "")
        expect("JSON FP32 Infinity literal", V2,
               v2raw(b"[Infinity" + b", 0" * 783 + b"]", b"FP32"), 400, "malformed")
        st, _, body = d.post_json(V2, json.loads(v2in(datatype="FP32",
                                                      data=[-0.0] + [0.0] * 783)))
        case("JSON FP32 -0.0 and zeros (in range)", st == 200, "-> %d" % st)
        # Huge batches under the default limits: refused before any work.
        m0 = d.metrics()
        expect("1025 images in one v1 request", "/v1/classify",
               json.dumps({"images": [img] * 1025}).encode(), 413, "1025 images")
        hdr = json.dumps({"inputs": [{"name": "image", "shape": [1025, 1, 28, 28],
                                      "datatype": "UINT8",
                                      "parameters": {"binary_data_size": 1025 * 784}}]}).encode()
        expect("1025 images in one v2 binary request", V2, hdr + bytes(1025 * 784), 413,
               "1025 images", {"Inference-Header-Content-Length": str(len(hdr))})
        st, out, _ = raw(d, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % (9 << 20)
                         + b" " * 65536)
        case("9 MB body (limit 8 MiB), refused on its Content-Length", st == 413,
             "-> %s" % st)
        m1 = d.metrics()
        case("refused batches computed nothing",
             T.metric(m1, "cigt_samples_total") == T.metric(m0, "cigt_samples_total"), "")
        case("still serving after hostile JSON", serving(d, env), "")
    finally:
        d.stop()


def group_png(env):
    d = T.Daemon(env["model"])
    try:
        base = rss_kb(d.proc.pid)
        peak = [base]

        def post(name, data, want, words=""):
            t0 = time.monotonic()
            st, _, resp = d.request("POST", "/v1/classify", data, {"Content-Type": "image/png"})
            secs = time.monotonic() - t0
            peak.append(rss_kb(d.proc.pid))
            try:
                j = json.loads(resp)
            except ValueError:
                j = {}
            msg = j.get("error", "class %s" % j.get("class"))
            ok = st in want and words.lower() in str(msg).lower() and secs < 10
            case(name, ok, "%d bytes -> %d %s (%.2f s)" % (len(data), st, str(msg)[:80], secs))
        post("PNG 4096x4096 of zeros (bomb, 16 M pixels)",
             png_raw(4096, 4096, zeros_deflated(4097 * 4096)), [413], "4096x4096")
        post("PNG 50000x50000 header", png_raw(50000, 50000, zeros_deflated(1000)), [413],
             "50000x50000")
        post("PNG 1024x1024 (at the pixel limit)", png_raw(1024, 1024,
                                                           zeros_deflated(1025 * 1024)), [200])
        post("PNG 28x28 whose IDAT inflates to 64 MB", png_raw(28, 28, zeros_deflated(64 << 20)),
             [200, 400])
        ztxt = png_chunk(b"zTXt", b"k\x00\x00" + zeros_deflated(256 << 20))
        rows = b"".join(b"\x00" + bytes(28) for _ in range(28))
        post("PNG with a zTXt chunk inflating to 256 MB", png_raw(28, 28, zlib.compress(rows),
                                                                  extra=ztxt), [200, 400])
        many = b"".join(png_chunk(b"tEXt", b"k\x00" + b"v" * 1000) for _ in range(3000))
        post("PNG with 3000 text chunks", png_raw(28, 28, zlib.compress(rows), extra=many),
             [200, 400])
        post("PNG 16-bit RGBA 512x512", png_raw(512, 512, zeros_deflated((512 * 8 + 1) * 512),
                                                depth=16, ctype=6), [200])
        b64 = base64.b64encode(png_raw(4096, 4096, zeros_deflated(4097 * 4096))).decode()
        st, _, resp = d.post_json("/v1/classify", {"png": b64})
        case("base64 PNG bomb inside JSON", st == 413, "-> %d" % st)
        grown = (max(peak) - base) / 1024
        case("resident memory during the PNG cases", grown < 200,
             "peak %.0f MB above the start (the 1024x1024 decode needs 4 MB)" % grown)
        case("still serving after PNG bombs", serving(d, env), "")
    finally:
        d.stop()


def group_auth(env):
    tok = os.path.join(env["work"], "token")
    with open(tok, "w") as f:
        f.write("s3cret-token\n")
    d = T.Daemon(env["model"], "--auth-token-file", tok)
    body = json.dumps({"image": list(env["images"][0])}).encode()
    try:
        for what, hv, want in (("prefix of the token", "Bearer s3cret", 401),
                               ("token plus a character", "Bearer s3cret-tokenX", 401),
                               ("token plus a space", "Bearer s3cret-token ", 401),
                               ("empty bearer", "Bearer ", 401),
                               ("token only, no scheme", "s3cret-token", 401),
                               ("20 kB token", "Bearer " + "a" * 20000, 401),
                               ("right token, scheme in lower case", "bearer s3cret-token", 200),
                               ("right token", "Bearer s3cret-token", 200)):
            st, _, _ = d.request("POST", "/v1/classify", body, dict(J, Authorization=hv))
            case("auth: " + what, st == want, "-> %d" % st)
    finally:
        d.stop()
    src = open(os.path.join(T.SRCDIR, "src", "server", "handler.c")).read()
    fn = src[src.index("static bool token_equal"):]
    fn = fn[:fn.index("\n}\n")]
    # The comparison loops over the presented token's every byte and ORs the differences:
    # no early exit, no memcmp/strcmp (whose time depends on the first differing byte).
    case("auth: token comparison is constant-time (code check)",
         "diff |=" in fn and "return" in fn and "memcmp" not in fn and "strcmp" not in fn
         and "break" not in fn, "handler.c token_equal")


def group_bind(env):
    r = subprocess.run([T.CIGTD, "--model", env["model"], "--check-config"], capture_output=True,
                       text=True)
    case("default bind address is loopback", r.returncode == 0 and
         "listen 127.0.0.1:8080" in r.stdout, r.stdout.strip().splitlines()[1] if r.stdout else
         r.stderr)


def open_socks(socks):
    """How many of the sockets the server has not closed (a peek that would block)."""
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def group_connections(env):
    """Thousands of idle connections: the cap holds, the sweeper closes idle ones after the read
    timeout, memory stays bounded and service resumes. Clients come from 8 loopback addresses
    so the per-address limit is exercised too."""
    n = 2000
    d = T.Daemon(env["model"], "--read-timeout-ms", "3000", "--max-connections", "1024",
                 "--max-connections-per-ip", "200")
    socks = []
    try:
        base = rss_kb(d.proc.pid)
        m0 = d.metrics()
        t0 = time.monotonic()
        failed = 0
        for i in range(n):
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.%d" % (2 + i % 8), 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", d.port))
                socks.append(s)
            except OSError:
                failed += 1
        opened = time.monotonic() - t0
        time.sleep(1)
        held = open_socks(socks)
        rss = rss_kb(d.proc.pid)
        case("%d idle connections from 8 addresses" % n, 0 < held <= 1024,
             "%d held open (cap 1024, 200 per address), %d closed at once, %d failed to "
             "connect, opened in %.1f s" % (held, len(socks) - held, failed, opened))
        case("resident memory with %d idle connections" % n, rss - base < 64 * 1024,
             "%+.1f MB" % ((rss - base) / 1024))
        t1 = time.monotonic()
        ok = T.wait_for(lambda: open_socks(socks) == 0, 15)
        case("idle connections closed after --read-timeout-ms 3000", ok,
             "all closed %.1f s after the flood" % (time.monotonic() - t1 + 1))

        def metrics():
            try:
                return d.metrics()
            except (OSError, http.client.HTTPException):
                return None
        m = None
        T.wait_for(lambda: metrics() is not None, 10)
        m = d.metrics()
        rej = T.metric(m, "cigt_connections_rejected_total") - T.metric(
            m0, "cigt_connections_rejected_total")
        slow = T.metric(m, "cigt_connections_slow_total") - T.metric(
            m0, "cigt_connections_slow_total")
        case("idle flood counted", rej >= len(socks) - held - 8 and slow >= held,
             "%d rejected at accept, %d closed as slow" % (rej, slow))
        case("serving again after the idle flood", serving(d, env), "")
        # One address alone is held to --max-connections-per-ip.
        for s in socks:
            s.close()
        socks = []
        for i in range(300):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.20", 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", d.port))
            except OSError:
                pass
            socks.append(s)
        time.sleep(1)
        held = open_socks(socks)
        case("300 idle connections from one address", held == 200,
             "%d held open (200 per address)" % held)
    finally:
        for s in socks:
            s.close()
        d.stop()


def group_framing(env):
    """Issue 16: every framing case of framing_cases.py, sent in pieces (the head cut in two
    with a pause, and the spec-forbidden images after it), so that no decision depends on how
    the bytes arrive; then the images the PNG and Netpbm specifications forbid."""
    tok = os.path.join(env["work"], "token")
    with open(tok, "w") as f:
        f.write(F.TOKEN + "\n")
    d = T.Daemon(env["model"], "--auth-token-file", tok, "--read-timeout-ms", "8000")
    try:
        for name, data, want, keep, mhd_double in F.CASES:
            cut = data.index(b"\r\n") + 2 if b"\r\n" in data else len(data) // 2
            s = socket.create_connection(("127.0.0.1", d.port))
            s.settimeout(1.5 if keep else 6)
            s.sendall(data[:cut])
            time.sleep(0.05)
            s.sendall(data[cut:])
            out, closed = b"", False
            try:
                while True:
                    k = s.recv(65536)
                    if not k:
                        closed = True
                        break
                    out += k
            except socket.timeout:
                pass
            except OSError:
                closed = True
            s.close()
            codes = F.status_lines(out)
            ok = (codes[:1] == [want] and b"smuggled" not in out and closed != keep
                  and len(codes) == (2 if mhd_double else 1))
            case("framing in two pieces: " + name, ok, "-> %s, %s" % (
                codes, "closed" if closed else "kept open"))
        auth = {"Authorization": "Bearer " + F.TOKEN}
        rows = [bytes(env["images"][0][28 * y:28 * y + 28]) for y in range(28)]
        plte = b"".join(bytes([i, i, i]) for i in range(10))
        idx = png_raw(28, 28, zlib.compress(b"".join(b"\x00" + r for r in rows)), ctype=3,
                      extra=png_chunk(b"PLTE", plte))
        for what, body, ctype, words in (
                ("PNG, 10-entry palette, indices up to 255", idx, "image/png", "palette index"),
                ("PGM, '#c' glued to maxval", b"P5 28 28 255#c\n" + bytes(env["images"][0]),
                 "image/x-portable-graymap", "after maxval 255")):
            st, _, resp = d.request("POST", "/v1/classify", body, dict(auth, **{
                "Content-Type": ctype}))
            msg = json.loads(resp).get("error", "")
            case(what, st == 400 and words in msg, "-> %d %s" % (st, msg[:90]))
        st, _, resp = d.request("POST", "/v1/classify", json.dumps(
            {"image": list(env["images"][3])}).encode(), dict(auth, **J))
        case("still serving after the framing cases",
             st == 200 and json.loads(resp)["class"] == env["ref"][3]["class"], "-> %d" % st)
    finally:
        d.stop()


def group_repository(env):
    """The repository's URLs and bodies (issue 14): traversal in model names, absurd versions
    and names, hostile load/unload bodies, and a load/unload storm under traffic."""
    repo = os.path.join(env["work"], "repo")
    os.makedirs(os.path.join(repo, "fashion_mnist", "1"))
    shutil.copy(env["model"], os.path.join(repo, "fashion_mnist", "1", "model.safetensors"))
    secret = os.path.join(env["work"], "secret")
    os.makedirs(os.path.join(secret, "1"))
    shutil.copy(env["model"], os.path.join(secret, "1", "model.safetensors"))
    d = R.RDaemon("--model-repository", repo, "--model-control-mode", "explicit",
                  "--load-model", "fashion_mnist")
    try:
        for path in ("/v2/repository/models/../secret/load", "/v2/repository/models/..%2Fsecret/load",
                     "/v2/repository/models/%2e%2e/load", "/v2/repository/models/.secret/load",
                     "/v2/repository/models/a%00b/load", "/v2/repository/models/" + "a" * 65 + "/load"):
            st, _, body = d.request("POST", path, b"{}", J)
            case("load %s" % path[:60], st in (400, 404) and b"error" in body,
                 "%d %s" % (st, body[:80]))
        st, _, _ = d.request("POST", "/v2/repository/index", b"", J)
        st2, _, body = d.request("POST", "/v2/repository/index", b"{}", J)
        case("nothing outside the repository was loaded", st == 200 and b"secret" not in body,
             body[:120])
        for path in ("/v2/models/fashion_mnist/versions/99999999999999999999/infer",
                     "/v2/models/fashion_mnist/versions/-1/infer",
                     "/v2/models/fashion_mnist/versions/1e3/infer",
                     "/v2/models/fashion_mnist/versions//infer",
                     "/v2/models/" + "m" * 64 + "/infer", "/v2/models/" + "m" * 5000 + "/infer",
                     "/v1/models/fashion_mnist/versions/0/classify",
                     "/v2/models/fashion_mnist/versions/1/stats/x"):
            st, _, body = d.request("POST" if "infer" in path or "classify" in path else "GET",
                                    path, b"{}", J)
            case("URL %s" % path[:70], st == 404 and b"error" in body, "%d %s" % (st, body[:80]))
        deep = b"[" * 100000 + b"]" * 100000
        for what, body in (("nested", b'{"parameters": ' + deep + b"}"), ("deep", deep),
                           ("not JSON", b"\xff\xfe"), ("huge key", b'{"' + b"k" * 100000 + b'": 1}'),
                           ("param", b'{"parameters": {"unload_dependents": "yes"}}')):
            st, _, resp = d.request("POST", "/v2/repository/models/fashion_mnist/load", body, J)
            case("load body %s" % what, st == 400 and b"error" in resp, "%d %s" % (st, resp[:80]))
        st, resp, _ = raw(d, b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 9000000\r\n\r\n{{{{")
        case("index body over max-body-bytes", st == 413, "%s" % st)
        # A load/unload storm with traffic: the server keeps answering, memory stays bounded.
        rss0 = rss_kb(d.proc.pid)
        for k in range(60):
            op = "load" if k % 2 else "unload"
            st, _, _ = d.request("POST", "/v2/repository/models/fashion_mnist/%s" % op, b"", J)
            if st != 200:
                break
            d.post_json(V2, {"inputs": [{
                "name": "image", "datatype": "UINT8", "shape": [1, 1, 28, 28],
                "data": list(env["images"][k % 8])}]})
        case("60 loads and unloads", st == 200, "last status %d" % st)
        rss1 = rss_kb(d.proc.pid)
        asan = b"__asan_init" in open(T.CIGTD, "rb").read()
        case("memory after the storm", asan or rss1 < rss0 + 30000, "%d -> %d kB%s"
             % (rss0, rss1, " (not checked: ASan's quarantine keeps freed memory)" if asan
                else ""))
        case("still serving", serving(d, env, i=5, path="/v1/models/fashion_mnist/classify"))
    finally:
        d.stop()


def group_dial(env):
    """The compute dial's request fields (issue 12), hostile values, on the shipped model with
    its operating points (its escalating ones load models/thick.safetensors)."""
    models = os.environ.get("CIGT_TEST_MODELS") or os.path.join(T.SRCDIR, "models")
    d = T.Daemon(os.path.join(models, "fashion_mnist.safetensors"))
    img = list(env["images"][0])

    def expect(name, path, body, status, words):
        st, _, resp = d.request("POST", path, body, J)
        try:
            msg = json.loads(resp).get("error", "") if st != 200 else ""
        except (ValueError, AttributeError):
            msg = resp[:80]
        ok = st == status and words.lower() in str(msg).lower()
        case(name, ok, "-> %d %s" % (st, str(msg)[:90]))
    try:
        m0 = d.metrics()
        one = lambda **kw: json.dumps(dict(kw, image=img)).encode()  # noqa: E731
        expect("compute of 1 MB", "/v1/classify", one(compute="x" * (1 << 20)), 400,
               "operating point")
        expect("compute with a NUL (jansson refuses it)", "/v1/classify",
               one(compute="single\u0000x"), 400, "not allowed")
        expect("compute with control bytes", "/v1/classify", one(compute="\r\n\t"), 400,
               "operating point")
        expect("compute with a path", "/v1/classify", one(compute="../../etc/passwd"), 400,
               "operating point")
        expect("compute an object", "/v1/classify", one(compute={"a": 1}), 400,
               "operating point")
        expect("query compute of 8 KB", "/v1/classify?compute=" + "x" * 8192,
               one(), 400, "operating point")
        expect("query compute %00", "/v1/classify?compute=single%00", one(), 400,
               "operating point")
        expect("max_macs 2^64", "/v1/classify",
               b'{"max_macs": 18446744073709551616, "image": [1]}', 400, "")
        expect("max_macs -2^63", "/v1/classify", one(max_macs=-2 ** 63), 400, "positive")
        expect("max_macs 1e300", "/v1/classify", one(max_macs=1e300), 400, "positive")
        expect("max_macs true", "/v1/classify", one(max_macs=True), 400, "positive")
        expect("query max_macs 2^64", "/v1/classify?max_macs=18446744073709551616", one(),
               400, "positive")
        expect("query max_macs 0x10", "/v1/classify?max_macs=0x10", one(), 400, "positive")
        expect("query max_macs ' 7'", "/v1/classify?max_macs=%207", one(), 400, "positive")
        expect("v2 parameters.max_macs -1", V2, json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                         "data": img}], "parameters": {"max_macs": -1}}).encode(), 400,
               "positive")
        m1 = d.metrics()
        case("refused dials computed nothing",
             T.metric(m1, "cigt_samples_total") == T.metric(m0, "cigt_samples_total"), "")
        # The largest budget is a cap like any other: the most accurate point, within it.
        st, _, resp = d.post_json("/v1/classify", {"image": img, "max_macs": 2 ** 63 - 1})
        j = json.loads(resp)
        case("max_macs 2^63-1 is served", st == 200 and j["macs"] <= 2 ** 63 - 1,
             "-> %d %s" % (st, j.get("compute")))
        # 1024 images at the most expensive point in one request: served, bounded. The
        # costliest point is the model's own (worst case, then mean MACs, from GET /v1/model).
        pts = json.loads(d.request("GET", "/v1/model")[2])["points"]
        top = max(pts, key=lambda p: (p["worst_macs"], p["mean_macs"]))["name"] if pts else None
        st = d.post_json("/v1/classify", {"images": [img] * 1024, "compute": top})[0] if top \
            else 0
        case("1024 images at the costliest point (%s)" % top, st == 200,
             "-> %d" % st if top else "GET /v1/model lists no operating point")
        st, _, resp = d.post_json("/v1/classify", {"image": img})
        case("still serving after hostile dials (the single path)",
             st == 200 and json.loads(resp)["macs"] == T.PATH_MACS, "-> %d" % st)
    finally:
        d.stop()


GROUPS = [group_protocol, group_json, group_png, group_auth, group_bind, group_connections,
          group_framing, group_repository, group_dial]


def main():
    if not os.path.exists(os.path.join(T.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cigt-hostile-")
    os.makedirs(work, exist_ok=True)
    env = {"work": work, "images": T.load_images(T.NREF)}
    env["model"] = os.path.join(work, "model.safetensors")
    T.make_model(env["model"], 5)
    env["ref"] = T.reference(env["model"], work)
    only = sys.argv[1:]
    try:
        for g in GROUPS:
            if not only or g.__name__[6:] in only:
                g(env)
    finally:
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("hostile: %s" % ("FAILED (%d)" % len(T.FAILURES) if T.FAILURES else "ok"))
    return 1 if T.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
