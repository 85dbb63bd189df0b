"""pytest plugin (registered through the ``pytest11`` entry point ``torchcheck_mixin``).

* A failed ``assert result`` / ``assert result.passed`` / ``assert check_x(...)`` shows the
  library's failure message. pytest's own explanation of a falsy object is its ``repr`` on one
  line (newlines escaped, cut at 240 characters) and ``pytest_assertrepr_compare`` is consulted
  only for comparisons, so the plugin adds the message when the report is made: it looks for
  failed result objects among the locals of the frame where the assertion failed (pytest's
  assertion rewriting keeps the intermediate values of the failing ``assert`` there) and puts
  their messages in front of pytest's explanation.
* ``pytest_assertrepr_compare``: a comparison with a failed result (``assert result == ...``)
  shows its message.
* Fixtures: ``torch_seed`` (0, and ``torch.manual_seed(0)`` for the test, RNG restored after),
  ``seeded_generator`` (a ``torch.Generator`` seeded with 0) and ``restore_torch_state`` (the
  torch/numpy/python RNGs, default dtype, grad mode and deterministic-algorithm flags restored
  after the test).

Only this module imports pytest; importing torchcheck_mixin never does.
"""

import random
from typing import Any, Iterator, List, Optional

import pytest

__tracebackhide__ = True


def _result_types() -> tuple:
    from .core import results

    return tuple(v for v in vars(results).values() if isinstance(v, type) and hasattr(v, "to_dict"))


def _failed_results(values: Any) -> List[Any]:
    types = _result_types()
    out, seen = [], set()
    for v in values:
        if isinstance(v, types) and id(v) not in seen and not v.passed:
            seen.add(id(v))
            out.append(v)
    return out


def pytest_assertrepr_compare(config: Any, op: str, left: Any, right: Any) -> Optional[List[str]]:
    failed = _failed_results([left, right])
    if not failed:
        return None
    lines = [f"{left!r} {op} {right!r}"]
    for r in failed:
        lines += r.message.splitlines()
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: Any, call: Any) -> None:
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, AssertionError) or not excinfo.traceback:
        return
    frame = excinfo.traceback[-1].frame.raw  # where the assert failed
    if frame.f_globals.get("__name__", "").startswith("torchcheck_mixin"):
        return  # raised by an assert_* function: the message is already the exception's
    text = str(excinfo.value)
    messages = [r.message for r in _failed_results(frame.f_locals.values()) if r.message not in text]
    if messages:
        excinfo.value.args = ("\n\n".join(messages) + "\n\n" + text,) + excinfo.value.args[1:]


@pytest.fixture
def restore_torch_state() -> Iterator[None]:
    """Restore torch's, numpy's and Python's RNGs, the default dtype, grad mode and the
    deterministic-algorithms flags after the test."""
    import numpy as np
    import torch

    state = (torch.get_rng_state(), np.random.get_state(), random.getstate(), torch.get_default_dtype(),
             torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])
        torch.set_default_dtype(state[3])
        torch.set_grad_enabled(state[4])
        torch.use_deterministic_algorithms(state[5], warn_only=state[6])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[7], state[8]
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@pytest.fixture
def torch_seed(restore_torch_state: None) -> int:
    """Seed torch's global RNG with 0 for the test (restored afterwards); the value is the seed."""
    import torch

    torch.manual_seed(0)
    return 0


@pytest.fixture
def seeded_generator() -> Any:
    """A fresh ``torch.Generator`` seeded with 0: draw inputs without touching the global RNG."""
    import torch

    return torch.Generator().manual_seed(0)
