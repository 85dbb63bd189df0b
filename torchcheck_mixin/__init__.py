"""torchcheck_mixin: unittest assertions that catch the PyTorch model bugs that raise no error.

A layer whose weights never update, an output that silently turned float64, a batch dimension
merged away by a wrong ``view``, a loss that is negative or not a scalar, a loader that yields
the wrong shapes: the code runs and the model quietly learns less. These assertions turn such
checks into ordinary unittest failures::

    import unittest, torch
    from torchcheck_mixin import ModelTestCase

    class TestMLP(ModelTestCase):
        def test_model(self):
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
            x = torch.randn(16, 4)
            self.assertForwardShape(model, x, ("B", 2))
            self.assertParametersUpdated(model, x)

The engine (``check_*`` functions returning result objects) works without unittest.
"""

__unittest = True
__tracebackhide__ = True

from .assertions import ModelAssertionsMixin, ModelTestCase, StaleAllowanceWarning
from . import functions as _functions
from .checks.batches import check_batch_shape
from .battery import ModelBattery
from .checks.counts import check_parameter_count
from .checks.dtypes import check_dtype
from .checks.forward import check_forward_shape
from .checks.independence import check_batch_independent
from .checks.loss import check_loss_scalar_non_negative
from .core.results import (
    BatchShapeResult,
    DtypeResult,
    ForwardShapeResult,
    LossResult,
    OverfitResult,
    ParameterCountResult,
    ParameterRecord,
    ParameterSummary,
    ParameterUpdateReport,
    ValueCheckResult,
)
from .core.summary import parameter_summary
from .checks.overfit import check_can_overfit_batch
from .checks.updates import check_parameters_updated
from .checks.determinism import check_deterministic
from .checks.finite import check_all_finite, check_output_range
from .checks.accumulation import check_accumulation_equivalent
from .checks.resume import check_resume_equivalent
from .checks.compile import check_compile_parity
from .checks.precision import check_autocast_parity, check_precision_parity
from .checks.moves import check_moves_with_model
from .core.results import Divergence, EquivalenceResult, MoveResult
from .checks.state_dict import check_state_dict_round_trip
from .core.trees import ANY
from .checks.batch_values import check_batch_values, check_labels_cover
from .checks.causality import check_causal
from .checks.gradcheck import check_gradcheck
from .checks.initial_loss import check_initial_loss
from .checks.inputs_used import check_inputs_used
from .checks.masks import check_mask_invariant, check_padding_invariant
from .checks.single_sample import check_single_sample_consistent
from .core.results import (
    BatchValuesResult,
    CausalityResult,
    GradcheckResult,
    InitialLossResult,
    InputsUsedResult,
    JacobianMismatch,
    LabelCoverageResult,
    MaskInvariantResult,
    SingleSampleResult,
)

__version__ = "0.1.0"

# The plain assert_* functions, generated from every assert* method of the mixin (functions.py):
# exported programmatically so that an assertion added to the mixin is exported with no edit here;
# tests/test_functions_pytest.py checks that __all__ and the mixin agree.
globals().update(_functions.FUNCTIONS)

# Every public check_* goes through the same boundary as the assertions (core/boundary.py): a misuse
# error (TypeError/ValueError naming an argument) ends at the caller's line, not deep in the engine.
# Done here, by name, so that a check added later is wrapped with no edit; the engine modules keep
# the unwrapped functions for the assertion layer, which has its own boundary.
from .core.boundary import public as _public

globals().update({_name: _public(_fn) for _name, _fn in list(globals().items())
                  if _name.startswith("check_") and callable(_fn)
                  and not getattr(_fn, "__torchcheck_boundary__", False)})
del _public

__all__ = [
    "ANY",
    "ModelAssertionsMixin",
    "ModelBattery",
    "ModelTestCase",
    "StaleAllowanceWarning",
    "check_all_finite",
    "check_batch_independent",
    "check_batch_shape",
    "check_can_overfit_batch",
    "check_deterministic",
    "check_dtype",
    "check_forward_shape",
    "check_loss_scalar_non_negative",
    "check_output_range",
    "check_parameter_count",
    "check_parameters_updated",
    "check_state_dict_round_trip",
    "parameter_summary",
    "BatchShapeResult",
    "DtypeResult",
    "ForwardShapeResult",
    "LossResult",
    "OverfitResult",
    "ParameterCountResult",
    "ParameterRecord",
    "ParameterSummary",
    "ParameterUpdateReport",
    "ValueCheckResult",
    "check_batch_values",
    "check_causal",
    "check_gradcheck",
    "check_initial_loss",
    "check_inputs_used",
    "check_labels_cover",
    "check_mask_invariant",
    "check_padding_invariant",
    "check_single_sample_consistent",
    "BatchValuesResult",
    "CausalityResult",
    "GradcheckResult",
    "InitialLossResult",
    "InputsUsedResult",
    "JacobianMismatch",
    "LabelCoverageResult",
    "MaskInvariantResult",
    "SingleSampleResult",
    "check_accumulation_equivalent",
    "check_resume_equivalent",
    "check_compile_parity",
    "check_autocast_parity",
    "check_precision_parity",
    "check_moves_with_model",
    "Divergence",
    "EquivalenceResult",
    "MoveResult",
    "__version__",
    *_functions.__all__,
]
