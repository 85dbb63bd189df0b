"""Results of the checks: small frozen dataclasses of plain data.

A check returns one of these; ``passed`` is derived from its fields, never stored. They hold
names, shapes, dtypes (as strings) and floats, never tensors or modules, so keeping a result
around keeps no model memory alive.
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

Shape = Tuple[int, ...]

# ----------------------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ShapeMismatch:
    """One place where a value does not fit its spec."""

    path: Tuple[Any, ...]
    kind: str  # "rank" | "dim" | "structure" | "keys" | "not_a_tensor" | "dtype"
    spec: str  # the spec of this place, printed as written
    actual: Optional[Shape]
    detail: str = ""
    dim_index: Optional[int] = None
    got: Optional[int] = None
    expected: Optional[str] = None
    missing_keys: Tuple[str, ...] = ()
    extra_keys: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ForwardShapeResult:
    spec: str
    outputs: Tuple[Tuple[str, Optional[Shape]], ...]  # (path, shape) of every tensor leaf
    mismatches: Tuple[ShapeMismatch, ...]
    bindings: Tuple[Tuple[str, int], ...]
    model: str
    inputs: Tuple[Tuple[str, Optional[Shape]], ...]
    train: bool

    @property
    def passed(self) -> bool:
        return not self.mismatches


# ----------------------------------------------------------------------------------------- dtypes


@dataclass(frozen=True)
class DtypeMismatch:
    path: Tuple[Any, ...]
    actual: str
    expected: str


@dataclass(frozen=True)
class DtypeResult:
    expected: str
    leaves: Tuple[Tuple[str, str], ...]  # (path, dtype) of every leaf checked
    mismatches: Tuple[DtypeMismatch, ...]
    default_dtype: str
    autocast: Tuple[str, ...]  # device types with autocast enabled when the check ran
    skipped: Tuple[Tuple[str, str], ...] = ()  # (path, type name) of non-tensor leaves, not checked

    @property
    def passed(self) -> bool:
        return bool(self.leaves) and not self.mismatches


# ------------------------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class LossResult:
    value: Optional[float]  # None when the loss is not a single real number
    shape: Optional[Shape]
    dtype: str
    problems: Tuple[str, ...]  # "not_scalar" | "one_element" | "nan" | "posinf" | "neginf" | "negative"
    atol: float

    @property
    def passed(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class BatchMismatch:
    batch_index: int
    mismatch: ShapeMismatch


@dataclass(frozen=True)
class BatchShapeResult:
    spec: str
    dtype_spec: Optional[str]
    batches_checked: int
    checked_indices: Tuple[int, ...]
    total_batches: Optional[int]  # len(loader) when it has one
    cap: Optional[int]  # the bound that stopped iteration, when one did
    last_batch_checked: bool
    first_shapes: Tuple[Tuple[str, Optional[Shape]], ...]
    mismatches: Tuple[BatchMismatch, ...]
    single_batch: bool

    @property
    def passed(self) -> bool:
        return self.batches_checked > 0 and not self.mismatches


# ---------------------------------------------------------------------------- parameter summaries


@dataclass(frozen=True)
class ModuleCount:
    name: str  # qualified name of a direct child ("" for parameters of the root itself)
    kind: str  # class name
    parameters: int
    elements: int


@dataclass(frozen=True)
class ParameterSummary:
    """Counts of Parameter objects and of their elements, tied weights counted once.

    ``nn.Sequential(nn.Linear(16, 256), nn.ReLU())`` holds 2 Parameters and 4,352 elements.
    """

    parameters: int
    trainable_parameters: int
    frozen_parameters: int
    elements: int
    trainable_elements: int
    frozen_elements: int
    shared: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # (name, other names of the same tensor)
    modules: Tuple[ModuleCount, ...] = ()
    torchinfo_total: Optional[int] = None
    torchinfo_trainable: Optional[int] = None
    torchinfo_note: str = ""

    @property
    def torchinfo_agrees(self) -> bool:
        return self.torchinfo_total is None or self.torchinfo_total == self.elements


@dataclass(frozen=True)
class ParameterCountResult:
    expected: Tuple[Tuple[str, int], ...]  # (which, expected) for each count given
    actual: Tuple[Tuple[str, int], ...]  # ("total"|"trainable"|"frozen", elements)
    summary: ParameterSummary
    suspects: Tuple[str, ...]  # modules/tensors held outside _modules/_parameters/_buffers
    buffers: Tuple[str, ...] = ()  # registered floating buffers: counted as state, never as parameters

    @property
    def mismatches(self) -> Tuple[Tuple[str, int, int], ...]:
        got = dict(self.actual)
        return tuple((k, v, got[k]) for k, v in self.expected if got[k] != v)

    @property
    def passed(self) -> bool:
        return not self.mismatches


# ---------------------------------------------------------------------------- parameter updates

# Every parameter gets exactly one of these.
UPDATED = "updated"
ZERO_GRAD = "zero_grad"  # gradient all zero (or at most atol)
NO_GRAD = "no_grad"  # gradient is None: unreachable from the loss
NONFINITE = "nonfinite"  # NaN or inf in the gradient or in the new value
FROZEN = "frozen"  # requires_grad is False
NOT_APPLIED = "not_applied"  # snapshot: non-zero gradient, value did not change
CHANGED_WITHOUT_GRAD = "changed_without_grad"  # snapshot: moved with a zero/None gradient
NOT_IN_OPTIMIZER = "not_in_optimizer"  # snapshot: the given optimizer does not hold it
ROUNDING_NOISE = "rounding_noise"  # float32 gradient is rounding noise: zero in float64

STATUSES = (UPDATED, ZERO_GRAD, NO_GRAD, NONFINITE, FROZEN, NOT_APPLIED, CHANGED_WITHOUT_GRAD, NOT_IN_OPTIMIZER,
            ROUNDING_NOISE)


@dataclass(frozen=True)
class ParameterRecord:
    """What the check saw of one parameter (tied aliases share one record)."""

    name: str
    aliases: Tuple[str, ...]
    shape: Shape
    numel: int
    dtype: str
    status: str
    max_grad: Optional[float]  # max |grad| over trials; None when the gradient was None
    max_change: Optional[float]  # snapshot: max |new - old|; None in gradient mode
    gradient_status: Optional[str] = None  # the gradient view alone ("both" mode reports both)
    allowed: bool = False  # matched by allow_not_updated
    expected_frozen: bool = False  # matched by expect_frozen
    updated_at_step: Optional[int] = None  # zero at step 1, non-zero after private steps (zero-init partner)
    zero_partners: Tuple[str, ...] = ()  # the zero-initialised parameters it sits downstream of
    retested_steps: int = 0  # private steps tried after an exactly-zero first gradient
    max_grad_float64: Optional[float] = None  # the float64 re-check of a tiny float32 gradient

    @property
    def ok(self) -> bool:
        if self.status == FROZEN:
            return self.expected_frozen
        if self.expected_frozen:
            return False  # declared frozen but trainable
        if self.status == UPDATED:
            return True
        return self.allowed and self.status != NONFINITE


def make_record(**fields: Any) -> ParameterRecord:
    """Build a ``ParameterRecord`` from all its fields without the frozen dataclass ``__init__``.

    The generated ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``: about 13 us for this one, 26 ms for a model with 2,000 parameter
    tensors, a third of a check's own cost there. Filling ``__dict__`` directly is what
    unpickling does; the record is as immutable afterwards.
    """
    record = object.__new__(ParameterRecord)
    record.__dict__.update(fields)
    return record


@dataclass(frozen=True)
class ParameterUpdateReport:
    """The result of ``check_parameters_updated``.

    The lists hold qualified parameter names; the Ludwig-compatible counts
    (``frozen_parameters``, ``trainable_parameters``, ``parameters_updated``,
    ``parameters_not_updated``) mirror ``check_module_parameters_updated``'s return value.
    """

    mode: str
    seed: int
    trials: int
    atol: float
    records: Tuple[ParameterRecord, ...]
    summary: ParameterSummary
    model: str = ""
    stale_allowances: Tuple[str, ...] = ()  # allow_not_updated entries whose parameters all updated
    notes: Tuple[str, ...] = ()  # hints: checkpointing, half precision, lr 0, replaced parameters
    loss: Optional[float] = None
    optimizer: str = ""
    errors: Tuple[str, ...] = ()  # conditions that fail the check outside any one parameter
    snapshot_path: str = ""  # snapshot/both: how the step was taken (private, shadow, or copy and why)

    # --- lists of names (new lists on each access: the report itself stays immutable)
    @property
    def frozen(self) -> List[str]:
        return [r.name for r in self.records if r.status == FROZEN]

    @property
    def trainable(self) -> List[str]:
        return [r.name for r in self.records if r.status != FROZEN]

    @property
    def updated(self) -> List[str]:
        return [r.name for r in self.records if r.status == UPDATED]

    @property
    def not_updated(self) -> List[str]:
        return [r.name for r in self.records if r.status not in (UPDATED, FROZEN)]

    @property
    def failures(self) -> Tuple[ParameterRecord, ...]:
        return tuple(r for r in self.records if not r.ok)

    # --- Ludwig-compatible
    @property
    def frozen_parameters(self) -> int:
        return len(self.frozen)

    @property
    def trainable_parameters(self) -> int:
        return len(self.trainable)

    @property
    def parameters_updated(self) -> int:
        return len(self.updated)

    @property
    def parameters_not_updated(self) -> List[str]:
        return self.not_updated

    def status_of(self, name: str) -> str:
        for r in self.records:
            if r.name == name or name in r.aliases:
                return r.status
        raise KeyError(name)

    @property
    def passed(self) -> bool:
        # All frozen passes only when the check found no error (expect_frozen names every one).
        return not self.errors and bool(self.records) and not self.failures

    # --- gradient flow along the depth
    def gradient_flow_data(self, by: str = "module") -> List[Tuple[str, Optional[float]]]:
        """``(module or parameter name, max |grad|)`` in registration order (input side first for
        ``nn.Sequential`` and most models); ``None`` where no gradient reached any of its parameters.
        ``by="module"`` collapses a module's parameters (``fc.weight``, ``fc.bias`` -> ``fc``) into
        their largest gradient; ``by="parameter"`` gives one row per parameter tensor."""
        if by not in ("module", "parameter"):
            raise ValueError(f"by must be 'module' or 'parameter', got {by!r}")
        rows: List[Tuple[str, Optional[float]]] = []
        index = {}
        for r in self.records:
            if r.status == FROZEN:
                continue
            key = r.name if by == "parameter" else (r.name.rsplit(".", 1)[0] if "." in r.name else "(root)")
            g = r.max_grad
            if key not in index:
                index[key] = len(rows)
                rows.append((key, g))
            elif g is not None:
                old = rows[index[key]][1]
                rows[index[key]] = (key, g if old is None or g > old or g != g else old)
        return rows

    @property
    def gradient_trend(self) -> str:
        """``"vanishing"``, ``"exploding"`` or ``""``: the rule that puts the gradient-flow chart in
        the failure message. Over the modules with a finite non-zero max |grad| (registration order),
        the first one's is below ``GRADIENT_FLOW_RATIO`` (1e-6) times the last one's (vanishing
        towards the input), or above ``1 / GRADIENT_FLOW_RATIO`` times it (exploding)."""
        values = [g for _, g in self.gradient_flow_data() if g is not None and 0 < g < float("inf")]
        if len(values) < 2:
            return ""
        first, last = values[0], values[-1]
        if first < GRADIENT_FLOW_RATIO * last:
            return "vanishing"
        if first * GRADIENT_FLOW_RATIO > last:
            return "exploding"
        return ""

    def gradient_flow(self, by: str = "module") -> str:
        """A compact log-scale text chart of max |grad| per module (or per parameter): one line
        each, a bar one character per decade above the smallest, the value, ``0`` or ``None``
        (no gradient) marked. No plotting dependency: print it, or read it in a failure."""
        from . import messages

        return messages.gradient_flow_chart(self, by)


GRADIENT_FLOW_RATIO = 1e-6


# ------------------------------------------------------------------------ results of later checks


@dataclass(frozen=True)
class OverfitResult:
    steps: int
    initial: float
    final: float
    best: float
    min_decrease: float
    losses: Tuple[float, ...]
    optimizer: str
    problem: str = ""  # why training could not even start (no graph, nothing trainable)

    @property
    def decrease(self) -> float:
        if not (self.initial > 0) or self.initial != self.initial:
            return float("nan")
        return (self.initial - self.final) / self.initial

    @property
    def passed(self) -> bool:
        return (not self.problem and all(v == v and abs(v) != float("inf") for v in self.losses)
                and self.decrease >= self.min_decrease)


@dataclass(frozen=True)
class Finding:
    """One offending place for the checks that list places (finite, range, determinism...)."""

    path: str
    detail: str
    count: int = 0
    total: int = 0
    first_indices: Tuple[Tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class ValueCheckResult:
    """Shared result of assertAllFinite, assertOutputRange, assertDeterministic,
    assertStateDictRoundTrip: which leaves were checked and what was wrong with each."""

    check: str
    leaves_checked: int
    findings: Tuple[Finding, ...]
    details: Tuple[Tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.leaves_checked > 0 and not self.findings


# ------------------------------------------------------------ results of the modern-bug checks


@dataclass(frozen=True)
class CausalityResult:
    """Which output positions changed when only later input positions changed."""

    model: str
    input: str
    length: int
    probes: int  # input positions perturbed
    forwards: int
    leaks: Tuple[Tuple[int, int, str, float], ...]  # (output t, input t, output leaf, max |diff|)

    @property
    def passed(self) -> bool:
        return self.probes > 0 and not self.leaks


@dataclass(frozen=True)
class MaskInvariantResult:
    """Unmasked outputs that changed when masked or padded positions changed."""

    check: str  # "mask" or "padding"
    model: str
    mask: str
    convention: str
    masked_positions: int
    total_positions: int
    perturbed: Tuple[str, ...]
    findings: Tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return self.masked_positions > 0 and bool(self.perturbed) and not self.findings


@dataclass(frozen=True)
class SingleSampleResult:
    """Outputs of samples run alone that differ from their rows of the batched run."""

    model: str
    batch: int
    samples: Tuple[int, ...]
    findings: Tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return bool(self.samples) and not self.findings


@dataclass(frozen=True)
class JacobianMismatch:
    name: str  # "input[0]" or "param fc.weight"
    shape: Tuple[int, ...]
    max_abs: float
    max_rel: float
    bad: int
    total: int
    worst: Tuple[int, int]  # (output index, input element index), flat
    analytical: float
    numerical: float


@dataclass(frozen=True)
class GradcheckResult:
    model: str
    checked: Tuple[JacobianMismatch, ...]  # every input and parameter, mismatching or not
    atol: float
    rtol: float
    eps: float
    forwards: int

    @property
    def failures(self) -> Tuple[JacobianMismatch, ...]:
        return tuple(m for m in self.checked if m.bad)

    @property
    def passed(self) -> bool:
        return bool(self.checked) and not self.failures


@dataclass(frozen=True)
class InputsUsedResult:
    model: str
    used: Tuple[Tuple[str, str], ...]  # (input, how it was seen: "gradient"/"perturbation")
    unused: Tuple[Tuple[str, str], ...]  # (input, evidence)
    allowed: Tuple[str, ...]

    @property
    def passed(self) -> bool:
        return bool(self.used) and not self.unused


@dataclass(frozen=True)
class InitialLossResult:
    model: str
    loss: float
    expected: float
    rtol: float
    num_classes: Optional[int]
    logit_std: float
    source: str  # where ``expected`` came from

    @property
    def passed(self) -> bool:
        return self.loss == self.loss and abs(self.loss - self.expected) <= self.rtol * abs(self.expected)


@dataclass(frozen=True)
class BatchValuesResult:
    """Value ranges and label validity over the batches read."""

    batches: int
    checked: Tuple[str, ...]
    findings: Tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return self.batches > 0 and bool(self.checked) and not self.findings


@dataclass(frozen=True)
class LabelCoverageResult:
    batches: int
    samples: int
    expected: Tuple[int, ...]
    missing: Tuple[int, ...]
    unexpected: Tuple[int, ...]
    counts: Tuple[Tuple[int, int], ...]

    @property
    def passed(self) -> bool:
        return self.samples > 0 and not self.missing and not self.unexpected
# ------------------------------------------------------------------ equivalence checks (issue 16)


@dataclass(frozen=True)
class Divergence:
    """The first module (execution order) whose output or gradient differs between two runs."""

    module: str
    module_type: str
    what: str  # "output" or "gradient of weight"
    max_abs_diff: float
    scale: float  # max |reference| of that tensor
    hint: str


@dataclass(frozen=True)
class EquivalenceResult:
    """Shared result of the accumulation, resume, compile, autocast and precision checks.

    ``mismatches`` holds one line of evidence per differing tensor (name: detail); ``notes`` the
    diagnosis (what usually causes it, what was detected); ``skipped_reason`` is set when the
    check could not run here (torch.compile unavailable) and then ``passed`` is False but the
    unittest layer skips.
    """

    check: str
    compared: int
    mismatches: Tuple[str, ...]
    divergence: Optional[Divergence] = None
    notes: Tuple[str, ...] = ()
    rtol: float = 0.0
    atol: float = 0.0
    skipped_reason: str = ""
    details: Tuple[Tuple[str, Any], ...] = field(default_factory=tuple)
    expected_difference: str = ""  # e.g. BatchNorm statistics per micro-batch: explained, not a bug

    @property
    def passed(self) -> bool:
        return not self.skipped_reason and self.compared > 0 and not self.mismatches


@dataclass(frozen=True)
class MoveResult:
    """assertMovesWithModel: tensors that a ``.to(dtype/device)`` of the model did not reach."""

    target: str
    checked: int
    not_moved: Tuple[Tuple[str, str], ...]  # (attribute path, "float32 on cpu")

    @property
    def passed(self) -> bool:
        return self.checked > 0 and not self.not_moved
# ------------------------------------------------------------------ results that explain themselves

def _jsonable(value: Any) -> Any:
    """Plain JSON data: dataclasses as dicts, tuples as lists, non-finite floats as strings."""
    import dataclasses
    import math

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if hasattr(type(value), "passed"):
            out["passed"] = bool(value.passed)
        return out
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def explained(describer: Any) -> Any:
    """Class decorator: give a result ``.message``, ``str()``, a short ``repr``, ``to_dict()`` and
    truthiness (truthy when passed).

    ``describer`` names the ``describe_*`` function of ``core/messages.py`` that renders the result
    (looked up at call time: messages imports this module), or is a function of the result that
    returns that name. A new result class needs one line: ``@explained("describe_x")``.
    """

    def decorate(cls: Any) -> Any:
        def message(self: Any) -> str:
            if self.passed:
                return ""
            from . import messages

            name = describer(self) if callable(describer) else describer
            return getattr(messages, name)(self)

        def __repr__(self: Any) -> str:
            extra = self._repr_extra() if hasattr(self, "_repr_extra") else ""
            if self.passed:
                return f"<{cls.__name__} passed=True{extra}>"
            first = self.message.split("\n", 1)[0]
            first = first if len(first) <= 100 else first[:97] + "..."
            return f"<{cls.__name__} passed=False{extra}: {first}>"

        def to_dict(self: Any) -> dict:
            out = {"type": cls.__name__}
            out.update(_jsonable(self))
            out["message"] = self.message
            return out

        cls.message = property(message, doc="The failure text (as the assertion prints it); '' when passed.")
        cls.__str__ = lambda self: self.message or "passed"
        cls.__repr__ = __repr__
        cls.__bool__ = lambda self: bool(self.passed)
        cls.to_dict = to_dict
        return cls

    return decorate


explained("describe_forward_shape")(ForwardShapeResult)
explained("describe_dtype")(DtypeResult)
explained("describe_loss")(LossResult)
explained("describe_batch")(BatchShapeResult)
explained("describe_parameter_count")(ParameterCountResult)
explained("describe_update")(ParameterUpdateReport)
explained("describe_overfit")(OverfitResult)
explained(lambda r: f"describe_{r.check}")(ValueCheckResult)
explained("describe_causal")(CausalityResult)
explained("describe_mask_invariant")(MaskInvariantResult)
explained("describe_single_sample")(SingleSampleResult)
explained("describe_gradcheck")(GradcheckResult)
explained("describe_inputs_used")(InputsUsedResult)
explained("describe_initial_loss")(InitialLossResult)
explained("describe_batch_values")(BatchValuesResult)
explained("describe_labels_cover")(LabelCoverageResult)
explained("describe_equivalence")(EquivalenceResult)  # accumulation, resume, compile, precision, autocast
explained("describe_moves")(MoveResult)


def _update_repr_extra(self: ParameterUpdateReport) -> str:
    return f" not_updated={len(self.not_updated)}/{self.trainable_parameters}"


ParameterUpdateReport._repr_extra = _update_repr_extra  # type: ignore[attr-defined]
