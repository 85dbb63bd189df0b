"""The misuse catalogue: every wrong call or broken input gets a clear outcome.

Each entry of ``CATALOGUE`` performs one call through a ``ModelTestCase`` instance and states the
outcome it must have:

* ``FAIL`` (optionally with a regex the failure text must match): the model or the data is wrong,
  so the check fails with ``self.failureException``;
* ``(ExceptionClass, regex)``: the call is wrong, so it raises exactly that class (``TypeError`` or
  ``ValueError``; ``UserError`` where the user's own code raises, which must come out unchanged),
  with a message matching the regex, which names the argument and what was expected.

Never acceptable: ``AttributeError``, ``IndexError``, ``KeyError`` or ``RuntimeError`` escaping from
the library, a call that passes (a vacuous pass), or a hang (every case runs under a deadline).
"""

import signal
import threading
import unittest
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchcheck_mixin import ModelBattery, ModelTestCase

FAIL = "fail"
FORBIDDEN = (AttributeError, IndexError, KeyError, RuntimeError)
DEADLINE_S = 60


class UserError(Exception):
    """The user's own exception: must propagate unchanged (same class, not wrapped)."""


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[ModelTestCase], Any]
    expected: Union[str, Tuple[Type[BaseException], str]]
    fail_pattern: Optional[str] = None  # for FAIL: a regex the failure text must match


# --------------------------------------------------------------------------------------- fixtures


def x():
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(0))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 1)

    def forward(self, x):
        return {"logits": self.body(x), "aux": self.aux(x).squeeze(1)}


class Returns(nn.Module):
    """A forward that returns ``value`` (a string, None, ...) after using its layer."""

    def __init__(self, value):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.value = value

    def forward(self, x):
        self.fc(x)
        return self.value


class IntNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).argmax(dim=1)


class NoGraph(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(x)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x).detach())


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        self.fc(x)
        raise UserError("boom in the user's forward")


class PlainList(nn.Module):
    """Layers kept in a plain list: never registered, so the module has no parameters."""

    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 8), nn.Linear(8, 3)]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class BatchMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.fc(x)
        return out - out.mean(dim=0, keepdim=True)


class AlwaysDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return F.dropout(self.fc(x), 0.5, training=True)


class StrayTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = torch.full((3,), 2.0)  # not a buffer: not in the state dict

    def forward(self, x):
        return self.fc(x) * self.scale


class NanOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * float("nan")


def frozen_mlp():
    return mlp().requires_grad_(False)


def loader(n=10, batch_size=4, **kw):
    ds = TensorDataset(torch.randn(n, 3), torch.randint(0, 2, (n,)))
    return DataLoader(ds, batch_size=batch_size, **kw)


def empty_loader():
    return DataLoader(TensorDataset(torch.zeros(0, 3), torch.zeros(0)), batch_size=4)


def endless():
    while True:
        yield torch.zeros(4, 5)


def battery_with(**attrs):
    """A ModelBattery subclass configured with ``attrs``; runs its forward-shape test."""

    def run(_tc):
        base = dict(input_factory=lambda: x(), model_factory=mlp, expected_output_shape=("B", 3))
        base.update(attrs)
        cls = type("MisconfiguredBattery", (ModelBattery,), base)
        test = cls("test_forward_shape")
        test.test_forward_shape()

    return run


# --------------------------------------------------------------------------------------- the catalogue

C = Case
CATALOGUE = [
    # ---- the model argument
    C("model_not_module_forward_shape", lambda t: t.assertForwardShape(lambda v: v, x(), ("B", 4)),
      (TypeError, r"model must be a torch\.nn\.Module, got function")),
    C("model_str_parameters_updated", lambda t: t.assertParametersUpdated("mlp", x()),
      (TypeError, r"model must be a torch\.nn\.Module, got str")),
    C("model_none_parameters_updated", lambda t: t.assertParametersUpdated(None, x()),
      (TypeError, r"model must be a torch\.nn\.Module, got NoneType")),
    C("model_not_module_batch_independent", lambda t: t.assertBatchIndependent(object(), x()),
      (TypeError, r"model must be a torch\.nn\.Module")),
    C("model_list_parameter_count", lambda t: t.assertParameterCount([nn.Linear(2, 2)], total=6),
      (TypeError, r"model must be a torch\.nn\.Module, got list")),
    C("model_not_module_deterministic", lambda t: t.assertDeterministic(torch.zeros(2), x()),
      (TypeError, r"model must be a torch\.nn\.Module, got Tensor")),
    C("model_not_module_overfit", lambda t: t.assertCanOverfitBatch(mlp().state_dict(), x()),
      (TypeError, r"model must be a torch\.nn\.Module")),
    C("model_not_module_round_trip", lambda t: t.assertStateDictRoundTrip("model", x()),
      (TypeError, r"model must be a torch\.nn\.Module, got str")),
    # ---- shape specs
    C("spec_is_a_word", lambda t: t.assertForwardShape(mlp(), x(), "B"),
      (TypeError, r"expected_shape must be a tuple of dimensions.*not the string 'B'")),
    C("spec_is_a_sentence", lambda t: t.assertForwardShape(mlp(), x(), "B, 3"),
      (TypeError, r"expected_shape .*string 'B, 3'")),
    C("spec_holds_floats", lambda t: t.assertForwardShape(mlp(), x(), (8.0, 3)),
      (TypeError, r"expected_shape holds float 8\.0")),
    C("spec_negative_size", lambda t: t.assertForwardShape(mlp(), x(), (-1, 3)),
      (ValueError, r"expected_shape has the negative size -1 at dim 0; use None")),
    C("spec_two_ellipses", lambda t: t.assertForwardShape(mlp(), x(), (..., 3, ...)),
      (ValueError, r"expected_shape has 2 '\.\.\.'")),
    C("spec_mixes_dims_and_shapes", lambda t: t.assertForwardShape(mlp(), x(), ("B", (3,))),
      (ValueError, r"expected_shape mixes dimensions and nested specs")),
    C("spec_name_not_identifier", lambda t: t.assertForwardShape(mlp(), x(), ("batch size", 3)),
      (ValueError, r"expected_shape has the name 'batch size'")),
    C("spec_bool_dimension", lambda t: t.assertForwardShape(mlp(), x(), (True, 3)),
      (TypeError, r"expected_shape holds bool True")),
    C("spec_bare_int", lambda t: t.assertForwardShape(mlp(), x(), 3),
      (TypeError, r"expected_shape must be a shape .* got int 3")),
    C("spec_none", lambda t: t.assertForwardShape(mlp(), x(), None),
      (TypeError, r"expected_shape must be a shape .* got NoneType")),
    C("spec_empty_dict", lambda t: t.assertForwardShape(DictNet(), x(), {}),
      (ValueError, r"expected_shape is an empty dict")),
    C("spec_nested_float", lambda t: t.assertForwardShape(DictNet(), x(), {"logits": ("B", 3.5), "aux": ("B",)}),
      (TypeError, r"expected_shape\['logits'\] holds float 3\.5")),
    C("spec_structure_wrong_for_tensor_output", lambda t: t.assertForwardShape(mlp(), x(), (("B", 3), ("B",))),
      FAIL, r"expected a sequence of 2 items, got a tensor of shape \(8, 3\)"),
    C("spec_shape_for_dict_output", lambda t: t.assertForwardShape(DictNet(), x(), ("B", 3)),
      FAIL, r"expected a tensor, got dict"),
    C("spec_wrong_size", lambda t: t.assertForwardShape(mlp(), x(), ("B", 4)),
      FAIL, r"Output shape \(8, 3\) does not match expected \('B', 4\)"),
    C("dict_output_missing_key", lambda t: t.assertForwardShape(
        DictNet(), x(), {"logits": ("B", 3), "aux": ("B",), "hidden": ("B", 8)}),
      FAIL, r"missing keys \['hidden'\]"),
    C("dict_output_extra_key", lambda t: t.assertForwardShape(DictNet(), x(), {"logits": ("B", 3)}),
      FAIL, r"unexpected keys \['aux'\]"),
    C("dict_output_misspelled_key", lambda t: t.assertForwardShape(
        DictNet(), x(), {"logit": ("B", 3), "aux": ("B",)}),
      FAIL, r"missing keys \['logit'\]; unexpected keys \['logits'\]"),
    C("forward_returns_string", lambda t: t.assertForwardShape(Returns("logits"), x(), ("B", 3)),
      FAIL, r"expected a tensor, got str"),
    C("forward_returns_none", lambda t: t.assertForwardShape(Returns(None), x(), ("B", 3)),
      FAIL, r"expected a tensor, got NoneType"),
    C("forward_shape_train_not_bool", lambda t: t.assertForwardShape(mlp(), x(), ("B", 3), train="yes"),
      (TypeError, r"train must be a bool, got str")),
    C("forward_shape_mode_keyword", lambda t: t.assertForwardShape(mlp(), x(), ("B", 3), mode="eval"),
      (TypeError, r"unexpected keyword argument 'mode'")),
    C("forward_shape_inputs_none", lambda t: t.assertForwardShape(mlp(), None, ("B", 3)),
      (TypeError, r"inputs must be a Tensor .* got None")),
    C("forward_shape_inputs_int", lambda t: t.assertForwardShape(mlp(), 3, ("B", 3)),
      (TypeError, r"inputs must be a Tensor .* got int")),
    C("inputs_factory_returns_none", lambda t: t.assertForwardShape(mlp(), lambda g: None, ("B", 3)),
      (TypeError, r"inputs\(generator\) returned None")),
    # ---- dtypes
    C("dtype_as_string", lambda t: t.assertDtype(x(), "float32"),
      (TypeError, r"expected_dtype must be a torch\.dtype .*not the string 'float32' "
                  r"\(did you mean torch\.float32\?\)")),
    C("dtype_numpy_for_tensor", lambda t: t.assertDtype(x(), np.float32),
      (TypeError, r"expected_dtype is the numpy dtype float32 but value is a torch tensor")),
    C("dtype_numpy_dtype_object_for_tensor", lambda t: t.assertDtype(x(), np.dtype("float32")),
      (TypeError, r"expected_dtype is the numpy dtype float32")),
    C("dtype_torch_for_array", lambda t: t.assertDtype(np.zeros(3, np.float32), torch.float32),
      (TypeError, r"expected_dtype is the torch dtype torch\.float32 but value is a numpy array")),
    C("dtype_python_type", lambda t: t.assertDtype(x(), float),
      (TypeError, r"expected_dtype must be a torch\.dtype .* got type")),
    C("dtype_none", lambda t: t.assertDtype(x(), None),
      (TypeError, r"expected_dtype must be a torch\.dtype .* got NoneType")),
    C("dtype_value_none", lambda t: t.assertDtype(None, torch.float32),
      (TypeError, r"value must be a tensor, a numpy array or a structure of them, got None")),
    C("dtype_value_holds_no_tensor", lambda t: t.assertDtype({}, torch.float32),
      (ValueError, r"value holds no tensor or array")),
    C("dtype_wrong", lambda t: t.assertDtype(x().double(), torch.float32),
      FAIL, r"dtype torch\.float64 does not match expected torch\.float32"),
    C("dtype_only_non_tensor_leaves", lambda t: t.assertDtype({"b": [1.0]}, torch.float32),
      (ValueError, r"value holds no tensor or array to check \(got dict\); not checked: value\['b'\]\[0\] \(float\)")),
    # ---- parameters updated: the model
    C("no_parameters", lambda t: t.assertParametersUpdated(nn.ReLU(), x()),
      FAIL, r"no parameters"),
    C("layers_in_plain_list", lambda t: t.assertParametersUpdated(PlainList(), x()),
      FAIL, r"no parameters"),
    C("all_parameters_frozen", lambda t: t.assertParametersUpdated(frozen_mlp(), x()),
      FAIL, r"no trainable parameters"),
    # every parameter frozen AND named by expect_frozen passes ("frozen stays frozen", issue 11):
    # tests/test_selection_frozen.py; frozen without expect_frozen still fails (below).
    C("all_parameters_frozen_snapshot", lambda t: t.assertParametersUpdated(frozen_mlp(), x(), mode="snapshot"),
      FAIL, r"no trainable parameters"),
    C("forward_builds_no_graph", lambda t: t.assertParametersUpdated(NoGraph(), x()),
      FAIL, r"grad is None"),
    C("forward_builds_no_graph_snapshot", lambda t: t.assertParametersUpdated(NoGraph(), x(), mode="both"),
      FAIL, r"Parameters not updated"),
    C("forward_detaches", lambda t: t.assertParametersUpdated(Detached(), x()),
      FAIL, r"body\.weight"),
    C("forward_returns_string_no_loss_fn", lambda t: t.assertParametersUpdated(Returns("out"), x()),
      (ValueError, r"no floating-point tensor to build a default loss from .*pass loss_fn")),
    C("integer_output_no_target", lambda t: t.assertParametersUpdated(IntNet(), x()),
      (ValueError, r"pass loss_fn")),
    # ---- parameters updated: the call
    C("unknown_mode", lambda t: t.assertParametersUpdated(mlp(), x(), mode="grad"),
      (ValueError, r"mode must be one of 'gradient', 'snapshot', 'both'; got 'grad'")),
    C("allow_not_updated_matches_nothing", lambda t: t.assertParametersUpdated(
        mlp(), x(), allow_not_updated=["encoder"]),
      (ValueError, r"allow_not_updated entry 'encoder' matches no parameter")),
    C("allow_not_updated_glob_matches_nothing", lambda t: t.assertParametersUpdated(
        mlp(), x(), allow_not_updated="decoder.*"),
      (ValueError, r"allow_not_updated entry 'decoder\.\*' matches no parameter")),
    C("allow_not_updated_foreign_module", lambda t: t.assertParametersUpdated(
        mlp(), x(), allow_not_updated=[nn.Linear(2, 2)]),
      (ValueError, r"allow_not_updated entry <Linear module> is not a submodule")),
    C("allow_not_updated_wrong_type", lambda t: t.assertParametersUpdated(mlp(), x(), allow_not_updated=5),
      (TypeError, r"allow_not_updated must be a name, glob, nn\.Module or a list of them, got int")),
    C("expect_frozen_matches_nothing", lambda t: t.assertParametersUpdated(mlp(), x(), expect_frozen=["embedding"]),
      (ValueError, r"expect_frozen entry 'embedding' matches no parameter")),
    C("expect_frozen_entry_wrong_type", lambda t: t.assertParametersUpdated(mlp(), x(), expect_frozen=[0]),
      (TypeError, r"expect_frozen entries must be parameter names")),
    C("target_would_broadcast", lambda t: t.assertParametersUpdated(mlp(), x(), torch.randn(8, 1)),
      (ValueError, r"target has shape \(8, 1\) but output has shape \(8, 3\); a default MSE would broadcast")),
    C("target_wrong_batch", lambda t: t.assertParametersUpdated(mlp(), x(), torch.randn(3)),
      (ValueError, r"target has shape \(3,\) but output has shape \(8, 3\)")),
    C("integer_target_same_shape_as_output", lambda t: t.assertParametersUpdated(
        mlp(), x(), torch.zeros(8, 3, dtype=torch.long)),
      (ValueError, r"integer target of shape \(8, 3\) does not fit output .*pass loss_fn")),
    C("class_index_out_of_range", lambda t: t.assertParametersUpdated(mlp(), x(), torch.full((8,), 3)),
      (ValueError, r"target holds class indices 3\.\.3 but output has 3 classes")),
    C("target_not_tensor", lambda t: t.assertParametersUpdated(mlp(), x(), [1.0] * 8),
      (TypeError, r"target must be a tensor, got list")),
    C("structured_output_plain_target", lambda t: t.assertParametersUpdated(DictNet(), x(), torch.randn(8, 3)),
      (ValueError, r"output is structured .* but target is a single tensor")),
    C("loss_fn_returns_vector", lambda t: t.assertParametersUpdated(mlp(), x(), loss_fn=lambda out: out.pow(2).mean(1)),
      (ValueError, r"loss_fn must return a 0-d tensor, returned shape \(8,\)")),
    C("loss_fn_returns_float", lambda t: t.assertParametersUpdated(mlp(), x(), loss_fn=lambda out: 1.0),
      (TypeError, r"loss_fn must return a tensor, returned float")),
    C("loss_fn_returns_integer_tensor", lambda t: t.assertParametersUpdated(
        mlp(), x(), loss_fn=lambda out: out.argmax().sum()),
      (ValueError, r"loss_fn returned a torch\.int64 tensor")),
    C("loss_fn_not_callable", lambda t: t.assertParametersUpdated(mlp(), x(), loss_fn="mse"),
      (TypeError, r"loss_fn must be callable or None, got str")),
    C("optimizer_not_an_optimizer", lambda t: t.assertParametersUpdated(mlp(), x(), mode="snapshot", optimizer="adam"),
      (TypeError, r"optimizer must be a torch\.optim\.Optimizer or None, got str")),
    C("optimizer_class_not_instance", lambda t: t.assertParametersUpdated(
        mlp(), x(), mode="snapshot", optimizer=torch.optim.SGD),
      (TypeError, r"optimizer must be a torch\.optim\.Optimizer or None, got type")),
    C("optimizer_in_gradient_mode", lambda t: (lambda m: t.assertParametersUpdated(
        m, x(), optimizer=torch.optim.SGD(m.parameters(), lr=0.1)))(mlp()),
      (ValueError, r"optimizer is only used by mode='snapshot' or mode='both'")),
    C("trials_zero", lambda t: t.assertParametersUpdated(mlp(), x(), trials=0),
      (ValueError, r"trials must be >= 1, got 0")),
    C("trials_float", lambda t: t.assertParametersUpdated(mlp(), x(), trials=2.0),
      (TypeError, r"trials must be an int >= 1, got float")),
    C("atol_negative", lambda t: t.assertParametersUpdated(mlp(), x(), atol=-1),
      (ValueError, r"atol must be a finite non-negative float, got -1\.0")),
    C("atol_nan", lambda t: t.assertParametersUpdated(mlp(), x(), atol=float("nan")),
      (ValueError, r"atol must be a finite non-negative float, got nan")),
    C("atol_string", lambda t: t.assertParametersUpdated(mlp(), x(), atol="0"),
      (TypeError, r"atol must be a non-negative float, got str")),
    C("seed_string", lambda t: t.assertParametersUpdated(mlp(), x(), seed="a"),
      (TypeError, r"seed must be an int, got str 'a'")),
    C("seed_bool", lambda t: t.assertParametersUpdated(mlp(), x(), seed=True),
      (TypeError, r"seed must be an int, got bool")),
    C("train_not_bool", lambda t: t.assertParametersUpdated(mlp(), x(), train="yes"),
      (TypeError, r"train must be a bool, got str")),
    C("unknown_keyword", lambda t: t.assertParametersUpdated(mlp(), x(), optimiser=None),
      (TypeError, r"unexpected keyword argument 'optimiser'")),
    C("updated_inputs_none", lambda t: t.assertParametersUpdated(mlp(), None),
      (TypeError, r"inputs must be a Tensor .* got None")),
    # ---- losses
    C("loss_nan", lambda t: t.assertLossScalarNonNegative(torch.tensor(float("nan"))),
      FAIL, r"Loss is not finite: NaN"),
    C("loss_posinf", lambda t: t.assertLossScalarNonNegative(torch.tensor(float("inf"))),
      FAIL, r"Loss is not finite: \+inf"),
    C("loss_neginf", lambda t: t.assertLossScalarNonNegative(torch.tensor(float("-inf"))),
      FAIL, r"Loss is not finite: -inf"),
    C("loss_negative", lambda t: t.assertLossScalarNonNegative(torch.tensor(-0.5)),
      FAIL, r"Loss -0\.5 is negative"),
    C("loss_kl_rounding_without_atol", lambda t: t.assertLossScalarNonNegative(torch.tensor(-3.1e-9)),
      FAIL, r"pass atol=1e-6"),
    C("loss_python_negative", lambda t: t.assertLossScalarNonNegative(-2.0),
      FAIL, r"is negative"),
    C("loss_shape_one", lambda t: t.assertLossScalarNonNegative(torch.tensor([0.5])),
      FAIL, r"Loss has shape \(1,\), expected a 0-d tensor"),
    C("loss_vector", lambda t: t.assertLossScalarNonNegative(torch.rand(4)),
      FAIL, r"Loss is not a scalar: shape \(4,\)"),
    C("loss_empty", lambda t: t.assertLossScalarNonNegative(torch.zeros(0)),
      FAIL, r"not a scalar"),
    C("loss_string", lambda t: t.assertLossScalarNonNegative("0.5"),
      (TypeError, r"loss must be a tensor or a real number, got str")),
    C("loss_list", lambda t: t.assertLossScalarNonNegative([0.5]),
      (TypeError, r"loss must be a tensor or a real number, got list")),
    C("loss_none", lambda t: t.assertLossScalarNonNegative(None),
      (TypeError, r"loss must be a tensor or a real number, got NoneType")),
    C("loss_python_bool", lambda t: t.assertLossScalarNonNegative(True),
      (TypeError, r"loss must be a tensor or a real number, got the bool True")),
    C("loss_complex_tensor", lambda t: t.assertLossScalarNonNegative(torch.tensor(1 + 0j)),
      FAIL, r"Loss has dtype torch\.complex64"),
    C("loss_python_complex", lambda t: t.assertLossScalarNonNegative(1 + 0j),
      FAIL, r"Loss has dtype complex"),
    C("loss_bool_tensor", lambda t: t.assertLossScalarNonNegative(torch.tensor(True)),
      FAIL, r"Loss has dtype torch\.bool"),
    C("loss_integer_tensor", lambda t: t.assertLossScalarNonNegative(torch.tensor(3)),
      FAIL, r"Loss has dtype torch\.int64"),
    C("loss_atol_negative", lambda t: t.assertLossScalarNonNegative(torch.tensor(0.5), atol=-1),
      (ValueError, r"atol must be a finite non-negative float")),
    C("loss_atol_string", lambda t: t.assertLossScalarNonNegative(torch.tensor(0.5), atol="1e-6"),
      (TypeError, r"atol must be a non-negative float, got str")),
    # ---- batches
    C("empty_loader", lambda t: t.assertBatchShape(empty_loader(), (("B", 3), ("B",))),
      FAIL, r"the loader yielded nothing"),
    C("empty_generator", lambda t: t.assertBatchShape(iter(()), ("B", 3)),
      FAIL, r"the loader yielded nothing"),
    C("batch_structure_differs", lambda t: t.assertBatchShape(loader(), ("B", 3)),
      FAIL, r"expected a tensor, got list"),
    C("batch_dict_spec_for_pair", lambda t: t.assertBatchShape(loader(), {"x": ("B", 3), "y": ("B",)}),
      FAIL, r"expected a mapping with keys \['x', 'y'\]"),
    C("batch_too_many_items", lambda t: t.assertBatchShape(loader(), (("B", 3), ("B",), ("B",))),
      FAIL, r"expected 3 items, got 2"),
    C("partial_last_batch_fixed_size", lambda t: t.assertBatchShape(loader(), ((4, 3), (4,))),
      FAIL, r"only the last batch fails: a partial last batch"),
    C("non_iterable_batch", lambda t: t.assertBatchShape(42, ("B", 3)),
      (TypeError, r"batch_or_loader must be a batch .* got int")),
    C("batch_none", lambda t: t.assertBatchShape(None, ("B", 3)),
      (TypeError, r"batch_or_loader must be a batch .* got None")),
    C("batch_spec_is_a_word", lambda t: t.assertBatchShape(loader(), "B"),
      (TypeError, r"expected_shape must be a tuple of dimensions")),
    C("batch_dtype_as_string", lambda t: t.assertBatchShape(loader(), (("B", 3), ("B",)), dtype="float32"),
      (TypeError, r"dtype must be a torch\.dtype .*'float32'")),
    C("batch_dtype_wrong", lambda t: t.assertBatchShape(loader(), (("B", 3), ("B",)),
                                                        dtype=(torch.float64, torch.int64)),
      FAIL, r"dtype torch\.float32, expected torch\.float64"),
    C("max_batches_zero", lambda t: t.assertBatchShape(loader(), (("B", 3), ("B",)), max_batches=0),
      (ValueError, r"max_batches must be >= 1, got 0")),
    C("max_batches_float", lambda t: t.assertBatchShape(loader(), (("B", 3), ("B",)), max_batches=2.0),
      (TypeError, r"max_batches must be an int >= 1 or None, got float")),
    C("endless_stream_wrong_shape", lambda t: t.assertBatchShape(endless(), ("B", 3)),
      FAIL, r"capped at 32 batches"),
    # ---- batch independence
    C("batch_dim_negative", lambda t: t.assertBatchIndependent(mlp(), x(), batch_dim=-1),
      (ValueError, r"batch_dim must be a non-negative int, got -1")),
    C("batch_dim_string", lambda t: t.assertBatchIndependent(mlp(), x(), batch_dim="0"),
      (TypeError, r"batch_dim must be a non-negative int, got '0'")),
    C("batch_dim_beyond_rank", lambda t: t.assertBatchIndependent(mlp(), x(), batch_dim=5),
      (ValueError, r"dimension 5 \(batch_dim\)")),
    C("batch_of_one", lambda t: t.assertBatchIndependent(mlp(), torch.randn(1, 4)),
      (ValueError, r"inputs have batch size 1 at batch_dim=0; at least 2 samples")),
    C("samples_interact", lambda t: t.assertBatchIndependent(BatchMean(), x()),
      FAIL, r"Samples of a batch interact"),
    C("batch_independent_inputs_none", lambda t: t.assertBatchIndependent(mlp(), None),
      (TypeError, r"inputs must be a Tensor")),
    # ---- determinism, counts, finiteness, ranges, state dicts, overfitting
    C("dropout_at_inference", lambda t: t.assertDeterministic(AlwaysDropout(), x()),
      FAIL, r"Outputs differ between two eval-mode passes"),
    C("parameter_count_no_count", lambda t: t.assertParameterCount(mlp()),
      (ValueError, r"give at least one of total=, trainable=, frozen=")),
    C("parameter_count_negative", lambda t: t.assertParameterCount(mlp(), total=-1),
      (ValueError, r"total must be >= 0, got -1")),
    C("parameter_count_float", lambda t: t.assertParameterCount(mlp(), trainable=67.0),
      (TypeError, r"trainable must be an int .* got float")),
    C("parameter_count_wrong", lambda t: t.assertParameterCount(mlp(), total=68),
      FAIL, r"total 67 elements, expected 68"),
    C("parameter_count_plain_list", lambda t: t.assertParameterCount(PlainList(), total=67),
      FAIL, r"plain list holding 2 module"),
    C("all_finite_nan", lambda t: t.assertAllFinite({"out": torch.tensor([1.0, float("nan")])}),
      FAIL, r"1 NaN, 0 inf of 2 elements"),
    C("all_finite_inf_in_module", lambda t: t.assertAllFinite(nn.Linear(2, 2).requires_grad_(False).apply(
        lambda m: m.weight.fill_(float("inf")) if isinstance(m, nn.Linear) else None)),
      FAIL, r"parameter weight"),
    C("all_finite_module_without_tensors", lambda t: t.assertAllFinite(nn.ReLU()),
      FAIL, r"(?i)\bno\b.*tensor"),
    C("all_finite_none", lambda t: t.assertAllFinite(None),
      (TypeError, r"value must be a tensor, a structure of tensors or a module, got None")),
    C("all_finite_no_tensor", lambda t: t.assertAllFinite([1.0, 2.0]),
      (ValueError, r"value holds no tensor to check")),
    C("range_low_above_high", lambda t: t.assertOutputRange(mlp(), x(), low=1.0, high=0.0),
      (ValueError, r"low \(1\.0\) is greater than high \(0\.0\)")),
    C("range_no_bound", lambda t: t.assertOutputRange(mlp(), x()),
      (ValueError, r"needs low=, high= or both")),
    C("range_low_string", lambda t: t.assertOutputRange(mlp(), x(), low="0"),
      (TypeError, r"low must be a real number or None, got str")),
    C("range_high_nan", lambda t: t.assertOutputRange(mlp(), x(), high=float("nan")),
      (ValueError, r"high must not be NaN")),
    C("range_module_without_inputs", lambda t: t.assertOutputRange(mlp(), low=0.0),
      (TypeError, r"inputs is required when model_or_value is a module")),
    C("range_value_with_inputs", lambda t: t.assertOutputRange(x(), x(), low=0.0),
      (TypeError, r"inputs is only used when model_or_value is a module")),
    C("range_complex_value", lambda t: t.assertOutputRange(torch.ones(2, dtype=torch.cfloat), low=0.0),
      (TypeError, r"complex; ranges are defined for real values only")),
    C("range_nan_output", lambda t: t.assertOutputRange(NanOut(), x(), low=-1.0, high=1.0),
      FAIL, r"NaN"),
    C("round_trip_stray_tensor", lambda t: t.assertStateDictRoundTrip(StrayTensor(), x()),
      FAIL, r"scale: a plain tensor attribute"),
    C("overfit_forward_builds_no_graph", lambda t: t.assertCanOverfitBatch(NoGraph(), x(), torch.randn(8, 3), steps=3),
      FAIL, r""),
    C("overfit_all_frozen", lambda t: t.assertCanOverfitBatch(frozen_mlp(), x(), torch.randn(8, 3), steps=3),
      FAIL, r"no trainable parameters"),
    C("overfit_steps_zero", lambda t: t.assertCanOverfitBatch(mlp(), x(), steps=0),
      (ValueError, r"steps must be an int >= 1, got 0")),
    C("overfit_steps_string", lambda t: t.assertCanOverfitBatch(mlp(), x(), steps="10"),
      (TypeError, r"steps must be an int >= 1, got str")),
    C("overfit_min_decrease_above_one", lambda t: t.assertCanOverfitBatch(mlp(), x(), min_decrease=1.5),
      (ValueError, r"min_decrease must be a fraction in \(0, 1\], got 1\.5")),
    C("overfit_min_decrease_string", lambda t: t.assertCanOverfitBatch(mlp(), x(), min_decrease="half"),
      (TypeError, r"min_decrease must be a fraction in \(0, 1\], got str")),
    C("overfit_optimizer_not_optimizer", lambda t: t.assertCanOverfitBatch(mlp(), x(), optimizer="adam"),
      (TypeError, r"optimizer must be a torch\.optim\.Optimizer or None, got str")),
    C("overfit_lr_zero", lambda t: (lambda m: t.assertCanOverfitBatch(
        m, x(), torch.randn(8, 3), steps=5, optimizer=torch.optim.SGD(m.parameters(), lr=0.0)))(mlp()),
      FAIL, r"Loss did not fall enough"),
    # ---- the declarative battery
    C("battery_model_factory_not_callable", battery_with(model_factory=42),
      (TypeError, r"model_factory must be callable, got int")),
    C("battery_input_factory_not_callable", battery_with(input_factory=torch.zeros(2, 4)),
      (TypeError, r"input_factory must be callable, got Tensor")),
    # ---- the user's own exceptions pass through unchanged
    C("user_forward_raises_forward_shape", lambda t: t.assertForwardShape(Boom(), x(), ("B", 3)),
      (UserError, r"^boom in the user's forward$")),
    C("user_forward_raises_updated", lambda t: t.assertParametersUpdated(Boom(), x()),
      (UserError, r"^boom in the user's forward$")),
    C("user_forward_raises_snapshot", lambda t: t.assertParametersUpdated(Boom(), x(), mode="snapshot"),
      (UserError, r"^boom in the user's forward$")),
    C("user_forward_raises_batch_independent", lambda t: t.assertBatchIndependent(Boom(), x()),
      (UserError, r"^boom in the user's forward$")),
    C("user_forward_raises_overfit", lambda t: t.assertCanOverfitBatch(Boom(), x(), steps=2),
      (UserError, r"^boom in the user's forward$")),
]


# --------------------------------------------------------------------------------------- the runner


class Timeout(BaseException):
    """Raised by the deadline; a BaseException so no ``except Exception`` in the library eats it."""


@contextmanager
def deadline(seconds: float):
    """Turn a hang into an error (main thread on POSIX; elsewhere the case just runs)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise Timeout(f"no outcome within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(tc: ModelTestCase, case: Case) -> Tuple[str, Optional[BaseException]]:
    """("passed", None), ("fail", exc) or ("raised", exc)."""
    try:
        with deadline(DEADLINE_S):
            case.call(tc)
    except tc.failureException as exc:
        return "fail", exc
    except Timeout as exc:
        return "raised", exc
    except Exception as exc:  # noqa: BLE001 - classifying it is the point
        return "raised", exc
    return "passed", None


class MisuseCatalogueTest(ModelTestCase):
    def test_catalogue_size(self):
        self.assertGreaterEqual(len(CATALOGUE), 40)
        ids = [c.id for c in CATALOGUE]
        self.assertEqual(len(ids), len(set(ids)), "case ids must be unique")

    def test_catalogue_covers_the_issue(self):
        ids = {c.id for c in CATALOGUE}
        required = {
            "model_not_module_forward_shape", "spec_is_a_word", "spec_holds_floats", "spec_negative_size",
            "spec_two_ellipses", "spec_structure_wrong_for_tensor_output", "dict_output_missing_key",
            "dict_output_extra_key", "dict_output_misspelled_key", "forward_returns_string", "dtype_as_string",
            "dtype_numpy_for_tensor", "dtype_none", "forward_shape_inputs_none", "no_parameters",
            "all_parameters_frozen", "unknown_mode", "allow_not_updated_matches_nothing",
            "expect_frozen_matches_nothing", "target_would_broadcast", "loss_fn_returns_vector",
            "forward_builds_no_graph", "optimizer_not_an_optimizer", "loss_nan", "loss_posinf", "loss_neginf",
            "loss_negative", "loss_shape_one", "loss_vector", "loss_string", "loss_complex_tensor",
            "loss_bool_tensor", "loss_integer_tensor", "loss_kl_rounding_without_atol", "empty_loader",
            "batch_structure_differs", "partial_last_batch_fixed_size", "non_iterable_batch", "unknown_keyword",
            "trials_zero", "atol_negative", "seed_string", "max_batches_zero", "batch_dim_negative",
            "range_low_above_high", "range_no_bound", "parameter_count_no_count",
            "battery_model_factory_not_callable", "user_forward_raises_forward_shape",
        }
        self.assertEqual(required - ids, set())

    def test_each_case_has_its_outcome(self):
        for case in CATALOGUE:
            with self.subTest(case=case.id):
                kind, exc = run_case(self, case)
                if case.expected == FAIL:
                    self.assertEqual(kind, "fail", f"{case.id}: expected a check failure, got {kind}: {exc!r}")
                    text = str(exc)
                    self.assertTrue(text.strip(), "a failure needs a message")
                    if case.fail_pattern:
                        self.assertRegex(text, case.fail_pattern)
                else:
                    cls, pattern = case.expected
                    self.assertEqual(kind, "raised", f"{case.id}: expected {cls.__name__}, got {kind}: {exc!r}")
                    self.assertIs(type(exc), cls, f"{case.id}: expected {cls.__name__}, got {exc!r}")
                    self.assertRegex(str(exc), pattern)
                    if cls is UserError:
                        self.assertIsNone(exc.__cause__)
                        self.assertIsNone(exc.__context__)

    def test_no_internal_errors_hangs_or_vacuous_passes(self):
        """Independently of the expected outcomes: the outcome categories that are never right."""
        bad = []
        for case in CATALOGUE:
            kind, exc = run_case(self, case)
            if kind == "passed":
                bad.append(f"{case.id}: passed vacuously")
            elif isinstance(exc, Timeout):
                bad.append(f"{case.id}: hung ({exc})")
            elif kind == "raised" and isinstance(exc, FORBIDDEN):
                bad.append(f"{case.id}: internal {type(exc).__name__}: {exc}")
            elif kind == "raised" and not isinstance(exc, (TypeError, ValueError, UserError)):
                bad.append(f"{case.id}: unexpected {type(exc).__name__}: {exc}")
        self.assertEqual(bad, [])

    def test_misuse_messages_name_the_argument(self):
        """Every TypeError/ValueError case's regex mentions the argument or what to pass."""
        for case in CATALOGUE:
            if case.expected == FAIL or case.expected[0] is UserError:
                continue
            with self.subTest(case=case.id):
                self.assertRegex(case.expected[1], r"[a-z_]{4,}", "the pattern must name something")

    def test_kl_rounding_atol(self):
        kl = F.kl_div(torch.full((4, 5), 0.2).log(), torch.full((4, 5), 0.2), reduction="batchmean")
        self.assertLossScalarNonNegative(kl, atol=1e-6)
        self.assertLossScalarNonNegative(torch.tensor(-3.1e-9), atol=1e-6)
        with self.assertRaisesRegex(self.failureException, r"below -atol"):
            self.assertLossScalarNonNegative(torch.tensor(-1e-3), atol=1e-6)

    def test_correct_calls_of_the_same_shapes_pass(self):
        """Controls: the fixtures themselves are fine when called correctly (no case fails by accident)."""
        self.assertForwardShape(mlp(), x(), ("B", 3))
        self.assertForwardShape(DictNet(), x(), {"logits": ("B", 3), "aux": ("B",)})
        self.assertParametersUpdated(mlp(), x(), torch.randn(8, 3))
        self.assertParametersUpdated(mlp(), x(), torch.randint(0, 3, (8,)))
        self.assertBatchShape(loader(), (("B", 3), ("B",)), dtype=(torch.float32, torch.int64))
        self.assertBatchIndependent(mlp(), x())
        self.assertDeterministic(mlp(), x())
        self.assertParameterCount(mlp(), total=67)
        self.assertStateDictRoundTrip(mlp(), x())
        self.assertOutputRange(mlp(), x(), low=-100.0, high=100.0)


if __name__ == "__main__":
    unittest.main()
