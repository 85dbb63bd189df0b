"""Shared test helper: prove that a call leaves the model, the optimizer and the process as it found them.

Every assertion of ``torchcheck_mixin`` promises to be invisible: after it returns, fails or raises
(also when the user's own ``forward`` raises), the model, its gradients, its modes, the user's
optimizer and the global random state are exactly as before. ``Snapshot`` records all of that,
``Snapshot.diff`` lists every difference, and two entry points wrap a call:

* ``run_invariant(testcase, model, call, optimizer=None, watch=())`` runs ``call()``, catches
  whatever it raises, checks the invariants and returns an ``Outcome`` (``"passed"`` with the
  return value, ``"failed"`` with the ``failureException``, ``"raised"`` with any other
  exception), so a test can assert on the outcome afterwards;
* ``no_side_effects(testcase, model, optimizer=None, watch=())`` is the same as a context manager
  that lets the exception propagate.

What is recorded (all of it compared exactly, never with a tolerance):

* per parameter (every name, tied weights included): the object, its value bitwise (through a
  ``uint8`` view, so NaN payloads and signed zeros count), dtype, shape, strides, device, autograd
  version counter (``_version``: a check must not write user tensors in place, even to restore
  them), ``requires_grad``, the ``.grad`` object (or None) with its value and version, and the
  keys of the Parameter's own ``__dict__``;
* per buffer: the object, its value, version counter and device;
* per submodule: ``training``, the set of ``__dict__`` keys and the identity of every value,
  the contents (keys and value identities) of ``_parameters``/``_buffers``/``_modules`` and of
  every hook dict, and the value/version of tensors held as plain attributes;
* the optimizer: its ``__dict__`` keys and value identities, ``state`` (per parameter: keys, and
  each tensor's identity, value and version, step counters included), ``param_groups`` (the list,
  each group's identity, hyper-parameters and parameter identities), ``state_dict()`` deep
  compared, its hook dicts;
* the process: ``torch.get_rng_state()``, the RNG state of every CUDA device when CUDA was
  initialised before the call, ``torch.cuda.is_initialized()``, ``numpy.random.get_state()``,
  ``random.getstate()``, grad mode, inference mode, default dtype, deterministic-algorithms mode,
  anomaly mode, the global module/optimizer hook registries, ``warnings.filters``, live
  ``multiprocessing`` children (DataLoader workers) and live threads;
* ``watch``: any further objects (inputs, targets, losses, loaders): tensors by identity, value
  and version; structures walked; other objects by their ``__dict__`` keys and value identities.

The snapshot holds references to everything it records, so identity comparisons cannot be fooled
by a recycled ``id``. Taking a snapshot reads tensors to the host: never take one inside a region
that counts host synchronisations.
"""

import contextlib
import multiprocessing
import random
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

_GRACE_S = 3.0  # how long a thread or process started by the call may take to end by itself

__all__ = ["Outcome", "Snapshot", "assert_no_side_effects", "no_side_effects", "run_invariant", "tensor_fingerprint"]


# ------------------------------------------------------------------------------------ tensors


def _bits(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor's values (NaN-aware: compared as bits, not as numbers)."""
    t = t.detach()
    if t.device.type == "meta":
        return b""
    if t.is_sparse:
        return _bits(t._indices()) + b"|" + _bits(t._values())
    if t.layout != torch.strided:
        t = t.to_dense()
    flat = t.reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return flat.view(torch.uint8).cpu().numpy().tobytes()


@dataclass(frozen=True)
class TensorPrint:
    """Everything about a tensor that a check must not change, except its identity."""

    dtype: torch.dtype
    shape: Tuple[int, ...]
    stride: Optional[Tuple[int, ...]]
    device: torch.device
    version: int
    requires_grad: bool
    bits: bytes

    def differences(self, other: "TensorPrint") -> List[str]:
        out = []
        for name in ("dtype", "shape", "stride", "device", "requires_grad"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {a} -> {b}")
        if self.version != other.version:
            out.append(f"autograd version counter {self.version} -> {other.version} (written in place)")
        if self.bits != other.bits:
            out.append("value changed (bitwise)")
        return out


def tensor_fingerprint(t: torch.Tensor) -> TensorPrint:
    stride = tuple(t.stride()) if t.layout == torch.strided else None
    return TensorPrint(t.dtype, tuple(t.shape), stride, t.device, t._version, t.requires_grad, _bits(t))


class _TensorRecord:
    """A tensor held by reference (for identity) plus its fingerprint (for value and version)."""

    __slots__ = ("ref", "print")

    def __init__(self, t: torch.Tensor):
        self.ref = t
        self.print = tensor_fingerprint(t)

    def differences(self, other: "_TensorRecord") -> List[str]:
        out = [] if self.ref is other.ref else ["a different tensor object"]
        return out + self.print.differences(other.print)


def _grad_record(p: torch.Tensor) -> Optional[_TensorRecord]:
    if not (p.is_leaf or p.retains_grad):  # reading .grad of a non-leaf only warns
        return None
    return None if p.grad is None else _TensorRecord(p.grad)


# ------------------------------------------------------------------------------------ objects


def _dict_record(d: Mapping) -> Dict[Any, Any]:
    """Keys -> the value objects (held, compared by identity)."""
    return dict(d.items())


def _identity_diff(label: str, before: Mapping, after: Mapping) -> List[str]:
    out = []
    missing = [k for k in before if k not in after]
    added = [k for k in after if k not in before]
    if missing:
        out.append(f"{label}: keys removed {sorted(map(str, missing))}")
    if added:
        out.append(f"{label}: keys left behind {sorted(map(str, added))}")
    for k in before:
        if k in after and before[k] is not after[k]:
            out.append(f"{label}[{k!r}]: replaced by another object ({type(before[k]).__name__} -> "
                       f"{type(after[k]).__name__})")
    return out


def _freeze(value: Any) -> Any:
    """A deep, comparable copy of a nested structure; tensors become fingerprints."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tensor_fingerprint(value))
    if isinstance(value, Mapping):
        return ("map", type(value).__name__, tuple((repr(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("seq", type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return ("value", value)


def _is_hook_dict(name: str, value: Any) -> bool:
    return "hook" in name and isinstance(value, dict)


# ------------------------------------------------------------------------------------ process


def _np_state() -> Tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (name, keys.tobytes(), pos, has_gauss, cached)


def _global_hooks() -> Dict[str, int]:
    import torch.nn.modules.module as module_mod
    import torch.optim.optimizer as optimizer_mod

    out = {}
    for mod in (module_mod, optimizer_mod):
        for name in dir(mod):
            if name.startswith("_global") and "hook" in name:
                value = getattr(mod, name)
                if isinstance(value, dict):
                    out[f"{mod.__name__}.{name}"] = len(value)
    return out


def _backend_flags() -> Tuple[Tuple[str, Any], ...]:
    out = []
    for mod in ("cudnn", "mkldnn", "mkl", "openmp", "opt_einsum"):
        m = getattr(torch.backends, mod, None)
        for flag in ("enabled", "benchmark", "deterministic", "allow_tf32", "strategy"):
            if m is not None and hasattr(m, flag):
                try:
                    out.append((f"{mod}.{flag}", getattr(m, flag)))
                except Exception:  # a flag that cannot be read on this build
                    pass
    out.append(("float32_matmul_precision", torch.get_float32_matmul_precision()))
    return tuple(out)


def _process_state(cuda_was_initialized: bool) -> Dict[str, Any]:
    state: Dict[str, Any] = {
        "torch.get_rng_state()": torch.get_rng_state().numpy().tobytes(),
        "torch.cuda.is_initialized()": torch.cuda.is_initialized(),
        "numpy.random.get_state()": _np_state(),
        "random.getstate()": random.getstate(),
        "torch.is_grad_enabled()": torch.is_grad_enabled(),
        "torch.is_inference_mode_enabled()": torch.is_inference_mode_enabled(),
        "torch.get_default_dtype()": torch.get_default_dtype(),
        "torch.are_deterministic_algorithms_enabled()": torch.are_deterministic_algorithms_enabled(),
        "torch.is_anomaly_enabled()": torch.is_anomaly_enabled(),
        "global hook registries": _global_hooks(),
        "warnings.filters": tuple(warnings.filters),
        "autocast state": (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), torch.is_autocast_cache_enabled()),
        "deterministic warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "thread counts": (torch.get_num_threads(), torch.get_num_interop_threads()),
        "torch.backends flags": _backend_flags(),
        "live multiprocessing children": frozenset(multiprocessing.active_children()),
        "live threads": frozenset(threading.enumerate()),
    }
    if cuda_was_initialized:
        state["torch.cuda.get_rng_state_all()"] = tuple(
            s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()
        )
    return state


# ------------------------------------------------------------------------------------ snapshot


class Snapshot:
    """Records a model, an optimizer, watched objects and the process state (see the module doc)."""

    def __init__(self, model: Optional[nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                 watch: Iterable[Any] = (), *, cuda_was_initialized: Optional[bool] = None):
        if cuda_was_initialized is None:
            cuda_was_initialized = torch.cuda.is_initialized()
        self.cuda_was_initialized = cuda_was_initialized
        self.process = _process_state(cuda_was_initialized)
        self.modules_loaded = len(sys.modules)
        self.modules: Dict[str, Dict[str, Any]] = {}
        self.params: Dict[str, Dict[str, Any]] = {}
        self.buffers: Dict[str, _TensorRecord] = {}
        if model is not None and isinstance(model, nn.Module):
            self._record_model(model)
        self.optimizer = self._record_optimizer(optimizer) if optimizer is not None else None
        self.watched = [self._record_watched(i, w) for i, w in enumerate(watch)]

    # -- model

    def _record_model(self, model: nn.Module) -> None:
        for name, m in model.named_modules(remove_duplicate=False):
            label = name or "<root>"
            if label in self.modules:
                continue
            rec: Dict[str, Any] = {
                "object": m,
                "training": m.training,
                "__dict__": _dict_record(m.__dict__),
                "registries": {
                    key: _dict_record(value) for key, value in m.__dict__.items()
                    if key in ("_parameters", "_buffers", "_modules") or _is_hook_dict(key, value)
                },
                "tensor attributes": {
                    key: _TensorRecord(value) for key, value in m.__dict__.items()
                    if isinstance(value, torch.Tensor)
                },
                "_non_persistent_buffers_set": frozenset(getattr(m, "_non_persistent_buffers_set", ())),
            }
            self.modules[label] = rec
        for name, p in model.named_parameters(remove_duplicate=False):
            self.params[name] = {
                "tensor": _TensorRecord(p),
                "grad": _grad_record(p),
                "grad_object": p.grad,
                "requires_grad": p.requires_grad,
                "is_leaf": p.is_leaf,
                "__dict__": _dict_record(getattr(p, "__dict__", {})),
                "hooks": {k: len(v) for k, v in ((k, getattr(p, k, None)) for k in
                          ("_backward_hooks", "_post_accumulate_grad_hooks")) if isinstance(v, dict)},
            }
        for name, b in model.named_buffers(remove_duplicate=False):
            self.buffers[name] = _TensorRecord(b)

    # -- optimizer

    @staticmethod
    def _record_optimizer(opt: Any) -> Dict[str, Any]:
        rec: Dict[str, Any] = {"object": opt, "__dict__": _dict_record(getattr(opt, "__dict__", {}))}
        if not isinstance(opt, torch.optim.Optimizer):
            return rec
        rec["state keys"] = [id(p) for p in opt.state]
        rec["state objects"] = list(opt.state.keys())  # hold the keys so the ids stay unique
        rec["state"] = {
            id(p): {k: (_TensorRecord(v) if isinstance(v, torch.Tensor) else _freeze(v)) for k, v in s.items()}
            for p, s in opt.state.items()
        }
        rec["state dict objects"] = {id(p): s for p, s in opt.state.items()}
        rec["param_groups list"] = opt.param_groups
        rec["param_groups"] = [
            (g, {k: (tuple(v) if k == "params" else _freeze(v)) for k, v in g.items()}) for g in opt.param_groups
        ]
        rec["state_dict"] = _freeze(opt.state_dict())
        rec["hooks"] = {k: _dict_record(v) for k, v in opt.__dict__.items() if _is_hook_dict(k, v)}
        return rec

    # -- watched objects

    def _record_watched(self, i: int, obj: Any) -> Tuple[str, Any, Any]:
        label = f"watch[{i}] ({type(obj).__name__})"
        if isinstance(obj, torch.Tensor):
            return label, obj, ("tensor", _TensorRecord(obj), _grad_record(obj))
        if isinstance(obj, nn.Module):
            return label, obj, ("module", Snapshot(obj, cuda_was_initialized=self.cuda_was_initialized))
        if isinstance(obj, (list, tuple, Mapping)):
            leaves = []

            def walk(v: Any, path: str) -> None:
                if isinstance(v, torch.Tensor):
                    leaves.append((path, _TensorRecord(v)))
                elif isinstance(v, Mapping):
                    for k, c in v.items():
                        walk(c, f"{path}[{k!r}]")
                elif isinstance(v, (list, tuple)):
                    for k, c in enumerate(v):
                        walk(c, f"{path}[{k}]")

            walk(obj, "")
            return label, obj, ("structure", leaves, _freeze(obj))
        return label, obj, ("object", _dict_record(getattr(obj, "__dict__", {})))

    # -- comparison

    def diff(self, after: "Snapshot") -> List[str]:
        out: List[str] = []
        for key, value in self.process.items():
            if after.process.get(key) != value:
                if key.startswith("live"):
                    left = set(after.process.get(key, ())) - set(value)
                    # Queue feeder threads and workers end asynchronously after a clean shutdown:
                    # give them a moment before calling them leaked.
                    until = time.monotonic() + _GRACE_S
                    for item in left:
                        item.join(timeout=max(0.0, until - time.monotonic()))
                    left = {item for item in left if item.is_alive()}
                    if left:  # (something that ended, a thread of the test runner, is not our business)
                        out.append(f"{key}: new ones left behind {sorted(map(repr, left))}")
                elif key == "warnings.filters":
                    gone = [f for f in value if f not in after.process[key]]
                    new = [f for f in after.process[key] if f not in value]
                    if not gone and after.modules_loaded > self.modules_loaded:
                        continue  # a module torch imported lazily (sympy via torch._dynamo) added its filter
                    out.append(f"{key} changed: removed {gone[:3]}, added {new[:3]} "
                               f"({len(value)} -> {len(after.process[key])} filters)")
                else:
                    out.append(f"{key} changed")
        # modules
        if set(self.modules) != set(after.modules):
            out.append(f"module tree changed: removed {sorted(set(self.modules) - set(after.modules))}, "
                       f"added {sorted(set(after.modules) - set(self.modules))}")
        for label, rec in self.modules.items():
            new = after.modules.get(label)
            if new is None:
                continue
            if rec["object"] is not new["object"]:
                out.append(f"module {label}: replaced by another module object")
            if rec["training"] != new["training"]:
                out.append(f"module {label}: training {rec['training']} -> {new['training']}")
            out += _identity_diff(f"module {label}.__dict__", rec["__dict__"], new["__dict__"])
            for key, saved in rec["registries"].items():
                out += _identity_diff(f"module {label}.{key}", saved, new["registries"].get(key, {}))
            for key in set(new["registries"]) - set(rec["registries"]):
                out.append(f"module {label}: new registry {key} left behind")
            for key, t in rec["tensor attributes"].items():
                nt = new["tensor attributes"].get(key)
                if nt is not None:
                    out += [f"module {label}.{key}: {d}" for d in t.differences(nt)]
            if rec["_non_persistent_buffers_set"] != new["_non_persistent_buffers_set"]:
                out.append(f"module {label}: _non_persistent_buffers_set changed")
        # parameters
        if list(self.params) != list(after.params):
            out.append(f"parameter names changed: {list(self.params)} -> {list(after.params)}")
        for name, rec in self.params.items():
            new = after.params.get(name)
            if new is None:
                continue
            out += [f"parameter {name}: {d}" for d in rec["tensor"].differences(new["tensor"])]
            if rec["requires_grad"] != new["requires_grad"]:
                out.append(f"parameter {name}: requires_grad {rec['requires_grad']} -> {new['requires_grad']}")
            if rec["is_leaf"] != new["is_leaf"]:
                out.append(f"parameter {name}: is_leaf changed")
            if rec["grad_object"] is not new["grad_object"]:
                out.append(f"parameter {name}: .grad is another object "
                           f"({'None' if rec['grad_object'] is None else 'a tensor'} -> "
                           f"{'None' if new['grad_object'] is None else 'a tensor'})")
            elif rec["grad"] is not None:
                out += [f"parameter {name}.grad: {d}" for d in rec["grad"].differences(new["grad"])]
            out += _identity_diff(f"parameter {name}.__dict__", rec["__dict__"], new["__dict__"])
            if rec["hooks"] != new["hooks"]:
                out.append(f"parameter {name}: hooks {rec['hooks']} -> {new['hooks']}")
        if list(self.buffers) != list(after.buffers):
            out.append(f"buffer names changed: {list(self.buffers)} -> {list(after.buffers)}")
        for name, rec in self.buffers.items():
            new = after.buffers.get(name)
            if new is not None:
                out += [f"buffer {name}: {d}" for d in rec.differences(new)]
        # optimizer
        if self.optimizer is not None:
            out += self._diff_optimizer(self.optimizer, after.optimizer)
        # watched
        for (label, obj, rec), (_, new_obj, new) in zip(self.watched, after.watched):
            out += self._diff_watched(label, rec, new)
        return out

    @staticmethod
    def _diff_optimizer(rec: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
        out = []
        if rec["object"] is not new["object"]:
            return ["optimizer: compared with another optimizer object"]
        out += _identity_diff("optimizer.__dict__", rec["__dict__"], new["__dict__"])
        if "state" not in rec:
            return out
        if rec["state keys"] != new["state keys"]:
            out.append(f"optimizer.state: entries {len(rec['state keys'])} -> {len(new['state keys'])}")
        for pid, state in rec["state"].items():
            nstate = new["state"].get(pid)
            if nstate is None:
                continue
            if rec["state dict objects"][pid] is not new["state dict objects"][pid]:
                out.append("optimizer.state[p]: replaced by another dict")
            if list(state) != list(nstate):
                out.append(f"optimizer.state[p]: keys {list(state)} -> {list(nstate)}")
            for k, v in state.items():
                nv = nstate.get(k)
                if isinstance(v, _TensorRecord):
                    if not isinstance(nv, _TensorRecord):
                        out.append(f"optimizer.state[p][{k!r}]: no longer a tensor")
                    else:
                        out += [f"optimizer.state[p][{k!r}]: {d}" for d in v.differences(nv)]
                elif v != nv:
                    out.append(f"optimizer.state[p][{k!r}]: {v} -> {nv}")
        if rec["param_groups list"] is not new["param_groups list"]:
            out.append("optimizer.param_groups: replaced by another list")
        if len(rec["param_groups"]) != len(new["param_groups"]):
            out.append("optimizer.param_groups: number of groups changed")
        for i, ((g, vals), (ng, nvals)) in enumerate(zip(rec["param_groups"], new["param_groups"])):
            if g is not ng:
                out.append(f"optimizer.param_groups[{i}]: replaced by another dict")
            if set(vals) != set(nvals):
                out.append(f"optimizer.param_groups[{i}]: keys changed")
            for k, v in vals.items():
                if k == "params":
                    if len(v) != len(nvals.get(k, ())) or any(a is not b for a, b in zip(v, nvals.get(k, ()))):
                        out.append(f"optimizer.param_groups[{i}]['params']: other parameter objects")
                elif nvals.get(k) != v:
                    out.append(f"optimizer.param_groups[{i}][{k!r}]: {v} -> {nvals.get(k)}")
        if rec["state_dict"] != new["state_dict"]:
            out.append("optimizer.state_dict() changed")
        for k, hooks in rec["hooks"].items():
            out += _identity_diff(f"optimizer.{k}", hooks, new["hooks"].get(k, {}))
        return out

    @staticmethod
    def _diff_watched(label: str, rec: Tuple[Any, ...], new: Tuple[Any, ...]) -> List[str]:
        kind = rec[0]
        if kind == "tensor":
            out = [f"{label}: {d}" for d in rec[1].differences(new[1])]
            if (rec[2] is None) != (new[2] is None):
                out.append(f"{label}: .grad appeared or vanished")
            elif rec[2] is not None:
                out += [f"{label}.grad: {d}" for d in rec[2].differences(new[2])]
            return out
        if kind == "module":
            return [f"{label}: {d}" for d in rec[1].diff(new[1])]
        if kind == "structure":
            out = []
            for (path, t), (_, nt) in zip(rec[1], new[1]):
                out += [f"{label}{path}: {d}" for d in t.differences(nt)]
            if rec[2] != new[2]:
                out.append(f"{label}: contents changed")
            return out
        return _identity_diff(f"{label}.__dict__", rec[1], new[1])


# ------------------------------------------------------------------------------------ entry points


@dataclass
class Outcome:
    """What a call did: ``kind`` is ``"passed"``, ``"failed"`` (failureException) or ``"raised"``."""

    kind: str
    value: Any = None  # the return value, or the exception

    @property
    def exception(self) -> Optional[BaseException]:
        return self.value if self.kind != "passed" else None


def _check(testcase: Any, before: Snapshot, after: Snapshot, what: str) -> None:
    problems = before.diff(after)
    if problems:
        shown = problems[:30] + ([f"... and {len(problems) - 30} more"] if len(problems) > 30 else [])
        testcase.fail(f"{what} left side effects:\n  " + "\n  ".join(shown))


def run_invariant(testcase: Any, model: Optional[nn.Module], call: Callable[[], Any],
                  optimizer: Optional[torch.optim.Optimizer] = None, watch: Iterable[Any] = (),
                  what: str = "the call") -> Outcome:
    """Run ``call()`` and check that nothing observable changed, whether it passed, failed or raised."""
    watch = list(watch)
    before = Snapshot(model, optimizer, watch)
    try:
        result = call()
    except testcase.failureException as exc:
        outcome = Outcome("failed", exc)
    except Exception as exc:  # noqa: BLE001 - the outcome is the test's business
        outcome = Outcome("raised", exc)
    else:
        outcome = Outcome("passed", result)
    after = Snapshot(model, optimizer, watch, cuda_was_initialized=before.cuda_was_initialized)
    _check(testcase, before, after, what)
    return outcome


@contextlib.contextmanager
def no_side_effects(testcase: Any, model: Optional[nn.Module], optimizer: Optional[torch.optim.Optimizer] = None,
                    watch: Iterable[Any] = (), what: str = "the block"):
    """Context-manager form of ``run_invariant``: the body's exception (if any) propagates."""
    watch = list(watch)
    before = Snapshot(model, optimizer, watch)
    try:
        yield before
    finally:
        after = Snapshot(model, optimizer, watch, cuda_was_initialized=before.cuda_was_initialized)
        _check(testcase, before, after, what)


assert_no_side_effects = run_invariant  # the name the issue uses
