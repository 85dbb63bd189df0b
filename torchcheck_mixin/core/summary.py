"""Parameter counts: Parameter objects versus elements, tied weights once, cross-checked by torchinfo.

This is the only module that imports torchinfo. The library's own counter (unique tensors by
identity, from ``model.parameters()``) is the truth; torchinfo's figure is shown beside it and a
disagreement is explained rather than trusted, because torchinfo 1.8.0 counts a tensor shared by
two modules twice (its issues #322 and #377).

torchinfo is called with ``verbose=0`` (it prints otherwise), no input (so it runs no forward
pass and moves nothing) and an explicit ``device``, inside the state guard, and never on a module
tree nested deeper than ``TORCHINFO_MAX_DEPTH``: its time grows as 2**depth.

>>> from torch import nn
>>> s = parameter_summary(nn.Sequential(nn.Linear(16, 256), nn.ReLU()))
>>> (s.parameters, s.elements)
(2, 4352)
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from . import calling
from .parameters import ParamEntry, parameter_table
from .results import ModuleCount, ParameterSummary
from .state import ModelGuard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

TORCHINFO_MAX_DEPTH = 12
TORCHINFO_MAX_MODULES = 2000


def nesting_depth(model: nn.Module) -> int:
    depth = 0
    for name, _ in model.named_modules():
        if name:
            depth = max(depth, name.count(".") + 1)
    return depth


def count_parameters(model: nn.Module, table: Optional[Sequence[ParamEntry]] = None) -> ParameterSummary:
    """The library's own counter: unique tensors, split trainable / frozen, with a per-child table.

    Raises ``ValueError`` for lazy modules whose parameters do not exist yet (counting them as 0
    would be a lie).
    """
    calling.check_module(model, allow_meta=True)
    model, _ = calling.unwrap(model, allow_meta=True)  # shapes only: counting works on meta
    if table is None:
        lazy = calling.lazy_modules(model)
        if lazy:
            raise ValueError(
                f"model has uninitialized lazy parameters in {', '.join(lazy)}; run one forward pass "
                f"(or pass inputs to the check) before counting"
            )
        table = parameter_table(model)
    # One pass: element counts split by requires_grad and by the direct child that owns them.
    counts = [0, 0, 0, 0]  # trainable tensors, trainable elements, frozen tensors, frozen elements
    per_child: Dict[str, List[int]] = {}
    for e in table:
        n = e.param.numel()
        slot = 0 if e.param.requires_grad else 2
        counts[slot] += 1
        counts[slot + 1] += n
        child = per_child.setdefault(e.name.partition(".")[0] if "." in e.name else "", [0, 0])
        child[0] += 1
        child[1] += n
    kinds: Dict[str, str] = {n: type(m).__name__ for n, m in model.named_children()}
    modules = tuple(
        ModuleCount(name, kinds.get(name, type(model).__name__), n, k) for name, (n, k) in per_child.items()
    )
    return ParameterSummary(
        parameters=len(table),
        trainable_parameters=counts[0],
        frozen_parameters=counts[2],
        elements=counts[1] + counts[3],
        trainable_elements=counts[1],
        frozen_elements=counts[3],
        shared=tuple((e.name, e.aliases) for e in table if e.aliases),
        modules=modules,
    )


def _torchinfo_counts(model: nn.Module) -> Tuple[object, object, str]:
    depth = nesting_depth(model)
    n_modules = sum(1 for _ in model.modules())
    if depth > TORCHINFO_MAX_DEPTH:
        return None, None, f"torchinfo skipped: modules nested {depth} deep (its time grows as 2**depth)"
    if n_modules > TORCHINFO_MAX_MODULES:
        return None, None, f"torchinfo skipped: {n_modules:,} modules"
    try:
        import torchinfo
        from torchinfo import torchinfo as torchinfo_impl
    except ImportError:  # pragma: no cover - torchinfo is a dependency
        return None, None, "torchinfo is not installed"
    try:
        with ModelGuard(model):
            stats = torchinfo.summary(model, verbose=0, device=calling.model_device(model))
        return int(stats.total_params), int(stats.trainable_params), ""
    except Exception as exc:  # torchinfo failing must not break a count we already have
        return None, None, f"torchinfo failed: {type(exc).__name__}: {exc}"
    finally:
        # torchinfo keeps a module-level cache keyed by class name that holds models alive.
        clear = getattr(torchinfo_impl, "clear_cached_forward_pass", None)
        if clear is not None:
            clear()


def parameter_summary(model: nn.Module, *, use_torchinfo: bool = True) -> ParameterSummary:
    """Count Parameter objects and elements, trainable and frozen, tied weights once.

    ``use_torchinfo=True`` adds torchinfo's totals (``torchinfo_total``/``torchinfo_trainable``)
    for comparison; where they differ from the true count (tied weights), ``torchinfo_note`` says
    why. The counts themselves never come from torchinfo.

    >>> from torch import nn
    >>> s = parameter_summary(nn.Linear(16, 256))
    >>> s.parameters, s.elements, s.trainable_elements
    (2, 4352, 4352)
    """
    summary = count_parameters(model)
    if not use_torchinfo:
        return summary
    inner, _ = calling.unwrap(model, allow_meta=True)
    total, trainable, note = _torchinfo_counts(inner)
    if total is not None and total != summary.elements:
        note = (
            f"torchinfo counts {total:,} elements, the true count is {summary.elements:,}"
            + (" (torchinfo 1.8.0 counts tied weights once per module that uses them)" if summary.shared else "")
        )
    return dataclasses.replace(summary, torchinfo_total=total, torchinfo_trainable=trainable, torchinfo_note=note)
