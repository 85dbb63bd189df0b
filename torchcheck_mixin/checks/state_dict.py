"""State-dict round trips: what ``state_dict()`` carries reproduces the model's outputs."""

import io
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from ..core import calling
from ..core.compare import compare_outputs
from ..core.results import Finding, ValueCheckResult
from ..core.state import ModelGuard, rng_guard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def check_state_dict_round_trip(model: nn.Module, inputs: Any, *, seed: int = 0) -> ValueCheckResult:
    """Save the state dict (through ``torch.save``), load it into a scrambled copy, compare outputs.

    The copy's parameters, buffers and any tensor held as a plain attribute are overwritten with
    random values first, so whatever the state dict does not carry shows up as a difference.
    """
    calling.check_module(model)
    calling.check_inputs(inputs)
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    x = calling.to_device(calling.resolve(inputs, calling.make_generator(seed, device), "inputs"), device)
    details: List[Tuple[str, Any]] = []
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x):
        module.eval()
        expected = calling.call(module, x)
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, map_location=device, weights_only=True)
        twin, _ = calling.deep_copy(module)
        _scramble(twin)
        keys = twin.load_state_dict(state, strict=False)
        twin.eval()
        actual = calling.call(twin, x)
    findings: List[Finding] = []
    if keys.missing_keys or keys.unexpected_keys:
        findings.append(Finding("state_dict", f"missing keys {list(keys.missing_keys)[:10]}, unexpected keys "
                                              f"{list(keys.unexpected_keys)[:10]}"))
    n, diffs = compare_outputs(expected, actual)
    findings += diffs
    if diffs:
        from .counts import unregistered_state

        stray = unregistered_state(module)
        if stray:
            details.append(("state the state dict does not carry", "; ".join(stray[:10])))
    return ValueCheckResult("state_dict_round_trip", n, tuple(findings), tuple(details))


def _reachable_modules(module: nn.Module) -> List[nn.Module]:
    """Submodules, including modules kept in plain lists, tuples and dicts (unregistered ones)."""
    seen: Dict[int, nn.Module] = {}
    todo = [module]
    while todo:
        m = todo.pop()
        if id(m) in seen:
            continue
        seen[id(m)] = m
        todo.extend(m.children())
        for value in vars(m).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
            todo.extend(v for v in items if isinstance(v, nn.Module))
    return list(seen.values())


def _scramble(module: nn.Module) -> None:
    """Overwrite every tensor the copy holds (registered or not) with other values."""
    with rng_guard(seed=12345):
        for m in _reachable_modules(module):
            tensors = list(m._parameters.values()) + list(m._buffers.values())
            tensors += [v for v in vars(m).values() if isinstance(v, torch.Tensor)]
            for t in tensors:
                if t is None:
                    continue
                if t.is_floating_point() or t.is_complex():
                    t.data.copy_(torch.randn(t.shape, dtype=t.dtype).to(t.device))
                elif t.dtype != torch.bool and t.numel():
                    t.data.add_(1)
