"""Parameter counts against the numbers the design implies, and where missing ones hide.

Layers kept in a plain Python list or dict are never registered: their weights are not in
``model.parameters()``, so the optimizer never sees them, ``state_dict()`` never saves them and the
count comes out short. A tensor registered as a buffer instead of a Parameter is saved but never
trained. ``check_parameter_count`` compares the true element counts (tied weights once) with
the expected ones and, when a count is short, lists these suspects.

>>> check_parameter_count(nn.Linear(16, 256), total=4352).passed
True
"""

from typing import List, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ..core import calling
from ..core.results import ParameterCountResult
from ..core.summary import count_parameters

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def _count_arg(value, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (a number of elements) or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def unregistered_state(model: nn.Module) -> List[str]:
    """Modules or tensors held in plain lists/dicts/tuples or plain attributes, and floating buffers."""
    out: List[str] = []
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        for key, value in vars(m).items():
            if key.startswith("_") and key in ("_parameters", "_buffers", "_modules"):
                continue
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else None
            if items is not None:
                mods = [v for v in items if isinstance(v, nn.Module)]
                tens = [v for v in items if isinstance(v, torch.Tensor)]
                numel = sum(p.numel() for v in mods for p in v.parameters()) + sum(t.numel() for t in tens)
                if mods or tens:
                    kind = type(value).__name__
                    out.append(f"{prefix}{key}: a plain {kind} holding {len(mods)} module(s) and {len(tens)} "
                               f"tensor(s), {numel:,} elements, not registered (use nn.ModuleList/ModuleDict/ParameterList)")
            elif isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                out.append(f"{prefix}{key}: a plain tensor attribute, {value.numel():,} elements, not registered")
    return out


def floating_buffers(model: nn.Module) -> List[str]:
    """Registered floating-point buffers (outside norm layers' running statistics).

    They are registered, so they are not "unregistered state", but they are never counted as
    parameters nor trained: a weight registered with ``register_buffer`` by mistake shows here.
    """
    out: List[str] = []
    for name, m in model.named_modules():
        if isinstance(m, _NormBase):
            continue  # running statistics: floating buffers by design
        prefix = f"{name}." if name else ""
        for key, buf in m._buffers.items():
            if buf is not None and buf.is_floating_point():
                saved = "saved" if key not in m._non_persistent_buffers_set else "not saved (persistent=False)"
                out.append(f"{prefix}{key}: {buf.numel():,} elements, {saved}")
    return out


def check_parameter_count(model: nn.Module, *, trainable: Optional[int] = None, frozen: Optional[int] = None,
                          total: Optional[int] = None) -> ParameterCountResult:
    """Compare element counts (tied weights once) with the expected ``trainable``/``frozen``/``total``."""
    calling.check_module(model, allow_meta=True)
    expected = [(k, _count_arg(v, k)) for k, v in (("total", total), ("trainable", trainable), ("frozen", frozen))]
    expected = [(k, v) for k, v in expected if v is not None]
    if not expected:
        raise ValueError("give at least one of total=, trainable=, frozen= (numbers of elements)")
    summary = count_parameters(model)
    actual = (("total", summary.elements), ("trainable", summary.trainable_elements), ("frozen", summary.frozen_elements))
    module, _ = calling.unwrap(model, allow_meta=True)  # counting reads shapes only: works on meta
    short = any(dict(actual)[k] < v for k, v in expected)
    suspects = tuple(unregistered_state(module)) if short else ()
    buffers = tuple(floating_buffers(module)) if short else ()
    return ParameterCountResult(tuple(expected), actual, summary, suspects, buffers)
