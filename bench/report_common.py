"""report_common.py -- what bench/report.py and its section modules share: the thresholds and
format names, number formatting, markdown tables, and ReportBase (the results JSON, lookups in
its sections, gnuplot plots into OUT/plots, and the profile and expert-group explanations that
both the targets and the sections quote).
"""

import os
import shutil
import subprocess

PARTS = ["im2col", "sgemm", "pool", "elementwise", "router", "regroup"]
# Other work on more than this many CPUs before a run makes its figures suspect (bench/run's
# BUSY_WARN; old results without cpus_busy_start are judged by load average above 0.5).
BUSY_WARN = 0.25
# "Flat from batch 8 upward": batch 8 within this fraction of the best larger batch.
FLAT_WITHIN = 0.10
FORMAT_NAMES = {"native_json": "native JSON", "oip_json": "OIP JSON",
                "oip_binary": "OIP binary", "png": "raw PNG"}


def n0(x):
    return "—" if x is None else "{:,.0f}".format(x)


def n1(x):
    return "—" if x is None else "{:,.1f}".format(x)


def n2(x):
    return "—" if x is None else "{:,.2f}".format(x)


def pct(x):
    return "—" if x is None else "{:.0f}%".format(100 * x)


def code(s):
    return "`%s`" % s if s else ""


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


class ReportBase:
    """The results JSON R and the markdown lines md being written into OUT (see report.py)."""

    def __init__(self, R, out):
        self.R = R
        self.out = out
        self.smoke = R.get("mode") != "full"
        self.plots_dir = os.path.join(out, "plots")
        self.gnuplot = shutil.which("gnuplot")
        self.plot_errors = []
        self.md = []

    # ---------------------------------------------------------------- data access

    def sec(self, name):
        return self.R.get(name) or {}

    def engine_row(self, impl, mode, batch, threads, blas=1):
        for r in self.sec("engine").get("rows", []):
            if r["impl"] == impl and r["mode"] == mode and r["batch"] == batch and \
                    r["threads"] == threads and r.get("blas_threads", 1) == blas:
                return r
        return None

    def best(self, impl, mode, batch):
        rows = [r for r in self.sec("engine").get("rows", [])
                if r["impl"] == impl and r["mode"] == mode and r["batch"] == batch]
        return max(rows, key=lambda r: r["samples_per_second"]) if rows else None

    def http_row(self, fmt, k, c):
        for r in self.sec("http").get("rows", []):
            if r["format"] == fmt and r["images_per_request"] == k and r["connections"] == c:
                return r
        return None

    @staticmethod
    def setting(r):
        if r["impl"] == "torch":
            return "PyTorch %s, %d thread%s" % (r["mode"], r["threads"],
                                                "" if r["threads"] == 1 else "s")
        return "cigt %s, %d worker%s x %d BLAS" % (r["mode"], r["threads"],
                                                   "" if r["threads"] == 1 else "s",
                                                   r.get("blas_threads", 1))

    # ---------------------------------------------------------------- plots

    def plot(self, name, script, size=(960, 540)):
        """Runs a gnuplot script writing plots/NAME.png; returns the markdown image or a note."""
        if not self.gnuplot:
            return "*(plot %s.png not drawn: gnuplot is not installed)*" % name
        os.makedirs(self.plots_dir, exist_ok=True)
        path = os.path.join(self.plots_dir, name + ".png")
        head = ('set terminal pngcairo size %d,%d font "Sans,11" noenhanced\n' % size +
                'set output "%s"\nset grid xtics ytics lc rgb "#c8c8c8" lw 1\nset key outside right top\n'
                % path)
        if self.smoke:
            head += ('set label 99 "SMOKE RUN - NOT A MEASUREMENT" at screen 0.5,0.5 center '
                     'font "Sans,28" tc rgb "#a0d08080" front\n')
        p = subprocess.run([self.gnuplot], input=head + script, capture_output=True, text=True)
        if p.returncode != 0 or not os.path.exists(path):
            self.plot_errors.append("%s: %s" % (name, p.stderr.strip()[-300:]))
            return "*(plot %s.png failed: %s)*" % (name, p.stderr.strip()[-200:])
        return "![%s](plots/%s.png)" % (name, name)

    @staticmethod
    def block(name, lines):
        return "$%s << EOD\n%s\nEOD\n" % (name, "\n".join(lines) if lines else "")

    # ---------------------------------------------------------------- explanations

    def groups_explanation(self, batch):
        rows = self.sec("profile").get("rows", [])
        r = next((x for x in rows if x["batch"] == batch), None)
        if not r or not r.get("mean_group_size"):
            return ""
        per = batch / max(r["threads"], 1)
        return ("mean group size per expert at batch %d, %d workers: %s (dense execution runs "
                "all %g samples of a worker through every expert)" % (
                    batch, r["threads"], "; ".join(
                        "layer %d: %s" % (l, " / ".join(n1(x) for x in g))
                        for l, g in enumerate(r["mean_group_size"])), per))

    def profile_explanation(self, batch):
        rows = self.sec("profile").get("rows", [])
        r = next((x for x in rows if x["batch"] == batch), None)
        if not r or not r.get("profile_seconds"):
            return ""
        ps = r["profile_seconds"]
        tot = sum(ps.values()) or 1
        parts = sorted(ps.items(), key=lambda kv: -kv[1])
        txt = "profile at batch %d, %d threads: %s" % (batch, r["threads"], ", ".join(
            "%s %.0f%%" % (k, 100 * v / tot) for k, v in parts if v / tot >= 0.01))
        samples = r["samples_per_second"] * r["seconds"]
        if ps.get("sgemm") and r.get("macs_per_sample"):
            inside = 2 * r["macs_per_sample"] * samples / ps["sgemm"] * 1e-9
            one = self.engine_row("cigt", "routed", 256, 1)
            ref = one.get("sgemm_gflops") if one else None
            txt += "; inside sgemm the model's matrix shapes run at %s GFLOPS per thread" % n1(
                inside)
            if ref:
                txt += " (a 1024^3 sgemm on one thread: %s)" % n1(ref)
        return txt
