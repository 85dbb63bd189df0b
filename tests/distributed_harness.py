"""Run a function on every rank of a real (gloo, CPU) process group.

    from distributed_harness import run_in_process_group

    def _body(rank, world_size, scale):          # module-level => picklable
        t = torch.ones(1) * (rank + 1) * scale
        torch.distributed.all_reduce(t)
        return t.item()

    results = run_in_process_group(_body, 2, 30, 10.0)   # -> [30.0, 30.0]

* ``world_size`` child processes are started with the ``spawn`` start method
  (via ``torch.multiprocessing``), each calls
  ``init_process_group(backend, init_method="tcp://127.0.0.1:<free port>")``,
  runs ``fn(rank, world_size, *args, **kwargs)`` and sends back its return
  value (must be picklable) or the formatted traceback.
* The call returns the list of return values indexed by rank, or raises
  :class:`ProcessGroupFailure` (an ``AssertionError``, so unittest reports a
  failure) if any rank raised, died (segfault, abort, ``os._exit``) or sent
  something unpicklable, and :class:`ProcessGroupTimeout` if not every rank
  finished within ``timeout`` seconds.  In both cases all children are
  terminated (SIGTERM, then SIGKILL) before raising, so a deadlocked
  collective never hangs the test run.  When one rank fails, the others get
  ``grace`` seconds to report (they are often stuck in a collective).
* The process-group timeout given to ``init_process_group`` defaults to
  ``timeout`` so stuck collectives also error out on their own, and children
  are daemonic so they die with the parent.
* ``fn`` must be importable by the children: a module-level function of an
  importable module (not a lambda / closure / function defined in
  ``__main__`` of ``python -c``).  Children get the parent's ``sys.path``.
* Each child runs with ``torch.set_num_threads(threads)`` (default 1) to
  avoid oversubscribing small CI machines.
* If the chosen port is taken between probing and binding (a rare race), the
  whole group is restarted on a new port (``port_retries`` times).
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import socket
import time
import traceback
from multiprocessing.connection import wait as _mp_wait
from typing import Any, Callable, List, Optional

import torch.multiprocessing as mp

__all__ = [
    "run_in_process_group",
    "ProcessGroupFailure",
    "ProcessGroupTimeout",
    "find_free_port",
]


class ProcessGroupFailure(AssertionError):
    """A rank raised, crashed or returned something unpicklable.

    ``errors`` maps rank -> error text; ``results`` holds the return values of
    ranks that finished (``None`` elsewhere)."""

    def __init__(self, message: str, errors=None, results=None):
        super().__init__(message)
        self.errors = dict(errors or {})
        self.results = list(results or [])


class ProcessGroupTimeout(ProcessGroupFailure):
    """Not every rank finished within the time limit (deadlock?)."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_ADDR_IN_USE = ("address already in use", "EADDRINUSE", "errno: 98")


def _child(rank, world_size, port, backend, pg_timeout, threads, fn, args, kwargs, conn):
    payload = None
    try:
        import torch
        import torch.distributed as dist

        if threads:
            torch.set_num_threads(threads)
        dist.init_process_group(
            backend,
            init_method="tcp://127.0.0.1:%d" % port,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=pg_timeout),
        )
        try:
            result = fn(rank, world_size, *args, **kwargs)
        finally:
            try:
                dist.destroy_process_group()
            except Exception:
                pass
        payload = ("ok", result)
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        payload = ("error", "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    try:
        conn.send(payload)
    except Exception as e:  # unpicklable result
        conn.send(("error", "rank %d: could not send its result to the parent: %r" % (rank, e)))
    finally:
        conn.close()


def _stop(procs, wait_s: float = 2.0) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5.0)


@contextlib.contextmanager
def _children_allowed():
    """Let a daemonic process start the ranks.

    unittest-parallel (a ``multiprocessing.Pool``) runs tests in daemonic workers, and
    ``Process.start`` refuses to start children there ("daemonic processes are not allowed to
    have children").  The flag protects against orphans; the ranks started here are daemonic
    themselves and are always terminated by :func:`_stop` before the call returns, so it is
    lifted for the duration of the launch and put back afterwards.
    """
    proc = multiprocessing.current_process()
    daemonic = proc.daemon
    if daemonic:
        proc.daemon = False
    try:
        yield
    finally:
        if daemonic:
            proc.daemon = True


def _run_once(fn, world_size, timeout, args, kwargs, backend, pg_timeout, threads, grace):
    with _children_allowed():
        return _run_once_unguarded(fn, world_size, timeout, args, kwargs, backend, pg_timeout, threads, grace)


def _run_once_unguarded(fn, world_size, timeout, args, kwargs, backend, pg_timeout, threads, grace):
    ctx = mp.get_context("spawn")
    port = find_free_port()
    procs, conns = [], []
    try:
        for rank in range(world_size):
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_child,
                args=(rank, world_size, port, backend, pg_timeout, threads, fn, args, kwargs, w),
                daemon=True,
                name="pg-rank%d" % rank,
            )
            p.start()
            w.close()  # parent keeps only the read end -> EOF if the child dies
            procs.append(p)
            conns.append(r)

        results: List[Any] = [None] * world_size
        errors = {}
        done = set()
        deadline = time.monotonic() + timeout
        first_error_at: Optional[float] = None
        by_conn = {c: i for i, c in enumerate(conns)}
        while len(done) < world_size:
            now = time.monotonic()
            limit = deadline if first_error_at is None else min(deadline, first_error_at + grace)
            if now >= limit:
                break
            ready = _mp_wait([c for i, c in enumerate(conns) if i not in done], timeout=limit - now)
            for c in ready:
                rank = by_conn[c]
                try:
                    status, value = c.recv()
                except (EOFError, OSError):
                    procs[rank].join(1.0)
                    status, value = "error", "rank %d died without reporting (exit code %r)" % (
                        rank,
                        procs[rank].exitcode,
                    )
                except Exception as e:
                    status, value = "error", "rank %d: result could not be unpickled: %r" % (rank, e)
                done.add(rank)
                if status == "ok":
                    results[rank] = value
                else:
                    errors[rank] = value
                    if first_error_at is None:
                        first_error_at = time.monotonic()
        missing = [r for r in range(world_size) if r not in done]
    finally:
        _stop(procs)
        for c in conns:
            c.close()

    if errors:
        text = "\n".join("---- rank %d ----\n%s" % (r, errors[r].rstrip()) for r in sorted(errors))
        if missing:
            text += "\n---- ranks %s did not finish (killed) ----" % missing
        raise ProcessGroupFailure(
            "%d of %d ranks failed:\n%s" % (len(errors), world_size, text), errors, results
        )
    if missing:
        raise ProcessGroupTimeout(
            "ranks %s did not finish within %.1f s (deadlock?); all ranks were killed"
            % (missing, timeout),
            {r: "timeout" for r in missing},
            results,
        )
    return results


def run_in_process_group(
    fn: Callable[..., Any],
    world_size: int = 2,
    timeout: float = 60,
    *args: Any,
    backend: str = "gloo",
    pg_timeout: Optional[float] = None,
    threads: int = 1,
    grace: float = 5.0,
    port_retries: int = 2,
    **kwargs: Any,
) -> List[Any]:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on ``world_size`` spawned
    processes joined in a ``backend`` process group on 127.0.0.1 and return
    the per-rank results (list indexed by rank).

    Raises :class:`ProcessGroupFailure` / :class:`ProcessGroupTimeout` (both
    ``AssertionError``) as described in the module docstring.  ``timeout``
    bounds the whole call including interpreter start-up and ``import
    torch`` in the children (~2-3 s each on a 2-core machine).
    """
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    pg_timeout = float(timeout if pg_timeout is None else pg_timeout)
    for attempt in range(port_retries + 1):
        try:
            return _run_once(fn, world_size, timeout, args, kwargs, backend, pg_timeout, threads, grace)
        except ProcessGroupFailure as e:
            port_clash = any(
                "init_process_group" in t and any(m in t for m in _ADDR_IN_USE)
                for t in e.errors.values()
            )
            if not port_clash or attempt == port_retries:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
