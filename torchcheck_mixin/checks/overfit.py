"""Can the model learn at all? A few optimizer steps on one batch must cut the loss.

The classic sanity check (Karpathy's "overfit one batch", Ludwig's developer guide): if a model
cannot drive the loss down on a single fixed batch, something between the loss and the weights
is broken. It runs on a deep copy of the model (and of the optimizer, when one is given), in
train mode, under a forked RNG: the user's model, optimizer and RNG are untouched.

Loss: ``loss_fn(output, target)`` when given, else the default of ``losses`` for a target (MSE or
cross-entropy). Without a target, the copy learns to reproduce the outputs of a *teacher*: the
same model with every trainable weight perturbed (drawn from the private generator). Unlike random
targets, a teacher's outputs are always within the model's reach.
Default optimizer: Adam with lr 1e-2.
"""

from typing import Any, Callable, Optional

import torch
from torch import nn
import torch.nn.functional as F

from ..core import default_loss as _dl
from ..core import calling, trees
from ..core.default_loss import compute_loss
from ..core.results import OverfitResult
from ..core.state import ModelGuard, check_not_inference_mode

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

DEFAULT_LR = 1e-2


def _teacher_target_loss(twin: nn.Module, x: Any, gen: torch.Generator,
                         select: Callable[[Any], Any] = lambda o: o) -> Callable[[Any], torch.Tensor]:
    """MSE to the outputs of a perturbed copy of the model (a target the model can reach).

    Random targets are not always reachable (a 21-parameter linear layer cannot fit 24 random
    numbers), which would make a correct model look broken. The outputs of the same architecture
    with every trainable weight moved by about one standard deviation of its tensor are.
    """
    teacher, _ = calling.deep_copy(twin)
    with torch.no_grad():
        for p in teacher.parameters():
            if not p.requires_grad or not (p.is_floating_point() or p.is_complex()) or p.numel() == 0:
                continue
            magnitude = p.detach().abs() if p.is_complex() else p.detach()
            scale = magnitude.float().std() if p.numel() > 1 else magnitude.abs().float().reshape(())
            noise = torch.randn(p.shape, generator=gen, device=gen.device).to(p.device)
            p.add_((noise * (scale + 0.05)).to(p.dtype))
        teacher.eval()
        reference = select(calling.call(teacher, x))
    leaves = {p: t.detach() for p, t in trees.tensor_leaves(reference) if t.is_floating_point()}
    if not leaves:
        raise ValueError("the model output has no floating-point tensor to fit; pass target= or loss_fn=")

    def loss(out: Any) -> torch.Tensor:
        out = select(out)
        parts = [F.mse_loss(t.float(), leaves[p].float()) for p, t in trees.tensor_leaves(out) if p in leaves]
        return torch.stack(parts).sum()

    return loss


def check_can_overfit_batch(model: nn.Module, inputs: Any, target: Any = None, *, steps: int = 50,
                            loss_fn: Optional[Callable] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                            min_decrease: float = 0.5, seed: int = 0, output: Any = None) -> OverfitResult:
    """Train a copy for ``steps`` steps on one batch; the loss must fall by ``min_decrease`` (a fraction)."""
    check_not_inference_mode("check_can_overfit_batch")
    calling.check_module(model)
    calling.check_inputs(inputs)
    calling.check_callable(loss_fn, "loss_fn")
    loss_fn = _dl.with_selector(loss_fn, output)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int >= 1, got {type(steps).__name__} {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps}")
    if isinstance(min_decrease, bool) or not isinstance(min_decrease, (int, float)):
        raise TypeError(f"min_decrease must be a fraction in (0, 1], got {type(min_decrease).__name__} {min_decrease!r}")
    if not 0 < min_decrease <= 1:
        raise ValueError(f"min_decrease must be a fraction in (0, 1], got {min_decrease!r}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    gen = calling.make_generator(seed, device)
    x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
    y = calling.to_device(calling.resolve(target, gen, "target"), device) if target is not None else None
    losses = []
    problem = ""
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=x):
        if optimizer is not None:
            if calling.lazy_modules(module):
                raise ValueError("the model has uninitialized lazy modules and an optimizer was given; run one "
                                 "forward pass before creating the optimizer")
            (twin, opt), _ = calling.deep_copy((module, optimizer))
            step = lambda: calling.private_step(opt)  # noqa: E731 - without the user's hooks
        else:
            twin, _ = calling.deep_copy(module)
            if calling.lazy_modules(twin):  # create the parameters before the optimizer sees them
                with torch.no_grad():
                    calling.call(twin, x)
            params = [p for p in twin.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=DEFAULT_LR) if params else None
            step = (lambda: calling.private_step(opt)) if opt is not None else (lambda: None)
        selected = isinstance(loss_fn, _dl.Selected) and loss_fn.loss_fn is None
        if y is None and (loss_fn is None or selected):  # a reachable target (of the selected tensor)
            fit = _teacher_target_loss(twin, x, gen, (lambda o: _dl.select_output(o, output)) if selected
                                       else (lambda o: o))
        else:
            fit = None
        twin.train()
        # ModelGuard has switched autocast's weight-cast cache off: under the caller's
        # torch.autocast every step would otherwise reuse step 1's bf16 weights (a flat loss).
        for _ in range(steps + 1):
            out = calling.call(twin, x)
            own = _dl.own_loss(out) if fit is not None and not selected else None
            if own is not None:  # a Hugging Face output with labels: the loss the user trains with
                loss = own
            elif fit is not None:
                loss = fit(out)
            else:
                loss = compute_loss(out, y, loss_fn, gen)
            losses.append(loss.detach().reshape(1))
            if not loss.requires_grad or opt is None:
                problem = ("the loss does not depend on any trainable parameter (the forward builds no graph)"
                           if opt is not None else "the model has no trainable parameters")
                break
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
        problem=problem,
    )
