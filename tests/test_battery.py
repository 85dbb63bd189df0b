"""ModelBattery cannot silently test nothing: a class with one factory gets a failing
``test_battery_configuration`` naming the missing one; two factories alone generate every test that
needs no more, and the others are skipped naming what to set."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelBattery
from torchcheck_mixin.battery import BATTERY_TESTS


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def inputs():
    return torch.randn(6, 4, generator=torch.Generator().manual_seed(1))


def generated(cls):
    return sorted(n for n in dir(cls) if n.startswith("test"))


def run(cls):
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(cls).run(result)
    return result


def name_of(test):
    return test.id().rsplit(".", 1)[-1]


class Configuration(unittest.TestCase):
    def test_input_factory_alone_fails_naming_model_factory(self):
        cls = type("OnlyInputs", (ModelBattery,), {"input_factory": staticmethod(inputs),
                                                   "expected_output_shape": ("B", 3)})
        self.assertEqual(generated(cls), ["test_battery_configuration"])
        result = run(cls)
        self.assertEqual(result.testsRun, 1)
        self.assertEqual(len(result.failures), 1)
        text = result.failures[0][1]
        self.assertIn("AssertionError: ModelBattery OnlyInputs generates no test: it sets input_factory but not "
                      "model_factory\n  set model_factory = () -> a fresh nn.Module to generate the battery's tests\n"
                      "  a shared base class on purpose: set battery_abstract = True in it", text)

    def test_model_factory_alone_fails_naming_input_factory(self):
        cls = type("OnlyModel", (ModelBattery,), {"model_factory": staticmethod(mlp)})
        self.assertEqual(generated(cls), ["test_battery_configuration"])
        result = run(cls)
        self.assertEqual(len(result.failures), 1)
        self.assertIn("it sets model_factory but not input_factory", result.failures[0][1])

    def test_abstract_base_is_quiet_and_not_inherited(self):
        base = type("SharedModel", (ModelBattery,), {"model_factory": staticmethod(mlp), "battery_abstract": True})
        self.assertEqual(generated(base), [])
        child = type("Child", (base,), {"input_factory": staticmethod(inputs)})
        self.assertIn("test_parameters_updated", generated(child))
        self.assertNotIn("test_battery_configuration", generated(child))
        forgot = type("Forgot", (base,), {"expected_dtype": torch.float32})
        self.assertEqual(generated(forgot), ["test_battery_configuration"])

    def test_no_factory_generates_nothing(self):
        self.assertEqual(generated(type("Settings", (ModelBattery,), {"expected_dtype": torch.float32})), [])
        self.assertEqual(generated(ModelBattery), [])

    def test_flags_of_conditional_tests_are_known(self):
        cls = type("Flags", (ModelBattery,), {"model_factory": staticmethod(mlp), "input_factory": staticmethod(inputs),
                                              "check_causal": False, "check_inputs_used": "slow"})
        self.assertIn("test_inputs_used", generated(cls))
        with self.assertRaisesRegex(TypeError, "check_casual is not a ModelBattery attribute: did you mean 'check_causal'"):
            type("Typo", (ModelBattery,), {"check_casual": False})


class TwoFactoriesOnly(unittest.TestCase):
    def test_every_test_that_needs_no_more_runs_and_passes(self):
        cls = type("Minimal", (ModelBattery,), {"model_factory": staticmethod(mlp), "input_factory": staticmethod(inputs)})
        expected = sorted(f"test_{n}" for n in BATTERY_TESTS + ("single_sample_consistent", "inputs_used"))
        self.assertEqual(generated(cls), expected)
        result = run(cls)
        self.assertEqual((result.failures, result.errors), ([], []))
        skipped = {name_of(t): reason for t, reason in result.skipped}
        self.assertEqual(skipped, {
            "test_forward_shape": "set expected_output_shape to run this test",
            "test_output_dtype": "set expected_dtype to run this test",
            "test_parameter_count": "set expected_parameter_count to run this test",
            "test_loss_scalar_non_negative": "set target_factory (and loss_fn) to check the loss",
        })
        self.assertEqual(result.testsRun - len(skipped), len(expected) - 4)


if __name__ == "__main__":
    unittest.main()
