"""Run the library's checks and the oracles on each model, in worker processes, and classify.

The parent hands one spec at a time to each worker (a ``python -m benchmarks.sweep.run --worker``
process reading JSON lines on stdin and answering one JSON line per model); a worker that passes
``--model-timeout`` is killed and replaced, and the model is recorded as timed out. Inside a
worker, every check and every oracle runs under ``signal.alarm(--check-timeout)``.

A row per (model, check): ``library`` (passed / failed / crash, with the first lines of the
message), ``oracle`` (passed / failed / None), ``verdict`` and ``cause``; invisibility is checked
after every library call and reported in ``invisibility`` (what changed) on the same row.
"""

import gc
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

AGREE, FALSE_ALARM, MISSED, CRASH, NA = "agree", "false alarm", "missed", "crash", "oracle n/a"
INVARIANT = "invariant broken"


class CheckTimeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise CheckTimeout()


def _limited(seconds: int, fn: Callable[[], Any]) -> Any:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)


def _lines(text: str, n: int = 3) -> str:
    return "\n".join(str(text).strip().splitlines()[:n])


# ------------------------------------------------------------------------------ one model (worker side)


def _library_checks(built, output) -> List[Tuple[str, Callable[[], Tuple[bool, str, Any]]]]:
    """(check, fn) pairs; fn -> (passed, message, result). The standard assertions, no allowances."""
    import torch

    import torchcheck_mixin as tc
    from torchcheck_mixin.core import messages

    m, x, t, loss_fn = built.model, built.inputs, built.target, built.loss_fn
    counts = None

    def update(mode):
        def fn():
            r = tc.check_parameters_updated(m, x, t, mode=mode, loss_fn=loss_fn)
            return r.passed, "" if r.passed else messages.describe_update(r), r
        return fn

    def value(check, describe, *args):
        def fn():
            r = check(*args)
            return r.passed, "" if r.passed else describe(r), r
        return fn

    def count():
        nonlocal counts
        params = list(m.parameters())
        counts = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
        r = tc.check_parameter_count(m, total=counts[0], trainable=counts[1])
        return r.passed, "" if r.passed else messages.describe_parameter_count(r), r

    return [
        ("update_gradient", update("gradient")),
        ("update_snapshot", update("snapshot")),
        ("state_dict", value(tc.check_state_dict_round_trip, messages.describe_state_dict_round_trip, m, x)),
        ("batch_independent", value(tc.check_batch_independent, messages.describe_batch_independent, m, x)),
        ("deterministic", value(tc.check_deterministic, messages.describe_deterministic, m, x)),
        ("dtype", value(tc.check_dtype, messages.describe_dtype, output, torch.float32)),
        ("parameter_count", count),
        ("finite_model", value(tc.check_all_finite, messages.describe_all_finite, m)),
        ("finite_output", value(tc.check_all_finite, messages.describe_all_finite, output)),
    ]


def _oracle_for(check: str, built, output) -> Callable[[], Dict[str, Any]]:
    from . import oracles

    return {
        "update_gradient": lambda: oracles.updates(built),
        "update_snapshot": lambda: oracles.updates(built),
        "state_dict": lambda: oracles.state_dict_round_trip(built),
        "batch_independent": lambda: oracles.batch_independent(built),
        "deterministic": lambda: oracles.deterministic(built),
        "dtype": lambda: oracles.dtype(output),
        "parameter_count": lambda: oracles.parameter_count(built.model),
        "finite_model": lambda: oracles.finite_model(built.model),
        "finite_output": lambda: oracles.finite_output(output),
    }[check]


def run_model(spec: Dict[str, Any], check_timeout: int) -> Dict[str, Any]:
    """Build one model, run every check and its oracle; a JSON-able record."""
    import torch

    from . import build as building
    from . import oracles

    started = time.time()
    record: Dict[str, Any] = {"id": building.spec_id(spec), "family": spec["family"], "name": spec["name"]}
    try:
        built = _limited(check_timeout, lambda: building.build(spec))
    except building.NotBuilt as e:
        return dict(record, built=False, reason=str(e), seconds=round(time.time() - started, 1))
    except CheckTimeout:
        return dict(record, built=False, reason=f"build or first forward over {check_timeout}s")
    except Exception as e:  # noqa: BLE001
        return dict(record, built=False, reason=f"build: {type(e).__name__}: {_lines(e, 1)[:200]}")
    record.update(built=True, info=built.info)
    with torch.no_grad():  # what a user passes to assertDtype / assertAllFinite: the eval output
        built.model.eval()
        output = building.call(built.model, built.inputs)
        built.model.train()
    rows = []
    oracle_cache: Dict[str, Dict[str, Any]] = {}
    for check, fn in _library_checks(built, output):
        row: Dict[str, Any] = {"check": check}
        before = oracles.snapshot(built.model)  # taken per call: the oracles in between draw from the RNG
        t0 = time.time()
        result = None
        try:
            passed, message, result = _limited(check_timeout, fn)
            row["library"] = "passed" if passed else "failed"
            row["message"] = _lines(message, 4)
        except CheckTimeout:
            row["library"], row["message"] = "crash", f"timeout: over {check_timeout}s"
        except Exception as e:  # noqa: BLE001
            row["library"] = "crash"
            row["message"] = f"{type(e).__name__}: {_lines(e, 2)}"
            row["where"] = _library_frame(e)
        row["library_s"] = round(time.time() - t0, 2)
        changed = oracles.changes(before, built.model)
        if changed:
            row["invisibility"] = changed[:5]
            oracles.restore(before, built.model)
        key = "updates" if check.startswith("update") else check
        if key not in oracle_cache:
            try:
                oracle_cache[key] = _limited(check_timeout, _oracle_for(check, built, output))
            except CheckTimeout:
                oracle_cache[key] = {"passed": None, "na": f"oracle over {check_timeout}s"}
            except Exception as e:  # noqa: BLE001
                oracle_cache[key] = {"passed": None, "na": f"oracle raised {type(e).__name__}: {_lines(e, 1)[:150]}"}
        oracle = oracle_cache[key]
        row["oracle"] = {k: v for k, v in oracle.items() if k != "first_move"}
        if check.startswith("update") and result is not None:
            row.update(_update_sets(result, dict(oracle), built))
            unchanged = oracle.get("unchanged") or []
            if len(unchanged) > 8:
                row["oracle"]["unchanged"] = unchanged[:8] + [f"... {len(unchanged) - 8} more"]
        rows.append(row)
        classify(row)
    del built, output
    gc.collect()
    record["checks"] = rows
    record["seconds"] = round(time.time() - started, 1)
    return record


def _library_frame(e: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "torchcheck_mixin" in f.filename]
    return f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def _update_sets(report, oracle: Dict[str, Any], built) -> Dict[str, Any]:
    """Parameter-level comparison: the library's not-updated set against the oracle's unchanged set."""
    from . import oracles

    if oracle.get("passed") is None:
        return {}
    lib = {r.name: r.status for r in report.records if not r.ok}
    unchanged = set(oracle["unchanged"])
    first_move = oracle.get("first_move", {})
    false = sorted(set(lib) - unchanged)
    missed = sorted(unchanged - {r.name for r in report.records if r.status != "updated"})
    out: Dict[str, Any] = {}
    if false:
        steps: Dict[str, int] = {}
        for n in false:
            steps[str(first_move.get(n, "?"))] = steps.get(str(first_move.get(n, "?")), 0) + 1
        statuses: Dict[str, int] = {}
        for n in false:
            statuses[lib[n]] = statuses.get(lib[n], 0) + 1
        out["false_params"] = {"count": len(false), "examples": false[:4], "first_move_step": steps,
                               "library_status": statuses}
        step1 = [n for n in false if first_move.get(n) == 1][:20]
        if step1:  # moved at once under AdamW: is the float32 gradient rounding noise (zero in float64)?
            rel = oracles.float64_gradient(built, step1)
            out["false_params"]["float64_zero"] = sum(1 for v in rel.values() if v < 1e-12)
    if missed:
        out["missed_params"] = {"count": len(missed), "examples": missed[:4]}
    return out


def classify(row: Dict[str, Any]) -> None:
    """Set ``verdict`` (agree / false alarm / missed / crash / oracle n/a) and ``cause``."""
    from .report import cause_of

    lib, oracle = row["library"], row["oracle"].get("passed")
    if lib == "crash":
        verdict = CRASH
    elif oracle is None:
        verdict = NA
    elif row.get("false_params"):
        verdict = FALSE_ALARM
    elif row.get("missed_params"):
        verdict = MISSED
    elif (lib == "passed") == bool(oracle):
        verdict = AGREE
    else:
        verdict = FALSE_ALARM if lib == "failed" else MISSED
    row["verdict"] = verdict
    row["cause"] = cause_of(row) if verdict in (CRASH, FALSE_ALARM, MISSED) else ""
    if row.get("invisibility"):
        row["invariant_cause"] = "invariant: " + ", ".join(sorted({c.split(":")[0] for c in row["invisibility"]}))


def worker_main(check_timeout: int) -> None:
    """Read specs (JSON lines) on stdin, answer one JSON line each on the original stdout."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever models print goes to stderr, never into the protocol
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            record = run_model(spec, check_timeout)
        except BaseException as e:  # noqa: BLE001 - the worker survives whatever one model does
            record = {"id": f"{spec['family']}/{spec['name']}", "family": spec["family"], "name": spec["name"],
                      "built": True, "harness_error": f"{type(e).__name__}: {_lines(e, 2)}", "checks": []}
        answer.write(json.dumps(record, default=str) + "\n")
        answer.flush()


# ------------------------------------------------------------------------------ parent


class Worker:
    def __init__(self, check_timeout: int, log) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.sweep.run", "--worker", str(check_timeout)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                     bufsize=1)
        self.spec: Optional[Dict[str, Any]] = None
        self.since = 0.0

    def send(self, spec: Dict[str, Any]) -> None:
        self.spec, self.since = spec, time.time()
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass


def run_all(specs: List[Dict[str, Any]], rows_path: str, workers: int, check_timeout: int, model_timeout: int,
            on_record: Callable[[Dict[str, Any]], None]) -> None:
    """Run every spec; append each record to ``rows_path`` (JSON lines) as soon as it arrives."""
    log = open(rows_path + ".log", "a")
    pending = list(specs)
    pool: List[Worker] = []
    out = open(rows_path, "a")

    def emit(record):
        out.write(json.dumps(record, default=str) + "\n")
        out.flush()
        on_record(record)

    def restart(w: Worker) -> Worker:
        w.kill()
        return Worker(check_timeout, log)

    for _ in range(max(1, min(workers, len(pending)))):
        pool.append(Worker(check_timeout, log))
    for w in pool:
        if pending:
            w.send(pending.pop(0))
    while any(w.spec for w in pool):
        busy = {w.proc.stdout.fileno(): w for w in pool if w.spec}
        ready, _, _ = select.select(list(busy), [], [], 5.0)
        for fd in ready:
            w = busy[fd]
            line = w.proc.stdout.readline()
            if line:
                emit(json.loads(line))
            else:  # the worker died (segfault, out of memory): record it, start another
                emit({"id": f"{w.spec['family']}/{w.spec['name']}", "family": w.spec["family"],
                      "name": w.spec["name"], "built": True, "checks": [],
                      "harness_error": f"worker died (exit code {w.proc.poll()})"})
                pool[pool.index(w)] = w = restart(w)
            w.spec = None
            if pending:
                w.send(pending.pop(0))
        for i, w in enumerate(pool):
            if w.spec and time.time() - w.since > model_timeout:
                emit({"id": f"{w.spec['family']}/{w.spec['name']}", "family": w.spec["family"],
                      "name": w.spec["name"], "built": True, "checks": [],
                      "harness_error": f"model timeout: over {model_timeout}s in all"})
                pool[i] = restart(w)
                if pending:
                    pool[i].send(pending.pop(0))
    for w in pool:
        w.proc.stdin.close()
        w.kill()
    out.close()
    log.close()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        worker_main(int(sys.argv[2]) if len(sys.argv) > 2 else 60)
