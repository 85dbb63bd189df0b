"""Plain assertion functions, in the style of ``torch.testing.assert_close``.

One function per ``assert*`` method of ``ModelAssertionsMixin``, named in snake_case
(``assertForwardShape`` -> ``assert_forward_shape``), with the same arguments, the same return
value and the same message text, raising ``AssertionError``::

    from torchcheck_mixin import assert_forward_shape, assert_parameters_updated

    def test_model():
        assert_forward_shape(model, x, ("B", 10))
        assert_parameters_updated(model, x, y)

They are generated when this module is imported, from every ``assert*`` method the mixin has
then: each calls the method on a private host object whose ``fail`` raises ``AssertionError``
and whose ``_formatMessage`` is unittest's own with ``longMessage=True`` (so ``msg=`` is appended
after `` : `` exactly as under unittest). The mixin and the functions therefore share one path,
check -> result -> message -> raise, and neither can drift from the other.
"""

import functools
import inspect
import re
import unittest
from typing import Any, Callable, Dict

from .assertions import ModelAssertionsMixin
from .core.boundary import public

__tracebackhide__ = True
__unittest = True


class _Host(ModelAssertionsMixin):
    """What the mixin needs of a TestCase: ``fail`` and ``_formatMessage`` (longMessage=True)."""

    failureException = AssertionError
    longMessage = True
    _formatMessage = unittest.TestCase._formatMessage

    def fail(self, msg: Any = None) -> None:
        raise self.failureException(msg)


_HOST = _Host()


def function_name(method_name: str) -> str:
    """``assertForwardShape`` -> ``assert_forward_shape``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method_name).lower()


def _make(method_name: str) -> Callable[..., Any]:
    method = getattr(ModelAssertionsMixin, method_name)
    inner = getattr(method, "__wrapped__", method)  # the body, below any boundary wrapper

    @functools.wraps(inner)
    def function(*args: Any, **kwargs: Any) -> Any:
        return inner(_HOST, *args, **kwargs)

    function = public(function)  # misuse errors end at the caller's line

    sig = inspect.signature(inner)
    function.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    function.__name__ = function.__qualname__ = function_name(method_name)
    function.__module__ = __name__
    function.__doc__ = (inner.__doc__ or "").replace("self.assert", "assert_").strip() + (
        f"\n\nPlain-function form of ``ModelAssertionsMixin.{method_name}``; raises ``AssertionError``.")
    for m in re.finditer(r"self\.(assert[A-Za-z]+)", inner.__doc__ or ""):
        function.__doc__ = function.__doc__.replace("assert_" + m.group(1)[6:], function_name(m.group(1)))
    return function


def assertion_methods() -> Dict[str, str]:
    """``{function name: method name}`` for every ``assert*`` method of the mixin."""
    return {function_name(n): n for n in dir(ModelAssertionsMixin)
            if n.startswith("assert") and callable(getattr(ModelAssertionsMixin, n))}


FUNCTIONS: Dict[str, Callable[..., Any]] = {f: _make(m) for f, m in sorted(assertion_methods().items())}
globals().update(FUNCTIONS)
__all__ = sorted(FUNCTIONS)
