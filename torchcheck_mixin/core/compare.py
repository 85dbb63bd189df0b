"""Leafwise comparison of two outputs: the evidence behind determinism and round-trip checks."""

from typing import Any, List, Tuple

import torch

from . import trees
from .results import Finding

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def reject_empty(value: Any, what: str) -> None:
    """``ValueError`` when every tensor of ``value`` is empty: a comparison of nothing passes
    vacuously, so it is refused, like ``check_all_finite`` (README: a check over nothing fails)."""
    leaves = trees.tensor_leaves(value)
    if leaves and all(t.numel() == 0 for _, t in leaves):
        raise ValueError(f"nothing to check: all {len(leaves)} tensor{'s' if len(leaves) != 1 else ''} of {what} "
                         "are empty (a zero-size batch?): pass inputs whose outputs hold values")


def compare_outputs(a: Any, b: Any, rtol: float = 0.0, atol: float = 0.0) -> Tuple[int, List[Finding]]:
    """Leafwise comparison, NaN equal to NaN; exact by default."""
    la, lb = trees.tensor_leaves(a), dict(trees.tensor_leaves(b))
    rows = []
    for path, ta in la:
        tb = lb.get(path)
        if tb is None or ta.shape != tb.shape or ta.dtype != tb.dtype:
            rows.append((path, None, ta, tb))
            continue
        if ta.is_floating_point() or ta.is_complex():
            diff_mask = ~torch.isclose(ta, tb, rtol=rtol, atol=atol, equal_nan=True)
            delta = (ta - tb).abs().nan_to_num(nan=0.0)
            delta = delta.amax() if delta.numel() else delta.new_zeros(())
        else:
            diff_mask = ta != tb
            delta = diff_mask.sum()
        rows.append((path, torch.stack([diff_mask.sum().double(), delta.double()]).cpu(), ta, tb))
    stacked = [r[1] for r in rows if r[1] is not None]
    host = iter(torch.stack(stacked).tolist()) if stacked else iter(())
    findings = []
    for path, stat, ta, tb in rows:
        where = trees.describe_path(path)
        if stat is None:
            got = "missing" if tb is None else f"shape {tuple(tb.shape)} {tb.dtype}"
            findings.append(Finding(where, f"second output differs in structure: {got}, first was shape {tuple(ta.shape)} {ta.dtype}"))
            continue
        count, delta = next(host)
        if count:
            findings.append(Finding(where, f"{int(count):,} / {ta.numel():,} elements differ (max |diff| {delta:.3g})",
                                    count=int(count), total=ta.numel()))
    return len(la), findings
