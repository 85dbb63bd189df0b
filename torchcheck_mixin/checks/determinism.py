"""Determinism at inference: two eval-mode passes over the same inputs agree bit for bit."""

from typing import Any

import torch
from torch import nn

from ..core import calling
from ..core.compare import compare_outputs, reject_empty
from ..core.results import ValueCheckResult
from ..core.state import ModelGuard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def check_deterministic(model: nn.Module, inputs: Any, *, seed: int = 0) -> ValueCheckResult:
    """Two eval-mode forward passes on the same inputs give identical outputs.

    The RNG is *not* reseeded between the two passes: dropout or ``torch.rand`` left active at
    inference draws different numbers and shows up as a difference. An output whose tensors are
    all empty (a zero-size batch) is a ``ValueError``: two empty outputs agree about nothing.
    """
    calling.check_module(model)
    calling.check_inputs(inputs)
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    x = calling.to_device(calling.resolve(inputs, calling.make_generator(seed, device), "inputs"), device)
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        first = calling.call(module, x)
        reject_empty(first, "the model output")
        second = calling.call(module, x)
    n, findings = compare_outputs(first, second)
    if n == 0:
        raise ValueError("the model output holds no tensor to compare")
    return ValueCheckResult("deterministic", n, tuple(findings), (("mode", "eval, two passes, RNG not reseeded"),))
