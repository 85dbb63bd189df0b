"""Finiteness and value ranges of outputs, structures and modules.

Each returns a ``ValueCheckResult``: how many leaves were looked at and one ``Finding`` per
offending leaf (its path, counts, first indices). Counting is done on the device and crosses to
the host once per check; only the leaves that fail are inspected further for their indices.

>>> check_all_finite(torch.tensor([1.0, float("nan")])).findings[0].detail
'1 NaN, 0 inf of 2 elements; first NaN at (1,)'
"""

import io
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..core import calling, distributed, trees
from .forward import run_forward
from ..core.results import Finding, ValueCheckResult
from ..core.state import ModelGuard, rng_guard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

FIRST_INDICES = 3

FIRST_INDICES = 3


def _first_indices(mask: torch.Tensor) -> Tuple[Tuple[int, ...], ...]:
    idx = mask.nonzero()[:FIRST_INDICES].tolist()
    return tuple(tuple(i) for i in idx)


def _indices_text(indices: Tuple[Tuple[int, ...], ...]) -> str:
    return ", ".join("(" + ", ".join(map(str, i)) + (",)" if len(i) == 1 else ")") for i in indices)


def _value_leaves(value: Any, argname: str) -> List[Tuple[str, torch.Tensor]]:
    """Named tensors of a module (parameters, buffers, existing grads) or of a value/structure."""
    if isinstance(value, nn.Module):
        module, _ = calling.unwrap(value)
        out = [(f"parameter {n}", p) for n, p in module.named_parameters()]
        out += [(f"grad of {n}", p.grad) for n, p in module.named_parameters() if p.grad is not None]
        out += [(f"buffer {n}", b) for n, b in module.named_buffers()]
        return out
    if value is None:
        raise TypeError(f"{argname} must be a tensor, a structure of tensors or a module, got None")
    leaves = [(trees.describe_path(p, "value"), t) for p, t in trees.tensor_leaves(value)]
    if not leaves:
        raise ValueError(f"{argname} holds no tensor to check (got {type(value).__name__})")
    calling.reject_meta(leaves, f"tensors of {argname}", "compute it from a materialised model and real inputs")
    return leaves


def check_all_finite(value: Any) -> ValueCheckResult:
    """No NaN or inf in a tensor, a structure, or a module's parameters, buffers and grads.

    Distributed (a DDP or FSDP module, or any ``DTensor`` leaf, under a process group): every
    rank must call it; sharded tensors are counted over their local shards and the counts summed
    over the ranks, replicated ones give the most found on any rank, in one collective, so every
    rank reaches the same verdict. Element indices are not gathered for sharded tensors.
    """
    leaves = [(n, t) for n, t in _value_leaves(value, "value")]
    exact = sum(1 for _, t in leaves if not (t.is_floating_point() or t.is_complex()))  # finite by type
    leaves = [(n, t) for n, t in leaves if t.is_floating_point() or t.is_complex()]
    sharded = [distributed.is_dtensor(t) for _, t in leaves]
    collective = distributed.is_distributed_active() and (
        any(sharded) or (isinstance(value, nn.Module) and distributed.is_collective_model(value)))
    totals = [distributed.global_numel(t) for _, t in leaves]
    # DTensor leaves: their local shard (no communication); grad_to_local detaches.
    leaves = [(n, distributed.grad_to_local(t)) for n, t in leaves]
    leaves = [(n, t.coalesce().values() if t.is_sparse else t) for n, t in leaves]
    if not leaves:
        note = "integer and bool tensors are always finite" if exact else "no tensor to check"
        return ValueCheckResult("all_finite", exact, (), (("note", note),))
    if not isinstance(value, nn.Module) and not collective and all(t.numel() == 0 for _, t in leaves):
        raise ValueError(f"nothing to check: all {len(leaves)} tensors of value are empty "
                         "(an untrained detector returning zero boxes?)")
    # Counted where the tensors live, stacked per device, then one transfer per device.
    per_device: Dict[torch.device, List[int]] = {}
    for i, (_, t) in enumerate(leaves):
        per_device.setdefault(t.device, []).append(i)
    rows: List[Optional[torch.Tensor]] = [None] * len(leaves)
    for dev, idx in per_device.items():
        stacked = torch.stack([torch.stack([leaves[i][1].isnan().sum(), leaves[i][1].isinf().sum()]) for i in idx]).cpu()
        for i, row in zip(idx, stacked.unbind()):
            rows[i] = row
    counts = torch.stack(rows)
    if collective:
        counts = distributed.reduce_counts_across_ranks(counts, sharded)
    counts = counts.tolist()
    world = distributed.get_world_size()
    findings = []
    for (name, t), (nans, infs), total, shard in zip(leaves, counts, totals, sharded):
        if nans or infs:
            parts = [f"{nans:,} NaN, {infs:,} inf of {total:,} elements"]
            if shard:
                parts.append(f"sharded over {world} ranks")
            else:
                if nans:
                    parts.append(f"first NaN at {_indices_text(_first_indices(t.isnan())) or '(on another rank)'}")
                if infs:
                    parts.append(f"first inf at {_indices_text(_first_indices(t.isinf())) or '(on another rank)'}")
            findings.append(Finding(name, "; ".join(parts), count=nans + infs, total=total))
    return ValueCheckResult("all_finite", len(leaves) + exact, tuple(findings))


def _check_bound(name: str, low: Any, high: Any) -> None:
    for arg, value in (("low", low), ("high", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{arg} must be a real number or None, got {type(value).__name__}")
        if value is not None and value != value:
            raise ValueError(f"{arg} must not be NaN")
    if low is None and high is None:
        raise ValueError(f"{name} needs low=, high= or both")
    if low is not None and high is not None and low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")


def check_output_range(model_or_value: Any, inputs: Any = None, *, low: Optional[float] = None,
                       high: Optional[float] = None, train: bool = False,
                       allow_empty: bool = False) -> ValueCheckResult:
    """Every element of the output (or value) lies in ``[low, high]``; NaN is out of range.

    Empty leaves are in range; when every leaf is empty the check raises ``ValueError`` (nothing
    to check) unless ``allow_empty=True``.
    """
    _check_bound("check_output_range", low, high)
    if isinstance(model_or_value, nn.Module):
        if inputs is None:
            raise TypeError("inputs is required when model_or_value is a module")
        value = run_forward(model_or_value, inputs, train=train)
    else:
        if inputs is not None:
            raise TypeError("inputs is only used when model_or_value is a module")
        value = model_or_value
    leaves = [(trees.describe_path(p), t.detach()) for p, t in trees.tensor_leaves(value)]
    if not leaves:
        raise ValueError(f"the value holds no tensor to check (got {type(value).__name__})")
    for name, t in leaves:
        if t.is_complex():
            raise TypeError(f"{name} is complex; ranges are defined for real values only")
    if not allow_empty and all(t.numel() == 0 for _, t in leaves):
        raise ValueError(f"nothing to check: all {len(leaves)} output tensors are empty "
                         "(an untrained detector returning zero boxes?); pass allow_empty=True "
                         "to accept an empty output as in range")
    stats = []
    for _, t in leaves:
        if not t.numel():  # empty: in range, nothing counted
            stats.append(torch.zeros(5, dtype=torch.double))
            continue
        tf = t.double()
        below = (tf < low).sum() if low is not None else tf.new_zeros(()).long()
        above = (tf > high).sum() if high is not None else tf.new_zeros(()).long()
        stats.append(torch.stack([below.double(), above.double(), tf.isnan().sum().double(),
                                  tf.nan_to_num(nan=0).amin().double() if t.numel() else tf.new_zeros(()),
                                  tf.nan_to_num(nan=0).amax().double() if t.numel() else tf.new_zeros(())]).cpu())
    host = torch.stack(stats).tolist()
    findings = []
    for (name, t), (below, above, nans, lo, hi) in zip(leaves, host):
        bad = int(below + above + nans)
        if bad:
            parts = []
            if below:
                parts.append(f"{int(below):,} below {low} (min {lo:.6g})")
            if above:
                parts.append(f"{int(above):,} above {high} (max {hi:.6g})")
            if nans:
                parts.append(f"{int(nans):,} NaN")
            mask = t.isnan()
            if low is not None:
                mask |= t < low
            if high is not None:
                mask |= t > high
            detail = f"{bad:,} / {t.numel():,} elements out of {_interval(low, high)}: " + ", ".join(parts)
            detail += f"; first at {_indices_text(_first_indices(mask))}"
            findings.append(Finding(name, detail, count=bad, total=t.numel()))
    return ValueCheckResult("output_range", len(leaves), tuple(findings),
                            (("range", f"{_interval(low, high)} inclusive"),))


def _interval(low: Optional[float], high: Optional[float]) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


