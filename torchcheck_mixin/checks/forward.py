"""Forward-pass shape checks: run the model once, match its output against a shape spec.

The forward runs under ``torch.no_grad()`` inside the state guard, in eval mode by default
(``train=True`` for train mode; the output structure of some models depends on it), so BatchNorm
statistics, dropout RNG and every submodule's mode are as before afterwards.

>>> result = check_forward_shape(nn.Linear(3, 10), torch.zeros(8, 3), ("B", 10))
>>> result.passed, result.bindings
(True, (('B', 8),))
"""

from typing import Any, Optional, Tuple

import torch
from torch import nn

from ..core import calling, distributed, trees
from ..core.results import ForwardShapeResult
from ..core.shapes import format_spec, match, parse_spec
from ..core.state import ModelGuard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def run_forward(model: nn.Module, inputs: Any, *, train: bool = False, seed: int = 0) -> Any:
    """One guarded forward pass without a graph; returns the output.

    The user's own exceptions propagate unchanged, with the model restored.
    """
    calling.check_module(model)
    calling.check_inputs(inputs)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    # FSDP: a forward without backward leaves the root's parameters unsharded; fsdp_settled
    # reshards them (or resets FSDP after an exception) before the guard restores the module.
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=inputs), distributed.fsdp_settled(module):
        module.train(train)
        x = calling.to_device(calling.resolve(inputs, calling.make_generator(seed, device), "inputs"), device)
        return calling.call(module, x)


def _shapes(value: Any) -> Tuple[Tuple[str, Optional[Tuple[int, ...]]], ...]:
    out = []
    for path, leaf in trees.leaves(value):
        shape = tuple(leaf.shape) if isinstance(leaf, torch.Tensor) else None
        out.append((trees.format_path(path), shape))
    return tuple(out)


def match_output(output: Any, expected_shape: Any, *, model: str = "", inputs: Any = None,
                 train: bool = False) -> ForwardShapeResult:
    """Match an output (already computed) against ``expected_shape``."""
    node = parse_spec(expected_shape, "expected_shape")
    result = match(node, output)
    return ForwardShapeResult(
        spec=format_spec(expected_shape),
        outputs=_shapes(output),
        mismatches=result.mismatches,
        bindings=result.bindings,
        model=model,
        inputs=_shapes(inputs) if inputs is not None and not callable(inputs) else (),
        train=train,
    )


def check_forward_shape(model: nn.Module, inputs: Any, expected_shape: Any, *, train: bool = False) -> ForwardShapeResult:
    """Run ``model`` on ``inputs`` once and match the output against ``expected_shape``.

    The spec is validated before the model runs, so a malformed spec costs no forward pass.
    """
    parse_spec(expected_shape, "expected_shape")
    output = run_forward(model, inputs, train=train)
    module, _ = calling.unwrap(model)
    return match_output(output, expected_shape, model=calling.model_name(module), inputs=inputs, train=train)
