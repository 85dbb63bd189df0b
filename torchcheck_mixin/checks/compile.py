"""torch.compile parity: a compiled copy computes what the eager model computes.

Two deep copies run with the same inputs and the same seeded loss (``loss_fn``, the default loss
for ``target``, or a fixed random-weight sum): one eagerly, one through ``torch.compile(copy,
backend=backend)`` (``"inductor"`` by default, what users run; ``"aot_eager"`` traces the same
graphs with eager kernels and is much faster, for unit tests). Outputs and every parameter
gradient must agree within ``atol + rtol * max|eager|`` (``rtol`` 1e-4 for float32). On failure the
first module (backward order) whose gradients diverge is named: inductor fuses and reorders
reductions, so an ill-conditioned formula (``E[x^2] - E[x]^2``, a hand-written logsumexp) gives
different numbers; ``torch.var`` / ``torch.logsumexp`` are stable.

``check_graph_breaks=True``: ``torch._dynamo.explain`` must report no graph break (each reason is
listed). ``dynamic_shapes``: further inputs (other batch sizes, lengths) run through the same
compiled copy; each must match eager (forward) and must not trigger a recompile.

Where compilation is unavailable (dynamo unsupported on this platform or Python, a backend or C++
compiler failure) the result has ``skipped_reason`` and the assertion skips; an error while
tracing the user's code (dynamo cannot handle it) is a failure. ``torch._dynamo.reset()`` runs
afterwards so no compiled state remains (this also drops caches of the user's own compiled
functions).

Cost: one eager and one compiled forward+backward plus the compilation (inductor on CPU: seconds
to tens of seconds for a first compile); ``explain`` traces once more; each dynamic input one
forward of each.

Bounded cost, measured (benchmarks/equivalence_cost.py, 5-layer MLP, ``backend="aot_eager"``, one
thread, shared machine): 205 ms against 190 ms for a bare compile and one compiled step (1.1x: the
compile dominates).
"""

from typing import Any, Callable, List, Optional, Sequence

import warnings
import torch
from torch import nn

from ..core import default_loss as _dl
from ..core import calling, divergence, trees
from ..core.default_loss import compute_loss
from ..core.results import EquivalenceResult
from ..core.state import cuda_devices, rng_guard

__unittest = True


def _unavailable(exc: BaseException) -> Optional[str]:
    """A reason to skip when ``exc`` says the compiler, not the user's code, failed."""
    import torch._dynamo.exc as dexc

    kinds = [dexc.BackendCompilerFailed]
    try:
        from torch._inductor import exc as iexc

        kinds += [iexc.CppCompileError, iexc.InductorError]
    except ImportError:  # pragma: no cover
        pass
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, tuple(kinds)) or type(e).__name__ in ("CppCompileError", "InductorError"):
            root = chain[-1]
            first = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
            return f"torch.compile is unavailable here ({type(e).__name__}): {type(root).__name__}: {first[:300]}"
    return None


def check_compile_parity(model: nn.Module, inputs: Any, target: Any = None, *, loss_fn: Optional[Callable] = None,
                         rtol: Optional[float] = None, atol: Optional[float] = None, backend: Any = "inductor",
                         check_graph_breaks: bool = False, dynamic_shapes: Optional[Sequence[Any]] = None,
                         train: bool = False, seed: int = 0, output: Any = None) -> EquivalenceResult:
    calling.check_module(model)
    calling.check_inputs(inputs)
    calling.check_callable(loss_fn, "loss_fn")
    loss_fn = _dl.with_selector(loss_fn, output)
    if not (isinstance(backend, str) or callable(backend)):
        raise TypeError(f"backend must be a torch.compile backend name or callable, got {type(backend).__name__}")
    if dynamic_shapes is not None:
        if not isinstance(dynamic_shapes, (list, tuple)):
            raise TypeError(f"dynamic_shapes must be a list of further inputs, got {type(dynamic_shapes).__name__}")
        for i, extra in enumerate(dynamic_shapes):
            calling.check_inputs(extra, f"dynamic_shapes[{i}]")
    rtol = None if rtol is None else calling.check_tolerance(rtol, "rtol")
    atol = 0.0 if atol is None else calling.check_tolerance(atol, "atol")
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return EquivalenceResult("compile", 0, (), skipped_reason="torch.compile (dynamo) is not supported on this "
                                                                  "platform / Python version")
    root, _ = calling.unwrap(model)
    device = calling.model_device(root)
    graphs: List[int] = []
    real = torch._dynamo.lookup_backend(backend) if isinstance(backend, str) else backend

    def counting(gm: Any, example_inputs: Any) -> Any:
        graphs.append(len(gm.graph.nodes))
        return real(gm, example_inputs)

    lines: List[str] = []
    notes: List[str] = []
    cpu_rng = torch.get_rng_state()  # dynamo's first compile draws from it outside any fork
    try:
        with rng_guard(cuda_devices(list(root.parameters())), seed):
            gen = calling.make_generator(seed, device)
            x = calling.to_device(calling.resolve(inputs, gen, "inputs"), device)
            y = calling.to_device(target, device) if target is not None else None
            eager, _ = calling.deep_copy(root)
            twin, _ = calling.deep_copy(root)
            for m in (eager, twin):
                m.train(train)
                for p in m.parameters():
                    p.grad = None
            outs = {}

            def run_eager() -> None:
                out = calling.call(eager, x)
                outs["eager"] = out
                compute_loss(out, y, loss_fn, calling.make_generator(seed + 1, device)).backward() \
                    if any(p.requires_grad for p in eager.parameters()) else None

            t_eager = divergence.trace(eager, run_eager)
            compiled = torch.compile(twin, backend=counting)
            try:
                with warnings.catch_warnings():
                    # dynamo reads ``.grad`` of every tensor it traces; under ``-W error`` torch's own
                    # non-leaf ``.grad`` warning would abort the trace of a correct model.
                    warnings.filterwarnings("ignore", message=".*grad attribute of a Tensor that is not a leaf.*",
                                            category=UserWarning)
                    out_c = calling.call(compiled, x)
                loss_c = compute_loss(out_c, y, loss_fn, calling.make_generator(seed + 1, device))
                if any(p.requires_grad for p in twin.parameters()):
                    loss_c.backward()
            except Exception as e:  # noqa: BLE001 - sorted into "unavailable" and "failed"
                reason = _unavailable(e)
                if reason:
                    return EquivalenceResult("compile", 0, (), skipped_reason=reason)
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                return EquivalenceResult("compile", 1, (f"the compiled copy raised {type(e).__name__}: {first[:300]}",),
                                         notes=("the eager model runs; dynamo or the backend cannot handle this forward",))
            dtype = next((t.dtype for _, t in trees.tensor_leaves(outs["eager"]) if t.is_floating_point()), torch.float32)
            tol = divergence.default_rtol(dtype) if rtol is None else rtol
            ref = [(trees.describe_path(p), t) for p, t in trees.tensor_leaves(outs["eager"]) if t.is_floating_point()]
            got = {trees.describe_path(p): t for p, t in trees.tensor_leaves(out_c)}
            n_out, out_lines = divergence.compare_tensors(ref, got, tol, atol)
            g_ref = [(n, p.grad) for n, p in eager.named_parameters() if p.grad is not None]
            g_got = {n: p.grad for n, p in twin.named_parameters() if p.grad is not None}
            n_grad, grad_lines = divergence.compare_tensors(g_ref, g_got, tol, atol)
            lines += out_lines + [f"gradient of {line}" for line in grad_lines]
            compared = n_out + n_grad
            div = None
            if lines:
                t_comp = divergence.Trace(t_eager.order, t_eager.types, t_eager.hints, {},
                                          {n: {pn: p.grad.detach().double().cpu() for pn, p in m.named_parameters(recurse=False)
                                               if p.grad is not None} for n, m in
                                           ((n or "<root>", m) for n, m in twin.named_modules())})
                div = divergence.first_divergence(t_eager, t_comp, tol, atol)
                notes.append("inductor fuses kernels and reorders reductions: an ill-conditioned formula "
                             "(E[x^2] - E[x]^2, exp without max subtraction, a difference of large numbers) turns "
                             "rounding into large errors; torch.var / torch.logsumexp / torch.softmax are stable")
            first_graphs = len(graphs)
            for i, extra in enumerate(dynamic_shapes or ()):
                xe = calling.to_device(calling.resolve(extra, gen, f"dynamic_shapes[{i}]"), device)
                before = len(graphs)
                with torch.no_grad():
                    ref_e, got_e = calling.call(eager, xe), calling.call(compiled, xe)
                if len(graphs) > before:
                    shapes = ", ".join(str(tuple(t.shape)) for _, t in trees.tensor_leaves(xe))
                    lines.append(f"dynamic_shapes[{i}] (shapes {shapes}): recompiled ({len(graphs) - before} new graph(s))")
                ref_l = [(f"dynamic_shapes[{i}] {trees.describe_path(p)}", t) for p, t in trees.tensor_leaves(ref_e)
                         if t.is_floating_point()]
                got_l = {f"dynamic_shapes[{i}] {trees.describe_path(p)}": t for p, t in trees.tensor_leaves(got_e)}
                n, extra_lines = divergence.compare_tensors(ref_l, got_l, tol, atol)
                compared += n
                lines += extra_lines
            if dynamic_shapes and len(graphs) > first_graphs:
                notes.append("a recompile means dynamo specialised on a size: a Python branch on x.shape, an int "
                             "computed from a size, or a first call's size marked static; torch._dynamo.mark_dynamic "
                             "or dynamic=True, and no Python control flow on sizes")
            if check_graph_breaks:
                torch._dynamo.reset()
                probe, _ = calling.deep_copy(root)
                probe.train(train)
                with torch.no_grad():
                    args = x if isinstance(x, (tuple, list)) else (x,)
                    explained = (torch._dynamo.explain(probe)(**x) if isinstance(x, dict)
                                 else torch._dynamo.explain(probe)(*args))
                compared += 1
                breaks = max(explained.graph_break_count, len(explained.break_reasons))
                if breaks:
                    lines.append(f"{breaks} graph break(s)")
                    for br in explained.break_reasons[:5]:
                        frame = br.user_stack[-1] if getattr(br, "user_stack", None) else None
                        where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} ({frame.line.strip() if frame.line else ''})" if frame else ""
                        lines.append(f"  break: {str(br.reason).splitlines()[0][:200]}{where}")
                    notes.append("a graph break splits the model into several graphs (slower, fewer fusions): a Python "
                                 "branch on a tensor value (if x.sum() > 0), .item(), .tolist(), print, or an "
                                 "unsupported call; use torch.where / torch.cond or move it out of forward")
    finally:
        torch._dynamo.reset()
        torch.set_rng_state(cpu_rng)
    return EquivalenceResult("compile", compared, tuple(lines), div, tuple(notes), rtol=tol, atol=atol,
                             details=(("backend", backend if isinstance(backend, str) else getattr(backend, "__name__", "callable")),
                                      ("graphs", first_graphs)))
