"""Custom backward: analytical Jacobians against central finite differences, in float64.

A hand-written ``torch.autograd.Function`` whose backward misses a factor, flips a sign, or
is right only for some shapes trains, badly. The check runs on a float64 **copy** of the module
(the user's module, its grads and dtype are never touched) in eval mode, or on a plain callable
(``MyFunction.apply``), with float64 copies of the floating inputs. For every floating input and
every trainable parameter of the copy it builds both Jacobians, analytical (one backward per
output element) and numerical (two forwards per input element, step ``eps``), and reports the
largest mismatch of each, the way ``torch.autograd.gradcheck`` decides (``|A - N| <= atol +
rtol * |N|``) but per input and parameter.

Cost: ``2 * (input + parameter elements)`` forwards and one backward per output element; the
inputs must be small (at most ``MAX_ELEMENTS`` elements to perturb and output elements in all).
"""

from typing import Any, Callable, List, Tuple

import torch
from torch import nn

from ..core import calling, trees
from ..core.results import GradcheckResult, JacobianMismatch
from ..core.state import rng_guard

__unittest = True

MAX_ELEMENTS = 4096


def _flat_output(fn: Callable, args: Any) -> torch.Tensor:
    out = calling.call(fn, args) if not isinstance(fn, nn.Module) else calling.call(fn, args)
    leaves = [t for _, t in trees.tensor_leaves(out) if t.is_floating_point()]
    if not leaves:
        raise ValueError("the output holds no floating tensor to differentiate")
    return torch.cat([t.reshape(-1) for t in leaves])


def check_gradcheck(module_or_function: Any, inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
                    rtol: float = 1e-3, parameters: bool = True, seed: int = 0) -> GradcheckResult:
    """Compare analytical and numerical Jacobians per input and parameter (see the module docstring)."""
    if not callable(module_or_function):
        raise TypeError(f"module_or_function must be an nn.Module or a callable, got {type(module_or_function).__name__}")
    calling.check_inputs(inputs)
    for name, v in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        calling.check_tolerance(v, name)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    is_module = isinstance(module_or_function, nn.Module)
    if is_module:
        original, _ = calling.unwrap(module_or_function)
        fn, _ = calling.deep_copy(original)
        fn = fn.double().eval()
        label = calling.model_name(original)
    else:
        fn = module_or_function
        owner = getattr(fn, "__self__", None)
        label = (f"{owner.__name__}.{fn.__name__}" if isinstance(owner, type) else
                 getattr(fn, "__qualname__", None) or type(fn).__name__)
    gen = torch.Generator().manual_seed(seed)
    x = calling.resolve(inputs, gen, "inputs")
    x = trees.map_tensors(lambda t: t.detach().clone().double() if t.is_floating_point() else t.detach().clone(), x)
    targets: List[Tuple[str, torch.Tensor]] = [("input" + trees.format_path(p) if p else "input", t)
                                               for p, t in trees.tensor_leaves(x) if t.is_floating_point()]
    if is_module and parameters:
        targets += [(f"param {n}", p) for n, p in fn.named_parameters() if p.requires_grad and p.is_floating_point()]
    if not targets:
        raise ValueError("nothing to check: no floating input and no trainable parameter")
    for _, t in targets:
        t.requires_grad_(True)
    forwards = 0
    checked = []
    with rng_guard(seed=seed), torch.enable_grad():
        out = _flat_output(fn, x)
        forwards += 1
        n_in = sum(t.numel() for _, t in targets)
        if n_in + out.numel() > MAX_ELEMENTS:
            raise ValueError(f"inputs too large for a Jacobian check: {n_in:,} elements to perturb and "
                             f"{out.numel():,} output elements (at most {MAX_ELEMENTS:,} in all); pass a smaller input")
        rows = []
        for j in range(out.numel()):
            grads = torch.autograd.grad(out[j], [t for _, t in targets], retain_graph=True, allow_unused=True)
            rows.append([g.reshape(-1) if g is not None else torch.zeros(t.numel(), dtype=torch.float64)
                         for g, (_, t) in zip(grads, targets)])
        with torch.no_grad():
            for k, (name, t) in enumerate(targets):
                analytical = torch.stack([r[k] for r in rows]) if rows else torch.zeros(0, t.numel())
                numerical = torch.zeros_like(analytical)
                flat = t.view(-1)
                for e in range(t.numel()):
                    old = flat[e].item()
                    flat[e] = old + eps
                    plus = _flat_output(fn, x)
                    flat[e] = old - eps
                    minus = _flat_output(fn, x)
                    flat[e] = old
                    forwards += 2
                    numerical[:, e] = (plus - minus) / (2 * eps)
                diff = (analytical - numerical).abs()
                bad = diff > atol + rtol * numerical.abs()
                worst = divmod(int(diff.argmax()), t.numel()) if diff.numel() else (0, 0)
                rel = diff / numerical.abs().clamp_min(1e-12)
                checked.append(JacobianMismatch(
                    name, tuple(t.shape), float(diff.max()) if diff.numel() else 0.0,
                    float(rel[bad].max()) if bad.any() else 0.0, int(bad.sum()), diff.numel(), worst,
                    float(analytical[worst]) if diff.numel() else 0.0, float(numerical[worst]) if diff.numel() else 0.0))
    return GradcheckResult(label, tuple(checked), atol, rtol, eps, forwards)
