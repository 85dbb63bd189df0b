"""The loss a check backpropagates when the test gives none.

Never ``out.sum()`` or ``out.mean()``: after a softmax, a normalisation or a BatchNorm in train
mode those are constant in the parameters, and their gradients are rounding noise (1e-7) or
exactly zero, so a correct model would look broken. Instead:

* with a ``loss_fn``: ``loss_fn(output, target)`` (``loss_fn(output)`` when there is no target);
* with a floating target of the output's shape: mean squared error;
* with an integer target shaped like the output minus its class dimension (dim 1):
  cross-entropy;
* with no target, when the output carries its own loss (Hugging Face's ``ModelOutput.loss`` for
  inputs holding ``labels``, or a ``"loss"`` key / ``.loss`` attribute that is a 0-d floating
  tensor): that loss, the one the user trains with;
* with no target otherwise: ``sum(leaf * W)`` over every floating (or complex) tensor leaf of the output,
  ``W`` drawn from the check's private generator, so every output element reaches the loss with
  a non-zero weight.

Precedence: ``loss_fn`` > ``target`` (default loss on the ``output=``-selected tensor) > the
output's own ``.loss`` > the weighted sum. With ``output=`` and no target, the weighted sum runs
on the selected tensor (the selection is explicit, so the own loss is not used).

Anything else (a target that would broadcast, an integer target of the output's shape, a
structured output with a plain target) is a ``ValueError`` asking for a ``loss_fn``: a silent
broadcast would test the wrong thing.
"""

from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from . import trees
from .shapes import format_shape

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


class OutputTargetMismatch(ValueError):
    """The output and the target of a default loss do not fit each other.

    A ``ValueError`` for the engine (``check_*``); the assertion layer decides whether the test
    misused the call or the model lost its batch dimension (see ``batch_lost``).
    """

    def __init__(self, text: str, out_shape: torch.Size, target_shape: torch.Size):
        super().__init__(text)
        self.out_shape = tuple(out_shape)
        self.target_shape = tuple(target_shape)

    def batch_lost(self, input_batch: Optional[int]) -> bool:
        """The model's fault: the target has the inputs' batch size and the output does not."""
        if input_batch is None or not self.out_shape or not self.target_shape:
            return False
        return self.target_shape[0] == input_batch and self.out_shape[0] != input_batch


def _random_weights(leaf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    shape = leaf.shape + ((2,) if leaf.is_complex() else ())
    w = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return w.to(leaf.device)


def _real(leaf: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(leaf) if leaf.is_complex() else leaf


def weighted_sum_loss(output: Any, generator: torch.Generator) -> torch.Tensor:
    parts = []
    for _, leaf in trees.tensor_leaves(output):
        if leaf.is_floating_point() or leaf.is_complex():
            parts.append((_real(leaf).float() * _random_weights(leaf, generator)).sum())
    if not parts:
        raise ValueError(
            f"the model output has no floating-point tensor to build a default loss from "
            f"({describe_output(output)}); pass loss_fn"
        )
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def describe_output(output: Any) -> str:
    leaves = list(trees.leaves(output))
    if len(leaves) == 1 and not leaves[0][0]:
        leaf = leaves[0][1]
        if isinstance(leaf, torch.Tensor):
            return f"a {leaf.dtype} tensor of shape {format_shape(leaf.shape)}"
        return f"a {type(leaf).__name__}"
    parts = []
    for path, leaf in leaves[:6]:
        kind = f"{leaf.dtype} {format_shape(leaf.shape)}" if isinstance(leaf, torch.Tensor) else type(leaf).__name__
        parts.append(f"{trees.describe_path(path)}: {kind}")
    more = f", ... and {len(leaves) - 6} more" if len(leaves) > 6 else ""
    return "; ".join(parts) + more


def _pair_loss(out: Any, target: Any, where: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"cannot build a default loss: {where} is {type(out).__name__}, not a tensor; pass loss_fn")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target{where[6:]} must be a tensor, got {type(target).__name__}")
    if not (out.is_floating_point() or out.is_complex()):
        raise ValueError(f"cannot build a default loss: {where} has dtype {out.dtype}; pass loss_fn")
    if target.is_floating_point():
        if target.shape != out.shape:
            raise OutputTargetMismatch(
                f"target{where[6:]} has shape {format_shape(target.shape)} but {where} has shape "
                f"{format_shape(out.shape)}; a default MSE would broadcast them. Reshape the target "
                f"or pass loss_fn", out.shape, target.shape
            )
        return F.mse_loss(_real(out).float(), _real(target).float())
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        expected = out.shape[:1] + out.shape[2:] if out.dim() >= 2 else None
        if expected is None or target.shape != expected:
            raise OutputTargetMismatch(
                f"integer target{where[6:]} of shape {format_shape(target.shape)} does not fit {where} of "
                f"shape {format_shape(out.shape)}: the default cross-entropy needs a class dimension "
                f"at dim 1 (output (N, C, ...), target (N, ...)); pass loss_fn", out.shape, target.shape
            )
        if target.device.type == "cpu" and target.numel():
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= out.shape[1]:
                raise ValueError(
                    f"target{where[6:]} holds class indices {low}..{high} but {where} has "
                    f"{out.shape[1]} classes at dim 1"
                )
        return F.cross_entropy(out.float(), target.long())
    raise TypeError(f"target{where[6:]} has dtype {target.dtype}; expected a floating or integer tensor")


def target_loss(output: Any, target: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return _pair_loss(output, target, "output")
    out_leaves = trees.tensor_leaves(output)
    if isinstance(target, torch.Tensor):
        raise ValueError(
            f"the model output is structured ({describe_output(output)}) but target is a single "
            f"tensor; pass a target of the same structure or a loss_fn"
        )
    tgt = dict(trees.tensor_leaves(target))
    paths = [p for p, _ in out_leaves]
    if set(tgt) - set(paths) or not tgt:
        raise ValueError(
            f"target's structure does not mirror the output ({describe_output(output)}); pass loss_fn"
        )
    parts = [_pair_loss(leaf, tgt[p], trees.describe_path(p)) for p, leaf in out_leaves if p in tgt]
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def _available(output: Any) -> str:
    if isinstance(output, Mapping):
        return f"available keys: {', '.join(repr(k) for k in output)}"
    if isinstance(output, (tuple, list)):
        return f"the output is a {type(output).__name__} of length {len(output)}"
    return f"the output is {describe_output(output)}"


def check_selector(output: Any) -> None:
    """``output=`` must be None, a key (str), an index (int) or a callable."""
    if output is None or callable(output) or isinstance(output, str):
        return
    if isinstance(output, int) and not isinstance(output, bool):
        return
    raise TypeError(f"output= must be a key (str), an index (int) or a callable taking the model output; "
                    f"got {type(output).__name__} {output!r}")


def select_output(output: Any, selector: Any) -> Any:
    """The tensor ``output=`` picks from the model output (a key, an index or a callable)."""
    if selector is None:
        return output
    if callable(selector):
        picked = selector(output)
        if not isinstance(picked, torch.Tensor):
            raise ValueError(f"output= returned a {type(picked).__name__}, not a tensor; {_available(output)}")
        return picked
    if isinstance(selector, str):
        if isinstance(output, Mapping) and selector in output:
            picked = output[selector]
        elif not isinstance(output, Mapping) and not isinstance(output, (tuple, list, torch.Tensor)) \
                and hasattr(output, selector):
            picked = getattr(output, selector)
        else:
            raise ValueError(f"output={selector!r}: no such key in the model output; {_available(output)}")
    else:
        if not isinstance(output, (tuple, list)) or not -len(output) <= selector < len(output):
            raise ValueError(f"output={selector!r}: index out of range or output not a tuple/list; "
                             f"{_available(output)}")
        picked = output[selector]
    if not isinstance(picked, torch.Tensor):
        raise ValueError(f"output={selector!r} picks a {type(picked).__name__}, not a tensor; {_available(output)}")
    return picked


class Selected:
    """A ``loss_fn`` (or None: the default loss) applied to the tensor ``output=`` selects.

    Checks receive it in place of ``loss_fn``; ``compute_loss`` unwraps it, so every check that
    computes a loss honours ``output=`` through one path.
    """

    def __init__(self, selector: Any, loss_fn: Optional[Callable]):
        self.selector = selector
        self.loss_fn = loss_fn

    def __call__(self, output: Any, target: Any = None) -> torch.Tensor:
        picked = select_output(output, self.selector)
        if self.loss_fn is not None:
            return self.loss_fn(picked) if target is None else self.loss_fn(picked, target)
        if target is None:
            raise ValueError("output= without target or loss_fn: the default loss needs the check's generator")
        return target_loss(picked, target)


def with_selector(loss_fn: Optional[Callable], output: Any) -> Optional[Callable]:
    """``loss_fn`` combined with the ``output=`` selector (unchanged when ``output`` is None)."""
    check_selector(output)
    if output is None:
        return loss_fn
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    return Selected(output, loss_fn)


def own_loss(output: Any) -> Optional[torch.Tensor]:
    """The training loss the output carries (Hugging Face's ``ModelOutput.loss``, a ``"loss"`` key).

    Only a 0-d floating tensor counts; anything else (absent, None, per-sample) returns None.
    """
    if isinstance(output, torch.Tensor):
        return None
    if isinstance(output, Mapping):
        loss = output.get("loss") if "loss" in output else None
    else:
        loss = getattr(output, "loss", None) if not isinstance(output, (tuple, list)) else None
    if isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.is_floating_point():
        return loss
    return None


def compute_loss(
    output: Any, target: Any, loss_fn: Optional[Callable], generator: torch.Generator
) -> torch.Tensor:
    """The scalar loss of one forward pass (see the module docstring for the rules)."""
    selected = isinstance(loss_fn, Selected)
    if selected:
        output = select_output(output, loss_fn.selector)
        loss_fn = loss_fn.loss_fn
    if loss_fn is not None:
        loss = loss_fn(output) if target is None else loss_fn(output, target)
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"loss_fn must return a tensor, returned {type(loss).__name__}")
        if loss.dim() != 0:
            raise ValueError(
                f"loss_fn must return a 0-d tensor, returned shape {format_shape(loss.shape)}; "
                f"reduce it (reduction='mean')"
            )
        if not (loss.is_floating_point() or loss.is_complex()):
            raise ValueError(f"loss_fn returned a {loss.dtype} tensor; a loss must be floating point")
        return loss.real if loss.is_complex() else loss
    if target is not None:
        return target_loss(output, target)
    if not selected:
        own = own_loss(output)
        if own is not None:
            return own
    return weighted_sum_loss(output, generator)
