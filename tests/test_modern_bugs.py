"""Each modern-bug assertion catches every buggy case of its kind and passes every correct twin."""

import os
import unittest

import pytest
import torch
from torch import nn

from torchcheck_mixin import ModelTestCase
from tests.catalogue_modern import CASES, ModernCase, TinyDecoder, ids
from tests.invariance import run_invariant

torch.set_num_threads(1)


class _TC(ModelTestCase):
    def runTest(self):  # pragma: no cover
        pass


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}-{c.name}" for c in CASES])
def test_catalogue_case(case: ModernCase) -> None:
    tc = _TC()
    name, args, kwargs = case.make()
    model = args[0] if isinstance(args[0], nn.Module) else None
    watch = [a for a in args[1:] if isinstance(a, (torch.Tensor, dict, tuple))]
    outcome = run_invariant(tc, model, lambda: getattr(tc, name)(*args, **kwargs), watch=watch, what=name)
    if case.buggy:
        assert outcome.kind == "failed", f"{name} missed {case.name}: {outcome.kind} {outcome.value!r}"
    else:
        assert outcome.kind == "passed", f"{name} false alarm on {case.name}: {outcome.value}"


def test_every_kind_has_a_bug_and_a_twin() -> None:
    kinds = {}
    for c in CASES:
        kinds.setdefault(c.kind, set()).add(c.buggy)
    assert all(v == {True, False} for v in kinds.values()), kinds


# ------------------------------------------------------------------------------------ misuse

from tests.catalogue_modern import (  # noqa: E402
    CubeLayer, MaskedEncoder, TwoTower, _loader, _pad_mask, _x, classifier, _cls_data,
)


MISUSE = [
    ("assertCausal", (nn.Linear(3, 2), torch.randn(3)), {}, ValueError, "no sequence dimension"),
    ("assertCausal", (nn.Linear(4, 2), torch.randn(3, 4)), {}, ValueError, "no output has the sequence length"),
    ("assertCausal", (TinyDecoder(), ids()), {"dim": 0}, ValueError, "dim must be"),
    ("assertCausal", (TinyDecoder(), ids(t=1)), {}, ValueError, "at least 2 positions"),
    ("assertCausal", (TinyDecoder(), {"input_ids": ids()}), {"input": "nope"}, ValueError, "input='nope'"),
    ("assertCausal", (nn.Sequential(nn.Flatten(), nn.Linear(32, 2)), torch.randn(2, 8, 4)), {}, ValueError,
     "pass output="),
    ("assertCausal", ("not a model", ids()), {}, TypeError, "model must be"),
    ("assertMaskInvariant", (MaskedEncoder(), {"x": _x(), "key_padding_mask": torch.zeros(3, 8, dtype=torch.bool)}),
     {}, ValueError, "masks nothing"),
    ("assertMaskInvariant", (MaskedEncoder(), {"x": _x(), "key_padding_mask": _pad_mask()}), {"convention": "up"},
     ValueError, "convention must be"),
    ("assertMaskInvariant", (MaskedEncoder(), (_x(), _pad_mask())), {}, ValueError, "pass mask="),
    ("assertPaddingInvariant", (MaskedEncoder(), {"x": _x(), "key_padding_mask": _pad_mask()}), {"extra": 0},
     ValueError, "extra must be"),
    ("assertSingleSampleConsistent", (nn.Linear(4, 2), torch.randn(1, 4)), {}, ValueError, "at least 2 samples"),
    ("assertSingleSampleConsistent", (nn.Linear(4, 2), torch.randn(3, 4)), {"max_samples": 0}, ValueError,
     "max_samples"),
    ("assertGradcheck", (nn.Linear(40, 40), torch.randn(60, 40)), {}, ValueError, "too large"),
    ("assertGradcheck", (3, torch.randn(2)), {}, TypeError, "module_or_function"),
    ("assertGradcheck", (CubeLayer(), torch.randn(3, 4)), {"eps": 0.0}, ValueError, "eps must be > 0"),
    ("assertInputsUsed", (TwoTower(), (torch.randn(4, 6), torch.randn(4, 5))), {"allow_unused": [5]}, ValueError,
     "allow_unused=5"),
    ("assertInputsUsed", (TwoTower(), (torch.randn(4, 6), torch.randn(4, 5))), {"allow_unused": 3.0}, TypeError,
     "allow_unused must be"),
    ("assertInitialLoss", (classifier(), _cls_data()[0], None), {}, TypeError, "target must be"),
    ("assertInitialLoss", (classifier(), *_cls_data()), {"num_classes": 1}, ValueError, "num_classes"),
    ("assertInitialLoss", (nn.Sequential(nn.Linear(20, 1), nn.Flatten(0)), *_cls_data()), {}, ValueError,
     "no class dimension"),
    ("assertBatchValues", (_loader(),), {}, ValueError, "nothing to check"),
    ("assertBatchValues", (_loader(),), {"labels": 2}, ValueError, "needs num_classes"),
    ("assertBatchValues", (_loader(),), {"value_range": {7: (0, 1)}}, ValueError, "names no leaf"),
    ("assertBatchValues", (_loader(),), {"value_range": {0: 1}}, ValueError, "(low, high)"),
    ("assertLabelsCover", (_loader(),), {"classes": []}, ValueError, "classes is empty"),
    ("assertLabelsCover", (_loader(),), {"classes": 10, "labels": 0}, TypeError, "labels are torch.float32"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,text", MISUSE, ids=[f"{m[0]}-{m[4]}" for m in MISUSE])
def test_misuse_is_a_clear_error(name, args, kwargs, exc, text) -> None:
    tc = _TC()
    model = args[0] if isinstance(args[0], nn.Module) else None
    outcome = run_invariant(tc, model, lambda: getattr(tc, name)(*args, **kwargs), what=name)
    assert outcome.kind == "raised", outcome
    assert isinstance(outcome.value, exc), repr(outcome.value)
    assert text in str(outcome.value), str(outcome.value)


# ------------------------------------------------------------------------ msg= and longMessage

@pytest.mark.parametrize("long_message", [True, False])
def test_msg_keyword_and_long_message(long_message) -> None:
    tc = _TC()
    tc.longMessage = long_message
    with pytest.raises(AssertionError) as info:
        tc.assertCausal(TinyDecoder("none"), ids(), msg="my note")
    text = str(info.value)
    assert text.startswith("Not causal") == long_message
    assert "my note" in text


def test_label_smoothed_loss_is_no_false_alarm() -> None:
    tc = _TC()
    model, x, y = classifier(), *_cls_data()
    loss = nn.CrossEntropyLoss(label_smoothing=0.2)(model(x), y)
    tc.assertLossScalarNonNegative(loss)
    tc.assertInitialLoss(model, x, y, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.2))


def test_initial_loss_expected_value() -> None:
    tc = _TC()
    model, x, y = classifier(), *_cls_data()
    with pytest.raises(AssertionError, match="expected= = 10"):
        tc.assertInitialLoss(model, x, y, expected=10.0)


def test_causal_unbatched_probes_agree() -> None:
    from torchcheck_mixin import check_causal

    a = check_causal(TinyDecoder("none"), ids())
    b = check_causal(TinyDecoder("none"), ids(), batched=False)
    assert a.leaks[0][:2] == b.leaks[0][:2] == (0, 1)
    assert (a.forwards, b.forwards) == (1, 8)


# ---------------------------------------------------------------------------- battery

import torchcheck_mixin.battery as battery  # noqa: E402


def _run(cls):
    suite = unittest.TestLoader().loadTestsFromTestCase(cls)
    result = unittest.TestResult()
    suite.run(result)
    return result


def test_battery_generates_modern_tests_only_when_configured() -> None:
    class Plain(battery.ModelBattery):
        model_factory = staticmethod(lambda: nn.Linear(4, 3))
        input_factory = staticmethod(lambda: torch.randn(5, 4))

    class Causal(battery.ModelBattery):
        model_factory = staticmethod(lambda: TinyDecoder("none"))
        input_factory = staticmethod(ids)
        causal_dim = 1
        check_can_overfit_batch = "slow"

    names = set(unittest.TestLoader().getTestCaseNames(Plain))
    assert {"test_single_sample_consistent", "test_inputs_used"} <= names
    assert not names & {"test_causal", "test_mask_invariant", "test_padding_invariant", "test_initial_loss"}
    result = _run(Causal)
    failed = {t.id().rsplit(".", 1)[-1] for t, _ in result.failures}
    assert "test_causal" in failed, result.failures
    assert "test_single_sample_consistent" not in failed and "test_inputs_used" not in failed


def test_battery_mask_and_initial_loss() -> None:
    class Masked(battery.ModelBattery):
        model_factory = staticmethod(lambda: MaskedEncoder("never"))
        input_factory = staticmethod(lambda: {"x": _x(), "key_padding_mask": _pad_mask()})
        mask_key = "key_padding_mask"

    class Big(battery.ModelBattery):
        model_factory = staticmethod(lambda: classifier("scaled"))
        input_factory = staticmethod(lambda: _cls_data()[0])
        target_factory = staticmethod(lambda: _cls_data()[1])
        num_classes = 10

    masked = {t.id().rsplit(".", 1)[-1] for t, _ in _run(Masked).failures}
    assert {"test_mask_invariant", "test_padding_invariant"} <= masked
    big = {t.id().rsplit(".", 1)[-1] for t, _ in _run(Big).failures}
    assert "test_initial_loss" in big


# ------------------------------------------------------------------ engine results, messages

from tests.catalogue_modern import CausalConv, _feat, SqueezeHead  # noqa: E402
from torchcheck_mixin import (  # noqa: E402
    check_causal, check_gradcheck, check_inputs_used, check_labels_cover, check_mask_invariant,
    check_single_sample_consistent,
)
from torchcheck_mixin.core import messages  # noqa: E402


def test_causal_result_names_each_leaking_pair() -> None:
    r = check_causal(CausalConv(True), _feat())
    firsts = {}
    for out_t, in_t, _, _ in r.leaks:
        firsts.setdefault(in_t, out_t)
    assert firsts == {k: k - 1 for k in range(1, 8)}  # a kernel of 3 padded 1|1 reaches one step ahead
    assert (r.length, r.probes, r.forwards) == (8, 7, 1)
    assert messages.describe_causal(r).splitlines()[0] == (
        "Not causal: output t=0 <- input t=1 (a later input changes an earlier output)")


def test_gradcheck_reports_every_input_and_parameter() -> None:
    r = check_gradcheck(CubeLayer("sign"), torch.randn(3, 4))
    assert [m.name for m in r.checked] == ["input", "param w"]
    assert [m.bad > 0 for m in r.checked] == [False, True]
    w = r.checked[1]
    assert w.analytical == pytest.approx(-w.numerical, rel=1e-4)
    assert r.forwards == 1 + 2 * (12 + 4)


def test_gradcheck_leaves_the_module_in_float32() -> None:
    layer = CubeLayer()
    check_gradcheck(layer, torch.randn(3, 4))
    assert layer.w.dtype == torch.float32 and layer.w.grad is None


def test_single_sample_result_fields() -> None:
    r = check_single_sample_consistent(SqueezeHead(True), torch.randn(5, 6), max_samples=2)
    assert r.samples == (0, 4) and r.batch == 5 and len(r.findings) == 2


def test_mask_result_counts_masked_positions() -> None:
    r = check_mask_invariant(MaskedEncoder("ok"), {"x": _x(), "key_padding_mask": _pad_mask()})
    assert (r.masked_positions, r.total_positions, r.convention, r.passed) == (8, 24, "pad", True)


def test_inputs_used_result_says_how() -> None:
    r = check_inputs_used(TwoTower(False), (torch.randn(4, 6), torch.randn(4, 5)))
    assert r.used == (("inputs[0]", "gradient"), ("inputs[1]", "gradient")) and r.passed


def test_labels_cover_unexpected_class() -> None:
    r = check_labels_cover(_loader(), range(9), labels=1)
    assert r.unexpected == (9,) and not r.passed
