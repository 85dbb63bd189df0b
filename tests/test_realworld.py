"""The library on real architectures: every standard assertion passes on every correct real model.

The models (tests/realworld/models.py) are transformers, PEFT, timm and torchvision architectures,
torch building blocks and Ludwig-style components, built offline from tiny configs with random
weights. Each test builds one model, runs the battery of tests/realworld/steps.py as a user would
(one subTest per assertion) and checks every verdict against a plain-torch control
(tests/realworld/oracles.py) and every call for side effects (tests/invariance.py).

transformers, peft and timm are test-only dependencies (the ``realworld`` extra); without them
the module skips. torchvision / timm import through tests/realworld/torchvision_compat.py on the
CPU build of torch (see its docstring for what works).
"""

import importlib.util
import unittest
import warnings

from torchcheck_mixin import ModelTestCase

HAVE = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft", "timm"))

if HAVE:
    from tests.realworld import models, steps

    CASES = models.cases()
else:  # pragma: no cover - the extra is not installed
    CASES = []


# Verdicts that are still wrong on main, each with its cause (issue 11, open). Each entry is
# asserted to go wrong still, so a fix makes the test fail until its entry is removed here:
# the list can only shrink, and nothing in it is silently skipped.
KNOWN_OPEN: dict = {}


@unittest.skipUnless(HAVE, "needs the realworld extra: pip install '.[realworld]' (transformers, peft, timm)")
class TestRealModels(ModelTestCase):
    maxDiff = None

    def setUp(self):
        # torch's reentrant checkpoint warns on every no-grad forward of the checkpoint models; the
        # suite runs under -W error and that warning is the model's, not the library's.
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        warnings.filterwarnings("ignore", message="None of the inputs have requires_grad", category=UserWarning)

    def _battery(self, case):
        ctx = steps.Context(case)
        for label, step in steps.STEPS:
            with self.subTest(model=case.name, assertion=label):
                cause = KNOWN_OPEN.get((case.name, label))
                if cause is None:
                    step(self, ctx)
                    continue
                with self.assertRaises(Exception, msg=f"now right: remove ({case.name!r}, {label!r}) from KNOWN_OPEN"):
                    step(self, ctx)


def _make(case):
    def test(self):
        self._battery(case)
    test.__doc__ = f"{case.family}: {case.name}" + (f" ({case.note})" if case.note else "")
    return test


for _case in CASES:
    setattr(TestRealModels, f"test_{_case.name}", _make(_case))


@unittest.skipUnless(HAVE, "needs the realworld extra")
class TestCatalogueCoverage(unittest.TestCase):
    def test_every_family_is_present(self):
        families = {c.family for c in CASES}
        for family in ("transformers", "peft", "timm", "torch", "ludwig"):
            self.assertIn(family, families)
        self.assertGreaterEqual(len(CASES), 25)

    def test_torchvision_imports_through_the_shim(self):
        self.assertTrue(models.available("torchvision"))
        self.assertTrue(models.available("timm"))


if __name__ == "__main__":
    unittest.main()
