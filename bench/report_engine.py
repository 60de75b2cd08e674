"""report_engine.py -- sections 1-3 of bench/RESULTS.md: the engine (routed vs dense vs ungrouped
vs PyTorch), its per-part profile, and training, each with its table and plot. Mixed into
bench/report.py's Report.
"""

from report_common import PARTS, n0, n1, pct, code, table, ReportBase


class EngineSections(ReportBase):
    """Sections 1-3, each appending its markdown to self.md."""

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
