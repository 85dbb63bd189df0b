"""Unit tests for the compatibility sweep's classifier, oracles and selection (benchmarks/sweep)."""

import random
import unittest

import numpy as np
import torch

from benchmarks.sweep import build, oracles, run


def _row(check, library, oracle_passed, **extra):
    row = {"check": check, "library": library, "oracle": {"passed": oracle_passed}, "message": extra.pop("message", "")}
    row.update(extra)
    run.classify(row)
    return row


class ClassifyTest(unittest.TestCase):
    def test_agree_both_ways(self):
        self.assertEqual(_row("dtype", "passed", True)["verdict"], "agree")
        self.assertEqual(_row("dtype", "failed", False)["verdict"], "agree")
        self.assertEqual(_row("dtype", "passed", True)["cause"], "")

    def test_false_alarm_when_library_fails_and_oracle_passes(self):
        row = _row("state_dict", "failed", True, message="outputs differ")
        self.assertEqual(row["verdict"], "false alarm")
        self.assertEqual(row["cause"], "state_dict: other false alarm")

    def test_missed_when_library_passes_and_oracle_fails(self):
        row = _row("finite_output", "passed", False)
        self.assertEqual(row["verdict"], "missed")
        self.assertTrue(row["cause"])

    def test_crash_takes_the_exception_head(self):
        row = _row("dtype", "crash", True, message="RuntimeError: size 3 does not match 4")
        self.assertEqual(row["verdict"], "crash")
        self.assertEqual(row["cause"], "crash: RuntimeError: size N does not match N")

    def test_oracle_without_verdict_is_not_counted(self):
        self.assertEqual(_row("batch_independent", "failed", None)["verdict"], "oracle n/a")

    def test_update_false_params_is_a_false_alarm_even_if_both_failed(self):
        info = {"first_move_step": {"w": "2"}, "library_status": {"zero_grad": 1}}
        row = _row("update_snapshot", "failed", False, false_params=info)
        self.assertEqual(row["verdict"], "false alarm")
        self.assertIn("zero-initialised partner", row["cause"])

    def test_undeclared_frozen_parameter_is_classified_as_policy(self):
        info = {"first_move_step": {"w": "1"}, "library_status": {"frozen": 2}}
        row = _row("update_live", "failed", True, false_params=info)
        self.assertIn("requires_grad=False", row["cause"])

    def test_missed_params_is_missed(self):
        row = _row("update_live", "passed", True, missed_params={"count": 1, "examples": ["pooler.w"]})
        self.assertEqual(row["verdict"], "missed")

    def test_invariant_broken_recorded_on_any_verdict(self):
        row = _row("dtype", "passed", True, invisibility=["numpy RNG", "torch RNG"])
        self.assertEqual(row["verdict"], "agree")
        self.assertEqual(row["invariant_cause"], "invariant: numpy RNG, torch RNG")


class InvisibilityOracleTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 2)

    def test_untouched_model_shows_no_change(self):
        before = oracles.snapshot(self.model)
        self.assertEqual(oracles.changes(before, self.model), [])

    def test_every_rng_and_state_change_is_seen(self):
        before = oracles.snapshot(self.model)
        np.random.rand()
        random.random()
        torch.rand(1)
        with torch.no_grad():
            self.model.weight.add_(1.0)
        self.model.eval()
        found = oracles.changes(before, self.model)
        for what in ("numpy RNG", "python RNG", "torch RNG", "tensors: weight", "training: <root>"):
            self.assertIn(what, found)
        oracles.restore(before, self.model)


class SelectTest(unittest.TestCase):
    SPECS = [{"family": "transformers", "name": "bert"}, {"family": "transformers", "name": "bart"},
             {"family": "timm", "name": "vit_tiny"}, {"family": "torchvision", "name": "resnet18"}]

    def ids(self, only, limit=None):
        return [build.spec_id(s) for s in build.select(self.SPECS, only, limit)]

    def test_repeatable_glob_over_type_names(self):
        self.assertEqual(self.ids(["b?rt", "res*"]), ["transformers/bert", "transformers/bart", "torchvision/resnet18"])

    def test_family_slash_name_and_substring(self):
        self.assertEqual(self.ids("timm/*"), ["timm/vit_tiny"])
        self.assertEqual(self.ids(["vit"]), ["timm/vit_tiny"])

    def test_no_pattern_keeps_all_and_limit_round_robins(self):
        self.assertEqual(len(self.ids(None)), 4)
        self.assertEqual(self.ids(None, 3), ["transformers/bert", "timm/vit_tiny", "torchvision/resnet18"])

    def test_family_flag_parses(self):
        import contextlib
        import io

        from benchmarks.sweep import __main__ as cli

        with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            cli.main(["--family", "keras"])


class PipelineTest(unittest.TestCase):
    """One cheap real architecture through build -> library checks -> oracles -> classifier."""

    def test_squeezenet_through_the_whole_sweep(self):
        try:
            specs = build.select(build.enumerate_specs(["torchvision"]), ["squeezenet1_1"], None)
        except ImportError as e:  # torchvision is test-only
            self.skipTest(f"torchvision unavailable: {e}")
        self.assertEqual([s["name"] for s in specs], ["squeezenet1_1"])
        record = run.run_model(specs[0], 60)
        self.assertTrue(record.get("built"), record.get("reason"))
        self.assertFalse(record.get("harness_error"))
        checks = record["checks"]
        self.assertGreaterEqual(len(checks), 5)
        bad = [(c["check"], c["verdict"], c.get("cause")) for c in checks if c["verdict"] not in ("agree", "oracle n/a")]
        self.assertEqual(bad, [])
        self.assertEqual([c["check"] for c in checks if c.get("invisibility")], [])


class Float64OracleTest(unittest.TestCase):
    """The update oracle's float64 ground truth: an attention key bias (true gradient exactly zero,
    softmax shift invariance) moves under float32 AdamW by rounding noise, yet is not trained."""

    def _built(self):
        torch.manual_seed(0)

        class Attention(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.q, self.k, self.v = (torch.nn.Linear(8, 8) for _ in range(3))

            def forward(self, x):
                w = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
                return w @ self.v(x)

        return build.Built(Attention(), torch.randn(2, 5, 8))

    def test_key_bias_is_unchanged_in_float64_and_others_move(self):
        result = oracles.updates(self._built())
        self.assertFalse(result["passed"])
        self.assertEqual(result["unchanged"], ["k.bias"])

    def test_threshold_is_what_decides(self):
        built = self._built()
        original = oracles.FLOAT64_NOISE
        try:
            oracles.FLOAT64_NOISE = 0.0  # no float64 ground truth: AdamW's noise step counts as a move
            result = oracles.updates(built)
        finally:
            oracles.FLOAT64_NOISE = original
        self.assertNotIn("k.bias", result["unchanged"])

    def test_vanishing_gradients_are_genuine(self):
        # 20 sigmoid layers: the first layers' gradients are ~1e-17 of the last ones' but agree in
        # float32 and float64, so they are trained, not noise. The output is scaled by 1e12 so
        # that they are still far above AdamW's eps and really move at step 1; a threshold
        # relative to the largest gradient (the old rule) would call them unchanged.
        class Scale(torch.nn.Module):
            def forward(self, x):
                return x * 1e12

        torch.manual_seed(0)
        layers = [m for _ in range(20) for m in (torch.nn.Linear(16, 16), torch.nn.Sigmoid())]
        model = torch.nn.Sequential(*layers, torch.nn.Linear(16, 1), Scale())
        built = build.Built(model, torch.randn(8, 16))
        result = oracles.updates(built)
        self.assertEqual(result["first_move"]["0.weight"], 1)  # the float64 look applies to it
        self.assertEqual(result["float64_noise"]["count"], 0, result["float64_noise"])
        self.assertTrue(result["passed"], result["unchanged"])
        rel = oracles.float64_gradient(built, ["0.weight", "40.weight"])
        self.assertLess(rel["0.weight"], 1e-12)  # what the old, relative rule got wrong


if __name__ == "__main__":
    unittest.main()
