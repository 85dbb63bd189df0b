"""Meta-device models and inputs (issue 14): a clear ValueError, never "Cannot copy out of meta tensor".

A model built under ``torch.device('meta')`` has shapes but no values, so no check that runs it or
reads its values can say anything: every such assertion must refuse it with a ``ValueError`` that
says "meta" and how to materialise. Counting parameters reads shapes only, so
``assertParameterCount`` keeps working on a meta model.
"""

import inspect
import unittest

import torch
import torch.nn.functional as F
from torch import nn

from torchcheck_mixin import ModelTestCase, assert_deterministic, check_parameters_updated
from tests.invariance import run_invariant

META = r"meta device.*materialise"


def meta_linear() -> nn.Module:
    with torch.device("meta"):
        return nn.Linear(4, 2)


def _x(g=None):
    return torch.randn(3, 4, generator=g)


Y = torch.tensor([0, 1, 0])


def _y():
    return Y


# One call per assert* method that takes a model (or a model factory) first; the table is checked
# against the mixin below, so a new model assertion without an entry fails this module.
CALLS = {
    "assertForwardShape": lambda t, m, x: t.assertForwardShape(m, x, (3, 2)),
    "assertParametersUpdated": lambda t, m, x: t.assertParametersUpdated(m, x, _y(), mode="gradient"),
    "assertParametersUpdated[snapshot]": lambda t, m, x: t.assertParametersUpdated(m, x, _y(), mode="snapshot"),
    "assertParametersUpdated[both]": lambda t, m, x: t.assertParametersUpdated(m, x, _y(), mode="both"),
    "assertBatchIndependent": lambda t, m, x: t.assertBatchIndependent(m, x),
    "assertDeterministic": lambda t, m, x: t.assertDeterministic(m, x),
    "assertStateDictRoundTrip": lambda t, m, x: t.assertStateDictRoundTrip(m, x),
    "assertAllFinite": lambda t, m, x: t.assertAllFinite(m),
    "assertOutputRange": lambda t, m, x: t.assertOutputRange(m, x, low=-1e9, high=1e9),
    "assertCanOverfitBatch": lambda t, m, x: t.assertCanOverfitBatch(m, x, _y(), steps=2),
    "assertCausal": lambda t, m, x: t.assertCausal(m, x.unsqueeze(0), dim=1),
    "assertMaskInvariant": lambda t, m, x: t.assertMaskInvariant(
        m, {"input": x}, mask="mask"),
    "assertPaddingInvariant": lambda t, m, x: t.assertPaddingInvariant(m, {"input": x}, mask="mask"),
    "assertSingleSampleConsistent": lambda t, m, x: t.assertSingleSampleConsistent(m, x),
    "assertGradcheck": lambda t, m, x: t.assertGradcheck(m, x.double()),
    "assertInputsUsed": lambda t, m, x: t.assertInputsUsed(m, x),
    "assertInitialLoss": lambda t, m, x: t.assertInitialLoss(m, x, _y()),
    "assertAccumulationEquivalent": lambda t, m, x: t.assertAccumulationEquivalent(m, x, _y()),
    "assertResumeEquivalent": lambda t, m, x: t.assertResumeEquivalent(
        lambda: m, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), [(x, _y())] * 4),
    "assertCompileParity": lambda t, m, x: t.assertCompileParity(m, x, _y()),
    "assertAutocastParity": lambda t, m, x: t.assertAutocastParity(m, x, _y(), dtype=torch.bfloat16),
    "assertPrecisionParity": lambda t, m, x: t.assertPrecisionParity(m, x),
    "assertMovesWithModel": lambda t, m, x: t.assertMovesWithModel(m),
}

# The model's argument names in the mixin's signatures (the first positional after self).
MODEL_ARGS = {"model", "model_or_value", "module_or_function", "model_factory"}
# Methods whose first argument may be a model but which never run one: the value checks.
NOT_MODEL = {"assertDtype", "assertLossScalarNonNegative", "assertBatchShape", "assertBatchValues",
             "assertLabelsCover", "assertParameterCount"}


class _Case(ModelTestCase):
    def runTest(self):  # pragma: no cover - only used as a mixin instance
        pass


class TestMetaModel(unittest.TestCase):
    def setUp(self):
        self.tc = _Case()

    def test_table_covers_every_model_assertion(self):
        names = set()
        for name, fn in inspect.getmembers(ModelTestCase, inspect.isfunction):
            if not name.startswith("assert") or name in NOT_MODEL:
                continue
            params = list(inspect.signature(fn).parameters)[1:]
            if params and params[0] in MODEL_ARGS:
                names.add(name)
        covered = {k.split("[")[0] for k in CALLS}
        self.assertEqual(names - covered, set(), "model assertions without a meta-model case")

    def test_every_model_assertion_refuses_a_meta_model(self):
        for name, call in CALLS.items():
            with self.subTest(name):
                model, x = meta_linear(), _x()
                outcome = run_invariant(self, model, lambda: call(self.tc, model, x), watch=[x], what=name)
                self.assertEqual(outcome.kind, "raised", f"{name}: {outcome.kind}")
                self.assertIsInstance(outcome.value, ValueError, f"{name}: {outcome.value!r}")
                self.assertRegex(str(outcome.value), META)
                self.assertIn("to_empty", str(outcome.value))
                self.assertIn("weight", str(outcome.value))  # names the tensors

    def test_data_factory_with_meta_model(self):
        with self.assertRaisesRegex(ValueError, META):
            self.tc.assertForwardShape(meta_linear(), _x, (3, 2))

    def test_partly_meta_model_names_the_meta_tensors(self):
        model = nn.Sequential(nn.Linear(4, 4), meta_linear())
        with self.assertRaisesRegex(ValueError, r"meta device.*2 tensors: parameter 1\.weight, parameter 1\.bias"):
            self.tc.assertDeterministic(model, _x())

    def test_meta_buffer(self):
        model = nn.Linear(4, 2)
        model.register_buffer("scale", torch.empty(2, device="meta"))
        with self.assertRaisesRegex(ValueError, r"meta device.*buffer scale"):
            self.tc.assertForwardShape(model, _x(), (3, 2))

    def test_engine_and_plain_function_refuse_too(self):
        with self.assertRaisesRegex(ValueError, META):
            check_parameters_updated(meta_linear(), _x(), _y())
        with self.assertRaisesRegex(ValueError, META):
            assert_deterministic(meta_linear(), _x())

    def test_parameter_count_works_on_meta(self):
        self.tc.assertParameterCount(meta_linear(), total=10, trainable=10, frozen=0)
        with self.assertRaises(self.tc.failureException):
            self.tc.assertParameterCount(meta_linear(), total=11)

    def test_materialised_model_passes(self):
        model = meta_linear().to_empty(device="cpu")
        model.reset_parameters()
        self.tc.assertForwardShape(model, _x(), (3, 2))
        self.tc.assertParametersUpdated(model, _x(), _y(), mode="both")


class TestMetaInputs(unittest.TestCase):
    def setUp(self):
        self.tc = _Case()

    def test_meta_inputs_to_a_real_model(self):
        x = torch.empty(3, 4, device="meta")
        for name in ("assertForwardShape", "assertParametersUpdated", "assertParametersUpdated[snapshot]",
                     "assertDeterministic", "assertBatchIndependent", "assertStateDictRoundTrip",
                     "assertCanOverfitBatch", "assertInputsUsed", "assertSingleSampleConsistent",
                     "assertOutputRange", "assertAccumulationEquivalent"):
            with self.subTest(name):
                model = nn.Linear(4, 2)
                outcome = run_invariant(self, model, lambda: CALLS[name](self.tc, model, x), watch=[x], what=name)
                self.assertEqual(outcome.kind, "raised", f"{name}: {outcome.kind}")
                self.assertIsInstance(outcome.value, ValueError, f"{name}: {outcome.value!r}")
                self.assertRegex(str(outcome.value), r"inputs .*meta device.*materialise")

    def test_meta_target(self):
        with self.assertRaisesRegex(ValueError, r"meta device"):
            self.tc.assertParametersUpdated(nn.Linear(4, 2), _x(), torch.empty(3, dtype=torch.long, device="meta"),
                                            loss_fn=F.cross_entropy)

    def test_meta_value_in_all_finite(self):
        with self.assertRaisesRegex(ValueError, r"tensors of value are on the meta device.*value\[1\]"):
            self.tc.assertAllFinite([torch.zeros(2), torch.empty(2, device="meta")])


if __name__ == "__main__":
    unittest.main()
