"""HTTP/1.1 framing cases (issue 16), as exact bytes, shared by the integration test
(test_hardening.py --group framing), the hostile suite (tests/soak/hostile.py) and the nginx
cross-check (tests/deploy/test_nginx_framing.py). Each case may carry a smuggled follow-up
request, GET /smuggled, that must never be answered: cigtd would answer it 404 naming the path.

A case is (name, bytes, want, keep): want is the status cigtd answers directly, keep whether the
connection stays open for the next request (False: cigtd answers, then closes). mhd_double marks
the refusals libmicrohttpd 0.9.75 makes itself before cigtd sees the request (a Content-Length
it cannot parse): it writes its status line and headers twice, then closes (tests/RELIABILITY.md).
"""

import socket
import time

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
PGM = b"P5 28 28 255\n" + bytes(range(28)) * 28  # a valid image: cigtd answers 200
TOKEN = "framing-test-token"  # cigtd runs with it (--auth-token-file)
HEAD = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/x-portable-graymap\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n")
LIVE = b"GET /v2/health/live HTTP/1.1\r\n"


def chunked(data, step=300):
    out = b""
    for i in range(0, len(data), step):
        part = data[i:i + step]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def cl(n):
    return b"Content-Length: %d\r\n" % n


# (name, bytes, want, keep, mhd_double)
CASES = [
    # 1. Content-Length twice.
    ("two Content-Length that disagree (smuggle)",
     HEAD + cl(len(PGM)) + cl(len(PGM) + len(SMUGGLED)) + b"\r\n" + PGM + SMUGGLED, 400, False,
     False),
    ("two equal Content-Length", HEAD + cl(len(PGM)) + cl(len(PGM)) + b"\r\n" + PGM + SMUGGLED,
     400, False, False),
    ("Content-Length list '797, 797'",
     HEAD + b"Content-Length: %d, %d\r\n\r\n" % (len(PGM), len(PGM)) + PGM + SMUGGLED, 400,
     False, True),
    ("Content-Length '+797'", HEAD + b"Content-Length: +%d\r\n\r\n" % len(PGM) + PGM + SMUGGLED,
     400, False, True),
    ("one Content-Length (neighbour)", HEAD + cl(len(PGM)) + b"\r\n" + PGM, 200, True, False),
    # 2. Content-Length with Transfer-Encoding: chunked.
    ("Content-Length and chunked (smuggle)",
     HEAD + cl(5) + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(PGM) + SMUGGLED, 400, False,
     False),
    ("chunked then Content-Length",
     HEAD + b"Transfer-Encoding: chunked\r\n" + cl(len(PGM)) + b"\r\n" + chunked(PGM) + SMUGGLED,
     400, False, False),
    ("chunked alone (neighbour)", HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(PGM),
     200, True, False),
    ("'Transfer-Encoding: CHUNKED' (neighbour)",
     HEAD + b"Transfer-Encoding: CHUNKED\r\n\r\n" + chunked(PGM), 200, True, False),
    # 3. Transfer-Encoding other than chunked.
    ("Transfer-Encoding: identity", HEAD + b"Transfer-Encoding: identity\r\n\r\n" + PGM, 501,
     False, False),
    ("Transfer-Encoding: gzip, chunked",
     HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked(PGM), 501, False, False),
    ("Transfer-Encoding: chunked, chunked",
     HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + chunked(PGM), 501, False, False),
    ("two Transfer-Encoding: chunked headers",
     HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(PGM),
     501, False, False),
    ("Transfer-Encoding on a GET", LIVE + b"Host: x\r\nTransfer-Encoding: identity\r\n\r\n", 501,
     False, False),
    ("Transfer-Encoding in HTTP/1.0",
     HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n"
     + chunked(PGM), 400, False, False),
    # 4. Header syntax.
    ("whitespace before the colon (Host : x)", LIVE + b"Host : x\r\n\r\n", 400, False, False),
    ("whitespace before the colon (Content-Length :)",
     HEAD + b"Content-Length : %d\r\n\r\n" % len(PGM) + PGM + SMUGGLED, 400, False, False),
    ("tab before the colon", LIVE + b"Host: x\r\nX-Foo\t: y\r\n\r\n", 400, False, False),
    ("space inside a header name", LIVE + b"Host: x\r\nX Foo: y\r\n\r\n", 400, False, False),
    ("NUL inside a header value", LIVE + b"Host: x\r\nX-Foo: a\x00b\r\nX-Bar: c\r\n\r\n", 400,
     False, False),
    ("NUL at the end of the last header value", LIVE + b"Host: x\r\nX-Foo: a\x00\r\n\r\n", 400,
     False, False),
    ("NUL after a valid bearer token",
     b"GET /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
     + b"\x00junk\r\n\r\n", 400, False, False),
    ("bare CR inside a header value", LIVE + b"Host: x\r\nX-Foo: a\rb\r\n\r\n", 400, False,
     False),
    ("folded header line (obs-fold)", LIVE + b"Host: x\r\nX-Foo: a\r\n b\r\n\r\n", 400, False,
     False),
    ("HTTP/1.1 without Host", LIVE + b"\r\n", 400, False, False),
    ("HTTP/1.1 with two Host", LIVE + b"Host: x\r\nHost: y\r\n\r\n", 400, False, False),
    ("space inside the request target", b"GET /v2/health/live x HTTP/1.1\r\nHost: x\r\n\r\n",
     400, False, False),
    ("NUL inside the request target", b"GET /v2/health/live\x00junk HTTP/1.1\r\nHost: x\r\n\r\n",
     400, False, False),
    ("NUL at the start of a header line",
     LIVE + b"Host: x\r\nX-A: 1\r\n\x00X-B: 2\r\n\r\n", 400, False, False),
    ("HTTP/1.0 without Host (neighbour)", b"GET /v2/health/live HTTP/1.0\r\n\r\n", 200, False,
     False),
    ("valid bearer token (neighbour)",
     b"GET /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
     + b"\r\n\r\n", 200, True, False),
    ("tab inside a header value (neighbour)", LIVE + b"Host: x\r\nX-Foo: a\tb\r\n\r\n", 200,
     True, False),
    ("bare LF line ends (neighbour)", b"GET /v2/health/live HTTP/1.1\nHost: x\nX-Foo: a\n\n",
     200, True, False),
]


def send(port, data, timeout):
    """Sends the bytes, reads until the server closes or `timeout` passes. Returns (bytes,
    closed, seconds)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.sendall(data)
    except OSError:
        pass
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
    return out, closed, time.monotonic() - t0


def status_lines(out):
    """The status codes of every status line in the bytes (a second one is a second answer)."""
    codes = []
    for line in out.split(b"\n"):
        if line.startswith(b"HTTP/1.") and len(line) > 12 and line[8:9] == b" ":
            try:
                codes.append(int(line[9:12]))
            except ValueError:
                pass
    return codes
