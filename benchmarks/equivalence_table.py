"""Which equivalence assertion catches which bug (issue 16): GENERATED, not written by hand.

Each row is a buggy model (or training setup); each column an equivalence check. Every cell is the
outcome of actually running that check on that row's model (seeded, CPU):

* ``caught``: the check fails;
* ``explained``: it fails, and says the difference is expected (BatchNorm statistics per
  micro-batch), not a bug;
* ``.``: it passes (this kind of bug is invisible to it);
* ``skip``: the check could not run here (torch.compile unavailable).

``python benchmarks/equivalence_table.py`` prints the rst table quoted in README.rst;
tests/test_equivalence_table.py regenerates it and checks that README.rst quotes it exactly.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from torchcheck_mixin.checks.accumulation import check_accumulation_equivalent
from torchcheck_mixin.checks.compile import check_compile_parity
from torchcheck_mixin.checks.moves import check_moves_with_model
from torchcheck_mixin.checks.precision import check_autocast_parity, check_precision_parity
from torchcheck_mixin.checks.resume import check_resume_equivalent


def seeded(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def factory():
        torch.manual_seed(0)
        return build()
    return factory


def mlp(d_in=4, d_out=2):
    return nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Linear(16, d_out))


class SoftmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 6)
        with torch.no_grad():
            self.l.weight.mul_(20)  # logits well above 11: exp overflows in float16

    def forward(self, x):
        e = self.l(x).exp()
        return e / e.sum(-1, keepdim=True)


class HiddenCast(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(self.a(x).half().float())


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)

    def forward(self, x):
        h = self.l(x)
        if h.sum() > 0:  # a Python branch on a tensor value
            h = h * 2
        return h


class PlainMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)
        self.mask = torch.ones(2)  # not a buffer

    def forward(self, x):
        return self.l(x) * self.mask


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)
        self.register_buffer("calls", torch.zeros(()), persistent=False)

    def forward(self, x):
        self.calls += 1
        return self.l(x) * self.calls


def step(summed=False, divide=True, zero_grad_inside=False):
    def run(model, micro_batches):
        for x, y in micro_batches:
            if zero_grad_inside:
                model.zero_grad()
            loss = F.mse_loss(model(x), y, reduction="sum" if summed else "mean")
            (loss / len(micro_batches) if divide else loss).backward()
    return run


def save_without_scheduler(model, opt, sched, scaler):
    return {"model": {k: v.clone() for k, v in model.state_dict().items()}, "opt": opt.state_dict()}


def load_without_scheduler(ckpt, model, opt, sched, scaler):
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])


def save_no_rng(model, opt, sched, scaler):
    return {**save_without_scheduler(model, opt, sched, scaler), "sched": sched.state_dict() if sched else None}


def load_no_rng(ckpt, model, opt, sched, scaler):
    load_without_scheduler(ckpt, model, opt, sched, scaler)
    if sched:
        sched.load_state_dict(ckpt["sched"])


@dataclass
class Row:
    bug: str
    factory: Callable[[], nn.Module]
    accumulation: Dict[str, Any] = field(default_factory=dict)
    resume: Dict[str, Any] = field(default_factory=dict)
    compile: Dict[str, Any] = field(default_factory=dict)
    autocast: Dict[str, Any] = field(default_factory=dict)


def step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)


ROWS: List[Row] = [
    Row("correct model (twin)", seeded(mlp)),
    Row("summed loss", seeded(mlp), accumulation={"step_fn": step(summed=True)}),
    Row("missing / k", seeded(mlp), accumulation={"step_fn": step(divide=False)}),
    Row("zero_grad inside the loop", seeded(mlp), accumulation={"step_fn": step(zero_grad_inside=True)}),
    Row("BatchNorm in train mode", seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)))),
    Row("scheduler not saved", seeded(mlp), resume={"scheduler_factory": step_lr, "save_fn": save_without_scheduler,
                                                     "load_fn": load_without_scheduler}),
    Row("RNG not restored", seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))),
        resume={"scheduler_factory": step_lr, "save_fn": save_no_rng, "load_fn": load_no_rng}),
    Row("non-persistent buffer", seeded(Counter)),
    Row("branch on a tensor value", seeded(Branchy), compile={"check_graph_breaks": True}),
    Row("half overflow (hand-written softmax)", seeded(SoftmaxHead), autocast={"dtype": torch.float16}),
    Row("hidden .half()", seeded(HiddenCast)),
    Row("tensor in a plain attribute", seeded(PlainMask)),
]

COLUMNS = ["accumulation", "resume", "compile", "autocast", "precision", "moves"]


def outcome(result) -> str:
    if getattr(result, "skipped_reason", ""):
        return "skip"
    if result.passed:
        return "."
    return "explained" if getattr(result, "expected_difference", "") else "caught"


def run_row(row: Row) -> List[str]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=gen)
    with torch.no_grad():
        y = torch.randn(row.factory()(x).shape, generator=gen)
    batches = [(torch.randn(8, 4, generator=gen), torch.randn(y.shape, generator=gen)) for _ in range(4)]
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=1e-2)  # noqa: E731
    results = {
        "accumulation": lambda: check_accumulation_equivalent(row.factory(), x, y, **row.accumulation),
        "resume": lambda: check_resume_equivalent(row.factory, adam, batches, **row.resume),
        "compile": lambda: check_compile_parity(row.factory(), x, y, backend="aot_eager", **row.compile),
        "autocast": lambda: check_autocast_parity(row.factory(), x, y, **row.autocast),
        "precision": lambda: check_precision_parity(row.factory(), x),
        "moves": lambda: check_moves_with_model(row.factory()),
    }
    return [outcome(results[c]()) for c in COLUMNS]


def table() -> str:
    """The rst grid (simple table) of every row run through every check."""
    with warnings.catch_warnings():  # torch.compile's own deprecated torch.jit.script_method use
        warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
        cells = [[row.bug] + run_row(row) for row in ROWS]
    header = ["bug"] + COLUMNS
    widths = [max(len(r[i]) for r in cells + [header]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([rule, fmt(header), rule] + [fmt(r) for r in cells] + [rule])


if __name__ == "__main__":
    print(table())
