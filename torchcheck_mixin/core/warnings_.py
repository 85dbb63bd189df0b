"""Warnings the engine and the assertions share, emitted at the user's line."""

import sys
import warnings

__tracebackhide__ = True
__unittest = True


class StaleAllowanceWarning(UserWarning):
    """An ``allow_not_updated`` entry whose parameters all updated: the allowance can go."""


def warn_at_caller(message: str, category: type) -> None:
    """``warnings.warn`` with the stack level of the first frame outside torchcheck_mixin."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("torchcheck_mixin"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
