#!/usr/bin/python3
"""The client commands of README.md's "Serving: cigtd" section, exactly as printed, and the
checks of what cigtd answered to them. deploy/test-container.sh runs them in a bare Debian 12
container where `./cigt.sh serve` is serving:

    readme_serving.py script README.md > readme.sh     # the commands, with markers
    bash readme.sh > readme.out 2>&1                   # (in the container, in an empty directory)
    readme_serving.py check readme.sh readme.out       # one ok/FAIL line per command

The commands are the section's indented blocks up to "### gRPC" (its Python client needs the
test packages grpcio and protoc, which a serving machine has not; the grpc-readme test runs it
as printed), less the block that
starts the server and the printed answer (a block starting with "{"); a line ending in a
backslash goes on on the next. Every command must exit 0, and each curl's answer is checked
against what the shipped model gives the first Fashion-MNIST test image (class 9, Ankle boot).
"""

import json
import re
import sys

SERVER = "./cigt.sh serve"
MACS, DENSE = 5749632, 11054848


def commands(readme):
    text = open(readme).read()
    start = text.index("## Serving: `cigtd`")
    section = text[start:text.index("### gRPC", start)]
    blocks, cur = [], []
    for line in section.splitlines():
        if line.startswith("    "):
            cur.append(line[4:])
        elif line.strip() == "" and cur:
            cur.append("")
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    out = []
    for b in blocks:
        body = [x for x in b if x.strip()]
        if not body or any(SERVER in x for x in body) or body[0].lstrip().startswith("{"):
            continue
        cmd = ""
        for x in body:
            if not cmd and x.lstrip().startswith("#"):
                continue
            cmd += x.strip() if cmd else x
            if cmd.endswith("\\"):
                cmd = cmd[:-1] + " "
            else:
                out.append(cmd)
                cmd = ""
    return out


def script(readme):
    print("# %s: the client commands of \"Serving: cigtd\", as printed" % readme)
    for i, c in enumerate(commands(readme)):
        print("printf '@@%d start\\n'" % i)
        print(c)
        print("printf '\\n@@%d rc=%%d\\n' $?" % i)


def answer_json(out):
    """The JSON object an answer holds (a Triton binary answer: its JSON header)."""
    s = out[out.index("{"):] if "{" in out else ""
    return json.JSONDecoder().raw_decode(s)[0]


def expect(cmd, out):
    """(ok, what) for one command's output."""
    if "curl" not in cmd.split()[0:1] and not cmd.startswith("curl"):
        return True, "ran"
    url = re.findall(r"http://127\.0\.0\.1:8080(/[^\s']*)", cmd)[-1]
    if url == "/v2/health/ready":
        return out.startswith("HTTP/1.1 200"), "status line %r" % out.splitlines()[0][:40]
    a = answer_json(out)
    if url.startswith("/v1/classify"):
        good = (a.get("class") == 9 and a.get("label") == "Ankle boot" and a.get("macs") == MACS
                and a.get("dense_macs") == DENSE and a.get("route") == [0, 0, 0])
        if "top_k=3" in url:
            top = [v for k, v in a.items() if k.startswith("top") and isinstance(v, list)]
            good = good and len(top) == 1 and len(top[0]) == 3
        return good, "class %s %s, macs %s, route %s" % (a.get("class"), a.get("label"),
                                                          a.get("macs"), a.get("route"))
    if url == "/v2/models/fashion_mnist":
        return (a.get("name") == "fashion_mnist" and
                a["inputs"][0]["name"] == "image"), "model %s" % a.get("name")
    if url == "/v2/models/fashion_mnist/infer":
        o = {x["name"]: x for x in a["outputs"]}
        return o["class"]["data"] == [9], "class %s, outputs %s" % (o["class"].get("data"),
                                                                     sorted(o))
    return False, "no check for %s" % url


def check(script_file, out_file):
    cmds = [line for line in open(script_file).read().splitlines()
            if line and not line.startswith("#") and not re.match(r"printf '(\\n)?@@", line)]
    out = open(out_file, errors="replace").read()
    fails = 0
    for i, c in enumerate(cmds):
        m = re.search(r"@@%d start\n(.*?)\n@@%d rc=(\d+)\n" % (i, i), out, re.S)
        short = c if len(c) < 90 else c[:87] + "..."
        if not m:
            print("FAIL: README command %d did not finish: %s" % (i + 1, short))
            fails += 1
            continue
        body, rc = m.group(1), int(m.group(2))
        try:
            good, what = expect(c, body)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            good, what = False, "unreadable answer (%s): %r" % (e, body[:200])
        good = good and rc == 0
        fails += not good
        print("%s README command %d (exit %d, %s): %s"
              % ("ok:  " if good else "FAIL:", i + 1, rc, what, short))
    if not cmds:
        print("FAIL: no client command found in README.md's Serving section")
        fails += 1
    return 1 if fails else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["script"]:
        script(sys.argv[2])
    elif sys.argv[1:2] == ["check"]:
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
