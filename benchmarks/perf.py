#!/usr/bin/env python3
"""The performance targets of the update checks, measured in one command.

Run by hand, never by CI::

    OMP_NUM_THREADS=1 PYTHONPATH=.:/work/peers python benchmarks/perf.py --out benchmarks/results/perf
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/perf.py --quick      # a few minutes, no 100M model

For every model, the contestants of that model run interleaved (round robin, so drift of the
machine affects all alike) and each cell is the median of the repeats:

* ``floor.fwd_bwd``: ``zero_grad`` + ``loss_fn(model(x), y).backward()``;
* ``floor.step``: the same plus ``optimizer.step()`` with the model's optimizer (SGD or AdamW);
* ``ours.gradient``: ``check_parameters_updated(mode="gradient")``, ratio to ``floor.fwd_bwd``;
* ``ours.snapshot``: ``check_parameters_updated(mode="snapshot", optimizer=<the model's optimizer>)``,
  ratio to ``floor.step``;
* the peers, where installed (``pip install --no-deps --target /work/peers torchtest==0.5
  pytest-torch==1.1.1``, then ``PYTHONPATH=.:/work/peers``), with what they skip in the table.

Fairness (the issue's conditions): the garbage collector stays on, as in a user's test run; glibc's
heap is pinned (``M_MMAP_THRESHOLD`` 32 MiB, ``M_TRIM_THRESHOLD`` 1 GiB, set before any model is
built) so that neither side pays page faults for fresh allocations the other reuses; every
contestant is warmed up before timing; one torch thread. The failing path (a model with a dead
branch; the report's message is built) is timed separately, and so is the growth of the cost with
parameter count (1M to 100M) and with tensor count (10 to 10,000): a markdown table and a log-log
SVG plot (hand-written, no plotting dependency). Peak memory of each mode is measured by
``bench_checks.py`` (a fresh process per cell), not here.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# Pin the heap before anything allocates: freed blocks stay in the process and are reused by
# whichever side runs next, so no contestant pays first-touch page faults the other does not.
try:
    _libc = ctypes.CDLL("libc.so.6")
    HEAP = "pinned (mallopt M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB)"
    _libc.mallopt(-3, 32 * 1024 * 1024)
    _libc.mallopt(-1, 1024 * 1024 * 1024)
except OSError:  # not glibc: both sides pay the same faults
    HEAP = "default allocator (not glibc: heap not pinned; both sides pay the same page faults)"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_checks as bc  # noqa: E402  (the peers' adapters, written once)

SEED = 0

# ----------------------------------------------------------------------------------------------
# models


class Residual(nn.Module):
    """x + f(LayerNorm(x)): a pre-norm residual block, two Linear tensors + two LayerNorm tensors."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lin(self.norm(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout in plain torch (torchvision 0.28 is a CUDA-only build here)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks: List[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class LSTMTagger(nn.Module):
    def __init__(self, vocab: int = 2000, dim: int = 128, hidden: int = 256, tags: int = 20) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])


def _token_ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.flatten(0, 1), target.flatten())


@dataclass
class Workload:
    name: str
    description: str
    model: nn.Module
    inputs: Any
    target: torch.Tensor
    loss_fn: Callable[[Any, Any], torch.Tensor]
    optimizer: str  # "sgd" | "adamw"

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=1e-3)
        return torch.optim.SGD(params, lr=0.01)


def linear5() -> Workload:
    model = nn.Sequential(*[m for _ in range(5) for m in (nn.Linear(2048, 2048), nn.ReLU())][:-1])
    return Workload("linear5", "5 x Linear(2048, 2048), batch 64, MSE, SGD", model,
                    torch.randn(64, 2048), torch.randn(64, 2048), F.mse_loss, "sgd")


def encoder() -> Workload:
    layer = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 4, enable_nested_tensor=False), nn.Linear(256, 256))
    return Workload("encoder", "TransformerEncoder 4 x d256 (4 heads, ff 1024), 8 x 64 tokens, MSE, AdamW",
                    model, torch.randn(8, 64, 256), torch.randn(8, 64, 256), F.mse_loss, "adamw")


def residual(blocks: int = 250, width: int = 16, name: str = "residual250") -> Workload:
    model = nn.Sequential(*[Residual(width) for _ in range(blocks)])
    return Workload(name, f"{blocks} residual blocks LayerNorm+Linear({width},{width}) "
                    f"({4 * blocks} tensors), batch 32, MSE, SGD", model,
                    torch.randn(32, width), torch.randn(32, width), F.mse_loss, "sgd")


def resnet18() -> Workload:
    return Workload("resnet18", "ResNet-18 (plain torch), 8 x 3 x 64 x 64, cross-entropy, SGD", ResNet18(),
                    torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,)), F.cross_entropy, "sgd")


def lstm() -> Workload:
    return Workload("lstm_tagger", "Embedding + 2-layer BiLSTM(256) + head, 16 x 32 tokens, CE, AdamW",
                    LSTMTagger(), torch.randint(0, 2000, (16, 32)), torch.randint(0, 20, (16, 32)),
                    _token_ce, "adamw")


def tiny() -> Workload:
    return Workload("tiny", "Linear(10, 2), batch 4, MSE, SGD", nn.Linear(10, 2), torch.randn(4, 10),
                    torch.randn(4, 2), F.mse_loss, "sgd")


def mlp_params(width: int, depth: int = 4) -> Workload:
    model = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())][:-1])
    n = sum(p.numel() for p in model.parameters())
    return Workload(f"params_{n / 1e6:.0f}M", f"{depth} x Linear({width},{width}), batch 8, MSE, SGD", model,
                    torch.randn(8, width), torch.randn(8, width), F.mse_loss, "sgd")


def heads(tensors: int) -> Workload:
    model = bc.ManyHeads(max(1, tensors // 2))
    return Workload(f"tensors_{tensors}", f"{tensors // 2} parallel Linear(8,8) heads ({tensors} tensors), MSE, SGD",
                    model, torch.randn(16, 8), torch.randn(16, max(1, tensors // 2), 8), F.mse_loss, "sgd")


# ----------------------------------------------------------------------------------------------
# contestants


def _ours() -> Any:
    return importlib.import_module("torchcheck_mixin")


@dataclass
class Contestant:
    name: str
    vs: Optional[str]  # the floor of the ratio
    run: Callable[[Any], Any]
    skips: str = ""  # what a peer does not check that ours does


def floor_fwd_bwd(c: Any) -> Any:
    c.model.zero_grad(set_to_none=True)
    c.loss_fn(c.model(c.inputs), c.target).backward()


def floor_step(c: Any) -> Any:
    c.optimizer.zero_grad(set_to_none=True)
    c.loss_fn(c.model(c.inputs), c.target).backward()
    c.optimizer.step()


def ours_gradient(c: Any) -> Any:
    report = _ours().check_parameters_updated(c.model, c.inputs, c.target, loss_fn=c.loss_fn)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def ours_snapshot(c: Any) -> Any:
    report = _ours().check_parameters_updated(c.model, c.inputs, c.target, loss_fn=c.loss_fn,
                                              mode="snapshot", optimizer=c.optimizer)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def _peer(adapter: Callable[[Any], Any], module: str) -> Optional[Callable[[Any], Any]]:
    try:
        importlib.import_module(module)
    except Exception:
        return None
    return adapter


PEERS = [
    ("pytest_torch.receive_grad", "fwd_bwd", bc.pytest_torch_receive_grad, "pytest_torch",
     "no frozen/trainable report, no rounding-noise or zero-init re-check, model and RNG not restored"),
    ("torchtest.assert_vars_change", "step", bc.torchtest_vars_change, "torchtest",
     "steps the user's model and optimizer for real (not restored), torch.equal only"),
    ("ludwig.reimpl", "step", bc.ludwig_reimpl, "torch",
     "own SGD step on the user's model (not restored), grad != 0 only"),
]


def contestants(peers: bool) -> List[Contestant]:
    out = [Contestant("floor.fwd_bwd", None, floor_fwd_bwd), Contestant("floor.step", None, floor_step),
           Contestant("ours.gradient", "fwd_bwd", ours_gradient),
           Contestant("ours.snapshot", "step", ours_snapshot)]
    if peers:
        for name, vs, adapter, module, skips in PEERS:
            fn = _peer(adapter, module)
            if fn is not None:
                out.append(Contestant(name, vs, fn, skips))
    return out


def context(w: Workload) -> Any:
    opt = w.make_optimizer(w.model.parameters())
    # the attributes bench_checks' peer adapters read
    return SimpleNamespace(model=w.model.train(), inputs=w.inputs, target=w.target, loss_fn=w.loss_fn,
                           optimizer=opt, make_optimizer=w.make_optimizer, device=torch.device("cpu"))


def restore(c: Any, state: Dict[str, torch.Tensor], opt_state: Any) -> None:
    """Untimed: the peers and the floors step the model for real; put weights and optimizer back."""
    with torch.no_grad():
        for k, v in c.model.state_dict().items():
            v.copy_(state[k])
    c.optimizer.load_state_dict(opt_state)
    c.model.zero_grad(set_to_none=True)
    c.model.train()


def measure(w: Workload, cs: List[Contestant], repeats: int, budget_s: float) -> Dict[str, Any]:
    """Interleaved medians; the repeats shrink for slow models so one model fits in ``budget_s``."""
    c = context(w)
    state = {k: v.detach().clone() for k, v in c.model.state_dict().items()}
    import copy
    opt_state = copy.deepcopy(c.optimizer.state_dict())
    # warm-up: one call of each (thread pools, kernel caches, the library's imports)
    first = {}
    for con in cs:
        t0 = time.perf_counter()
        try:
            con.run(c)
            first[con.name] = None
        except Exception as e:  # a contestant that fails on this model is reported, not timed
            first[con.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        first.setdefault(con.name + ".t", time.perf_counter() - t0)
        restore(c, state, opt_state)
    per_round = sum(first[con.name + ".t"] for con in cs)
    n = max(3, min(repeats, int(budget_s / max(per_round, 1e-6))))
    times: Dict[str, List[float]] = {con.name: [] for con in cs}
    for _ in range(n):
        for con in cs:
            if first[con.name] is not None:
                continue
            t0 = time.perf_counter()
            con.run(c)
            times[con.name].append(time.perf_counter() - t0)
            restore(c, state, opt_state)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    row: Dict[str, Any] = {"model": w.name, "description": w.description, "optimizer": w.optimizer,
                           "repeats": n, "tensors": sum(1 for _ in w.model.parameters()),
                           "params": sum(p.numel() for p in w.model.parameters()), "median_s": med,
                           "errors": {k: v for k, v in first.items() if not k.endswith(".t") and v}}
    floors = {"fwd_bwd": med.get("floor.fwd_bwd"), "step": med.get("floor.step")}
    row["ratio"] = {con.name: med[con.name] / floors[con.vs] for con in cs
                    if con.vs and con.name in med and floors[con.vs]}
    row["overhead_ms"] = {con.name: 1e3 * (med[con.name] - floors[con.vs]) for con in cs
                          if con.vs and con.name in med and floors[con.vs]}
    return row


def measure_failing(repeats: int) -> Dict[str, Any]:
    """The failing path: 250 residual blocks, one block's Linear is bypassed (its output unused)."""

    class Dead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*[Residual(16) for _ in range(250)])
            self.dead = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.dead(x)  # computed, never used: the bug
            return self.body(x)

    torch.manual_seed(SEED)
    model = Dead().train()
    x, y = torch.randn(32, 16), torch.randn(32, 16)
    ours = _ours()

    def fail() -> str:
        report = ours.check_parameters_updated(model, x, y, loss_fn=F.mse_loss)
        assert not report.passed
        return str(report)  # the message is part of the failing path

    def floor() -> None:
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()

    fail(), floor()
    ts: Dict[str, List[float]] = {"fail": [], "floor": []}
    for _ in range(repeats):
        for k, fn in (("floor", floor), ("fail", fail)):
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    f, b = statistics.median(ts["fail"]), statistics.median(ts["floor"])
    return {"model": "residual250 + 1 dead Linear", "failing_gradient_s": f, "floor_fwd_bwd_s": b,
            "ratio": f / b, "repeats": repeats, "message_lines": len(fail().splitlines())}


# ----------------------------------------------------------------------------------------------
# output


def svg_plot(series: Dict[str, List[Tuple[float, float]]], xlabel: str, path: str, title: str) -> None:
    """A log-log line plot of cost ratio against size, written as plain SVG."""
    import math
    W, H, L, R, T, B = 560, 340, 60, 150, 30, 45
    pts = [p for s in series.values() for p in s if p[0] > 0 and p[1] > 0]
    if not pts:
        return
    x0, x1 = math.log10(min(p[0] for p in pts)), math.log10(max(p[0] for p in pts))
    y0, y1 = math.log10(min(0.8, min(p[1] for p in pts))), math.log10(max(2.0, max(p[1] for p in pts)))
    x1 = x1 if x1 > x0 else x0 + 1

    def X(v: float) -> float:
        return L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)

    def Y(v: float) -> float:
        return H - B - (math.log10(v) - y0) / (y1 - y0) * (H - T - B)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="18" font-size="13">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">{xlabel} (log)</text>',
           f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" '
           f'text-anchor="middle">time / floor (log)</text>']
    for e in range(int(math.floor(x0)), int(math.ceil(x1)) + 1):
        v = 10 ** e
        if x0 - 1e-9 <= e <= x1 + 1e-9:
            out.append(f'<text x="{X(v):.1f}" y="{H - B + 14}" text-anchor="middle">{v:g}</text>')
    for v in (0.8, 1.0, 1.15, 1.35, 1.5, 2.0, 3.0, 5.0):
        if y0 <= math.log10(v) <= y1:
            out.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{L - 4}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}x</text>')
    for i, (name, s) in enumerate(series.items()):
        s = sorted(p for p in s if p[0] > 0 and p[1] > 0)
        col = colours[i % len(colours)]
        out.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="'
                   + " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in s) + '"/>')
        out += [f'<circle cx="{X(a):.1f}" cy="{Y(b):.1f}" r="3" fill="{col}"/>' for a, b in s]
        out.append(f'<text x="{W - R + 8}" y="{T + 14 + 16 * i}" fill="{col}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


TARGETS = "gradient <= 1.15x, snapshot <= 1.30x (models of 20 ms or more); 1,000 tensors: 1.35x / 1.50x; " \
          "tiny: <= 1 ms overhead"


def verdicts(row: Dict[str, Any]) -> str:
    r, ms, floor = row["ratio"], row["overhead_ms"], row["median_s"].get("floor.fwd_bwd", 0)
    notes = []
    if row["model"] == "tiny":
        for k in ("ours.gradient", "ours.snapshot"):
            if k in ms:
                notes.append(f"{k.split('.')[1]} {'met' if ms[k] <= 1.0 else 'MISSED'}")
    elif row["tensors"] >= 1000:
        for k, t in (("ours.gradient", 1.35), ("ours.snapshot", 1.50)):
            if k in r:
                notes.append(f"{k.split('.')[1]} {'met' if r[k] <= t else 'MISSED'}")
    elif floor >= 0.020:
        for k, t in (("ours.gradient", 1.15), ("ours.snapshot", 1.30)):
            if k in r:
                notes.append(f"{k.split('.')[1]} {'met' if r[k] <= t else 'MISSED'}")
    else:
        notes.append("under 20 ms: no ratio target")
    return ", ".join(notes)


def markdown(rows: List[Dict[str, Any]], failing: Optional[Dict[str, Any]], scaling: Dict[str, List[Dict[str, Any]]],
             meta: Dict[str, Any], peers: List[Tuple[str, str]]) -> str:
    lines = ["# Update-check performance", "",
             f"Command: `{meta['command']}`; {meta['date']}; {meta['machine']}; torch {meta['torch']}, "
             f"{meta['threads']} thread; heap {meta['heap']}; GC on; interleaved medians.", "",
             f"Targets: {TARGETS}.", "",
             "| model | tensors | params | floor fwd+bwd | floor step | gradient | snapshot | peers | targets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        m, r = row["median_s"], row["ratio"]
        peer_cells = "; ".join(f"{n} {r[n]:.2f}x" for n, _ in peers if n in r) or "-"
        if row["errors"]:
            peer_cells += "; errors: " + "; ".join(f"{k}: {v}" for k, v in row["errors"].items())

        def cell(k: str) -> str:
            if k not in r:
                return "-"
            return f"{r[k]:.2f}x (+{row['overhead_ms'][k]:.2f} ms)" if row["model"] == "tiny" else f"{r[k]:.2f}x"

        lines.append(f"| {row['model']} ({row['optimizer']}) | {row['tensors']:,} | {row['params']:,} | "
                     f"{1e3 * m.get('floor.fwd_bwd', float('nan')):.1f} ms | {1e3 * m.get('floor.step', float('nan')):.1f} ms"
                     f" | {cell('ours.gradient')} | {cell('ours.snapshot')} | {peer_cells} | {verdicts(row)} |")
    if peers:
        lines += ["", "What a peer cheaper than ours skips:", ""] + [f"- {n}: {s}" for n, s in peers]
    if failing:
        lines += ["", f"Failing path ({failing['model']}, message built, {failing['message_lines']} lines): "
                  f"{1e3 * failing['failing_gradient_s']:.1f} ms, {failing['ratio']:.2f}x a bare forward+backward "
                  f"({1e3 * failing['floor_fwd_bwd_s']:.1f} ms)."]
    for kind, srows in scaling.items():
        if not srows:
            continue
        lines += ["", f"## Scaling with {kind} (plot: scaling_{kind}.svg)", "",
                  f"| model | {kind} | floor fwd+bwd | gradient | floor step | snapshot |", "|---|---|---|---|---|---|"]
        for row in srows:
            m, r = row["median_s"], row["ratio"]
            lines.append(f"| {row['description']} | {row[kind]:,} | {1e3 * m['floor.fwd_bwd']:.1f} ms | "
                         f"{r.get('ours.gradient', float('nan')):.2f}x | {1e3 * m['floor.step']:.1f} ms | "
                         f"{r.get('ours.snapshot', float('nan')):.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/perf", help="folder for perf.md, perf.json, *.svg")
    p.add_argument("--quick", action="store_true", help="fewer repeats, scaling up to 30M params / 1,000 tensors")
    p.add_argument("--repeats", type=int, default=None, help="upper bound of timed rounds per model")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--only", default="", help="comma-separated model names of the main table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    repeats = args.repeats or (7 if args.quick else 21)
    budget = 20.0 if args.quick else 60.0
    cs = contestants(not args.no_peers)
    peers = [(c.name, c.skips) for c in cs if c.skips]
    builders = [linear5, encoder, residual, resnet18, lstm, tiny]
    if args.only:
        keep = set(args.only.split(","))
        builders = [b for b in builders if b.__name__ in keep or (b is residual and "residual250" in keep)]
    rows = []
    for build in builders:
        torch.manual_seed(SEED)
        w = build()
        rows.append(measure(w, cs, repeats, budget))
        print(f"{w.name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in rows[-1]["ratio"].items()), flush=True)
        del w
    failing = measure_failing(repeats) if not args.only else None
    ours_only = [c for c in cs if c.name.startswith(("floor", "ours"))]
    scaling: Dict[str, List[Dict[str, Any]]] = {"params": [], "tensors": []}
    if not args.only:
        widths = (512, 1600, 2740) if args.quick else (512, 1600, 2740, 5000)
        for width in widths:
            torch.manual_seed(SEED)
            row = measure(mlp_params(width), ours_only, min(repeats, 7), budget)
            scaling["params"].append(row)
            print(f"params {row['params']:,}: {row['ratio']}", flush=True)
        for n in ((10, 100, 1000) if args.quick else (10, 100, 1000, 10000)):
            torch.manual_seed(SEED)
            row = measure(heads(n), ours_only, repeats, budget)
            scaling["tensors"].append(row)
            print(f"tensors {row['tensors']:,}: {row['ratio']}", flush=True)
        for kind, srows in scaling.items():
            svg_plot({mode: [(r[kind], r["ratio"][f"ours.{mode}"]) for r in srows if f"ours.{mode}" in r["ratio"]]
                      for mode in ("gradient", "snapshot")}, kind, os.path.join(args.out, f"scaling_{kind}.svg"),
                     f"update-check cost vs {kind} (1 thread, CPU)")
    meta = {"command": "OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/perf.py " + " ".join(argv or sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{bc._cpu_model()}, {os.cpu_count()} cores, {platform.system()}",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "heap": HEAP}
    text = markdown(rows, failing, scaling, meta, peers)
    with open(os.path.join(args.out, "perf.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.out, "perf.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows, "failing": failing, "scaling": scaling}, fh, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
