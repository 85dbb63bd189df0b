"""The unittest layer: msg/longMessage, failureException, base orders, hosts, tracebacks, messages.

Modelled on CPython's Lib/test/test_unittest/test_assertions.py (TestLongMessage): every
assertion is run under the four combinations of ``longMessage`` x ``msg``.
"""

import os
import re
import unittest
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchcheck_mixin
from torchcheck_mixin import (
    BatchShapeResult,
    ModelAssertionsMixin,
    ModelTestCase,
    ParameterUpdateReport,
    StaleAllowanceWarning,
)

PACKAGE_DIR = os.path.realpath(os.path.dirname(torchcheck_mixin.__file__))
THIS_FILE = os.path.realpath(__file__)


def seeded(build, seed=0):
    """Build a model with fixed weights without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class UnusedBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class DictOut(nn.Module):
    def forward(self, x):
        return {"logits": x, "aux": x[:, :2]}


def x8():
    return torch.linspace(-1, 1, 24).reshape(8, 3)


def loader():
    return DataLoader(TensorDataset(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long)), batch_size=4)


# Each assertion: a call that fails and a call that passes. ``kw`` carries msg.
FAILING = {
    "assertForwardShape": lambda tc, **kw: tc.assertForwardShape(nn.Linear(3, 5), torch.zeros(8, 3), ("B", 10), **kw),
    "assertDtype": lambda tc, **kw: tc.assertDtype(torch.zeros(2, dtype=torch.float64), torch.float32, **kw),
    "assertParametersUpdated": lambda tc, **kw: tc.assertParametersUpdated(seeded(UnusedBranch), x8(), **kw),
    "assertLossScalarNonNegative": lambda tc, **kw: tc.assertLossScalarNonNegative(torch.tensor(float("nan")), **kw),
    "assertBatchShape": lambda tc, **kw: tc.assertBatchShape(loader(), ((4, 3), (4,)), **kw),
}

PASSING = {
    "assertForwardShape": lambda tc: tc.assertForwardShape(nn.Linear(3, 10), torch.zeros(8, 3), ("B", 10)),
    "assertDtype": lambda tc: tc.assertDtype(torch.zeros(2), torch.float32),
    "assertParametersUpdated": lambda tc: tc.assertParametersUpdated(seeded(MLP), x8()),
    "assertLossScalarNonNegative": lambda tc: tc.assertLossScalarNonNegative(torch.tensor(0.5)),
    "assertBatchShape": lambda tc: tc.assertBatchShape(loader(), (("B", 3), ("B",))),
}

# The first line of each standard failure message.
HEADS = {
    "assertForwardShape": "Output shape (8, 5) does not match expected ('B', 10)",
    "assertDtype": "dtype torch.float64 does not match expected torch.float32",
    "assertParametersUpdated": "Parameters not updated: 2 / 6 (33.3%) trainable tensors",
    "assertLossScalarNonNegative": "Loss is not finite: NaN",
    "assertBatchShape": "Batch 2 does not match expected ((4, 3), (4,))",
}


class CustomFailure(Exception):
    """A failureException that is not an AssertionError."""


def host(*bases, **attrs):
    """A TestCase host class with a no-op method to instantiate it by name."""
    attrs.setdefault("noop", lambda self: None)
    return type("Host", bases, attrs)


class LongMessageTest(unittest.TestCase):
    """The four combinations of longMessage x msg, for each assertion (CPython's TestLongMessage)."""

    def setUp(self):
        failure = self.failureException
        self.testableFalse = host(ModelTestCase, longMessage=False, failureException=failure)("noop")
        self.testableTrue = host(ModelTestCase, longMessage=True, failureException=failure)("noop")

    def messages(self, name):
        """The failure text for (longMessage False, no msg), (False, msg), (True, no msg), (True, msg)."""
        out = []
        for i in range(4):
            test = self.testableFalse if i < 2 else self.testableTrue
            kwargs = {"msg": "oops"} if i % 2 else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StaleAllowanceWarning)
                with self.assertRaises(self.failureException) as cm:
                    FAILING[name](test, **kwargs)
            out.append(str(cm.exception))
        return out

    def check(self, name):
        no_msg_false, msg_false, no_msg_true, msg_true = self.messages(name)
        standard = no_msg_false
        self.assertEqual(standard.splitlines()[0], HEADS[name])
        self.assertEqual(no_msg_true, standard)
        self.assertEqual(msg_false, "oops")
        self.assertEqual(msg_true, standard + " : oops")

    def test_assertForwardShape(self):
        self.check("assertForwardShape")

    def test_assertDtype(self):
        self.check("assertDtype")

    def test_assertParametersUpdated(self):
        self.check("assertParametersUpdated")

    def test_assertLossScalarNonNegative(self):
        self.check("assertLossScalarNonNegative")

    def test_assertBatchShape(self):
        self.check("assertBatchShape")

    def test_msg_may_be_any_object(self):
        test = self.testableTrue
        with self.assertRaises(self.failureException) as cm:
            FAILING["assertDtype"](test, msg=("context", 3))
        self.assertTrue(str(cm.exception).endswith(" : ('context', 3)"), str(cm.exception))

    def test_msg_is_positional_where_unittest_puts_it(self):
        test = self.testableFalse
        with self.assertRaises(self.failureException) as cm:
            test.assertForwardShape(nn.Linear(3, 5), torch.zeros(8, 3), ("B", 10), "positional")
        self.assertEqual(str(cm.exception), "positional")
        with self.assertRaises(self.failureException) as cm:
            test.assertDtype(torch.zeros(1, dtype=torch.int64), torch.float32, "positional")
        self.assertEqual(str(cm.exception), "positional")
        with self.assertRaises(self.failureException) as cm:
            test.assertLossScalarNonNegative(-1.0, "positional")
        self.assertEqual(str(cm.exception), "positional")


class FailureExceptionTest(unittest.TestCase):
    def test_custom_failure_exception_is_raised(self):
        test = host(ModelTestCase, failureException=CustomFailure)("noop")
        for name, call in FAILING.items():
            with self.subTest(assertion=name):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", StaleAllowanceWarning)
                    with self.assertRaises(CustomFailure) as cm:
                        call(test)
                self.assertNotIsInstance(cm.exception, AssertionError)
                self.assertEqual(str(cm.exception).splitlines()[0], HEADS[name])

    def test_default_failure_exception_is_assertion_error(self):
        test = host(ModelTestCase)("noop")
        for name, call in FAILING.items():
            with self.subTest(assertion=name):
                with self.assertRaises(AssertionError):
                    call(test)

    def test_misuse_is_an_error_not_a_failure(self):
        test = host(ModelTestCase, failureException=CustomFailure)("noop")
        misuse = {
            "assertForwardShape": lambda: test.assertForwardShape(nn.Linear(3, 5), torch.zeros(8, 3), "B"),
            "assertDtype": lambda: test.assertDtype(torch.zeros(1), "float32"),
            "assertParametersUpdated": lambda: test.assertParametersUpdated(MLP(), x8(), mode="sgd"),
            "assertLossScalarNonNegative": lambda: test.assertLossScalarNonNegative(True),
            "assertBatchShape": lambda: test.assertBatchShape(3, ("B",)),
        }
        argnames = {
            "assertForwardShape": "expected_shape",
            "assertDtype": "expected_dtype",
            "assertParametersUpdated": "mode",
            "assertLossScalarNonNegative": "loss",
            "assertBatchShape": "batch_or_loader",
        }
        for name, call in misuse.items():
            with self.subTest(assertion=name):
                with self.assertRaises((TypeError, ValueError)) as cm:
                    call()
                self.assertIn(argnames[name], str(cm.exception))


class BaseOrderTest(unittest.TestCase):
    def run_all(self, cls):
        test = cls("noop")
        for name, call in PASSING.items():
            with self.subTest(cls=cls.__mro__[1].__name__, assertion=name, outcome="pass"):
                call(test)
        for name, call in FAILING.items():
            with self.subTest(cls=cls.__mro__[1].__name__, assertion=name, outcome="fail"):
                with self.assertRaises(AssertionError) as cm:
                    call(test)
                self.assertEqual(str(cm.exception).splitlines()[0], HEADS[name])

    def test_mixin_first(self):
        self.run_all(host(ModelAssertionsMixin, unittest.TestCase))

    def test_mixin_last(self):
        self.run_all(host(unittest.TestCase, ModelAssertionsMixin))

    def test_model_test_case(self):
        self.assertTrue(issubclass(ModelTestCase, unittest.TestCase))
        self.assertTrue(issubclass(ModelTestCase, ModelAssertionsMixin))
        self.run_all(host(ModelTestCase))

    def test_mixin_with_a_project_base_that_has_setup(self):
        class ProjectBase(unittest.TestCase):
            def setUp(self):  # does not call super().setUp()
                self.project_ready = True

        for bases in ((ModelAssertionsMixin, ProjectBase), (ProjectBase, ModelAssertionsMixin)):
            with self.subTest(bases=[b.__name__ for b in bases]):
                def test_it(self):
                    self.assertTrue(self.project_ready)
                    self.assertForwardShape(nn.Linear(3, 4), torch.zeros(2, 3), ("B", 4))

                cls = host(*bases, test_it=test_it)
                result = unittest.TestResult()
                cls("test_it").run(result)
                self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
                self.assertEqual(result.testsRun, 1)

    def test_mixin_defines_no_lifecycle_methods(self):
        for name in ("__init__", "setUp", "tearDown", "setUpClass", "tearDownClass", "run"):
            self.assertNotIn(name, vars(ModelAssertionsMixin), name)
        self.assertFalse(issubclass(ModelAssertionsMixin, unittest.TestCase))
        self.assertEqual([n for n in dir(ModelAssertionsMixin) if n.startswith("test")], [])


class HostWithoutInitTest(unittest.TestCase):
    """absl-style: a TestCase subclass whose __init__ never chains to unittest.TestCase.__init__."""

    def make(self):
        class NoSuperInit(ModelAssertionsMixin, unittest.TestCase):
            def __init__(self, *args, **kwargs):  # pylint: disable=super-init-not-called
                self.extra = kwargs

        return NoSuperInit()

    def test_assertions_pass(self):
        test = self.make()
        for name, call in PASSING.items():
            with self.subTest(assertion=name):
                call(test)

    def test_assertions_fail_with_the_standard_message(self):
        test = self.make()
        for name, call in FAILING.items():
            with self.subTest(assertion=name):
                with self.assertRaises(AssertionError) as cm:
                    call(test)
                self.assertEqual(str(cm.exception).splitlines()[0], HEADS[name])
                with self.assertRaises(AssertionError) as cm:
                    call(test, msg="ctx")
                self.assertTrue(str(cm.exception).endswith(" : ctx"))

    def test_init_with_other_arguments(self):
        class OddInit(unittest.TestCase, ModelAssertionsMixin):
            def __init__(self, config, methodName="noop"):
                super().__init__(methodName)
                self.config = config

            def noop(self):
                pass

        test = OddInit({"lr": 0.1})
        with self.assertRaises(AssertionError):
            FAILING["assertLossScalarNonNegative"](test)


class TracebackTest(unittest.TestCase):
    def failing_case(self, name, **attrs):
        def check(self):
            FAILING[name](self)

        return host(ModelTestCase, check=check, **attrs)("check")

    def frames(self, text):
        return [os.path.realpath(f) for f in re.findall(r'File "([^"]+)", line \d+', text)]

    def test_library_frames_are_trimmed(self):
        for name in FAILING:
            with self.subTest(assertion=name):
                result = unittest.TestResult()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", StaleAllowanceWarning)
                    self.failing_case(name).run(result)
                self.assertEqual(len(result.failures), 1, result.errors)
                text = result.failures[0][1]
                frames = self.frames(text)
                self.assertTrue(frames, text)
                inside = [f for f in frames if f.startswith(PACKAGE_DIR + os.sep)]
                self.assertEqual(inside, [], text)
                self.assertEqual(frames[-1], THIS_FILE, text)
                self.assertIn(HEADS[name], text)
                self.assertNotIn("During handling of the above exception", text)

    def test_custom_failure_exception_is_trimmed_too(self):
        result = unittest.TestResult()
        self.failing_case("assertForwardShape", failureException=CustomFailure).run(result)
        self.assertEqual(len(result.failures), 1, result.errors)
        frames = self.frames(result.failures[0][1])
        self.assertEqual([f for f in frames if f.startswith(PACKAGE_DIR + os.sep)], [])
        self.assertEqual(frames[-1], THIS_FILE)

    def test_every_module_that_can_raise_is_marked(self):
        import torchcheck_mixin.assertions as assertions

        self.assertTrue(getattr(assertions, "__unittest", False))


class ReturnValueTest(ModelTestCase):
    def test_assertForwardShape_returns_the_output(self):
        out = self.assertForwardShape(nn.Linear(3, 10), torch.zeros(8, 3), ("B", 10))
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(tuple(out.shape), (8, 10))
        self.assertFalse(out.requires_grad)

    def test_assertForwardShape_returns_structured_output(self):
        out = self.assertForwardShape(DictOut(), torch.zeros(4, 3), {"logits": ("B", 3), "aux": ("B", 2)})
        self.assertEqual(sorted(out), ["aux", "logits"])

    def test_assertParametersUpdated_returns_the_report(self):
        report = self.assertParametersUpdated(seeded(MLP), x8())
        self.assertIsInstance(report, ParameterUpdateReport)
        self.assertTrue(report.passed)
        self.assertEqual(report.updated, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        self.assertEqual(report.not_updated, [])

    def test_assertParametersUpdated_with_allowance_returns_the_report(self):
        report = self.assertParametersUpdated(seeded(UnusedBranch), x8(), allow_not_updated=["unused"])
        self.assertTrue(report.passed)
        self.assertEqual(report.not_updated, ["unused.weight", "unused.bias"])
        self.assertEqual(report.stale_allowances, ())

    def test_assertBatchShape_returns_the_result(self):
        result = self.assertBatchShape(loader(), (("B", 3), ("B",)))
        self.assertIsInstance(result, BatchShapeResult)
        self.assertEqual(result.checked_indices, (0, 1, 2))

    def test_assertDtype_and_assertLoss_return_none(self):
        self.assertIsNone(self.assertDtype(torch.zeros(1), torch.float32))
        self.assertIsNone(self.assertLossScalarNonNegative(torch.tensor(0.0)))


class StaleAllowanceTest(ModelTestCase):
    def test_warning_for_a_stale_entry(self):
        with self.assertWarns(StaleAllowanceWarning) as cm:
            report = self.assertParametersUpdated(seeded(UnusedBranch), x8(), allow_not_updated=["unused", "fc1"])
        self.assertTrue(report.passed)
        self.assertEqual([entry.strip("'") for entry in report.stale_allowances], ["fc1"])
        self.assertIn("'fc1'", str(cm.warning))
        self.assertNotIn("'unused'", str(cm.warning))
        self.assertEqual(os.path.realpath(cm.filename), THIS_FILE)  # points at the test, not the library

    def test_no_warning_without_stale_entries(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.assertParametersUpdated(seeded(UnusedBranch), x8(), allow_not_updated=["unused"])
        self.assertEqual([w for w in caught if issubclass(w.category, StaleAllowanceWarning)], [])

    def test_stale_warning_is_a_user_warning(self):
        self.assertTrue(issubclass(StaleAllowanceWarning, UserWarning))


class MessageContentTest(ModelTestCase):
    def failure(self, call):
        with self.assertRaises(AssertionError) as cm:
            call()
        return str(cm.exception)

    def test_forward_shape_exact(self):
        text = self.failure(lambda: self.assertForwardShape(nn.Linear(3, 5), torch.zeros(8, 3), ("B", 10)))
        self.assertEqual(
            text,
            "Output shape (8, 5) does not match expected ('B', 10)\n"
            "  dim 1: got 5, expected 10\n"
            "  bound: B=8\n"
            "  model: Linear (eval mode), input shape (8, 3)",
        )

    def test_forward_shape_structured_paths(self):
        text = self.failure(lambda: self.assertForwardShape(
            DictOut(), torch.zeros(4, 3), {"logits": ("B", 7), "aux": ("B", 2)}))
        lines = text.splitlines()
        self.assertEqual(lines[0], "Output does not match expected {'logits': ('B', 7), 'aux': ('B', 2)}: 1 mismatch")
        self.assertIn("  output['logits']: shape (4, 3), expected ('B', 7): dim 1: got 3, expected 7", lines)
        self.assertIn("  bound: B=4", lines)
        self.assertIn("['aux']", text)

    def test_forward_shape_bound_dim_conflict(self):
        text = self.failure(lambda: self.assertForwardShape(
            DictOut(), torch.zeros(4, 3), {"logits": ("B", "C"), "aux": ("C", 2)}))
        self.assertIn("output['aux']", text)
        self.assertIn("expected C=3", text)
        self.assertIn("B=4", text)

    def test_forward_shape_missing_key(self):
        text = self.failure(lambda: self.assertForwardShape(DictOut(), torch.zeros(4, 3), {"logits": ("B", 3)}))
        self.assertIn("unexpected keys ['aux']", text)

    def test_train_mode_is_named(self):
        text = self.failure(lambda: self.assertForwardShape(nn.Linear(3, 5), torch.zeros(8, 3), (8, 4), train=True))
        self.assertIn("(train mode)", text)

    def test_dtype_exact(self):
        text = self.failure(lambda: self.assertDtype(torch.zeros(2, dtype=torch.float64), torch.float32))
        self.assertEqual(text, "dtype torch.float64 does not match expected torch.float32\n"
                               "  torch.get_default_dtype() is torch.float32")

    def test_dtype_structure(self):
        text = self.failure(lambda: self.assertDtype(
            {"a": torch.zeros(2), "b": torch.zeros(2, dtype=torch.int64)}, torch.float32))
        self.assertEqual(text.splitlines()[0], "dtype mismatch in 1 / 2 (50.0%) leaves: expected torch.float32")
        self.assertIn("value['b']: torch.int64", text)

    def test_loss_exact(self):
        text = self.failure(lambda: self.assertLossScalarNonNegative(torch.tensor(float("nan"))))
        self.assertEqual(text, "Loss is not finite: NaN\n  dtype: torch.float32, shape ()")

    def test_loss_kinds(self):
        cases = {
            torch.tensor(float("inf")): "+inf",
            torch.tensor(float("-inf")): "-inf",
            torch.tensor([1.0, 2.0]): "shape (2,)",
            torch.tensor([1.0]): "(1,)",
            torch.tensor(3): "torch.int64",
            torch.tensor(True): "torch.bool",
        }
        for loss, fragment in cases.items():
            with self.subTest(loss=repr(loss)):
                self.assertIn(fragment, self.failure(lambda: self.assertLossScalarNonNegative(loss)))

    def test_negative_loss_suggests_atol(self):
        text = self.failure(lambda: self.assertLossScalarNonNegative(torch.tensor(-1e-9)))
        self.assertIn("negative", text.splitlines()[0])
        self.assertIn("atol=1e-6", text)
        self.assertNotIn("atol", self.failure(lambda: self.assertLossScalarNonNegative(-2.5)))
        self.assertLossScalarNonNegative(torch.tensor(-1e-9), atol=1e-6)

    def test_batch(self):
        text = self.failure(lambda: self.assertBatchShape(loader(), ((4, 3), (4,))))
        lines = text.splitlines()
        self.assertEqual(lines[0], "Batch 2 does not match expected ((4, 3), (4,))")
        self.assertIn("  batch[2][0]: shape (2, 3), expected (4, 3): dim 0: got 2, expected 4", lines)
        self.assertIn("  batch[2][1]: shape (2,), expected (4,): dim 0: got 2, expected 4", lines)
        self.assertIn("1 / 3 (33.3%)", text)
        self.assertIn("last batch", text)

    def test_single_batch(self):
        text = self.failure(lambda: self.assertBatchShape(torch.zeros(2, 3), (2, 4)))
        self.assertEqual(text, "The batch does not match expected (2, 4)\n"
                               "  batch: shape (2, 3), expected (2, 4): dim 1: got 3, expected 4")

    def test_empty_loader(self):
        text = self.failure(lambda: self.assertBatchShape(
            DataLoader(TensorDataset(torch.zeros(0, 3)), batch_size=4), (("B", 3),)))
        self.assertEqual(text.splitlines()[0], "No batch to check: the loader yielded nothing")

    def test_parameters_not_updated(self):
        text = self.failure(lambda: self.assertParametersUpdated(seeded(UnusedBranch), x8()))
        lines = text.splitlines()
        self.assertEqual(lines[0], "Parameters not updated: 2 / 6 (33.3%) trainable tensors")
        self.assertRegex(text, r"\n  unused\.weight +\(2, 2\) +4 el\. +grad is None")
        self.assertRegex(text, r"\n  unused\.bias +\(2,\) +2 el\. +grad is None")
        self.assertNotIn("fc1.weight", text.split("frozen:")[0])  # updated ones are not listed
        self.assertIn("allow_not_updated=['unused']", text)
        self.assertIn("6 Parameter tensors (38 elements)", text)
        self.assertIn("model: UnusedBranch", text)

    def test_frozen_not_declared(self):
        def build():
            m = UnusedBranch()
            m.fc1.weight.requires_grad_(False)
            return m

        text = self.failure(lambda: self.assertParametersUpdated(
            seeded(build), x8(), allow_not_updated=["unused"]))
        self.assertEqual(text.splitlines()[0], "Frozen parameters not declared in expect_frozen: 1 tensor")
        self.assertRegex(text, r"\n  fc1\.weight +\(5, 3\) +15 el\.")
        self.assertIn("expect_frozen=['fc1.weight']", text)
        report = self.assertParametersUpdated(seeded(build), x8(), allow_not_updated=["unused"],
                                              expect_frozen=["fc1.weight"])
        self.assertEqual(report.frozen, ["fc1.weight"])

    def test_lazy_model_failure_is_a_failure_not_an_error(self):
        class LazyWithUnused(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.LazyLinear(3)
                self.unused = nn.Linear(2, 2)

            def forward(self, x):
                return self.body(x)

        model = seeded(LazyWithUnused)
        text = self.failure(lambda: self.assertParametersUpdated(model, x8()))
        self.assertEqual(text.splitlines()[0], "Parameters not updated: 2 / 4 (50.0%) trainable tensors")
        self.assertIn("unused.weight", text)
        self.assertIn("lazy", text)  # the note that a copy was materialised
        self.assertTrue(model.body.has_uninitialized_params())  # the user's model stays lazy

    def test_tied_weights_named_with_aliases(self):
        class Tied(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(10, 4)
                self.head = nn.Linear(4, 10, bias=False)
                self.head.weight = self.emb.weight
                self.extra = nn.Linear(4, 4)

            def forward(self, idx):
                return self.head(self.emb(idx))

        text = self.failure(lambda: self.assertParametersUpdated(seeded(Tied), torch.tensor([[1, 2, 3]])))
        self.assertIn("Parameters not updated: 2 / 3 (66.7%) trainable tensors", text)
        self.assertIn("torchinfo", text)  # torchinfo's (double) count is shown beside the true one
        self.assertIn("3 Parameter tensors", text)


if __name__ == "__main__":
    unittest.main()
