"""Batch independence: output sample i may depend on input sample i only.

A softmax or a mean over the batch dimension, an LSTM without ``batch_first=True`` fed
batch-first data, a ``cat`` on the wrong dimension followed by a ``view``: shapes are right,
gradients flow, and every sample of a batch leaks into the others. The model trains, worse.

The check runs in eval mode (BatchNorm in train mode mixes a batch legitimately) inside the
state guard:

* floating inputs: for each probed sample ``i``, the gradient of a random-weighted sum of output
  sample ``i`` with respect to every input; any non-zero gradient at another sample ``j`` means
  ``j`` reaches ``i``'s output;
* integer inputs (token ids): sample ``i``'s ids are replaced by another sample's, and every
  other sample's output must stay the same (``rtol`` 1e-4, ``atol`` 1e-5, for kernels whose
  rounding depends on the batch).

Probed samples: all of them for batches of up to ``MAX_PROBES``, else a spread of
``MAX_PROBES`` of them (first, last and between).
"""

from typing import Any, Dict, List, Set, Tuple

import torch
from torch import nn

from ..core import calling, trees
from ..core.reentrant import backward_grads, graph_nodes, has_reentrant_checkpoint, reentrant_checkpoint_error
from ..core.results import Finding, ValueCheckResult
from ..core.state import ModelGuard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

MAX_PROBES = 8
_RTOL, _ATOL = 1e-4, 1e-5


def _probes(batch: int) -> List[int]:
    if batch <= MAX_PROBES:
        return list(range(batch))
    step = (batch - 1) / (MAX_PROBES - 1)
    return sorted({round(k * step) for k in range(MAX_PROBES)})


def _batched_leaves(value: Any, batch_dim: int, batch: int) -> List[Tuple[Tuple, torch.Tensor]]:
    return [(p, t) for p, t in trees.tensor_leaves(value) if t.dim() > batch_dim and t.shape[batch_dim] == batch]


def batch_size(inputs: Any, batch_dim: int) -> int:
    leaves = [t for _, t in trees.tensor_leaves(inputs) if t.dim() > batch_dim]
    if not leaves:
        raise ValueError(f"inputs hold no tensor with a dimension {batch_dim} (batch_dim) to split samples on")
    batch = leaves[0].shape[batch_dim]
    if batch < 2:
        raise ValueError(f"inputs have batch size {batch} at batch_dim={batch_dim}; at least 2 samples are needed")
    return batch


def check_batch_independent(model: nn.Module, inputs: Any, *, batch_dim: int = 0, seed: int = 0) -> ValueCheckResult:
    """Check that no output sample depends on another input sample (see the module docstring)."""
    calling.check_module(model)
    calling.check_inputs(inputs)
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int):
        raise TypeError(f"batch_dim must be a non-negative int, got {batch_dim!r}")
    if batch_dim < 0:
        raise ValueError(f"batch_dim must be a non-negative int, got {batch_dim} (count from the front)")
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    gen = calling.make_generator(seed, device)
    x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
    batch = batch_size(x, batch_dim)
    probes = _probes(batch)
    findings: List[Finding] = []
    shape_notes: Dict[str, str] = {}
    interacting: Dict[str, Set[Tuple[int, int]]] = {}
    leaves_checked = 0
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        float_paths = {p for p, t in trees.tensor_leaves(x) if t.is_floating_point() and t.dim() > batch_dim
                       and t.shape[batch_dim] == batch}
        int_paths = {p for p, t in trees.tensor_leaves(x) if not t.is_floating_point() and not t.is_complex()
                     and t.dtype != torch.bool and t.dim() > batch_dim and t.shape[batch_dim] == batch}
        if not float_paths and not int_paths:
            raise ValueError("inputs hold no floating or integer tensor with the batch size at batch_dim")
        if float_paths:
            leaves_in: Dict[Tuple, torch.Tensor] = {}
            xg = _with_grad_leaves(x, float_paths, leaves_in)
            out = calling.call(module, xg)
            outs = _batched_leaves(out, batch_dim, batch)
            if not outs:
                return _batch_dim_lost(out, batch, batch_dim, probes)
            leaves_checked = len(outs)
            in_paths = list(leaves_in)
            in_tensors = [leaves_in[p] for p in in_paths]
            # One gradient per (output leaf, probed sample); maxima per other sample stay on device.
            rows = []
            reentrant: Dict[str, Any] = {}  # set once a reentrant checkpoint is seen: backward() from then on
            for opath, o in outs:
                for i in probes:
                    oi = o.select(batch_dim, i)
                    if not (oi.is_floating_point() or oi.is_complex()) or not oi.requires_grad:
                        continue
                    w = torch.randn(oi.shape + ((2,) if oi.is_complex() else ()), generator=gen,
                                    device=gen.device).to(oi.device)
                    val = torch.view_as_real(oi) if oi.is_complex() else oi
                    grads = _input_grads((val.float() * w).sum(), in_tensors, module, reentrant, opath)
                    for ipath, g in zip(in_paths, grads):
                        if g is None:
                            continue
                        per_sample = g.abs().transpose(0, batch_dim).reshape(batch, -1).amax(dim=1)
                        rows.append(((opath, i, ipath), per_sample))
            if rows:
                host = torch.stack([r for _, r in rows]).double().cpu().tolist()  # one transfer
                for ((opath, i, ipath), _), per_sample in zip(rows, host):
                    for j, v in enumerate(per_sample):
                        if j != i and v != 0:
                            interacting.setdefault(_pair_key(opath, ipath), set()).add((i, j))
        if int_paths:
            with torch.no_grad():
                base = calling.call(module, x)
                outs = _batched_leaves(base, batch_dim, batch)
                if not outs:
                    return _batch_dim_lost(base, batch, batch_dim, probes)
                leaves_checked = max(leaves_checked, len(outs))
                for i in probes:
                    donor = (i + 1) % batch
                    xp = _replace_sample(x, int_paths, batch_dim, i, donor)
                    pert = dict(_batched_leaves(calling.call(module, xp), batch_dim, batch))
                    for opath, o in outs:
                        p = pert.get(opath)
                        if p is None:
                            continue
                        if p.shape != o.shape:
                            o, p = _overlap(o, p, opath, shape_notes)
                            if o is None:
                                continue
                        same = torch.isclose(o, p, rtol=_RTOL, atol=_ATOL, equal_nan=True)
                        changed = (~same).transpose(0, batch_dim).reshape(batch, -1).any(dim=1).tolist()
                        for j, c in enumerate(changed):
                            if j != i and c:
                                interacting.setdefault(_pair_key(opath, None), set()).add((j, i))
    for key, pairs in interacting.items():
        shown = sorted(pairs)[:6]
        pairs_text = ", ".join(f"{a}<-{b}" for a, b in shown) + (f", ... ({len(pairs)} pairs)" if len(pairs) > 6 else "")
        findings.append(Finding(path=key, detail=f"output sample <- input sample: {pairs_text}", count=len(pairs)))
    details = [("batch", f"size {batch} at dim {batch_dim}, probed samples {probes}"), ("mode", "eval")]
    for where, note in shape_notes.items():
        if note.startswith("rank"):
            findings.append(Finding(path=where, detail=note))
        else:
            details.append((f"{where} shape depends on the batch", note))
    return ValueCheckResult(
        check="batch_independent", leaves_checked=leaves_checked, findings=tuple(findings),
        details=tuple(details),
    )


def _input_grads(scalar: torch.Tensor, in_tensors: List[torch.Tensor], module: nn.Module, reentrant: Dict[str, Any],
                 opath: Tuple):
    """Gradients of ``scalar`` w.r.t. the input leaves, the graph kept for the next probe.

    A reentrant checkpoint (``use_reentrant=True``) refuses ``torch.autograd.grad``; once one
    is met (the error, or a None gradient with such a checkpoint in the graph: searched only
    then, once per output leaf) the gradients are read through ``backward()``, which would also write ``.grad``
    into the parameters and into any other leaf the graph reaches: those are saved, cleared and
    put back around each backward (``core.reentrant.backward_grads``).
    """
    if "also" not in reentrant:
        try:
            grads = torch.autograd.grad(scalar, in_tensors, retain_graph=True, allow_unused=True)
            if not any(g is None for g in grads):
                return grads
            searched = reentrant.setdefault("searched", set())
            if opath in searched or not has_reentrant_checkpoint(scalar):
                searched.add(opath)
                return grads
        except RuntimeError as exc:
            if not reentrant_checkpoint_error(exc):
                raise
        reentrant["also"] = list(module.parameters()) + _graph_leaves(scalar)
    return backward_grads(scalar, in_tensors, also=reentrant["also"], retain_graph=True)


def _graph_leaves(out: torch.Tensor) -> List[torch.Tensor]:
    """The leaves ``out.backward()`` accumulates into (outside any reentrant checkpoint)."""
    return [fn.variable for fn in graph_nodes(out) if isinstance(getattr(fn, "variable", None), torch.Tensor)]


def _overlap(o: torch.Tensor, p: torch.Tensor, opath: Tuple, notes: Dict[str, str]):
    """The common region of two outputs whose non-batch sizes depend on the batch.

    A per-token tagger that pads to the batch's longest sample (``pad_packed_sequence``) returns
    ``(B, T_max, C)`` with ``T_max`` set by whichever sample is longest: replacing one sample's
    ids changes ``T_max``. The other samples' values live in the region both outputs share (the
    rest is padding), so that region is compared. Outputs of different rank cannot be aligned:
    that is reported as a finding, never compared.
    """
    where = trees.describe_path(opath)
    if o.dim() != p.dim():
        notes[where] = (f"rank of the output depends on the batch: {tuple(o.shape)} with the original batch, "
                        f"{tuple(p.shape)} with one sample replaced; cannot compare samples")
        return None, None
    region = tuple(slice(0, min(a, b)) for a, b in zip(o.shape, p.shape))
    notes.setdefault(where, f"{tuple(o.shape)} with the original batch, {tuple(p.shape)} with one sample "
                            f"replaced (padding to the longest sample?); compared the region both share")
    return o[region], p[region]


def _batch_dim_lost(out: Any, batch: int, batch_dim: int, probes: List[int]) -> ValueCheckResult:
    shapes = [f"{trees.describe_path(p)} {tuple(t.shape)}" for p, t in trees.tensor_leaves(out)]
    if not shapes:
        raise ValueError("the model output holds no tensor")
    finding = Finding("output", f"no output tensor has the batch size {batch} at dim {batch_dim}: the batch "
                                f"dimension was reduced away or moved (outputs: {', '.join(shapes[:5])})")
    return ValueCheckResult("batch_independent", len(shapes), (finding,),
                            (("batch", f"size {batch} at dim {batch_dim}, probed samples {probes}"), ("mode", "eval")))


def _pair_key(opath: Tuple, ipath: Any) -> str:
    out = trees.describe_path(opath)
    return out if ipath is None else f"{out} from {trees.describe_path(ipath, 'inputs')}"


def _with_grad_leaves(x: Any, paths: Set[Tuple], store: Dict[Tuple, torch.Tensor]) -> Any:
    """Rebuild ``x`` with the floating batched leaves replaced by fresh leaves that require grad."""

    def leaf(path: Tuple, value: Any) -> Any:
        if path not in paths:
            return value
        store[path] = value.detach().clone().requires_grad_(True)
        return store[path]

    return trees.map_with_path(leaf, x)


def _replace_sample(x: Any, paths: Set[Tuple], batch_dim: int, i: int, donor: int) -> Any:
    """``x`` with sample ``i`` of the integer leaves replaced by sample ``donor`` (or rolled)."""

    def leaf(path: Tuple, value: Any) -> Any:
        if path not in paths:
            return value
        t = value.clone()
        t.select(batch_dim, i).copy_(value.select(batch_dim, donor))
        if torch.equal(t, value) and value.dim() > 1:  # identical donor: roll the ids instead
            t.select(batch_dim, i).copy_(value.select(batch_dim, i).roll(1, dims=-1))
        return t

    return trees.map_with_path(leaf, x)
