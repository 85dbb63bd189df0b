"""Equivalence assertions (issue 16): each bug caught, each correct twin passing, all invisible."""

import unittest
import warnings

import torch
from torch import nn
import torch.nn.functional as F

from torchcheck_mixin import ModelBattery, ModelTestCase
from tests.invariance import run_invariant


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


X = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
Y = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))


def accumulate(zero_grad_inside=False, summed=False):
    def step(model, micro_batches):
        for x, y in micro_batches:
            if zero_grad_inside:
                model.zero_grad()
            loss = F.mse_loss(model(x), y, reduction="sum" if summed else "mean")
            (loss / len(micro_batches)).backward()
    return step


class SoftmaxHead(nn.Module):
    def __init__(self, hand_written):
        super().__init__()
        self.l = nn.Linear(8, 6)
        self.hand_written = hand_written
        with torch.no_grad():
            self.l.weight.mul_(20)  # logits well above 11: exp overflows in float16

    def forward(self, x):
        z = self.l(x)
        if self.hand_written:
            e = z.exp()
            return e / e.sum(-1, keepdim=True)
        return z.softmax(-1)


class HiddenCast(nn.Module):
    def __init__(self, cast):
        super().__init__()
        self.a, self.b, self.cast = nn.Linear(8, 8), nn.Linear(8, 2), cast

    def forward(self, x):
        h = self.a(x)
        if self.cast:
            h = h.half().float()  # "saves memory"
        return self.b(h)


class PlainMask(nn.Module):
    def __init__(self, registered):
        super().__init__()
        self.l = nn.Linear(3, 3)
        if registered:
            self.register_buffer("mask", torch.ones(3))
        else:
            self.mask = torch.ones(3)

    def forward(self, x):
        return self.l(x) * self.mask


class Branchy(nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.l, self.branch = nn.Linear(8, 8), branch

    def forward(self, x):
        h = self.l(x)
        if self.branch and h.sum() > 0:  # a Python branch on a tensor value: a graph break
            h = h * 2
        return h


class Variance(nn.Module):
    def __init__(self, stable):
        super().__init__()
        self.l, self.stable = nn.Linear(64, 64), stable

    def forward(self, x):
        h = self.l(x) + 300.0
        if self.stable:
            return h.var(-1, unbiased=False)
        return (h * h).mean(-1) - h.mean(-1) ** 2  # cancellation: reduction order decides the result


class Counter(nn.Module):
    def __init__(self, persistent):
        super().__init__()
        self.l = nn.Linear(4, 2)
        self.register_buffer("calls", torch.zeros(()), persistent=persistent)

    def forward(self, x):
        self.calls += 1
        return self.l(x) * self.calls


class BatchCentre(nn.Module):
    def forward(self, h):
        return h - h.mean(0, keepdim=True)  # statistics of the batch it sees: differs per micro-batch


class BatchSummedGrad(torch.autograd.Function):
    """Identity forward; a backward that multiplies by the batch size (meant to normalise by it)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * g.shape[0]


class SequenceModel(nn.Module):
    """Token and positional embeddings (3-d outputs; the positional one the same in every
    micro-batch), then a mixing layer, an optional bug after the embeddings, and a head."""

    def __init__(self, bug=None):
        super().__init__()
        torch.manual_seed(0)
        self.tok, self.pos = nn.Embedding(10, 8), nn.Embedding(6, 8)
        self.mix, self.head = nn.Linear(8, 8), nn.Linear(8, 3)
        self.centre = BatchCentre() if bug == "centre" else nn.Identity()
        self.bug = bug

    def forward(self, t):
        h = self.mix(self.tok(t) + self.pos(torch.arange(t.shape[1])))
        if self.bug == "backward":
            h = BatchSummedGrad.apply(h)
        return self.head(self.centre(h)).mean(1)


TOKENS = torch.randint(0, 10, (8, 6), generator=torch.Generator().manual_seed(0))
LABELS = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(1))


BATCHES = [(torch.randn(8, 4, generator=torch.Generator().manual_seed(i)),
            torch.randn(8, 2, generator=torch.Generator().manual_seed(100 + i))) for i in range(4)]


def adam(model):
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)


def save_without_scheduler(model, opt, sched, scaler):
    return {"model": {k: v.clone() for k, v in model.state_dict().items()}, "opt": opt.state_dict()}


def load_without_scheduler(ckpt, model, opt, sched, scaler):
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])


def save_all(model, opt, sched, scaler):
    return {**save_without_scheduler(model, opt, sched, scaler), "sched": sched.state_dict()}


def load_all(ckpt, model, opt, sched, scaler):
    load_without_scheduler(ckpt, model, opt, sched, scaler)
    sched.load_state_dict(ckpt["sched"])


class EquivalenceCase(ModelTestCase):
    def setUp(self):
        # torch.compile's own modules call torch.jit.script_method, deprecated in torch 2.13; the
        # suite runs under -W error, and that warning is torch's, not ours.
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)

    def fails(self, model, call, *needles):
        out = run_invariant(self, model, call)
        self.assertEqual(out.kind, "failed", repr(out.value)[:800])
        for needle in needles:
            self.assertIn(needle, str(out.value))
        return str(out.value)

    def passes(self, model, call):
        out = run_invariant(self, model, call)
        self.assertEqual(out.kind, "passed", repr(out.value)[:800])


class TestAccumulation(EquivalenceCase):
    def test_correct_step_passes(self):
        m = mlp()
        self.passes(m, lambda: self.assertAccumulationEquivalent(m, X, Y, micro_batches=4))
        self.passes(m, lambda: self.assertAccumulationEquivalent(m, X, Y, step_fn=accumulate()))
        self.passes(m, lambda: self.assertAccumulationEquivalent(m, X))  # no target: sliced random target

    def test_summed_loss_divided_by_k(self):
        m = mlp()
        self.fails(m, lambda: self.assertAccumulationEquivalent(m, X, Y, step_fn=accumulate(summed=True)),
                   "8x the full batch's, in every parameter", "reduction='sum'",
                   "first divergence: 2 (Linear)")  # the scaling enters at the loss: backward order
        summed = lambda out, y: F.mse_loss(out, y, reduction="sum")  # noqa: E731
        self.fails(m, lambda: self.assertAccumulationEquivalent(m, X, Y, loss_fn=summed),
                   "1/2 of the full batch's", "reduction='sum'")

    def test_missing_division(self):
        m = mlp()
        self.fails(m, lambda: self.assertAccumulationEquivalent(
            m, X, Y, step_fn=lambda mod, mbs: [F.mse_loss(mod(x), y).backward() for x, y in mbs]),
            "2x the full batch's", "does not divide")

    def test_zero_grad_inside_loop(self):
        m = mlp()
        self.fails(m, lambda: self.assertAccumulationEquivalent(m, X, Y, step_fn=accumulate(zero_grad_inside=True)),
                   "only the last micro-batch", "zero_grad")

    def test_batchnorm_is_explained_not_a_bug(self):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        self.fails(m, lambda: self.assertAccumulationEquivalent(m, X, Y),
                   "expected, not a bug: BatchNorm", "first divergence: 1 (BatchNorm1d), output", "GroupNorm")
        self.passes(m, lambda: self.assertAccumulationEquivalent(m, X, Y, batchnorm="eval"))

    def test_attention_dropout_is_not_a_false_alarm(self):
        # nn.MultiheadAttention's dropout is functional (no Dropout submodule): left on, each
        # micro-batch drew its own attention mask and all 27 gradients of this model "differed".
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(16, nhead=4, dim_feedforward=32, dropout=0.1, batch_first=True)
        m = nn.Sequential(nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False), nn.Flatten(),
                          nn.Linear(16 * 9, 3))
        tokens = torch.randn(6, 9, 16, generator=torch.Generator().manual_seed(1))
        target = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))
        self.passes(m, lambda: self.assertAccumulationEquivalent(m, tokens, target, micro_batches=2,
                                                                 loss_fn=nn.functional.cross_entropy))

    def test_divergence_after_an_embedding_is_named_there(self):
        # The localiser used to flatten only the micro-batch side of a 3-d output, so every
        # sequence model "diverged" by inf at its first module, the token embedding.
        bad = SequenceModel("centre")
        text = self.fails(bad, lambda: self.assertAccumulationEquivalent(bad, TOKENS, LABELS, loss_fn=F.cross_entropy),
                          "first divergence: centre (BatchCentre), output by 0.368")
        self.assertNotIn("tok (Embedding)", text)
        # pos's gradient cancels to ~1e-9 under the centring: rounding noise, not a mismatch line
        self.assertNotIn("pos.weight", text)
        good = SequenceModel()
        self.passes(good, lambda: self.assertAccumulationEquivalent(good, TOKENS, LABELS, loss_fn=F.cross_entropy))

    def test_backward_only_divergence_is_named_where_it_enters(self):
        # every output agrees; the gradient goes wrong in mix's output and flows to mix, pos, tok
        bad = SequenceModel("backward")
        text = self.fails(bad, lambda: self.assertAccumulationEquivalent(bad, TOKENS, LABELS, loss_fn=F.cross_entropy),
                          "first divergence: mix (Linear), gradient of")
        self.assertNotIn("head.weight", text)  # after the bug: agrees

    def test_misuse(self):
        m = mlp()
        with self.assertRaisesRegex(ValueError, "micro_batches"):
            self.assertAccumulationEquivalent(m, X, Y, micro_batches=3)
        with self.assertRaisesRegex(ValueError, "micro_batches must be >= 2"):
            self.assertAccumulationEquivalent(m, X, Y, micro_batches=1)
        with self.assertRaisesRegex(TypeError, "step_fn"):
            self.assertAccumulationEquivalent(m, X, Y, step_fn=3)


class TestResume(EquivalenceCase):
    def test_full_checkpoint_passes(self):
        self.passes(None, lambda: self.assertResumeEquivalent(mlp, adam, BATCHES, scheduler_factory=step_lr))
        self.passes(None, lambda: self.assertResumeEquivalent(mlp, adam, BATCHES, scheduler_factory=step_lr,
                                                               save_fn=save_all, load_fn=load_all))

    def test_scheduler_not_saved(self):
        self.fails(None, lambda: self.assertResumeEquivalent(
            mlp, adam, BATCHES, scheduler_factory=step_lr, save_fn=save_without_scheduler,
            load_fn=load_without_scheduler), "the scheduler is at step 0", "scheduler.state_dict()")

    def test_rng_not_restored(self):
        def dropout_mlp():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
        self.fails(None, lambda: self.assertResumeEquivalent(
            dropout_mlp, adam, BATCHES, scheduler_factory=step_lr, save_fn=save_all, load_fn=load_all),
            "the torch RNG after loading")

    def test_non_persistent_buffer(self):
        self.fails(None, lambda: self.assertResumeEquivalent(lambda: Counter(False), adam, BATCHES),
                   "buffer calls differs right after loading", "persistent=False")
        self.passes(None, lambda: self.assertResumeEquivalent(lambda: Counter(True), adam, BATCHES))

    def test_misuse(self):
        with self.assertRaisesRegex(ValueError, "batches"):
            self.assertResumeEquivalent(mlp, adam, BATCHES[:2])
        with self.assertRaisesRegex(ValueError, "save_fn and load_fn"):
            self.assertResumeEquivalent(mlp, adam, BATCHES, save_fn=save_all)


class TestCompile(EquivalenceCase):
    @classmethod
    def setUpClass(cls):
        # torch.compile starts process-wide helper threads (tqdm monitor, compile workers) on first
        # use; start them before the invariance checks, which count live threads.
        case = ModelTestCase()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
            try:
                case.assertCompileParity(Branchy(False), torch.randn(4, 8), backend="aot_eager")
            except unittest.SkipTest:
                pass

    def test_eager_equivalent_passes_and_graph_break_found(self):
        m, x = Branchy(False), torch.randn(4, 8)
        self.passes(m, lambda: self.assertCompileParity(m, x, backend="aot_eager",
                                                        check_graph_breaks=True))
        b = Branchy(True)
        self.fails(b, lambda: self.assertCompileParity(b, x, backend="aot_eager",
                                                       check_graph_breaks=True), "graph break", "h.sum() > 0")

    def test_recompile_over_shapes(self):
        class ShapeBranch(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(8, 8)

            def forward(self, x):
                return self.l(x) + (1 if x.shape[0] > 4 else 0)
        m, x, x6 = ShapeBranch(), torch.randn(4, 8), torch.randn(6, 8)
        self.fails(m, lambda: self.assertCompileParity(m, x, backend="eager", dynamic_shapes=[x6]), "recompiled")

    def test_unavailable_compiler_skips(self):
        def no_compiler(gm, example_inputs):
            raise RuntimeError("no C++ compiler found")
        m = mlp()
        out = run_invariant(self, m, lambda: self.assertCompileParity(m, X, backend=no_compiler))
        self.assertEqual(out.kind, "raised")
        self.assertIsInstance(out.value, unittest.SkipTest)
        self.assertIn("no C++ compiler found", str(out.value))

    def test_inductor_reorders_an_ill_conditioned_reduction(self):
        """The one inductor test (~20 s on CPU): skips cleanly where inductor cannot build."""
        torch.manual_seed(0)
        x = torch.randn(16, 64)
        bad = Variance(False)
        self.fails(bad, lambda: self.assertCompileParity(bad, x), "torch.compile differs from eager",
                   "reorders reductions")
        good = Variance(True)
        self.passes(good, lambda: self.assertCompileParity(good, x))

    def setUp(self):
        super().setUp()
        if self._testMethodName == "test_inductor_reorders_an_ill_conditioned_reduction":
            try:  # warm inductor's worker pool outside the invariance check
                self.assertCompileParity(Variance(True), torch.randn(16, 64))
            except unittest.SkipTest as e:
                self.skipTest(str(e))


class TestAutocastPrecision(EquivalenceCase):
    def test_hand_written_softmax_overflows_in_float16(self):
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
        bad = SoftmaxHead(True)
        self.fails(bad, lambda: self.assertAutocastParity(bad, x, dtype=torch.float16),
                   "non-finite", "inf/NaN", "torch.softmax")
        good = SoftmaxHead(False)
        self.passes(good, lambda: self.assertAutocastParity(good, x, dtype=torch.float16))
        self.passes(good, lambda: self.assertAutocastParity(good, x))  # bfloat16 on CPU

    def test_hidden_half_cast(self):
        x = torch.randn(4, 8)
        bad = HiddenCast(True)
        self.fails(bad, lambda: self.assertPrecisionParity(bad, x), "first divergence: b (Linear)", "after 'a'")
        good = HiddenCast(False)
        self.passes(good, lambda: self.assertPrecisionParity(good, x))

    def test_misuse(self):
        with self.assertRaisesRegex(ValueError, "float32"):
            self.assertPrecisionParity(mlp().double(), X.double())
        with self.assertRaisesRegex(ValueError, "dtype"):
            self.assertAutocastParity(mlp(), X, dtype=torch.float32)


class TestMoves(EquivalenceCase):
    def test_plain_attribute_not_moved(self):
        bad = PlainMask(False)
        self.fails(bad, lambda: self.assertMovesWithModel(bad), "mask: plain attribute", "register_buffer('mask'")
        good = PlainMask(True)
        self.passes(good, lambda: self.assertMovesWithModel(good))

    def test_list_attribute_named(self):
        m = PlainMask(True)
        m.tables = [torch.zeros(2), torch.zeros(2)]
        self.fails(m, lambda: self.assertMovesWithModel(m), "tables[0]", "tables[1]")

    @unittest.skipUnless(torch.cuda.is_available(), "device moves need a GPU; the dtype move is tested above")
    def test_device_move(self):
        bad = PlainMask(False)
        self.fails(bad, lambda: self.assertMovesWithModel(bad, dtype=None, device="cuda"), "mask")

    def test_misuse(self):
        with self.assertRaisesRegex(ValueError, "dtype, device"):
            self.assertMovesWithModel(mlp(), dtype=None)
        with self.assertRaisesRegex(TypeError, "dtype"):
            self.assertMovesWithModel(mlp(), dtype=torch.int64)


class TestBatteryRunsTheEquivalences(ModelBattery):
    model_factory = staticmethod(mlp)
    input_factory = staticmethod(lambda: X)
    target_factory = staticmethod(lambda: Y)
    accumulation_micro_batches = 2
    check_can_overfit_batch = "not what this file tests"


class TestBatteryCatchesAPlainTensor(unittest.TestCase):
    def test_moves_fails_in_battery(self):
        class Suite(ModelBattery):
            model_factory = staticmethod(lambda: PlainMask(False))
            input_factory = staticmethod(lambda: torch.randn(4, 3))
        result = unittest.TestResult()
        Suite("test_moves_with_model").run(result)
        self.assertEqual(len(result.failures), 1)
        self.assertIn("mask", result.failures[0][1])


if __name__ == "__main__":
    unittest.main()
