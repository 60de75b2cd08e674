#!/usr/bin/env python3
"""embed.py IN OUT NAME -- writes a C file defining `const char NAME[]` and `NAME_len` with IN's
bytes, so the daemon serves its page from memory."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(out, "w") as f:
    f.write('#include <stddef.h>\n\nconst char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write("".join("%d," % b for b in data[i:i + 16]) + "\n")
    f.write("0};\nconst size_t %s_len = %d;\n" % (name, len(data)))
