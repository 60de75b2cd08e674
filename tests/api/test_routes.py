#!/usr/bin/env python3
"""The paths and methods of proto/http-api.yaml against cigtd's route table (src/server/route.c,
printed by the api_routes program), both ways: every documented operation is a route with
that method, and every route and method cigtd serves is documented. (test_responses.py then
asks a running cigtd every documented operation, and 405 for the methods a path does not take.)

usage: test_routes.py API_ROUTES_EXE SRCDIR
"""

import os
import subprocess
import sys

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

exe, src = sys.argv[1], sys.argv[2]
with open(os.path.join(src, "proto", "http-api.yaml")) as f:
    spec = yaml.safe_load(f)
documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in METHODS}
out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
served = {tuple(line.split(" ", 1)) for line in out.splitlines()}

fail = False
for m, p in sorted(documented - served, key=lambda x: (x[1], x[0])):
    print("FAIL: documented but not served: %s %s" % (m, p))
    fail = True
for m, p in sorted(served - documented, key=lambda x: (x[1], x[0])):
    print("FAIL: served but not in proto/http-api.yaml: %s %s" % (m, p))
    fail = True
print("%d operations documented, %d served" % (len(documented), len(served)))
sys.exit(1 if fail else 0)
