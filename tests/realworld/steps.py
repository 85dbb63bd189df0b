"""The standard battery a user runs on a real model, each step checked against a plain-torch control.

``battery(case)`` returns ``[(label, step)]``; ``step(testcase)`` builds nothing itself: it works on
one model per case (built once, as a user would), runs the library's assertion inside
``tests.invariance.no_side_effects`` (the model, its optimizer, the inputs and every RNG must be
exactly as before), and compares the verdict with the oracle's. Failure texts start with a tag the
verdict table reads:

* ``CATALOGUE:`` the case's own allowances disagree with the oracle (a catalogue bug, not the
  library's);
* ``MISSED:`` the library passed but its per-parameter verdict disagrees with the oracle (it counts
  as updated a parameter that two real float64 optimizer steps do not train);
* ``WRONG VERDICT:`` the library passed where the oracle says the property does not hold;
* anything else raised by an assertion is the library's failure (a false alarm: every model here is
  correct by its oracle) or, for a non-assertion exception, a crash.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Tuple

import torch

from torchcheck_mixin import ANY

from tests.invariance import no_side_effects
from . import oracles

_ORACLE_CACHE: Dict[Tuple[str, str], Any] = {}


def _oracle(case, kind: str) -> Any:
    key = (case.name, kind)
    if key not in _ORACLE_CACHE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ORACLE_CACHE[key] = {
                "trained": oracles.trained_parameters,
                "round_trip": oracles.round_trip_reproduces,
                "deterministic": oracles.deterministic,
                "batch_independent": oracles.batch_independent,
            }[kind](case)
    return _ORACLE_CACHE[key]


class Context:
    """One model per case, with the user's inputs, target and real optimizer."""

    def __init__(self, case):
        self.case = case
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = case.build(0)
        self.inputs = case.inputs()
        self.target = case.target() if case.target is not None else None
        self._optimizer = None

    @property
    def optimizer(self):
        if self._optimizer is None:
            self._optimizer = self.case.optimizer([p for p in self.model.parameters() if p.requires_grad])
        return self._optimizer

    def watch(self) -> List[Any]:
        return [self.inputs] + ([self.target] if self.target is not None else [])

    def eval_output(self) -> Any:
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return oracles.call(self.model, self.inputs)
        finally:
            self.model.train(was)


def _selector(case) -> Dict[str, Any]:
    return {"output": case.output} if case.output is not None else {}


def _check_allowances(tc, ctx) -> Dict[str, Any]:
    """The case's allowances must name exactly what the plain-torch control finds."""
    case, trained = ctx.case, _oracle(ctx.case, "trained")
    allowed = oracles.resolve(ctx.model, case.allow_not_updated)
    frozen = oracles.resolve(ctx.model, case.expect_frozen)
    if allowed != trained["not_updated"]:
        tc.fail(f"CATALOGUE: allow_not_updated names {sorted(allowed ^ trained['not_updated'])} wrongly "
                f"(the control leaves {sorted(trained['not_updated'])} untrained)")
    if frozen != oracles.frozen_names(ctx.model):
        tc.fail(f"CATALOGUE: expect_frozen names {sorted(frozen ^ oracles.frozen_names(ctx.model))} wrongly")
    return trained


def _update_step(mode: str, real_optimizer: bool) -> Callable:
    def step(tc, ctx):
        trained = _check_allowances(tc, ctx)
        case = ctx.case
        optimizer = ctx.optimizer if real_optimizer else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # checkpointing / HF warnings are not the test's business
            with no_side_effects(tc, ctx.model, optimizer=optimizer, watch=ctx.watch(), what=f"{mode} update check"):
                report = tc.assertParametersUpdated(
                    ctx.model, ctx.inputs, ctx.target, mode=mode, loss_fn=case.loss_fn, optimizer=optimizer,
                    allow_not_updated=list(case.allow_not_updated), expect_frozen=list(case.expect_frozen),
                    **_selector(case))
        said_updated = {r.name.replace("_orig_mod.", "") for r in report.records if r.status == "updated"}
        missed = said_updated - trained["updated"]
        if missed:
            tc.fail(f"MISSED: reported as updated but untrained by two real float64 steps: {sorted(missed)}")
        wrong = trained["updated"] - said_updated
        if wrong:
            tc.fail(f"WRONG VERDICT: passed, but reported {sorted(wrong)} as not updated though they train")
    return step


def forward_shape(tc, ctx):
    spec = ctx.case.shape
    with no_side_effects(tc, ctx.model, watch=ctx.watch(), what="assertForwardShape"):
        tc.assertForwardShape(ctx.model, ctx.inputs, spec)
    if not (isinstance(spec, dict) and isinstance(ctx.inputs, dict) and ANY in spec.values()
            and ctx.case.family in ("transformers", "peft")):
        return
    # The same output as a plain tuple (return_dict=False), as a user of tuple outputs writes it:
    # a positional spec with ANY beside the cache object, the fields left None being absent.
    keys = list(ctx.eval_output().keys())
    positional = tuple(spec[k] for k in keys if k in spec)
    tc.assertEqual(len(positional), len(keys), f"CATALOGUE: {spec} does not name every key of {keys}")
    inputs = {**ctx.inputs, "return_dict": False}
    with no_side_effects(tc, ctx.model, watch=[inputs], what="assertForwardShape (tuple output)"):
        tc.assertForwardShape(ctx.model, inputs, positional)


def dtype(tc, ctx):
    output = ctx.eval_output()
    with no_side_effects(tc, ctx.model, watch=ctx.watch() + [output], what="assertDtype"):
        tc.assertDtype(output, torch.float32)


def batch_independent(tc, ctx):
    truth = _oracle(ctx.case, "batch_independent")
    if truth != ctx.case.batch_independent:
        tc.fail(f"CATALOGUE: batch_independent={ctx.case.batch_independent} but the control says {truth}")
    with no_side_effects(tc, ctx.model, watch=ctx.watch(), what="assertBatchIndependent"):
        if truth:
            tc.assertBatchIndependent(ctx.model, ctx.inputs)
        else:  # a contrastive model compares the samples of a batch: the check must say so
            with tc.assertRaises(tc.failureException, msg="WRONG VERDICT: batch-dependent model passed"):
                tc.assertBatchIndependent(ctx.model, ctx.inputs)


def deterministic(tc, ctx):
    tc.assertTrue(_oracle(ctx.case, "deterministic"), "CATALOGUE: the control is not deterministic")
    with no_side_effects(tc, ctx.model, watch=ctx.watch(), what="assertDeterministic"):
        tc.assertDeterministic(ctx.model, ctx.inputs)


def state_dict_round_trip(tc, ctx):
    tc.assertTrue(_oracle(ctx.case, "round_trip"), "CATALOGUE: the control's round trip does not reproduce")
    with no_side_effects(tc, ctx.model, watch=ctx.watch(), what="assertStateDictRoundTrip"):
        tc.assertStateDictRoundTrip(ctx.model, ctx.inputs)


def all_finite(tc, ctx):
    output = ctx.eval_output()
    with no_side_effects(tc, ctx.model, watch=ctx.watch() + [output], what="assertAllFinite"):
        tc.assertAllFinite(ctx.model)
        tc.assertAllFinite(output)


def parameter_count(tc, ctx):
    trainable, frozen, total = oracles.parameter_counts(ctx.model)
    with no_side_effects(tc, ctx.model, watch=ctx.watch(), what="assertParameterCount"):
        tc.assertParameterCount(ctx.model, trainable=trainable, frozen=frozen, total=total)


STEPS: List[Tuple[str, Callable]] = [
    ("forward_shape", forward_shape),
    ("dtype", dtype),
    ("updated_gradient", _update_step("gradient", False)),
    ("updated_snapshot", _update_step("snapshot", False)),
    ("updated_snapshot_optimizer", _update_step("snapshot", True)),
    ("batch_independent", batch_independent),
    ("deterministic", deterministic),
    ("state_dict_round_trip", state_dict_round_trip),
    ("all_finite", all_finite),
    ("parameter_count", parameter_count),
]
