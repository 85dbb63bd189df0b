"""With no loss_fn and no target, a check trains on the loss the output carries (HF ``.loss``)."""

import unittest
import warnings

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin
from torchcheck_mixin.checks.updates import check_parameters_updated
from torchcheck_mixin.core.default_loss import compute_loss

from tests import hf_models


class WithLoss(nn.Module):
    """Returns its training loss beside the logits; ``aux`` is a diagnostic head outside the loss."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 2)

    def forward(self, x, labels):
        logits = self.fc(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits, "aux": self.aux(x)}


class OwnLossTest(ModelAssertionsMixin, unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(0)
        self.inputs = {"x": torch.randn(6, 4, generator=g), "labels": torch.randint(0, 3, (6,), generator=g)}

    def test_the_output_loss_is_the_one_trained(self):
        report = check_parameters_updated(WithLoss(), self.inputs)
        status = {r.name: r.status for r in report.records}
        self.assertEqual(status["fc.weight"], "updated")
        self.assertNotEqual(status["aux.weight"], "updated")  # outside the training loss
        self.assertParametersUpdated(WithLoss(), self.inputs, allow_not_updated=["aux"])

    def test_loss_fn_and_target_take_precedence(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # a loss_fn over every head reaches aux too
            self.assertParametersUpdated(WithLoss(), self.inputs,
                                         loss_fn=lambda o: o["logits"].square().mean() + o["aux"].square().mean())
            # a target on the selected aux head trains aux, not the output's own loss
            report = self.assertParametersUpdated(WithLoss(), self.inputs, torch.randn(6, 2), output="aux",
                                                  allow_not_updated=["fc"])
        self.assertEqual({r.name for r in report.records if r.status == "updated"}, {"aux.weight", "aux.bias"})

    def test_a_non_scalar_loss_entry_is_not_used(self):
        class PerSample(WithLoss):
            def forward(self, x, labels):
                out = super().forward(x, labels)
                out["loss"] = nn.functional.cross_entropy(out["logits"], labels, reduction="none")
                return out
        self.assertParametersUpdated(PerSample(), self.inputs)  # the weighted sum reaches every head

    def test_compute_loss_returns_the_hf_loss(self):
        t = hf_models.require()
        torch.manual_seed(0)
        model = t.BertForSequenceClassification(t.BertConfig(num_labels=3, hidden_dropout_prob=0.0,
                                                                attention_probs_dropout_prob=0.0, **hf_models.SMALL))
        inputs = {"input_ids": hf_models.token_ids(), "labels": torch.tensor([0, 2])}
        out = model(**inputs)
        self.assertIs(compute_loss(out, None, None, torch.Generator().manual_seed(0)), out.loss)
        # the key bias is shift-invariant under softmax: rounding noise, rightly not updated
        report = self.assertParametersUpdated(model, inputs, mode="both", allow_not_updated=["*.self.key.bias"])
        self.assertAlmostEqual(report.loss, out.loss.item(), places=5)
        self.assertCanOverfitBatch(model, inputs, steps=30)


if __name__ == "__main__":
    unittest.main()
