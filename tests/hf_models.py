"""Small real Hugging Face models for the tests, built offline from configs (random weights).

transformers imports torchvision when it is installed, and torchvision 0.28.0 (a CUDA build) fails
to import on the CPU torch 2.13 ("operator torchvision::nms does not exist": two unconditional
fake-kernel registrations for ops its C++ extension would define). ``_torchvision_schemas``
defines those two schemas first (no kernels), after which the pure-Python parts import. A test
module calls ``require()`` and is skipped only when transformers itself is not installed.
"""

import importlib.util
import unittest

import torch

_LIB = None

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _torchvision_schemas() -> None:
    global _LIB
    if _LIB is not None or importlib.util.find_spec("torchvision") is None:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            lib.define(schema)
    _LIB = lib


def require():
    """Import transformers (after the torchvision fix) or skip the calling test module."""
    if importlib.util.find_spec("transformers") is None:
        raise unittest.SkipTest("transformers is not installed (test extra)")
    _torchvision_schemas()
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
             max_position_embeddings=64)


def bert():
    t = require()
    torch.manual_seed(0)
    return t.BertModel(t.BertConfig(**SMALL))


def roberta():
    t = require()
    torch.manual_seed(0)
    return t.RobertaModel(t.RobertaConfig(**SMALL))


def llama():
    t = require()
    torch.manual_seed(0)
    return t.LlamaForCausalLM(t.LlamaConfig(num_key_value_heads=2, **SMALL))


def gpt2():
    t = require()
    torch.manual_seed(0)
    return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64))


def clip():
    t = require()
    torch.manual_seed(0)
    text = dict(SMALL)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
                  patch_size=8)
    return t.CLIPModel(t.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))


def token_ids(batch: int = 2, length: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 100, (batch, length), generator=g)


def pixels(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=g)
