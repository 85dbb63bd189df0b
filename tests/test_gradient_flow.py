"""The gradient-flow view of the update report: ``report.gradient_flow()`` and the chart printed in
a failure when gradients vanish or explode along the depth (first module's max |grad| below 1e-6 x
the last one's, or above 1e6 x)."""

import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelTestCase, check_parameters_updated
from torchcheck_mixin.core.results import (
    FROZEN, NO_GRAD, UPDATED, ZERO_GRAD, ParameterSummary, ParameterUpdateReport, make_record)


def sigmoid_mlp(depth, width=8, seed=0):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


class WithSpare(nn.Module):
    """A healthy MLP and a head forward never calls: fails the update check for another reason."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
        self.spare = nn.Linear(8, 1)

    def forward(self, x):
        return self.body(x)


class GradScale(nn.Module):
    """Identity forward, gradient times ``k`` backward (a gradient-reversal layer with lambda = -k)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k - x.detach() * (self.k - 1)


class Amplified(nn.Module):
    """Every block multiplies the gradient by 20: the input side gets over 1e6 x the head's gradient."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh(), GradScale(20.0)) for _ in range(7)])
        self.head = nn.Linear(8, 1)
        self.spare = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.blocks(x))


X = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))


def report_of(rows):
    """A report with hand-made records: (name, status, max_grad)."""
    records = tuple(make_record(name=n, aliases=(), shape=(2,), numel=2, dtype="float32", status=s, max_grad=g,
                                max_change=None, gradient_status=None, allowed=False, expected_frozen=False,
                                updated_at_step=None, zero_partners=(), retested_steps=0, max_grad_float64=None)
                    for n, s, g in rows)
    summary = ParameterSummary(parameters=len(rows), trainable_parameters=len(rows), frozen_parameters=0,
                               elements=2 * len(rows), trainable_elements=2 * len(rows), frozen_elements=0)
    return ParameterUpdateReport(mode="gradient", seed=0, trials=1, atol=0.0, records=records, summary=summary,
                                 model="Hand")


class GradientFlowText(unittest.TestCase):
    def test_format(self):
        report = report_of([
            ("enc.weight", UPDATED, 1e-3), ("enc.bias", UPDATED, 2e-1),  # collapsed to the larger
            ("mid.weight", NO_GRAD, None), ("gate.weight", ZERO_GRAD, 0.0),
            ("frozen.weight", FROZEN, None),  # frozen: not part of the flow
            ("head.weight", UPDATED, 30.0), ("scale", UPDATED, 5e-5),
        ])
        self.assertEqual(report.gradient_flow(), "\n".join([
            "gradient flow: max |grad| per module, log10 scale, registration order (input side first)",
            "  enc     2.00e-01  |#####",  # one # per decade above 1e-5 (the smallest)
            "  mid         None  | (no gradient)",
            "  gate           0  | (zero)",
            "  head    3.00e+01  |#######",
            "  (root)  5.00e-05  |#",
        ]))
        by_parameter = report.gradient_flow(by="parameter").split("\n")
        self.assertEqual(by_parameter[0], "gradient flow: max |grad| per parameter, log10 scale, "
                                          "registration order (input side first)")
        self.assertEqual(by_parameter[1:3], ["  enc.weight   1.00e-03  |###", "  enc.bias     2.00e-01  |#####"])
        self.assertEqual(len(by_parameter), 7)  # head + 6 trainable tensors
        with self.assertRaisesRegex(ValueError, "by must be 'module' or 'parameter'"):
            report.gradient_flow(by="layer")

    def test_rule(self):
        self.assertEqual(report_of([("a.w", UPDATED, 1e-9), ("b.w", UPDATED, 1e-2)]).gradient_trend, "vanishing")
        self.assertEqual(report_of([("a.w", UPDATED, 1e4), ("b.w", UPDATED, 1e-3)]).gradient_trend, "exploding")
        self.assertEqual(report_of([("a.w", UPDATED, 1e-7), ("b.w", UPDATED, 1e-2)]).gradient_trend, "")
        # zero and None gradients are other statuses, not a trend; one module is no depth
        self.assertEqual(report_of([("a.w", ZERO_GRAD, 0.0), ("b.w", UPDATED, 1e-2)]).gradient_trend, "")
        self.assertEqual(report_of([("a.w", NO_GRAD, None), ("b.w", UPDATED, 1e-2)]).gradient_trend, "")

    def test_wide_span_is_scaled_to_the_width(self):
        report = report_of([(f"l{i}.w", UPDATED, 10.0 ** (-3 * i)) for i in range(30)])
        bars = [line.split("|", 1)[1] for line in report.gradient_flow().split("\n")[1:]]
        self.assertEqual(len(bars), 30)
        self.assertLessEqual(max(len(b) for b in bars), 40)
        self.assertEqual(min(len(b) for b in bars), 1)


class GradientFlowInFailures(ModelTestCase):
    def test_vanishing_sigmoid_mlp_shows_the_chart(self):
        model = sigmoid_mlp(20)
        # Its input-side gradients are ~1e-18 of the last layer's but genuine (they agree in
        # float64): it trains, slowly, and passes.
        self.assertParametersUpdated(model, X)
        # When such a model fails for another reason (a parameter forward never uses), the
        # message shows the chart.
        model.register_parameter("unused", nn.Parameter(torch.zeros(3)))
        with self.assertRaises(AssertionError) as cm:
            self.assertParametersUpdated(model, X)
        text = str(cm.exception)
        self.assertIn("gradients vanish towards the input: max |grad| of 0 (", text)
        self.assertIn("gradient flow: max |grad| per module, log10 scale", text)
        chart = [line for line in text.split("\n") if "|#" in line]
        self.assertEqual(len(chart), 21)  # one row per Linear
        self.assertTrue(chart[0].split()[0] == "0" and chart[-1].split()[0] == "40", chart)
        self.assertLess(len(chart[0]), len(chart[-1]))  # short bar at the input, long at the loss
        self.assertEqual(check_parameters_updated(model, X).gradient_trend, "vanishing")

    def test_exploding_gradients_show_the_chart(self):
        with self.assertRaises(AssertionError) as cm:
            self.assertParametersUpdated(Amplified(), X)
        self.assertIn("gradients explode towards the input", str(cm.exception))
        self.assertIn("gradient flow:", str(cm.exception))

    def test_healthy_mlp_failing_otherwise_has_no_chart(self):
        with self.assertRaises(AssertionError) as cm:
            self.assertParametersUpdated(WithSpare(), X)
        text = str(cm.exception)
        self.assertIn("spare.weight", text)
        self.assertNotIn("gradient flow", text)
        self.assertNotIn("gradients vanish", text)
        report = check_parameters_updated(WithSpare(), X)
        self.assertEqual(report.gradient_trend, "")
        self.assertIn("  body.0  ", report.gradient_flow())  # available on demand all the same


if __name__ == "__main__":
    unittest.main()
