"""Engine tests of check_loss_scalar_non_negative: result fields, problem codes, misuse errors."""

import math
import unittest
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from torchcheck_mixin import LossResult, check_loss_scalar_non_negative as check


class LossPassesTest(unittest.TestCase):
    def test_zero_d_float_tensor(self):
        result = check(torch.tensor(0.3))
        self.assertIsInstance(result, LossResult)
        self.assertTrue(result.passed)
        self.assertEqual(result.problems, ())
        self.assertAlmostEqual(result.value, 0.3, places=6)
        self.assertEqual(result.shape, ())
        self.assertEqual(result.dtype, "torch.float32")
        self.assertEqual(result.atol, 0.0)

    def test_zero(self):
        self.assertTrue(check(torch.tensor(0.0)).passed)

    def test_negative_zero_passes(self):
        result = check(torch.tensor(-0.0))
        self.assertTrue(result.passed)
        self.assertEqual(result.value, 0.0)
        self.assertTrue(check(-0.0).passed)

    def test_half_precision(self):
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            with self.subTest(dtype=str(dtype)):
                result = check(torch.tensor(0.5, dtype=dtype))
                self.assertTrue(result.passed)
                self.assertEqual(result.dtype, str(dtype))

    def test_python_float(self):
        result = check(0.5)
        self.assertTrue(result.passed)
        self.assertEqual(result.value, 0.5)
        self.assertIsNone(result.shape)
        self.assertEqual(result.dtype, "float")

    def test_numpy_scalar(self):
        result = check(np.float32(0.25))
        self.assertTrue(result.passed)
        self.assertEqual(result.value, 0.25)
        self.assertFalse(check(np.float64(-1.0)).passed)

    def test_zero_d_ndarray(self):
        result = check(np.array(0.5))
        self.assertTrue(result.passed)
        self.assertEqual(result.value, 0.5)
        self.assertEqual(result.shape, ())
        self.assertEqual(check(np.array(-0.5)).problems, ("negative",))

    def test_long_double_zero_d_ndarray_is_a_real_number(self):
        # np.longdouble is a real number (it passes as a numpy scalar); torch.from_numpy cannot hold it
        self.assertTrue(check(np.longdouble(0.5)).passed)
        self.assertTrue(check(np.array(0.5, dtype=np.longdouble)).passed)

    def test_requires_grad_tensor_is_read_without_warnings(self):
        w = torch.tensor(2.0, requires_grad=True)
        loss = (w * 0.5) ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = check(loss)
        self.assertTrue(result.passed)
        self.assertEqual(result.value, 1.0)
        self.assertIsNone(w.grad)
        self.assertTrue(loss.requires_grad)  # the user's tensor is untouched
        loss.backward()  # and still usable
        self.assertIsNotNone(w.grad)

    def test_requires_grad_one_element_tensor_is_read_without_warnings(self):
        loss = torch.tensor([2.0], requires_grad=True) * 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = check(loss)
        self.assertEqual(result.problems, ("one_element",))


class LossFailsTest(unittest.TestCase):
    def test_nan(self):
        result = check(torch.tensor(float("nan")))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("nan",))
        self.assertTrue(math.isnan(result.value))

    def test_nan_python_float(self):
        self.assertEqual(check(float("nan")).problems, ("nan",))
        self.assertEqual(check(np.float64("nan")).problems, ("nan",))

    def test_inf(self):
        result = check(torch.tensor(float("inf")))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("posinf",))

    def test_negative_inf(self):
        result = check(torch.tensor(float("-inf")))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("neginf",))
        self.assertEqual(check(float("-inf")).problems, ("neginf",))

    def test_negative(self):
        result = check(torch.tensor(-1.0))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("negative",))
        self.assertEqual(result.value, -1.0)
        self.assertEqual(check(-2.5).problems, ("negative",))

    def test_tiny_negative_fails_without_atol(self):
        self.assertEqual(check(torch.tensor(-1e-9)).problems, ("negative",))

    def test_shape_one(self):
        result = check(torch.tensor([0.3]))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("one_element",))
        self.assertEqual(result.shape, (1,))
        self.assertAlmostEqual(result.value, 0.3, places=6)

    def test_shape_one_by_one(self):
        self.assertEqual(check(torch.ones(1, 1)).problems, ("one_element",))

    def test_one_element_and_nan(self):
        self.assertEqual(check(torch.tensor([float("nan")])).problems, ("one_element", "nan"))

    def test_vector(self):
        result = check(torch.tensor([0.1, 0.2]))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("not_scalar",))
        self.assertEqual(result.shape, (2,))
        self.assertIsNone(result.value)

    def test_reduction_none(self):
        loss = F.mse_loss(torch.zeros(4, 3), torch.ones(4, 3), reduction="none")
        result = check(loss)
        self.assertEqual(result.problems, ("not_scalar",))
        self.assertEqual(result.shape, (4, 3))

    def test_empty_tensor(self):
        result = check(torch.zeros(0))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("not_scalar",))

    def test_vector_ndarray(self):
        self.assertEqual(check(np.array([1.0, 2.0])).problems, ("not_scalar",))

    def test_integer_tensor(self):
        result = check(torch.tensor(3))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("dtype",))
        self.assertEqual(result.dtype, "torch.int64")
        self.assertIsNone(result.value)

    def test_bool_tensor_fails(self):
        result = check(torch.tensor(True))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("dtype",))
        self.assertEqual(result.dtype, "torch.bool")

    def test_complex_tensor(self):
        result = check(torch.tensor(1.0 + 0.0j))
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("dtype",))
        self.assertEqual(result.dtype, "torch.complex64")

    def test_complex_python_number(self):
        result = check(1 + 0j)
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ("dtype",))

    def test_complex_and_bool_ndarrays(self):
        self.assertEqual(check(np.array(1 + 1j)).problems, ("dtype",))
        self.assertEqual(check(np.array(True)).problems, ("dtype",))


class LossAtolTest(unittest.TestCase):
    def test_atol_accepts_slightly_negative_kl(self):
        q = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)), dim=1)
        kl = F.kl_div(q.log(), q, reduction="batchmean")
        self.assertLessEqual(abs(kl.item()), 1e-6)  # zero up to rounding, either sign
        result = check(kl, atol=1e-6)
        self.assertTrue(result.passed)
        self.assertEqual(result.atol, 1e-6)

    def test_atol_boundaries(self):
        self.assertTrue(check(torch.tensor(-1e-9), atol=1e-6).passed)
        self.assertTrue(check(-1e-6, atol=1e-6).passed)
        self.assertEqual(check(-2e-6, atol=1e-6).problems, ("negative",))

    def test_atol_does_not_excuse_nan_or_inf(self):
        self.assertEqual(check(float("nan"), atol=1.0).problems, ("nan",))
        self.assertEqual(check(float("-inf"), atol=1e300).problems, ("neginf",))

    def test_integer_atol_accepted(self):
        self.assertEqual(check(-0.5, atol=1).atol, 1.0)


class LossMisuseTest(unittest.TestCase):
    def assertMisuse(self, error, *fragments, **kwargs):
        loss = kwargs.pop("loss", 0.5)
        with self.assertRaises(error) as cm:
            check(loss, **kwargs)
        for fragment in fragments:
            self.assertIn(fragment, str(cm.exception))

    def test_python_bool_is_type_error(self):
        self.assertMisuse(TypeError, "loss", "bool", loss=True)
        self.assertMisuse(TypeError, "loss", "bool", loss=False)

    def test_numpy_bool_is_type_error(self):
        self.assertMisuse(TypeError, "loss", loss=np.bool_(True))

    def test_string(self):
        self.assertMisuse(TypeError, "loss", "str", loss="0.5")

    def test_none_and_list(self):
        self.assertMisuse(TypeError, "loss", "NoneType", loss=None)
        self.assertMisuse(TypeError, "loss", "list", loss=[0.5])

    def test_bad_atol(self):
        self.assertMisuse(ValueError, "atol", atol=-1.0)
        self.assertMisuse(ValueError, "atol", atol=float("nan"))
        self.assertMisuse(ValueError, "atol", atol=float("inf"))
        self.assertMisuse(TypeError, "atol", atol="1e-6")
        self.assertMisuse(TypeError, "atol", atol=True)
        self.assertMisuse(TypeError, "atol", atol=None)

    def test_object_ndarray(self):
        # torch cannot convert it; the error must still say which argument was wrong
        self.assertMisuse(TypeError, "loss", loss=np.array("abc"))


if __name__ == "__main__":
    unittest.main()
