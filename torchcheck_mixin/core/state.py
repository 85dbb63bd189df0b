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
  numpy's global RNG and Python's ``random`` are saved and restored too (a forward may draw from
  them: Wav2Vec2's SpecAugment), and seeded from ``seed`` inside;
* every step of saving and restoring is attempted even when an earlier one raises (a buffer
  property or a ``.grad`` setter that refuses): whatever was saved is put back, in place, and the
  first error is raised afterwards;
* guards are serialised by one process-wide re-entrant lock: checks from several threads run
  one at a time, each against a clean global state (RNG, warnings filters are process-global).

>>> with ModelGuard(model, seed=0):
...     model.train()
...     out = model(x)
"""

import contextlib
import operator
import random
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
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


#: Serialises checks across threads (RNG forking and warnings filters are process-global).
CHECK_LOCK = threading.RLock()


@contextlib.contextmanager
def rng_guard(devices: Sequence[int] = (), seed: Optional[int] = None):
    """Fork the CPU RNG (and the given CUDA devices' RNG), numpy's and Python's global RNG; seed
    them inside when ``seed`` is given.

    CUDA is never initialised here: devices are only listed when tensors already live on them.
    """
    devices = list(devices) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with CHECK_LOCK:
        np_state = np.random.get_state()
        py_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=devices):
                if seed is not None:
                    seed_forked(seed, devices)
                yield devices
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def seed_forked(seed: int, devices: Sequence[int]) -> None:
    """Seed the CPU generator and the given CUDA devices' generators, and no other.

    ``torch.manual_seed`` would also reseed every other initialised CUDA device, whose state a
    fork of the RNG on the model's devices does not restore.
    """
    torch.random.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    for index in devices:
        torch.cuda.default_generators[index].manual_seed(seed)


def check_not_inference_mode(check: str) -> None:
    """Raise ``ValueError`` when called under ``torch.inference_mode()``, where no graph is built.

    Every gradient would read None ("unreachable from the loss"), and tensors made in inference
    mode cannot take part in autograd even after leaving it, so the check cannot run there.
    """
    if torch.is_inference_mode_enabled():
        raise ValueError(
            f"{check} needs autograd, but it was called under torch.inference_mode(), where no "
            "gradient is computed; call it outside the inference_mode block (and build the model "
            "and inputs outside it too: inference tensors cannot be used in autograd)")


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
        CHECK_LOCK.acquire()
        self._dicts = []
        self._params = []
        self._autocast_cache: Optional[bool] = None
        self._swapped: List[Tuple[Dict[str, Any], str, torch.Tensor]] = []
        try:
            return self._save()
        except BaseException:
            try:
                self.restore()
            finally:
                CHECK_LOCK.release()
            raise

    def _save(self) -> "ModelGuard":
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
        # The parameters, from the `_parameters` dicts just saved (one per tensor identity, in
        # module order): `model.parameters()` would walk the modules again and build a name per
        # tensor, 2.4 ms on a model with 1,000 tensors.
        params_by_id: Dict[int, torch.Tensor] = {}
        for _, _, saved in self._dicts:
            for p in saved.get("_parameters", {}).values():
                if p is not None:
                    params_by_id.setdefault(id(p), p)
        params = list(params_by_id.values())
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
                self._swapped.append((buffers, name, buf))
                buffers[name] = clone
        self._clones = clones  # id(user's buffer) -> its private clone
        # Under the caller's torch.autocast the casts of the weights are cached until the outermost
        # autocast block exits: a check that steps (overfit, the zero-init re-test) would reuse
        # step 1's low-precision weights, and its private weights would fill the caller's cache.
        # Autocast is honoured, without the cache; restore puts the caller's setting back.
        self._autocast_cache = torch.is_autocast_cache_enabled()
        torch.set_autocast_cache_enabled(False)
        self._clone_versions = {id(c): c._version for c in clones.values()}
        devices = {t.device.index for t in params if t.is_cuda} | {t.device.index for t in clones.values() if t.is_cuda}
        self._rng = rng_guard(sorted(devices | set(cuda_devices(self.extra))), self.seed)
        self.devices = self._rng.__enter__()
        return self

    def reseed(self, seed: int) -> None:
        """Seed the forked RNGs (CPU and the guarded CUDA devices) inside the guard."""
        seed_forked(seed, self.devices)

    def __exit__(self, *exc: Any) -> None:
        try:
            try:
                if self._rng is not None:
                    self._rng.__exit__(*exc)
            finally:
                self.restore()
        finally:
            CHECK_LOCK.release()

    def restore(self) -> None:
        """Put back everything saved; every step is tried, the first error is raised at the end."""
        errors: List[BaseException] = []
        for m, saved_attrs, saved_dicts in self._dicts:
            try:
                _restore_module(m, saved_attrs, saved_dicts)
            except BaseException as e:  # keep restoring the rest
                errors.append(e)
        # Buffers swapped before a failure inside __enter__ (whose module dicts were saved first).
        for buffers, name, buf in getattr(self, "_swapped", ()):
            try:
                if buffers.get(name, _MISSING) is not buf:
                    buffers[name] = buf
            except BaseException as e:
                errors.append(e)
        for p, requires_grad, grad in self._params:
            try:
                if p.requires_grad != requires_grad:
                    p.requires_grad_(requires_grad)
            except BaseException as e:
                errors.append(e)
            try:
                if p.grad is not grad:
                    p.grad = grad
            except BaseException as e:
                errors.append(e)
        if self._autocast_cache is not None and torch.is_autocast_cache_enabled() != self._autocast_cache:
            torch.set_autocast_cache_enabled(self._autocast_cache)
        if errors:
            raise errors[0]


def _restore_module(m: nn.Module, saved_attrs: Dict[str, Any], saved_dicts: Dict[str, Dict[str, Any]]) -> None:
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


def changed_buffers(guard: ModelGuard, module: nn.Module) -> List[str]:
    """Names of ``module``'s own buffers that the code run under ``guard`` wrote or replaced.

    Read before ``restore``: a replaced buffer is another object; a private clone written in
    place has moved its version counter or, for kernels that write without bumping it (BatchNorm's
    running statistics), differs from the user's buffer.
    """
    saved = next((d.get("_buffers", {}) for m, _, d in guard._dicts if m is module), {})
    out = []
    for name, live in getattr(module, "_buffers", {}).items():
        orig = saved.get(name, _MISSING)
        clone = guard._clones.get(id(orig)) if orig is not _MISSING and orig is not None else None
        if clone is None:
            if live is not orig:
                out.append(name)
        elif live is not clone or clone._version != guard._clone_versions[id(clone)]:
            out.append(name)
        elif not torch.equal(live, orig):  # some kernels (batch_norm's running stats) skip the counter
            out.append(name)
    return out
