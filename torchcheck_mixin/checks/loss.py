"""Is this a usable loss? A real, finite, non-negative scalar.

Written the careful way round: ``not (loss < 0)`` is True for NaN, so the test is
``isfinite(loss) and loss >= -atol``, and NaN, +inf and -inf each get their own problem code.
``-0.0`` counts as non-negative. A shape-``[1]`` tensor converts to a float as happily as a 0-d
one, but a loss with ``reduction="none"`` or an extra dimension is a bug waiting to broadcast, so
it fails with a hint.

The value is read with one host transfer, after ``detach()`` (reading a tensor that requires
grad as a float warns, and ``-W error`` turns that into an error).

>>> check_loss_scalar_non_negative(torch.tensor(0.3)).passed
True
>>> check_loss_scalar_non_negative(torch.tensor([0.3])).problems
('one_element',)
"""

import math
import numbers
from typing import Any, List, Optional

import numpy as np
import torch

from ..core.calling import check_tolerance
from ..core.results import LossResult

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def check_loss_scalar_non_negative(loss: Any, *, atol: float = 0.0) -> LossResult:
    """Check ``loss``: a 0-d real floating tensor or a real Python/numpy number, finite, >= -atol.

    Bool values and strings are a ``TypeError`` (a test passing ``loss > 0`` meant something else);
    integer, bool and complex *tensors* fail the check (no gradient can flow through them).
    """
    atol = check_tolerance(atol, "atol")
    problems: List[str] = []
    shape = None
    if isinstance(loss, (bool, np.bool_)):
        raise TypeError(f"loss must be a tensor or a real number, got the bool {loss!r}")
    if isinstance(loss, torch.Tensor):
        t = loss.detach()
        shape = tuple(t.shape)
        dtype = str(t.dtype)
        if t.is_complex() or t.dtype == torch.bool or not t.is_floating_point():
            problems.append("dtype")
            return LossResult(None, shape, dtype, tuple(problems), atol)
        if t.dim() != 0:
            problems.append("one_element" if t.numel() == 1 else "not_scalar")
        if t.numel() != 1:
            return LossResult(None, shape, dtype, tuple(problems), atol)
        value: Optional[float] = t.reshape(()).double().tolist()  # the one host transfer
    elif isinstance(loss, np.ndarray):
        shape, dtype = tuple(loss.shape), f"numpy.{loss.dtype}"
        if loss.dtype.kind == "c" or loss.dtype.kind == "b":
            return LossResult(None, shape, dtype, ("dtype",), atol)
        if loss.dtype.kind not in "fiu":
            raise TypeError(f"loss must be a tensor or a real number, got a numpy array of dtype {loss.dtype}")
        if loss.ndim != 0:
            problems.append("one_element" if loss.size == 1 else "not_scalar")
        if loss.size != 1:
            return LossResult(None, shape, dtype, tuple(problems), atol)
        value = float(loss.reshape(()))
    elif isinstance(loss, numbers.Complex) and not isinstance(loss, numbers.Real):
        return LossResult(None, None, type(loss).__name__, ("dtype",), atol)
    elif isinstance(loss, numbers.Real):
        value = float(loss)
        dtype = type(loss).__name__
    else:
        raise TypeError(f"loss must be a tensor or a real number, got {type(loss).__name__}")
    if math.isnan(value):
        problems.append("nan")
    elif value == math.inf:
        problems.append("posinf")
    elif value == -math.inf:
        problems.append("neginf")
    elif value < -atol:
        problems.append("negative")
    return LossResult(value, shape, dtype, tuple(problems), atol)
