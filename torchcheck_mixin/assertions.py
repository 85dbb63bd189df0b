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

import functools
import inspect
import unittest
from typing import Any, Callable, Optional

import torch
from torch import nn

from .core import calling, messages
from .core.default_loss import OutputTargetMismatch
from .core.trees import leaves as tree_leaves
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
from .checks.batch_values import check_batch_values, check_labels_cover
from .checks.causality import check_causal
from .checks.gradcheck import check_gradcheck
from .checks.initial_loss import check_initial_loss
from .checks.inputs_used import check_inputs_used
from .checks.masks import check_mask_invariant, check_padding_invariant
from .checks.single_sample import check_single_sample_consistent

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
        output: Any = None,
    ) -> ParameterUpdateReport:
        """Every trainable parameter is updated by one training-like pass; returns the report.

        ``mode="gradient"``: one forward/backward, updated = non-zero finite gradient (no weight
        copy). ``mode="snapshot"``: one real optimizer step on copies (``optimizer`` or a private
        SGD), updated = value changed. ``mode="both"``: both views. Parameters that legitimately
        stay unused for these inputs go in ``allow_not_updated``; deliberately frozen ones in
        ``expect_frozen``. See ``check_parameters_updated`` for every argument.

        ``output=`` (a key, an index or a callable) picks the tensor of a structured output that
        the loss and the target apply to.

        >>> self.assertParametersUpdated(model, x, y, allow_not_updated=["cat_branch"])
        >>> self.assertParametersUpdated(encoder, (ids, mask), y, output="encoder_output")
        """
        report = check_parameters_updated(
            model, inputs, target, mode=mode, loss_fn=loss_fn, optimizer=optimizer,
            allow_not_updated=allow_not_updated, expect_frozen=expect_frozen, seed=seed,
            trials=trials, atol=atol, train=train, output=output,
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
                          high: Optional[float] = None, allow_empty: bool = False, msg: Any = None) -> None:
        """Every output element lies in ``[low, high]`` (inclusive); NaN is out of range.

        >>> self.assertOutputRange(classifier, x, low=0.0, high=1.0)
        """
        result = check_output_range(model_or_value, inputs, low=low, high=high, allow_empty=allow_empty)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_output_range(result))

    def assertCanOverfitBatch(self, model: nn.Module, inputs: Any, target: Any = None, *, steps: int = 50,
                              loss_fn: Optional[Callable] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                              min_decrease: float = 0.5, msg: Any = None, output: Any = None) -> OverfitResult:
        """``steps`` optimizer steps on one batch cut the loss by ``min_decrease`` (runs on a copy).

        >>> self.assertCanOverfitBatch(model, x, y, steps=30)
        """
        result = check_can_overfit_batch(model, inputs, target, steps=steps, loss_fn=loss_fn, output=output, optimizer=optimizer,
                                         min_decrease=min_decrease)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_overfit(result))
        return result

    def assertStateDictRoundTrip(self, model: nn.Module, inputs: Any, msg: Any = None, *,
                                 model_factory: Optional[Callable[[], nn.Module]] = None) -> None:
        """Save the state dict, rebuild, ``load_state_dict``: the eval outputs are reproduced.

        Rebuilt with ``model_factory()`` when given (exact: what a real save / rebuild / load
        does), else a copy whose parameters, persistent buffers and plain tensor attributes are
        scrambled (non-persistent buffers are kept, as a constructor recomputes them). See
        ``checks.state_dict``.

        >>> self.assertStateDictRoundTrip(model, x, model_factory=lambda: Net(cfg))
        """
        result = check_state_dict_round_trip(model, inputs, model_factory=model_factory)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_state_dict_round_trip(result))


    # ------------------------------------------------------------- bugs of modern models

    def assertCausal(self, model: nn.Module, inputs: Any, *, dim: int = 1, input: Any = None, output: Any = None,
                     vocab_size: Optional[int] = None, batched: bool = True, msg: Any = None) -> None:
        """No output position depends on a later input position (one batched forward, eval mode).

        Token ids are perturbed inside the vocabulary, float features by noise, one position at a
        time; all probes run stacked in one batch. ``input``/``output`` select the sequence input
        and output of dict models (``input="input_ids"``, ``output="logits"``). ``batched=False``
        runs one forward per probe instead (models that need a fixed batch size).

        >>> self.assertCausal(lm, {"input_ids": ids}, output="logits")
        """
        result = check_causal(model, inputs, dim=dim, input=input, output=output, vocab_size=vocab_size,
                              batched=batched)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_causal(result))

    def assertMaskInvariant(self, model: nn.Module, inputs: Any, *, mask: Any = None, convention: Optional[str] = None,
                            dim: int = 1, input: Any = None, output: Any = None, vocab_size: Optional[int] = None,
                            msg: Any = None) -> None:
        """Changing what sits at masked positions leaves every unmasked output unchanged (two forwards).

        ``convention``: ``"keep"`` (HF ``attention_mask``, 1 keeps), ``"pad"`` (``key_padding_mask``,
        True pads), ``"additive"`` (-inf / large negative); inferred from the key name or dtype.

        >>> self.assertMaskInvariant(encoder, {"src": x, "src_key_padding_mask": pad})
        """
        result = check_mask_invariant(model, inputs, mask=mask, convention=convention, dim=dim, input=input,
                                      output=output, vocab_size=vocab_size)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_mask_invariant(result))

    def assertPaddingInvariant(self, model: nn.Module, inputs: Any, *, mask: Any = None,
                               convention: Optional[str] = None, pad_id: Optional[int] = None, extra: int = 3,
                               dim: int = 1, input: Any = None, output: Any = None, msg: Any = None) -> None:
        """Appending ``extra`` padded positions changes no original unmasked or pooled output (two forwards).

        >>> self.assertPaddingInvariant(model, {"input_ids": ids, "attention_mask": am})
        """
        result = check_padding_invariant(model, inputs, mask=mask, convention=convention, pad_id=pad_id, extra=extra,
                                         dim=dim, input=input, output=output)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_mask_invariant(result))

    def assertSingleSampleConsistent(self, model: nn.Module, inputs: Any, *, batch_dim: int = 0,
                                     max_samples: int = 4, msg: Any = None) -> None:
        """Each sample run alone gives its row of the batched output, shape and values (1 + k forwards).

        >>> self.assertSingleSampleConsistent(model, torch.randn(8, 3))
        """
        result = check_single_sample_consistent(model, inputs, batch_dim=batch_dim, max_samples=max_samples)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_single_sample(result))

    def assertGradcheck(self, module_or_function: Any, inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
                        rtol: float = 1e-3, parameters: bool = True, msg: Any = None) -> None:
        """Analytical Jacobians match finite differences for every input and parameter (float64 copy).

        >>> self.assertGradcheck(MyFunction.apply, torch.randn(3, 4))
        """
        result = check_gradcheck(module_or_function, inputs, eps=eps, atol=atol, rtol=rtol, parameters=parameters)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_gradcheck(result))

    def assertInputsUsed(self, model: nn.Module, inputs: Any, *, allow_unused: Any = (),
                         vocab_size: Optional[int] = None, msg: Any = None) -> None:
        """Every input tensor (each argument, each dict key) influences the output.

        >>> self.assertInputsUsed(two_tower, (query, doc))
        """
        result = check_inputs_used(model, inputs, allow_unused=allow_unused, vocab_size=vocab_size)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_inputs_used(result))

    def assertInitialLoss(self, model: nn.Module, inputs: Any, target: Any, *, num_classes: Optional[int] = None,
                          expected: Optional[float] = None, loss_fn: Optional[Callable] = None, rtol: float = 0.25,
                          msg: Any = None, output: Any = None) -> None:
        """The untrained classifier's loss is within ``rtol`` of ln C (or ``expected``); one forward.

        >>> self.assertInitialLoss(classifier, x, y)
        """
        result = check_initial_loss(model, inputs, target, num_classes=num_classes, expected=expected,
                                    loss_fn=loss_fn, output=output, rtol=rtol)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_initial_loss(result))

    def assertBatchValues(self, batch_or_loader: Any, *, value_range: Any = None, labels: Any = None,
                          num_classes: Optional[int] = None, ignore_index: Optional[int] = -100,
                          max_batches: Optional[int] = None, msg: Any = None) -> None:
        """Leaves lie in their ``value_range`` and labels are classes or ``ignore_index``.

        >>> self.assertBatchValues(loader, value_range={0: (0, 1)}, labels=1, num_classes=10)
        """
        result = check_batch_values(batch_or_loader, value_range=value_range, labels=labels, num_classes=num_classes,
                                    ignore_index=ignore_index, max_batches=max_batches)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_batch_values(result))

    def assertLabelsCover(self, loader: Any, classes: Any, *, labels: Any = -1, ignore_index: Optional[int] = -100,
                          max_batches: Optional[int] = None, msg: Any = None) -> None:
        """The labels a loader yields cover every class of ``classes`` (an int C or ids) and no other.

        >>> self.assertLabelsCover(loader, classes=range(10))
        """
        result = check_labels_cover(loader, classes, labels=labels, ignore_index=ignore_index, max_batches=max_batches)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_labels_cover(result))
    # ------------------------------------------------------------ equivalence checks (issue 16)

    def _torchcheck_equivalence(self, result: Any, msg: Any) -> Any:
        if result.skipped_reason:
            raise unittest.SkipTest(result.skipped_reason)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_equivalence(result))
        return result

    def assertAccumulationEquivalent(self, model: nn.Module, inputs: Any, target: Any = None, *, micro_batches: int = 2,
                                     loss_fn: Optional[Callable] = None, step_fn: Optional[Callable] = None,
                                     rtol: Optional[float] = None, atol: float = 0.0, batchnorm: str = "explain",
                                     msg: Any = None, output: Any = None) -> Any:
        """``micro_batches`` accumulated micro-batches give the full batch's gradients (on copies).

        ``step_fn(model, [(inputs_i, target_i), ...])`` is your accumulation loop (forward, loss
        scaled as you scale it, backward; no optimizer step); default: mean loss / k per slice.
        Cost: about two training steps. BatchNorm in train mode is reported as an expected
        difference; ``batchnorm="eval"`` checks the rest.

        >>> self.assertAccumulationEquivalent(model, x, y, micro_batches=4)
        """
        from .checks.accumulation import check_accumulation_equivalent

        return self._torchcheck_equivalence(check_accumulation_equivalent(
            model, inputs, target, micro_batches=micro_batches, loss_fn=loss_fn, output=output, step_fn=step_fn, rtol=rtol, atol=atol,
            batchnorm=batchnorm), msg)

    def assertResumeEquivalent(self, model_factory: Callable, optimizer_factory: Callable, data: Any, *,
                               steps_before: int = 2, steps_after: int = 2, scheduler_factory: Optional[Callable] = None,
                               scaler_factory: Optional[Callable] = None, loss_fn: Optional[Callable] = None,
                               save_fn: Optional[Callable] = None, load_fn: Optional[Callable] = None,
                               tolerance: float = 0.0, msg: Any = None, output: Any = None) -> Any:
        """Save after ``steps_before`` steps, rebuild from the factories, load, ``steps_after`` steps:
        equal (bitwise by default) to uninterrupted training. Cost: 2 x (n + m) training steps.

        >>> self.assertResumeEquivalent(make_model, lambda m: torch.optim.Adam(m.parameters()), batches,
        ...                             save_fn=my_save, load_fn=my_load)
        """
        from .checks.resume import check_resume_equivalent

        return self._torchcheck_equivalence(check_resume_equivalent(
            model_factory, optimizer_factory, data, steps_before=steps_before, steps_after=steps_after,
            scheduler_factory=scheduler_factory, scaler_factory=scaler_factory, loss_fn=loss_fn, output=output, save_fn=save_fn,
            load_fn=load_fn, tolerance=tolerance), msg)

    def assertCompileParity(self, model: nn.Module, inputs: Any, target: Any = None, *,
                            loss_fn: Optional[Callable] = None, rtol: Optional[float] = None,
                            atol: Optional[float] = None, backend: Any = "inductor", check_graph_breaks: bool = False,
                            dynamic_shapes: Any = None, train: bool = False, msg: Any = None, output: Any = None) -> Any:
        """Outputs and gradients of ``torch.compile(copy)`` match eager; optionally no graph break and
        no recompile over ``dynamic_shapes``. Skips (``unittest.SkipTest``) where compilation is
        unavailable. Cost: one eager and one compiled training step plus the compile.

        >>> self.assertCompileParity(model, x, check_graph_breaks=True, dynamic_shapes=[x[:3]])
        """
        from .checks.compile import check_compile_parity

        return self._torchcheck_equivalence(check_compile_parity(
            model, inputs, target, loss_fn=loss_fn, output=output, rtol=rtol, atol=atol, backend=backend,
            check_graph_breaks=check_graph_breaks, dynamic_shapes=dynamic_shapes, train=train), msg)

    def assertAutocastParity(self, model: nn.Module, inputs: Any, target: Any = None, *, dtype: Any = None,
                             loss_fn: Optional[Callable] = None, rtol: Optional[float] = None, atol: float = 0.0,
                             train_step: bool = True, msg: Any = None, output: Any = None) -> Any:
        """Under ``torch.autocast`` (bfloat16 on CPU, float16 on CUDA) outputs stay within the dtype's
        tolerance of float32 and a training step stays finite. Cost: two forwards, one training step.

        >>> self.assertAutocastParity(model, x)
        """
        from .checks.precision import check_autocast_parity

        return self._torchcheck_equivalence(check_autocast_parity(
            model, inputs, target, dtype=dtype, loss_fn=loss_fn, output=output, rtol=rtol, atol=atol, train_step=train_step), msg)

    def assertPrecisionParity(self, model: nn.Module, inputs: Any, *, rtol: float = 1e-4, atol: float = 0.0,
                              msg: Any = None) -> Any:
        """A float64 copy agrees with the float32 model (outputs and gradients) within ``rtol``.
        Cost: two forwards+backwards, one in float64.

        >>> self.assertPrecisionParity(model, x)
        """
        from .checks.precision import check_precision_parity

        return self._torchcheck_equivalence(check_precision_parity(model, inputs, rtol=rtol, atol=atol), msg)

    def assertMovesWithModel(self, model: nn.Module, *, dtype: Any = torch.float64, device: Any = None,
                             msg: Any = None) -> Any:
        """``model.to(dtype)`` / ``.to(device)`` on a copy reaches every tensor the model holds: a
        tensor in a plain attribute or list is reported. Cost: one deep copy, no forward.

        >>> self.assertMovesWithModel(model)                  # float64 on CPU
        >>> self.assertMovesWithModel(model, device="cuda")   # where a GPU exists
        """
        from .checks.moves import check_moves_with_model

        result = check_moves_with_model(model, dtype=dtype, device=device)
        if not result.passed:
            self._torchcheck_fail(msg, messages.describe_moves(result))
        return result
def _input_batch(inputs: Any) -> Optional[int]:
    """The leading size of the first tensor of concrete inputs (None for a data factory)."""
    if callable(inputs) and not isinstance(inputs, torch.Tensor):
        return None
    for _, leaf in tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor) and leaf.dim():
            return int(leaf.shape[0])
    return None


def _model_faults(fn: Callable) -> Callable:
    """An output/target mismatch caused by the model (its batch lost) fails the check; misuse stays."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except OutputTargetMismatch as err:
            bound = signature.bind_partial(self, *args, **kwargs).arguments
            batch = _input_batch(bound.get("inputs"))
            if not err.batch_lost(batch):  # misuse: a plain ValueError, as every other one
                raise ValueError(str(err)) from None
            fault, text = err, messages.describe_batch_lost(err.out_shape, err.target_shape, batch)
        del fault  # fail outside the except: no chained library traceback
        self._torchcheck_fail(bound.get("msg"), text)
    return run


def _add_boundaries(cls: type) -> None:
    """Every ``assert*`` method re-raises library-raised misuse errors without library frames
    (see core/boundary.py); applied to all of them, including ones added later in this class."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("assert") and callable(fn) and not getattr(fn, "__torchcheck_boundary__", False):
            setattr(cls, name, public(_model_faults(fn)))


_add_boundaries(ModelAssertionsMixin)


class ModelTestCase(ModelAssertionsMixin, unittest.TestCase):
    """A ``unittest.TestCase`` with the model assertions."""
