"""Tests of tests/distributed_harness.py and torchcheck_mixin/distributed.py.

Every test that starts a process group is bounded by the harness timeout;
the rank bodies are module-level functions so that spawned children can
unpickle them.
"""

import os
import sys
import time
import unittest
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from torchcheck_mixin.core.reductions import max_abs  # noqa: E402
from torch import nn  # noqa: E402

if __package__:  # tests/ is a package: import the harness once, as tests.distributed_harness
    from .distributed_harness import (  # noqa: E402
        ProcessGroupFailure,
        ProcessGroupTimeout,
        run_in_process_group,
    )
else:  # run as a top-level module from inside tests/
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    from distributed_harness import (  # noqa: E402
        ProcessGroupFailure,
        ProcessGroupTimeout,
        run_in_process_group,
    )

from torchcheck_mixin.core import distributed as D  # noqa: E402

HAVE_DIST = dist.is_available() and dist.is_gloo_available()


def _have_fully_shard():
    # imported lazily: torch.distributed.fsdp costs ~1.5 s to import and the
    # spawned children import this module too
    if not HAVE_DIST:
        return False
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except Exception:  # pragma: no cover
        return False
    return True


# ---------------------------------------------------------------------------
# rank bodies (module level: picklable by reference)
# ---------------------------------------------------------------------------
def _sum_ranks(rank, world_size, scale):
    t = torch.tensor([float(rank + 1) * scale])
    dist.all_reduce(t)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": t.item()}


def _raise_on_rank1(rank, world_size):
    if rank == 1:
        raise ValueError("boom on rank 1")
    dist.barrier()  # rank 0 blocks here forever: the harness must kill it
    return "unreachable"


def _deadlock(rank, world_size):
    if rank == 0:
        dist.barrier()
    else:
        time.sleep(1000)


def _crash_or_unpicklable(rank, world_size):
    if rank == 1:
        os._exit(3)
    return lambda: None  # cannot be pickled


def _reduce_max_body(rank, world_size):
    out = {}
    # per-rank stats: rank r puts r at row r, and a NaN on the last rank
    stats = torch.zeros(4, 3)
    stats[rank % 4, 0] = float(rank + 1)
    stats[:, 1] = float(rank)
    if rank == world_size - 1:
        stats[2, 2] = float("nan")
    before = stats.clone()
    red = D.reduce_max_across_ranks(stats)
    out["unchanged"] = torch.equal(stats.nan_to_num(-1), before.nan_to_num(-1))
    out["new_object"] = red is not stats
    out["reduced"] = red.tolist()
    # dtype / shape variants
    r64 = D.reduce_max_across_ranks(torch.tensor([float(rank), -1.0], dtype=torch.float64))
    out["f64"] = (r64.dtype == torch.float64, r64.tolist())
    out["empty"] = tuple(D.reduce_max_across_ranks(torch.zeros(0, 3)).shape)
    out["rank_fn"] = (D.get_rank(), D.get_world_size(), D.is_distributed_active())
    return out


class _Branchy(nn.Module):
    def __init__(self, use_branch_on=()):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.br = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)
        self.use_branch_on = tuple(use_branch_on)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if dist.get_rank() in self.use_branch_on:
            h = h + self.br(h)
        return self.b(h)


def _all_equal_across_ranks(t):
    ts = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(ts, t.contiguous())
    return all(torch.equal(ts[0], x) for x in ts[1:])


def _ddp_body(rank, world_size):
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    torch.manual_seed(0)
    model = _Branchy(use_branch_on=range(world_size))  # all parameters used
    ddp = DDP(model)
    torch.manual_seed(100 + rank)
    x = torch.randn(3, 4)

    out["wrapped_names"] = [n for n, _ in ddp.named_parameters()][:2]
    inner, prefix = D.unwrap(ddp)
    out["unwrap"] = (inner is model, prefix, D.is_ddp(ddp), D.is_ddp(model))
    out["names"] = [n for n, _ in D.named_parameters(ddp)]
    out["fsdp"] = (D.is_fsdp_managed(ddp), D.needs_backward_for_grads(ddp))

    # a check on the inner module: forward + autograd.grad, one MAX reduce
    params = [p for _, p in D.named_parameters(ddp)]
    grads = torch.autograd.grad(inner(x).sum(), params, allow_unused=True)
    stats = max_abs(grads, torch.device("cpu"))[:, None]  # the engine's statistics
    red = D.reduce_max_across_ranks(stats)
    out["grad_stats_equal_on_all_ranks"] = _all_equal_across_ranks(red)
    out["grads_local_not_averaged"] = not _all_equal_across_ranks(grads[0])
    out["no_grad_attr_touched"] = all(p.grad is None for p in params)

    # the user's next DDP training steps still work and are averaged
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ok = []
    for _ in range(2):
        opt.zero_grad()
        ddp(x).sum().backward()
        opt.step()
        ok.append(_all_equal_across_ranks(model.a.weight.grad))
    out["training_after_check_averaged"] = ok

    # unused parameters with find_unused_parameters=False
    torch.manual_seed(0)
    model2 = _Branchy(use_branch_on=())  # br never used
    ddp2 = DDP(model2)
    err = None
    for _ in range(2):
        try:
            ddp2(x).sum().backward()
        except RuntimeError as e:
            err = e
            break
    out["unused_error"] = None if err is None else (
        "Expected to have finished reduction in the prior iteration" in str(err),
        "Parameter indices which did not receive grad for rank 0: 2 3" in str(err)
        or "Parameter indices which did not receive grad for rank 1: 2 3" in str(err),
    )
    t = torch.ones(1)
    dist.all_reduce(t)
    out["pg_usable_after_error"] = t.item()
    return out


class _Sharded(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.frozen = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        return self.b(self.frozen(torch.relu(self.a(x))))


def _fsdp_body(rank, world_size):
    from torch.distributed.fsdp import fully_shard

    out = {}
    torch.manual_seed(0)
    ref = _Sharded()
    model = _Sharded()
    model.load_state_dict(ref.state_dict())
    model.frozen.requires_grad_(False)  # frozen by mistake
    fully_shard(model.a)
    fully_shard(model.b)
    fully_shard(model)
    torch.manual_seed(100 + rank)
    x = torch.randn(4, 5)

    named = D.named_parameters(model)
    out["names"] = [n for n, _ in named]
    out["is_dtensor"] = [D.is_dtensor(p) for _, p in named]
    out["global_shapes"] = [D.global_shape(p) for _, p in named]
    out["global_numels"] = [D.global_numel(p) for _, p in named]
    out["ref_shapes"] = [tuple(p.shape) for p in ref.parameters()]
    local_numel = torch.tensor([float(D.local_view(p).numel()) for _, p in named])
    dist.all_reduce(local_numel)
    out["sum_local_numel"] = local_numel.tolist()
    out["needs_backward"] = D.needs_backward_for_grads(model)
    out["requires_grad"] = [p.requires_grad for _, p in named]

    # autograd.grad cannot see FSDP-sharded parameters (documents torch behaviour)
    trainable = [p for _, p in named if p.requires_grad]
    g = torch.autograd.grad(model(x).sum(), trainable, allow_unused=True)
    out["autograd_grad_all_none"] = all(t is None for t in g)

    # backward-based check: save/clear grads, backward, read, restore
    saved = [p.grad for _, p in named]
    for _, p in named:
        p.grad = None
    model(x).sum().backward()
    grads = [p.grad for _, p in named]
    out["grad_types"] = [None if t is None else type(t).__name__ for t in grads]
    stats = max_abs([D.grad_to_local(t) for t in grads], torch.device("cpu"))[:, None]
    red = D.reduce_max_across_ranks(stats)
    full_max = [0.0 if t is None else t.full_tensor().abs().max().item() for t in grads]
    out["reduced_matches_full"] = all(
        abs(r - f) <= 1e-6 * max(1.0, f) for r, f in zip(red[:, 0].tolist(), full_max)
    )
    out["reduced"] = red.tolist()
    for (_, p), s in zip(named, saved):
        p.grad = s

    # a no_grad forward leaves the root's parameters unsharded; reshard fixes it
    with torch.no_grad():
        model(x)
    out["after_nograd_forward"] = [D.is_dtensor(p) for _, p in model.named_parameters()]
    D.reshard_fsdp(model)
    out["after_reshard"] = [D.is_dtensor(p) for _, p in model.named_parameters()]

    # the user's training still works
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    out["train_ok"] = True
    return out


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
class TimedTestCase(unittest.TestCase):
    def setUp(self):
        self._t0 = time.monotonic()

    def tearDown(self):
        if os.environ.get("TORCHCHECK_TIMINGS"):
            sys.stderr.write("\n[timing] %s: %.2f s\n" % (self.id(), time.monotonic() - self._t0))


@unittest.skipUnless(HAVE_DIST, "torch.distributed with gloo is required")
class TestHarness(TimedTestCase):
    def test_results_per_rank(self):
        res = run_in_process_group(_sum_ranks, 2, 60, 10.0)
        self.assertEqual(res, [{"rank": r, "world": 2, "sum": 30.0} for r in range(2)])

    def test_exception_on_one_rank_fails_and_kills_the_rest(self):
        t0 = time.monotonic()
        with self.assertRaises(ProcessGroupFailure) as cm:
            run_in_process_group(_raise_on_rank1, 2, 60, grace=1.0)
        msg = str(cm.exception)
        self.assertIn("boom on rank 1", msg)
        self.assertIn("ValueError", msg)
        self.assertIn(1, cm.exception.errors)
        self.assertNotIsInstance(cm.exception, ProcessGroupTimeout)
        self.assertLess(time.monotonic() - t0, 20)

    def test_deadlock_hits_timeout(self):
        t0 = time.monotonic()
        with self.assertRaises(ProcessGroupTimeout) as cm:
            run_in_process_group(_deadlock, 2, 8, pg_timeout=300)
        self.assertIn("did not finish", str(cm.exception))
        self.assertLess(time.monotonic() - t0, 20)

    def test_crash_and_unpicklable_result(self):
        with self.assertRaises(ProcessGroupFailure) as cm:
            run_in_process_group(_crash_or_unpicklable, 2, 60)
        errors = cm.exception.errors
        self.assertIn("could not send", errors[0])
        self.assertIn("died without reporting", errors[1])
        self.assertIn("exit code 3", errors[1])


class TestDistributedHelpersLocal(TimedTestCase):
    """No process group: helpers are no-ops / pure."""

    def test_reduce_is_noop_without_process_group(self):
        self.assertFalse(D.is_distributed_active())
        t = torch.tensor([[1.0, float("nan")]])
        self.assertIs(D.reduce_max_across_ranks(t), t)
        self.assertEqual((D.get_rank(), D.get_world_size()), (0, 1))

    def test_unwrap_and_names(self):
        m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        self.assertEqual(D.unwrap(m), (m, ""))
        dp = nn.DataParallel(nn.DataParallel(m))
        inner, prefix = D.unwrap(dp)
        self.assertIs(inner, m)
        self.assertEqual(prefix, "module.module.")
        self.assertEqual([n for n, _ in D.named_parameters(dp)], [n for n, _ in m.named_parameters()])
        self.assertEqual(D.clean_name("module.0.weight", "module."), "0.weight")
        self.assertEqual(
            D.clean_name("_fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.w"), "layers.0.w"
        )
        self.assertEqual(D.clean_name("my_orig_mod.w"), "my_orig_mod.w")
        self.assertFalse(D.is_ddp(dp))

    def test_unwrap_compiled(self):
        m = nn.Linear(2, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.compile's own imports warn
            c = torch.compile(m)  # wrapping only; nothing is compiled
        inner, prefix = D.unwrap(nn.DataParallel(c))
        self.assertIs(inner, m)
        self.assertEqual(prefix, "module._orig_mod.")

    def test_shape_helpers_on_plain_parameters(self):
        p = nn.Parameter(torch.ones(2, 3))
        self.assertEqual(D.global_shape(p), (2, 3))
        self.assertEqual(D.global_numel(p), 6)
        self.assertFalse(D.is_dtensor(p))
        self.assertFalse(D.local_view(p).requires_grad)


@unittest.skipUnless(HAVE_DIST, "torch.distributed with gloo is required")
class TestDistributedHelpersInProcessGroup(TimedTestCase):
    def test_reduce_max_three_ranks(self):
        res = run_in_process_group(_reduce_max_body, 3, 60)
        inf = float("inf")
        expected = [[1.0, 2.0, 0.0], [2.0, 2.0, 0.0], [3.0, 2.0, inf], [0.0, 2.0, 0.0]]
        for r, out in enumerate(res):
            self.assertTrue(out["unchanged"])
            self.assertTrue(out["new_object"])
            self.assertEqual(out["reduced"], expected)
            self.assertEqual(out["f64"], (True, [2.0, -1.0]))
            self.assertEqual(out["empty"], (0, 3))
            self.assertEqual(out["rank_fn"], (r, 3, True))

    def test_ddp(self):
        res = run_in_process_group(_ddp_body, 2, 60)
        names = ["a.weight", "a.bias", "br.weight", "br.bias", "b.weight", "b.bias"]
        for out in res:
            self.assertEqual(out["wrapped_names"], ["module.a.weight", "module.a.bias"])
            self.assertEqual(out["unwrap"], (True, "module.", True, False))
            self.assertEqual(out["names"], names)
            self.assertEqual(out["fsdp"], (False, False))
            self.assertTrue(out["grad_stats_equal_on_all_ranks"])
            self.assertTrue(out["grads_local_not_averaged"])
            self.assertTrue(out["no_grad_attr_touched"])
            self.assertEqual(out["training_after_check_averaged"], [True, True])
            self.assertEqual(out["unused_error"], (True, True))  # br.weight, br.bias are reducer indices 2, 3
            self.assertEqual(out["pg_usable_after_error"], 2.0)

    def test_fsdp2_fully_shard(self):
        if not _have_fully_shard():
            self.skipTest("torch.distributed.fsdp.fully_shard is required")
        res = run_in_process_group(_fsdp_body, 2, 60)
        names = ["a.weight", "a.bias", "frozen.weight", "frozen.bias", "b.weight", "b.bias"]
        for out in res:
            self.assertEqual(out["names"], names)
            self.assertEqual(out["is_dtensor"], [True] * 6)
            self.assertEqual(out["global_shapes"], out["ref_shapes"])
            self.assertEqual(out["global_numels"], [30, 6, 36, 6, 18, 3])
            self.assertEqual(out["sum_local_numel"], [30.0, 6.0, 36.0, 6.0, 18.0, 3.0])
            self.assertTrue(out["needs_backward"])
            self.assertEqual(out["requires_grad"], [True, True, False, False, True, True])
            self.assertTrue(out["autograd_grad_all_none"])
            self.assertEqual(
                out["grad_types"], ["DTensor", "DTensor", None, None, "DTensor", "DTensor"]
            )
            self.assertTrue(out["reduced_matches_full"])
            self.assertEqual([row[0] > 0 for row in out["reduced"]], [True, True, False, False, True, True])
            self.assertEqual(out["after_nograd_forward"], [True, True, False, False, True, True])
            self.assertEqual(out["after_reshard"], [True] * 6)
            self.assertTrue(out["train_ok"])
        self.assertEqual(res[0]["reduced"], res[1]["reduced"])


if __name__ == "__main__":
    unittest.main()
