"""Engine tests of check_forward_shape / run_forward: result fields, state left alone, misuse."""

import collections
import unittest

import torch
from torch import nn

from torchcheck_mixin import ForwardShapeResult, check_forward_shape
from torchcheck_mixin.checks.forward import run_forward

Pair = collections.namedtuple("Pair", "logits hidden")


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        h = self.fc(x)
        return {"logits": h, "aux": (h[:, :2], None)}


class TupleInTrain(nn.Module):
    """Returns (main, aux) in train mode and main alone in eval (Inception-style)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        y = self.fc(x)
        return (y, y[:, 0]) if self.training else y


class TwoInputs(nn.Module):
    def forward(self, a, b=None):
        return a if b is None else torch.cat([a, b], dim=1)


class Caching(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        self.last_input = x  # an attribute set during forward
        return self.fc(x)


class Boom(nn.Module):
    def forward(self, x):
        raise KeyError("raised by the user's forward")


def stateful_model():
    m = nn.Sequential(nn.Linear(3, 10), nn.BatchNorm1d(10), nn.Dropout(0.5), nn.Linear(10, 2))
    m.train()
    m[0].eval()  # one child in a different mode than its parent
    return m


class ForwardShapeResultTest(unittest.TestCase):
    def test_pass(self):
        result = check_forward_shape(nn.Linear(3, 10), torch.zeros(8, 3), ("B", 10))
        self.assertIsInstance(result, ForwardShapeResult)
        self.assertTrue(result.passed)
        self.assertEqual(result.spec, "('B', 10)")
        self.assertEqual(result.outputs, (("", (8, 10)),))
        self.assertEqual(result.mismatches, ())
        self.assertEqual(result.bindings, (("B", 8),))
        self.assertEqual(result.model, "Linear")
        self.assertEqual(result.inputs, (("", (8, 3)),))
        self.assertFalse(result.train)

    def test_fail(self):
        result = check_forward_shape(nn.Linear(3, 5), torch.zeros(8, 3), ("B", 10))
        self.assertFalse(result.passed)
        (m,) = result.mismatches
        self.assertEqual((m.kind, m.dim_index, m.got, m.expected, m.actual), ("dim", 1, 5, "10", (8, 5)))
        self.assertEqual(result.outputs, (("", (8, 5)),))

    def test_rank_fail(self):
        result = check_forward_shape(nn.Flatten(0), torch.zeros(8, 3), ("B", 3))
        self.assertEqual(result.mismatches[0].kind, "rank")
        self.assertEqual(result.outputs, (("", (24,)),))

    def test_structured_output(self):
        spec = {"logits": ("B", 5), "aux": (("B", 2), ())}
        result = check_forward_shape(DictOut(), torch.zeros(4, 3), spec)
        self.assertFalse(result.passed)  # aux[1] is None, not a 0-d tensor
        (m,) = result.mismatches
        self.assertEqual(m.path, ("aux", 1))
        self.assertEqual(m.kind, "not_a_tensor")
        self.assertEqual(result.outputs, (("['logits']", (4, 5)), ("['aux'][0]", (4, 2)), ("['aux'][1]", None)))
        self.assertEqual(result.bindings, (("B", 4),))

    def test_structured_output_missing_key(self):
        result = check_forward_shape(DictOut(), torch.zeros(4, 3), {"logits": ("B", 5)})
        (m,) = result.mismatches
        self.assertEqual(m.kind, "keys")
        self.assertEqual(m.extra_keys, ("'aux'",))

    def test_named_dims_bound_across_output_leaves(self):
        model = TupleInTrain()
        result = check_forward_shape(model, torch.zeros(6, 3), (("B", 4), ("B",)), train=True)
        self.assertTrue(result.passed)
        result = check_forward_shape(model, torch.zeros(6, 3), (("B", 4), ("N", 2)), train=True)
        self.assertFalse(result.passed)

    def test_namedtuple_output(self):
        class M(nn.Module):
            def forward(self, x):
                return Pair(x, x[:, :1])

        self.assertTrue(check_forward_shape(M(), torch.zeros(2, 3), (("B", 3), ("B", 1))).passed)
        self.assertTrue(check_forward_shape(M(), torch.zeros(2, 3), {"logits": ("B", 3), "hidden": ("B", 1)}).passed)

    def test_eval_mode_by_default_and_train_on_request(self):
        model = TupleInTrain()
        model.train()
        self.assertTrue(check_forward_shape(model, torch.zeros(6, 3), ("B", 4)).passed)
        result = check_forward_shape(model, torch.zeros(6, 3), (("B", 4), ("B",)), train=True)
        self.assertTrue(result.passed)
        self.assertTrue(result.train)
        self.assertTrue(model.training)

    def test_inputs_conventions(self):
        model = TwoInputs()
        a, b = torch.zeros(2, 3), torch.zeros(2, 4)
        self.assertTrue(check_forward_shape(model, a, (2, 3)).passed)
        result = check_forward_shape(model, (a, b), (2, 7))
        self.assertTrue(result.passed)
        self.assertEqual(result.inputs, (("[0]", (2, 3)), ("[1]", (2, 4))))
        self.assertTrue(check_forward_shape(model, [a, b], (2, 7)).passed)
        result = check_forward_shape(model, {"a": a, "b": b}, (2, 7))
        self.assertTrue(result.passed)
        self.assertEqual(result.inputs, (("['a']", (2, 3)), ("['b']", (2, 4))))

    def test_callable_inputs_get_a_seeded_generator(self):
        seen = []

        def make(generator):
            self.assertIsInstance(generator, torch.Generator)
            x = torch.randn(5, 3, generator=generator)
            seen.append(x)
            return x

        result = check_forward_shape(nn.Linear(3, 4), make, ("B", 4))
        self.assertTrue(result.passed)
        self.assertEqual(result.bindings, (("B", 5),))
        check_forward_shape(nn.Linear(3, 4), make, ("B", 4))
        self.assertTrue(torch.equal(seen[0], seen[1]))  # reproducible draws

    def test_wrapped_model_reports_the_inner_name(self):
        wrapped = nn.DataParallel(nn.Linear(3, 4))
        result = check_forward_shape(wrapped, torch.zeros(2, 3), ("B", 4))
        self.assertTrue(result.passed)
        self.assertEqual(result.model, "Linear")

    def test_inference_mode_inputs(self):
        with torch.inference_mode():
            x = torch.zeros(2, 3)
        self.assertTrue(check_forward_shape(nn.Linear(3, 4), x, ("B", 4)).passed)


class ForwardLeavesModelAloneTest(unittest.TestCase):
    def test_modes_buffers_and_rng(self):
        model = stateful_model()
        x = torch.randn(8, 3)
        bn = model[1]
        mean, var, count = bn.running_mean, bn.running_var, bn.num_batches_tracked
        saved = (mean.clone(), var.clone(), count.clone(), mean._version)
        rng = torch.get_rng_state()
        for train in (False, True):
            with self.subTest(train=train):
                self.assertTrue(check_forward_shape(model, x, ("B", 2), train=train).passed)
                self.assertEqual([m.training for m in model.modules()], [True, False, True, True, True])
                self.assertIs(bn.running_mean, mean)
                self.assertTrue(torch.equal(mean, saved[0]))
                self.assertTrue(torch.equal(var, saved[1]))
                self.assertTrue(torch.equal(count, saved[2]))
                self.assertEqual(mean._version, saved[3])
                self.assertTrue(torch.equal(rng, torch.get_rng_state()))

    def test_attributes_set_in_forward_are_removed(self):
        model = Caching()
        check_forward_shape(model, torch.zeros(2, 3), (2, 3))
        self.assertFalse(hasattr(model, "last_input"))

    def test_no_graph_and_no_grad_written(self):
        model = nn.Linear(3, 4)
        out = run_forward(model, torch.zeros(2, 3))
        self.assertFalse(out.requires_grad)
        self.assertIsNone(model.weight.grad)

    def test_user_exception_propagates_unwrapped(self):
        model = stateful_model()
        model.add_module("boom", Boom())
        with self.assertRaises(KeyError) as cm:
            check_forward_shape(model, torch.zeros(2, 3), ("B", 2))
        self.assertIn("raised by the user's forward", str(cm.exception))
        self.assertEqual([m.training for m in model.modules()], [True, False, True, True, True, True])

    def test_bad_spec_costs_no_forward(self):
        calls = []

        class Counting(nn.Module):
            def forward(self, x):
                calls.append(1)
                return x

        with self.assertRaises(TypeError):
            check_forward_shape(Counting(), torch.zeros(2), "B")
        self.assertEqual(calls, [])


class ForwardMisuseTest(unittest.TestCase):
    def assertMisuse(self, error, fragment, *args, **kwargs):
        with self.assertRaises(error) as cm:
            check_forward_shape(*args, **kwargs)
        self.assertIn(fragment, str(cm.exception))

    def test_not_a_module(self):
        self.assertMisuse(TypeError, "model", lambda x: x, torch.zeros(2), (2,))
        self.assertMisuse(TypeError, "model", "model", torch.zeros(2), (2,))

    def test_bad_inputs(self):
        self.assertMisuse(TypeError, "inputs", nn.Linear(1, 1), None, (1, 1))
        self.assertMisuse(TypeError, "inputs", nn.Linear(1, 1), 3, (1, 1))

    def test_bad_spec(self):
        self.assertMisuse(TypeError, "expected_shape", nn.Linear(1, 1), torch.zeros(1, 1), "B")
        self.assertMisuse(ValueError, "expected_shape", nn.Linear(1, 1), torch.zeros(1, 1), (-1, 1))

    def test_bad_train(self):
        self.assertMisuse(TypeError, "train", nn.Linear(1, 1), torch.zeros(1, 1), (1, 1), train=1)
        self.assertMisuse(TypeError, "train", nn.Linear(1, 1), torch.zeros(1, 1), (1, 1), train="eval")

    def test_callable_returning_none(self):
        self.assertMisuse(TypeError, "inputs", nn.Linear(1, 1), lambda g: None, (1, 1))


if __name__ == "__main__":
    unittest.main()
