"""The unittest layer: ``ModelAssertionsMixin`` and ``ModelTestCase``.

Each assertion is three steps: run the engine check (which raises ``TypeError``/``ValueError`` on
misuse), and if the result did not pass, build the text in ``messages`` and fail through
``self.fail(self._formatMessage(msg, text))``, exactly like unittest's own asserts, so ``msg``,
``longMessage`` and a custom ``failureException`` behave as users expect.

This module sets ``__unittest = True``: unittest and pytest drop its frames from tracebacks, so
a failure ends at the line of the test that called the assertion.

The mixin has no ``__init__``, no ``setUp``, no metaclass and no state; it works mixed into any
``unittest.TestCase`` subclass, in either base order::

    class MyTests(ModelAssertionsMixin, MyProjectTestCase):
        def test_head(self):
            self.assertForwardShape(model, x, ("B", 10))
"""

import unittest
from typing import Any, Callable, Optional

import torch
from torch import nn

from .core import calling, messages
from .checks.batches import check_batch_shape
from .checks.counts import check_parameter_count
from .checks.dtypes import check_dtype
from .checks.forward import match_output, run_forward
from .checks.independence import check_batch_independent
from .checks.loss import check_loss_scalar_non_negative
from .core.results import BatchShapeResult, OverfitResult, ParameterUpdateReport
from .core.shapes import parse_spec
from .core.boundary import public
from .core.summary import parameter_summary
from .core.warnings_ import StaleAllowanceWarning  # noqa: F401  (importable from here, as before)
from .checks.overfit import check_can_overfit_batch
from .checks.updates import check_parameters_updated
from .checks.determinism import check_deterministic
from .checks.finite import check_all_finite, check_output_range
from .checks.state_dict import check_state_dict_round_trip

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


class ModelAssertionsMixin:
    """unittest assertions for PyTorch models; mix into any ``unittest.TestCase``."""

    def _torchcheck_fail(self, msg: Any, text: str) -> None:
        self.fail(self._formatMessage(msg, text))  # type: ignore[attr-defined]

    def assertForwardShape(self, model: nn.Module, inputs: Any, expected_shape: Any, msg: Any = None, *,
                           train: bool = False) -> Any:
        """Run ``model`` once (no graph, eval mode unless ``train=True``) and check the output shape.

        ``expected_shape`` is a shape spec (see ``torchcheck_mixin.shapes``): ints, ``None`` for
        any size, names such as ``"B"`` that must agree wherever they appear, ``...``; or a
        tuple/list/dict of such shapes for structured outputs. Returns the output.

        >>> out = self.assertForwardShape(model, torch.randn(8, 3), ("B", 10))
        """
        parse_spec(expected_shape, "expected_shape")
        output = run_forward(model, inputs, train=train)
        name = calling.model_name(calling.unwrap(model)[0])
        result = match_output(output, expected_shape, model=name, inputs=inputs, train=train)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_forward_shape(result))
        return output

    def assertDtype(self, value: Any, expected_dtype: Any, msg: Any = None) -> None:
        """Every tensor (``torch.dtype``) or numpy array (numpy dtype) leaf of ``value`` has the dtype.

        >>> self.assertDtype(model(x), torch.float32)
        """
        result = check_dtype(value, expected_dtype)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_dtype(result))

    def assertParametersUpdated(
        self,
        model: nn.Module,
        inputs: Any,
        target: Any = None,
        *,
        mode: str = "gradient",
        loss_fn: Optional[Callable] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        allow_not_updated: Any = (),
        expect_frozen: Any = (),
        seed: int = 0,
        trials: int = 1,
        atol: float = 0.0,
        train: bool = True,
        msg: Any = None,
    ) -> ParameterUpdateReport:
        """Every trainable parameter is updated by one training-like pass; returns the report.

        ``mode="gradient"``: one forward/backward, updated = non-zero finite gradient (no weight
        copy). ``mode="snapshot"``: one real optimizer step on copies (``optimizer`` or a private
        SGD), updated = value changed. ``mode="both"``: both views. Parameters that legitimately
        stay unused for these inputs go in ``allow_not_updated``; deliberately frozen ones in
        ``expect_frozen``. See ``check_parameters_updated`` for every argument.

        >>> self.assertParametersUpdated(model, x, y, allow_not_updated=["cat_branch"])
        """
        report = check_parameters_updated(
            model, inputs, target, mode=mode, loss_fn=loss_fn, optimizer=optimizer,
            allow_not_updated=allow_not_updated, expect_frozen=expect_frozen, seed=seed,
            trials=trials, atol=atol, train=train,
        )
        if not report.passed:
            # torchinfo's figures only where a failure message shows them.
            summary = parameter_summary(model) if report.records and not calling.lazy_modules(
                calling.unwrap(model)[0]) else None  # a lazy model was checked on a materialised copy
            self._torchcheck_fail(msg, messages.describe_update(report, summary))
        return report

    def assertLossScalarNonNegative(self, loss: Any, msg: Any = None, *, atol: float = 0.0) -> None:
        """``loss`` is a 0-d real floating tensor (or a real number), finite and ``>= -atol``.

        >>> self.assertLossScalarNonNegative(criterion(model(x), y))
        """
        result = check_loss_scalar_non_negative(loss, atol=atol)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_loss(result))

    def assertBatchShape(self, batch_or_loader: Any, expected_shape: Any, *, dtype: Any = None,
                         max_batches: Optional[int] = None, msg: Any = None) -> BatchShapeResult:
        """One batch, or each batch of a loader, matches ``expected_shape`` (and ``dtype``).

        Named dimensions bind per batch, so ``("B", 3, 32, 32)`` accepts a partial last batch.
        A sized loader is read fully, or with ``max_batches=k`` its first ``k - 1`` batches and
        its last one; an unsized iterable at most ``max_batches`` (default 32) batches.

        >>> self.assertBatchShape(loader, (("B", 3, 32, 32), ("B",)), dtype=(torch.float32, torch.int64))
        """
        result = check_batch_shape(batch_or_loader, expected_shape, dtype=dtype, max_batches=max_batches)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_batch(result))
        return result


    # ------------------------------------------------------------- bugs the five cannot see

    def assertBatchIndependent(self, model: nn.Module, inputs: Any, *, batch_dim: int = 0, msg: Any = None) -> None:
        """Output sample i depends on input sample i only (eval mode).

        Catches softmax/mean over the batch, an LSTM without ``batch_first``, a ``cat`` + ``view``
        that mixes samples. Floating inputs are probed with gradients, integer inputs (token ids)
        by swapping one sample's ids.

        >>> self.assertBatchIndependent(model, torch.randn(6, 10, 16))
        """
        result = check_batch_independent(model, inputs, batch_dim=batch_dim)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_batch_independent(result))

    def assertDeterministic(self, model: nn.Module, inputs: Any, *, msg: Any = None) -> None:
        """Two eval-mode forward passes on the same inputs give identical outputs.

        >>> self.assertDeterministic(model, x)
        """
        result = check_deterministic(model, inputs)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_deterministic(result))

    def assertParameterCount(self, model: nn.Module, *, trainable: Optional[int] = None, frozen: Optional[int] = None,
                             total: Optional[int] = None, msg: Any = None) -> None:
        """Element counts (tied weights once) equal the numbers the design implies.

        >>> self.assertParameterCount(nn.Linear(16, 256), total=4352)
        """
        result = check_parameter_count(model, trainable=trainable, frozen=frozen, total=total)
        if not result.passed:
            text = messages.describe_parameter_count(result)
            info = messages.torchinfo_line(parameter_summary(model))
            self._torchcheck_fail(msg, text + (f"\n{messages.INDENT}{info}" if info else ""))

    def assertAllFinite(self, value: Any, msg: Any = None) -> None:
        """No NaN or inf in a tensor, a structure of tensors, or a module (parameters, buffers, grads).

        >>> self.assertAllFinite(model(x))
        """
        result = check_all_finite(value)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_all_finite(result))

    def assertOutputRange(self, model_or_value: Any, inputs: Any = None, *, low: Optional[float] = None,
                          high: Optional[float] = None, msg: Any = None) -> None:
        """Every output element lies in ``[low, high]`` (inclusive); NaN is out of range.

        >>> self.assertOutputRange(classifier, x, low=0.0, high=1.0)
        """
        result = check_output_range(model_or_value, inputs, low=low, high=high)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_output_range(result))

    def assertCanOverfitBatch(self, model: nn.Module, inputs: Any, target: Any = None, *, steps: int = 50,
                              loss_fn: Optional[Callable] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                              min_decrease: float = 0.5, msg: Any = None) -> OverfitResult:
        """``steps`` optimizer steps on one batch cut the loss by ``min_decrease`` (runs on a copy).

        >>> self.assertCanOverfitBatch(model, x, y, steps=30)
        """
        result = check_can_overfit_batch(model, inputs, target, steps=steps, loss_fn=loss_fn, optimizer=optimizer,
                                         min_decrease=min_decrease)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_overfit(result))
        return result

    def assertStateDictRoundTrip(self, model: nn.Module, inputs: Any, msg: Any = None) -> None:
        """Saving and loading the state dict into a scrambled copy reproduces the eval outputs.

        >>> self.assertStateDictRoundTrip(model, x)
        """
        result = check_state_dict_round_trip(model, inputs)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_state_dict_round_trip(result))


def _add_boundaries(cls: type) -> None:
    """Every ``assert*`` method re-raises library-raised misuse errors without library frames
    (see core/boundary.py); applied to all of them, including ones added later in this class."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("assert") and callable(fn) and not getattr(fn, "__torchcheck_boundary__", False):
            setattr(cls, name, public(fn))


_add_boundaries(ModelAssertionsMixin)


class ModelTestCase(ModelAssertionsMixin, unittest.TestCase):
    """A ``unittest.TestCase`` with the model assertions."""
