#!/usr/bin/python3
"""A real Prometheus (Debian's) scrapes a real cigtd on loopback with deploy/prometheus.yml and
evaluates deploy/alerts.yml.

1. promtool: `check config` and `check rules` pass, `test rules deploy/alerts_test.yml` passes
   (every alert fires on its bad series only), and a copy of the rules with a changed threshold
   fails those unit tests (so they can fail).
2. Every metric name the rules and their unit tests use is one cigtd really exports.
3. Live: after known traffic (N classifications of one image, some bad requests), Prometheus's
   HTTP API returns cigt_requests_total{endpoint="classify",code="200"} == N and a finite p99
   from histogram_quantile over cigt_request_duration_seconds_bucket; every rule evaluates
   without error; one image over and over routes every sample the same way, so
   CigtdRoutingCollapse turns pending while CigtdHighErrorRate stays quiet.
"""

import json
import math
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import yaml

import deploylib as dl

DEPLOY = os.path.join(dl.SRCDIR, "deploy")
N_GOOD, N_BAD = 200, 4


def promtool_checks(promtool, work):
    for args, what in [(["check", "config", os.path.join(DEPLOY, "prometheus.yml")], "config"),
                       (["check", "rules", os.path.join(DEPLOY, "alerts.yml")], "rules"),
                       (["test", "rules", os.path.join(DEPLOY, "alerts_test.yml")],
                        "rule unit tests")]:
        r = subprocess.run([promtool] + args, capture_output=True, text=True)
        dl.check(r.returncode == 0, "promtool %s (%s)" % (" ".join(args[:2]), what)
                 + ("" if r.returncode == 0 else ": " + r.stdout + r.stderr))
    # The unit tests must catch a changed rule.
    mutant = os.path.join(work, "mutant")
    os.mkdir(mutant)
    text = open(os.path.join(DEPLOY, "alerts.yml")).read()
    dl.check(") > 0.95" in text, "collapse threshold found in alerts.yml")
    open(os.path.join(mutant, "alerts.yml"), "w").write(text.replace(") > 0.95", ") > 0.995"))
    open(os.path.join(mutant, "alerts_test.yml"), "w").write(
        open(os.path.join(DEPLOY, "alerts_test.yml")).read())
    r = subprocess.run([promtool, "test", "rules", os.path.join(mutant, "alerts_test.yml")],
                       capture_output=True, text=True)
    dl.check(r.returncode != 0 and "CigtdRoutingCollapse" in r.stdout + r.stderr,
             "the rule unit tests catch a changed collapse threshold")
    r = subprocess.run([promtool, "check", "rules", "/dev/stdin"], input="groups: [{name: x, "
                       "rules: [{alert: A, expr: 'rate(x[5m]'}]}]", capture_output=True, text=True)
    dl.check(r.returncode != 0, "promtool check rules rejects a broken expression")


def metric_names_check(exported):
    """Names in alerts.yml and alerts_test.yml against what cigtd's /metrics shows."""
    base = set()
    for name in exported:
        n = name.split("{")[0]
        base.add(n)
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix):
                base.add(n[:-len(suffix)])
    used = set()
    for f in ("alerts.yml", "alerts_test.yml"):
        used |= set(re.findall(r"\bcigt_[a-z_]+", open(os.path.join(DEPLOY, f)).read()))
    missing = sorted(used - base)
    dl.check(len(used) >= 7 and not missing,
             "the %d cigt_* names in the rules and their tests are exported (missing: %s)"
             % (len(used), missing))


class Prom:
    def __init__(self, port):
        self.port = port

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s" % (self.port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            d = json.load(r)
        if d.get("status") != "success":
            raise RuntimeError("%s: %s" % (path, d))
        return d["data"]

    def query(self, q):
        return self.api("query", query=q)["result"]

    def scalar(self, q):
        """The value of a one-element vector result, or None."""
        res = self.query(q)
        return float(res[0]["value"][1]) if len(res) == 1 else None


def main():
    prometheus = dl.need_tool("prometheus", "prometheus")
    promtool = dl.need_tool("promtool", "prometheus")
    model = dl.need_model()
    work = dl.scratch("cigt-prom-")
    promtool_checks(promtool, work)

    d = dl.Cigtd("--model", model, "--workers", "1")
    prom_proc = None
    try:
        # deploy/prometheus.yml with the test's target, 1 s scrapes and the rules by path.
        cfg = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus.yml")))
        cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = "1s"
        cfg["rule_files"] = [os.path.join(DEPLOY, r) for r in cfg["rule_files"]]
        job = [j for j in cfg["scrape_configs"] if j["job_name"] == "cigtd"][0]
        job["scrape_timeout"] = "1s"
        job["static_configs"][0]["targets"] = ["127.0.0.1:%d" % d.port]
        conf = os.path.join(work, "prometheus.yml")
        yaml.safe_dump(cfg, open(conf, "w"))
        pport = dl.free_port()
        log = open(os.path.join(work, "prometheus.log"), "w")
        prom_proc = subprocess.Popen(
            [prometheus, "--config.file=" + conf, "--storage.tsdb.path=" + work + "/data",
             "--web.listen-address=127.0.0.1:%d" % pport, "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        p = Prom(pport)
        up = dl.wait_for(lambda: p.scalar('up{job="cigtd"}') == 1.0, 30, 0.2)
        if not dl.check(up, "Prometheus on 127.0.0.1:%d scrapes cigtd (up == 1)" % pport):
            return
        # Traffic over a few scrapes: one image again and again, and some bad requests.
        imgs, labels = dl.load_images(1)
        ok = 0
        for i in range(N_GOOD):
            st, a = dl.classify(d.port, imgs[0])
            ok += st == 200
            if i % 50 == 0:
                st, _, _ = dl.http_request(d.port, "POST", "/v1/classify", b"not an image",
                                           {"Content-Type": "application/octet-stream"})
                dl.check(st == 400 or st == 415, "bad request refused (%d)" % st)
            time.sleep(0.01)
        dl.check(ok == N_GOOD, "%d of %d classifications answered 200" % (ok, N_GOOD))
        metric_names_check(dl.metrics(d.port))

        got = dl.wait_for(lambda: p.scalar(
            'cigt_requests_total{job="cigtd",endpoint="classify",code="200"}') == N_GOOD, 20, 0.25)
        dl.check(got, "Prometheus: cigt_requests_total{endpoint=\"classify\",code=\"200\"} == %d"
                 " (got %s)" % (N_GOOD, p.query('cigt_requests_total{endpoint="classify"}')))
        q99 = 'histogram_quantile(0.99, sum by (le) (rate(cigt_request_duration_seconds_bucket' \
              '{job="cigtd"}[1m])))'
        v = p.scalar(q99)
        dl.check(v is not None and math.isfinite(v) and 0 < v < 10,
                 "Prometheus: %s = %s s" % (q99, v))
        print("P99 %s" % v)

        # Rules: evaluated without error; the collapse alert is pending (one image, one route),
        # the error-rate alert is not (4 client errors are not server failures).
        def collapse_pending():
            return any(a["labels"]["alertname"] == "CigtdRoutingCollapse"
                       for a in p.api("alerts")["alerts"])
        dl.check(dl.wait_for(collapse_pending, 15, 0.25),
                 "CigtdRoutingCollapse pending after one image routed %d times" % N_GOOD)
        alerts = p.api("alerts")["alerts"]
        layers = sorted(a["labels"].get("layer") for a in alerts
                        if a["labels"]["alertname"] == "CigtdRoutingCollapse")
        dl.check(layers == ["1", "2"], "collapse flagged on layers 1 and 2, not the one-expert "
                 "layer 0 (got %s)" % layers)
        others = sorted({a["labels"]["alertname"] for a in alerts} - {"CigtdRoutingCollapse"})
        dl.check(not others, "no other alert pending or firing (got %s)" % others)
        groups = p.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
        dl.check(len(rules) == 8 and not bad, "all %d rules evaluate without error (bad: %s)"
                 % (len(rules), bad))
    finally:
        if prom_proc:
            prom_proc.terminate()
            try:
                prom_proc.wait(30)
            except subprocess.TimeoutExpired:
                prom_proc.kill()
        rc = d.stop()
    dl.check(rc == 0, "cigtd exit 0")
    dl.finish("prometheus")


if __name__ == "__main__":
    main()
