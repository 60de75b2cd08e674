"""report_scale.py -- section 1b of bench/RESULTS.md: how cost grows (issue 26 point 9), four
networks of growing MACs measured by the engine and by PyTorch, with a log-log plot of samples/s
against MACs per sample. Mixed into bench/report.py's Report.
"""

from report_common import n0, n1, n2, code, table, ReportBase

SERIES = [("cigt", "routed"), ("cigt", "dense"), ("torch", "routed"), ("torch", "dense")]
LABEL = {("cigt", "routed"): "cigt routed", ("cigt", "dense"): "cigt dense",
         ("torch", "routed"): "PyTorch routed", ("torch", "dense"): "PyTorch dense"}


def sps(x):
    """Samples/s: whole numbers, one decimal below 10 (ResNet-110 at 64x64 runs a few)."""
    return n0(x) if x >= 10 else n1(x)


class ScaleSections(ReportBase):
    """Section 1b, appending its markdown to self.md."""

    def scale_row(self, model, impl, mode, batch, threads):
        for r in self.sec("scale").get("rows", []):
            if (r["model"], r["impl"], r["mode"], r["batch"], r["threads"]) == \
                    (model, impl, mode, batch, threads):
                return r
        return None

    def section_scale(self):
        md = self.md
        X = self.sec("scale")
        md.append("## 1b. How cost grows: four networks from 1 to 600 MMACs\n")
        if not X.get("rows"):
            md.append("Not measured: %s\n" % (X.get("error") or "section not run"))
            return
        models = X["models"]
        md.append("`cigt bench` and PyTorch %s (`bench/torch_trellis.py`: the `cigt.torch` "
                  "module built from the same file) on four networks, routed (each expert once "
                  "on the samples routed to it) and dense (every expert on every sample). "
                  "Only today's model is trained; the others have random weights with router "
                  "batch norm calibrated (`make_model.py --calibrate`), so samples spread over "
                  "the routes. The colour networks run on Fashion-MNIST test images padded to "
                  "their size and tinted per channel (`bench/colour_images.py`; no CIFAR-10 "
                  "here). Latency is the mean time of one call of the batch.\n"
                  % (X.get("torch_version") or ""))
        md.append(table(["network", "file", "name", "parameters", "paths", "routed MACs",
                         "dense MACs", "inputs", "made by"],
                        [[m["key"], code(m["path"]), m.get("name") or "—",
                          n0(m["parameters"]), m.get("paths") or "—", n0(m["path_macs"]),
                          n0(m["dense_macs"]), m["data"] if not m.get("data_command") else
                          code(m["data_command"]), code(m["made_by"]) if m.get("made_by")
                          else "the trained file"] for m in models]) + "\n")
        self.scale_tables(models, X["rows"])
        md.append(self.scale_plot(models, X["rows"]) + "\n")
        self.scale_http(X.get("http") or {})

    def scale_http(self, h):
        md = self.md
        if not h.get("command"):
            md.append("HTTP: not measured (%s).\n" % (h.get("skipped") or h.get("error") or
                                                       "not run"))
            return
        lat = h.get("latency_ms") or {}
        md.append("HTTP: cigtd serving %s, wrk posting 32x32 colour PNGs (one image a request, "
                  "`bench/http/png.lua`):\n" % h.get("model"))
        md.append(table(["connections", "images/s", "p50 ms", "p99 ms", "mean engine batch",
                         "wrk command", "server command"],
                        [[h["connections"], n0(h["ok_requests_per_second"]),
                          n2(lat.get("p50")), n2(lat.get("p99")),
                          n1((h.get("daemon_batches") or {}).get("mean_batch_size")),
                          code(h["command"]), code(h["server_command"])]]) + "\n")

    def scale_tables(self, models, rows):
        md = self.md
        batches = sorted({r["batch"] for r in rows})
        threads = sorted({r["threads"] for r in rows})
        out = []
        for m in models:
            for t in threads:
                for s in SERIES:
                    cells = []
                    for b in batches:
                        r = self.scale_row(m["key"], s[0], s[1], b, t)
                        cells.append("%s (%s ms)" % (sps(r["samples_per_second"]),
                                                     n2(r["latency_ms"])) if r else "—")
                    out.append([m["key"], "%s, %d thr" % (LABEL[s], t)] + cells)
        md.append(table(["network", "samples/s (latency)"] + ["batch %d" % b for b in batches],
                        out) + "\n")
        md.append("<details><summary>Every row with the command that reproduces it</summary>\n")
        md.append(table(["network", "implementation", "threads", "batch", "samples/s",
                         "latency ms", "GFLOPS", "command"],
                        [[r["model"], LABEL[(r["impl"], r["mode"])], r["threads"], r["batch"],
                          sps(r["samples_per_second"]), n2(r["latency_ms"]), n1(r["gflops"]),
                          code(r["command"])] for r in rows]) + "\n")
        md.append("</details>\n")

    def scale_plot(self, models, rows):
        """Log-log samples/s against the MACs each execution runs per sample, at the largest
        batch every network was measured at, one line per implementation and threads, with
        lines of constant GFLOPS for reference (a line parallel to them: cost follows MACs)."""
        common = set.intersection(*(set(m["batches"]) for m in models))
        b = max(common) if common else None
        threads = sorted({r["threads"] for r in rows})
        lines, blocks, pts = [], "", []
        styles = {("cigt", "routed"): 'lc rgb "#1f77b4" pt 7', ("cigt", "dense"):
                  'lc rgb "#17becf" pt 5', ("torch", "routed"): 'lc rgb "#d62728" pt 7',
                  ("torch", "dense"): 'lc rgb "#ff7f0e" pt 5'}
        for t in threads:
            for s in SERIES:
                data = []
                for m in models:
                    r = self.scale_row(m["key"], s[0], s[1], b, t)
                    if r:
                        data.append("%g %g" % (r["macs_per_sample"], r["samples_per_second"]))
                        pts.append((r["macs_per_sample"], r["samples_per_second"]))
                name = "s%d%s%s" % (t, s[0], s[1])
                blocks += self.block(name, sorted(data, key=lambda v: float(v.split()[0])))
                lines.append("$%s using 1:2 with linespoints lw %d dt %d %s title '%s, %d thr'"
                             % (name, 3 if t == max(threads) else 2, 1 if t == max(threads)
                                else 2, styles[s], LABEL[s], t))
        if not pts:
            return "*(no rows at a common batch: scale plot not drawn)*"
        names = []   # each network's name above its cigt routed point
        for m in models:
            r = self.scale_row(m["key"], "cigt", "routed", b, max(threads))
            if r:
                names.append("%g %g %s" % (r["macs_per_sample"], r["samples_per_second"],
                                           m["key"]))
        blocks += self.block("names", names)
        lines.append("$names using 1:2:3 with labels offset 0,1.2 font ',9' notitle")
        xlo, xhi = min(p[0] for p in pts) / 1.6, max(p[0] for p in pts) * 1.6
        ylo, yhi = min(p[1] for p in pts) / 2, max(p[1] for p in pts) * 2
        for g in (1, 10, 100):
            lines.append("%g / (2 * x) with lines lw 1 lc rgb '#888888' dt 4 title '%g GFLOPS'"
                         % (g * 1e9, g))
        script = blocks + (
            'set title "Samples/s against MACs per sample, batch %d (log-log)"\n'
            "set logscale xy\nset xrange [%g:%g]\nset yrange [%g:%g]\n"
            'set xlabel "MACs per sample executed (routed: one path; dense: every expert)"\n'
            'set ylabel "samples/s"\nset format x "%%.0s%%c"\nset format y "%%.0s%%c"\n'
            "set key outside right top\n" % (b, xlo, xhi, ylo, yhi))
        script += "plot " + ", \\\n  ".join(lines) + "\n"
        return self.plot("scale", script, (1100, 600))
