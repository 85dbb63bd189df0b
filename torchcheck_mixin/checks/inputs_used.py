"""Inputs used: every input tensor must influence the output.

A forward that reads a cached tensor (``self.x``) instead of its argument, a two-tower model
whose second tower never reaches the head, an ``attention_mask`` accepted and ignored: no error,
no warning. Every tensor leaf of the inputs (each positional argument, each dict key, nested
ones included) must change the output:

* floating inputs: the gradient of a random-weighted sum of every floating output with respect
  to the input is non-zero somewhere; when it is not (the input only reaches the output through
  a comparison or an index), the input is perturbed by noise as below;
* integer and boolean inputs (ids, masks): the values are perturbed (ids inside ``[0, vocab_size)``
  or ``[0, max + 1)``, booleans flipped) and some output must change.

``allow_unused`` lists inputs that may legitimately be ignored (keys, positional indices or
paths). Cost: one forward and backward, plus one forward per integer input or unused float
input. Eval mode.
"""

from typing import Any, List, Tuple

import torch
from torch import nn

from ..core import calling, trees
from ..core.results import InputsUsedResult
from ..core.state import ModelGuard
from . import probing

__unittest = True


def _changed(a: Any, b: Any) -> bool:
    la, lb = trees.tensor_leaves(a), dict(trees.tensor_leaves(b))
    for p, t in la:
        u = lb.get(p)
        if u is None or u.shape != t.shape:
            return True
        d = probing.differs(t, u) if (t.is_floating_point() or t.is_complex()) else t != u
        if d.any():
            return True
    return False


def check_inputs_used(model: nn.Module, inputs: Any, *, allow_unused: Any = (), vocab_size: Any = None,
                      seed: int = 0) -> InputsUsedResult:
    """Check that each input tensor influences the output (see the module docstring)."""
    if isinstance(allow_unused, (str, int)):
        allow_unused = [allow_unused]
    if not isinstance(allow_unused, (list, tuple, set, frozenset)):
        raise TypeError(f"allow_unused must be a list of input keys/indices, got {type(allow_unused).__name__}")
    module, _, x, gen = probing.prepare(model, inputs, seed)
    leaves = trees.tensor_leaves(x)
    if not leaves:
        raise ValueError("inputs hold no tensor: nothing to check")
    allowed = {probing.find_leaf(x, k, "allow_unused") for k in allow_unused}
    used: List[Tuple[str, str]] = []
    unused: List[Tuple[str, str]] = []
    probe = {p for p, _ in leaves if p not in allowed}
    with ModelGuard(module, seed=seed, extra=x):
        module.eval()
        floats = {p: t.clone().requires_grad_(True) for p, t in leaves if p in probe and t.is_floating_point()}
        xg = probing.replace(x, floats)
        with torch.enable_grad():
            out = calling.call(module, xg)
            outs = [t for _, t in trees.tensor_leaves(out) if t.is_floating_point() and t.requires_grad]
            grads = [None] * len(floats)
            if outs and floats:
                total = sum((o * torch.randn(o.shape, generator=gen).to(o)).sum() for o in outs)
                grads = torch.autograd.grad(total, list(floats.values()), allow_unused=True)
        with torch.no_grad():
            base = calling.call(module, x)
            for p, t in leaves:
                if p not in probe:
                    continue
                name = probing.input_name(p, x)
                if t.is_floating_point():
                    g = grads[list(floats).index(p)]
                    if g is not None and bool((g != 0).any()):
                        used.append((name, "gradient"))
                        continue
                    why = "gradient None" if g is None else "gradient zero"
                else:
                    why = "perturbed values"
                # ids stay below vocab_size, else below max + 1 (a 0/1 mask flips; ids stay valid)
                bound = 2
                if not (t.is_floating_point() or t.dtype == torch.bool):
                    bound = probing.vocab_bound(module, t, vocab_size)
                    if vocab_size is None:
                        bound = max(min(bound, int(t.max()) + 1 if t.numel() else 2), 2)
                changed = _changed(base, calling.call(module, probing.replace(x, {p: probing.perturb(t, gen, bound)})))
                if changed:
                    used.append((name, "perturbation"))
                else:
                    unused.append((name, f"{why}; output unchanged when {tuple(t.shape)} {t.dtype} values were perturbed"))
    return InputsUsedResult(calling.model_name(module), tuple(used), tuple(unused),
                            tuple(probing.input_name(p, x) for p in sorted(allowed, key=repr)))
