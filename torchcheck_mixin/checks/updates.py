"""Do the model's parameters update? The engine behind ``assertParametersUpdated``.

Two views of "updated", selected by ``mode``:

``"gradient"`` (Ludwig's check, done right)
    One forward and one ``torch.autograd.grad(loss, params, allow_unused=True)`` on the user's
    model, in train mode, inside the state guard. A trainable parameter is updated when its
    gradient exists, is finite and ``max |g| > atol``. No weights are copied and ``.grad`` is never
    read or written, so it costs one forward+backward.

``"snapshot"``
    One optimizer step, and a parameter is updated when its value changed (bitwise). With the
    user's ``optimizer``, the model and the optimizer are deep-copied together (so their
    references stay consistent) and the copy takes that optimizer's real step: this catches
    optimizer wiring bugs (a parameter missing from the optimizer, lr 0, an update below float
    resolution, weight decay moving a parameter that got no gradient). Without one, the step is a
    private plain SGD (no momentum or weight decay, which would move parameters whose gradient is
    zero), computed out of place as ``p.add(grad, alpha=-lr)``: element for element the values
    ``torch.optim.SGD`` would leave in a copy, without copying the model.

``"both"``
    The snapshot run, reporting both views per parameter.

Every parameter gets exactly one status (see ``results.STATUSES``). Random data (the weights of
the default loss, synthetic inputs from a callable, dropout inside the forward) comes from a
private generator seeded with ``seed + trial``; with ``trials=k`` a parameter counts as updated if
any of the k draws updates it (dead ReLUs and expert routing give seed-dependent zeros).

Cost: one forward+backward per trial (plus, in snapshot mode, one deep copy and one step), and
one device-to-host transfer for the whole check, however many parameters there are.

>>> report = check_parameters_updated(model, x)
>>> report.passed, report.not_updated
(True, [])
"""

import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..core import calling, distributed
from ..core.default_loss import compute_loss
from ..core.parameters import ParamEntry, parameter_table, resolve_selection, walk
from ..core.reductions import max_abs, max_abs_diff, sgd_step_change, to_host
from ..core.results import (
    CHANGED_WITHOUT_GRAD,
    FROZEN,
    NO_GRAD,
    NONFINITE,
    NOT_APPLIED,
    NOT_IN_OPTIMIZER,
    UPDATED,
    ZERO_GRAD,
    ParameterUpdateReport,
    make_record,
)
from ..core.state import ModelGuard, replaced_parameters
from ..core.summary import count_parameters
from ..core.warnings_ import StaleAllowanceWarning, warn_at_caller

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

MODES = ("gradient", "snapshot", "both")

# The private optimizer of snapshot mode: plain SGD, no momentum, no weight decay, so that only a
# non-zero gradient can move a parameter. lr=1 makes the step as visible as the gradient itself.
PRIVATE_SGD_LR = 1.0

_CHECKPOINT_HINTS = ("None of the inputs have requires_grad=True", "use_reentrant")


def _validate(model, inputs, mode, loss_fn, optimizer, seed, trials, atol, train) -> float:
    calling.check_module(model)
    calling.check_inputs(inputs)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
    calling.check_callable(loss_fn, "loss_fn")
    if optimizer is not None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        if mode == "gradient":
            raise ValueError(
                "optimizer is only used by mode='snapshot' or mode='both'; mode='gradient' never "
                "steps an optimizer"
            )
    calling.check_seed(seed, trials)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    return calling.check_tolerance(atol, "atol")


def _materialize_lazy(module: nn.Module, inputs: Any, seed: int, device: torch.device) -> nn.Module:
    """A copy of a lazy model with its parameters created by one forward (the user's stays lazy)."""
    module, _ = calling.deep_copy(module)
    with torch.no_grad(), ModelGuard(module, seed=seed, extra=inputs):
        gen = calling.make_generator(seed, device)
        calling.call(module, calling.to_device(calling.resolve(inputs, gen, "inputs"), device))
    return module


class _Trial:
    """What one forward pass produced: gradients (and, in snapshot mode, new values)."""

    def __init__(self, loss: torch.Tensor, grads: List[Optional[torch.Tensor]], new_values=None,
                 replaced: Sequence[str] = (), caught: Sequence[warnings.WarningMessage] = ()):
        self.loss = loss
        self.grads = grads
        self.new_values = new_values
        self.replaced = replaced
        self.caught = caught


def _forward_loss(module, inputs, target, loss_fn, gen, device, guard):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
        y = calling.to_device(calling.resolve(target, gen, "target"), device) if target is not None else None
        out = calling.call(module, x)
        replaced = replaced_parameters(guard) if guard is not None else []
        loss = compute_loss(out, y, loss_fn, gen)
    for w in caught:  # hand the user's warnings back, we only wanted to read them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loss, replaced, caught


def _gradient_trial(module, trainable, inputs, target, loss_fn, gen, device, guard, sharded) -> _Trial:
    # FSDP swaps unsharded Parameters into the module during forward: not a user's replacement.
    loss, replaced, caught = _forward_loss(module, inputs, target, loss_fn, gen, device, None if sharded else guard)
    if loss.requires_grad and trainable and sharded:
        # FSDP: autograd.grad cannot see sharded parameters (it returns None for all of them), so
        # backward() fills .grad (the guard saved the user's and put None); the local shards of
        # those gradients are read and .grad is cleared again.
        loss.backward()
        grads = [distributed.grad_to_local(p.grad) for p in trainable]
        for p in trainable:
            p.grad = None
    elif loss.requires_grad and trainable:
        grads = list(torch.autograd.grad(loss, trainable, allow_unused=True))
    else:  # the forward built no graph (no_grad / detach inside forward): nothing is reachable
        grads = [None] * len(trainable)
    return _Trial(loss, grads, replaced=replaced, caught=caught)


def _snapshot_trial(module, trainable, optimizer, inputs, target, loss_fn, gen, device, train) -> _Trial:
    """A real step of the user's optimizer, on copies of the model and the optimizer together."""
    (twin, twin_opt), memo = calling.deep_copy((module, optimizer))
    twin.train(train)
    twin_trainable = [memo.get(id(p)) for p in trainable]
    with ModelGuard(twin) as twin_guard:  # the twin is thrown away; the guard reports replacements
        loss, replaced, caught = _forward_loss(twin, inputs, target, loss_fn, gen, device, twin_guard)
        if loss.requires_grad:
            loss.backward()
        grads = [p.grad for p in twin_trainable]
        with torch.no_grad():
            calling.private_step(twin_opt)
        # Values are read after the step and before the guard puts anything back.
        new_values = [p.detach() for p in twin_trainable]
        grads = [g.detach() if g is not None else None for g in grads]
    return _Trial(loss, grads, new_values=new_values, replaced=replaced, caught=caught)


def _gradient_status(had_grad: bool, maxg: float, nonfinite: bool, atol: float) -> str:
    if not had_grad:
        return NO_GRAD
    if nonfinite:
        return NONFINITE
    return UPDATED if maxg > atol else ZERO_GRAD


def _snapshot_status(gstatus: str, change: float, change_nonfinite: bool, in_optimizer: bool, atol: float) -> str:
    if gstatus == NONFINITE or change_nonfinite:
        return NONFINITE
    if not in_optimizer:
        return NOT_IN_OPTIMIZER
    changed = change > atol
    if gstatus in (NO_GRAD, ZERO_GRAD):
        return CHANGED_WITHOUT_GRAD if changed else gstatus
    return UPDATED if changed else NOT_APPLIED


def _notes(records, trials_out: List[_Trial], optimizer, lazy) -> Tuple[str, ...]:
    notes = []
    replaced = sorted({n for t in trials_out for n in t.replaced})
    if replaced:
        notes.append(
            f"forward replaced or created Parameter(s) {', '.join(replaced)}: the original objects "
            f"(the ones an optimizer holds) were checked; create parameters in __init__, not in forward"
        )
    if lazy:
        notes.append(f"lazy modules {', '.join(lazy)} were materialised on a copy by one forward pass")
    statuses = {r.status for r in records}
    caught = [str(w.message) for t in trials_out for w in t.caught]
    if NO_GRAD in statuses and any(h in msg for msg in caught for h in _CHECKPOINT_HINTS):
        notes.append(
            "gradient checkpointing warned during forward: with use_reentrant=True (the old default) "
            "parameters inside a checkpoint get no gradient when no input requires grad; use "
            "torch.utils.checkpoint.checkpoint(..., use_reentrant=False) or enable_input_require_grads()"
        )
    half = [r.name for r in records if r.dtype in ("torch.float16", "torch.bfloat16")]
    if half and statuses & {ZERO_GRAD, NOT_APPLIED}:
        notes.append(
            "half-precision parameters: float16 gradients below about 6e-8 underflow to zero and "
            "updates below the weight's resolution (float16 eps 9.8e-4, bfloat16 7.8e-3 at 1.0) are "
            "lost; check in float32 or with a larger loss scale"
        )
    if optimizer is not None:
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if isinstance(lr, (int, float)) and lr == 0:
                notes.append(f"optimizer param_groups[{i}] has lr=0: no parameter in it can move")
    return tuple(notes)


def check_parameters_updated(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    mode: str = "gradient",
    loss_fn: Optional[Callable] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    allow_not_updated: Any = (),
    expect_frozen: Any = (),
    seed: int = 0,
    trials: int = 1,
    atol: float = 0.0,
    train: bool = True,
) -> ParameterUpdateReport:
    """Run one training-like pass and classify every parameter; the model is left untouched.

    Args:
        model: the module (``torch.compile``/DataParallel/DDP wrappers are unwrapped).
        inputs: ``Tensor`` -> ``model(x)``, tuple/list -> ``model(*x)``, dict -> ``model(**x)``, or a
            callable ``(generator) -> inputs`` for fresh synthetic data each trial.
        target: optional target (or callable); picks the default loss (see ``losses``).
        mode: ``"gradient"``, ``"snapshot"`` or ``"both"`` (see the module docstring).
        loss_fn: ``loss_fn(output, target)`` (``loss_fn(output)`` without target) -> 0-d tensor.
        optimizer: snapshot/both only: check this optimizer's real step (on copies).
        allow_not_updated: names, globs, submodule names or modules that may stay unused for
            these inputs. An entry that matches nothing raises ``ValueError``.
        expect_frozen: the same kinds of entries for parameters that must be frozen
            (``requires_grad=False``); any other frozen parameter fails the check.
        seed, trials: the private random draws; updated in any trial counts as updated.
        atol: a gradient (or change) of at most ``atol`` counts as zero.
        train: run the forward in train mode (default) or eval mode.

    Returns:
        ParameterUpdateReport with one record per unique parameter.

    Raises:
        TypeError, ValueError: on misuse (never for a model that fails the check).
    """
    atol = _validate(model, inputs, mode, loss_fn, optimizer, seed, trials, atol, train)
    module, _ = calling.unwrap(model)
    sharded = distributed.needs_backward_for_grads(module)
    # Under a process group the verdict is combined over ranks (one all-reduce), but only for
    # models that are distributed: a plain model checked on one rank must not wait for others.
    collective = distributed.is_distributed_active() and (distributed.is_ddp(model) or sharded)
    if sharded and optimizer is not None:
        raise ValueError(
            f"mode={mode!r} with optimizer= steps copies of the model and the optimizer, and FSDP does "
            f"not support deepcopy; check FSDP models without optimizer= (a private SGD step on each "
            f"rank's shards) or with mode='gradient'"
        )
    device = calling.model_device(module)
    modules = walk(module)
    lazy = calling.lazy_modules(module, modules)
    if lazy:
        if optimizer is not None:
            raise ValueError(
                f"the model has uninitialized lazy modules ({', '.join(lazy)}) and an optimizer was "
                f"given; run one forward pass before creating the optimizer"
            )
        module = _materialize_lazy(module, inputs, seed, device)
        modules = walk(module)
    table = parameter_table(module, modules)
    allowed, allowed_by_entry = resolve_selection(module, table, allow_not_updated, "allow_not_updated", modules)
    frozen_expected, _ = resolve_selection(module, table, expect_frozen, "expect_frozen", modules)
    trainable_entries = [e for e in table if e.param.requires_grad]
    trainable = [e.param for e in trainable_entries]
    in_optimizer = None
    if optimizer is not None:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        in_optimizer = [id(p) in held for p in trainable]

    # The values a step is measured against: each rank's own shard for FSDP (whose gradients are
    # read as local shards too), the parameters themselves otherwise.
    current = [distributed.local_view(p) for p in trainable] if sharded else trainable
    maxg = change = None
    trials_out: List[_Trial] = []
    # FSDP: fsdp_settled reshards (or, after an exception, resets) FSDP's state before the guard
    # restores the module dicts, so the guard finds the sharded parameters it saved.
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=inputs, modules=modules) as guard, \
            distributed.fsdp_settled(module):
        module.train(train)
        for trial in range(trials):
            guard.reseed(seed + trial)  # forward randomness (dropout), inside the forked RNG
            gen = calling.make_generator(seed + trial, device)
            if mode == "gradient" or optimizer is None:
                t = _gradient_trial(module, trainable, inputs, target, loss_fn, gen, device, guard, sharded)
                if mode != "gradient":  # the private SGD step, computed without a copy of the model
                    d = sgd_step_change(current, t.grads, PRIVATE_SGD_LR, device)
                    change = d if change is None else torch.maximum(change, d)
            else:
                t = _snapshot_trial(module, trainable, optimizer, inputs, target, loss_fn, gen, device, train)
            g = max_abs(t.grads, device, missing=-1.0)  # -1: no gradient in this trial
            maxg = g if maxg is None else torch.maximum(maxg, g)
            if t.new_values is not None:
                d = max_abs_diff(t.new_values, current, device)
                change = d if change is None else torch.maximum(change, d)
            trials_out.append(t)
            t.grads = t.new_values = None  # free memory before the next trial

    missing_somewhere = None
    if collective:
        maxg, change, missing_somewhere = _combine_across_ranks(maxg, change)
    loss = trials_out[0].loss.detach().reshape(1).to(device=device, dtype=torch.float64)
    host = to_host(*(v for v in (maxg, change, missing_somewhere, loss) if v is not None))  # one transfer
    maxg_h = host[0]
    change_h = host[1] if change is not None else None
    missing_h = host[-2] if missing_somewhere is not None else None
    loss_value = host[-1][0]

    records = []
    index = {id(p): i for i, p in enumerate(trainable)}
    for e in table:
        records.append(
            _record(e, index.get(id(e.param)), maxg_h, change_h, in_optimizer, atol, mode,
                    e.name in allowed, e.name in frozen_expected)
        )
    errors = list(_ddp_errors(model, trainable_entries, records, missing_h))
    if not table:
        errors.append(f"the model ({type(module).__name__}) has no parameters: nothing can update (layers kept in "
                      f"a plain list or dict are not registered)")
    elif not trainable:
        errors.append("the model has no trainable parameters (every parameter has requires_grad=False)")
    status = {r.name: r.status for r in records}
    stale = tuple(entry for entry, names in allowed_by_entry.items() if all(status[n] == UPDATED for n in names))
    report = ParameterUpdateReport(
        mode=mode,
        seed=seed,
        trials=trials,
        atol=atol,
        records=tuple(records),
        summary=count_parameters(module, table),
        model=type(module).__name__,
        stale_allowances=stale,
        notes=_notes(records, trials_out, optimizer, lazy) + _ddp_notes(model, records),
        loss=loss_value,
        optimizer=(
            type(optimizer).__name__ if optimizer is not None
            else (f"private SGD(lr={PRIVATE_SGD_LR:g})" if mode != "gradient" else "")
        ),
        errors=tuple(errors),
    )
    if report.stale_allowances:  # warned here, so check_* callers see it as assertion users do
        from ..core import messages

        warn_at_caller(messages.stale_warning(report), StaleAllowanceWarning)
    return report


def _ddp_notes(model, records) -> Tuple[str, ...]:
    ddp = distributed.find_ddp(model)
    if ddp is None:
        return ()
    unused = [r.name for r in records if r.status in (NO_GRAD,) and not r.allowed]
    if unused and not getattr(ddp, "find_unused_parameters", True):
        return (
            "DistributedDataParallel was built with find_unused_parameters=False: training this model "
            "raises 'Expected to have finished reduction in the prior iteration' at the second step "
            "(unused: " + ", ".join(unused[:5]) + ("..." if len(unused) > 5 else "") + ")",
        )
    return ()


def _ddp_errors(model, entries, records, missing_h) -> Tuple[str, ...]:
    """A parameter with a gradient on some ranks and none on others hangs DDP's own training
    when ``find_unused_parameters=False``: the ranks that used it wait in backward for the rest."""
    ddp = distributed.find_ddp(model)
    if missing_h is None or ddp is None or getattr(ddp, "find_unused_parameters", True):
        return ()
    status = {r.name: r.status for r in records}
    names = [e.name for e, m in zip(entries, missing_h) if m > 0 and status[e.name] == UPDATED]
    if not names:
        return ()
    return (
        f"{len(names)} parameter(s) get a gradient on some ranks and none on others ({', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''}) while DistributedDataParallel has find_unused_parameters=False: "
        f"training hangs in backward on the ranks that used them (build DDP with find_unused_parameters=True)",
    )


def _combine_across_ranks(maxg, change):
    """A parameter is updated if it is updated on any rank: one MAX all-reduce for the check.

    "No gradient" travels as -1, so MAX keeps a gradient seen on any rank; non-finite maxima
    travel as inf (``reduce_max_across_ranks`` maps NaN to +inf, which gloo's MAX keeps
    whatever the rank order) and read as non-finite on every rank. A third column says whether
    a parameter had no gradient on at least one rank (DDP without find_unused_parameters hangs
    on that).
    """
    missing = (maxg < 0).to(maxg.dtype)
    columns = [maxg, missing] + ([change] if change is not None else [])
    stats = distributed.reduce_max_across_ranks(torch.stack(columns, dim=1))
    return stats[:, 0], (stats[:, 2] if change is not None else None), stats[:, 1]


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _record(e: ParamEntry, i, maxg_h, change_h, in_optimizer, atol, mode, allowed, frozen_expected):
    p = e.param
    status = gstatus = FROZEN
    max_grad = d = None
    if i is not None:
        g = maxg_h[i]
        had = not g < 0  # -1 marks "no gradient in any trial"; NaN (non-finite) had one
        status = gstatus = _gradient_status(had, g, not _finite(g), atol)
        max_grad = g if had else None
        if mode != "gradient":
            d = change_h[i]
            status = _snapshot_status(gstatus, d, not _finite(d), in_optimizer is None or in_optimizer[i], atol)
    return make_record(
        name=e.name, aliases=e.aliases, shape=tuple(p.shape), numel=p.numel(), dtype=str(p.dtype), status=status,
        max_grad=max_grad, max_change=d, gradient_status=None if i is None else gstatus, allowed=allowed,
        expected_frozen=frozen_expected,
    )
