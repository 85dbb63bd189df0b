"""Tests of the shape-spec language (torchcheck_mixin.core.shapes): parse, match, print back.

The last class checks the library's matcher against a small reference matcher written here by
recursive backtracking over dimensions, on random specs and random values (hypothesis).
"""

import collections
import unittest
from collections.abc import Mapping

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchcheck_mixin.core.results import ShapeMismatch
from torchcheck_mixin.core.shapes import MapNode, SeqNode, ShapeNode, format_shape, format_spec, match, parse_spec

Pair = collections.namedtuple("Pair", "logits labels")


class FrozenMapping(Mapping):
    """A read-only Mapping that is not a dict (like Hugging Face's ModelOutput)."""

    def __init__(self, data):
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


def t(*shape):
    return torch.empty(shape)


def ok(spec, value):
    return match(parse_spec(spec), value).ok


# ------------------------------------------------------------------------------------ parsing


class ParseSpecValidationTest(unittest.TestCase):
    def assertMisuse(self, spec, error, *fragments, argname=None):
        with self.assertRaises(error) as cm:
            if argname is None:
                parse_spec(spec)
            else:
                parse_spec(spec, argname)
        text = str(cm.exception)
        for fragment in fragments:
            self.assertIn(fragment, text)
        return text

    def test_word_string_is_type_error_naming_the_argument(self):
        text = self.assertMisuse("B", TypeError, "expected_shape", "'B'")
        self.assertTrue(text.startswith("expected_shape "), text)

    def test_word_string_inside_a_dict_names_the_key(self):
        self.assertMisuse({"logits": "BTV"}, TypeError, "expected_shape['logits']", "'BTV'")

    def test_float_dimension(self):
        self.assertMisuse((2.0, 3), TypeError, "expected_shape", "float", "2.0")

    def test_float_inside_a_structure_names_the_place(self):
        self.assertMisuse(((2, 3), (4, 1.5)), TypeError, "expected_shape[1]", "1.5")
        self.assertMisuse({"a": (2,), "b": (0.5,)}, TypeError, "expected_shape['b']", "0.5")

    def test_negative_size(self):
        self.assertMisuse((-1, 3), ValueError, "expected_shape", "-1", "dim 0", "None")
        self.assertMisuse([(2,), (3, -4)], ValueError, "expected_shape[1]", "-4", "dim 1")

    def test_two_ellipses(self):
        self.assertMisuse((..., 2, ...), ValueError, "expected_shape", "'...'")
        self.assertMisuse({"x": ("B", ..., ...)}, ValueError, "expected_shape['x']", "'...'")

    def test_mixed_dims_and_nested_specs(self):
        text = self.assertMisuse((2, (3,)), ValueError, "expected_shape", "mixes")
        self.assertIn("(2, (3,))", text)  # the spec printed as written
        self.assertMisuse(((2, 3), None), ValueError, "expected_shape", "mixes")
        self.assertMisuse({"a": ((2,), "B")}, ValueError, "expected_shape['a']", "mixes")

    def test_bool_dims_are_rejected(self):
        self.assertMisuse((True, 3), TypeError, "expected_shape", "bool", "True")
        self.assertMisuse((3, False), TypeError, "expected_shape", "bool", "False")
        self.assertMisuse(((2,), (True,)), TypeError, "expected_shape[1]", "bool")

    def test_non_identifier_names(self):
        self.assertMisuse(("B x", 3), ValueError, "expected_shape", "'B x'", "dim 0")
        self.assertMisuse((3, "2B"), ValueError, "expected_shape", "'2B'", "dim 1")
        self.assertMisuse((3, ""), ValueError, "expected_shape", "''")
        self.assertMisuse((3, "-1"), ValueError, "expected_shape", "'-1'")

    def test_other_types(self):
        self.assertMisuse(3, TypeError, "expected_shape", "int")
        self.assertMisuse(None, TypeError, "expected_shape", "NoneType")
        self.assertMisuse({3, 4}, TypeError, "expected_shape", "set")
        self.assertMisuse((object(),), TypeError, "expected_shape", "object")
        self.assertMisuse((torch.tensor(3),), TypeError, "expected_shape", "Tensor")

    def test_empty_dict(self):
        self.assertMisuse({}, ValueError, "expected_shape", "empty dict")

    def test_argname_is_used(self):
        text = self.assertMisuse((2.0,), TypeError, "spec", argname="spec")
        self.assertTrue(text.startswith("spec "), text)
        self.assertNotIn("expected_shape", text)

    def test_valid_specs_parse(self):
        self.assertIsInstance(parse_spec((8, 10)), ShapeNode)
        self.assertIsInstance(parse_spec(("B", None, ..., "C")), ShapeNode)
        self.assertEqual(parse_spec(("B", ..., 3)).ellipsis_at, 1)
        self.assertIsNone(parse_spec((2, 3)).ellipsis_at)
        self.assertIsInstance(parse_spec(torch.Size([2, 3])), ShapeNode)
        self.assertIsInstance(parse_spec([2, 3]), ShapeNode)
        self.assertIsInstance(parse_spec(()), ShapeNode)  # a 0-d tensor
        self.assertEqual(parse_spec(()).dims, ())
        self.assertIsInstance(parse_spec((("B", 10), ("B",))), SeqNode)
        self.assertIsInstance(parse_spec([(2,), [3]]), SeqNode)
        self.assertIsInstance(parse_spec({"logits": ("B", "T", "V"), "loss": ()}), MapNode)
        self.assertIsInstance(parse_spec(((), ())), SeqNode)
        self.assertIsInstance(parse_spec((torch.Size([2]), (3,))), SeqNode)


# ------------------------------------------------------------------------------------ matching


class MatchShapeTest(unittest.TestCase):
    def test_ints(self):
        self.assertTrue(ok((8, 10), t(8, 10)))
        self.assertFalse(ok((8, 10), t(8, 5)))
        self.assertFalse(ok((8, 10), t(10, 8)))

    def test_zero_size(self):
        self.assertTrue(ok((0, 3), t(0, 3)))
        self.assertFalse(ok((1, 3), t(0, 3)))

    def test_zero_dim(self):
        self.assertTrue(ok((), torch.tensor(1.0)))
        self.assertTrue(ok([], torch.tensor(1.0)))
        self.assertFalse(ok((), t(1)))
        self.assertFalse(ok((1,), torch.tensor(1.0)))

    def test_none_matches_any_size(self):
        self.assertTrue(ok((None, 3, 32, 32), t(5, 3, 32, 32)))
        self.assertTrue(ok((None,), t(0)))
        self.assertFalse(ok((None, 3), t(5, 4)))
        self.assertFalse(ok((None,), t(5, 4)))

    def test_named_dims(self):
        self.assertTrue(ok(("B", 10), t(4, 10)))
        self.assertTrue(ok(("N", "N"), t(3, 3)))
        self.assertFalse(ok(("N", "N"), t(3, 4)))
        self.assertTrue(ok(("A", "B"), t(3, 4)))
        self.assertTrue(ok(("A", "B"), t(3, 3)))  # different names may have equal sizes

    def test_named_dim_mismatch_fields(self):
        result = match(parse_spec(("N", "N")), t(3, 4))
        (m,) = result.mismatches
        self.assertEqual(m.kind, "dim")
        self.assertEqual(m.dim_index, 1)
        self.assertEqual(m.got, 4)
        self.assertEqual(m.expected, "N=3")
        self.assertEqual(m.actual, (3, 4))
        self.assertEqual(m.spec, "('N', 'N')")
        self.assertEqual(m.detail, "dim 1: got 4, expected N=3")
        self.assertEqual(result.bindings, (("N", 3),))

    def test_int_mismatch_fields(self):
        (m,) = match(parse_spec(("B", 10)), t(8, 5)).mismatches
        self.assertEqual((m.kind, m.dim_index, m.got, m.expected), ("dim", 1, 5, "10"))
        self.assertEqual(m.detail, "dim 1: got 5, expected 10")
        self.assertEqual(m.path, ())

    def test_rank_mismatch_fields(self):
        (m,) = match(parse_spec((8, 10)), t(8, 10, 1)).mismatches
        self.assertEqual(m.kind, "rank")
        self.assertEqual(m.detail, "expected 2 dims, got 3")
        (m,) = match(parse_spec(("B", ..., 3, 4)), t(3, 4)).mismatches
        self.assertEqual(m.kind, "rank")
        self.assertEqual(m.detail, "expected at least 3 dims, got 2")

    def test_ellipsis(self):
        self.assertTrue(ok((...,), torch.tensor(1.0)))
        self.assertTrue(ok((...,), t(2, 3, 4)))
        self.assertTrue(ok(("B", ...), t(2)))
        self.assertTrue(ok(("B", ...), t(2, 3, 4)))
        self.assertFalse(ok(("B", ...), torch.tensor(1.0)))
        self.assertTrue(ok((..., "C"), t(7)))
        self.assertTrue(ok((..., 3), t(1, 2, 3)))
        self.assertFalse(ok((..., 3), t(1, 3, 2)))
        self.assertTrue(ok((2, ..., 3), t(2, 3)))
        self.assertTrue(ok((2, ..., 3), t(2, 9, 9, 3)))
        self.assertFalse(ok((2, ..., 3), t(3)))
        self.assertTrue(ok(("N", ..., "N"), t(4, 1, 4)))
        self.assertFalse(ok(("N", ..., "N"), t(4, 1, 5)))
        self.assertTrue(ok(("N", ..., "N"), t(4, 4)))

    def test_ellipsis_rank_one_needs_two_dims(self):
        self.assertFalse(ok(("N", ..., "N"), t(4)))

    def test_torch_size_and_list_specs(self):
        self.assertTrue(ok(torch.Size([2, 3]), t(2, 3)))
        self.assertFalse(ok(torch.Size([2, 3]), t(3, 2)))
        self.assertTrue(ok(torch.Size([]), torch.tensor(0.0)))
        self.assertTrue(ok([2, 3], t(2, 3)))  # torch.Size([2, 3]) == [2, 3] is False; the spec is not
        self.assertTrue(ok([2, "B"], t(2, 3)))
        self.assertTrue(ok(t(2, 3).shape, t(2, 3)))

    def test_numpy_arrays_match(self):
        import numpy as np

        self.assertTrue(ok(("B", 3), np.zeros((5, 3))))
        self.assertFalse(ok(("B", 3), np.zeros((5, 4))))

    def test_non_tensor_value(self):
        for value in (None, 3, "abc", [1, 2]):
            with self.subTest(value=repr(value)):
                result = match(parse_spec((2,)), value)
                self.assertFalse(result.ok)
                self.assertEqual(result.mismatches[0].kind, "not_a_tensor")
                self.assertIn(type(value).__name__, result.mismatches[0].detail)

    def test_bindings_reported(self):
        result = match(parse_spec(("B", "T", 10)), t(4, 7, 10))
        self.assertTrue(result.ok)
        self.assertEqual(dict(result.bindings), {"B": 4, "T": 7})

    def test_bindings_argument_shared_across_calls(self):
        bindings = {}
        self.assertTrue(match(parse_spec(("B", 3)), t(4, 3), bindings).ok)
        self.assertEqual(bindings, {"B": 4})
        self.assertFalse(match(parse_spec(("B",)), t(5), bindings).ok)
        self.assertTrue(match(parse_spec(("B",)), t(4), bindings).ok)
        self.assertTrue(match(parse_spec(("B",)), t(5)).ok)  # None: a fresh start

    def test_mismatches_are_shape_mismatch_records(self):
        result = match(parse_spec({"a": (2,), "b": ((3,), (4,))}), {"a": t(3), "b": [t(3), t(5)]})
        self.assertEqual(len(result.mismatches), 2)
        for m in result.mismatches:
            self.assertIsInstance(m, ShapeMismatch)
        self.assertEqual([m.path for m in result.mismatches], [("a",), ("b", 1)])


class MatchStructureTest(unittest.TestCase):
    def test_named_dims_bound_across_a_structured_spec(self):
        spec = (("B", 10), ("B",))
        self.assertTrue(ok(spec, (t(4, 10), t(4))))
        result = match(parse_spec(spec), (t(4, 10), t(5)))
        self.assertFalse(result.ok)
        (m,) = result.mismatches
        self.assertEqual(m.path, (1,))
        self.assertEqual(m.expected, "B=4")
        self.assertEqual(m.got, 5)

    def test_named_dims_bound_across_dict_leaves(self):
        spec = {"logits": ("B", "T", "V"), "mask": ("B", "T")}
        self.assertTrue(ok(spec, {"logits": t(2, 5, 7), "mask": t(2, 5)}))
        self.assertFalse(ok(spec, {"logits": t(2, 5, 7), "mask": t(2, 6)}))

    def test_tuple_and_list_specs_match_tuples_and_lists(self):
        for spec in ((("B", 3), ("B",)), [("B", 3), ("B",)]):
            for value in ((t(2, 3), t(2)), [t(2, 3), t(2)]):
                with self.subTest(spec=type(spec).__name__, value=type(value).__name__):
                    self.assertTrue(ok(spec, value))

    def test_tuple_spec_vs_namedtuple(self):
        self.assertTrue(ok((("B", 3), ("B",)), Pair(t(2, 3), t(2))))
        self.assertFalse(ok((("B", 3), ("B",)), Pair(t(2, 3), t(4))))

    def test_sequence_length_mismatch(self):
        (m,) = match(parse_spec(((2,), (3,))), (t(2),)).mismatches
        self.assertEqual(m.kind, "structure")
        self.assertEqual(m.detail, "expected 2 items, got 1")

    def test_sequence_spec_vs_tensor(self):
        (m,) = match(parse_spec(((2,), (3,))), t(2, 3)).mismatches
        self.assertEqual(m.kind, "structure")
        self.assertIn("a tensor of shape (2, 3)", m.detail)

    def test_dict_spec_vs_dict(self):
        spec = {"logits": ("B", 10), "loss": ()}
        self.assertTrue(ok(spec, {"logits": t(3, 10), "loss": torch.tensor(0.5)}))
        self.assertTrue(ok(spec, {"loss": torch.tensor(0.5), "logits": t(3, 10)}))  # order is free

    def test_dict_spec_vs_mapping(self):
        spec = {"logits": ("B", 10), "loss": ()}
        self.assertTrue(ok(spec, FrozenMapping({"logits": t(3, 10), "loss": torch.tensor(0.5)})))
        self.assertFalse(ok(spec, FrozenMapping({"logits": t(3, 9), "loss": torch.tensor(0.5)})))

    def test_dict_spec_vs_namedtuple(self):
        spec = {"logits": ("B", 10), "labels": ("B",)}
        self.assertTrue(ok(spec, Pair(t(3, 10), t(3))))
        self.assertFalse(ok(spec, Pair(t(3, 10), t(4))))
        result = match(parse_spec({"logits": ("B", 10)}), Pair(t(3, 10), t(3)))
        self.assertEqual(result.mismatches[0].kind, "keys")
        self.assertEqual(result.mismatches[0].extra_keys, ("'labels'",))

    def test_missing_keys(self):
        result = match(parse_spec({"logits": ("B", 10), "aux": ("B",)}), {"logits": t(3, 10)})
        (m,) = result.mismatches
        self.assertEqual(m.kind, "keys")
        self.assertEqual(m.missing_keys, ("'aux'",))
        self.assertEqual(m.extra_keys, ())
        self.assertEqual(m.detail, "missing keys ['aux']")

    def test_extra_keys(self):
        (m,) = match(parse_spec({"logits": ("B", 10)}), {"logits": t(3, 10), "hidden": t(3, 4)}).mismatches
        self.assertEqual(m.kind, "keys")
        self.assertEqual(m.extra_keys, ("'hidden'",))
        self.assertEqual(m.detail, "unexpected keys ['hidden']")

    def test_missing_and_extra_keys_and_a_wrong_leaf(self):
        result = match(parse_spec({"a": (2,), "b": (3,)}), {"a": t(5), "c": t(3)})
        kinds = sorted(m.kind for m in result.mismatches)
        self.assertEqual(kinds, ["dim", "keys"])
        keys = [m for m in result.mismatches if m.kind == "keys"][0]
        self.assertEqual(keys.detail, "missing keys ['b']; unexpected keys ['c']")

    def test_dict_spec_vs_non_mapping(self):
        for value in (t(3), (t(3),), [t(3)], None):
            with self.subTest(value=type(value).__name__):
                (m,) = match(parse_spec({"a": (3,)}), value).mismatches
                self.assertEqual(m.kind, "structure")

    def test_nested_paths(self):
        spec = {"enc": ((2, 3), {"h": ("B",)})}
        (m,) = match(parse_spec(spec), {"enc": (t(2, 3), {"h": t(2, 2)})}).mismatches
        self.assertEqual(m.path, ("enc", 1, "h"))
        self.assertEqual(m.kind, "rank")

    def test_zero_d_spec_is_not_an_empty_structure(self):
        self.assertFalse(ok((), ()))
        self.assertTrue(ok(((),), (torch.tensor(1.0),)))

    def test_any_beside_cache_objects_in_tuples_and_model_outputs(self):
        # Issue 11 root cause 4: an LM returns a cache object (not a tensor) beside its logits,
        # and a ModelOutput hides the fields it leaves None (MoE aux_loss without labels).
        import dataclasses
        from typing import Any, Optional

        from torchcheck_mixin import ANY

        class Cache:  # a non-tensor leaf, like transformers' DynamicCache
            pass

        @dataclasses.dataclass
        class FakeOutput(collections.OrderedDict):  # the ModelOutput contract: keys skip None fields
            loss: Optional[torch.Tensor] = None
            aux_loss: Optional[torch.Tensor] = None
            logits: Optional[torch.Tensor] = None
            cache: Any = None

            def __post_init__(self):
                for f in dataclasses.fields(self):
                    if getattr(self, f.name) is not None:
                        self[f.name] = getattr(self, f.name)

        out = FakeOutput(loss=torch.tensor(1.0), logits=t(4, 8, 100), cache=Cache())
        self.assertEqual(list(out.keys()), ["loss", "logits", "cache"])
        self.assertTrue(ok(((), ("B", 8, 100), ANY), (torch.tensor(1.0), t(4, 8, 100), Cache())))
        self.assertTrue(ok([("B", 8), ANY, ANY], [t(4, 8), None, (Cache(), [1, "x"])]))
        self.assertTrue(ok({"loss": (), "logits": ("B", 8, 100), "cache": ANY}, out))
        self.assertTrue(ok({"loss": (), "aux_loss": ANY, "logits": ("B", 8, 100), "cache": ANY}, out))
        # a hidden None field seen through a shape spec is "not a tensor", not a missing key
        (m,) = match(parse_spec({"loss": (), "aux_loss": (), "logits": ("B", 8, 100), "cache": ANY}), out).mismatches
        self.assertEqual((m.path, m.kind), (("aux_loss",), "not_a_tensor"))
        # a key that is no field of the output stays missing, and ANY does not excuse it
        (m,) = match(parse_spec({"loss": (), "logits": ANY, "cache": ANY, "past": ANY}), out).mismatches
        self.assertEqual((m.kind, m.missing_keys), ("keys", ("'past'",)))
        # a shape where the cache sits still fails, naming the place
        (m,) = match(parse_spec({"loss": (), "logits": ("B", 8, 100), "cache": ("B",)}), out).mismatches
        self.assertEqual((m.path, m.kind), (("cache",), "not_a_tensor"))
        # the bindings still hold across the ANY entries
        self.assertFalse(ok(((("B", 8), ANY), ("B",)), ((t(4, 8), Cache()), t(5))))


# ------------------------------------------------------------------------------------ printing


class FormatTest(unittest.TestCase):
    def test_format_spec_prints_back_as_written(self):
        cases = {
            ("B", ..., 3): "('B', ..., 3)",
            (3,): "(3,)",
            (): "()",
            (None, 3, 32, 32): "(None, 3, 32, 32)",
            (...,): "(...,)",
        }
        for spec, text in cases.items():
            with self.subTest(spec=repr(spec)):
                self.assertEqual(format_spec(spec), text)
        self.assertEqual(format_spec([2, 3]), "[2, 3]")
        self.assertEqual(format_spec([]), "[]")
        self.assertEqual(format_spec(torch.Size([2, 3])), "torch.Size([2, 3])")
        self.assertEqual(format_spec(torch.Size([])), "torch.Size([])")
        self.assertEqual(format_spec({"logits": ("B", "T", "V"), "loss": ()}), "{'logits': ('B', 'T', 'V'), 'loss': ()}")
        self.assertEqual(format_spec((("B", 10), ("B",))), "(('B', 10), ('B',))")
        self.assertEqual(format_spec(((2, 3),)), "((2, 3),)")
        self.assertEqual(format_spec([(2,), [3]]), "[(2,), [3]]")

    def test_format_spec_of_a_parsed_node(self):
        spec = {"x": ("B", ...), "y": [torch.Size([2])]}
        self.assertEqual(format_spec(parse_spec(spec)), format_spec(spec))
        self.assertEqual(format_spec(parse_spec(spec)), "{'x': ('B', ...), 'y': [torch.Size([2])]}")

    def test_format_shape(self):
        self.assertEqual(format_shape((8, 5)), "(8, 5)")
        self.assertEqual(format_shape((3,)), "(3,)")
        self.assertEqual(format_shape(()), "()")
        self.assertEqual(format_shape(torch.Size([2, 3])), "(2, 3)")
        self.assertEqual(format_shape(None), "?")

    def test_mismatch_spec_field_is_the_leaf_spec_as_written(self):
        (m,) = match(parse_spec({"x": [2, "B"]}), {"x": t(3, 3)}).mismatches
        self.assertEqual(m.spec, "[2, 'B']")


# ------------------------------------------------------------------------------- property test

NAMES = ("B", "T", "C")
KEYS = ("x", "y", "logits")


def is_shape_spec(spec):
    """A shape (dims only) as opposed to a structure; the reference's own definition."""
    if isinstance(spec, torch.Size):
        return True
    return isinstance(spec, (tuple, list)) and all(
        d is None or d is Ellipsis or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
        for d in spec
    )


def ref_dims(dims, shape, env):
    """Yield every binding environment under which ``dims`` matches ``shape`` (backtracking)."""
    if not dims:
        if not shape:
            yield env
        return
    d, rest = dims[0], dims[1:]
    if d is Ellipsis:
        for k in range(len(shape) + 1):
            yield from ref_dims(rest, shape[k:], env)
        return
    if not shape:
        return
    size = shape[0]
    if d is None:
        yield from ref_dims(rest, shape[1:], env)
    elif isinstance(d, str):
        if d in env and env[d] != size:
            return
        yield from ref_dims(rest, shape[1:], {**env, d: size})
    elif d == size:
        yield from ref_dims(rest, shape[1:], env)


def ref_match(spec, value, env):
    """Yield every binding environment under which ``value`` fits ``spec``."""
    if is_shape_spec(spec):
        if isinstance(value, torch.Tensor):
            yield from ref_dims(list(spec), list(value.shape), env)
        return
    if isinstance(spec, dict):
        if isinstance(value, Mapping):
            actual = dict(value)
        elif isinstance(value, tuple) and hasattr(type(value), "_fields"):
            actual = dict(zip(value._fields, value))
        else:
            return
        if set(actual) != set(spec):
            return
        items = list(spec.items())
    else:
        if not isinstance(value, (tuple, list)) or len(value) != len(spec):
            return
        items = list(zip(range(len(spec)), spec))
        actual = dict(enumerate(value))

    def chain(i, env):
        if i == len(items):
            yield env
            return
        key, sub = items[i]
        for env2 in ref_match(sub, actual[key], env):
            yield from chain(i + 1, env2)

    yield from chain(0, env)


def ref_first(spec, value):
    return next(iter(ref_match(spec, value, {})), None)


dims_st = st.one_of(st.integers(0, 3), st.none(), st.sampled_from(NAMES))


@st.composite
def shape_specs(draw):
    dims = draw(st.lists(dims_st, max_size=4))
    if draw(st.booleans()):
        dims.insert(draw(st.integers(0, len(dims))), Ellipsis)
    kind = draw(st.sampled_from(["tuple", "tuple", "list", "size"]))
    if kind == "size" and all(isinstance(d, int) for d in dims):
        return torch.Size(dims)
    return list(dims) if kind == "list" else tuple(dims)


specs_st = st.recursive(
    shape_specs(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.lists(children, min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, min_size=1, max_size=3),
    ),
    max_leaves=5,
)


def rare(draw, n):
    """True about once in ``n`` draws (hypothesis favours boundary integers, so not ``== 0``)."""
    return draw(st.sampled_from(range(n))) == 1


@st.composite
def value_for(draw, spec, env):
    """A value built to fit ``spec`` (sharing ``env`` for names), then possibly broken."""
    if is_shape_spec(spec):
        if rare(draw, 40):
            return draw(st.sampled_from([None, 3, "x", [1, 2]]))
        shape = []
        for d in spec:
            if d is Ellipsis:
                shape += draw(st.lists(st.integers(0, 3), max_size=2))
            elif d is None:
                shape.append(draw(st.integers(0, 3)))
            elif isinstance(d, str):
                if d not in env:
                    env[d] = draw(st.integers(0, 3))
                shape.append(env[d])
            else:
                shape.append(d)
        if rare(draw, 12):  # break it: a random shape instead
            shape = draw(st.lists(st.integers(0, 3), max_size=4))
        elif shape and rare(draw, 12):  # change one size
            i = draw(st.integers(0, len(shape) - 1))
            shape[i] = draw(st.integers(0, 3))
        return torch.empty(shape)
    if isinstance(spec, dict):
        out = {k: draw(value_for(v, env)) for k, v in spec.items()}
        if rare(draw, 20):
            out.pop(next(iter(out)))
        if rare(draw, 20):
            out["extra"] = torch.empty(2)
        how = draw(st.sampled_from(["dict", "dict", "mapping", "namedtuple"]))
        if how == "mapping":
            return FrozenMapping(out)
        if how == "namedtuple" and out:
            cls = collections.namedtuple("Out", list(out))
            return cls(**out)
        return out
    items = [draw(value_for(v, env)) for v in spec]
    if rare(draw, 20):
        if draw(st.booleans()) or not items:
            items.append(torch.empty(1))
        else:
            items.pop()
    if rare(draw, 30):
        return torch.empty(len(items))  # a tensor where a structure was expected
    return tuple(items) if draw(st.booleans()) else items


def same_spec(a, b):
    """Equal and of the same container types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_spec(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_spec(x, y) for x, y in zip(a, b))
    return a == b or (a is Ellipsis and b is Ellipsis)


class ShapeSpecPropertyTest(unittest.TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), spec=specs_st)
    def test_match_agrees_with_reference(self, data, spec):
        value = data.draw(value_for(spec, {}))
        result = match(parse_spec(spec), value)
        expected = ref_first(spec, value)
        self.assertEqual(result.ok, expected is not None, f"spec={format_spec(spec)} value={describe(value)}")
        if expected is not None:
            # The alignment is unique (at most one ... per shape), so are the bindings.
            self.assertEqual(dict(result.bindings), expected)
        else:
            self.assertTrue(result.mismatches)

    @settings(max_examples=100, deadline=None)
    @given(spec=specs_st)
    def test_format_spec_round_trips(self, spec):
        text = format_spec(spec)
        back = eval(text, {"torch": torch, "__builtins__": {}})
        self.assertTrue(same_spec(back, spec), f"{spec!r} printed as {text}")
        self.assertEqual(format_spec(parse_spec(spec)), text)

    @settings(max_examples=60, deadline=None)
    @given(
        spec=st.recursive(
            st.one_of(
                st.lists(st.one_of(dims_st, st.just(Ellipsis), st.floats(allow_nan=False), st.booleans(),
                                   st.integers(-3, 3), st.text(max_size=3)), max_size=4).map(tuple),
                st.text(max_size=3), st.integers(-2, 2), st.none(),
            ),
            lambda children: st.one_of(
                st.lists(children, max_size=3).map(tuple),
                st.lists(children, max_size=3),
                st.dictionaries(st.sampled_from(KEYS), children, max_size=2),
            ),
            max_leaves=6,
        )
    )
    def test_parse_spec_accepts_or_rejects_cleanly(self, spec):
        try:
            node = parse_spec(spec)
        except (TypeError, ValueError) as exc:
            self.assertIn("expected_shape", str(exc))
            return
        # Accepted: it must match something without crashing.
        match(node, torch.empty(2, 3))
        match(node, (torch.empty(1),))


def describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return f"{type(value).__name__}(" + ", ".join(describe(v) for v in value) + ")"
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value) + ",)"
    if isinstance(value, list):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    return repr(value)


if __name__ == "__main__":
    unittest.main()
