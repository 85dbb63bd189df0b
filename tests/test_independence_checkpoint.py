"""assertBatchIndependent on models with reentrant activation checkpointing (use_reentrant=True).

A reentrant checkpoint refuses ``torch.autograd.grad``; the floating-input probe then reads the
input gradients through ``backward()`` and puts back every ``.grad`` it touched (parameters
inside and outside the checkpoint, the user's inputs).
"""

import unittest
import warnings

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from torchcheck_mixin import ModelTestCase, check_batch_independent


class CheckpointedMLP(nn.Module):
    def __init__(self, mix=False, closure=False):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)
        self.gate = nn.Parameter(torch.ones(()))
        self.mix = mix
        self.closure = closure

    def _inner(self, h):
        h = self.block(h)
        if self.mix:  # the bug: normalise over the batch inside the checkpoint
            h = h - h.mean(dim=0, keepdim=True)
        return h

    def forward(self, x):
        if self.closure:  # the input reaches the checkpoint only through a closure: invisible to autograd.grad
            h = checkpoint(lambda g: g * self._inner(self.inp(x)), self.gate, use_reentrant=True)
        else:
            h = checkpoint(self._inner, self.inp(x), use_reentrant=True)
        return self.head(h)


def inputs():
    return torch.randn(5, 6, generator=torch.Generator().manual_seed(0))


class ReentrantCheckpoint(ModelTestCase):
    def setUp(self):
        # torch warns in reentrant checkpoints whose inputs do not require grad: the model's warning.
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        warnings.filterwarnings("ignore", message="None of the inputs have requires_grad", category=UserWarning)
        torch.manual_seed(0)

    def test_correct_model_passes(self):
        self.assertBatchIndependent(CheckpointedMLP(), inputs())

    def test_mixing_model_fails(self):
        with self.assertRaises(self.failureException) as ctx:
            self.assertBatchIndependent(CheckpointedMLP(mix=True), inputs())
        self.assertIn("Samples of a batch interact", str(ctx.exception))

    def test_closure_input(self):
        self.assertBatchIndependent(CheckpointedMLP(closure=True), inputs())
        with self.assertRaises(self.failureException):
            self.assertBatchIndependent(CheckpointedMLP(mix=True, closure=True), inputs())

    def test_grads_are_put_back(self):
        model = CheckpointedMLP()
        sentinels = {n: torch.full_like(p, 7.0) for n, p in model.named_parameters()}
        for n, p in model.named_parameters():
            p.grad = sentinels[n]
        model.block[0].bias.grad = None
        x = inputs().requires_grad_(True)
        result = check_batch_independent(model, x)
        self.assertTrue(result.passed)
        self.assertIsNone(x.grad)
        self.assertIsNone(model.block[0].bias.grad)
        for n, p in model.named_parameters():
            if n != "block.0.bias":  # the rest keep the very same .grad objects, values untouched
                self.assertIs(p.grad, sentinels[n], n)
                self.assertTrue(torch.equal(p.grad, torch.full_like(p, 7.0)), n)


if __name__ == "__main__":
    unittest.main()
