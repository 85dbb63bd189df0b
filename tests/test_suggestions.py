"""Round trip of the pasteable allow_not_updated / expect_frozen suggestions (issue 11, cause 8).

Each case: run assertParametersUpdated, parse the suggested list from the failure message, paste it
into the same assertion and require a pass; the suggestion must also not be over-broad (no entry
selects a parameter of the other status) and must never be cut with "...".
"""

import ast
import re
import unittest

import torch
from torch import nn

from torchcheck_mixin import ModelAssertionsMixin
from torchcheck_mixin.core.parameters import entry_matches
from torchcheck_mixin.core.suggestions import suggest


class Tower(nn.Module):
    def __init__(self, depth=12):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TwoTower(nn.Module):
    """CLIP-like: only the image side is used by this loss."""

    def __init__(self):
        super().__init__()
        self.vision_model = Tower()
        self.text_model = Tower()
        self.visual_projection = nn.Linear(4, 4)
        self.text_projection = nn.Linear(4, 4)
        self.logit_scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.visual_projection(self.vision_model(x))


class DeepLabLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 2)
        self.aux_classifier = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def forward(self, x):
        return self.classifier(self.backbone(x))


class LoRALinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.base_layer = nn.Linear(4, 4)
        self.lora_A = nn.Linear(4, 2, bias=False)
        self.lora_B = nn.Linear(2, 4, bias=False)
        nn.init.normal_(self.lora_B.weight)

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


class LoRABlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.v_proj, self.out = LoRALinear(), LoRALinear(), nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.out(self.q_proj(x) * self.v_proj(x)))


class PeftLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.layers = nn.ModuleList(LoRABlock() for _ in range(4))
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return x


class Expert(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1, self.w2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.w1(x)  # w2 is unused in every expert


class MoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"experts": nn.ModuleList(Expert() for _ in range(4))})
                                    for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            x = sum(e(x) for e in layer["experts"])
        return x


class Mixed(nn.Module):
    """Only some children of `head` share the status: head.a unused, head.b used."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 2), "c": nn.Linear(4, 4)})

    def forward(self, x):
        return self.head["b"](self.body(x))


def _x():
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(0))


class SuggestionRoundTrip(ModelAssertionsMixin, unittest.TestCase):
    def _suggested(self, message, arg):
        m = re.search(arg + r"=(\[.*\])$", message, re.M)
        self.assertIsNotNone(m, f"no {arg}=[...] line in:\n{message}")
        self.assertNotIn("...", m.group(1))
        return ast.literal_eval(m.group(1))

    def _round_trip(self, model, arg, **kwargs):
        with self.assertRaises(AssertionError) as cm:
            self.assertParametersUpdated(model, _x(), **kwargs)
        entries = self._suggested(str(cm.exception), arg)
        # not over-broad: everything an entry selects shares the status (unused / frozen)
        if arg == "expect_frozen":
            other = [n for n, p in model.named_parameters() if p.requires_grad]
        else:
            loss = model(_x()).sum()
            used = {n for n, p in model.named_parameters()
                    if p.requires_grad and (g := torch.autograd.grad(loss, p, retain_graph=True, allow_unused=True)[0])
                    is not None and bool(g.ne(0).any())}
            other = sorted(used)
        for entry in entries:
            for name in other:
                self.assertFalse(entry_matches(entry, name), f"{entry!r} also selects {name!r}")
        self.assertParametersUpdated(model, _x(), **{arg: entries}, **kwargs)
        return entries

    def test_two_tower_collapses_to_highest_modules(self):
        entries = self._round_trip(TwoTower(), "allow_not_updated")
        self.assertEqual(sorted(entries), ["logit_scale", "text_model", "text_projection"])

    def test_aux_classifier_is_one_entry(self):
        self.assertEqual(self._round_trip(DeepLabLike(), "allow_not_updated"), ["aux_classifier"])

    def test_peft_frozen_base_uses_globs(self):
        entries = self._round_trip(PeftLike(), "expect_frozen")
        self.assertIn("*.base_layer", entries)
        self.assertEqual(sorted(entries), ["*.base_layer", "embed", "layers.*.norm", "layers.*.out"])

    def test_repeated_experts_use_a_glob(self):
        self.assertEqual(self._round_trip(MoE(), "allow_not_updated"), ["layers.*.experts.*.w2"])

    def test_only_some_children_share_the_status(self):
        self.assertEqual(self._round_trip(Mixed(), "allow_not_updated"), ["head.a", "head.c"])

    def test_partially_frozen_model(self):
        model = TwoTower()
        model.vision_model.requires_grad_(False)
        for p in model.text_model.layers[3].parameters():
            p.requires_grad_(False)
        entries = self._round_trip(model, "expect_frozen", allow_not_updated=["text_model", "text_projection",
                                                                             "logit_scale"])
        self.assertEqual(entries, ["vision_model", "text_model.layers.3"])

    def test_more_than_ten_entries_are_not_truncated(self):
        class Wide(nn.Module):
            def __init__(self):
                super().__init__()
                self.used = nn.Linear(4, 4)
                for i in range(15):  # distinct names: no glob can merge them
                    self.add_module(f"spare_{chr(97 + i)}", nn.Linear(4, 4))

            def forward(self, x):
                return self.used(x)

        entries = self._round_trip(Wide(), "allow_not_updated")
        self.assertEqual(entries, [f"spare_{chr(97 + i)}" for i in range(15)])


class SuggestUnit(unittest.TestCase):
    def test_glob_rejected_when_it_would_cover_the_other_status(self):
        names = [(f"e.{i}.w",) for i in range(4)]
        self.assertEqual(suggest(["e.0.w", "e.2.w"], {"e.0.w", "e.2.w"}, names), ["e.0", "e.2"])

    def test_glob_matches_module_names(self):
        self.assertTrue(entry_matches("*.base_layer", "a.0.q.base_layer.weight"))
        self.assertTrue(entry_matches("mlp.experts.*.w2", "mlp.experts.3.w2.bias"))
        self.assertFalse(entry_matches("*.base_layer", "a.base_layer_x.weight"))
        self.assertFalse(entry_matches("fc", "fc2.weight"))


if __name__ == "__main__":
    unittest.main()


class IdleExperts(ModelAssertionsMixin, unittest.TestCase):
    def test_unrouted_experts_get_the_routing_hint(self):
        class Routed(nn.Module):
            def __init__(self):
                super().__init__()
                self.experts = nn.Sequential(*(nn.Linear(4, 4) for _ in range(4)))  # names '0.weight' style below

            def forward(self, x):
                return self.experts[0](x) + self.experts[1](x)  # experts 2 and 3 get no token

        with self.assertRaises(AssertionError) as cm:
            self.assertParametersUpdated(nn.Sequential(Routed()), _x())
        text = str(cm.exception)
        self.assertIn("4 tensors of repeated modules got no gradient", text)
        self.assertIn("trials=4", text)
        self.assertEqual(SuggestionRoundTrip._suggested(self, text, "allow_not_updated"),
                         ["0.experts.2", "0.experts.3"])
