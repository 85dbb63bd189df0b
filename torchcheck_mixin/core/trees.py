"""Walking nested values: tensors inside tuples, lists, namedtuples, dicts and Mappings.

Models return and loaders yield structured values (``(logits, aux)``, ``{"x": ..., "y": ...}``,
Hugging Face ``ModelOutput`` objects, which are Mappings). Every check that looks at "each tensor"
goes through this module so that all of them agree on what a leaf is and how its place is written:
a path such as ``['logits'][0]``, the same notation numpy.testing and torch.testing use.

>>> import torch
>>> [(format_path(p), tuple(t.shape)) for p, t in leaves({"a": torch.zeros(2), "b": (torch.zeros(3),)})]
[("['a']", (2,)), ("['b'][0]", (3,))]
"""

from collections.abc import Mapping
from typing import Any, Callable, Iterator, List, Tuple

import torch

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

Path = Tuple[Any, ...]


def is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def is_sequence(value: Any) -> bool:
    """A tuple or list that holds items (strings and tensors are leaves, not sequences)."""
    return isinstance(value, (tuple, list))


def children(value: Any) -> List[Tuple[Any, Any]]:
    """The (key, child) pairs of a container, in a stable order; empty for a leaf."""
    if isinstance(value, Mapping):
        return list(value.items())
    if is_namedtuple(value):
        return list(zip(value._fields, value))
    if is_sequence(value):
        return list(enumerate(value))
    return []


def is_container(value: Any) -> bool:
    return isinstance(value, Mapping) or is_sequence(value)


def leaves(value: Any, path: Path = (), _active: Any = None) -> Iterator[Tuple[Path, Any]]:
    """Yield ``(path, leaf)`` for every non-container value, depth first.

    A container that contains itself raises ``ValueError`` (see ``check_acyclic``).
    """
    if is_container(value):
        active = set() if _active is None else _active
        if id(value) in active:
            raise ValueError(_cycle_message(path))
        active.add(id(value))
        try:
            for key, child in children(value):
                yield from leaves(child, path + (key,), active)
        finally:
            active.discard(id(value))
    else:
        yield path, value


def _cycle_message(path: Path, root: str = "value") -> str:
    return (f"{root}{format_path(path)} contains itself (a self-referential list or dict); "
            "nested structures must be trees")


def check_acyclic(value: Any, argname: str) -> None:
    """Raise ``ValueError`` naming ``argname`` when a container inside ``value`` contains itself."""
    try:
        for _ in leaves(value):
            pass
    except ValueError as e:
        raise ValueError(f"{argname}: {e}") from None


def tensor_leaves(value: Any) -> List[Tuple[Path, torch.Tensor]]:
    return [(p, leaf) for p, leaf in leaves(value) if isinstance(leaf, torch.Tensor)]


def _rebuild_mapping(value: Mapping, items: dict) -> Any:
    """A Mapping of ``value``'s type holding ``items``.

    Keyword construction first: dataclass-like Mappings (Hugging Face ``ModelOutput``: an
    ``OrderedDict`` whose keys are also attributes) take their fields by name, and given one dict
    positionally would store it in their first field. Then positional, then a plain dict.
    """
    kind = type(value)
    if kind is dict:
        return items
    if all(isinstance(k, str) for k in items):
        try:
            rebuilt = kind(**items)
            if list(rebuilt.keys()) == list(items):
                return rebuilt
        except Exception:  # noqa: BLE001 - a constructor that takes something else
            pass
    try:
        return kind(items)
    except Exception:  # noqa: BLE001 - a Mapping type whose constructor takes something else
        return items


def map_with_path(fn: Callable[[Path, Any], Any], value: Any, path: Path = ()) -> Any:
    """Rebuild ``value`` with ``fn(path, leaf)`` applied to every leaf; containers keep their type.

    Mappings that cannot be rebuilt from a dict (exotic user classes) come back as plain dicts;
    namedtuples are rebuilt field by field.
    """
    if is_container(value):
        check_acyclic(value, "value") if not path else None
    if isinstance(value, Mapping):
        items = {k: map_with_path(fn, v, path + (k,)) for k, v in value.items()}
        return _rebuild_mapping(value, items)
    if is_namedtuple(value):
        return type(value)(*(map_with_path(fn, v, path + (k,)) for k, v in zip(value._fields, value)))
    if isinstance(value, tuple):
        return tuple(map_with_path(fn, v, path + (i,)) for i, v in enumerate(value))
    if isinstance(value, list):
        return [map_with_path(fn, v, path + (i,)) for i, v in enumerate(value)]
    return fn(path, value)


def map_tensors(fn: Callable[[torch.Tensor], Any], value: Any) -> Any:
    """Rebuild ``value`` with ``fn`` applied to each tensor (other leaves unchanged)."""
    return map_with_path(lambda _, leaf: fn(leaf) if isinstance(leaf, torch.Tensor) else leaf, value)


def format_path(path: Path) -> str:
    """``('logits', 0)`` -> ``['logits'][0]``; the empty path (the value itself) -> ``''``."""
    out = []
    for key in path:
        out.append(f"[{key!r}]" if not isinstance(key, int) else f"[{key}]")
    return "".join(out)


def describe_path(path: Path, root: str = "output") -> str:
    """A path for messages: ``output['logits']``, or ``output`` for the value itself."""
    return root + format_path(path)


class _Anything:
    """``ANY``: a whole-value wildcard in shape specs and dtype structures (a singleton)."""

    _instance = None

    def __new__(cls) -> "_Anything":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ANY"

    def __reduce__(self) -> str:
        return "ANY"


ANY = _Anything()
