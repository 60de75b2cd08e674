"""report_precision.py -- section 1c of bench/RESULTS.md: the engine's backends and precisions
(OpenBLAS fp32, oneDNN fp32, bf16 and int8) beside PyTorch fp32 and bf16 autocast on two
networks, each row's GFLOPS as a fraction of the machine's matmul peak in its precision and of
OpenBLAS sgemm, all measured in the same run (issue 27 point 5), with a plot of the fractions
against batch; the int8 copies and what quantizing changed; cigtd serving the benchmark model in
each precision at 64 connections. Mixed into bench/report.py's Report.
"""

from report_common import n0, n1, n2, code, table, ReportBase

# (impl, backend, precision) in table order, with labels and plot styles.
SERIES = [("cigt", "openblas", "fp32"), ("cigt", "onednn", "fp32"), ("cigt", "onednn", "bf16"),
          ("cigt", "onednn", "int8"), ("torch", "torch", "fp32"), ("torch", "torch", "bf16")]
OB32, DN32, DN16, DN8, PT32, PT16 = SERIES
LABEL = {OB32: "cigt OpenBLAS fp32", DN32: "cigt oneDNN fp32", DN16: "cigt oneDNN bf16",
         DN8: "cigt oneDNN int8", PT32: "PyTorch fp32", PT16: "PyTorch bf16"}
PRECISION_REF = ("openblas", "fp32")   # the agreement table's reference backend
STYLE = {OB32: 'lc rgb "#1f77b4" pt 7', DN32: 'lc rgb "#2ca02c" pt 5',
         DN16: 'lc rgb "#9467bd" pt 9', DN8: 'lc rgb "#8c564b" pt 11',
         PT32: 'lc rgb "#d62728" pt 7', PT16: 'lc rgb "#ff7f0e" pt 9'}
PEAK_TYPES = [("f32", "oneDNN f32 matmul"), ("bf16", "oneDNN bf16 matmul"),
              ("int8", "oneDNN int8 matmul (u8 x s8, s32 sums)")]


def sps(x):
    """Samples/s: whole numbers, one decimal below 10 (ResNet-110 on one core)."""
    return n0(x) if x >= 10 else n1(x)


def frac(x):
    """A fraction as a percentage: whole percents, one decimal below 10%."""
    if x is None:
        return "—"
    return "{:.0f}%".format(100 * x) if x >= 0.1 else "{:.1f}%".format(100 * x)


def share(x):
    """An agreement share as a percentage with one decimal (100.0% only when every one is)."""
    if x is None:
        return "—"
    return "100%" if x == 1 else "{:.1f}%".format(min(100 * x, 99.9))


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
        md.append("## 1c. Precision: OpenBLAS, oneDNN fp32, bf16 and int8 beside PyTorch, "
                  "against the machine's peak\n")
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
                  "fp32|bf16|int8`; bf16 = bf16 weights and inputs, fp32 sums; int8 = s8 "
                  "weights per output channel, u8/s8 inputs per tensor, s32 sums, routers "
                  "fp32, run on the network's int8 copy made by `cigt quantize`; threads are "
                  "workers with one BLAS/oneDNN thread each) and PyTorch routed on the same "
                  "file (`bench/torch_trellis.py`, the `cigt.torch` module; bf16 = "
                  "`torch.autocast(\"cpu\", dtype=torch.bfloat16)`; no int8). The peak is a "
                  "oneDNN matmul of a large square (`bench/peak/dnnl_peak`) in f32, bf16 and "
                  "int8 with the same threads, measured in this run; sgemm is OpenBLAS's "
                  "1024^3 (`cigt bench --sgemm`). A row's fraction of peak is against the peak "
                  "of its own precision; for int8, GFLOPS are giga int8 operations a second "
                  "(2 per multiply-accumulate, as for the others). ResNet-110 is section 1b's "
                  "random-weight file and runs on its tinted Fashion-MNIST images.\n")
        self.precision_peaks(P)
        threads = sorted({r["threads"] for r in P["rows"]})
        for m in P["models"]:
            self.precision_tables(m, P["rows"], threads)
        md.append(self.precision_plot(P["models"], P["rows"], threads) + "\n")
        self.precision_summary(P["models"], threads)
        self.precision_int8(P["models"])
        self.precision_agreement(P.get("agreement") or [])
        self.precision_http(P.get("http") or {})
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
        types = [(t, name) for t, name in PEAK_TYPES if any(p["type"] == t for p in peaks)]
        rows = []
        for t in sorted({p["threads"] for p in peaks}):
            got = {p["type"]: p for p in peaks if p["threads"] == t}
            f, s = got.get("f32"), sg.get(t)
            rows.append([t] + ["%s (`%s`)" % (n1(got[k]["gflops"]), got[k].get("impl"))
                               if k in got else "—" for k, _ in types] +
                        ["%.2fx" % (got[k]["gflops"] / f["gflops"]) if f and k in got else "—"
                         for k, _ in types if k != "f32"] +
                        [n1(s["gflops"]) if s else "—",
                         code(next(iter(got.values()))["command"]) if got else "—"])
        size = peaks[0]["size"] if peaks else "—"
        md = self.md
        md.append("The machine's peak, GFLOPS (int8: giga operations a second), each the "
                  "better of two measurements, before the rows and after them (both in the "
                  "JSON, `gflops_measured`):\n")
        md.append(table(["threads"] + ["%s %s^3" % (name, size) for _, name in types] +
                        ["%s / f32" % k for k, _ in types if k != "f32"] +
                        ["OpenBLAS sgemm 1024^3", "peak command"], rows) + "\n")

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
        """bf16 and int8 against fp32 on each side, and cigt against PyTorch in each precision,
        at the largest batch and thread count."""
        t = max(threads)
        lines = []
        for m in models:
            b = max(m["knob"]["batches"])
            r = {s: self.precision_row(m["key"], s, b, t) for s in SERIES}

            def ratio(a, c):
                return "%.2fx" % (r[a]["samples_per_second"] / r[c]["samples_per_second"]) \
                    if r[a] and r[c] else "—"
            lines.append([m["key"], b, t, ratio(DN16, OB32), ratio(DN16, DN32),
                          ratio(DN8, OB32), ratio(DN8, DN16), ratio(PT16, PT32),
                          ratio(OB32, PT32), ratio(DN16, PT16)])
        self.md.append("Ratios of samples/s at the largest batch and thread count:\n")
        self.md.append(table(["network", "batch", "threads", "cigt bf16 / OpenBLAS fp32",
                              "cigt bf16 / oneDNN fp32", "cigt int8 / OpenBLAS fp32",
                              "cigt int8 / bf16", "PyTorch bf16 / fp32",
                              "cigt OpenBLAS fp32 / PyTorch fp32", "cigt bf16 / PyTorch bf16"],
                             lines) + "\n")

    def precision_int8(self, models):
        """The int8 copies: what `cigt quantize` calibrated on and what it measured there."""
        rows = []
        for m in models:
            q = m.get("int8")
            if not q:
                continue
            s = q.get("summary") or {}
            n = s.get("images")

            def pc(x):
                return "%.2f%%" % x if x is not None else "—"
            rows.append([m["key"], "%s %s images" % (n if n is not None else "?",
                                                     s.get("split") or ""),
                         pc(s.get("fp32_accuracy")), pc(s.get("int8_accuracy")),
                         "%s / %s" % (s.get("classes_changed", "—"),
                                      s.get("routes_changed", "—")),
                         "made" if q.get("made_now") else "reused (same command and inputs)",
                         code(q["command"])])
        if not rows:
            return
        self.md.append("The int8 copies (`cigt quantize`: each expert conv and linear's input "
                       "range measured in fp32; the weights are not changed). The benchmark "
                       "model calibrates on the validation split its training held out; the "
                       "random-weight ResNet-110 has none and calibrates on its own colour "
                       "folder, the same images its rows and its agreement row run on, so its "
                       "agreement below is not held out. Accuracy and changes are `cigt "
                       "quantize`'s own, on the calibration images:\n")
        self.md.append(table(["network", "calibrated on", "fp32 accuracy", "int8 accuracy",
                              "classes / routes changed", "this run", "command"], rows) + "\n")

    def precision_agreement(self, agr):
        if not agr:
            return
        self.md.append("What bf16 and int8 change in the answers: each backend's predictions "
                       "on the first test inputs (`cigt eval --dump`; int8 on the int8 copy) "
                       "against OpenBLAS fp32's (accuracy means something only on a trained "
                       "network):\n")
        self.md.append(table(["network", "backend", "inputs", "accuracy", "same class",
                              "same route", "command"],
                             [[a["model"], "%s %s%s" % (
                                 a["backend"], a["precision"], " (reference)" if
                                 (a["backend"], a["precision"]) == PRECISION_REF else ""),
                               a["samples"], "%.4f" % a["accuracy"] if a.get("accuracy")
                               is not None else "—", share(a["same_class"]),
                               share(a["same_route"]), code(a["command"])] for a in agr])
                       + "\n")

    def precision_http(self, H):
        """cigtd serving the benchmark model in each precision, wrk at 64 connections."""
        md = self.md
        if not H.get("rows"):
            if H.get("skipped") or H.get("error"):
                md.append("HTTP in each precision: not measured (%s).\n"
                          % (H.get("skipped") or H.get("error")))
            return
        rows = H["rows"]
        c = rows[0]["connections"]
        ref = next((r for r in rows if (r["backend"], r["precision"]) == PRECISION_REF), None)
        dropped = H.get("dropped_points") or []
        md.append("HTTP at %d connections in each precision (issue 27 point 5): cigtd serving "
                  "the benchmark model, one daemon after another in this run, wrk posting "
                  "native JSON, one image a request (section 4's bodies and script; wrk on the "
                  "same cores as the daemon). Every daemon serves the same file, `%s`, the "
                  "int8 copy%s; fp32 and bf16 read it as the fp32 model, so the rows differ in "
                  "`--backend` and `--precision` alone. Requests take the default point, the "
                  "single path.%s\n" % (
                      c, H.get("served"), " without its escalating operating points" if dropped
                      else "",
                      " The %d escalating points (%s) are dropped because cigtd builds a model's "
                      "second models in its own precision: an int8 second model needs a "
                      "quantization table, adding one changes the sha256 the point pins, and "
                      "cigtd refuses the whole int8 copy." % (len(dropped), ", ".join(
                          "`%s`" % d for d in dropped)) if dropped else ""))
        out = []
        for r in rows:
            lat = r["latency_ms"]
            out.append(["%s %s" % (r["backend"], r["precision"]), code(r.get("engine")),
                        n0(r["ok_requests_per_second"]),
                        "%.2fx" % (r["ok_requests_per_second"] / ref["ok_requests_per_second"])
                        if ref and ref["ok_requests_per_second"] else "—",
                        n2(lat["p50"]), n2(lat["p99"]),
                        n1((r.get("daemon_batches") or {}).get("mean_batch_size")),
                        r["errors"]["status"], code(r["server_command"])])
        md.append(table(["precision", "engine (/v1/model)", "req/s", "of OpenBLAS fp32",
                         "p50 ms", "p99 ms", "mean engine batch", "non-2xx", "server"], out)
                  + "\n")
        best = max(rows, key=lambda r: r["ok_requests_per_second"])
        if ref and best is not ref:
            md.append("Most requests a second in this run: **%s %s**, %s req/s against OpenBLAS "
                      "fp32's %s (%.2fx), p99 %s ms against %s ms (one %.0f s wrk run each: "
                      "on shared cores, precisions within a few tens of percent of each other "
                      "are not told apart).\n" % (
                          best["backend"], best["precision"], n0(best["ok_requests_per_second"]),
                          n0(ref["ok_requests_per_second"]),
                          best["ok_requests_per_second"] / ref["ok_requests_per_second"],
                          n2(best["latency_ms"]["p99"]), n2(ref["latency_ms"]["p99"]),
                          best["seconds"]))
        md.append("wrk: %s\n" % code(rows[0]["command"]))

    def precision_plot(self, models, rows, threads):
        """Per network, each implementation's GFLOPS as a fraction of its precision's peak
        against batch (log x), solid at the most threads, dashed at fewer."""
        script = ('set multiplot layout 1,%d title "GFLOPS as a fraction of the peak of the '
                  'same precision and threads"\n' % len(models))
        script += ('set logscale x 2\nset xlabel "batch"\nset ylabel "of peak (%)"\n'
                   "set yrange [0:*]\nset key outside bottom center horizontal maxrows 6 "
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
