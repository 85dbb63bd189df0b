"""A declarative battery: describe the model in class attributes, inherit the standard tests.

::

    class TestTagger(ModelBattery):
        model_factory = lambda: Tagger(vocab=100, tags=5)
        input_factory = lambda: torch.randint(0, 100, (4, 12))
        target_factory = lambda: torch.randint(0, 5, (4, 5, 12))
        expected_output_shape = ("B", 5, "T")
        expected_dtype = torch.float32
        expected_parameter_count = 9_125
        allow_not_updated = ()
        check_can_overfit_batch = "too slow for the unit suite"   # opt out, with a reason

The tests are added to a subclass when it is created (``__init_subclass__``, no metaclass), and
only when the subclass has ``model_factory`` and ``input_factory``; with those two alone it gets
every test that needs nothing more (the rest are skipped with a reason naming what to set). A
class that has one of the two factories but not the other cannot silently test nothing: it gets
one generated test, ``test_battery_configuration``, that fails naming the missing attribute. A
shared base class that sets one factory on purpose says so with ``battery_abstract = True`` (not
inherited). Classes with neither factory (the base class itself, suites that only mix in the
assertions, a base holding shared settings) have no generated tests.

Each generated test has a flag ``check_<name>``: ``True`` runs it, ``False`` or a string skips it
(the string is the skip reason). Tests whose expectation is not given (``expected_output_shape``
and friends) are skipped with a reason that says what to set. A test method the class defines
itself is never replaced.

Factories may be plain functions or lambdas (called without arguments), staticmethods,
classmethods, classes, or methods taking ``self``.
"""

import inspect
import torch
from typing import Any, Callable, Dict, Tuple

from .assertions import ModelTestCase

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def _make(name: str) -> Callable[[Any], None]:
    def test(self: "ModelBattery") -> None:
        flag = getattr(self, f"check_{name}", True)
        if flag is not True:
            self.skipTest(flag if isinstance(flag, str) else f"check_{name} = False")
        getattr(self, f"_battery_{name}")()

    test.__name__ = f"test_{name}"
    test.__doc__ = f"Battery: {name.replace('_', ' ')} (opt out with check_{name} = False or a reason)."
    return test


def _misconfigured(name: str, missing: str) -> Callable[[Any], None]:
    from .core import messages

    text = messages.battery_misconfigured(name, missing)

    def test_battery_configuration(self: "ModelBattery") -> None:
        self.fail(text)

    test_battery_configuration.__doc__ = f"Battery: {name} generates no test: {missing} is not set."
    return test_battery_configuration


BATTERY_TESTS: Tuple[str, ...] = (
    "forward_shape",
    "output_dtype",
    "parameters_updated",
    "optimizer_step",
    "parameter_count",
    "all_finite",
    "loss_scalar_non_negative",
    "batch_independent",
    "deterministic",
    "state_dict_round_trip",
    "can_overfit_batch",
    "moves_with_model",
    "precision_parity",
    "accumulation_equivalent",
)

# Generated only when the configuration has what they need (the attribute named on the right).
CONDITIONAL_TESTS: Tuple[Tuple[str, str], ...] = (
    ("single_sample_consistent", "input_factory"),
    ("inputs_used", "input_factory"),
    ("causal", "causal_dim"),
    ("mask_invariant", "mask_key"),
    ("padding_invariant", "mask_key"),
    ("initial_loss", "num_classes"),
)


class ModelBattery(ModelTestCase):
    """Set the class attributes below in a subclass to inherit the standard model tests."""

    model_factory: Any = None  # () -> nn.Module, a fresh model for each test
    accumulation_micro_batches: Any = None  # k micro-batches for test_accumulation_equivalent (default 2)
    input_factory: Any = None  # () -> inputs (Tensor, tuple, dict)
    target_factory: Any = None  # () -> target, optional
    loss_fn: Any = None  # (output, target) -> scalar; default: see torchcheck_mixin.losses
    optimizer_factory: Any = None  # (params) -> Optimizer, for the snapshot test; default plain SGD
    expected_output_shape: Any = None
    expected_dtype: Any = None
    expected_parameter_count: Any = None  # an int (total elements) or {"total"/"trainable"/"frozen": int}
    allow_not_updated: Any = ()
    expect_frozen: Any = ()
    batch_dependent: bool = False  # True for models that mix samples on purpose
    update_trials: int = 1
    overfit_steps: int = 50
    overfit_min_decrease: float = 0.5
    output_range: Any = None  # (low, high) for assertOutputRange, optional
    allow_unused_inputs: Any = ()  # inputs the model may ignore (assertInputsUsed)
    causal_dim: Any = None  # the sequence dimension of a causal model: generates test_causal
    mask_key: Any = None  # the mask among the inputs: generates test_mask_invariant / test_padding_invariant
    mask_convention: Any = None  # "keep", "pad" or "additive"; inferred when None
    num_classes: Any = None  # with target_factory: generates test_initial_loss
    battery_abstract: bool = False  # a shared base with one factory: no test_battery_configuration

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_attributes(cls)
        missing = [a for a in ("model_factory", "input_factory") if getattr(cls, a, None) is None]
        if len(missing) == 1 and not cls.__dict__.get("battery_abstract", False) \
                and "test_battery_configuration" not in cls.__dict__:
            cls.test_battery_configuration = _misconfigured(cls.__name__, missing[0])
        if cls._battery_configured():
            for name in BATTERY_TESTS:
                if f"test_{name}" not in cls.__dict__:
                    setattr(cls, f"test_{name}", _make(name))
            for name, needs in CONDITIONAL_TESTS:
                if getattr(cls, needs, None) is not None and f"test_{name}" not in cls.__dict__:
                    setattr(cls, f"test_{name}", _make(name))

    @classmethod
    def _battery_configured(cls) -> bool:
        return cls.model_factory is not None and cls.input_factory is not None

    # ----------------------------------------------------------------------------- factories

    def _factory(self, attr: str, *args: Any) -> Any:
        raw = inspect.getattr_static(type(self), attr)
        if isinstance(raw, staticmethod):
            return raw.__func__(*args)
        if isinstance(raw, classmethod):
            return raw.__func__(type(self), *args)
        if inspect.isfunction(raw):
            params = list(inspect.signature(raw).parameters)
            return raw(self, *args) if params[:1] == ["self"] else raw(*args)
        if callable(raw):
            return raw(*args)
        raise TypeError(f"{attr} must be callable, got {type(raw).__name__}")

    def _model(self) -> Any:
        return self._factory("model_factory")

    def _inputs(self) -> Any:
        return self._factory("input_factory")

    def _target(self) -> Any:
        return self._factory("target_factory") if type(self).target_factory is not None else None

    def _loss(self) -> Any:
        raw = inspect.getattr_static(type(self), "loss_fn")
        if raw is None:
            return None
        return raw.__func__ if isinstance(raw, staticmethod) else raw

    def _require(self, attr: str) -> Any:
        value = getattr(type(self), attr)
        if value is None:
            self.skipTest(f"set {attr} to run this test")
        return value

    # ----------------------------------------------------------------------------- the tests

    def _battery_forward_shape(self) -> None:
        self.assertForwardShape(self._model(), self._inputs(), self._require("expected_output_shape"))

    def _battery_output_dtype(self) -> None:
        expected = self._require("expected_dtype")
        from .checks.forward import run_forward

        self.assertDtype(run_forward(self._model(), self._inputs()), expected)

    def _battery_parameters_updated(self) -> None:
        self.assertParametersUpdated(
            self._model(), self._inputs(), self._target(), loss_fn=self._loss(),
            allow_not_updated=self.allow_not_updated, expect_frozen=self.expect_frozen, trials=self.update_trials,
        )

    def _battery_optimizer_step(self) -> None:
        model = self._model()
        optimizer = None
        if type(self).optimizer_factory is not None:
            optimizer = self._factory("optimizer_factory", [p for p in model.parameters() if p.requires_grad])
        self.assertParametersUpdated(
            model, self._inputs(), self._target(), mode="snapshot", loss_fn=self._loss(), optimizer=optimizer,
            allow_not_updated=self.allow_not_updated, expect_frozen=self.expect_frozen, trials=self.update_trials,
        )

    def _battery_parameter_count(self) -> None:
        expected = self._require("expected_parameter_count")
        counts: Dict[str, int] = dict(expected) if isinstance(expected, dict) else {"total": expected}
        self.assertParameterCount(self._model(), **counts)

    def _battery_all_finite(self) -> None:
        from .checks.forward import run_forward

        model = self._model()
        self.assertAllFinite(model)
        self.assertAllFinite(run_forward(model, self._inputs()))
        if self.output_range is not None:
            low, high = self.output_range
            self.assertOutputRange(model, self._inputs(), low=low, high=high)

    def _battery_loss_scalar_non_negative(self) -> None:
        if type(self).target_factory is None and self._loss() is None:
            self.skipTest("set target_factory (and loss_fn) to check the loss")
        import torch

        from .core import calling
        from .checks.forward import run_forward
        from .core.default_loss import compute_loss

        model = self._model()
        output = run_forward(model, self._inputs())
        target = self._target()
        if target is not None:
            target = calling.to_device(target, calling.model_device(model))
        gen = torch.Generator().manual_seed(0)
        self.assertLossScalarNonNegative(compute_loss(output, target, self._loss(), gen))

    def _battery_batch_independent(self) -> None:
        if self.batch_dependent:
            self.skipTest("batch_dependent = True: the model mixes samples on purpose")
        self.assertBatchIndependent(self._model(), self._inputs())

    def _battery_deterministic(self) -> None:
        self.assertDeterministic(self._model(), self._inputs())

    def _battery_state_dict_round_trip(self) -> None:
        self.assertStateDictRoundTrip(self._model(), self._inputs(), model_factory=self._model)

    def _battery_can_overfit_batch(self) -> None:
        self.assertCanOverfitBatch(self._model(), self._inputs(), self._target(), loss_fn=self._loss(),
                                   steps=self.overfit_steps, min_decrease=self.overfit_min_decrease)

    # ----------------------------------------------------------------- modern-bug tests

    def _battery_single_sample_consistent(self) -> None:
        if self.batch_dependent:
            self.skipTest("batch_dependent = True: the model mixes samples on purpose")
        self.assertSingleSampleConsistent(self._model(), self._inputs())

    def _battery_inputs_used(self) -> None:
        self.assertInputsUsed(self._model(), self._inputs(), allow_unused=self.allow_unused_inputs)

    def _battery_causal(self) -> None:
        self.assertCausal(self._model(), self._inputs(), dim=self.causal_dim)

    def _battery_mask_invariant(self) -> None:
        self.assertMaskInvariant(self._model(), self._inputs(), mask=self.mask_key, convention=self.mask_convention)

    def _battery_padding_invariant(self) -> None:
        self.assertPaddingInvariant(self._model(), self._inputs(), mask=self.mask_key, convention=self.mask_convention)

    def _battery_initial_loss(self) -> None:
        if type(self).target_factory is None:
            self.skipTest("set target_factory to check the loss at initialisation")
        self.assertInitialLoss(self._model(), self._inputs(), self._target(), num_classes=self.num_classes,
                               loss_fn=self._loss())
    # ------------------------------------------------------------ equivalence checks (issue 16)

    def _battery_moves_with_model(self) -> None:
        self.assertMovesWithModel(self._model(), dtype=torch.float64)

    def _battery_accumulation_equivalent(self) -> None:
        from .checks.accumulation import batch_size
        from .core import calling

        model, inputs = self._model(), self._inputs()
        if calling.lazy_modules(model) or not any(p.requires_grad for p in model.parameters()):
            self.skipTest("no initialised trainable parameter to accumulate gradients into")
        k = 2 if self.accumulation_micro_batches is None else self.accumulation_micro_batches
        n = batch_size(inputs)
        if n < k or n % k:
            self.skipTest(f"the input batch does not split into {k} equal micro-batches")
        # BatchNorm in eval mode: its per-micro-batch statistics differ by design (see the assertion).
        self.assertAccumulationEquivalent(model, inputs, self._target(), micro_batches=k, loss_fn=self._loss(),
                                          batchnorm="eval")

    def _battery_precision_parity(self) -> None:
        import torch

        model = self._model()
        floats = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
        if not floats or any(t.dtype != torch.float32 for t in floats):
            self.skipTest("precision parity compares a float32 model with a float64 copy")
        self.assertPrecisionParity(model, self._inputs())


# ------------------------------------------------------------ a battery cannot silently test nothing


def _known_attributes() -> Tuple[str, ...]:
    """The configuration attributes ModelBattery reads (those declared on it, and check_* flags)."""
    return tuple(n for n in vars(ModelBattery) if not n.startswith("_") and not callable(vars(ModelBattery)[n])
                 or n in ("model_factory", "input_factory", "target_factory", "loss_fn", "optimizer_factory"))


def _check_attributes(cls: type) -> None:
    """A misspelled configuration attribute (``inputs_factory``) is an error at class creation.

    Only names that look like battery configuration are checked (``*_factory``, ``expected_*``,
    ``check_*``, ``allow_*``, ``expect_*``, ``overfit_*``, ``update_*``), so a suite's own helpers
    and attributes are left alone.
    """
    import difflib

    known = set(_known_attributes()) | {f"check_{n}" for n in BATTERY_TESTS + tuple(n for n, _ in CONDITIONAL_TESTS)}
    looks_like = ("_factory", "expected_", "check_", "allow_", "expect_", "overfit_", "update_", "output_range")
    for name, value in vars(cls).items():
        if name in known or name.startswith("_") or name.startswith("test"):
            continue
        if not any(name.endswith(p) or name.startswith(p) for p in looks_like):
            continue
        if callable(value) and name.startswith("check_"):
            continue  # a method such as check_something(self) is the suite's own
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TypeError(f"{cls.__name__}.{name} is not a ModelBattery attribute: {hint}known attributes: "
                        f"{', '.join(sorted(known))}")
