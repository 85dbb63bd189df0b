"""Forward pass: output shape and dtype of a small MLP.

Run: python -m unittest examples.test_mlp_forward -v   (or discover -s examples)
"""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase


class MLP(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 32, classes: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


class TestMLPForward(ModelTestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = MLP()
        self.x = torch.randn(16, 8)

    def test_output_shape_follows_the_batch(self):
        # "B" binds to whatever batch size comes in; 4 classes always.
        out = self.assertForwardShape(self.model, self.x, ("B", 4))
        self.assertEqual(out.shape[0], 16)
        self.assertForwardShape(self.model, self.x[:3], ("B", 4))

    def test_output_dtype(self):
        self.assertDtype(self.model(self.x), torch.float32)

    def test_parameter_count_matches_the_design(self):
        # 8*32 + 32 + 32*4 + 4
        self.assertParameterCount(self.model, total=420, trainable=420)


if __name__ == "__main__":
    unittest.main()
