#!/usr/bin/python3
"""report.py -- bench/RESULTS.md and its plots, regenerated from one results JSON of bench/run.

  bench/report.py bench/results/2026-11-27-host.json [--out bench]

Writes OUT/RESULTS.md and OUT/plots/*.png (gnuplot, pngcairo; without gnuplot the tables are
still written and the report says the plots are missing). Reads nothing but the JSON, so the
report can be rebuilt, or its wording changed, without re-running a benchmark. The targets of
issue 6 are judged here, from the figures, never asserted anywhere: a smoke run's figures are
not judged at all.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

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


class Report:
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

    # ---------------------------------------------------------------- targets

    def targets(self):
        out = []   # (target, measured, verdict, explanation)

        def verdict(ok):
            if self.smoke:
                return "not judged (smoke run)"
            return "**MET**" if ok else "**MISSED**"

        prof = self.profile_explanation(256)
        # 1. routed batch 256 vs PyTorch routed
        c, t = self.best("cigt", "routed", 256), self.best("torch", "routed", 256)
        if c and t:
            x = c["samples_per_second"] / t["samples_per_second"]
            out.append(("Engine routed, batch 256: >= 3x PyTorch routed (each side's best thread "
                        "setting)",
                        "%s vs %s samples/s = **%.2fx** (%s; %s)" % (
                            n0(c["samples_per_second"]), n0(t["samples_per_second"]), x,
                            self.setting(c), self.setting(t)),
                        verdict(x >= 3), prof if x < 3 else ""))
        else:
            out.append(("Engine routed, batch 256: >= 3x PyTorch routed", "not measured",
                        "NOT MEASURED", ""))
        # 2. fraction of sgemm
        c = self.engine_row("cigt", "routed", 256, 2)
        if c and c.get("fraction_of_sgemm") is not None:
            f = c["fraction_of_sgemm"]
            out.append(("Engine routed, batch 256, 2 threads: >= 50% of OpenBLAS sgemm GFLOPS",
                        "%s of %s GFLOPS = **%s**" % (n1(c["gflops"]), n1(c["sgemm_gflops"]),
                                                       pct(f)),
                        verdict(f >= 0.5), prof if f < 0.5 else ""))
        else:
            out.append(("Engine routed, batch 256: >= 50% of sgemm GFLOPS", "not measured",
                        "NOT MEASURED", ""))
        # 3. routed vs dense
        c, d = self.engine_row("cigt", "routed", 256, 2), self.engine_row("cigt", "dense", 256, 2)
        if c and d:
            x = c["samples_per_second"] / d["samples_per_second"]
            macs = (d.get("macs_per_sample") or 0) / max(c.get("macs_per_sample") or 1, 1)
            out.append(("Engine routed >= 1.7x dense (batch 256, 2 threads)",
                        "%s vs %s samples/s = **%.2fx** (the MAC ratio is %.2fx)" % (
                            n0(c["samples_per_second"]), n0(d["samples_per_second"]), x, macs),
                        verdict(x >= 1.7), (prof + "; " + self.groups_explanation(256))
                        if x < 1.7 else ""))
        else:
            out.append(("Engine routed >= 1.7x dense", "not measured", "NOT MEASURED", ""))
        # 4. batch 1
        c, t = self.best("cigt", "routed", 1), self.best("torch", "routed", 1)
        if c and t:
            x = c["samples_per_second"] / t["samples_per_second"]
            out.append(("Engine batch 1: >= 2x PyTorch batch 1 (each side's best thread "
                        "setting)",
                        "%s vs %s samples/s = **%.2fx** (%s; %s)" % (
                            n0(c["samples_per_second"]), n0(t["samples_per_second"]), x,
                            self.setting(c), self.setting(t)),
                        verdict(x >= 2), self.profile_explanation(1) if x < 2 else ""))
        else:
            out.append(("Engine batch 1: >= 2x PyTorch batch 1", "not measured", "NOT MEASURED",
                        ""))
        # 5. training
        tr = self.sec("train").get("rows", [])
        for phase, label in (("routed", "routed epoch"), ("warmup", "warm-up epoch")):
            c = next((r for r in tr if r["impl"] == "cigt" and r["phase"] == phase), None)
            t = next((r for r in tr if r["impl"] == "torch" and r["phase"] == phase), None)
            if c and t:
                x = c["samples_per_second"] / t["samples_per_second"]
                out.append(("Training (%s, batch %d, %d threads): >= 1.5x PyTorch"
                            % (label, c["batch"], c["threads"]),
                            "%s vs %s samples/s = **%.2fx**" % (
                                n0(c["samples_per_second"]), n0(t["samples_per_second"]), x),
                            verdict(x >= 1.5),
                            "no per-op profile of training is recorded yet; the engine "
                            "profile below shows the forward half" if x < 1.5 else ""))
            else:
                out.append(("Training (%s): >= 1.5x PyTorch" % label, "not measured",
                            "NOT MEASURED", ""))
        # 6. HTTP
        h = self.sec("http")
        r = self.http_row("native_json", 1, 64)
        if r:
            ips, p99 = r["images_per_second"], r["latency_ms"]["p99"]
            bad = r["errors"]["status"] + r["errors"]["timeout"]
            ok = ips >= 5000 and p99 < 20 and bad == 0
            others = []
            for fmt in ("oip_json", "oip_binary", "png"):
                o = self.http_row(fmt, 1, 64)
                if o:
                    others.append("%s %s/s p99 %s ms" % (FORMAT_NAMES[fmt],
                                                         n0(o["images_per_second"]),
                                                         n1(o["latency_ms"]["p99"])))
            bare = next((b for b in h.get("bare", []) if b["connections"] == 64), None)
            expl = ""
            if not ok:
                expl = "bare libmicrohttpd ceiling at 64 connections: %s req/s; " % (
                    n0(bare["ok_requests_per_second"]) if bare else "—")
                expl += "wrk shares the two cores with the server"
            out.append(("HTTP single image (native JSON), 64 connections: >= 5,000/s at "
                        "p99 < 20 ms",
                        "**%s images/s, p99 %s ms**, %d non-2xx/timeouts (%s)" % (
                            n0(ips), n1(p99), bad, "; ".join(others)),
                        verdict(ok), expl))
        else:
            why = h.get("skipped") or h.get("error") or (
                "no native-JSON single-image row at 64 connections in this run"
                if "http" in (self.R.get("sections_run") or []) else "section not run")
            out.append(("HTTP single image, 64 connections: >= 5,000/s at p99 < 20 ms",
                        "not measured: %s" % why, "NOT MEASURED", ""))
        return out

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

    # ---------------------------------------------------------------- sections

    def header(self):
        R, m, v = self.R, self.R.get("machine", {}), self.R.get("versions", {})
        md = self.md
        md.append("# cigt benchmark results\n")
        if self.smoke:
            md.append("> **SMOKE RUN — NOT A MEASUREMENT.** Every figure below comes from "
                      "`bench/run --smoke`, which runs each part for a fraction of a second "
                      "only to prove the suite works; none of them says anything about speed "
                      "and no target is judged. Run `make bench` (about 7 minutes, idle "
                      "machine) to replace this file with measured results.\n")
        md.append("Generated by `bench/report.py %s` from the results of `%s` (%s, %.0f s). "
                  "Re-run everything with `make bench`; rebuild this file alone with "
                  "`bench/report.py bench/results/FILE.json --out bench`.\n"
                  % (self.json_rel, R.get("command"), R.get("date"),
                     R.get("elapsed_seconds", 0)))
        ran = R.get("sections_run") or []
        if ran and len(ran) < 5:
            md.append("**Partial run:** only %s.\n" % ", ".join(ran))
        model = R.get("model", {})
        la0 = R.get("loadavg_start") or [0]
        busy0 = R.get("cpus_busy_start")
        rows = [
            ("CPU", "%s, %s CPUs (%s usable), AVX2 %s, AVX-512 %s" % (
                m.get("cpu_model"), m.get("nproc"), m.get("usable_cpus"),
                "yes" if m.get("avx2") else "no", "yes" if m.get("avx512f") else "no")),
            ("OS", "%s, kernel %s" % (m.get("os"), m.get("kernel"))),
            ("load before the run", "%s CPUs busy over the 2 s before it (/proc/stat); load "
             "average %s before, %s after (1-minute, lags: counts work that just ended)%s" % (
                n2(busy0) if busy0 is not None else "not measured",
                n2(la0[0]), n2((R.get("loadavg_end") or [None])[0]),
                " — **the machine was busy: figures are depressed**"
                if (busy0 > BUSY_WARN if busy0 is not None else la0[0] > 0.5) and not self.smoke
                else "")),
            ("model", "`%s` (%s; %s parameters, %s MACs per path, %s dense)%s" % (
                model.get("path"), "trained" if model.get("trained") else
                "**untrained** — random weights, router batch norm calibrated so routes spread",
                n0(model.get("parameters")), n0(model.get("path_macs")),
                n0(model.get("dense_macs")),
                "; made with `%s`" % model["made_by"] if model.get("made_by") else "")),
            ("route share (first %s test images)" % model.get("route_share_images", "—"),
             ", ".join("%s %.0f%%" % (k, 100 * v) for k, v in
                       sorted((model.get("route_share") or {}).items()) if v > 0) or "—"),
            ("git", "%s%s" % (R.get("git", {}).get("commit"),
                              " (uncommitted changes)" if R.get("git", {}).get("dirty") else "")),
        ]
        for k in ("cigt", "cigtd", "cc", "openblas", "torch", "python", "wrk", "libmicrohttpd",
                  "gnuplot"):
            rows.append((k, v.get(k) or "—"))
        env = m.get("env") or {}
        rows.append(("environment", ", ".join("%s=%s" % (k, env[k]) for k in sorted(env)
                                              if env[k]) or "no OPENBLAS_*/OMP_* set"))
        md.append(table(["", ""], rows) + "\n")
        if R.get("errors"):
            md.append("**Failed parts of this run:** " + "; ".join(
                "%s: %s" % kv for kv in R["errors"].items()) + "\n")

    def section_targets(self):
        md = self.md
        md.append("## Targets (issue 6)\n")
        md.append("Read from the figures of this run, never asserted by a test.\n")
        T = self.targets()
        md.append(table(["target", "measured", "verdict"], [(a, b, c) for a, b, c, _ in T])
                  + "\n")
        misses = [(a, d) for a, b, c, d in T if "MISSED" in c and d]
        if misses:
            md.append("What explains the misses:\n")
            for a, d in misses:
                md.append("- *%s* — %s" % (a, d))
            md.append("")

    def section_engine(self):
        md = self.md
        E = self.sec("engine")
        md.append("## 1. Engine: routed vs dense vs ungrouped vs PyTorch\n")
        if not E.get("rows"):
            md.append("Not measured: %s\n" % (E.get("error") or "section not run"))
            return
        md.append("Samples per second on Fashion-MNIST test images (`cigt bench`; PyTorch "
                  "%s through `bench/torch_infer.py`, the same model file built by "
                  "tests/reference/). *routed*: route-grouped, each expert once per group; "
                  "*dense*: every expert on every sample; *ungrouped*: routed, one sample per "
                  "call; PyTorch *routed*: gather-scatter per expert; PyTorch *masked*: every "
                  "expert on every sample, then select. cigt threads are workers with one "
                  "OpenBLAS thread each unless noted. GFLOPS = 2 x MACs executed / s.\n"
                  % (E.get("torch_version") or ""))
        batches = sorted({r["batch"] for r in E["rows"]})
        threads = sorted({r["threads"] for r in E["rows"]})
        series = [("cigt", "routed"), ("cigt", "dense"), ("cigt", "ungrouped"),
                  ("torch", "routed"), ("torch", "masked")]
        label = {("cigt", "routed"): "cigt routed", ("cigt", "dense"): "cigt dense",
                 ("cigt", "ungrouped"): "cigt ungrouped", ("torch", "routed"):
                 "PyTorch routed", ("torch", "masked"): "PyTorch masked-dense"}
        # summary: samples/s, one row per implementation and threads
        rows = []
        for t in threads:
            for impl, mode in series:
                cells = []
                for b in batches:
                    r = self.engine_row(impl, mode, b, t)
                    cells.append(n0(r["samples_per_second"]) if r else "—")
                rows.append(["%s, %d thr" % (label[(impl, mode)], t)] + cells)
        md.append(table(["samples/s"] + ["batch %d" % b for b in batches], rows) + "\n")
        # the full table with commands
        rows = []
        for t in threads:
            for b in batches:
                tr = self.engine_row("torch", "routed", b, t)
                for impl, mode in series:
                    r = self.engine_row(impl, mode, b, t)
                    if not r:
                        continue
                    vs = r["samples_per_second"] / tr["samples_per_second"] if tr else None
                    rows.append([label[(impl, mode)], t, r.get("blas_threads", "—")
                                 if impl == "cigt" else "—", b, n0(r["samples_per_second"]),
                                 n1(r["gflops"]), "%.2fx" % vs if vs else "—",
                                 code(r["command"])])
        for r in E["rows"]:
            if r["impl"] == "cigt" and r.get("blas_threads", 1) > 1:
                tr = self.best("torch", "routed", r["batch"])
                vs = r["samples_per_second"] / tr["samples_per_second"] if tr else None
                rows.append([label[("cigt", r["mode"])] + " (BLAS threads)", r["threads"],
                             r["blas_threads"], r["batch"], n0(r["samples_per_second"]),
                             n1(r["gflops"]), "%.2fx" % vs if vs else "—", code(r["command"])])
        md.append("<details><summary>Every row with the command that reproduces it</summary>\n")
        md.append(table(["implementation", "threads", "BLAS threads", "batch", "samples/s",
                         "GFLOPS", "vs PyTorch routed (same threads)", "command"], rows) + "\n")
        md.append("</details>\n")
        # sgemm
        sg = E.get("sgemm", [])
        if sg:
            md.append("OpenBLAS sgemm (1024^3, measured by `cigt bench --sgemm` in the same "
                      "run) and the routed engine at the largest batch as a fraction of it:\n")
            rows = []
            for s in sg:
                r = next((x for x in E["rows"] if x["command"] == s["command"]), None)
                rows.append([s["threads"], n1(s["gflops"]),
                             self.setting(r) if r else "—", n1(r["gflops"]) if r else "—",
                             pct(r.get("fraction_of_sgemm")) if r else "—",
                             code(s["command"])])
            md.append(table(["sgemm threads", "sgemm GFLOPS", "engine setting", "engine GFLOPS",
                             "fraction", "command"], rows) + "\n")
        # plot
        panels = []
        for t in threads:
            data = []
            for b in batches:
                vals = []
                for impl, mode in series:
                    r = self.engine_row(impl, mode, b, t)
                    vals.append("%g" % r["samples_per_second"] if r else "NaN")
                data.append("%d %s" % (b, " ".join(vals)))
            ceil = next((s for s in sg if s["threads"] == t), None)
            pm = (self.R.get("model") or {}).get("path_macs")
            ceil_sps = ceil["gflops"] * 1e9 / (2 * pm) if ceil and pm else None
            panels.append((t, data, ceil_sps))
        # Panels side by side above a strip that holds only the key (a key-only plot of NaNs:
        # a horizontal key under multiplot panels is otherwise squeezed into one column).
        npan = len(panels)
        script = 'set multiplot title "Engine throughput (samples/s, log scale)"\n'
        script += ("set logscale x 2\nset logscale y\nset xrange [0.75:340]\n"
                   "set xtics (%s)\nset xlabel \"batch\"\nset ylabel \"samples/s\"\n"
                   "set format y '%%.0s%%c'\nunset key\n"
                   % ",".join(str(b) for b in batches))
        styles = ['lw 3 lc rgb "#1f77b4" pt 7', 'lw 2 lc rgb "#1f77b4" dt 2 pt 5',
                  'lw 2 lc rgb "#17becf" dt 3 pt 9', 'lw 3 lc rgb "#d62728" pt 7',
                  'lw 2 lc rgb "#d62728" dt 2 pt 5']
        ceil_style = "lw 1 lc rgb '#555555' dt 4"
        allv = [float(x) for _, d, _ in panels for line in d for x in line.split()[1:]
                if x != "NaN"]
        lo, hi = (min(allv) / 2, max(allv) * 3) if allv else (1, 10)
        for i, (t, data, ceil_sps) in enumerate(panels):
            script += self.block("e%d" % i, data)
            script += ('set origin %g,0.16\nset size %g,0.78\nset title "%d thread%s"\n'
                       'set yrange [%g:%g]\n' % (i / npan, 1.0 / npan, t, "" if t == 1 else "s",
                                                 lo, max(hi, (ceil_sps or 0) * 1.5)))
            plots = ["$e%d using 1:%d with linespoints %s" % (i, k + 2, styles[k])
                     for k in range(len(series))]
            if ceil_sps:
                plots.append("%g with lines %s" % (ceil_sps, ceil_style))
            script += "plot " + ", \\\n  ".join(plots) + "\n"
        script += ("set origin 0,0\nset size 1,0.16\nunset title\nunset xlabel\nunset ylabel\n"
                   "unset logscale\nunset border\nunset tics\nunset grid\nset xrange [0:1]\n"
                   "set yrange [0:1]\nset key default\nset key center center horizontal "
                   "maxrows 2 samplen 3 width 2\n")
        keys = ["NaN with linespoints %s title '%s'" % (styles[k], label[s])
                for k, s in enumerate(series)]
        keys.append("NaN with lines %s title 'sgemm ceiling (routed MACs)'" % ceil_style)
        script += "plot " + ", \\\n  ".join(keys) + "\nunset multiplot\n"
        md.append(self.plot("engine", script, (1100, 600)) + "\n")

    def section_profile(self):
        md = self.md
        P = self.sec("profile")
        md.append("## 2. Where the time goes\n")
        if not P.get("rows"):
            md.append("Not measured: %s\n" % (P.get("error") or "section not run"))
            return
        md.append("`cigt bench --profile`, routed, %d worker threads: time per part summed over "
                  "the workers, in microseconds of thread time per sample (so batch sizes "
                  "compare directly); *other* is worker time outside the timed parts (waiting "
                  "for the batch, pool hand-off). These runs are separate from the throughput "
                  "rows above because timing every part costs a little.\n"
                  % P["rows"][0]["threads"])
        rows, data = [], []
        for r in P["rows"]:
            ps = r.get("profile_seconds") or {}
            samples = r["samples_per_second"] * r["seconds"]
            wall = r["threads"] * r["seconds"]
            other = max(0.0, wall - sum(ps.values()))
            us = [1e6 * ps.get(p, 0) / samples for p in PARTS] + [1e6 * other / samples]
            tot = sum(us)
            rows.append([r["batch"]] + ["%s (%s)" % (n1(u), pct(u / tot if tot else 0))
                                        for u in us] + [n1(tot), code(r["command"])])
            data.append('"%d" %s' % (r["batch"], " ".join("%g" % u for u in us)))
        md.append(table(["batch"] + PARTS + ["other", "total µs/sample", "command"], rows) + "\n")
        script = self.block("p", data)
        script += ('set title "Routed engine: thread time per sample by part"\n'
                   'set style data histograms\nset style histogram rowstacked\n'
                   'set style fill solid 0.85 border rgb "#333333"\nset boxwidth 0.6\n'
                   'set xlabel "batch"\nset ylabel "microseconds of worker time per sample"\n'
                   'set yrange [0:*]\n')
        colors = ["#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#bbbbbb"]
        names = PARTS + ["other"]
        script += "plot " + ", \\\n  ".join(
            "$p using %d%s title '%s' lc rgb '%s'" % (k + 2, ":xtic(1)" if k == 0 else "", nm,
                                                     colors[k])
            for k, nm in enumerate(names)) + "\n"
        md.append(self.plot("profile", script) + "\n")
        # group sizes
        md.append("Mean group size per expert (samples that ran together through one expert in "
                  "one call; each worker gets batch/threads samples):\n")
        rows = []
        for r in P["rows"]:
            g = r.get("mean_group_size") or []
            rows.append([r["batch"]] + [" / ".join(n1(x) for x in layer) for layer in g])
        nl = max((len(r.get("mean_group_size") or []) for r in P["rows"]), default=0)
        md.append(table(["batch"] + ["layer %d experts" % l for l in range(nl)], rows) + "\n")

    def section_train(self):
        md = self.md
        T = self.sec("train")
        md.append("## 3. Training\n")
        if not T.get("rows"):
            md.append("Not measured: %s\n" % (T.get("error") or "section not run"))
            return
        r0 = T["rows"][0]
        md.append("Training samples per second, batch %d, %d threads. *warm-up*: every row to "
                  "every expert (8N rows at the leaves); *routed*: argmax + 49.1%% random "
                  "re-routing. cigt: one epoch of `cigt train` on the first training images "
                  "(samples/s from its JSON log; the routed figure uses a copy of the config with "
                  "warmup_epochs 0: %s). PyTorch: `bench/torch_train.py`, the same architecture "
                  "and step semantics (per-leaf CE + IG loss, SGD momentum, training-mode batch "
                  "norm per expert's rows, dropout), timed after warm-up steps.\n"
                  % (r0["batch"], r0["threads"], T.get("routed_config_note", "")))
        rows = []
        for phase in ("warmup", "routed"):
            t = next((r for r in T["rows"] if r["impl"] == "torch" and r["phase"] == phase),
                     None)
            for impl in ("cigt", "torch"):
                r = next((x for x in T["rows"] if x["impl"] == impl and x["phase"] == phase),
                         None)
                if not r:
                    continue
                vs = r["samples_per_second"] / t["samples_per_second"] if t else None
                rows.append(["cigt" if impl == "cigt" else "PyTorch", phase,
                             n0(r["samples_per_second"]), r.get("steps", "—"),
                             "%.2fx" % vs if vs else "—", code(r["command"])])
        md.append(table(["implementation", "phase", "samples/s", "steps timed",
                         "vs PyTorch", "command"], rows) + "\n")
        data = []
        for phase, nm in (("warmup", "warm-up epoch"), ("routed", "routed epoch")):
            vals = []
            for impl in ("cigt", "torch"):
                r = next((x for x in T["rows"] if x["impl"] == impl and x["phase"] == phase),
                         None)
                vals.append("%g" % r["samples_per_second"] if r else "NaN")
            data.append('"%s" %s' % (nm, " ".join(vals)))
        script = self.block("t", data)
        script += ('set title "Training throughput (batch %d, %d threads)"\n'
                   'set style data histograms\nset style histogram clustered gap 1\n'
                   'set style fill solid 0.85 border rgb "#333333"\nset boxwidth 0.9\n'
                   'set ylabel "training samples/s"\nset yrange [0:*]\n'
                   "plot $t using 2:xtic(1) title 'cigt train' lc rgb '#1f77b4', "
                   "'' using 3 title 'PyTorch' lc rgb '#d62728'\n" % (r0["batch"], r0["threads"]))
        md.append(self.plot("train", script) + "\n")

    def section_http(self):
        md = self.md
        H = self.sec("http")
        md.append("## 4. HTTP\n")
        if H.get("error"):
            md.append("Failed: %s\n" % H["error"])
        md.append("wrk with the Lua scripts in `bench/http/` posting real Fashion-MNIST test "
                  "images (bodies from `%s`); latency percentiles from wrk's full histogram "
                  "(the scripts' `done` hook); %s.\n"
                  % (H.get("bodies_command", "bench/http/request_bodies.py"),
                     H.get("client_note", "wrk shares the cores with the server")))
        if H.get("skipped"):
            md.append("**Skipped:** %s.\n" % H["skipped"])
        rows = H.get("rows", [])
        if rows:
            md.append("cigtd, started as `%s`:\n" % rows[0]["server_command"])
            t = []
            for r in rows:
                L = r["latency_ms"]
                e = r["errors"]
                t.append([FORMAT_NAMES.get(r["format"], r["format"]), r["images_per_request"],
                          r["connections"], n0(r["ok_requests_per_second"]),
                          n0(r["images_per_second"]), n2(L["p50"]), n2(L["p99"]),
                          n2(L["p99_9"]), e["status"] + e["timeout"] + e["connect"] + e["read"]
                          + e["write"], code(r["command"])])
            md.append(table(["format", "images/request", "connections", "requests/s",
                             "images/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "command"], t)
                      + "\n")
            md.append("*errors* counts non-2xx answers, timeouts and socket errors; requests/s "
                      "counts 2xx answers only.\n")
        bare = H.get("bare", [])
        if bare:
            md.append("Bare libmicrohttpd handler (`bench/http/mhd_bare.c`: one epoll thread like "
                      "cigtd's loop thread, reads each body and answers a fixed JSON the size of "
                      "a /v1/classify answer; built with `%s`), same client and native-JSON "
                      "single-image bodies — the ceiling of the HTTP layer itself:\n"
                      % H.get("bare_build_command", "cc"))
            t = []
            for r in bare:
                L = r["latency_ms"]
                t.append([r["connections"], n0(r["ok_requests_per_second"]), n2(L["p50"]),
                          n2(L["p99"]), n2(L["p99_9"]), code(r["server_command"]),
                          code(r["command"])])
            md.append(table(["connections", "requests/s", "p50 ms", "p99 ms", "p99.9 ms",
                             "server", "command"], t) + "\n")
        for key, title, col in (("delay", "max_queue_delay_us (`--max-delay-us`)",
                                 "max_delay_us"),
                                ("grouping", "route grouping (`--max-batch`)", "max_batch")):
            sw = H.get(key, [])
            if H.get(key + "_skipped"):
                md.append("Effect of %s: not measured (%s).\n" % (title, H[key + "_skipped"]))
            if not sw:
                continue
            md.append("Effect of %s — %s, %d connections:\n"
                      % (title, H.get(key + "_note", ""), sw[0]["connections"]))
            t = []
            for r in sw:
                L = r["latency_ms"]
                e = r["errors"]
                t.append([r.get(col), n0(r["images_per_second"]), n2(L["p50"]), n2(L["p99"]),
                          n2(L["p99_9"]), e["status"] + e["timeout"], code(r["server_command"]),
                          code(r["command"])])
            md.append(table([col, "images/s", "p50 ms", "p99 ms", "p99.9 ms", "errors",
                             "server", "command"], t) + "\n")
        # latency vs throughput
        series = []
        for fmt in ("native_json", "oip_json", "oip_binary", "png"):
            for k in (1, 64):
                pts = sorted((r for r in rows if r["format"] == fmt and
                              r["images_per_request"] == k), key=lambda r: r["connections"])
                if pts:
                    series.append(("%s x%d" % (FORMAT_NAMES[fmt], k), k,
                                   [(r["images_per_second"], r["latency_ms"]["p99"],
                                     r["connections"]) for r in pts]))
        if bare:
            series.append(("bare MHD (requests)", 1,
                           [(r["ok_requests_per_second"], r["latency_ms"]["p99"],
                             r["connections"]) for r in bare]))
        if series:
            script = ""
            plots = []
            colors = {"native JSON": "#1f77b4", "OIP JSON": "#2ca02c", "OIP binary": "#9467bd",
                      "raw PNG": "#ff7f0e", "bare MHD": "#555555"}
            for i, (nm, k, pts) in enumerate(series):
                script += self.block("h%d" % i, ["%g %g %d" % (x, max(y, 1e-3), c)
                                                 for x, y, c in pts if x > 0])
                col = next((v for kk, v in colors.items() if nm.startswith(kk)), "#000000")
                style = "dt 2 pt 6" if k > 1 else "dt 1 pt 7"
                plots.append("$h%d using 1:2 with linespoints lw 2 %s lc rgb '%s' title '%s'"
                             % (i, style, col, nm))
                # Connection counts are written beside the native-JSON and bare points only:
                # the formats' points crowd together at 64 and 256 connections and their
                # labels would overprint; every line runs c1, c16, c64, c256 left to right.
                if nm.startswith("native JSON") or nm.startswith("bare MHD"):
                    plots.append("$h%d using 1:2:(sprintf('c%%d', $3)) with labels offset "
                                 "0,0.8 font ',8' tc rgb '%s' notitle" % (i, col))
            script += ('set title "Latency vs throughput (each line: 1, 16, 64, 256 '
                       'connections; dashed: 64 images/request)"\n'
                       'set logscale xy\nset xlabel "images/s (bare '
                       'MHD: requests/s)"\nset ylabel "p99 latency (ms)"\n'
                       "set format x '%.0s%c'\n"
                       # the issue 6 target: >= 5,000 images/s at p99 < 20 ms (lower right)
                       "set arrow 1 from 5000, graph 0 to 5000, graph 1 nohead dt 3 lw 1.5 "
                       "lc rgb '#888888'\n"
                       "set arrow 2 from graph 0, first 20 to graph 1, first 20 nohead dt 3 "
                       "lw 1.5 lc rgb '#888888'\n"
                       "set label 97 'target zone (below and right of the dotted lines): "
                       ">= 5k/s at p99 < 20 ms' at graph 0.98, graph 0.04 right font ',9' "
                       "tc rgb '#666666'\n")
            if not rows:
                script += 'set label 98 "cigtd not run: only the bare ceiling" at graph 0.05,0.9\n'
            script += "plot " + ", \\\n  ".join(plots) + "\n"
            md.append(self.plot("http_latency", script) + "\n")
        sw = H.get("delay", [])
        if sw:
            data = ["%d %g %g" % (r["max_delay_us"], r["images_per_second"],
                                  r["latency_ms"]["p99"]) for r in sw]
            script = self.block("d", data)
            script += ('set title "max_queue_delay_us: throughput and p99 (%d connections)"\n'
                       'set xlabel "--max-delay-us"\nset ylabel "images/s"\n'
                       'set y2label "p99 latency (ms)"\nset ytics nomirror\nset y2tics\n'
                       'set key inside bottom center box opaque\n'
                       'set yrange [0:*]\nset y2range [0:*]\n'
                       "plot $d using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f77b4' title "
                       "'images/s', $d using 1:3 axes x1y2 with linespoints lw 2 pt 5 dt 2 "
                       "lc rgb '#d62728' title 'p99 ms'\n" % sw[0]["connections"])
            md.append(self.plot("http_delay", script) + "\n")

    def section_compute(self):
        md = self.md
        C = self.sec("compute")
        md.append("## 5. Compute saved: accuracy vs MACs\n")
        if C.get("skipped") or C.get("error"):
            md.append("**Skipped:** %s.\n" % (C.get("skipped") or C.get("error")))
            return
        rows = C.get("rows", [])
        if not rows:
            md.append("Not measured (section not run).\n")
            return
        if C.get("note"):
            md.append("*%s.*\n" % C["note"])
        md.append("Fashion-MNIST test accuracy (`cigt eval --json`) against the MACs each model "
                  "executes per sample, for every trained model in `models/` (thin and thick "
                  "single-path baselines and the trellis, as models/README.md lists them). For "
                  "a trellis the same accuracy at its dense MACs is what a framework without "
                  "routing pays.\n")
        t = []

        def label(r):  # the file's stem: two models may share the name inside the file
            return os.path.splitext(os.path.basename(r["model"]))[0]
        for r in rows:
            kind = "trellis, %d paths" % r["paths"] if (r.get("paths") or 1) > 1 \
                else "single path"
            t.append([code(r["model"]), kind, "%.2f%%" % (100 * r["accuracy"]), r["samples"],
                      n0(r["mean_macs"]), n0(r.get("dense_macs")), n0(r.get("parameters")),
                      code(r["command"])])
        md.append(table(["model", "kind", "accuracy", "test images", "MACs/sample",
                         "dense MACs", "parameters", "command"], t) + "\n")
        paired = C.get("paired") or []
        if paired:
            by = {r["model"]: r for r in rows}
            t = []
            for q in paired:
                ra, rb = by.get(q["a"]), by.get(q["b"])
                if not ra or not rb:
                    continue
                t.append([code(q["a"]), code(q["b"]),
                          "%+.2f" % (100 * (ra["accuracy"] - rb["accuracy"])),
                          "%.2f" % (ra["mean_macs"] / max(rb["mean_macs"], 1)),
                          q["a_only"], q["b_only"], "%.3g" % q["p_value"]])
            md.append("Every pair on the same %s test images (per-image answers from the same "
                      "runs with `--dump FILE`). *A only* / *B only*: images one "
                      "model classifies right and the other wrong; *p*: McNemar's exact "
                      "two-sided test on those, the chance that two equally accurate models "
                      "differ at least this much (below 0.05: a real difference; above: this "
                      "test set cannot tell them apart). One training run (one seed) per "
                      "model.\n" % n0(paired[0]["images"]))
            md.append(table(["A", "B", "accuracy A - B (points)", "MACs A / B", "A only",
                             "B only", "p"], t) + "\n")
        # One colour and one key entry per model, no labels beside the points: the thin
        # network and a trellis's routed path cost almost the same MACs (and the thick one
        # almost the trellis's dense MACs), so labels placed next to points collide.
        # A trellis is two points joined by a dotted line: routed (filled circle) and the
        # same model run dense (open circle), the accuracy a framework without routing
        # gets for twice the compute.
        palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#17becf")
        script, plots = "", []
        for i, r in enumerate(rows):
            col = palette[i % len(palette)]
            acc = 100 * r["accuracy"]
            trellis = (r.get("paths") or 1) > 1 and r.get("dense_macs")
            pts = ["%g %g" % (r["mean_macs"] / 1e6, acc)]
            if trellis:
                pts.append("%g %g" % (r["dense_macs"] / 1e6, acc))
            script += self.block("c%d" % i, pts)
            if trellis:
                plots.append("$c%d every ::0::0 using 1:2 with points pt 7 ps 2 lc rgb '%s' "
                             "title '%s (trellis, routed)'" % (i, col, label(r)))
                plots.append("$c%d every ::1::1 using 1:2 with points pt 6 ps 2 lw 2 "
                             "lc rgb '%s' title '%s run dense'" % (i, col, label(r)))
                plots.append("$c%d using 1:2 with lines dt 3 lw 1.5 lc rgb '%s' notitle"
                             % (i, col))
            else:
                plots.append("$c%d using 1:2 with points pt 5 ps 2 lc rgb '%s' "
                             "title '%s (single path)'" % (i, col, label(r)))
        # The trellis's operating points (bench/run section dial), joined in order of MACs.
        D = [r for r in (self.sec("dial").get("rows") or [])]
        if D:
            D = sorted(D, key=lambda r: r["mean_macs"])
            script += self.block("dial", ["%g %g" % (r["mean_macs"] / 1e6, 100 * r["accuracy"])
                                          for r in D])
            plots.append("$dial using 1:2 with linespoints pt 9 ps 1.5 lw 1.5 lc rgb '#555555' "
                         "title 'trellis operating points (--compute NAME)'")
        script += ('set title "Accuracy vs compute per sample"\nset xlabel "MACs per sample '
                   '(millions)"\nset ylabel "test accuracy (%)"\n'
                   'set offsets graph 0.15, graph 0.15, graph 0.15, graph 0.15\n'
                   'set key below maxrows 4 width 2\nset bmargin 9\n'
                   "plot " + ", \\\n  ".join(plots))
        md.append(self.plot("compute", script + "\n") + "\n")

    def section_dial(self):
        """The trellis's operating points: test accuracy, MACs, engine and HTTP throughput at
        each, and where the curve stands against the thin and thick baselines."""
        md = self.md
        D = self.sec("dial")
        md.append("## 5b. The compute dial: the trellis's operating points\n")
        if D.get("skipped") or D.get("error"):
            md.append("**Skipped:** %s.\n" % (D.get("skipped") or D.get("error")))
            return
        rows = D.get("rows") or []
        if not rows:
            md.append("Not measured (section not run).\n")
            return
        md.append("Each operating point of `%s` (models/README.md, \"Operating points\"): test "
                  "accuracy and mean MACs from `cigt eval --compute NAME --json`, engine "
                  "samples/s from `cigt bench --compute NAME` (batch 256), and HTTP images/s "
                  "and p99 with `cigtd --compute NAME` under wrk (native JSON, one image per "
                  "request, %s connections). The points are on the accuracy-vs-MACs plot of "
                  "section 5.\n" % (code(D.get("model", "")),
                                     rows[0].get("http", {}).get("connections", "-")))
        t = []
        for r in sorted(rows, key=lambda r: r["mean_macs"]):
            h = r.get("http") or {}
            t.append([code(r["point"]), ", ".join("%g" % x for x in r.get("thresholds") or []),
                      "%g -> %s" % (r["confidence"], r["second"]) if r.get("second") else "-",
                      "%.2f%%" % (100 * r["val_accuracy"]) if r.get("val_accuracy") else "—",
                      "%.2f%%" % (100 * r["accuracy"]),
                      n0(r["mean_macs"]), n0(r["engine_samples_per_second"]),
                      n0(h.get("ok_requests_per_second")),
                      n2((h.get("latency_ms") or {}).get("p99"))])
        md.append(table(["point", "thresholds", "escalation", "validation", "test",
                         "MACs/sample", "engine samples/s", "HTTP images/s", "p99 ms"], t)
                  + "\n")
        base = {os.path.basename(r["model"]): r for r in self.sec("compute").get("rows") or []}
        thin, thick = base.get("thin.safetensors"), base.get("thick.safetensors")
        if thin and thick and rows[0].get("samples") == thick.get("samples"):
            at = [r for r in rows if r["accuracy"] >= thick["accuracy"]]
            cheap = min(at, key=lambda r: r["mean_macs"]) if at else None
            over_thin = [r for r in rows if r["accuracy"] > thin["accuracy"]]
            first = min(over_thin, key=lambda r: r["mean_macs"]) if over_thin else None
            md.append("Against the baselines of section 5 (same test images): thin %.2f%% at %s "
                      "MACs, thick %.2f%% at %s. %s %s\n" % (
                          100 * thin["accuracy"], n0(thin["mean_macs"]), 100 * thick["accuracy"],
                          n0(thick["mean_macs"]),
                          "The cheapest point at least as accurate as thick is `%s`: %.2f%% at "
                          "%.2fx thick's MACs." % (cheap["point"], 100 * cheap["accuracy"],
                                                   cheap["mean_macs"] / thick["mean_macs"])
                          if cheap else "No point reaches thick's accuracy.",
                          "The cheapest point above thin is `%s` (%.2f%% at %.2fx thin's MACs)."
                          % (first["point"], 100 * first["accuracy"],
                             first["mean_macs"] / thin["mean_macs"])
                          if first else "No point is above thin."))

    def section_queues(self):
        """Whether per-expert queues that fill expert groups across batches could win anything,
        from the routed engine's throughput vs batch size and cigtd's own batches under load."""
        md = self.md
        md.append("## 6. Per-expert queues across batches\n")
        md.append("The scheduler (`src/server/sched.c`) groups samples by expert only within "
                  "one batch; per-expert queues that keep filling an expert's group across "
                  "consecutive batches would pay off only if the engine got faster with groups "
                  "larger than a batch already gives. Judged from this run's own figures: the "
                  "routed engine (section 1) and cigtd's batches during the HTTP run (section "
                  "4).\n")
        # cigtd's mean batch in the native-JSON single-image run at 64 connections (a smoke
        # run has only fewer connections: its most loaded run then, so the path is exercised).
        H = self.sec("http")
        hr = self.http_row("native_json", 1, 64) or max(
            (r for r in H.get("rows", []) if r["format"] == "native_json" and
             r["images_per_request"] == 1), key=lambda r: r["connections"], default=None)
        db = (hr or {}).get("daemon_batches") or {}
        mean = db.get("mean_batch_size")
        if mean is not None:
            daemon = ("During the single-image native-JSON run at %d connections cigtd's "
                      "batches averaged **%s samples** (`cigt_batch_size_sum` / "
                      "`cigt_batch_size_count` from /metrics, after minus before: %s / %s)."
                      % (hr["connections"], n1(mean), n0(db.get("samples")),
                         n0(db.get("batches"))))
        else:
            if hr:
                why = ("not recorded in this run (its results JSON has no daemon_batches: "
                       "the run predates bench/run's scraping of cigtd's /metrics around each "
                       "wrk run)")
            elif "http" not in (self.R.get("sections_run") or []):
                why = "not measured (the HTTP section did not run)"
            else:
                why = "not measured (%s)" % (H.get("skipped") or H.get("error") or
                                             "no single-image native-JSON run")
            daemon = ("cigtd's mean batch size during the single-image native-JSON run at %d "
                      "connections: %s." % (hr["connections"] if hr else 64, why))

        rows = [r for r in self.sec("engine").get("rows", [])
                if r["impl"] == "cigt" and r["mode"] == "routed" and r.get("blas_threads", 1) == 1]
        threads = sorted({r["threads"] for r in rows})
        if not threads:
            md.append("Not judged: the engine section has no routed rows (%s).\n"
                      % (self.sec("engine").get("error") or "section not run"))
            md.append(daemon + "\n")
            return
        T = 2 if 2 in threads else threads[-1]
        rate = {r["batch"]: r["samples_per_second"] for r in rows if r["threads"] == T}
        batches = sorted(rate)
        top = max(rate.values())
        md.append(table(["routed engine, %d worker%s" % (T, "" if T == 1 else "s")]
                        + ["batch %d" % b for b in batches],
                        [["samples/s"] + [n0(rate[b]) for b in batches],
                         ["of the best batch"] + [pct(rate[b] / top) for b in batches]]) + "\n")
        # A daemon batch runs on one worker; `cigt bench --threads T` gives each worker
        # batch / T samples, so a daemon batch of n compares with engine batch T * n.
        eq = mean * T if mean is not None else None
        if eq is not None:
            daemon += (" A daemon batch runs on one worker, as one worker's share (batch / "
                       "threads) of a `cigt bench` batch does, so it compares with engine batch "
                       "%s at %d workers." % (n0(eq), T))

        if 8 not in rate or not [b for b in batches if b > 8]:
            md.append("Not judged: this run has no routed batch 8 or nothing larger at %d "
                      "workers.\n" % T)
            md.append(daemon + "\n")
            return
        bb = max((b for b in batches if b > 8), key=lambda b: rate[b])
        ratio = rate[8] / rate[bb]
        flat = ratio >= 1 - FLAT_WITHIN
        gain = max(0.0, rate[bb] / rate[8] - 1)
        if self.smoke:
            md.append(daemon + "\n")
            md.append("Not judged (smoke run): the figures above are not measurements.\n")
            return
        verdict = ("**Throughput is %sflat from batch 8 upward:** batch 8 (%s samples per "
                   "worker) runs at %s samples/s, %s of the best larger batch (%s at batch %d; "
                   "flat means within %s)."
                   % ("" if flat else "not ", "{:g}".format(8 / T), n0(rate[8]), pct(ratio),
                      n0(rate[bb]), bb, pct(FLAT_WITHIN)))
        # The engine alone: what groups larger than a batch of 8 forms are worth.
        if flat:
            concl = ("Expert groups larger than a batch of 8 forms buy at most %s in the engine."
                     % pct(gain))
        else:
            concl = ("Larger expert groups are still worth up to %s in the engine, so the "
                     "engine alone does not rule per-expert queues across batches out."
                     % pct(gain))
        # At the daemon's own batch size under load: the gain from there to the best larger
        # measured batch, taken from the largest measured batch not above it (an upper bound).
        if eq is None:
            concl += (" Whether cigtd's batches under load are large enough to leave nothing "
                      "on the table is not known from this run, so for the daemon the question "
                      "stays open until a run records them.")
        else:
            lo = max([b for b in batches if b <= eq] or [batches[0]])
            above = [b for b in batches if b > eq]
            hb = max(above, key=lambda b: rate[b]) if above else lo
            up = max(0.0, rate[hb] / rate[lo] - 1)
            if not above:
                concl += (" cigtd's batches under load (engine batch %s) are past the largest "
                          "measured batch (%d), so this run shows nothing for per-expert queues "
                          "across batches to win there." % (n0(eq), batches[-1]))
            elif up <= FLAT_WITHIN:
                concl += (" At cigtd's batch size under load (engine batch %s) larger groups "
                          "buy at most %s, so per-expert queues across batches could win "
                          "little there." % (n0(eq), pct(up)))
            else:
                concl += (" At cigtd's batch size under load (engine batch %s) larger groups "
                          "are worth up to %s (engine batch %d, the largest measured not above "
                          "it, %s samples/s; batch %d, %s samples/s), so per-expert queues "
                          "across batches, or fuller batches (the `--max-delay-us` sweep in "
                          "section 4), could win something there."
                          % (n0(eq), pct(up), lo, n0(rate[lo]), hb, n0(rate[hb])))
        md.append(verdict + "\n")
        md.append(daemon + "\n")
        md.append(concl + "\n")

    def write(self, json_rel):
        self.json_rel = json_rel
        self.header()
        self.section_targets()
        self.section_engine()
        self.section_profile()
        self.section_train()
        self.section_http()
        self.section_compute()
        self.section_dial()
        self.section_queues()
        if self.plot_errors:
            self.md.append("Plot errors: " + "; ".join(self.plot_errors) + "\n")
        self.md.append("A/B runs of single changes against the code before them, kept across "
                       "regenerations of this file: [AB.md](AB.md).\n")
        path = os.path.join(self.out, "RESULTS.md")
        with open(path, "w") as f:
            f.write("\n".join(self.md).rstrip() + "\n")
        return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results JSON written by bench/run")
    ap.add_argument("--out", help="directory for RESULTS.md and plots/ (default: the parent "
                                  "of the JSON's results/ directory)")
    a = ap.parse_args()
    with open(a.results) as f:
        R = json.load(f)
    out = a.out or os.path.dirname(os.path.dirname(os.path.abspath(a.results)))
    os.makedirs(out, exist_ok=True)
    rep = Report(R, out)
    json_rel = os.path.relpath(os.path.abspath(a.results), os.path.abspath(out))
    path = rep.write(json_rel)
    if rep.plot_errors:
        print("report: plot errors: %s" % "; ".join(rep.plot_errors), file=sys.stderr)
        return 1
    print("report: wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
