"""The plain assert_* functions, the results' text and the pytest plugin, tested pytest-style
(plain functions and fixtures). Under ``python -m unittest`` this module imports cleanly and
contributes nothing (unittest collects no plain functions)."""

import inspect
import json
import os
import subprocess
import sys
import textwrap
import unittest
from importlib.metadata import entry_points

import torch
from torch import nn

import torchcheck_mixin
from torchcheck_mixin import ModelAssertionsMixin, functions

try:
    import pytest
except ImportError:  # pragma: no cover - unittest discovery without pytest installed
    pytest = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(x).detach())


def seeded(cls):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls()


def X():
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(0))


# A failing call per assertion: (method name, args, kwargs).
FAILING = [
    ("assertForwardShape", lambda: (nn.Linear(3, 5), X(), ("B", 4)), {}),
    ("assertDtype", lambda: (X().double(), torch.float32), {}),
    ("assertParametersUpdated", lambda: (seeded(Detached), X()), {}),
    ("assertLossScalarNonNegative", lambda: (torch.tensor(-1.0),), {}),
    ("assertBatchShape", lambda: (X(), ("B", 4)), {}),
    ("assertBatchIndependent", lambda: (nn.Softmax(dim=0), X()), {}),
    ("assertParameterCount", lambda: (nn.Linear(3, 5),), {"total": 3}),
    ("assertAllFinite", lambda: (torch.tensor([1.0, float("nan")]),), {}),
    ("assertOutputRange", lambda: (torch.tensor([2.0]),), {"low": 0.0, "high": 1.0}),
]


def _method_text(name, args, kwargs, msg=None):
    class T(ModelAssertionsMixin, unittest.TestCase):
        def runTest(self):
            pass

    try:
        getattr(T(), name)(*args, **kwargs, **({"msg": msg} if msg else {}))
    except AssertionError as e:
        return str(e)
    raise RuntimeError("did not fail")


def _function_text(name, args, kwargs, msg=None):
    try:
        getattr(torchcheck_mixin, functions.function_name(name))(*args, **kwargs, **({"msg": msg} if msg else {}))
    except AssertionError as e:
        return str(e)
    raise RuntimeError("did not fail")


def test_every_assert_method_has_a_function_and_vice_versa():
    methods = {n for n in dir(ModelAssertionsMixin) if n.startswith("assert")}
    names = {n for n in torchcheck_mixin.__all__ if n.startswith("assert_")}
    assert {functions.function_name(m) for m in methods} == names == set(functions.__all__)
    for m in methods:
        assert getattr(torchcheck_mixin, functions.function_name(m)) is functions.FUNCTIONS[functions.function_name(m)]


def test_snake_case_names():
    assert functions.function_name("assertForwardShape") == "assert_forward_shape"
    assert functions.function_name("assertDtype") == "assert_dtype"


def test_signature_is_the_method_without_self():
    for fname, mname in functions.assertion_methods().items():
        method = inspect.signature(getattr(ModelAssertionsMixin, mname))
        assert list(inspect.signature(getattr(functions, fname)).parameters) == list(method.parameters)[1:]
    assert "self" not in inspect.signature(torchcheck_mixin.assert_parameters_updated).parameters
    assert "assert_forward_shape(" in torchcheck_mixin.assert_forward_shape.__doc__


def test_each_function_fails_with_the_methods_text():
    tested = set()
    for name, args, kwargs in FAILING:
        assert _function_text(name, args(), kwargs) == _method_text(name, args(), kwargs), name
        assert _function_text(name, args(), kwargs, "mine") == _method_text(name, args(), kwargs, "mine"), name
        tested.add(name)
    assert _function_text(*FAILING[0][:1], FAILING[0][1](), {}, "mine").endswith(" : mine")
    assert len(tested) >= 9


def test_functions_return_what_methods_return():
    out = torchcheck_mixin.assert_forward_shape(nn.Linear(3, 5), X(), ("B", 5))
    assert out.shape == (4, 5)
    report = torchcheck_mixin.assert_parameters_updated(nn.Linear(3, 2), X())
    assert report.passed and report.parameters_not_updated == []


# ------------------------------------------------------------------------------------- results

def test_results_explain_themselves():
    failed = torchcheck_mixin.check_parameters_updated(Detached(), X())
    assert not failed and failed.message.startswith("Parameters not updated: 2 / 4")
    assert str(failed) == failed.message
    assert repr(failed).startswith("<ParameterUpdateReport passed=False not_updated=2/4: Parameters not updated")
    assert len(repr(failed)) < 200
    passed = torchcheck_mixin.check_forward_shape(nn.Linear(3, 5), X(), ("B", 5))
    assert passed and passed.message == "" and str(passed) == "passed"
    assert repr(passed) == "<ForwardShapeResult passed=True>"
    for result in (failed, passed, torchcheck_mixin.check_all_finite(torch.tensor([float("nan")]))):
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert data["type"] == type(result).__name__ and data["passed"] == result.passed
        assert data["message"] == result.message


def test_value_results_use_their_checks_describer():
    r = torchcheck_mixin.check_all_finite(torch.tensor([1.0, float("inf")]))
    assert r.message.startswith("Non-finite values in 1 / 1")


# ---------------------------------------------------------------------------------- fixtures

def test_seeded_generator_is_seeded(seeded_generator):
    assert torch.equal(torch.randn(3, generator=seeded_generator),
                       torch.randn(3, generator=torch.Generator().manual_seed(0)))


def test_torch_seed(torch_seed):
    assert torch_seed == 0
    assert torch.equal(torch.randn(2), torch.randn(2, generator=torch.Generator().manual_seed(0)))


def test_restore_torch_state_restores(restore_torch_state):
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.manual_seed(123)
    # restored by the fixture; test_state_after_restore checks (pytest runs in file order)


def test_state_after_restore():
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()


# --------------------------------------------------------------------- tracebacks, plugin output

DEMO = '''
import unittest
import torch
from torch import nn
from torchcheck_mixin import (ModelTestCase, assert_forward_shape, check_forward_shape,
                              check_parameters_updated)

class Detached(nn.Module):
    def __init__(self):
        super().__init__(); self.a = nn.Linear(3, 4); self.b = nn.Linear(4, 2)
    def forward(self, x):
        return self.b(self.a(x).detach())

class Raises(nn.Module):
    def forward(self, x):
        raise ValueError("user bug")  # USER-LINE

def test_function():
    assert_forward_shape(nn.Linear(3, 5), torch.randn(4, 3), ("B", 4))  # TEST-LINE

def test_misuse():
    assert_forward_shape(nn.Linear(3, 5), torch.randn(4, 3), object())  # TEST-LINE

def test_result():
    result = check_parameters_updated(Detached(), torch.randn(4, 3))
    assert result  # TEST-LINE

def test_result_passed():
    assert check_forward_shape(nn.Linear(3, 5), torch.randn(4, 3), ("B", 4)).passed  # TEST-LINE

def test_user_error():
    assert_forward_shape(Raises(), torch.randn(4, 3), ("B", 4))

class T(ModelTestCase):
    def test_failure(self):
        self.assertForwardShape(nn.Linear(3, 5), torch.randn(4, 3), ("B", 4))  # TEST-LINE

    def test_misuse(self):
        self.assertForwardShape(nn.Linear(3, 5), torch.randn(4, 3), object())  # TEST-LINE

    def test_user_error(self):
        self.assertForwardShape(Raises(), torch.randn(4, 3), ("B", 4))
'''


def _run_pytest(tmp_path, *names):
    path = tmp_path / "test_demo_tc.py"
    path.write_text(DEMO)
    plugin = [] if any(ep.name == "torchcheck_mixin" for ep in entry_points(group="pytest11")) else [
        "-p", "torchcheck_mixin.pytest_plugin"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           *plugin, str(path), *(["-k", " or ".join(names)] if names else [])],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    return proc.stdout + proc.stderr


def _sections(output):
    out, name = {}, None
    for line in output.splitlines():
        if line.startswith("____") and line.endswith("____"):
            name = line.strip("_ ").strip()
            out[name] = []
        elif name:
            out[name].append(line)
    return out


def _last_source_line(section):
    shown = [l for l in section if l.startswith(">") or l.startswith("    ")]
    return [l for l in section if l.startswith(">")][-1] if shown else ""


if pytest is not None:
    def test_pytest_shows_messages_and_hides_library_frames(tmp_path):
        out = _run_pytest(tmp_path)
        sec = _sections(out)
        for name in ("test_function", "test_misuse", "test_result", "test_result_passed", "T.test_failure",
                     "T.test_misuse"):
            lines = sec[name]
            assert "TEST-LINE" in _last_source_line(lines), (name, out)
            assert not any("torchcheck_mixin/" in l for l in lines), (name, "\n".join(lines))
        assert any("Parameters not updated: 2 / 4" in l for l in sec["test_result"])
        assert any("Output shape (4, 5) does not match expected ('B', 4)" in l for l in sec["test_result_passed"])
        # the user's own exception keeps the user's frame
        assert "USER-LINE" in _last_source_line(sec["test_user_error"]), out
        assert "USER-LINE" in _last_source_line(sec["T.test_user_error"]), out


def _unittest_traceback(test_name):
    ns = {}
    exec(compile(DEMO, os.path.join(ROOT, "tests", "_demo_tc.py"), "exec"), ns)
    result = unittest.TestResult()
    ns["T"](test_name).run(result)
    (_, text), = result.failures + result.errors
    return text


def test_unittest_failure_ends_at_the_test_line():
    text = _unittest_traceback("test_failure")
    frames = [l for l in text.splitlines() if l.startswith("  File ")]
    assert len(frames) == 1 and "_demo_tc.py" in frames[0], text


def test_unittest_misuse_shows_the_test_line_and_only_the_boundary():
    text = _unittest_traceback("test_misuse")
    frames = [l for l in text.splitlines() if l.startswith("  File ")]
    assert "_demo_tc.py" in frames[0] and len(frames) == 2 and "boundary.py" in frames[1], text
    assert "TypeError: expected_shape must be a shape" in text


def test_unittest_user_error_keeps_its_traceback():
    text = _unittest_traceback("test_user_error")
    frames = [l for l in text.splitlines() if l.startswith("  File ")]
    assert frames[-1].endswith("in forward") and "_demo_tc.py" in frames[-1], text  # the user's raise
    assert text.rstrip().endswith("ValueError: user bug")


def test_battery_misspelled_attribute_is_an_error_with_a_suggestion():
    from torchcheck_mixin import ModelBattery

    try:
        type("B", (ModelBattery,), {"model_factory": staticmethod(lambda: nn.Linear(3, 2)),
                                    "inputs_factory": staticmethod(X)})
    except TypeError as e:
        assert "did you mean 'input_factory'?" in str(e) and "known attributes:" in str(e)
    else:
        raise AssertionError("no error for inputs_factory")
