"""How a check runs the user's model: argument validation, unwrapping, inputs, devices.

Inputs convention, everywhere a model is run:

* a ``Tensor`` means ``model(x)``;
* a ``tuple`` or ``list`` means ``model(*inputs)``;
* a ``dict`` (any Mapping) means ``model(**inputs)``;
* a callable is called with a seeded ``torch.Generator`` and must return one of the above: this
  is how a check draws fresh synthetic data for each of its ``trials``.

Inputs (and targets) are moved to the model's device, recursively; tensors created under
``torch.inference_mode()`` are cloned outside it, since autograd cannot save them for backward.
The model always gets private copies of the user's tensors: a forward that writes into its input
in place leaves the user's values (and version counters) untouched.
Wrappers (``torch.compile``'s ``OptimizedModule``, ``DataParallel``,
``DistributedDataParallel``) are unwrapped so that names carry no prefix and the check runs
eagerly on the real module.
"""

import copy
from collections.abc import Mapping
from typing import Any, Callable, Tuple

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from . import distributed, trees

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

def check_module(model: Any, argname: str = "model", *, allow_meta: bool = False) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{argname} must be a torch.nn.Module, got {type(model).__name__}")
    unwrap(model, allow_meta=allow_meta)  # a meta-device model: the ValueError below
    return model


def unwrap(model: nn.Module, *, allow_meta: bool = False) -> Tuple[nn.Module, str]:
    """``distributed.unwrap``; every check gets its module through here, so this is also where a
    model on the meta device is refused (``allow_meta=True`` only where no value is read, e.g. counts)."""
    module, prefix = distributed.unwrap(model)
    # Every check passes here, often more than once: look at the flags first and build the named
    # list (one string per tensor) only for a model that does hold a meta tensor.
    if not allow_meta and isinstance(module, nn.Module) and _holds_meta(module):
        named = [(f"parameter {n}", t) for n, t in module.named_parameters()]
        named += [(f"buffer {n}", t) for n, t in module.named_buffers()]
        reject_meta(named, "the model's parameters/buffers", "model.to_empty(device='cpu') and re-initialise "
                    "(model.reset_parameters() per module, or load_state_dict(..., assign=True))")
    return module, prefix


def _holds_meta(module: nn.Module) -> bool:
    """Whether any parameter or buffer is on the meta device.

    Every check calls this, so it walks ``_modules`` / ``_parameters`` / ``_buffers`` directly:
    ``module.parameters()`` + ``buffers()`` build a qualified name per tensor: 4.2 ms against
    1.5 ms on a model of 750 modules and 1,000 tensors (measured, one thread), and every check
    calls it up to four times.
    """
    stack, seen = [module], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for t in m._parameters.values():
            if t is not None and t.is_meta:
                return True
        for t in m._buffers.values():
            if t is not None and t.is_meta:
                return True
        stack.extend(c for c in m._modules.values() if c is not None)
    return False


def reject_meta(named: Any, what: str, fix: str) -> None:
    """A ``ValueError`` naming the tensors on the meta device (shapes only, no values to check)."""
    meta = [name for name, t in named if isinstance(t, torch.Tensor) and t.is_meta]
    if meta:
        shown = ", ".join(meta[:3]) + (f" and {len(meta) - 3} more" if len(meta) > 3 else "")
        raise ValueError(f"{what} are on the meta device (not materialised; {len(meta)} tensor"
                         f"{'s' if len(meta) != 1 else ''}: {shown}), so there are no values to check: "
                         f"materialise first, e.g. {fix}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter (or buffer); CPU for a module that holds neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_name(model: nn.Module) -> str:
    return type(model).__name__


def check_inputs(inputs: Any, argname: str = "inputs") -> None:
    if inputs is None:
        raise TypeError(
            f"{argname} must be a Tensor (model(x)), a tuple/list (model(*inputs)), a dict "
            f"(model(**inputs)) or a callable taking a torch.Generator; got None"
        )
    if isinstance(inputs, (torch.Tensor, tuple, list, Mapping)) or callable(inputs):
        return
    raise TypeError(
        f"{argname} must be a Tensor (model(x)), a tuple/list (model(*inputs)), a dict "
        f"(model(**inputs)) or a callable taking a torch.Generator; got {type(inputs).__name__}"
    )


def resolve(value: Any, generator: torch.Generator, argname: str) -> Any:
    """Call ``value`` with the generator when it is a data factory; else return it unchanged."""
    if callable(value) and not isinstance(value, (torch.Tensor, nn.Module)):
        value = value(generator)
        if value is None:
            raise TypeError(f"{argname}(generator) returned None; it must return the data")
    return value


def to_device(value: Any, device: torch.device) -> Any:
    """Move every tensor to ``device``; clone inference tensors so autograd can use them."""

    def move(t: torch.Tensor) -> torch.Tensor:
        if t.is_meta and device.type != "meta":
            reject_meta([("inputs", t)], f"the inputs or target (a tensor of shape {tuple(t.shape)})",
                        "torch.randn(shape) or your real data on the model's device")
        user = t
        if t.is_inference():
            with torch.inference_mode(False):
                t = t.clone()
        if t.device != device:
            t = t.to(device)
        # Detached: a check's backward must not write .grad into the user's inputs or targets.
        t = t.detach()
        if not t.is_sparse and t.numel() and t.untyped_storage().data_ptr() == user.untyped_storage().data_ptr():
            # A private copy: a forward that writes into its input (x.mul_(8)) must not change the
            # user's tensor, nor its version counter (issue 14). One clone per call, cheap next to forward.
            t = t.clone()
        return t

    return trees.map_tensors(move, value)


def call(model: nn.Module, inputs: Any) -> Any:
    """Run ``model`` with the inputs convention above."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    raise TypeError(f"inputs must be a Tensor, tuple/list or dict, got {type(inputs).__name__}")


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device if device.type in ("cpu", "cuda") else "cpu")
    gen.manual_seed(seed)
    return gen


def check_seed(seed: Any, trials: Any) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not isinstance(trials, int) or isinstance(trials, bool):
        raise TypeError(f"trials must be an int >= 1, got {type(trials).__name__} {trials!r}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")


def check_tolerance(value: Any, argname: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argname} must be a non-negative float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{argname} must be a finite non-negative float, got {value!r}")
    return value


def check_callable(value: Any, argname: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{argname} must be callable or None, got {type(value).__name__}")


def lazy_modules(model: nn.Module, modules: Any = None) -> Tuple[str, ...]:
    """Names of submodules whose parameters are still uninitialized (``nn.LazyLinear`` & co)."""
    out = []
    for name, m in modules if modules is not None else model.named_modules():
        if not isinstance(m, LazyModuleMixin):
            continue
        fn: Callable[[], bool] = getattr(m, "has_uninitialized_params", None)
        if fn is not None and fn():
            out.append(f"{name or '<root>'} ({type(m).__name__})")
    return tuple(out)


def deep_copy(value: Any) -> Any:
    """``copy.deepcopy`` that also copes with graph tensors cached on modules.

    A forward that stores an intermediate on ``self`` (``self.attn = scores.softmax(-1)``) leaves
    a non-leaf tensor there, and deepcopy refuses those ("Only Tensors created explicitly by the
    user support the deepcopy protocol"). The copy gets a detached clone of each such tensor,
    also inside dict, list and tuple attributes (``self._losses = {"sparsity": loss}``).
    """
    memo: dict = {}
    stack = [value] if isinstance(value, nn.Module) else [v for v in (value if isinstance(value, tuple) else ())
                                                           if isinstance(v, nn.Module)]
    def visit(attr, depth):
        if isinstance(attr, torch.Tensor):
            if attr.grad_fn is not None and id(attr) not in memo:
                memo[id(attr)] = attr.detach().clone()  # a copy: the twin may be written to
        elif depth < 4 and isinstance(attr, dict):  # self._losses = {"sparsity": loss} (Ludwig's TabNet)
            for v in attr.values():
                visit(v, depth + 1)
        elif depth < 4 and isinstance(attr, (list, tuple)):
            for v in attr:
                visit(v, depth + 1)

    for root in stack:
        for m in root.modules():
            for key, attr in vars(m).items():
                if key not in ("_parameters", "_buffers", "_modules"):
                    visit(attr, 0)
    return copy.deepcopy(value, memo), memo


def private_step(optimizer: torch.optim.Optimizer) -> None:
    """One step of a *copied* optimizer, without the hooks of the original.

    ``Optimizer`` wraps each class's ``step`` once (``profile_hook_step``) to run the global and
    per-instance step hooks; the copy must run none of them (they belong to the user's training
    loop), and an instance attribute ``step`` (an LR scheduler's wrapper) would even call back
    into the user's optimizer. So the class's unwrapped function is called directly.
    """
    step = type(optimizer).step
    if getattr(step, "hooked", False) and hasattr(step, "__wrapped__"):
        step = step.__wrapped__
    step(optimizer)
