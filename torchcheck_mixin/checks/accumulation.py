"""Gradient accumulation: k micro-batches, accumulated, give the full batch's gradients.

Two deep copies of the model run in train mode (dropout modules and nn.MultiheadAttention, whose
attention dropout is functional, switched to eval in both copies,
since a mask drawn per micro-batch can never match one drawn for the whole batch), under a
forked, seeded RNG:

* full: one forward and backward of the whole batch with the loss (``loss_fn``, or the default
  loss against ``target``, or, with neither, a mean-squared error against a random target drawn
  once for the whole batch and sliced with it);
* accumulated: the batch cut along dim 0 into ``micro_batches`` equal slices; either the user's
  ``step_fn(model, micro_batches)`` (a list of ``(inputs, target)`` pairs; it runs forward,
  loss and backward as the user's loop does, never ``optimizer.step``), or by default each slice's
  loss divided by ``micro_batches`` and backpropagated.

Each parameter's accumulated gradient must equal the full-batch one within ``atol + rtol *
max|full|`` (``rtol`` by dtype: 1e-4 float32, 1e-9 float64). On failure the message gives the
overall factor between the two (k: a summed loss or a missing ``/ k``; only the last micro-batch:
``zero_grad`` inside the loop), the first diverging module (hooks on both copies), and, where
BatchNorm runs in train mode, whether BatchNorm alone explains it (statistics per micro-batch:
expected, not a bug; ``batchnorm="eval"`` checks the rest).

Cost: one full-batch forward+backward plus ``micro_batches`` micro-batch forwards+backwards (about
2x one training step); on failure, up to two more of each for the diagnosis.

Bounded cost, measured (benchmarks/equivalence_cost.py, 5-layer MLP, batch 32, k=2, one thread,
shared machine): 9.1 ms against 3.0 ms for the k micro-batch steps plus one full-batch step it
repeats (3.1x: two deep copies and the traces).
"""

import dataclasses
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..core import default_loss as _dl
from ..core import calling, divergence, trees
from ..core.default_loss import compute_loss
from ..core.results import EquivalenceResult
from ..core.state import rng_guard, cuda_devices

__unittest = True

_BN = nn.modules.batchnorm._BatchNorm


def batch_size(inputs: Any, argname: str = "inputs") -> int:
    sizes = {t.shape[0] for _, t in trees.tensor_leaves(inputs) if t.dim() >= 1}
    if not sizes:
        raise ValueError(f"{argname} holds no tensor with a batch dimension to split into micro-batches")
    return max(sizes)


def split(value: Any, batch: int, k: int) -> List[Any]:
    size = batch // k
    return [trees.map_tensors(lambda t, i=i: t[i * size:(i + 1) * size] if t.dim() >= 1 and t.shape[0] == batch else t,
                              value) for i in range(k)]


def _prepare(model: nn.Module, bn_eval: bool) -> Tuple[nn.Module, List[str]]:
    twin, _ = calling.deep_copy(model)
    twin.train()
    bns = []
    for name, m in twin.named_modules():
        # nn.MultiheadAttention draws its attention dropout functionally (no Dropout submodule),
        # so it is switched to eval too; its eval mode changes nothing else while grad is enabled.
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.MultiheadAttention)):
            m.eval()
        if isinstance(m, _BN):
            bns.append(name or "<root>")
            if bn_eval:
                m.eval()
    for p in twin.parameters():
        p.grad = None
    return twin, bns


def _grads(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    return [(n, p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()
            if p.requires_grad]


def check_accumulation_equivalent(model: nn.Module, inputs: Any, target: Any = None, *, micro_batches: int = 2,
                                  loss_fn: Optional[Callable] = None, step_fn: Optional[Callable] = None,
                                  rtol: Optional[float] = None, atol: float = 0.0, batchnorm: str = "explain",
                                  seed: int = 0, output: Any = None) -> EquivalenceResult:
    calling.check_module(model)
    calling.check_inputs(inputs)
    calling.check_callable(loss_fn, "loss_fn")
    loss_fn = _dl.with_selector(loss_fn, output)
    calling.check_callable(step_fn, "step_fn")
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int):
        raise TypeError(f"micro_batches must be an int >= 2, got {type(micro_batches).__name__}")
    if micro_batches < 2:
        raise ValueError(f"micro_batches must be >= 2, got {micro_batches}")
    if rtol is not None:
        rtol = calling.check_tolerance(rtol, "rtol")
    atol = calling.check_tolerance(atol, "atol")
    if batchnorm not in ("explain", "eval"):
        raise ValueError(f"batchnorm must be 'explain' or 'eval', got {batchnorm!r}")
    root, _ = calling.unwrap(model)
    if not any(p.requires_grad for p in root.parameters()):
        raise ValueError("model has no parameter that requires grad: there is no gradient to accumulate")
    device = calling.model_device(root)
    k = micro_batches
    with rng_guard(cuda_devices(list(root.parameters())), seed):
        gen = calling.make_generator(seed, device)
        x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
        b = batch_size(x)
        if b % k:
            raise ValueError(f"the batch ({b} samples) does not split into micro_batches={k} equal slices")
        y = calling.to_device(target, device) if target is not None else None

        ref_y = y
        default = loss_fn is None or isinstance(loss_fn, _dl.Selected) and loss_fn.loss_fn is None
        if ref_y is None and default:  # a mean loss whose target slices with the batch
            probe, _ = _prepare(root, True)
            with torch.no_grad():
                out = calling.call(probe, x)
                if isinstance(loss_fn, _dl.Selected):
                    out = _dl.select_output(out, loss_fn.selector)
            ref_y = trees.map_tensors(lambda t: torch.randn(t.shape, generator=gen, device=gen.device).to(t.device, t.dtype)
                                      if t.is_floating_point() else t, out)
            del probe, out

        def run(bn_eval: bool, only_last: bool = False):
            full, bns = _prepare(root, bn_eval)
            accum, _ = _prepare(root, bn_eval)

            def full_step() -> None:
                compute_loss(calling.call(full, x), ref_y, loss_fn, gen).backward()

            xs = split(x, b, k)
            ys = split(ref_y, b, k) if ref_y is not None else [None] * k
            pairs = list(zip(xs, ys))
            if only_last:
                pairs = pairs[-1:]

            def accum_step() -> None:
                if step_fn is not None and not only_last:
                    step_fn(accum, [(xi, yi) for xi, yi in pairs])
                    return
                for xi, yi in pairs:
                    (compute_loss(calling.call(accum, xi), yi, loss_fn, gen) / k).backward()

            ta = divergence.trace(full, full_step)
            tb = divergence.trace(accum, accum_step)
            gf, ga = _grads(full), dict(_grads(accum))
            return gf, ga, ta, tb, bns

        gf, ga, ta, tb, bns = run(batchnorm == "eval")
        compared, lines = divergence.compare_tensors(gf, ga, rtol, atol)
        notes: List[str] = []
        expected = ""
        div = None
        if lines:
            tol = divergence.default_rtol(gf[0][1].dtype) if rtol is None else rtol
            div = divergence.first_divergence(ta, tb, tol, atol)
            scale = divergence.best_scale([g for _, g in gf], [ga[n] for n, _ in gf])
            if scale is not None and abs(scale - k) < 0.05 * k:
                notes.append(f"the accumulated gradients are {scale:.3g}x the full batch's (micro_batches={k}): the "
                             f"step does not divide each micro-batch's loss by {k} (loss / micro_batches before "
                             f"backward)")
            elif scale is not None and abs(scale - 1 / k) < 0.05 / k:
                notes.append(f"the accumulated gradients are 1/{k} of the full batch's (micro_batches={k}): the loss "
                             f"sums over samples (reduction='sum') while the step divides it by {k}; use "
                             f"reduction='mean' (or drop the / {k})")
            elif scale is not None and abs(scale - 1) > 0.05 and not divergence.compare_tensors(
                    [(n, g * scale) for n, g in gf], ga, 1e-3, 1e-12)[1]:
                notes.append(f"the accumulated gradients are {scale:.3g}x the full batch's, in every parameter: the "
                             f"step scales its loss differently from the full-batch loss, typically a loss that sums "
                             f"where it should average (reduction='sum'); use reduction='mean' and divide by {k}")
            _, last_d, _, _, _ = run(batchnorm == "eval", only_last=True)
            for c in (1.0, float(k)):
                if not divergence.compare_tensors([(n, last_d[n] * c) for n, _ in gf], ga, 1e-4, 1e-12)[1]:
                    notes.append("only the last micro-batch's gradient survives: zero_grad (model.zero_grad() or "
                                 "optimizer.zero_grad()) runs inside the accumulation loop; call it once per "
                                 "optimizer step, before the first micro-batch")
                    break
            if notes and div is not None:  # a whole-step scaling bug: the per-layer hint would mislead
                div = dataclasses.replace(div, hint="")
            if bns and batchnorm == "explain":
                gf2, ga2, _, _, _ = run(True)
                if not divergence.compare_tensors(gf2, ga2, rtol, atol)[1]:
                    expected = (f"BatchNorm in train mode ({', '.join(bns[:3])}{', ...' if len(bns) > 3 else ''}) "
                                f"normalises each micro-batch with its own statistics, so accumulated gradients "
                                f"differ from the full batch's by design; with BatchNorm in eval mode they agree")
    return EquivalenceResult("accumulation", compared, tuple(lines), div, tuple(notes),
                             rtol=rtol if rtol is not None else divergence.default_rtol(gf[0][1].dtype), atol=atol,
                             details=(("micro_batches", k), ("batch", b), ("batchnorm", tuple(bns))),
                             expected_difference=expected)
