"""Cost of the update checks on the three largest real-catalogue models (issue 11, "Done when").

gradient mode vs a bare forward + ``torch.autograd.grad``; snapshot mode with AdamW vs a bare AdamW
training step (forward, backward, step). Median of 10 each, after one warm-up.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/realworld_cost.py
"""

import statistics
import time
import warnings

import torch

from tests.realworld import models, oracles
from torchcheck_mixin import check_parameters_updated

NAMES = ("torchvision_resnet_zero_init_residual", "timm_resnet_zero_init_last", "mixtral_moe")


def median(fn, n=10):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    warnings.simplefilter("ignore")
    for name in NAMES:
        case = models.by_name(name)
        model = case.build(0).train()
        x, y = case.inputs(), (case.target() if case.target is not None else None)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = case.optimizer(params)
        kw = {"output": case.output} if case.output is not None else {}

        def bare_grad():
            loss = oracles.training_loss(case, oracles.call(model, x), y, torch.Generator().manual_seed(0))
            torch.autograd.grad(loss, params, allow_unused=True)

        def bare_step():
            opt.zero_grad()
            oracles.training_loss(case, oracles.call(model, x), y, torch.Generator().manual_seed(0)).backward()
            opt.step()

        def check(mode, optimizer=None):
            return lambda: check_parameters_updated(model, x, y, mode=mode, loss_fn=case.loss_fn, optimizer=optimizer,
                                                    allow_not_updated=list(case.allow_not_updated),
                                                    expect_frozen=list(case.expect_frozen), **kw)

        g, s = median(bare_grad), median(bare_step)
        cg, cs = median(check("gradient")), median(check("snapshot", opt))
        n = sum(p.numel() for p in model.parameters())
        print(f"{name} ({n:,} params): gradient {cg * 1e3:.1f} ms / bare fwd+grad {g * 1e3:.1f} ms = {cg / g:.2f}x; "
              f"snapshot+AdamW {cs * 1e3:.1f} ms / bare AdamW step {s * 1e3:.1f} ms = {cs / s:.2f}x")


if __name__ == "__main__":
    main()
