"""Ludwig's encoder test, written with the mixin: every parameter updates, counts by name.

Ludwig's check_module_parameters_updated returns (frozen, trainable, updated, not_updated);
the report carries the same numbers, plus why each parameter did not update.
"""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase


class SequenceEncoder(nn.Module):
    def __init__(self, vocab=50, dim=16, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, num_layers=layers, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        hidden, _ = self.rnn(self.embed(tokens))
        return {"encoder_output": self.norm(hidden[:, -1])}


class TestSequenceEncoder(ModelTestCase):
    def test_all_parameters_update(self):
        torch.manual_seed(0)
        encoder = SequenceEncoder()
        tokens = torch.randint(0, 50, (4, 7))
        target = torch.randn(4, 16)
        # The output is a dict: the default loss pairs the target with it by structure.
        report = self.assertParametersUpdated(encoder, tokens, {"encoder_output": target})
        self.assertEqual(report.frozen_parameters, 0)
        self.assertEqual(report.trainable_parameters, report.parameters_updated)
        self.assertEqual(report.parameters_not_updated, [])

    def test_output_shape(self):
        out = self.assertForwardShape(SequenceEncoder(), torch.randint(0, 50, (4, 7)), {"encoder_output": ("B", 16)})
        self.assertDtype(out, torch.float32)


if __name__ == "__main__":
    unittest.main()
