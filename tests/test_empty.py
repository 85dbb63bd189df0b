"""Checks over nothing: a zero-size batch gives outputs with no values, and a comparison of
nothing must not pass (README: a check over nothing fails), nor crash inside the library."""
import unittest

import torch
from torch import nn

from torchcheck_mixin import (ModelTestCase, check_all_finite, check_deterministic,
                              check_state_dict_round_trip)


class EmptyBatchTests(ModelTestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 3)
        self.empty = torch.zeros(0, 4)

    def test_deterministic_refuses_an_empty_output(self):
        with self.assertRaisesRegex(ValueError, "nothing to check: all 1 tensor of the model output are empty"):
            check_deterministic(self.model, self.empty)
        with self.assertRaisesRegex(ValueError, "nothing to check"):
            self.assertDeterministic(self.model, self.empty)

    def test_state_dict_round_trip_refuses_an_empty_output(self):
        with self.assertRaisesRegex(ValueError, "zero-size batch"):
            check_state_dict_round_trip(self.model, self.empty)
        with self.assertRaisesRegex(ValueError, "nothing to check"):
            self.assertStateDictRoundTrip(self.model, self.empty)

    def test_all_finite_refuses_empty_values(self):
        with self.assertRaisesRegex(ValueError, "nothing to check"):
            check_all_finite(self.model(self.empty))

    def test_a_non_empty_batch_still_passes(self):
        x = torch.randn(2, 4)
        self.assertTrue(check_deterministic(self.model, x).passed)
        self.assertTrue(check_state_dict_round_trip(self.model, x).passed)
        self.assertDeterministic(self.model, x)

    def test_model_is_untouched_after_the_refusal(self):
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.train()
        with self.assertRaises(ValueError):
            check_state_dict_round_trip(self.model, self.empty)
        self.assertTrue(self.model.training)
        for k, v in self.model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), k)


if __name__ == "__main__":
    unittest.main()
