#!/usr/bin/env python3
"""The docs' option lists against the option tables (src/common/options.h).

The tables come from the binaries themselves: `cigt options --json` (every subcommand's table,
as cli_parse gets it, and the training config's "train" section) and `cigtd --options-json`
(cigtd's actions and settings, and a repository model's config.json). Checks:

1. proto/options.md is exactly the rendering of the tables (every row documented there with
   its type, range, default and help; nothing documented that is not a row). `--write`
   regenerates it.
2. models/README.md's table of `train` keys has one line per row of the section, and each
   line of a section names every key of that section.
3. Every `--flag` written after `cigt SUBCOMMAND` or `cigtd` in README.md, proto/, models/
   README.md and deploy/ is a flag of that command; every other `--flag` there is a flag of
   cigt or cigtd or a known flag of another tool (curl, docker, meson, ...).
4. deploy/cigtd.json and the config-file examples in README.md are valid cigtd config files
   (keys and value types and ranges from the table), and every key of the repository's
   config.json (nested ones too) appears in README.md's repository section, whose example
   names only keys that exist.

usage: test_options.py CIGT CIGTD SOURCE_ROOT [--write]
"""
import json
import os
import re
import subprocess
import sys

FAILS = []


def check(ok, what):
    if not ok:
        FAILS.append(what)
        print("FAIL", what)
    return ok


# ------------------------------------------------------------------------ the tables

def tables(cigt, cigtd):
    a = json.loads(subprocess.run([cigt, "options", "--json"], check=True,
                                  capture_output=True, text=True).stdout)
    b = json.loads(subprocess.run([cigtd, "--options-json"], check=True,
                                  capture_output=True, text=True).stdout)
    return a["cigt"], a["train"], b["cigtd"], b["repository"]


def walk(rows, prefix=""):
    """(dotted key, row) for every row and nested row."""
    for r in rows:
        yield prefix + r["key"], r
        if r.get("keys"):
            yield from walk(r["keys"], prefix + r["key"] + ".")


# ------------------------------------------------------------------------ rendering

def md(text):
    return (text or "").replace("\n", " ").replace("|", "\\|")


def value(r, flags):
    """The value column; flags: the row is a command-line option (a flag takes no value)."""
    t = r["type"]
    if t == "custom" and "min" in r and (r["arg"] or " ")[0] == "[":
        return "`%s` of integers in [%d, %d]" % (md(r["arg"]), r["min"], r["max"])
    if t == "int" or (t == "custom" and "min" in r):
        return "integer in [%d, %d]" % (r["min"], r["max"])
    if t == "number":
        return "number in [%s, %s]" % (fmt(r["min"]), fmt(r["max"]))
    if t == "choice":
        return "one of " + ", ".join("`%s`" % c for c in r["choices"])
    if t == "path":
        return "file path (1 to %d bytes)" % r["max_bytes"]
    if t == "flag":
        return "flag" if flags else "true or false"
    if t == "object":
        return "object `%s`" % md(r["arg"]) if r["arg"] else "object"
    if t == "custom" and r["arg"] and r["arg"][0] in "[{":
        return "`%s`" % md(r["arg"])
    return "string" if t == "custom" else t


def fmt(x):
    return ("%.10g" % x).replace("e+0", "e").replace("e-0", "e-")


def default(r):
    if r["required"]:
        return "required"
    return "`%s`" % r["default"] if r["default"] is not None else ""


def option(r):
    s = "`%s`, " % r["short"] if r.get("short") else ""
    return s + "`--%s%s`" % (r["name"], " " + md(r["arg"]) if r["arg"] else "")


def render(cigt, train, cigtd, repo):
    out = ["# Options",
           "",
           "Every option of `cigt`, `cigtd`, a training config's `train` section and a repository",
           "model's `config.json`: the rendering of their option tables (one row type,",
           "src/common/options.h, behind every flag, config file and `--help`), written by",
           "`tests/docs/test_options.py --write` from what `cigt options --json` and",
           "`cigtd --options-json` print; the test fails when a table and this file differ. A",
           "range is inclusive; a value outside it is refused with a message naming the option.",
           ""]
    out += ["## `cigt`", "",
            "Every subcommand also takes `-h`/`--help` (its usage and these rows); a usage error",
            "exits with status 2. Rows marked *hidden* are not listed by `--help` (the usage",
            "text says what they do).", ""]
    shared = {}
    for name, cmd in cigt.items():
        out += ["### `cigt %s`" % name, "", "```", cmd["usage"].rstrip("\n"), "```", "",
                "| option | value | default | meaning |", "|---|---|---|---|"]
        for r in cmd["options"]:
            out.append("| %s | %s | %s | %s%s |" % (option(r), value(r, True), default(r),
                                                   md(r["help"]),
                                                   " *(hidden)*" if r["hidden"] else ""))
            if r["commands"]:
                shared["--" + r["name"]] = r["commands"]
        out.append("")
    out += ["Rows defined once and bound by several subcommands (each may word its help for",
            "itself; name, type, range and default are the row's):", ""]
    for flag, cmds in sorted(shared.items()):
        out.append("- `%s`: %s" % (flag, ", ".join("`%s`" % c for c in cmds)))
    out.append("")

    out += ["## `cigtd`", "",
            "Actions (flags only):", "",
            "| option | value | meaning |", "|---|---|---|"]
    for r in cigtd:
        if "cigtd-config" not in r["where"]:
            out.append("| %s | %s | %s%s |" % (option(r), value(r, True), md(r["help"]),
                                               " *(hidden)*" if r["hidden"] else ""))
    out += ["",
            "Settings: each is a flag and a key of the `--config` file (a JSON object; `-` and",
            "`_` are interchangeable in keys). Precedence: the defaults, then the file, then the",
            "flags. `--check-config` prints the effective settings in the file's form.", "",
            "| flag | file key | value | default | meaning |", "|---|---|---|---|---|"]
    for r in cigtd:
        if "cigtd-config" in r["where"]:
            out.append("| %s | `%s` | %s | %s | %s |" % (option(r), r["key"], value(r, True),
                                                        default(r), md(r["help"])))
    out.append("")

    out += ["## A training config's `train` section", "",
            "Read by `cigt train` and `cigt grad` (models/README.md says what each key does).",
            "Unknown keys are errors; a section's keys get their defaults only when the",
            "section is present, and a required key of an optional section is required when",
            "the section is given. Also settable by `cigt train` flags: " +
            ", ".join("`%s` (`--%s`)" % (r["key"], r["name"]) for r in train
                      if "cigt" in r["where"]) + ".", "",
            "| key | value | default | meaning |", "|---|---|---|---|"]
    for key, r in walk(train):
        out.append("| `%s` | %s | %s | %s |" % (key, value(r, False), default(r), md(r["help"])))
    out.append("")

    out += ["## A repository model's `config.json`", "",
            "Triton's key names (README.md, the model repository). Unknown keys are errors that",
            "keep the model from loading. `version_policy` takes exactly one of its keys.", "",
            "| key | value | default | meaning |", "|---|---|---|---|"]
    for key, r in walk(repo):
        out.append("| `%s` | %s | %s | %s |" % (key, value(r, False), default(r), md(r["help"])))
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------ the other docs

FOREIGN = {  # flags of other tools that the docs show
    "--data-binary", "--data-urlencode", "--rm", "--format", "--destdir", "--ulimit", "--suite",
    "--storage.tsdb.path", "--prefix", "--offline", "--now", "--no-install-recommends", "--name",
    "--config.file", "--web.listen-address", "--user-group", "--uid", "--timeout",
    "--start-period", "--signal", "--shell", "--security-opt", "--runtime", "--read-only",
    "--patch-file", "--no-rebuild", "--no-create-home", "--interval", "--home-dir", "--from",
    "--cap-drop", "--buildtype", "--retries", "--version", "--net", "--no-hardlinks",
    "--no-print-directory", "--self-test", "--python_out", "--grpc_python_out", "--plugin",
    "--cigt",  # models/campaign/evaluate.py: which cigt binary it runs
    "--check",  # models/resnet/make_configs.py: fail when a written config differs
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9._-]*[a-z0-9]")


def check_flags(root, cigt, cigtd):
    sub = {name: {"--" + r["name"] for r in cmd["options"]} | {"--help"}
           for name, cmd in cigt.items()}
    daemon = {"--" + r["name"] for r in cigtd}
    known = daemon.union(*sub.values())
    # (a Kubernetes object named cigtd is not the command)
    command = re.compile(r"(?<!deployment )\bcigtd\b|\bcigt\s+(%s)\b" % "|".join(sub))
    files = ["README.md", "models/README.md"]
    files += ["proto/" + f for f in sorted(os.listdir(os.path.join(root, "proto")))
              if f != "options.md"]
    deploy = []
    for d, dirs, names in os.walk(os.path.join(root, "deploy")):
        dirs[:] = [x for x in dirs if x != "node_modules"]  # npm ci's, not our docs
        deploy += [os.path.relpath(os.path.join(d, n), root) for n in names]
    files += sorted(deploy)
    seen = 0
    for f in files:
        try:
            text = open(os.path.join(root, f), encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            marks = list(command.finditer(line))
            cuts = [(m.start(), m.group(1) or "cigtd") for m in marks]
            for m in FLAG.finditer(line):
                tok = m.group(0)
                before = [(pos, who) for pos, who in cuts if pos < m.start()]
                owner = before[-1][1] if before else None
                # a command's flags run to the end of the line or of its code span
                if before and "`" in line[before[-1][0]:m.start()]:
                    owner = None
                seen += 1
                where = "%s:%d: %s" % (f, n, tok)
                if owner == "cigtd":
                    check(tok in daemon, "%s is not a cigtd flag" % where)
                elif owner:
                    check(tok in sub[owner], "%s is not a flag of cigt %s" % (where, owner))
                else:
                    check(tok in known or tok in FOREIGN,
                          "%s is neither a cigt/cigtd flag nor a known foreign one" % where)
    check(seen > 100, "the flag scan found %d flags in the docs" % seen)


def check_config_file(obj, cigtd, what):
    rows = {}
    for r in cigtd:
        if "cigtd-config" in r["where"]:
            rows[r["key"]] = rows[r["key"].replace("_", "-")] = r
    for k, v in obj.items():
        r = rows.get(k)
        if not check(r is not None, "%s: %s is not a cigtd config key" % (what, k)):
            continue
        t = r["type"]
        ok = {"int": lambda: isinstance(v, int) and not isinstance(v, bool)
              and r["min"] <= v <= r["max"],
              "flag": lambda: isinstance(v, bool),
              "string": lambda: isinstance(v, str),
              "choice": lambda: v in r["choices"],
              "custom": lambda: isinstance(v, (str, list))}[t]()
        check(ok, "%s: %s = %r does not fit its row (%s)" % (what, k, v, value(r, False)))


def check_readme(root, cigtd, repo, train):
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    check_config_file(json.load(open(os.path.join(root, "deploy", "cigtd.json"))), cigtd,
                      "deploy/cigtd.json")
    # {"max_batch": 32, "access_log": true}: the config-file examples of the cigtd part.
    para = readme[readme.index("- **Config file.**"):]
    para = para[:para.index("\n\n")]
    examples = re.findall(r"`(\{[^`]*\})`", para)
    check(examples, "README.md: no example in the Config file paragraph")
    for e in examples:
        check_config_file(json.loads(e), cigtd, "README.md example %s" % e)
    # The repository section: every config.json key, and only those.
    repo_text = readme[readme.index("### Many models"):readme.index("## Deployment")]
    keys = {r["key"] for _, r in walk(repo)}
    for k in sorted(keys):
        check('"%s"' % k in repo_text or "`%s`" % k in repo_text,
              "README.md's repository section does not name config.json key %s" % k)
    example = repo_text[repo_text.index("config.json` uses"):repo_text.index("(without the")]
    for k in re.findall(r'"(\w+)":', example):
        check(k in keys, "README.md's config.json example has %s, not a key of the table" % k)
    # models/README.md: one table line per train key; a section's line names its keys.
    models = open(os.path.join(root, "models", "README.md"), encoding="utf-8").read()
    part = models[models.index("## The config's `train` section"):]
    part = part[:part.index("\n\n", part.index("|---"))]
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", part, re.M)}
    names = [r["key"] for r in train]
    check(sorted(lines) == sorted(names),
          "models/README.md's train table: missing %s, not in the table %s" %
          (sorted(set(names) - set(lines)), sorted(set(lines) - set(names))))
    for r in train:
        for s in r.get("keys") or []:
            check('"%s"' % s["key"] in lines.get(r["key"], ""),
                  "models/README.md: the %s line does not name %s.%s" %
                  (r["key"], r["key"], s["key"]))


def main():
    if len(sys.argv) not in (4, 5) or (len(sys.argv) == 5 and sys.argv[4] != "--write"):
        sys.exit(__doc__)
    cigt_exe, cigtd_exe, root = sys.argv[1:4]
    cigt, train, cigtd, repo = tables(cigt_exe, cigtd_exe)
    path = os.path.join(root, "proto", "options.md")
    text = render(cigt, train, cigtd, repo)
    if len(sys.argv) == 5:
        open(path, "w", encoding="utf-8").write(text)
        print("wrote", path)
        return 0
    # Every row has help, and proto/options.md is the rendering.
    for name, cmd in cigt.items():
        for r in cmd["options"]:
            check(r["help"], "cigt %s --%s has no help text" % (name, r["name"]))
    for what, rows in (("train", train), ("cigtd", cigtd), ("config.json", repo)):
        for key, r in walk(rows):
            check(r["help"], "%s: %s has no help text" % (what, key))
    have = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if not check(have == text, "proto/options.md is not the rendering of the option tables "
                               "(run tests/docs/test_options.py %s %s %s --write)" %
                 (cigt_exe, cigtd_exe, root)):
        import difflib
        sys.stdout.writelines(list(difflib.unified_diff(
            have.splitlines(True), text.splitlines(True), "proto/options.md", "tables"))[:60])
    check_flags(root, cigt, cigtd)
    check_readme(root, cigtd, repo, train)
    if FAILS:
        print("%d problems" % len(FAILS))
        return 1
    print("ok: proto/options.md, models/README.md, README.md and deploy/ agree with the tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
