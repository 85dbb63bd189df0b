"""Shared machinery of the probing checks (causality, masks, single samples, inputs used).

Each of them runs the model in eval mode inside the state guard, changes part of the inputs and
compares outputs with tolerances that follow the dtype.
"""

from collections.abc import Mapping
from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from ..core import calling, trees

__unittest = True

# (rtol, atol relative to the output's largest magnitude) per dtype: batched and unbatched
# kernels legitimately round differently.
_TOL = {torch.float64: (1e-7, 1e-9), torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-3),
        torch.bfloat16: (2e-2, 1e-2)}


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    return _TOL.get(dtype, (1e-4, 1e-5))


def prepare(model: Any, inputs: Any, seed: int = 0) -> Tuple[nn.Module, torch.device, Any, torch.Generator]:
    calling.check_module(model)
    calling.check_inputs(inputs)
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    gen = calling.make_generator(seed, device)
    x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
    return module, device, x, torch.Generator().manual_seed(seed)


def input_name(path: Tuple[Any, ...], inputs: Any) -> str:
    return "inputs" + trees.format_path(path) if path else "inputs"


def find_leaf(inputs: Any, key: Any, argname: str) -> Tuple[Any, ...]:
    """The path of the input leaf named by ``key`` (a dict key, a positional index or a path tuple)."""
    paths = [p for p, _ in trees.tensor_leaves(inputs)]
    path = tuple(key) if isinstance(key, tuple) else (key,)
    if isinstance(inputs, torch.Tensor) and key in (0, None):
        return ()
    if path in paths:
        return path
    shown = ", ".join(repr(p[0] if len(p) == 1 else p) for p in paths) or "none"
    raise ValueError(f"{argname}={key!r} names no tensor of the inputs (tensor leaves: {shown})")


def get(inputs: Any, path: Tuple[Any, ...]) -> torch.Tensor:
    for key in path:
        inputs = inputs[key]
    return inputs


def replace(inputs: Any, values: dict) -> Any:
    """``inputs`` with the leaves at the given paths replaced."""
    return trees.map_with_path(lambda p, leaf: values.get(p, leaf), inputs)


def vocab_bound(module: nn.Module, ids: torch.Tensor, vocab_size: Optional[int]) -> int:
    """How far integer ids may be perturbed: ``vocab_size``, the first ``nn.Embedding``, or max id + 1."""
    if vocab_size is not None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
        return vocab_size
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return max(int(ids.max()) + 1 if ids.numel() else 2, 2)


def perturb(t: torch.Tensor, gen: torch.Generator, bound: int = 2) -> torch.Tensor:
    """A tensor that differs from ``t`` at every element: ids stay in ``[0, bound)``."""
    if t.dtype == torch.bool:
        return ~t
    if t.is_floating_point() or t.is_complex():
        noise = torch.randn(t.shape, generator=gen).to(device=t.device, dtype=t.dtype)
        return t + noise + noise.sign() * 0.5
    step = torch.randint(1, bound, t.shape, generator=gen).to(t.device)
    return ((t.long() + step) % bound).to(t.dtype)


def output_leaves(output: Any, select: Any = None) -> List[Tuple[str, torch.Tensor]]:
    """Floating output leaves to compare; ``select`` is a key, a callable or None (all of them)."""
    if select is not None:
        output = select(output) if callable(select) else output[select]
    return [(trees.describe_path(p), t) for p, t in trees.tensor_leaves(output)
            if t.is_floating_point() or t.is_complex()]


def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: ``b`` is not close to ``a`` (NaN equal to NaN), tolerance from the dtype."""
    rtol, atol = tolerance(a.dtype)
    scale = float(a.detach().abs().nan_to_num(0, 0, 0).amax()) if a.numel() else 0.0
    return ~torch.isclose(b.detach(), a.detach(), rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True)


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)
