"""A full model tested by a ten-line class: ModelBattery generates the standard tests."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelBattery


class TinyTransformer(nn.Module):
    def __init__(self, vocab=40, dim=16, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


class TestTinyTransformer(ModelBattery):
    model_factory = lambda: torch.manual_seed(0) and TinyTransformer()  # noqa: E731
    input_factory = lambda: torch.randint(0, 40, (6, 9), generator=torch.Generator().manual_seed(1))  # noqa: E731
    target_factory = lambda: torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))  # noqa: E731
    expected_output_shape = ("B", 3)
    expected_dtype = torch.float32
    expected_parameter_count = 40 * 16 + 2 * (4 * 16 * 16 + 4 * 16 + 16 * 32 + 32 + 32 * 16 + 16 + 4 * 16) + 16 * 3 + 3
    check_can_overfit_batch = "covered by the slower nightly suite"


if __name__ == "__main__":
    unittest.main()
