"""Every user-facing failure text is built here, from result objects.

Anatomy (numpy.testing / torch.testing style): line 1 states the broken property, what was found
against what was expected; indented lines give the evidence: where (paths, parameter names),
shapes, counts as ``k / n (p%)``. Lists stop after ``MAX_LISTED`` entries with
``... and N more``, and long reprs are cut, so a failure on a model with thousands of parameters
stays readable.
"""

import math
from typing import Iterable, List, Optional, Sequence, Set

from . import trees
from .results import (
    CHANGED_WITHOUT_GRAD,
    FROZEN,
    NO_GRAD,
    NONFINITE,
    NOT_APPLIED,
    NOT_IN_OPTIMIZER,
    ROUNDING_NOISE,
    UPDATED,
    ZERO_GRAD,
    BatchShapeResult,
    DtypeResult,
    ForwardShapeResult,
    LossResult,
    OverfitResult,
    ParameterCountResult,
    ParameterRecord,
    ParameterSummary,
    ParameterUpdateReport,
    ShapeMismatch,
    ValueCheckResult,
)
from .shapes import format_shape

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

MAX_LISTED = 10
MAX_REPR = 120
INDENT = "  "


def cut(text: str, limit: int = MAX_REPR) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def capped(lines: Sequence[str], limit: int = MAX_LISTED) -> List[str]:
    lines = list(lines)
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"... and {len(lines) - limit} more"]


def ratio(k: int, n: int) -> str:
    return f"{k:,} / {n:,} ({100.0 * k / n:.1f}%)" if n else f"{k:,} / 0"


def number(x: Optional[float]) -> str:
    if x is None:
        return "None"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def block(head: str, lines: Iterable[str]) -> str:
    return "\n".join([head] + [INDENT + line for line in lines if line])


def bindings(pairs: Sequence) -> str:
    return ", ".join(f"{k}={v}" for k, v in pairs)


# ------------------------------------------------------------------------------------ shapes


def mismatch_line(m: ShapeMismatch, root: str = "output") -> str:
    where = trees.describe_path(m.path, root)
    if m.kind in ("dim", "rank"):
        return f"{where}: shape {format_shape(m.actual)}, expected {m.spec}: {m.detail}"
    return f"{where}: {m.detail}" + (f" (expected {cut(m.spec, 60)})" if m.kind == "structure" else "")


def describe_forward_shape(result: ForwardShapeResult) -> str:
    mism = result.mismatches
    single = len(result.outputs) == 1 and result.outputs[0][0] == "" and len(mism) == 1
    if single and mism[0].kind in ("dim", "rank"):
        m = mism[0]
        head = f"Output shape {format_shape(m.actual)} does not match expected {result.spec}"
        lines = [m.detail]
    else:
        head = f"Output does not match expected {cut(result.spec)}: {len(mism)} mismatch{'es' if len(mism) != 1 else ''}"
        lines = capped([mismatch_line(m) for m in mism])
    if result.bindings:
        lines.append(f"bound: {bindings(result.bindings)}")
    if len(result.outputs) > 1 or (result.outputs and result.outputs[0][0]):
        shapes = [f"output{p}: {format_shape(s)}" for p, s in result.outputs]
        lines.append("actual: " + cut("; ".join(shapes), 200))
    inputs = "; ".join(f"input{p} {format_shape(s)}" if p else f"input shape {format_shape(s)}" for p, s in result.inputs if s is not None)
    mode = "train" if result.train else "eval"
    lines.append(f"model: {result.model} ({mode} mode)" + (f", {cut(inputs, 160)}" if inputs else ""))
    return block(head, lines)


# ------------------------------------------------------------------------------------ dtypes


def describe_dtype(result: DtypeResult) -> str:
    n, k = len(result.leaves), len(result.mismatches)
    if n == 1 and k == 1 and not result.mismatches[0].path:
        head = f"dtype {result.mismatches[0].actual} does not match expected {result.expected}"
        lines: List[str] = []
    else:
        head = f"dtype mismatch in {ratio(k, n)} leaves: expected {result.expected}"
        lines = capped([f"value{trees.format_path(m.path)}: {m.actual}"
                        + (f", expected {m.expected}" if m.expected != result.expected else "")
                        for m in result.mismatches])
    if result.skipped:
        lines.append("not checked (not tensors): " + cut(", ".join(f"value{p} ({k})" for p, k in result.skipped), 200))
    context = f"torch.get_default_dtype() is {result.default_dtype}"
    if result.autocast:
        context += f"; autocast is on ({', '.join(result.autocast)})"
    lines.append(context)
    return block(head, lines)


# -------------------------------------------------------------------------------------- loss

_LOSS_PROBLEMS = {
    "nan": "the loss is NaN",
    "posinf": "the loss is +inf",
    "neginf": "the loss is -inf",
    "dtype": "the loss is not a real floating-point value",
    "not_scalar": "the loss is not a scalar",
    "one_element": "the loss is not 0-d",
}


def describe_loss(result: LossResult) -> str:
    p = result.problems
    shape = format_shape(result.shape) if result.shape is not None else None
    lines: List[str] = []
    if "negative" in p:
        head = f"Loss {result.value:.6g} is negative" + (f" (below -atol = {-result.atol:g})" if result.atol else "")
        if result.value is not None and -1e-6 < result.value < 0:
            lines.append("a mathematically non-negative loss (KL divergence, ...) can be slightly "
                         "negative through rounding: pass atol=1e-6")
    else:
        head = _LOSS_PROBLEMS[p[0]]
        if p[0] in ("nan", "posinf", "neginf"):
            head = f"Loss is not finite: {head[len('the loss is '):]}"
        elif p[0] == "dtype":
            head = f"Loss has dtype {result.dtype}; expected a real floating-point scalar"
            lines.append("integer, bool and complex losses cannot be minimised by backpropagation")
        elif p[0] == "not_scalar":
            head = f"Loss is not a scalar: shape {shape}, expected ()"
            lines.append("a loss built with reduction='none' (or a missing .mean()) keeps one value per element")
        elif p[0] == "one_element":
            head = f"Loss has shape {shape}, expected a 0-d tensor ()"
            lines.append("it holds one element but is not 0-d: use loss.squeeze() or reduce with .mean()/.sum()")
    for extra in p[1:]:
        if extra in _LOSS_PROBLEMS:
            lines.append(_LOSS_PROBLEMS[extra])
        elif extra == "negative":
            lines.append(f"the loss {result.value:.6g} is also negative")
    if result.value is not None and "negative" not in p and p[0] not in ("nan", "posinf", "neginf"):
        lines.append(f"value: {result.value:.6g}")
    lines.append(f"dtype: {result.dtype}" + (f", shape {shape}" if shape is not None else ""))
    return block(head, lines)


# ----------------------------------------------------------------------------------- batches


def describe_batch(result: BatchShapeResult) -> str:
    if not result.batches_checked:
        return block("No batch to check: the loader yielded nothing", [
            "an empty loader trains on nothing; check the dataset length, batch_size and drop_last",
        ])
    bad = sorted({m.batch_index for m in result.mismatches})
    first = result.mismatches[0]
    where = "the batch" if result.single_batch else f"batch {first.batch_index}"
    head = f"{where[0].upper() + where[1:]} does not match expected {cut(result.spec)}" + (
        f" (dtype {result.dtype_spec})" if result.dtype_spec else "")
    lines = capped([mismatch_line(m.mismatch, root="batch" if result.single_batch else f"batch[{m.batch_index}]")
                    for m in result.mismatches])
    if not result.single_batch:
        of = f"; the loader has {result.total_batches:,}" if result.total_batches is not None else ""
        lines.append(
            f"mismatching batches: {ratio(len(bad), result.batches_checked)} of those read ("
            + cut(", ".join(str(i) for i in result.checked_indices), 80) + f"){of}"
        )
        if result.cap is not None:
            lines.append(f"iteration was capped at {result.cap} batches (max_batches)")
        if result.total_batches and bad == [result.total_batches - 1]:
            lines.append("only the last batch fails: a partial last batch? use a named batch dimension "
                         "such as 'B', or drop_last=True")
    if result.first_shapes and not result.single_batch:
        shapes = [f"batch{p}: {format_shape(s)}" for p, s in result.first_shapes if s is not None]
        lines.append("first batch: " + cut("; ".join(shapes), 200))
    return block(head, lines)


# ------------------------------------------------------------------------ parameter updates

_REASONS = {
    NO_GRAD: "grad is None (unreachable from the loss)",
    ZERO_GRAD: "grad is all zero",
    NONFINITE: "NaN or inf",
    NOT_APPLIED: "non-zero grad but the value did not change (not stepped, lr 0, or update below float resolution)",
    CHANGED_WITHOUT_GRAD: "changed without a gradient (weight decay or momentum moved it)",
    NOT_IN_OPTIMIZER: "not held by the optimizer's param_groups",
    FROZEN: "requires_grad=False but not declared in expect_frozen",
    ROUNDING_NOISE: "gradient is rounding noise: zero in float64; a bias before a normalisation?",
}


def _reason(r: ParameterRecord, atol: float) -> str:
    if r.expected_frozen and r.status != FROZEN:
        return "declared in expect_frozen but requires_grad=True"
    text = _REASONS.get(r.status, r.status)
    if r.status == ZERO_GRAD:
        text += f" (max |grad| = {number(r.max_grad)}{f' <= atol {atol:g}' if atol else ''})"
    elif r.status == NONFINITE:
        text += f" (max |grad| = {number(r.max_grad)}" + (
            f", max |change| = {number(r.max_change)})" if r.max_change is not None else ")")
    elif r.status in (NOT_APPLIED, NOT_IN_OPTIMIZER) and r.max_grad is not None:
        text += f" (max |grad| = {number(r.max_grad)})"
    elif r.status == CHANGED_WITHOUT_GRAD:
        text += f" (max |change| = {number(r.max_change)})"
    elif r.status == ROUNDING_NOISE:
        text += f" (max |grad| = {number(r.max_grad)} in float32, {number(r.max_grad_float64)} in float64)"
    if r.status == ZERO_GRAD and getattr(r, "retested_steps", 0):
        text += f"; still zero after {r.retested_steps} private steps (not a zero-initialised partner)"
    elif r.status == CHANGED_WITHOUT_GRAD and getattr(r, "retested_steps", 0):
        text += (f"; its gradient stayed exactly zero over {r.retested_steps} more private steps of the optimizer "
                 f"(not a zero-initialised partner): only weight decay or momentum moves it")
    if r.allowed and r.status == NONFINITE:
        text += "; allow_not_updated does not excuse NaN/inf"
    return text


def _display(r: ParameterRecord) -> str:
    from .parameters import user_facing

    user = user_facing(r.name)
    name = r.name if user == r.name else f"{user} (parametrized: {r.name})"
    return name + (f" (also: {', '.join(r.aliases)})" if r.aliases else "")


def parameter_lines(records: Sequence[ParameterRecord], atol: float) -> List[str]:
    rows = [(_display(r), format_shape(r.shape), f"{r.numel:,}", _reason(r, atol)) for r in records]
    w0 = min(max((len(a) for a, *_ in rows), default=0), 48)
    w1 = max((len(b) for _, b, *_ in rows), default=0)
    return capped([f"{a:<{w0}}  {b:<{w1}}  {c} el.  {d}" for a, b, c, d in rows])


def summary_line(summary: ParameterSummary) -> str:
    text = (f"{summary.parameters:,} Parameter tensors ({summary.elements:,} elements): "
            f"{summary.trainable_parameters:,} trainable ({summary.trainable_elements:,} el.), "
            f"{summary.frozen_parameters:,} frozen ({summary.frozen_elements:,} el.)")
    return text


def torchinfo_line(summary: ParameterSummary) -> str:
    if summary.torchinfo_total is None:
        return summary.torchinfo_note
    text = f"torchinfo: {summary.torchinfo_total:,} total params, {summary.torchinfo_trainable:,} trainable"
    if summary.torchinfo_note:
        text += f" ({summary.torchinfo_note})"
    return text


def describe_update(report: ParameterUpdateReport, summary: Optional[ParameterSummary] = None) -> str:
    summary = summary or report.summary
    failures = report.failures
    trainable = report.trainable_parameters
    not_updated = [r for r in failures if r.status not in (FROZEN, UPDATED) and not r.expected_frozen]
    lines: List[str] = []
    if report.errors and not report.records:
        return block("Parameter update check failed: " + report.errors[0], [f"model: {report.model}"])
    if report.errors:
        head = "Parameter update check failed: " + report.errors[0]
        lines += list(report.errors[1:])
    elif not_updated:
        head = f"Parameters not updated: {ratio(len(not_updated), trainable)} trainable tensors"
    elif any(r.status == FROZEN for r in failures):
        k = sum(1 for r in failures if r.status == FROZEN)
        head = f"Frozen parameters not declared in expect_frozen: {k} tensor{'s' if k != 1 else ''}"
    else:
        head = "Parameters declared in expect_frozen are trainable"
    lines += parameter_lines(failures, report.atol)
    upd = [r for r in report.records if r.status == UPDATED]
    frozen = [r for r in report.records if r.status == FROZEN]
    lines.append(
        f"frozen: {plural(len(frozen), 'tensor')} ({sum(r.numel for r in frozen):,} el.); "
        f"trainable: {plural(trainable, 'tensor')}; updated: {plural(len(upd), 'tensor')} ({sum(r.numel for r in upd):,} el.)"
    )
    lines.append(summary_line(summary))
    if summary.torchinfo_total is not None or summary.torchinfo_note:
        lines.append(torchinfo_line(summary))
    how = f"mode={report.mode!r}, seed={report.seed}, trials={report.trials}"
    if report.optimizer:
        how += f", optimizer: {report.optimizer}"
        if getattr(report, "snapshot_path", ""):
            how += f" ({report.snapshot_path})"
    if report.loss is not None:
        how += f", loss={number(report.loss)}"
    lines.append(f"model: {report.model}; {how}")
    if any(r.status == NO_GRAD for r in not_updated):
        lines.append("unreachable: the parameter is unused, or a detach(), .data, torch.no_grad() or "
                     "argmax/integer cast cuts its path to the loss")
    lines += list(report.notes)
    undeclared = [r.name for r in failures if r.status == FROZEN]
    if undeclared:
        frozen_all = {r.name for r in report.records if r.status == FROZEN}
        lines.append(f"if frozen on purpose: expect_frozen={_paste(undeclared, frozen_all, report)}")
    missing = [r for r in not_updated if r.status == NOT_IN_OPTIMIZER]
    if missing:
        lines.append(f"the optimizer does not hold {len(missing)} trainable tensor(s): build it from "
                     f"model.parameters(), or add a param group for them")
    allowable = [r.name for r in not_updated if r.status not in (NONFINITE, NOT_IN_OPTIMIZER) and not r.allowed]
    if allowable:
        idle_all = {r.name for r in report.records if r.status not in (UPDATED, FROZEN, NONFINITE, NOT_IN_OPTIMIZER)
                    and not r.expected_frozen}
        lines.append(f"if unused on purpose for these inputs: allow_not_updated={_paste(allowable, idle_all, report)}")
    if report.stale_allowances:
        lines.append("stale allow_not_updated entries (all their parameters updated): " + _entries_text(report.stale_allowances))
    lines += _update_hints(report, not_updated)
    lines += _gradient_flow_lines(report)
    if any(r.status == ZERO_GRAD for r in not_updated) and report.trials == 1:
        lines.append("zero gradients can depend on the draw (dead ReLUs, routing): try trials=4 to rule that out")
    return block(head, lines)


MAX_FLOW_ROWS = 30  # rows of the gradient-flow chart inside a failure message (gradient_flow() shows all)
FLOW_WIDTH = 40  # the widest bar, in characters


def gradient_flow_chart(report: ParameterUpdateReport, by: str = "module", limit: Optional[int] = None) -> str:
    """The text of ``report.gradient_flow()``: one line per module (or parameter) in registration
    order, ``name  value  |bar`` where the bar has one ``#`` per decade above the smallest non-zero
    max |grad| (scaled down when the span exceeds ``FLOW_WIDTH`` decades); zero gradients show
    ``0 (zero)``, unreachable ones ``None (no gradient)``, NaN/inf ``! (not finite)``."""
    rows = report.gradient_flow_data(by)
    what = "module" if by == "module" else "parameter"
    head = f"gradient flow: max |grad| per {what}, log10 scale, registration order (input side first)"
    if not rows:
        return head + "\n" + INDENT + "(no trainable parameters)"
    positive = [g for _, g in rows if g is not None and 0 < g < math.inf]
    lo = math.floor(math.log10(min(positive))) if positive else 0
    hi = math.floor(math.log10(max(positive))) if positive else 0
    scale = min(1.0, (FLOW_WIDTH - 1) / (hi - lo)) if hi > lo else 1.0
    names = [cut(n, 40) for n, _ in rows]
    width = max(len(n) for n in names)
    lines = []
    for name, (_, g) in zip(names, rows):
        if g is None:
            value, bar = "None", " (no gradient)"
        elif g != g or g == math.inf:
            value, bar = number(g), "! (not finite)"
        elif g == 0:
            value, bar = "0", " (zero)"
        else:
            value, bar = f"{g:.2e}", "#" * (1 + int((math.floor(math.log10(g)) - lo) * scale))
        lines.append(f"{name.ljust(width)}  {value:>8}  |{bar}")
    if limit is not None and len(lines) > limit:
        keep = limit // 2
        lines = lines[:keep] + [f"... {len(lines) - 2 * keep} more {what}s (report.gradient_flow() shows all)"] + lines[-keep:]
    return block(head, lines)


def _gradient_flow_lines(report: ParameterUpdateReport) -> List[str]:
    """The chart in a failure, only when gradients vanish or explode along the depth (see
    ``ParameterUpdateReport.gradient_trend``)."""
    trend = report.gradient_trend
    if not trend:
        return []
    rows = [(n, g) for n, g in report.gradient_flow_data() if g is not None and 0 < g < math.inf]
    (first, g0), (last, g1) = rows[0], rows[-1]
    if trend == "vanishing":
        why = (f"gradients vanish towards the input: max |grad| of {first} ({g0:.2e}) is {g0 / g1:.1e} x that of "
               f"{last} ({g1:.2e}), below 1e-6: saturating activations (sigmoid/tanh), a missing residual "
               f"or normalisation, or a too small init")
    else:
        why = (f"gradients explode towards the input: max |grad| of {first} ({g0:.2e}) is {g0 / g1:.1e} x that of "
               f"{last} ({g1:.2e}), above 1e6: a too large init, a missing normalisation, or clip the gradients")
    chart = gradient_flow_chart(report, "module", MAX_FLOW_ROWS).split("\n")
    return [why] + chart  # the chart's rows keep their indent: nested under its head


def _update_hints(report: ParameterUpdateReport, not_updated: Sequence[ParameterRecord]) -> List[str]:
    """Hints for the second looks: dead parameters, rounding noise, idle repeated modules (experts)."""
    lines: List[str] = []
    dead = [r for r in not_updated if r.status in (ZERO_GRAD, CHANGED_WITHOUT_GRAD) and getattr(r, "retested_steps", 0)]
    if dead:
        lines.append(f"{plural(len(dead), 'tensor')} stayed exactly zero after {dead[0].retested_steps} further private "
                     f"steps: a constant zero factor, a mask or a saturated path cuts them off for good")
    if any(r.status == ROUNDING_NOISE for r in not_updated):
        lines.append("rounding noise: the float32 gradient is at most 1e-5 of the largest and the same pass in "
                     "float64 gives zero: the loss does not depend on it (a bias before BatchNorm/LayerNorm, a key "
                     "bias before softmax); remove it (bias=False) or allow it")
    idle = [r for r in not_updated if r.status == NO_GRAD]
    if idle:
        def shape_of(name: str) -> str:  # every numeric component (experts.3, a leading 0.) is one slot
            return ".".join("#" if part.isdigit() else part for part in name.split("."))

        updated = {shape_of(r.name) for r in report.records if r.status == UPDATED}
        siblings = [r for r in idle if shape_of(r.name) in updated]
        if siblings:
            lines.append(f"{plural(len(siblings), 'tensor')} of repeated modules got no gradient while their siblings "
                         f"did (experts no token was routed to?): try trials=4 or a larger batch, or allow them")
    return lines


def _paste(targets: List[str], eligible: Set[str], report: ParameterUpdateReport) -> str:
    """The whole list to paste, never cut: collapsed to the highest pure modules, globs for
    repeated structure (see ``core.suggestions``)."""
    from .parameters import user_facing
    from .suggestions import suggest

    names = [(r.name,) + tuple(r.aliases) + ((user_facing(r.name),) if user_facing(r.name) != r.name else ())
             for r in report.records]
    return "[" + ", ".join(repr(e) for e in suggest(targets, eligible | set(targets), names)) + "]"


def _entries_text(entries: Sequence[str]) -> str:
    """Stale entries as written: names quoted, module/Parameter entries as their description."""
    return ", ".join(e if e.startswith("<") else repr(e) for e in entries)


def stale_warning(report: ParameterUpdateReport) -> str:
    return ("allow_not_updated entries whose parameters all updated (remove them so the list does not rot): "
            + _entries_text(report.stale_allowances))


# -------------------------------------------------------------------------- value checks


def _findings(result: ValueCheckResult) -> List[str]:
    lines = capped([f"{f.path}: {f.detail}" for f in result.findings])
    return lines + [f"{key}: {value}" for key, value in result.details]


def describe_all_finite(result: ValueCheckResult) -> str:
    if not result.leaves_checked:
        return block("Nothing to check: the value holds no tensor", ["a module without parameters or buffers, or an empty structure"])
    head = f"Non-finite values in {ratio(len(result.findings), result.leaves_checked)} tensors"
    return block(head, _findings(result))


def describe_output_range(result: ValueCheckResult) -> str:
    bounds = dict(result.details).get("range", "")
    head = f"Values outside {bounds.replace(' inclusive', '')} in {ratio(len(result.findings), result.leaves_checked)} tensors"
    return block(head, _findings(result))


def describe_batch_independent(result: ValueCheckResult) -> str:
    head = "Samples of a batch interact: an output sample depends on other input samples (eval mode)"
    lines = _findings(result)
    lines.append("typical causes: softmax/mean/normalisation over the batch dimension, an RNN without "
                 "batch_first=True fed (batch, time, ...) data, a cat/view/reshape that moves the batch dimension")
    return block(head, lines)


def describe_deterministic(result: ValueCheckResult) -> str:
    head = f"Outputs differ between two eval-mode passes on the same inputs in {ratio(len(result.findings), result.leaves_checked)} tensors"
    lines = _findings(result)
    lines.append("typical causes: F.dropout(x, training=True) or torch.rand/randn in forward, a submodule "
                 "that overrides eval(), state updated during forward")
    return block(head, lines)


def describe_state_dict_round_trip(result: ValueCheckResult) -> str:
    details = dict(result.details)
    if "nondeterministic" in details:
        head = (f"The model is nondeterministic: two eval-mode passes on the same inputs differ in "
                f"{ratio(len(result.findings), max(result.leaves_checked, 1))} tensors, so a state_dict round trip "
                f"cannot be judged")
        lines = capped([f"{f.path}: {f.detail}" for f in result.findings])
        lines.append("typical causes: dropout or torch.rand in eval mode, state updated during forward "
                     "(assertDeterministic says more)")
        return block(head, lines)
    head = f"Outputs differ after a state_dict save/load round trip in {ratio(len(result.findings), max(result.leaves_checked, 1))} tensors"
    lines = _findings(result)
    if "state the state dict does not carry" in details:
        lines.append("register what the outputs depend on with register_buffer (persistent) or recompute it in "
                     "__init__")
    return block(head, lines)


def describe_overfit(result: OverfitResult) -> str:
    dec = result.decrease
    if result.problem:
        return block(f"The model cannot fit one batch: {result.problem}", [
            f"loss {number(result.initial)}; optimizer {result.optimizer}",
            "a detach()/no_grad() in forward, or every parameter frozen, leaves nothing to train"])
    if any(v != v or abs(v) == float("inf") for v in result.losses):
        bad = next(i for i, v in enumerate(result.losses) if v != v or abs(v) == float("inf"))
        head = f"Loss became non-finite ({number(result.losses[bad])}) at step {bad} of {result.steps} on one batch"
    else:
        head = (f"Loss did not fall enough on one batch: {number(result.initial)} -> {number(result.final)} in "
                f"{result.steps} steps ({'n/a' if dec != dec else f'{100 * dec:.1f}%'} decrease, expected >= "
                f"{100 * result.min_decrease:.0f}%)")
    losses = result.losses
    trace = ", ".join(number(v) for v in losses[:5]) + (" ... " + ", ".join(number(v) for v in losses[-3:]) if len(losses) > 8 else "")
    lines = [f"best {number(result.best)}; optimizer {result.optimizer}", f"losses: {trace}"]
    if not (result.initial > 0):
        lines.append("the initial loss is not positive: a fraction of it cannot measure progress")
    lines.append("typical causes: a detached output, a layer outside the optimizer, lr 0, a final activation "
                 "that saturates (ReLU before a regression head), a loss on the wrong tensor")
    return block(head, lines)


def describe_parameter_count(result: ParameterCountResult) -> str:
    mism = result.mismatches
    head = "Parameter count mismatch: " + "; ".join(f"{k} {got:,} elements, expected {want:,}" for k, want, got in mism)
    s = result.summary
    lines = [summary_line(s)]
    if s.shared:
        lines.append("tied tensors counted once: " + ", ".join(f"{n} (also: {', '.join(a)})" for n, a in s.shared[:5]))
    if s.modules:
        lines.append("per module: " + cut("; ".join(f"{m.name or '<root>'} ({m.kind}) {m.elements:,}" for m in s.modules), 300))
    if result.suspects:
        lines.append("possibly unregistered (never counted, trained or saved):")
        lines += capped(["  " + x for x in result.suspects])
    if result.buffers:
        lines.append("registered floating buffers (not parameters, never trained; nn.Parameter if one should learn):")
        lines += capped(["  " + x for x in result.buffers])
    return block(head, lines)


# ------------------------------------------------------------ messages of the modern-bug checks

from .results import (BatchValuesResult, CausalityResult, GradcheckResult, InitialLossResult,  # noqa: E402
                      InputsUsedResult, LabelCoverageResult, MaskInvariantResult, SingleSampleResult)


def describe_causal(result: CausalityResult) -> str:
    t, k, name, diff = result.leaks[0]
    head = f"Not causal: output t={t} <- input t={k} (a later input changes an earlier output)"
    firsts = {}
    for o, i, _, _ in result.leaks:
        firsts.setdefault(i, o)
    lines = [f"{name}: max |diff| {number(diff)} at positions before t={k} after perturbing {result.input} at t={k}",
             f"leaking input positions: {ratio(len(firsts), result.probes)} probed; "
             + cut(", ".join(f"input t={i} -> output t={o}" for i, o in sorted(firsts.items())), 200),
             f"model {result.model}, sequence length {result.length}, {plural(result.forwards, 'forward')} in eval mode",
             "typical causes: attention without its causal mask (is_causal=True / a tril mask), a transposed mask, "
             "a convolution padded on both sides (pad only the left: F.pad(x, (k - 1, 0)))"]
    return block(head, lines)


def describe_mask_invariant(result: MaskInvariantResult) -> str:
    if result.check == "mask":
        head = (f"Masked positions leak into unmasked outputs: changing {result.masked_positions} masked "
                f"positions changed {_count(len(result.findings), 'output leaf', 'output leaves')}")
        cause = ("typical causes: the mask never reaches the attention, an inverted mask (1 - mask, or ~mask), "
                 "the mask applied to the query axis instead of the key axis")
    else:
        head = (f"Outputs change when padding is appended: {_count(len(result.findings), 'output leaf', 'output leaves')} "
                f"changed at the original positions")
        cause = ("typical causes: a masked mean divided by the padded length (divide by mask.sum(dim)), "
                 "pooling over padded positions, the mask not passed to the model")
    lines = [f"{f.path}: {f.detail}" for f in result.findings]
    lines = capped(lines) + [
        f"mask {result.mask} ({result.convention}); perturbed: {', '.join(result.perturbed)}; "
        f"masked positions {ratio(result.masked_positions, result.total_positions)}; model {result.model}", cause]
    return block(head, lines)


def describe_single_sample(result: SingleSampleResult) -> str:
    head = (f"A sample run alone differs from its row of the batch: {_count(len(result.findings), 'mismatch', 'mismatches')} "
            f"over {plural(len(result.samples), 'sample')} of a batch of {result.batch}")
    lines = capped([f"{f.path}: {f.detail}" for f in result.findings])
    lines += [f"model {result.model}, eval mode",
              "typical causes: .squeeze() dropping the batch dimension at B=1 (use .squeeze(-1)), a layer skipped "
              "when x.size(0) == 1, a reshape with a hard-coded batch size"]
    return block(head, lines)


def describe_gradcheck(result: GradcheckResult) -> str:
    bad = result.failures
    head = (f"Backward does not match finite differences for {ratio(len(bad), len(result.checked))} inputs/parameters "
            f"(float64 copy, |analytical - numerical| <= {number(result.atol)} + {number(result.rtol)} * |numerical|)")
    lines = capped([f"{m.name} {format_shape(m.shape)}: max |diff| {number(m.max_abs)}, {ratio(m.bad, m.total)} "
                    f"Jacobian entries off; worst d out[{m.worst[0]}] / d elem[{m.worst[1]}]: analytical "
                    f"{number(m.analytical)}, numerical {number(m.numerical)}" for m in bad])
    ok = [m.name for m in result.checked if not m.bad]
    if ok:
        lines.append("correct: " + cut(", ".join(ok), 200))
    lines += [f"{result.model}, eps {number(result.eps)}, {plural(result.forwards, 'forward')}",
              "typical causes in a custom autograd.Function: a missing factor (chain rule), a flipped sign, a "
              "gradient reduced or broadcast over the wrong dimension"]
    return block(head, lines)


def describe_inputs_used(result: InputsUsedResult) -> str:
    n = len(result.used) + len(result.unused)
    head = f"Inputs that do not influence the output: {ratio(len(result.unused), n)}"
    lines = capped([f"{name}: {why}" for name, why in result.unused])
    if result.used:
        lines.append("used: " + cut(", ".join(name for name, _ in result.used), 200))
    lines += [f"model {result.model}, eval mode",
              "typical causes: forward reads a cached tensor (self.x) instead of its argument, a branch whose "
              "result is never added to the output; declare legitimate ones with allow_unused=[...]"]
    return block(head, lines)


def describe_initial_loss(result: InitialLossResult) -> str:
    side = "above" if result.loss > result.expected else "below"
    head = (f"Loss at initialisation {number(result.loss)} is far {side} {result.source} = {number(result.expected)} "
            f"(allowed +-{100 * result.rtol:.0f}%)")
    lines = [f"logits std {number(result.logit_std)}, {result.num_classes} classes; model {result.model}, eval mode"]
    if side == "above":
        lines.append("an untrained classifier should predict nearly uniformly: initialise the head with a small std "
                     "(nn.init.normal_(head.weight, std=0.02)) or zeros, drop a logit scale, check tanh/sigmoid saturation")
    else:
        lines.append("a loss this low before training suggests the target leaks into the inputs or a wrong loss")
    return block(head, lines)


def describe_batch_values(result: BatchValuesResult) -> str:
    head = f"Batch values out of bounds: {_count(len(result.findings), 'finding', 'findings')} in {_count(result.batches, 'batch', 'batches')} read"
    lines = capped([f"{f.path}: {f.detail}" for f in result.findings])
    lines += ["checked: " + ", ".join(result.checked),
              "typical causes: images left in 0-255 (ToTensor/ / 255 missing), label padding with -1 or 0 where the "
              "loss ignores -100 (pass ignore_index to the loss or pad with it)"]
    return block(head, lines)


def describe_labels_cover(result: LabelCoverageResult) -> str:
    parts = []
    if result.missing:
        parts.append(f"{ratio(len(result.missing), len(result.expected))} expected classes never seen")
    if result.unexpected:
        parts.append(f"{_count(len(result.unexpected), 'unexpected class', 'unexpected classes')} seen")
    if not result.samples:
        parts.append("no labels read")
    head = "Labels do not cover the expected classes: " + "; ".join(parts)
    lines = []
    if result.missing:
        lines.append("missing: " + cut(", ".join(map(str, result.missing)), 200))
    if result.unexpected:
        lines.append("unexpected: " + cut(", ".join(map(str, result.unexpected)), 200))
    lines.append(f"{result.samples:,} labels in {_count(result.batches, 'batch', 'batches')}; counts: "
                 + cut(", ".join(f"{c}: {n}" for c, n in result.counts), 200))
    lines.append("typical causes: a filtered or truncated dataset, a sampler or split that never reaches some "
                 "classes, labels offset by one")
    return block(head, lines)


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"
# ------------------------------------------------------------------ equivalence checks (issue 16)

_EQUIV_HEAD = {
    "accumulation": "accumulated micro-batch gradients differ from the full batch's",
    "resume": "resuming from a checkpoint differs from uninterrupted training",
    "compile": "torch.compile differs from eager",
    "autocast": "autocast differs from float32",
    "precision": "float32 differs from a float64 copy",
}


def describe_equivalence(result: "EquivalenceResult") -> str:
    head = _EQUIV_HEAD.get(result.check, f"{result.check} check failed")
    tol = f" (tolerance atol {number(result.atol)} + rtol {number(result.rtol)} x max|reference|)" \
        if result.check != "resume" else (" (bitwise)" if not result.atol else f" (tolerance {number(result.atol)})")
    if result.compared == 0:
        return f"{head}: nothing was compared"
    lines = [f"{head}{tol}: {len(result.mismatches)} of {result.compared} compared tensors differ"
             if result.check != "precision" or result.divergence is None or result.divergence.scale
             else f"{head}: {result.mismatches[0]}"]
    if result.expected_difference:
        lines.append(f"{INDENT}expected, not a bug: {result.expected_difference}")
    listed = list(result.mismatches)[1:] if lines[0].endswith(result.mismatches[0]) else list(result.mismatches)
    lines += [f"{INDENT}{m}" for m in capped(listed)]
    d = result.divergence
    if d is not None:
        by = "" if d.max_abs_diff == float("inf") and not d.scale and "dtype" in d.what else \
            (" (inf/NaN where the reference is finite)" if d.max_abs_diff == float("inf")
             else f" by {number(d.max_abs_diff)}" + (f" (max |reference| {number(d.scale)})" if d.scale else ""))
        kind = f" ({d.module_type})" if d.module_type else ""
        lines.append(f"{INDENT}first divergence: {d.module}{kind}, {d.what}{by}")
        if d.hint:
            lines.append(f"{INDENT}usually: {d.hint}")
    lines += [f"{INDENT}{note}" for note in result.notes]
    if result.expected_difference:
        lines.append(f"{INDENT}suggestion: batchnorm='eval' checks everything else, or use nn.GroupNorm / "
                     f"eval-mode BatchNorm where micro-batches must match")
    return "\n".join(lines)


def describe_moves(result: "MoveResult") -> str:
    if not result.checked:
        return f"model.to({result.target}): the model holds no tensor to move"
    lines = [f"model.to({result.target}) leaves {ratio(len(result.not_moved), result.checked)} tensors behind"]
    lines += [f"{INDENT}{line}" for line in capped([f"{name}: {detail}" for name, detail in result.not_moved])]
    plain = [n for n, d in result.not_moved if "plain attribute" in d]
    if plain:
        first = plain[0].split("[")[0].rsplit(".", 1)
        lines.append(f"{INDENT}nn.Module.to() moves parameters and buffers only; register the tensor: "
                     f"self.register_buffer({first[-1]!r}, tensor) (a list: one buffer each, or torch.stack)")
    return "\n".join(lines)


def describe_batch_lost(out_shape: Sequence[int], target_shape: Sequence[int], input_batch: int) -> str:
    """The default loss found an output whose leading dimension is not the inputs' batch."""
    return block(
        f"Model output does not keep the batch: output shape {format_shape(out_shape)}, target shape "
        f"{format_shape(target_shape)}, inputs batch {input_batch}", [
            f"the output's leading dimension is {out_shape[0]}, the target's and the inputs' is {input_batch}",
            "likely cause: the batch dimension was merged or lost in forward (x.view(-1), flatten(0, 1), "
            "reshape without the batch); keep it: x.view(x.size(0), -1) / x.flatten(1)",
        ])


def battery_misconfigured(name: str, missing: str) -> str:
    """The failure of ``test_battery_configuration``: a battery with one factory generates nothing."""
    other = "model_factory" if missing == "input_factory" else "input_factory"
    what = "() -> inputs (Tensor, tuple or dict)" if missing == "input_factory" else "() -> a fresh nn.Module"
    return (f"ModelBattery {name} generates no test: it sets {other} but not {missing}\n"
            f"{INDENT}set {missing} = {what} to generate the battery's tests\n"
            f"{INDENT}a shared base class on purpose: set battery_abstract = True in it")
