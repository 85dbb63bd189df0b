"""README.rst's bug x assertion table is what benchmarks/equivalence_table.py produces now (issue 16)."""

import importlib.util
import os
import unittest
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location("equivalence_table",
                                                  os.path.join(ROOT, "benchmarks", "equivalence_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_table():
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    body = text.split(".. equivalence-table-start\n", 1)[1].split(".. equivalence-table-end", 1)[0]
    return body.strip("\n")


class EquivalenceTable(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.script = load_script()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
            cls.generated = cls.script.table()

    def test_readme_quotes_the_generated_table(self):
        self.assertEqual(readme_table(), self.generated,
                         "README.rst's equivalence table is stale: paste `PYTHONPATH=. python "
                         "benchmarks/equivalence_table.py` between the equivalence-table markers")

    def test_each_bug_is_caught_and_the_twin_passes(self):
        rows = {line[:line.index("  ")].strip(): line.split()[-6:] for line in self.generated.split("\n")[3:-1]}
        self.assertEqual(set(rows["correct model (twin)"]), {"."})
        for bug, cells in rows.items():
            if bug != "correct model (twin)":
                self.assertTrue({"caught", "explained"} & set(cells), f"{bug}: no check catches it: {cells}")

    def test_outcome_reads_results(self):
        from torchcheck_mixin.core.results import EquivalenceResult
        self.assertEqual(self.script.outcome(EquivalenceResult("x", 1, ("a: differs",))), "caught")
        self.assertEqual(self.script.outcome(EquivalenceResult("x", 1, ())), ".")
        self.assertEqual(self.script.outcome(EquivalenceResult("x", 1, ("a",), expected_difference="bn")), "explained")
        self.assertEqual(self.script.outcome(EquivalenceResult("x", 0, (), skipped_reason="no compiler")), "skip")


if __name__ == "__main__":
    unittest.main()
