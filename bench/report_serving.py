"""report_serving.py -- sections 4-6 of bench/RESULTS.md: HTTP throughput and latency, compute
saved (accuracy vs MACs), the compute dial's operating points, and per-expert queues across
batches, each with its tables and plots. Mixed into bench/report.py's Report.
"""

import os

from report_common import FLAT_WITHIN, FORMAT_NAMES, n0, n1, n2, pct, code, table, ReportBase

# The stages of a request cigtd counts (cigt_model_stage_seconds_total), in bench/run's order.
STAGES = ("receive", "wait", "decode", "queue", "engine", "encode")


def fmt_batch(r):
    b = (r.get("daemon_batches") or {}).get("mean_batch_size")
    return "-" if b is None else "%.1f" % b


class ServingSections(ReportBase):
    """Sections 4-6, each appending its markdown to self.md."""

    def section_http(self):  # noqa: C901 (one table after another)
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
        G = H.get("grpc", [])
        if H.get("grpc_skipped"):
            md.append("gRPC: not measured (%s).\n" % H["grpc_skipped"])
        if G:
            md.append("gRPC `ModelInfer` (issue 28) against the same daemon in the same run: "
                      "h2load (nghttp2-client) posting one framed single-image request "
                      "(`bench/http/grpc_body.py`) at *connections x streams* concurrent calls, "
                      "latency percentiles from h2load's per-request log, every call checked "
                      "`OK` by cigtd's own `cigt_grpc_requests_total`; beside it at the same "
                      "concurrency, wrk posting OIP REST binary with the same one image "
                      "(h2load cannot rotate bodies, so neither side does here). *not OK* for "
                      "gRPC counts every status but OK; CANCELLED ones, at most the concurrency, "
                      "are the calls h2load resets when its duration ends:\n")
            t = []
            for r in G:
                L = r["latency_ms"]
                conns = ("%d x %d" % (r["connections"], r["streams_per_connection"])
                         if r["format"] == "grpc" else r["connections"])
                bad = r.get("not_ok_grpc_status")
                if bad is None:
                    e = r["errors"]
                    bad = e["status"] + e["timeout"] + e["connect"] + e["read"] + e["write"]
                else:
                    bad = "%d %s" % (bad, " ".join("%s %d" % (k, v) for k, v in sorted(
                        (r.get("grpc_status_counts") or {}).items()) if k != "OK"))
                t.append([r["format"], r["concurrency"], conns, n0(r["ok_requests_per_second"]),
                          n2(L["p50"]), n2(L["p99"]), n2(L["p99_9"]), bad,
                          fmt_batch(r), code(r["command"])])
            md.append(table(["protocol", "concurrent", "connections (x streams)",
                             "requests/s", "p50 ms", "p99 ms", "p99.9 ms", "not OK",
                             "mean batch", "command"], t) + "\n")
        self.http_stages(rows, G)
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

    def http_stages(self, rows, grpc):
        """Where a request's time goes in cigtd: the mean cost per request of each stage during
        the single-image runs at 1 and 64 connections (a smoke run has neither: all its
        single-image runs), from the daemon_stages bench/run records around each run."""
        md = self.md
        pick = [r for r in rows if r["images_per_request"] == 1 and r["connections"] in (1, 64)]
        if not pick:
            pick = [r for r in rows if r["images_per_request"] == 1]
        pick += [r for r in grpc if r["format"] == "grpc"]
        pick = [r for r in pick if r.get("daemon_stages")]
        if not pick:
            if rows:
                md.append("Cost of each stage of a request: not recorded in this run (no "
                          "daemon_stages: the run predates bench/run's scraping of "
                          "`cigt_model_stage_seconds_total`, or cigtd has no such counters).\n")
            return
        md.append("Where a request's time goes in cigtd (issue 27): the daemon's own stage "
                  "counters (`cigt_model_stage_seconds_total{stage}` and `_runs_total` from "
                  "/metrics, after each single-image run minus before), in µs per request "
                  "decoded, in the order a request meets them. *receive*: from its arrival "
                  "(request line parsed) to its submission to the workers, the loop reading "
                  "the body; *wait*: until a worker starts decoding it; *decode*: parsing the "
                  "body (for gRPC also unpacking the message on the loop), decoding the image, "
                  "converting it to floats and resolving the compute dial; *queue*: the "
                  "sample's wait from being queued to its batch; *engine*: its batch's engine "
                  "time shared among the batch's requests (*per call*: the whole call, what "
                  "each request of the batch waits); *encode*: writing the answer. *in cigtd*: "
                  "arrival to answer sent, the mean of `cigt_model_request_duration_seconds`; "
                  "beyond the stages it holds the hand-off of the answer to the loop, sending "
                  "it and, with more than one request in a batch, the rest of its batch's "
                  "engine call.\n")
        t = []
        for r in pick:
            st = r["daemon_stages"]
            us = [(st["stages"].get(k) or {}).get("us_per_request") for k in STAGES]
            name = "gRPC" if r["format"] == "grpc" else FORMAT_NAMES.get(r["format"],
                                                                         r["format"])
            conns = ("%d x %d" % (r["connections"], r["streams_per_connection"])
                     if r["format"] == "grpc" else r["connections"])
            t.append([name, conns, n0(st["requests"])] + [n1(x) for x in us]
                     + [n1(st.get("engine_us_per_call")), fmt_batch(r),
                        n1(st.get("in_daemon_us_per_request"))])
        md.append(table(["format", "connections", "requests"] + ["%s µs" % k for k in STAGES]
                        + ["engine µs per call", "mean batch", "in cigtd µs"], t) + "\n")
        for c in (1, 64):
            one = next((r for r in pick if r["format"] == "native_json" and
                        r["connections"] == c), None)
            st = (one or {}).get("daemon_stages")
            if not st or not st.get("in_daemon_us_per_request") or \
                    any(k not in st["stages"] for k in STAGES):
                continue
            us = {k: st["stages"][k]["us_per_request"] for k in STAGES}
            # What a request waits for in its batch's engine call is the whole call.
            us["engine"] = st.get("engine_us_per_call") or us["engine"]
            total, within = st["in_daemon_us_per_request"], sum(us.values())
            big = max(us, key=us.get)
            md.append("At %d connection%s a native-JSON request spent %s µs in cigtd: %s, its "
                      "batch's engine call %s (%s of the time in cigtd, the most in *%s*).\n"
                      % (c, "" if c == 1 else "s", n1(total),
                         ", ".join("%s %s" % (k, n1(us[k])) for k in STAGES if k != "engine"),
                         n1(us["engine"]), pct(within / total), big))

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
