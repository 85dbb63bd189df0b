"""The model assertions on every rank of a DDP process group started with torch.multiprocessing.

    python examples/distributed_multiprocessing.py            # 2 ranks
    python examples/distributed_multiprocessing.py 3          # 3 ranks
    python examples/distributed_multiprocessing.py 2 --broken # a detached layer: every rank fails

No launcher: the script spawns the ranks itself (``torch.multiprocessing.spawn``), each joins a
gloo process group on a free loopback port (CPU, no GPU needed) and runs the TestCase of
``distributed_torchrun.py``: the same DDP model and checks, without torchrun. The checks combine
their results over the ranks with one collective each, so every rank reaches the same verdict.
The exit status is non-zero if any rank failed; a process-group timeout bounds any hang.
"""

import datetime
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distributed_torchrun import run_checks  # the model and the TestCase; it reads --broken too


def rank_main(rank: int, world_size: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=120))
    try:
        torch.set_num_threads(1)
        ok = run_checks()
    finally:
        dist.destroy_process_group()
    if not ok:
        sys.exit(1)  # the parent's spawn() raises ProcessExitedException


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv) -> int:
    world_size = int(next((a for a in argv if a.isdigit()), 2))
    try:
        mp.spawn(rank_main, args=(world_size, free_port()), nprocs=world_size, join=True)
    except mp.ProcessExitedException as e:
        print(f"checks failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
