#!/usr/bin/python3
"""deploy/k8s/ without a cluster: every manifest parses (python3-yaml) and carries what the issue
asks for, checked against each other, deploy/Dockerfile and proto/http-api.yaml:

- Deployment: liveness on /v2/health/live (the image's `cigtd --healthcheck`, run as the probe's
  exec; podman kube play runs it too) and readiness on /v2/health/ready (paths the API
  defines, ports that resolve to the container's 8080), a preStop wait, and
  terminationGracePeriodSeconds above preStop + the image's --drain-timeout-ms; CPU and memory
  requests and limits; --workers no more than the CPU limit; non-root with the image's uid.
- Service selects the Deployment's pods and targets its port; the HPA (autoscaling/v2) scales
  that Deployment on CPU (which needs the CPU request); the PodDisruptionBudget selects the pods.
- KServe: a ServingRuntime speaking v2 and grpc-v2 for a model format that the InferenceService
  names, which uses that runtime with protocolVersion v2 and a storageUri; the runtime's --model
  lies under /mnt/models and is the shipped model's file name; the gRPC InferenceService
  (deploy/k8s/grpc/) uses the same runtime with protocolVersion grpc-v2 on an h2c port that is
  the image's --grpc-listen port, which the Deployment and the Service also name.
A mutated copy of each manifest must be caught (the checks can fail), and a real cigtd started
with the image's entrypoint arguments plus the Deployment's answers every probe path with 200
and drains to exit 0 on SIGTERM.
"""

import copy
import glob
import os
import re
import shlex
import signal
import subprocess

import yaml

import deploylib as dl

K8S = os.path.join(dl.SRCDIR, "deploy", "k8s")


def grpc_port():
    """The port of the image's --grpc-listen (issue 28), or None."""
    _, entry, _ = dockerfile_facts()
    return int(entry[entry.index("--grpc-listen") + 1].rsplit(":", 1)[1]) \
        if "--grpc-listen" in entry else None


def dockerfile_facts():
    """The runtime stage's USER uid, ENTRYPOINT list and its --drain-timeout-ms (ms)."""
    text = open(os.path.join(dl.SRCDIR, "deploy", "Dockerfile")).read().replace("\\\n", " ")
    uid = int(re.findall(r"^USER (\d+)", text, re.M)[-1])
    entry = yaml.safe_load(re.findall(r"^ENTRYPOINT (\[.*\])", text, re.M)[-1])
    drain = int(entry[entry.index("--drain-timeout-ms") + 1])
    return uid, entry, drain


def api_paths():
    return set(yaml.safe_load(open(os.path.join(dl.SRCDIR, "proto", "http-api.yaml")))["paths"])


def cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def probe_target(probe, container):
    """(path, port) a probe asks: an httpGet, or an exec of the image's
    `cigtd --healthcheck http://127.0.0.1:PORT/PATH`; (None, None) for anything else."""
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        if not isinstance(port, int):
            named = [p["containerPort"] for p in container.get("ports", [])
                     if p.get("name") == port]
            port = named[0] if named else None
        return probe["httpGet"].get("path"), port
    cmd = probe.get("exec", {}).get("command", [])
    m = re.match(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\S*)$", cmd[2]) \
        if len(cmd) == 3 and cmd[0].endswith("/cigtd") and cmd[1] == "--healthcheck" else None
    return (m.group(2), int(m.group(1))) if m else (None, None)


def check_container(c, uid, drain_ms, paths, pod_sc, problems, where, grace=None):
    def need(cond, what):
        if not cond:
            problems.append("%s: %s" % (where, what))
    ports = [p["containerPort"] for p in c.get("ports", [])]
    need(8080 in ports, "container port 8080 (the image listens there)")
    for kind, path in [("livenessProbe", "/v2/health/live"), ("readinessProbe", "/v2/health/ready")]:
        p = c.get(kind)
        got, port = probe_target(p, c) if p else (None, None)
        need(got == path, "%s on %s (an httpGet or the image's cigtd --healthcheck)"
             % (kind, path))
        if p:
            need(got in paths, "%s path is in proto/http-api.yaml" % kind)
            need(port == 8080, "%s port resolves to 8080" % kind)
    res = c.get("resources", {})
    for k in ("cpu", "memory"):
        need(k in res.get("requests", {}), "resources.requests.%s" % k)
        need(k in res.get("limits", {}), "resources.limits.%s" % k)
    args = c.get("args", [])
    if "--workers" in args and "cpu" in res.get("limits", {}):
        w = int(args[args.index("--workers") + 1])
        need(1 <= w <= cpu(res["limits"]["cpu"]), "--workers %d within the CPU limit" % w)
    sc = dict(pod_sc or {}, **c.get("securityContext", {}))
    need(sc.get("runAsNonRoot") is True, "runAsNonRoot")
    need(sc.get("runAsUser") == uid, "runAsUser is the image's uid %d" % uid)
    need(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
         "allowPrivilegeEscalation: false")
    need("ALL" in c.get("securityContext", {}).get("capabilities", {}).get("drop", []),
         "capabilities drop ALL")
    if grace is not None:
        pre = c.get("lifecycle", {}).get("preStop", {})
        cmd = pre.get("exec", {}).get("command", [])
        wait = None
        if len(cmd) == 2 and cmd[0].endswith("sleep"):
            wait = float(cmd[1])
        elif "sleep" in pre:
            wait = float(pre["sleep"]["seconds"])
        need(wait is not None and wait > 0, "a preStop wait")
        if wait is not None:
            d = drain_ms
            if "--drain-timeout-ms" in args:
                d = int(args[args.index("--drain-timeout-ms") + 1])
            need(grace >= wait + d / 1000 + 2,
                 "terminationGracePeriodSeconds %s covers preStop %g s + drain %g s + 2"
                 % (grace, wait, d / 1000))


def check_all(docs, uid, drain_ms, paths):
    """All problems found in a set of manifests, as strings (empty: all good)."""
    problems = []
    by = {}
    for d in docs:
        by.setdefault(d.get("kind"), []).append(d)

    def one(kind):
        got = by.get(kind, [])
        if len(got) != 1:
            problems.append("expected one %s, found %d" % (kind, len(got)))
            return None
        return got[0]
    dep, svc, hpa = one("Deployment"), one("Service"), one("HorizontalPodAutoscaler")
    pdb, rt, isvc = one("PodDisruptionBudget"), one("ServingRuntime"), one("InferenceService")
    if dep:
        if dep.get("apiVersion") != "apps/v1":
            problems.append("Deployment apiVersion apps/v1")
        spec = dep["spec"]
        labels = spec["template"]["metadata"]["labels"]
        sel = spec["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            problems.append("Deployment selector matches its pod labels")
        pod = spec["template"]["spec"]
        cs = pod.get("containers", [])
        if len(cs) != 1:
            problems.append("Deployment has one container")
        for c in cs:
            check_container(c, uid, drain_ms, paths, pod.get("securityContext"), problems,
                            "Deployment", grace=pod.get("terminationGracePeriodSeconds", 30))
        if spec.get("replicas", 1) < 2:
            problems.append("Deployment runs at least 2 replicas")
    if dep and svc:
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        if not svc["spec"].get("selector") or any(
                pod_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
            problems.append("Service selects the Deployment's pods")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        for p in svc["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            # HTTP goes to 8080; a port named grpc to the image's gRPC port, as cleartext h2.
            want = grpc_port() if p.get("name") == "grpc" else 8080
            ok = t == want or any(cp.get("name") == t and cp["containerPort"] == want
                                  for cp in c.get("ports", []))
            if not ok:
                problems.append("Service targetPort %s resolves to %s" % (t, want))
            if p.get("name") == "grpc" and p.get("appProtocol") != "kubernetes.io/h2c":
                problems.append("Service port grpc has appProtocol kubernetes.io/h2c")
    if dep and hpa:
        if hpa.get("apiVersion") != "autoscaling/v2":
            problems.append("HPA apiVersion autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name")) != ("Deployment", dep["metadata"]["name"]):
            problems.append("HPA scales the Deployment")
        if not 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]:
            problems.append("HPA minReplicas <= maxReplicas")
        names = [m.get("resource", {}).get("name") for m in hpa["spec"].get("metrics", [])]
        if "cpu" not in names:
            problems.append("HPA scales on cpu")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        if "cpu" not in c.get("resources", {}).get("requests", {}):
            problems.append("HPA on CPU utilization needs a CPU request")
    if dep and pdb:
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        if any(pod_labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            problems.append("PodDisruptionBudget selects the Deployment's pods")
    if rt:
        if rt.get("apiVersion") != "serving.kserve.io/v1alpha1":
            problems.append("ServingRuntime apiVersion serving.kserve.io/v1alpha1")
        if "v2" not in rt["spec"].get("protocolVersions", []):
            problems.append("ServingRuntime speaks protocol v2")
        if grpc_port() and "grpc-v2" not in rt["spec"].get("protocolVersions", []):
            problems.append("ServingRuntime speaks grpc-v2 (the image serves gRPC)")
        cs = rt["spec"].get("containers", [])
        for c in cs:
            check_container(c, uid, drain_ms, paths, None, problems, "ServingRuntime")
            args = c.get("args", [])
            m = args[args.index("--model") + 1] if "--model" in args else ""
            if not m.startswith("/mnt/models/") or os.path.basename(m) != os.path.basename(
                    dl.MODEL):
                problems.append("ServingRuntime --model is /mnt/models/%s"
                                % os.path.basename(dl.MODEL))
        if not cs:
            problems.append("ServingRuntime has a container")
    if rt and isvc:
        if isvc.get("apiVersion") != "serving.kserve.io/v1beta1":
            problems.append("InferenceService apiVersion serving.kserve.io/v1beta1")
        model = isvc["spec"]["predictor"].get("model", {})
        if model.get("protocolVersion") != "v2":
            problems.append("InferenceService protocolVersion v2")
        if model.get("runtime") != rt["metadata"]["name"]:
            problems.append("InferenceService uses the ServingRuntime")
        fmts = [f["name"] for f in rt["spec"].get("supportedModelFormats", [])]
        if model.get("modelFormat", {}).get("name") not in fmts:
            problems.append("InferenceService modelFormat is one the runtime supports")
        if not model.get("storageUri"):
            problems.append("InferenceService storageUri")
    return problems


def mutations(docs):
    """(description, mutated docs, a word the problem must contain) for the negative checks."""
    def mut(kind, f):
        m = copy.deepcopy(docs)
        for d in m:
            if d["kind"] == kind:
                f(d)
        return m

    def cont(d):
        return d["spec"]["template"]["spec"]["containers"][0]
    return [
        ("no readiness probe", mut("Deployment", lambda d: cont(d).pop("readinessProbe")),
         "readinessProbe"),
        ("liveness on /healthz", mut("Deployment", lambda d: cont(d)["livenessProbe"]["exec"]
                                     ["command"].__setitem__(2, "http://127.0.0.1:8080/healthz")),
         "livenessProbe"),
        ("liveness on port 9090", mut("Deployment", lambda d: cont(d)["livenessProbe"]["exec"]
                                      ["command"].__setitem__(2, "http://127.0.0.1:9090/v2/health/live")),
         "livenessProbe port"),
        ("grace 10 s", mut("Deployment", lambda d: d["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=10)), "terminationGracePeriodSeconds"),
        ("no preStop", mut("Deployment", lambda d: cont(d).pop("lifecycle")), "preStop"),
        ("no memory request", mut("Deployment", lambda d: cont(d)["resources"]["requests"]
                                  .pop("memory")), "requests.memory"),
        ("Service selects nothing", mut("Service", lambda d: d["spec"].update(
            selector={"app": "other"})), "Service selects"),
        ("HPA on a StatefulSet", mut("HorizontalPodAutoscaler", lambda d: d["spec"]
                                     ["scaleTargetRef"].update(kind="StatefulSet")), "HPA"),
        ("runtime v1", mut("ServingRuntime", lambda d: d["spec"].update(
            protocolVersions=["v1"])), "v2"),
        ("isvc protocol v1", mut("InferenceService", lambda d: d["spec"]["predictor"]["model"]
                                 .update(protocolVersion="v1")), "protocolVersion"),
        ("runtime without grpc-v2", mut("ServingRuntime", lambda d: d["spec"].update(
            protocolVersions=["v2"])), "grpc-v2"),
        ("Service grpc port to 8080", mut("Service", lambda d: d["spec"]["ports"][-1].update(
            targetPort="http")), "resolves to"),
    ]


def grpc_form(rt_name):
    """deploy/k8s/grpc/: an InferenceService on the runtime with protocolVersion grpc-v2 and
    an h2c port that is the image's --grpc-listen port."""
    docs = [x for x in yaml.safe_load_all(open(os.path.join(K8S, "grpc",
                                                            "inferenceservice.yaml"))) if x]
    isvc = [x for x in docs if x["kind"] == "InferenceService"]
    dl.check(len(isvc) == 1, "gRPC form: one InferenceService")
    m = isvc[0]["spec"]["predictor"]["model"]
    ports = m.get("ports", [])
    dl.check(m.get("protocolVersion") == "grpc-v2" and m.get("runtime") == rt_name
             and m.get("storageUri") and len(ports) == 1 and ports[0].get("name") == "h2c"
             and ports[0].get("containerPort") == grpc_port(),
             "gRPC InferenceService: grpc-v2 on the runtime, port h2c = the image's %s: %s"
             % (grpc_port(), m))


def live_probe(docs):
    """A real cigtd with the Deployment's container arguments (after the image's entrypoint)
    answers the probe paths and exits 0 on SIGTERM."""
    uid, entry, _ = dockerfile_facts()
    dep = [d for d in docs if d["kind"] == "Deployment"][0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = entry[1:] + c.get("args", [])
    # The image's paths are not this tree's: its config file, and listen where the test says.
    i = args.index("--config")
    args[i + 1] = os.path.join(dl.SRCDIR, "deploy", "cigtd.json")
    while "--listen" in args:
        i = args.index("--listen")
        del args[i:i + 2]
    if "--grpc-listen" in args:  # a free port here, not the image's
        args[args.index("--grpc-listen") + 1] = "127.0.0.1:0"
    print("cigtd " + " ".join(shlex.quote(a) for a in args))
    d = dl.Cigtd("--model", dl.need_model(), *args)
    try:
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in c:
                path, _ = probe_target(c[kind], c)
                st, _, _ = dl.http_request(d.port, "GET", path)
                dl.check(st == 200, "live cigtd answers the %s %s with 200 (%d)"
                         % (kind, path, st))
                cmd = c[kind].get("exec", {}).get("command")
                if cmd:
                    # The probe's own command, with this build's cigtd and the test's port.
                    url = re.sub(r":\d+/", ":%d/" % d.port, cmd[2], count=1)
                    rc = subprocess.run([dl.CIGTD, cmd[1], url], timeout=10).returncode
                    dl.check(rc == 0, "the %s command (%s --healthcheck %s) exits 0 (%d)"
                             % (kind, cmd[0], url, rc))
        if "--grpc-listen" in args:
            dl.check(any("gRPC (inference.GRPCInferenceService) on" in line for line in d.lines),
                     "cigtd with the Deployment's arguments serves gRPC too")
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(30)
        dl.check(rc == 0, "cigtd with the Deployment's arguments drains and exits 0")
    finally:
        d.stop()


def repository_form(uid, drain_ms, paths):
    """deploy/k8s/repository/: the ServingRuntime and the Deployment patch serve a model
    repository; a real cigtd with the runtime's arguments serves one."""
    d = os.path.join(K8S, "repository")
    docs = [x for x in yaml.safe_load_all(open(os.path.join(d, "kserve.yaml"))) if x]
    patch = yaml.safe_load(open(os.path.join(d, "deployment-patch.yaml")))
    rt = [x for x in docs if x["kind"] == "ServingRuntime"]
    isvc = [x for x in docs if x["kind"] == "InferenceService"]
    dl.check(len(rt) == 1 and len(isvc) == 1, "repository form: one runtime, one service")
    rt, isvc = rt[0], isvc[0]
    problems = []
    c = rt["spec"]["containers"][0]
    check_container(c, uid, drain_ms, paths, None, problems, "repository ServingRuntime")
    args = c["args"]
    dl.check(args[args.index("--model-repository") + 1] == "/mnt/models"
             and "v2" in rt["spec"]["protocolVersions"] and rt["spec"]["multiModel"] is False,
             "repository runtime serves /mnt/models over v2 (multiModel false: no ModelMesh API)")
    m = isvc["spec"]["predictor"]["model"]
    dl.check(m["runtime"] == rt["metadata"]["name"] and m["modelFormat"]["name"] in
             [f["name"] for f in rt["spec"]["supportedModelFormats"]],
             "repository InferenceService uses the repository runtime")
    pc = patch["spec"]["template"]["spec"]["containers"][0]
    pargs = pc["args"]
    mount = pc["volumeMounts"][0]
    vol = patch["spec"]["template"]["spec"]["volumes"][0]
    dl.check(pargs[pargs.index("--model-repository") + 1] == mount["mountPath"]
             and mount["readOnly"] and vol["name"] == mount["name"]
             and vol["persistentVolumeClaim"]["readOnly"],
             "Deployment patch mounts the repository read-only where --model-repository points")
    dl.check(not problems, "repository runtime fields (problems: %s)" % problems)
    # A real cigtd with the runtime's arguments on a one-model repository.
    import shutil
    import tempfile
    repo = tempfile.mkdtemp(prefix="cigt-k8s-repo-")
    try:
        os.makedirs(os.path.join(repo, "fashion_mnist", "1"))
        shutil.copy(dl.need_model(), os.path.join(repo, "fashion_mnist", "1",
                                                 "model.safetensors"))
        # Its escalating operating points load thick.safetensors from beside the file.
        shutil.copy(os.path.join(os.path.dirname(dl.need_model()), "thick.safetensors"),
                    os.path.join(repo, "fashion_mnist", "1"))
        real = [repo if a == "/mnt/models" else a for a in args]
        cd = dl.Cigtd(*real)
        try:
            st, _, _ = dl.http_request(cd.port, "GET", c["readinessProbe"]["httpGet"]["path"])
            dl.check(st == 200, "cigtd with the repository runtime's arguments is ready (%d)" % st)
            st, _, body = dl.http_request(cd.port, "POST", "/v2/repository/index", b"{}")
            dl.check(st == 200 and b'"fashion_mnist", "version": "1", "state": "READY"' in body,
                     "it serves the repository's model: %s" % body[:200])
        finally:
            cd.stop()
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def main():
    files = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    docs = []
    for f in files:
        try:
            got = [d for d in yaml.safe_load_all(open(f)) if d]
        except yaml.YAMLError as e:
            dl.check(False, "%s parses: %s" % (f, e))
            continue
        dl.check(got and all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and
                             d.get("metadata", {}).get("name") for d in got),
                 "%s: %d manifest(s) with apiVersion, kind, metadata.name"
                 % (os.path.relpath(f, dl.SRCDIR), len(got)))
        docs += got
    uid, entry, drain = dockerfile_facts()
    dl.check(entry[0].endswith("cigtd") and drain > 0,
             "Dockerfile: uid %d, entrypoint %s, drain %d ms" % (uid, entry[0], drain))
    paths = api_paths()
    problems = check_all(docs, uid, drain, paths)
    dl.check(not problems, "deploy/k8s carries every required field (problems: %s)" % problems)
    for what, m, word in mutations(docs):
        got = check_all(m, uid, drain, paths)
        dl.check(any(word in p for p in got), "a manifest with %s is caught (%s)" % (what, got))
    live_probe(docs)
    repository_form(uid, drain, paths)
    if grpc_port():
        grpc_form([d for d in docs if d["kind"] == "ServingRuntime"][0]["metadata"]["name"])
    dl.finish("k8s-manifests")


if __name__ == "__main__":
    main()
