"""report_precision.py -- section 1c of bench/RESULTS.md: the engine's backends and precisions
(OpenBLAS fp32, oneDNN fp32, oneDNN bf16) beside PyTorch fp32 and bf16 autocast on two networks,
each row's GFLOPS as a fraction of the machine's matmul peak in its precision and of OpenBLAS
sgemm, all measured in the same run (issue 27 point 5), with a plot of the fractions against
batch. Mixed into bench/report.py's Report.
"""

from report_common import n0, n1, n2, code, table, ReportBase

# (impl, backend, precision) in table order, with labels and plot styles.
SERIES = [("cigt", "openblas", "fp32"), ("cigt", "onednn", "fp32"), ("cigt", "onednn", "bf16"),
          ("torch", "torch", "fp32"), ("torch", "torch", "bf16")]
LABEL = {SERIES[0]: "cigt OpenBLAS fp32", SERIES[1]: "cigt oneDNN fp32",
         SERIES[2]: "cigt oneDNN bf16", SERIES[3]: "PyTorch fp32", SERIES[4]: "PyTorch bf16"}
PRECISION_REF = ("openblas", "fp32")   # the agreement table's reference backend
STYLE = {SERIES[0]: 'lc rgb "#1f77b4" pt 7', SERIES[1]: 'lc rgb "#2ca02c" pt 5',
         SERIES[2]: 'lc rgb "#9467bd" pt 9', SERIES[3]: 'lc rgb "#d62728" pt 7',
         SERIES[4]: 'lc rgb "#ff7f0e" pt 9'}


def sps(x):
    """Samples/s: whole numbers, one decimal below 10 (ResNet-110 on one core)."""
    return n0(x) if x >= 10 else n1(x)


def frac(x):
    """A fraction as a percentage: whole percents, one decimal below 10%."""
    if x is None:
        return "—"
    return "{:.0f}%".format(100 * x) if x >= 0.1 else "{:.1f}%".format(100 * x)


def key(r):
    return (r["impl"], r["backend"], r["precision"])


class PrecisionSections(ReportBase):
    """Section 1c, appending its markdown to self.md."""

    def precision_row(self, model, series, batch, threads):
        for r in self.sec("precision").get("rows", []):
            if r["model"] == model and key(r) == series and r["batch"] == batch and \
                    r["threads"] == threads:
                return r
        return None

    def section_precision(self):
        md = self.md
        P = self.sec("precision")
        md.append("## 1c. Precision: OpenBLAS, oneDNN fp32 and bf16 beside PyTorch, against "
                  "the machine's peak\n")
        if not P.get("rows"):
            md.append("Not measured: %s\n" % (P.get("error") or "section not run"))
            return
        flags = P.get("isa_flags") or {}
        amx = [f for f in ("amx_tile", "amx_bf16", "amx_int8") if flags.get(f)]
        md.append("CPU: **%s**; avx512_bf16 **%s**, avx512_vnni **%s**, AMX **%s**; oneDNN "
                  "dispatches to `%s`; PyTorch %s's own kernels are built for %s (its convs "
                  "and matmuls go through its bundled oneDNN).\n" % (
                      P.get("cpu_model") or "unknown",
                      "yes" if flags.get("avx512_bf16") else "no",
                      "yes" if flags.get("avx512_vnni") else "no",
                      ", ".join(amx) if amx else "no", P.get("onednn_isa") or "—",
                      P.get("torch_version") or "", P.get("torch_cpu_capability") or "—"))
        md.append("`cigt bench` routed on each backend (`--backend openblas|onednn --precision "
                  "fp32|bf16`; bf16 = bf16 weights and inputs, fp32 sums; threads are workers "
                  "with one BLAS/oneDNN thread each) and PyTorch routed on the same file "
                  "(`bench/torch_trellis.py`, the `cigt.torch` module; bf16 = "
                  "`torch.autocast(\"cpu\", dtype=torch.bfloat16)`). The peak is a oneDNN "
                  "matmul of a large square (`bench/peak/dnnl_peak`) in f32 and in bf16 with "
                  "the same threads, measured in this run; sgemm is OpenBLAS's 1024^3 "
                  "(`cigt bench --sgemm`). A row's fraction of peak is against the peak of its "
                  "own precision. ResNet-110 is section 1b's random-weight file and runs on its "
                  "tinted Fashion-MNIST images.\n")
        self.precision_peaks(P)
        threads = sorted({r["threads"] for r in P["rows"]})
        for m in P["models"]:
            self.precision_tables(m, P["rows"], threads)
        md.append(self.precision_plot(P["models"], P["rows"], threads) + "\n")
        self.precision_summary(P["models"], threads)
        self.precision_agreement(P.get("agreement") or [])
        md.append("<details><summary>Every row with the command that reproduces it</summary>\n")
        md.append(table(["network", "implementation", "threads", "batch", "samples/s",
                         "latency ms", "GFLOPS", "of peak", "of sgemm", "command"],
                        [[r["model"], LABEL[key(r)], r["threads"], r["batch"],
                          sps(r["samples_per_second"]), n2(r["latency_ms"]), n1(r["gflops"]),
                          frac(r.get("fraction_of_peak")), frac(r.get("fraction_of_sgemm")),
                          code(r["command"])] for r in P["rows"]]) + "\n")
        md.append("</details>\n")

    def precision_peaks(self, P):
        peaks, sg = P.get("peaks") or [], {s["threads"]: s for s in P.get("sgemm") or []}
        rows = []
        for t in sorted({p["threads"] for p in peaks}):
            f = next((p for p in peaks if p["threads"] == t and p["type"] == "f32"), None)
            b = next((p for p in peaks if p["threads"] == t and p["type"] == "bf16"), None)
            s = sg.get(t)
            rows.append([t, "%s (`%s`)" % (n1(f["gflops"]), f.get("impl")) if f else "—",
                         "%s (`%s`)" % (n1(b["gflops"]), b.get("impl")) if b else "—",
                         "%.2fx" % (b["gflops"] / f["gflops"]) if f and b else "—",
                         n1(s["gflops"]) if s else "—", code(f["command"]) if f else "—"])
        size = peaks[0]["size"] if peaks else "—"
        md = self.md
        md.append("The machine's peak, GFLOPS:\n")
        md.append(table(["threads", "oneDNN f32 matmul %s^3" % size,
                         "oneDNN bf16 matmul %s^3" % size, "bf16 / f32", "OpenBLAS sgemm "
                         "1024^3", "peak command"], rows) + "\n")

    def precision_tables(self, m, rows, threads):
        md = self.md
        batches = m["knob"]["batches"]
        md.append("**%s** (`%s`, %s MACs per routed sample, %s):\n" % (
            m["key"], m["path"], n0(m["path_macs"]), "trained" if m.get("trained") else
            "random weights, made with `%s`" % m["made_by"] if m.get("made_by") else
            "untrained"))
        out = []
        for t in threads:
            for s in SERIES:
                cells = []
                for b in batches:
                    r = self.precision_row(m["key"], s, b, t)
                    cells.append("%s/s · %s GF · %s" % (sps(r["samples_per_second"]),
                                                        n1(r["gflops"]),
                                                        frac(r.get("fraction_of_peak")))
                                 if r else "—")
                out.append(["%s, %d thr" % (LABEL[s], t)] + cells)
        md.append(table(["samples/s · GFLOPS · of its peak"] +
                        ["batch %d" % b for b in batches], out) + "\n")

    def precision_summary(self, models, threads):
        """bf16 against fp32 on each side, and cigt against PyTorch in each precision, at the
        largest batch and thread count."""
        t = max(threads)
        lines = []
        for m in models:
            b = max(m["knob"]["batches"])
            r = {s: self.precision_row(m["key"], s, b, t) for s in SERIES}

            def ratio(a, c):
                return "%.2fx" % (r[a]["samples_per_second"] / r[c]["samples_per_second"]) \
                    if r[a] and r[c] else "—"
            lines.append([m["key"], b, t, ratio(SERIES[2], SERIES[0]),
                          ratio(SERIES[2], SERIES[1]), ratio(SERIES[4], SERIES[3]),
                          ratio(SERIES[0], SERIES[3]), ratio(SERIES[2], SERIES[4])])
        self.md.append("Ratios of samples/s at the largest batch and thread count:\n")
        self.md.append(table(["network", "batch", "threads", "cigt bf16 / OpenBLAS fp32",
                              "cigt bf16 / oneDNN fp32", "PyTorch bf16 / fp32",
                              "cigt OpenBLAS fp32 / PyTorch fp32", "cigt bf16 / PyTorch bf16"],
                             lines) + "\n")

    def precision_agreement(self, agr):
        if not agr:
            return
        self.md.append("What bf16 changes in the answers: each backend's predictions on the "
                       "first test inputs (`cigt eval --dump`) against OpenBLAS fp32's "
                       "(accuracy means something only on a trained network):\n")
        self.md.append(table(["network", "backend", "inputs", "accuracy", "same class",
                              "same route", "command"],
                             [[a["model"], "%s %s%s" % (
                                 a["backend"], a["precision"], " (reference)" if
                                 (a["backend"], a["precision"]) == PRECISION_REF else ""),
                               a["samples"], "%.4f" % a["accuracy"] if a.get("accuracy")
                               is not None else "—", frac(a["same_class"]),
                               frac(a["same_route"]), code(a["command"])] for a in agr])
                       + "\n")

    def precision_plot(self, models, rows, threads):
        """Per network, each implementation's GFLOPS as a fraction of its precision's peak
        against batch (log x), solid at the most threads, dashed at fewer."""
        script = ('set multiplot layout 1,%d title "GFLOPS as a fraction of the peak of the '
                  'same precision and threads"\n' % len(models))
        script += ('set logscale x 2\nset xlabel "batch"\nset ylabel "of peak (%)"\n'
                   "set yrange [0:*]\nset key outside bottom center horizontal maxrows 5 "
                   "font ',9'\n")
        drawn = False
        for k, m in enumerate(models):
            blocks, lines = "", []
            for t in threads:
                for s in SERIES:
                    data = []
                    for b in m["knob"]["batches"]:
                        r = self.precision_row(m["key"], s, b, t)
                        if r and r.get("fraction_of_peak") is not None:
                            data.append("%d %g" % (b, 100 * r["fraction_of_peak"]))
                    if not data:
                        continue
                    name = "p%d_%d_%s_%s_%s" % (k, t, *s)
                    blocks += self.block(name, data)
                    full = t == max(threads)
                    lines.append("$%s using 1:2 with linespoints lw %d dt %d %s title '%s, %d "
                                 "thr'" % (name, 2 if full else 1, 1 if full else 2, STYLE[s],
                                           LABEL[s], t))
            if not lines:
                continue
            drawn = True
            bs = m["knob"]["batches"]
            script += blocks + 'set title "%s"\nset xrange [%g:%g]\n' % (
                m["key"], min(bs) / 1.5, max(bs) * 1.5)
            script += "plot " + ", \\\n  ".join(lines) + "\n"
        if not drawn:
            return "*(no rows with a peak: precision plot not drawn)*"
        return self.plot("precision", script + "unset multiplot\n", (1200, 680))
