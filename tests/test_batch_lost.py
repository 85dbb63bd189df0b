"""A model that merges its batch into one dimension fails the check; a wrong target stays misuse."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin, assert_parameters_updated


class MergesBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(x).view(-1)  # bug: (3, 5) -> (15,)


class Fine(MergesBatch):
    def forward(self, x):
        return self.fc(x)


class BatchLostTest(ModelAssertionsMixin, unittest.TestCase):
    x = torch.randn(3, 4)
    y = torch.tensor([0, 4, 2])

    def test_merged_batch_is_a_failure(self):
        with self.assertRaises(self.failureException) as cm:
            self.assertParametersUpdated(MergesBatch(), self.x, self.y)
        text = str(cm.exception)
        for part in ("output shape (15,)", "target shape (3,)", "inputs batch 3", "batch dimension was merged"):
            self.assertIn(part, text)
        self.assertIsNone(cm.exception.__context__)

    def test_merged_batch_with_a_float_target_and_plain_function(self):
        with self.assertRaisesRegex(AssertionError, r"output shape \(15,\), target shape \(3, 5\)"):
            assert_parameters_updated(MergesBatch(), self.x, torch.randn(3, 5))

    def test_target_of_the_wrong_batch_is_misuse(self):
        with self.assertRaisesRegex(ValueError, r"integer target of shape \(2,\)"):
            self.assertParametersUpdated(Fine(), self.x, torch.tensor([0, 1]))

    def test_wrong_target_type_and_loss_fn_stay_misuse(self):
        with self.assertRaises(TypeError):
            self.assertParametersUpdated(Fine(), self.x, torch.zeros(3, dtype=torch.bool))
        with self.assertRaises(TypeError):
            self.assertParametersUpdated(Fine(), self.x, self.y, loss_fn=3)

    def test_correct_model_passes(self):
        self.assertParametersUpdated(Fine(), self.x, self.y)


if __name__ == "__main__":
    unittest.main()
