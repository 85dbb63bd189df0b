"""The model assertions on every rank of a DistributedDataParallel job, launched with torchrun.

    torchrun --standalone --nproc_per_node=2 examples/distributed_torchrun.py
    torchrun --standalone --nproc_per_node=2 examples/distributed_torchrun.py --broken

Every rank joins a gloo process group (CPU, no GPU needed), builds the same model, wraps it in
DistributedDataParallel and runs the same unittest TestCase. The assertions combine their result
over the ranks (one collective per check), so every rank reaches the same verdict: a parameter
counts as updated if it is updated on any rank, and names carry no ``module.`` prefix. Rank 0
prints the unittest report; the exit status is non-zero on every rank if any check failed.
``--broken`` detaches the first layer, a bug that raises no error: every rank then fails
``test_every_parameter_updates`` (and the optimizer-step test) naming ``encoder.0.weight`` and
``encoder.0.bias``. Its training test fails too, because of what the failure message warns about:
with ``find_unused_parameters=False`` DDP's gradient bucket never completes, no gradient is
averaged, and the replicas silently diverge.

Every rank must run the same tests in the same order (the checks on a DDP model are collective);
unittest sorts test methods by name, so a TestCase run like this one is safe.
"""

import datetime
import os
import sys
import unittest

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from torchcheck_mixin import ModelTestCase

BROKEN = "--broken" in sys.argv


class Classifier(nn.Module):
    def __init__(self, broken=False):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.broken = broken

    def forward(self, x):
        h = self.encoder(x)
        if self.broken:
            h = h.detach()  # the bug: the encoder never learns
        return self.head(h)


class DistributedModelChecks(ModelTestCase):
    """Runs on every rank, on that rank's share of the data."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
        cls.model = DDP(Classifier(broken=BROKEN))
        g = torch.Generator().manual_seed(1000 + dist.get_rank())  # different data on every rank
        cls.x = torch.randn(16, 8, generator=g)
        cls.y = torch.randint(0, 4, (16,), generator=g)

    def test_every_parameter_updates(self):
        report = self.assertParametersUpdated(self.model, self.x, self.y)
        self.assertEqual(report.records[0].name, "encoder.0.weight")  # no "module." prefix

    def test_optimizer_step_moves_every_parameter(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.assertParametersUpdated(self.model, self.x, self.y, mode="both", optimizer=optimizer)

    def test_forward_shape_dtype_and_values(self):
        out = self.assertForwardShape(self.model, self.x, ("B", 4))
        self.assertDtype(out, torch.float32)
        self.assertAllFinite(out)
        self.assertAllFinite(self.model)

    def test_parameter_count(self):
        self.assertParameterCount(self.model, total=8 * 16 + 16 + 16 * 4 + 4)

    def test_training_goes_on_after_the_checks(self):
        # The checks ran on the inner module and left DDP's reducer alone: a real step still
        # averages the gradients over the ranks.
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        optimizer.zero_grad()
        nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        optimizer.step()
        w = self.model.module.head.weight.detach().clone()
        copies = [torch.empty_like(w) for _ in range(dist.get_world_size())]
        dist.all_gather(copies, w)
        for c in copies[1:]:
            self.assertTrue(torch.equal(c, copies[0]), "replicas diverged")


def run_checks() -> bool:
    """Run the TestCase on this rank; True if every rank passed."""
    rank = dist.get_rank()
    stream = sys.stderr if rank == 0 else open(os.devnull, "w")
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(DistributedModelChecks)
    result = unittest.TextTestRunner(stream=stream, verbosity=2 if rank == 0 else 0).run(suite)
    failed = torch.tensor([0 if result.wasSuccessful() else 1])
    dist.all_reduce(failed, op=dist.ReduceOp.MAX)
    print(f"rank {rank}/{dist.get_world_size()}: ran {result.testsRun} tests, "
          f"{len(result.failures)} failures, {len(result.errors)} errors", flush=True)
    return failed.item() == 0


def main() -> int:
    # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; a timeout bounds any hang.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    try:
        torch.set_num_threads(1)
        ok = run_checks()
    finally:
        dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
