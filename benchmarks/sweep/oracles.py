"""Plain-PyTorch oracles: what the model really does, computed on a copy, with no library code.

Each oracle returns ``{"passed": bool | None, ...evidence}``; ``passed=None`` means the oracle
cannot judge this model (the reason is in ``"na"``), and the check is then not counted.
"""

import copy
import io
import random
from typing import Any, Dict, List

import numpy as np
import torch

from .build import Built, call, other_leaves, tensor_leaves

STEPS = 3  # real optimizer steps of the update oracle: zero-initialised partners move at step 2
LR = 1e-3
# A parameter's float64 gradient relative to its own float32 gradient: a genuine gradient, however
# small beside other layers' (vanishing gradients of a deep sigmoid net), agrees in both
# precisions; the float32 rounding noise of a mathematically zero gradient shrinks by ~1e-9 in float64.
FLOAT64_NOISE = 1e-5
RTOL, ATOL = 1e-5, 1e-6  # "same output" for the round trip and batch independence


def model_copy(built: Built) -> torch.nn.Module:
    try:
        return copy.deepcopy(built.model)
    except Exception:  # noqa: BLE001 - a model deepcopy rejects: rebuild with the same seed and weights
        twin = built.rebuild(0)
        twin.load_state_dict(built.model.state_dict())
        return twin


def _same(a: Any, b: Any, exact: bool = False) -> bool:
    la, lb = tensor_leaves(a), tensor_leaves(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if exact or not (x.is_floating_point() or x.is_complex()):
            if not torch.equal(x, y):
                return False
        elif not torch.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True):
            return False
    return True


def _eval_forward(model: torch.nn.Module, inputs: Any) -> Any:
    model.eval()
    with torch.no_grad():
        return call(model, inputs)


# ------------------------------------------------------------------------------ updates


def updates(built: Built) -> Dict[str, Any]:
    """``STEPS`` real AdamW steps (no weight decay) on a copy: which trainable parameters never move,
    and at which step each other one first moved."""
    model = model_copy(built)
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return {"passed": None, "na": "no trainable parameter"}
    start = {n: p.detach().clone() for n, p in named}
    previous = dict(start)
    first_move: Dict[str, int] = {}
    grad32: Dict[str, float] = {}
    optimizer = torch.optim.AdamW([p for _, p in named], lr=LR, weight_decay=0.0)
    torch.manual_seed(0)
    for step in range(1, STEPS + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = built.natural_loss(call(model, built.inputs))
        loss.backward()
        if step == 1:
            grad32 = {n: float(p.grad.abs().max()) for n, p in named if p.grad is not None and p.grad.numel()}
        optimizer.step()
        for n, p in named:
            if n not in first_move and not torch.equal(p.detach(), previous[n]):
                first_move[n] = step
        previous = {n: p.detach().clone() for n, p in named}
    # float64 ground truth: a parameter whose float64 gradient is zero (at float64 noise level) is not
    # genuinely trained, even though AdamW normalises its float32 rounding noise into a real step
    # (attention key biases: softmax is shift invariant).
    moved_at_once = [n for n, s in first_move.items() if s == 1]
    g64 = float64_gradient(built, moved_at_once, relative=False) if moved_at_once else {}
    noise = sorted(n for n, v in g64.items() if n in grad32 and v <= FLOAT64_NOISE * grad32[n])
    unchanged = sorted({n for n, _ in named if n not in first_move} | set(noise))
    late = sorted(n for n, s in first_move.items() if s > 1)
    return {"passed": not unchanged, "unchanged": unchanged, "first_move": first_move,
            "moved_late": {"count": len(late), "examples": late[:4]},
            "float64_noise": {"count": len(noise), "examples": noise[:4]}}


def float64_gradient(built: Built, names: List[str], relative: bool = True) -> Dict[str, float]:
    """The first-step ``max |grad|`` of ``names`` in float64, relative to the largest one (or
    absolute with ``relative=False``); 0.0 means float32 saw rounding noise."""
    try:
        model = model_copy(built).double().train()
        cast = lambda v: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
        inputs = {k: cast(v) for k, v in built.inputs.items()} if isinstance(built.inputs, dict) else cast(built.inputs)
        torch.manual_seed(0)
        out = call(model, inputs)
        Built(model, inputs, built.target).natural_loss(out).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        top = (max((float(g.abs().max()) for g in grads.values()), default=0.0) or 1.0) if relative else 1.0
        return {n: (float(grads[n].abs().max()) / top if n in grads else 0.0) for n in names}
    except Exception:  # noqa: BLE001
        return {}


# ------------------------------------------------------------------------------ state dict


def state_dict_round_trip(built: Built) -> Dict[str, Any]:
    """A real save, a fresh model from the same config (another seed), strict load, outputs compared."""
    model = model_copy(built)
    first = _eval_forward(model, built.inputs)
    if not _same(first, _eval_forward(model, built.inputs), exact=True):
        return {"passed": None, "na": "eval forward is nondeterministic: the round trip cannot be judged"}
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = built.rebuild(1)
    try:
        fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    except Exception as e:  # noqa: BLE001
        return {"passed": False, "reason": f"strict load: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    again = _eval_forward(fresh, built.inputs)
    persistent = set(model.state_dict())
    non_persistent = sorted(n for n, _ in model.named_buffers() if n not in persistent)
    return {"passed": _same(first, again), "exact": _same(first, again, exact=True),
            "non_persistent_buffers": non_persistent}


# ------------------------------------------------------------------------------ batch independence


def _perturb(value: Any, index: int, gen: torch.Generator) -> Any:
    """The inputs with sample ``index`` changed: floats redrawn, integer rows rolled (values stay valid)."""
    if isinstance(value, dict):
        return {k: _perturb(v, index, gen) for k, v in value.items()}
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value
    value = value.clone()
    if value.is_floating_point():
        value[index] = torch.randn(value[index].shape, generator=gen, dtype=value.dtype)
    elif value.dim() == 1:
        value[index] = (value[index] + 1) % (int(value.max()) + 1)
    elif value[index].numel() > 1 and not bool((value[index] == value[index].flatten()[0]).all()):
        value[index] = torch.roll(value[index], 1, dims=-1)
    return value


def _batch_size(inputs: Any) -> int:
    return tensor_leaves(inputs)[0].shape[0]


def batch_independent(built: Built) -> Dict[str, Any]:
    """Change one sample at a time (first, last); every other sample's output rows must not move."""
    model = model_copy(built)
    base = _eval_forward(model, built.inputs)
    if not _same(base, _eval_forward(model, built.inputs), exact=True):
        return {"passed": None, "na": "eval forward is nondeterministic"}
    batch = _batch_size(built.inputs)
    gen = torch.Generator().manual_seed(1)
    moved: List[str] = []
    compared = 0
    for index in (0, batch - 1):
        other = _eval_forward(model, _perturb(built.inputs, index, gen))
        keep = [i for i in range(batch) if i != index]
        for k, (a, b) in enumerate(zip(tensor_leaves(base), tensor_leaves(other))):
            if a.dim() == 0 or a.shape[0] != batch or a.shape != b.shape:
                continue
            compared += 1
            x, y = a[keep], b[keep]
            same = torch.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True) if x.is_floating_point() \
                else torch.equal(x, y)
            if not same:
                moved.append(f"leaf {k} {tuple(a.shape)} (sample {index} changed)")
    if not compared:
        return {"passed": None, "na": "no output leaf has the batch dimension"}
    return {"passed": not moved, "dependent_leaves": moved[:5]}


# ------------------------------------------------------------------------------ the direct ones


def deterministic(built: Built) -> Dict[str, Any]:
    model = model_copy(built)
    return {"passed": _same(_eval_forward(model, built.inputs), _eval_forward(model, built.inputs), exact=True)}


def dtype(output: Any) -> Dict[str, Any]:
    wrong = sorted({str(t.dtype) for t in tensor_leaves(output) if t.dtype != torch.float32})
    return {"passed": not wrong, "other_dtypes": wrong, "non_tensor_leaves": sorted(set(other_leaves(output)))}


def parameter_count(model: torch.nn.Module) -> Dict[str, Any]:
    params = list(model.parameters())  # shared parameters once
    return {"passed": True, "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad)}


def finite_model(model: torch.nn.Module) -> Dict[str, Any]:
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    bad = sum(int((~torch.isfinite(t.detach())).sum()) for t in tensors)
    return {"passed": bad == 0, "non_finite_elements": bad}


def finite_output(output: Any) -> Dict[str, Any]:
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensor_leaves(output) if t.is_floating_point())
    return {"passed": bad == 0, "non_finite_elements": bad}


# ------------------------------------------------------------------------------ invisibility


def snapshot(model: torch.nn.Module) -> Dict[str, Any]:
    """Everything the library must leave as it found it."""
    return {
        "tensors": {n: t.detach().clone() for n, t in list(model.named_parameters(remove_duplicate=False))
                    + list(model.named_buffers(remove_duplicate=False))},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "globals": (torch.is_grad_enabled(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
                    torch.get_num_threads()),
    }


def changes(before: Dict[str, Any], model: torch.nn.Module) -> List[str]:
    """What differs from ``before`` now: ``[]`` when the library was invisible."""
    now = snapshot(model)
    out: List[str] = []
    for key in ("tensors", "grads", "requires_grad", "training"):
        a, b = before[key], now[key]
        if set(a) != set(b):
            out.append(f"{key}: names changed ({len(set(a) ^ set(b))})")
            continue
        for name in a:
            x, y = a[name], b[name]
            if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
                same = x is not None and y is not None and x.shape == y.shape and torch.equal(x, y)
                if x is None and y is None:
                    same = True
            else:
                same = x == y
            if not same:
                out.append(f"{key}: {name or '<root>'}")
                break
    if not torch.equal(before["torch_rng"], now["torch_rng"]):
        out.append("torch RNG")
    nb, nn_ = before["numpy_rng"], now["numpy_rng"]
    if not (nb[0] == nn_[0] and np.array_equal(nb[1], nn_[1]) and nb[2:] == nn_[2:]):
        out.append("numpy RNG")
    if before["python_rng"] != now["python_rng"]:
        out.append("python RNG")
    if before["globals"] != now["globals"]:
        out.append(f"global settings {before['globals']} -> {now['globals']}")
    return out


def restore(before: Dict[str, Any], model: torch.nn.Module) -> None:
    """Put everything back after a library call that changed it (so the next check starts clean)."""
    with torch.no_grad():
        for n, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
            if n in before["tensors"] and t.shape == before["tensors"][n].shape:
                t.copy_(before["tensors"][n])
    for n, p in model.named_parameters():
        g = before["grads"].get(n)
        p.grad = None if g is None else g.clone()
        p.requires_grad_(before["requires_grad"].get(n, p.requires_grad))
    for n, m in model.named_modules():
        m.training = before["training"].get(n, m.training)
    torch.set_rng_state(before["torch_rng"])
    np.random.set_state(before["numpy_rng"])
    random.setstate(before["python_rng"])
    grad, default, det, threads = before["globals"]
    torch.set_grad_enabled(grad)
    torch.set_default_dtype(default)
    torch.use_deterministic_algorithms(det)
    torch.set_num_threads(threads)
