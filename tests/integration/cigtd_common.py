"""What the cigtd integration tests share: the binaries and data paths, check() and its FAILURES,
the fixtures (test images, random models, the engine's reference answers from `cigt eval --dump`,
a PNG encoder) and Daemon, the real cigtd on a free loopback port with an HTTP client.
Imported by test_cigtd.py and its group modules, test_dial.py, test_hardening.py,
test_repository.py and tests/soak/*.py. Standard library only.
"""

import gzip
import http.client
import json
import math
import os
import re
import signal
import struct
import subprocess
import threading
import time
import zlib

CIGTD = os.environ.get("CIGTD", "build/cigtd")
CIGT = os.environ.get("CIGT", "build/cigt")
SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = "/usr/share/datasets/fashion-mnist"
NREF = 256  # test images with reference answers
PATH_MACS, DENSE_MACS = 5749632, 11054848

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


# ------------------------------------------------------------------------------ fixtures

def load_images(n):
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read(16 + 784 * n)
    return [raw[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)]


def make_model(path, seed):
    """A random model with routes spread over the experts when torch is there to calibrate."""
    tool = os.path.join(SRCDIR, "tests", "reference", "make_model.py")
    cfg = os.path.join(SRCDIR, "models", "fashion_mnist.json")
    try:
        import torch  # noqa: F401
        subprocess.run(["/usr/bin/python3", tool, cfg, path, "--seed", str(seed), "--calibrate",
                        "300"], check=True, stdout=subprocess.DEVNULL)
    except ImportError:
        subprocess.run([CIGT, "init", cfg, "-o", path, "--seed", str(seed)], check=True,
                       stdout=subprocess.DEVNULL)


def with_provenance(src, dst, prov):
    """Copies the model file src to dst with __metadata__.provenance replaced by prov (a dict,
    written as JSON text; None removes it): the safetensors header is rewritten, the data kept."""
    with open(src, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    head = json.loads(buf[8:8 + n])
    meta = head["__metadata__"]
    meta.pop("provenance", None)
    if prov is not None:
        meta["provenance"] = json.dumps(prov, separators=(",", ":"))
    text = json.dumps(head, separators=(",", ":")).encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + buf[8 + n:])


def provenance(model):
    """The provenance `cigt info --json` reports for model (a dict, or None)."""
    out = subprocess.run([CIGT, "info", model, "--json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout).get("provenance")


def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def reference(model, workdir, n=NREF):
    dump = os.path.join(workdir, os.path.basename(model) + ".dump")
    subprocess.run([CIGT, "eval", model, "--limit", str(n), "--dump", dump, "--threads", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    ref = []
    with open(dump) as f:
        for line in f:
            d = json.loads(line)
            ref.append({"class": d["class"], "route": d["route"],
                        "probs": softmax(d["logits"])})
    return ref


def png_gray(px, w, h):
    """Minimal 8-bit grayscale PNG encoder."""
    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    rows = b"".join(b"\x00" + bytes(px[y * w:(y + 1) * w]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Daemon:
    """cigtd on 127.0.0.1 with a port the kernel picked; stderr is collected by a thread."""

    def __init__(self, model, *args, env=None, start_timeout=30):
        """model None: no --model (args then say what to serve, e.g. --model-repository)."""
        self.lines = []
        self.proc = subprocess.Popen([CIGTD] + (["--model", model] if model else [])
                                     + ["--listen", "127.0.0.1:0", "--access-log"] + list(args),
                                     stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))
        self.port = None
        got = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"on https?://[^ ]*:(\d+)/", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    got.set()
            got.set()
        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        got.wait(start_timeout)
        if not self.port:
            self.proc.kill()
            raise RuntimeError("cigtd did not start:\n" + "\n".join(self.lines))

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if conn is None:
                c.close()

    def post_json(self, path, obj, **kw):
        return self.request("POST", path, json.dumps(obj).encode(),
                            {"Content-Type": "application/json"}, **kw)

    def metrics(self):
        st, _, body = self.request("GET", "/metrics")
        assert st == 200
        out = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line:
                continue
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect=0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "hung"
        self.thread.join(5)
        check(rc == expect, "cigtd exit status %s, expected %s" % (rc, expect))
        check(not any("internal error" in l or "did not close cleanly" in l for l in self.lines),
              "cigtd logged an internal error")
        # In a sanitizer build (make test-sanitize) any ASan, UBSan or LeakSanitizer report,
        # leaks at exit included, fails the test.
        san = [l for l in self.lines if "Sanitizer" in l or "runtime error:" in l]
        check(not san, "cigtd sanitizer report: %s" % "\n".join(self.lines[-60:] if san else []))
        return rc


def metric(m, name, **labels):
    if labels:
        name += "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
    return m.get(name, 0.0)


def same_answer(got, ref, what):
    ok = check(got["class"] == ref["class"] and got["route"] == ref["route"],
               "%s: class/route %s/%s, engine says %s/%s" % (what, got["class"], got["route"],
                                                              ref["class"], ref["route"]))
    if "probabilities" in got:
        err = max(abs(a - b) for a, b in zip(got["probabilities"], ref["probs"]))
        ok &= check(err < 1e-5, "%s: probabilities differ from the engine's by %g" % (what, err))
    return ok


def wait_for(pred, secs=20):
    """Bounded polling for an asynchronous effect (never a timing assertion)."""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
