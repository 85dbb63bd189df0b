"""Masks and padding: what sits at masked or padded positions must not reach unmasked outputs.

Two checks share the mask conventions:

* ``check_mask_invariant``: the contents of masked positions (ids replaced inside the vocabulary,
  float features by noise) are changed in every other input that has the sequence dimension; every
  output at an unmasked position, and every output without a sequence dimension (a pooled
  vector), must stay the same. Catches attention that never receives the mask, an inverted
  additive mask, a mask applied on the query axis instead of the key axis.
* ``check_padding_invariant``: ``extra`` more padded positions are appended to every sequence
  input (ids ``pad_id``, features 0, the mask set to "masked"); outputs at the original
  positions and pooled outputs must stay the same. Catches a masked mean that divides by the
  padded length, positions counted from the padded end.

Mask conventions (``convention=``): ``"keep"`` (1/True keeps: Hugging Face ``attention_mask``),
``"pad"`` (True/1 is padding: ``key_padding_mask`` of ``nn.MultiheadAttention`` and
``nn.TransformerEncoder``), ``"additive"`` (a float mask added to the scores, masked where
``<= -1e4`` or ``-inf``; it may be ``(B, T)`` or broadcastable such as ``(B, 1, 1, T)``: its last
dimension is the key axis). By default it is inferred from the key name (``attention_mask`` ->
keep, ``*padding_mask`` -> pad) or a float mask (additive). ``check_padding_invariant`` also takes
``pad_id=`` with no mask at all (padding is where the ids equal ``pad_id``).

Cost: two forwards, eval mode, no graph.
"""

from collections.abc import Mapping
from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from ..core import calling, trees
from ..core.results import Finding, MaskInvariantResult
from ..core.state import ModelGuard
from . import probing

__unittest = True

CONVENTIONS = ("keep", "pad", "additive")
_NEG = -1e4


def _convention(key: Any, mask: torch.Tensor, convention: Optional[str]) -> str:
    if convention is not None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        return convention
    if mask.is_floating_point() and bool((mask < 0).any()):
        return "additive"
    name = str(key).lower()
    if "padding" in name or name.endswith("pad_mask"):
        return "pad"
    if name in ("attention_mask", "mask", "attn_mask") and not mask.is_floating_point():
        return "keep"
    raise ValueError(f"cannot tell the convention of mask {key!r} ({mask.dtype}); pass convention='keep' "
                     f"(1 keeps, HF attention_mask), 'pad' (True pads, key_padding_mask) or 'additive'")


def _masked(mask: torch.Tensor, convention: str, batch: int) -> torch.Tensor:
    """(B, T) bool: True where the position is masked (padding)."""
    if convention == "keep":
        m = mask == 0
    elif convention == "pad":
        m = mask != 0
    else:
        m = (mask <= _NEG) | torch.isneginf(mask)
    m = m.reshape(m.shape[0] if m.dim() > 1 else 1, -1, m.shape[-1]) if m.dim() != 2 else m[:, None, :]
    m = m.all(1)
    return m.expand(batch, -1) if m.shape[0] == 1 else m


def _mask_path(x: Any, mask: Any) -> Tuple[Any, ...]:
    if mask is not None:
        return probing.find_leaf(x, mask, "mask")
    if isinstance(x, Mapping):
        for key in x:
            if "mask" in str(key).lower() and isinstance(x[key], torch.Tensor):
                return (key,)
    raise ValueError("pass mask= (the key or index of the mask among the inputs)")


def _sequence_paths(x: Any, skip: Tuple[Any, ...], batch: int, length: int, dim: int, input: Any) -> List[Tuple]:
    if input is not None:
        keys = input if isinstance(input, (list, tuple)) and not isinstance(input, str) else [input]
        return [probing.find_leaf(x, k, "input") for k in keys]
    return [p for p, t in trees.tensor_leaves(x) if p != skip and t.dim() > dim and t.shape[0] == batch
            and t.shape[dim] == length]


def _compare(base: Any, probe: Any, masked: torch.Tensor, dim: int, length: int, output: Any) -> List[Finding]:
    findings = []
    a_leaves, b_leaves = probing.output_leaves(base, output), dict(probing.output_leaves(probe, output))
    batch = masked.shape[0]
    for name, a in a_leaves:
        b = b_leaves.get(name)
        if b is None:
            continue
        if a.dim() > dim and a.shape[0] == batch and a.shape[dim] >= length and b.shape[dim] >= length:
            sl = (slice(None),) * dim + (slice(0, length),)
            a, b = a[sl], b[sl]
            keep = (~masked).reshape(batch, *([1] * (dim - 1)), length, *([1] * (a.dim() - dim - 1))).expand_as(a)
            d = probing.differs(a, b) & keep
            total = int(keep.sum())
            where = "unmasked positions"
        elif a.shape == b.shape:
            d = probing.differs(a, b)
            total, where = a.numel(), "elements (no sequence dimension)"
        else:
            findings.append(Finding(name, f"shape changed: {tuple(a.shape)} -> {tuple(b.shape)}"))
            continue
        if d.any():
            hit = d.nonzero()[0].tolist()
            diff = float((a - b).abs()[d].nan_to_num(0).amax()) if d.any() else 0.0
            findings.append(Finding(name, f"{int(d.sum()):,} / {total:,} {where} changed (max |diff| {diff:.3g}), "
                                    f"first at {tuple(hit)}", count=int(d.sum()), total=total,
                                    first_indices=(tuple(hit),)))
    return findings


def _setup(model: Any, inputs: Any, dim: Any, seed: int) -> Tuple[nn.Module, Any, torch.Generator]:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an int >= 1 (the sequence dimension after the batch), got {dim!r}")
    module, _, x, gen = probing.prepare(model, inputs, seed)
    return module, x, gen


def check_mask_invariant(model: nn.Module, inputs: Any, *, mask: Any = None, convention: Optional[str] = None,
                         dim: int = 1, input: Any = None, output: Any = None, vocab_size: Optional[int] = None,
                         seed: int = 0) -> MaskInvariantResult:
    """Changing masked positions leaves every unmasked output unchanged (see the module docstring)."""
    module, x, gen = _setup(model, inputs, dim, seed)
    mpath = _mask_path(x, mask)
    m = probing.get(x, mpath)
    conv = _convention(mpath[-1] if mpath else "mask", m, convention)
    length = m.shape[-1]
    batch = _batch(x, mpath)
    seqs = _sequence_paths(x, mpath, batch, length, dim, input)
    masked = _masked(m, conv, batch)
    if not bool(masked.any()):
        raise ValueError(f"mask {probing.input_name(mpath, x)} ({conv}) masks nothing: give inputs with padded "
                         f"positions (a check over nothing never passes)")
    if not seqs:
        raise ValueError(f"no input other than the mask has length {length} at dim={dim}: nothing to perturb "
                         f"(pass input= or dim=)")
    new = {}
    for p in seqs:
        t = probing.get(x, p)
        if t.dim() <= dim or t.shape[dim] != length:
            raise ValueError(f"{probing.input_name(p, x)} has shape {tuple(t.shape)}: no length {length} at dim={dim}")
        bound = probing.vocab_bound(module, t, vocab_size) if not t.is_floating_point() else 2
        sel = masked.reshape(batch, *([1] * (dim - 1)), length, *([1] * (t.dim() - dim - 1))).expand_as(t)
        new[p] = torch.where(sel, probing.perturb(t, gen, bound), t)
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        base = calling.call(module, x)
        probe = calling.call(module, probing.replace(x, new))
        findings = _compare(base, probe, masked, dim, length, output)
    return MaskInvariantResult("mask", calling.model_name(module), probing.input_name(mpath, x), conv,
                               int(masked.sum()), masked.numel(), tuple(probing.input_name(p, x) for p in seqs),
                               tuple(findings))


def _batch(x: Any, mpath: Tuple[Any, ...]) -> int:
    leaves = [t for p, t in trees.tensor_leaves(x) if p != mpath and t.dim() > 0]
    if not leaves:
        raise ValueError("inputs hold no tensor besides the mask")
    return leaves[0].shape[0]


def check_padding_invariant(model: nn.Module, inputs: Any, *, mask: Any = None, convention: Optional[str] = None,
                            pad_id: Optional[int] = None, extra: int = 3, dim: int = 1, input: Any = None,
                            output: Any = None, seed: int = 0) -> MaskInvariantResult:
    """Appending ``extra`` padded positions leaves the original unmasked and pooled outputs unchanged."""
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 1:
        raise ValueError(f"extra must be an int >= 1 (padded positions to append), got {extra!r}")
    module, x, gen = _setup(model, inputs, dim, seed)
    if mask is None and pad_id is not None:
        mpath = None
        ipath = probing.find_leaf(x, input, "input") if input is not None else trees.tensor_leaves(x)[0][0]
        ids = probing.get(x, ipath)
        if ids.is_floating_point() or ids.dim() <= dim:
            raise ValueError(f"pad_id needs integer ids with a sequence dimension dim={dim}; got "
                             f"{ids.dtype} {tuple(ids.shape)}")
        batch, length, conv = ids.shape[0], ids.shape[dim], "pad_id"
        masked = (ids == pad_id).reshape(batch, -1) if dim == 1 and ids.dim() == 2 else (ids == pad_id).flatten(2).all(2)
        seqs = [ipath]
        where = f"{probing.input_name(ipath, x)} == {pad_id}"
    else:
        mpath = _mask_path(x, mask)
        m = probing.get(x, mpath)
        conv = _convention(mpath[-1] if mpath else "mask", m, convention)
        length = m.shape[-1]
        batch = _batch(x, mpath)
        masked = _masked(m, conv, batch)
        seqs = _sequence_paths(x, mpath, batch, length, dim, input)
        where = probing.input_name(mpath, x)
    if not seqs:
        raise ValueError(f"no input has length {length} at dim={dim}: nothing to pad (pass input= or dim=)")
    new = {}
    for p in seqs:
        t = probing.get(x, p)
        shape = list(t.shape)
        shape[dim] = extra
        fill = (pad_id if pad_id is not None else 0) if not t.is_floating_point() else 0
        new[p] = torch.cat([t, torch.full(shape, fill, dtype=t.dtype, device=t.device)], dim)
    if mpath is not None:
        m = probing.get(x, mpath)
        shape = list(m.shape)
        shape[-1] = extra
        value = {"keep": 0, "pad": 1, "additive": float("-inf") if torch.isneginf(m).any() else float(m.min())}[conv]
        new[mpath] = torch.cat([m, torch.full(shape, value, dtype=m.dtype, device=m.device)], -1)
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        base = calling.call(module, x)
        probe = calling.call(module, probing.replace(x, new))
        findings = _compare(base, probe, masked, dim, length, output)
    return MaskInvariantResult("padding", calling.model_name(module), where, conv, batch * extra + int(masked.sum()),
                               batch * (length + extra), tuple(probing.input_name(p, x) for p in seqs),
                               tuple(findings))
