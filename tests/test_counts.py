"""checks/counts.py: what a short parameter count lists, and under which heading."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase
from torchcheck_mixin.checks.counts import check_parameter_count


class WeightAsBuffer(nn.Module):
    """A weight registered with register_buffer by mistake, plus a non-persistent table."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.randn(4, 4))
        self.register_buffer("table", torch.arange(4.0), persistent=False)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(x @ self.w + self.table)


class PlainList(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 4)]
        self.head = nn.Linear(4, 2)


class CountListsTest(ModelTestCase):
    def test_registered_buffers_are_not_called_unregistered(self):
        result = check_parameter_count(WeightAsBuffer(), total=10 + 16)
        self.assertFalse(result.passed)
        self.assertEqual(result.suspects, ())
        self.assertEqual(result.buffers, ("w: 16 elements, saved", "table: 4 elements, not saved (persistent=False)"))
        with self.assertRaises(AssertionError) as cm:
            self.assertParameterCount(WeightAsBuffer(), total=26)
        text = str(cm.exception)
        self.assertNotIn("possibly unregistered", text)
        self.assertIn("registered floating buffers (not parameters, never trained", text)
        self.assertIn("w: 16 elements, saved", text)

    def test_plain_list_is_unregistered(self):
        result = check_parameter_count(PlainList(), total=10 + 20)
        self.assertEqual(len(result.suspects), 1)
        self.assertIn("layers: a plain list holding 1 module(s)", result.suspects[0])
        self.assertEqual(result.buffers, ())

    def test_norm_statistics_are_not_listed(self):
        model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        result = check_parameter_count(model, total=1000)
        self.assertEqual(result.buffers, ())

    def test_nothing_listed_when_the_count_matches(self):
        result = check_parameter_count(WeightAsBuffer(), total=10)
        self.assertTrue(result.passed)
        self.assertEqual((result.suspects, result.buffers), ((), ()))


if __name__ == "__main__":
    unittest.main()
