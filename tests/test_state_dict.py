"""assertStateDictRoundTrip models a real save / rebuild / load_state_dict(strict=True).

Non-persistent buffers (position_ids, rotary inv_freq) are not in a state dict and are recomputed
by the constructor: small real Hugging Face models must pass. State the user fills in after
construction and never saves must fail; the diagnosis names only tensors the state dict lacks, and
a nondeterministic model is reported as such.
"""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase, check_state_dict_round_trip

from . import hf_models as H
from .invariance import run_invariant


class Calibrated(nn.Module):
    """Buggy twin of an HF encoder: its calibration lives in a plain tensor attribute."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.register_buffer("position_ids", torch.arange(16), persistent=False)
        self.register_buffer("running", torch.ones(8))  # persistent: in the state dict
        self.scale = torch.ones(8)  # filled after construction, never saved

    def forward(self, ids):
        return self.emb(ids) * self.scale + self.running + self.position_ids[: ids.shape[1], None]


class FilledNonPersistent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("mean", torch.zeros(4), persistent=False)

    def forward(self, x):
        return self.fc(x - self.mean)


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x) * self.calls


class RealModels(ModelTestCase):
    @classmethod
    def setUpClass(cls):
        H.require()

    def test_bert(self):
        self.assertStateDictRoundTrip(H.bert(), {"input_ids": H.token_ids()})

    def test_roberta_integer_position_ids_kept(self):
        # Scrambled integer position ids used to crash with IndexError.
        self.assertStateDictRoundTrip(H.roberta(), {"input_ids": H.token_ids()})

    def test_llama_rotary_inv_freq_kept(self):
        self.assertStateDictRoundTrip(H.llama(), {"input_ids": H.token_ids()})

    def test_gpt2(self):
        self.assertStateDictRoundTrip(H.gpt2(), {"input_ids": H.token_ids()})

    def test_clip(self):
        self.assertStateDictRoundTrip(H.clip(), {"input_ids": H.token_ids(), "pixel_values": H.pixels()})

    def test_bert_with_its_constructor(self):
        self.assertStateDictRoundTrip(H.bert(), {"input_ids": H.token_ids()}, model_factory=H.bert)


class Bugs(ModelTestCase):
    def test_unregistered_tensor_fails_and_is_named(self):
        model = Calibrated()
        model.scale.fill_(3.0)  # the user calibrates after construction
        ids = H_ids()
        with self.assertRaises(self.failureException) as ctx:
            self.assertStateDictRoundTrip(model, ids)
        text = str(ctx.exception)
        self.assertIn("Outputs differ after a state_dict save/load round trip", text)
        self.assertIn("scale: a plain tensor attribute (8,)", text)
        self.assertNotIn("running", text)  # it is in the state dict: never blamed
        # the same verdict from a real rebuild
        with self.assertRaises(self.failureException):
            self.assertStateDictRoundTrip(model, ids, model_factory=Calibrated)

    def test_unfilled_plain_tensor_is_reproduced_by_the_constructor(self):
        self.assertStateDictRoundTrip(Calibrated(), H_ids(), model_factory=Calibrated)

    def test_non_persistent_buffer_filled_after_construction(self):
        model = FilledNonPersistent()
        model.mean.fill_(5.0)
        x = torch.randn(2, 4)
        # The copy keeps non-persistent buffers (documented): only a rebuild can see this one.
        self.assertStateDictRoundTrip(model, x)
        with self.assertRaises(self.failureException) as ctx:
            self.assertStateDictRoundTrip(model, x, model_factory=FilledNonPersistent)
        self.assertIn("mean: a non-persistent buffer (4,)", str(ctx.exception))

    def test_nondeterministic_model_is_reported_as_such(self):
        with self.assertRaises(self.failureException) as ctx:
            self.assertStateDictRoundTrip(Counter(), torch.randn(2, 4))
        text = str(ctx.exception)
        self.assertTrue(text.startswith("The model is nondeterministic"), text)
        self.assertNotIn("state the state dict does not carry", text)

    def test_factory_result_fields(self):
        result = check_state_dict_round_trip(Calibrated(), H_ids(), model_factory=Calibrated)
        self.assertTrue(result.passed)
        self.assertIn(("rebuilt with", "model_factory()"), result.details)

    def test_factory_misuse(self):
        with self.assertRaises(TypeError):
            self.assertStateDictRoundTrip(Calibrated(), H_ids(), model_factory=3)
        with self.assertRaises(TypeError):
            self.assertStateDictRoundTrip(Calibrated(), H_ids(), model_factory=lambda: 3)

    def test_invisible(self):
        model = Calibrated()
        model.scale.fill_(3.0)
        ids = H_ids()
        outcome = run_invariant(self, model, lambda: self.assertStateDictRoundTrip(model, ids, model_factory=Calibrated),
                                watch=[ids])
        self.assertEqual(outcome.kind, "failed")


def H_ids():
    return torch.randint(0, 100, (2, 5), generator=torch.Generator().manual_seed(1))


if __name__ == "__main__":
    unittest.main()
