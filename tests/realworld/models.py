"""The real-model catalogue: real architectures built offline from tiny configs, random weights.

Every builder takes a ``seed`` and returns a fresh model (same seed, bitwise-equal weights); nothing
is downloaded. ``inputs()`` / ``target()`` draw from a private generator and leave the global RNG
alone. Sizes are tiny (hidden 32, 2 layers, vocab 100, 32x32 images, batch 4) so that one model's
whole battery takes a second or two.

A case states what a user writes in a test: the inputs, the target or ``loss_fn``, the ``output=``
selector, the shape spec, and the allowances (``allow_not_updated`` for parts these inputs do not
reach, ``expect_frozen`` for frozen parts). The allowances are not trusted: tests/test_realworld.py
checks each against the plain-torch controls of ``oracles.py`` (which parameters two real optimizer
steps move, with float64 gradients as ground truth) before it checks the library's verdict.

Families: transformers (BERT, RoBERTa, Llama, Qwen2, GPT-2, T5, Mixtral, ViT, CLIP, Wav2Vec2, BERT
with gradient checkpointing), PEFT (LoRA on Llama), timm (resnet with zero_init_last, ViT,
ConvNeXt), torchvision (resnet with zero_init_residual, mobilenet_v3_small, VisionTransformer with
its zero-initialised head) through ``torchvision_compat``, torch building blocks (checkpoint with
use_reentrant True / False, packed-sequence LSTM tagger, sparse embeddings, weight_norm /
orthogonal parametrizations, torch.compile) and components written the way Ludwig writes them
(tuple inputs, dict outputs, graph tensors in a dict attribute, attention with a key bias, a
Linear bias before BatchNorm).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import torchcheck_mixin

from . import torchvision_compat

torchvision_compat.install()  # before transformers / peft / timm import torchvision

B = 4  # batch size of every case
T = 8  # sequence length
V = 100  # vocabulary
H = 32  # hidden size

# A whole-entry wildcard in a structured shape spec ("any value here", issue 11 root cause 4):
# a cache object, a tuple of hidden states, a field the ModelOutput leaves None.
ANY = torchcheck_mixin.ANY


def _cache_key() -> str:
    """The ModelOutput key of the KV cache: 'cache' in recent transformers, 'past_key_values' before."""
    try:
        from transformers.modeling_outputs import CausalLMOutputWithPast
    except Exception:  # pragma: no cover - the extra is not installed
        return "past_key_values"
    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


CACHE = _cache_key()


def _gen(seed: int = 1234) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ids(seed: int = 1, shape=(B, T)) -> torch.Tensor:
    return torch.randint(3, V, shape, generator=_gen(seed))


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


@dataclass(frozen=True)
class RealCase:
    name: str
    family: str  # transformers, peft, timm, torchvision, torch, ludwig
    build: Callable[[int], nn.Module]
    inputs: Callable[[], Any]
    target: Optional[Callable[[], Any]] = None
    loss_fn: Optional[Callable] = None
    output: Any = None  # the output= selector (key, index or callable), None: the whole output
    shape: Any = None  # shape spec of the eval-mode output
    allow_not_updated: Tuple[str, ...] = ()
    expect_frozen: Tuple[str, ...] = ()
    optimizer: Callable = adamw  # snapshot mode's real optimizer (over trainable parameters)
    batch_independent: bool = True
    requires: Tuple[str, ...] = ()
    note: str = ""
    oracle_build: Optional[Callable[[int], nn.Module]] = None  # the float64 control's build, if not build


def available(module: str) -> bool:
    """Whether ``module`` imports (after the torchvision shim: transformers' PEFT paths import it too)."""
    torchvision_compat.install()
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001
        return False
    return True


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------- transformers


def _tiny(cls_name: str, **kw):
    import transformers

    return getattr(transformers, cls_name)(**kw)


BERT_KW = dict(vocab_size=V, hidden_size=H, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64)
DECODER_KW = dict(vocab_size=V, hidden_size=H, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=64, max_position_embeddings=64)


def bert(seed: int = 0):
    import transformers

    _seeded(seed)
    return transformers.BertModel(_tiny("BertConfig", **BERT_KW))


def bert_checkpointed(seed: int = 0):
    model = bert(seed)
    model.gradient_checkpointing_enable()  # HF sets up torch.utils.checkpoint (reentrant by default)
    return model


def roberta(seed: int = 0):
    import transformers

    _seeded(seed)
    return transformers.RobertaForSequenceClassification(_tiny("RobertaConfig", num_labels=3, pad_token_id=1, **BERT_KW))


def llama(seed: int = 0):
    import transformers

    _seeded(seed)
    return transformers.LlamaForCausalLM(_tiny("LlamaConfig", **DECODER_KW))


def qwen2(seed: int = 0):
    import transformers

    _seeded(seed)
    return transformers.Qwen2Model(_tiny("Qwen2Config", **DECODER_KW))


def gpt2(seed: int = 0):
    import transformers

    _seeded(seed)
    return transformers.GPT2LMHeadModel(_tiny("GPT2Config", vocab_size=V, n_embd=H, n_layer=2, n_head=2, n_positions=64))


def t5(seed: int = 0):
    import transformers

    _seeded(seed)
    config = _tiny("T5Config", vocab_size=V, d_model=H, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, decoder_start_token_id=0, pad_token_id=0)
    return transformers.T5ForConditionalGeneration(config)


def mixtral(seed: int = 0, **kw):
    import transformers

    _seeded(seed)
    config = _tiny("MixtralConfig", num_local_experts=4, num_experts_per_tok=2, **DECODER_KW, **kw)
    return transformers.MixtralForCausalLM(config)


def mixtral_eager_experts(seed: int = 0):
    """The same weights with the per-expert loop: the default grouped_mm kernel has no float64."""
    return mixtral(seed, experts_implementation="eager")


def vit(seed: int = 0):
    import transformers

    _seeded(seed)
    config = _tiny("ViTConfig", image_size=32, patch_size=8, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, num_labels=10)
    return transformers.ViTForImageClassification(config)


def clip(seed: int = 0):
    import transformers

    _seeded(seed)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=V, hidden_size=H, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=T, eos_token_id=2, bos_token_id=1, pad_token_id=0),
        vision_config=dict(hidden_size=H, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    return transformers.CLIPModel(config)


def wav2vec2(seed: int = 0):
    import transformers

    _seeded(seed)
    config = _tiny("Wav2Vec2Config", vocab_size=20, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, mask_time_prob=0.3,
                   mask_time_length=2, ctc_loss_reduction="mean")
    return transformers.Wav2Vec2ForCTC(config)


def peft_lora_llama(seed: int = 0):
    import peft

    base = llama(seed)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    return peft.get_peft_model(base, config)


def _text_inputs(seed=1):
    return lambda: {"input_ids": _ids(seed), "attention_mask": torch.ones(B, T, dtype=torch.long)}


def _images(seed=2, size=32):
    return lambda: torch.randn(B, 3, size, size, generator=_gen(seed))


def _hidden_target(seed=3):
    return lambda: torch.randn(B, T, H, generator=_gen(seed))


def _last_hidden_mse(out, y):
    return F.mse_loss(out.last_hidden_state, y)


def _lm_inputs(seed=1):
    def make():
        ids = _ids(seed)
        return {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long), "labels": ids}
    return make


def _t5_inputs():
    return {"input_ids": _ids(1), "attention_mask": torch.ones(B, T, dtype=torch.long), "labels": _ids(2, (B, 5))}


def _clip_inputs():
    ids = _ids(1)
    ids[:, -1] = 2  # eos closes every sentence (CLIP pools the eos token)
    return {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long),
            "pixel_values": torch.randn(B, 3, 32, 32, generator=_gen(2)), "return_loss": True}


def _wav_inputs():
    return {"input_values": torch.randn(B, 400, generator=_gen(4)), "labels": torch.randint(1, 20, (B, 5), generator=_gen(5))}


TRANSFORMERS_CASES = [
    RealCase("bert", "transformers", bert, _text_inputs(), target=_hidden_target(), loss_fn=_last_hidden_mse,
             shape={"last_hidden_state": ("B", T, H), "pooler_output": ("B", H)},
             allow_not_updated=("pooler", "*.attention.self.key.bias"), requires=("transformers",),
             note="loss on last_hidden_state only: the pooler is unused; key biases: softmax is shift-invariant"),
    RealCase("bert_gradient_checkpointing", "transformers", bert_checkpointed, _text_inputs(), target=_hidden_target(),
             loss_fn=_last_hidden_mse, shape={"last_hidden_state": ("B", T, H), "pooler_output": ("B", H)},
             allow_not_updated=("pooler", "*.attention.self.key.bias"), requires=("transformers",),
             note="gradient_checkpointing_enable(): torch.utils.checkpoint in every layer"),
    RealCase("roberta_classifier", "transformers", roberta,
             lambda: {**_text_inputs()(), "labels": torch.randint(0, 3, (B,), generator=_gen(6))},
             shape={"loss": (), "logits": ("B", 3)}, allow_not_updated=("*.key.bias",), requires=("transformers",),
             note="labels in the inputs: the ModelOutput's .loss is the training loss"),
    RealCase("llama_causal_lm", "transformers", llama, _lm_inputs(),
             shape={"loss": (), "logits": ("B", T, V), CACHE: ANY}, requires=("transformers",),
             note="rotary inv_freq is a non-persistent buffer; the output holds a DynamicCache"),
    RealCase("qwen2", "transformers", qwen2, _text_inputs(), target=_hidden_target(), loss_fn=_last_hidden_mse,
             shape={"last_hidden_state": ("B", T, H), CACHE: ANY}, requires=("transformers",)),
    RealCase("gpt2_lm", "transformers", gpt2, _lm_inputs(),
             shape={"loss": (), "logits": ("B", T, V), CACHE: ANY}, requires=("transformers",),
             note="tied input/output embeddings"),
    RealCase("t5_seq2seq", "transformers", t5, _t5_inputs,
             shape={"loss": (), "logits": ("B", 5, V), CACHE: ANY, "encoder_last_hidden_state": ("B", T, H)},
             requires=("transformers",)),
    RealCase("mixtral_moe", "transformers", mixtral, _lm_inputs(),
             shape={"loss": (), "aux_loss": ANY, "logits": ("B", T, V), CACHE: ANY,
                    "router_logits": ANY},
             oracle_build=mixtral_eager_experts, requires=("transformers",),
             note="4 experts, top-2 routing; the float64 control runs the eager expert loop (grouped_mm is float32-only)"),
    RealCase("vit_classifier", "transformers", vit, _images(), target=lambda: torch.randint(0, 10, (B,), generator=_gen(7)),
             loss_fn=lambda out, y: F.cross_entropy(out.logits, y), shape={"logits": ("B", 10)},
             allow_not_updated=("*.k_proj.bias",), requires=("transformers",)),
    RealCase("clip", "transformers", clip, _clip_inputs,
             shape={"loss": (), "logits_per_image": ("B", "B"), "logits_per_text": ("B", "B"), "text_embeds": ("B", 16),
                    "image_embeds": ("B", 16), "text_model_output": ANY, "vision_model_output": ANY},
             allow_not_updated=("*.k_proj.bias",), batch_independent=False, requires=("transformers",),
             note="contrastive: logits_per_image compares every image with every text of the batch"),
    RealCase("wav2vec2_ctc", "transformers", wav2vec2, _wav_inputs, shape={"loss": (), "logits": ("B", None, 20)},
             allow_not_updated=("*.k_proj.bias",), requires=("transformers",), note="SpecAugment (mask_time_prob) draws from numpy's RNG in train mode"),
    RealCase("peft_lora_llama", "peft", peft_lora_llama, _lm_inputs(),
             shape={"loss": (), "logits": ("B", T, V), CACHE: ANY},
             expect_frozen=("base_model.model.model.embed_tokens", "base_model.model.model.norm",
                            "base_model.model.lm_head", "*.base_layer.weight", "*.mlp.*", "*.k_proj.*",
                            "*.o_proj.*", "*layernorm*"),
             requires=("transformers", "peft"), note="LoRA B is zero-initialised: A's first gradient is exactly 0"),
]

# ------------------------------------------------------------------------------- timm / torchvision


def timm_resnet(seed: int = 0):
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    _seeded(seed)
    model = ResNet(BasicBlock, [1, 1, 1, 1], channels=(8, 16, 32, 64), stem_width=8, num_classes=10,
                   zero_init_last=True)
    # timm.create_model("resnet18") is 11M parameters; the same class, one block per stage, narrow
    assert isinstance(model, timm.models.resnet.ResNet)
    return model


def timm_vit(seed: int = 0):
    import timm

    _seeded(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=H, depth=2,
                             num_heads=2, num_classes=10)


def timm_convnext(seed: int = 0):
    import timm

    _seeded(seed)
    return timm.create_model("convnext_atto", pretrained=False, dims=(8, 16, 24, 32), depths=(1, 1, 1, 1),
                             num_classes=10)


def tv_resnet(seed: int = 0):
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet

    _seeded(seed)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10, zero_init_residual=True)


def tv_mobilenet(seed: int = 0):
    import torchvision

    _seeded(seed)
    return torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.25)


def tv_vit(seed: int = 0):
    from torchvision.models.vision_transformer import VisionTransformer

    _seeded(seed)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=H, mlp_dim=64,
                             num_classes=10)


def _labels(n=10, seed=7):
    return lambda: torch.randint(0, n, (B,), generator=_gen(seed))


VISION_CASES = [
    RealCase("timm_resnet_zero_init_last", "timm", timm_resnet, _images(), target=_labels(), shape=("B", 10),
             requires=("timm",), note="zero_init_last: each block's last BN weight is 0"),
    RealCase("timm_vit", "timm", timm_vit, _images(), target=_labels(), shape=("B", 10), requires=("timm",)),
    RealCase("timm_convnext", "timm", timm_convnext, _images(), target=_labels(), shape=("B", 10), requires=("timm",)),
    RealCase("torchvision_resnet_zero_init_residual", "torchvision", tv_resnet, _images(), target=_labels(),
             shape=("B", 10), requires=("torchvision",)),
    RealCase("torchvision_mobilenet_v3_small", "torchvision", tv_mobilenet, _images(), target=_labels(),
             shape=("B", 10), allow_not_updated=("features.*.block.2.1.bias", "features.*.block.3.1.bias"),
             requires=("torchvision",),
             note="each block's projection BN bias: only a residual add and a 1x1 conv before the next BatchNorm"),
    RealCase("torchvision_vit", "torchvision", tv_vit, _images(), target=_labels(), shape=("B", 10),
             requires=("torchvision",), note="zero-initialised head: every other tensor's first gradient is 0"),
]

# ------------------------------------------------------------------------------- torch building blocks


class CheckpointedMLP(nn.Module):
    def __init__(self, use_reentrant: bool):
        super().__init__()
        self.use_reentrant = use_reentrant
        self.inp = nn.Linear(16, H)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Linear(H, H)) for _ in range(2))
        self.head = nn.Linear(H, 5)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        h = self.inp(x)
        for block in self.blocks:
            h = h + checkpoint(block, h, use_reentrant=self.use_reentrant)
        return self.head(h)


class PackedLSTMTagger(nn.Module):
    """A per-token tagger over variable-length sequences (pack_padded_sequence / pad_packed_sequence)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, 16, padding_idx=0)
        self.lstm = nn.LSTM(16, H, batch_first=True, bidirectional=True)
        self.tag = nn.Linear(2 * H, 5)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # padded to this batch's longest sample
        return self.tag(out)


def _tagger_inputs():
    lengths = torch.tensor([8, 5, 3, 6])
    ids = _ids(8)
    for i, n in enumerate(lengths.tolist()):
        ids[i, n:] = 0
    return ids, lengths


class SparseBagClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H, sparse=True)
        self.head = nn.Linear(H, 3)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


class ParametrizedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        from torch.nn.utils import parametrizations

        self.a = parametrizations.weight_norm(nn.Linear(16, H))
        self.b = parametrizations.orthogonal(nn.Linear(H, H))
        self.c = nn.Linear(H, 5)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.relu(self.a(x)))))


def _seeded_build(cls, *args):
    def build(seed: int = 0):
        _seeded(seed)
        return cls(*args)
    return build


def compiled_mlp(seed: int = 0):
    _seeded(seed)
    model = nn.Sequential(nn.Linear(16, H), nn.LayerNorm(H), nn.GELU(), nn.Linear(H, 5))
    return torch.compile(model, backend="eager")  # the OptimizedModule wrapper, no C++ toolchain needed


def _vectors(seed=9):
    return lambda: torch.randn(B, 16, generator=_gen(seed))


TORCH_CASES = [
    RealCase("checkpoint_reentrant", "torch", _seeded_build(CheckpointedMLP, True), _vectors(), target=_labels(5),
             shape=("B", 5), note="torch.utils.checkpoint(use_reentrant=True): incompatible with autograd.grad"),
    RealCase("checkpoint_non_reentrant", "torch", _seeded_build(CheckpointedMLP, False), _vectors(), target=_labels(5),
             shape=("B", 5)),
    RealCase("packed_lstm_tagger", "torch", _seeded_build(PackedLSTMTagger), _tagger_inputs,
             target=lambda: torch.randint(0, 5, (B, 8), generator=_gen(10)),
             loss_fn=lambda out, y: F.cross_entropy(out.transpose(1, 2), y[:, :out.shape[1]]),
             shape=("B", "T", 5), note="output length = the batch's longest sample"),
    RealCase("sparse_embedding", "torch", _seeded_build(SparseBagClassifier), lambda: _ids(11), target=_labels(3),
             shape=("B", 3), optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
             note="nn.Embedding(sparse=True): AdamW rejects sparse gradients, so SGD is the real optimizer"),
    RealCase("parametrized_mlp", "torch", _seeded_build(ParametrizedMLP), _vectors(), target=_labels(5), shape=("B", 5),
             note="weight_norm and orthogonal parametrizations (original0/original1, original)"),
    RealCase("torch_compile", "torch", compiled_mlp, _vectors(), target=_labels(5), shape=("B", 5)),
]

# ------------------------------------------------------------------------------- Ludwig-style components


class LudwigSequenceEncoder(nn.Module):
    """Like Ludwig's encoders: called with an inputs tuple, returns {"encoder_output": ...}."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.rnn = nn.GRU(H, H, batch_first=True)
        self.fc = nn.Linear(H, H)

    def forward(self, ids, mask=None):
        hidden, _ = self.rnn(self.embed(ids))
        return {"encoder_output": self.fc(hidden[:, -1]), "encoder_output_state": hidden}


class TabNetLike(nn.Module):
    """Keeps graph tensors in a dict attribute (Ludwig's TabNet: self._losses) and returns a tuple."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(16)
        self.steps = nn.ModuleList(nn.Linear(16, 16) for _ in range(2))
        self.attn = nn.Linear(16, 16)
        self.out = nn.Linear(16, 5)
        self._losses: Dict[str, torch.Tensor] = {}

    def forward(self, x):
        x = self.bn(x)
        mask = torch.softmax(self.attn(x), dim=-1)
        h = x
        for step in self.steps:
            h = torch.relu(step(h * mask))
        self._losses["sparsity"] = (mask * torch.log(mask + 1e-9)).mean()  # a tensor with autograd history
        return self.out(h), mask


class KeyBiasAttention(nn.Module):
    """Self-attention with a bias on the key projection (Ludwig's MultiHeadSelfAttention).

    softmax is shift-invariant along the keys, so the key bias's true gradient is exactly zero:
    float32 leaves rounding noise (~1e-11), float64 shows the zero. It is legitimately unused."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(H, H)
        self.k = nn.Linear(H, H)
        self.v = nn.Linear(H, H)
        self.o = nn.Linear(H, H)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(H)
        return {"combiner_output": self.o(torch.softmax(scores, -1) @ self.v(x))}


class BiasBeforeBatchNorm(nn.Module):
    """Ludwig's FCStack with use_bias and norm='batch': the Linear bias is cancelled by BatchNorm in train mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, H)
        self.norm = nn.BatchNorm1d(H)
        self.head = nn.Linear(H, 5)

    def forward(self, x):
        return {"logits": self.head(torch.relu(self.norm(self.fc(x))))}


LUDWIG_CASES = [
    RealCase("ludwig_sequence_encoder", "ludwig", _seeded_build(LudwigSequenceEncoder),
             lambda: (_ids(12), torch.ones(B, T, dtype=torch.bool)),
             target=lambda: torch.randn(B, H, generator=_gen(13)), output="encoder_output",
             shape={"encoder_output": ("B", H), "encoder_output_state": ("B", T, H)},
             note="tuple inputs, dict output, a target for the 'encoder_output' entry"),
    RealCase("ludwig_tabnet_like", "ludwig", _seeded_build(TabNetLike), _vectors(), target=_labels(5), output=0,
             shape=(("B", 5), ("B", 16)), note="graph tensor kept in self._losses"),
    RealCase("ludwig_attention_key_bias", "ludwig", _seeded_build(KeyBiasAttention),
             lambda: torch.randn(B, T, H, generator=_gen(14)), target=lambda: torch.randn(B, T, H, generator=_gen(15)),
             output="combiner_output", shape={"combiner_output": ("B", T, H)}, allow_not_updated=("k.bias",),
             note="the key bias's gradient is rounding noise (exactly 0 in float64)"),
    RealCase("ludwig_bias_before_batchnorm", "ludwig", _seeded_build(BiasBeforeBatchNorm), _vectors(),
             target=_labels(5), output="logits", shape={"logits": ("B", 5)}, allow_not_updated=("fc.bias",),
             note="a Linear bias before BatchNorm: its gradient is rounding noise in train mode"),
]

CASES: List[RealCase] = TRANSFORMERS_CASES + VISION_CASES + TORCH_CASES + LUDWIG_CASES


def cases(available_only: bool = True) -> List[RealCase]:
    return [c for c in CASES if not available_only or all(available(m) for m in c.requires)]


def by_name(name: str) -> RealCase:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)
