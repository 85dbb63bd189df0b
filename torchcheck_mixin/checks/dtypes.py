"""Dtype checks over tensors, numpy arrays and structures of them.

``torch.dtype`` for tensors, numpy dtypes (``np.float32`` or ``np.dtype("float32")``) for arrays;
strings and cross-library pairs are rejected with a ``TypeError`` rather than compared, because
``"float32" == torch.float32`` and ``np.float32 == torch.float32`` are both False and a test that
silently compared them would always fail or always pass.

The result records ``torch.get_default_dtype()`` and whether autocast was on, the two global
states that most often explain an unexpected dtype (``set_default_dtype(float64)`` in another
test; a bf16 output under CPU autocast).

Leaves that are neither tensors nor arrays (a Hugging Face cache object, a Python number, a
string) are not checked: they are listed in ``result.skipped`` (and in a failure message). A value
in which no leaf is checked is a ``ValueError``, never a pass.

``expected_dtype`` is one dtype for every leaf, or a structure mirroring the value (as
``assertBatchShape(dtype=...)``): a dict / tuple / list of dtypes, where ``None`` or ``ANY`` skips
that leaf (or subtree) and a single dtype covers a whole subtree. A value leaf the structure does
not reach, or a place of the structure the value lacks, is a mismatch.

>>> check_dtype({"logits": torch.zeros(2)}, torch.float32).passed
True
>>> check_dtype({"logits": torch.zeros(2), "ids": torch.zeros(2, dtype=torch.long)},
...             {"logits": torch.float32, "ids": torch.int64}).passed
True
"""

from collections.abc import Mapping
from typing import Any, List, Tuple

import numpy as np
import torch

from ..core import trees
from ..core.trees import ANY
from ..core.dtypes import autocast_state, normalize_dtype
from ..core.results import DtypeMismatch, DtypeResult

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def _parse_expected(expected: Any, path: Tuple[Any, ...] = ()) -> Any:
    """One normalised dtype, or a structure of them (None / ANY leaves kept as "skip")."""
    if expected is ANY or (expected is None and path):
        return ANY
    if isinstance(expected, Mapping):
        if not expected:
            raise ValueError(f"expected_dtype{trees.format_path(path)} is an empty dict")
        return {k: _parse_expected(v, path + (k,)) for k, v in expected.items()}
    if isinstance(expected, (tuple, list)):
        if not expected:
            raise ValueError(f"expected_dtype{trees.format_path(path)} is an empty {type(expected).__name__}")
        return tuple(_parse_expected(v, path + (i,)) for i, v in enumerate(expected))
    return normalize_dtype(expected, "expected_dtype" + trees.format_path(path))


def _expected_at(spec: Any, path: Tuple[Any, ...]) -> Any:
    """The dtype the structured spec gives the leaf at ``path``; ``_MISSING`` if none reaches it."""
    node = spec
    for key in path:
        if node is ANY or isinstance(node, (torch.dtype, np.dtype)):
            return node
        if isinstance(node, dict):
            if key not in node:
                return _MISSING
            node = node[key]
        elif isinstance(node, tuple):
            if not isinstance(key, int) or not 0 <= key < len(node):
                return _MISSING
            node = node[key]
        else:
            return _MISSING
    return node if (node is ANY or isinstance(node, (torch.dtype, np.dtype))) else _MISSING


_MISSING = object()


def _spec_leaves(spec: Any, path: Tuple[Any, ...] = ()) -> List[Tuple[Tuple[Any, ...], Any]]:
    if isinstance(spec, dict):
        return [x for k, v in spec.items() for x in _spec_leaves(v, path + (k,))]
    if isinstance(spec, tuple):
        return [x for i, v in enumerate(spec) for x in _spec_leaves(v, path + (i,))]
    return [(path, spec)]


def _format_expected(spec: Any) -> str:
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k!r}: {_format_expected(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, tuple):
        return "(" + ", ".join(_format_expected(v) for v in spec) + ("," if len(spec) == 1 else "") + ")"
    return str(spec)


def check_dtype(value: Any, expected_dtype: Any) -> DtypeResult:
    """Every tensor/array leaf of ``value`` must have its expected dtype (see the module docstring).

    ``None`` leaves and other non-array leaves are skipped (listed in ``skipped``). ``None``
    itself is a ``TypeError``; a value with no tensor or array to check a ``ValueError``.
    """
    if expected_dtype is None:
        normalize_dtype(expected_dtype)  # the TypeError naming the argument
    spec = _parse_expected(expected_dtype)
    structured = not isinstance(spec, (torch.dtype, np.dtype))
    if value is None:
        raise TypeError("value must be a tensor, a numpy array or a structure of them, got None")
    checked: List[Tuple[str, str]] = []
    skipped: List[Tuple[str, str]] = []
    mismatches: List[DtypeMismatch] = []
    seen_paths = set()
    for path, leaf in trees.leaves(value):
        seen_paths.add(path)
        where = trees.format_path(path)
        if not isinstance(leaf, (torch.Tensor, np.ndarray, np.generic)):
            if leaf is not None:
                skipped.append((where, type(leaf).__name__))
            continue
        expected = _expected_at(spec, path) if structured else spec
        if expected is ANY:
            continue
        actual = leaf.dtype
        if expected is _MISSING:
            checked.append((where, str(actual)))
            mismatches.append(DtypeMismatch(path, str(actual), "(not in expected_dtype)"))
            continue
        want_numpy = isinstance(expected, np.dtype)
        if isinstance(leaf, torch.Tensor) and want_numpy:
            raise TypeError(
                f"expected_dtype is the numpy dtype {expected} but value{where} is a torch tensor; "
                f"use a torch.dtype such as torch.{expected.name}"
            )
        if not isinstance(leaf, torch.Tensor) and not want_numpy:
            raise TypeError(
                f"expected_dtype is the torch dtype {expected} but value{where} is a numpy array; "
                f"use a numpy dtype such as np.{str(expected).replace('torch.', '')}"
            )
        checked.append((where, str(actual)))
        if actual != expected:
            mismatches.append(DtypeMismatch(path, str(actual), str(expected)))
    if structured:
        for path, want in _spec_leaves(spec):
            if want is ANY:
                continue
            if not any(p[: len(path)] == path for p in seen_paths):
                mismatches.append(DtypeMismatch(path, "missing from the value", str(want)))
    if not checked:
        what = f"; not checked: {', '.join(f'value{p} ({k})' for p, k in skipped[:5])}" if skipped else ""
        raise ValueError(f"value holds no tensor or array to check (got {type(value).__name__}){what}")
    return DtypeResult(
        expected=_format_expected(spec) if structured else str(spec),
        leaves=tuple(checked),
        mismatches=tuple(mismatches),
        default_dtype=str(torch.get_default_dtype()),
        autocast=autocast_state(),
        skipped=tuple(skipped),
    )
