#!/usr/bin/python3
"""cigtd's gRPC service (issue 28) through a client nobody here wrote: Debian's python3-grpcio
with stubs generated at test time from proto/ alone (grpc_common.stubs), making the calls
Triton's Python client makes. Every answer is checked against `cigt eval --dump` on the same
test images and against the REST side (POST /v2/models/{name}/infer) of the same daemon: the
same classes, routes, paths, escalations and MACs, probabilities within 1e-5.

Groups (test_grpc.py --group G):
  api         health, metadata, configuration and statistics against their REST renderings;
              ModelInfer with raw and typed contents, UINT8 and FP32, selected and typed outputs,
              on 1,000 test images; the dial (compute, max_macs) against cigt eval; every
              refusal with its status and the REST side's message
  stream      ModelStreamInfer: 1,000 requests on one stream, answers in order, errors in their
              place without ending the stream; several streams at once
  repository  RepositoryIndex, RepositoryModelLoad/Unload in explicit mode (a model loaded over
              gRPC answers as over REST, then is gone), FAILED_PRECONDITION in the other modes
  lifecycle   the bearer token as authorization metadata, /metrics, deadlines, and the drain on
              SIGTERM with calls in flight (each answered, or UNAVAILABLE), exit 0

Environment: CIGTD, CIGT, SRCDIR, PROTOC, GRPC_PYTHON_PLUGIN. Exit 0 pass, 1 fail, 77 skip.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc_common as G
from grpc_common import FAILURES, check

MODELS = os.path.join(G.SRCDIR, "models")
SHIPPED = os.path.join(MODELS, "fashion_mnist.safetensors")
NIMG = 1000


def dump(work, point=None, limit=NIMG, model=SHIPPED):
    """cigt eval [--compute point] --dump on the first limit test images."""
    f = os.path.join(work, "%s-%s-%d.dump" % (os.path.basename(model), point, limit))
    args = [G.CIGT, "eval", model, "--limit", str(limit), "--dump", f, "--threads", "1"]
    if point:
        args += ["--compute", point]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    info = json.loads(subprocess.run([G.CIGT, "info", model, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    experts = [layer["experts"] for layer in info["layers"]]

    def index(path):  # "0-1-3" -> the mixed-radix path number the paths output uses
        r = 0
        for e, x in zip(experts, path.split("-")):
            r = r * e + int(x)
        return r
    out = []
    with open(f) as fh:
        for line in fh:
            d = json.loads(line)
            d["paths"] = sorted(index(p) for p in d["paths"])
            out.append(d)
    return out


def paths_of(mask):
    return [r for r, on in enumerate(mask) if on]


def same(got, ref, what):
    """A gRPC sample against a cigt eval --dump line: class, route, paths, escalated, MACs."""
    g = (got["class"], got["route"], paths_of(got["paths"]), bool(got["escalated"]), got["macs"])
    r = (ref["class"], ref["route"], ref["paths"], ref["escalated"], ref["macs"])
    return check(g == r, "%s: class/route/paths/escalated/macs %s, cigt eval says %s"
                 % (what, g, r))


def rest_v2(d, imgs, params=None, model="fashion_mnist"):
    """The REST side's answer for the same images: per sample dicts like grpc_common.answers."""
    body = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [len(imgs), 1, 28, 28],
                        "data": [p for im in imgs for p in im]}]}
    if params:
        body["parameters"] = params
    st, _, raw = d.post_json("/v2/models/%s/infer" % model, body)
    j = json.loads(raw)
    if st != 200:
        return st, j, None
    outs = {o["name"]: o for o in j["outputs"]}
    res = []
    for i in range(len(imgs)):
        a = {}
        for name, o in outs.items():
            inner = o["shape"][1] if len(o["shape"]) > 1 else 0
            a[name] = o["data"][i * inner:(i + 1) * inner] if inner else o["data"][i]
        res.append(a)
    return st, j, res


def same_rest(got, rest, what):
    ok = check(got["class"] == rest["class"] and got["macs"] == rest["macs"]
               and got["route"] == rest["route"] and list(map(bool, got["paths"])) == rest["paths"]
               and bool(got["escalated"]) == rest["escalated"],
               "%s: gRPC says class %s macs %s, REST %s %s" % (what, got["class"], got["macs"],
                                                               rest["class"], rest["macs"]))
    err = max(abs(a - b) for a, b in zip(got["probabilities"], rest["probabilities"]))
    return ok and check(err < 1e-5, "%s: probabilities differ from REST by %g" % (what, err))


def status_of(fn, *a, **kw):
    """(code name, details) of a call that should fail; ("OK", answer) if it did not."""
    try:
        return "OK", fn(*a, **kw)
    except G_grpc.RpcError as e:
        return e.code().name, e.details()


def points():
    out = subprocess.run([G.CIGT, "info", SHIPPED, "--json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out).get("operating_points") or []


# ------------------------------------------------------------------------------------ api

def group_api(env):
    pb, stub, imgs, work = env["pb"], env["stub"], env["images"], env["work"]
    ref = dump(work)
    with G.GrpcDaemon(SHIPPED) as d:
        s = stub(d)
        check(s.ServerLive(pb.ServerLiveRequest()).live, "ServerLive: live")
        check(s.ServerReady(pb.ServerReadyRequest()).ready, "ServerReady: ready")
        md = s.ServerMetadata(pb.ServerMetadataRequest())
        st, _, raw = d.request("GET", "/v2")
        rj = json.loads(raw)
        check(md.name == rj["name"] == "cigtd" and md.version == rj["version"]
              and list(md.extensions) == rj["extensions"], "ServerMetadata equals GET /v2")
        check(s.ModelReady(pb.ModelReadyRequest(name="fashion_mnist")).ready, "ModelReady")
        check(s.ModelReady(pb.ModelReadyRequest(name="fashion_mnist", version="1")).ready,
              "ModelReady version 1")
        check(not s.ModelReady(pb.ModelReadyRequest(name="fashion_mnist", version="2")).ready,
              "ModelReady version 2: not ready")
        check(not s.ModelReady(pb.ModelReadyRequest(name="nope")).ready,
              "ModelReady of an unknown model: not ready")
        check(s.ModelReady(pb.ModelReadyRequest()).ready, "ModelReady of the default model")
        # Metadata and configuration: the REST renderings, field by field.
        mm = s.ModelMetadata(pb.ModelMetadataRequest(name="fashion_mnist"))
        _, _, raw = d.request("GET", "/v2/models/fashion_mnist")
        rj = json.loads(raw)
        check(mm.name == rj["name"] and list(mm.versions) == rj["versions"]
              and mm.platform == rj["platform"]
              and [(t.name, t.datatype, list(t.shape)) for t in mm.inputs]
              == [(t["name"], t["datatype"], t["shape"]) for t in rj["inputs"]]
              and [(t.name, t.datatype, list(t.shape)) for t in mm.outputs]
              == [(t["name"], t["datatype"], t["shape"]) for t in rj["outputs"]],
              "ModelMetadata equals GET /v2/models/fashion_mnist")
        mc = s.ModelConfig(pb.ModelConfigRequest(name="fashion_mnist")).config
        _, _, raw = d.request("GET", "/v2/models/fashion_mnist/config")
        rj = json.loads(raw)
        import model_config_pb2 as mcpb
        check(mc.name == rj["name"] and mc.platform == rj["platform"] == "cigt"
              and mc.backend == rj["backend"] and mc.max_batch_size == rj["max_batch_size"]
              and mc.version_policy.latest.num_versions
              == rj["version_policy"]["latest"]["num_versions"]
              and [(t.name, mcpb.DataType.Name(t.data_type),
                    mcpb.ModelInput.Format.Name(t.format), list(t.dims)) for t in mc.input]
              == [(t["name"], t["data_type"], t["format"], t["dims"]) for t in rj["input"]]
              and [(t.name, mcpb.DataType.Name(t.data_type), list(t.dims)) for t in mc.output]
              == [(t["name"], t["data_type"], t["dims"]) for t in rj["output"]]
              and mc.dynamic_batching.max_queue_delay_microseconds
              == rj["dynamic_batching"]["max_queue_delay_microseconds"]
              and mc.dynamic_batching.default_queue_policy.max_queue_size
              == rj["dynamic_batching"]["default_queue_policy"]["max_queue_size"]
              and mcpb.ModelInstanceGroup.Kind.Name(mc.instance_group[0].kind) == "KIND_CPU",
              "ModelConfig equals GET /v2/models/fashion_mnist/config")
        check(status_of(s.ModelMetadata, pb.ModelMetadataRequest(name="nope"))[0] == "NOT_FOUND",
              "ModelMetadata of an unknown model: NOT_FOUND")
        code, msg = status_of(s.ModelConfig, pb.ModelConfigRequest(name="fashion_mnist",
                                                                    version="x1"))
        check(code == "INVALID_ARGUMENT" and "not a version" in msg, "version 'x1': %s" % code)

        # ModelInfer on 1,000 test images, 100 per request, raw UINT8 (as tritonclient sends),
        # against cigt eval and against REST on the same images.
        for b in range(0, NIMG, 100):
            q = G.infer_request(pb, imgs[b:b + 100], rid="r%d" % b)
            resp = s.ModelInfer(q)
            got = G.answers(resp)
            _, _, rest = rest_v2(d, imgs[b:b + 100])
            check(resp.id == "r%d" % b and resp.model_name == "fashion_mnist"
                  and resp.model_version == "1", "ModelInfer: id, name, version echoed")
            for i, a in enumerate(got):
                same(a, ref[b + i], "raw[%d]" % (b + i))
                same_rest(a, rest[i], "raw[%d]" % (b + i))
            p = {k: G.param(v) for k, v in resp.parameters.items()}
            macs = sum(a["macs"] for a in got)
            check(p.get("macs") == macs and p.get("dense_macs") == 100 * G.DENSE_MACS
                  and abs(p.get("compute_saved", 9) - (1 - macs / (100 * G.DENSE_MACS))) < 1e-9
                  and "compute" not in p, "answer parameters macs/dense_macs/compute_saved")
        # Typed contents in (uint_contents, fp32_contents) and out, one image per request.
        for i in range(0, 64):
            typed = G.infer_request(pb, [imgs[i]], typed=True,
                                    params={"binary_data_output": False})
            resp = s.ModelInfer(typed)
            check(not resp.raw_output_contents and resp.outputs[0].contents.fp32_contents,
                  "binary_data_output false: typed contents, no raw")
            same(G.answers(resp)[0], ref[i], "typed[%d]" % i)
        for typed in (False, True):
            resp = s.ModelInfer(G.infer_request(pb, imgs[:32], fp32=True, typed=typed))
            for i, a in enumerate(G.answers(resp)):
                same(a, ref[i], "fp32 %s[%d]" % ("typed" if typed else "raw", i))
        # [N, 28, 28], selected outputs (in the model's order), version named.
        q = G.infer_request(pb, imgs[:8], outputs=["macs", "class"], version="1")
        del q.inputs[0].shape[1]
        resp = s.ModelInfer(q)
        check([t.name for t in resp.outputs] == ["class", "macs"]
              and [list(t.shape) for t in resp.outputs] == [[8], [8]],
              "outputs selected: class and macs, [N] each")
        check(G.outputs_of(resp)["class"] == [r["class"] for r in ref[:8]],
              "selected outputs' classes")

        # The dial: two points of each kind the model has, and a budget, against cigt eval and
        # against REST with the same parameters.
        pts = [p["name"] for p in points()]
        pick = [n for n in pts if n.startswith("multi")][:1] + ["all-paths"] + \
            [n for n in pts if n.startswith("escalate")][:1] + \
            [n for n in pts if n.startswith("mix")][:1]
        for name in pick:
            pref = dump(work, name, 200)
            for b in range(0, 200, 100):
                resp = s.ModelInfer(G.infer_request(pb, imgs[b:b + 100],
                                                    params={"compute": name}))
                p = {k: G.param(v) for k, v in resp.parameters.items()}
                check(p.get("compute") == name, "%s: the answer names its point" % name)
                _, rj, rest = rest_v2(d, imgs[b:b + 100], {"compute": name})
                check(rj.get("parameters") == {"compute": name}, "REST names it too")
                for i, a in enumerate(G.answers(resp)):
                    same(a, pref[b + i], "%s[%d]" % (name, b + i))
                    same_rest(a, rest[i], "%s[%d]" % (name, b + i))
        resp = s.ModelInfer(G.infer_request(pb, imgs[:50], params={"max_macs": 7000000}))
        _, rj, rest = rest_v2(d, imgs[:50], {"max_macs": 7000000})
        p = {k: G.param(v) for k, v in resp.parameters.items()}
        check(p.get("compute") == rj["parameters"]["compute"], "max_macs picks REST's point")
        for i, a in enumerate(G.answers(resp)):
            check(a["macs"] <= 7000000, "max_macs is a cap [%d]" % i)
            same_rest(a, rest[i], "max_macs[%d]" % i)

        # Refusals: the status, and the REST side's words.
        def refused(q, want, words, what):
            code, msg = status_of(s.ModelInfer, q)
            check(code == want and words in msg, "%s: %s %r, want %s with %r"
                  % (what, code, msg, want, words))
        one = [imgs[0]]
        q = G.infer_request(pb, one)
        q.inputs[0].name = "pixels"
        refused(q, "INVALID_ARGUMENT", "named 'image'", "input name")
        q = G.infer_request(pb, one)
        q.inputs[0].shape[:] = [1, 1, 27, 28]
        refused(q, "INVALID_ARGUMENT", "expected [N, 1, 28, 28]", "shape")
        q = G.infer_request(pb, one)
        q.inputs[0].datatype = "INT8"
        refused(q, "INVALID_ARGUMENT", "not supported (UINT8 or FP32)", "datatype")
        q = G.infer_request(pb, one)
        q.raw_input_contents[0] = imgs[0][:-1]
        refused(q, "INVALID_ARGUMENT", "783 bytes", "raw size")
        q = G.infer_request(pb, one)
        q.inputs[0].contents.uint_contents.extend(imgs[0])
        refused(q, "INVALID_ARGUMENT", "both given", "raw and typed")
        q = G.infer_request(pb, one, typed=True)
        q.inputs[0].contents.uint_contents[5] = 256
        refused(q, "INVALID_ARGUMENT", "not a UINT8", "uint_contents > 255")
        q = G.infer_request(pb, one, fp32=True, typed=True)
        q.inputs[0].contents.fp32_contents[3] = 2.0
        refused(q, "INVALID_ARGUMENT", "outside the model's input range", "FP32 range")
        refused(G.infer_request(pb, one, outputs=["logits"]), "INVALID_ARGUMENT",
                "unknown output 'logits'", "output name")
        refused(G.infer_request(pb, one, params={"compute": "nope"}), "INVALID_ARGUMENT",
                "has no operating point 'nope'", "unknown point")
        refused(G.infer_request(pb, one, params={"compute": pick[0], "max_macs": 9000000}),
                "INVALID_ARGUMENT", "not both", "compute and max_macs")
        refused(G.infer_request(pb, one, params={"max_macs": 1000}), "INVALID_ARGUMENT",
                "max_macs", "budget below one path")
        refused(G.infer_request(pb, one, params={"timeout_ms": "soon"}), "INVALID_ARGUMENT",
                "timeout_ms", "timeout_ms type")
        refused(G.infer_request(pb, one, params={"binary_data_output": 1}), "INVALID_ARGUMENT",
                "binary_data_output", "binary_data_output type")
        refused(G.infer_request(pb, one, model="nope"), "NOT_FOUND", "not loaded",
                "unknown model")
        refused(G.infer_request(pb, one, version="7"), "NOT_FOUND", "version 7", "version 7")
        refused(G.infer_request(pb, [imgs[0]] * 1025), "RESOURCE_EXHAUSTED", "1025 images",
                "more than --max-images")
        refused(G.infer_request(pb, one, params={"timeout_ms": 0}), "DEADLINE_EXCEEDED",
                "deadline of 0 ms", "timeout_ms 0: never computed")
        # Statistics after all that, against REST's (success counts every OK call, both
        # protocols).
        ms = s.ModelStatistics(pb.ModelStatisticsRequest(name="fashion_mnist")).model_stats
        _, _, raw = d.request("GET", "/v2/models/fashion_mnist/stats")
        rs = json.loads(raw)["model_stats"][0]
        check(len(ms) == 1 and ms[0].name == "fashion_mnist" and ms[0].version == "1"
              and ms[0].inference_stats.success.count
              == rs["inference_stats"]["success"]["count"]
              and ms[0].inference_count == rs["inference_count"]
              and ms[0].execution_count == rs["execution_count"]
              and [b.batch_size for b in ms[0].batch_stats]
              == [b["batch_size"] for b in rs["batch_stats"]],
              "ModelStatistics equals GET .../stats")
        # The stages, both protocols' requests in them: every OK answer was encoded, every one
        # decoded (and so were the refusals the workers made), each stage took time.
        gi, ri = ms[0].inference_stats, rs["inference_stats"]
        check(all({"count": getattr(gi, k).count, "ns": getattr(gi, k).ns} == ri[k]
                  and ri[k]["ns"] > 0 for k in ("compute_input", "queue", "compute_infer",
                                                "compute_output"))
              and ri["compute_output"]["count"] == ri["success"]["count"]
              and ri["compute_input"]["count"] > ri["success"]["count"],
              "ModelStatistics' stages equal REST's: %s" % ri)
        check(ms[0].inference_stats.fail.count >= 15, "refusals counted as failures")
        every = s.ModelStatistics(pb.ModelStatisticsRequest()).model_stats
        check([m.name for m in every] == ["fashion_mnist"], "ModelStatistics of every model")
        code, _ = status_of(s.ModelStatistics, pb.ModelStatisticsRequest(name="nope"))
        check(code == "NOT_FOUND", "ModelStatistics of an unknown model: NOT_FOUND")
        m = d.metrics()
        check(G.metric(m, "cigt_grpc_requests_total", method="ModelInfer", code="OK") >= 10
              and G.metric(m, "cigt_grpc_requests_total", method="ModelInfer",
                           code="INVALID_ARGUMENT") >= 12
              and G.metric(m, "cigt_grpc_request_duration_seconds_count", method="ModelInfer")
              > 0, "/metrics: gRPC calls by method and status, durations")
        d.stop()
    return 0


# --------------------------------------------------------------------------------- stream

def group_stream(env):
    pb, stub, imgs, work = env["pb"], env["stub"], env["images"], env["work"]
    ref = dump(work)
    with G.GrpcDaemon(SHIPPED) as d:
        s = stub(d)
        _, _, rest = rest_v2(d, imgs[:NIMG])
        bad = set(range(99, NIMG, 100))

        def gen():
            for i in range(NIMG):
                yield G.infer_request(pb, [imgs[i]], rid=str(i),
                                      model="nope" if i in bad else "fashion_mnist",
                                      typed=i % 2 == 1)
        n = 0
        for i, a in enumerate(s.ModelStreamInfer(gen())):
            n += 1
            if i in bad:
                check(a.error_message and "not loaded" in a.error_message,
                      "stream[%d]: the error in its place (%r)" % (i, a.error_message))
                continue
            check(not a.error_message and a.infer_response.id == str(i),
                  "stream[%d]: in order (id %r, error %r)" % (i, a.infer_response.id,
                                                              a.error_message))
            got = G.answers(a.infer_response)[0]
            same(got, ref[i], "stream[%d]" % i)
            same_rest(got, rest[i], "stream[%d]" % i)
        check(n == NIMG, "stream: %d answers for %d requests" % (n, NIMG))
        # Several streams at once, with the dial.
        name = [p["name"] for p in points() if p["name"].startswith("multi")][0]
        pref = dump(work, name, 200)
        errs = []

        def one(t):
            def g():
                for i in range(t, 200, 4):
                    yield G.infer_request(pb, [imgs[i]], rid=str(i), params={"compute": name})
            try:
                for a in s.ModelStreamInfer(g()):
                    i = int(a.infer_response.id)
                    if G.answers(a.infer_response)[0]["macs"] != pref[i]["macs"]:
                        errs.append(i)
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e))
        ts = [threading.Thread(target=one, args=(t,)) for t in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        check(not errs, "4 streams at once with compute=%s: %s" % (name, errs[:5]))
        m = d.metrics()
        check(G.metric(m, "cigt_grpc_stream_messages_total", code="OK") == NIMG - len(bad) + 200
              and G.metric(m, "cigt_grpc_stream_messages_total", code="NOT_FOUND") == len(bad)
              and G.metric(m, "cigt_grpc_requests_total", method="ModelStreamInfer", code="OK")
              == 5, "/metrics: stream messages by status, 5 streams OK")
        d.stop()
    return 0


# ----------------------------------------------------------------------------- repository

def group_repository(env):
    pb, stub, imgs, work = env["pb"], env["stub"], env["images"], env["work"]
    repo = os.path.join(work, "repo")
    for src, name in (("fashion_mnist", "fashion_mnist"), ("thin", "fashion_mnist_thin")):
        os.makedirs(os.path.join(repo, name, "1"))
        shutil.copy(os.path.join(MODELS, src + ".safetensors"),
                    os.path.join(repo, name, "1", "model.safetensors"))
    shutil.copy(os.path.join(MODELS, "thick.safetensors"),
                os.path.join(repo, "fashion_mnist", "1", "thick.safetensors"))
    thin_ref = dump(work, None, 200, os.path.join(MODELS, "thin.safetensors"))
    with G.GrpcDaemon(None, "--model-repository", repo, "--model-control-mode", "explicit",
                      "--load-model", "fashion_mnist") as d:
        s = stub(d)
        idx = s.RepositoryIndex(pb.RepositoryIndexRequest())
        _, _, raw = d.request("POST", "/v2/repository/index", b"{}",
                              {"Content-Type": "application/json"})
        rj = json.loads(raw)
        check([(m.name, m.version, m.state, m.reason) for m in idx.models]
              == [(m["name"], m.get("version", ""), m["state"], m["reason"]) for m in rj],
              "RepositoryIndex equals POST /v2/repository/index")
        ready = s.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
        check([m.name for m in ready.models] == ["fashion_mnist"], "index ready=true")
        thin = pb.ModelReadyRequest(name="fashion_mnist_thin")
        check(not s.ModelReady(thin).ready, "thin not loaded yet")
        s.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="fashion_mnist_thin"))
        check(s.ModelReady(thin).ready, "RepositoryModelLoad: thin ready when it answers")
        resp = s.ModelInfer(G.infer_request(pb, imgs[:200], model="fashion_mnist_thin"))
        _, _, rest = rest_v2(d, imgs[:200], model="fashion_mnist_thin")
        check(resp.model_name == "fashion_mnist_thin", "thin answers")
        for i, a in enumerate(G.answers(resp)):
            same(a, thin_ref[i], "thin[%d]" % i)
            same_rest(a, rest[i], "thin[%d]" % i)
        st = s.ModelStatistics(pb.ModelStatisticsRequest(name="fashion_mnist_thin"))
        check(st.model_stats[0].inference_count == 400, "thin's statistics: 400 samples")
        s.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="fashion_mnist_thin"))
        check(not s.ModelReady(thin).ready, "RepositoryModelUnload: thin gone")
        code, _ = status_of(s.ModelInfer, G.infer_request(pb, imgs[:1], model="fashion_mnist_thin"))
        check(code == "NOT_FOUND", "infer on the unloaded model: NOT_FOUND")
        code, msg = status_of(s.RepositoryModelUnload,
                              pb.RepositoryModelUnloadRequest(model_name="fashion_mnist_thin"))
        check(code == "NOT_FOUND", "unload of a model not loaded: %s %s" % (code, msg))
        code, msg = status_of(s.RepositoryModelLoad,
                              pb.RepositoryModelLoadRequest(model_name="nothing_here"))
        check(code == "NOT_FOUND" and "no model 'nothing_here'" in msg,
              "load of a model the repository lacks: %s %s" % (code, msg))
        code, msg = status_of(s.RepositoryModelLoad,
                              pb.RepositoryModelLoadRequest(model_name="../x"))
        check(code == "INVALID_ARGUMENT", "load of a bad name: %s %s" % (code, msg))
        # A load again, while inference runs on the other model.
        s.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="fashion_mnist_thin"))
        check(s.ModelReady(thin).ready, "loaded again")
        d.stop()
    with G.GrpcDaemon(None, "--model-repository", repo) as d:
        s = stub(d)
        code, msg = status_of(s.RepositoryModelLoad,
                              pb.RepositoryModelLoadRequest(model_name="fashion_mnist_thin"))
        check(code == "FAILED_PRECONDITION" and "control mode is none" in msg,
              "load in mode none: %s %s" % (code, msg))
        code, msg = status_of(s.RepositoryModelUnload,
                              pb.RepositoryModelUnloadRequest(model_name="fashion_mnist_thin"))
        check(code == "FAILED_PRECONDITION", "unload in mode none: %s" % code)
        check(len(s.RepositoryIndex(pb.RepositoryIndexRequest()).models) == 2,
              "the index works in every mode")
        d.stop()
    return 0


# ------------------------------------------------------------------------------ lifecycle

def group_lifecycle(env):
    pb, stub, imgs, work = env["pb"], env["stub"], env["images"], env["work"]
    grpc = G_grpc
    ref = dump(work, None, 256)
    tok = os.path.join(work, "token")
    with open(tok, "w") as f:
        f.write("s3cret\n")
    with G.GrpcDaemon(SHIPPED, "--auth-token-file", tok) as d:
        s = stub(d)
        check(s.ServerLive(pb.ServerLiveRequest()).live, "ServerLive needs no token")
        check(s.ServerReady(pb.ServerReadyRequest()).ready, "ServerReady needs no token")
        q = G.infer_request(pb, imgs[:1])
        code, msg = status_of(s.ModelInfer, q)
        check(code == "UNAUTHENTICATED", "ModelInfer without a token: %s" % code)
        code, _ = status_of(s.ModelInfer, q, metadata=[("authorization", "Bearer wrong")])
        check(code == "UNAUTHENTICATED", "a wrong token: %s" % code)
        code, _ = status_of(s.ServerMetadata, pb.ServerMetadataRequest())
        check(code == "UNAUTHENTICATED", "ServerMetadata needs the token")
        resp = s.ModelInfer(q, metadata=[("authorization", "Bearer s3cret")])
        same(G.answers(resp)[0], ref[0], "with the token")
        d.stop()
    # A gRPC address that cannot be bound: exit 1 at start, saying so, nothing left running.
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    r = subprocess.run([G.CIGTD, "--model", SHIPPED, "--listen", "127.0.0.1:0", "--grpc-listen",
                        "127.0.0.1:%d" % busy.getsockname()[1]], capture_output=True, text=True,
                       timeout=60)
    busy.close()
    check(r.returncode == 1 and "grpc-listen: 127.0.0.1:" in r.stderr
          and "Address already in use" in r.stderr and "Sanitizer" not in r.stderr,
          "--grpc-listen on a busy port: exit 1 with a message (%d: %s)"
          % (r.returncode, r.stderr[-200:]))
    with G.GrpcDaemon(SHIPPED, "--workers", "1", "--drain-timeout-ms", "20000") as d:
        s = stub(d)
        # Deadlines: 1 ms is answered or DEADLINE_EXCEEDED, never anything else.
        for _ in range(20):
            code, _ = status_of(s.ModelInfer, G.infer_request(pb, imgs[:64]), timeout=0.001)
            check(code in ("OK", "DEADLINE_EXCEEDED"), "1 ms deadline: %s" % code)
        resp = s.ModelInfer(G.infer_request(pb, imgs[:4]), timeout=30)
        check(len(G.answers(resp)) == 4, "after the deadlines the server serves")
        # The drain: 6 clients in flight with 64-image requests, and 2 streams; SIGTERM.
        results, stop = [], threading.Event()

        def client(t):
            ch = grpc.insecure_channel(d.target)
            st = env["pb_grpc"].GRPCInferenceServiceStub(ch)
            while not stop.is_set():
                b = (t * 64) % 192
                try:
                    r = st.ModelInfer(G.infer_request(pb, imgs[b:b + 64]), timeout=30)
                    ok = all(a["class"] == ref[b + i]["class"] and a["macs"] == ref[b + i]["macs"]
                             for i, a in enumerate(G.answers(r)))
                    results.append("OK" if ok else "WRONG")
                except grpc.RpcError as e:
                    results.append(e.code().name)
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        break
            ch.close()

        def streamer(t):
            ch = grpc.insecure_channel(d.target)
            st = env["pb_grpc"].GRPCInferenceServiceStub(ch)

            def g():
                i = 0
                while not stop.is_set() and i < 100000:
                    yield G.infer_request(pb, [imgs[i % 256]], rid=str(i % 256))
                    i += 1
                    time.sleep(0.002)
            try:
                for a in st.ModelStreamInfer(g()):
                    if a.error_message:  # a message that arrived after the drain began
                        results.append("UNAVAILABLE" if "shutting down" in a.error_message
                                       else "stream-error: " + a.error_message)
                        continue
                    i = int(a.infer_response.id)
                    results.append("OK" if G.answers(a.infer_response)[0]["class"]
                                   == ref[i]["class"] else "WRONG")
                results.append("stream-ended-OK")
            except grpc.RpcError as e:
                results.append("stream-" + e.code().name)
            ch.close()
        ts = [threading.Thread(target=client, args=(t,)) for t in range(6)] + \
            [threading.Thread(target=streamer, args=(t,)) for t in range(2)]
        [t.start() for t in ts]
        wait_for_n = time.monotonic() + 20
        while len(results) < 60 and time.monotonic() < wait_for_n:
            time.sleep(0.05)
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(30)
        stop.set()
        [t.join(30) for t in ts]
        check(rc == 0, "drain: exit status %s" % rc)
        bad = [r for r in results if r not in ("OK", "UNAVAILABLE", "stream-UNAVAILABLE")]
        check(not bad and results.count("OK") >= 60,
              "drain: every call answered right or UNAVAILABLE (%d OK, others %s)"
              % (results.count("OK"), sorted(set(bad))))
        check(results.count("stream-UNAVAILABLE") == 2, "drain: both streams ended UNAVAILABLE")
        check(any("drained: every accepted request answered" in line for line in d.lines),
              "drain: logged")
        d.stop()
    return 0


GROUPS = {"api": group_api, "stream": group_stream, "repository": group_repository,
          "lifecycle": group_lifecycle}
G_grpc = None


def main():
    global G_grpc
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(G.DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: Fashion-MNIST not installed (dataset-fashion-mnist)")
        return 77
    if not os.path.exists(SHIPPED):
        print("SKIP: %s is missing" % SHIPPED)
        return 77
    try:
        pb, pb_grpc, G_grpc = G.stubs()
    except (ImportError, FileNotFoundError, subprocess.CalledProcessError) as e:
        print("SKIP: no gRPC stubs (python3-grpcio, protobuf-compiler, protobuf-compiler-grpc): "
              "%s" % e)
        return 77
    work = tempfile.mkdtemp(prefix="cigt-grpc-test-")
    chans = []

    def stub(d):
        ch = G_grpc.insecure_channel(d.target)
        chans.append(ch)
        return pb_grpc.GRPCInferenceServiceStub(ch)
    env = {"pb": pb, "pb_grpc": pb_grpc, "stub": stub, "work": work,
           "images": G.load_images(NIMG)}
    try:
        GROUPS[args.group](env)
    finally:
        for ch in chans:
            ch.close()
        shutil.rmtree(work, ignore_errors=True)
    print("%s: %s" % (args.group, "FAILED (%d)" % len(FAILURES) if FAILURES else "ok"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
