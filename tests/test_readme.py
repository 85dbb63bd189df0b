"""README.rst stays true: its python code blocks run, and its quoted failure messages are what the
library prints.

Conventions (README.rst):

* Every ``.. code-block:: python`` block is run, each in a fresh namespace, unless the line
  before it is the rst comment ``.. skip-test: <why>`` (a fragment that needs the reader's own
  model or launcher). ``unittest.TestCase`` classes a block defines are run too and must pass, and
  so are the pytest-style ``test*`` functions it defines (the pytest section), called directly.
* A quoted failure message is a paragraph of a literal block (``.. code-block:: text`` or
  ``::``) whose first line starts with ``AssertionError: ``; its more indented lines follow it.
  A line that is only ``...`` stands for any number of lines of the real message (zero or more);
  every other line must equal the printed one exactly.
* The printed messages are the output of ``examples/show_failures.py`` (seeded, so it reproduces
  exactly). Every quoted message must match one of them, except those whose first line is in
  ``NOT_REPRODUCED`` below: messages of checks show_failures.py has no example for yet. That list
  may only shrink: an entry that show_failures.py reproduces, or that README no longer quotes,
  fails the test.
"""

import contextlib
import io
import os
import re
import unittest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")
EXAMPLES = os.path.join(os.path.dirname(README), "examples")

# First lines of messages quoted in README.rst that examples/show_failures.py does not produce yet.
NOT_REPRODUCED = {
    "AssertionError: Parameters not updated: 1 / 8 (12.5%) trainable tensors",
    "AssertionError: Parameter update check failed: buffers of frozen module(s) changed during a train-mode forward "
    "(backbone.bn (BatchNorm1d): running_mean, running_var, num_batches_tracked): a frozen module left in train "
    "mode still updates its running statistics; keep it in eval mode after model.train(): model.backbone.eval()",
    "AssertionError: Outputs differ between two eval-mode passes on the same inputs in 1 / 1 (100.0%) tensors",
    "AssertionError: Loss did not fall enough on one batch: 0.0234 -> 0.0234 in 30 steps (0.0% decrease, expected >= 50%)",
    "AssertionError: Masked positions leak into unmasked outputs: changing 8 masked positions changed 1 output leaf",
    "AssertionError: Outputs change when padding is appended: 1 output leaf changed at the original positions",
    "AssertionError: A sample run alone differs from its row of the batch: 4 mismatches over 4 samples of a batch of 5",
    "AssertionError: Backward does not match finite differences for 1 / 2 (50.0%) inputs/parameters (float64 copy, "
    "|analytical - numerical| <= 1e-05 + 0.001 * |numerical|)",
    "AssertionError: Batch values out of bounds: 5 findings in 5 batches read",
}


def read_readme():
    with open(README, encoding="utf-8") as f:
        return f.read().split("\n")


def literal_blocks(lines, python):
    """``(line number, skipped, dedented lines)`` of each python block (``python=True``) or of each
    text/literal block."""
    out = []
    for i, line in enumerate(lines):
        if python:
            starts = line.strip() == ".. code-block:: python"
        else:
            starts = line.strip() in (".. code-block:: text", ".. code-block:: none") or (
                line.rstrip().endswith("::") and not line.lstrip().startswith(".."))
        if not starts:
            continue
        base = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
            body.append(lines[j])
            j += 1
        while body and not body[-1].strip():
            body.pop()
        indent = min(len(b) - len(b.lstrip()) for b in body if b.strip()) if body else 0
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skipped = k >= 0 and lines[k].strip().startswith(".. skip-test")
        out.append((i + 1, skipped, [b[indent:] for b in body]))
    return out


def quoted_messages(lines):
    """``(line number, message lines)`` of every quoted ``AssertionError: `` message."""
    out = []
    for start, _, body in literal_blocks(lines, python=False):
        i = 0
        while i < len(body):
            line = body[i]
            if line.lstrip().startswith("AssertionError: ") and line.startswith(("AssertionError", " ")):
                indent = len(line) - len(line.lstrip())
                message = [line.strip()]
                i += 1
                while i < len(body) and body[i].strip() and (
                        len(body[i]) - len(body[i].lstrip()) > indent or body[i].strip() == "..."):
                    message.append(body[i][indent:].rstrip())
                    i += 1
                out.append((start + 1 + i, message))
            else:
                i += 1
    return out


def matches(quoted, printed):
    """``quoted`` (with ``...`` lines for any number of lines) is ``printed``."""
    if not quoted:
        return not printed
    if quoted[0].strip() == "...":
        return any(matches(quoted[1:], printed[k:]) for k in range(len(printed) + 1))
    return bool(printed) and quoted[0] == printed[0] and matches(quoted[1:], printed[1:])


def show_failures_output():
    import importlib.util

    spec = importlib.util.spec_from_file_location("show_failures", os.path.join(EXAMPLES, "show_failures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        module.main()
    return buffer.getvalue()


def printed_messages(text):
    messages, current = [], None
    for line in text.split("\n"):
        if line.startswith("AssertionError: "):
            current = [line]
            messages.append(current)
        elif current is not None and line.startswith("  "):
            current.append(line)
        else:
            current = None
    return messages


class ReadmeCodeBlocks(unittest.TestCase):
    def test_python_blocks_run(self):
        blocks = literal_blocks(read_readme(), python=True)
        run = [b for b in blocks if not b[1]]
        self.assertGreaterEqual(len(run), 2, "README.rst lost its runnable examples")
        ran_functions = []
        for line, _, body in run:
            with self.subTest(line=line):
                namespace = {"__name__": "readme_block"}
                exec(compile("\n".join(body), f"README.rst:{line}", "exec"), namespace)
                cases = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)
                         and v.__module__ == "readme_block"]
                # pytest-style test functions a block defines (the pytest section) are called too
                functions = [v for k, v in namespace.items() if k.startswith("test") and callable(v)
                             and not isinstance(v, type) and getattr(v, "__module__", None) == "readme_block"]
                for fn in functions:
                    fn()
                ran_functions.extend(f"README.rst:{line}:{fn.__name__}" for fn in functions)
                for case in cases:
                    result = unittest.TestResult()
                    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
                    self.assertTrue(result.testsRun > 0 and result.wasSuccessful(),
                                    f"README.rst:{line}: {case.__name__}: {result.failures + result.errors}")
        self.assertGreaterEqual(len(ran_functions), 2, "the pytest section's test functions did not run")

    def test_skipped_blocks_say_why(self):
        lines = read_readme()
        for i, line in enumerate(lines):
            if line.strip().startswith(".. skip-test"):
                self.assertRegex(line.strip(), r"^\.\. skip-test: \S", f"README.rst:{i + 1}: give a reason")


class ReadmeMessages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.output = show_failures_output()
        cls.printed = printed_messages(cls.output)

    def test_show_failures_reproduces(self):
        self.assertEqual(show_failures_output(), self.output)
        self.assertIn("0 errors (expected 0 errors)", self.output)
        self.assertGreaterEqual(len(self.printed), 10)

    def test_quoted_messages_are_printed(self):
        quoted = quoted_messages(read_readme())
        self.assertGreaterEqual(len(quoted), 20, "the parser found too few quoted messages")
        reproduced = 0
        for line, message in quoted:
            found = any(matches(message, p) for p in self.printed)
            with self.subTest(line=line, message=message[0]):
                if message[0] in NOT_REPRODUCED:
                    self.assertFalse(found, "reproduced now: remove it from NOT_REPRODUCED")
                else:
                    close = [p for p in self.printed if p[0] == message[0]]
                    self.assertTrue(found, "README.rst:%d quotes\n%s\nbut show_failures.py prints\n%s" % (
                        line, "\n".join(message), "\n\n".join("\n".join(p) for p in close) or "(no such message)"))
                    reproduced += 1
        self.assertGreaterEqual(reproduced, 8)
        heads = {m[0] for _, m in quoted}
        self.assertEqual(sorted(NOT_REPRODUCED - heads), [], "NOT_REPRODUCED entries README no longer quotes")

    def test_matching_rule(self):
        printed = ["AssertionError: x", "  a", "  b", "  c"]
        self.assertTrue(matches(["AssertionError: x", "  a", "...", "  c"], printed))
        self.assertTrue(matches(["AssertionError: x", "..."], printed))
        self.assertFalse(matches(["AssertionError: x", "  a"], printed))  # an unmarked omission
        self.assertFalse(matches(["AssertionError: x", "  a", "  c", "..."], printed))


if __name__ == "__main__":
    unittest.main()
