"""Dtype arguments and the global state that explains a dtype: normalisation, autocast."""

from typing import Any, Tuple

import numpy as np
import torch

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def _is_numpy_dtype(value: Any) -> bool:
    if isinstance(value, np.dtype):
        return True
    return isinstance(value, type) and issubclass(value, np.generic)


def normalize_dtype(expected: Any, argname: str = "expected_dtype") -> Any:
    """A ``torch.dtype`` or a ``np.dtype``; anything else is a ``TypeError`` naming the argument."""
    if isinstance(expected, torch.dtype):
        return expected
    if _is_numpy_dtype(expected):
        return np.dtype(expected)
    if isinstance(expected, str):
        hint = getattr(torch, expected, None)
        suggestion = f" (did you mean torch.{expected}?)" if isinstance(hint, torch.dtype) else ""
        raise TypeError(f"{argname} must be a torch.dtype such as torch.float32, not the string {expected!r}{suggestion}")
    raise TypeError(
        f"{argname} must be a torch.dtype (for tensors) or a numpy dtype (for arrays), got "
        f"{type(expected).__name__} {expected!r}"
    )


def autocast_state() -> Tuple[str, ...]:
    on = []
    for device_type in ("cpu", "cuda"):
        try:
            if torch.is_autocast_enabled(device_type):
                on.append(f"{device_type}:{torch.get_autocast_dtype(device_type)}")
        except (TypeError, RuntimeError, AttributeError):  # older torch: no per-device query
            pass
    return tuple(on)

