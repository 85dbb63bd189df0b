"""Autocast and precision parity: lower and higher precision runs agree with float32.

``check_autocast_parity``: a deep copy in eval mode runs once in float32 and once under
``torch.autocast(device_type, dtype)`` (bfloat16 on CPU, float16 on CUDA by default); every
floating output must be finite where float32's is, and within ``atol + rtol * max|float32|``
(``rtol`` 5e-2 for bfloat16, 1e-2 for float16). Then a train-mode copy takes one training step
under autocast (a ``torch.amp.GradScaler`` for float16 on CUDA): the loss and every gradient must
be finite. Catches a hand-written softmax / logsumexp / exp that overflows in half precision (the
library's own ``softmax`` runs in float32 under autocast; ``x.exp()`` does not), a loss computed
in low precision.

``check_precision_parity``: a float64 copy (inputs cast to float64) and the float32 model, eval
mode, forward and backward of a fixed random-weight loss: outputs and gradients must agree within
``rtol`` (1e-4 of the float64 magnitude by default). Catches a ``.half()`` / ``.float()`` /
``dtype=`` hidden in a layer (the module whose output leaves float64 is named) and numerically
unstable arithmetic.

Both name the first module (hooks on both copies) whose output or gradient diverges.
Cost: autocast, two forwards and one autocast forward+backward; precision, two forwards+backwards
(one in float64, about 2x to 4x slower on CPU than float32).

Bounded cost, measured (benchmarks/equivalence_cost.py, 5-layer MLP, batch 32, one thread, shared
machine): autocast 5.5 ms against 3.0 ms for one float32 and one autocast step (1.8x); precision
5.7 ms against 3.0 ms for one float32 and one float64 step (1.9x).
"""

from typing import Any, Callable, List, Optional

import torch
from torch import nn

from ..core import default_loss as _dl
from ..core import calling, divergence, trees
from ..core.default_loss import compute_loss, weighted_sum_loss
from ..core.results import Divergence, EquivalenceResult
from ..core.state import cuda_devices, rng_guard

__unittest = True

_AUTOCAST_RTOL = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


def _float32_model(model: nn.Module) -> nn.Module:
    calling.check_module(model)
    root, _ = calling.unwrap(model)
    floats = [t for t in list(root.parameters()) + list(root.buffers()) if t.is_floating_point()]
    if not floats:
        raise ValueError("model has no floating-point parameter or buffer: there is no precision to compare")
    wrong = sorted({str(t.dtype) for t in floats if t.dtype != torch.float32})
    if wrong:
        raise ValueError(f"model must be float32 to compare precisions; it holds {', '.join(wrong)} tensors")
    return root


def _leaf_lines(ref: Any, other: Any, rtol: float, atol: float) -> List[str]:
    lines = []
    others = dict(trees.tensor_leaves(other))
    for path, r in trees.tensor_leaves(ref):
        if not r.is_floating_point():
            continue
        o = others.get(path)
        where = trees.describe_path(path)
        if o is None:
            lines.append(f"{where}: missing in the second run")
            continue
        bad, delta, scale = divergence.excess(r.detach().double().cpu(), o.detach().double().cpu(), rtol, atol)
        if bad:
            if delta == float("inf"):
                n = int((~torch.isfinite(o)).sum())
                lines.append(f"{where}: {n:,} / {o.numel():,} elements non-finite ({o.dtype}) where float32 is finite")
            else:
                lines.append(f"{where}: max |diff| {delta:.3g} (max |reference| {scale:.3g}, allowed {atol + rtol * scale:.3g})")
    return lines


def check_autocast_parity(model: nn.Module, inputs: Any, target: Any = None, *, dtype: Optional[torch.dtype] = None,
                          loss_fn: Optional[Callable] = None, rtol: Optional[float] = None, atol: float = 0.0,
                          train_step: bool = True, seed: int = 0, output: Any = None) -> EquivalenceResult:
    root = _float32_model(model)
    calling.check_inputs(inputs)
    calling.check_callable(loss_fn, "loss_fn")
    loss_fn = _dl.with_selector(loss_fn, output)
    device = calling.model_device(root)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"autocast parity runs on cpu or cuda; the model is on {device}")
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    if dtype not in _AUTOCAST_RTOL:
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
    rtol = _AUTOCAST_RTOL[dtype] if rtol is None else calling.check_tolerance(rtol, "rtol")
    atol = calling.check_tolerance(atol, "atol")
    with rng_guard(cuda_devices(list(root.parameters())), seed):
        gen = calling.make_generator(seed, device)
        x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
        y = calling.to_device(target, device) if target is not None else None
        ref, _ = calling.deep_copy(root)
        low, _ = calling.deep_copy(root)
        ref.eval(); low.eval()
        outs = {}

        def run_ref() -> None:
            with torch.no_grad():
                outs["ref"] = calling.call(ref, x)

        def run_low() -> None:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
                outs["low"] = calling.call(low, x)

        ta = divergence.trace(ref, run_ref, grads=False)
        tb = divergence.trace(low, run_low, grads=False)
        lines = _leaf_lines(outs["ref"], outs["low"], rtol, atol)
        compared = len([1 for _, t in trees.tensor_leaves(outs["ref"]) if t.is_floating_point()])
        notes: List[str] = []
        if train_step:
            twin, _ = calling.deep_copy(root)
            twin.train()
            for p in twin.parameters():
                p.grad = None
            scaler = torch.amp.GradScaler("cuda") if (dtype == torch.float16 and device.type == "cuda") else None
            with torch.autocast(device.type, dtype=dtype):
                loss = compute_loss(calling.call(twin, x), y, loss_fn, gen)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            compared += 2  # the loss and the gradients
            if not bool(torch.isfinite(loss.detach()).all()):
                lines.append(f"training step: the loss under autocast is {float(loss.detach()):.3g}")
            bad = [n for n, p in twin.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            if bad:
                lines.append(f"training step: non-finite gradients in {len(bad)} parameters: {', '.join(bad[:5])}"
                             + (" (a GradScaler skips such steps; every step here would be skipped)" if scaler else ""))
        div = divergence.first_divergence(ta, tb, rtol, atol) if lines else None
        if lines and div is None:
            notes.append("every module's output agrees; the difference comes from code outside submodules "
                         "(the root's forward) or from the loss")
        if div is not None and div.max_abs_diff == float("inf"):
            notes.append(f"{div.module} produces inf/NaN in {str(dtype).replace('torch.', '')}: an exp, a sum of squares "
                         f"or a hand-written softmax/logsumexp overflows (float16 max 65504, exp overflows above ~11); "
                         f"use torch.softmax / torch.logsumexp (autocast runs them in float32) or subtract the max first")
    return EquivalenceResult("autocast", compared, tuple(lines), div, tuple(notes), rtol=rtol, atol=atol,
                             details=(("dtype", str(dtype)), ("device", device.type)))


def _dtype_leak(t: divergence.Trace):
    """The first module (call order) that receives or returns a non-float64 tensor in the float64 copy."""
    hint = "a hard-coded dtype (.half(), .float(), dtype=torch.float32, torch.tensor(..., dtype=...))"
    previous = None
    for name in t.called:
        if t.in_dtypes.get(name) != torch.float64:
            where = f"after {previous!r}, " if previous else ""
            return (Divergence(name, t.types.get(name, "?"), f"input dtype {t.in_dtypes[name]} in the float64 copy",
                               float("inf"), 0.0, hint),
                    f"{name} ({t.types.get(name)}) receives {t.in_dtypes[name]} when the model is float64: the code that "
                    f"feeds it ({where}in its parent's forward) casts to a fixed dtype; use .to(x.dtype) or drop the cast")
        out = t.dtypes.get(name)
        if out is not None and out != torch.float64:
            return (Divergence(name, t.types.get(name, "?"), f"output dtype {out} in the float64 copy", float("inf"), 0.0, hint),
                    f"{name} ({t.types.get(name)}) returns {out} when the model is float64: its forward casts to a "
                    f"fixed dtype; use .to(x.dtype) or drop the cast")
        previous = name
    return None


def check_precision_parity(model: nn.Module, inputs: Any, *, rtol: float = 1e-4, atol: float = 0.0,
                           seed: int = 0) -> EquivalenceResult:
    root = _float32_model(model)
    calling.check_inputs(inputs)
    rtol = calling.check_tolerance(rtol, "rtol")
    atol = calling.check_tolerance(atol, "atol")
    device = calling.model_device(root)
    with rng_guard(cuda_devices(list(root.parameters())), seed):
        gen = calling.make_generator(seed, device)
        x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
        x64 = trees.map_tensors(lambda t: t.double() if t.is_floating_point() else t, x)
        m32, _ = calling.deep_copy(root)
        m64, _ = calling.deep_copy(root)
        m64 = m64.double()
        m32.eval(); m64.eval()
        outs = {}

        def run(m: nn.Module, inp: Any, key: str) -> Callable[[], None]:
            def go() -> None:
                out = calling.call(m, inp)
                outs[key] = out
                g = calling.make_generator(seed + 1, device)
                loss = weighted_sum_loss(trees.map_tensors(lambda t: t.double() if t.is_floating_point() else t, out), g)
                if loss.requires_grad:
                    loss.backward()
            return go

        t64 = divergence.trace(m64, run(m64, x64, "64"), raising=False)
        t32 = divergence.trace(m32, run(m32, x, "32"))
    notes: List[str] = []
    leaked = _dtype_leak(t64)
    div = None
    if t64.error or leaked is not None:
        lines = [f"the float64 copy {'raised ' + t64.error if t64.error else 'left float64'}"]
        if leaked is not None:
            div, note = leaked
            notes.append(note)
        return EquivalenceResult("precision", 1, tuple(lines), div, tuple(notes), rtol=rtol, atol=atol)
    lines = _leaf_lines(outs["64"], outs["32"], rtol, atol)
    g64 = [(n, p.grad) for n, p in m64.named_parameters() if p.grad is not None]
    g32 = {n: p.grad for n, p in m32.named_parameters() if p.grad is not None}
    compared, glines = divergence.compare_tensors(g64, g32, rtol, atol)
    lines += [f"gradient of {line}" for line in glines]
    if lines:
        div = divergence.first_divergence(t64, t32, rtol, atol)
    return EquivalenceResult("precision", compared + len(trees.tensor_leaves(outs["64"])), tuple(lines), div,
                             tuple(notes), rtol=rtol, atol=atol)
