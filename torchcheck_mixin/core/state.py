"""Leave the model as it was found: the guard every check runs inside.

A forward pass is not read-only. In train mode BatchNorm updates its running statistics, dropout
consumes the global RNG, ``spectral_norm`` rewrites its ``_u``/``_v`` buffers, a forward may cache
tensors on ``self`` or even replace a Parameter. ``ModelGuard`` makes all of that invisible:

* every submodule's ``training`` flag is saved and restored one by one (restoring only the root's
  flag is wrong as soon as one child was in a different mode);
* buffers are *swapped* for private clones during the check, so the user's buffer tensors are
  never written (restoring them with ``copy_`` would bump their autograd version counters);
* each module's ``__dict__`` and its ``_parameters``/``_buffers``/``_modules`` dicts are restored
  to the same objects, so attributes set or Parameters replaced in ``forward`` leave no trace;
* ``.grad`` references are saved, set to ``None`` for the check and put back (autograd would
  otherwise accumulate into a held ``.grad`` in place), ``requires_grad`` flags are restored;
* the CPU RNG, and the RNG of the CUDA devices in use, are forked, never initialising CUDA;
  numpy's and Python's ``random`` state are never touched.

>>> with ModelGuard(model, seed=0):
...     model.train()
...     out = model(x)
"""

import contextlib
import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import trees

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

_MODULE_DICTS = ("_parameters", "_buffers", "_modules")


def cuda_devices(value: Any) -> List[int]:
    """Indices of the CUDA devices holding any tensor of ``value`` (a tensor or a structure)."""
    found = set()
    for _, t in trees.tensor_leaves(value):
        if t.device.type == "cuda":
            found.add(t.device.index if t.device.index is not None else torch.cuda.current_device())
    return sorted(found)


@contextlib.contextmanager
def rng_guard(devices: Sequence[int] = (), seed: Optional[int] = None):
    """Fork the CPU RNG (and the given CUDA devices' RNG); seed it inside when ``seed`` is given.

    CUDA is never initialised here: devices are only listed when tensors already live on them.
    """
    devices = list(devices) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            seed_forked(seed, devices)
        yield devices


def seed_forked(seed: int, devices: Sequence[int]) -> None:
    """Seed the CPU generator and the given CUDA devices' generators, and no other.

    ``torch.manual_seed`` would also reseed every other initialised CUDA device, whose state a
    fork of the RNG on the model's devices does not restore.
    """
    torch.random.default_generator.manual_seed(seed)
    for index in devices:
        torch.cuda.default_generators[index].manual_seed(seed)


class ModelGuard:
    """Context manager that snapshots a module tree and restores it on exit, pass or raise.

    ``seed`` seeds the forked RNG inside, so train-mode randomness (dropout) is reproducible.
    ``extra`` holds the inputs: the RNG of the CUDA devices they live on is forked as well.
    ``modules`` is a walk of the model already made by the caller (``parameters.walk``).
    """

    def __init__(self, model: nn.Module, *, seed: Optional[int] = None, extra: Any = None,
                 modules: Optional[Sequence[Tuple[str, nn.Module]]] = None):
        self.model = model
        self._walk = modules
        self.seed = seed
        self.extra = extra
        self._rng: Optional[contextlib.AbstractContextManager] = None

    def __enter__(self) -> "ModelGuard":
        if self._walk is None:
            self._walk = list(self.model.named_modules())
        seen: Dict[int, nn.Module] = {}
        for _, m in self._walk:
            seen.setdefault(id(m), m)
        modules = list(seen.values())
        self._dicts: List[Tuple[nn.Module, Dict[str, Any], Dict[str, Dict[str, Any]]]] = [
            (m, dict(m.__dict__), {name: dict(getattr(m, name)) for name in _MODULE_DICTS if hasattr(m, name)})
            for m in modules
        ]
        params = list(self.model.parameters())
        self._params = [(p, p.requires_grad, p.grad) for p in params]
        for p in params:
            if p.grad is not None:
                p.grad = None
        # Private buffer clones: shared buffers stay shared (one clone per tensor identity).
        clones: Dict[int, torch.Tensor] = {}
        for m in modules:
            buffers = getattr(m, "_buffers", None)
            if not buffers:
                continue
            for name, buf in list(buffers.items()):
                if buf is None:
                    continue
                clone = clones.get(id(buf))
                if clone is None:
                    with torch.no_grad():
                        clone = buf.clone()
                    clones[id(buf)] = clone
                buffers[name] = clone
        devices = {t.device.index for t in params if t.is_cuda} | {t.device.index for t in clones.values() if t.is_cuda}
        self._rng = rng_guard(sorted(devices | set(cuda_devices(self.extra))), self.seed)
        self.devices = self._rng.__enter__()
        return self

    def reseed(self, seed: int) -> None:
        """Seed the forked RNGs (CPU and the guarded CUDA devices) inside the guard."""
        seed_forked(seed, self.devices)

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._rng is not None:
                self._rng.__exit__(*exc)
        finally:
            self.restore()

    def restore(self) -> None:
        for m, saved_attrs, saved_dicts in self._dicts:
            current = m.__dict__
            # Identity, never ==: the values are tensors and modules. The unchanged case (nearly
            # every module) is answered by one C-level pass over the values.
            if not _same(current, saved_attrs):
                for key in [k for k in current if k not in saved_attrs]:
                    del current[key]
                for key, value in saved_attrs.items():
                    if current.get(key, _MISSING) is not value:
                        current[key] = value
            for name, saved in saved_dicts.items():
                live = current[name]
                if not _same(live, saved):
                    live.clear()
                    live.update(saved)
        for p, requires_grad, grad in self._params:
            if p.requires_grad != requires_grad:
                p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad


_MISSING = object()


def _same(live: Dict[str, Any], saved: Dict[str, Any]) -> bool:
    """Same keys in the same order, each bound to the same object."""
    return len(live) == len(saved) and live.keys() == saved.keys() and all(map(operator.is_, live.values(), saved.values()))


def replaced_parameters(guard: ModelGuard) -> List[str]:
    """Qualified names of Parameters that the code run under ``guard`` replaced or added.

    Called before ``restore``: compares each module's live ``_parameters`` with the saved ones.
    """
    names: Dict[int, str] = {}
    for n, m in guard._walk:
        names.setdefault(id(m), n)
    out = []
    for m, _, saved_dicts in guard._dicts:
        saved = saved_dicts.get("_parameters", {})
        live = getattr(m, "_parameters", {})
        prefix = names.get(id(m), "")
        for key, value in live.items():
            if saved.get(key, _MISSING) is not value:
                out.append(f"{prefix}.{key}" if prefix else key)
    return out
