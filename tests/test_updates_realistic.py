"""check_parameters_updated on the setups real training code uses (issue 11 / 12):
zero-initialised partners, reentrant checkpointing, rounding noise, Parameters made in forward,
frozen means frozen, several optimizers, idle experts."""

import unittest
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tests.invariance import no_side_effects
from torchcheck_mixin import check_parameters_updated
from torchcheck_mixin.core.messages import describe_update
from torchcheck_mixin.core.results import (
    CHANGED_WITHOUT_GRAD,
    NO_GRAD,
    NOT_IN_OPTIMIZER,
    ROUNDING_NOISE,
    UPDATED,
    ZERO_GRAD,
)

X = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
_TV_LIB = []


def _importable_transformers():
    """transformers imports torchvision when installed; its CUDA-only build on the CPU torch needs
    the nms/qnms schemas defined first (what tests/realworld/torchvision_compat.py does)."""
    try:
        from tests.realworld import torchvision_compat
    except ImportError:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            try:
                getattr(torch.ops.torchvision, name)
            except (AttributeError, RuntimeError):
                lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.append(lib)
    else:
        torchvision_compat.install()


MODES = ("gradient", "snapshot")


class _QuietTransformers:
    """transformers 5 warns (FutureWarning) about its own gradient-checkpointing names; CI runs
    with warnings as errors."""

    def setUp(self):
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


class LoRALinear(nn.Module):
    """A frozen base weight plus B @ A with B = 0 (the LoRA initialisation)."""

    def __init__(self, d_in, d_out, rank=2):
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, d_in) * 0.1)
        self.lora_B = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.t() @ self.lora_B.t()


class LoRANet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l1 = LoRALinear(4, 8)
        self.l2 = LoRALinear(8, 3)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


class ZeroInitResidual(nn.Module):
    """ResNet's zero_init_residual: the last BatchNorm of the branch starts with weight 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 4, bias=False)
        self.bn2 = nn.BatchNorm1d(4)
        nn.init.zeros_(self.bn2.weight)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x + self.bn2(self.fc2(F.relu(self.fc1(x)))))


def zero_head():
    """torchvision ViT style: head weight and bias zero, so everything upstream gets 0 at step 1."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))
    nn.init.zeros_(model[4].weight)
    nn.init.zeros_(model[4].bias)
    return model


class DeadFactor(nn.Module):
    """``dead`` is multiplied by a constant zero buffer: no number of steps trains it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)
        self.dead = nn.Parameter(torch.randn(3))
        self.register_buffer("gate", torch.zeros(()))

    def forward(self, x):
        return self.fc(x) + self.gate * self.dead


class TestZeroInitialisedPartners(_QuietTransformers, unittest.TestCase):
    def test_hand_written_lora(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                model = LoRANet()
                with no_side_effects(self, model, watch=[X]):
                    report = check_parameters_updated(model, X, mode=mode, expect_frozen=["l1.base", "l2.base"])
                self.assertTrue(report.passed, describe_update(report))
                rec = {r.name: r for r in report.records}
                self.assertEqual(rec["l1.lora_A"].updated_at_step, 2)
                self.assertEqual(rec["l1.lora_A"].zero_partners, ("l1.lora_B",))
                self.assertIsNone(rec["l1.lora_B"].updated_at_step)
                self.assertTrue(any("downstream of zero-initialised l1.lora_B" in n for n in report.notes))

    def test_zero_init_residual_branch(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                report = check_parameters_updated(ZeroInitResidual(), X, mode=mode)
                self.assertTrue(report.passed, describe_update(report))
                rec = {r.name: r for r in report.records}
                self.assertEqual(rec["fc1.weight"].updated_at_step, 2)
                self.assertIn("bn2.weight", rec["fc2.weight"].zero_partners)

    def test_zero_init_head(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                report = check_parameters_updated(zero_head(), X, mode=mode)
                self.assertTrue(report.passed, describe_update(report))
                rec = {r.name: r for r in report.records}
                self.assertEqual(rec["0.weight"].updated_at_step, 2)
                self.assertIsNone(rec["4.weight"].updated_at_step)

    def test_dead_parameter_still_fails(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                model = DeadFactor()
                with no_side_effects(self, model, watch=[X]):
                    report = check_parameters_updated(model, X, mode=mode)
                self.assertFalse(report.passed)
                self.assertEqual(report.status_of("dead"), ZERO_GRAD)
                text = describe_update(report)
                self.assertIn("still zero after 3 private steps", text)
                self.assertIn("allow_not_updated=['dead']", text)

    def test_ordinary_model_takes_no_second_look(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        calls = []
        model.register_forward_pre_hook(lambda m, a: calls.append(1))
        self.assertTrue(check_parameters_updated(model, X).passed)
        self.assertEqual(len(calls), 1)  # one forward: the passing path pays nothing more

    def test_peft_lora_model(self):
        _importable_transformers()
        try:
            from peft import LoraConfig, get_peft_model
            from transformers import BertConfig, BertModel
        except ImportError as exc:  # pragma: no cover - test extra
            self.skipTest(f"peft/transformers not installed: {exc}")
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16)
        model = get_peft_model(BertModel(cfg), LoraConfig(r=2, target_modules=["query", "value"]))
        ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
        frozen = [p for p in model.parameters() if not p.requires_grad]
        with no_side_effects(self, model, watch=[{"input_ids": ids}]):
            report = check_parameters_updated(model, {"input_ids": ids}, loss_fn=lambda o: o.last_hidden_state[..., :4].pow(2).mean(),
                                              expect_frozen=frozen, allow_not_updated=["*pooler*"])
        self.assertTrue(report.passed, describe_update(report))
        a = [r for r in report.records if "lora_A" in r.name]
        self.assertTrue(a and all(r.updated_at_step == 2 for r in a))
        self.assertTrue(all(any("lora_B" in p for p in r.zero_partners) for r in a))

    def test_torchvision_vit_head_and_timm_zero_init_last(self):
        _importable_transformers()  # the same torchvision schemas
        try:
            import timm
            from torchvision.models import VisionTransformer
        except Exception as exc:  # pragma: no cover - test extra
            self.skipTest(f"torchvision/timm not importable: {exc}")
        torch.manual_seed(0)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        models = {
            "vit": VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=16,
                                     mlp_dim=32, num_classes=5),  # head weight and bias are zero
            "timm resnet18": timm.create_model("resnet18", pretrained=False, num_classes=5),  # zero_init_last
        }
        for name, model in models.items():
            for mode in MODES:
                with self.subTest(model=name, mode=mode):
                    report = check_parameters_updated(model, x, mode=mode)
                    self.assertTrue(report.passed, describe_update(report))
                    self.assertGreater(sum(1 for r in report.records if r.updated_at_step == 2), 10)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _warm(model, opt, steps=2):
    """Real steps of the user's loop, so the optimizer holds state and step counters to protect.
    A LoRA B stays non-zero afterwards, so the model is re-zeroed where the test needs it."""
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(X), torch.zeros(6, 3)).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


def _lora_frozen():
    return ["l1.base", "l2.base"]


_OPTIMIZERS = {
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01),
    "SGD": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
}


class TestZeroInitialisedPartnersWithTheUsersOptimizer(unittest.TestCase):
    """Snapshot mode with ``optimizer=`` (the shadow path): the re-test takes the user's
    optimizer's steps on clones; AdamW's weight decay moving LoRA's A at step 1 is no update."""

    def test_lora_passes_with_adamw_and_sgd_and_leaves_the_optimizer_bitwise(self):
        for name, make in _OPTIMIZERS.items():
            with self.subTest(optimizer=name):
                model = LoRANet()
                opt = make(_trainable(model))
                _warm(model, opt)
                with torch.no_grad():  # back to the LoRA initialisation, with a warm optimizer
                    model.l1.lora_B.zero_()
                    model.l2.lora_B.zero_()
                with no_side_effects(self, model, optimizer=opt, watch=[X]):
                    report = check_parameters_updated(model, X, mode="snapshot", optimizer=opt,
                                                      expect_frozen=_lora_frozen())
                self.assertTrue(report.passed, describe_update(report))
                self.assertEqual(report.snapshot_path, "shadow step over parameter chunks, no copy")
                rec = {r.name: r for r in report.records}
                for a in ("l1.lora_A", "l2.lora_A"):
                    self.assertEqual(rec[a].status, UPDATED)
                    self.assertEqual(rec[a].updated_at_step, 2)
                    self.assertEqual(rec[a].zero_partners, (a.replace("_A", "_B"),))
                self.assertIsNone(rec["l1.lora_B"].updated_at_step)
                note = next(n for n in report.notes if "exactly-zero first gradient" in n)
                self.assertIn(f"user's optimizer ({name}", note)
                self.assertIn("l1.lora_A at step 2 (zero at step 1: downstream of zero-initialised l1.lora_B)", note)

    def test_the_optimizer_state_is_bitwise_untouched_including_step_counters(self):
        model = LoRANet()
        opt = torch.optim.AdamW(_trainable(model), lr=1e-3)
        _warm(model, opt, steps=3)
        with torch.no_grad():
            model.l1.lora_B.zero_()
        state = {id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        report = check_parameters_updated(model, X, mode="snapshot", optimizer=opt, expect_frozen=_lora_frozen())
        self.assertEqual(report.status_of("l1.lora_A"), UPDATED, describe_update(report))
        self.assertEqual(report.records[[r.name for r in report.records].index("l1.lora_A")].updated_at_step, 2)
        self.assertEqual(len(opt.state), len(state))
        for p, st in opt.state.items():
            self.assertEqual(set(st), set(state[id(p)]))
            for k, v in st.items():
                self.assertTrue(torch.equal(v, state[id(p)][k]), k)  # step counters included
                self.assertEqual(v.dtype, state[id(p)][k].dtype)
        self.assertEqual([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups], groups)

    def test_zero_head_and_zero_init_residual_pass_with_adamw(self):
        for make in (zero_head, ZeroInitResidual):
            with self.subTest(model=make.__name__):
                model = make()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
                with no_side_effects(self, model, optimizer=opt, watch=[X]):
                    report = check_parameters_updated(model, X, mode="snapshot", optimizer=opt)
                self.assertTrue(report.passed, describe_update(report))
                self.assertTrue(any(r.updated_at_step == 2 for r in report.records))

    def test_a_dead_parameter_still_fails_with_the_right_hint(self):
        for name, make in _OPTIMIZERS.items():
            with self.subTest(optimizer=name):
                model = DeadFactor()
                opt = make(model.parameters())
                with no_side_effects(self, model, optimizer=opt, watch=[X]):
                    report = check_parameters_updated(model, X, mode="snapshot", optimizer=opt)
                self.assertFalse(report.passed)
                # AdamW's weight decay moves it without a gradient; SGD leaves it at zero gradient
                expected = CHANGED_WITHOUT_GRAD if name == "AdamW" else ZERO_GRAD
                self.assertEqual(report.status_of("dead"), expected)
                text = describe_update(report)
                self.assertIn("stayed exactly zero after 3 further private steps", text)
                self.assertIn("allow_not_updated=['dead']", text)
                if name == "AdamW":
                    self.assertIn("its gradient stayed exactly zero over 3 more private steps of the optimizer", text)

    def test_the_users_hyper_parameters_decide_a_partner_with_lr_zero_never_wakes_its_factor(self):
        # B's group has lr=0: with this optimizer B stays zero, so A never gets a gradient. A
        # re-test with a private optimizer of its own would call A updated.
        model = LoRANet()
        bs = [model.l1.lora_B, model.l2.lora_B]
        opt = torch.optim.AdamW([{"params": [model.l1.lora_A, model.l2.lora_A]}, {"params": bs, "lr": 0.0}],
                                lr=1e-3)
        report = check_parameters_updated(model, X, mode="snapshot", optimizer=opt, expect_frozen=_lora_frozen())
        self.assertFalse(report.passed)
        self.assertEqual(report.status_of("l1.lora_A"), CHANGED_WITHOUT_GRAD)
        self.assertIsNone(report.records[[r.name for r in report.records].index("l1.lora_A")].updated_at_step)
        # the same model with its own private step (no optimizer=) passes: B moves there
        self.assertTrue(check_parameters_updated(model, X, mode="snapshot", expect_frozen=_lora_frozen()).passed)

    def test_ordinary_model_takes_no_second_look_with_an_optimizer(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        calls = []
        model.register_forward_pre_hook(lambda m, a: calls.append(1))
        self.assertTrue(check_parameters_updated(model, X, mode="snapshot", optimizer=opt).passed)
        self.assertEqual(len(calls), 1)  # one forward: the passing path pays nothing more


class Checkpointed(nn.Module):
    def __init__(self, reentrant="unset"):
        super().__init__()
        torch.manual_seed(0)
        self.pre = nn.Linear(4, 4)
        self.block = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)
        self.reentrant = reentrant

    def forward(self, x):
        kw = {} if self.reentrant == "unset" else {"use_reentrant": self.reentrant}
        return self.head(checkpoint(self.block, self.pre(x), **kw))


class TestReentrantCheckpointing(_QuietTransformers, unittest.TestCase):
    def test_both_kinds_and_the_default(self):
        for reentrant in (True, False, "unset"):
            for mode in MODES:
                with self.subTest(reentrant=reentrant, mode=mode), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = Checkpointed(reentrant)
                    grads = {}
                    for p in model.parameters():  # user's grads must come back, the same objects
                        p.grad = torch.ones_like(p)
                        grads[id(p)] = p.grad
                    with no_side_effects(self, model, watch=[X]):
                        report = check_parameters_updated(model, X, mode=mode)
                    self.assertTrue(report.passed, describe_update(report))
                    for p in model.parameters():
                        self.assertIs(p.grad, grads[id(p)])
                        self.assertTrue(bool((p.grad == 1).all()))
                    if reentrant is not False and mode == "gradient":
                        self.assertTrue(any("backward()" in n for n in report.notes))

    def test_peft_with_hf_checkpointing_and_input_require_grads(self):
        # The frozen embedding's output is made a leaf requiring grad: autograd.grad w.r.t. the
        # LoRA weights inside the reentrant checkpoints returns None without an error.
        _importable_transformers()
        try:
            from peft import LoraConfig, get_peft_model
            from transformers import LlamaConfig, LlamaForCausalLM
        except ImportError as exc:  # pragma: no cover
            self.skipTest(f"peft/transformers not installed: {exc}")
        torch.manual_seed(0)
        base = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            num_key_value_heads=2, intermediate_size=32, max_position_embeddings=16))
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        model.enable_input_require_grads()
        ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for mode in MODES:
            with self.subTest(mode=mode), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with no_side_effects(self, model, watch=[ids]):
                    report = check_parameters_updated(model, {"input_ids": ids}, mode=mode, expect_frozen=frozen,
                                                      loss_fn=lambda o: o.logits.float().pow(2).mean())
                self.assertTrue(report.passed, describe_update(report))
                self.assertTrue(all(r.updated_at_step == 2 for r in report.records if "lora_A" in r.name))

    def test_reentrant_with_no_input_requiring_grad_is_still_unreachable(self):
        class Head(nn.Module):  # the checkpoint gets the raw input: training also leaves it untouched
            def __init__(self):
                super().__init__()
                self.block = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
                self.head = nn.Linear(4, 2)

            def forward(self, x):
                return self.head(checkpoint(self.block, x, use_reentrant=True))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = check_parameters_updated(Head(), X)
        self.assertEqual(report.status_of("block.0.weight"), NO_GRAD)
        self.assertTrue(any("use_reentrant=False" in n for n in report.notes))

    def test_hf_gradient_checkpointing_enable(self):
        _importable_transformers()
        try:
            from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel
        except ImportError as exc:  # pragma: no cover
            self.skipTest(f"transformers not installed: {exc}")
        torch.manual_seed(0)
        ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
        models = {
            "bert": BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=16), add_pooling_layer=False),
            "llama": LlamaModel(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            num_key_value_heads=2, intermediate_size=32, max_position_embeddings=16)),
        }
        for name, model in models.items():
            for kwargs in ({"use_reentrant": True}, {"use_reentrant": False}):
                with self.subTest(model=name, **kwargs), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
                    # BERT's attention key bias: softmax is shift-invariant, its gradient is rounding noise
                    allow = ["*.key.bias"] if name == "bert" else ()
                    report = check_parameters_updated(model, {"input_ids": ids}, allow_not_updated=allow,
                                                      loss_fn=lambda o: o.last_hidden_state[..., :4].pow(2).mean())
                    if name == "bert":
                        self.assertEqual(report.status_of("encoder.layer.0.attention.self.key.bias"), ROUNDING_NOISE)
                    self.assertTrue(report.passed, describe_update(report))
                    self.assertEqual(any("backward()" in n for n in report.notes), kwargs["use_reentrant"])


class KeyBiasAttention(nn.Module):
    """Self-attention whose key projection has a bias: softmax is shift-invariant along the keys,
    so the key bias's true gradient is exactly zero."""

    def __init__(self, d=8):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, 3)

    def forward(self, x):
        att = (self.q(x) @ self.k(x).transpose(-1, -2) / 8 ** 0.5).softmax(-1)
        return self.out((att @ self.v(x)).mean(1))


class TokenMixing(nn.Module):
    """An MLP-Mixer token-mixing layer followed by the next block's LayerNorm over channels: the
    bias it adds to each token (the same for every channel) is removed by that normalisation."""

    def __init__(self, tokens=5, d=4):
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Linear(tokens, tokens)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # x: (B, tokens, d)
        y = self.mix(x.transpose(1, 2)).transpose(1, 2)  # (B, tokens, d)
        y = F.layer_norm(y, y.shape[-1:])
        return self.head(y[:, 0] + y[:, 1] ** 2)


class TestRoundingNoise(unittest.TestCase):
    def test_noise_cases_fail(self):
        g = torch.Generator().manual_seed(3)
        seq = torch.randn(4, 6, 8, generator=g)
        cases = [
            ("key bias before softmax", KeyBiasAttention(), seq, ["k.bias"]),
            ("q/k weights at sequence length 1", KeyBiasAttention(), seq[:, :1], ["q.weight", "q.bias", "k.weight", "k.bias"]),
            ("bias before BatchNorm", nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)), X, ["0.bias"]),
            ("token-mixing bias", TokenMixing(), torch.randn(4, 5, 4, generator=g), ["mix.bias"]),
        ]
        for label, model, x, noisy in cases:
            with self.subTest(label):
                with no_side_effects(self, model, watch=[x]):
                    report = check_parameters_updated(model, x)
                self.assertFalse(report.passed)
                self.assertEqual(sorted(r.name for r in report.failures), sorted(noisy))
                statuses = {report.status_of(name) for name in noisy}
                # softmax over one key is exactly 1: there float32 may give an exact zero too
                self.assertLessEqual(statuses, {ROUNDING_NOISE, ZERO_GRAD})
                if ROUNDING_NOISE in statuses:
                    self.assertIn("gradient is rounding noise: zero in float64; a bias before a normalisation?",
                                  describe_update(report))

    def test_genuine_tiny_gradients_pass(self):
        class Tiny(nn.Module):  # a branch scaled far down: gradients ~1e-10, genuine in float64
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.main = nn.Linear(4, 3)
                self.deep = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))

            def forward(self, x):
                return self.main(x) + 1e-10 * self.deep(x)

        report = check_parameters_updated(Tiny(), X)
        self.assertTrue(report.passed, describe_update(report))
        rec = {r.name: r for r in report.records}
        self.assertLess(rec["deep.0.weight"].max_grad, 1e-9)
        self.assertIsNotNone(rec["deep.0.weight"].max_grad_float64)


    def test_vanishing_gradients_of_a_deep_sigmoid_net_are_genuine(self):
        # 20 sigmoid layers: the first layers' gradients are ~1e-18 of the last's, but the same in
        # float32 and float64. Relative to the model's largest gradient they looked like noise.
        torch.manual_seed(0)
        layers = []
        for _ in range(20):
            layers += [nn.Linear(16, 16), nn.Sigmoid()]
        model = nn.Sequential(*layers, nn.Linear(16, 1))
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(8, 16, generator=g), torch.randn(8, 1, generator=g)
        for mode in ("gradient", "snapshot"):
            with self.subTest(mode=mode):
                with no_side_effects(self, model, watch=[x, y]):
                    report = check_parameters_updated(model, x, y, loss_fn=nn.MSELoss(), mode=mode)
                self.assertTrue(report.passed, describe_update(report))
                first = report.records[0]
                self.assertEqual(first.name, "0.weight")
                self.assertLess(first.max_grad, 1e-12 * max(r.max_grad for r in report.records))
                self.assertIsNotNone(first.max_grad_float64)


class TestParametersMadeInForward(unittest.TestCase):
    def test_parameter_created_on_every_call_fails(self):
        class Creates(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)

            def forward(self, x):
                self.scale = nn.Parameter(torch.ones(3))  # a new one each call
                return self.fc(x) * self.scale

        for mode, opt in (("gradient", False), ("snapshot", False), ("snapshot", True)):
            with self.subTest(mode=mode, optimizer=opt):
                model = Creates()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1) if opt else None
                report = check_parameters_updated(model, X, mode=mode, optimizer=optimizer)
                self.assertFalse(report.passed)
                self.assertIn("creates new Parameter object(s) on every call (scale)", describe_update(report))
                self.assertFalse(hasattr(model, "scale"))

    def test_parameter_created_once_is_only_a_note(self):
        class Once(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)

            def forward(self, x):
                if not hasattr(self, "scale"):
                    self.scale = nn.Parameter(torch.ones(3))
                return self.fc(x) * self.scale

        for mode, opt in (("gradient", False), ("snapshot", False), ("snapshot", True)):
            with self.subTest(mode=mode, optimizer=opt):
                model = Once()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1) if opt else None
                report = check_parameters_updated(model, X, mode=mode, optimizer=optimizer)
                self.assertTrue(report.passed, describe_update(report))
                self.assertTrue(any("replaced or created" in n for n in report.notes))
                self.assertFalse(hasattr(model, "scale"))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        return F.relu(self.bn(self.fc(x)))


class FineTune(nn.Module):
    def __init__(self, keep_eval=False):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = Backbone().requires_grad_(False)
        self.head = nn.Linear(8, 3)
        self.keep_eval = keep_eval

    def train(self, mode=True):
        super().train(mode)
        if self.keep_eval:
            self.backbone.eval()
        return self

    def forward(self, x):
        return self.head(self.backbone(x))


class TestFrozenMeansFrozen(unittest.TestCase):
    def test_frozen_backbone_in_train_mode_fails(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                model = FineTune()
                with no_side_effects(self, model, watch=[X]):
                    report = check_parameters_updated(model, X, mode=mode, expect_frozen=["backbone"])
                self.assertFalse(report.passed)
                text = describe_update(report)
                self.assertIn("backbone.bn (BatchNorm1d): running_mean, running_var, num_batches_tracked", text)
                self.assertIn("model.backbone.eval()", text)

    def test_frozen_backbone_with_the_users_optimizer(self):
        for keep_eval in (False, True):
            for several in (False, True):
                with self.subTest(keep_eval=keep_eval, several=several):
                    model = FineTune(keep_eval=keep_eval)
                    opt = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
                    report = check_parameters_updated(model, X, mode="snapshot", expect_frozen=["backbone"],
                                                      optimizer={"head": opt} if several else opt)
                    self.assertEqual(report.passed, keep_eval, describe_update(report))
                    if not keep_eval:
                        self.assertIn("model.backbone.eval()", describe_update(report))

    def test_frozen_backbone_kept_in_eval_passes(self):
        for mode in MODES:
            report = check_parameters_updated(FineTune(keep_eval=True), X, mode=mode, expect_frozen=["backbone"])
            self.assertTrue(report.passed, describe_update(report))

    def test_embedding_rewritten_by_max_norm_fails(self):
        class Emb(nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.emb = nn.Embedding(10, 4, max_norm=0.5).requires_grad_(False)
                self.head = nn.Linear(4, 3)

            def forward(self, ids):
                return self.head(self.emb(ids).mean(1))

        ids = torch.randint(0, 10, (6, 3), generator=torch.Generator().manual_seed(0))
        report = check_parameters_updated(Emb(), ids, expect_frozen=["emb"])
        self.assertFalse(report.passed)
        self.assertIn("written in place during forward (emb.weight)", describe_update(report))


class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, z):
        return self.discriminator(self.generator(z))


class TestSeveralOptimizers(unittest.TestCase):
    def test_gan_with_two_optimizers_passes(self):
        model = GAN()
        opts = {"G": torch.optim.Adam(model.generator.parameters(), lr=1e-3),
                "D": torch.optim.SGD(model.discriminator.parameters(), lr=0.1)}
        for optimizer in (opts, list(opts.values())):
            with self.subTest(kind=type(optimizer).__name__):
                with no_side_effects(self, model, watch=[X]):
                    report = check_parameters_updated(model, X, mode="snapshot", optimizer=optimizer)
                self.assertTrue(report.passed, describe_update(report))
        self.assertEqual(check_parameters_updated(model, X, mode="snapshot", optimizer=opts).optimizer,
                         "G: Adam, D: SGD")

    def test_parameter_in_no_optimizer_fails(self):
        model = GAN()
        opts = {"G": torch.optim.Adam(model.generator.parameters(), lr=1e-3),
                "D": torch.optim.SGD(model.discriminator[0].parameters(), lr=0.1)}
        report = check_parameters_updated(model, X, mode="snapshot", optimizer=opts)
        self.assertFalse(report.passed)
        self.assertEqual(report.status_of("discriminator.2.weight"), NOT_IN_OPTIMIZER)

    def test_parameter_in_two_optimizers_fails(self):
        model = GAN()
        opts = {"G": torch.optim.Adam(model.parameters(), lr=1e-3),
                "D": torch.optim.SGD(model.discriminator.parameters(), lr=0.1)}
        report = check_parameters_updated(model, X, mode="snapshot", optimizer=opts)
        self.assertFalse(report.passed)
        self.assertIn("held by more than one optimizer", describe_update(report))
        self.assertIn("discriminator.0.weight ('G', 'D')", describe_update(report))

    def test_step_moving_another_optimizers_parameter_fails(self):
        class Meddling(torch.optim.SGD):  # also decays every parameter of the model it was given
            def __init__(self, params, everything, lr):
                super().__init__(params, lr=lr)
                self.everything = list(everything)

            def __getstate__(self):  # Optimizer's own drops attributes it does not know
                return dict(super().__getstate__(), everything=self.everything)

            def step(self, closure=None):
                super().step(closure)
                with torch.no_grad():
                    for p in self.everything:
                        p.mul_(0.99)

        model = GAN()
        opts = [torch.optim.SGD(model.generator.parameters(), lr=0.1),
                Meddling(model.discriminator.parameters(), model.parameters(), lr=0.1)]
        report = check_parameters_updated(model, X, mode="snapshot", optimizer=opts)
        self.assertFalse(report.passed)
        self.assertIn("optimizer 'optimizer[1]' moved parameter(s) it does not hold: generator.0.weight",
                      describe_update(report))

    def test_bad_entries_are_type_errors(self):
        with self.assertRaises(TypeError):
            check_parameters_updated(GAN(), X, mode="snapshot", optimizer=[object()])
        with self.assertRaises(ValueError):
            check_parameters_updated(GAN(), X, mode="snapshot", optimizer={})


class TestIdleExperts(unittest.TestCase):
    def test_unrouted_expert_gets_the_routing_hint(self):
        class MoE(nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.experts = nn.ModuleList(nn.Linear(4, 3) for _ in range(3))

            def forward(self, x):  # top-1 routing that here never picks expert 2
                route = (x[:, 0] > 0).long()
                return torch.stack([self.experts[int(r)](xi) for r, xi in zip(route, x)])

        report = check_parameters_updated(MoE(), X)
        self.assertFalse(report.passed)
        self.assertEqual(report.status_of("experts.2.weight"), NO_GRAD)
        self.assertIn("experts no token was routed to?", describe_update(report))


if __name__ == "__main__":
    unittest.main()
