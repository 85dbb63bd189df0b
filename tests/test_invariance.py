"""Every assertion is invisible: pass, fail or error, the model, optimizer and process are as before.

The proof uses ``tests.invariance`` (see its docstring for everything it records) around every
public assertion of ``ModelAssertionsMixin``, each in a passing case, a failing case and a case
where the user's own code raises (the user's exception must come out unchanged: the same object,
not wrapped, not chained). The model has BatchNorm (its statistics move in train mode), Dropout
(it consumes the RNG), a frozen layer, a pre-populated ``.grad`` and ``None`` grads, and mixed
modes (root in train mode, the dropout child in eval mode). A hypothesis property runs random
assertion calls over random models, and a counting test shows that the number of host
synchronisations of ``check_parameters_updated`` does not grow with the number of parameters.
"""

import copy
import random
import unittest
import warnings
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from torchcheck_mixin import ModelTestCase, check_parameters_updated
from tests.invariance import no_side_effects, run_invariant


def _preload_hypothesis_patching() -> None:
    """Under ``-W error`` a failing property would end in a pytest INTERNALERROR instead of a report:
    hypothesis's pytest plugin imports libcst (1 s) to suggest a patch, and that import warns.
    Imported here, quietly, only once a property has failed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import hypothesis.extra._patching  # noqa: F401
        except ImportError:  # pragma: no cover - optional in hypothesis
            pass


class UserError(Exception):
    """Raised by the user's own code; must propagate out of every assertion unchanged."""


RAISED = []  # the exception objects the user's code raised, most recent last


def user_raise(text: str) -> None:
    exc = UserError(text)
    RAISED.append(exc)
    raise exc


class Net(nn.Module):
    """Linear (frozen) -> BatchNorm -> Linear -> ReLU -> Dropout -> head.

    Flags pick a failing variant for each assertion: ``broken`` detaches before the head (the
    layers below get no gradient), ``mix`` normalises over the batch (samples interact), ``noisy``
    keeps dropout on at inference, ``stray`` holds a tensor as a plain attribute (not in the state
    dict), ``boom`` raises ``UserError`` at the end of the forward, after the forward has moved the
    BatchNorm statistics, drawn dropout masks and cached an attribute on ``self``.
    """

    def __init__(self, *, broken=False, mix=False, noisy=False, stray=False, boom=False):
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 3)
        self.broken, self.mix, self.noisy, self.boom = broken, mix, noisy, boom
        self.scale = torch.ones(3) if stray else None

    def forward(self, x):
        h = self.bn(self.embed(x))
        h = self.drop(torch.relu(self.fc(h)))
        self.last_hidden = h.detach()  # a forward that caches on self
        if self.boom:
            user_raise("the user's forward failed")
        if self.broken:
            h = h.detach()
        if self.noisy:
            h = F.dropout(h, 0.5, training=True)
        out = self.head(h)
        if self.mix:
            out = out - out.mean(dim=0, keepdim=True)
        if self.scale is not None:
            out = out * self.scale
        return out


def make_net(**flags) -> Net:
    """A Net in mixed mode (root train, dropout eval) with a frozen layer and mixed grads."""
    torch.manual_seed(1234)
    model = Net(**flags)
    model.embed.requires_grad_(False)
    model.train()
    model.drop.eval()
    model.head.weight.grad = torch.randn(3, 8)  # pre-populated; every other grad is None
    return model


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def adam_with_state(model, x, y, lr=1e-3):
    """An Adam that has taken one real step (exp_avg, exp_avg_sq and step counters exist)."""
    opt = torch.optim.Adam(trainable(model), lr=lr)
    saved = model.head.weight.grad
    F.mse_loss(model(x) if not model.boom else model.head(torch.randn(16, 8)), y).backward()
    opt.step()
    # Back to the fixture's grads: one pre-populated, the others None.
    for p in model.parameters():
        p.grad = None
    model.head.weight.grad = saved
    return opt


X = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
Y = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))


def quiet_fork(test):
    """DataLoader workers fork; Python 3.12+ warns (DeprecationWarning) when a multi-threaded
    process forks, and torch's thread pool makes this one multi-threaded. Not the library's
    warning: ignored around tests that start workers, so that they run under ``-W error``."""

    def wrapper(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded, use of fork\(\)",
                                    category=DeprecationWarning)
            return test(self, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = test.__name__, test.__doc__
    return wrapper


class ExplodingMapping(dict):
    """A value whose traversal runs user code that raises (for the assertions that run no model)."""

    def items(self):
        user_raise("the user's mapping failed")


class ExplodingDataset(Dataset):
    def __init__(self, n=10, bad=6):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            user_raise(f"sample {i} is corrupt")
        return torch.full((3,), float(i)), torch.tensor(i)


class InvarianceCase(ModelTestCase):
    """Helpers: run a case through ``run_invariant`` and check its outcome."""

    def outcome(self, model, call, expected, optimizer=None, watch=(), what=""):
        out = run_invariant(self, model, call, optimizer=optimizer, watch=watch, what=what or "the assertion")
        if expected == "raised-user":
            self.assertEqual(out.kind, "raised", f"expected the user's UserError, got {out.kind}: {out.value!r}")
            exc = out.value
            self.assertIs(type(exc), UserError)
            self.assertIs(exc, RAISED[-1], "the user's exception object must come out itself, not a copy")
            self.assertIsNone(exc.__cause__, "the user's exception must not be chained")
            self.assertIsNone(exc.__context__, "the user's exception must not be raised while handling another")
        else:
            detail = f"{out.value!r}"[:500] if out.kind != "passed" else ""
            self.assertEqual(out.kind, expected, f"{what}: expected {expected}, got {out.kind} {detail}")
        return out

    def three(self, name, cases, **kw):
        """``cases``: (label, model, call, expected[, optimizer[, watch]])."""
        for label, model, call, expected, *rest in cases:
            optimizer = rest[0] if rest else None
            watch = rest[1] if len(rest) > 1 else ()
            with self.subTest(assertion=name, case=label):
                RAISED.clear()
                self.outcome(model, call, expected, optimizer=optimizer, watch=watch, what=f"{name} ({label})")


# ------------------------------------------------------------------------------------- the helper


class HelperDetectsSideEffectsTest(unittest.TestCase):
    """The helper is not vacuous: each kind of side effect it promises to see makes it fail."""

    def assert_detects(self, mutate, model=None, optimizer=None, watch=()):
        model = model if model is not None else make_net()
        with self.assertRaises(self.failureException) as ctx:
            run_invariant(self, model, lambda: mutate(model), optimizer=optimizer, watch=watch)
        return str(ctx.exception)

    def test_detects_each_kind(self):
        def set_grad(m):
            m.fc.weight.grad = torch.zeros_like(m.fc.weight)

        def replace_grad(m):
            m.head.weight.grad = m.head.weight.grad.clone()

        def write_grad(m):
            m.head.weight.grad.add_(1.0)

        def restore_in_place(m):
            with torch.no_grad():
                m.fc.weight.copy_(m.fc.weight.clone())  # same values, bumped version counter

        def nan_payload(m):
            with torch.no_grad():
                m.fc.bias[0] = float("nan")

        def swap_param(m):
            m.fc.weight = nn.Parameter(m.fc.weight.detach().clone())

        cases = {
            "value": lambda m: m.fc.weight.data.add_(1e-3),
            "version": restore_in_place,
            "nan": nan_payload,
            "grad set": set_grad,
            "grad replaced": replace_grad,
            "grad written": write_grad,
            "child mode": lambda m: m.drop.train(),
            "requires_grad": lambda m: m.fc.bias.requires_grad_(False),
            "attribute": lambda m: setattr(m, "_torchcheck_tmp", 1),
            "forward hook": lambda m: m.fc.register_forward_hook(lambda *a: None),
            "buffer": lambda m: m.bn.running_mean.add_(1.0),
            "buffer swapped": lambda m: setattr(m.bn, "running_mean", m.bn.running_mean.clone()),
            "parameter swapped": swap_param,
            "cpu rng": lambda m: torch.rand(1),
            "numpy rng": lambda m: np.random.rand(),
            "python rng": lambda m: random.random(),
            "grad mode": lambda m: torch.set_grad_enabled(False),
            "dtype": lambda m: m.to(torch.float64),
        }
        for label, mutate in cases.items():
            with self.subTest(label):
                try:
                    self.assert_detects(mutate)
                finally:
                    torch.set_grad_enabled(True)

    def test_detects_optimizer_changes(self):
        model = make_net()
        opt = adam_with_state(model, X, Y)
        messages = []
        for mutate in (
            lambda m: opt.step(),
            lambda m: opt.state[m.fc.weight]["step"].add_(1),
            lambda m: opt.param_groups[0].__setitem__("lr", 0.5),
            lambda m: opt.state.clear(),
        ):
            model = make_net()
            opt = adam_with_state(model, X, Y)
            messages.append(self.assert_detects(mutate, model=model, optimizer=opt))
        self.assertTrue(all("optimizer" in m for m in messages), messages)

    def test_detects_watched_changes(self):
        x = X.clone()
        self.assert_detects(lambda m: x.add_(0), watch=[x])
        self.assert_detects(lambda m: x.requires_grad_(True), watch=[x])

    def test_passes_untouched(self):
        model = make_net()
        out = run_invariant(self, model, lambda: 42)
        self.assertEqual((out.kind, out.value), ("passed", 42))
        with no_side_effects(self, model):
            model.fc.weight.grad = None  # already None: no change

    def test_context_manager_propagates(self):
        model = make_net()
        with self.assertRaises(UserError):
            with no_side_effects(self, model):
                user_raise("inside the block")


# ------------------------------------------------------------------------------------- every assertion


class EveryAssertionInvariantTest(InvarianceCase):
    def test_assert_forward_shape(self):
        for train in (False, True):
            ok, boom = make_net(), make_net(boom=True)
            self.three(f"assertForwardShape(train={train})", [
                ("pass", ok, lambda: self.assertForwardShape(ok, X, ("B", 3), train=train), "passed"),
                ("fail", ok, lambda: self.assertForwardShape(ok, X, ("B", 4), train=train), "failed"),
                ("user raises", boom, lambda: self.assertForwardShape(boom, X, ("B", 3), train=train), "raised-user"),
            ])

    def test_assert_forward_shape_mode(self):
        """train=False runs in eval mode and train=True in train mode, whatever the model was in."""
        seen = []

        class Probe(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(2, 2)
                self.child = nn.Linear(2, 2)

            def forward(self, x):
                seen.append((self.training, self.lin.training, self.child.training))
                return self.child(self.lin(x))

        model = Probe()
        model.eval()
        model.child.train()  # mixed: root eval, one child train
        x = torch.randn(2, 2)
        for train in (False, True):
            self.outcome(model, lambda: self.assertForwardShape(model, x, (2, 2), train=train),
                         "passed")
            self.assertEqual(seen[-1], (train, train, train))
        self.assertEqual((model.training, model.lin.training, model.child.training), (False, False, True))

    def test_assert_dtype(self):
        model = make_net()
        with torch.no_grad():
            out = model(X)
        bad = ExplodingMapping(logits=out)
        self.three("assertDtype", [
            ("pass", model, lambda: self.assertDtype(out, torch.float32), "passed", None, [out]),
            ("fail", model, lambda: self.assertDtype(out, torch.float64), "failed", None, [out]),
            ("user raises", model, lambda: self.assertDtype(bad, torch.float32), "raised-user"),
        ])

    def test_assert_parameters_updated(self):
        for mode in ("gradient", "snapshot", "both"):
            for with_opt in ((False, True) if mode != "gradient" else (False,)):
                cases = []
                for label, flags, expected in (("pass", {}, "passed"), ("fail", {"broken": True}, "failed"),
                                               ("user raises", {"boom": True}, "raised-user")):
                    model = make_net(**flags)
                    opt = adam_with_state(model, X, Y) if with_opt else None

                    def call(model=model, opt=opt):
                        return self.assertParametersUpdated(model, X, Y, mode=mode, optimizer=opt,
                                                            expect_frozen=["embed"])

                    cases.append((label, model, call, expected, opt, [X, Y]))
                self.three(f"assertParametersUpdated(mode={mode!r}, optimizer={'Adam' if with_opt else None})",
                           cases)

    def test_assert_parameters_updated_options(self):
        """Options that take other code paths: trials, eval mode, a loss_fn, callable inputs, allowances."""
        model = make_net()
        classes = torch.randint(0, 3, (16,))
        calls = [
            lambda: self.assertParametersUpdated(model, X, Y, expect_frozen=["embed"], trials=3),
            lambda: self.assertParametersUpdated(model, X, Y, expect_frozen=["embed"], train=False),
            lambda: self.assertParametersUpdated(model, X, expect_frozen=["embed"],
                                                 loss_fn=lambda out: out.pow(2).mean()),
            lambda: self.assertParametersUpdated(model, lambda g: torch.randn(8, 6, generator=g),
                                                 expect_frozen=[model.embed], mode="both"),
            lambda: self.assertParametersUpdated(model, X, classes, expect_frozen=["embed"]),
            lambda: self.assertParametersUpdated(model, X, Y, allow_not_updated=["head"], expect_frozen=["embed"]),
        ]
        for i, call in enumerate(calls):
            with self.subTest(option=i):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the stale allowance warning of the last call
                    self.outcome(model, call, "passed", watch=[X, Y])

    def test_assert_loss_scalar_non_negative(self):
        model = make_net()
        loss = F.mse_loss(model(X), Y)  # a live graph into the model
        negative = loss.detach() - 10
        self.three("assertLossScalarNonNegative", [
            ("pass", model, lambda: self.assertLossScalarNonNegative(loss), "passed", None, [loss]),
            ("fail", model, lambda: self.assertLossScalarNonNegative(negative), "failed", None, [negative]),
            ("misuse", model, lambda: self.assertLossScalarNonNegative("0.5"), "raised"),
        ])
        loss.backward()  # the user's pending graph still works: nothing was written in place

    @quiet_fork
    def test_assert_batch_shape(self):
        ds = TensorDataset(torch.randn(10, 3), torch.arange(10))
        for workers in (0, 2):
            loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers)
            self.three(f"assertBatchShape(num_workers={workers})", [
                ("pass", None, lambda: self.assertBatchShape(loader, (("B", 3), ("B",))), "passed", None, [loader]),
                ("pass max_batches", None, lambda: self.assertBatchShape(loader, (("B", 3), ("B",)), max_batches=2),
                 "passed", None, [loader]),
                ("fail", None, lambda: self.assertBatchShape(loader, ((4, 3), (4,))), "failed", None, [loader]),
            ])
        bad = DataLoader(ExplodingDataset(), batch_size=4, shuffle=True)
        self.three("assertBatchShape", [
            ("user raises", None, lambda: self.assertBatchShape(bad, (("B", 3), ("B",))), "raised-user", None, [bad]),
        ])

    def test_assert_batch_independent(self):
        ok, mix, boom = make_net(), make_net(mix=True), make_net(boom=True)
        self.three("assertBatchIndependent", [
            ("pass", ok, lambda: self.assertBatchIndependent(ok, X), "passed", None, [X]),
            ("fail", mix, lambda: self.assertBatchIndependent(mix, X), "failed", None, [X]),
            ("user raises", boom, lambda: self.assertBatchIndependent(boom, X), "raised-user"),
        ])

    def test_assert_deterministic(self):
        ok, noisy, boom = make_net(), make_net(noisy=True), make_net(boom=True)
        self.three("assertDeterministic", [
            ("pass", ok, lambda: self.assertDeterministic(ok, X), "passed", None, [X]),
            ("fail", noisy, lambda: self.assertDeterministic(noisy, X), "failed", None, [X]),
            ("user raises", boom, lambda: self.assertDeterministic(boom, X), "raised-user"),
        ])

    def test_assert_parameter_count(self):
        model = make_net()
        total = sum(p.numel() for p in model.parameters())
        self.three("assertParameterCount", [
            ("pass", model, lambda: self.assertParameterCount(model, total=total, frozen=56), "passed"),
            ("fail", model, lambda: self.assertParameterCount(model, total=total + 1), "failed"),
            ("misuse", model, lambda: self.assertParameterCount(model), "raised"),
        ])

    def test_assert_all_finite(self):
        model = make_net()
        nan_grad = make_net()
        nan_grad.head.weight.grad[0, 0] = float("nan")
        self.three("assertAllFinite", [
            ("pass", model, lambda: self.assertAllFinite(model), "passed"),
            ("fail", nan_grad, lambda: self.assertAllFinite(nan_grad), "failed"),
            ("misuse", model, lambda: self.assertAllFinite(None), "raised"),
            ("user raises", model, lambda: self.assertAllFinite(ExplodingMapping(a=X)), "raised-user"),
        ])

    def test_assert_output_range(self):
        ok, boom = make_net(), make_net(boom=True)
        self.three("assertOutputRange", [
            ("pass", ok, lambda: self.assertOutputRange(ok, X, low=-1e6, high=1e6), "passed", None, [X]),
            ("fail", ok, lambda: self.assertOutputRange(ok, X, low=0.0, high=1e-3), "failed", None, [X]),
            ("user raises", boom, lambda: self.assertOutputRange(boom, X, low=-1e6), "raised-user"),
        ])

    def test_assert_can_overfit_batch(self):
        ok, boom = make_net(), make_net(boom=True)
        frozen_lr = make_net()
        opt = torch.optim.SGD(trainable(frozen_lr), lr=0.0)
        adam_model = make_net()
        adam = adam_with_state(adam_model, X, Y, lr=1e-2)
        self.three("assertCanOverfitBatch", [
            ("pass", ok, lambda: self.assertCanOverfitBatch(ok, X, Y, steps=40, min_decrease=0.3), "passed", None,
             [X, Y]),
            ("pass with Adam state", adam_model, lambda: self.assertCanOverfitBatch(adam_model, X, Y, steps=40,
                                                                                   optimizer=adam, min_decrease=0.3),
             "passed", adam),
            ("fail", frozen_lr, lambda: self.assertCanOverfitBatch(frozen_lr, X, Y, steps=5, optimizer=opt),
             "failed", opt),
            ("user raises", boom, lambda: self.assertCanOverfitBatch(boom, X, Y, steps=5), "raised-user"),
        ])

    def test_assert_state_dict_round_trip(self):
        ok, stray, boom = make_net(), make_net(stray=True), make_net(boom=True)
        self.three("assertStateDictRoundTrip", [
            ("pass", ok, lambda: self.assertStateDictRoundTrip(ok, X), "passed", None, [X]),
            ("fail", stray, lambda: self.assertStateDictRoundTrip(stray, X), "failed", None, [X]),
            ("user raises", boom, lambda: self.assertStateDictRoundTrip(boom, X), "raised-user"),
        ])


class ForwardSideEffectsTest(InvarianceCase):
    """What a forward does to its module is undone, and what matters is reported."""

    def test_parameter_replaced_in_forward_is_reported_and_restored(self):
        class Replaces(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                self.fc.weight = nn.Parameter(self.fc.weight.detach().clone())  # a stale-optimizer bug
                return self.fc(x)

        model = Replaces()
        original = model.fc.weight
        x = torch.randn(3, 4)
        out = self.outcome(model, lambda: self.assertParametersUpdated(model, x), "failed")
        self.assertIn("forward replaced or created Parameter(s) fc.weight", str(out.value))
        self.assertIs(model.fc.weight, original)

    def test_parameter_created_in_forward_is_reported_and_removed(self):
        class Creates(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                if not hasattr(self, "gain"):
                    self.gain = nn.Parameter(torch.ones(2))
                return self.fc(x) * self.gain

        model = Creates()
        x = torch.randn(3, 4)
        for mode in ("gradient", "snapshot"):
            with self.subTest(mode=mode):
                out = self.outcome(model, lambda: check_parameters_updated(model, x, mode=mode),
                                   "passed")
                self.assertTrue(any("gain" in n for n in out.value.notes), out.value.notes)
                self.assertFalse(hasattr(model, "gain"))

    def test_user_graph_survives_every_mode(self):
        """A loss the user built before the check can still be backpropagated, to the same grads."""
        for mode in ("gradient", "snapshot", "both"):
            with self.subTest(mode=mode):
                model = make_net()
                reference = copy.deepcopy(model)
                for p, q in zip(model.parameters(), reference.parameters()):  # deepcopy drops .grad
                    q.grad = None if p.grad is None else p.grad.clone()
                torch.manual_seed(7)
                loss = F.mse_loss(model(X), Y)
                torch.manual_seed(7)
                ref_loss = F.mse_loss(reference(X), Y)
                self.outcome(model, lambda: self.assertParametersUpdated(model, X, Y, mode=mode,
                                                                         expect_frozen=["embed"]), "passed")
                loss.backward()
                ref_loss.backward()
                for (name, p), q in zip(model.named_parameters(), reference.parameters()):
                    if p.grad is not None or q.grad is not None:
                        self.assertTrue(torch.equal(p.grad, q.grad), name)

    def test_spectral_norm_buffers_untouched(self):
        model = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(5, 5)), nn.Linear(5, 2))
        model.train()
        x = torch.randn(4, 5)
        for mode in ("gradient", "snapshot"):
            with self.subTest(mode=mode):
                self.outcome(model, lambda: self.assertParametersUpdated(model, x, mode=mode),
                             "passed")

    def test_cached_graph_tensor_does_not_break_copying_checks(self):
        """A model that keeps a non-leaf activation on ``self`` (attention maps, last hidden state).

        Snapshot mode with an optimizer, assertCanOverfitBatch and assertStateDictRoundTrip copy the model;
        a non-leaf tensor attribute must not turn that into torch's internal RuntimeError
        ("Only Tensors created explicitly by the user support the deepcopy protocol").
        """

        class Caches(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
                self.attn = None

            def forward(self, x):
                out = self.fc(x)
                if self.training:
                    self.attn = out.softmax(-1)  # keeps the graph, as many models do
                return out

        torch.manual_seed(0)  # the verdict must not depend on the tests that ran before
        model = Caches()
        x = torch.randn(8, 4)
        y = x @ torch.randn(4, 2)  # reachable by a Linear(4, 2), so 30 steps can halve the loss
        model.train()
        model(x)  # the user ran the model once in train mode: model.attn is now a non-leaf tensor
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for label, call in (
            ("snapshot", lambda: self.assertParametersUpdated(model, x, y, mode="snapshot")),
            ("snapshot with optimizer", lambda: self.assertParametersUpdated(model, x, y, mode="snapshot",
                                                                             optimizer=opt)),
            ("overfit", lambda: self.assertCanOverfitBatch(model, x, y, steps=30)),
            ("round trip", lambda: self.assertStateDictRoundTrip(model, x)),
        ):
            with self.subTest(label):
                out = run_invariant(self, model, call)
                self.assertNotIsInstance(out.value, RuntimeError, f"internal error: {out.value!r}")
                self.assertEqual(out.kind, "passed", repr(out.value))


class UserObjectsTest(InvarianceCase):
    """Inputs, optimizers, schedulers, hooks and loaders that belong to the user stay untouched."""

    def test_inputs_that_require_grad_get_no_grad(self):
        """A check's backward must not accumulate into the user's input tensors."""
        model = make_net()
        calls = {
            "gradient": lambda x, y: self.assertParametersUpdated(model, x, y, expect_frozen=["embed"]),
            "snapshot": lambda x, y: self.assertParametersUpdated(model, x, y, mode="snapshot",
                                                                  expect_frozen=["embed"]),
            "batch_independent": lambda x, y: self.assertBatchIndependent(model, x),
            "overfit": lambda x, y: self.assertCanOverfitBatch(model, x, y, steps=3, min_decrease=0.01),
            "forward_shape": lambda x, y: self.assertForwardShape(model, x, ("B", 3), train=True),
        }
        for name, call in calls.items():
            with self.subTest(name):
                x = X.clone().requires_grad_(True)
                y = Y.clone().requires_grad_(True)
                self.outcome(model, lambda: call(x, y), "passed", watch=[x, y])
                self.assertIsNone(x.grad)
                self.assertIsNone(y.grad)

    def test_optimizer_hooks_are_not_called(self):
        """The check steps private copies: neither the user's optimizer hooks nor global ones run."""
        import torch.optim.optimizer as optim_mod

        calls = []
        handle = optim_mod.register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append("global"))
        try:
            model = make_net()
            opt = adam_with_state(model, X, Y, lr=1e-2)
            calls.clear()
            opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
            opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
            for name, call in (
                ("snapshot", lambda: self.assertParametersUpdated(model, X, Y, mode="snapshot", optimizer=opt,
                                                                   expect_frozen=["embed"])),
                ("both, private SGD", lambda: self.assertParametersUpdated(model, X, Y, mode="both",
                                                                            expect_frozen=["embed"])),
                ("overfit", lambda: self.assertCanOverfitBatch(model, X, Y, steps=3, optimizer=opt,
                                                               min_decrease=0.01)),
                ("overfit, private Adam", lambda: self.assertCanOverfitBatch(model, X, Y, steps=3,
                                                                             min_decrease=0.01)),
            ):
                with self.subTest(name):
                    calls.clear()
                    self.outcome(model, call, "passed", optimizer=opt)
                    self.assertEqual(calls, [], f"{name} ran the user's optimizer hooks")
        finally:
            handle.remove()

    def test_scheduler_wrapped_optimizer(self):
        model = make_net()
        opt = adam_with_state(model, X, Y, lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        for name, call in (
            ("snapshot", lambda: self.assertParametersUpdated(model, X, Y, mode="snapshot", optimizer=opt,
                                                               expect_frozen=["embed"])),
            ("overfit", lambda: self.assertCanOverfitBatch(model, X, Y, steps=5, optimizer=opt, min_decrease=0.01)),
        ):
            with self.subTest(name):
                self.outcome(model, call, "passed", optimizer=opt, watch=[sched])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()"
            F.mse_loss(model(X), Y).backward()
            opt.step()
            sched.step()

    @quiet_fork
    def test_fresh_persistent_loader_is_left_without_workers(self):
        """Workers the check started are stopped, even with persistent_workers=True."""
        ds = TensorDataset(torch.randn(10, 3), torch.arange(10))
        loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True)
        self.addCleanup(lambda: loader._iterator is not None and loader._iterator._shutdown_workers())
        self.outcome(None, lambda: self.assertBatchShape(loader, (("B", 3), ("B",))), "passed", watch=[loader])
        self.assertIsNone(loader._iterator)
        self.assertEqual([len(b[0]) for b in loader], [4, 4, 2])  # and the loader still works

    @quiet_fork
    def test_running_persistent_loader_keeps_its_workers(self):
        ds = TensorDataset(torch.randn(10, 3), torch.arange(10))
        loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
        self.assertEqual(len(list(loader)), 3)  # the user started its workers
        iterator = loader._iterator
        self.addCleanup(iterator._shutdown_workers)
        self.outcome(None, lambda: self.assertBatchShape(loader, (("B", 3), ("B",)), max_batches=2), "passed")
        self.assertIs(loader._iterator, iterator)
        self.assertEqual([len(b[0]) for b in loader], [4, 4, 2])


# ------------------------------------------------------------------------------------- hypothesis


class RandomNet(nn.Module):
    def __init__(self, widths, bn, drop, boom):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) if use else nn.Identity() for b, use in zip(widths[1:], bn))
        self.drops = nn.ModuleList(nn.Dropout(0.25) if use else nn.Identity() for use in drop)
        self.boom = boom

    def forward(self, x):
        for i, (lin, norm, drop) in enumerate(zip(self.layers, self.norms, self.drops)):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = drop(torch.relu(norm(x)))
        if self.boom:
            user_raise("random model failed")
        return x


@st.composite
def random_models(draw):
    tie = draw(st.booleans())
    depth = draw(st.integers(3, 4) if tie else st.integers(1, 4))
    widths = [draw(st.integers(1, 6)) for _ in range(depth + 1)]
    if tie:  # layers 1 and 2 are both w x w: tie their weights
        w = draw(st.integers(2, 6))
        widths[1] = widths[2] = widths[3] = w
    bn = [draw(st.booleans()) for _ in range(depth)]
    drop = [draw(st.booleans()) for _ in range(depth)]
    boom = draw(st.integers(0, 9)) == 0
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = RandomNet(widths, bn, drop, boom)
    if tie:
        model.layers[2].weight = model.layers[1].weight
    for lin in model.layers:
        if draw(st.integers(0, 3)) == 0:
            lin.requires_grad_(False)
    for p in model.parameters():
        if draw(st.booleans()):
            p.grad = torch.randn_like(p)
    for m in model.modules():
        m.training = draw(st.booleans())
    return model, widths


ASSERTIONS = (
    "forward_shape", "dtype", "gradient", "snapshot", "both", "loss", "batch_shape", "batch_independent",
    "deterministic", "parameter_count", "all_finite", "output_range", "overfit", "round_trip",
)


def random_call(tc, built, which, batch, flag, data):
    """One assertion call on a random model: (model, call, optimizer, watch)."""
    model, widths = built
    x = torch.randn(batch, widths[0])
    y = torch.randn(batch, widths[-1])
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    has_trainable = any(p.requires_grad for p in model.parameters())
    optimizer = None
    watch = [x, y]
    if which in ("snapshot", "both") and flag and has_trainable:
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for i, p in enumerate(optimizer.param_groups[0]["params"]):  # existing state, as after real steps
            optimizer.state[p] = {"step": torch.tensor(float(i + 1)), "exp_avg": torch.randn_like(p),
                                  "exp_avg_sq": torch.rand_like(p)}
    if which == "forward_shape":
        spec = ("B", widths[-1] + (0 if flag else 1))
        train = data.draw(st.booleans(), label="train")
        call = lambda: tc.assertForwardShape(model, x, spec, train=train)  # noqa: E731
    elif which == "dtype":
        out = {"logits": torch.randn(batch, widths[-1]), "ids": torch.zeros(batch, dtype=torch.int64)}
        watch.append(out)
        call = lambda: tc.assertDtype(out["logits"], torch.float32 if flag else torch.float64)  # noqa: E731
    elif which in ("gradient", "snapshot", "both"):
        declare = data.draw(st.booleans(), label="expect_frozen")
        trials = data.draw(st.integers(1, 2), label="trials")
        call = lambda: tc.assertParametersUpdated(  # noqa: E731
            model, x, y if flag else None, mode=which, optimizer=optimizer,
            expect_frozen=frozen if declare else (), trials=trials)
    elif which == "loss":
        value = data.draw(st.sampled_from([0.5, -1.0, float("nan")]), label="loss")
        loss = torch.tensor(value, requires_grad=True) * 1.0
        watch.append(loss)
        call = lambda: tc.assertLossScalarNonNegative(loss)  # noqa: E731
    elif which == "batch_shape":
        loader = DataLoader(TensorDataset(x, y), batch_size=2, shuffle=flag)
        watch.append(loader)
        spec = (("B", widths[0]), ("B", widths[-1] + (0 if flag else 1)))
        call = lambda: tc.assertBatchShape(loader, spec)  # noqa: E731
    elif which == "batch_independent":
        call = lambda: tc.assertBatchIndependent(model, x)  # noqa: E731
    elif which == "deterministic":
        call = lambda: tc.assertDeterministic(model, x)  # noqa: E731
    elif which == "parameter_count":
        total = sum(p.numel() for p in model.parameters()) + (0 if flag else 1)
        call = lambda: tc.assertParameterCount(model, total=total)  # noqa: E731
    elif which == "all_finite":
        call = lambda: tc.assertAllFinite(model)  # noqa: E731
    elif which == "output_range":
        low, high = (-1e9, 1e9) if flag else (0.0, 1e-9)
        call = lambda: tc.assertOutputRange(model, x, low=low, high=high)  # noqa: E731
    elif which == "overfit":
        call = lambda: tc.assertCanOverfitBatch(model, x, y, steps=3, min_decrease=0.01)  # noqa: E731
    else:
        call = lambda: tc.assertStateDictRoundTrip(model, x)  # noqa: E731
    return model, call, optimizer, watch


HYPOTHESIS = dict(deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INVARIANCE_EXAMPLES = 100
CLEAN_OUTCOME_EXAMPLES = 60


class HypothesisInvarianceTest(InvarianceCase):
    """Properties over random models (depth 1-4, widths 1-6, BatchNorm, Dropout, frozen layers,
    tied weights, pre-populated and None grads, random per-module modes, a forward that raises
    one time in ten) and random assertion calls drawn from ``ASSERTIONS``."""

    def test_random_assertions_are_invisible(self):
        try:
            self.property_invisible()
        except BaseException:
            _preload_hypothesis_patching()
            raise

    def test_random_assertions_end_cleanly(self):
        try:
            self.property_end_cleanly()
        except BaseException:
            _preload_hypothesis_patching()
            raise

    @settings(max_examples=INVARIANCE_EXAMPLES, **HYPOTHESIS)
    @given(built=random_models(), which=st.sampled_from(ASSERTIONS), batch=st.integers(2, 5),
           flag=st.booleans(), data=st.data())
    def property_invisible(self, built, which, batch, flag, data):
        """Whatever the outcome, nothing observable changes; a user exception comes out itself."""
        RAISED.clear()
        model, call, optimizer, watch = random_call(self, built, which, batch, flag, data)
        out = run_invariant(self, model, call, optimizer=optimizer, watch=watch, what=which)
        if isinstance(out.value, UserError):
            self.assertIs(out.value, RAISED[-1])
            self.assertIsNone(out.value.__context__)
        elif model.boom and which not in ("dtype", "loss", "batch_shape", "parameter_count", "all_finite"):
            self.fail(f"{which}: the user's forward raised UserError but the assertion gave {out.kind} {out.value!r}")

    @settings(max_examples=CLEAN_OUTCOME_EXAMPLES, **HYPOTHESIS)
    @given(built=random_models(), which=st.sampled_from(ASSERTIONS), batch=st.integers(2, 5),
           flag=st.booleans(), data=st.data())
    def property_end_cleanly(self, built, which, batch, flag, data):
        """A pass, a failure, the user's own exception or a TypeError/ValueError with a message;
        never an internal error (AttributeError, IndexError, KeyError, RuntimeError...)."""
        RAISED.clear()
        _, call, _, _ = random_call(self, built, which, batch, flag, data)
        try:
            call()
        except (self.failureException, UserError):
            pass
        except (TypeError, ValueError) as exc:
            self.assertNotIsInstance(exc, (AttributeError, IndexError, KeyError))
            self.assertTrue(str(exc), "a misuse error needs a message")
        except Exception as exc:  # noqa: BLE001
            self.fail(f"{which}: internal error {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------- host syncs


class SyncCountTest(unittest.TestCase):
    """The number of host synchronisations of a check does not grow with the parameter count."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")

    def count_calls(self, fn):
        counts = {name: 0 for name in self.METHODS}
        patches = []
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)

            def wrapper(t, *args, __name=name, __original=original, **kwargs):
                counts[__name] += 1
                return __original(t, *args, **kwargs)

            patches.append(mock.patch.object(torch.Tensor, name, wrapper))
        for p in patches:
            p.start()
        try:
            fn()
        finally:
            for p in reversed(patches):
                p.stop()
        return counts

    class Parallel(nn.Module):
        """``n`` independent Linear(4, 2) heads side by side: 2n parameters, none of them vanishing."""

        def __init__(self, n):
            super().__init__()
            self.heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(n))

        def forward(self, x):
            return torch.cat([h(x) for h in self.heads], dim=1)

    @classmethod
    def model_with(cls, n_params):
        return cls.Parallel(n_params // 2)

    def test_counter_counts(self):
        counts = self.count_calls(lambda: (torch.tensor(1.0).item(), bool(torch.tensor(True)),
                                           torch.zeros(2).tolist(), float(torch.tensor(2.0)), int(torch.tensor(3))))
        self.assertEqual(sum(counts.values()), 5, counts)

    def test_constant_syncs(self):
        x = torch.randn(3, 4)
        for mode in ("gradient", "snapshot", "both"):
            for with_target in (False, True):
                with self.subTest(mode=mode, target=with_target):
                    totals = []
                    for n in (10, 400):
                        model = self.model_with(n)
                        target = torch.randn(3, n) if with_target else None
                        self.assertEqual(len(list(model.parameters())), n)
                        report = None

                        def run():
                            nonlocal report
                            report = check_parameters_updated(model, x, target, mode=mode)

                        counts = self.count_calls(run)
                        self.assertTrue(report.passed)
                        totals.append(sum(counts.values()))
                    self.assertEqual(totals[0], totals[1], f"syncs grow with the parameter count: {totals}")
                    self.assertLessEqual(totals[1], 2, totals)  # one .tolist() today


if __name__ == "__main__":
    unittest.main()
