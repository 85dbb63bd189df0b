"""State-dict round trips: what ``state_dict()`` carries reproduces the model's outputs.

What is emulated is what really happens when a model is saved and restored:
``torch.save(model.state_dict())``, *rebuild the model with its constructor*, then
``load_state_dict(strict=True)``. A rebuilt model gets from its constructor whatever ``__init__``
computes (non-persistent buffers such as ``position_ids`` or rotary ``inv_freq``, which are left out
of the state dict on purpose and which ``load_state_dict`` never restores), and gets from the state
dict the parameters and persistent buffers. What neither carries is what gets lost.

* With ``model_factory`` (a zero-argument callable returning a fresh model, the constructor), the
  emulation is exact: the rebuilt model is ``model_factory()``. State filled in after construction
  and not saved, be it a plain tensor attribute or a non-persistent buffer, is caught.
* Without it, the rebuilt model is a deep copy whose state-dict tensors (parameters, persistent
  buffers) are overwritten with random values, so ``load_state_dict`` has to restore them all, and
  whose *plain tensor attributes* (tensors held as ``self.x = tensor`` or in plain lists/dicts,
  never declared to the module) are overwritten too: nothing says a constructor recomputes them.
  Non-persistent buffers keep their values: registering with ``persistent=False`` declares them
  derived at construction. A non-persistent buffer filled in after construction is only caught
  with ``model_factory``.

Two passes of the original are compared first (the RNG reseeded identically before each): a model
whose outputs differ between them is nondeterministic, which is reported as such instead of as a
state-dict problem. When the outputs differ after the round trip, the diagnosis names only tensors
the state dict does *not* carry.
"""

import io
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..core import calling
from ..core.compare import compare_outputs, reject_empty
from ..core.results import Finding, ValueCheckResult
from ..core.state import ModelGuard, rng_guard

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)


def check_state_dict_round_trip(model: nn.Module, inputs: Any, *, seed: int = 0,
                                model_factory: Optional[Callable[[], nn.Module]] = None) -> ValueCheckResult:
    """Save the state dict (through ``torch.save``), load it into a rebuilt model, compare outputs.

    See the module docstring for what "rebuilt" means with and without ``model_factory``. An
    output whose tensors are all empty (a zero-size batch) is a ``ValueError``: nothing to compare.
    """
    calling.check_module(model)
    calling.check_inputs(inputs)
    calling.check_callable(model_factory, "model_factory")
    module, _ = calling.unwrap(model)
    device = calling.model_device(module)
    x = calling.to_device(calling.resolve(inputs, calling.make_generator(seed, device), "inputs"), device)
    details: List[Tuple[str, Any]] = []
    findings: List[Finding] = []
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=x) as guard:
        module.eval()
        expected = calling.call(module, x)
        reject_empty(expected, "the model output")
        guard.reseed(seed)
        again = calling.call(module, x)
        n, unstable = compare_outputs(expected, again)
        if unstable:
            details.append(("nondeterministic", "two eval-mode passes of the original model on the same inputs "
                                                 "(RNG reseeded identically) already differ"))
            return ValueCheckResult("state_dict_round_trip", n, tuple(unstable), tuple(details))
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, map_location=device, weights_only=True)
        if model_factory is not None:
            with rng_guard():  # the constructor's random init must not move the user's RNG
                twin = model_factory()
            if not isinstance(twin, nn.Module):
                raise TypeError(f"model_factory() must return an nn.Module, returned {type(twin).__name__}")
            twin, _ = calling.unwrap(twin)
            twin = twin.to(device)
            details.append(("rebuilt with", "model_factory()"))
        else:
            twin, _ = calling.deep_copy(module)
            twin = _scramble(twin)
            details.append(("rebuilt as", "a copy with parameters, persistent buffers and plain tensor attributes "
                                          "scrambled (non-persistent buffers kept: pass model_factory to rebuild "
                                          "with the constructor)"))
        try:
            keys = twin.load_state_dict(state, strict=False)
        except RuntimeError as e:  # size mismatches: the rebuilt model's architecture differs
            findings.append(Finding("state_dict", f"load_state_dict failed: {_first_line(e)}"))
            return ValueCheckResult("state_dict_round_trip", n, tuple(findings), tuple(details))
        if keys.missing_keys or keys.unexpected_keys:
            findings.append(Finding("state_dict", f"missing keys {list(keys.missing_keys)[:10]}, unexpected keys "
                                                  f"{list(keys.unexpected_keys)[:10]}"))
        twin.eval()
        guard.reseed(seed)
        try:
            actual = calling.call(twin, x)
        except Exception as e:  # noqa: BLE001 - scrambled unsaved state can break the forward itself
            actual = None
            findings.append(Finding("output", f"the restored model's forward raised {type(e).__name__}: "
                                              f"{_first_line(e)}"))
    if actual is not None:
        n, diffs = compare_outputs(expected, actual)
        findings += diffs
    if findings:
        stray = unsaved_state(module, state.keys())
        if stray:
            details.append(("state the state dict does not carry", "; ".join(stray[:10])
                            + (f"; ... and {len(stray) - 10} more" if len(stray) > 10 else "")))
    return ValueCheckResult("state_dict_round_trip", n, tuple(findings), tuple(details))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def unsaved_state(module: nn.Module, saved_keys: Any) -> List[str]:
    """Tensors the module holds that are not in the state dict: plain attributes, tensors in plain
    containers, non-persistent buffers. Never a key of the state dict."""
    saved = set(saved_keys)
    out: List[str] = []
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        non_persistent = getattr(m, "_non_persistent_buffers_set", set())
        for key, buf in m._buffers.items():
            if buf is not None and key in non_persistent and prefix + key not in saved:
                out.append(f"{prefix}{key}: a non-persistent buffer {tuple(buf.shape)} (not saved; only a "
                           f"constructor that recomputes it restores it)")
        for key, value in vars(m).items():
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                out.append(f"{prefix}{key}: a plain tensor attribute {tuple(value.shape)} (not registered, "
                           f"not saved; register_buffer)")
            elif isinstance(value, (list, tuple, dict)):
                items = value.values() if isinstance(value, dict) else value
                k = sum(isinstance(v, torch.Tensor) for v in items)
                if k:
                    out.append(f"{prefix}{key}: a plain {type(value).__name__} of {k} tensor(s) (not registered, "
                               f"not saved)")
    return out


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


def _scramble_tensor(t: torch.Tensor) -> None:
    if t.is_floating_point() or t.is_complex():
        t.data.copy_(torch.randn(t.shape, dtype=t.dtype).to(t.device))
    elif t.dtype != torch.bool and t.numel():
        t.data.add_(1)


def _scramble(module: nn.Module) -> nn.Module:
    """Overwrite what a rebuilt model would not have: parameters, persistent buffers, plain tensors.

    Non-persistent buffers are left alone (see the module docstring).
    """
    with rng_guard(seed=12345):
        for m in _reachable_modules(module):
            non_persistent = getattr(m, "_non_persistent_buffers_set", set())
            tensors = list(m._parameters.values())
            tensors += [b for k, b in m._buffers.items() if k not in non_persistent]
            for key, value in vars(m).items():
                if key in ("_parameters", "_buffers", "_modules"):
                    continue
                if isinstance(value, torch.Tensor):
                    tensors.append(value)
                elif isinstance(value, (list, tuple, dict)):
                    items = value.values() if isinstance(value, dict) else value
                    tensors += [v for v in items if isinstance(v, torch.Tensor)]
            for t in tensors:
                if t is not None:
                    _scramble_tensor(t)
    return module
