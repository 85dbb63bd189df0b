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
