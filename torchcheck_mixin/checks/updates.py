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

Second looks, paid only when needed (see ``_second_looks``): a parameter whose first gradient is
exactly zero is re-tested after up to ``RETEST_STEPS`` private steps on a functional copy of the
parameters (zero-initialised partners: LoRA's B, zero-init residual branches and heads; in
snapshot mode with the user's per-parameter optimizer, its own steps on clones of the parameters
and of its state, so its hyper-parameters decide and weight decay alone never counts); a
float32 gradient at most ``NOISE_CANDIDATE`` of the largest is re-checked in float64 (rounding
noise of a mathematically zero gradient is ``rounding_noise``). Reentrant activation
checkpointing, which hides parameters from ``torch.autograd.grad``, is read through
``backward()``. A Parameter re-created by every forward fails; ``expect_frozen`` also demands
unchanged values and unchanged buffers of the modules it freezes; ``optimizer`` may be a list
or dict of optimizers (each parameter held by exactly one).

>>> report = check_parameters_updated(model, x)
>>> report.passed, report.not_updated
(True, [])
"""

import copy
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..core import calling, default_loss, distributed, trees
from ..core.default_loss import compute_loss
from ..core.parameters import ParamEntry, parameter_table, resolve_selection, walk
from ..core.reentrant import backward_grads as _backward_grads
from ..core.reentrant import has_reentrant_checkpoint as _has_reentrant_checkpoint
from ..core.reentrant import reentrant_checkpoint_error as _reentrant_checkpoint_error
from ..core.reductions import max_abs, max_abs_diff, sgd_step_change, to_host
from ..core.results import (
    CHANGED_WITHOUT_GRAD,
    FROZEN,
    NO_GRAD,
    NONFINITE,
    NOT_APPLIED,
    NOT_IN_OPTIMIZER,
    ROUNDING_NOISE,
    UPDATED,
    ZERO_GRAD,
    ParameterUpdateReport,
    make_record,
)
from ..core.state import ModelGuard, changed_buffers, check_not_inference_mode, replaced_parameters
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
        for _, opt in _labelled_optimizers(optimizer):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(opt).__name__} "
                                f"(a list or dict of optimizers is accepted too)")
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
                 replaced: Sequence[str] = (), caught: Sequence[warnings.WarningMessage] = (),
                 backward_used: bool = False):
        self.backward_used = backward_used
        self.errors: Tuple[str, ...] = ()  # from a copy's step: foreign moves, frozen state changed
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


def _gradient_trial(module, trainable, inputs, target, loss_fn, gen, device, guard, sharded,
                    rerun=lambda: None, gen_factory=None) -> _Trial:
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
        # Reentrant checkpointing runs its forward without a graph: the parameters inside are not
        # in the graph, so autograd.grad refuses (when it must pass through the checkpoint) or
        # returns None for them. Only when some gradient is None is the graph searched for such a
        # checkpoint (the passing path pays nothing); then the same forward runs again (same
        # seed: the first graph is consumed) and backward() gives the gradients (_backward_grads).
        try:
            grads = list(torch.autograd.grad(loss, trainable, allow_unused=True))
            if not (any(g is None for g in grads) and _has_reentrant_checkpoint(loss)):
                return _Trial(loss, grads, replaced=replaced, caught=caught)
        except RuntimeError as exc:
            if not _reentrant_checkpoint_error(exc):
                raise
        rerun()
        loss, replaced, caught = _forward_loss(module, inputs, target, loss_fn, gen_factory(), device, None)
        grads = _backward_grads(loss, trainable)
        return _Trial(loss, grads, replaced=replaced, caught=caught, backward_used=True)
    else:  # the forward built no graph (no_grad / detach inside forward): nothing is reachable
        grads = [None] * len(trainable)
    return _Trial(loss, grads, replaced=replaced, caught=caught)


def _labelled_optimizers(optimizer) -> List[Tuple[str, Any]]:
    """``[(label, optimizer)]`` for one optimizer, a list/tuple or a dict of them (GANs, heads)."""
    if isinstance(optimizer, dict):
        if not optimizer:
            raise ValueError("optimizer: an empty dict holds no optimizer")
        return [(str(k), v) for k, v in optimizer.items()]
    if isinstance(optimizer, (list, tuple)):
        if not optimizer:
            raise ValueError("optimizer: an empty list holds no optimizer")
        return [(f"optimizer[{i}]", v) for i, v in enumerate(optimizer)]
    return [(type(optimizer).__name__, optimizer)]


def _snapshot_trial(module, trainable, optimizer, inputs, target, loss_fn, gen, device, train,
                    frozen_expected=frozenset()) -> _Trial:
    """A real step of the user's optimizer(s), on copies of the model and the optimizers together."""
    labelled = _labelled_optimizers(optimizer)
    if len(labelled) > 1:
        return _snapshot_trial_several(module, trainable, labelled, inputs, target, loss_fn, gen, device, train,
                                       frozen_expected)
    optimizer = labelled[0][1]
    (twin, twin_opt), memo = calling.deep_copy((module, optimizer))
    twin.train(train)
    twin_trainable = [memo.get(id(p)) for p in trainable]
    with ModelGuard(twin) as twin_guard:  # the twin is thrown away; the guard reports replacements
        frozen_state = _twin_frozen_begin(twin, frozen_expected)
        loss, replaced, caught = _forward_loss(twin, inputs, target, loss_fn, gen, device, twin_guard)
        if loss.requires_grad:
            loss.backward()
        grads = [p.grad for p in twin_trainable]
        with torch.no_grad():
            calling.private_step(twin_opt)
        # Values are read after the step and before the guard puts anything back.
        new_values = [p.detach() for p in twin_trainable]
        grads = [g.detach() if g is not None else None for g in grads]
        frozen_errors = _twin_frozen_end(frozen_state, twin_guard, frozen_expected, train)
    t = _Trial(loss, grads, new_values=new_values, replaced=replaced, caught=caught)
    t.errors = frozen_errors
    return t


def _twin_frozen_begin(twin, frozen_expected):
    """The copy's view of what expect_frozen declares, read before its forward and step."""
    if not frozen_expected:
        return None
    modules = walk(twin)
    table = parameter_table(twin, modules)
    return modules, table, [(e, e.param._version) for e in table if e.name in frozen_expected]


def _twin_frozen_end(state, twin_guard, frozen_expected, train) -> Tuple[str, ...]:
    if state is None:
        return ()
    modules, table, versions = state
    return tuple(_frozen_changed(modules, table, frozen_expected, twin_guard, versions, train))


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
        labelled = _labelled_optimizers(optimizer)
        for label, opt in labelled:
            for i, group in enumerate(opt.param_groups):
                lr = group.get("lr")
                if isinstance(lr, (int, float)) and lr == 0:
                    where = "optimizer" if len(labelled) == 1 else f"optimizer {label!r}"
                    notes.append(f"{where} param_groups[{i}] has lr=0: no parameter in it can move")
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
    output: Any = None,
) -> ParameterUpdateReport:
    """Run one training-like pass and classify every parameter; the model is left untouched.

    Args:
        model: the module (``torch.compile``/DataParallel/DDP wrappers are unwrapped).
        inputs: ``Tensor`` -> ``model(x)``, tuple/list -> ``model(*x)``, dict -> ``model(**x)``, or a
            callable ``(generator) -> inputs`` for fresh synthetic data each trial.
        target: optional target (or callable); picks the default loss (see ``losses``).
        mode: ``"gradient"``, ``"snapshot"`` or ``"both"`` (see the module docstring).
        loss_fn: ``loss_fn(output, target)`` (``loss_fn(output)`` without target) -> 0-d tensor.
        optimizer: snapshot/both only: check this optimizer's real step (on copies); a list or dict
            of optimizers (GAN: generator and discriminator) steps each in turn: every trainable
            parameter must be held by exactly one, and each step must move only its own.
        allow_not_updated: names, globs, submodule names or modules that may stay unused for
            these inputs. An entry that matches nothing raises ``ValueError``.
        expect_frozen: the same kinds of entries for parameters that must be frozen
            (``requires_grad=False``); any other frozen parameter fails the check.
        seed, trials: the private random draws; updated in any trial counts as updated.
        atol: a gradient (or change) of at most ``atol`` counts as zero.
        train: run the forward in train mode (default) or eval mode.
        output: which tensor of a structured output the loss and the target apply to: a key
            (``"logits"``), an index (``0``) or a callable ``output -> tensor``. A missing key, an
            index out of range or a non-tensor pick is a ``ValueError`` naming ``output=``.

    Returns:
        ParameterUpdateReport with one record per unique parameter.

    Raises:
        TypeError, ValueError: on misuse (never for a model that fails the check).
    """
    check_not_inference_mode("check_parameters_updated")
    loss_fn = default_loss.with_selector(loss_fn, output)
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
    optimizer_errors: List[str] = []
    copy_reason = _copy_reason(optimizer) if optimizer is not None and mode != "gradient" else None
    if optimizer is not None:
        owners = _owners(optimizer)
        in_optimizer = [id(p) in owners for p in trainable]
        twice = [(e.name, owners[id(e.param)]) for e in trainable_entries if len(owners.get(id(e.param), ())) > 1]
        if twice:
            optimizer_errors.append(
                f"{len(twice)} parameter(s) held by more than one optimizer, each would step them: "
                + "; ".join(f"{n} ({', '.join(repr(o) for o in opts)})" for n, opts in twice[:5])
                + ("; ..." if len(twice) > 5 else ""))

    # The values a step is measured against: each rank's own shard for FSDP (whose gradients are
    # read as local shards too), the parameters themselves otherwise.
    current = [distributed.local_view(p) for p in trainable] if sharded else trainable
    maxg = change = None
    trials_out: List[_Trial] = []
    frozen_versions = [(e, e.param._version) for e in table if e.name in frozen_expected]
    # FSDP: fsdp_settled reshards (or, after an exception, resets) FSDP's state before the guard
    # restores the module dicts, so the guard finds the sharded parameters it saved.
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=inputs, modules=modules) as guard, \
            distributed.fsdp_settled(module):
        module.train(train)
        for trial in range(trials):
            guard.reseed(seed + trial)  # forward randomness (dropout), inside the forked RNG
            gen = calling.make_generator(seed + trial, device)
            if mode == "gradient" or optimizer is None or copy_reason is None:
                t = _gradient_trial(module, trainable, inputs, target, loss_fn, gen, device, guard, sharded,
                                    rerun=lambda s=seed + trial: guard.reseed(s),
                                    gen_factory=lambda s=seed + trial: calling.make_generator(s, device))
                if mode != "gradient" and optimizer is None:  # the private SGD step, without a copy
                    d = sgd_step_change(current, t.grads, PRIVATE_SGD_LR, device)
                    change = d if change is None else torch.maximum(change, d)
                elif mode != "gradient":  # the user's optimizer, replayed by shadows chunk by chunk
                    d = _shadow_change(optimizer, trainable, t.grads, device)
                    change = d if change is None else torch.maximum(change, d)
            else:
                t = _snapshot_trial(module, trainable, optimizer, inputs, target, loss_fn, gen, device, train,
                                    frozen_expected)
            g = max_abs(t.grads, device, missing=-1.0)  # -1: no gradient in this trial
            maxg = g if maxg is None else torch.maximum(maxg, g)
            if t.new_values is not None:
                d = max_abs_diff(t.new_values, current, device)
                change = d if change is None else torch.maximum(change, d)
            trials_out.append(t)
            t.grads = t.new_values = None  # free memory before the next trial
        recreated = _recreated_every_call(module, guard, trials_out, inputs, target, loss_fn, seed, device)
        frozen_errors = _frozen_changed(modules, table, frozen_expected, guard, frozen_versions, train)

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
    extra_notes: Tuple[str, ...] = ()
    resolution_notes: Tuple[str, ...] = ()
    if mode != "gradient" and optimizer is None:
        # The private step is p - 1.0 * g: a finite non-zero gradient that leaves p bit for bit
        # unchanged is below half an ulp of p everywhere (layer-scaled norms of ConvNeXt). That is
        # a limit of the probe, not of the model: the gradient says updated. With the user's
        # optimizer the same outcome stays not_applied (its real step does not move the weight).
        # Only in float32/float64 and only while other parameters do move: in half precision (and
        # when nothing moves: a loss scaled to nothing) real training loses the update too.
        moved = any(r.status == UPDATED for r in records)
        fine = [k for k, r in enumerate(records) if moved and r.status == NOT_APPLIED
                and r.dtype in ("torch.float32", "torch.float64")]
        for k in fine:
            records[k] = _replace(records[k], status=UPDATED)
        if fine:
            resolution_notes = (f"{len(fine)} parameter(s) updated with a private step below float32 resolution "
                            f"(non-zero gradient smaller than half an ulp of the weight, so the value did not "
                            f"change): {', '.join(records[k].name for k in fine[:5])}"
                            f"{', ...' if len(fine) > 5 else ''}",)
    if not sharded and not collective and trainable:
        shadow_opt = optimizer if mode != "gradient" and optimizer is not None and copy_reason is None else None
        records, extra_notes = _second_looks(module, table, modules, records, inputs, target, loss_fn, seed,
                                             device, train, atol, mode, shadow_opt)
    if any(t.backward_used for t in trials_out):
        extra_notes += ("reentrant activation checkpointing (use_reentrant=True) hides the parameters inside a "
                        "checkpoint from torch.autograd.grad: gradients were read through backward(), the user's "
                        ".grad saved and restored",)
    errors = list(_ddp_errors(model, trainable_entries, records, missing_h))
    errors += recreated + frozen_errors + optimizer_errors
    for e in (e for t in trials_out for e in t.errors):  # from the copies' steps
        if e not in errors:
            errors.append(e)
    if not table:
        errors.append(f"the model ({type(module).__name__}) has no parameters: nothing can update (layers kept in "
                      f"a plain list or dict are not registered)")
    elif not trainable and not {e.name for e in table} <= frozen_expected:
        # A frozen encoder whose every parameter expect_frozen names passes: frozen stays frozen.
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
        notes=_notes(records, trials_out, optimizer, lazy) + _ddp_notes(model, records) + extra_notes + resolution_notes,
        loss=loss_value,
        optimizer=(
            ", ".join(label if label == type(o).__name__ else f"{label}: {type(o).__name__}"
                      for label, o in _labelled_optimizers(optimizer)) if optimizer is not None
            else (f"private SGD(lr={PRIVATE_SGD_LR:g})" if mode != "gradient" else "")
        ),
        errors=tuple(errors),
        snapshot_path=("" if mode == "gradient" else "private step, no copy" if optimizer is None
                       else "shadow step over parameter chunks, no copy" if copy_reason is None
                       else f"copy of model and optimizer: {copy_reason}"),
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


# ------------------------------------------------------------------------------ second looks
#
# Three things an exactly-zero or a tiny first gradient can mean, told apart only on the failing
# or near-failing path (an ordinary model whose every gradient is clearly non-zero pays nothing):
# a zero-initialised partner (LoRA's B = 0, zero-init residual branches and heads), rounding noise
# of a mathematically zero gradient, or a dead parameter.

# After an exactly-zero first gradient, at most this many private steps are taken on a functional
# copy of the parameters: a zero-initialised partner needs one step (LoRA, zero-init heads), a
# chain of two zero-initialised factors needs two; three leaves one of margin.
RETEST_STEPS = 3
# The private steps move each element by RETEST_LR * sign(grad): the first step of Adam, scale
# free (lr=1 on raw gradients blows deep models up), large enough to leave float32 zero.
RETEST_LR = 1e-2
# A float32 gradient at most NOISE_CANDIDATE times the model's largest is re-checked in float64.
# Rounding noise of a mathematically zero gradient is a few float32 eps (1.2e-7) times the terms
# it cancels; 1e-5 leaves a factor ~100 of margin for accumulation over long reductions, and the
# re-check only runs when such a tensor exists.
NOISE_CANDIDATE = 1e-5
# The float64 verdict is relative to the parameter's OWN float32 gradient, not the model's largest:
# when the true gradient is zero, the float32 value is rounding noise of that parameter's backward
# path (~eps32 * the terms it cancels) and float64 repeats the same cancellation at eps64, so
# float64 / float32 ~ eps64 / eps32 = 2**-29 ~ 2e-9. A genuine gradient agrees in both (ratio ~1),
# however small it is next to other layers (vanishing gradients of a deep sigmoid net: 1e-18 of
# the largest, still genuine). 1e-5 sits between, with a factor ~1e4 of margin on the noise side.
NOISE_FLOAT64 = 1e-5

_FLOAT_LOW = (torch.float32, torch.float16, torch.bfloat16)


class _Inside(nn.Module):
    """Runs a function of the model while ``torch.func.functional_call`` has the stand-in
    tensors swapped in: forward, loss and gradients all happen inside, so an activation
    checkpoint that recomputes its forward during backward sees the stand-ins too."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn):
        return fn(self.model)


def _functional_grads(module, names, leaves, extra, inputs, target, loss_fn, seed, device, guard, cast=None):
    """Gradients of the loss w.r.t. ``leaves`` (tensors standing in for the named parameters).

    The module runs with ``leaves`` (and ``extra``: other parameters and buffers) swapped in by
    ``torch.func.functional_call``; the user's tensors, their version counters and ``.grad`` are
    never touched. Same seed as the first trial: same inputs, dropout and default-loss weights.
    Returns ``(grads, backward_used)``.
    """
    mapping = {"model." + n: t for n, t in zip(names, leaves)}
    mapping.update({"model." + n: t for n, t in extra.items()})

    def loss_of(model):
        guard.reseed(seed)
        gen = calling.make_generator(seed, device)
        x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
        y = calling.to_device(calling.resolve(target, gen, "target"), device) if target is not None else None
        if cast is not None:
            x, y = (trees.map_tensors(lambda t: t.to(cast) if t.is_floating_point() else t, v) for v in (x, y))
        return compute_loss(calling.call(model, x), y, loss_fn, gen)

    def grads_of(model):
        loss = loss_of(model)
        if not loss.requires_grad:
            return [None] * len(leaves), False
        try:
            grads = list(torch.autograd.grad(loss, leaves, allow_unused=True))
            if not (any(g is None for g in grads) and _has_reentrant_checkpoint(loss)):
                return grads, False
        except RuntimeError as exc:
            if not _reentrant_checkpoint_error(exc):
                raise
        return _backward_grads(loss_of(model), leaves), True  # the first graph is consumed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.func.functional_call(_Inside(module), mapping, (grads_of,))


def _common_depth(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        n += 1
    return n


def _retest_zero(module, entries, candidates, inputs, target, loss_fn, seed, device, guard, atol):
    """Parameters whose first gradient is exactly zero, re-tested after private steps.

    Returns ``({index: step}, {index: partner names}, backward_used)``: the step at which each
    candidate first got a non-zero finite gradient, and the zero-initialised trainable tensors
    (all-zero values, non-zero first gradient) nearest to it in the module tree.
    """
    names = [e.name for e in entries]
    with torch.no_grad():
        values = [e.param.detach().clone() for e in entries]
    at, partners, used_backward = {}, [], False
    pending = set(candidates)
    for step in range(1, RETEST_STEPS + 2):  # gradients after 0 .. RETEST_STEPS private steps
        leaves = [v.requires_grad_(True) for v in values]
        grads, bw = _functional_grads(module, names, leaves, {}, inputs, target, loss_fn, seed, device, guard)
        used_backward |= bw
        maxima = to_host(max_abs(grads, device, missing=-1.0))[0]
        if step == 1:
            zero_valued = to_host(max_abs(values, device))[0]
            partners = [i for i in range(len(entries))
                        if zero_valued[i] == 0 and maxima[i] > 0 and _finite(maxima[i])]
        else:
            for i in list(pending):
                if maxima[i] > atol and _finite(maxima[i]):
                    at[i] = step
                    pending.discard(i)
        if not pending or step == RETEST_STEPS + 1:
            break
        with torch.no_grad():
            values = [v.detach() - RETEST_LR * g.sgn() if g is not None and g.layout == torch.strided else v.detach()
                      for v, g in zip(values, grads)]
    return at, _nearest_partners(at, names, partners), used_backward


def _nearest_partners(at, names, partners):
    """For each re-tested parameter, the zero-initialised partners closest to it in the module tree
    (at most 3): what the report names as "downstream of ..."."""
    near = {}
    for i in at:
        if partners:
            best = max(_common_depth(names[i], names[j]) for j in partners)
            near[i] = tuple(names[j] for j in partners if _common_depth(names[i], names[j]) == best)[:3]
    return near


def _optimizer_label(optimizer) -> str:
    return ", ".join(sorted({type(o).__name__ for _, o in _labelled_optimizers(optimizer)}))


@torch.no_grad()
def _shadows_of(optimizer, values, index):
    """Shadow optimizers over ``values`` (clones standing in for the trainable parameters): per
    param group of the user's optimizer(s), the same class, the group's hyper-parameters and a
    copy of each parameter's state. The user's optimizers and their state are only read."""
    shadows = []
    for _, opt in _labelled_optimizers(optimizer):
        for group in opt.param_groups:
            held = [(p, index[id(p)]) for p in group["params"] if id(p) in index]
            if not held:
                continue
            hp = {k: v for k, v in group.items() if k != "params"}
            shadow = type(opt)([dict(hp, params=[values[i] for _, i in held])])
            for p, i in held:
                st = opt.state.get(p)
                if st:
                    shadow.state[values[i]] = _state_clone(st)
            shadows.append(shadow)
    return shadows


def _retest_zero_with_optimizer(module, entries, candidates, optimizer, inputs, target, loss_fn, seed, device,
                                guard, atol):
    """``_retest_zero`` for snapshot mode with the user's (per-parameter) optimizer.

    Up to ``RETEST_STEPS`` private steps of shadows of the user's optimizer (its class, each
    group's hyper-parameters, a copy of its state) over clones of the trainable parameters, each
    step from the gradients at the clones' current values. A candidate is updated at step N when
    its gradient at step N is non-zero and finite and that step moves it: an lr of 0 or an update
    below float resolution keeps it failing, and weight decay alone (zero gradient) never counts.
    The user's parameters, their ``.grad``, the optimizer and its state are never written.
    Returns what ``_retest_zero`` returns.
    """
    names = [e.name for e in entries]
    index = {id(e.param): i for i, e in enumerate(entries)}
    with torch.no_grad():
        values = [e.param.detach().clone().requires_grad_(True) for e in entries]
        zero_valued = to_host(max_abs(values, device))[0]
    shadows = _shadows_of(optimizer, values, index)
    at, partners, used_backward = {}, [], False
    pending = set(candidates)
    try:
        for step in range(1, RETEST_STEPS + 2):
            grads, bw = _functional_grads(module, names, values, {}, inputs, target, loss_fn, seed, device, guard)
            used_backward |= bw
            maxima = to_host(max_abs(grads, device, missing=-1.0))[0]
            if step == 1:
                partners = [i for i in range(len(entries))
                            if zero_valued[i] == 0 and maxima[i] > 0 and _finite(maxima[i])]
            live = [i for i in sorted(pending) if maxima[i] > atol and _finite(maxima[i])] if step > 1 else []
            if step == RETEST_STEPS + 1 and not live:
                break
            with torch.no_grad():
                before = [values[i].detach().clone() for i in live]
                for v, g in zip(values, grads):
                    v.grad = None if g is None else g.detach()
                for shadow in shadows:
                    calling.private_step(shadow)
                for v in values:
                    v.grad = None
                if live:
                    moved = to_host(max_abs_diff([values[i].detach() for i in live], before, device))[0]
                    for i, d in zip(live, moved):
                        if d > atol and _finite(d):
                            at[i] = step
                            pending.discard(i)
            if not pending or step == RETEST_STEPS + 1:
                break
    finally:
        for v in values:
            v.grad = None
        del shadows
    return at, _nearest_partners(at, names, partners), used_backward


def _float64_maxima(module, table, inputs, target, loss_fn, seed, device, guard):
    """``max |grad|`` of every trainable parameter with the model, inputs and target in float64."""
    trainable = [e for e in table if e.param.requires_grad]
    with torch.no_grad():
        leaves = [e.param.detach().to(torch.float64).requires_grad_(True) for e in trainable]
        extra = {e.name: e.param.detach().to(torch.float64) for e in table
                 if not e.param.requires_grad and e.param.is_floating_point()}
        extra.update({n: b.to(torch.float64) for n, b in module.named_buffers() if b.is_floating_point()})
    grads, _ = _functional_grads(module, [e.name for e in trainable], leaves, extra, inputs, target, loss_fn,
                                 seed, device, guard, cast=torch.float64)
    return to_host(max_abs(grads, device, missing=-1.0))[0]


def _second_looks(module, table, modules, records, inputs, target, loss_fn, seed, device, train, atol, mode,
                  optimizer=None):
    """Re-test exactly-zero first gradients and re-check tiny float32 gradients in float64.

    ``optimizer``: snapshot mode's shadow path (the user's per-parameter optimizer(s)); the
    re-test then takes that optimizer's steps on clones, so weight decay moving a zero-gradient
    parameter at step 1 (``changed_without_grad``) is re-tested too. Returns the new records and
    notes. Runs only when some record needs it, under its own guard.
    """
    trainable_entries = [e for e in table if e.param.requires_grad]
    pos = {r.name: i for i, r in enumerate(records)}
    index = {e.name: i for i, e in enumerate(trainable_entries)}
    retestable = (ZERO_GRAD, CHANGED_WITHOUT_GRAD) if optimizer is not None else (ZERO_GRAD,)
    zero = [index[r.name] for r in records if r.status in retestable and r.max_grad == 0.0 and r.name in index]
    finite = [r.max_grad for r in records if r.max_grad is not None and _finite(r.max_grad)]
    largest = max(finite, default=0.0)
    low = all(e.param.dtype in _FLOAT_LOW for e in trainable_entries)
    tiny = [index[r.name] for r in records
            if r.gradient_status == UPDATED and r.name in index and r.max_grad <= NOISE_CANDIDATE * largest]
    if not zero and not (tiny and low and largest > 0):
        return records, ()
    records = list(records)
    notes = []
    with torch.enable_grad(), ModelGuard(module, seed=seed, extra=inputs, modules=modules) as guard:
        module.train(train)
        if zero:
            if optimizer is not None:
                at, near, bw = _retest_zero_with_optimizer(module, trainable_entries, zero, optimizer, inputs, target,
                                                           loss_fn, seed, device, guard, atol)
            else:
                at, near, bw = _retest_zero(module, trainable_entries, zero, inputs, target, loss_fn, seed, device,
                                            guard, atol)
            later = []
            for i in zero:
                k = pos[trainable_entries[i].name]
                r = records[k]
                if i in at:
                    records[k] = _replace(r, status=UPDATED, gradient_status=UPDATED, updated_at_step=at[i],
                                          zero_partners=near.get(i, ()), retested_steps=at[i] - 1)
                    later.append(records[k])
                else:
                    records[k] = _replace(r, retested_steps=RETEST_STEPS)
            if later:
                shown = "; ".join(f"{r.name} at step {r.updated_at_step}" + (
                    f" (zero at step 1: downstream of zero-initialised {', '.join(r.zero_partners)})"
                    if r.zero_partners else " (zero at step 1)") for r in later[:5])
                more = f"; and {len(later) - 5} more" if len(later) > 5 else ""
                how = (f"steps of the user's optimizer ({_optimizer_label(optimizer)}: its hyper-parameters and a "
                       f"copy of its state) on clones of the parameters" if optimizer is not None
                       else f"sign-SGD steps (lr={RETEST_LR:g}) on a copy of the parameters")
                notes.append(f"{len(later)} parameter(s) with an exactly-zero first gradient updated after private "
                             f"{how}: {shown}{more}")
        if tiny and low and largest > 0:
            try:
                g64 = _float64_maxima(module, table, inputs, target, loss_fn, seed, device, guard)
            except Exception as exc:  # a forward that cannot run in float64: keep the float32 verdict
                notes.append(f"tiny gradients were not re-checked in float64 (the forward failed in float64: "
                             f"{type(exc).__name__}: {str(exc)[:80]})")
            else:
                for i in tiny:
                    k = pos[trainable_entries[i].name]
                    r = records[k]
                    if 0 <= g64[i] <= NOISE_FLOAT64 * r.max_grad:
                        records[k] = _replace(r, status=ROUNDING_NOISE, gradient_status=ROUNDING_NOISE,
                                              max_grad_float64=g64[i])
                    else:
                        records[k] = _replace(r, max_grad_float64=g64[i])
    return tuple(records), tuple(notes)


def _replace(record, **changes):
    fields = dict(record.__dict__)
    fields.update(changes)
    return make_record(**fields)


# ------------------------------------------------------------------ parameters made in forward


def _recreated_every_call(module, guard, trials_out, inputs, target, loss_fn, seed, device) -> List[str]:
    """Errors for Parameters that forward creates anew on every call (no optimizer can hold them).

    Only when the first forward replaced or created a Parameter: one more forward (no graph)
    tells a Parameter made once (lazy style, kept afterwards) from one made on every call. The
    forwards run on the guarded model, whose dicts the guard restores afterwards.
    """
    if not any(t.replaced for t in trials_out):
        return []
    names = {}
    for n, m in guard._walk:
        names.setdefault(id(m), n)

    def forward():
        guard.reseed(seed)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gen = calling.make_generator(seed, device)
            calling.call(module, calling.to_device(calling.resolve(inputs, gen, "inputs"), device))

    if not replaced_parameters(guard):  # the trials ran on a copy (snapshot with an optimizer)
        forward()
    live = [(m, dict(m._parameters)) for m, _, _ in guard._dicts if hasattr(m, "_parameters")]
    forward()
    again = []
    for m, before in live:
        prefix = names.get(id(m), "")
        for key, value in m._parameters.items():
            if value is not None and before.get(key) is not value:
                again.append(f"{prefix}.{key}" if prefix else key)
    if not again:
        return []
    return [f"forward creates new Parameter object(s) on every call ({', '.join(again[:5])}"
            f"{', ...' if len(again) > 5 else ''}): an optimizer built before training never holds them, "
            f"so they never train; create them once in __init__ and reuse them in forward"]


# -------------------------------------------------------------------------- frozen means frozen


def _frozen_changed(modules, table, frozen_expected, guard, frozen_versions, train) -> List[str]:
    """What ``expect_frozen`` declares must not change in a training pass: neither its values
    (an in-place write, e.g. ``Embedding(max_norm=...)``, moves the version counter) nor the
    buffers of the modules it freezes entirely (BatchNorm running statistics in train mode)."""
    if not frozen_expected:
        return []
    errors = []
    written = [e.name for e, v in frozen_versions if e.param._version != v]
    if written:
        errors.append(f"parameter(s) declared in expect_frozen were written in place during forward "
                      f"({', '.join(written[:5])}{', ...' if len(written) > 5 else ''}): frozen values must stay "
                      f"bit for bit (Embedding(max_norm=...) renormalises its weight in place; drop max_norm or "
                      f"renormalise a copy)")
    names = {id(e.param): e.name for e in table}

    def all_frozen(m) -> bool:
        ps = list(m.parameters())
        return bool(ps) and all(names.get(id(p)) in frozen_expected for p in ps)

    frozen_modules = [(n, m) for n, m in modules if all_frozen(m)]
    changed = []
    for n, m in frozen_modules:
        bufs = changed_buffers(guard, m)
        if bufs:
            changed.append((n, m, bufs))
    if changed:
        tops = sorted({n for n, _ in frozen_modules}, key=len)
        roots = []
        for n, _, _ in changed:
            top = next((t for t in tops if t == "" or n == t or n.startswith(t + ".")), n)
            if top not in roots:
                roots.append(top)
        shown = "; ".join(f"{n or '<root>'} ({type(m).__name__}): {', '.join(b)}" for n, m, b in changed[:5])
        more = f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
        fix = " ".join(f"model.{r}.eval()" if r else "model.eval()" for r in roots)
        errors.append(f"buffers of frozen module(s) changed during a {'train' if train else 'eval'}-mode forward "
                      f"({shown}{more}): a frozen module left in train mode still updates its running "
                      f"statistics; keep it in eval mode after model.train(): {fix}")
    return errors


# --------------------------------------------------------------------------- several optimizers


def _owners(optimizer) -> dict:
    """``{id(parameter): (labels of the optimizers holding it)}``."""
    owners: dict = {}
    for label, opt in _labelled_optimizers(optimizer):
        for p in {id(p): p for group in opt.param_groups for p in group["params"]}.values():
            owners.setdefault(id(p), ())
            owners[id(p)] += (label,)
    return owners


def _snapshot_trial_several(module, trainable, labelled, inputs, target, loss_fn, gen, device, train,
                            frozen_expected=frozenset()) -> _Trial:
    """One backward, then each copied optimizer's step in turn; a step that moves a parameter
    another optimizer holds (version counters, so no copy of values) is recorded as an error."""
    copied, memo = calling.deep_copy((module,) + tuple(opt for _, opt in labelled))
    twin, twin_opts = copied[0], copied[1:]
    twin.train(train)
    twin_trainable = [memo.get(id(p)) for p in trainable]
    names = {id(q): n for n, q in twin.named_parameters()}
    foreign = []
    with ModelGuard(twin) as twin_guard:
        frozen_state = _twin_frozen_begin(twin, frozen_expected)
        loss, replaced, caught = _forward_loss(twin, inputs, target, loss_fn, gen, device, twin_guard)
        if loss.requires_grad:
            loss.backward()
        grads = [p.grad for p in twin_trainable]
        for (label, _), opt in zip(labelled, twin_opts):
            own = {id(p) for group in opt.param_groups for p in group["params"]}
            before = [p._version for p in twin_trainable]
            with torch.no_grad():
                calling.private_step(opt)
            moved = [names.get(id(p), "?") for p, v in zip(twin_trainable, before)
                     if p._version != v and id(p) not in own]
            if moved:
                foreign.append(f"optimizer {label!r} moved parameter(s) it does not hold: {', '.join(moved[:5])}"
                               f"{', ...' if len(moved) > 5 else ''}")
        new_values = [p.detach() for p in twin_trainable]
        grads = [g.detach() if g is not None else None for g in grads]
        foreign += _twin_frozen_end(frozen_state, twin_guard, frozen_expected, train)
    t = _Trial(loss, grads, new_values=new_values, replaced=replaced, caught=caught)
    t.errors = tuple(foreign)
    return t


# ------------------------------------------------------------------------- the shadow optimizer
#
# Snapshot mode with the user's optimizer does not copy the model or the optimizer: the gradients
# come from one forward+backward on the (guarded) model, as in gradient mode, and each param group
# of the user's optimizer is replayed by a *shadow*: an optimizer of the same class, built with the
# group's hyper-parameters over clones of a chunk of its parameters (gradients attached) and clones
# of their optimizer state, stepped, compared with the parameters and dropped. The optimizers below
# update each parameter from its own gradient and state only, element for element, so a chunk's
# shadow step is bit for bit the real step of those parameters (tests/test_updates.py compares each
# with a real step on a copy). Any other optimizer (LBFGS needs a closure; global-norm or
# cross-parameter optimizers; subclasses and third-party classes whose constructor or step is
# unknown) takes the copy path: model and optimizer deep-copied together and the copy stepped.
_SHADOW_CLASSES = tuple(getattr(torch.optim, n) for n in (
    "SGD", "Adam", "AdamW", "RMSprop", "NAdam", "Adagrad", "Adamax", "RAdam", "Adadelta", "Rprop", "ASGD")
    if hasattr(torch.optim, n))
# Parameters are cloned at most this many elements at a time (plus their state): peak extra
# memory is one chunk of parameters and of state, whatever the model's size.
SHADOW_CHUNK = 1 << 22


def _copy_reason(optimizer) -> Optional[str]:
    """Why the copy path is needed for ``optimizer`` (one, a list or a dict), or None (shadow)."""
    for _, opt in _labelled_optimizers(optimizer):
        cls = type(opt)
        if cls not in _SHADOW_CLASSES:
            return (f"{cls.__name__} is not an optimizer a shadow step reproduces (only torch.optim's "
                    f"per-parameter optimizers are)")
    if any(len(v) > 1 for v in _owners(optimizer).values()):
        return "a parameter is held by more than one optimizer"
    seen = set()
    for _, opt in _labelled_optimizers(optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                if id(p) in seen:
                    return "a parameter appears twice in the optimizer's param_groups"
                seen.add(id(p))
    return None


def _state_clone(state: dict) -> dict:
    return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in state.items()}


@torch.no_grad()
def _shadow_change(optimizer, trainable, grads, device) -> torch.Tensor:
    """``max |step|`` per trainable parameter of the user's optimizer(s)' real step, by shadows.

    A parameter without gradient is skipped by every optimizer's step (change 0), as are those the
    optimizers do not hold. The user's parameters, gradients and optimizer state are only read.
    """
    index = {id(p): i for i, p in enumerate(trainable)}
    change = torch.zeros(len(trainable), dtype=torch.float64, device=device)
    pieces: List[torch.Tensor] = []
    where: List[int] = []

    def flush(cls, hp, state, chunk):
        params = [trainable[i] for i in chunk]
        clones = [p.detach().clone() for p in params]
        for c, p, i in zip(clones, params, chunk):
            c.requires_grad_(p.requires_grad)
            c.grad = grads[i]
        shadow = cls([dict(hp, params=clones)])
        for c, p in zip(clones, params):
            st = state.get(p)
            if st:
                shadow.state[c] = _state_clone(st)
        calling.private_step(shadow)
        for c in clones:
            c.grad = None
        del shadow
        # The clones are not needed after the step: the differences are taken in place.
        torch._foreach_sub_(clones, [p.detach() for p in params])
        pieces.append(max_abs(clones, device))
        where.extend(chunk)

    for _, opt in _labelled_optimizers(optimizer):
        cls = type(opt)
        for group in opt.param_groups:
            hp = {k: v for k, v in group.items() if k != "params"}
            chunk: List[int] = []
            size = 0
            for p in group["params"]:
                i = index.get(id(p))
                if i is None or grads[i] is None or p.numel() == 0:
                    continue
                chunk.append(i)
                size += p.numel()
                if size >= SHADOW_CHUNK:
                    flush(cls, hp, opt.state, chunk)
                    chunk, size = [], 0
            if chunk:
                flush(cls, hp, opt.state, chunk)
    if pieces:
        change[torch.tensor(where, device=device)] = torch.cat(pieces)
    return change
