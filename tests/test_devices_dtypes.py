"""Devices and dtypes: float16, bfloat16, float64, complex and integer models and outputs; CUDA.

CPU tests run everywhere. CUDA tests are skipped cleanly without a GPU; with one they show that a
model on the GPU takes CPU inputs and targets (moved automatically), that no assertion moves a
model between devices, that the CUDA RNG is restored, and that a gradient-mode check makes a small
number of host synchronisations that does not grow with the parameter count. A subprocess test
shows that assertions on a CPU model never initialise CUDA.
"""

import os
import subprocess
import sys
import textwrap
import unittest
import warnings

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase, check_parameters_updated
from tests.invariance import run_invariant

HAS_CUDA = torch.cuda.is_available()
HALF_NOTE = r"half-precision parameters: float16 gradients below about 6e-8 underflow to zero"


def mlp(dtype=torch.float32, device="cpu", dropout=False):
    torch.manual_seed(0)
    layers = [nn.Linear(4, 8), nn.ReLU()] + ([nn.Dropout(0.2)] if dropout else []) + [nn.Linear(8, 3)]
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


class ComplexNet(nn.Module):
    """A complex64 weight used by the forward, and a complex64 parameter it never uses."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(4, 3, dtype=torch.complex64, generator=g))
        self.unused = nn.Parameter(torch.randn(3, dtype=torch.complex64, generator=g))
        self.use_all = False

    def forward(self, x):
        out = x.to(torch.complex64) @ self.w
        return out + self.unused if self.use_all else out


class ArgmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).argmax(dim=1)


class InvariantCase(ModelTestCase):
    def expect(self, model, call, kind, optimizer=None):
        out = run_invariant(self, model, call, optimizer=optimizer)
        self.assertEqual(out.kind, kind, repr(out.value)[:600])
        return out.value


# ------------------------------------------------------------------------------------------ CPU dtypes


class HalfPrecisionTest(InvariantCase):
    def test_updates_pass_in_every_mode(self):
        for dtype in (torch.float16, torch.bfloat16):
            model, x = mlp(dtype), torch.randn(6, 4).to(dtype)
            for mode in ("gradient", "snapshot", "both"):
                with self.subTest(dtype=str(dtype), mode=mode):
                    report = self.expect(model, lambda: self.assertParametersUpdated(model, x, mode=mode), "passed")
                    self.assertEqual({r.dtype for r in report.records}, {str(dtype)})
                    self.assertEqual(report.notes, ())

    def test_float16_gradient_underflow_has_the_note(self):
        model = mlp(torch.float16)
        x = (torch.randn(6, 4) * 1e-9).half()  # below float16's smallest subnormal: the input is 0
        exc = self.expect(model, lambda: self.assertParametersUpdated(model, x), "failed")
        self.assertRegex(str(exc), r"0\.weight .*grad is all zero")
        self.assertRegex(str(exc), HALF_NOTE)

    def test_update_below_resolution_has_the_note(self):
        for dtype in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=str(dtype)):
                model, x = mlp(dtype), torch.randn(6, 4).to(dtype)
                exc = self.expect(model, lambda: self.assertParametersUpdated(
                    model, x, mode="snapshot", loss_fn=lambda out: out.float().sum() * 1e-6), "failed")
                self.assertIn("the value did not change", str(exc))
                self.assertRegex(str(exc), HALF_NOTE)

    def test_float32_model_with_tiny_updates_has_no_half_note(self):
        model, x = mlp(), torch.randn(6, 4)
        report = check_parameters_updated(model, x, mode="snapshot", loss_fn=lambda out: out.sum() * 1e-30)
        self.assertFalse(report.passed)
        self.assertFalse(any("half-precision" in n for n in report.notes))

    def test_forward_shape_dtype_and_finite(self):
        for dtype in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=str(dtype)):
                model, x = mlp(dtype), torch.randn(6, 4).to(dtype)
                out = self.expect(model, lambda: self.assertForwardShape(model, x, ("B", 3)), "passed")
                self.assertEqual(out.dtype, dtype)
                self.assertDtype(out, dtype)
                with self.assertRaisesRegex(self.failureException,
                                            rf"dtype {dtype} does not match expected torch\.float32"):
                    self.assertDtype(out, torch.float32)
                self.expect(model, lambda: self.assertAllFinite(model), "passed")
                self.assertBatchIndependent(model, x)
                self.assertDeterministic(model, x)

    def test_float16_overflow_is_not_finite(self):
        big = torch.tensor([60000.0, 1.0], dtype=torch.float16) * 2  # 120000 overflows float16
        with self.assertRaisesRegex(self.failureException, r"0 NaN, 1 inf of 2 elements"):
            self.assertAllFinite(big)

    def test_half_loss(self):
        self.assertLossScalarNonNegative(torch.tensor(0.25, dtype=torch.float16))
        self.assertLossScalarNonNegative(torch.tensor(0.25, dtype=torch.bfloat16))
        with self.assertRaisesRegex(self.failureException, r"is negative"):
            self.assertLossScalarNonNegative(torch.tensor(-0.25, dtype=torch.bfloat16))


class Float64Test(InvariantCase):
    def test_float64_model(self):
        model, x = mlp(torch.float64), torch.randn(6, 4, dtype=torch.float64)
        y = torch.randn(6, 3, dtype=torch.float64)
        for mode in ("gradient", "snapshot", "both"):
            with self.subTest(mode=mode):
                self.expect(model, lambda: self.assertParametersUpdated(model, x, y, mode=mode), "passed")
        out = self.expect(model, lambda: self.assertForwardShape(model, x, ("B", 3)), "passed")
        self.assertDtype(out, torch.float64)
        with self.assertRaisesRegex(self.failureException,
                                    r"dtype torch\.float64 does not match expected torch\.float32"):
            self.assertDtype(out, torch.float32)
        self.expect(model, lambda: self.assertAllFinite(model), "passed")
        self.expect(model, lambda: self.assertStateDictRoundTrip(model, x), "passed")

    def test_float32_model_with_float64_inputs_fails_in_the_user_forward(self):
        """Inputs are moved to the model's device, never cast: a dtype clash is the model's own error."""
        model, x = mlp(), torch.randn(6, 4, dtype=torch.float64)
        out = run_invariant(self, model, lambda: self.assertForwardShape(model, x, ("B", 3)))
        self.assertEqual(out.kind, "raised")
        self.assertIsInstance(out.value, RuntimeError)  # torch's own matmul dtype error, unchanged
        self.assertRegex(str(out.value), r"dtype|Double|Float")


class ComplexTest(InvariantCase):
    def test_complex_parameters_updated_through_abs(self):
        model, x = ComplexNet(), torch.randn(5, 4)
        model.use_all = True
        for mode in ("gradient", "snapshot", "both"):
            with self.subTest(mode=mode):
                report = self.expect(model, lambda: self.assertParametersUpdated(model, x, mode=mode), "passed")
                for r in report.records:
                    self.assertEqual(r.dtype, "torch.complex64")
                    self.assertGreater(r.max_grad, 0.0)  # |g| of a complex gradient: a real number
                    if mode != "gradient":
                        self.assertGreater(r.max_change, 0.0)

    def test_unused_complex_parameter_fails(self):
        model, x = ComplexNet(), torch.randn(5, 4)
        for mode in ("gradient", "snapshot"):
            with self.subTest(mode=mode):
                exc = self.expect(model, lambda: self.assertParametersUpdated(model, x, mode=mode), "failed")
                self.assertRegex(str(exc), r"unused .*grad is None")
                self.assertNotRegex(str(exc), r"\bw\b .*grad is None")

    def test_complex_output_checks(self):
        model, x = ComplexNet(), torch.randn(5, 4)
        out = self.expect(model, lambda: self.assertForwardShape(model, x, ("B", 3)), "passed")
        self.assertDtype(out, torch.complex64)
        self.expect(model, lambda: self.assertAllFinite(model), "passed")
        self.expect(model, lambda: self.assertBatchIndependent(model, x), "passed")
        with self.assertRaisesRegex(self.failureException, r"1 NaN"):
            self.assertAllFinite(torch.tensor([1 + 1j, complex(float("nan"), 0.0)]))
        with self.assertRaisesRegex(TypeError, r"complex; ranges are defined for real values only"):
            self.assertOutputRange(model, x, low=0.0)
        with self.assertRaisesRegex(self.failureException, r"Loss has dtype torch\.complex64"):
            self.assertLossScalarNonNegative(torch.tensor(1 + 0j))


class IntegerOutputTest(InvariantCase):
    def test_integer_output(self):
        model, x = ArgmaxNet(), torch.randn(5, 4)
        out = self.expect(model, lambda: self.assertForwardShape(model, x, ("B",)), "passed")
        self.assertDtype(out, torch.int64)
        err = self.expect(model, lambda: self.assertParametersUpdated(model, x), "raised")
        self.assertIsInstance(err, ValueError)
        self.assertRegex(str(err), r"no floating-point tensor to build a default loss from \(a torch\.int64 tensor "
                                   r"of shape \(5,\)\); pass loss_fn")
        # With a loss_fn the check runs and finds the real bug: argmax has no gradient.
        exc = self.expect(model, lambda: self.assertParametersUpdated(
            model, x, loss_fn=lambda o: o.float().mean()), "failed")
        self.assertRegex(str(exc), r"grad is None")

    def test_integer_values_are_finite_and_ranged(self):
        ids = torch.arange(6)
        self.assertAllFinite(ids)  # integers cannot be NaN or inf: a pass, not "non-finite values in 0 / 0"
        self.assertAllFinite({"ids": ids, "mask": ids > 2})
        self.assertOutputRange(ids, low=0, high=5)
        with self.assertRaisesRegex(self.failureException, r"1 above 4"):
            self.assertOutputRange(ids, low=0, high=4)
        with self.assertRaisesRegex(self.failureException, r"Loss has dtype torch\.int64"):
            self.assertLossScalarNonNegative(torch.tensor(2))

    def test_integer_inputs_token_ids(self):
        emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
        ids = torch.randint(0, 10, (5, 3))
        self.expect(emb, lambda: self.assertParametersUpdated(emb, ids), "passed")
        self.expect(emb, lambda: self.assertBatchIndependent(emb, ids), "passed")


# ------------------------------------------------------------------------------------------ CUDA


def cuda_sync_warnings(fn):
    """Run ``fn`` with CUDA sync debug mode "warn" and return the number of sync warnings."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():  # the first switch warns by itself: not the check's
        warnings.simplefilter("ignore")
        torch.cuda.set_sync_debug_mode("warn")
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum(1 for w in caught if "synchroniz" in str(w.message))


class Parallel(nn.Module):
    """``n`` independent Linear(4, 2) heads: 2n parameters that all update."""

    def __init__(self, n):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(n))

    def forward(self, x):
        return torch.cat([h(x) for h in self.heads], dim=1)


@unittest.skipUnless(HAS_CUDA, "needs CUDA")
class CudaTest(InvariantCase):
    def setUp(self):
        torch.cuda.init()  # the invariance helper then also compares the CUDA RNG state

    def test_cuda_model_with_cpu_inputs_and_targets(self):
        model = mlp(device="cuda", dropout=True)
        model.train()
        model[2].eval()  # mixed modes
        model[0].weight.grad = torch.randn(8, 4, device="cuda")
        x, y, labels = torch.randn(6, 4), torch.randn(6, 3), torch.randint(0, 3, (6,))
        calls = {
            "forward_shape": lambda: self.assertForwardShape(model, x, ("B", 3)),
            "forward_shape_train": lambda: self.assertForwardShape(model, x, ("B", 3), train=True),
            "gradient": lambda: self.assertParametersUpdated(model, x, y),
            "gradient_ce": lambda: self.assertParametersUpdated(model, x, labels),
            "snapshot": lambda: self.assertParametersUpdated(model, x, y, mode="snapshot"),
            "both": lambda: self.assertParametersUpdated(model, x, y, mode="both", trials=2),
            "batch_independent": lambda: self.assertBatchIndependent(model, x),
            "deterministic": lambda: self.assertDeterministic(model, x),
            "output_range": lambda: self.assertOutputRange(model, x, low=-100.0, high=100.0),
            "all_finite": lambda: self.assertAllFinite(model),
            "parameter_count": lambda: self.assertParameterCount(model, total=67),
            "overfit": lambda: self.assertCanOverfitBatch(model, x, y, steps=20, min_decrease=0.2),
            "round_trip": lambda: self.assertStateDictRoundTrip(model, x),
        }
        for name, call in calls.items():
            with self.subTest(name):
                self.expect(model, call, "passed")
                self.assertTrue(all(p.device.type == "cuda" for p in model.parameters()))
                self.assertEqual(model[0].weight.grad.device.type, "cuda")
                self.assertTrue(all(t.device.type == "cpu" for t in (x, y, labels)))

    def test_cuda_failures_and_user_errors_are_invisible(self):
        model = mlp(device="cuda", dropout=True).train()
        x = torch.randn(6, 4)
        self.expect(model, lambda: self.assertForwardShape(model, x, ("B", 4)), "failed")
        frozen = mlp(device="cuda").requires_grad_(False)
        self.expect(frozen, lambda: self.assertParametersUpdated(frozen, x), "failed")

        class Boom(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)
                self.drop = nn.Dropout(0.5)

            def forward(self, x):
                self.drop(self.fc(x))  # draws from the CUDA RNG
                raise KeyError("user")

        boom = Boom().cuda().train()
        err = self.expect(boom, lambda: self.assertParametersUpdated(boom, x), "raised")
        self.assertIs(type(err), KeyError)

    def test_cuda_rng_restored(self):
        model = mlp(device="cuda", dropout=True).train()
        x = torch.randn(6, 4, device="cuda")
        before = torch.cuda.get_rng_state()
        self.assertParametersUpdated(model, x)
        self.assertForwardShape(model, x, ("B", 3), train=True)
        self.assertTrue(torch.equal(before, torch.cuda.get_rng_state()))

    def test_cpu_model_checks_leave_the_cuda_rng_alone(self):
        """CUDA is initialised (another test used it) but the model is on the CPU: the seeded
        checks must not reseed the CUDA generators they did not fork."""
        model, x, y = mlp(dropout=True), torch.randn(6, 4), torch.randn(6, 3)
        calls = {
            "forward_shape": lambda: self.assertForwardShape(model, x, ("B", 3), train=True),
            "gradient": lambda: self.assertParametersUpdated(model, x, y, seed=3),
            "snapshot": lambda: self.assertParametersUpdated(model, x, y, mode="snapshot"),
            "batch_independent": lambda: self.assertBatchIndependent(model, x),
            "deterministic": lambda: self.assertDeterministic(model, x),
            "overfit": lambda: self.assertCanOverfitBatch(model, x, y, steps=3, min_decrease=0.01),
            "round_trip": lambda: self.assertStateDictRoundTrip(model, x),
        }
        for name, call in calls.items():
            with self.subTest(name):
                torch.cuda.manual_seed(999)
                torch.randn(3, device="cuda")  # a state no check would reseed to by chance
                before = torch.cuda.get_rng_state()
                self.expect(model, call, "passed")  # also compares every CUDA device's RNG
                self.assertTrue(torch.equal(before, torch.cuda.get_rng_state()), name)

    def test_cuda_half_precision(self):
        for dtype in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=str(dtype)):
                model = mlp(dtype, device="cuda")
                x = torch.randn(6, 4, dtype=dtype)
                self.expect(model, lambda: self.assertParametersUpdated(model, x, mode="both"), "passed")
                out = self.expect(model, lambda: self.assertForwardShape(model, x, ("B", 3)), "passed")
                self.assertEqual((out.device.type, out.dtype), ("cuda", dtype))

    def test_gradient_mode_sync_count_is_small_and_constant(self):
        x = torch.randn(6, 4, device="cuda")
        counts = {}
        for n in (10, 50):
            model = Parallel(n // 2).cuda()
            self.assertEqual(len(list(model.parameters())), n)
            check_parameters_updated(model, x)  # warm-up: lazy initialisations are not the check's
            counts[n] = cuda_sync_warnings(lambda: check_parameters_updated(model, x))
        self.assertEqual(counts[10], counts[50], counts)
        self.assertLessEqual(counts[50], 4, counts)

    def test_snapshot_mode_sync_count_is_constant(self):
        x = torch.randn(6, 4, device="cuda")
        counts = {}
        for n in (10, 50):
            model = Parallel(n // 2).cuda()
            check_parameters_updated(model, x, mode="snapshot")
            counts[n] = cuda_sync_warnings(lambda: check_parameters_updated(model, x, mode="snapshot"))
        self.assertEqual(counts[10], counts[50], counts)


# ------------------------------------------------------------------------------------------ CUDA stays off

_NO_CUDA_SCRIPT = textwrap.dedent("""
    import unittest, torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from torchcheck_mixin import ModelTestCase, parameter_summary

    class T(ModelTestCase):
        def runTest(self):
            pass

    t = T()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    x, y = torch.randn(6, 4), torch.randn(6, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    opt = torch.optim.Adam(model.parameters())
    calls = [
        lambda: t.assertForwardShape(model, x, ("B", 3)),
        lambda: t.assertForwardShape(model, x, ("B", 4), train=True),
        lambda: t.assertDtype(x, torch.float32),
        lambda: t.assertDtype(x, torch.float64),
        lambda: t.assertParametersUpdated(model, x, y),
        lambda: t.assertParametersUpdated(model, x, y, mode="snapshot", optimizer=opt),
        lambda: t.assertParametersUpdated(model, x, mode="both", trials=2),
        lambda: t.assertParametersUpdated(model, x, allow_not_updated=["nothing"]),
        lambda: t.assertLossScalarNonNegative(torch.tensor(0.5)),
        lambda: t.assertLossScalarNonNegative(torch.tensor(float("nan"))),
        lambda: t.assertBatchShape(loader, (("B", 4), ("B", 3))),
        lambda: t.assertBatchShape(loader, (("B", 4), ("B", 3)), max_batches=1),
        lambda: t.assertBatchIndependent(model, x),
        lambda: t.assertDeterministic(model, x),
        lambda: t.assertParameterCount(model, total=1),
        lambda: t.assertAllFinite(model),
        lambda: t.assertOutputRange(model, x, low=0.0, high=0.1),
        lambda: t.assertCanOverfitBatch(model, x, y, steps=3),
        lambda: t.assertStateDictRoundTrip(model, x),
        lambda: parameter_summary(model),
    ]
    for i, call in enumerate(calls):
        try:
            call()
        except (AssertionError, TypeError, ValueError):
            pass
        if torch.cuda.is_initialized():
            print(f"CUDA initialised by call {i}")
            break
    else:
        print("CUDA never initialised")
    print("devices:", sorted({p.device.type for p in model.parameters()}))
""")


class CudaNeverInitialisedTest(unittest.TestCase):
    def test_cpu_assertions_never_initialise_cuda(self):
        """In a fresh process (this one may have used CUDA already): CPU model, every assertion."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-c", _NO_CUDA_SCRIPT], capture_output=True, text=True,
                              timeout=300, env=env, cwd=root)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn("CUDA never initialised", proc.stdout, proc.stdout + proc.stderr[-3000:])
        self.assertIn("devices: ['cpu']", proc.stdout)

    def test_cpu_assertions_in_this_process(self):
        """When this process has not touched CUDA, the invariance helper already compares the flag."""
        if torch.cuda.is_initialized():
            self.skipTest("CUDA already initialised in this process; the subprocess test covers it")
        t = InvariantCase()
        model, x = mlp(dropout=True), torch.randn(6, 4)
        for call in (lambda: t.assertParametersUpdated(model, x, mode="both"),
                     lambda: t.assertForwardShape(model, x, ("B", 3)),
                     lambda: t.assertCanOverfitBatch(model, x, steps=2)):
            run_invariant(self, model, call)
            self.assertFalse(torch.cuda.is_initialized())


if __name__ == "__main__":
    unittest.main()
