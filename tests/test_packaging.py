"""Packaging metadata: building the wheel's metadata raises no setuptools deprecation warning, and
the license is declared once, as an SPDX expression matching the LICENSE file.

The metadata is built with the installed setuptools (``build_meta``, what
``pip wheel --no-build-isolation`` calls), in a subprocess, on a temporary copy of the files a
build reads; skipped when setuptools is missing or older than the build-system requirement.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "README.rst", "LICENSE")

BUILD = r"""
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from setuptools import build_meta
    name = build_meta.prepare_metadata_for_build_wheel(sys.argv[1])
print(json.dumps({"dist_info": name, "warnings": [
    [type(w.message).__name__, [c.__name__ for c in type(w.message).__mro__], str(w.message)[:500]] for w in caught]}))
"""


def required_setuptools():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        m = re.search(r'"setuptools>=([0-9.]+)"', f.read())
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


class WheelMetadata(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            import setuptools
        except ImportError:
            raise unittest.SkipTest("setuptools is not installed")
        have = tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:3])
        if have < required_setuptools():
            raise unittest.SkipTest(f"setuptools {setuptools.__version__} is older than pyproject.toml requires")
        cls.tmp = tempfile.mkdtemp(prefix="torchcheck-meta-")
        src = os.path.join(cls.tmp, "src")
        os.makedirs(src)
        for name in BUILD_FILES:
            shutil.copy(os.path.join(ROOT, name), src)
        shutil.copytree(os.path.join(ROOT, "torchcheck_mixin"), os.path.join(src, "torchcheck_mixin"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        out = os.path.join(cls.tmp, "out")
        os.makedirs(out)
        proc = subprocess.run([sys.executable, "-c", BUILD, out], cwd=src, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"building the metadata failed:\n{proc.stderr[-3000:]}")
        import json

        cls.report = json.loads(proc.stdout.strip().splitlines()[-1])
        with open(os.path.join(out, cls.report["dist_info"], "METADATA"), encoding="utf-8") as f:
            cls.metadata = f.read().split("\n\n", 1)[0] + "\n"  # the headers, not the README after them

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_no_deprecation_warning(self):
        deprecations = [w for w in self.report["warnings"]
                        if any("Deprecat" in c for c in w[1]) or w[0] == "BuildBackendWarning"
                        or "deprecat" in w[2].lower()]
        self.assertEqual(deprecations, [])

    def test_license_is_one_spdx_expression(self):
        self.assertIn("License-Expression: MIT\n", self.metadata)
        self.assertIn("License-File: LICENSE\n", self.metadata)
        self.assertNotIn("Classifier: License ::", self.metadata)
        with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
            self.assertTrue(f.read().startswith("MIT License"))

    def test_pytest_plugin_entry_point_and_classifier(self):
        self.assertIn("Classifier: Framework :: Pytest\n", self.metadata)
        with open(os.path.join(self.tmp, "out", self.report["dist_info"], "entry_points.txt"), encoding="utf-8") as f:
            self.assertRegex(f.read(), r"\[pytest11\]\s*\ntorchcheck_mixin = torchcheck_mixin.pytest_plugin")


if __name__ == "__main__":
    unittest.main()
