"""A forward that writes into its input in place leaves the user's tensors exactly as they were
(values bitwise and version counters): the model is handed private copies (issue 14)."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin


class ScalesInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x.mul_(8)
        return self.fc(x)


class InplaceInputTests(ModelAssertionsMixin, unittest.TestCase):
    def _check_untouched(self, call):
        torch.manual_seed(0)
        model, x = ScalesInput(), torch.randn(5, 4)
        before, version = x.clone(), x._version
        try:
            call(model, x)
        except (AssertionError, RuntimeError):  # batch independence: x requires grad, mul_ refuses
            pass  # pass or fail: the user's input is untouched either way
        self.assertTrue(torch.equal(x, before), "the user's input values changed")
        self.assertEqual(x._version, version, "the user's input version counter moved")

    def test_forward_shape(self):
        self._check_untouched(lambda m, x: self.assertForwardShape(m, x, ("B", 3)))

    def test_deterministic(self):
        self._check_untouched(lambda m, x: self.assertDeterministic(m, x))

    def test_parameters_updated(self):
        self._check_untouched(lambda m, x: self.assertParametersUpdated(m, x))

    def test_batch_independent(self):
        self._check_untouched(lambda m, x: self.assertBatchIndependent(m, x))

    def test_nested_inputs(self):
        class Pair(nn.Module):
            def forward(self, a, b):
                a.add_(1)
                return a + b
        a, b = torch.zeros(2, 3), torch.ones(2, 3)
        va = a._version
        self.assertForwardShape(Pair(), (a, b), (2, 3))
        self.assertTrue(torch.equal(a, torch.zeros(2, 3)))
        self.assertEqual(a._version, va)


if __name__ == "__main__":
    unittest.main()
