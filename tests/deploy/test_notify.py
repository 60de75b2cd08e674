#!/usr/bin/python3
"""cigtd speaks systemd's notify protocol as deploy/cigtd.service (Type=notify, WatchdogSec,
ExecReload=kill -HUP) expects: a datagram socket of this test stands in for systemd.

Checked, in this order: READY=1 first and only once the HTTP port answers ready; WATCHDOG=1
at about half of WATCHDOG_USEC; SIGHUP gives RELOADING=1 (with MONOTONIC_USEC) then READY=1;
SIGTERM gives STOPPING=1 and exit 0. The daemon runs with the shipped example config
deploy/cigtd.json and no --model (the build tree's default model). A second run without
WATCHDOG_USEC must send no WATCHDOG=1 (the pings follow systemd's setting, not a constant).
"""

import os
import signal
import socket
import threading
import time

import deploylib as dl

WATCHDOG_USEC = 400000  # systemd would pass WatchdogSec; cigtd must ping every 0.2 s


class Listener:
    """The stand-in for systemd: records (time, fields) of every datagram."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.msgs = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(kv.split("=", 1) for kv in data.split("\n") if "=" in kv)
            self.msgs.append((time.monotonic(), fields))

    def states(self):
        """The non-watchdog messages as their first key, e.g. ['READY=1', 'RELOADING=1']."""
        out = []
        for _, f in self.msgs:
            for k in ("READY", "RELOADING", "STOPPING"):
                if k in f:
                    out.append("%s=%s" % (k, f[k]))
        return out

    def watchdogs(self):
        return [t for t, f in self.msgs if f.get("WATCHDOG") == "1"]

    def close(self):
        time.sleep(0.3)
        self.stop_ev.set()
        self.thread.join(5)
        self.sock.close()


def main():
    model = dl.need_model()
    work = dl.scratch("cigt-notify-")
    config = os.path.join(dl.SRCDIR, "deploy", "cigtd.json")

    sock = os.path.join(work, "notify.sock")
    lst = Listener(sock)
    d = dl.Cigtd("--config", config, "--workers", "1",
                 env={"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        dl.check(os.path.realpath(d.model_path) == os.path.realpath(model),
                 "no --model from the build tree serves the source tree's model (%s)"
                 % d.model_path)
        dl.check(dl.wait_for(lambda: "READY=1" in lst.states(), 10), "READY=1 received")
        # READY must mean ready: the port answers at once.
        st, _, _ = dl.http_request(d.port, "GET", "/v2/health/ready")
        dl.check(st == 200, "ready on HTTP right after READY=1 (got %d)" % st)
        dl.check(lst.states()[:1] == ["READY=1"], "READY=1 is the first state sent")

        dl.check(dl.wait_for(lambda: len(lst.watchdogs()) >= 4, 5), "WATCHDOG=1 pings arrive")
        w = lst.watchdogs()
        gaps = [b - a for a, b in zip(w, w[1:])]
        half = WATCHDOG_USEC / 2e6
        mean = sum(gaps) / len(gaps) if gaps else 0
        dl.check(gaps and 0.75 * half < mean < 1.25 * half and max(gaps) < 3 * half,
                 "watchdog interval about WATCHDOG_USEC/2 = %.2f s (gaps %s)"
                 % (half, ["%.3f" % g for g in gaps]))

        d.proc.send_signal(signal.SIGHUP)
        dl.check(dl.wait_for(lambda: lst.states().count("READY=1") >= 2, 10),
                 "READY=1 again after SIGHUP")
        rel = [f for _, f in lst.msgs if "RELOADING" in f]
        dl.check(len(rel) == 1 and rel[0].get("MONOTONIC_USEC", "").isdigit(),
                 "one RELOADING=1 carrying MONOTONIC_USEC (%s)" % rel)
        st, body = dl.classify(d.port, dl.load_images(1)[0][0])
        dl.check(st == 200, "classifies after the reload")
    finally:
        rc = d.stop()
    dl.check(rc == 0, "exit status 0 after SIGTERM (got %s)" % rc)
    lst.close()
    dl.check(lst.states() == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
             "state sequence READY, RELOADING, READY, STOPPING (got %s)" % lst.states())

    # Without WATCHDOG_USEC (a unit without WatchdogSec) there must be no pings.
    sock2 = os.path.join(work, "notify2.sock")
    lst2 = Listener(sock2)
    d = dl.Cigtd("--config", config, "--workers", "1", env={"NOTIFY_SOCKET": sock2,
                                                             "WATCHDOG_USEC": None})
    try:
        dl.check(dl.wait_for(lambda: "READY=1" in lst2.states(), 10), "READY=1 (no watchdog)")
        time.sleep(1.0)
    finally:
        rc = d.stop()
    lst2.close()
    dl.check(rc == 0 and not lst2.watchdogs(), "no WATCHDOG=1 without WATCHDOG_USEC")
    dl.finish("systemd-notify")


if __name__ == "__main__":
    main()
