"""A catalogue of buggy and correct PyTorch models and data pipelines.

The test-suite runs every assertion of the library against every case here:
each check must fail on the cases that list it in ``bugs`` and must pass on
every correct case (``bugs`` empty).  This module imports only torch, numpy
and the standard library, so it states what is true of the models, not what
the library happens to do.

Conventions
-----------
* ``build()`` returns a fresh model and seeds the global RNG itself, so two
  calls give bitwise-equal weights.  ``inputs()`` and ``target()`` use a
  private ``torch.Generator`` and never touch the global RNG.
* Inputs: a Tensor is called as ``model(x)``, a tuple/list as ``model(*x)``,
  a dict as ``model(**x)``.
* ``expected_shape``: ints, ``None`` (any size), ``...`` (any number of
  dims) and names.  The name ``"B"`` is the batch size of the case's inputs
  (dim 0 of the first tensor input); other names (``"T"``) are free but must
  agree wherever they appear.  A tuple of shapes or a dict of shapes mirrors a
  structured output.
* ``expected_dtype`` applies to every floating leaf of the output.
* ``parameter_count`` counts tensor elements of the unique parameters
  (trainable and frozen, tied weights once, complex elements once, lazy
  modules after their first forward).  On "parameter_count" cases it is the
  count the design intends, which the model does not have.
* Names in ``allow_not_updated`` / ``expect_frozen`` come in three forms: an
  exact parameter name (``"pos"``), a module prefix (``"backbone"``, meaning
  every parameter under it) or a glob (``"cat_branch.*"``).
* Buggy cases: the checks in ``bugs`` must fail.  Other checks are not
  promised either way: a NaN output usually brings NaN gradients too, an
  int64 output has nothing to back-propagate, and a model with a dead branch
  overfits less well.  Two kinds need a word:
  - "loss" cases carry the buggy ``loss_fn`` as the thing under test; run the
    other checks on them with the default loss (a non-scalar loss cannot be
    back-propagated, and a NaN loss gives NaN gradients).
  - "updated_snapshot" cases that give an ``optimizer`` mean the check run
    with that optimizer (opt-in); the gradient-mode check passes on them.
* ``not_updated`` names exactly the parameters the update check must report
  (none, zero, non-finite gradient, undeclared frozen, not in the optimizer,
  not applied, changed without gradient); every other trainable parameter of
  the case is updated.
* Correct cases: every check passes.  ``batch_dependent=True`` marks the one
  model whose samples legitimately interact in eval mode.
"""

from __future__ import annotations

import copy
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm, weight_norm
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = [
    "ModelCase",
    "DataCase",
    "MODEL_CASES",
    "DATA_CASES",
    "correct_models",
    "buggy_models",
    "correct_data",
    "buggy_data",
    "BUG_KINDS",
]

BUG_KINDS = frozenset(
    {
        "updated_gradient",
        "updated_snapshot",
        "batch_independent",
        "deterministic",
        "parameter_count",
        "finite",
        "forward_shape",
        "dtype",
        "loss",
        "overfit",
    }
)


@dataclass(frozen=True)
class ModelCase:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Any]
    target: Optional[Callable[[], Any]] = None
    loss_fn: Optional[Callable] = None
    optimizer: Optional[Callable[[nn.Module], torch.optim.Optimizer]] = None
    bugs: FrozenSet[str] = frozenset()
    not_updated: FrozenSet[str] = frozenset()
    allow_not_updated: Tuple[str, ...] = ()
    expect_frozen: Tuple[str, ...] = ()
    expected_shape: Any = None
    expected_dtype: Optional[torch.dtype] = None
    parameter_count: Optional[int] = None
    trials: int = 1
    batch_dependent: bool = False
    note: str = ""


@dataclass(frozen=True)
class DataCase:
    name: str
    loader: Callable[[], Iterable]
    expected_shape: Any
    dtype: Any = None
    bugs: FrozenSet[str] = frozenset()
    note: str = ""


# --------------------------------------------------------------------------
# Input helpers: private generators only.
# --------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)) * scale


def _randint(high: int, *shape: int, seed: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=_gen(seed))


def _probs(*shape: int, seed: int) -> torch.Tensor:
    return torch.softmax(_randn(*shape, seed=seed), dim=-1)


def _seeded(seed: int, factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(seed)
        return factory()

    return build


def _mlp(n_in: int = 6, hidden: int = 16, n_out: int = 3) -> nn.Sequential:
    # (n_in*hidden + hidden) + (hidden*hidden + hidden) + (hidden*n_out + n_out)
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_out),
    )


def _ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


# ==========================================================================
# Correct models
# ==========================================================================


class CNNBatchNorm(nn.Module):
    """Conv-BN-ReLU x2, global pool, linear head (convs have no bias: BN follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 3*8*9 = 216
            nn.BatchNorm2d(8),  # 16
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),  # 8*16*9 = 1152
            nn.BatchNorm2d(16),  # 32
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, 5)  # 85

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LSTMClassifier(nn.Module):
    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        # 4 gates * (12*4 + 12*12 + 12 + 12) = 864
        self.lstm = nn.LSTM(4, 12, batch_first=batch_first)
        self.head = nn.Linear(12, 3)  # 39

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class GRUTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8)  # 240
        # 2 directions * 3 gates * (10*8 + 10*10 + 10 + 10) = 1200
        self.gru = nn.GRU(8, 10, batch_first=True, bidirectional=True)
        self.head = nn.Linear(20, 5)  # 105

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.emb(tokens))
        return self.head(out)


class TransformerClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(24, 16)  # 384
        self.pos = nn.Parameter(torch.randn(1, 7, 16) * 0.02)  # 112
        layer = nn.TransformerEncoderLayer(
            d_model=16, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True
        )
        # per layer: in_proj 48*16+48, out_proj 16*16+16, linear1 16*32+32,
        # linear2 32*16+16, norm1 32, norm2 32 = 2224; two layers = 4448.
        # enable_nested_tensor=False: the nested-tensor fast path in eval emits a
        # "prototype stage" UserWarning, which -W error turns into an error.
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens) + self.pos[:, : tokens.shape[1]]
        h = self.encoder(h, src_key_padding_mask=pad_mask)
        keep = (~pad_mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1)
        return self.head(pooled)


def _transformer_inputs() -> Tuple[torch.Tensor, torch.Tensor]:
    tokens = _randint(24, 6, 7, seed=11)
    lengths = torch.tensor([7, 5, 3, 7, 2, 6])
    pad_mask = torch.arange(7)[None, :] >= lengths[:, None]  # True = padding
    return tokens, pad_mask


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)  # 160
        self.rnn = nn.GRU(8, 8, batch_first=True)  # 3 * (64 + 64 + 8 + 8) = 432
        self.lm_head = nn.Linear(8, 20, bias=False)
        self.lm_head.weight = self.emb.weight  # tied: counted once

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.emb(tokens))
        return self.lm_head(h)


def _lm_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


class FrozenBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.backbone.requires_grad_(False)  # deliberate: linear probing
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class FrozenPositionalEncoding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # fixed sinusoidal table kept as a frozen Parameter (seen in many repos)
        self.pos = nn.Parameter(_sinusoid(6, 8), requires_grad=False)  # 48
        self.proj = nn.Linear(8, 8)  # 72
        self.head = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(x + self.pos))
        return self.head(h.mean(1))


class SparseEmbeddingBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8, sparse=True)  # 400
        self.fc = nn.Linear(8, 3)  # 27

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(tokens).mean(1))


class _SeededLazyLinear(nn.LazyLinear):
    """LazyLinear whose weights, drawn at the first forward, come from a fixed seed.

    A plain LazyLinear draws its weights from the global RNG at the first forward,
    so build() alone would not make the model deterministic.
    """

    def __init__(self, out_features: int, init_seed: int) -> None:
        super().__init__(out_features)
        self.init_seed = init_seed

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            g = torch.Generator().manual_seed(self.init_seed)
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=g)
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound, generator=g)


class LazyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = _SeededLazyLinear(16, init_seed=123)  # 6*16 + 16 = 112 after first forward
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class WeightNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # parametrizations.weight.original0 (16,1)=16, original1 (16,6)=96, bias 16
        self.fc1 = weight_norm(nn.Linear(6, 16))
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SpectralNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # parametrizations.weight.original (16,6)=96, bias 16; buffers _u, _v
        self.fc1 = spectral_norm(nn.Linear(6, 16))
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class DropoutMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 32)  # 224
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 32)  # 1056
        self.fc3 = nn.Linear(32, 3)  # 99

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.fc1(x)))
        h = F.dropout(torch.relu(self.fc2(h)), 0.3, training=self.training)  # the right idiom
        return self.fc3(h)


class NarrowDropout(nn.Module):
    """One-unit bottleneck behind Dropout(0.6): whether fc1 gets a gradient depends on the mask."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 1)  # 5
        self.drop = nn.Dropout(0.6)
        self.fc2 = nn.Linear(1, 2)  # 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.fc1(x)))


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 16)  # 112
        self.head = nn.Linear(16, 4)  # 68

    def forward(self, x: torch.Tensor) -> dict:
        hidden = torch.relu(self.trunk(x))
        return {"logits": self.head(hidden), "hidden": hidden}


class MultiTask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 16)  # 112
        self.cls = nn.Linear(16, 3)  # 51
        self.reg = nn.Linear(16, 1)  # 17

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.trunk(x))
        return self.cls(h), self.reg(h)


def _multitask_loss(out: Tuple[torch.Tensor, torch.Tensor], y: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(out[0], y[0]) + F.mse_loss(out[1], y[1])


class ImageAndMeta(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)  # 1*4*9 + 4 = 40
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.meta = nn.Linear(3, 8)  # 32
        self.fuse = nn.Linear(4 * 2 * 2 + 8, 2)  # 24*2 + 2 = 50

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        a = self.pool(torch.relu(self.conv(image))).flatten(1)
        b = torch.relu(self.meta(meta))
        return self.fuse(torch.cat([a, b], dim=1))


class TabularCombiner(nn.Module):
    """Numeric + optional categorical features; the categorical branch is idle without `cat`."""

    def __init__(self) -> None:
        super().__init__()
        self.num_branch = nn.Linear(5, 16)  # 96
        self.cat_branch = nn.Embedding(10, 16)  # 160
        self.head = nn.Linear(16, 1)  # 17

    def forward(self, num: torch.Tensor, cat: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = torch.relu(self.num_branch(num))
        if cat is not None:
            h = h + self.cat_branch(cat).sum(1)
        return self.head(h).squeeze(-1)


class ComplexFilter(nn.Module):
    """Learnable complex frequency response (FNO/spectral-layer style), real output."""

    def __init__(self) -> None:
        super().__init__()
        self.filt = nn.Parameter(torch.randn(9, dtype=torch.complex64))  # 9 complex elements
        self.head = nn.Linear(16, 2)  # 34

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x, dim=-1) * self.filt
        return self.head(torch.fft.irfft(spec, n=16, dim=-1))


class CheckpointedMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())  # 384
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # every body parameter sits inside the checkpoint and x needs no grad:
        # only the non-reentrant variant gives them gradients.
        return self.head(checkpoint(self.body, x, use_reentrant=False))


class ModuleListMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])  # 3*72 = 216
        self.out = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.out(x)


class ModuleDictHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 8)  # 56
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 2), "b": nn.Linear(8, 3)})  # 18 + 27

    def forward(self, x: torch.Tensor) -> dict:
        h = torch.relu(self.trunk(x))
        return {k: head(h) for k, head in self.heads.items()}


class ParameterListNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mats = nn.ParameterList([nn.Parameter(torch.randn(8, 8) * 0.3) for _ in range(3)])  # 192
        self.out = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w in self.mats:
            x = torch.tanh(x @ w)
        return self.out(x)


class StandardizedRegressor(nn.Module):
    """Input/target statistics from numpy, stored as float32 buffers (the right way)."""

    def __init__(self) -> None:
        super().__init__()
        stats = np.array([[0.5, -1.0, 2.0, 0.0], [2.0, 0.5, 1.0, 3.0]])  # float64 in numpy
        self.register_buffer("x_mean", torch.as_tensor(stats[0], dtype=torch.float32))
        self.register_buffer("x_std", torch.as_tensor(stats[1], dtype=torch.float32))
        self.register_buffer("y_scale", torch.as_tensor(np.array([2.0]), dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))  # 40 + 9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.x_mean) / self.x_std
        return (self.net(z) * self.y_scale).squeeze(-1)


class NumpyScalarConstant(nn.Module):
    """A 0-d float64 tensor does not promote a float32 tensor: output stays float32."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)  # 21
        self.half_log2 = torch.tensor(np.log(2.0) / 2)  # 0-d float64, plain attribute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.half_log2


class Float64MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()  # 40 + 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContrastiveDualEncoder(nn.Module):
    """CLIP-style in-batch similarity logits: (B, B), legitimately batch-dependent."""

    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Linear(6, 8)  # 56
        self.txt = nn.Embedding(15, 8)  # 120
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))  # 1

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        a = F.normalize(self.img(image), dim=-1)
        b = F.normalize(self.txt(text).mean(1), dim=-1)
        return self.logit_scale.exp() * a @ b.t()


def _clip_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


class VAE(nn.Module):
    def __init__(self, sample_in_eval: bool = False) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 16)  # 144
        self.mu = nn.Linear(16, 4)  # 68
        self.logvar = nn.Linear(16, 4)  # 68
        self.dec = nn.Linear(4, 8)  # 40
        self.sample_in_eval = sample_in_eval

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        if self.training or self.sample_in_eval:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return self.dec(z), mu, logvar


# ==========================================================================
# Buggy models
# ==========================================================================

# ---- gradient never reaches some parameters -----------------------------


class DetachInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU())  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x).detach()  # BUG: cuts the encoder out of the graph
        return self.head(feats)


class DataInForward(nn.Module):
    """Weight-standardised conv that reads `.data`: conv.weight never gets a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # 3*4*9 + 4 = 112
        self.fc = nn.Linear(4, 2)  # 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight.data  # BUG: .data is outside autograd
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        h = torch.relu(F.conv2d(x, w, self.conv.bias))
        return self.fc(h.mean(dim=(2, 3)))


class NoGradBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 16)  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # BUG: meant for a frozen extractor, wraps a trainable layer
            h = torch.relu(self.proj(x))
        return self.head(h)


class UnusedSubmodule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.norm = nn.LayerNorm(16)  # 32, BUG: defined, never called
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class LeftoverFreeze(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU())  # 112
        self.head = nn.Linear(16, 3)  # 51
        # BUG: left over from a linear-probe experiment; full fine-tuning was intended
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class PretrainedEmbeddingFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        vectors = torch.randn(20, 8)
        # BUG: from_pretrained defaults to freeze=True; fine-tuning was intended
        self.emb = nn.Embedding.from_pretrained(vectors)  # 160
        self.fc = nn.Linear(8, 3)  # 27

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(tokens).mean(1))


class RoundInPath(nn.Module):
    """Fake quantisation with round() and no straight-through estimator."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 16)  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.enc(x))
        h = torch.round(h * 4) / 4  # BUG: d round / dx = 0
        return self.head(h)


class ArgmaxRouting(nn.Module):
    """Hard routing through argmax: the router gets no gradient at all."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(6, 4)  # 28
        self.code = nn.Embedding(4, 8)  # 32
        self.head = nn.Linear(6 + 8, 3)  # 45

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        choice = self.router(x).argmax(-1)  # BUG: integer, outside autograd
        return self.head(torch.cat([x, self.code(choice)], dim=-1))


def _dead_relu_mlp() -> nn.Module:
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))  # 112 + 51
    with torch.no_grad():
        m[0].bias.fill_(-100.0)  # BUG: every hidden unit is dead for any sane input
    return m


class RecreatedParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(6))  # 6
        self.fc = nn.Linear(6, 3)  # 21

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BUG: "lazy init" without a guard: a fresh Parameter every call; the one
        # the optimizer holds is never used.
        self.scale = nn.Parameter(torch.ones(x.shape[-1]))
        return self.fc(x * self.scale)


class NormFeatureNaNGrad(nn.Module):
    """Appends a hand-written L2 norm; sqrt'(0) = inf turns into NaN on an all-zero row."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 8, bias=False)  # 48
        self.head = nn.Linear(9, 3)  # 30

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        norm = torch.sqrt((h * h).sum(-1, keepdim=True))  # BUG: not differentiable at 0
        return self.head(torch.cat([h, norm], dim=-1))


def _inputs_with_zero_row() -> torch.Tensor:
    x = _randn(8, 6, seed=21)
    x[3] = 0.0  # a padding row
    return x


class WhereSqrtNaNGrad(nn.Module):
    """torch.where masks the NaN in forward but not in backward (the classic where-NaN)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 16)  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h))  # BUG: grad of sqrt(<0) is NaN
        return self.head(h)


class ItemTemperature(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)  # 21
        self.temperature = nn.Parameter(torch.tensor(1.5))  # 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) / self.temperature.item()  # BUG: .item() leaves autograd


class NumpyInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 16)  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        h = torch.from_numpy(np.tanh(h.detach().cpu().numpy()))  # BUG: numpy round trip
        return self.head(h)


class ZeroWeightedAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(6, 3)  # 21
        self.aux = nn.Linear(6, 3)  # 21
        self.aux_weight = 0.0  # BUG: branch "switched off" by a 0 coefficient in the config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.aux_weight * self.aux(x)


class DetachedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()  # 435

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BUG: "fixes" "element 0 of tensors does not require grad" by making a new leaf
        return self.net(x).detach().requires_grad_()


def _final_relu_regressor() -> nn.Module:
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1), nn.ReLU())  # 112 + 17
    with torch.no_grad():
        m[2].bias.fill_(-10.0)  # all outputs clamp to 0: nothing can learn
    return m


# ---- optimizer wiring (snapshot mode with the case's optimizer) ----------


class EmbedNormHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)  # 160
        self.ln = nn.LayerNorm(8)  # 16
        self.fc = nn.Linear(8, 3)  # 27

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.ln(self.emb(tokens)).mean(1))


def _groups_by_module_type(model: nn.Module) -> torch.optim.Optimizer:
    # BUG (minGPT-style weight-decay split): Linear -> decay, LayerNorm -> no decay,
    # the Embedding belongs to neither group and is never optimised.
    decay, no_decay = [], []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            decay.extend(module.parameters(recurse=False))
        elif isinstance(module, nn.LayerNorm):
            no_decay.extend(module.parameters(recurse=False))
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2
    )


class EncoderHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU())  # 112
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class _AscentSGD(torch.optim.Optimizer):
    """Hand-written SGD with the sign flipped: p += lr * grad."""

    def __init__(self, params: Iterable, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=group["lr"])  # BUG: should be -lr


# ---- batch mixing --------------------------------------------------------


class SoftmaxOverBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)  # 28

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.fc(x), dim=0)  # BUG: normalises across samples


class CatWrongDim(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(6, 8)  # 56
        self.fb = nn.Linear(6, 8)  # 56
        self.head = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.fa(x)), torch.relu(self.fb(x))
        h = torch.cat([a, b], dim=0).view(x.shape[0], -1)  # BUG: dim=0, then view hides it
        return self.head(h)


class BatchStatsInEval(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.bn = nn.BatchNorm1d(16, track_running_stats=False)  # 32, BUG: batch stats in eval too
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


class BatchCentering(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(0)) / (x.std(0) + 1e-5)  # BUG: per-batch statistics in forward
        return self.fc2(torch.relu(self.fc1(x)))


# ---- non-determinism in eval --------------------------------------------


class FunctionalDropoutDefault(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(torch.relu(self.fc1(x)), 0.5)  # BUG: F.dropout defaults to training=True
        return self.fc2(h)


class NoiseAlways(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.1 * torch.randn_like(x)  # BUG: augmentation noise without `if self.training`
        return self.fc2(torch.relu(self.fc1(x)))


# ---- unregistered parameters --------------------------------------------


class LayersInPythonList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(8, 8) for _ in range(3)]  # BUG: plain list, 3*72 = 216 unseen
        self.out = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.out(x)


class HeadsInPlainDict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 8)  # 56
        self.heads = {"a": nn.Linear(8, 2), "b": nn.Linear(8, 3)}  # BUG: plain dict, 18 + 27 unseen

    def forward(self, x: torch.Tensor) -> dict:
        h = torch.relu(self.trunk(x))
        return {k: head(h) for k, head in self.heads.items()}


class PositionAsBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # BUG: a learnable position embedding registered as a buffer (48 elements)
        self.register_buffer("pos", torch.randn(1, 6, 8) * 0.02)
        self.proj = nn.Linear(8, 8)  # 72
        self.head = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(x + self.pos))
        return self.head(h.mean(1))


class PlainTensorAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.randn(8, 8, requires_grad=True)  # BUG: not an nn.Parameter (64 unseen)
        self.out = nn.Linear(8, 2)  # 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(x @ self.w))


# ---- non-finite outputs --------------------------------------------------


class LogOfLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))  # 112 + 34

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.net(x))  # BUG: log-rate of an unbounded output


class RowSumNormalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)  # 112
        self.fc2 = nn.Linear(16, 3)  # 51

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        freq = counts / counts.sum(-1, keepdim=True)  # BUG: 0/0 on an empty row
        return self.fc2(torch.relu(self.fc1(freq)))


def _counts_with_empty_row() -> torch.Tensor:
    counts = _randint(5, 8, 6, seed=31).float()
    counts[2] = 0.0  # an empty document
    return counts


class SqrtVarianceHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 16)  # 112
        self.mean = nn.Linear(16, 1)  # 17
        self.var = nn.Linear(16, 1)  # 17

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.trunk(x))
        return self.mean(h), torch.sqrt(self.var(h))  # BUG: no softplus before sqrt


class ExpOverflow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)  # 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.fc(x))  # BUG: Poisson rate on unscaled features overflows


# ---- wrong output shape --------------------------------------------------


class HardcodedFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)  # 3*16*9 + 16 = 448
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(16 * 4 * 4, 10)  # 2570, sized for 16x16 images

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x)))
        return self.fc(h.view(-1, 16 * 4 * 4))  # BUG: 8x8 images: -1 swallows the batch


class MissingSqueeze(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))  # 112 + 17

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # BUG: (B, 1) where (B,) is expected; broadcasts in MSELoss


class TimeMajorOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8)  # 3 * (8*4 + 8*8 + 8 + 8) = 336
        self.head = nn.Linear(8, 5)  # 45

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.transpose(0, 1))
        return self.head(out)  # BUG: forgot to transpose back: (T, B, C)


class SqueezeDropsBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # 112
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)  # 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x))).squeeze()  # BUG: also drops B when B == 1
        return self.fc(h)


# ---- wrong output dtype --------------------------------------------------


class NumpyTargetScaler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # 40 + 18
        y_stats = np.array([[3.0, -1.0], [0.5, 2.0]])  # float64 from a fitted scaler
        self.register_buffer("y_mean", torch.from_numpy(y_stats[0]))  # BUG: float64 buffer
        self.register_buffer("y_std", torch.from_numpy(y_stats[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.y_std + self.y_mean  # promotes to float64


class DoubleLogSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)  # 28

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.fc(x).double(), dim=-1)  # BUG: upcast "for stability", never cast back


class IntegerCountOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 1)  # 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.fc(x)).squeeze(-1).long()  # BUG: predicted counts truncated to int64


# ==========================================================================
# Inputs / targets used by several cases
# ==========================================================================


def _x8x6() -> torch.Tensor:
    return _randn(8, 6, seed=1)


def _y8x3() -> torch.Tensor:
    return _randn(8, 3, seed=2)


def _labels8x3() -> torch.Tensor:
    return _randint(3, 8, seed=3)


def _tokens(vocab: int, b: int, t: int, seed: int) -> Callable[[], torch.Tensor]:
    return lambda: _randint(vocab, b, t, seed=seed)


# ==========================================================================
# The cases
# ==========================================================================

_F32 = torch.float32
_UG = frozenset({"updated_gradient", "updated_snapshot"})

_CORRECT: Tuple[ModelCase, ...] = (
    ModelCase(
        name="mlp",
        build=_seeded(0, _mlp),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,  # (6*16+16) + (16*16+16) + (16*3+3) = 112 + 272 + 51
        note="plain 3-layer MLP regressor",
    ),
    ModelCase(
        name="mlp_adam",
        build=_seeded(0, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="MLP with the user's Adam optimizer (snapshot opt-in)",
    ),
    ModelCase(
        name="mlp_adamw",
        build=_seeded(0, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="MLP with the user's AdamW optimizer (decoupled weight decay moves every param)",
    ),
    ModelCase(
        name="mlp_sgd_nesterov",
        build=_seeded(0, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="MLP with SGD + Nesterov momentum",
    ),
    ModelCase(
        name="cnn_batchnorm",
        build=_seeded(1, CNNBatchNorm),
        inputs=lambda: _randn(8, 3, 8, 8, seed=4),
        target=_labels8x3,
        loss_fn=_ce,
        expected_shape=("B", 5),
        expected_dtype=_F32,
        parameter_count=1501,  # 216 + 16 + 1152 + 32 + 85
        note="small CNN with BatchNorm (running stats in eval), bias-free convs before BN",
    ),
    ModelCase(
        name="lstm_batch_first",
        build=_seeded(2, LSTMClassifier),
        inputs=lambda: _randn(8, 5, 4, seed=5),
        target=_labels8x3,
        loss_fn=_ce,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=903,  # 864 + 39
        note="LSTM(batch_first=True) sequence classifier on the last step",
    ),
    ModelCase(
        name="gru_tagger",
        build=_seeded(3, GRUTagger),
        inputs=_tokens(30, 4, 6, seed=6),
        expected_shape=("B", "T", 5),
        expected_dtype=_F32,
        parameter_count=1545,  # 240 + 1200 + 105
        note="embedding + bidirectional GRU sequence tagger, per-token logits",
    ),
    ModelCase(
        name="transformer_padding_mask",
        build=_seeded(4, TransformerClassifier),
        inputs=_transformer_inputs,
        target=lambda: _randint(3, 6, seed=12),
        loss_fn=_ce,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=4995,  # 384 + 112 + 4448 + 51
        note="nn.TransformerEncoder(batch_first) classifier, padding mask as 2nd input, masked mean pool",
    ),
    ModelCase(
        name="tied_embeddings_lm",
        build=_seeded(5, TiedLM),
        inputs=_tokens(20, 4, 6, seed=7),
        target=_tokens(20, 4, 6, seed=8),
        loss_fn=_lm_loss,
        expected_shape=("B", "T", 20),
        expected_dtype=_F32,
        parameter_count=592,  # emb 160 (lm_head.weight is the same tensor) + GRU 432
        note="GRU language model whose LM head weight is the embedding weight (torchinfo 1.8 says 752)",
    ),
    ModelCase(
        name="frozen_backbone_adamw",
        build=_seeded(6, FrozenBackbone),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=5e-2),
        expect_frozen=("backbone",),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,  # 112 + 272 frozen + 51 trainable
        note="linear probe: frozen backbone declared; AdamW over all params skips grad-None ones",
    ),
    ModelCase(
        name="frozen_positional_table",
        build=_seeded(7, FrozenPositionalEncoding),
        inputs=lambda: _randn(4, 6, 8, seed=9),
        expect_frozen=("pos",),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=138,  # pos 48 + proj 72 + head 18
        note="sinusoidal table stored as nn.Parameter(requires_grad=False), declared frozen by exact name",
    ),
    ModelCase(
        name="sparse_embedding_sgd",
        build=_seeded(8, SparseEmbeddingBag),
        inputs=_tokens(50, 8, 5, seed=10),
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=427,  # 400 + 27
        note="nn.Embedding(sparse=True) (sparse COO grads) with plain SGD",
    ),
    ModelCase(
        name="lazy_linear",
        build=_seeded(9, LazyMLP),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,  # after first forward: (6*16+16) + 51; 0 elements before it
        note="LazyLinear first layer: no shapes until a forward",
    ),
    ModelCase(
        name="weight_norm_parametrization",
        build=_seeded(10, WeightNormMLP),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=179,  # original0 16 + original1 96 + bias 16 + 51
        note="parametrizations.weight_norm: leaves are parametrizations.weight.original0/1",
    ),
    ModelCase(
        name="spectral_norm_parametrization",
        build=_seeded(11, SpectralNormMLP),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,  # original 96 + bias 16 + 51; _u/_v are buffers
        note="parametrizations.spectral_norm: power-iteration buffers change on train forwards",
    ),
    ModelCase(
        name="dropout_mlp",
        build=_seeded(12, DropoutMLP),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=1379,  # 224 + 1056 + 99
        note="nn.Dropout and F.dropout(training=self.training): deterministic in eval",
    ),
    ModelCase(
        name="narrow_dropout_bottleneck",
        build=_seeded(13, NarrowDropout),
        inputs=lambda: _randn(2, 4, seed=13),
        target=lambda: torch.tensor([[1.0, -1.0], [1.0, -1.0]]),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=9,  # 5 + 4
        trials=40,
        note="1-unit bottleneck + Dropout(0.6), batch 2: fc1/fc2.weight grads are 0 in ~36% of draws",
    ),
    ModelCase(
        name="dict_output",
        build=_seeded(14, DictOutput),
        inputs=_x8x6,
        expected_shape={"logits": ("B", 4), "hidden": ("B", 16)},
        expected_dtype=_F32,
        parameter_count=180,  # 112 + 68
        note="returns {'logits', 'hidden'} (torchinfo reports only the last value's shape)",
    ),
    ModelCase(
        name="tuple_output_multitask",
        build=_seeded(15, MultiTask),
        inputs=_x8x6,
        target=lambda: (_labels8x3(), _randn(8, 1, seed=16)),
        loss_fn=_multitask_loss,
        expected_shape=(("B", 3), ("B", 1)),
        expected_dtype=_F32,
        parameter_count=180,  # 112 + 51 + 17
        note="classification + regression heads returned as a tuple",
    ),
    ModelCase(
        name="dict_input_image_meta",
        build=_seeded(16, ImageAndMeta),
        inputs=lambda: {"image": _randn(8, 1, 8, 8, seed=17), "meta": _randn(8, 3, seed=18)},
        target=lambda: _randint(2, 8, seed=19),
        loss_fn=_ce,
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=122,  # 40 + 32 + 50
        note="two named inputs passed as model(**inputs)",
    ),
    ModelCase(
        name="tabular_unused_categorical",
        build=_seeded(17, TabularCombiner),
        inputs=lambda: {"num": _randn(8, 5, seed=20)},
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2),
        allow_not_updated=("cat_branch",),
        expected_shape=("B",),
        expected_dtype=_F32,
        parameter_count=273,  # 96 + 160 + 17
        note="tabular combiner fed numeric features only: the categorical branch is idle (Ludwig-style)",
    ),
    ModelCase(
        name="complex_parameter",
        build=_seeded(18, ComplexFilter),
        inputs=lambda: _randn(8, 16, seed=22),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=43,  # 9 complex64 elements + 34
        note="complex64 spectral filter parameter, real float32 output",
    ),
    ModelCase(
        name="softmax_output",
        build=_seeded(19, lambda: nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=-1))),
        inputs=_x8x6,
        target=lambda: _probs(8, 4, seed=23),
        expected_shape=("B", 4),
        expected_dtype=_F32,
        parameter_count=28,
        note="Linear->Softmax: out.sum() is constant, so a sum-loss would report zero grads",
    ),
    ModelCase(
        name="checkpoint_non_reentrant",
        build=_seeded(20, CheckpointedMLP),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,  # 112 + 272 + 51
        note="activation checkpointing with use_reentrant=False around the first layers",
    ),
    ModelCase(
        name="module_list",
        build=_seeded(21, ModuleListMLP),
        inputs=lambda: _randn(8, 8, seed=24),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=234,  # 3*72 + 18
        note="layers in nn.ModuleList (the fix of layers_in_python_list)",
    ),
    ModelCase(
        name="module_dict_heads",
        build=_seeded(22, ModuleDictHeads),
        inputs=_x8x6,
        expected_shape={"a": ("B", 2), "b": ("B", 3)},
        expected_dtype=_F32,
        parameter_count=101,  # 56 + 18 + 27
        note="heads in nn.ModuleDict (the fix of heads_in_plain_dict), dict output",
    ),
    ModelCase(
        name="parameter_list",
        build=_seeded(23, ParameterListNet),
        inputs=lambda: _randn(8, 8, seed=25),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=210,  # 3*64 + 18
        note="raw matrices in nn.ParameterList",
    ),
    ModelCase(
        name="float32_buffers_from_numpy",
        build=_seeded(24, StandardizedRegressor),
        inputs=lambda: _randn(8, 4, seed=26),
        expected_shape=("B",),
        expected_dtype=_F32,
        parameter_count=49,  # 40 + 9; buffers not counted
        note="scaler statistics from numpy cast to float32 buffers (the fix of numpy_float64_buffer)",
    ),
    ModelCase(
        name="numpy_scalar_constant",
        build=_seeded(25, NumpyScalarConstant),
        inputs=_x8x6,
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=21,
        note="0-d float64 constant: type promotion keeps the float32 output (no false alarm)",
    ),
    ModelCase(
        name="float64_model",
        build=_seeded(26, Float64MLP),
        inputs=lambda: _randn(8, 4, seed=27).double(),
        expected_shape=("B", 2),
        expected_dtype=torch.float64,
        parameter_count=58,  # 40 + 18
        note="deliberately float64 model and inputs (scientific code)",
    ),
    ModelCase(
        name="contrastive_in_batch_logits",
        build=_seeded(27, ContrastiveDualEncoder),
        inputs=lambda: (_randn(6, 6, seed=28), _randint(15, 6, 4, seed=29)),
        target=lambda: torch.arange(6),
        loss_fn=_clip_loss,
        expected_shape=("B", "B"),
        expected_dtype=_F32,
        parameter_count=177,  # 56 + 120 + 1
        batch_dependent=True,
        note="CLIP-style (B, B) similarity logits: samples interact by design",
    ),
    ModelCase(
        name="vae_mean_in_eval",
        build=_seeded(28, VAE),
        inputs=lambda: _randn(8, 8, seed=30),
        expected_shape=(("B", 8), ("B", 4), ("B", 4)),
        expected_dtype=_F32,
        parameter_count=320,  # 144 + 68 + 68 + 40
        note="VAE samples z only in training; eval decodes the mean",
    ),
)

_BUGGY: Tuple[ModelCase, ...] = (
    # ---------------- updated_gradient (and, by the same cause, snapshot) --
    ModelCase(
        name="detach_in_forward",
        build=_seeded(100, DetachInForward),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"encoder.0.weight", "encoder.0.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="features .detach()ed before the head: encoder grads are None",
    ),
    ModelCase(
        name="data_in_forward",
        build=_seeded(101, DataInForward),
        inputs=lambda: _randn(4, 3, 6, 6, seed=32),
        bugs=_UG,
        not_updated=frozenset({"conv.weight"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=122,  # 112 + 10
        note="weight standardisation on conv.weight.data: conv.weight grad is None (bias trains)",
    ),
    ModelCase(
        name="no_grad_block_in_forward",
        build=_seeded(102, NoGradBlock),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"proj.weight", "proj.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="a trainable projection inside torch.no_grad(): grads None",
    ),
    ModelCase(
        name="unused_submodule",
        build=_seeded(103, UnusedSubmodule),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"norm.weight", "norm.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=195,  # 112 + 32 + 51
        note="LayerNorm defined in __init__ but never called in forward",
    ),
    ModelCase(
        name="leftover_requires_grad_false",
        build=_seeded(104, LeftoverFreeze),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"encoder.0.weight", "encoder.0.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="requires_grad_(False) left over from fine-tuning code, not declared in expect_frozen",
    ),
    ModelCase(
        name="from_pretrained_frozen_embedding",
        build=_seeded(105, PretrainedEmbeddingFrozen),
        inputs=_tokens(20, 8, 5, seed=33),
        bugs=_UG,
        not_updated=frozenset({"emb.weight"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=187,  # 160 + 27
        note="nn.Embedding.from_pretrained defaults to freeze=True; fine-tuning was intended",
    ),
    ModelCase(
        name="round_in_path",
        build=_seeded(106, RoundInPath),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"enc.weight", "enc.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="fake quantisation with torch.round and no straight-through estimator: grads exactly 0",
    ),
    ModelCase(
        name="argmax_in_path",
        build=_seeded(107, ArgmaxRouting),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"router.weight", "router.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=105,  # 28 + 32 + 45
        note="hard routing via argmax: router grads None",
    ),
    ModelCase(
        name="dead_relu",
        build=_seeded(108, _dead_relu_mlp),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"0.weight", "0.bias", "2.weight"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="first-layer bias -100: every ReLU dead, only the output bias gets a gradient",
    ),
    ModelCase(
        name="parameter_recreated_in_forward",
        build=_seeded(109, RecreatedParameter),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"scale"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=27,  # 6 + 21
        note="self.scale = nn.Parameter(...) inside forward: the registered tensor is never used",
    ),
    ModelCase(
        name="nan_grad_sqrt_at_zero",
        build=_seeded(110, NormFeatureNaNGrad),
        inputs=_inputs_with_zero_row,
        bugs=_UG,
        not_updated=frozenset({"enc.weight"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=78,  # 48 + 30
        note="hand-written sqrt(sum h^2) on an all-zero padding row: finite output, NaN enc grad",
    ),
    ModelCase(
        name="nan_grad_where_sqrt",
        build=_seeded(111, WhereSqrtNaNGrad),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"fc.weight", "fc.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="torch.where(h > 0, sqrt(h), 0): forward finite, backward NaN",
    ),
    ModelCase(
        name="item_in_forward",
        build=_seeded(112, ItemTemperature),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"temperature"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=22,  # 21 + 1
        note="learnable temperature read with .item(): grad None",
    ),
    ModelCase(
        name="numpy_round_trip_in_forward",
        build=_seeded(113, NumpyInForward),
        inputs=_x8x6,
        bugs=_UG,
        not_updated=frozenset({"enc.weight", "enc.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="activation applied with np.tanh via .detach().numpy(): encoder cut off",
    ),
    ModelCase(
        name="zero_weighted_branch_adamw",
        build=_seeded(114, ZeroWeightedAux),
        inputs=_x8x6,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01),
        bugs=_UG,
        not_updated=frozenset({"aux.weight", "aux.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=42,  # 21 + 21
        note="branch multiplied by 0.0: grads exactly 0, yet AdamW weight decay moves it (changed_without_grad)",
    ),
    # ---------------- updated_snapshot only (optimizer wiring) ---------------
    ModelCase(
        name="optimizer_groups_miss_embedding",
        build=_seeded(120, EmbedNormHead),
        inputs=_tokens(20, 8, 5, seed=34),
        optimizer=_groups_by_module_type,
        bugs=frozenset({"updated_snapshot"}),
        not_updated=frozenset({"emb.weight"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=203,  # 160 + 16 + 27
        note="weight-decay groups built from Linear/LayerNorm modules forget the Embedding",
    ),
    ModelCase(
        name="optimizer_on_head_only",
        build=_seeded(121, EncoderHead),
        inputs=_x8x6,
        optimizer=lambda m: torch.optim.SGD(m.head.parameters(), lr=0.1),
        bugs=frozenset({"updated_snapshot"}),
        not_updated=frozenset({"encoder.0.weight", "encoder.0.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="encoder unfrozen for fine-tuning but the optimizer still built from model.head.parameters()",
    ),
    ModelCase(
        name="optimizer_on_other_instance",
        build=_seeded(122, EncoderHead),
        inputs=_x8x6,
        optimizer=lambda m: torch.optim.SGD(copy.deepcopy(m).parameters(), lr=0.1),
        bugs=frozenset({"updated_snapshot", "overfit"}),
        not_updated=frozenset({"encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="optimizer holds another copy's parameters (model re-created after the optimizer)",
    ),
    ModelCase(
        name="lr_zero_floor_division",
        build=_seeded(123, EncoderHead),
        inputs=_x8x6,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1 * 8 // 256),
        bugs=frozenset({"updated_snapshot", "overfit"}),
        not_updated=frozenset({"encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="linear-scaling rule written base_lr * batch // 256: lr is 0.0",
    ),
    # ---------------- overfit -------------------------------------------------
    ModelCase(
        name="detached_output_requires_grad",
        build=_seeded(130, DetachedOutput),
        inputs=_x8x6,
        target=_y8x3,
        bugs=frozenset({"updated_gradient", "updated_snapshot", "overfit"}),
        not_updated=frozenset(
            {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"}
        ),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="output .detach().requires_grad_() to silence 'does not require grad': nothing trains",
    ),
    ModelCase(
        name="final_relu_dead",
        build=_seeded(131, _final_relu_regressor),
        inputs=_x8x6,
        target=lambda: _randn(8, 1, seed=35),
        bugs=frozenset({"updated_gradient", "updated_snapshot", "overfit"}),
        not_updated=frozenset({"0.weight", "0.bias", "2.weight", "2.bias"}),
        expected_shape=("B", 1),
        expected_dtype=_F32,
        parameter_count=129,  # 112 + 17
        note="ReLU on the regression output with negative pre-activations: output 0, all grads 0",
    ),
    ModelCase(
        name="optimizer_maximize",
        build=_seeded(132, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.01, maximize=True),
        bugs=frozenset({"overfit"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="SGD(maximize=True) copied from an adversarial step: the loss goes up",
    ),
    ModelCase(
        name="hand_written_sgd_wrong_sign",
        build=_seeded(133, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        optimizer=lambda m: _AscentSGD(m.parameters(), lr=0.01),
        bugs=frozenset({"overfit"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="custom optimizer does p += lr * grad",
    ),
    # ---------------- batch_independent --------------------------------------
    ModelCase(
        name="softmax_over_batch_dim",
        build=_seeded(140, SoftmaxOverBatch),
        inputs=_x8x6,
        bugs=frozenset({"batch_independent"}),
        expected_shape=("B", 4),
        expected_dtype=_F32,
        parameter_count=28,
        note="F.softmax(logits, dim=0) normalises over the batch",
    ),
    ModelCase(
        name="lstm_without_batch_first",
        build=_seeded(141, lambda: LSTMClassifier(batch_first=False)),
        inputs=lambda: _randn(8, 5, 4, seed=5),
        bugs=frozenset({"batch_independent"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=903,
        note="nn.LSTM default (T, B, F) layout fed (B, T, F): the batch runs as time; shapes still fit",
    ),
    ModelCase(
        name="cat_wrong_dim_then_view",
        build=_seeded(142, CatWrongDim),
        inputs=_x8x6,
        bugs=frozenset({"batch_independent"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,  # 56 + 56 + 51
        note="torch.cat(dim=0) then .view(B, -1): rows mix pairs of samples, shape looks right",
    ),
    ModelCase(
        name="batchnorm_without_running_stats",
        build=_seeded(143, BatchStatsInEval),
        inputs=_x8x6,
        bugs=frozenset({"batch_independent"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=195,  # 112 + 32 + 51
        note="BatchNorm1d(track_running_stats=False) normalises with batch stats in eval",
    ),
    ModelCase(
        name="per_batch_standardisation",
        build=_seeded(144, BatchCentering),
        inputs=_x8x6,
        bugs=frozenset({"batch_independent"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="inputs standardised with x.mean(0)/x.std(0) inside forward",
    ),
    # ---------------- deterministic ------------------------------------------
    ModelCase(
        name="functional_dropout_default_training",
        build=_seeded(150, FunctionalDropoutDefault),
        inputs=_x8x6,
        bugs=frozenset({"deterministic"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="F.dropout(h, 0.5) without training=self.training stays active in eval",
    ),
    ModelCase(
        name="noise_in_eval",
        build=_seeded(151, NoiseAlways),
        inputs=_x8x6,
        bugs=frozenset({"deterministic"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="Gaussian input noise added without checking self.training",
    ),
    ModelCase(
        name="vae_samples_in_eval",
        build=_seeded(152, lambda: VAE(sample_in_eval=True)),
        inputs=lambda: _randn(8, 8, seed=30),
        bugs=frozenset({"deterministic"}),
        expected_shape=(("B", 8), ("B", 4), ("B", 4)),
        expected_dtype=_F32,
        parameter_count=320,
        note="VAE reparameterisation sample drawn in eval as well",
    ),
    # ---------------- parameter_count ----------------------------------------
    ModelCase(
        name="layers_in_python_list",
        build=_seeded(160, LayersInPythonList),
        inputs=lambda: _randn(8, 8, seed=24),
        bugs=frozenset({"parameter_count"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=234,  # design: 3*72 + 18; registered: 18
        note="hidden layers kept in a plain Python list: unregistered, untrained, unsaved",
    ),
    ModelCase(
        name="heads_in_plain_dict",
        build=_seeded(161, HeadsInPlainDict),
        inputs=_x8x6,
        bugs=frozenset({"parameter_count"}),
        expected_shape={"a": ("B", 2), "b": ("B", 3)},
        expected_dtype=_F32,
        parameter_count=101,  # design: 56 + 18 + 27; registered: 56
        note="task heads kept in a plain dict instead of nn.ModuleDict",
    ),
    ModelCase(
        name="learnable_tensor_as_buffer",
        build=_seeded(162, PositionAsBuffer),
        inputs=lambda: _randn(4, 6, 8, seed=9),
        bugs=frozenset({"parameter_count"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=138,  # design: 48 + 72 + 18; registered: 90
        note="learned position embedding registered with register_buffer",
    ),
    ModelCase(
        name="plain_tensor_attribute",
        build=_seeded(163, PlainTensorAttribute),
        inputs=lambda: _randn(8, 8, seed=24),
        bugs=frozenset({"parameter_count"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=82,  # design: 64 + 18; registered: 18
        note="weight stored as torch.randn(..., requires_grad=True) instead of nn.Parameter",
    ),
    # ---------------- finite -------------------------------------------------
    ModelCase(
        name="log_of_unbounded_output",
        build=_seeded(176, LogOfLinear),
        inputs=_x8x6,
        bugs=frozenset({"finite"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=146,  # 112 + 34
        note="torch.log of a linear output: NaN wherever it is negative",
    ),
    ModelCase(
        name="divide_by_row_sum_empty_row",
        build=_seeded(171, RowSumNormalize),
        inputs=_counts_with_empty_row,
        bugs=frozenset({"finite"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=163,
        note="counts / counts.sum(-1): 0/0 = NaN for an empty document",
    ),
    ModelCase(
        name="sqrt_of_variance_head",
        build=_seeded(172, SqrtVarianceHead),
        inputs=_x8x6,
        bugs=frozenset({"finite"}),
        expected_shape=(("B", 1), ("B", 1)),
        expected_dtype=_F32,
        parameter_count=146,  # 112 + 17 + 17
        note="std = sqrt(linear) with no softplus: NaN for negative outputs",
    ),
    ModelCase(
        name="exp_overflow_unscaled_features",
        build=_seeded(173, ExpOverflow),
        inputs=lambda: _randn(8, 4, seed=36, scale=1000.0).abs(),
        bugs=frozenset({"finite"}),
        expected_shape=("B", 1),
        expected_dtype=_F32,
        parameter_count=5,
        note="Poisson rate exp(linear) on raw features in the thousands: inf",
    ),
    # ---------------- forward_shape ------------------------------------------
    ModelCase(
        name="hardcoded_flatten_merges_batch",
        build=_seeded(180, HardcodedFlatten),
        inputs=lambda: _randn(8, 3, 8, 8, seed=37),
        bugs=frozenset({"forward_shape"}),
        expected_shape=(8, 10),  # the test knows its batch size; "B" alone would bind to the merged 2
        expected_dtype=_F32,
        parameter_count=3018,  # 448 + 2570
        note="x.view(-1, 16*4*4) sized for 16x16 images; 8x8 input gives (2, 10) from a batch of 8",
    ),
    ModelCase(
        name="missing_squeeze",
        build=_seeded(181, MissingSqueeze),
        inputs=_x8x6,
        bugs=frozenset({"forward_shape"}),
        expected_shape=("B",),
        expected_dtype=_F32,
        parameter_count=129,  # 112 + 17
        note="regressor returns (B, 1) where (B,) is expected",
    ),
    ModelCase(
        name="time_major_output",
        build=_seeded(182, TimeMajorOutput),
        inputs=lambda: _randn(4, 6, 4, seed=38),
        bugs=frozenset({"forward_shape"}),
        expected_shape=("B", 6, 5),
        expected_dtype=_F32,
        parameter_count=381,  # 336 + 45
        note="transposed to (T, B, F) for the GRU and never transposed back: (6, 4, 5)",
    ),
    ModelCase(
        name="squeeze_drops_batch_of_one",
        build=_seeded(183, SqueezeDropsBatch),
        inputs=lambda: _randn(1, 3, 6, 6, seed=39),
        bugs=frozenset({"forward_shape"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=127,  # 112 + 15
        note=".squeeze() after global pooling also removes the batch dim at B == 1",
    ),
    # ---------------- dtype --------------------------------------------------
    ModelCase(
        name="numpy_float64_buffer",
        build=_seeded(190, NumpyTargetScaler),
        inputs=lambda: _randn(8, 4, seed=26),
        bugs=frozenset({"dtype"}),
        expected_shape=("B", 2),
        expected_dtype=_F32,
        parameter_count=58,  # 40 + 18
        note="target de-standardisation with torch.from_numpy(float64) buffers: output float64",
    ),
    ModelCase(
        name="double_log_softmax",
        build=_seeded(191, DoubleLogSoftmax),
        inputs=_x8x6,
        bugs=frozenset({"dtype"}),
        expected_shape=("B", 4),
        expected_dtype=_F32,
        parameter_count=28,
        note="log_softmax on .double() 'for stability', never cast back",
    ),
    ModelCase(
        name="integer_output",
        build=_seeded(192, IntegerCountOutput),
        inputs=_x8x6,
        bugs=frozenset({"dtype"}),
        expected_shape=("B",),
        expected_dtype=_F32,
        parameter_count=7,
        note="count regressor returns .long() predictions instead of float rates",
    ),
    # ---------------- loss (loss_fn is the bug) ------------------------------
    ModelCase(
        name="loss_reduction_none",
        build=_seeded(200, _mlp),
        inputs=_x8x6,
        target=_y8x3,
        loss_fn=nn.MSELoss(reduction="none"),
        bugs=frozenset({"loss"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="MSELoss(reduction='none'): a (B, 3) loss",
    ),
    ModelCase(
        name="loss_log_likelihood_sign",
        build=_seeded(201, _mlp),
        inputs=_x8x6,
        target=_labels8x3,
        loss_fn=lambda out, y: F.log_softmax(out, dim=-1).gather(1, y[:, None]).mean(),
        bugs=frozenset({"loss"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="log-likelihood returned without the minus sign: always negative",
    ),
    ModelCase(
        name="loss_kl_div_probabilities",
        build=_seeded(202, _mlp),
        inputs=_x8x6,
        target=lambda: _probs(8, 3, seed=40),
        loss_fn=lambda out, p: F.kl_div(F.softmax(out, dim=-1), p, reduction="batchmean"),
        bugs=frozenset({"loss"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="F.kl_div given probabilities instead of log-probabilities: negative",
    ),
    ModelCase(
        name="loss_msle_negative_output",
        build=_seeded(203, _mlp),
        inputs=_x8x6,
        target=lambda: _randn(8, 3, seed=41).abs() + 0.5,
        loss_fn=lambda out, y: F.mse_loss(torch.log(out), torch.log(y)),
        bugs=frozenset({"loss"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="mean squared log error on an unbounded output: log(negative) = NaN",
    ),
    ModelCase(
        name="loss_mape_zero_target",
        build=_seeded(204, _mlp),
        inputs=_x8x6,
        target=lambda: torch.cat([torch.zeros(1, 3), _randn(7, 3, seed=42)]),
        loss_fn=lambda out, y: ((out - y).abs() / y.abs()).mean(),
        bugs=frozenset({"loss"}),
        expected_shape=("B", 3),
        expected_dtype=_F32,
        parameter_count=435,
        note="mean absolute percentage error with zero targets: inf",
    ),
)

MODEL_CASES: Tuple[ModelCase, ...] = _CORRECT + _BUGGY


# ==========================================================================
# Data pipelines
# ==========================================================================

Sample = namedtuple("Sample", ["x", "y"])


class _DictDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.x = _randn(n, 4, seed=50)
        self.y = _randint(3, n, seed=51)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": int(self.y[i])}


class _NamedTupleDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.x = _randn(n, 5, seed=52)
        self.y = _randint(2, n, seed=53)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.x[i], int(self.y[i]))


class _NumpyDataset(Dataset):
    """Samples straight from a float64 numpy array (pandas .values, np.load, ...)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(54)
        self.x = rng.normal(size=(n, 4))  # float64
        self.y = rng.integers(0, 3, size=n)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        return self.x[i], int(self.y[i])


class _HWCImages(Dataset):
    """Images decoded as (H, W, C) float32 and never permuted to (C, H, W)."""

    def __init__(self, n: int) -> None:
        self.images = _randn(n, 8, 8, 3, seed=55)
        self.labels = _randint(4, n, seed=56)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class _PythonFloatTargets(Dataset):
    def __init__(self, n: int) -> None:
        self.x = _randn(n, 3, seed=57)
        self.y = [float(v) for v in _randn(n, seed=58)]  # python floats collate to float64

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, float]:
        return self.x[i], self.y[i]


class _Stream(IterableDataset):
    """An endless stream (no __len__): the check must bound how much it reads."""

    def __iter__(self):
        g = _gen(59)
        while True:
            yield torch.randn(2, generator=g), int(torch.randint(0, 2, (1,), generator=g))


class _VarLenSequences(Dataset):
    def __init__(self) -> None:
        self.lengths = [5, 3, 4, 2, 6, 6]
        self.tokens = [_randint(30, n, seed=60 + i) for i, n in enumerate(self.lengths)]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.tokens[i], i % 2


def _pad_collate(batch):
    seqs = [s for s, _ in batch]
    tokens = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    lengths = torch.tensor([len(s) for s in seqs])
    mask = torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]
    return {"tokens": tokens, "mask": mask, "label": torch.tensor([y for _, y in batch])}


def _collate_features_only(batch):
    return torch.stack([x for x, _ in batch])  # BUG: the label is dropped


def _xy(n: int, feat: Tuple[int, ...], seed: int, classes: int = 3) -> TensorDataset:
    return TensorDataset(_randn(n, *feat, seed=seed), _randint(classes, n, seed=seed + 1))


def _batch_generator():
    for i in range(3):
        yield _randn(4, 6, seed=70 + i), _randint(2, 4, seed=80 + i)


DATA_CASES: Tuple[DataCase, ...] = (
    DataCase(
        name="tensor_dataset_partial_last",
        loader=lambda: DataLoader(_xy(6, (3, 8, 8), seed=61), batch_size=4),
        expected_shape=(("B", 3, 8, 8), ("B",)),
        dtype=(torch.float32, torch.int64),
        note="6 samples, batch 4: batches of 4 then 2; a tuple sample collates to a list",
    ),
    DataCase(
        name="dict_batches",
        loader=lambda: DataLoader(_DictDataset(7), batch_size=3),
        expected_shape={"x": ("B", 4), "y": ("B",)},
        dtype={"x": torch.float32, "y": torch.int64},
        note="dict samples collate to a dict of tensors (python int -> int64); batches 3, 3, 1",
    ),
    DataCase(
        name="namedtuple_batches",
        loader=lambda: DataLoader(_NamedTupleDataset(8), batch_size=4),
        expected_shape=Sample(x=("B", 5), y=("B",)),
        dtype=Sample(x=torch.float32, y=torch.int64),
        note="namedtuple samples stay a namedtuple after default_collate",
    ),
    DataCase(
        name="list_of_batches_fixed_size",
        loader=lambda: iter([(_randn(4, 6, seed=90 + i), _randint(2, 4, seed=95 + i)) for i in range(3)]),
        expected_shape=((4, 6), (4,)),
        dtype=(torch.float32, torch.int64),
        note="a list of equal-sized (x, y) batches, passed as iter(list) (a bare list is one batch)",
    ),
    DataCase(
        name="drop_last_fixed_size",
        loader=lambda: DataLoader(_xy(10, (3,), seed=63), batch_size=4, drop_last=True),
        expected_shape=((4, 3), (4,)),
        dtype=(torch.float32, torch.int64),
        note="drop_last=True: every batch is exactly 4",
    ),
    DataCase(
        name="generator_batches",
        loader=_batch_generator,
        expected_shape=(("B", 6), ("B",)),
        dtype=(torch.float32, torch.int64),
        note="a generator of (x, y) tuples, no DataLoader",
    ),
    DataCase(
        name="endless_iterable_dataset",
        loader=lambda: DataLoader(_Stream(), batch_size=4),
        expected_shape=(("B", 2), ("B",)),
        dtype=(torch.float32, torch.int64),
        note="IterableDataset that never ends and has no len()",
    ),
    DataCase(
        name="padded_variable_length",
        loader=lambda: DataLoader(_VarLenSequences(), batch_size=3, collate_fn=_pad_collate),
        expected_shape={"tokens": ("B", "T"), "mask": ("B", "T"), "label": ("B",)},
        dtype={"tokens": torch.int64, "mask": torch.bool, "label": torch.int64},
        note="pad_sequence collate: T is 5 in the first batch, 6 in the second (names bind per batch)",
    ),
    # ---------------- buggy pipelines ----------------------------------------
    DataCase(
        name="numpy_float64_features",
        loader=lambda: DataLoader(_NumpyDataset(8), batch_size=4),
        expected_shape=(("B", 4), ("B",)),
        dtype=(torch.float32, torch.int64),
        bugs=frozenset({"batch_shape"}),
        note="float64 numpy rows collate to float64 features; the model's float32 weights reject them",
    ),
    DataCase(
        name="channels_last_images",
        loader=lambda: DataLoader(_HWCImages(8), batch_size=4),
        expected_shape=(("B", 3, 8, 8), ("B",)),
        dtype=(torch.float32, torch.int64),
        bugs=frozenset({"batch_shape"}),
        note="images (B, H, W, C) from an HWC decoder, never permuted to (B, C, H, W)",
    ),
    DataCase(
        name="labels_column_vector",
        loader=lambda: DataLoader(
            TensorDataset(_randn(8, 5, seed=64), _randint(3, 8, 1, seed=65)), batch_size=4
        ),
        expected_shape=(("B", 5), ("B",)),
        dtype=(torch.float32, torch.int64),
        bugs=frozenset({"batch_shape"}),
        note="labels taken as df[['label']].values: shape (B, 1) instead of (B,)",
    ),
    DataCase(
        name="partial_last_vs_fixed_batch",
        loader=lambda: DataLoader(_xy(6, (3,), seed=66), batch_size=4),
        expected_shape=((4, 3), (4,)),
        dtype=(torch.float32, torch.int64),
        bugs=frozenset({"batch_shape"}),
        note="6 samples, batch 4, no drop_last: the 2nd batch has 2 rows against a fixed size of 4",
    ),
    DataCase(
        name="collate_drops_label",
        loader=lambda: DataLoader(_xy(8, (3,), seed=67), batch_size=4, collate_fn=_collate_features_only),
        expected_shape=(("B", 3), ("B",)),
        dtype=(torch.float32, torch.int64),
        bugs=frozenset({"batch_shape"}),
        note="custom collate stacks the features and forgets the label: the batch is a bare tensor",
    ),
    DataCase(
        name="python_float_targets",
        loader=lambda: DataLoader(_PythonFloatTargets(8), batch_size=4),
        expected_shape=(("B", 3), ("B",)),
        dtype=(torch.float32, torch.float32),
        bugs=frozenset({"batch_shape"}),
        note="regression targets as python floats collate to float64",
    ),
)


# ==========================================================================
# Selection helpers
# ==========================================================================


def correct_models() -> Tuple[ModelCase, ...]:
    return tuple(c for c in MODEL_CASES if not c.bugs)


def buggy_models(bug: str) -> Tuple[ModelCase, ...]:
    if bug not in BUG_KINDS:
        raise ValueError(f"unknown bug kind {bug!r}; expected one of {sorted(BUG_KINDS)}")
    return tuple(c for c in MODEL_CASES if bug in c.bugs)


def correct_data() -> Tuple[DataCase, ...]:
    return tuple(c for c in DATA_CASES if not c.bugs)


def buggy_data() -> Tuple[DataCase, ...]:
    return tuple(c for c in DATA_CASES if c.bugs)


def _validate() -> None:
    names = [c.name for c in MODEL_CASES] + [c.name for c in DATA_CASES]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate case names: {dupes}")
    for c in MODEL_CASES:
        unknown = c.bugs - BUG_KINDS
        if unknown:
            raise ValueError(f"{c.name}: unknown bug kinds {sorted(unknown)}")
        if c.not_updated and not c.bugs & {"updated_gradient", "updated_snapshot"}:
            raise ValueError(f"{c.name}: not_updated given without an update bug")
        if c.bugs and (c.allow_not_updated or c.batch_dependent):
            raise ValueError(f"{c.name}: allow_not_updated/batch_dependent are for correct models")
    for c in DATA_CASES:
        if c.bugs - {"batch_shape"}:
            raise ValueError(f"{c.name}: data cases only know the 'batch_shape' bug")


_validate()
