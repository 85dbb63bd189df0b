"""Plain-torch controls: what is true of a real model, found without the library.

The real-model tests never hand-write an expected verdict. Each is read off one of these controls,
and the test asserts that the library's verdict agrees:

* ``trained_parameters``: two real optimizer steps (the case's optimizer, AdamW unless it says
  otherwise) on a float64 copy, with plain ``loss.backward()``; a parameter is updated when at some
  step its gradient is genuine (larger than ``NOISE`` times the step's largest gradient: float64
  rounding noise is ~1e-16 of it, genuine gradients are many orders above) and its value moved.
  Two steps, because a parameter downstream of a zero-initialised partner (LoRA ``A`` behind
  ``B = 0``, a residual branch behind a zero BN weight) has an exactly-zero first gradient and
  trains from the second step on. float64, because in float32 a gradient that is exactly zero in
  exact arithmetic (a key bias under softmax, a bias before BatchNorm) comes out as 1e-11 noise,
  and AdamW's normalised step would move it by a full learning rate.
* ``round_trip_reproduces``: a real ``torch.save`` of the state dict, a rebuild from the config
  with other random weights, ``load_state_dict(strict=True)``, and a bitwise comparison of the
  eval outputs.
* ``deterministic``: two eval forwards, bitwise equal.
* ``batch_independent``: each sample run alone against its row of the batched eval output (the
  overlapping region only, for outputs padded to the batch's longest sample).
* ``parameter_counts``: ``model.parameters()`` element counts (tied weights once).
* ``resolve``: what an ``allow_not_updated`` / ``expect_frozen`` list names (exact names, globs,
  submodule prefixes), written independently of the library's own matching.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import random
from typing import Any, Dict, Iterable, List, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NOISE = 1e-12  # relative to the largest gradient of the step


def call(model: nn.Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _cast(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _cast(v, dtype) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_cast(v, dtype) for v in x)
    return x


def leaves(value: Any) -> List[torch.Tensor]:
    """Tensor leaves of an output (dicts, ModelOutputs, tuples, lists); other objects skipped."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):  # ModelOutput is an OrderedDict
        return [t for v in value.values() for t in leaves(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in leaves(v)]
    return []


def select(output: Any, selector: Any) -> Any:
    if selector is None:
        return output
    if callable(selector):
        return selector(output)
    return output[selector]


def training_loss(case, output: Any, target: Any, generator: torch.Generator) -> torch.Tensor:
    """The loss a user trains this case with (the precedence the library documents)."""
    out = select(output, case.output)
    if case.loss_fn is not None:
        return case.loss_fn(out, target) if target is not None else case.loss_fn(out)
    loss = getattr(out, "loss", None) if case.output is None else None
    if isinstance(loss, torch.Tensor):
        return loss  # a Hugging Face ModelOutput computed from the labels in the inputs
    if target is not None:
        if target.is_floating_point():
            return F.mse_loss(out, target.to(out.dtype))
        return F.cross_entropy(out, target)
    return sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in leaves(out) if t.is_floating_point())


def parameter_names(model: nn.Module) -> List[str]:
    return [n.replace("_orig_mod.", "") for n, _ in model.named_parameters()]


def trainable_names(model: nn.Module) -> Set[str]:
    return {n.replace("_orig_mod.", "") for n, p in model.named_parameters() if p.requires_grad}


def frozen_names(model: nn.Module) -> Set[str]:
    return {n.replace("_orig_mod.", "") for n, p in model.named_parameters() if not p.requires_grad}


def resolve(model: nn.Module, entries: Iterable[str]) -> Set[str]:
    names = parameter_names(model)
    hits: Set[str] = set()
    for entry in entries:
        prefix = entry.rstrip(".") + "."
        found = {n for n in names if n == entry or n.startswith(prefix) or fnmatch.fnmatchcase(n, entry)}
        if not found:
            raise AssertionError(f"catalogue entry {entry!r} names no parameter")
        hits |= found
    return hits


def _grad_size(g: torch.Tensor) -> float:
    if g.is_sparse:
        g = g.coalesce().values()
    return float(g.abs().max()) if g.numel() else 0.0


def trained_parameters(case, steps: int = 2, dtype: torch.dtype = torch.float64) -> Dict[str, Any]:
    """Which trainable parameters ``steps`` real optimizer steps train (see the module docstring).

    Returns ``{"updated": set, "not_updated": set, "first_step_zero": set, "relative": {name: r}}``
    where ``relative`` is each parameter's largest gradient relative to its step's largest one.
    """
    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        model = (case.oracle_build or case.build)(0).to(dtype)
        model.train()
        named = [(n.replace("_orig_mod.", ""), p) for n, p in model.named_parameters() if p.requires_grad]
        before = {n: p.detach().clone() for n, p in named}
        optimizer = case.optimizer([p for _, p in named])
        genuine: Set[str] = set()
        first_zero: Set[str] = set()
        relative: Dict[str, float] = {n: 0.0 for n, _ in named}
        target = case.target() if case.target is not None else None
        for step in range(steps):
            torch.manual_seed(step)
            np.random.seed(step)
            random.seed(step)
            optimizer.zero_grad(set_to_none=True)
            out = call(model, _cast(case.inputs(), dtype))
            loss = training_loss(case, out, _cast(target, dtype), torch.Generator().manual_seed(step))
            loss.backward()
            sizes = {n: (_grad_size(p.grad) if p.grad is not None else 0.0) for n, p in named}
            top = max(sizes.values()) or 1.0
            for n, s in sizes.items():
                relative[n] = max(relative[n], s / top)
                if s > NOISE * top:
                    genuine.add(n)
                elif step == 0:
                    first_zero.add(n)
            optimizer.step()
        moved = {n for n, p in named if not torch.equal(p.detach(), before[n])}
        updated = genuine & moved
        return {"updated": updated, "not_updated": {n for n, _ in named} - updated,
                "first_step_zero": first_zero & updated, "relative": relative}
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])


def _outputs_equal(a: Any, b: Any) -> bool:
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(la, lb))


def round_trip_reproduces(case) -> bool:
    """Real save / rebuild from config with other weights / load_state_dict(strict=True): same outputs."""
    model = case.build(0).eval()
    x = case.inputs()
    with torch.no_grad():
        expected = call(model, x)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        twin = case.build(1)
        twin.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
        twin.eval()
        return _outputs_equal(expected, call(twin, x))


def deterministic(case) -> bool:
    model = case.build(0).eval()
    x = case.inputs()
    with torch.no_grad():
        return _outputs_equal(call(model, x), call(model, x))


def _row(x: Any, i: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[i:i + 1]
    if isinstance(x, dict):
        return {k: _row(v, i) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_row(v, i) for v in x)
    return x


def batch_independent(case, atol: float = 1e-5) -> bool:
    """Sample i alone gives row i of the batched output (eval mode, batched leaves only)."""
    model = case.build(0).eval()
    x = case.inputs()
    with torch.no_grad():
        full = [t for t in leaves(call(model, x)) if t.dim() and t.is_floating_point()]
        n = full[0].shape[0]
        for i in range(n):
            alone = [t for t in leaves(call(model, _row(x, i))) if t.dim() and t.is_floating_point()]
            for a, b in zip(full, alone):
                if a.shape[0] != n or b.shape[0] != 1 or a.dim() != b.dim():
                    continue
                region = tuple(slice(0, min(p, q)) for p, q in zip(a.shape[1:], b.shape[1:]))
                if not torch.allclose(a[i][region], b[0][region], atol=atol, rtol=1e-4):
                    return False
    return True


def parameter_counts(model: nn.Module) -> Tuple[int, int, int]:
    """(trainable, frozen, total) element counts, tied weights once."""
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    frozen = sum(p.numel() for p in params if not p.requires_grad)
    return trainable, frozen, trainable + frozen
