"""Count host-device synchronisations per check on CUDA, for models of growing parameter count.

A check must make a constant number of synchronisations however many parameters the model
has (one device-to-host transfer of all per-parameter statistics). This script runs each check
under ``torch.cuda.set_sync_debug_mode("warn")``, which makes PyTorch warn at every synchronising
call (``.item()``, ``.tolist()``, ``bool(tensor)``, ``nonzero``, a blocking copy to the host...),
and counts the warnings. Ludwig's per-parameter loop is counted for comparison.

Run by hand on a machine with a GPU:

    python benchmarks/sync_counts.py            # table on stdout
    python benchmarks/sync_counts.py --json out.json
"""

import argparse
import json
import platform
import sys
import warnings

from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's torchcheck_mixin
import torchcheck_mixin as tc  # noqa: E402


def count_syncs(fn) -> int:
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum(1 for w in caught if "synchroniz" in str(w.message).lower())


def ludwig_style(model, x):
    """Ludwig's published check: one SGD step, then `not torch.all(grad == 0)` per parameter."""
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().pow(2).mean().backward()
    return [p.grad is not None and not torch.all(p.grad == 0) for p in model.parameters()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--layers", type=int, nargs="+", default=[5, 50, 500])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    rows = []
    for layers in args.layers:
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(layers)]).cuda()
        x = torch.randn(32, 64)  # on the CPU: the check moves it
        y = torch.randn(32, 64, device="cuda")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        n = sum(1 for _ in model.parameters())
        checks = {
            "gradient": lambda: tc.check_parameters_updated(model, x),
            "snapshot (private SGD)": lambda: tc.check_parameters_updated(model, x, mode="snapshot"),
            "snapshot (Adam, copied)": lambda: tc.check_parameters_updated(model, x, y, mode="snapshot", optimizer=opt),
            "both": lambda: tc.check_parameters_updated(model, x, mode="both"),
            "forward shape": lambda: tc.check_forward_shape(model, x, ("B", 64)),
            "all finite (module)": lambda: tc.check_all_finite(model),
            "parameter count": lambda: tc.check_parameter_count(model, total=layers * 64 * 65),
            "Ludwig-style loop": lambda: ludwig_style(model, x.cuda()),
        }
        for name, fn in checks.items():
            fn()  # warm up (lazy CUDA initialisation of kernels)
            rows.append({"check": name, "parameters": n, "syncs": count_syncs(fn)})
    width = max(len(r["check"]) for r in rows)
    print(f"{'check':<{width}}  " + "  ".join(f"{n:>6} params" for n in sorted({r['parameters'] for r in rows})))
    for name in dict.fromkeys(r["check"] for r in rows):
        counts = [r["syncs"] for r in rows if r["check"] == name]
        print(f"{name:<{width}}  " + "  ".join(f"{c:>13}" for c in counts))
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "python": platform.python_version()}
    print(info)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
