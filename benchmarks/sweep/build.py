"""Enumerate the architectures and build each one small, with natural inputs.

Three families:

* ``transformers``: every model type of ``CONFIG_MAPPING_NAMES``, with the most natural head that
  has a loss (``HEADS``, first match wins), its default config shrunk by the generic rules of
  ``shrink_config`` (no rule names a model);
* ``timm``: one model per module of ``timm.list_modules()`` (a "family"), the smallest of a few
  candidates ranked by the size words in their names and counted on the meta device;
* ``torchvision``: every builder of ``torchvision.models.list_models()``.

A spec is plain JSON data (``{"family", "name", ...}``) so the parent can hand it to a worker;
``build(spec)`` returns a ``Built`` with the model, its inputs, target and loss, or raises
``NotBuilt`` with the reason.
"""

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from . import compat

compat.install()

BATCH = 3  # batch size of the natural inputs (batch independence needs at least two samples)
SEQ = 8  # token sequence length
IMAGE = 32  # image side for shrunk transformers configs
TIMM_IMAGE = 64  # image side tried first for timm / torchvision models
MAX_PARAMETERS = 30_000_000  # a shrunk model above this "resists shrinking"


class NotBuilt(Exception):
    """The architecture cannot be built or cannot run its natural forward; the reason is the message."""


@dataclass
class Built:
    """A built model with what a user would pass to the assertions."""

    model: torch.nn.Module
    inputs: Any  # dict (transformers) or tensor (vision)
    target: Any = None  # class labels for vision models; None when the labels are in the inputs
    loss_fn: Optional[Callable] = None  # given to the library only when the output is structured
    rebuild: Callable[[int], torch.nn.Module] = None  # seed -> a fresh model from the same config
    info: Dict[str, Any] = field(default_factory=dict)

    def natural_loss(self, output: Any) -> torch.Tensor:
        """The loss a user trains with: the model's own ``.loss``, else cross-entropy on the target,
        else the library's documented default (a random-weighted sum of every floating output)."""
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, dict):
            loss = output.get("loss")
        if isinstance(loss, torch.Tensor) and loss.dim() == 0:
            return loss
        if self.target is not None:
            return F.cross_entropy(first_tensor(output), self.target)
        gen = torch.Generator().manual_seed(0)
        parts = [(t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum()
                 for t in tensor_leaves(output) if t.is_floating_point()]
        return torch.stack(parts).sum()


# ------------------------------------------------------------------------------ output traversal


def tensor_leaves(value: Any) -> List[torch.Tensor]:
    """Tensors reachable through dicts (``ModelOutput`` is one), lists and tuples; nothing else."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensor_leaves(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensor_leaves(v)]
    return []


def other_leaves(value: Any) -> List[str]:
    """Type names of the leaves that are neither tensors, containers nor None (cache objects...)."""
    if isinstance(value, torch.Tensor) or value is None:
        return []
    if isinstance(value, dict):
        return [n for v in value.values() for n in other_leaves(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in other_leaves(v)]
    return [type(value).__name__]


def first_tensor(output: Any) -> torch.Tensor:
    leaves = tensor_leaves(output)
    if not leaves:
        raise NotBuilt(f"the output holds no tensor ({type(output).__name__})")
    return leaves[0]


def call(model: torch.nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


# ------------------------------------------------------------------------------ enumeration


def enumerate_specs(families: List[str]) -> List[Dict[str, Any]]:
    specs: List[Dict[str, Any]] = []
    for family in families:
        specs.extend({"transformers": _hf_specs, "timm": _timm_specs, "torchvision": _tv_specs}[family]())
    return specs


def select(specs: List[Dict[str, Any]], only: Optional[Any], limit: Optional[int]) -> List[Dict[str, Any]]:
    """``--only``: one pattern or a list of them; a spec is kept when any pattern matches its
    type name or ``family/name`` (fnmatch glob, or plain substring); ``--limit``: round robin
    across families."""
    patterns = [only] if isinstance(only, str) else list(only or [])
    if patterns:
        def keep(s: Dict[str, Any]) -> bool:
            sid = spec_id(s)
            return any(fnmatch.fnmatch(s["name"], p) or fnmatch.fnmatch(sid, p) or p in sid for p in patterns)

        specs = [s for s in specs if keep(s)]
    if limit is not None:
        by_family: Dict[str, List[Dict[str, Any]]] = {}
        for s in specs:
            by_family.setdefault(s["family"], []).append(s)
        queues = [list(v) for v in by_family.values()]
        picked: List[Dict[str, Any]] = []
        while len(picked) < limit and any(queues):
            for q in queues:
                if q and len(picked) < limit:
                    picked.append(q.pop(0))
        specs = picked
    return specs


def spec_id(spec: Dict[str, Any]) -> str:
    return f"{spec['family']}/{spec['name']}"


# ------------------------------------------------------------------------------ transformers

# (head, mapping) in order of preference; labels: how the labels input is made.
HEADS = [
    ("masked_lm", "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "tokens"),
    ("seq2seq_lm", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "tokens"),
    ("causal_lm", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "tokens"),
    ("image_classification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "classes"),
    ("ctc", "MODEL_FOR_CTC_MAPPING_NAMES", "ctc"),
    ("audio_classification", "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES", "classes"),
    ("speech_seq2seq", "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "tokens"),
    ("sequence_classification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "classes"),
    ("base", "MODEL_MAPPING_NAMES", None),
]


def _hf_specs() -> List[Dict[str, Any]]:
    from transformers.models.auto import configuration_auto, modeling_auto

    specs = []
    for model_type, config_class in configuration_auto.CONFIG_MAPPING_NAMES.items():
        spec = {"family": "transformers", "name": model_type, "config_class": config_class}
        for head, mapping, labels in HEADS:
            cls = getattr(modeling_auto, mapping).get(model_type)
            if cls:
                spec.update(head=head, model_class=cls if isinstance(cls, str) else cls[0], labels=labels)
                break
        else:
            spec["not_built"] = "no auto-model class in any mapping"
        specs.append(spec)
    return specs


_HIDDEN = re.compile(r"^(d_model|n_embd|n_embed|dim|embed_dim|embedding_dim|embedding_size|hidden_dim|d_embed"
                     r"|word_embed_proj_dim|projection_dim|proj_dim|.*hidden_size|.*_hidden_dim)$")
_HIDDEN_LIST = re.compile(r"^(hidden_sizes|embed_dims|dims|conv_dim|channels|widths|num_channels_per_stage)$")
_INTER = re.compile(r"(intermediate|ffn|^d_ff$|^n_inner$|^d_inner$|^ff_dim$|^mlp_dim$|^d_kv$)")
_HEADS = re.compile(r"(heads$|^n_head$|^num_heads$)")
_LAYERS = re.compile(r"^(num_hidden_layers|n_layers?|num_layers|.*_layers|depth)$")
_EXPERTS = re.compile(r"^(num_experts|num_local_experts|n_routed_experts|moe_num_experts|num_experts_total)$")
_TOPK = re.compile(r"^(num_experts_per_tok|moe_topk|top_k|num_selected_experts)$")

SHRINK_VALUES = {"hidden": 32, "intermediate": 64, "heads": 2, "layers": 2, "head_dim": 16, "vocab": 256,
                 "image": IMAGE, "patch": 4, "experts": 4, "topk": 2}


def shrink_config(values: Dict[str, Any], sub_keys: Any = ()) -> Dict[str, Any]:
    """The overrides that make a config small, from a config's ``to_dict()``: generic name rules.

    Only the keys that change are returned (so the config's ``__init__`` recomputes what it derives,
    such as ``layer_types``); sub-configs (``text_config``...) are shrunk recursively.
    """
    out: Dict[str, Any] = {}
    v = SHRINK_VALUES
    for key, value in values.items():
        if isinstance(value, dict) and (key in sub_keys or "model_type" in value):
            sub = shrink_config(value, ())
            if "model_type" in value:
                sub["model_type"] = value["model_type"]
            out[key] = sub
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            new = value
            if key == "head_dim" or key == "kv_channels" or key == "attention_head_dim":
                new = min(value, v["head_dim"])
            elif _HEADS.search(key):
                new = min(value, v["heads"])
            elif _EXPERTS.match(key):
                new = min(value, v["experts"])
            elif _TOPK.match(key):
                new = min(value, v["topk"])
            elif _INTER.search(key):
                new = min(value, v["intermediate"])
            elif _HIDDEN.match(key):
                new = min(value, v["hidden"])
            elif _LAYERS.match(key):
                new = min(value, v["layers"])
            elif key == "vocab_size" or key.endswith("_vocab_size"):
                new = min(value, v["vocab"])
            elif key.endswith("image_size"):
                new = min(value, v["image"])
            elif key.endswith("patch_size"):
                new = min(value, v["patch"])
            if new != value:
                out[key] = new
        elif isinstance(value, (list, tuple)) and value and all(isinstance(x, int) and not isinstance(x, bool)
                                                                  for x in value):
            if key in ("depths", "num_layers_per_stage", "layers_per_stage") or key.endswith("depths"):
                out[key] = [1] * len(value)
            elif _HEADS.search(key):
                out[key] = [min(x, v["heads"]) for x in value]
            elif _HIDDEN_LIST.match(key):
                out[key] = [min(x, v["hidden"]) for x in value]
            elif key.endswith("image_size") and len(value) == 2:
                out[key] = [min(x, v["image"]) for x in value]
    vocab = out.get("vocab_size", values.get("vocab_size"))
    if isinstance(vocab, int):  # special token ids must stay inside the shrunk vocabulary
        for key, value in values.items():
            if key.endswith("token_id") and isinstance(value, int) and value >= vocab:
                out[key] = value % vocab
            elif key.endswith("token_id") and isinstance(value, list):
                out[key] = [x % vocab if isinstance(x, int) else x for x in value]
    return out


def _hf_config(spec: Dict[str, Any], overrides: Optional[Dict[str, Any]] = None):
    import transformers

    config_class = getattr(transformers, spec["config_class"])
    default = config_class()
    sub_keys = tuple(getattr(config_class, "sub_configs", {}) or {})
    changes = shrink_config(default.to_dict(), sub_keys) if overrides is None else overrides
    return config_class(**changes), changes


def _hf_inputs(spec: Dict[str, Any], model: torch.nn.Module, config: Any, gen: torch.Generator) -> Dict[str, Any]:
    name = getattr(model, "main_input_name", "input_ids")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = getattr(text, "vocab_size", None) or getattr(config, "vocab_size", None) or 32
    labels = spec.get("labels")
    inputs: Dict[str, Any] = {}
    if name == "input_ids":
        ids = torch.randint(min(5, vocab - 1), vocab, (BATCH, SEQ), generator=gen)
        inputs = {"input_ids": ids, "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long)}
        if labels is None and getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = ids.clone()
    elif name == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        side = getattr(vision, "image_size", IMAGE)
        side = side[0] if isinstance(side, (list, tuple)) else side
        channels = getattr(vision, "num_channels", 3)
        inputs = {"pixel_values": torch.randn(BATCH, channels, side, side, generator=gen)}
    elif name == "input_values":
        inputs = {"input_values": torch.randn(BATCH, 1600, generator=gen)}
    elif name == "input_features":
        bins = next((getattr(config, k) for k in ("num_mel_bins", "feature_size", "input_feat_per_channel")
                     if isinstance(getattr(config, k, None), int)), 80)
        frames = 2 * getattr(config, "max_source_positions", 16) if hasattr(config, "max_source_positions") else 32
        inputs = {"input_features": torch.randn(BATCH, bins, frames, generator=gen)}
    else:
        raise NotBuilt(f"no natural input for main_input_name={name!r}")
    if labels == "tokens":
        inputs["labels"] = torch.randint(min(5, vocab - 1), vocab, (BATCH, SEQ), generator=gen)
    elif labels == "classes":
        inputs["labels"] = torch.randint(0, getattr(config, "num_labels", 2), (BATCH,), generator=gen)
    elif labels == "ctc":
        inputs["labels"] = torch.randint(1, vocab, (BATCH, 2), generator=gen)
    return inputs


def _build_hf(spec: Dict[str, Any]) -> Built:
    import transformers

    if spec.get("not_built"):
        raise NotBuilt(spec["not_built"])
    try:
        model_class = getattr(transformers, spec["model_class"])
        config, changes = _hf_config(spec)
    except Exception as e:  # noqa: BLE001 - any failure is a reason not to build
        raise NotBuilt(f"config: {type(e).__name__}: {_first_line(e)}") from None

    def rebuild(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return model_class(_hf_config(spec, changes)[0])

    try:
        model = rebuild(0)
    except Exception as e:  # noqa: BLE001
        raise NotBuilt(f"construct: {type(e).__name__}: {_first_line(e)}") from None
    inputs = _hf_inputs(spec, model, config, torch.Generator().manual_seed(0))
    info = {"class": spec["model_class"], "head": spec["head"], "config_overrides": len(changes)}
    return Built(model, inputs, rebuild=rebuild, info=info)


# ------------------------------------------------------------------------------ timm

_SIZE_WORDS = ["atto", "femto", "pico", "nano", "tiny", "mini", "micro", "xxs", "xs", "small", "lite", "_t",
               "_s", "18", "b0", "light"]
TIMM_CANDIDATES = 4


def _size_rank(name: str) -> tuple:
    for i, word in enumerate(_SIZE_WORDS):
        if word in name:
            return (i, len(name), name)
    return (len(_SIZE_WORDS), len(name), name)


def _timm_specs() -> List[Dict[str, Any]]:
    import timm

    specs = []
    for module in timm.list_modules():
        names = sorted(timm.list_models(module=module), key=_size_rank)
        if not names:
            continue
        best, best_count = names[0], None
        for name in names[:TIMM_CANDIDATES]:  # smallest of the best-ranked few, counted on the meta device
            try:
                with torch.device("meta"):
                    count = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
            except Exception:  # noqa: BLE001
                continue
            if best_count is None or count < best_count:
                best, best_count = name, count
        specs.append({"family": "timm", "name": best, "module": module, "models_in_family": len(names)})
    return specs


def _vision_built(build_fn: Callable[[int, Dict[str, Any]], torch.nn.Module], num_classes: int,
                  attempts: List[tuple], info: Dict[str, Any]) -> Built:
    """Try (input shape, constructor kwargs) pairs, small first, until a forward runs."""
    try:  # counted on the meta device first: a model over the budget is never materialised
        with torch.device("meta"):
            count = sum(p.numel() for p in build_fn(0, {}).parameters())
    except Exception:  # noqa: BLE001
        count = 0
    if count > MAX_PARAMETERS:
        raise NotBuilt(f"too large for the time budget: {count:,} parameters (over {MAX_PARAMETERS:,})")
    errors = []
    for shape, kwargs in attempts:
        try:
            model = build_fn(0, kwargs)
            gen = torch.Generator().manual_seed(0)
            x = torch.randn((2,) + shape, generator=gen)
            model.eval()
            with torch.no_grad():
                out = model(x)
            first_tensor(out)
            model.train()
        except Exception as e:  # noqa: BLE001
            errors.append(f"{shape} {kwargs}: {type(e).__name__}: {_first_line(e)}")
            continue
        logits = first_tensor(out)  # class labels shaped like the logits minus the class dimension
        target = torch.randint(0, logits.shape[1], logits.shape[:1] + logits.shape[2:], generator=gen)
        return Built(model, x, target=target, rebuild=lambda seed, kw=kwargs: build_fn(seed, kw),
                     info=dict(info, input_shape=list(shape), kwargs=kwargs))
    raise NotBuilt("forward: " + errors[-1] if errors else "no input shape tried")


def _cross_entropy_on_first(output: Any, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(first_tensor(output), target)


def _build_timm(spec: Dict[str, Any]) -> Built:
    import timm

    def build_fn(seed: int, kwargs: Dict[str, Any]) -> torch.nn.Module:
        torch.manual_seed(seed)
        return timm.create_model(spec["name"], pretrained=False, num_classes=10, **kwargs)

    try:
        cfg = timm.get_pretrained_cfg(spec["name"])
        native = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
    except Exception:  # noqa: BLE001
        native = (3, 224, 224)
    small = (native[0], TIMM_IMAGE, TIMM_IMAGE)
    attempts = [(small, {}), (small, {"img_size": TIMM_IMAGE}), (native, {})]
    return _vision_built(build_fn, 10, attempts, {"module": spec["module"]})


# ------------------------------------------------------------------------------ torchvision

# Builders not run, by module, with the reason (the module, not a model name, decides).
TV_SKIPPED_MODULES = {
    "detection": "needs torchvision's C++ operators (nms, roi_align), absent from the CUDA-only 0.28.0 wheel on CPU torch",
    "quantization": "quantized inference models: not trainable in float",
    "optical_flow": "takes two images and returns a list of flow fields: no natural loss with class labels",
}


def _tv_specs() -> List[Dict[str, Any]]:
    import torchvision.models as tvm

    specs = []
    for name in tvm.list_models():
        module = tvm.get_model_builder(name).__module__.split(".")[2] if \
            tvm.get_model_builder(name).__module__.count(".") >= 2 else "classification"
        module = module if module in ("detection", "quantization", "optical_flow", "segmentation", "video") \
            else "classification"
        spec = {"family": "torchvision", "name": name, "module": module}
        if module in TV_SKIPPED_MODULES:
            spec["not_built"] = TV_SKIPPED_MODULES[module]
        specs.append(spec)
    return specs


def _build_tv(spec: Dict[str, Any]) -> Built:
    import torchvision.models as tvm

    if spec.get("not_built"):
        raise NotBuilt(spec["not_built"])

    def build_fn(seed: int, kwargs: Dict[str, Any]) -> torch.nn.Module:
        torch.manual_seed(seed)
        return tvm.get_model(spec["name"], weights=None, num_classes=10, **kwargs)

    if spec["module"] == "video":
        attempts = [((3, 4, 64, 64), {}), ((3, 8, 112, 112), {}), ((3, 16, 224, 224), {})]
    else:
        attempts = [((3, 64, 64), {}), ((3, 64, 64), {"image_size": 64}), ((3, 224, 224), {}), ((3, 299, 299), {})]
    return _vision_built(build_fn, 10, attempts, {"module": spec["module"]})


# ------------------------------------------------------------------------------ entry point


def build(spec: Dict[str, Any]) -> Built:
    built = {"transformers": _build_hf, "timm": _build_timm, "torchvision": _build_tv}[spec["family"]](spec)
    count = sum(p.numel() for p in built.model.parameters())
    if count > MAX_PARAMETERS:
        why = "resists shrinking" if spec["family"] == "transformers" else "too large for the time budget"
        raise NotBuilt(f"{why}: {count:,} parameters (over {MAX_PARAMETERS:,})")
    built.info["parameters"] = count
    built.model.train()
    try:  # the natural forward + loss must run, or there is nothing to check
        out = call(built.model, built.inputs)
        loss = built.natural_loss(out)
        if not torch.isfinite(loss):
            built.info["loss_not_finite"] = True
    except NotBuilt:
        raise
    except Exception as e:  # noqa: BLE001
        raise NotBuilt(f"forward: {type(e).__name__}: {_first_line(e)}") from None
    built.info["has_own_loss"] = getattr(out, "loss", None) is not None
    if built.target is not None and not isinstance(out, torch.Tensor):
        built.loss_fn = _cross_entropy_on_first  # structured output: a user passes a loss_fn
    return built


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else "")[:limit]
