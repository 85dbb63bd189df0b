"""Guard cost on a ~1,000-tensor model: median of 10 check_parameters_updated calls (run by hand)."""
import time, statistics, torch
from torch import nn
from torchcheck_mixin import check_parameters_updated
torch.manual_seed(0)
model = nn.Sequential(*[m for _ in range(250) for m in (nn.Linear(16, 16), nn.LayerNorm(16))])
x = torch.randn(8, 16)
check_parameters_updated(model, x)
ts = []
for _ in range(10):
    t = time.perf_counter(); check_parameters_updated(model, x); ts.append(time.perf_counter() - t)
print(f"{len(list(model.parameters()))} tensors, median {statistics.median(ts)*1000:.1f} ms")
