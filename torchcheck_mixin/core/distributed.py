"""Distributed helpers for torchcheck_mixin (DDP, FSDP2 ``fully_shard``, DTensor).

Small, pure functions (torch + stdlib only) that let the assertion engine run
the *same* check on every rank of a process group and reach the *same* verdict
everywhere, at the cost of one collective per check.

Semantics
---------
* **A parameter counts as updated if it is updated on any rank.**  Each rank
  computes its per-parameter statistics (``max |grad|``, ``max |change|``,
  a 0/1 non-finite flag, ...) over the values it holds locally -- the whole
  tensor for a replicated (DDP) parameter, its own shard for a sharded
  (FSDP / DTensor) parameter -- and the statistics are combined with an
  element-wise MAX over all ranks.  For a sharded parameter the MAX of the
  per-shard maxima is the maximum over the full tensor; for a replicated
  parameter it is "the largest value seen on any rank".
* **Every rank reaches the same verdict**, because after the MAX all-reduce
  every rank holds bit-identical statistics and applies the same thresholds.
  (NaN entries are turned into ``+inf`` before the reduction: gloo's MAX does
  not propagate NaN reliably -- measured on torch 2.13/gloo: MAX(nan, 1) ->
  nan but MAX(1, nan) -> 1.)
* **One collective per check.**  The engine stacks all statistics into one
  ``stats[n_params, k]`` tensor and calls :func:`reduce_max_across_ranks`
  once, then does a single ``.tolist()``.  Parameters must be iterated in the
  same order on every rank (``named_parameters()`` of the unwrapped module).
* Without an initialised process group everything here is a cheap no-op, so
  the engine can call these helpers unconditionally.

Wrappers
--------
* ``torch.compile`` (``OptimizedModule`` -> ``._orig_mod``), ``nn.DataParallel``
  and ``DistributedDataParallel`` (``.module``) are *wrappers*: run checks on
  the inner module (:func:`unwrap`).  A forward plus ``torch.autograd.grad`` on
  ``ddp.module`` never touches DDP's reducer, issues no collective and leaves
  the user's next DDP training step working.  Do **not** call
  ``loss.backward()`` through ``ddp.module``: if the user left a DDP forward
  without a backward, the reducer's hooks are armed and *fire* (they
  all-reduce), which can deadlock when ranks disagree.
* FSDP2 (``fully_shard``) is *not* a wrapper: it swaps the module's class in
  place and keeps names unchanged; parameters are ``DTensor`` with the global
  shape in ``p.shape``.  ``torch.autograd.grad`` w.r.t. FSDP-managed
  parameters returns ``None`` for all of them (the graph goes through the
  all-gathered unsharded parameters), so gradients must be obtained with
  ``loss.backward()`` on the FSDP module and read from ``p.grad`` (sharded,
  already averaged) -- see :func:`needs_backward_for_grads`.  Legacy
  ``FullyShardedDataParallel`` (needs ``device_id=torch.device("cpu")`` on a
  CPU-only machine) adds a ``_fsdp_wrapped_module.`` name component that
  :func:`clean_name` strips.
"""

from __future__ import annotations

__unittest = True
__tracebackhide__ = True

import contextlib
import re
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "WRAPPER_NAME_COMPONENTS",
    "is_distributed_active",
    "get_rank",
    "get_world_size",
    "unwrap",
    "clean_name",
    "named_parameters",
    "is_dtensor",
    "local_view",
    "global_shape",
    "global_numel",
    "grad_to_local",
    "reduce_max_across_ranks",
    "reduce_counts_across_ranks",
    "is_collective_model",
    "is_ddp",
    "is_fsdp_managed",
    "needs_backward_for_grads",
    "reshard_fsdp",
    "recover_fsdp",
    "fsdp_settled",
]

#: Name components inserted by wrappers *inside* a module tree.  They are
#: underscored, so they cannot collide with ordinary user attribute names and
#: can be removed wherever they appear in a dotted parameter name.
WRAPPER_NAME_COMPONENTS = (
    "_orig_mod",  # torch.compile'd submodule (OptimizedModule)
    "_fsdp_wrapped_module",  # legacy FullyShardedDataParallel
    "_checkpoint_wrapped_module",  # activation checkpoint_wrapper
)


# --------------------------------------------------------------------------
# process group state
# --------------------------------------------------------------------------
def is_distributed_active() -> bool:
    """True iff ``torch.distributed`` is available and a default process group
    is initialised (world size 1 included)."""
    dist = _dist()
    return dist is not None and dist.is_initialized()


def get_rank(group=None) -> int:
    """Rank in ``group`` (default group), or 0 without a process group."""
    return _dist().get_rank(group) if is_distributed_active() else 0


def get_world_size(group=None) -> int:
    """World size of ``group``, or 1 without a process group."""
    return _dist().get_world_size(group) if is_distributed_active() else 1


def _dist():
    try:
        import torch.distributed as dist
    except Exception:  # pragma: no cover - exotic builds
        return None
    return dist if dist.is_available() else None


# --------------------------------------------------------------------------
# wrappers and names
# --------------------------------------------------------------------------
def _optimized_module_type():
    # torch._dynamo is imported lazily (importing it costs seconds); if it has
    # not been imported, no OptimizedModule can exist in this process.
    mod = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(mod, "OptimizedModule", None) if mod is not None else None


def _data_parallel_types() -> tuple:
    types = [nn.DataParallel]
    ddp = getattr(nn.parallel, "DistributedDataParallel", None)
    if isinstance(ddp, type):
        types.append(ddp)
    return tuple(types)


def find_ddp(model: nn.Module) -> Optional[nn.Module]:
    """The ``DistributedDataParallel`` instance in ``model``'s wrapper chain, or None."""
    ddp = getattr(nn.parallel, "DistributedDataParallel", None)
    m = model
    for _ in range(64):
        if isinstance(ddp, type) and isinstance(m, ddp):
            return m
        nxt = _unwrap_once(m)
        if nxt is None:
            return None
        m = nxt[0]
    return None


def is_ddp(model: nn.Module) -> bool:
    """True if ``model`` (or a compile/DataParallel wrapper chain leading to
    it) is a ``DistributedDataParallel`` instance."""
    return find_ddp(model) is not None


def _unwrap_once(m: nn.Module) -> Optional[Tuple[nn.Module, str]]:
    opt = _optimized_module_type()
    if opt is not None and isinstance(m, opt):
        return m._orig_mod, "_orig_mod."
    if isinstance(m, _data_parallel_types()):
        return m.module, "module."
    return None


def unwrap(model: nn.Module) -> Tuple[nn.Module, str]:
    """Strip ``torch.compile`` / ``DataParallel`` / ``DistributedDataParallel``
    wrappers, repeatedly and in any nesting order.

    Returns ``(inner_module, prefix_removed)`` where ``prefix_removed`` is the
    concatenation of the removed name components, e.g. ``"module._orig_mod."``
    for ``DDP(torch.compile(m))`` (``""`` when nothing was unwrapped), so that
    ``wrapper_name == prefix_removed + inner_name``.

    FSDP is deliberately not unwrapped: ``fully_shard`` is not a wrapper, and
    the module inside a legacy ``FullyShardedDataParallel`` cannot run forward
    on its own (its parameters are flat shards).  Use :func:`clean_name` for
    their names instead.
    """
    prefix = ""
    m = model
    seen = set()
    while id(m) not in seen:
        seen.add(id(m))
        nxt = _unwrap_once(m)
        if nxt is None:
            break
        m, p = nxt
        prefix += p
    return m, prefix


_COMPONENT_RE = re.compile(
    r"(?:^|(?<=\.))(?:%s)\." % "|".join(re.escape(c) for c in WRAPPER_NAME_COMPONENTS)
)


def clean_name(name: str, prefix: str = "") -> str:
    """User-facing parameter name: drop a leading ``prefix`` (as returned by
    :func:`unwrap`) and every wrapper component in
    :data:`WRAPPER_NAME_COMPONENTS` wherever it appears.

    >>> clean_name("module._orig_mod.fc.weight", "module._orig_mod.")
    'fc.weight'
    >>> clean_name("_fsdp_wrapped_module.layers.0._fsdp_wrapped_module.w")
    'layers.0.w'
    """
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    return _COMPONENT_RE.sub("", name)


def named_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """``[(clean_name, param), ...]`` of the unwrapped module, in
    ``named_parameters()`` order (identical on every rank for identically
    built models).  Shared parameters appear once, as in ``named_parameters``.
    """
    inner, _ = unwrap(model)
    return [(clean_name(n), p) for n, p in inner.named_parameters()]


# --------------------------------------------------------------------------
# DTensor / sharded parameters
# --------------------------------------------------------------------------
def _dtensor_type():
    mod = sys.modules.get("torch.distributed.tensor")
    t = getattr(mod, "DTensor", None) if mod is not None else None
    if t is None:
        mod = sys.modules.get("torch.distributed._tensor")
        t = getattr(mod, "DTensor", None) if mod is not None else None
    return t


def is_dtensor(t) -> bool:
    """True if ``t`` is a ``DTensor`` (FSDP2 / tensor-parallel parameter or
    gradient).  Never imports ``torch.distributed.tensor`` itself."""
    dt = _dtensor_type()
    return dt is not None and isinstance(t, dt)


def local_view(p: torch.Tensor) -> torch.Tensor:
    """Detached tensor holding the values this rank owns: ``p.to_local()`` for
    a DTensor (its shard; possibly empty for uneven shards, e.g. a size-3 bias
    on 2 ranks is 2 + 1 rows, a size-1 bias is 1 + 0), ``p`` itself otherwise.
    No communication."""
    if is_dtensor(p):
        return p.to_local().detach()
    return p.detach()


def global_shape(p: torch.Tensor) -> Tuple[int, ...]:
    """Full (unsharded) shape as a tuple of ints, without communication:
    ``DTensor.shape`` already is the global shape."""
    return tuple(p.shape)


def global_numel(p: torch.Tensor) -> int:
    """Full (unsharded) element count; ``DTensor.numel()`` is global."""
    return p.numel()


def grad_to_local(g: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Turn a gradient that may be a DTensor into a plain local tensor suitable
    for local reductions (``max |g|`` over the local values, combined later by
    the MAX all-reduce).  ``None`` stays ``None``.

    FSDP2 ``p.grad`` after ``backward()`` is ``Shard(0)`` and already averaged
    across ranks; ``to_local()`` is free.  A ``Partial`` placement (pending
    sum, possible with tensor parallelism) is first redistributed to
    ``Replicate`` -- that is a collective, issued only in that case, and all
    ranks hold the same placements so they issue it together.
    """
    if g is None:
        return None
    if is_dtensor(g):
        placements = tuple(g.placements)
        if any(pl.is_partial() for pl in placements):
            from torch.distributed.tensor import Replicate

            g = g.redistribute(
                g.device_mesh, [Replicate() if pl.is_partial() else pl for pl in placements]
            )
        return g.to_local().detach()
    return g.detach()


def _collective_device(t: torch.Tensor, group) -> torch.device:
    """Device on which ``group``'s backend can reduce ``t``."""
    dist = _dist()
    backend = str(dist.get_backend(group)).lower()
    if ":" in backend:  # e.g. "cpu:gloo,cuda:nccl" -> per-device dispatch
        types = {part.split(":", 1)[0].strip() for part in backend.split(",")}
        if t.device.type in types:
            return t.device
        return torch.device("cpu") if "cpu" in types else t.device
    if backend == "gloo":
        return torch.device("cpu")
    if backend == "nccl":
        if t.device.type == "cuda":
            return t.device
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def reduce_max_across_ranks(t: torch.Tensor, group=None) -> torch.Tensor:
    """Element-wise MAX of ``t`` over all ranks of ``group`` with exactly one
    ``all_reduce``; every rank gets the same result.

    ``t`` is typically the engine's ``stats[n_params, k]`` float tensor of
    non-negative statistics; any shape works, including 0 parameters.
    * Without an initialised process group: returns ``t`` unchanged (same
      object, no copy, no sync).
    * Otherwise returns a *new* tensor with ``t``'s device and dtype; ``t`` is
      never modified.  NaN entries become ``+inf`` first (gloo's MAX is not
      NaN-propagating).  The reduction runs on a device the backend supports
      (CPU for gloo, CUDA for nccl, the tensor's device for a mixed
      ``cpu:gloo,cuda:nccl`` group); the copy there and back is done here.
    * Must be called by every rank of ``group``, with the same shape and
      dtype, or it deadlocks until the process group timeout.
    """
    if not is_distributed_active():
        return t
    dist = _dist()
    with torch.no_grad():
        src = t.detach()
        if src.is_floating_point():
            src = torch.nan_to_num(src, nan=float("inf"))
        dev = _collective_device(src, group)
        buf = src.to(device=dev, copy=True).contiguous()
        dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=group)
        return buf.to(device=t.device, dtype=t.dtype)


def reduce_counts_across_ranks(counts: torch.Tensor, summed: Sequence[bool], group=None) -> torch.Tensor:
    """Combine per-rank counts ``counts[n, k]`` (non-negative, e.g. NaN/inf
    counts per tensor) over the ranks of ``group`` with exactly one
    collective (an ``all_gather``): row ``i`` is summed over the ranks where
    ``summed[i]`` (the rows of sharded tensors, whose shards partition the
    values) and maxed elsewhere (replicated tensors: "the most seen on any
    rank").  Every rank gets the same result.  Without a process group,
    ``counts`` is returned unchanged.  Must be called by every rank with the
    same shape, dtype and ``summed``."""
    if not is_distributed_active():
        return counts
    dist = _dist()
    with torch.no_grad():
        src = counts.detach()
        dev = _collective_device(src, group)
        buf = src.to(device=dev, copy=True).contiguous()
        parts = [torch.empty_like(buf) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, buf, group=group)
        stacked = torch.stack(parts)
        mask = torch.tensor(list(summed), dtype=torch.bool, device=dev).reshape(
            (-1,) + (1,) * (buf.dim() - 1)
        )
        out = torch.where(mask, stacked.sum(0), stacked.amax(0)) if buf.numel() else buf
        return out.to(device=counts.device, dtype=counts.dtype)


def is_collective_model(model: nn.Module) -> bool:
    """True when a check on ``model`` must combine its result over the ranks:
    a process group is initialised and ``model`` is (a wrapper chain around)
    ``DistributedDataParallel`` or has FSDP-sharded submodules.  Then every
    rank must run the check.  A plain model under a process group is checked
    locally (checking it on one rank only must not wait for the others)."""
    return is_distributed_active() and (is_ddp(model) or is_fsdp_managed(model))


# --------------------------------------------------------------------------
# FSDP detection
# --------------------------------------------------------------------------
def _fsdp_types() -> tuple:
    """(FSDPModule, FullyShardedDataParallel) classes that exist *and* have
    been imported; a model can only be FSDP-managed if they were."""
    mod = sys.modules.get("torch.distributed.fsdp")
    if mod is None:
        return ()
    return tuple(
        t
        for t in (getattr(mod, "FSDPModule", None), getattr(mod, "FullyShardedDataParallel", None))
        if isinstance(t, type)
    )


def is_fsdp_managed(model: nn.Module) -> bool:
    """True if any submodule is sharded by FSDP2 (``fully_shard`` ->
    ``FSDPModule``) or wrapped by legacy ``FullyShardedDataParallel``.  Cheap
    when FSDP was never imported (then it is always False)."""
    types = _fsdp_types()
    if not types:
        return False
    inner, _ = unwrap(model)
    return any(isinstance(m, types) for m in inner.modules())


def needs_backward_for_grads(model: nn.Module) -> bool:
    """True when ``torch.autograd.grad(loss, params)`` cannot be used.

    Measured on torch 2.13 (FSDP2 and legacy FSDP with use_orig_params=True):
    ``autograd.grad`` w.r.t. the sharded parameters returns ``None`` for every
    parameter.  The engine must then run ``loss.backward()`` on the FSDP model
    (after saving and clearing ``p.grad``), read ``p.grad`` (DTensor shard,
    averaged over ranks) and restore the saved grads.  Every rank must run
    the same forward/backward (FSDP issues all-gathers/reduce-scatters)."""
    return is_fsdp_managed(model)


def reshard_fsdp(model: nn.Module) -> None:
    """Call ``reshard()`` on every FSDP2 module so all parameters are sharded
    DTensors again.  After a forward without backward (e.g. under
    ``torch.no_grad``) the *root* FSDP module keeps its parameters unsharded
    as plain ``nn.Parameter`` of full shape; take before/after snapshots only
    after resharding so their shapes match.  Local operation, no collective."""
    mod = sys.modules.get("torch.distributed.fsdp")
    fsdp2 = getattr(mod, "FSDPModule", None) if mod is not None else None
    if not isinstance(fsdp2, type):
        return
    for m in model.modules():
        if isinstance(m, fsdp2):
            m.reshard()


def _fsdp2_type():
    mod = sys.modules.get("torch.distributed.fsdp")
    t = getattr(mod, "FSDPModule", None) if mod is not None else None
    return t if isinstance(t, type) else None


def recover_fsdp(model: nn.Module) -> None:
    """Bring every FSDP2 module of ``model`` back to its idle, sharded state
    after an exception inside its forward or backward.  Local, no collective.

    An exception in the middle of a forward leaves FSDP's param groups in the
    ``FORWARD`` training state with the root's parameters unsharded, and then
    ``reshard()`` is a no-op for the root (``FSDPParamGroup.reshard`` returns
    early in ``FORWARD`` when ``reshard_after_forward`` is False, the root's
    default).  torch >= 2.13 has ``FSDPModule.reset_iter_state()`` for exactly
    this ("Iteration-wide recovery after a mid-forward or mid-backward
    exception"); it must be called on root modules and raises
    ``RuntimeError`` on the others, which are reset through their root.  On
    older torch the per-state/per-group training states are set back to idle
    (private attributes, best effort) before resharding.
    """
    fsdp2 = _fsdp2_type()
    if fsdp2 is None:
        return
    mods = [m for m in model.modules() if isinstance(m, fsdp2)]
    for m in mods:
        reset = getattr(m, "reset_iter_state", None)
        if reset is None:
            break
        try:
            reset()
        except RuntimeError:  # not a root: its root resets it
            pass
    else:
        return
    for m in mods:  # torch < 2.13: best effort
        try:
            state = m._get_fsdp_state()
            idle = type(state._training_state).IDLE
            state._training_state = idle
            for group in getattr(state, "_fsdp_param_groups", None) or (
                [state._fsdp_param_group] if getattr(state, "_fsdp_param_group", None) is not None else []
            ):
                group._training_state = idle
            m.reshard()
        except Exception:
            pass


@contextlib.contextmanager
def fsdp_settled(model: nn.Module) -> Iterator[None]:
    """Leave every FSDP2 module of ``model`` sharded and idle when the block
    exits, so that a state guard restoring the module dicts afterwards finds
    the sharded ``DTensor`` parameters it saved (and FSDP agrees with it).

    On success: :func:`reshard_fsdp` (a forward without backward leaves the
    root's parameters unsharded).  On an exception: :func:`recover_fsdp`, then
    the exception propagates.  A no-op for models without FSDP."""
    if _fsdp2_type() is None:
        yield
        return
    try:
        yield
    except BaseException:
        recover_fsdp(model)
        raise
    reshard_fsdp(model)
