"""The model assertions on every rank of a DDP process group started with torch.multiprocessing.

    python examples/distributed_multiprocessing.py            # 2 ranks
    python examples/distributed_multiprocessing.py 3          # 3 ranks
    python examples/distributed_multiprocessing.py 2 --broken # a detached layer: every rank fails

No launcher: the script spawns the ranks itself (``torch.multiprocessing.spawn``), each joins a
gloo process group on a free loopback port (CPU, no GPU needed), wraps the same model in
DistributedDataParallel and runs the same unittest TestCase. The checks combine their results
over the ranks with one collective each, so every rank reaches the same verdict. The exit status
is non-zero if any rank failed; a process-group timeout bounds any hang.
"""

import datetime
import os
import socket
import sys
import unittest

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from torchcheck_mixin import ModelTestCase


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
    broken = False

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = DDP(Classifier(broken=cls.broken))
        g = torch.Generator().manual_seed(1000 + dist.get_rank())  # each rank its own data
        cls.x = torch.randn(16, 8, generator=g)
        cls.y = torch.randint(0, 4, (16,), generator=g)

    def test_every_parameter_updates(self):
        self.assertParametersUpdated(self.model, self.x, self.y)

    def test_optimizer_step_moves_every_parameter(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.assertParametersUpdated(self.model, self.x, self.y, mode="both", optimizer=optimizer)

    def test_forward_shape_dtype_and_values(self):
        out = self.assertForwardShape(self.model, self.x, ("B", 4))
        self.assertDtype(out, torch.float32)
        self.assertAllFinite(self.model)

    def test_parameter_count(self):
        self.assertParameterCount(self.model, total=8 * 16 + 16 + 16 * 4 + 4)


def rank_main(rank: int, world_size: int, port: int, broken: bool) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=120))
    try:
        torch.set_num_threads(1)
        DistributedModelChecks.broken = broken
        stream = sys.stderr if rank == 0 else open(os.devnull, "w")
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(DistributedModelChecks)
        result = unittest.TextTestRunner(stream=stream, verbosity=2 if rank == 0 else 0).run(suite)
        failed = torch.tensor([0 if result.wasSuccessful() else 1])
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        print(f"rank {rank}/{world_size}: ran {result.testsRun} tests, {len(result.failures)} failures, "
              f"{len(result.errors)} errors", flush=True)
    finally:
        dist.destroy_process_group()
    if failed.item():
        sys.exit(1)  # the parent's spawn() raises ProcessExitedException


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv) -> int:
    world_size = int(next((a for a in argv if a.isdigit()), 2))
    broken = "--broken" in argv
    try:
        mp.spawn(rank_main, args=(world_size, free_port(), broken), nprocs=world_size, join=True)
    except mp.ProcessExitedException as e:
        print(f"checks failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
