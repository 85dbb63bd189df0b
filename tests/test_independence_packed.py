"""assertBatchIndependent on outputs whose shape depends on the batch (root cause 5 of issue 11).

A per-token tagger built on pack_padded_sequence / pad_packed_sequence pads its output to the
batch's longest sample, so replacing one sample's ids (and length) changes the output's time
dimension. The check compares the region both outputs share and says so; it never crashes.
"""

import unittest

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchcheck_mixin import ModelTestCase, check_batch_independent


class PackedTagger(nn.Module):
    def __init__(self, vocab=50, tags=5, mix=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, 8, padding_idx=0)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, tags)
        self.mix = mix

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.emb(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)  # (B, longest, 8)
        if self.mix:  # the bug: normalise over the batch
            out = out - out.mean(dim=0, keepdim=True)
        return self.head(out)


def batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 3, 5, 2])
    ids = torch.randint(1, 50, (4, 7), generator=g)
    ids[torch.arange(7)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


class PackedSequences(ModelTestCase):
    def test_correct_tagger_passes(self):
        torch.manual_seed(0)
        self.assertBatchIndependent(PackedTagger(), batch())

    def test_shape_dependence_is_reported(self):
        torch.manual_seed(0)
        result = check_batch_independent(PackedTagger(), batch())
        self.assertTrue(result.passed)
        notes = dict(result.details)
        self.assertIn("output shape depends on the batch", notes)
        self.assertIn("(4, 7, 5) with the original batch", notes["output shape depends on the batch"])

    def test_mixing_tagger_fails(self):
        torch.manual_seed(0)
        with self.assertRaises(self.failureException) as ctx:
            self.assertBatchIndependent(PackedTagger(mix=True), batch())
        self.assertIn("Samples of a batch interact", str(ctx.exception))

    def test_rank_change_is_a_finding_not_a_crash(self):
        class RankFlip(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(50, 3)

            def forward(self, ids):
                out = self.emb(ids)
                return out if int(ids[0, 0]) % 2 else out[..., None]

        ids = torch.tensor([[1, 2], [2, 3], [4, 5]])
        result = check_batch_independent(RankFlip(), ids)
        self.assertFalse(result.passed)
        self.assertIn("rank of the output depends on the batch", result.findings[0].detail)


if __name__ == "__main__":
    unittest.main()
