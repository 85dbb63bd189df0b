"""Import torchvision (and so timm and transformers) on the CPU build of torch.

torchvision 0.28.0 ships only a CUDA build: its C++ operators (``torchvision::nms``, ...) do not
load on the CPU torch 2.13, and ``torchvision/_meta_registrations.py`` /
``_autograd_registrations.py`` then raise ``operator torchvision::nms does not exist`` at import,
which breaks ``import torchvision``, ``import timm`` and ``import transformers``. Those two
modules only register fake / autograd kernels for the C++ operators; replacing them by empty
modules before the import makes every pure-Python model builder usable. The C++ operators stay
missing: a model that calls them (detection heads: ``nms``, ``roi_align``) fails at its forward and
is listed as not built.
"""

import sys
import types

_STUBBED = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def install() -> None:
    for name in _STUBBED:
        sys.modules.setdefault(name, types.ModuleType(name))
