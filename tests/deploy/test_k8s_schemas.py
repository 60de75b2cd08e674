#!/usr/bin/python3
"""deploy/k8s/ against the Kubernetes 1.33 and KServe 0.20 schemas with real validators:
deploy/k8s/validate/validate.mjs --self-test (kubernetes-models' JSON-schema validator and
TypeScript for the Kubernetes kinds, ajv on KServe's CRD schemas for KServe's; every document
valid, and a mutated copy of each refused). Node.js and the npm packages of
deploy/k8s/validate/package-lock.json are needed (`make test` runs `npm ci` there); either
missing is a failure saying how to install it, never a skip.
"""

import os
import subprocess

import deploylib as dl

VALIDATE = os.path.join(dl.SRCDIR, "deploy", "k8s", "validate")

node = dl.need_tool("node", "nodejs")
if not os.path.exists(os.path.join(VALIDATE, "node_modules", ".package-lock.json")):
    dl.die("the validator's npm packages are not installed: run `npm ci` in deploy/k8s/validate "
           "(`make test` does)")
r = subprocess.run([node, os.path.join(VALIDATE, "validate.mjs"), "--self-test"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
print(r.stdout, end="", flush=True)
dl.check(r.returncode == 0, "validate.mjs --self-test exits 0 (got %d)" % r.returncode)
dl.check("k8s-schemas: " in r.stdout and " 0 failed" in r.stdout.splitlines()[-1],
         "its last line reports no failure")
dl.finish("k8s-schemas")
