"""The library against the catalogue: every bug caught by the check that should catch it, and no
false alarm from any check on any correct model or pipeline.

The catalogue (tests/catalogue.py) describes each model case with the checks it must fail
(``bugs``) and the expectations a correct model must meet; these tests run the engine checks
(the assertions are thin wrappers tested elsewhere) and report every case in a subTest.
"""

import unittest
import warnings

from tests import catalogue
from torchcheck_mixin.core.calling import lazy_modules
from torchcheck_mixin.checks.forward import run_forward
from torchcheck_mixin import (
    check_all_finite,
    check_batch_independent,
    check_batch_shape,
    check_can_overfit_batch,
    check_deterministic,
    check_dtype,
    check_forward_shape,
    check_loss_scalar_non_negative,
    check_parameter_count,
    check_parameters_updated,
)


def _target(case):
    return case.target() if case.target is not None else None


def _output(case, model):
    return run_forward(model, case.inputs())


def update_report(case, mode):
    model = case.build()
    optimizer = case.optimizer(model) if (case.optimizer is not None and mode != "gradient") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the catalogue's own models may warn (checkpointing, ...)
        return check_parameters_updated(
            model, case.inputs(), _target(case), mode=mode, loss_fn=case.loss_fn, optimizer=optimizer,
            allow_not_updated=case.allow_not_updated, expect_frozen=case.expect_frozen, trials=case.trials,
        )


def run_check(kind, case):
    """Run the check for ``kind`` on ``case``; return its ``passed`` (None: not applicable)."""
    if kind == "updated_gradient":
        return update_report(case, "gradient").passed
    if kind == "updated_snapshot":
        return update_report(case, "snapshot").passed
    if kind == "batch_independent":
        return None if case.batch_dependent else check_batch_independent(case.build(), case.inputs()).passed
    if kind == "deterministic":
        return check_deterministic(case.build(), case.inputs()).passed
    if kind == "parameter_count":
        if case.parameter_count is None:
            return None
        model = case.build()
        if lazy_modules(model):  # counting needs the parameters to exist: one forward first
            run_forward(model, case.inputs())
        return check_parameter_count(model, total=case.parameter_count).passed
    if kind == "finite":
        return check_all_finite(_output(case, case.build())).passed
    if kind == "forward_shape":
        if case.expected_shape is None:
            return None
        return check_forward_shape(case.build(), case.inputs(), case.expected_shape).passed
    if kind == "dtype":
        if case.expected_dtype is None:
            return None
        return check_dtype(_output(case, case.build()), case.expected_dtype).passed
    if kind == "loss":
        if case.loss_fn is None or case.target is None:
            return None
        return check_loss_scalar_non_negative(case.loss_fn(_output(case, case.build()), case.target())).passed
    if kind == "overfit":
        model = case.build()
        optimizer = case.optimizer(model) if case.optimizer is not None else None
        return check_can_overfit_batch(model, case.inputs(), _target(case), loss_fn=case.loss_fn,
                                       optimizer=optimizer).passed
    raise AssertionError(kind)


FAST_KINDS = ("updated_gradient", "updated_snapshot", "batch_independent", "deterministic", "parameter_count",
              "finite", "forward_shape", "dtype", "loss")


class TestBugsAreCaught(unittest.TestCase):
    def test_every_bug_kind_has_two_variants(self):
        for kind in catalogue.BUG_KINDS:
            with self.subTest(kind=kind):
                self.assertGreaterEqual(len(catalogue.buggy_models(kind)), 2)

    def test_each_buggy_model_fails_its_checks(self):
        for case in catalogue.MODEL_CASES:
            for kind in sorted(case.bugs):
                with self.subTest(case=case.name, check=kind):
                    self.assertIs(run_check(kind, case), False, case.note)

    def test_update_bugs_name_the_right_parameters(self):
        for case in catalogue.MODEL_CASES:
            kinds = case.bugs & {"updated_gradient", "updated_snapshot"}
            if not kinds or not case.not_updated:
                continue
            mode = "gradient" if "updated_gradient" in kinds else "snapshot"
            with self.subTest(case=case.name, mode=mode):
                failing = {r.name for r in update_report(case, mode).failures}
                self.assertTrue(set(case.not_updated) <= failing, f"{sorted(case.not_updated)} vs {sorted(failing)}")

    def test_failure_messages_render(self):
        from torchcheck_mixin.core import messages

        for case in catalogue.buggy_models("updated_gradient"):
            with self.subTest(case=case.name):
                text = messages.describe_update(update_report(case, "gradient"))
                for name in case.not_updated:
                    self.assertIn(name, text)


class TestNoFalseAlarms(unittest.TestCase):
    def test_correct_models_pass_every_fast_check(self):
        for case in catalogue.correct_models():
            for kind in FAST_KINDS:
                with self.subTest(case=case.name, check=kind):
                    self.assertIn(run_check(kind, case), (True, None), case.note)

    def test_correct_models_can_overfit_a_batch(self):
        for case in catalogue.correct_models():
            with self.subTest(case=case.name):
                self.assertIs(run_check("overfit", case), True, case.note)

    def test_both_mode_agrees_on_correct_models(self):
        for case in catalogue.correct_models():
            with self.subTest(case=case.name):
                self.assertTrue(update_report(case, "both").passed)


class TestDataPipelines(unittest.TestCase):
    def test_correct_pipelines_pass(self):
        for case in catalogue.correct_data():
            with self.subTest(case=case.name):
                self.assertTrue(check_batch_shape(case.loader(), case.expected_shape, dtype=case.dtype).passed)

    def test_buggy_pipelines_fail(self):
        for case in catalogue.buggy_data():
            with self.subTest(case=case.name):
                self.assertFalse(check_batch_shape(case.loader(), case.expected_shape, dtype=case.dtype).passed)


if __name__ == "__main__":
    unittest.main()
