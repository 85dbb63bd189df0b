"""The shape-spec language: parse a spec, match it against values, print it back.

A *shape* spec is a tuple, list or ``torch.Size`` whose items are dimensions:

* an ``int`` (>= 0) matches exactly that size;
* ``None`` matches any size;
* a ``str`` that is a Python identifier (``"B"``, ``"seq_len"``) is a named dimension: bound to the
  size where it first appears, and required to equal it everywhere else in the same spec (also in
  other leaves of a structured spec);
* ``...`` (Ellipsis) matches any number of dimensions, at most once per shape.

A *structured* spec mirrors a structured value: a tuple or list of specs matches a tuple, list or
namedtuple position by position; a dict of specs matches a Mapping (dict, ``ModelOutput``) or a
namedtuple key by key, and missing or extra keys are mismatches. A tuple whose items are all
dimensions is a shape; a tuple of shapes is a structure; ``()`` is the shape of a 0-d tensor.

``ANY`` (``torchcheck_mixin.ANY``) matches any value at all: a tensor of any shape, ``None``, or
an object that is not a tensor (a Hugging Face cache), beside shapes in a tuple or under a key of a
dict. A ``ModelOutput`` hides its ``None`` fields from its keys; a dict spec naming such a declared
field matches it as ``None`` (so ``ANY`` accepts it) instead of calling it missing. Inside a dict spec, a bare ``...`` means the
same (``{"logits": ("B", "T", 100), "cache": ...}``); inside a shape tuple ``...`` keeps its meaning
of "any number of dimensions".

Valid usages::

    (8, 10)                        exactly 8 x 10
    ("B", 10)                      any batch size, 10 columns
    (None, 3, 32, 32)              any batch, CHW images
    ("B", ...)                     at least one dimension, the first bound to B
    (..., "C")                     any leading dimensions, last one named C
    torch.Size([2, 3]) / [2, 3]    the same as (2, 3)
    (("B", 10), ("B",))            a pair: logits and labels with the same batch size
    {"logits": ("B", "T", "V"), "loss": ()}
    {"logits": ("B", "T", "V"), "cache": ANY}     any value under 'cache'

>>> spec = parse_spec(("B", 10))
>>> match(spec, torch.zeros(4, 10)).ok
True
>>> format_spec(("B", ..., 3))
"('B', ..., 3)"
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .results import ShapeMismatch
from .trees import ANY, Path, children, format_path, is_namedtuple, is_sequence

__unittest = True
__tracebackhide__ = True  # pytest hides this module's frames (it reads f_globals)

@dataclass(frozen=True)
class ShapeNode:
    """A parsed shape: ``dims`` as written, plus where ``...`` sits (or None)."""

    dims: Tuple[Any, ...]
    ellipsis_at: Optional[int]
    written: Any  # the user's object, for printing back


@dataclass(frozen=True)
class SeqNode:
    items: Tuple[Any, ...]
    written: Any


@dataclass(frozen=True)
class MapNode:
    items: Tuple[Tuple[Any, Any], ...]
    written: Any


@dataclass(frozen=True)
class AnyNode:
    """``ANY``: matches whatever value sits here."""

    written: Any


Node = Union[ShapeNode, SeqNode, MapNode, AnyNode]


def _is_dim(item: Any) -> bool:
    return (
        item is None
        or item is Ellipsis
        or isinstance(item, str)
        or (isinstance(item, int) and not isinstance(item, bool))
    )


def _where(argname: str, path: Path) -> str:
    return argname + format_path(path)


def parse_spec(spec: Any, argname: str = "expected_shape", _path: Path = ()) -> Node:
    """Validate ``spec`` and return its parsed form.

    Raises ``TypeError`` or ``ValueError`` naming ``argname`` (and the place inside it) for a spec
    that is not in the language: a bare word, floats, negative sizes, two ``...``, a tuple that
    mixes dimensions and nested specs.
    """
    where = _where(argname, _path)
    if not _path and isinstance(spec, (list, dict)):
        from . import trees
        trees.check_acyclic(spec, argname)
    if spec is ANY or (spec is Ellipsis and _path and not isinstance(_path[-1], int)):
        return AnyNode(spec)  # a bare ... is a whole-value wildcard only as a dict value
    if isinstance(spec, torch.Size):
        return ShapeNode(tuple(spec), None, spec)
    if isinstance(spec, str):
        raise TypeError(
            f"{where} must be a tuple of dimensions such as ('B', 10), not the string {spec!r}; "
            f"write each dimension as its own item"
        )
    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError(f"{where} is an empty dict; give a spec for each key of the output")
        return MapNode(tuple((k, parse_spec(v, argname, _path + (k,))) for k, v in spec.items()), spec)
    if not is_sequence(spec):
        raise TypeError(
            f"{where} must be a shape (a tuple, list or torch.Size of int, None, str or ...) or a "
            f"tuple/list/dict of shapes, got {type(spec).__name__} {spec!r}"
        )
    items = list(spec)
    if all(_is_dim(item) for item in items):
        ellipses = [i for i, item in enumerate(items) if item is Ellipsis]
        if len(ellipses) > 1:
            raise ValueError(f"{where} has {len(ellipses)} '...'; a shape may hold at most one")
        for i, item in enumerate(items):
            if isinstance(item, int) and item < 0:
                raise ValueError(
                    f"{where} has the negative size {item} at dim {i}; use None for 'any size'"
                )
            if isinstance(item, str) and not item.isidentifier():
                raise ValueError(
                    f"{where} has the name {item!r} at dim {i}; a named dimension must be an "
                    f"identifier such as 'B' or 'seq_len'"
                )
        return ShapeNode(tuple(items), ellipses[0] if ellipses else None, spec)
    bad = [item for item in items if not (_is_dim(item) or item is ANY or is_sequence(item)
                                          or isinstance(item, (Mapping, torch.Size)))]
    if bad:
        raise TypeError(
            f"{where} holds {type(bad[0]).__name__} {bad[0]!r}; dimensions are int, None, str or ..."
        )
    if any(_is_dim(item) for item in items):
        raise ValueError(
            f"{where} mixes dimensions and nested specs: {format_spec(spec)}; a shape holds only "
            f"int/None/str/..., a structure holds only shapes"
        )
    return SeqNode(tuple(parse_spec(item, argname, _path + (i,)) for i, item in enumerate(items)), spec)


# --------------------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class MatchResult:
    mismatches: Tuple[ShapeMismatch, ...]
    bindings: Tuple[Tuple[str, int], ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def match(node: Node, value: Any, bindings: Optional[Dict[str, int]] = None) -> MatchResult:
    """Match a parsed spec against a value (a tensor, array or structure of them).

    ``bindings`` (name -> size) is read and extended in place, so several matches can share named
    dimensions; pass a fresh dict (or None) to start unbound.
    """
    if bindings is None:
        bindings = {}
    found: List[ShapeMismatch] = []
    _match(node, value, (), bindings, found)
    return MatchResult(tuple(found), tuple(bindings.items()))


def _shape_of(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, type):
        return None
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        return None


def _match(node: Node, value: Any, path: Path, bindings: Dict[str, int], found: List[ShapeMismatch]) -> None:
    if isinstance(node, AnyNode):
        return
    if isinstance(node, ShapeNode):
        shape = _shape_of(value)
        if shape is None:
            found.append(ShapeMismatch(path, "not_a_tensor", format_spec(node.written), None,
                                       detail=f"expected a tensor, got {type(value).__name__}"))
            return
        _match_shape(node, shape, path, bindings, found)
        return
    if isinstance(node, SeqNode):
        if not (is_sequence(value)):
            found.append(ShapeMismatch(path, "structure", format_spec(node.written), _shape_of(value),
                                       detail=f"expected a sequence of {len(node.items)} items, got {_kind(value)}"))
            return
        if len(value) != len(node.items):
            found.append(ShapeMismatch(path, "structure", format_spec(node.written), None,
                                       detail=f"expected {len(node.items)} items, got {len(value)}"))
            return
        for i, (child_node, child) in enumerate(zip(node.items, value)):
            _match(child_node, child, path + (i,), bindings, found)
        return
    # MapNode
    if isinstance(value, Mapping):
        actual = dict(value.items())
        _unhide_none_fields(value, [k for k, _ in node.items], actual)
    elif is_namedtuple(value):
        actual = dict(children(value))
    else:
        found.append(ShapeMismatch(path, "structure", format_spec(node.written), _shape_of(value),
                                   detail=f"expected a mapping with keys {_keys(k for k, _ in node.items)}, got {_kind(value)}"))
        return
    expected_keys = [k for k, _ in node.items]
    missing = [k for k in expected_keys if k not in actual]
    extra = [k for k in actual if k not in dict(node.items)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys {_keys(missing)}")
        if extra:
            parts.append(f"unexpected keys {_keys(extra)}")
        found.append(ShapeMismatch(path, "keys", format_spec(node.written), None, detail="; ".join(parts),
                                   missing_keys=tuple(map(repr, missing)), extra_keys=tuple(map(repr, extra))))
    for key, child_node in node.items:
        if key in actual:
            _match(child_node, actual[key], path + (key,), bindings, found)


def _unhide_none_fields(value: Any, keys: List[Any], actual: Dict[Any, Any]) -> None:
    """A ``ModelOutput`` leaves its ``None`` fields out of its keys: put back those the spec names.

    ``CausalLMOutput(loss=None, logits=...)`` has the keys ``['logits']`` only, yet ``loss`` is a
    declared field holding ``None``; a spec naming it sees that ``None`` (which ``ANY`` matches and
    a shape reports as "not a tensor") rather than a missing key. Keys that are not declared fields
    of the dataclass stay missing.
    """
    fields = getattr(type(value), "__dataclass_fields__", None)
    if not isinstance(fields, Mapping):
        return
    for key in keys:
        if key not in actual and isinstance(key, str) and key in fields and getattr(value, key, 0) is None:
            actual[key] = None


def _kind(value: Any) -> str:
    shape = _shape_of(value)
    if shape is not None:
        return f"a tensor of shape {format_shape(shape)}"
    return type(value).__name__


def _keys(keys: Any) -> str:
    return "[" + ", ".join(repr(k) for k in keys) + "]"


def _match_shape(node: ShapeNode, shape: Tuple[int, ...], path: Path, bindings: Dict[str, int],
                 found: List[ShapeMismatch]) -> None:
    dims = node.dims
    written = format_spec(node.written)
    if node.ellipsis_at is None:
        if len(shape) != len(dims):
            found.append(ShapeMismatch(path, "rank", written, shape,
                                       detail=f"expected {len(dims)} dims, got {len(shape)}"))
            return
        pairs = list(zip(range(len(dims)), dims))
    else:
        head, tail = dims[: node.ellipsis_at], dims[node.ellipsis_at + 1:]
        if len(shape) < len(head) + len(tail):
            found.append(ShapeMismatch(path, "rank", written, shape,
                                       detail=f"expected at least {len(head) + len(tail)} dims, got {len(shape)}"))
            return
        pairs = list(zip(range(len(head)), head))
        start = len(shape) - len(tail)
        pairs += list(zip(range(start, len(shape)), tail))
    for index, dim in pairs:
        size = shape[index]
        if dim is None:
            continue
        if isinstance(dim, str):
            bound = bindings.get(dim)
            if bound is None:
                bindings[dim] = size
                continue
            if bound != size:
                found.append(ShapeMismatch(path, "dim", written, shape, dim_index=index, got=size,
                                           expected=f"{dim}={bound}",
                                           detail=f"dim {index}: got {size}, expected {dim}={bound}"))
                return
            continue
        if size != dim:
            found.append(ShapeMismatch(path, "dim", written, shape, dim_index=index, got=size, expected=str(dim),
                                       detail=f"dim {index}: got {size}, expected {dim}"))
            return


# --------------------------------------------------------------------------------------- printing


def _format_dim(dim: Any) -> str:
    if dim is Ellipsis:
        return "..."
    return repr(dim)


def format_spec(spec: Any) -> str:
    """Print a spec back the way it was written (tuple, list, torch.Size and dict kept apart)."""
    if isinstance(spec, (ShapeNode, SeqNode, MapNode, AnyNode)):
        spec = spec.written
    if spec is ANY:
        return "ANY"
    if isinstance(spec, torch.Size):
        return f"torch.Size([{', '.join(str(int(d)) for d in spec)}])"
    if isinstance(spec, Mapping):
        return "{" + ", ".join(f"{k!r}: {format_spec(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, list):
        return "[" + ", ".join(format_spec(item) for item in spec) + "]"
    if isinstance(spec, tuple):
        inner = ", ".join(format_spec(item) for item in spec)
        return f"({inner},)" if len(spec) == 1 else f"({inner})"
    return _format_dim(spec)


def format_shape(shape: Optional[Tuple[int, ...]]) -> str:
    """``(8, 5)``; ``(3,)`` for one dim; ``()`` for a 0-d tensor."""
    if shape is None:
        return "?"
    shape = tuple(int(s) for s in shape)
    return f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(str(s) for s in shape)})"
