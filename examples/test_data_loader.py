"""Data pipeline: every batch has the shapes and dtypes the model expects."""

import unittest

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from torchcheck_mixin import ModelTestCase


class Images(Dataset):
    """Ten 3x8x8 images with integer labels, stored as numpy float32."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.images = rng.standard_normal((10, 3, 8, 8)).astype(np.float32)
        self.labels = rng.integers(0, 5, size=10)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i]), int(self.labels[i])


class TestDataLoader(ModelTestCase):
    def test_batches_have_the_model_input_shape(self):
        loader = DataLoader(Images(), batch_size=4, shuffle=True)
        # "B" binds per batch, so the last batch of 2 is fine; labels share the batch size.
        self.assertBatchShape(loader, (("B", 3, 8, 8), ("B",)), dtype=(torch.float32, torch.int64))

    def test_dict_batches(self):
        batches = iter([{"x": torch.zeros(4, 6), "mask": torch.ones(4, 6, dtype=torch.bool)}] * 3)
        self.assertBatchShape(batches, {"x": ("B", "T"), "mask": ("B", "T")})

    def test_a_single_batch(self):
        images, labels = next(iter(DataLoader(Images(), batch_size=4)))
        self.assertBatchShape((images, labels), ((4, 3, 8, 8), (4,)))


if __name__ == "__main__":
    unittest.main()
