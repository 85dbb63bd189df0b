"""Dtype checks over tensors, numpy arrays and structures of them.

``torch.dtype`` for tensors, numpy dtypes (``np.float32`` or ``np.dtype("float32")``) for arrays;
strings and cross-library pairs are rejected with a ``TypeError`` rather than compared, because
``"float32" == torch.float32`` and ``np.float32 == torch.float32`` are both False and a test that
silently compared them would always fail or always pass.

The result records ``torch.get_default_dtype()`` and whether autocast was on, the two global
states that most often explain an unexpected dtype (``set_default_dtype(float64)`` in another
test; a bf16 output under CPU autocast).

>>> check_dtype({"logits": torch.zeros(2)}, torch.float32).passed
True
"""

from typing import Any, List, Tuple

import numpy as np
import torch

from ..core import trees
from ..core.dtypes import autocast_state, normalize_dtype
from ..core.results import DtypeMismatch, DtypeResult

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def check_dtype(value: Any, expected_dtype: Any) -> DtypeResult:
    """Every tensor/array leaf of ``value`` must have ``expected_dtype``.

    ``None`` leaves inside a structure (optional outputs) are skipped; any other non-array leaf
    (a Python number, a string) is a mismatch. ``None`` itself is a ``TypeError`` and an empty
    structure a ``ValueError``.
    """
    expected = normalize_dtype(expected_dtype)
    if value is None:
        raise TypeError("value must be a tensor, a numpy array or a structure of them, got None")
    want_numpy = isinstance(expected, np.dtype)
    checked: List[Tuple[str, str]] = []
    mismatches: List[DtypeMismatch] = []
    for path, leaf in trees.leaves(value):
        if leaf is None:
            continue
        where = trees.format_path(path)
        if isinstance(leaf, torch.Tensor):
            if want_numpy:
                raise TypeError(
                    f"expected_dtype is the numpy dtype {expected} but value{where} is a torch tensor; "
                    f"use a torch.dtype such as torch.{expected.name}"
                )
            actual = leaf.dtype
        elif isinstance(leaf, (np.ndarray, np.generic)):
            if not want_numpy:
                raise TypeError(
                    f"expected_dtype is the torch dtype {expected} but value{where} is a numpy array; "
                    f"use a numpy dtype such as np.{str(expected).replace('torch.', '')}"
                )
            actual = leaf.dtype
        else:
            checked.append((where, type(leaf).__name__))
            mismatches.append(DtypeMismatch(path, type(leaf).__name__ + " (not a tensor)", str(expected)))
            continue
        checked.append((where, str(actual)))
        if actual != expected:
            mismatches.append(DtypeMismatch(path, str(actual), str(expected)))
    if not checked:
        raise ValueError(f"value holds no tensor or array to check (got {type(value).__name__})")
    return DtypeResult(
        expected=str(expected),
        leaves=tuple(checked),
        mismatches=tuple(mismatches),
        default_dtype=str(torch.get_default_dtype()),
        autocast=autocast_state(),
    )
