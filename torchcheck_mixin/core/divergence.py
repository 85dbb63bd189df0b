"""Name the first module where two runs of the same model part ways (the evidence behind every
equivalence check: accumulation, resume, compile, autocast, precision).

``trace(model, run)`` registers forward hooks on every submodule of ``model`` (a private copy:
the hooks are removed before it returns), calls ``run()``, and records, in execution order, each
module's first floating output (detached, float64, on CPU) and afterwards each module's own
parameter gradients. ``first_divergence(a, b, rtol, atol)`` returns the first module of trace
``a``'s forward execution order whose output differs from trace ``b`` beyond ``atol + rtol *
max|reference|``, or, where every output agrees, the first in backward order whose gradient does
(a gradient's scale is at least 1% of the largest gradient's: see ``_FLOOR``), with a hint of what
usually causes a divergence in that kind of module. A module called a different number of times in
the two traces (once for the full batch, once per micro-batch) has its calls joined along the dim
that reproduces the other trace's shape, or, when every call has the same shape (a positional
embedding of ``arange(T)``), each call compared with the other trace's.

Cost: one extra host copy of each module output of the traced runs (the traces are small models
in unit tests); no extra forward or backward pass.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import trees
from .results import Divergence

__unittest = True

_HINTS = (
    ((nn.modules.batchnorm._BatchNorm,), "BatchNorm in train mode normalises with the statistics of the batch it sees"),
    ((nn.modules.dropout._DropoutNd,), "dropout draws a new mask from the RNG"),
    ((nn.Embedding,), "an embedding's gradient is a scatter-add (order of accumulation)"),
    ((nn.MultiheadAttention,), "attention softmax: large logits lose precision or overflow in low precision"),
    ((nn.LayerNorm, nn.GroupNorm), "normalisation: a variance of near-constant rows is ill-conditioned"),
)


def hint_for(module: nn.Module) -> str:
    for types, hint in _HINTS:
        if isinstance(module, types):
            return hint
    if not list(module.children()):
        return ("a leaf layer: check its arithmetic (an in-place op, a hard-coded dtype such as .half(), "
                "a hand-written exp/softmax/logsumexp)")
    return ("its own forward code between its children: an in-place op, a Python branch on a tensor value, "
            "a hard-coded dtype or a hand-written exp/softmax")


@dataclass
class Trace:
    order: List[str]
    types: Dict[str, str]
    hints: Dict[str, str]
    outputs: Dict[str, List[torch.Tensor]]
    grads: Dict[str, Dict[str, torch.Tensor]]
    dtypes: Dict[str, torch.dtype] = None  # each module's first output dtype, before the float64 copy
    error: str = ""  # what run() raised, when raising=False
    in_dtypes: Dict[str, torch.dtype] = None  # each module's first floating input dtype
    called: List[str] = None  # modules in the order their forward started


def _first_float(value: Any) -> Optional[torch.Tensor]:
    for _, t in trees.tensor_leaves(value):
        if t.is_floating_point():
            return t
    return None


def trace(model: nn.Module, run: Callable[[], Any], *, grads: bool = True, raising: bool = True) -> Trace:
    """Run ``run()`` with forward hooks on every submodule of ``model`` (a copy) and record.

    ``raising=False``: a ``RuntimeError`` of ``run()`` (a dtype clash) is kept in ``Trace.error``.
    """
    order: List[str] = []
    dtypes: Dict[str, torch.dtype] = {}
    error = ""
    outputs: Dict[str, List[torch.Tensor]] = {}
    named = [(n or "<root>", m) for n, m in model.named_modules()]
    handles = []

    def make(name: str):
        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            t = _first_float(out)
            if t is None:
                return
            if name not in outputs:
                order.append(name)
                outputs[name] = []
                dtypes[name] = t.dtype
            outputs[name].append(t.detach().to("cpu", torch.float64, copy=True))
        return hook

    in_dtypes: Dict[str, torch.dtype] = {}
    called: List[str] = []

    def make_pre(name: str):
        def pre(_m: nn.Module, args: Any) -> None:
            if name in in_dtypes:
                return
            t = _first_float(args)
            if t is not None:
                in_dtypes[name] = t.dtype
                called.append(name)
        return pre

    for name, m in named:
        handles.append(m.register_forward_hook(make(name)))
        handles.append(m.register_forward_pre_hook(make_pre(name)))
    try:
        run()
    except RuntimeError as e:
        if raising:
            raise
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        for h in handles:
            h.remove()
    gradients: Dict[str, Dict[str, torch.Tensor]] = {}
    if grads:
        for name, m in named:
            own = {pn: p.grad.detach().to("cpu", torch.float64, copy=True)
                   for pn, p in m.named_parameters(recurse=False) if p.grad is not None}
            if own:
                gradients[name] = own
    types = {n: type(m).__name__ for n, m in named}
    hints = {n: hint_for(m) for n, m in named}
    return Trace(order, types, hints, outputs, gradients, dtypes, error, in_dtypes, called)


def _pairs(ra: List[torch.Tensor], rb: List[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """What to compare when a module ran a different number of times in the two traces (one
    full-batch call against one call per micro-batch).

    The calls of the side that ran more often are concatenated along the first dim where that
    gives the other side's shape exactly (the batch dim is usually dim 0, a sequence-first layer
    has it later). An output the same shape in every call (a positional embedding looked up with
    ``arange(T)``, a mask built from sizes) does not depend on the batch: each call is compared
    with the other side's. Anything else cannot be lined up and is not evidence of a divergence.
    (An earlier version flattened only the concatenated side, so every output of more than two
    dims "diverged" by inf at the first such module: the token embedding of a sequence model.)
    """
    if len(ra) == len(rb):
        return list(zip(ra, rb))
    flip = len(ra) > len(rb)
    few, many = (rb, ra) if flip else (ra, rb)
    out: List[Tuple[torch.Tensor, torch.Tensor]] = []
    if len(few) == 1:
        ref = few[0]
        if ref.dim() and all(t.shape == ref.shape for t in many):
            out = [(ref, t) for t in many]
        elif ref.dim() and all(t.dim() == ref.dim() for t in many):
            for d in range(ref.dim()):
                if all(t.shape[:d] + t.shape[d + 1:] == ref.shape[:d] + ref.shape[d + 1:] for t in many) \
                        and sum(t.shape[d] for t in many) == ref.shape[d]:
                    out = [(ref, torch.cat(many, d))]
                    break
    elif all(t.dim() for t in few + many):
        try:
            jf, jm = torch.cat(few), torch.cat(many)
        except RuntimeError:
            return []
        if jf.shape == jm.shape:
            out = [(jf, jm)]
    return [(b, a) for a, b in out] if flip else out


def excess(ref: torch.Tensor, other: torch.Tensor, rtol: float, atol: float,
           floor: float = 0.0) -> Tuple[bool, float, float]:
    """(diverges, max |diff|, scale): diff beyond ``atol + rtol * max(max|ref|, floor)``, NaN/inf where
    the other is finite. ``floor``: see ``_FLOOR``."""
    if ref.shape != other.shape:
        return True, float("inf"), 0.0
    if ref.numel() == 0:
        return False, 0.0, 0.0
    finite_ref, finite_other = torch.isfinite(ref), torch.isfinite(other)
    scale = float(ref[finite_ref].abs().max()) if finite_ref.any() else 0.0
    if bool((finite_ref != finite_other).any()):
        return True, float("inf"), scale
    diff = (ref - other).abs()[finite_ref]
    delta = float(diff.max()) if diff.numel() else 0.0
    return delta > atol + rtol * max(scale, floor), delta, scale


# A gradient that cancels to nearly zero (an embedding row whose scatter-add sums terms of both
# signs, a positional table under a batch-centring layer) still carries the rounding of terms as
# large as the other gradients; measured against its own tiny maximum, reordering the sum (micro-
# batches, another kernel) looks like a divergence. Each tensor's scale is therefore taken as at
# least this fraction of the largest scale among the tensors compared together: a real bug (a
# factor, a missing term) moves the large gradients too and is still found there.
_FLOOR = 1e-2


def _floor(tensors: List[torch.Tensor]) -> float:
    finite = [t[torch.isfinite(t)] for t in tensors]
    scales = [float(f.abs().max()) for f in finite if f.numel()]
    return _FLOOR * max(scales) if scales else 0.0


def first_divergence(a: Trace, b: Trace, rtol: float, atol: float) -> Optional[Divergence]:
    """The module where the two runs part ways: the first of ``a``'s forward execution order whose
    output diverges from ``b``; if every output agrees, the first in backward order (the reverse of
    the forward order) whose gradient diverges.

    Backward order because a divergence that enters in backward (a loss scaled differently, a
    backward hook, a custom autograd function) flows from there to every module before it: in
    forward order the first module of the model, typically the token embedding, would always be
    named instead of the module where it entered.
    """
    for name in a.order:
        if name not in b.outputs:
            continue
        pairs = _pairs(a.outputs[name], b.outputs[name])
        for ta, tb in pairs:
            bad, delta, scale = excess(ta, tb, rtol, atol)
            if bad:
                return Divergence(name, a.types.get(name, "?"), "output", delta, scale, a.hints.get(name, ""))
    floor = _floor([t for g in a.grads.values() for t in g.values()])
    for name in [n for n in a.grads if n not in a.order] + a.order[::-1]:
        ga, gb = a.grads.get(name, {}), b.grads.get(name, {})
        for pn, ta in ga.items():
            tb = gb.get(pn)
            if tb is None:
                return Divergence(name, a.types.get(name, "?"), f"gradient of {pn} (missing in the other run)",
                                  float("inf"), 0.0, a.hints.get(name, ""))
            bad, delta, scale = excess(ta, tb, rtol, atol, floor)
            if bad:
                return Divergence(name, a.types.get(name, "?"), f"gradient of {pn}", delta, scale, a.hints.get(name, ""))
    return None


# Tolerances relative to the largest reference magnitude of each tensor (a reordered sum of n terms
# loses about n * eps relative to that scale; these leave room for batch sizes in unit tests).
_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def default_rtol(dtype: torch.dtype) -> float:
    return _RTOL.get(dtype, 1e-4)


def compare_tensors(named_ref: List[Tuple[str, torch.Tensor]], named_other: Dict[str, torch.Tensor],
                    rtol: Optional[float], atol: float) -> Tuple[int, List[str]]:
    """Per-tensor comparison: (how many compared, evidence lines for those beyond tolerance)."""
    lines = []
    # Each reference copied to the host once: for the per-dtype floors and for the comparison.
    refs = [(name, ref.dtype, ref.detach().double().cpu()) for name, ref in named_ref]
    floors = {dtype: _floor([r for _, d, r in refs if d == dtype]) for dtype in {d for _, d, _ in refs}}
    for name, dtype, ref in refs:
        other = named_other.get(name)
        if other is None:
            lines.append(f"{name}: missing in the second run")
            continue
        tol = default_rtol(dtype) if rtol is None else rtol
        floor = floors[dtype]
        bad, delta, scale = excess(ref, other.detach().double().cpu(), tol, atol, floor)
        if bad:
            lines.append(f"{name}: max |diff| {delta:.3g} (max |reference| {scale:.3g}, "
                         f"allowed {atol + tol * max(scale, floor):.3g})")
    return len(named_ref), lines


def best_scale(ref: List[torch.Tensor], other: List[torch.Tensor]) -> Optional[float]:
    """The factor c minimising |other - c * ref| over all tensors (None when ref is all zero)."""
    num = sum(float((r.double() * o.double()).sum()) for r, o in zip(ref, other) if r.shape == o.shape)
    den = sum(float((r.double() ** 2).sum()) for r in ref)
    return num / den if den > 0 else None
