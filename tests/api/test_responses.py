#!/usr/bin/python3
"""Real answers of a running cigtd against proto/http-api.yaml: every documented operation is
called (native /v1, OIP /v2, repository, config, stats, health, metrics, the page; GET and
HEAD), its success answers and the errors it can be made to give (a model or version that is
not loaded, a refused framing, a bad body, a body or batch over the limit, an unsupported
Content-Type, an expired deadline, a missing token, several models without a default, the
repository API in the wrong mode) are checked against the operation's documented responses:
the status is listed, the Content-Type is one of the response's media types (parameters such
as metrics' version=0.0.4 included), a JSON body validates against its schema, a response
without content has an empty body, required headers are there, and HEAD answers GET's status
and headers with no body. Every request example in the spec is sent and must succeed. Each path
answers 405 to the methods it does not document, with Allow naming the ones it does.

The spec's schemas are OpenAPI 3.0's JSON Schema subset: they are converted to JSON Schema draft 4
(nullable -> a null type) and validated with Debian's python3-jsonschema; objects with listed
properties are closed (additionalProperties: false) here, so a field cigtd sends that the spec
does not describe fails the test.

usage: test_responses.py (environment CIGTD, CIGT, SRCDIR as the integration tests)
"""

import base64
import copy
import io
import json
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cigtd_common as T  # noqa: E402
import framing_cases as F  # noqa: E402

try:
    import yaml
    import jsonschema
except ImportError as e:
    print("FAIL: %s: this test needs Debian's python3-yaml and python3-jsonschema "
          "(make deps installs them)" % e)
    sys.exit(1)

check = T.check
SPEC_PATH = os.path.join(T.SRCDIR, "proto", "http-api.yaml")
with open(SPEC_PATH) as f:
    SPEC = yaml.safe_load(f)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TOKEN = "api-test-token"
CALLED = set()     # (METHOD, template) answered with a 2XX
STATUSES = {}      # (METHOD, template) -> statuses seen


# --------------------------------------------------------------------- the spec as JSON Schema

def to_json_schema(s):
    """An OpenAPI 3.0 schema object as JSON Schema draft 4, objects with properties closed."""
    if isinstance(s, list):
        return [to_json_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k in ("example", "examples", "description", "format", "nullable", "summary"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(p) for name, p in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = to_json_schema(v)
        elif k in ("oneOf", "anyOf", "allOf"):
            out[k] = [to_json_schema(x) for x in v]
        else:
            out[k] = v
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = out["enum"] + [None]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


DOC = {"components": {"schemas": {n: to_json_schema(s)
                                  for n, s in SPEC["components"]["schemas"].items()}}}
RESOLVER = jsonschema.RefResolver("", DOC)


def validate(schema, value, what):
    v = jsonschema.Draft4Validator(to_json_schema(schema), resolver=RESOLVER)
    errs = list(v.iter_errors(value))
    for e in errs[:5]:
        msg = e.message[:200]
        if e.context:  # oneOf/anyOf: what each branch found wrong
            msg = "no branch of %s matches: %s" % (e.validator, "; ".join(
                "[%s] %s at /%s" % (c.relative_schema_path[0], c.message[:150],
                                    "/".join(map(str, c.absolute_path)))
                for c in e.context[:6]))
        check(False, "%s: %s (at /%s)" % (what, msg, "/".join(map(str, e.absolute_path))))
    return not errs


def resolve(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = SPEC
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def media_match(spec_type, ctype):
    """application/json matches 'application/json'; 'text/plain; version=0.0.4' matches
    'text/plain; version=0.0.4; charset=utf-8' (every parameter the spec names is there)."""
    def parse(t):
        parts = [p.strip() for p in t.split(";")]
        return parts[0].lower(), {p.split("=", 1)[0].lower(): p.split("=", 1)[-1]
                                  for p in parts[1:] if p}
    st, sp = parse(spec_type)
    at, ap = parse(ctype)
    return st == at and all(ap.get(k) == v for k, v in sp.items())


# -------------------------------------------------------------------------- the checker

def operation(template, method):
    item = SPEC["paths"].get(template)
    return item.get(method.lower()) if item else None


def check_answer(template, method, status, headers, body, what):
    """One answer against the operation's documented responses."""
    what = "%s %s (%s): %d" % (method, template, what, status)
    STATUSES.setdefault((method, template), set()).add(status)
    op = operation(template, method)
    if not check(op is not None, "%s: operation not in the spec" % what):
        return
    if 200 <= status < 300:
        CALLED.add((method, template))
    resp = op["responses"].get(str(status))
    if not check(resp is not None, "%s: status %d is not documented (documented: %s)"
                 % (what, status, ", ".join(op["responses"]))):
        return
    resp = resolve(resp)
    for name, h in (resp.get("headers") or {}).items():
        h = resolve(h)
        val = headers.get(name.lower())
        if h.get("required"):
            check(val is not None, "%s: required header %s missing" % (what, name))
        if val is not None and h.get("schema", {}).get("type") == "integer":
            check(val.strip().isdigit(), "%s: header %s is '%s', not an integer"
                  % (what, name, val))
    if method == "HEAD":
        check(body == b"", "%s: HEAD answered a body" % what)
        return
    content = resp.get("content")
    ctype = headers.get("content-type")
    if content and resp.get("x-cigt-empty-body") and body == b"" and ctype is None:
        return
    if not content:
        check(body == b"", "%s: the response has no documented content, got %d bytes: %r"
              % (what, len(body), body[:80]))
        return
    if not check(ctype is not None, "%s: no Content-Type (documented: %s)"
                 % (what, ", ".join(content))):
        return
    match = [t for t in content if media_match(t, ctype)]
    if not check(match, "%s: Content-Type '%s' is not documented (%s)"
                 % (what, ctype, ", ".join(content))):
        return
    media = content[match[0]]
    if match[0] == "application/octet-stream" and "application/json" in content:
        # The binary tensor extension: the JSON part, then the raw outputs.
        n = headers.get("inference-header-content-length")
        if not check(n is not None and n.isdigit() and int(n) <= len(body),
                     "%s: binary answer without a valid Inference-Header-Content-Length" % what):
            return
        body, media = body[:int(n)], content["application/json"]
    schema = media.get("schema", {})
    if "json" in match[0] or media is content.get("application/json"):
        try:
            value = json.loads(body)
        except ValueError as e:
            check(False, "%s: body is not JSON (%s): %r" % (what, e, body[:120]))
            return
        validate(schema, value, what)
    elif schema.get("type") == "string":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            check(False, "%s: a text body that is not UTF-8" % what)


def call(d, method, template, path=None, body=None, headers=None, what="", want=None):
    """Sends one request and checks the answer; returns (status, headers, body)."""
    path = path or fill(template)
    st, hd, data = d.request(method, path, body=body, headers=headers or {})
    check_answer(template, method, st, hd, data, what or path)
    if want is not None:
        check(st == want, "%s %s (%s): %d, expected %d: %r" % (method, path, what, st, want,
                                                               data[:200]))
    return st, hd, data


def fill(template, name="fashion_mnist", version="1"):
    return template.replace("{name}", name).replace("{version}", version)


def raw_status(port, data):
    out, _, _ = F.send(port, data, 5)
    codes = F.status_lines(out)
    head, _, body = out.partition(b"\r\n\r\n")
    hd = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        hd[k.strip().lower()] = v.strip()
    return (codes[0] if codes else 0), hd, body


# ------------------------------------------------------------------------------ fixtures

def boot():
    """Test image 0 (an ankle boot) as raw pixels, PNG, PGM, PPM and JPEG."""
    px = T.load_images(1)[0]
    out = {"pixels": px, "png": T.png_gray(list(px), 28, 28),
           "pgm": b"P5 28 28 255\n" + px,
           "ppm": b"P6 28 28 255\n" + bytes(b for p in px for b in (p, p, p))}
    try:
        from PIL import Image
        buf = io.BytesIO()
        Image.frombytes("L", (28, 28), px).save(buf, "JPEG", quality=95)
        out["jpeg"] = buf.getvalue()
    except ImportError:
        check(False, "python3-pil is needed for the JPEG request")
    return out


def examples(request_body, media="application/json"):
    rb = resolve(request_body)
    return [(name, ex["value"]) for name, ex in
            rb["content"][media].get("examples", {}).items()]


def binary_infer(px, binary_output):
    header = {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                          "parameters": {"binary_data_size": len(px)}}]}
    if binary_output:
        header["parameters"] = {"binary_data_output": True}
    h = json.dumps(header).encode()
    return h + px, {"Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(len(h))}


# ------------------------------------------------------------------------ the single model

def single_model(img):
    d = T.Daemon(os.path.join(T.SRCDIR, "models", "fashion_mnist.safetensors"),
                 "--workers", "1", "--max-images", "4", "--max-body-bytes", "200000")
    try:
        gets = [(p, m.upper()) for p, item in SPEC["paths"].items() for m in item
                if m in ("get", "head")]
        for template, method in gets:
            st, hd, body = call(d, method, template, want=200)
            if method == "GET" and "stats" not in template and template != "/metrics":
                st2, hd2, _ = d.request("HEAD", fill(template))
                check(st2 == st and hd2.get("content-type") == hd.get("content-type")
                      and hd2.get("content-length") == str(len(body)),
                      "HEAD %s: %d %s %s, GET: %d %s %d bytes" % (
                          template, st2, hd2.get("content-type"), hd2.get("content-length"),
                          st, hd.get("content-type"), len(body)))
        json_h = {"Content-Type": "application/json"}
        classify = ["/v1/classify", "/v1/models/{name}/classify",
                    "/v1/models/{name}/versions/{version}/classify"]
        for template in classify:
            for name, value in examples(SPEC["paths"][template]["post"]["requestBody"]):
                call(d, "POST", template, body=json.dumps(value).encode(), headers=json_h,
                     what="example " + name, want=200)
        for kind, ctype in (("png", "image/png"), ("jpeg", "image/jpeg"),
                            ("pgm", "image/x-portable-graymap"),
                            ("ppm", "image/x-portable-pixmap")):
            if kind in img:
                call(d, "POST", "/v1/classify", body=img[kind], headers={"Content-Type": ctype},
                     what="raw " + kind, want=200)
        call(d, "POST", "/v1/classify", path="/v1/classify?top_k=3&compute=multi-1-0.3",
             body=img["pgm"], headers={"Content-Type": "image/x-portable-graymap"},
             what="query top_k and compute", want=200)
        infer = ["/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
        for template in infer:
            for name, value in examples(SPEC["paths"][template]["post"]["requestBody"]):
                call(d, "POST", template, body=json.dumps(value).encode(), headers=json_h,
                     what="example " + name, want=200)
            for binary_output in (False, True):
                body, h = binary_infer(img["pixels"], binary_output)
                _, hd, _ = call(d, "POST", template, body=body, headers=h, want=200,
                                what="binary input%s" % (", binary output" * binary_output))
                check(("inference-header-content-length" in hd) == binary_output,
                      "%s: Inference-Header-Content-Length only with binary outputs" % template)
        for name, value in examples(SPEC["paths"]["/v2/repository/index"]["post"]
                                    ["requestBody"]):
            call(d, "POST", "/v2/repository/index", body=json.dumps(value).encode(),
                 headers=json_h, what="example " + name, want=200)
        call(d, "POST", "/v2/repository/index", body=b"", want=200, what="no body")

        # Errors every operation can be made to give.
        for template, item in SPEC["paths"].items():
            for m in item:
                if m not in METHODS:
                    continue
                method = m.upper()
                # A request refused for its framing (two Host headers): 400 on any path.
                st, hd, body = raw_status(d.port, b"%s %s HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
                                          b"Content-Length: 0\r\n\r\n"
                                          % (method.encode(), fill(template).encode()))
                check(st == 400, "%s %s with two Host: %d" % (method, template, st))
                check_answer(template, method, st, hd, b"" if method == "HEAD" else body,
                             "two Host headers")
                if "{name}" in template:
                    call(d, method, template, path=fill(template, name="nope"),
                         body=b"{}" if method == "POST" else None, headers=json_h,
                         what="a model that is not loaded")
                if "{version}" in template:
                    for v in ("2", "0", "x"):
                        call(d, method, template, path=fill(template, version=v),
                             body=b"{}" if method == "POST" else None, headers=json_h,
                             what="version %s" % v, want=404)
                if method == "POST":
                    # A Content-Length over --max-body-bytes is refused before the body.
                    st, hd, body = raw_status(d.port, b"POST %s HTTP/1.1\r\nHost: x\r\n"
                                              b"Content-Type: application/json\r\n"
                                              b"Content-Length: 999999999\r\n\r\n"
                                              % fill(template).encode())
                    check(st == 413, "POST %s over the body limit: %d" % (template, st))
                    check_answer(template, method, st, hd, body, "Content-Length over the limit")
                    call(d, method, template, body=b"{\"bad json", headers=json_h,
                         what="malformed JSON", want=400)
        for template in classify + infer:
            call(d, "POST", template, body=b"x", headers={"Content-Type": "text/plain"},
                 what="text/plain", want=415)
            call(d, "POST", template, body=b"", headers=json_h, what="empty body", want=400)
        for template in classify:
            call(d, "POST", template, path=fill(template) + "?timeout_ms=0", body=img["pgm"],
                 headers={"Content-Type": "image/x-portable-graymap"}, what="timeout_ms=0",
                 want=504)
            five = {"images": [{"png": base64.b64encode(img["png"]).decode()}] * 5}
            call(d, "POST", template, body=json.dumps(five).encode(), headers=json_h,
                 what="5 images, --max-images 4", want=413)
            call(d, "POST", template, path=fill(template) + "?compute=nope", body=img["pgm"],
                 headers={"Content-Type": "image/x-portable-graymap"},
                 what="unknown operating point", want=400)
        for template in infer:
            req = {"parameters": {"timeout_ms": 0}, "inputs": [
                {"name": "image", "shape": [1, 28, 28], "datatype": "UINT8",
                 "data": list(img["pixels"])}]}
            call(d, "POST", template, body=json.dumps(req).encode(), headers=json_h,
                 what="parameters.timeout_ms 0", want=504)
            req = {"inputs": [{"name": "image", "shape": [5, 28, 28], "datatype": "UINT8",
                               "data": list(img["pixels"]) * 5}]}
            call(d, "POST", template, body=json.dumps(req).encode(), headers=json_h,
                 what="5 images, --max-images 4", want=413)
        for template in ("/v2/repository/models/{name}/load",
                         "/v2/repository/models/{name}/unload"):
            call(d, "POST", template, what="control mode none", want=400)
        call(d, "POST", "/v2/repository/index", body=b"{\"x\": 1}", headers=json_h,
             what="unknown key", want=400)

        # The methods a path does not document: 405, Allow naming the documented ones.
        for template, item in SPEC["paths"].items():
            doc = {m.upper() for m in item if m in METHODS}
            for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
                if method in doc:
                    continue
                st, hd, _ = d.request(method, fill(template), body=b"" if method != "GET"
                                      else None)
                allow = {m.strip() for m in hd.get("allow", "").split(",") if m.strip()}
                check(st == 405 and allow == doc, "%s %s: %d, Allow '%s'; documented: %s"
                      % (method, template, st, hd.get("allow"), sorted(doc)))
        for path in ("/v3", "/v2/models", "/v1/models/fashion_mnist/explain", "/index.htm"):
            st, _, _ = d.request("GET", path)
            check(st == 404, "GET %s (not in the spec): %d" % (path, st))
    finally:
        d.stop()


# ---------------------------------------------------------------- a repository, with a token

def repository(img, work):
    repo = os.path.join(work, "repo")
    for name, src, versions in (("fashion_mnist_thin", "thin", (1, 2)),
                                ("fashion_mnist_thick", "thick", (1,))):
        for v in versions:
            os.makedirs(os.path.join(repo, name, str(v)))
            shutil.copy(os.path.join(T.SRCDIR, "models", src + ".safetensors"),
                        os.path.join(repo, name, str(v), "model.safetensors"))
    with open(os.path.join(repo, "fashion_mnist_thin", "config.json"), "w") as f:
        json.dump({"version_policy": {"all": {}}}, f)
    tok = os.path.join(work, "token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    d = T.Daemon(None, "--model-repository", repo, "--model-control-mode", "explicit",
                 "--load-model", "fashion_mnist_thin", "--auth-token-file", tok,
                 "--workers", "1")
    auth = {"Authorization": "Bearer " + TOKEN}
    json_h = dict(auth, **{"Content-Type": "application/json"})
    public = {"/", "/index.html", "/metrics", "/v2/health/live", "/v2/health/ready"}
    try:
        for template, item in SPEC["paths"].items():
            for m in item:
                if m not in METHODS:
                    continue
                method = m.upper()
                path = fill(template, name="fashion_mnist_thin", version="2")
                st, hd, body = d.request(method, path, body=b"{}" if method == "POST" else None,
                                         headers={"Authorization": "Bearer wrong"})
                check_answer(template, method, st, hd, body, "wrong token")
                check((st == 401) == (template not in public),
                      "%s %s with a wrong token: %d" % (method, template, st))
        t = "/v2/models/{name}/versions/{version}"
        for template in (t, t + "/config", t + "/stats", t + "/ready",
                         "/v1/models/{name}/versions/{version}"):
            for method in ("GET", "HEAD"):
                call(d, method, template, path=fill(template, "fashion_mnist_thin", "2"),
                     headers=auth, what="version 2 of two", want=200)
        call(d, "POST", "/v1/models/{name}/versions/{version}/classify",
             path=fill("/v1/models/{name}/versions/{version}/classify", "fashion_mnist_thin",
                       "1"), body=img["pgm"],
             headers=dict(auth, **{"Content-Type": "image/x-portable-graymap"}), want=200)
        load = "/v2/repository/models/{name}/load"
        unload = "/v2/repository/models/{name}/unload"
        for name, value in examples(SPEC["paths"][load]["post"]["requestBody"]):
            call(d, "POST", load, path=fill(load, "fashion_mnist_thick"),
                 body=json.dumps(value).encode(), headers=json_h, what="example " + name,
                 want=200)
        call(d, "POST", load, path=fill(load, "fashion_mnist_thick"), headers=auth,
             what="no body", want=200)
        # Two models and no --default-model: the default-model endpoints answer 400.
        call(d, "GET", "/v1/model", headers=auth, what="two models, no default", want=400)
        call(d, "HEAD", "/v1/model", headers=auth, what="two models, no default", want=400)
        call(d, "POST", "/v1/classify", body=img["pgm"],
             headers=dict(auth, **{"Content-Type": "image/x-portable-graymap"}),
             what="two models, no default", want=400)
        st, _, body = call(d, "GET", "/v1/models", headers=auth, want=200)
        check(json.loads(body)["default"] is None, "/v1/models: default should be null")
        call(d, "POST", "/v2/repository/index", body=b"{\"ready\": true}", headers=json_h,
             want=200)
        call(d, "POST", load, path=fill(load, "nope"), headers=auth,
             what="no such model in the repository", want=404)
        call(d, "POST", load, path=fill(load, "fashion_mnist_thick"),
             body=b"{\"parameters\": {\"config\": \"{}\"}}", headers=json_h,
             what="Triton's config parameter", want=400)
        call(d, "POST", unload, path=fill(unload, "fashion_mnist_thick"), headers=auth,
             want=200)
        call(d, "POST", unload, path=fill(unload, "fashion_mnist_thick"), headers=auth,
             what="not loaded", want=404)
        for name, value in examples(SPEC["paths"][unload]["post"]["requestBody"]):
            call(d, "POST", unload, path=fill(unload, "fashion_mnist_thin"),
                 body=json.dumps(value).encode(), headers=json_h, what="example " + name)
    finally:
        d.stop()


def main():
    work = tempfile.mkdtemp(prefix="cigt-api-")
    try:
        img = boot()
        single_model(img)
        repository(img, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ops = {(m.upper(), p) for p, item in SPEC["paths"].items() for m in item if m in METHODS}
    for method, template in sorted(ops - CALLED, key=lambda x: (x[1], x[0])):
        check(False, "%s %s was never answered with a 2XX" % (method, template))
    n = sum(len(s) for s in STATUSES.values())
    print("%d operations called, %d (operation, status) pairs checked against the spec"
          % (len(CALLED), n))
    for (method, template), sts in sorted(STATUSES.items(), key=lambda x: (x[0][1], x[0][0])):
        print("  %-6s %-48s %s" % (method, template, " ".join(map(str, sorted(sts)))))
    if T.FAILURES:
        print("%d failures" % len(T.FAILURES))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
