"""Can the model learn at all? A few optimizer steps on one batch must cut the loss.

The classic sanity check (Karpathy's "overfit one batch", Ludwig's developer guide): if a model
cannot drive the loss down on a single fixed batch, something between the loss and the weights
is broken. It runs on a deep copy of the model (and of the optimizer, when one is given), in
train mode, under a forked RNG: the user's model, optimizer and RNG are untouched.

Loss: ``loss_fn(output, target)`` when given, else the default of ``losses`` for a target (MSE or
cross-entropy). Without a target, the copy learns to fit a random target of the output's shape
(drawn from the private generator): memorising random targets is exactly what one batch allows.
Default optimizer: Adam with lr 1e-2.
"""

import copy
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from torch import nn
import torch.nn.functional as F

from . import calling, trees
from .losses import compute_loss
from .results import OverfitResult
from .state import ModelGuard

__unittest = True

DEFAULT_LR = 1e-2


def _random_target_loss(output: Any, gen: torch.Generator) -> Callable[[Any], torch.Tensor]:
    leaves = [(p, t) for p, t in trees.tensor_leaves(output) if t.is_floating_point()]
    if not leaves:
        raise ValueError("the model output has no floating-point tensor to fit; pass target= or loss_fn=")
    targets = {p: torch.randn(t.shape, generator=gen, device=gen.device).to(t.device) for p, t in leaves}

    def loss(out: Any) -> torch.Tensor:
        parts = [F.mse_loss(t.float(), targets[p]) for p, t in trees.tensor_leaves(out) if p in targets]
        return torch.stack(parts).sum()

    return loss


def check_can_overfit_batch(model: nn.Module, inputs: Any, target: Any = None, *, steps: int = 50,
                            loss_fn: Optional[Callable] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                            min_decrease: float = 0.5, seed: int = 0) -> OverfitResult:
    """Train a copy for ``steps`` steps on one batch; the loss must fall by ``min_decrease`` (a fraction)."""
    calling.check_module(model)
    calling.check_inputs(inputs)
    calling.check_callable(loss_fn, "loss_fn")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(min_decrease, bool) or not isinstance(min_decrease, (int, float)) or not 0 < min_decrease <= 1:
        raise ValueError(f"min_decrease must be a fraction in (0, 1], got {min_decrease!r}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    gen = calling.make_generator(seed, device)
    x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
    y = calling.to_device(calling.resolve(target, gen, "target"), device) if target is not None else None
    losses = []
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=x):
        if optimizer is not None:
            twin, opt = copy.deepcopy((module, optimizer))
            opt._optimizer_step_pre_hooks = OrderedDict()
            opt._optimizer_step_post_hooks = OrderedDict()
            step = lambda: type(opt).step(opt)  # noqa: E731 - the class's step, never a patched one
        else:
            twin = copy.deepcopy(module)
            params = [p for p in twin.parameters() if p.requires_grad]
            if not params:
                raise ValueError("the model has no trainable parameters to fit")
            opt = torch.optim.Adam(params, lr=DEFAULT_LR)
            step = opt.step
        twin.train()
        fit = None
        for _ in range(steps + 1):
            out = calling.call(twin, x)
            if loss_fn is None and y is None:
                fit = fit or _random_target_loss(out, gen)
                loss = fit(out)
            else:
                loss = compute_loss(out, y, loss_fn, gen)
            losses.append(loss.detach().reshape(1))
            if len(losses) == steps + 1:
                break  # the last forward only measures
            opt.zero_grad(set_to_none=True)
            loss.backward()
            step()
    host = torch.cat(losses).double().cpu().tolist()  # one transfer for the whole run
    finite = [v for v in host if v == v]
    return OverfitResult(
        steps=steps, initial=host[0], final=host[-1], best=min(finite) if finite else float("nan"),
        min_decrease=float(min_decrease), losses=tuple(host),
        optimizer=type(optimizer).__name__ if optimizer is not None else f"Adam(lr={DEFAULT_LR:g})",
    )
