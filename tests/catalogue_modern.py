"""Bugs of modern models, each a tiny seeded model with its correct twin.

``CASES`` lists ``ModernCase(kind, name, buggy, make)``; ``make()`` returns ``(assertion name,
args, kwargs)`` for the assertion that must catch the bug (``buggy=True``) or pass the twin.
The Hugging Face models are built from small configs (nothing downloaded).
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

V, D, T, B = 50, 16, 8, 3


@dataclass(frozen=True)
class ModernCase:
    kind: str
    name: str
    buggy: bool
    make: Callable[[], Tuple[str, tuple, Dict[str, Any]]]


def hf():
    """transformers without its torchvision probe (torchvision's import fails on this CPU torch)."""
    import transformers.utils as tu
    import transformers.utils.import_utils as iu

    iu.is_torchvision_available = lambda: False
    tu.is_torchvision_available = lambda: False
    import transformers

    return transformers


def ids(seed=0, b=B, t=T):
    return torch.randint(1, V, (b, t), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------- causality


class TinyDecoder(nn.Module):
    """One attention layer over token ids; ``mode`` picks the mask."""

    def __init__(self, mode="causal"):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.qkv, self.out, self.mode = nn.Embedding(V, D), nn.Linear(D, 3 * D), nn.Linear(D, V), mode

    def forward(self, x):
        h = self.emb(x) if not x.is_floating_point() else x
        q, k, v = self.qkv(h).chunk(3, -1)
        n = h.shape[1]
        if self.mode == "causal":
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.mode == "none":
            a = F.scaled_dot_product_attention(q, k, v)
        else:  # transposed: triu where tril was meant
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(n, n, dtype=torch.bool).triu())
        return self.out(a)


class CausalConv(nn.Module):
    """A temporal conv over float features (B, T, C); ``both`` pads both sides (the bug)."""

    def __init__(self, both=False, k=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.k, self.both = nn.Conv1d(4, 6, k), k, both

    def forward(self, x):
        x = x.transpose(1, 2)
        pad = ((self.k - 1) // 2, (self.k - 1) // 2) if self.both else (self.k - 1, 0)
        return self.conv(F.pad(x, pad)).transpose(1, 2)


def _feat(seed=0):
    return torch.randn(B, T, 4, generator=torch.Generator().manual_seed(seed))


def llama():
    t = hf()
    torch.manual_seed(0)
    cfg = t.LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return t.LlamaForCausalLM(cfg)


def gpt2():
    t = hf()
    torch.manual_seed(0)
    return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=32))


# ------------------------------------------------------------------------------ masks, padding


class MaskedEncoder(nn.Module):
    """Single-head attention with a key padding mask (True = pad); ``mode`` picks the bug."""

    def __init__(self, mode="ok"):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.mode = nn.Linear(D, 3 * D), mode

    def forward(self, x, key_padding_mask):
        q, k, v = self.qkv(x).chunk(3, -1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D)
        pad = key_padding_mask
        if self.mode == "ok":
            scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        elif self.mode == "query_axis":  # masks rows (queries) instead of columns (keys)
            scores = scores.masked_fill(pad[:, :, None], -1e9)
        elif self.mode == "never":
            pass
        return scores.softmax(-1) @ v


class AdditiveMaskEncoder(nn.Module):
    """Takes an HF-style attention_mask (1 keeps) and builds an additive mask; ``inverted`` is the bug."""

    def __init__(self, inverted=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.qkv, self.inverted = nn.Embedding(V, D), nn.Linear(D, 3 * D), inverted

    def forward(self, input_ids, attention_mask):
        q, k, v = self.qkv(self.emb(input_ids)).chunk(3, -1)
        keep = attention_mask if not self.inverted else 1 - attention_mask
        additive = (1.0 - keep[:, None, :].float()) * torch.finfo(torch.float32).min
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive)


class MaskedMeanPool(nn.Module):
    """Embeds ids and averages over the real tokens; ``padded_length`` divides by T (the bug)."""

    def __init__(self, padded_length=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head, self.bug = nn.Embedding(V, D), nn.Linear(D, 4), padded_length

    def forward(self, input_ids, attention_mask):
        m = attention_mask[..., None].float()
        s = (self.emb(input_ids) * m).sum(1)
        return self.head(s / (input_ids.shape[1] if self.bug else m.sum(1)))


class AdditiveInputEncoder(nn.Module):
    """Receives an additive mask (B, 1, T) of 0 / -inf and adds it to the scores; ``ignore`` drops it."""

    def __init__(self, ignore=False):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.ignore = nn.Linear(D, 3 * D), ignore

    def forward(self, x, attn_mask):
        q, k, v = self.qkv(x).chunk(3, -1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D)
        return (scores if self.ignore else scores + attn_mask).softmax(-1) @ v


class PadIdMeanPool(nn.Module):
    """Ids only, padding is id 0; the mask is derived inside. ``padded_length`` divides by T (the bug)."""

    def __init__(self, padded_length=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.bug = nn.Embedding(V, D), padded_length

    def forward(self, input_ids):
        m = (input_ids != 0)[..., None].float()
        return (self.emb(input_ids) * m).sum(1) / (input_ids.shape[1] if self.bug else m.sum(1))


def _additive():
    return torch.zeros(B, 1, T).masked_fill(_pad_mask()[:, None, :], float("-inf"))


def _pad_mask():
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, 5:] = True
    pad[2, 3:] = True
    return pad


def _x(seed=0):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def _hf_batch():
    am = (~_pad_mask()).long()
    return {"input_ids": ids() * am, "attention_mask": am}


def bert():
    t = hf()
    torch.manual_seed(0)
    return t.BertModel(t.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32, max_position_embeddings=32))


def torch_encoder():
    torch.manual_seed(0)
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True), 2,
                                 enable_nested_tensor=False)


# ---------------------------------------------------------------------------- batch size one


class SqueezeHead(nn.Module):
    def __init__(self, bug=True):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.bug = nn.Linear(6, 1), bug

    def forward(self, x):
        y = self.fc(x)
        return y.squeeze() if self.bug else y.squeeze(-1)


class SkipsBNForOne(nn.Module):
    def __init__(self, bug=True):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.bn, self.bug = nn.Linear(6, 6), nn.BatchNorm1d(6), bug
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        x = self.fc(x)
        if not self.bug or x.size(0) > 1:
            x = self.bn(x)
        return x


# --------------------------------------------------------------------------- custom backward


class Cube(torch.autograd.Function):
    """y = x ** 3 * w (w a parameter); ``bug`` picks the wrong backward."""

    bug = "none"

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x ** 3 * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx, gw = 3 * x ** 2 * w * g, (x ** 3 * g).sum(0)
        if Cube.bug == "factor":
            gx = x ** 2 * w * g
        elif Cube.bug == "sign":
            gw = -gw
        elif Cube.bug == "shape":  # right for one row only: takes the first row's gradient
            gw = x[0] ** 3 * g[0]
        return gx, gw


def cube_fn(bug):
    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x ** 3 * w

        @staticmethod
        def backward(ctx, g):
            old, Cube.bug = Cube.bug, bug
            try:
                class C:
                    saved_tensors = ctx.saved_tensors
                return Cube.backward(C, g)
            finally:
                Cube.bug = old

    return Fn


class CubeLayer(nn.Module):
    def __init__(self, bug="none"):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(4))
        self.fn = cube_fn(bug)

    def forward(self, x):
        return self.fn.apply(x, self.w)


class ScaledSquare(torch.autograd.Function):
    """A plain function checked without a module: y = 2 x^2, backward right."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 2 * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 4 * x * g


class ScaledSquareNoFactor(ScaledSquare):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


# ------------------------------------------------------------------------------ inputs used


class CachedInput(nn.Module):
    def __init__(self, bug=True):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.bug = nn.Linear(6, 3), bug
        self.register_buffer("cached", torch.randn(4, 6))

    def forward(self, x):
        return self.fc(self.cached if self.bug else x)


class TwoTower(nn.Module):
    def __init__(self, bug=True):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.d, self.bug = nn.Linear(6, 8), nn.Linear(5, 8), bug

    def forward(self, query, doc):
        qv, dv = self.q(query), self.d(doc)
        return (qv * (qv if self.bug else dv)).sum(-1)


class IgnoresMask(nn.Module):
    """Takes ids and an attention mask; ``bug`` never uses the mask."""

    def __init__(self, bug=True):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc, self.bug = nn.Embedding(V, D), nn.Linear(D, 2), bug

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        if not self.bug:
            h = h * attention_mask[..., None]
        return self.fc(h.mean(1))


class GateByComparison(nn.Module):
    """A float gate used only through ``> 0``: no gradient reaches it, yet it matters."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 3)

    def forward(self, x, gate):
        return self.fc(x) * (gate > 0).float()


# ----------------------------------------------------------------------------- initial loss


def classifier(kind="ok", c=10):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, c))
    if kind == "head_std1":
        nn.init.normal_(m[2].weight, std=1.0)
        nn.init.normal_(m[0].weight, std=1.0)
    elif kind == "saturated":
        for layer in (m[0], m[2]):
            nn.init.normal_(layer.weight, std=3.0)
    elif kind == "zero_head":
        nn.init.zeros_(m[2].weight)
        nn.init.zeros_(m[2].bias)
    if kind == "scaled":
        return nn.Sequential(m, Scale(100.0))
    return m


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def _cls_data(c=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 20, generator=g), torch.randint(0, c, (64,), generator=g)


# ----------------------------------------------------------------------------- data checks


def _loader(images_255=False, pad_label=-100, drop_class=None):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(40, 3, 4, 4, generator=g)
    if images_255:
        img = (img * 255).round()
    y = torch.arange(40) % 10
    if drop_class is not None:
        y = torch.where(y == drop_class, (drop_class + 1) % 10, y)
    seq = y[:, None].repeat(1, 5)
    seq[:, 3:] = pad_label
    return DataLoader(TensorDataset(img, y, seq), batch_size=8)


CASES = [
    # causality
    ModernCase("causality", "decoder without its causal mask", True, lambda: ("assertCausal", (TinyDecoder("none"), ids()), {})),
    ModernCase("causality", "transposed causal mask (triu)", True, lambda: ("assertCausal", (TinyDecoder("triu"), ids()), {})),
    ModernCase("causality", "causal conv padded on both sides", True, lambda: ("assertCausal", (CausalConv(True), _feat()), {})),
    ModernCase("causality", "decoder without mask on float features", True, lambda: ("assertCausal", (TinyDecoder("none"), _x()), {})),
    ModernCase("causality", "SDPA with is_causal=True", False, lambda: ("assertCausal", (TinyDecoder("causal"), ids()), {})),
    ModernCase("causality", "left-padded causal conv", False, lambda: ("assertCausal", (CausalConv(False), _feat()), {})),
    ModernCase("causality", "HF LlamaForCausalLM (dict inputs)", False,
               lambda: ("assertCausal", (llama(), {"input_ids": ids()}), {"output": "logits"})),
    ModernCase("causality", "HF GPT2LMHeadModel", False,
               lambda: ("assertCausal", (gpt2(), {"input_ids": ids()}), {"output": "logits"})),
    # masks
    ModernCase("mask", "attention never receives the mask", True,
               lambda: ("assertMaskInvariant", (MaskedEncoder("never"), {"x": _x(), "key_padding_mask": _pad_mask()}), {})),
    ModernCase("mask", "mask on the query axis", True,
               lambda: ("assertMaskInvariant", (MaskedEncoder("query_axis"), {"x": _x(), "key_padding_mask": _pad_mask()}), {})),
    ModernCase("mask", "inverted additive mask", True,
               lambda: ("assertMaskInvariant", (AdditiveMaskEncoder(True), _hf_batch()), {})),
    ModernCase("mask", "correctly masked encoder", False,
               lambda: ("assertMaskInvariant", (MaskedEncoder("ok"), {"x": _x(), "key_padding_mask": _pad_mask()}), {})),
    ModernCase("mask", "correct additive mask from attention_mask", False,
               lambda: ("assertMaskInvariant", (AdditiveMaskEncoder(False), _hf_batch()), {})),
    ModernCase("mask", "nn.TransformerEncoder with src_key_padding_mask", False,
               lambda: ("assertMaskInvariant", (torch_encoder(), {"src": _x(), "src_key_padding_mask": _pad_mask()}), {})),
    ModernCase("mask", "HF BertModel with attention_mask", False, lambda: ("assertMaskInvariant", (bert(), _hf_batch()), {})),
    ModernCase("mask", "additive mask input never added", True,
               lambda: ("assertMaskInvariant", (AdditiveInputEncoder(True), {"x": _x(), "attn_mask": _additive()}), {})),
    ModernCase("mask", "additive mask input (B, 1, T) added to the scores", False,
               lambda: ("assertMaskInvariant", (AdditiveInputEncoder(False), {"x": _x(), "attn_mask": _additive()}), {})),
    # padding
    ModernCase("padding", "pad-id mean divided by the padded length", True,
               lambda: ("assertPaddingInvariant", (PadIdMeanPool(True), _hf_batch()["input_ids"]), {"pad_id": 0})),
    ModernCase("padding", "pad-id mean divided by the token count", False,
               lambda: ("assertPaddingInvariant", (PadIdMeanPool(False), _hf_batch()["input_ids"]), {"pad_id": 0})),
    ModernCase("padding", "masked mean divided by the padded length", True,
               lambda: ("assertPaddingInvariant", (MaskedMeanPool(True), _hf_batch()), {})),
    ModernCase("padding", "attention never receives the mask (padding)", True,
               lambda: ("assertPaddingInvariant", (MaskedEncoder("never"), {"x": _x(), "key_padding_mask": _pad_mask()}), {})),
    ModernCase("padding", "masked mean divided by the token count", False,
               lambda: ("assertPaddingInvariant", (MaskedMeanPool(False), _hf_batch()), {})),
    ModernCase("padding", "correctly masked encoder (padding)", False,
               lambda: ("assertPaddingInvariant", (MaskedEncoder("ok"), {"x": _x(), "key_padding_mask": _pad_mask()}), {})),
    ModernCase("padding", "HF BertModel, padded batch", False, lambda: ("assertPaddingInvariant", (bert(), _hf_batch()), {})),
    # batch size one
    ModernCase("single_sample", ".squeeze() drops the batch dim at B=1", True,
               lambda: ("assertSingleSampleConsistent", (SqueezeHead(True), torch.randn(5, 6)), {})),
    ModernCase("single_sample", "BatchNorm skipped for single samples", True,
               lambda: ("assertSingleSampleConsistent", (SkipsBNForOne(True), torch.randn(5, 6)), {})),
    ModernCase("single_sample", ".squeeze(-1)", False,
               lambda: ("assertSingleSampleConsistent", (SqueezeHead(False), torch.randn(5, 6)), {})),
    ModernCase("single_sample", "BatchNorm always applied (eval)", False,
               lambda: ("assertSingleSampleConsistent", (SkipsBNForOne(False), torch.randn(5, 6)), {})),
    # custom backward
    ModernCase("gradcheck", "backward misses a factor", True, lambda: ("assertGradcheck", (CubeLayer("factor"), torch.randn(3, 4)), {})),
    ModernCase("gradcheck", "backward flips a sign", True, lambda: ("assertGradcheck", (CubeLayer("sign"), torch.randn(3, 4)), {})),
    ModernCase("gradcheck", "backward right only for one row", True, lambda: ("assertGradcheck", (CubeLayer("shape"), torch.randn(3, 4)), {})),
    ModernCase("gradcheck", "plain Function missing a factor", True,
               lambda: ("assertGradcheck", (ScaledSquareNoFactor.apply, torch.randn(2, 3)), {})),
    ModernCase("gradcheck", "correct custom Function in a module", False, lambda: ("assertGradcheck", (CubeLayer("none"), torch.randn(3, 4)), {})),
    ModernCase("gradcheck", "correct plain Function", False, lambda: ("assertGradcheck", (ScaledSquare.apply, torch.randn(2, 3)), {})),
    # inputs used
    ModernCase("inputs_used", "forward uses a cached tensor instead of x", True,
               lambda: ("assertInputsUsed", (CachedInput(True), torch.randn(4, 6)), {})),
    ModernCase("inputs_used", "two-tower model ignores one tower", True,
               lambda: ("assertInputsUsed", (TwoTower(True), (torch.randn(4, 6), torch.randn(4, 5))), {})),
    ModernCase("inputs_used", "attention_mask accepted and ignored", True,
               lambda: ("assertInputsUsed", (IgnoresMask(True), _hf_batch()), {})),
    ModernCase("inputs_used", "model uses x", False, lambda: ("assertInputsUsed", (CachedInput(False), torch.randn(4, 6)), {})),
    ModernCase("inputs_used", "two-tower model uses both", False,
               lambda: ("assertInputsUsed", (TwoTower(False), (torch.randn(4, 6), torch.randn(4, 5))), {})),
    ModernCase("inputs_used", "mask used", False, lambda: ("assertInputsUsed", (IgnoresMask(False), _hf_batch()), {})),
    ModernCase("inputs_used", "float gate used only through a comparison", False,
               lambda: ("assertInputsUsed", (GateByComparison(), (torch.randn(4, 6), torch.randn(4, 1))), {})),
    ModernCase("inputs_used", "ignored input declared in allow_unused", False,
               lambda: ("assertInputsUsed", (TwoTower(True), (torch.randn(4, 6), torch.randn(4, 5))), {"allow_unused": [1]})),
    # initial loss
    ModernCase("initial_loss", "head and hidden with std 1", True, lambda: ("assertInitialLoss", (classifier("head_std1"), *_cls_data()), {})),
    ModernCase("initial_loss", "saturated tanh units", True, lambda: ("assertInitialLoss", (classifier("saturated"), *_cls_data()), {})),
    ModernCase("initial_loss", "logits scaled by 100", True, lambda: ("assertInitialLoss", (classifier("scaled"), *_cls_data()), {})),
    ModernCase("initial_loss", "default initialisation", False, lambda: ("assertInitialLoss", (classifier("ok"), *_cls_data()), {})),
    ModernCase("initial_loss", "zero-initialised head", False, lambda: ("assertInitialLoss", (classifier("zero_head"), *_cls_data()), {})),
    ModernCase("initial_loss", "label-smoothed loss", False,
               lambda: ("assertInitialLoss", (classifier("ok"), *_cls_data()), {"loss_fn": nn.CrossEntropyLoss(label_smoothing=0.1)})),
    # data
    ModernCase("batch_values", "images in 0-255", True,
               lambda: ("assertBatchValues", (_loader(images_255=True),), {"value_range": {0: (0, 1)}})),
    ModernCase("batch_values", "label padding with -1 (loss ignores -100)", True,
               lambda: ("assertBatchValues", (_loader(pad_label=-1),), {"labels": 2, "num_classes": 10})),
    ModernCase("batch_values", "images in [0, 1], labels padded with -100", False,
               lambda: ("assertBatchValues", (_loader(),), {"value_range": {0: (0, 1)}, "labels": 2, "num_classes": 10})),
    ModernCase("labels_cover", "loader never yields class 3", True,
               lambda: ("assertLabelsCover", (_loader(drop_class=3),), {"classes": range(10), "labels": 1})),
    ModernCase("labels_cover", "loader covers all 10 classes", False,
               lambda: ("assertLabelsCover", (_loader(),), {"classes": range(10), "labels": 1})),
]
