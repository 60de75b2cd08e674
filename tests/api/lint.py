#!/usr/bin/env python3
"""Lints proto/http-api.yaml with a real OpenAPI validator: Redocly's CLI (@redocly/cli,
pinned in tests/api/package-lock.json, installed into tests/api/node_modules by `npm ci`) with
the rules in tests/api/redocly.yaml (recommended, every warning an error). Any problem fails
the test with the linter's own line:column messages; a missing linter fails it too, saying how
to install it (never a silent skip).

usage: lint.py [SRCDIR]
"""

import json
import os
import shutil
import subprocess
import sys

src = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
here = os.path.join(src, "tests", "api")
spec = os.path.join(src, "proto", "http-api.yaml")
redocly = os.path.join(here, "node_modules", ".bin", "redocly")

if not os.path.exists(redocly):
    print("FAIL: the OpenAPI linter is not installed (%s is missing).\n"
          "Install it with `make api-lint-deps` (= npm ci --ignore-scripts --prefix tests/api;\n"
          "needs node >= 18.17 and npm: Debian's nodejs and npm packages do, `make deps` installs\n"
          "them). node: %s, npm: %s" % (redocly, shutil.which("node"), shutil.which("npm")))
    sys.exit(1)

env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
           NO_COLOR="1")
p = subprocess.run([redocly, "lint", "--config", os.path.join(here, "redocly.yaml"),
                    "--format", "json", spec], capture_output=True, text=True, env=env,
                   timeout=240)
try:
    report = json.loads(p.stdout)
except ValueError:
    print("FAIL: redocly lint did not print a JSON report (exit %d)\nstdout:\n%s\nstderr:\n%s"
          % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    sys.exit(1)

problems = report.get("problems", [])
for pr in problems:
    loc = (pr.get("location") or [{}])[0]
    print("%s %s: %s %s: %s" % (os.path.relpath(spec, src), loc.get("pointer", "?"),
                                pr.get("severity"), pr.get("ruleId"), pr.get("message")))
sys.stdout.flush()
if problems:  # the same again with line:column and the offending lines
    subprocess.run([redocly, "lint", "--config", os.path.join(here, "redocly.yaml"),
                    "--format", "stylish", spec], env=env, timeout=240)
t = report.get("totals", {})
print("redocly %s: %d errors, %d warnings, %d ignored" % (report.get("version"),
      t.get("errors", 0), t.get("warnings", 0), t.get("ignored", 0)))
if problems or p.returncode != 0:
    print("FAIL: proto/http-api.yaml has problems (rules: tests/api/redocly.yaml)")
    sys.exit(1)
print("ok: proto/http-api.yaml is a valid OpenAPI 3 description with no warnings")
