"""Bounded data checks: value ranges per leaf, valid labels, and label coverage of a loader.

* ``check_batch_values``: every leaf named in ``value_range`` lies inside its ``(low, high)``
  (images in ``[0, 1]``, not 0-255; NaN is out of range), and the ``labels`` leaf holds only
  classes ``0 .. num_classes - 1`` or the loss's ``ignore_index`` (label padding with ``-1`` or
  ``0`` where the loss ignores ``-100`` fails).
* ``check_labels_cover``: the labels read from a loader cover every class in ``classes`` and
  nothing else (a filtered dataset, a sampler that never reaches the last classes).

Both read one batch, or the batches of an iterable (every batch of a sized one unless
``max_batches``; at most ``max_batches``, default 32, of an unsized one). Iterating a loader
draws from the global RNG: it is restored afterwards. Leaves are named by key, positional index
or path tuple (``"image"``, ``0``, ``("inputs", "image")``).
"""

import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any, Iterator, List, Optional

import numpy as np
import torch

from ..core import trees
from ..core.results import BatchValuesResult, Finding, LabelCoverageResult
from ..core.state import rng_guard
from .batches import DEFAULT_UNSIZED_CAP, is_single_batch

__unittest = True


def _batches(source: Any, max_batches: Optional[int]) -> Iterator[Any]:
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be an int >= 1 or None, got {max_batches!r}")
    if source is None:
        raise TypeError("batch_or_loader must be a batch or an iterable of batches, got None")
    if is_single_batch(source):
        yield source
        return
    if not isinstance(source, Iterable):
        raise TypeError(f"batch_or_loader must be a batch or an iterable of batches, got {type(source).__name__}")
    try:
        len(source)
        cap = max_batches
    except TypeError:
        cap = max_batches or DEFAULT_UNSIZED_CAP
    with rng_guard():
        iterator = iter(source)
        try:
            yield from itertools.islice(iterator, cap)
        finally:
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def _leaf(batch: Any, key: Any, argname: str) -> Any:
    path = tuple(key) if isinstance(key, tuple) else (key,)
    if isinstance(batch, (torch.Tensor, np.ndarray)) and key in (0, None):
        return batch
    value = batch
    try:
        for k in path:
            value = value[k]
    except (KeyError, IndexError, TypeError):
        keys = [trees.format_path(p) for p, _ in trees.leaves(batch)]
        raise ValueError(f"{argname}={key!r} names no leaf of the batch (leaves: {', '.join(keys) or 'none'})") from None
    return torch.as_tensor(value)


def _name(key: Any) -> str:
    return "batch" + trees.format_path(tuple(key) if isinstance(key, tuple) else (key,))


def check_batch_values(batch_or_loader: Any, *, value_range: Any = None, labels: Any = None,
                       num_classes: Optional[int] = None, ignore_index: Optional[int] = -100,
                       max_batches: Optional[int] = None) -> BatchValuesResult:
    """Check value ranges per leaf and label validity (see the module docstring)."""
    ranges = dict(value_range or {})
    for key, bounds in ranges.items():
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ValueError(f"value_range[{key!r}] must be a (low, high) pair, got {bounds!r}")
    if labels is not None and num_classes is None:
        raise ValueError("labels= needs num_classes= (the valid classes are 0 .. num_classes - 1)")
    if num_classes is not None and labels is None:
        raise ValueError("num_classes= needs labels= (the key or index of the label leaf)")
    if not ranges and labels is None:
        raise ValueError("nothing to check: pass value_range={leaf: (low, high)} and/or labels= with num_classes=")
    findings: List[Finding] = []
    count = 0
    for index, batch in enumerate(_batches(batch_or_loader, max_batches)):
        count += 1
        for key, (low, high) in ranges.items():
            t = _leaf(batch, key, "value_range")
            t = t.double() if not t.is_complex() else t.abs().double()
            bad = ~((t >= low) & (t <= high))
            if bad.any():
                findings.append(Finding(f"{_name(key)} batch {index}", (
                    f"{int(bad.sum()):,} / {t.numel():,} values outside [{low}, {high}] "
                    f"(min {float(t.nan_to_num(0).min()):.4g}, max {float(t.nan_to_num(0).max()):.4g})"),
                    count=int(bad.sum()), total=t.numel()))
        if labels is not None:
            y = _leaf(batch, labels, "labels")
            if y.is_floating_point():
                findings.append(Finding(f"{_name(labels)} batch {index}", f"labels are {y.dtype}, expected integers"))
                continue
            ok = (y >= 0) & (y < num_classes)
            if ignore_index is not None:
                ok |= y == ignore_index
            if not ok.all():
                values = sorted(set(y[~ok].tolist()))
                findings.append(Finding(f"{_name(labels)} batch {index}", (
                    f"{int((~ok).sum()):,} / {y.numel():,} labels neither a class 0..{num_classes - 1} nor "
                    f"ignore_index {ignore_index}: {values[:10]}"), count=int((~ok).sum()), total=y.numel()))
    checked = tuple(_name(k) for k in ranges) + ((_name(labels),) if labels is not None else ())
    return BatchValuesResult(count, checked, tuple(findings))


def check_labels_cover(loader: Any, classes: Any, *, labels: Any = -1, ignore_index: Optional[int] = -100,
                       max_batches: Optional[int] = None) -> LabelCoverageResult:
    """Check that the labels read cover ``classes`` (an int C or an iterable of class ids), nothing else."""
    if isinstance(classes, bool):
        raise TypeError("classes must be an int or an iterable of class ids")
    expected = tuple(range(classes)) if isinstance(classes, int) else tuple(sorted(int(c) for c in classes))
    if not expected:
        raise ValueError("classes is empty: a coverage check over nothing never passes")
    seen: Counter = Counter()
    count = 0
    for batch in _batches(loader, max_batches):
        count += 1
        y = _leaf(batch, labels, "labels") if not isinstance(batch, (torch.Tensor, np.ndarray)) else torch.as_tensor(batch)
        if y.is_floating_point():
            raise TypeError(f"labels are {y.dtype}; pass labels= the key or index of the integer labels")
        values = y.reshape(-1)
        if ignore_index is not None:
            values = values[values != ignore_index]
        seen.update(values.tolist())
    want = set(expected)
    return LabelCoverageResult(count, sum(seen.values()), expected, tuple(sorted(want - set(seen))),
                               tuple(sorted(set(seen) - want)), tuple(sorted(seen.items())))
