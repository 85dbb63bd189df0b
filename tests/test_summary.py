"""Engine tests of parameter_summary / count_parameters: counts, tied weights, torchinfo cross-check."""

import contextlib
import gc
import io
import time
import unittest
import weakref

import torch
from torch import nn

from torchcheck_mixin import ParameterSummary, parameter_summary
from torchcheck_mixin.core.summary import TORCHINFO_MAX_DEPTH, count_parameters, nesting_depth


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(self.emb(idx))


def chain(depth):
    """Sequential(Linear, Sequential(Linear, ...)) nested ``depth`` deep."""
    m = nn.Linear(2, 2)
    for _ in range(depth):
        m = nn.Sequential(nn.Linear(2, 2), m)
    return m


class CountsTest(unittest.TestCase):
    def test_linear_relu(self):
        s = parameter_summary(nn.Sequential(nn.Linear(16, 256), nn.ReLU()))
        self.assertIsInstance(s, ParameterSummary)
        self.assertEqual(s.parameters, 2)
        self.assertEqual(s.elements, 4352)
        self.assertEqual((s.trainable_parameters, s.trainable_elements), (2, 4352))
        self.assertEqual((s.frozen_parameters, s.frozen_elements), (0, 0))
        self.assertEqual(s.shared, ())
        self.assertEqual(s.torchinfo_total, 4352)
        self.assertEqual(s.torchinfo_trainable, 4352)
        self.assertEqual(s.torchinfo_note, "")
        self.assertTrue(s.torchinfo_agrees)

    def test_per_child_table(self):
        s = parameter_summary(nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 2)))
        self.assertEqual([(m.name, m.kind, m.parameters, m.elements) for m in s.modules],
                         [("0", "Linear", 2, 4352), ("2", "Linear", 2, 514)])

    def test_root_parameters(self):
        class Root(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(3))
                self.fc = nn.Linear(3, 1)

        s = count_parameters(Root())
        self.assertEqual(s.parameters, 3)
        self.assertEqual(s.elements, 3 + 4)
        self.assertEqual({m.name: m.elements for m in s.modules}, {"": 3, "fc": 4})

    def test_frozen_counts(self):
        m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
        m[0].requires_grad_(False)
        s = parameter_summary(m)
        self.assertEqual((s.parameters, s.elements), (4, 25))
        self.assertEqual((s.trainable_parameters, s.trainable_elements), (2, 16))
        self.assertEqual((s.frozen_parameters, s.frozen_elements), (2, 9))
        self.assertEqual((s.torchinfo_total, s.torchinfo_trainable), (25, 16))

    def test_tied_weights_counted_once(self):
        s = parameter_summary(TiedLM())
        self.assertEqual(s.parameters, 1)
        self.assertEqual(s.elements, 40)
        self.assertEqual(s.shared, (("emb.weight", ("head.weight",)),))
        self.assertEqual(s.torchinfo_total, 80)  # torchinfo 1.8.0 counts it once per module
        self.assertFalse(s.torchinfo_agrees)
        self.assertIn("80", s.torchinfo_note)
        self.assertIn("40", s.torchinfo_note)
        self.assertIn("tied", s.torchinfo_note)

    def test_without_torchinfo(self):
        s = parameter_summary(TiedLM(), use_torchinfo=False)
        self.assertEqual(s.elements, 40)
        self.assertIsNone(s.torchinfo_total)
        self.assertEqual(s.torchinfo_note, "")
        self.assertTrue(s.torchinfo_agrees)

    def test_no_parameters(self):
        s = parameter_summary(nn.ReLU())
        self.assertEqual((s.parameters, s.elements), (0, 0))

    def test_wrapper_is_unwrapped(self):
        s = parameter_summary(nn.DataParallel(TiedLM()))
        self.assertEqual(s.shared, (("emb.weight", ("head.weight",)),))  # no "module." prefix
        self.assertEqual(s.elements, 40)

    def test_lazy_module_is_value_error(self):
        for model in (nn.LazyLinear(3), nn.Sequential(nn.Linear(2, 2), nn.LazyLinear(3))):
            with self.subTest(model=type(model).__name__):
                with self.assertRaises(ValueError) as cm:
                    parameter_summary(model)
                self.assertIn("lazy", str(cm.exception))
                self.assertIn("LazyLinear", str(cm.exception))

    def test_lazy_module_after_a_forward_counts(self):
        model = nn.LazyLinear(3)
        model(torch.zeros(2, 5))
        self.assertEqual(parameter_summary(model).elements, 18)

    def test_not_a_module(self):
        with self.assertRaises(TypeError) as cm:
            parameter_summary("model")
        self.assertIn("model", str(cm.exception))


class TorchinfoSafetyTest(unittest.TestCase):
    def test_deep_nesting_is_fast_and_skips_torchinfo(self):
        model = chain(20)
        self.assertEqual(nesting_depth(model), 20)
        self.assertGreater(20, TORCHINFO_MAX_DEPTH)
        start = time.perf_counter()
        s = parameter_summary(model)
        elapsed = time.perf_counter() - start
        self.assertLess(elapsed, 2.0)
        self.assertEqual(s.parameters, 42)
        self.assertEqual(s.elements, 42 * 3)
        self.assertIsNone(s.torchinfo_total)
        self.assertIn("torchinfo skipped", s.torchinfo_note)
        self.assertIn("20", s.torchinfo_note)

    def test_moderate_nesting_still_uses_torchinfo(self):
        s = parameter_summary(chain(TORCHINFO_MAX_DEPTH))
        self.assertEqual(s.torchinfo_total, s.elements)

    def test_summarised_model_is_garbage_collectable(self):
        model = TiedLM()
        ref = weakref.ref(model)
        parameter_summary(model)
        del model
        gc.collect()
        self.assertIsNone(ref(), "something (torchinfo's cache?) keeps the summarised model alive")

    def test_modes_hooks_devices_and_buffers_unchanged(self):
        model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.1))
        model.train()
        model[1].eval()
        handle = model.register_forward_hook(lambda *args: None)
        modes = [m.training for m in model.modules()]
        hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()]
        buffers = {n: b for n, b in model.named_buffers()}
        versions = {n: b._version for n, b in buffers.items()}
        rng = torch.get_rng_state()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            s = parameter_summary(model)
        self.assertEqual(s.torchinfo_total, s.elements)
        self.assertEqual(out.getvalue(), "", "torchinfo printed its table")
        self.assertEqual([m.training for m in model.modules()], modes)
        self.assertEqual(
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
            hooks,
        )
        self.assertEqual(dict(model.named_buffers()), buffers)
        self.assertEqual({n: b._version for n, b in model.named_buffers()}, versions)
        self.assertTrue(all(p.device.type == "cpu" for p in model.parameters()))
        self.assertTrue(torch.equal(rng, torch.get_rng_state()))
        handle.remove()

    def test_module_without_forward(self):
        class Holder(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)

        s = parameter_summary(Holder())
        self.assertEqual(s.elements, 6)


if __name__ == "__main__":
    unittest.main()
