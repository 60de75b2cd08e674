#!/usr/bin/python3
"""The install layout: `meson install --destdir` puts cigt and cigtd in bin, the default model
and its config in <datadir>/cigt/models/, the systemd unit in <prefix>/lib/systemd/system/ and
the example config in <sysconfdir>/cigt/; the installed cigtd, started with no --model from an
empty directory, finds the installed model (relative to its own binary, so also under a DESTDIR)
and classifies real test images. With the model removed it refuses to start and names the path.
"""

import filecmp
import json
import os
import subprocess

import deploylib as dl


def main():
    model = dl.need_model()
    work = dl.scratch("cigt-install-")
    dest = os.path.join(work, "dest")
    dl.meson_install(dest)
    p = dl.meson_prefix()
    bindir, datadir, etc = (dest + p["bindir"], dest + p["datadir"], dest + p["sysconfdir"])
    unit = dest + os.path.join(p["prefix"], "lib", "systemd", "system", "cigtd.service")

    for exe in ("cigt", "cigtd"):
        dl.check(os.access(os.path.join(bindir, exe), os.X_OK), "bin/%s installed" % exe)
    inst_model = os.path.join(datadir, "cigt", "models", "fashion_mnist.safetensors")
    dl.check(os.path.exists(inst_model) and filecmp.cmp(inst_model, model, shallow=False),
             "share/cigt/models/fashion_mnist.safetensors is the shipped model")
    inst_thick = os.path.join(datadir, "cigt", "models", "thick.safetensors")
    dl.check(os.path.exists(inst_thick) and filecmp.cmp(
        inst_thick, os.path.join(dl.SRCDIR, "models", "thick.safetensors"), shallow=False),
        "share/cigt/models/thick.safetensors (the default model's escalation target) installed "
        "beside it")
    inst_cfg = os.path.join(datadir, "cigt", "models", "fashion_mnist.json")
    dl.check(os.path.exists(inst_cfg) and filecmp.cmp(
        inst_cfg, os.path.join(dl.SRCDIR, "models", "fashion_mnist.json"), shallow=False),
        "share/cigt/models/fashion_mnist.json installed")
    inst_reg = os.path.join(datadir, "cigt", "models", "fashion_mnist_rho25.json")
    dl.check(os.path.exists(inst_reg) and filecmp.cmp(
        inst_reg, os.path.join(dl.SRCDIR, "models", "fashion_mnist_rho25.json"),
        shallow=False), "share/cigt/models/fashion_mnist_rho25.json (the shipped "
        "model's config) installed")
    dl.check(os.path.exists(unit), "lib/systemd/system/cigtd.service installed")
    conf = os.path.join(etc, "cigt", "cigtd.json")
    dl.check(os.path.exists(conf) and isinstance(json.load(open(conf)), dict),
             "etc/cigt/cigtd.json installed (a JSON object)")
    nothing_else = sorted(os.path.relpath(os.path.join(r, f), dest)
                          for r, _, fs in os.walk(dest) for f in fs)
    print("installed:", nothing_else)
    dl.check(len(nothing_else) == 9, "nine files installed, no test or bench binaries (a new "
             "installed file belongs in this test's list)")

    # The installed tools work on the installed model.
    r = subprocess.run([os.path.join(bindir, "cigt"), "info", inst_model], capture_output=True,
                       text=True)
    dl.check(r.returncode == 0 and "MACs/route  %d" % dl.PATH_MACS in r.stdout,
             "installed `cigt info` reads the installed model")
    r = subprocess.run([os.path.join(bindir, "cigtd"), "--help"], capture_output=True, text=True)
    dl.check(os.path.join(p["datadir"], "cigt", "models") + "/" in r.stdout,
             "installed cigtd --help names the default model under the prefix")

    # No --model, an empty working directory, the installed example config.
    empty = os.path.join(work, "empty")
    os.mkdir(empty)
    d = dl.Cigtd("--config", conf, "--workers", "1", binary=os.path.join(bindir, "cigtd"),
                 cwd=empty)
    try:
        dl.check(os.path.realpath(d.model_path) == os.path.realpath(inst_model),
                 "installed cigtd found the installed model by itself (%s)" % d.model_path)
        st, _, _ = dl.http_request(d.port, "GET", "/v2/health/ready")
        dl.check(st == 200, "ready")
        imgs, labels = dl.load_images(20)
        answers = [dl.classify(d.port, im) for im in imgs]
        dl.check(all(st == 200 and a["macs"] == dl.PATH_MACS for st, a in answers),
                 "20 test images classified, each at one route's MACs")
        right = sum(1 for (st, a), y in zip(answers, labels) if st == 200 and a["class"] == y)
        dl.check(right >= 16, "%d of 20 test images classified correctly (at least 16)" % right)
    finally:
        rc = d.stop()
    dl.check(rc == 0, "installed cigtd exits 0 on SIGTERM (got %s)" % rc)

    # Without the installed model there is nothing to find: a clear error, not a silent default.
    os.rename(inst_model, inst_model + ".away")
    r = subprocess.run([os.path.join(bindir, "cigtd"), "--check-config"], capture_output=True,
                       text=True, cwd=empty, timeout=60)
    dl.check(r.returncode != 0 and "fashion_mnist.safetensors" in r.stderr,
             "without the installed model cigtd refuses and names the path (rc %d: %s)"
             % (r.returncode, r.stderr.strip()))
    dl.finish("install-layout")


if __name__ == "__main__":
    main()
