"""Print what the failure messages look like, on deliberately broken models and data.

Run: python examples/show_failures.py

Seeded (every test starts from ``torch.manual_seed(0)``), so the output is the same on every run:
the messages quoted in README.rst are this output, and tests/test_readme.py checks that they are.
"""

import unittest
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchcheck_mixin import ModelTestCase


class DetachedHead(nn.Module):
    """A .detach() left in forward: the encoder never learns."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 16)
        self.unused = nn.Linear(16, 16)  # defined, never called
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)).detach())


class MixesBatch(nn.Module):
    """Softmax over the wrong dimension: every sample sees the others."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=0)


class MergesBatch(nn.Module):
    """A view that folds the batch into the features."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x).view(-1)


class DetachedEncoder(nn.Module):
    """The README's unittest/pytest example: ``.detach()`` after the first layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)).detach())


class SoftmaxHead(nn.Module):
    """A hand-written softmax: exp overflows in float16 for logits above ~11."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(8, 6)
        with torch.no_grad():
            self.l.weight.mul_(20)

    def forward(self, x):
        e = self.l(x).exp()
        return e / e.sum(-1, keepdim=True)


class HiddenCast(nn.Module):
    """A ``.half()`` hidden between two layers."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(self.a(x).half().float())


class Branchy(nn.Module):
    """A Python branch on a tensor value: a graph break under torch.compile."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(8, 8)

    def forward(self, x):
        h = self.l(x)
        if h.sum() > 0:
            h = h * 2
        return h


class PlainMask(nn.Module):
    """A tensor in a plain attribute: ``model.to()`` never moves it."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(3, 3)
        self.mask = torch.ones(3)

    def forward(self, x):
        return self.l(x) * self.mask


def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class Broken(ModelTestCase):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))

    def setUp(self):
        torch.manual_seed(0)  # models and targets are drawn from the global RNG: same output every run

    def test_detach_in_forward(self):
        self.assertParametersUpdated(DetachedEncoder(), torch.randn(5, 3))

    def test_forward_shape(self):
        self.assertForwardShape(MergesBatch(), self.x, ("B", 3))

    def test_structured_output(self):
        model = nn.Linear(8, 3)
        self.assertForwardShape(nn.ModuleDict({"m": model})["m"], self.x, ("B", 3))
        self.assertDtype({"logits": model(self.x).double(), "ids": torch.zeros(4, dtype=torch.long)}, torch.float32)

    def test_parameters_updated(self):
        self.assertParametersUpdated(DetachedHead(), self.x, torch.randint(0, 3, (4,)))

    def test_frozen_by_mistake(self):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        model[0].requires_grad_(False)  # left over from a fine-tuning experiment
        self.assertParametersUpdated(model, self.x)

    def test_optimizer_misses_a_layer(self):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        optimizer = torch.optim.SGD(model[2].parameters(), lr=0.1)
        self.assertParametersUpdated(model, self.x, mode="snapshot", optimizer=optimizer)

    def test_loss(self):
        self.assertLossScalarNonNegative(F.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), reduction="none"))

    def test_loader(self):
        loader = DataLoader(TensorDataset(torch.zeros(10, 8, 8, 3), torch.zeros(10, 1)), batch_size=4)
        self.assertBatchShape(loader, ((4, 3, 8, 8), ("B",)))

    def test_batch_lost_in_forward(self):
        class Flattens(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 5)

            def forward(self, x):
                return self.fc(x).view(-1)  # (3, 5) -> (15,): the batch is gone

        self.assertParametersUpdated(Flattens(), torch.randn(3, 8), torch.randint(0, 5, (3,)))

    def test_batch_independent(self):
        self.assertBatchIndependent(MixesBatch(), self.x)

    def test_unregistered_layers(self):
        class Stack(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = [nn.Linear(8, 8) for _ in range(2)]  # a plain list: never registered
                self.out = nn.Linear(8, 3)

            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return self.out(x)

        self.assertParameterCount(Stack(), total=2 * 72 + 27)

    def test_negative_loss_by_rounding(self):
        self.assertLossScalarNonNegative(torch.tensor(-2.5e-09))  # a KL divergence a rounding below zero

    def test_non_finite(self):
        value = torch.zeros(4, 3)
        value[:3] = float("nan")  # a log(0) * 0 in three rows
        self.assertAllFinite(value)

    def test_output_range(self):
        model = nn.Sequential(nn.Linear(8, 3), nn.Sigmoid())  # probabilities, but checked against [0, 0.5]
        self.assertOutputRange(model, self.x, low=0, high=0.5)

    def test_input_ignored(self):
        class IgnoresMask(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(5, 2)

            def forward(self, x, mask):
                return self.fc(x)  # the mask is never read

        self.assertInputsUsed(IgnoresMask(), (torch.randn(4, 5), torch.randn(4, 5)))

    def test_not_causal(self):
        class MixesTime(nn.Module):  # a Linear over the time axis: every step sees the future
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)

            def forward(self, x):  # (B, T=8, C)
                return self.fc(x.transpose(1, 2)).transpose(1, 2)

        self.assertCausal(MixesTime(), torch.randn(2, 8, 3))

    def test_state_dict_round_trip(self):
        class Scaled(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 3)
                self.scale = torch.ones(2)  # a plain attribute: the state dict does not carry it

            def forward(self, x):
                return self.fc(x)[:2] * self.scale[:, None]

        model = Scaled()
        model.scale.mul_(3.0)  # "calibrated" after construction, lost on reload
        self.assertStateDictRoundTrip(model, self.x, model_factory=Scaled)

    def test_initial_loss(self):
        model = nn.Sequential(nn.Linear(8, 10))
        with torch.no_grad():
            model[0].weight.mul_(40.0)  # an init scaled far too large: confident, wrong logits
        self.assertInitialLoss(model, self.x, torch.randint(0, 10, (4,)))

    def test_labels_cover(self):
        labels = torch.tensor([c for c in range(10) if c != 3] * 4 + [4] * 4)  # class 3 filtered out upstream
        loader = DataLoader(TensorDataset(torch.zeros(40, 2), labels), batch_size=8)
        self.assertLabelsCover(loader, 10)


    def test_accumulation_zero_grad_inside(self):
        def step(model, micro_batches):
            for x, y in micro_batches:
                model.zero_grad()  # inside the accumulation loop
                (F.mse_loss(model(x), y) / len(micro_batches)).backward()
        self.assertAccumulationEquivalent(_mlp(), torch.randn(8, 4), torch.randn(8, 2), step_fn=step)

    def test_resume_scheduler_not_saved(self):
        batches = [(torch.randn(8, 4), torch.randn(8, 2)) for _ in range(4)]

        def save(model, opt, sched, scaler):
            return {"model": {k: v.clone() for k, v in model.state_dict().items()}, "opt": opt.state_dict()}

        def load(ckpt, model, opt, sched, scaler):  # the scheduler is neither saved nor loaded
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])

        def mlp():
            torch.manual_seed(0)
            return _mlp()
        self.assertResumeEquivalent(mlp, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), batches,
                                    scheduler_factory=lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.1),
                                    save_fn=save, load_fn=load)

    def test_compile_graph_break(self):
        with warnings.catch_warnings():  # torch.compile's own deprecated torch.jit.script_method use
            warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
            self.assertCompileParity(Branchy(), torch.randn(4, 8), backend="aot_eager", check_graph_breaks=True)

    def test_autocast_float16_overflow(self):
        self.assertAutocastParity(SoftmaxHead(), torch.randn(4, 8), dtype=torch.float16)

    def test_precision_hidden_half(self):
        self.assertPrecisionParity(HiddenCast(), torch.randn(4, 8))

    def test_moves_plain_attribute(self):
        self.assertMovesWithModel(PlainMask())


def main() -> None:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Broken)
    result = unittest.TestResult()
    suite.run(result)
    for test, text in result.failures + result.errors:
        name = test.id().rsplit(".", 1)[-1]
        message = text.strip().splitlines()
        start = next(i for i, line in enumerate(message) if line.startswith(("AssertionError", "ValueError", "TypeError")))
        print(f"--- {name}")
        print("\n".join(message[start:]))
        print()
    print(f"{len(result.failures)} failures shown, {len(result.errors)} errors (expected 0 errors)")


if __name__ == "__main__":
    main()
