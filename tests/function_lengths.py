#!/usr/bin/python3
"""Functions that read top to bottom (issue 24): lists every C function in the given trees
(default src/) longer than --max lines (default 120), from its opening brace to its closing
one, and exits 1 when one of them has no comment saying why it stays whole: a comment in the
lines just above its definition containing "not split". --all lists every long function,
explained or not.

    tests/function_lengths.py [--max N] [--all] [DIR|FILE ...]

A plain scan, not a C parser: comments and string literals are blanked, then a '{' at brace
depth 0 after a '(' in the text since the previous top-level item opens a function body."""

import argparse
import pathlib
import re
import sys


def blank(text):
    """Comments and literals replaced by spaces (newlines kept, so line numbers hold)."""
    keep_lines = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  keep_lines, text, flags=re.S)


def functions(path):
    """(name, first line, line count, explained) of every function body in path."""
    text = path.read_text(errors="replace")
    lines, code = text.split("\n"), blank(text).split("\n")
    depth, start, head = 0, None, []
    for i, line in enumerate(code):
        for ch in line:
            if depth == 0 and ch not in "{}":
                head.append(ch)
            if ch == "{":
                if depth == 0:
                    sig = "".join(head)
                    m = re.findall(r"(\w+)\s*\(", sig)
                    start = i if m and "=" not in sig.split("(")[0] else None
                    name = m[0] if m else ""
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    if start is not None:
                        above = "\n".join(lines[max(0, start - 12):start + 1])
                        yield name, start + 1, i - start + 1, "not split" in above
                    start, head = None, []
            elif ch == ";" and depth == 0:
                head = []
        if depth == 0:
            head.append("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("--all", action="store_true")
    ap.add_argument("paths", nargs="*", default=["src"])
    args = ap.parse_args()
    bad = 0
    for root in map(pathlib.Path, args.paths):
        files = [root] if root.is_file() else sorted(root.rglob("*.c"))
        for p in files:
            for name, line, n, explained in functions(p):
                if n <= args.max or (explained and not args.all):
                    continue
                print("%s:%d: %s is %d lines%s" % (p, line, name, n,
                                                   " (says why)" if explained else ""))
                bad += not explained
    if bad:
        print("%d function%s over %d lines without a comment saying why (\"not split: ...\")"
              % (bad, "" if bad == 1 else "s", args.max))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
