"""Cost of each equivalence check against the floor it repeats (issue 16).

For each check: the median wall time of the check on a small MLP (4 -> 64 -> 64 -> 2, batch 32),
and of the plain PyTorch work it cannot avoid (its "floor"):

* accumulation: k micro-batch forward+backward steps plus one full-batch step;
* resume: n + m optimizer steps (the check runs them twice: interrupted and uninterrupted);
* compile parity (aot_eager): one eager and one compiled forward+backward, the compile itself
  timed separately (a fresh ``torch._dynamo.reset()`` each repeat);
* autocast: one float32 and one autocast forward+backward;
* precision: one float32 and one float64 forward+backward;
* moves: one deep copy and ``.to(torch.float64)``.

Repeats are interleaved (check, floor, check, floor, ...) so drift on a shared machine hits both;
GC stays on; one torch thread. Run: ``PYTHONPATH=. python benchmarks/equivalence_cost.py``.
"""

import copy
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from torchcheck_mixin.checks.accumulation import check_accumulation_equivalent
from torchcheck_mixin.checks.compile import check_compile_parity
from torchcheck_mixin.checks.moves import check_moves_with_model
from torchcheck_mixin.checks.precision import check_autocast_parity, check_precision_parity
from torchcheck_mixin.checks.resume import check_resume_equivalent

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


X, Y = torch.randn(32, 4), torch.randn(32, 2)
BATCHES = [(torch.randn(32, 4), torch.randn(32, 2)) for _ in range(4)]
K = 2


def step(model, x, y, scale=1.0):
    (F.mse_loss(model(x), y) * scale).backward()


def floor_accumulation():
    m = mlp()
    step(m, X, Y)
    for xi, yi in zip(X.chunk(K), Y.chunk(K)):
        step(m, xi, yi, 1 / K)


def floor_resume():
    m = mlp()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for x, y in BATCHES:
        opt.zero_grad()
        step(m, x, y)
        opt.step()


def floor_two_passes(cast):
    def run():
        for mode in ("ref", "other"):
            m = mlp()
            if cast == "float64" and mode == "other":
                m = m.double()
                step(m, X.double(), Y.double())
            elif cast == "autocast" and mode == "other":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = m(X)
                F.mse_loss(out.float(), Y).backward()
            else:
                step(m, X, Y)
    return run


def floor_moves():
    copy.deepcopy(mlp()).to(torch.float64)


def compile_only():
    torch._dynamo.reset()
    m = torch.compile(mlp(), backend="aot_eager")
    step(m, X, Y)
    torch._dynamo.reset()


CASES = [
    ("accumulation (k=2)", lambda: check_accumulation_equivalent(mlp(), X, Y, micro_batches=K), floor_accumulation,
     "k micro + 1 full step"),
    ("resume (n=2, m=2)", lambda: check_resume_equivalent(mlp, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
                                                         BATCHES), floor_resume, "n+m optimizer steps"),
    ("compile parity (aot_eager)", lambda: check_compile_parity(mlp(), X, Y, backend="aot_eager"), compile_only,
     "compile + 1 compiled step"),
    ("autocast (bfloat16)", lambda: check_autocast_parity(mlp(), X, Y), floor_two_passes("autocast"),
     "fp32 + autocast step"),
    ("precision (float64)", lambda: check_precision_parity(mlp(), X), floor_two_passes("float64"),
     "fp32 + fp64 step"),
    ("moves (float64)", lambda: check_moves_with_model(mlp()), floor_moves, "deepcopy + .to()"),
]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
    print(f"torch {torch.__version__}, 1 thread, GC on, median of {REPEATS} interleaved repeats "
          f"(shared machine: other jobs run alongside)")
    print(f"{'check':28s} {'check ms':>9s} {'floor ms':>9s} {'ratio':>6s}  floor")
    for name, check, floor, what in CASES:
        check(), floor()  # warm-up
        tc, tf = [], []
        for _ in range(REPEATS):
            tc.append(timed(check))
            tf.append(timed(floor))
        c, f = statistics.median(tc) * 1e3, statistics.median(tf) * 1e3
        print(f"{name:28s} {c:9.2f} {f:9.2f} {c / f:6.1f}  {what}")


if __name__ == "__main__":
    main()
