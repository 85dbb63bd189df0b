"""A training step: every parameter updates, the optimizer holds them all, the loss is sane."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(0.1))
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.body(x)).squeeze(-1)


class TestTrainingStep(ModelTestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = Regressor()
        self.x = torch.randn(32, 6)
        self.y = torch.randn(32)

    def test_every_parameter_gets_a_gradient(self):
        report = self.assertParametersUpdated(self.model, self.x, self.y)
        self.assertEqual(report.trainable_parameters, report.parameters_updated)

    def test_the_real_optimizer_step_moves_every_parameter(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.assertParametersUpdated(self.model, self.x, self.y, mode="snapshot", optimizer=optimizer)
        # The check ran on copies: the user's optimizer has taken no step.
        self.assertEqual(optimizer.state_dict()["state"], {})

    def test_loss_is_a_non_negative_scalar(self):
        loss = nn.functional.mse_loss(self.model(self.x), self.y)
        self.assertLossScalarNonNegative(loss)

    def test_the_model_can_fit_one_batch(self):
        self.assertCanOverfitBatch(self.model, self.x, self.y, steps=40)


if __name__ == "__main__":
    unittest.main()
