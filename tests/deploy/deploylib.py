"""Shared helpers for the deployment tests (tests/deploy/): start the real cigtd on a loopback
port the kernel picks, talk HTTP to it, find the external tools the tests drive, and report.

Every test is a plain script: exit 0 = pass, 1 = fail. A missing tool is a failure with the
Debian package to install (the top-level Makefile's PKGS installs them all), never a skip.
Environment: CIGTD, CIGT (the binaries), SRCDIR (source tree), BUILDDIR (meson build tree).
"""

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", ".."))
BUILDDIR = os.environ.get("BUILDDIR", os.path.join(SRCDIR, "build"))
CIGTD = os.environ.get("CIGTD", os.path.join(BUILDDIR, "cigtd"))
CIGT = os.environ.get("CIGT", os.path.join(BUILDDIR, "cigt"))
DATA = "/usr/share/datasets/fashion-mnist"
MODEL = os.path.join(SRCDIR, "models", "fashion_mnist.safetensors")
PATH_MACS = 5749632

FAILURES = []


def check(cond, what):
    """Records a failed assertion (the test goes on, to report everything) and returns cond."""
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


def finish(name):
    """Prints the closing line and exits 0 when nothing failed, 1 otherwise."""
    n = len(FAILURES)
    print("%s: %s" % (name, "passed" if not n else "%d check(s) FAILED: %s" % (n, FAILURES)),
          flush=True)
    sys.exit(1 if n else 0)


def die(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def need_tool(name, package):
    """The path of an external program, or a loud failure naming its Debian package."""
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    path = shutil.which(name)
    if not path:
        die("%s not found: install the Debian package '%s' (`make test` installs it, see the "
            "Makefile's PKGS)" % (name, package))
    return path


def need_model():
    if not os.path.exists(MODEL):
        die("%s missing: the shipped model is needed" % MODEL)
    return MODEL


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load_images(n, offset=0):
    """The first n Fashion-MNIST test images (784 bytes each) and their labels."""
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read(16 + 784 * (offset + n))
    with gzip.open(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = f.read(8 + offset + n)
    imgs = [raw[16 + 784 * i:16 + 784 * (i + 1)] for i in range(offset, offset + n)]
    return imgs, list(lab[8 + offset:8 + offset + n])


def pgm(img):
    return b"P5 28 28 255\n" + img


def wait_for(cond, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(step)
    return False


def http_request(port, method, path, body=None, headers=None, timeout=30, host="127.0.0.1"):
    """One request on a fresh connection: (status, headers dict lower-case, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def classify(port, img, timeout=30):
    st, _, body = http_request(port, "POST", "/v1/classify", pgm(img),
                               {"Content-Type": "image/x-portable-graymap"}, timeout)
    return st, (json.loads(body) if st == 200 else body)


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, val = line.rsplit(" ", 1)
        out[key] = float(val)
    return out


def metrics(port):
    st, _, body = http_request(port, "GET", "/metrics")
    if st != 200:
        raise RuntimeError("/metrics answered %d" % st)
    return parse_metrics(body.decode())


class Cigtd:
    """cigtd (any binary, default the build tree's) on 127.0.0.1, port 0 unless given; its
    stderr is collected by a thread and the port read from the 'serving ... on URL' line."""

    def __init__(self, *args, binary=None, env=None, cwd=None, listen="127.0.0.1:0"):
        self.lines = []
        cmd = [binary or CIGTD] + list(args) + ["--listen", listen]
        full_env = dict(os.environ, **(env or {}))
        full_env = {k: v for k, v in full_env.items() if v is not None}  # None: unset
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                     env=full_env)
        self.port = None
        self.model_path = None
        got = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"serving (?:model \S+ \((.*)\)|repository .*) on "
                              r"https?://[^ ]*:(\d+)/", line)
                if m and not self.port:
                    self.model_path, self.port = m.group(1), int(m.group(2))
                    got.set()
            got.set()
        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        got.wait(60)
        if not self.port:
            self.proc.kill()
            self.proc.wait()
            die("cigtd did not start (%s):\n%s" % (" ".join(cmd), "\n".join(self.lines)))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals (if still running) and waits; returns the exit status or 'hung'."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        self.thread.join(5)
        return rc


def scratch(prefix):
    """A temporary directory removed at exit unless KEEP_TMP is set."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("KEEP_TMP"):
        import atexit
        atexit.register(shutil.rmtree, d, True)
    return d


def meson_install(destdir):
    """`meson install --destdir DESTDIR` of the build tree (no rebuild: meson test built it)."""
    meson = need_tool("meson", "meson")
    r = subprocess.run([meson, "install", "-C", BUILDDIR, "--destdir", destdir, "--no-rebuild",
                        "--quiet"], capture_output=True, text=True)
    if r.returncode:
        die("meson install failed:\n" + r.stdout + r.stderr)


def meson_prefix():
    """prefix, bindir, datadir, sysconfdir as configured in the build tree (absolute)."""
    meson = need_tool("meson", "meson")
    r = subprocess.run([meson, "introspect", "--buildoptions", BUILDDIR], capture_output=True,
                       text=True, check=True)
    opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    prefix = opts["prefix"]

    def absolute(v):
        return v if v.startswith("/") else os.path.join(prefix, v)
    return {"prefix": prefix, "bindir": absolute(opts["bindir"]),
            "datadir": absolute(opts["datadir"]), "sysconfdir": absolute(opts["sysconfdir"])}
