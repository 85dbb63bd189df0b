"""Batch size one: each sample run alone gives its row of the batched run.

A ``.squeeze()`` that drops the batch dimension only when ``B == 1``, a layer skipped for single
samples (``if x.size(0) > 1: x = self.bn(x)``), a reshape that hard-codes the batch: the model
is fine in training and wrong at inference, one request at a time. The check runs the batch once
and up to ``max_samples`` samples alone (every input leaf whose dimension ``batch_dim`` has the
batch size is sliced ``i:i+1``), in eval mode, and compares shapes and values (tolerances from the
dtype: batched kernels round differently).

Cost: ``1 + min(B, max_samples)`` forwards, no graph.
"""

from typing import Any, List

import torch
from torch import nn

from ..core import calling, trees
from ..core.results import Finding, SingleSampleResult
from ..core.state import ModelGuard
from . import probing
from .independence import batch_size

__unittest = True


def check_single_sample_consistent(model: nn.Module, inputs: Any, *, batch_dim: int = 0, max_samples: int = 4,
                                   seed: int = 0) -> SingleSampleResult:
    """Check that every probed sample alone matches its row of the batched output."""
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int) or batch_dim < 0:
        raise ValueError(f"batch_dim must be a non-negative int, got {batch_dim!r}")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
    module, _, x, _ = probing.prepare(model, inputs, seed)
    batch = batch_size(x, batch_dim)
    # the first ones and always the last one (where a partial batch's odd sample sits)
    samples = sorted(set(range(min(batch, max_samples) - 1)) | {batch - 1})
    findings: List[Finding] = []

    def take(i: int) -> Any:
        return trees.map_tensors(lambda t: t.narrow(batch_dim, i, 1) if t.dim() > batch_dim
                                 and t.shape[batch_dim] == batch else t, x)

    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        full = trees.tensor_leaves(calling.call(module, x))
        for i in samples:
            one = dict(trees.tensor_leaves(calling.call(module, take(i))))
            for path, t in full:
                name = trees.describe_path(path)
                s = one.get(path)
                if t.dim() <= batch_dim or t.shape[batch_dim] != batch:
                    continue  # not batched (a scalar loss, a shared table): nothing to compare row-wise
                row = t.narrow(batch_dim, i, 1)
                if s is None or s.shape != row.shape:
                    got = "missing" if s is None else f"shape {tuple(s.shape)}"
                    findings.append(Finding(name, f"sample {i} alone: {got}, batched row has shape {tuple(row.shape)}"))
                    continue
                if not (row.is_floating_point() or row.is_complex()):
                    d = row != s
                else:
                    d = probing.differs(row, s)
                if d.any():
                    diff = float((row.double() - s.double()).abs()[d].nan_to_num(0).amax())
                    findings.append(Finding(name, f"sample {i} alone: {int(d.sum()):,} / {row.numel():,} elements differ "
                                            f"from its batched row (max |diff| {diff:.3g})",
                                            count=int(d.sum()), total=row.numel()))
    return SingleSampleResult(calling.model_name(module), batch, tuple(samples), tuple(findings))
