"""Loss at initialisation: an untrained C-class classifier predicts nearly uniformly, loss ~ ln C.

A head initialised with std 1, logits scaled by 100, saturated ``tanh`` units: the first loss is
far above ``ln C`` and the first steps only undo the initialisation. The check runs one forward
in eval mode without graph and computes the cross-entropy (``loss_fn`` when given: a
label-smoothed loss is fine, its value at uniform predictions is ``ln C`` as well), and requires
``|loss - expected| <= rtol * expected`` with ``expected = ln(num_classes)`` unless given.

Cost: one forward.
"""

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core import default_loss as _dl
from ..core import calling, trees
from ..core.results import InitialLossResult
from ..core.state import ModelGuard
from . import probing

__unittest = True


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    leaves = [t for _, t in trees.tensor_leaves(out) if t.is_floating_point()]
    if not leaves:
        raise ValueError("the output holds no floating tensor of logits")
    return leaves[0]


def check_initial_loss(model: nn.Module, inputs: Any, target: Any, *, num_classes: Optional[int] = None,
                       expected: Optional[float] = None, loss_fn: Optional[Callable] = None, rtol: float = 0.25,
                       seed: int = 0, output: Any = None) -> InitialLossResult:
    """Check that the untrained model's loss is close to ln C (or ``expected``)."""
    rtol = calling.check_tolerance(rtol, "rtol")
    calling.check_callable(loss_fn, "loss_fn")
    _dl.check_selector(output)
    if target is None:
        raise TypeError("target must be the class labels (a LongTensor) for the loss at initialisation")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, (int, float)) or not expected > 0):
        raise ValueError(f"expected must be a positive number, got {expected!r}")
    module, device, x, _ = probing.prepare(model, inputs, seed)
    y = calling.to_device(target, device)
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        out = _dl.select_output(calling.call(module, x), output)
        logits = _logits(out)
        if logits.dim() < 2:
            raise ValueError(f"logits of shape {tuple(logits.shape)} have no class dimension (expected (B, C, ...))")
        classes = num_classes or logits.shape[1]
        if loss_fn is not None:
            loss = loss_fn(out, y)
        else:
            if not isinstance(y, torch.Tensor) or y.is_floating_point():
                raise TypeError("target must be integer class labels for the default cross-entropy; pass loss_fn")
            loss = F.cross_entropy(logits.float(), y.long())
        value = float(loss)
        std = float(logits.float().std()) if logits.numel() > 1 else 0.0
    want = float(expected) if expected is not None else math.log(classes)
    source = "expected=" if expected is not None else f"ln({classes})"
    return InitialLossResult(calling.model_name(module), value, want, rtol, classes, std, source)
