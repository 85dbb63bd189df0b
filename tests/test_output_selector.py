"""output= picks the tensor of a structured output that the loss and the target apply to."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin
from torchcheck_mixin.checks.updates import check_parameters_updated


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.side = nn.Linear(4, 2)

    def forward(self, x):
        return {"logits": self.fc(x), "aux": self.side(x), "meta": "text"}


class TupleNet(DictNet):
    def forward(self, x):
        return self.fc(x), self.side(x), None


class OutputSelectorTest(ModelAssertionsMixin, unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(5, 4, generator=g)
        self.y = torch.randint(0, 3, (5,), generator=g)

    def test_key_selects_the_loss_tensor(self):
        report = self.assertParametersUpdated(DictNet(), self.x, self.y, output="logits",
                                              allow_not_updated=["side"])
        self.assertEqual({r.name for r in report.records if r.status == "updated"}, {"fc.weight", "fc.bias"})

    def test_without_selector_a_plain_target_is_misuse(self):
        with self.assertRaises(ValueError):
            check_parameters_updated(DictNet(), self.x, self.y)

    def test_index_and_negative_index(self):
        self.assertParametersUpdated(TupleNet(), self.x, self.y, output=0, allow_not_updated=["side"])
        self.assertParametersUpdated(TupleNet(), self.x, torch.randn(5, 2), output=-2, allow_not_updated=["fc"])

    def test_callable(self):
        self.assertParametersUpdated(DictNet(), self.x, self.y, output=lambda o: o["logits"],
                                     allow_not_updated=["side"], mode="both")

    def test_selector_with_loss_fn_and_without_target(self):
        self.assertParametersUpdated(DictNet(), self.x, output="aux", loss_fn=lambda t: (t ** 2).mean(),
                                     allow_not_updated=["fc"])
        self.assertParametersUpdated(DictNet(), self.x, output="aux", allow_not_updated=["fc"])

    def test_missing_key_lists_the_keys(self):
        with self.assertRaisesRegex(ValueError, r"output='logit'.*'logits', 'aux', 'meta'"):
            check_parameters_updated(DictNet(), self.x, self.y, output="logit")

    def test_index_out_of_range_gives_the_length(self):
        with self.assertRaisesRegex(ValueError, r"output=3.*length 3"):
            check_parameters_updated(TupleNet(), self.x, self.y, output=3)

    def test_non_tensor_pick(self):
        with self.assertRaisesRegex(ValueError, r"output='meta' picks a str"):
            check_parameters_updated(DictNet(), self.x, self.y, output="meta")
        with self.assertRaisesRegex(ValueError, r"output= returned a NoneType"):
            check_parameters_updated(TupleNet(), self.x, self.y, output=lambda o: o[2])

    def test_bad_selector_type(self):
        with self.assertRaisesRegex(TypeError, "output="):
            check_parameters_updated(DictNet(), self.x, self.y, output=1.5)

    def test_overfit_with_selector(self):
        self.assertCanOverfitBatch(DictNet(), self.x, self.y, output="logits", steps=60)

    def test_overfit_without_target_fits_the_selected_tensor(self):
        self.assertCanOverfitBatch(DictNet(), self.x, output="logits", steps=60)

    def test_initial_loss_with_selector(self):
        self.assertInitialLoss(DictNet(), self.x, self.y, output="logits", rtol=1.0)
        with self.assertRaisesRegex(ValueError, "output='nope'"):
            self.assertInitialLoss(DictNet(), self.x, self.y, output="nope")

    def test_accumulation_with_selector(self):
        x = torch.randn(4, 4)
        self.assertAccumulationEquivalent(DictNet(), x, torch.randint(0, 3, (4,)), output="logits")
        self.assertAccumulationEquivalent(TupleNet(), x, output=1)


if __name__ == "__main__":
    unittest.main()
