"""Adding the assertions to a project's existing TestCase base class."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin


class ProjectTestCase(unittest.TestCase):
    """Stands for a base class a project already has, with its own setUp."""

    def setUp(self):
        torch.manual_seed(1234)
        self.device = torch.device("cpu")


class TestWithProjectBase(ModelAssertionsMixin, ProjectTestCase):
    def test_conv_net(self):
        model = nn.Sequential(
            # bias=False: BatchNorm removes a conv bias (its gradient is float32 rounding noise,
            # which assertParametersUpdated reports)
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        ).to(self.device)
        x = torch.randn(4, 3, 16, 16, device=self.device)
        self.assertForwardShape(model, x, ("B", 10))
        self.assertParametersUpdated(model, x, torch.randint(0, 10, (4,)))
        self.assertBatchIndependent(model, x)  # eval mode: BatchNorm uses running stats


if __name__ == "__main__":
    unittest.main()
