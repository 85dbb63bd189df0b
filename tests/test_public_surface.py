"""Every public check_* and every result class it returns keeps the promises of issue 13.

Enumerated, not listed: a check or result class added later without ``explained(...)`` in
core/results.py or outside the boundary fails here with no edit to this file.
"""

import dataclasses
import json
import traceback
import typing
import unittest

import torch
from torch import nn

import torchcheck_mixin
from torchcheck_mixin.core import results


def public_checks():
    return {n: getattr(torchcheck_mixin, n) for n in torchcheck_mixin.__all__ if n.startswith("check_")}


def result_classes():
    """Every dataclass of core/results.py with a ``passed`` verdict, plus every check's return type."""
    found = {c for c in vars(results).values()
             if isinstance(c, type) and dataclasses.is_dataclass(c) and isinstance(getattr(c, "passed", None), property)}
    for fn in public_checks().values():
        found.add(typing.get_type_hints(fn)["return"])
    return sorted(found, key=lambda c: c.__name__)


class Dropper(nn.Module):  # ignores its second input: check_inputs_used fails
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, y):
        return self.lin(x)


class LeftBehind(nn.Module):  # a plain tensor attribute: model.to() leaves it behind
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.scale = torch.ones(2)

    def forward(self, x):
        return self.lin(x) * self.scale


def instances():
    """``(label, result)`` of real check calls, passing and failing, cheap on a CPU."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g)
    lin = nn.Linear(3, 2)
    seq = torch.randn(2, 5, 3, generator=g)
    mixer = nn.Sequential(nn.Flatten(), nn.Linear(15, 15), nn.Unflatten(1, (5, 3)))
    out = [
        ("all_finite pass", torchcheck_mixin.check_all_finite(torch.ones(2))),
        ("all_finite fail", torchcheck_mixin.check_all_finite(torch.tensor([float("nan")]))),
        ("dtype pass", torchcheck_mixin.check_dtype(torch.zeros(2), torch.float32)),
        ("dtype fail", torchcheck_mixin.check_dtype(torch.zeros(2), torch.float64)),
        ("forward pass", torchcheck_mixin.check_forward_shape(lin, x, ("B", 2))),
        ("forward fail", torchcheck_mixin.check_forward_shape(lin, x, ("B", 3))),
        ("loss pass", torchcheck_mixin.check_loss_scalar_non_negative(torch.tensor(1.0))),
        ("loss fail", torchcheck_mixin.check_loss_scalar_non_negative(torch.tensor(-1.0))),
        ("count pass", torchcheck_mixin.check_parameter_count(lin, trainable=8)),
        ("count fail", torchcheck_mixin.check_parameter_count(lin, trainable=7)),
        ("batch pass", torchcheck_mixin.check_batch_shape(x, ("B", 3))),
        ("batch fail", torchcheck_mixin.check_batch_shape(x, ("B", 4))),
        ("updates pass", torchcheck_mixin.check_parameters_updated(nn.Linear(3, 2), x)),
        ("inputs_used pass", torchcheck_mixin.check_inputs_used(lin, (x,))),
        ("inputs_used fail", torchcheck_mixin.check_inputs_used(Dropper(), (x, x))),
        ("causal fail", torchcheck_mixin.check_causal(mixer, seq)),
        ("moves pass", torchcheck_mixin.check_moves_with_model(nn.Linear(3, 2))),
        ("moves fail", torchcheck_mixin.check_moves_with_model(LeftBehind())),
        ("accumulation pass", torchcheck_mixin.check_accumulation_equivalent(nn.Linear(3, 2), x)),
        ("precision pass", torchcheck_mixin.check_precision_parity(nn.Linear(3, 2), x)),
        ("gradcheck pass", torchcheck_mixin.check_gradcheck(nn.Linear(3, 2), x)),
    ]
    return out


class ResultsExplainThemselves(unittest.TestCase):
    def test_every_result_class_is_explained(self):
        classes = result_classes()
        self.assertGreaterEqual(len(classes), 15, [c.__name__ for c in classes])
        for cls in classes:
            with self.subTest(result=cls.__name__):
                self.assertIsInstance(getattr(cls, "message", None), property,
                                      f"{cls.__name__} has no .message: add explained(\"describe_...\")({cls.__name__}) "
                                      "in torchcheck_mixin/core/results.py")
                self.assertTrue(callable(getattr(cls, "to_dict", None)), f"{cls.__name__} has no to_dict()")
                self.assertNotIn("dataclass", getattr(cls.__repr__, "__qualname__", ""))
                self.assertIn("explained", cls.__repr__.__qualname__, f"{cls.__name__} keeps the dataclass repr")

    def test_instances_message_str_repr_to_dict(self):
        seen_pass, seen_fail = set(), set()
        for label, r in instances():
            with self.subTest(case=label):
                name = type(r).__name__
                self.assertEqual(label.endswith("pass"), r.passed, f"{label}: {r!r}")
                text = repr(r)
                self.assertTrue(text.startswith(f"<{name} passed={r.passed}"), text)
                self.assertLessEqual(len(text), 200, text)
                d = r.to_dict()
                self.assertEqual((d["type"], d["passed"], d["message"]), (name, r.passed, r.message))
                json.dumps(d)  # plain JSON data
                if r.passed:
                    self.assertEqual((r.message, str(r), bool(r)), ("", "passed", True))
                    seen_pass.add(name)
                else:
                    self.assertTrue(r.message.strip(), label)
                    self.assertEqual((str(r), bool(r)), (r.message, False))
                    self.assertIn(r.message.split("\n", 1)[0][:60], text)
                    seen_fail.add(name)
        self.assertGreaterEqual(len(seen_pass), 10, seen_pass)
        self.assertGreaterEqual(len(seen_fail), 7, seen_fail)


class ChecksBehindTheBoundary(unittest.TestCase):
    def test_every_check_is_wrapped(self):
        checks = public_checks()
        self.assertGreaterEqual(len(checks), 25)
        for name, fn in checks.items():
            with self.subTest(check=name):
                self.assertTrue(getattr(fn, "__torchcheck_boundary__", False),
                                f"torchcheck_mixin.{name} is not wrapped by core/boundary.public")
                self.assertEqual(fn.__name__, name)  # functools.wraps keeps the name and docstring
                self.assertTrue(fn.__doc__ is None or fn.__doc__ == fn.__wrapped__.__doc__)

    def test_misuse_traceback_has_no_engine_frames(self):
        for name, fn in public_checks().items():
            with self.subTest(check=name):
                try:
                    fn(object(), object())  # not a model, not a tensor: every check refuses it
                except (TypeError, ValueError) as err:
                    frames = traceback.extract_tb(err.__traceback__)
                else:
                    self.fail(f"{name}(object(), object()) raised no misuse error")
                files = [f.filename.replace("\\", "/") for f in frames]
                self.assertEqual(files[0], __file__.replace("\\", "/"), files)
                self.assertTrue(all(f.endswith("torchcheck_mixin/core/boundary.py") for f in files[1:]), (name, files))
                self.assertLessEqual(len(files), 2, (name, files))


if __name__ == "__main__":
    unittest.main()
