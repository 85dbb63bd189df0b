"""Engine tests of check_dtype: result fields for passing and failing values, misuse errors."""

import collections
import unittest

import numpy as np
import torch

from torchcheck_mixin import DtypeResult, check_dtype
from torchcheck_mixin.core.dtypes import normalize_dtype

Out = collections.namedtuple("Out", "logits aux")


class CheckDtypeTest(unittest.TestCase):
    def test_single_tensor_passes(self):
        result = check_dtype(torch.zeros(2), torch.float32)
        self.assertIsInstance(result, DtypeResult)
        self.assertTrue(result.passed)
        self.assertEqual(result.expected, "torch.float32")
        self.assertEqual(result.leaves, (("", "torch.float32"),))
        self.assertEqual(result.mismatches, ())

    def test_aliases_are_the_same_dtype(self):
        self.assertTrue(check_dtype(torch.zeros(2), torch.float).passed)
        self.assertTrue(check_dtype(torch.zeros(2, dtype=torch.half), torch.float16).passed)
        self.assertTrue(check_dtype(torch.zeros(2, dtype=torch.long), torch.int64).passed)

    def test_single_tensor_fails(self):
        result = check_dtype(torch.zeros(2, dtype=torch.float64), torch.float32)
        self.assertFalse(result.passed)
        (m,) = result.mismatches
        self.assertEqual((m.path, m.actual, m.expected), ((), "torch.float64", "torch.float32"))

    def test_structure_paths(self):
        value = {"logits": torch.zeros(2), "aux": [torch.zeros(1, dtype=torch.int64), torch.zeros(1)]}
        result = check_dtype(value, torch.float32)
        self.assertFalse(result.passed)
        self.assertEqual(
            result.leaves,
            (("['logits']", "torch.float32"), ("['aux'][0]", "torch.int64"), ("['aux'][1]", "torch.float32")),
        )
        (m,) = result.mismatches
        self.assertEqual(m.path, ("aux", 0))
        self.assertEqual(m.actual, "torch.int64")

    def test_namedtuple(self):
        self.assertTrue(check_dtype(Out(torch.zeros(1), torch.zeros(2)), torch.float32).passed)
        result = check_dtype(Out(torch.zeros(1), torch.zeros(2, dtype=torch.bfloat16)), torch.float32)
        self.assertEqual([m.path for m in result.mismatches], [("aux",)])

    def test_none_leaves_in_a_structure_are_skipped(self):
        result = check_dtype((torch.zeros(1), None), torch.float32)
        self.assertTrue(result.passed)
        self.assertEqual(result.leaves, (("[0]", "torch.float32"),))

    def test_non_tensor_leaf_is_skipped_and_listed(self):
        result = check_dtype({"a": torch.zeros(1), "b": 3}, torch.float32)
        self.assertTrue(result.passed)
        self.assertEqual(result.skipped, (("['b']", "int"),))
        self.assertEqual(result.leaves, (("['a']", "torch.float32"),))

    def test_numpy_arrays_with_numpy_dtypes(self):
        self.assertTrue(check_dtype(np.zeros(3), np.float64).passed)
        self.assertTrue(check_dtype(np.zeros(3), np.dtype("float64")).passed)
        self.assertTrue(check_dtype(np.float32(1.0), np.float32).passed)
        result = check_dtype({"x": np.zeros(3, dtype=np.float32)}, np.float64)
        self.assertFalse(result.passed)
        self.assertEqual(result.expected, "float64")
        self.assertEqual(result.mismatches[0].actual, "float32")

    def test_default_dtype_is_recorded(self):
        self.assertEqual(check_dtype(torch.zeros(1), torch.float32).default_dtype, "torch.float32")
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            result = check_dtype(torch.zeros(1), torch.float32)
        finally:
            torch.set_default_dtype(old)
        self.assertFalse(result.passed)
        self.assertEqual(result.default_dtype, "torch.float64")

    def test_autocast_is_recorded(self):
        self.assertEqual(check_dtype(torch.zeros(1), torch.float32).autocast, ())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.nn.Linear(2, 2)(torch.zeros(1, 2))
            result = check_dtype(out, torch.float32)
        self.assertFalse(result.passed)
        self.assertEqual(result.mismatches[0].actual, "torch.bfloat16")
        self.assertEqual(result.autocast, ("cpu:torch.bfloat16",))

    def test_result_holds_no_tensors(self):
        result = check_dtype({"a": torch.zeros(1)}, torch.float32)
        for leaf in (result.expected, result.default_dtype) + tuple(x for pair in result.leaves for x in pair):
            self.assertIsInstance(leaf, str)


class CheckDtypeMisuseTest(unittest.TestCase):
    def assertMisuse(self, error, value, expected, *fragments):
        with self.assertRaises(error) as cm:
            check_dtype(value, expected)
        for fragment in fragments:
            self.assertIn(fragment, str(cm.exception))

    def test_string_dtype(self):
        self.assertMisuse(TypeError, torch.zeros(1), "float32", "expected_dtype", "'float32'", "torch.float32")
        self.assertMisuse(TypeError, torch.zeros(1), "banana", "expected_dtype", "'banana'")

    def test_python_type(self):
        self.assertMisuse(TypeError, torch.zeros(1), float, "expected_dtype")
        self.assertMisuse(TypeError, torch.zeros(1), None, "expected_dtype")

    def test_cross_library_pairs(self):
        self.assertMisuse(TypeError, torch.zeros(1), np.float32, "expected_dtype", "torch")
        self.assertMisuse(TypeError, np.zeros(1), torch.float64, "expected_dtype", "numpy")
        self.assertMisuse(TypeError, {"a": np.zeros(1)}, torch.float64, "value['a']")

    def test_none_value(self):
        self.assertMisuse(TypeError, None, torch.float32, "value")

    def test_value_without_any_tensor(self):
        self.assertMisuse(ValueError, [], torch.float32, "value")
        self.assertMisuse(ValueError, {"a": None}, torch.float32, "value")

    def test_normalize_dtype_argname(self):
        with self.assertRaises(TypeError) as cm:
            normalize_dtype("int64", "dtype['y']")
        self.assertIn("dtype['y']", str(cm.exception))
        self.assertEqual(normalize_dtype(np.float32), np.dtype("float32"))
        self.assertIs(normalize_dtype(torch.float), torch.float32)


if __name__ == "__main__":
    unittest.main()
