"""Engine tests of check_batch_shape: single batches, loaders, generators; result fields; misuse."""

import collections
import itertools
import multiprocessing
import random
import unittest
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from torchcheck_mixin import BatchShapeResult, check_batch_shape
from torchcheck_mixin.checks.batches import DEFAULT_UNSIZED_CAP

Sample = collections.namedtuple("Sample", "x y")


def xy_loader(n=10, batch_size=4, **kwargs):
    return DataLoader(TensorDataset(torch.zeros(n, 3), torch.zeros(n, dtype=torch.long)), batch_size=batch_size, **kwargs)


class DictDataset(Dataset):
    """Yields {"x": np.float64 array, "y": int}: collated to float64 and int64 tensors."""

    def __init__(self, n=5):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.zeros(3), "y": i}


class NamedTupleDataset(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return Sample(torch.zeros(3), i)


class NumpyDataset(Dataset):
    """A numpy-backed dataset: np.float64 arrays and scalars collate to torch.float64."""

    def __init__(self):
        self.data = np.random.default_rng(0).standard_normal((6, 4))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i], self.data[i, 0]


class CountingDataset(Dataset):
    """A huge map-style dataset that counts how often it is read."""

    def __init__(self, n):
        self.n = n
        self.calls = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls += 1
        return torch.zeros(3)


class Stream(IterableDataset):
    def __iter__(self):
        return iter([torch.zeros(3)] * 5)


def infinite():
    for i in itertools.count():
        yield torch.full((2, 3), float(i))


class SingleBatchTest(unittest.TestCase):
    def test_tensor(self):
        result = check_batch_shape(torch.zeros(2, 3), ("B", 3))
        self.assertIsInstance(result, BatchShapeResult)
        self.assertTrue(result.passed)
        self.assertTrue(result.single_batch)
        self.assertEqual(result.batches_checked, 1)
        self.assertEqual(result.checked_indices, (0,))
        self.assertIsNone(result.total_batches)
        self.assertEqual(result.spec, "('B', 3)")
        self.assertEqual(result.first_shapes, (("", (2, 3)),))

    def test_tensor_fails(self):
        result = check_batch_shape(torch.zeros(2, 3), (2, 4))
        self.assertFalse(result.passed)
        (bm,) = result.mismatches
        self.assertEqual(bm.batch_index, 0)
        self.assertEqual((bm.mismatch.kind, bm.mismatch.dim_index, bm.mismatch.got), ("dim", 1, 3))

    def test_tuple_list_and_dict_batches_are_single_batches(self):
        self.assertTrue(check_batch_shape((torch.zeros(2, 3), torch.zeros(2)), (("B", 3), ("B",))).single_batch)
        self.assertTrue(check_batch_shape([torch.zeros(2, 3), torch.zeros(2, 4)], [("B", 3), ("B", 4)]).passed)
        result = check_batch_shape({"x": torch.zeros(2, 3)}, {"x": ("B", 3)})
        self.assertTrue(result.passed and result.single_batch)

    def test_numpy_batch(self):
        self.assertTrue(check_batch_shape(np.zeros((2, 3)), ("B", 3), dtype=np.float64).passed)

    def test_named_dim_shared_within_a_batch(self):
        self.assertFalse(check_batch_shape((torch.zeros(2, 3), torch.zeros(5)), (("B", 3), ("B",))).passed)


class LoaderTest(unittest.TestCase):
    def test_partial_last_batch_passes_with_a_named_dim(self):
        result = check_batch_shape(xy_loader(), (("B", 3), ("B",)))
        self.assertTrue(result.passed)
        self.assertFalse(result.single_batch)
        self.assertEqual(result.batches_checked, 3)
        self.assertEqual(result.checked_indices, (0, 1, 2))
        self.assertEqual(result.total_batches, 3)
        self.assertIsNone(result.cap)
        self.assertTrue(result.last_batch_checked)
        self.assertEqual(result.first_shapes, (("[0]", (4, 3)), ("[1]", (4,))))

    def test_fixed_batch_size_fails_on_the_last_batch_only(self):
        result = check_batch_shape(xy_loader(), ((4, 3), (4,)))
        self.assertFalse(result.passed)
        self.assertEqual({m.batch_index for m in result.mismatches}, {2})
        self.assertEqual([m.mismatch.path for m in result.mismatches], [(0,), (1,)])
        self.assertEqual(result.mismatches[0].mismatch.got, 2)

    def test_drop_last_passes_with_a_fixed_batch_size(self):
        self.assertTrue(check_batch_shape(xy_loader(drop_last=True), ((4, 3), (4,))).passed)

    def test_dict_batches(self):
        loader = DataLoader(DictDataset(), batch_size=2)
        result = check_batch_shape(loader, {"x": ("B", 3), "y": ("B",)})
        self.assertTrue(result.passed)
        self.assertEqual(result.first_shapes, (("['x']", (2, 3)), ("['y']", (2,))))

    def test_dict_batches_missing_key(self):
        loader = DataLoader(DictDataset(), batch_size=2)
        result = check_batch_shape(loader, {"x": ("B", 3), "y": ("B",), "mask": ("B",)})
        self.assertFalse(result.passed)
        keys = [m.mismatch for m in result.mismatches if m.mismatch.kind == "keys"]
        self.assertEqual(len(keys), 3)  # every batch
        self.assertEqual(keys[0].missing_keys, ("'mask'",))

    def test_dict_batches_extra_key(self):
        loader = DataLoader(DictDataset(), batch_size=2)
        result = check_batch_shape(loader, {"x": ("B", 3)})
        self.assertFalse(result.passed)
        self.assertEqual(result.mismatches[0].mismatch.extra_keys, ("'y'",))

    def test_namedtuple_batches(self):
        loader = DataLoader(NamedTupleDataset(), batch_size=2)
        self.assertTrue(check_batch_shape(loader, (("B", 3), ("B",))).passed)
        self.assertTrue(check_batch_shape(loader, {"x": ("B", 3), "y": ("B",)}).passed)
        self.assertFalse(check_batch_shape(loader, {"x": ("B", 4), "y": ("B",)}).passed)

    def test_iterable_dataset_loader_is_unsized(self):
        result = check_batch_shape(DataLoader(Stream(), batch_size=2), ("B", 3))
        self.assertTrue(result.passed)
        self.assertIsNone(result.total_batches)
        self.assertEqual(result.checked_indices, (0, 1, 2))
        self.assertIsNone(result.cap)  # it ended by itself


class DtypeTest(unittest.TestCase):
    def test_float64_from_numpy(self):
        loader = DataLoader(NumpyDataset(), batch_size=4)
        self.assertTrue(check_batch_shape(loader, [("B", 4), ("B",)], dtype=torch.float64).passed)
        result = check_batch_shape(loader, [("B", 4), ("B",)], dtype=torch.float32)
        self.assertFalse(result.passed)
        kinds = {m.mismatch.kind for m in result.mismatches}
        self.assertEqual(kinds, {"dtype"})
        self.assertEqual(result.mismatches[0].mismatch.detail, "dtype torch.float64, expected torch.float32")
        self.assertEqual(result.dtype_spec, "torch.float32")

    def test_dtype_structure(self):
        loader = DataLoader(DictDataset(), batch_size=2)
        spec = {"x": ("B", 3), "y": ("B",)}
        self.assertTrue(check_batch_shape(loader, spec, dtype={"x": torch.float64, "y": torch.int64}).passed)
        result = check_batch_shape(loader, spec, dtype={"x": torch.float32, "y": torch.int64})
        self.assertFalse(result.passed)
        self.assertEqual({m.mismatch.path for m in result.mismatches}, {("x",)})

    def test_dtype_none_inside_a_structure_skips_that_leaf(self):
        loader = xy_loader()
        self.assertTrue(check_batch_shape(loader, (("B", 3), ("B",)), dtype=(torch.float32, None)).passed)
        self.assertTrue(check_batch_shape(loader, (("B", 3), ("B",)), dtype=[torch.float32, torch.int64]).passed)
        self.assertFalse(check_batch_shape(loader, (("B", 3), ("B",)), dtype=(torch.float32, torch.int32)).passed)

    def test_single_dtype_applies_to_every_leaf(self):
        result = check_batch_shape(xy_loader(), (("B", 3), ("B",)), dtype=torch.float32)
        self.assertFalse(result.passed)
        self.assertEqual({m.mismatch.path for m in result.mismatches}, {(1,)})

    def test_dtype_namedtuple_structure(self):
        loader = DataLoader(NamedTupleDataset(), batch_size=2)
        result = check_batch_shape(loader, (("B", 3), ("B",)), dtype=Sample(torch.float32, torch.int64))
        self.assertTrue(result.passed)

    def test_numpy_dtype_against_torch_batch_is_not_a_silent_pass(self):
        # np.float64 == torch.float32 is False: comparing them can only pass by not comparing at all
        try:
            result = check_batch_shape(torch.zeros(2, 3), (2, 3), dtype=np.float64)
        except TypeError as exc:
            self.assertIn("dtype", str(exc))
        else:
            self.assertFalse(result.passed, "a numpy dtype was 'checked' against a torch tensor and passed")

    def test_dtype_structure_that_does_not_mirror_the_batch_is_not_a_silent_pass(self):
        # A typo'd key or a short tuple leaves a leaf unchecked; it must not pass quietly.
        batch = {"x": torch.zeros(2, 3), "y": torch.zeros(2, dtype=torch.long)}
        cases = {
            "typo key": (batch, {"x": ("B", 3), "y": ("B",)}, {"x": torch.float32, "yy": torch.float32}),
            "short tuple": ((torch.zeros(2), torch.zeros(2, dtype=torch.long)), (("B",), ("B",)), (torch.float32,)),
        }
        for case, (value, spec, dtype) in cases.items():
            with self.subTest(case=case):
                try:
                    result = check_batch_shape(value, spec, dtype=dtype)
                except (TypeError, ValueError) as exc:
                    self.assertIn("dtype", str(exc))
                else:
                    self.assertFalse(result.passed, f"dtype={dtype!r} checked nothing for some leaves and passed")

    def test_string_dtype_is_type_error(self):
        with self.assertRaises(TypeError) as cm:
            check_batch_shape(torch.zeros(2, 3), (2, 3), dtype="float32")
        self.assertIn("dtype", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            check_batch_shape((torch.zeros(2), torch.zeros(2)), ((2,), (2,)), dtype=(torch.float32, "int64"))
        self.assertIn("dtype[1]", str(cm.exception))


class EmptyAndUnsizedTest(unittest.TestCase):
    def test_empty_loader_fails(self):
        result = check_batch_shape(DataLoader(TensorDataset(torch.zeros(0, 3)), batch_size=4), ("B", 3))
        self.assertFalse(result.passed)
        self.assertEqual(result.batches_checked, 0)
        self.assertEqual(result.mismatches, ())
        self.assertEqual(result.total_batches, 0)

    def test_empty_generator_fails(self):
        result = check_batch_shape(iter(()), ("B", 3))
        self.assertFalse(result.passed)
        self.assertEqual(result.batches_checked, 0)

    def test_drop_last_can_empty_a_loader(self):
        result = check_batch_shape(xy_loader(n=3, batch_size=4, drop_last=True), (("B", 3), ("B",)))
        self.assertFalse(result.passed)
        self.assertEqual(result.batches_checked, 0)

    def test_finite_generator(self):
        def gen():
            yield torch.zeros(2, 3)
            yield torch.zeros(2, 4)

        result = check_batch_shape(gen(), ("B", 3))
        self.assertFalse(result.passed)
        self.assertEqual(result.checked_indices, (0, 1))
        self.assertIsNone(result.total_batches)
        self.assertIsNone(result.cap)
        self.assertEqual([m.batch_index for m in result.mismatches], [1])

    def test_finite_generator_that_ends_by_itself_had_its_last_batch_checked(self):
        gen = (torch.zeros(n, 3) for n in (4, 4, 2))
        result = check_batch_shape(gen, ("B", 3))
        self.assertTrue(result.passed)
        self.assertIsNone(result.cap)
        self.assertTrue(result.last_batch_checked)

    def test_generator_with_cap(self):
        result = check_batch_shape(infinite(), ("B", 3), max_batches=5)
        self.assertTrue(result.passed)
        self.assertEqual(result.checked_indices, (0, 1, 2, 3, 4))
        self.assertEqual(result.cap, 5)
        self.assertFalse(result.last_batch_checked)

    def test_infinite_generator_ends_at_the_default_cap(self):
        self.assertEqual(DEFAULT_UNSIZED_CAP, 32)
        gen = infinite()
        result = check_batch_shape(gen, ("B", 3))
        self.assertTrue(result.passed)
        self.assertEqual(result.batches_checked, 32)
        self.assertEqual(result.cap, 32)
        self.assertIsNone(result.total_batches)
        self.assertEqual(next(gen)[0, 0].item(), 32.0)  # the user's generator is left where it stopped

    def test_user_iterator_is_not_closed(self):
        it = iter([torch.zeros(2, 3)] * 4)
        check_batch_shape(it, ("B", 3), max_batches=2)
        self.assertEqual(len(list(it)), 2)


class MaxBatchesTest(unittest.TestCase):
    def test_first_k_minus_one_and_the_last(self):
        loader = xy_loader(n=40, batch_size=4)  # 10 batches
        result = check_batch_shape(loader, (("B", 3), ("B",)), max_batches=4)
        self.assertTrue(result.passed)
        self.assertEqual(result.checked_indices, (0, 1, 2, 9))
        self.assertEqual(result.total_batches, 10)
        self.assertEqual(result.cap, 4)
        self.assertTrue(result.last_batch_checked)

    def test_max_batches_one_checks_the_last_only(self):
        result = check_batch_shape(xy_loader(), ((4, 3), (4,)), max_batches=1)
        self.assertEqual(result.checked_indices, (2,))
        self.assertFalse(result.passed)  # the partial last batch is still found

    def test_max_batches_two_finds_the_partial_last_batch(self):
        result = check_batch_shape(xy_loader(n=41, batch_size=4), ((4, 3), (4,)), max_batches=2)
        self.assertEqual(result.checked_indices, (0, 10))
        self.assertEqual({m.batch_index for m in result.mismatches}, {10})
        self.assertEqual(result.mismatches[0].mismatch.got, 1)

    def test_max_batches_at_least_len_checks_everything(self):
        result = check_batch_shape(xy_loader(), (("B", 3), ("B",)), max_batches=99)
        self.assertEqual(result.checked_indices, (0, 1, 2))
        self.assertIsNone(result.cap)

    def test_shuffled_loader(self):
        result = check_batch_shape(xy_loader(n=41, shuffle=True), ((4, 3), (4,)), max_batches=3)
        self.assertEqual(result.checked_indices, (0, 1, 10))
        self.assertEqual({m.batch_index for m in result.mismatches}, {10})

    def test_sized_iterable_that_is_not_a_dataloader(self):
        class Sized:
            def __len__(self):
                return 5

            def __iter__(self):
                return (torch.zeros(2 if i < 4 else 1, 3) for i in range(5))

        result = check_batch_shape(Sized(), (2, 3), max_batches=2)
        self.assertEqual(result.checked_indices, (0, 4))
        self.assertEqual({m.batch_index for m in result.mismatches}, {4})

    def test_huge_loader_is_not_iterated_end_to_end(self):
        dataset = CountingDataset(10**7)
        loader = DataLoader(dataset, batch_size=3)
        result = check_batch_shape(loader, ("B", 3), max_batches=2)
        self.assertTrue(result.passed)
        self.assertEqual(result.checked_indices, (0, len(loader) - 1))
        self.assertTrue(result.last_batch_checked)
        self.assertLessEqual(dataset.calls, 2 * 3)

    def test_max_batches_misuse(self):
        for bad, error in ((0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError), ("2", TypeError)):
            with self.subTest(max_batches=bad):
                with self.assertRaises(error) as cm:
                    check_batch_shape(xy_loader(), (("B", 3), ("B",)), max_batches=bad)
                self.assertIn("max_batches", str(cm.exception))


class SideEffectsTest(unittest.TestCase):
    def test_global_rng_unchanged_by_a_shuffling_loader(self):
        torch.manual_seed(1234)
        np_state = np.random.get_state()[1].copy()
        py_state = random.getstate()
        before = torch.get_rng_state()
        result = check_batch_shape(xy_loader(n=40, shuffle=True), (("B", 3), ("B",)))
        self.assertTrue(result.passed)
        self.assertTrue(torch.equal(before, torch.get_rng_state()))
        self.assertTrue(np.array_equal(np_state, np.random.get_state()[1]))
        self.assertEqual(py_state, random.getstate())

    def test_global_rng_unchanged_with_max_batches(self):
        before = torch.get_rng_state()
        check_batch_shape(xy_loader(n=40, shuffle=True), (("B", 3), ("B",)), max_batches=2)
        self.assertTrue(torch.equal(before, torch.get_rng_state()))

    def test_worker_processes_stop(self):
        before = set(multiprocessing.active_children())
        for max_batches in (None, 2):
            with self.subTest(max_batches=max_batches), warnings.catch_warnings():
                # Python >= 3.12 warns about fork() in a multi-threaded process; not ours to judge
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                loader = xy_loader(n=20, batch_size=4, num_workers=2)
                result = check_batch_shape(loader, (("B", 3), ("B",)), max_batches=max_batches)
                self.assertTrue(result.passed)
                leftover = set(multiprocessing.active_children()) - before
                self.assertEqual(leftover, set(), "DataLoader workers still running after the check")

    def test_persistent_workers_loader_is_still_usable_after_the_check(self):
        before = set(multiprocessing.active_children())
        loader = xy_loader(n=20, batch_size=4, num_workers=2, persistent_workers=True)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                self.assertTrue(check_batch_shape(loader, (("B", 3), ("B",)), max_batches=2).passed)
                # The loader owns its persistent iterator: the check must not leave it broken.
                shapes = [tuple(x.shape) for x, _ in loader]
            self.assertEqual(shapes, [(4, 3)] * 5)
        finally:
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None:
                iterator._shutdown_workers()
            del loader, iterator
        self.assertEqual(set(multiprocessing.active_children()) - before, set())


class MisuseTest(unittest.TestCase):
    def test_non_iterable_batch(self):
        with self.assertRaises(TypeError) as cm:
            check_batch_shape(3, ("B",))
        self.assertIn("batch_or_loader", str(cm.exception))
        self.assertIn("int", str(cm.exception))

    def test_none(self):
        with self.assertRaises(TypeError) as cm:
            check_batch_shape(None, ("B",))
        self.assertIn("batch_or_loader", str(cm.exception))

    def test_bad_spec_is_rejected_before_iterating(self):
        gen = infinite()
        with self.assertRaises(TypeError) as cm:
            check_batch_shape(gen, "B")
        self.assertIn("expected_shape", str(cm.exception))
        self.assertEqual(next(gen)[0, 0].item(), 0.0)  # nothing was read


if __name__ == "__main__":
    unittest.main()
