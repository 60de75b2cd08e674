"""The package installs offline as the README says: a virtual environment that sees Debian's
torch and numpy (--system-site-packages), `pip install --no-build-isolation --no-index` of a
copy of python/ (the source tree stays clean), then, from another directory, the installed
cigt.torch loads the shipped model and classifies an image as cigt does.
Run: /usr/bin/python3 tests/python/test_install.py"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import common


class Install(unittest.TestCase):
    def test_pip_install_offline(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "python")
            shutil.copytree(os.path.join(common.SRC, "python"), src,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            venv = os.path.join(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True, timeout=300)
            py = os.path.join(venv, "bin", "python")
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
            env.pop("PYTHONPATH", None)
            r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                                src], capture_output=True, text=True, timeout=300, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            code = ("import cigt, cigt.torch as ct; from cigt import data; "
                    "print(cigt.__file__); m = ct.load(%r); "
                    "x, y = data.load_idx_dir(%r, 't10k', 1); "
                    "print(m.classes[m(m.preprocess(x)).classes()[0]])"
                    % (common.MODEL, common.DATA))
            r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=300,
                               cwd=tmp, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            where, label = r.stdout.strip().splitlines()
            self.assertTrue(where.startswith(venv), where)  # the installed copy, not the tree
            self.assertEqual(label, "Ankle boot")  # the first test image, as cigt classifies it


if __name__ == "__main__":
    unittest.main(verbosity=2)
