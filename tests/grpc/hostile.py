#!/usr/bin/python3
"""Hostile HTTP/2 against cigtd's gRPC port (issue 28): raw frames over a socket (headers
encoded and decoded with Debian's python3-hpack; the rest by hand, so anything can be sent),
each case answered with the right gRPC status, RST_STREAM or GOAWAY, and the daemon still
serving afterwards, its memory flat, exit 0 with no sanitizer report (run it on the ASan build
with `make test-sanitize`).

Cases: not HTTP/2 at all; malformed frames (DATA on stream 0, bad SETTINGS length, oversized
frame, garbage HPACK, zero WINDOW_UPDATE, even stream ids, bad PING); gRPC framing (a length
prefix beyond the body and beyond --grpc-max-message-bytes, compressed flags, unknown
encodings, two messages or none on a unary call); unknown services and methods, GET, wrong
content-types; grpc-timeout of 0 and 1 ms and malformed; the rapid-reset pattern (HEADERS then
RST_STREAM, thousands of times, CVE-2023-44487) with and without a request body; a HEADERS flood
past SETTINGS_MAX_CONCURRENT_STREAMS; huge and bomb-like HPACK header lists; a client that
sends a stream of requests and never reads; half-closed streams; silent and idle connections;
the connection limit.

Environment: CIGTD, CIGT, SRCDIR (as the other groups). Exit 0 pass, 1 fail, 77 skip.
"""

import os
import socket
import struct
import sys
import time

import grpc_common as G
from grpc_common import FAILURES, check

try:
    from hpack import Decoder, Encoder
except ImportError:
    Decoder = Encoder = None

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 1, 4, 1
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
          11: "ENHANCE_YOUR_CALM"}
SVC = "/inference.GRPCInferenceService/"


class Closed(Exception):
    pass


class H2:
    """A deliberately naive HTTP/2 client: frames go out exactly as asked."""

    def __init__(self, port, preface=True, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.enc, self.dec = Encoder(), Decoder()
        self.dec.max_header_list_size = 1 << 20
        self.buf = b""
        self.goaway = None
        self.sid = 1
        if preface:
            self.s.sendall(PREFACE)
            self.frame(SETTINGS, 0, 0, b"")

    def frame(self, ftype, flags, sid, payload):
        self.s.sendall(struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
                       struct.pack(">I", sid) + payload)

    def headers(self, sid, hdrs, end_stream=False):
        self.frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                   self.enc.encode(hdrs))

    def data(self, sid, payload, end_stream=True):
        """DATA frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE)."""
        while len(payload) > 16384:
            self.frame(DATA, 0, sid, payload[:16384])
            payload = payload[16384:]
        self.frame(DATA, END_STREAM if end_stream else 0, sid, payload)

    def rst(self, sid, code=8):
        self.frame(RST, 0, sid, struct.pack(">I", code))

    def next_sid(self):
        sid, self.sid = self.sid, self.sid + 2
        return sid

    def read_frame(self):
        while len(self.buf) < 9:
            b = self.s.recv(65536)
            if not b:
                raise Closed()
            self.buf += b
        n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
        while len(self.buf) < 9 + n:
            b = self.s.recv(65536)
            if not b:
                raise Closed()
            self.buf += b
        ftype, flags = self.buf[3], self.buf[4]
        sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7fffffff
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        if ftype == SETTINGS and not flags & ACK:
            self.frame(SETTINGS, ACK, 0, b"")
        if ftype == PING and not flags & ACK:
            self.frame(PING, ACK, 0, payload)
        if ftype == GOAWAY:
            self.goaway = (struct.unpack(">I", payload[:4])[0] & 0x7fffffff,
                           ERRORS.get(struct.unpack(">I", payload[4:8])[0], "?"), payload[8:])
        return ftype, flags, sid, payload

    def response(self, sid, until=10):
        """What came back on stream sid: {"headers": [...], "data": b, "trailers": [...],
        "rst": name or None}; stops at END_STREAM, RST_STREAM, GOAWAY or close."""
        r = {"headers": None, "data": b"", "trailers": None, "rst": None, "closed": False}
        end = time.monotonic() + until
        try:
            while time.monotonic() < end:
                ftype, flags, fsid, payload = self.read_frame()
                if ftype == GOAWAY:
                    r["goaway"] = self.goaway
                    if self.goaway[0] < sid:
                        break
                    continue
                if fsid != sid:
                    continue
                if ftype == HEADERS:
                    h = self.dec.decode(payload)
                    if r["headers"] is None:
                        r["headers"] = h
                    else:
                        r["trailers"] = h
                elif ftype == DATA:
                    r["data"] += payload
                    if payload:
                        self.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                        self.frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload)))
                elif ftype == RST:
                    r["rst"] = ERRORS.get(struct.unpack(">I", payload)[0], "?")
                    break
                if flags & END_STREAM:
                    break
        except (Closed, socket.timeout, ConnectionError):
            r["closed"] = True
        return r

    def until_goaway(self, until=10):
        end = time.monotonic() + until
        try:
            while time.monotonic() < end and not self.goaway:
                self.read_frame()
        except (Closed, socket.timeout, ConnectionError):
            pass
        return self.goaway

    def closed(self, until=10):
        """True when the server closes the connection within until seconds."""
        self.s.settimeout(until)
        try:
            while True:
                self.read_frame()
        except (Closed, ConnectionError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def grpc_headers(method, extra=(), path=None, ctype="application/grpc", verb="POST"):
    return [(":method", verb), (":scheme", "http"), (":path", path or SVC + method),
            (":authority", "localhost"), ("content-type", ctype), ("te", "trailers")] + list(extra)


def frame_msg(payload, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(payload) if length is None else length) + payload


def status(r):
    """(HTTP status, grpc-status, grpc-message) of a response, from trailers or trailers-only."""
    h = dict(r["headers"] or [])
    t = dict(r["trailers"] or []) if r["trailers"] else h
    gs = t.get("grpc-status")
    return h.get(":status"), int(gs) if gs is not None else None, t.get("grpc-message", "")


def call(port, method, payload, extra=(), **kw):
    c = H2(port)
    sid = c.next_sid()
    c.headers(sid, grpc_headers(method, extra, **kw), end_stream=payload is None)
    if payload is not None:
        c.data(sid, payload)
    r = c.response(sid)
    c.close()
    return r


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    if Encoder is None:
        print("SKIP: python3-hpack is not installed")
        return 77
    if not os.path.exists(os.path.join(G.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    try:
        pb, pb_grpc, grpc = G.stubs()
    except (ImportError, FileNotFoundError) as e:
        print("SKIP: no gRPC stubs: %s" % e)
        return 77
    imgs = G.load_images(64)
    infer = G.infer_request(pb, imgs[:1]).SerializeToString()
    live = pb.ServerLiveRequest().SerializeToString()
    model = os.path.join(G.SRCDIR, "models", "fashion_mnist.safetensors")
    d = G.GrpcDaemon(model, "--grpc-max-message-bytes", "65536", "--grpc-max-streams", "32",
                     "--grpc-max-header-bytes", "8192", "--grpc-idle-timeout-s", "2",
                     "--read-timeout-ms", "1000", "--max-connections", "64")
    port = d.grpc_port
    try:
        run(d, port, pb, grpc, pb_grpc, infer, live, imgs)
    finally:
        d.stop()
    print("hostile: %s" % ("FAILED (%d)" % len(FAILURES) if FAILURES else "ok"))
    return 1 if FAILURES else 0


def serves(port, pb, infer, what):
    r = call(port, "ModelInfer", frame_msg(infer))
    st = status(r)
    resp = pb.ModelInferResponse.FromString(r["data"][5:]) if st[1] == 0 else None
    return check(st[:2] == ("200", 0) and resp is not None and resp.outputs[1].name == "class",
                 "%s: the server still answers ModelInfer (%s)" % (what, st))


def run(d, port, pb, grpc, pb_grpc, infer, live, imgs):
    pid = d.proc.pid
    # A well-formed call over raw frames first: the client itself is right.
    serves(port, pb, infer, "raw client")
    rss0 = rss_kb(pid)

    # ---- not HTTP/2, malformed frames: GOAWAY (or a close), never a crash.
    c = H2(port, preface=False)
    c.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    check(c.closed(5), "HTTP/1.1 on the gRPC port: closed")
    c.close()
    cases = [
        ("DATA on stream 0", lambda c: c.frame(DATA, 0, 0, b"x"), "PROTOCOL_ERROR"),
        ("SETTINGS of 5 bytes", lambda c: c.frame(SETTINGS, 0, 0, b"12345"), "FRAME_SIZE_ERROR"),
        ("a frame beyond SETTINGS_MAX_FRAME_SIZE",
         lambda c: c.frame(HEADERS, END_HEADERS, 1, b"\0" * 20000), "FRAME_SIZE_ERROR"),
        ("garbage HPACK", lambda c: c.frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff"),
         "COMPRESSION_ERROR"),
        ("WINDOW_UPDATE of 0", lambda c: c.frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"),
         "PROTOCOL_ERROR"),
        ("an even stream id", lambda c: c.headers(2, grpc_headers("ServerLive")),
         "PROTOCOL_ERROR"),
        ("PING of 3 bytes", lambda c: c.frame(PING, 0, 0, b"abc"), "FRAME_SIZE_ERROR"),
        ("CONTINUATION without HEADERS", lambda c: c.frame(CONTINUATION, END_HEADERS, 1, b""),
         "PROTOCOL_ERROR"),
    ]
    for what, send, want in cases:
        c = H2(port)
        send(c)
        g = c.until_goaway(5)
        check(g is not None and g[1] == want, "%s: GOAWAY %s (got %s)" % (what, want, g))
        check(c.closed(5), "%s: then closed" % what)
        c.close()

    # ---- gRPC's framing.
    def expect(r, code, words, what, http="200"):
        st = status(r)
        check(st[0] == http and st[1] == code and words in st[2],
              "%s: %s, want HTTP %s grpc-status %d with %r" % (what, st, http, code, words))

    expect(call(port, "ModelInfer", frame_msg(infer[:10], length=len(infer))), 13,
           "ended inside a message", "length prefix beyond the body")
    expect(call(port, "ModelInfer", frame_msg(b"", length=1 << 20)), 8,
           "larger than the limit of 65536", "length prefix beyond --grpc-max-message-bytes")
    big = G.infer_request(pb, [imgs[0]] * 100).SerializeToString()
    expect(call(port, "ModelInfer", frame_msg(big)), 8, "larger than the limit",
           "a real message beyond the limit")
    expect(call(port, "ModelInfer", frame_msg(infer, flag=1)), 13, "compressed",
           "compressed flag, no grpc-encoding")
    expect(call(port, "ModelInfer", frame_msg(infer, flag=7)), 13, "compressed-flag",
           "compressed flag 7")
    r = call(port, "ModelInfer", frame_msg(infer, flag=1), [("grpc-encoding", "snappy")])
    expect(r, 12, "grpc-encoding 'snappy'", "unknown grpc-encoding")
    check(dict(r["headers"] or []).get("grpc-accept-encoding") == "identity",
          "unknown grpc-encoding: grpc-accept-encoding identity")
    expect(call(port, "ModelInfer", frame_msg(infer) * 2), 13, "more than one request message",
           "two messages on a unary call")
    expect(call(port, "ModelInfer", None), 13, "without a request message",
           "no message (END_STREAM on HEADERS)")
    c = H2(port)
    sid = c.next_sid()
    c.headers(sid, grpc_headers("ModelInfer"), end_stream=True)
    expect(c.response(sid), 13, "without a request message", "HEADERS with END_STREAM")
    c.close()
    expect(call(port, "ModelInfer", frame_msg(b"\xff\xff\xff")), 13, "does not decode",
           "a message that is not protobuf")
    expect(call(port, "ServerLive", frame_msg(b"\x0a\xff\xff\xff")), 13, "does not decode",
           "ServerLive with a broken message")
    expect(call(port, "Nothing", frame_msg(live)), 12, "unknown method 'Nothing'",
           "unknown method")
    expect(call(port, "", frame_msg(live), path="/grpc.health.v1.Health/Check"), 12,
           "unknown service 'grpc.health.v1.Health'", "unknown service")
    expect(call(port, "", frame_msg(live), path="/inference.GRPCInferenceService/SystemSharedMemoryStatus"),
           12, "unknown method", "Triton's shared memory RPC")
    expect(call(port, "ServerLive", None, verb="GET"), 12, "POST", "GET", http="405")
    expect(call(port, "ServerLive", frame_msg(live), ctype="application/json"), 3,
           "not application/grpc", "content-type application/json", http="415")
    r = call(port, "ServerLive", frame_msg(live), ctype="application/grpc+proto")
    check(status(r)[:2] == ("200", 0), "content-type application/grpc+proto: OK")

    # ---- deadlines.
    expect(call(port, "ModelInfer", frame_msg(infer), [("grpc-timeout", "0m")]), 4,
           "deadline of 0 ms", "grpc-timeout 0m: DEADLINE_EXCEEDED, never computed")
    expect(call(port, "ModelInfer", frame_msg(infer), [("grpc-timeout", "999u")]), 4,
           "deadline", "grpc-timeout 999u (below a millisecond)")
    for _ in range(10):
        st = status(call(port, "ModelInfer", frame_msg(infer), [("grpc-timeout", "1m")]))
        check(st[1] in (0, 4), "grpc-timeout 1m: OK or DEADLINE_EXCEEDED (%s)" % (st,))
    for bad in ("abc", "5x", "123456789S", "m"):
        expect(call(port, "ModelInfer", frame_msg(infer), [("grpc-timeout", bad)]), 3,
               "grpc-timeout", "grpc-timeout %r" % bad)
    r = call(port, "ModelInfer", frame_msg(infer), [("grpc-timeout", "30S")])
    check(status(r)[1] == 0, "grpc-timeout 30S: OK")

    # ---- slow requests (--read-timeout-ms 1000): a unary call without END_STREAM, and a
    # message begun and never finished on a stream, end CANCELLED with a message.
    for method, first, end in (("ModelInfer", frame_msg(infer), False),
                               ("ModelStreamInfer", frame_msg(infer)[:100], False)):
        c = H2(port)
        sid = c.next_sid()
        c.headers(sid, grpc_headers(method))
        c.data(sid, first, end_stream=end)
        t0 = time.monotonic()
        r = c.response(sid, 6)
        st = status(r)
        check(st[1] == 1 and "did not arrive within 1000 ms" in st[2]
              and time.monotonic() - t0 < 4,
              "%s arriving too slowly: CANCELLED after the read timeout (%s)" % (method, st))
        c.close()

    # ---- half-closed: the request without END_STREAM gets no answer until it ends.
    c = H2(port)
    sid = c.next_sid()
    c.headers(sid, grpc_headers("ModelInfer"))
    c.data(sid, frame_msg(infer), end_stream=False)
    c.s.settimeout(0.5)
    early = None
    try:
        early = c.read_frame()
        while early and early[0] in (SETTINGS, WINDOW_UPDATE, PING):
            early = c.read_frame()
    except (socket.timeout, Closed):
        early = None
    c.s.settimeout(10)
    check(early is None, "half-open unary call: no answer before END_STREAM (%s)" % (early,))
    c.data(sid, b"", end_stream=True)
    check(status(c.response(sid))[1] == 0, "half-open unary call: answered once closed")
    c.close()

    # ---- the rapid-reset pattern: HEADERS then RST_STREAM, 6,000 times (with and without
    # the request's body); nghttp2's rate limit answers GOAWAY ENHANCE_YOUR_CALM.
    goaways, resets = [], 0
    for with_body in (False, True):
        c = H2(port)
        for i in range(3000):
            sid = c.next_sid()
            try:
                c.headers(sid, grpc_headers("ModelInfer"))
                if with_body:
                    c.data(sid, frame_msg(infer))
                c.rst(sid)
                resets += 1
                if i % 100 == 99:  # look for the GOAWAY before the connection goes
                    c.s.settimeout(0.01)
                    try:
                        while not c.goaway:
                            c.read_frame()
                    except socket.timeout:
                        pass
                    c.s.settimeout(10)
            except (BrokenPipeError, ConnectionResetError, Closed):
                break
            if c.goaway:
                break
        goaways.append(c.goaway or c.until_goaway(5))
        c.close()
    # nghttp2's limiter (1000 at once, then 33 a second) answers GOAWAY INTERNAL_ERROR.
    check(all(g and g[1] in ("ENHANCE_YOUR_CALM", "INTERNAL_ERROR") and g[0] <= 2 * 1100
              for g in goaways),
          "rapid reset: cut off by GOAWAY within 1,100 resets (%s; %d resets sent)"
          % (goaways, resets))
    serves(port, pb, infer, "after rapid reset")

    # ---- a HEADERS flood: more open streams than SETTINGS_MAX_CONCURRENT_STREAMS (32).
    c = H2(port)
    # Let the server's SETTINGS arrive and be acknowledged first.
    c.headers(c.next_sid(), grpc_headers("ServerLive"), end_stream=False)
    time.sleep(0.2)
    refused = 0
    for i in range(200):
        c.headers(c.next_sid(), grpc_headers("ServerLive"), end_stream=False)
    c.s.settimeout(2)
    try:
        while True:
            ftype, flags, sid, payload = c.read_frame()
            if ftype == RST and ERRORS.get(struct.unpack(">I", payload)[0]) in (
                    "REFUSED_STREAM", "PROTOCOL_ERROR"):
                refused += 1
    except (socket.timeout, Closed, ConnectionError):
        pass
    check(refused >= 150 or (c.goaway is not None),
          "HEADERS flood: streams past the limit refused (%d RST, GOAWAY %s)"
          % (refused, c.goaway))
    c.close()
    serves(port, pb, infer, "after a HEADERS flood")

    # ---- HPACK: a header list over --grpc-max-header-bytes (8192), one larger than the
    # decoder takes, and a bomb (one 4 KiB table entry referenced thousands of times).
    expect(call(port, "ServerLive", frame_msg(live), [("x-pad", "a" * 12000)]), 8,
           "header list", "header list of 12 KB")
    c = H2(port)
    sid = c.next_sid()
    block = c.enc.encode(grpc_headers("ServerLive", [("x-big", "b" * 70000)]))
    c.frame(HEADERS, 0, sid, block[:16000])
    rest = block[16000:]
    while rest:
        c.frame(CONTINUATION, END_HEADERS if len(rest) <= 16000 else 0, sid, rest[:16000])
        rest = rest[16000:]
    r = c.response(sid, 5)
    check(r["rst"] or c.goaway or status(r)[1] == 8,
          "one 70 KB header: refused (RST %s, GOAWAY %s, %s)" % (r["rst"], c.goaway, status(r)))
    c.close()
    c = H2(port)
    sid = c.next_sid()
    # The last header encoded goes into the dynamic table at index 62 (4 KiB of value); then
    # one-byte references to it (0xbe) fill CONTINUATION frames.
    first = c.enc.encode(grpc_headers("ServerLive") + [("x-bomb", "c" * 4000)])
    c.frame(HEADERS, 0, sid, first)
    try:
        for i in range(20):
            c.frame(CONTINUATION, 0, sid, b"\xbe" * 16000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    g = c.until_goaway(5)
    check(g is not None or c.closed(2), "HPACK bomb: the connection ends (GOAWAY %s)" % (g,))
    c.close()
    serves(port, pb, infer, "after HPACK abuse")

    # ---- a client that streams requests within its flow-control windows and then stops
    # reading: it is stalled by the windows, the server holds its answers, and they all arrive
    # once it reads again.
    c = H2(port)
    c.s.settimeout(0.5)
    cwin, swin = 65535, 65535
    try:
        while True:
            ftype, flags, fsid, payload = c.read_frame()
            if ftype == WINDOW_UPDATE and fsid == 0:
                cwin += struct.unpack(">I", payload)[0]
            if ftype == SETTINGS and not flags & ACK:
                for k in range(0, len(payload), 6):
                    ident, val = struct.unpack(">HI", payload[k:k + 6])
                    if ident == 4:
                        swin = val
    except (socket.timeout, Closed):
        pass
    c.s.settimeout(10)
    sid = c.next_sid()
    c.headers(sid, grpc_headers("ModelStreamInfer"))
    msg = frame_msg(G.infer_request(pb, imgs[:4]).SerializeToString())
    n = 0
    while cwin >= len(msg) and swin >= len(msg):
        c.data(sid, msg, end_stream=False)
        cwin -= len(msg)
        swin -= len(msg)
        n += 1
    time.sleep(2)
    grow = rss_kb(pid) - rss0
    check(n >= 100 and grow < 64 * 1024,
          "a client that stops reading: %d requests sent, RSS +%d KiB" % (n, grow))
    serves(port, pb, infer, "while a client does not read")
    c.data(sid, b"", end_stream=True)
    r = c.response(sid, 20)
    got, data = 0, r["data"]
    while len(data) >= 5:
        ln = struct.unpack(">I", data[1:5])[0]
        a = pb.ModelStreamInferResponse.FromString(data[5:5 + ln])
        got += not a.error_message and len(a.infer_response.outputs) == 6
        data = data[5 + ln:]
    check(got == n and status(r)[1] == 0,
          "a client that stops reading: all %d answers once it reads (%d, %s)"
          % (n, got, status(r)))
    c.close()

    # ---- a client that streams requests, ignores flow control and never reads: the server
    # stops granting window once its answers pile up, then ends the connection
    # (FLOW_CONTROL_ERROR); its memory does not follow.
    c = H2(port)
    sid = c.next_sid()
    c.headers(sid, grpc_headers("ModelStreamInfer"))
    c.s.settimeout(0.2)
    sent = 0
    msg = frame_msg(G.infer_request(pb, imgs[:4]).SerializeToString())
    # How many messages go through before the stall depends on the kernel's socket buffers
    # (loopback autotuning holds megabytes of answers), so what is checked is the stall
    # itself: nothing more goes out for the last 3 of 12 seconds, or the server ends it.
    t0 = time.monotonic()
    t_end, last, ended = t0 + 12, t0, False
    while time.monotonic() < t_end:
        try:
            c.s.send(struct.pack(">I", len(msg))[1:] + bytes([DATA, 0]) +
                     struct.pack(">I", sid) + msg)
            sent += 1
            last = time.monotonic()
        except (socket.timeout, BlockingIOError):
            time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            ended = True
            break
    grow = rss_kb(pid) - rss0
    check((ended or t_end - last >= 3) and grow < 64 * 1024,
          "a client that never reads: %s after %d messages (last sent %.1f s in), RSS +%d KiB"
          % ("ended" if ended else "stalled" if t_end - last >= 3 else "still taking input",
             sent, last - t0, grow))
    c.close()
    serves(port, pb, infer, "after a client that never reads")

    # ---- silence, idleness, the connection limit (64).
    c = H2(port, preface=False)
    t0 = time.monotonic()
    check(c.closed(5) and time.monotonic() - t0 < 4, "no preface: closed after the read timeout")
    c.close()
    c = H2(port)
    check(status(c.response(0, 0.1)) is not None, "idle connection opened")
    g = c.until_goaway(6)
    check(g is not None and g[1] == "NO_ERROR", "idle connection: GOAWAY NO_ERROR (%s)" % (g,))
    c.close()
    many, early = [], 0
    for i in range(70):
        try:
            many.append(H2(port))
        except OSError:  # closed by the server before the preface was written
            early += 1
    time.sleep(0.3)
    kept = G.metric(d.metrics(), "cigt_grpc_connections")
    dropped = early + sum(1 for h in many[64:] if h.closed(2))
    check(dropped == 6 and kept == 64,
          "connection limit 64: %d kept, %d of the 6 beyond it closed" % (kept, dropped))
    for h in many:
        h.close()
    time.sleep(0.3)
    serves(port, pb, infer, "after the connection limit")

    # ---- memory flat after all of it; grpcio still gets right answers.
    for _ in range(3):
        serves(port, pb, infer, "at the end")
    grow = rss_kb(pid) - rss0
    check(grow < 64 * 1024, "memory: RSS grew %d KiB over the hostile cases" % grow)
    ch = grpc.insecure_channel(d.target)
    s = pb_grpc.GRPCInferenceServiceStub(ch)
    check(s.ServerLive(pb.ServerLiveRequest()).live, "grpcio: live at the end")
    ch.close()
    m = d.metrics()
    check(G.metric(m, "cigt_grpc_protocol_errors_total") >= 8, "/metrics counts protocol errors")


if __name__ == "__main__":
    sys.exit(main())
