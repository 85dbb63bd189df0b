"""Make ``import torchvision`` (and so ``import timm``) work on the CPU build of torch 2.13.

torchvision 0.28.0, the release that requires torch 2.13.0, ships only a CUDA build. On the CPU
torch its C++ extension (``torchvision/_C.so``) does not load; torchvision notices that
(``torchvision.extension._has_ops()`` is False) and skips most of its meta registrations, but two
of them -- ``torch.library.register_fake("torchvision::nms")`` and ``("torchvision::qnms")`` in
``torchvision/_meta_registrations.py`` -- are unconditional, and registering a fake kernel for an
operator that was never defined raises ``RuntimeError: operator torchvision::nms does not exist``
at import time. timm 1.0.31 imports ``torchvision.ops.misc.FrozenBatchNorm2d``
(``timm/layers/create_norm.py``), so ``import timm`` fails the same way.

``install()`` defines the two schemas (exactly the signatures of the C++ ops:
``nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor``, the same for ``qnms``)
before torchvision is imported, in a ``torchvision`` library fragment owned by this module. The
ops get no CPU kernel. What works afterwards (torch 2.13.0 CPU, torchvision 0.28.0, timm 1.0.31):

* ``import torchvision`` / ``import timm``; every pure-Python model: torchvision classification
  models (``resnet18``, ``mobilenet_v3_small``, ``vit_b_16``-style ``VisionTransformer`` built with
  small arguments, ...), ``torchvision.ops.misc`` layers, transforms; all timm models tried
  (``resnet18``, ``vit_*``, ``convnext_*``, ``efficientnet_*``) with ``pretrained=False``.
* What does NOT work: every op of the C++ extension -- ``torchvision.ops.nms`` /
  ``batched_nms``, ``roi_align``, ``roi_pool``, ``ps_roi_*``, ``deform_conv2d`` -- raise
  (``NotImplementedError``: no CPU kernel for nms/qnms, ``RuntimeError: Couldn't load custom C++
  ops`` or "operator does not exist" for the others). So detection / segmentation models whose
  forward calls them (Faster R-CNN, Mask R-CNN, RetinaNet's post-processing, ...) cannot run.
  Their backbones can.

Call ``install()`` before the first ``import torchvision`` / ``import timm``; it is idempotent and
does nothing when torchvision's own extension loads (a matching CPU build, or a CUDA machine).
"""

import importlib.util
import os

import torch

_LIB = None

SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = list(spec.submodule_search_locations)[0]
    candidates = [f for f in os.listdir(folder) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
    if not candidates:
        return False
    try:
        torch.ops.load_library(os.path.join(folder, candidates[0]))
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def install() -> None:
    """Define the torchvision op schemas torchvision's import needs, when its extension cannot."""
    global _LIB
    if _LIB is not None:
        return
    if _extension_loads():
        _LIB = False  # the real ops exist: nothing to do
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            lib.define(schema)
    _LIB = lib


def available(module: str) -> bool:
    """``install()``, then whether ``module`` (``"torchvision"``, ``"timm"``) imports."""
    install()
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True
