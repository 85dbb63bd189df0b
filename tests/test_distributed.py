"""The assertions on distributed models, in real gloo process groups on CPU (issue 7).

Every test starts 2 or 3 processes with ``torch.multiprocessing`` (spawn), joined by
``init_process_group("gloo")`` on a free loopback port (``tests/distributed_harness.py``), and is
bounded in time: a deadlock fails the test instead of hanging the run. Each rank runs the
assertions through a real ``ModelTestCase`` instance on the same model and reports back what
happened (pass, failure message, report fields, collective counts); the parent checks that every
rank reached the same verdict and that the verdict is right. Several checks share one process
group launch to keep start-up costs down (about 3-5 s per launch on a 2-core machine).

Covered: DistributedDataParallel (a correct model in every mode; a branch used on one rank only;
a detached layer; ``find_unused_parameters=False`` with an unused layer; the user's next training
step afterwards), FSDP2 ``fully_shard`` (a correct model, a layer frozen by mistake, snapshot mode
refused, full shapes and counts, forward shape, all-finite with a NaN in one rank's shard,
BatchNorm statistics left untouched, training afterwards), and the number of collectives per
check, which does not grow with the number of parameters.
"""

import collections
import contextlib
import os
import sys
import time
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

if __package__:  # tests/ is a package: import the harness once, as tests.distributed_harness
    from .distributed_harness import run_in_process_group  # noqa: E402
else:  # run as a top-level module from inside tests/
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    from distributed_harness import run_in_process_group  # noqa: E402

import torchcheck_mixin  # noqa: E402
from torchcheck_mixin.core import distributed as D  # noqa: E402

HAVE_DIST = dist.is_available() and dist.is_gloo_available()
TIMEOUT = 90  # per process-group launch; a healthy launch takes 4-12 s here


def _have_fully_shard():
    if not HAVE_DIST:
        return False
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except Exception:  # pragma: no cover
        return False
    return True


# ---------------------------------------------------------------------------
# models (module level: the spawned ranks import this module)
# ---------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class Branchy(nn.Module):
    """``br`` is used only on the ranks in ``use_branch_on``."""

    def __init__(self, use_branch_on=()):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.br = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)
        self.use_branch_on = tuple(use_branch_on)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if dist.get_rank() in self.use_branch_on:
            h = h + self.br(h)
        return self.b(h)


class Detached(nn.Module):
    """A ``.detach()`` cuts ``a`` off the loss: ``a`` never learns, on any rank."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)).detach())


class Unused(nn.Module):
    """``unused`` is registered but never called."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.unused = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class ShardNet(nn.Module):
    """For FSDP: a (6, 5) weight, BatchNorm statistics, a middle layer that may be frozen."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.bn = nn.BatchNorm1d(6)
        self.mid = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.relu(self.mid(torch.relu(self.bn(self.a(x))))))


class FailingShardNet(ShardNet):
    """Raises in forward (after the root's parameters were all-gathered) while ``fail`` is set."""

    fail = False

    def forward(self, x):
        h = self.bn(self.a(x))
        if self.fail:
            raise KeyError("user error in forward")
        return self.b(torch.relu(self.mid(torch.relu(h))))


SHARDNET_COUNTS = {"a.weight": 30, "a.bias": 6, "bn.weight": 6, "bn.bias": 6, "mid.weight": 36,
                   "mid.bias": 6, "b.weight": 18, "b.bias": 3}


def deep(n_layers):
    """``2 * n_layers`` parameter tensors of 4x4 / 4 elements."""
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(n_layers)])


# ---------------------------------------------------------------------------
# helpers run inside the ranks
# ---------------------------------------------------------------------------
_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
                "reduce_scatter", "broadcast", "barrier", "reduce", "gather", "scatter",
                "all_to_all", "all_to_all_single", "all_gather_object", "broadcast_object_list")


@contextlib.contextmanager
def count_collectives():
    """Count calls of the ``torch.distributed`` collectives made while the block runs."""
    counts = collections.Counter()
    saved = {}
    for name in _COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None:
            continue
        saved[name] = fn

        def wrapper(*args, _name=name, _fn=fn, **kwargs):
            counts[_name] += 1
            return _fn(*args, **kwargs)

        setattr(dist, name, wrapper)
    try:
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)


def checker():
    """A real ModelTestCase instance to run the assertions with (no test method needed)."""
    return torchcheck_mixin.ModelTestCase()


def outcome(fn):
    """Run one assertion: ("pass", value) / ("fail", message) / ("error", "Type: message")."""
    tc = checker()
    try:
        return ("pass", fn(tc))
    except tc.failureException as e:
        return ("fail", str(e))
    except Exception as e:  # noqa: BLE001 - misuse errors are part of what is checked
        return ("error", "%s: %s" % (type(e).__name__, e))


def records(report):
    return [(r.name, tuple(r.shape), r.numel, r.status) for r in report.records]


def equal_across_ranks(t):
    t = t.detach().contiguous()
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return all(torch.equal(parts[0], p) for p in parts[1:])


def rank_input(rank, n=8, features=5):
    """Different data on every rank, as with a DistributedSampler."""
    return torch.randn(n, features, generator=torch.Generator().manual_seed(100 + rank))


def user_training_step(ddp, x, opt):
    opt.zero_grad()
    ddp(x).pow(2).mean().backward()
    opt.step()


def ddp_grads_are_averaged(ddp, x):
    """One real DDP backward: each p.grad equals the mean over ranks of the local gradients."""
    inner = ddp.module
    params = [p for p in inner.parameters() if p.requires_grad]
    local = torch.autograd.grad(inner(x).pow(2).mean(), params, allow_unused=True)
    local = [torch.zeros_like(p) if g is None else g for p, g in zip(params, local)]
    for p in params:
        p.grad = None
    ddp(x).pow(2).mean().backward()
    ok = []
    for p, g in zip(params, local):
        mean = g.clone()
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
        ok.append(p.grad is not None and torch.allclose(p.grad, mean, atol=1e-6))
    for p in params:
        p.grad = None
    return all(ok)


# ---------------------------------------------------------------------------
# rank bodies
# ---------------------------------------------------------------------------
def _ddp_correct_body(rank, world_size):
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    torch.manual_seed(0)
    model = MLP()
    ddp = DDP(model)
    x = rank_input(rank)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]

    with count_collectives() as n:
        out["gradient"] = outcome(lambda tc: records(tc.assertParametersUpdated(ddp, x)))
    out["gradient_collectives"] = dict(n)
    out["snapshot"] = outcome(lambda tc: records(tc.assertParametersUpdated(ddp, x, mode="snapshot")))
    out["snapshot_opt"] = outcome(
        lambda tc: records(tc.assertParametersUpdated(ddp, x, mode="snapshot", optimizer=opt)))
    out["both"] = outcome(lambda tc: records(tc.assertParametersUpdated(ddp, x, mode="both", optimizer=opt)))
    with count_collectives() as n:
        out["forward"] = outcome(lambda tc: tuple(tc.assertForwardShape(ddp, x, ("B", 3)).shape))
        y = ddp.module(x)
        out["dtype"] = outcome(lambda tc: tc.assertDtype(y, torch.float32))
        out["dtype_wrong"] = outcome(lambda tc: tc.assertDtype(y, torch.float64))
        out["count"] = outcome(lambda tc: tc.assertParameterCount(ddp, total=57, trainable=57, frozen=0))
        out["count_wrong"] = outcome(lambda tc: tc.assertParameterCount(ddp, total=50))
    out["local_collectives"] = dict(n)
    with count_collectives() as n:
        out["finite_model"] = outcome(lambda tc: tc.assertAllFinite(ddp))
    out["finite_collectives"] = dict(n)
    out["finite_output"] = outcome(lambda tc: tc.assertAllFinite(y))

    # the checks left the model and the optimizer alone
    out["params_unchanged"] = all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    out["grads_none"] = all(p.grad is None for p in model.parameters())
    out["optimizer_state_empty"] = len(opt.state) == 0

    # the user's next training steps: gradients averaged, replicas stay identical
    out["averaged"] = ddp_grads_are_averaged(ddp, x)
    for _ in range(2):
        user_training_step(ddp, x, opt)
    out["params_equal_after_training"] = all(equal_across_ranks(p) for p in model.parameters())
    out["params_moved"] = not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    # and a check after training (grads present, optimizer state present) still passes
    out["gradient_after_training"] = outcome(lambda tc: tc.assertParametersUpdated(ddp, x).passed)
    return out


def _ddp_branch_and_detached_body(rank, world_size, branch_rank):
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    x = rank_input(rank)

    # a branch used on one rank only: updated on *a* rank is updated
    torch.manual_seed(0)
    branchy = Branchy(use_branch_on=(branch_rank,))
    ddp = DDP(branchy, find_unused_parameters=True)
    out["branch"] = outcome(lambda tc: records(tc.assertParametersUpdated(ddp, x)))
    # locally (no DDP): the branch gets no gradient on the ranks that skip it
    out["branch_local"] = outcome(lambda tc: records(tc.assertParametersUpdated(branchy, x)))
    # the user's training goes on; DDP averages the branch's gradient (zeros from the others)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    out["branch_averaged"] = ddp_grads_are_averaged(ddp, x)
    for _ in range(2):
        user_training_step(ddp, x, opt)
    out["branch_params_equal"] = all(equal_across_ranks(p) for p in branchy.parameters())
    # the same branch with find_unused_parameters=False: DDP's own training would hang in backward
    # on the rank that used it, so the check fails on every rank (it never enters DDP's reducer)
    torch.manual_seed(0)
    strict = DDP(Branchy(use_branch_on=(branch_rank,)), find_unused_parameters=False)
    out["branch_strict"] = outcome(lambda tc: tc.assertParametersUpdated(strict, x))

    # a detached layer: caught on every rank
    torch.manual_seed(0)
    det = DDP(Detached())
    out["detached"] = outcome(lambda tc: tc.assertParametersUpdated(det, x))
    out["detached_report"] = records(torchcheck_mixin.check_parameters_updated(det, x))
    out["detached_snapshot"] = outcome(lambda tc: tc.assertParametersUpdated(det, x, mode="snapshot"))
    out["detached_allowed"] = outcome(lambda tc: tc.assertParametersUpdated(det, x, allow_not_updated=["a"]).passed)
    t = torch.ones(1)
    dist.all_reduce(t)
    out["pg_usable"] = t.item()
    return out


def _ddp_unused_body(rank, world_size):
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    x = rank_input(rank)
    torch.manual_seed(0)
    model = Unused()
    ddp = DDP(model)  # find_unused_parameters=False (the default) and a layer that is never used
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)

    out["check_before_training"] = outcome(lambda tc: tc.assertParametersUpdated(ddp, x))
    # the user's first step "works": DDP raises nothing, but the bucket holding `unused` never
    # completes, so none of its gradients are averaged
    user_training_step(ddp, x, opt)
    out["check_after_first_step"] = outcome(lambda tc: tc.assertParametersUpdated(ddp, x))
    # the second step raises inside DDP's reducer (in forward)
    try:
        user_training_step(ddp, x, opt)
        out["second_step"] = None
    except RuntimeError as e:
        message = str(e)
        out["second_step"] = ("Expected to have finished reduction in the prior iteration" in message,
                              "Parameter indices which did not receive grad for rank" in message)
    # a check on the model whose reducer is now in the error state: a clear failure, no crash
    out["check_after_reducer_error"] = outcome(lambda tc: tc.assertParametersUpdated(ddp, x))
    out["forward_after_reducer_error"] = outcome(lambda tc: tuple(tc.assertForwardShape(ddp, x, ("B", 3)).shape))
    # the process group still works: a collective, and a fresh DDP model that trains and checks
    t = torch.ones(1)
    dist.all_reduce(t)
    out["pg_usable"] = t.item()
    torch.manual_seed(0)
    fresh = DDP(MLP())
    out["fresh_check"] = outcome(lambda tc: tc.assertParametersUpdated(fresh, x).passed)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.1)
    user_training_step(fresh, x, opt2)
    out["fresh_params_equal"] = all(equal_across_ranks(p) for p in fresh.parameters())
    return out


def _collectives_body(rank, world_size):
    """Collectives made by each check, for models with 4 and with 40 parameter tensors."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank))
    for n_layers in (2, 20):
        ddp = DDP(deep(n_layers))
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
        row = {}
        checks = {
            "gradient": lambda tc: tc.assertParametersUpdated(ddp, x),
            "snapshot": lambda tc: tc.assertParametersUpdated(ddp, x, mode="snapshot"),
            "both_optimizer": lambda tc: tc.assertParametersUpdated(ddp, x, mode="both", optimizer=opt),
            "trials_3": lambda tc: tc.assertParametersUpdated(ddp, x, trials=3),
            "all_finite": lambda tc: tc.assertAllFinite(ddp),
            "forward_shape": lambda tc: tc.assertForwardShape(ddp, x, ("B", 4)),
            "parameter_count": lambda tc: tc.assertParameterCount(ddp, total=20 * n_layers),
        }
        for name, fn in checks.items():
            with count_collectives() as n:
                verdict = outcome(fn)[0]
            row[name] = (verdict, dict(n))
        out[len(list(ddp.parameters()))] = row
    return out


def _fsdp_body(rank, world_size):
    from torch.distributed.fsdp import fully_shard

    out = {}
    x = rank_input(rank)

    # a correct sharded model
    torch.manual_seed(0)
    model = ShardNet()
    fully_shard(model.a)
    fully_shard(model.mid)
    fully_shard(model)
    out["local_shape_a"] = tuple(model.a.weight.to_local().shape)
    rm, nb = model.bn.running_mean.clone(), model.bn.num_batches_tracked.clone()
    with count_collectives() as n:
        out["gradient"] = outcome(lambda tc: records(tc.assertParametersUpdated(model, x)))
    out["gradient_collectives"] = dict(n)
    out["bn_untouched"] = torch.equal(model.bn.running_mean, rm) and torch.equal(model.bn.num_batches_tracked, nb)
    out["report_meta"] = (lambda r: (r.model, r.summary.elements, r.notes))(
        torchcheck_mixin.check_parameters_updated(model, x))
    out["snapshot"] = outcome(lambda tc: records(tc.assertParametersUpdated(model, x, mode="snapshot")))
    out["both"] = outcome(lambda tc: records(tc.assertParametersUpdated(model, x, mode="both")))
    out["bn_untouched_snapshot"] = torch.equal(model.bn.running_mean, rm)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out["snapshot_opt"] = outcome(lambda tc: tc.assertParametersUpdated(model, x, mode="snapshot", optimizer=opt))
    total = sum(SHARDNET_COUNTS.values())
    out["count"] = outcome(lambda tc: tc.assertParameterCount(model, total=total, trainable=total, frozen=0))
    out["count_wrong"] = outcome(lambda tc: tc.assertParameterCount(model, total=60))
    out["forward"] = outcome(lambda tc: tuple(tc.assertForwardShape(model, x, ("B", 3)).shape))
    out["forward_train"] = outcome(lambda tc: tuple(tc.assertForwardShape(model, x, ("B", 3), train=True).shape))
    out["finite"] = outcome(lambda tc: tc.assertAllFinite(model))
    out["all_dtensor_after_checks"] = all(D.is_dtensor(p) for p in model.parameters())
    out["grads_none"] = all(p.grad is None for p in model.parameters())
    out["bn_untouched_after_all"] = torch.equal(model.bn.running_mean, rm)

    # a NaN in rank 0's shard of a.weight only: every rank fails, with the full count
    with torch.no_grad():
        local = model.a.weight.to_local()
        saved = local.clone()
        if rank == 0:
            local[0, 0] = float("nan")
    with count_collectives() as n:
        out["finite_nan"] = outcome(lambda tc: tc.assertAllFinite(model))
    out["finite_nan_collectives"] = dict(n)
    with torch.no_grad():
        local.copy_(saved)

    # the user's training goes on: sharded grads, parameters stay DTensors
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    out["train_grads_dtensor"] = all(D.is_dtensor(p.grad) for p in model.parameters())
    out["gradient_after_training"] = outcome(lambda tc: tc.assertParametersUpdated(model, x).passed)
    out["user_grads_kept"] = all(D.is_dtensor(p.grad) for p in model.parameters())

    # a layer frozen by mistake
    torch.manual_seed(0)
    frozen = ShardNet()
    frozen.mid.requires_grad_(False)
    fully_shard(frozen.a)
    fully_shard(frozen.mid)
    fully_shard(frozen)
    out["frozen"] = outcome(lambda tc: tc.assertParametersUpdated(frozen, x))
    out["frozen_declared"] = outcome(lambda tc: tc.assertParametersUpdated(frozen, x, expect_frozen=["mid"]).passed)
    out["frozen_count"] = outcome(lambda tc: tc.assertParameterCount(frozen, trainable=total - 42, frozen=42))

    # the user's forward raises during a check: the error propagates, FSDP is reset to its idle
    # sharded state, the guard restores the model, and checks and training go on
    torch.manual_seed(0)
    failing = FailingShardNet()
    fully_shard(failing.a)
    fully_shard(failing)
    rm = failing.bn.running_mean.clone()
    failing.fail = True
    out["failing_forward"] = outcome(lambda tc: tc.assertForwardShape(failing, x, ("B", 3)))
    out["failing_update"] = outcome(lambda tc: tc.assertParametersUpdated(failing, x))
    failing.fail = False
    out["failing_state"] = (all(D.is_dtensor(p) for p in failing.parameters()),
                            torch.equal(failing.bn.running_mean, rm))
    out["after_failing"] = (outcome(lambda tc: tc.assertForwardShape(failing, x, ("B", 3)))[0],
                            outcome(lambda tc: tc.assertParametersUpdated(failing, x))[0])
    opt = torch.optim.SGD(failing.parameters(), lr=0.1)
    opt.zero_grad()
    failing(x).sum().backward()
    opt.step()
    out["failing_trains"] = all(D.is_dtensor(p.grad) for p in failing.parameters())
    return out


def _fsdp_collectives_body(rank, world_size):
    """FSDP: the same sharding layout (one unit) with 4 and with 40 parameter tensors."""
    from torch.distributed.fsdp import fully_shard

    out = {}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank))
    for n_layers in (2, 20):
        model = deep(n_layers)
        fully_shard(model)
        row = {}
        for name, fn in {
            "gradient": lambda tc: tc.assertParametersUpdated(model, x),
            "all_finite": lambda tc: tc.assertAllFinite(model),
            "forward_shape": lambda tc: tc.assertForwardShape(model, x, ("B", 4)),
        }.items():
            with count_collectives() as n:
                verdict = outcome(fn)[0]
            row[name] = (verdict, dict(n))
        out[len(list(model.parameters()))] = row
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

    def assertSameOnAllRanks(self, results, key):
        values = [r[key] for r in results]
        for rank, v in enumerate(values[1:], 1):
            self.assertEqual(v, values[0], "%s differs between rank 0 and rank %d" % (key, rank))
        return values[0]

    def assertVerdicts(self, results, key, verdict):
        """Every rank reached ``verdict`` ("pass"/"fail"/"error") for ``key``; returns the values."""
        got = [r[key][0] for r in results]
        self.assertEqual(got, [verdict] * len(results),
                         "%s: %s" % (key, [r[key][1] for r in results]))
        return [r[key][1] for r in results]


MLP_NAMES = ["a.weight", "a.bias", "b.weight", "b.bias"]


@unittest.skipUnless(HAVE_DIST, "torch.distributed with gloo is required")
class TestDDP(TimedTestCase):
    def test_correct_model_every_mode_and_training_afterwards(self):
        res = run_in_process_group(_ddp_correct_body, 2, TIMEOUT)
        expected = [("a.weight", (6, 5), 30, "updated"), ("a.bias", (6,), 6, "updated"),
                    ("b.weight", (3, 6), 18, "updated"), ("b.bias", (3,), 3, "updated")]
        for key in ("gradient", "snapshot", "snapshot_opt", "both"):
            self.assertVerdicts(res, key, "pass")
            self.assertEqual(self.assertSameOnAllRanks(res, key), ("pass", expected))  # no "module." prefix
        self.assertVerdicts(res, "forward", "pass")
        self.assertEqual(self.assertSameOnAllRanks(res, "forward"), ("pass", (8, 3)))
        for key in ("dtype", "count", "finite_model", "finite_output"):
            self.assertVerdicts(res, key, "pass")
        for msg in self.assertVerdicts(res, "dtype_wrong", "fail"):
            self.assertIn("float64", msg)
        for msg in self.assertVerdicts(res, "count_wrong", "fail"):
            self.assertIn("total 57 elements, expected 50", msg)
            self.assertNotIn("module.", msg)
        for out in res:
            # one all-reduce for the update check; nothing for the local checks; one gather for
            # all-finite on a DDP model
            self.assertEqual(out["gradient_collectives"], {"all_reduce": 1})
            self.assertEqual(out["local_collectives"], {})
            self.assertEqual(out["finite_collectives"], {"all_gather": 1})
            self.assertTrue(out["params_unchanged"])
            self.assertTrue(out["grads_none"])
            self.assertTrue(out["optimizer_state_empty"])
            self.assertTrue(out["averaged"], "DDP gradients after the checks are not the mean over ranks")
            self.assertTrue(out["params_equal_after_training"])
            self.assertTrue(out["params_moved"])
            self.assertEqual(out["gradient_after_training"], ("pass", True))

    def test_branch_on_one_rank_and_detached_layer(self):
        res = run_in_process_group(_ddp_branch_and_detached_body, 2, TIMEOUT, 0)
        self._check_branch_and_detached(res, branch_rank=0)

    def _check_branch_and_detached(self, res, branch_rank):
        names = ["a.weight", "a.bias", "br.weight", "br.bias", "b.weight", "b.bias"]
        self.assertVerdicts(res, "branch", "pass")
        branch = self.assertSameOnAllRanks(res, "branch")[1]
        self.assertEqual([r[0] for r in branch], names)
        self.assertEqual({r[3] for r in branch}, {"updated"})
        # without DDP, each rank only sees its own data: the branch is unused on the other ranks
        for msg in self.assertVerdicts(res, "branch_strict", "fail"):
            self.assertIn("get a gradient on some ranks and none on others (br.weight, br.bias)", msg)
            self.assertIn("training hangs", msg)
        for rank, out in enumerate(res):
            verdict = out["branch_local"][0]
            self.assertEqual(verdict, "pass" if rank == branch_rank else "fail", out["branch_local"])
        for out in res:
            self.assertTrue(out["branch_averaged"])
            self.assertTrue(out["branch_params_equal"])
            self.assertEqual(out["pg_usable"], float(len(res)))

        for key in ("detached", "detached_snapshot"):
            for msg in self.assertVerdicts(res, key, "fail"):
                self.assertIn("Parameters not updated: 2 / 4 (50.0%) trainable tensors", msg)
                self.assertIn("a.weight", msg)
                self.assertIn("a.bias", msg)
                self.assertNotIn("module.", msg)
                self.assertIn("allow_not_updated=['a']", msg)
                self.assertIn("find_unused_parameters=False", msg)  # DDP would raise at step 2
        report = self.assertSameOnAllRanks(res, "detached_report")
        self.assertEqual([(r[0], r[3]) for r in report],
                         [("a.weight", "no_grad"), ("a.bias", "no_grad"), ("b.weight", "updated"),
                          ("b.bias", "updated")])
        self.assertVerdicts(res, "detached_allowed", "pass")

    def test_find_unused_parameters_false_with_unused_layer(self):
        res = run_in_process_group(_ddp_unused_body, 2, TIMEOUT)
        for key in ("check_before_training", "check_after_first_step", "check_after_reducer_error"):
            for msg in self.assertVerdicts(res, key, "fail"):
                self.assertIn("unused.weight", msg)
                self.assertIn("unused.bias", msg)
                self.assertIn("find_unused_parameters=False", msg)
                self.assertIn("Expected to have finished reduction in the prior iteration", msg)
                self.assertNotIn("module.", msg)
        self.assertVerdicts(res, "forward_after_reducer_error", "pass")
        for out in res:
            self.assertEqual(out["second_step"], (True, True))  # DDP's own reducer error
            self.assertEqual(out["pg_usable"], 2.0)
            self.assertEqual(out["fresh_check"], ("pass", True))
            self.assertTrue(out["fresh_params_equal"])

    def test_three_ranks_branch_on_the_middle_rank(self):
        res = run_in_process_group(_ddp_branch_and_detached_body, 3, TIMEOUT, 1)
        self.assertEqual(len(res), 3)
        self._check_branch_and_detached(res, branch_rank=1)

    def test_collectives_per_check_do_not_grow_with_the_parameter_count(self):
        res = run_in_process_group(_collectives_body, 2, TIMEOUT)
        expected = {"gradient": {"all_reduce": 1}, "snapshot": {"all_reduce": 1},
                    "both_optimizer": {"all_reduce": 1}, "trials_3": {"all_reduce": 1},
                    "all_finite": {"all_gather": 1}, "forward_shape": {}, "parameter_count": {}}
        for out in res:
            self.assertEqual(sorted(out), [4, 40])
            self.assertEqual(out[4], out[40])
            for name, want in expected.items():
                self.assertEqual(out[40][name], ("pass", want), name)


@unittest.skipUnless(HAVE_DIST, "torch.distributed with gloo is required")
class TestFSDP(TimedTestCase):
    def setUp(self):
        super().setUp()
        if not _have_fully_shard():
            self.skipTest("torch.distributed.fsdp.fully_shard is required")

    def test_fully_shard(self):
        res = run_in_process_group(_fsdp_body, 2, TIMEOUT)
        # rank 0 and rank 1 hold 3 + 3 rows of a.weight; the report shows the full tensor
        self.assertEqual([out["local_shape_a"] for out in res], [(3, 5), (3, 5)])
        self.assertVerdicts(res, "gradient", "pass")
        records = self.assertSameOnAllRanks(res, "gradient")[1]
        self.assertEqual([(n, numel) for n, _, numel, _ in records], list(SHARDNET_COUNTS.items()))
        self.assertEqual(records[0], ("a.weight", (6, 5), 30, "updated"))
        self.assertEqual(records[6], ("b.weight", (3, 6), 18, "updated"))
        self.assertEqual({r[3] for r in records}, {"updated"})
        model_name, elements, notes = self.assertSameOnAllRanks(res, "report_meta")
        self.assertEqual(elements, sum(SHARDNET_COUNTS.values()))
        self.assertEqual(notes, ())  # FSDP's own parameter swaps are not reported as replacements
        for out in res:
            # FSDP's own all-gathers and reduce-scatters, plus exactly one all-reduce of ours
            self.assertEqual(out["gradient_collectives"].get("all_reduce"), 1)
            self.assertTrue(out["bn_untouched"], "the check changed BatchNorm running statistics")
            self.assertTrue(out["bn_untouched_after_all"])
            self.assertTrue(out["all_dtensor_after_checks"])
            self.assertTrue(out["grads_none"])
            self.assertTrue(out["train_grads_dtensor"])
            self.assertEqual(out["gradient_after_training"], ("pass", True))
            self.assertTrue(out["user_grads_kept"])
            self.assertEqual(out["finite_nan_collectives"], {"all_gather": 1})

        # snapshot/both without optimizer=: a private SGD step on each rank's shard, full shapes reported
        for key in ("snapshot", "both"):
            self.assertVerdicts(res, key, "pass")
            recs = self.assertSameOnAllRanks(res, key)[1]
            self.assertEqual(recs[0][:4], ("a.weight", (6, 5), 30, "updated"))
        for out in res:
            self.assertTrue(out["bn_untouched_snapshot"])
        for msg in self.assertVerdicts(res, "snapshot_opt", "error"):
            self.assertTrue(msg.startswith("ValueError:"), msg)
            self.assertIn("FSDP does not support deepcopy", msg)
        self.assertVerdicts(res, "count", "pass")
        for msg in self.assertVerdicts(res, "count_wrong", "fail"):
            self.assertIn("total 111 elements, expected 60", msg)
        for key in ("forward", "forward_train"):
            self.assertVerdicts(res, key, "pass")
            self.assertEqual(self.assertSameOnAllRanks(res, key), ("pass", (8, 3)))
        self.assertVerdicts(res, "finite", "pass")
        for msg in self.assertVerdicts(res, "finite_nan", "fail"):
            self.assertIn("parameter a.weight: 1 NaN, 0 inf of 30 elements; sharded over 2 ranks", msg)

        for msg in self.assertVerdicts(res, "frozen", "fail"):
            self.assertIn("Frozen parameters not declared in expect_frozen: 2 tensors", msg)
            self.assertIn("mid.weight", msg)
            self.assertIn("expect_frozen=['mid']", msg)
        self.assertVerdicts(res, "frozen_declared", "pass")
        self.assertVerdicts(res, "frozen_count", "pass")

        for key in ("failing_forward", "failing_update"):
            for msg in self.assertVerdicts(res, key, "error"):
                self.assertIn("KeyError", msg)
        for out in res:
            self.assertEqual(out["failing_state"], (True, True))
            self.assertEqual(out["after_failing"], ("pass", "pass"))
            self.assertTrue(out["failing_trains"])

    def test_collectives_do_not_grow_with_the_parameter_count(self):
        res = run_in_process_group(_fsdp_collectives_body, 2, TIMEOUT)
        for out in res:
            self.assertEqual(sorted(out), [4, 40])
            self.assertEqual(out[4], out[40])
            self.assertEqual(out[40]["gradient"][0], "pass")
            self.assertEqual(out[40]["gradient"][1].get("all_reduce"), 1)
            self.assertEqual(out[40]["all_finite"], ("pass", {"all_gather": 1}))
            self.assertEqual(out[40]["forward_shape"][0], "pass")
            self.assertNotIn("all_reduce", out[40]["forward_shape"][1])


if __name__ == "__main__":
    unittest.main()
