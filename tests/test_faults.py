"""Fault injection: the guard restores everything even when saving or restoring fails; every RNG,
cycles, empty values, threads."""

import random
import threading
import unittest

import numpy as np
import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin, check_all_finite, check_output_range
from torchcheck_mixin.core import trees
from torchcheck_mixin.core.state import ModelGuard
from torchcheck_mixin.core.shapes import parse_spec
from tests.invariance import run_invariant


class NumpyDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        mask = torch.from_numpy((np.random.rand(*x.shape) > 0.2).astype("float32"))
        return self.fc(x * mask * (1 + random.random()))


class FaultTests(ModelAssertionsMixin, unittest.TestCase):
    def test_numpy_and_python_rng_restored_and_seeded(self):
        model, x = NumpyDropout(), torch.randn(5, 4)
        out = run_invariant(self, model, lambda: self.assertParametersUpdated(model, x))
        self.assertEqual(out.kind, "passed")
        np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
        outs = []
        for _ in range(2):
            with ModelGuard(model, seed=3):
                outs.append(model(x))
        self.assertTrue(torch.equal(outs[0], outs[1]))  # seed= governs numpy and random draws
        self.assertTrue((np.random.get_state()[1] == np_state).all())
        self.assertEqual(random.getstate(), py_state)

    def test_grad_setter_refuses_during_save_restores_all(self):
        model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
        model(torch.randn(4, 3)).sum().backward()
        grads = [p.grad for p in model.parameters()]
        bufs = {n: (b, b._version) for n, b in model.named_buffers()}
        original = ModelGuard._save

        def failing(self):
            original(self)
            raise RuntimeError("injected after save")
        ModelGuard._save = failing
        try:
            with self.assertRaisesRegex(RuntimeError, "injected"):
                with ModelGuard(model):
                    pass
        finally:
            ModelGuard._save = original
        self.assertTrue(all(a is b for a, b in zip(grads, [p.grad for p in model.parameters()])))
        for n, b in model.named_buffers():
            self.assertIs(b, bufs[n][0])
            self.assertEqual(b._version, bufs[n][1])

    def test_restore_continues_after_a_failing_step(self):
        model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
        model(torch.randn(4, 3)).sum().backward()
        grads = [p.grad for p in model.parameters()]
        bufs = [b for b in model.buffers()]
        guard = ModelGuard(model)
        with self.assertRaisesRegex(RuntimeError, "injected"):
            with guard:
                saved = guard._dicts[0]

                class Bad(dict):
                    def items(self):
                        raise RuntimeError("injected in restore")
                guard._dicts[0] = (saved[0], Bad(saved[1]), saved[2])
                raise RuntimeError("injected")
        self.assertTrue(all(a is b for a, b in zip(grads, [p.grad for p in model.parameters()])))
        self.assertTrue(all(a is b for a, b in zip(bufs, model.buffers())))

    def test_self_referential_structures(self):
        x = [torch.randn(2, 4)]
        x.append(x)
        with self.assertRaisesRegex(ValueError, "contains itself"):
            list(trees.leaves(x))
        d = {"a": torch.zeros(1)}
        d["self"] = d
        with self.assertRaisesRegex(ValueError, "expected_shape.*contains itself"):
            parse_spec(d)
        with self.assertRaisesRegex(ValueError, "contains itself"):
            check_all_finite(d)

    def test_empty_values(self):
        with self.assertRaisesRegex(ValueError, "nothing to check: all 1 output tensors are empty"):
            check_output_range(torch.zeros(0, 4), low=0.5, high=1.0)
        self.assertTrue(check_output_range(torch.zeros(0, 4), low=0.5, high=1.0, allow_empty=True).passed)
        self.assertTrue(check_output_range((torch.zeros(0), torch.ones(2)), low=0.5, high=1.0).passed)
        with self.assertRaisesRegex(ValueError, "nothing to check"):
            check_all_finite(torch.zeros(0, 3))
        self.assertTrue(check_all_finite((torch.zeros(0), torch.ones(2))).passed)

    def test_inference_mode_is_a_clear_error(self):
        model, x = nn.Linear(3, 2), torch.randn(4, 3)
        with torch.inference_mode():
            with self.assertRaisesRegex(ValueError, "inference_mode"):
                self.assertParametersUpdated(model, x)
            with self.assertRaisesRegex(ValueError, "inference_mode"):
                self.assertCanOverfitBatch(model, x, torch.randn(4, 2), steps=2)

    def test_threads_give_single_threaded_reports(self):
        torch.manual_seed(0)
        models = [nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)) for _ in range(4)]
        x = torch.randn(6, 4)
        from torchcheck_mixin import check_parameters_updated
        single = [repr(check_parameters_updated(m, x)) for m in models]
        rng, filters = torch.get_rng_state(), list(__import__("warnings").filters)
        results = [None] * 4

        def work(i):
            results[i] = repr(check_parameters_updated(models[i], x))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, single)
        self.assertTrue(torch.equal(rng, torch.get_rng_state()))
        self.assertEqual(filters, list(__import__("warnings").filters))


if __name__ == "__main__":
    unittest.main()


class TestOverfitUnderAutocast(unittest.TestCase):
    """Issue 14: under the caller's bf16 autocast the overfit step reused cached casts (a flat loss)."""

    def test_overfits_under_bf16_autocast_and_leaves_autocast_state(self):
        from torchcheck_mixin.checks.overfit import check_can_overfit_batch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
        x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = check_can_overfit_batch(model, x, y)
            self.assertTrue(torch.is_autocast_enabled("cpu"))
            self.assertEqual(torch.get_autocast_dtype("cpu"), torch.bfloat16)
            self.assertTrue(torch.is_autocast_cache_enabled())
        self.assertTrue(result.passed, result.losses[::10])
        self.assertFalse(torch.is_autocast_enabled("cpu"))

    def test_every_guarded_check_runs_without_the_cast_cache_and_puts_it_back(self):
        import torchcheck_mixin as tc

        seen = []

        class Probe(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.l = torch.nn.Linear(8, 3)

            def forward(self, x):
                seen.append(torch.is_autocast_cache_enabled())
                return self.l(x)

        torch.manual_seed(0)
        model, x = Probe(), torch.randn(4, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for mode in ("gradient", "snapshot"):
                self.assertTrue(tc.check_parameters_updated(model, x, mode=mode).passed)
            self.assertTrue(tc.check_deterministic(model, x).passed)
            self.assertTrue(torch.is_autocast_cache_enabled())
            model(x)  # the caller's own forward: cache as the caller set it
        self.assertTrue(seen and not any(seen[:-1]) and seen[-1], seen)
        # and a failing check puts it back too
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.register_parameter("unused", torch.nn.Parameter(torch.zeros(2)))
            self.assertFalse(tc.check_parameters_updated(model, x).passed)
            self.assertTrue(torch.is_autocast_cache_enabled())
