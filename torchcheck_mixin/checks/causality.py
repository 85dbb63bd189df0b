"""Causality: the output at position t must not change when inputs after t change.

A decoder that lost its causal mask, a mask built transposed (``triu`` where ``tril`` was
meant), a "causal" convolution padded on both sides: all of them train well and look at the
answer. The check perturbs one input position ``k`` at a time (token ids to other ids inside the
vocabulary, float features by Gaussian noise), with every probe stacked along the batch, and
requires every output position ``t < k`` to stay the same (tolerances from the dtype).

Cost: one forward of a batch ``B * (K + 1)`` rows (the original and ``K`` probes, ``K`` = every
position for sequences up to ``MAX_PROBES`` long, else a spread of ``MAX_PROBES`` positions),
or ``K + 1`` forwards with ``batched=False``. Eval mode, no graph.
"""

from collections.abc import Mapping
from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from ..core import calling, trees
from ..core.results import CausalityResult
from ..core.state import ModelGuard
from . import probing

__unittest = True

MAX_PROBES = 16


def _positions(length: int) -> List[int]:
    """Input positions to perturb: position 0 can leak into nothing, so start at 1."""
    if length - 1 <= MAX_PROBES:
        return list(range(1, length))
    step = (length - 2) / (MAX_PROBES - 1)
    return sorted({1 + round(k * step) for k in range(MAX_PROBES)})


def _default_input(x: Any) -> Tuple[Any, ...]:
    if isinstance(x, Mapping):
        for key in ("input_ids", "inputs_embeds", "x", "input"):
            if isinstance(x.get(key), torch.Tensor):
                return (key,)
    leaves = trees.tensor_leaves(x)
    if not leaves:
        raise ValueError("inputs hold no tensor to perturb")
    return leaves[0][0]


def check_causal(model: nn.Module, inputs: Any, *, dim: int = 1, input: Any = None, output: Any = None,
                 vocab_size: Optional[int] = None, batched: bool = True, seed: int = 0) -> CausalityResult:
    """Check that no output position depends on a later input position (see the module docstring).

    Args:
        dim: the sequence dimension, of the perturbed input and of the outputs (batch first).
        input: which input leaf carries the sequence (a dict key or positional index); default
            ``input_ids`` for dicts, else the first tensor. Other leaves are repeated unchanged.
        output: a key or a callable selecting the output to check (default: every floating output
            leaf whose dimension ``dim`` has the sequence length, e.g. ``logits``).
        vocab_size: bound for perturbed ids (default: the model's first ``nn.Embedding``, else max id + 1).
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an int >= 1 (the sequence dimension after the batch), got {dim!r}")
    module, _, x, gen = probing.prepare(model, inputs, seed)
    path = _default_input(x) if input is None else probing.find_leaf(x, input, "input")
    seq = probing.get(x, path)
    where = probing.input_name(path, x)
    if seq.dim() <= dim:
        raise ValueError(f"{where} has shape {tuple(seq.shape)}: no sequence dimension dim={dim} to probe")
    length, batch = seq.shape[dim], seq.shape[0]
    if length < 2:
        raise ValueError(f"{where} has sequence length {length} at dim={dim}; at least 2 positions are needed")
    bound = probing.vocab_bound(module, seq, vocab_size) if not (seq.is_floating_point() or seq.dtype == torch.bool) else 2
    positions = _positions(length)
    probes = []
    for k in positions:
        p = seq.clone()
        idx = [slice(None)] * seq.dim()
        idx[dim] = k
        p[tuple(idx)] = probing.perturb(seq[tuple(idx)], gen, bound)
        probes.append(p)
    repeat = len(positions) + 1
    rows = lambda t: t.dim() > 0 and t.shape[0] == batch  # noqa: E731
    leaks: List[Tuple[int, int, str, float]] = []
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        if batched:
            big = trees.map_with_path(
                lambda p, leaf: (torch.cat([seq] + probes, 0) if p == path else
                                 leaf.repeat(repeat, *([1] * (leaf.dim() - 1))) if isinstance(leaf, torch.Tensor)
                                 and rows(leaf) else leaf), x)
            outs = probing.output_leaves(calling.call(module, big), output)
            chunks = [[(n, t.reshape(repeat, batch, *t.shape[1:])[r]) for n, t in outs] for r in range(repeat)]
            forwards = 1
        else:
            chunks = [probing.output_leaves(calling.call(module, probing.replace(x, {path: v})), output)
                      for v in [seq] + probes]
            forwards = repeat
    base = chunks[0]
    usable = [(i, n) for i, (n, t) in enumerate(base) if t.dim() > dim and t.shape[dim] == length]
    if not usable:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in base) or "no floating output"
        raise ValueError(f"no output has the sequence length {length} at dim={dim} ({shapes}); "
                         f"pass output= to select the per-position output")
    for j, k in enumerate(positions):
        for i, name in usable:
            a, b = base[i][1], chunks[j + 1][i][1]
            d = probing.differs(a[(slice(None),) * dim + (slice(0, k),)], b[(slice(None),) * dim + (slice(0, k),)])
            if d.any():
                hit = d.nonzero()[0].tolist()
                diff = (a - b).abs()[(slice(None),) * dim + (slice(0, k),)].nan_to_num(0).amax()
                leaks.append((hit[dim], k, name, float(diff)))
    leaks.sort()
    return CausalityResult(calling.model_name(module), where, length, len(positions), forwards, tuple(leaks))
