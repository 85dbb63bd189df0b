#!/usr/bin/env python3
"""Benchmark torchcheck_mixin's checks against a bare training loop and against peer tools.

Run by hand, never by CI. See benchmarks/README.md for the environment (the peer tools are
installed with ``pip install --no-deps`` into a separate venv, never as dependencies).

For every model and every contestant the script measures, in one run with the same models and
inputs:

* time: the median wall time of ``--repeats`` calls after ``--warmup`` calls.  The calls of
  all contestants of a model are interleaved (round robin), so slow drift of the machine
  affects every contestant alike.  On CUDA every call is bracketed by
  ``torch.cuda.synchronize()``.
* peak memory:
    - CPU: peak resident-set growth of one call, measured in a fresh process per
      (model, contestant) (a ``forkserver`` child with torch preloaded).  The child builds the
      model, runs the contestant once as a warm-up (one-time allocations such as thread pools
      and kernel caches), drops ``.grad``, runs ``gc`` and ``malloc_trim``, resets the kernel's
      high-water mark (``echo 5 > /proc/self/clear_refs``), runs the contestant once more and
      reads ``VmHWM`` from ``/proc/self/status``.  glibc's dynamic mmap threshold is pinned with
      ``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` so freed tensors go back to the OS.  Reported
      "peak" = bytes of the live tensors the test already holds (parameters, buffers, inputs,
      target; counted exactly) + the measured growth, which is what
      ``torch.cuda.max_memory_allocated`` reports on a GPU.  Without ``clear_refs`` the child
      falls back to ``ru_maxrss`` (no warm-up possible, so one-time allocations are included).
    - CUDA: ``torch.cuda.reset_peak_memory_stats`` + ``torch.cuda.max_memory_allocated`` in
      the main process.
* host syncs: CUDA: ``torch.cuda.set_sync_debug_mode("warn")`` and the warnings it raises,
  counted over one call.  CPU has no syncs; as a proxy the script counts host reads of tensor
  values (``Tensor.item/__bool__/__float__/__int__/__index__/tolist/numpy``, ``torch.equal``,
  ``torch.allclose``), each of which is a sync on a GPU.  The floors show the baseline count.

Ratios are to a floor: a bare forward (``no_grad``), a bare forward+backward, or a bare
training step (forward, backward, SGD step), chosen per contestant (column "vs").
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import importlib
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
LR = 0.01  # learning rate of the shared SGD optimizer (floors, torchtest, torcheck, torchtest2)
LUDWIG_LR = 0.001  # Ludwig's default learning_rate

# --------------------------------------------------------------------------------------------
# models


class TokenTransformer(nn.Module):
    """Embedding -> nn.TransformerEncoder -> linear head over the vocabulary."""

    def __init__(self, vocab: int = 1000, d_model: int = 512, nhead: int = 8, layers: int = 6,
                 ff: int = 2048) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)))


class ManyHeads(nn.Module):
    """``n`` independent Linear(8, 8) heads on the same input: 2n small parameter tensors.

    The heads are parallel rather than stacked so every tensor gets a healthy gradient.
    """

    def __init__(self, n: int = 1000, width: int = 8) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(width, width) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads], dim=1)


def _seq_ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.flatten(0, 1), target.flatten())


@dataclass
class Workload:
    model: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor
    loss_fn: Callable[[Any, Any], torch.Tensor]


@dataclass
class ModelSpec:
    name: str
    description: str
    build: Callable[[], Workload]
    in_default: bool = True
    max_repeats: Optional[int] = None  # cap on --repeats (the 100M model)
    min_free_bytes: int = 0  # skipped by default when less memory than this is available


def _build_mlp() -> Workload:
    model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 10))
    return Workload(model, torch.randn(64, 256), torch.randint(0, 10, (64,)), F.cross_entropy)


def _build_cnn() -> Workload:
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    return Workload(model, torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)), F.cross_entropy)


def _build_transformer() -> Workload:
    model = TokenTransformer()
    return Workload(model, torch.randint(0, 1000, (4, 16)), torch.randint(0, 1000, (4, 16)), _seq_ce)


def _build_many() -> Workload:
    model = ManyHeads(1000)
    return Workload(model, torch.randn(16, 8), torch.randn(16, 1000, 8), F.mse_loss)


def _build_large() -> Workload:
    width, depth = 4096, 6
    layers: List[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    return Workload(model, torch.randn(8, width), torch.randn(8, width), F.mse_loss)


MODELS: Dict[str, ModelSpec] = {m.name: m for m in [
    ModelSpec("mlp", "MLP 256-1024-1024-10, batch 64, cross-entropy", _build_mlp),
    ModelSpec("cnn", "3 conv + 2 BatchNorm + linear, 16x3x32x32, cross-entropy", _build_cnn),
    ModelSpec("transformer", "Embedding(1000,512) + 6-layer TransformerEncoder(512, 8 heads, ff 2048) "
              "+ head, 4x16 tokens, cross-entropy", _build_transformer),
    ModelSpec("many_tensors", "1000 parallel Linear(8,8) heads = 2000 parameter tensors, batch 16, MSE",
              _build_many),
    ModelSpec("large", "6 x Linear(4096,4096) (100.7M params, 403 MB fp32), batch 8, MSE", _build_large,
              max_repeats=3, min_free_bytes=4 * 2**30),
]}

# --------------------------------------------------------------------------------------------
# the context handed to every contestant


@dataclass
class Ctx:
    model: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor
    loss_fn: Callable[[Any, Any], torch.Tensor]
    optimizer: torch.optim.Optimizer  # the "user's" optimizer: SGD(lr=LR) over all parameters
    loader: Any  # DataLoader over two batches of the inputs
    expected_shape: Tuple[int, ...]  # the model output's shape
    batch_shape: Tuple[int, ...]  # the shape of one loader batch
    output: torch.Tensor  # one output of the model (for check_all_finite)
    n_params: int
    device: torch.device

    @staticmethod
    def make_optimizer(params: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=LR)


def build_ctx(spec: ModelSpec, device: torch.device) -> Ctx:
    torch.manual_seed(SEED)
    w = spec.build()
    model = w.model.to(device).train()
    inputs, target = w.inputs.to(device), w.target.to(device)
    with torch.no_grad():
        output = model(inputs).detach()
    # a Tensor is a valid map-style dataset: batches are plain tensors of shape inputs.shape
    dataset = torch.cat([w.inputs, w.inputs])
    loader = torch.utils.data.DataLoader(dataset, batch_size=w.inputs.shape[0], shuffle=False)
    uniq = {id(p): p for p in model.parameters()}
    return Ctx(model=model, inputs=inputs, target=target, loss_fn=w.loss_fn,
               optimizer=torch.optim.SGD(model.parameters(), lr=LR), loader=loader,
               expected_shape=tuple(output.shape), batch_shape=tuple(w.inputs.shape), output=output,
               n_params=sum(p.numel() for p in uniq.values()), device=device)


def resident_tensor_bytes(ctx: Ctx) -> int:
    """Bytes of the tensors the test holds before any check runs (unique storages)."""
    seen: Dict[int, int] = {}
    tensors = list(ctx.model.parameters()) + list(ctx.model.buffers()) + [ctx.inputs, ctx.target, ctx.output]
    for t in tensors:
        if t.device.type != "cpu" and ctx.device.type == "cpu":
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def trainable_bytes(ctx: Ctx) -> int:
    uniq = {id(p): p for p in ctx.model.parameters() if p.requires_grad}
    return sum(p.numel() * p.element_size() for p in uniq.values())


def reset_model(ctx: Ctx) -> None:
    """Untimed: put the model back into the state every call starts from (train mode, no .grad)."""
    ctx.model.train()
    ctx.model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------
# contestants


class Missing(Exception):
    """The tool (or one of its functions) is not available: the cell says 'missing: ...'."""


@dataclass
class Contestant:
    name: str
    group: str  # floor | ours | peer
    vs: Optional[str]  # the floor the ratios are computed against (None for floors)
    run: Callable[[Ctx], Any]
    description: str
    prepare: Optional[Callable[[], None]] = None  # imports; raise Missing when unavailable


# ---- floors


def floor_forward(ctx: Ctx) -> Any:
    with torch.no_grad():
        return ctx.model(ctx.inputs)


def floor_fwd_bwd(ctx: Ctx) -> Any:
    ctx.model.zero_grad(set_to_none=True)
    loss = ctx.loss_fn(ctx.model(ctx.inputs), ctx.target)
    loss.backward()


def floor_train_step(ctx: Ctx) -> Any:
    ctx.optimizer.zero_grad(set_to_none=True)
    loss = ctx.loss_fn(ctx.model(ctx.inputs), ctx.target)
    loss.backward()
    ctx.optimizer.step()


def floor_loader(ctx: Ctx) -> Any:
    for _batch in ctx.loader:
        pass


# ---- ours (torchcheck_mixin, imported lazily from the checkout: run with PYTHONPATH=<repo>)


def _ours(attr: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module("torchcheck_mixin")
    except Exception as e:  # not written yet, or broken
        raise Missing(f"import torchcheck_mixin: {type(e).__name__}: {e}") from None
    fn = getattr(mod, attr, None)
    if fn is None:
        raise Missing(f"torchcheck_mixin.{attr}")
    return fn


def _ours_prepare(attr: str) -> Callable[[], None]:
    return lambda: _ours(attr) and None


def _ours_updated(mode: str) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return _ours("check_parameters_updated")(ctx.model, ctx.inputs, ctx.target, mode=mode,
                                                  loss_fn=ctx.loss_fn)
    return run


def ours_forward_shape(ctx: Ctx) -> Any:
    return _ours("check_forward_shape")(ctx.model, ctx.inputs, ctx.expected_shape)


def ours_batch_shape(ctx: Ctx) -> Any:
    return _ours("check_batch_shape")(ctx.loader, ctx.batch_shape, max_batches=2)


def ours_parameter_summary(ctx: Ctx) -> Any:
    return _ours("parameter_summary")(ctx.model)


def ours_parameter_summary_plain(ctx: Ctx) -> Any:
    fn = _ours("parameter_summary")
    try:
        return fn(ctx.model, use_torchinfo=False)
    except TypeError as e:
        if "use_torchinfo" in str(e):
            raise Missing("parameter_summary(use_torchinfo=False)") from None
        raise


def ours_batch_independent(ctx: Ctx) -> Any:
    return _ours("check_batch_independent")(ctx.model, ctx.inputs)


def ours_deterministic(ctx: Ctx) -> Any:
    return _ours("check_deterministic")(ctx.model, ctx.inputs)


def ours_parameter_count(ctx: Ctx) -> Any:
    return _ours("check_parameter_count")(ctx.model, total=ctx.n_params)


def ours_all_finite(ctx: Ctx) -> Any:
    return _ours("check_all_finite")(ctx.output)


# ---- peers (installed with pip install --no-deps into the benchmark venv only)


def _peer(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as e:
        raise Missing(f"import {module}: {type(e).__name__}: {e}") from None


def torchtest_vars_change(ctx: Ctx) -> Any:
    # torchtest 0.5: clone every trainable param, model.train(), model.to(device), zero_grad,
    # forward, loss_fn(out, targets), backward, optim.step(), torch.equal per param.
    tt = _peer("torchtest")
    tt.assert_vars_change(ctx.model, ctx.loss_fn, ctx.optimizer, [ctx.inputs, ctx.target], ctx.device)


def torcheck_changing(ctx: Ctx) -> Any:
    # torcheck 1.0.1: register the optimizer (wraps optimizer.step), add a changing check for
    # every parameter of the model (clones them), then one ordinary training step: the wrapped
    # step validates with torch.equal per param.  A fresh Registry per call (the same class the
    # module-level torcheck.register uses) so that the process-global registry does not keep
    # every optimizer and snapshot of every repeat alive, and re-registration cannot raise.
    tc = _peer("torcheck")
    registry = tc.Registry()
    opt = ctx.make_optimizer(ctx.model.parameters())
    registry.register(opt)
    registry.add_module_changing_check(ctx.model, module_name="model")
    opt.zero_grad()
    ctx.loss_fn(ctx.model(ctx.inputs), ctx.target).backward()
    opt.step()


def pytest_torch_receive_grad(ctx: Ctx) -> Any:
    # pytest-torch 1.1.1: zero_grad(set_to_none) + one backward, then per param
    # `grad is None` / `bool(grad.any())` (one host read per param).
    pt = _peer("pytest_torch")
    target = ctx.target
    pt.assert_all_params_receive_grad(ctx.model, ctx.inputs, lambda out: ctx.loss_fn(out, target))


def pytest_torch_optimizer_coverage(ctx: Ctx) -> Any:
    # pytest-torch 1.1.1: static check that every trainable param is in exactly one optimizer.
    pt = _peer("pytest_torch")
    pt.assert_optimizer_coverage(ctx.model, ctx.optimizer)


_TT2_UPDATE_CHECKS = ("forward", "loss", "optimizer_coverage", "gradient_flow", "params_change",
                      "frozen_params")


def torchtest2_updates(ctx: Ctx) -> Any:
    # torchtest2 0.1.0: check_model with every check skipped except the update checks
    # (optimizer_coverage, gradient_flow, params_change, frozen_params) and the two it cannot
    # skip (forward, and loss which the others depend on).  It restores the model, optimizer
    # and RNG state afterwards.
    t2 = _peer("torchtest2")
    skip = [c for c in t2.CHECKS if c not in _TT2_UPDATE_CHECKS]
    return t2.check_model(ctx.model, ctx.inputs, ctx.target, loss_fn=ctx.loss_fn,
                          optimizer=ctx.optimizer, skip=skip, overfit_steps=0, seed=SEED)


def ludwig_reimpl(ctx: Ctx) -> Any:
    # Ludwig's check_module_parameters_updated (tests/integration_tests/parameter_update_utils.py),
    # reimplemented from its description: own SGD(lr=0.001) over all params, train(True), one
    # step (zero_grad, forward, loss, backward, step); a param is "updated" iff
    # `p.grad is not None and not torch.all(p.grad == 0)`, one host sync per param.
    model = ctx.model
    model.train(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LUDWIG_LR)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad()
    loss = ctx.loss_fn(model(ctx.inputs), ctx.target)
    loss.backward()
    optimizer.step()
    updated, not_updated = 0, []
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.all(p.grad == 0):
            updated += 1
        else:
            not_updated.append(name)
    result = (len(frozen), len(trainable), updated, not_updated)
    if updated != len(trainable):
        raise AssertionError(f"Ludwig check: {len(trainable) - updated} not updated: {not_updated[:5]}")
    return result


CONTESTANTS: Dict[str, Contestant] = {c.name: c for c in [
    Contestant("floor.forward", "floor", None, floor_forward, "model(x) under no_grad"),
    Contestant("floor.fwd_bwd", "floor", None, floor_fwd_bwd, "zero_grad + loss(model(x), y).backward()"),
    Contestant("floor.train_step", "floor", None, floor_train_step, "zero_grad + forward + backward + SGD step"),
    Contestant("floor.loader", "floor", "forward", floor_loader, "iterate the 2-batch DataLoader"),
    Contestant("ours.gradient", "ours", "fwd_bwd", _ours_updated("gradient"),
               "check_parameters_updated(mode='gradient')", _ours_prepare("check_parameters_updated")),
    Contestant("ours.snapshot", "ours", "train_step", _ours_updated("snapshot"),
               "check_parameters_updated(mode='snapshot')", _ours_prepare("check_parameters_updated")),
    Contestant("ours.both", "ours", "train_step", _ours_updated("both"),
               "check_parameters_updated(mode='both')", _ours_prepare("check_parameters_updated")),
    Contestant("ours.forward_shape", "ours", "forward", ours_forward_shape,
               "check_forward_shape(model, x, shape)", _ours_prepare("check_forward_shape")),
    Contestant("ours.batch_shape", "ours", "forward", ours_batch_shape,
               "check_batch_shape(loader, shape, max_batches=2)", _ours_prepare("check_batch_shape")),
    Contestant("ours.parameter_summary", "ours", "forward", ours_parameter_summary,
               "parameter_summary(model) (default: with torchinfo totals)", _ours_prepare("parameter_summary")),
    Contestant("ours.parameter_summary[no_torchinfo]", "ours", "forward", ours_parameter_summary_plain,
               "parameter_summary(model, use_torchinfo=False)", _ours_prepare("parameter_summary")),
    Contestant("ours.batch_independent", "ours", "forward", ours_batch_independent,
               "check_batch_independent(model, x)", _ours_prepare("check_batch_independent")),
    Contestant("ours.deterministic", "ours", "forward", ours_deterministic,
               "check_deterministic(model, x)", _ours_prepare("check_deterministic")),
    Contestant("ours.parameter_count", "ours", "forward", ours_parameter_count,
               "check_parameter_count(model, total=N)", _ours_prepare("check_parameter_count")),
    Contestant("ours.all_finite", "ours", "forward", ours_all_finite,
               "check_all_finite(output)", _ours_prepare("check_all_finite")),
    Contestant("torchtest.assert_vars_change", "peer", "train_step", torchtest_vars_change,
               "torchtest 0.5 assert_vars_change", lambda: _peer("torchtest") and None),
    Contestant("torcheck.changing", "peer", "train_step", torcheck_changing,
               "torcheck 1.0.1 register + add_module_changing_check + one step",
               lambda: _peer("torcheck") and None),
    Contestant("pytest_torch.receive_grad", "peer", "fwd_bwd", pytest_torch_receive_grad,
               "pytest-torch 1.1.1 assert_all_params_receive_grad", lambda: _peer("pytest_torch") and None),
    Contestant("pytest_torch.optimizer_coverage", "peer", "fwd_bwd", pytest_torch_optimizer_coverage,
               "pytest-torch 1.1.1 assert_optimizer_coverage (static)", lambda: _peer("pytest_torch") and None),
    Contestant("torchtest2.check_model[updates]", "peer", "train_step", torchtest2_updates,
               "torchtest2 0.1.0 check_model, update checks only", lambda: _peer("torchtest2") and None),
    Contestant("ludwig.reimpl", "peer", "train_step", ludwig_reimpl,
               "Ludwig check_module_parameters_updated, reimplemented", None),
]}

FLOORS = {"forward": "floor.forward", "fwd_bwd": "floor.fwd_bwd", "train_step": "floor.train_step"}


def verdict(result: Any) -> Optional[str]:
    """'pass'/'FAIL' from a returned report (ours: .passed; torchtest2: .ok), else None."""
    ok = getattr(result, "ok", None)
    if isinstance(ok, bool):
        return "pass" if ok else "FAIL"
    passed = getattr(result, "passed", None)
    if isinstance(passed, bool):
        return "pass" if passed else "FAIL"
    return None


def _err(e: BaseException) -> str:
    if isinstance(e, Missing):
        return f"missing: {e}"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {msg[:200]}"


# --------------------------------------------------------------------------------------------
# host-read / sync counting


class HostReadCounter(contextlib.AbstractContextManager):
    """CPU proxy for host-device syncs: counts reads of tensor values on the host."""

    _TENSOR_METHODS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy")
    _TORCH_FUNCS = ("equal", "allclose")

    def __init__(self) -> None:
        self.count = 0
        self._saved: List[Tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, name: str) -> None:
        orig = getattr(owner, name)
        counter = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return orig(*args, **kwargs)

        wrapper.__name__ = getattr(orig, "__name__", name)
        had = name in owner.__dict__
        self._saved.append((owner, name, owner.__dict__[name] if had else None))
        setattr(owner, name, wrapper)

    def __enter__(self) -> "HostReadCounter":
        for n in self._TENSOR_METHODS:
            self._wrap(torch.Tensor, n)
        for n in self._TORCH_FUNCS:
            self._wrap(torch, n)
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, orig in reversed(self._saved):
            if orig is None:
                delattr(owner, name)
            else:
                setattr(owner, name, orig)
        self._saved.clear()


def count_syncs(c: Contestant, ctx: Ctx) -> Tuple[Optional[int], str]:
    reset_model(ctx)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                c.run(ctx)
                torch.cuda.synchronize()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        n = sum(1 for w in caught if "synchroniz" in str(w.message).lower())
        return n, "cuda_sync_debug_mode"
    with HostReadCounter() as counter:
        c.run(ctx)
    return counter.count, "cpu_host_read_proxy"


# --------------------------------------------------------------------------------------------
# timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(c: Contestant, ctx: Ctx) -> Tuple[float, Any]:
    reset_model(ctx)
    gc.collect()
    _sync(ctx.device)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = c.run(ctx)
        _sync(ctx.device)
        t1 = time.perf_counter()
    finally:
        if gc_was:
            gc.enable()
    return t1 - t0, out


# --------------------------------------------------------------------------------------------
# memory


_libc: Any = None


def _libc_handle() -> Any:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            _libc = False
    return _libc


def _status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_method() -> str:
    """Which CPU method works here: 'vmhwm_reset' or 'ru_maxrss'."""
    if _status_kb("VmHWM") is not None and _reset_hwm():
        return "vmhwm_reset"
    return "ru_maxrss"


def measure_memory_cpu(c: Contestant, ctx: Ctx, method: str, warm: bool = True) -> Dict[str, Any]:
    """Peak RSS growth of one call of ``c`` in this process (run it in a fresh process)."""
    libc = _libc_handle()
    if libc:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: pin it, so big frees return to the OS
    if method == "vmhwm_reset" and warm:
        reset_model(ctx)
        c.run(ctx)  # warm-up: one-time allocations (thread pools, kernel caches, imports)
    reset_model(ctx)
    gc.collect()
    if libc:
        libc.malloc_trim(0)
    if method == "vmhwm_reset":
        base_kb = _status_kb("VmRSS") or 0
        _reset_hwm()
        c.run(ctx)
        peak_kb = _status_kb("VmHWM") or 0
    else:
        import resource
        base_kb = max(_status_kb("VmRSS") or 0,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # ru_maxrss is KiB on Linux
        c.run(ctx)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    growth = max(0, peak_kb - base_kb) * 1024
    held = resident_tensor_bytes(ctx)
    return {"growth_bytes": growth, "held_bytes": held, "peak_bytes": held + growth, "method": method}


def measure_memory_cuda(c: Contestant, ctx: Ctx) -> Dict[str, Any]:
    reset_model(ctx)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    c.run(ctx)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"growth_bytes": peak - base, "held_bytes": base, "peak_bytes": peak,
            "method": "cuda_max_memory_allocated"}


def _memory_child(model_name: str, contestant_name: str, method: str, threads: int, conn: Any) -> None:
    """Entry point of the fresh process that measures one (model, contestant)."""
    try:
        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        c = CONTESTANTS[contestant_name]
        if c.prepare:
            c.prepare()
        t1 = time.perf_counter()
        ctx = build_ctx(MODELS[model_name], torch.device("cpu"))
        t2 = time.perf_counter()
        res = measure_memory_cpu(c, ctx, method)
        res["child_s"] = {"prepare": t1 - t0, "build": t2 - t1, "measure": time.perf_counter() - t2}
        conn.send({"ok": res})
    except BaseException as e:  # report, never hang the parent
        conn.send({"error": _err(e)})
    finally:
        conn.close()


class MemoryRunner:
    def __init__(self, method: str, threads: int, timeout: float) -> None:
        self.method, self.threads, self.timeout = method, threads, timeout
        self.mpctx = mp.get_context("forkserver")
        self.mpctx.set_forkserver_preload(["torch", "torch._dynamo", "torch.utils.data"])

    def measure(self, model_name: str, contestant_name: str) -> Dict[str, Any]:
        recv, send = self.mpctx.Pipe(duplex=False)
        p = self.mpctx.Process(target=_memory_child,
                               args=(model_name, contestant_name, self.method, self.threads, send))
        p.start()
        send.close()
        try:
            if recv.poll(self.timeout):
                msg = recv.recv()
            else:
                msg = {"error": f"error: memory child timed out after {self.timeout:.0f} s"}
        except EOFError:
            msg = None
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
        if msg is None:
            msg = {"error": f"error: memory child died (exit code {p.exitcode})"}
        return msg


# --------------------------------------------------------------------------------------------
# machine description


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_describe() -> Optional[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_description(device: torch.device) -> Dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    desc: Dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_total_bytes": mem_total,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "device": str(device),
        "git_commit": _git_describe(),
        "versions": {d: _version(d) for d in ("torchcheck_mixin", "torchinfo", "numpy", "torchtest",
                                              "torcheck", "pytest-torch", "torchtest2", "pytest")},
    }
    if device.type == "cuda":
        desc["gpu"] = torch.cuda.get_device_name(device)
        desc["cuda"] = torch.version.cuda
    return desc


# --------------------------------------------------------------------------------------------
# reporting


def _fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _fmt_ms(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:.3g}" if x * 1e3 < 100 else f"{x * 1e3:.0f}"


def _fmt_mb(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x / 2**20:.1f}"


def _table(headers: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def cell_time(res: Dict[str, Any]) -> str:
    if "error" in res:
        return res["error"]
    s = f"{_fmt_ratio(res.get('time_ratio'))} {_fmt_ms(res['time_median_s'])}ms"
    if res.get("vs") and res.get("time_ratio_min") is not None and not CONTESTANTS[res["name"]].group == "floor":
        s += f" (min {_fmt_ratio(res['time_ratio_min'])})"
    if res.get("verdict") == "FAIL":
        s += " (FAIL)"
    return s


def cell_mem(res: Dict[str, Any]) -> str:
    if "error" in res:
        return res["error"][:60]
    mem = res.get("memory")
    if not mem:
        return "-"
    if "error" in mem:
        return mem["error"][:60]
    return f"{_fmt_ratio(res.get('memory_ratio'))} +{_fmt_mb(mem['growth_bytes'])}MB"


def render(results: Dict[str, Any]) -> str:
    models = list(results["models"])
    names: List[str] = []
    for m in models:
        for n in results["models"][m]["contestants"]:
            if n not in names:
                names.append(n)
    out = []
    hdr = ["contestant", "vs"] + models
    rows = []
    for n in names:
        vs = CONTESTANTS[n].vs if n in CONTESTANTS else None
        row = [n, vs or "-"]
        for m in models:
            r = results["models"][m]["contestants"].get(n)
            row.append(cell_time(r) if r else "-")
        rows.append(row)
    out.append("TIME: ratio of medians to the floor in column 'vs', median ms, (ratio of minimums)")
    out.append(_table(hdr, rows))
    if any(results["models"][m].get("memory_measured") for m in models):
        rows = []
        for n in names:
            vs = CONTESTANTS[n].vs if n in CONTESTANTS else None
            row = [n, vs or "-"]
            for m in models:
                r = results["models"][m]["contestants"].get(n)
                row.append(cell_mem(r) if r else "-")
            rows.append(row)
        out.append("")
        out.append("PEAK MEMORY: ratio of peak (held tensors + growth) to the floor's peak, then the measured "
                   f"growth of one call [{results['memory_method']}]")
        out.append(_table(hdr, rows))
    if results.get("sync_method"):
        rows = []
        for n in names:
            row = [n]
            for m in models:
                r = results["models"][m]["contestants"].get(n) or {}
                v = r.get("syncs")
                row.append("-" if v is None else str(v))
            rows.append(row)
        out.append("")
        what = ("host-device syncs (torch.cuda.set_sync_debug_mode)" if results["sync_method"].startswith("cuda")
                else "host reads of tensor values per call (CPU proxy for syncs: item/bool/float/int/index/"
                     "tolist/numpy/equal/allclose)")
        out.append(f"SYNCS: {what}")
        out.append(_table(["contestant"] + models, rows))
    rows = []
    for m in models:
        info = results["models"][m]
        rows.append([m, f"{info['params']:,}", str(info["param_tensors"]),
                     f"{info['held_bytes'] / 2**20:.1f}", str(info["repeats"]), info["description"]])
    out.append("")
    out.append(_table(["model", "params", "tensors", "held MB", "repeats", "description"], rows))
    if results.get("targets"):
        out.append("")
        out.append("TARGETS (issue 6) for torchcheck_mixin:")
        for t in results["targets"]:
            out.append(f"  [{t['status']:>4}] {t['model']}: {t['what']}: {t['value']}")
    return "\n".join(out)


def evaluate_targets(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []

    def add(model: str, what: str, value: Optional[float], limit: float, fmt: str = "{:.3f}x") -> None:
        if value is None:
            return
        status = "ok" if value <= limit else "MISS"
        out.append({"model": model, "what": f"{what} <= {fmt.format(limit)}", "value": fmt.format(value),
                    "status": status})

    for m, info in results["models"].items():
        cs = info["contestants"]

        def get(name: str, key: str) -> Optional[float]:
            r = cs.get(name)
            return None if not r or "error" in r else r.get(key)

        add(m, "gradient time / fwd+bwd", get("ours.gradient", "time_ratio"), 1.10)
        add(m, "gradient peak memory / fwd+bwd", get("ours.gradient", "memory_ratio"), 1.05)
        add(m, "snapshot time / train step", get("ours.snapshot", "time_ratio"), 1.25)
        snap = cs.get("ours.snapshot") or {}
        step = cs.get("floor.train_step") or {}
        if snap.get("memory") and step.get("memory") and "error" not in snap["memory"] \
                and "error" not in step["memory"]:
            budget = step["memory"]["peak_bytes"] + info["trainable_bytes"]
            add(m, "snapshot peak MB / (step peak + trainable params)", snap["memory"]["peak_bytes"] / 2**20,
                budget / 2**20, "{:.1f}")
        add(m, "parameter_summary time / forward", get("ours.parameter_summary", "time_ratio"), 0.05)
        add(m, "batch check time / forward", get("ours.batch_shape", "time_ratio"), 0.05)
        bt, lt, ft = get("ours.batch_shape", "time_median_s"), get("floor.loader", "time_median_s"), \
            get("floor.forward", "time_median_s")
        if bt is not None and lt is not None and ft:
            add(m, "(batch check - bare loader iteration) time / forward", (bt - lt) / ft, 0.05)
    # constant number of syncs per check: same count on every model
    by_check: Dict[str, Dict[str, int]] = {}
    for m, info in results["models"].items():
        for n, r in info["contestants"].items():
            if n.startswith("ours.") and r.get("syncs") is not None:
                by_check.setdefault(n, {})[m] = r["syncs"]
    for n, counts in by_check.items():
        if len(counts) > 1:
            const = len(set(counts.values())) == 1
            out.append({"model": "all", "what": f"{n} syncs constant across models", "value": str(counts),
                        "status": "ok" if const else "MISS"})
    return out


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time and peak memory of torchcheck_mixin's checks vs a bare training loop and peer tools. "
                    "Run with PYTHONPATH=<repo root> so the checkout's torchcheck_mixin is imported.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="models: " + ", ".join(MODELS)
        + "\ncontestants: " + ", ".join(CONTESTANTS)
        + "\n\nExample: PYTHONPATH=. .bench-venv/bin/python benchmarks/bench_checks.py --json bench.json")
    p.add_argument("--models", default=None,
                   help="comma-separated model names (default: all; see below)")
    p.add_argument("--no-large", action="store_true",
                   help="skip the 100M-parameter model (run by default, 3 repeats, when 4 GiB are available)")
    p.add_argument("--tools", default=None,
                   help="comma-separated contestant names or prefixes (e.g. 'ours,torchtest'); floors are "
                        "always included")
    p.add_argument("--repeats", type=int, default=7,
                   help="minimum timed calls per (model, contestant) (default 7)")
    p.add_argument("--max-repeats", type=int, default=30,
                   help="more rounds are timed while a model's --budget lasts, up to this many (default 30)")
    p.add_argument("--budget", type=float, default=40.0,
                   help="seconds of timing rounds per model beyond the minimum repeats (default 40)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for timing and memory children (default on CPU: 1, because on a "
                        "small shared VM 2 OpenMP threads gave 10x run-to-run swings; on CUDA: torch's default; "
                        "0 = torch's default)")
    p.add_argument("--json", metavar="PATH", default=None, help="write all results as JSON to PATH")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: mlp, cnn and many_tensors, 2 repeats, memory measured in-process")
    p.add_argument("--no-subprocess-memory", action="store_true",
                   help="CPU: measure memory in this process (faster, less isolated) instead of a fresh "
                        "process per measurement")
    p.add_argument("--no-memory", action="store_true", help="skip memory measurements")
    p.add_argument("--no-syncs", action="store_true", help="skip sync / host-read counting")
    p.add_argument("--child-timeout", type=float, default=300.0, help="seconds per memory child (default 300)")
    p.add_argument("--list", action="store_true", help="list models and contestants and exit")
    p.add_argument("--malloc", choices=("keep", "default"), default="keep",
                   help="timing process: 'keep' (default) sets glibc mallopt so freed memory is kept and "
                        "reused (M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB): fewer page faults, "
                        "less noise; 'default' leaves glibc's dynamic thresholds")
    return p.parse_args(argv)


def free_bytes(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def select(args: argparse.Namespace, device: torch.device) -> Tuple[List[str], List[str]]:
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    else:
        models = ["mlp", "cnn", "many_tensors"] if args.quick else [m.name for m in MODELS.values() if m.in_default]
        if args.no_large:
            models = [m for m in models if m != "large"]
        free = free_bytes(device)
        for m in list(models):
            need = MODELS[m].min_free_bytes
            if need and free is not None and free < need:
                print(f"skipping model {m}: {free / 2**30:.1f} GiB available, {need / 2**30:.0f} GiB wanted",
                      file=sys.stderr)
                models.remove(m)
    names = list(CONTESTANTS)
    if args.tools:
        wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
        picked = [n for n in names if any(n == w or n.startswith(w) for w in wanted)]
        if not picked:
            raise SystemExit(f"no contestant matches {wanted}; choose from {names}")
        names = [n for n in names if n.startswith("floor.") or n in picked]
    return models, names


def time_model(model_name: str, names: List[str], args: argparse.Namespace, device: torch.device,
               sync: bool) -> Dict[str, Any]:
    spec = MODELS[model_name]
    t_build = time.perf_counter()
    ctx = build_ctx(spec, device)
    uniq = {id(p): p for p in ctx.model.parameters()}
    info: Dict[str, Any] = {
        "description": spec.description, "params": ctx.n_params, "param_tensors": len(uniq),
        "held_bytes": resident_tensor_bytes(ctx), "trainable_bytes": trainable_bytes(ctx),
        "output_shape": list(ctx.expected_shape), "contestants": {},
    }
    repeats = max(1, min(args.repeats, spec.max_repeats or args.repeats))
    info["repeats"] = repeats
    print(f"\n== {model_name}: {ctx.n_params:,} params in {len(uniq)} tensors "
          f"(built in {time.perf_counter() - t_build:.1f}s), {repeats} repeats", flush=True)
    results: Dict[str, Dict[str, Any]] = {n: {} for n in names}
    live: List[str] = []
    # prepare + warm-up (errors become cells)
    for n in names:
        c = CONTESTANTS[n]
        try:
            if c.prepare:
                c.prepare()
            out = None
            for _ in range(max(1, args.warmup)):
                _, out = timed_call(c, ctx)
            v = verdict(out)
            if v:
                results[n]["verdict"] = v
            live.append(n)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            results[n]["error"] = _err(e)
            if not isinstance(e, Missing):
                results[n]["traceback"] = traceback.format_exc(limit=6)
            print(f"   {n}: {results[n]['error']}", flush=True)
    # timed, round robin: at least `repeats` rounds, more while the model's time budget lasts
    times: Dict[str, List[float]] = {n: [] for n in live}
    t_rounds = time.perf_counter()
    max_rounds = repeats if spec.max_repeats else max(repeats, args.max_repeats)
    r = -1
    while True:
        r += 1
        if r >= max_rounds or (r >= repeats and time.perf_counter() - t_rounds > args.budget * r / (r + 1)):
            break
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for n in order:
            if "error" in results[n]:
                continue
            try:
                dt, _ = timed_call(CONTESTANTS[n], ctx)
                times[n].append(dt)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                results[n]["error"] = _err(e)
    info["repeats"] = r
    for n in live:
        if "error" in results[n] or not times[n]:
            continue
        ts = times[n]
        results[n].update({"time_median_s": statistics.median(ts), "time_min_s": min(ts),
                           "time_max_s": max(ts), "times_s": ts})
    # syncs
    if sync:
        for n in live:
            if "error" in results[n]:
                continue
            try:
                results[n]["syncs"], _ = count_syncs(CONTESTANTS[n], ctx)
            except Exception as e:
                results[n]["syncs_error"] = _err(e)
    info["contestants"] = results
    del ctx
    gc.collect()
    return info


def measure_model_memory(model_name: str, info: Dict[str, Any], device: torch.device,
                         mem: Optional[MemoryRunner], mem_method: str) -> None:
    """Peak memory of every contestant that ran (after all timing, so the allocator settings used
    for memory never affect the timings)."""
    results = info["contestants"]
    live = [n for n, r in results.items() if "error" not in r]
    ctx = None if (device.type == "cpu" and mem is not None) else build_ctx(MODELS[model_name], device)
    info["memory_measured"] = True
    print(f"== memory {model_name}", flush=True)
    for n in live:
        t0 = time.perf_counter()
        if ctx is not None and device.type == "cuda":
            try:
                m = measure_memory_cuda(CONTESTANTS[n], ctx)
            except Exception as e:
                m = {"error": _err(e)}
        elif mem is not None:
            msg = mem.measure(model_name, n)
            m = msg.get("ok") or {"error": msg.get("error", "error: unknown")}
        else:
            try:
                m = measure_memory_cpu(CONTESTANTS[n], ctx, mem_method)
            except Exception as e:
                m = {"error": _err(e)}
        results[n]["memory"] = m
        results[n]["memory_wall_s"] = time.perf_counter() - t0
    del ctx
    gc.collect()


def compute_ratios(info: Dict[str, Any]) -> None:
    results = info["contestants"]
    names = list(results)
    for n in names:
        r = results[n]
        c = CONTESTANTS[n]
        floor = FLOORS.get(c.vs) if c.vs else n
        fr = results.get(floor) or {}
        r["name"] = n
        r["vs"] = c.vs or c.name.split(".", 1)[1]
        if "time_median_s" in r and fr.get("time_median_s"):
            r["time_ratio"] = r["time_median_s"] / fr["time_median_s"]
            r["time_ratio_min"] = r["time_min_s"] / fr["time_min_s"]
        mm, fm = r.get("memory"), fr.get("memory")
        if mm and fm and "error" not in mm and "error" not in fm and fm["peak_bytes"]:
            r["memory_ratio"] = mm["peak_bytes"] / fm["peak_bytes"]
            if fm["growth_bytes"]:
                r["growth_ratio"] = mm["growth_bytes"] / fm["growth_bytes"]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.list:
        for m in MODELS.values():
            print(f"model {m.name:14s} {m.description}")
        for c in CONTESTANTS.values():
            print(f"contestant {c.name:38s} vs {c.vs or '-':10s} {c.description}")
        return 0
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.max_repeats = args.repeats
        args.no_subprocess_memory = True
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    if args.threads is None:
        args.threads = 1 if device.type == "cpu" else 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep" and device.type == "cpu":
        libc = _libc_handle()
        if libc:
            libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD (the maximum glibc accepts)
            libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD
    models, names = select(args, device)
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")

    mem_method: Optional[str] = None
    mem: Optional[MemoryRunner] = None
    if not args.no_memory:
        if device.type == "cuda":
            mem_method = "cuda_max_memory_allocated"
        else:
            mem_method = memory_method()
            if not args.no_subprocess_memory:
                mem = MemoryRunner(mem_method, torch.get_num_threads(), args.child_timeout)
            elif mem_method == "ru_maxrss":
                print("warning: /proc/self/clear_refs is not writable; in-process memory numbers are unusable "
                      "(ru_maxrss cannot be reset); use the subprocess mode", file=sys.stderr)

    t0 = time.perf_counter()
    results: Dict[str, Any] = {
        "machine": machine_description(device),
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "models": models, "contestants": names,
                     "subprocess_memory": mem is not None, "seed": SEED, "lr": LR},
        "memory_method": (
            None if mem_method is None else
            mem_method + (" (fresh forkserver process per measurement)" if mem is not None else
                          " (in this process)" if device.type == "cpu" else "")),
        "sync_method": None if args.no_syncs else (
            "cuda_sync_debug_mode" if device.type == "cuda" else "cpu_host_read_proxy"),
        "models": {},
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {results['machine']['cpu_model']}, "
          f"device {device}; memory: {results['memory_method']}", flush=True)
    for m in models:
        info = time_model(m, names, args, device, not args.no_syncs)
        compute_ratios(info)
        for n, r in info["contestants"].items():
            print(f"   {n:38s} {cell_time(r)}", flush=True)
        results["models"][m] = info
    if mem_method is not None:
        for m in models:
            measure_model_memory(m, results["models"][m], device, mem, mem_method)
            compute_ratios(results["models"][m])
    results["targets"] = evaluate_targets(results)
    results["wall_s"] = time.perf_counter() - t0
    print()
    print(render(results))
    print(f"\ntotal wall time {results['wall_s']:.0f}s")
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
