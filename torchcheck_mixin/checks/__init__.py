"""The engine's checks, one module per bug family. Each ``check_*`` returns a result object
and raises only ``TypeError``/``ValueError`` on misuse, never a failure.
"""

__unittest = True
__tracebackhide__ = True
