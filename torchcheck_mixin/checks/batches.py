"""Batch checks: the shapes and dtypes of what a data pipeline yields.

``check_batch_shape`` takes one batch (a tensor, array, tuple, list or dict: what a loader
yields) or an iterable of batches (a ``DataLoader``, a generator, any other iterable; to check a
Python list of batches pass ``iter(batches)``). The spec mirrors the batch structure, as in
``shapes``. Named dimensions bind *per batch*, so ``("B", 3, 32, 32)`` accepts a shorter last
batch while ``(64, 3, 32, 32)`` does not.

Which batches are read:

* a sized loader (``len()`` works): every batch, or with ``max_batches=k`` the first ``k - 1``
  and always the **last** one, since that is where partial batches appear. For a map-style
  ``DataLoader`` the last batch is built straight from its batch sampler's last indices (for a
  shuffling loader: a batch of the last batch's size), so a huge loader is not iterated end to
  end; other sized iterables are run to the end;
* an unsized iterable (a generator, an ``IterableDataset`` loader): at most ``max_batches``, by
  default ``DEFAULT_UNSIZED_CAP`` (32), so an infinite stream always ends.

Zero batches fail the check: a loader that yields nothing is a bug, not a pass. Iterating a
loader draws from the global RNG (its base seed, the shuffling permutation): the RNG is restored
afterwards; the iterator the check created is shut down, so worker processes stop. A generator or
sampler state owned by the loader itself is advanced, as any iteration would.

>>> loader = DataLoader(TensorDataset(torch.zeros(10, 3), torch.zeros(10)), batch_size=4)
>>> check_batch_shape(loader, (("B", 3), ("B",))).checked_indices
(0, 1, 2)
"""

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from ..core import trees
from ..core.dtypes import normalize_dtype
from ..core.results import BatchMismatch, BatchShapeResult, ShapeMismatch
from ..core.shapes import format_spec, match, parse_spec
from ..core.state import rng_guard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

DEFAULT_UNSIZED_CAP = 32


def is_single_batch(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray, tuple, list, Mapping))


def _parse_dtype_spec(dtype: Any, _path: Tuple[Any, ...] = ()) -> Any:
    if dtype is None and _path:
        return None  # a None inside a structure: that leaf is not dtype-checked
    if isinstance(dtype, Mapping):
        return {k: _parse_dtype_spec(v, _path + (k,)) for k, v in dtype.items()}
    if isinstance(dtype, (tuple, list)):
        items = [_parse_dtype_spec(v, _path + (i,)) for i, v in enumerate(dtype)]
        if trees.is_namedtuple(dtype):
            return type(dtype)(*items)
        return type(dtype)(items)
    return normalize_dtype(dtype, "dtype" + trees.format_path(_path))


def _paired(spec: Any, value: Any) -> Optional[List[Tuple[Any, Any, Any]]]:
    """(key, spec child, value child) for two containers of the same kind, else None.

    Sequences pair by position (a tuple spec fits a namedtuple or list batch), mappings by key
    (a dict spec fits a dict or a namedtuple by field name).
    """
    if isinstance(spec, (tuple, list)) and isinstance(value, (tuple, list)):
        if len(spec) != len(value):
            return None
        return [(i, a, b) for i, (a, b) in enumerate(zip(spec, value))]
    if isinstance(spec, Mapping) and (isinstance(value, Mapping) or trees.is_namedtuple(value)):
        kids = dict(trees.children(value))
        if set(spec) != set(kids):
            return None
        return [(k, v, kids[k]) for k, v in spec.items()]
    if trees.is_namedtuple(spec) and isinstance(value, Mapping):
        return _paired(dict(trees.children(spec)), value)
    return None


def _check_dtype_mirrors_shape(dtype: Any, shape_spec: Any, path: Tuple[Any, ...] = ()) -> None:
    """A structured ``dtype`` must have the structure of ``expected_shape`` (both are the test's)."""
    if dtype is None or isinstance(dtype, (torch.dtype, np.dtype)):
        return
    pairs = _paired(dtype, shape_spec)
    shape_is_shape = isinstance(shape_spec, torch.Size) or (
        isinstance(shape_spec, (tuple, list)) and all(not isinstance(v, (tuple, list, Mapping)) for v in shape_spec))
    if pairs is None or shape_is_shape:
        raise ValueError(
            f"dtype{trees.format_path(path)} must mirror the structure of expected_shape"
            f"{trees.format_path(path)} ({format_spec(shape_spec)}), or be one dtype for every leaf; got {dtype!r}"
        )
    for key, sub, sub_spec in pairs:
        _check_dtype_mirrors_shape(sub, sub_spec, path + (key,))


def _dtype_mismatches(spec: Any, batch: Any, path=()) -> List[ShapeMismatch]:
    """Compare leaf dtypes; structure problems are already reported by the shape match."""
    if spec is None:
        return []
    if isinstance(spec, (torch.dtype, np.dtype)):
        out = []
        for sub, leaf in trees.leaves(batch):
            actual = getattr(leaf, "dtype", None)
            if actual is None:
                continue
            if isinstance(spec, np.dtype) != isinstance(actual, np.dtype):
                kind = "numpy" if isinstance(spec, np.dtype) else "torch"
                raise TypeError(
                    f"dtype{trees.format_path(path)} is the {kind} dtype {spec} but batch"
                    f"{trees.format_path(path + sub)} is a {type(leaf).__name__}; use a "
                    f"{'torch' if kind == 'numpy' else 'numpy'} dtype for it"
                )
            if actual != spec:
                out.append(ShapeMismatch(path + sub, "dtype", str(spec), tuple(getattr(leaf, "shape", ())),
                                         detail=f"dtype {actual}, expected {spec}"))
        return out
    out = []
    for key, sub_spec, child in _paired(spec, batch) or ():  # structure problems: the shape match reports them
        out += _dtype_mismatches(sub_spec, child, path + (key,))
    return out


def _last_batch_directly(loader: Any) -> Tuple[bool, Any]:
    """Build a map-style DataLoader's last batch from its batch sampler, without iterating data."""
    from torch.utils.data import DataLoader, IterableDataset
    from torch.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler

    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return False, None
    sampler = loader.batch_sampler
    if sampler is None:
        return False, None
    if type(sampler) is BatchSampler and type(sampler.sampler) is SequentialSampler:
        n = len(sampler.sampler)
        size = sampler.batch_size
        full, rem = divmod(n, size)
        if rem and not sampler.drop_last:
            indices = list(range(full * size, n))
        elif full:
            indices = list(range((full - 1) * size, full * size))
        else:
            return True, None
    elif type(sampler) is BatchSampler and type(sampler.sampler) is RandomSampler and not sampler.sampler.replacement:
        # Shuffled: the last batch holds random indices anyway; what matters is its size.
        n, size = len(sampler.sampler), sampler.batch_size
        last = n % size if n % size and not sampler.drop_last else size
        if n < last or (sampler.drop_last and n < size):
            return True, None
        indices = list(itertools.islice(iter(sampler.sampler), last))
    else:  # another sampler: walk its indices (cheap next to loading the samples)
        indices = None
        for indices in sampler:
            pass
        if indices is None:
            return True, None
    return True, loader.collate_fn([loader.dataset[i] for i in indices])


def _close(iterator: Any, source: Any, before: Any) -> None:
    """Stop what the check started; leave what the user owns.

    ``before`` is a persistent-workers loader's ``_iterator`` before the check: if the user's
    workers were already running they stay; if the check started them, they are shut down and
    the loader is left without an iterator, as it was.
    """
    if iterator is source:
        return  # the user's own iterator: not ours to close
    if getattr(source, "persistent_workers", False) and getattr(source, "_iterator", None) is iterator:
        if before is iterator:
            return
        source._iterator = None
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def check_batch_shape(batch_or_loader: Any, expected_shape: Any, *, dtype: Any = None,
                      max_batches: Optional[int] = None) -> BatchShapeResult:
    """Match one batch, or the batches of a loader, against ``expected_shape`` (and ``dtype``)."""
    node = parse_spec(expected_shape, "expected_shape")
    dtype_spec = _parse_dtype_spec(dtype) if dtype is not None else None
    _check_dtype_mirrors_shape(dtype_spec, expected_shape)
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)):
        raise TypeError(f"max_batches must be an int >= 1 or None, got {type(max_batches).__name__}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    if batch_or_loader is None:
        raise TypeError("batch_or_loader must be a batch (tensor, tuple, list, dict) or an iterable of batches, got None")

    single = is_single_batch(batch_or_loader)
    if not single and not isinstance(batch_or_loader, Iterable):
        raise TypeError(
            f"batch_or_loader must be a batch (tensor, tuple, list, dict) or an iterable of batches "
            f"(DataLoader, generator), got {type(batch_or_loader).__name__}"
        )
    mismatches: List[BatchMismatch] = []
    checked: List[int] = []
    first_shapes: Tuple[Tuple[str, Any], ...] = ()

    def inspect(index: int, batch: Any) -> None:
        nonlocal first_shapes
        result = match(node, batch, {})
        found = list(result.mismatches)
        if dtype_spec is not None:
            found += _dtype_mismatches(dtype_spec, batch)
        mismatches.extend(BatchMismatch(index, m) for m in found)
        if not checked:
            first_shapes = tuple(
                (trees.format_path(p), tuple(getattr(leaf, "shape", ())) if hasattr(leaf, "shape") else None)
                for p, leaf in trees.leaves(batch)
            )
        checked.append(index)

    total: Optional[int] = None
    cap: Optional[int] = None
    last_checked = False
    if single:
        inspect(0, batch_or_loader)
        last_checked = True
    else:
        try:
            total = len(batch_or_loader)
        except TypeError:
            total = None
        # One iterator for the whole check, closed (workers stopped) whatever happens.
        with rng_guard():
            before = getattr(batch_or_loader, "_iterator", None)
            iterator = iter(batch_or_loader)
            try:
                if total is None:
                    cap = max_batches or DEFAULT_UNSIZED_CAP
                    head = cap
                elif max_batches is None or max_batches >= total:
                    head = total
                else:
                    cap = max_batches
                    head = max_batches - 1
                for index, batch in enumerate(itertools.islice(iterator, head)):
                    inspect(index, batch)
                if total is None:
                    if len(checked) < cap:  # it ended by itself: its last batch was checked
                        cap = None
                        last_checked = bool(checked)
                elif head == total:
                    last_checked = len(checked) == total
                else:
                    built, last = _last_batch_directly(batch_or_loader)
                    index = total - 1
                    if not built:  # run to the end, checking only the last batch
                        last, index = None, head - 1
                        for last in itertools.islice(iterator, total - head):
                            index += 1
                    if last is not None:
                        inspect(index, last)
                        last_checked = True
            finally:
                _close(iterator, batch_or_loader, before)
    return BatchShapeResult(
        spec=format_spec(expected_shape),
        dtype_spec=(str(dtype) if isinstance(dtype, torch.dtype) else repr(dtype)) if dtype is not None else None,
        batches_checked=len(checked),
        checked_indices=tuple(checked),
        total_batches=total,
        cap=cap,
        last_batch_checked=last_checked,
        first_shapes=first_shapes,
        mismatches=tuple(mismatches),
        single_batch=single,
    )
