"""Structured outputs of real code: Hugging Face ModelOutput objects holding non-tensor leaves.

A default causal-LM output holds a cache object next to the logits. assertDtype skips and lists
it (never a mismatch), a shape spec says "anything here" with ANY (or a bare ... as a dict value),
assertDtype takes a structure of dtypes, and ModelOutput survives every rebuild (core/trees).
"""

import unittest

import torch

from torchcheck_mixin import ANY, ModelTestCase, check_dtype, check_forward_shape
from torchcheck_mixin.core import trees
from torchcheck_mixin.core.shapes import format_spec, parse_spec

from . import hf_models as H


class CacheLeaf(ModelTestCase):
    @classmethod
    def setUpClass(cls):
        H.require()
        cls.model = H.llama().eval()
        cls.ids = H.token_ids(2, 5)
        with torch.no_grad():
            cls.out = cls.model(input_ids=cls.ids)
        cls.cache_key = next(k for k, v in cls.out.items() if not isinstance(v, torch.Tensor))

    def test_dtype_skips_the_cache(self):
        self.assertDtype(self.out, torch.float32)
        result = check_dtype(self.out, torch.float32)
        self.assertEqual(result.skipped, ((f"[{self.cache_key!r}]", type(self.out[self.cache_key]).__name__),))

    def test_dtype_failure_lists_what_was_not_checked(self):
        with self.assertRaises(self.failureException) as ctx:
            self.assertDtype(self.out, torch.float64)
        self.assertIn(f"not checked (not tensors): value[{self.cache_key!r}] (DynamicCache)", str(ctx.exception))

    def test_dtype_structure(self):
        self.assertDtype(self.out, {"logits": torch.float32, self.cache_key: ANY})
        self.assertDtype(self.out, {"logits": torch.float32, self.cache_key: None})
        with self.assertRaises(self.failureException) as ctx:
            self.assertDtype(self.out, {"logits": torch.bfloat16, self.cache_key: ANY})
        self.assertIn("value['logits']: torch.float32, expected torch.bfloat16", str(ctx.exception))

    def test_shape_spec_any(self):
        self.assertForwardShape(self.model, {"input_ids": self.ids}, {"logits": ("B", 5, 100), self.cache_key: ANY})
        self.assertForwardShape(self.model, {"input_ids": self.ids}, {"logits": ("B", 5, 100), self.cache_key: ...})
        with self.assertRaises(self.failureException):  # without the entry the key is unexpected
            self.assertForwardShape(self.model, {"input_ids": self.ids}, {"logits": ("B", 5, 100)})
        with self.assertRaises(self.failureException):  # a shape where a cache sits is a mismatch
            self.assertForwardShape(self.model, {"input_ids": self.ids}, {"logits": ("B", 5, 100), self.cache_key: ("B",)})

    def test_model_output_rebuilt_with_its_type(self):
        moved = trees.map_tensors(lambda t: t * 2, self.out)
        self.assertIs(type(moved), type(self.out))
        self.assertEqual(list(moved.keys()), list(self.out.keys()))
        self.assertTrue(torch.equal(moved.logits, self.out.logits * 2))  # attribute access still works
        self.assertIs(moved[self.cache_key], self.out[self.cache_key])


class NoVacuousDtype(unittest.TestCase):
    def test_no_tensor_checked_is_an_error(self):
        with self.assertRaises(ValueError):
            check_dtype({"cache": object(), "n": 3}, torch.float32)
        with self.assertRaises(ValueError):
            check_dtype({"a": torch.zeros(1)}, {"a": ANY})

    def test_structure_mirroring(self):
        value = {"x": torch.zeros(1), "y": (torch.zeros(1, dtype=torch.long), torch.zeros(1))}
        self.assertTrue(check_dtype(value, {"x": torch.float32, "y": (torch.int64, torch.float32)}).passed)
        self.assertTrue(check_dtype(value, {"x": torch.float32, "y": (torch.int64, None)}).passed)
        missing = check_dtype(value, {"x": torch.float32, "z": torch.float32, "y": ANY})
        self.assertEqual([(m.path, m.actual) for m in missing.mismatches], [(("z",), "missing from the value")])
        extra = check_dtype(value, {"x": torch.float32})
        self.assertEqual(sorted(m.path for m in extra.mismatches), [("y", 0), ("y", 1)])

    def test_structure_misuse(self):
        with self.assertRaises(TypeError):
            check_dtype({"x": torch.zeros(1)}, {"x": "float32"})
        with self.assertRaises(ValueError):
            check_dtype({"x": torch.zeros(1)}, {})

    def test_any_spec_parses_and_prints(self):
        self.assertEqual(format_spec({"a": (1,), "b": ANY}), "{'a': (1,), 'b': ANY}")
        parse_spec(((2,), ANY))
        with self.assertRaises(ValueError):  # ... among shapes is still a dimension: a mix
            parse_spec(((2,), ...))
        self.assertTrue(check_forward_shape(torch.nn.Identity(), torch.zeros(2), ANY).passed)


if __name__ == "__main__":
    unittest.main()
