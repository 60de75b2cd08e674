#!/usr/bin/python3
"""report.py -- bench/RESULTS.md and its plots, regenerated from one results JSON of bench/run.

  bench/report.py bench/results/2026-11-27-host.json [--out bench]

Writes OUT/RESULTS.md and OUT/plots/*.png (gnuplot, pngcairo; without gnuplot the tables are
still written and the report says the plots are missing). Reads nothing but the JSON, so the
report can be rebuilt, or its wording changed, without re-running a benchmark. The targets of
issue 6 are judged here, from the figures, never asserted anywhere: a smoke run's figures are
not judged at all.

The sections are in report_engine.py (1-3), report_scale.py (1b), report_precision.py (1c) and
report_serving.py (4-6), the shared formatting, lookups and plotting in report_common.py; this
file writes the header and the targets.
"""

import argparse
import json
import os
import sys

from report_common import BUSY_WARN, FORMAT_NAMES, n0, n1, n2, pct, table
from report_engine import EngineSections
from report_precision import PrecisionSections
from report_scale import ScaleSections
from report_serving import ServingSections


class Report(EngineSections, ScaleSections, PrecisionSections, ServingSections):
    """The whole of RESULTS.md: header, targets, sections 1-6 (write)."""

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

    # ---------------------------------------------------------------- sections

    def header(self):
        R, m, v = self.R, self.R.get("machine", {}), self.R.get("versions", {})
        md = self.md
        md.append("# cigt benchmark results\n")
        if self.smoke:
            md.append("> **SMOKE RUN — NOT A MEASUREMENT.** Every figure below comes from "
                      "`bench/run --smoke`, which runs each part for a fraction of a second "
                      "only to prove the suite works; none of them says anything about speed "
                      "and no target is judged. Run `make bench` (about 18 minutes, idle "
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

    def write(self, json_rel):
        self.json_rel = json_rel
        self.header()
        self.section_targets()
        self.section_engine()
        self.section_scale()
        self.section_precision()
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
