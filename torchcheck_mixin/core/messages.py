"""Every user-facing failure text is built here, from result objects.

Anatomy (numpy.testing / torch.testing style): line 1 states the broken property, what was found
against what was expected; indented lines give the evidence: where (paths, parameter names),
shapes, counts as ``k / n (p%)``. Lists stop after ``MAX_LISTED`` entries with
``... and N more``, and long reprs are cut, so a failure on a model with thousands of parameters
stays readable.
"""

import math
from typing import Iterable, List, Optional, Sequence

from . import trees
from .results import (
    CHANGED_WITHOUT_GRAD,
    FROZEN,
    NO_GRAD,
    NONFINITE,
    NOT_APPLIED,
    NOT_IN_OPTIMIZER,
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
        lines = capped([f"value{trees.format_path(m.path)}: {m.actual}" for m in result.mismatches])
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
    if report.loss is not None:
        how += f", loss={number(report.loss)}"
    lines.append(f"model: {report.model}; {how}")
    if any(r.status == NO_GRAD for r in not_updated):
        lines.append("unreachable: the parameter is unused, or a detach(), .data, torch.no_grad() or "
                     "argmax/integer cast cuts its path to the loss")
    lines += list(report.notes)
    undeclared = [r.name for r in failures if r.status == FROZEN]
    if undeclared:
        lines.append(f"if frozen on purpose: expect_frozen={_list_repr(_common_prefixes(undeclared, [r.name for r in report.records]))}")
    missing = [r for r in not_updated if r.status == NOT_IN_OPTIMIZER]
    if missing:
        lines.append(f"the optimizer does not hold {len(missing)} trainable tensor(s): build it from "
                     f"model.parameters(), or add a param group for them")
    allowable = [r.name for r in not_updated if r.status not in (NONFINITE, NOT_IN_OPTIMIZER) and not r.allowed]
    if allowable:
        lines.append(f"if unused on purpose for these inputs: allow_not_updated={_list_repr(_common_prefixes(allowable, [r.name for r in report.records]))}")
    if report.stale_allowances:
        lines.append("stale allow_not_updated entries (all their parameters updated): " + _entries_text(report.stale_allowances))
    if any(r.status == ZERO_GRAD for r in not_updated) and report.trials == 1:
        lines.append("zero gradients can depend on the draw (dead ReLUs, routing): try trials=4 to rule that out")
    return block(head, lines)


def _common_prefixes(names: List[str], all_names: List[str]) -> List[str]:
    """Collapse names to their module where every parameter of it is listed (fc2.weight, fc2.bias -> fc2)."""
    def module_of(n: str) -> str:
        return n.rsplit(".", 1)[0] if "." in n else ""

    listed = set(names)
    out: List[str] = []
    for n in names:
        module = module_of(n)
        members = [m for m in all_names if module_of(m) == module]
        if module and len(members) > 1 and all(m in listed for m in members):
            if module not in out:
                out.append(module)
        else:
            out.append(n)
    return out


def _list_repr(names: List[str]) -> str:
    shown = names[:MAX_LISTED]
    text = "[" + ", ".join(repr(n) for n in shown) + (", ..." if len(names) > MAX_LISTED else "") + "]"
    return text


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
    head = f"Outputs differ after a state_dict save/load round trip in {ratio(len(result.findings), max(result.leaves_checked, 1))} tensors"
    return block(head, _findings(result))


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
    return block(head, lines)
