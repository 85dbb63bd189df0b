"""Trailing-dot prefixes name a submodule; a fully frozen encoder named by expect_frozen passes."""

import unittest
import warnings

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        self.backbone_head = nn.Linear(4, 2)  # shares the prefix without the dot: must not be selected
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.backbone_head(self.backbone(x))


class SelectionTest(ModelAssertionsMixin, unittest.TestCase):
    x = torch.randn(3, 4)

    def test_trailing_dot_in_allow_not_updated(self):
        self.assertParametersUpdated(Net(), self.x, allow_not_updated=["unused."])

    def test_trailing_dot_in_expect_frozen_names_only_that_submodule(self):
        model = Net()
        model.backbone.requires_grad_(False)
        self.assertParametersUpdated(model, self.x, expect_frozen=["backbone."], allow_not_updated=["unused."])
        model.backbone_head.requires_grad_(False)  # frozen but not named by "backbone."
        with self.assertRaises(self.failureException):
            self.assertParametersUpdated(model, self.x, expect_frozen=["backbone."], allow_not_updated=["unused."])

    def test_unknown_dotted_prefix_is_still_misuse(self):
        with self.assertRaisesRegex(ValueError, "allow_not_updated entry 'nothing.'"):
            self.assertParametersUpdated(Net(), self.x, allow_not_updated=["nothing."])


class FrozenEncoderTest(ModelAssertionsMixin, unittest.TestCase):
    x = torch.randn(3, 4)

    def test_every_parameter_expected_frozen_passes(self):
        encoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)).requires_grad_(False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for mode in ("gradient", "snapshot", "both"):
                self.assertParametersUpdated(encoder, self.x, expect_frozen=["0", "1"], mode=mode)

    def test_frozen_without_expect_frozen_still_fails(self):
        encoder = nn.Sequential(nn.Linear(4, 4)).requires_grad_(False)
        with self.assertRaisesRegex(self.failureException, "no trainable parameters"):
            self.assertParametersUpdated(encoder, self.x)

    def test_partly_named_still_fails(self):
        encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).requires_grad_(False)
        with self.assertRaises(self.failureException):
            self.assertParametersUpdated(encoder, self.x, expect_frozen=["0"])

    def test_no_parameters_at_all_fails(self):
        with self.assertRaisesRegex(self.failureException, "no parameters"):
            self.assertParametersUpdated(nn.ReLU(), self.x)


if __name__ == "__main__":
    unittest.main()
