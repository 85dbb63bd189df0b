"""A combiner whose categorical branch is unused for numeric-only inputs.

Ludwig's TabTransformer tests subtract magic counts (num_layers * 16 parameters) for this case.
Here the branch is named, and a stale allowance (a branch that did update after all) is
reported instead of rotting silently.
"""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase, StaleAllowanceWarning


class Combiner(nn.Module):
    def __init__(self, numeric=5, categories=10, dim=8):
        super().__init__()
        self.numeric_branch = nn.Sequential(nn.Linear(numeric, dim), nn.ReLU())
        self.cat_branch = nn.Sequential(nn.Embedding(categories, dim), nn.Flatten(), nn.Linear(dim * 2, dim))
        self.head = nn.Linear(dim, 1)

    def forward(self, numeric, categorical=None):
        h = self.numeric_branch(numeric)
        if categorical is not None:
            h = h + self.cat_branch(categorical)
        return self.head(h)


class TestCombiner(ModelTestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = Combiner()
        self.numeric = torch.randn(6, 5)

    def test_numeric_only_inputs_leave_the_categorical_branch_unused(self):
        report = self.assertParametersUpdated(self.model, (self.numeric,), allow_not_updated=["cat_branch"])
        self.assertIn("cat_branch.0.weight", report.not_updated)

    def test_with_categorical_inputs_everything_updates(self):
        cats = torch.randint(0, 10, (6, 2))
        with self.assertWarns(StaleAllowanceWarning):
            # the allowance is stale here: every parameter updated
            self.assertParametersUpdated(self.model, (self.numeric, cats), allow_not_updated=["cat_branch"])
        self.assertParametersUpdated(self.model, (self.numeric, cats))


if __name__ == "__main__":
    unittest.main()
