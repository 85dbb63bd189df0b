"""Reentrant activation checkpointing (``torch.utils.checkpoint(..., use_reentrant=True)``).

A reentrant checkpoint runs its forward without a graph and recomputes it in backward; its
backward refuses ``torch.autograd.grad`` (and ``backward(inputs=...)``), and the parameters
inside it are not leaves of the outer graph. Checks that read gradients with
``torch.autograd.grad`` detect such graphs here and read the gradients through ``backward()``
instead, with every ``.grad`` it touches saved and put back.
"""

from typing import Any, Iterator, List, Optional, Sequence

import torch

__unittest = True
__tracebackhide__ = True


def reentrant_checkpoint_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the error a reentrant checkpoint raises under ``torch.autograd.grad``."""
    text = str(exc)
    return "checkpoint" in text and (".grad()" in text or "inputs" in text)


def graph_nodes(out: torch.Tensor) -> Iterator[Any]:
    """Every autograd node of ``out``'s graph, each once (outside reentrant checkpoints' insides)."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        yield fn
        stack.extend(f for f, _ in fn.next_functions)


def has_reentrant_checkpoint(out: torch.Tensor) -> bool:
    """Whether the graph of ``out`` holds a reentrant checkpoint (``CheckpointFunctionBackward``)."""
    return any(type(fn).__name__ == "CheckpointFunctionBackward" for fn in graph_nodes(out))


def backward_grads(loss: torch.Tensor, leaves: Sequence[torch.Tensor], *, also: Sequence[torch.Tensor] = (),
                   retain_graph: bool = False) -> List[Optional[torch.Tensor]]:
    """Gradients of ``loss`` w.r.t. ``leaves`` through ``loss.backward()``.

    For graphs ``torch.autograd.grad`` cannot run (reentrant activation checkpointing). The
    ``.grad`` of ``leaves`` and of ``also`` (other leaves backward may reach, e.g. the parameters
    when only input gradients are wanted) are saved, cleared, read and put back (the same
    objects), so nothing the user holds changes.
    """
    ids, touched = set(), []
    for p in list(leaves) + list(also):
        if id(p) not in ids:
            ids.add(id(p))
            touched.append(p)
    saved = [(p, p.grad) for p in touched]
    for p in touched:
        p.grad = None
    try:
        loss.backward(retain_graph=retain_graph)
        return [p.grad.detach() if p.grad is not None else None for p in leaves]
    finally:
        for p, g in saved:
            p.grad = g
