"""The parameters of a model as the checks see them: unique tensors with every name they go by.

``model.named_parameters()`` already drops duplicates, so a tied embedding / LM head appears once
as ``emb.weight``; here the other names (``head.weight``) are kept as aliases so that a report can
say ``emb.weight (also: head.weight)`` and a user can select the tensor by either name.
Parametrized weights (``register_parametrization``, ``parametrizations.weight_norm``) are leaves
called ``fc.parametrizations.weight.original``; they also answer to the user-facing ``fc.weight``.

Selections (``allow_not_updated``, ``expect_frozen``) are resolved here. An entry may be an exact
name, a glob (``"encoder.*.bias"``), a submodule name (``"cat_branch"`` selects everything below
it), an ``nn.Module`` object or a Parameter object. A glob also matches the module names above a
parameter: ``"*.base_layer"`` selects every PEFT base layer's weight and bias. An entry that matches nothing is a
``ValueError``: a typo must not silently allow everything it was meant to allow.
"""

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .distributed import WRAPPER_NAME_COMPONENTS, clean_name

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

_PARAMETRIZED = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original\d*$")


@dataclass(frozen=True)
class ParamEntry:
    name: str  # as model.named_parameters() gives it
    aliases: Tuple[str, ...]  # other qualified names of the same tensor (tied weights)
    user_name: str  # the name the user writes: 'fc.weight' for a parametrization leaf
    param: torch.Tensor

    @property
    def all_names(self) -> Tuple[str, ...]:
        names = (self.name,) + self.aliases
        return names + ((self.user_name,) if self.user_name not in names else ())

    @property
    def display(self) -> str:
        text = self.user_name if self.user_name == self.name else f"{self.user_name} (parametrized: {self.name})"
        if self.aliases:
            text += f" (also: {', '.join(self.aliases)})"
        return text


def _wrapped(name: str) -> bool:
    return any(part in name for part in WRAPPER_NAME_COMPONENTS)


def user_facing(name: str) -> str:
    m = _PARAMETRIZED.match(name)
    if not m:
        return name
    return f"{m.group(1)}.{m.group(2)}" if m.group(1) else m.group(2)


def walk(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Every (qualified name, module), shared modules under each of their names.

    One walk serves a whole check: the parameter table, selections, lazy-module detection and
    the state guard all read it (walking a 1,000-module model costs milliseconds each time).
    """
    return list(model.named_modules(remove_duplicate=False))


def parameter_table(model: nn.Module, modules: Optional[Sequence[Tuple[str, nn.Module]]] = None) -> List[ParamEntry]:
    """Unique parameters in ``named_parameters()`` order, with their aliases."""
    names: Dict[int, List[str]] = {}
    params: Dict[int, torch.Tensor] = {}
    for prefix, m in modules if modules is not None else walk(model):
        for key, p in m._parameters.items():
            if p is None:
                continue
            names.setdefault(id(p), []).append(f"{prefix}.{key}" if prefix else key)
            params.setdefault(id(p), p)
    if any(_wrapped(n) for ns in names.values() for n in ns[:1]):
        # Wrappers inside the tree (legacy FSDP, activation checkpointing) add name components.
        names = {i: [clean_name(n) for n in ns] for i, ns in names.items()}
    return [ParamEntry(n[0], tuple(n[1:]), user_facing(n[0]), params[i]) for i, n in names.items()]


def _entries(selection: Any, argname: str) -> List[Any]:
    if selection is None:
        return []
    if isinstance(selection, (str, nn.Module, torch.Tensor)):
        return [selection]
    try:
        items = list(selection)
    except TypeError:
        raise TypeError(
            f"{argname} must be a name, glob, nn.Module or a list of them, got {type(selection).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, (str, nn.Module, torch.Tensor)):
            raise TypeError(
                f"{argname} entries must be parameter names, globs, submodule names, nn.Module or "
                f"Parameter objects; got {type(item).__name__} {item!r}"
            )
    return items


def entry_matches(entry: str, name: str) -> bool:
    """Whether a string selection entry selects the parameter called ``name``.

    An exact name; a dotted prefix (a submodule: ``"encoder"`` or ``"encoder."``); or a glob
    (``fnmatch`` on dotted names, ``*`` may span dots) matching the name or the name of a module
    above it, so ``"*.base_layer"`` selects ``layers.0.q_proj.base_layer.weight`` and
    ``"mlp.experts.*.w2"`` selects every expert's ``w2``.

        >>> entry_matches("*.base_layer", "q_proj.base_layer.weight"), entry_matches("fc", "fc2.weight")
        (True, False)
    """
    if name == entry:
        return True
    if any(ch in entry for ch in "*?["):
        parts = name.split(".")
        return any(fnmatch.fnmatchcase(".".join(parts[:k]), entry) for k in range(1, len(parts) + 1))
    prefix = entry.rstrip(".")
    return bool(prefix) and name.startswith(prefix + ".")


def describe_entry(entry: Any) -> str:
    if isinstance(entry, str):
        return repr(entry)
    if isinstance(entry, nn.Module):
        return f"<{type(entry).__name__} module>"
    return f"<Parameter of shape {tuple(entry.shape)}>"


def resolve_selection(
    model: nn.Module, table: Sequence[ParamEntry], selection: Any, argname: str,
    modules: Optional[Sequence[Tuple[str, nn.Module]]] = None,
) -> Tuple[Set[str], Dict[str, Set[str]]]:
    """Resolve ``selection`` against ``table``.

    Returns the set of selected parameter names and, per entry (described as text), the names it
    selected. Raises ``ValueError`` naming ``argname`` for an entry that selects nothing.
    """
    items = _entries(selection, argname)
    if not items:
        return set(), {}
    modules = modules if modules is not None else walk(model)
    module_names = {id(m): n for n, m in modules}
    selected: Set[str] = set()
    per_entry: Dict[str, Set[str]] = {}
    for item in items:
        hits: Set[str] = set()
        if isinstance(item, nn.Module):
            ids = {id(p) for p in item.parameters()}
            hits = {e.name for e in table if id(e.param) in ids}
            if not hits and id(item) not in module_names and item is not model:
                raise ValueError(f"{argname} entry {describe_entry(item)} is not a submodule of the model")
        elif isinstance(item, torch.Tensor):
            hits = {e.name for e in table if e.param is item}
        else:
            # entry_matches is the one rule (exact name, submodule prefix with or without the
            # trailing dot, glob); core/suggestions tests its suggestions with it too.
            hits = {e.name for e in table if any(entry_matches(item, n) for n in e.all_names)}
        if not hits:
            raise ValueError(
                f"{argname} entry {describe_entry(item)} matches no parameter of the model; "
                f"entries are names such as {table[0].name!r} (if any), globs such as 'encoder.*', "
                f"submodule names or module objects"
                if table
                else f"{argname} entry {describe_entry(item)} matches no parameter: the model has none"
            )
        per_entry[item if isinstance(item, str) else describe_entry(item)] = hits  # names stay names
        selected |= hits
    return selected, per_entry
