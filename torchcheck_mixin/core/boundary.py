"""The public boundary: misuse errors raised inside the library lose the library's frames.

unittest trims library frames (``__unittest = True``) only for ``failureException``; a
``TypeError``/``ValueError`` naming a wrong argument would show the library's internals. The
boundary re-raises such an error with its traceback cut to the boundary itself. An exception that
did not originate in torchcheck_mixin (the user's forward, loss or factory raising) passes through
unchanged, with its whole traceback.
"""

import functools
from typing import Any, Callable

__unittest = True
__tracebackhide__ = True

_PACKAGE = __name__.split(".")[0]


def raised_by_library(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == _PACKAGE


def public(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a public entry point so library-raised misuse errors end at the caller."""

    @functools.wraps(fn)
    def boundary(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError) as err:
            if not raised_by_library(err):
                raise
            error = err
        raise error.with_traceback(None)  # misuse of a torchcheck_mixin call: the line above is yours

    boundary.__torchcheck_boundary__ = True  # type: ignore[attr-defined]
    return boundary
